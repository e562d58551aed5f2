//! The parts of Redis's RESP protocol the caches need: `MGET`, `SET … EX`, and `AUTH`
//! and `SELECT` on each new connection when the configuration asks for them.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::pool::{read_data, read_line, Conn, Pool};

pub struct RedisClient {
    pool: Pool,
    expiration: Duration,
    /// `AUTH` and `SELECT` commands every exchange starts with (cheap, and a pooled connection
    /// then never depends on how it was first set up).
    setup: Vec<Vec<Vec<u8>>>,
}

impl RedisClient {
    pub fn new(
        addr: String,
        username: String,
        password: String,
        db: u32,
        timeout: Duration,
        max_idle: usize,
        expiration: Duration,
    ) -> RedisClient {
        let mut setup = Vec::new();
        if !password.is_empty() {
            let mut auth = vec![b"AUTH".to_vec()];
            if !username.is_empty() {
                auth.push(username.into_bytes());
            }
            auth.push(password.into_bytes());
            setup.push(auth);
        }
        if db != 0 {
            setup.push(vec![b"SELECT".to_vec(), db.to_string().into_bytes()]);
        }
        RedisClient { pool: Pool::new(addr, max_idle, timeout), expiration, setup }
    }

    /// The values of `keys`, `None` for a miss; a failure counts as misses and is logged.
    pub async fn get_multi(&self, keys: &[String]) -> Vec<Option<Vec<u8>>> {
        if keys.is_empty() {
            return Vec::new();
        }
        let mut mget = vec![b"MGET".to_vec()];
        mget.extend(keys.iter().map(|k| k.as_bytes().to_vec()));
        let r = self
            .pool
            .exchange(async |c: &mut Conn| {
                self.run_setup(c).await?;
                command(c, &mget).await?;
                read_array(c).await
            })
            .await;
        match r {
            Ok(values) if values.len() == keys.len() => values,
            Ok(values) => {
                tracing::warn!(
                    asked = keys.len(),
                    got = values.len(),
                    addr = self.pool.addr(),
                    "redis MGET answered a different number of values; treated as misses"
                );
                vec![None; keys.len()]
            }
            Err(e) => {
                tracing::warn!(error = %e, keys = keys.len(), "redis MGET failed; treated as misses");
                vec![None; keys.len()]
            }
        }
    }

    /// Stores `value` under `key` with the configured expiry; failures are logged.
    pub async fn set(&self, key: &str, value: &[u8]) {
        let secs = self.expiration.as_secs().max(1).to_string();
        let set = vec![b"SET".to_vec(), key.as_bytes().to_vec(), value.to_vec(), b"EX".to_vec(), secs.into_bytes()];
        let r = self
            .pool
            .exchange(async |c: &mut Conn| {
                self.run_setup(c).await?;
                command(c, &set).await?;
                match read_line(c).await?.as_str() {
                    "+OK" => Ok(()),
                    other => Err(format!("SET answered {other:?}")),
                }
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, key, "redis SET failed");
        }
    }

    async fn run_setup(&self, c: &mut Conn) -> Result<(), String> {
        for cmd in &self.setup {
            command(c, cmd).await?;
            let reply = read_line(c).await?;
            if !reply.starts_with('+') {
                return Err(format!("{} answered {reply:?}", String::from_utf8_lossy(&cmd[0])));
            }
        }
        Ok(())
    }
}

/// Sends one command as a RESP array of bulk strings.
async fn command(c: &mut Conn, args: &[Vec<u8>]) -> Result<(), String> {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
    c.write_all(&buf).await.map_err(|e| format!("send: {e}"))?;
    c.flush().await.map_err(|e| format!("send: {e}"))
}

/// An array of bulk strings (nil ones as `None`), as `MGET` answers.
async fn read_array(c: &mut Conn) -> Result<Vec<Option<Vec<u8>>>, String> {
    let head = read_line(c).await?;
    let n: usize = match head.strip_prefix('*') {
        Some(n) => n.parse().map_err(|_| format!("bad array length {head:?}"))?,
        None => return Err(format!("expected an array, got {head:?}")),
    };
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let item = read_line(c).await?;
        let len: i64 = match item.strip_prefix('$') {
            Some(l) => l.parse().map_err(|_| format!("bad bulk length {item:?}"))?,
            None => return Err(format!("expected a bulk string, got {item:?}")),
        };
        out.push(if len < 0 { None } else { Some(read_data(c, len as usize).await?) });
    }
    Ok(out)
}
