//! The parts of memcached's text protocol the caches need: `get` with many keys and
//! `set` with an expiry. Keys go to a server by their hash, as a client of several servers
//! spreads them.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::pool::{read_data, read_line, Conn, Pool};

pub struct MemcachedClient {
    servers: Vec<Pool>,
    expiration: Duration,
    max_item_size: usize,
    max_get_multi_batch_size: usize,
}

impl MemcachedClient {
    pub fn new(
        addresses: Vec<String>,
        timeout: Duration,
        max_idle: usize,
        expiration: Duration,
        max_item_size: usize,
        max_get_multi_batch_size: usize,
    ) -> MemcachedClient {
        let servers = addresses.into_iter().map(|a| Pool::new(a, max_idle, timeout)).collect();
        MemcachedClient { servers, expiration, max_item_size, max_get_multi_batch_size }
    }

    fn server_index(&self, key: &str) -> usize {
        let h = twox_hash::XxHash64::oneshot(0, key.as_bytes());
        (h % self.servers.len().max(1) as u64) as usize
    }

    /// The values of `keys` (already safe memcached keys), `None` for a miss; a server that
    /// fails counts as misses for its keys and is logged.
    pub async fn get_multi(&self, keys: &[String]) -> Vec<Option<Vec<u8>>> {
        let mut out = vec![None; keys.len()];
        let mut by_server: Vec<Vec<usize>> = vec![Vec::new(); self.servers.len()];
        for (i, k) in keys.iter().enumerate() {
            by_server[self.server_index(k)].push(i);
        }
        let batch = self.max_get_multi_batch_size.max(1);
        let mut calls = Vec::new();
        for (s, indexes) in by_server.iter().enumerate() {
            for part in indexes.chunks(batch) {
                let pool = &self.servers[s];
                let wanted: Vec<&str> = part.iter().map(|&i| keys[i].as_str()).collect();
                calls.push(async move { (part, pool.exchange(async |c: &mut Conn| get(c, &wanted).await).await) });
            }
        }
        for (part, result) in futures::future::join_all(calls).await {
            match result {
                Ok(found) => {
                    for &i in part {
                        out[i] = found.iter().find(|(k, _)| *k == keys[i]).map(|(_, v)| v.clone());
                    }
                }
                Err(e) => tracing::warn!(error = %e, keys = part.len(), "memcached get failed; treated as misses"),
            }
        }
        out
    }

    /// Stores `value` under `key`; failures are logged.
    pub async fn set(&self, key: &str, value: &[u8]) {
        if value.len() > self.max_item_size {
            tracing::debug!(key, bytes = value.len(), max = self.max_item_size, "memcached item too large; not stored");
            return;
        }
        let expiry = self.expiration.as_secs();
        let r =
            self.servers[self.server_index(key)].exchange(async |c: &mut Conn| set(c, key, value, expiry).await).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, key, "memcached set failed");
        }
    }
}

async fn get(c: &mut Conn, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut cmd = String::from("get");
    for k in keys {
        cmd.push(' ');
        cmd.push_str(k);
    }
    cmd.push_str("\r\n");
    c.write_all(cmd.as_bytes()).await.map_err(|e| format!("send get: {e}"))?;
    c.flush().await.map_err(|e| format!("send get: {e}"))?;
    let mut found = Vec::new();
    loop {
        let line = read_line(c).await?;
        if line == "END" {
            return Ok(found);
        }
        // VALUE <key> <flags> <bytes> [<cas>]
        let mut parts = line.split(' ');
        let (Some("VALUE"), Some(key), Some(_flags), Some(len)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("unexpected reply to get: {line:?}"));
        };
        let len: usize = len.parse().map_err(|_| format!("bad length in {line:?}"))?;
        found.push((key.to_owned(), read_data(c, len).await?));
    }
}

async fn set(c: &mut Conn, key: &str, value: &[u8], expiry_secs: u64) -> Result<(), String> {
    let head = format!("set {key} 0 {expiry_secs} {}\r\n", value.len());
    c.write_all(head.as_bytes()).await.map_err(|e| format!("send set: {e}"))?;
    c.write_all(value).await.map_err(|e| format!("send set: {e}"))?;
    c.write_all(b"\r\n").await.map_err(|e| format!("send set: {e}"))?;
    c.flush().await.map_err(|e| format!("send set: {e}"))?;
    match read_line(c).await?.as_str() {
        "STORED" => Ok(()),
        other => Err(format!("set answered {other:?}")),
    }
}
