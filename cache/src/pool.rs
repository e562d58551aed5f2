//! Pooled TCP connections to one cache server, shared by the memcached and Redis clients: a
//! connection is taken from the pool (or dialled), used for one exchange under a deadline, and
//! given back only when the exchange ended cleanly, so a connection left mid-reply is dropped.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufStream};
use tokio::net::TcpStream;

pub(crate) type Conn = BufStream<TcpStream>;

/// Longest line of a cache server's reply header that is read (a memcached `VALUE` line or a
/// RESP length); longer ones mean the peer is not speaking the protocol.
const MAX_LINE: usize = 4096;

pub(crate) struct Pool {
    addr: String,
    idle: Mutex<Vec<Conn>>,
    max_idle: usize,
    timeout: Duration,
}

impl Pool {
    pub(crate) fn new(addr: String, max_idle: usize, timeout: Duration) -> Pool {
        Pool { addr, idle: Mutex::new(Vec::new()), max_idle: max_idle.max(1), timeout }
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Runs one exchange on a pooled connection, within the pool's timeout.
    pub(crate) async fn exchange<T, F>(&self, f: F) -> Result<T, String>
    where
        F: AsyncFnOnce(&mut Conn) -> Result<T, String>,
    {
        let run = async {
            let pooled = self.idle.lock().pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => BufStream::new(
                    TcpStream::connect(&self.addr).await.map_err(|e| format!("connect to {}: {e}", self.addr))?,
                ),
            };
            let out = f(&mut conn).await?;
            let mut idle = self.idle.lock();
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
            Ok::<T, String>(out)
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(r) => r.map_err(|e: String| format!("{}: {e}", self.addr)),
            Err(_) => Err(format!("{}: no answer within {:?}", self.addr, self.timeout)),
        }
    }
}

/// One `\r\n`-terminated line, without the terminator.
pub(crate) async fn read_line(conn: &mut Conn) -> Result<String, String> {
    let mut line = Vec::new();
    let n = (&mut *conn).take(MAX_LINE as u64).read_until(b'\n', &mut line).await.map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed by the server".into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(format!("reply line not ended by CRLF within {MAX_LINE} bytes"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| "reply line is not UTF-8".into())
}

/// Largest value read back from a cache server; a larger length means a confused peer.
const MAX_VALUE: usize = 1 << 30;

/// `len` bytes of data followed by `\r\n`.
pub(crate) async fn read_data(conn: &mut Conn, len: usize) -> Result<Vec<u8>, String> {
    if len > MAX_VALUE {
        return Err(format!("value of {len} bytes announced, more than the {MAX_VALUE} accepted"));
    }
    let mut data = vec![0; len + 2];
    conn.read_exact(&mut data).await.map_err(|e| format!("read {len} bytes of data: {e}"))?;
    if !data.ends_with(b"\r\n") {
        return Err("data not followed by CRLF".into());
    }
    data.truncate(len);
    Ok(data)
}
