//! Fixed-window counters: in this process's memory, or in Redis so that every
//! replica of the service counts against the same windows (INCRBY is atomic, so two
//! replicas never both take the last request of a limit).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(String),
}

pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Store {
    /// Adds `hits` to the counter `key` of the window that ends at `window_end` (Unix
    /// seconds) and returns the count after adding.
    pub async fn add(
        &self,
        key: &str,
        hits: u64,
        window_end: u64,
        now: u64,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.add(key, hits, window_end, now)),
            Store::Redis(r) => {
                r.add(key, hits, window_end.saturating_sub(now).max(1))
                    .await
            }
        }
    }
}

#[derive(Default)]
pub struct MemoryStore {
    counters: Mutex<HashMap<String, (u64, u64)>>,
}

impl MemoryStore {
    fn add(&self, key: &str, hits: u64, window_end: u64, now: u64) -> u64 {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        // Ended windows are dropped as they are met, and all of them when the map
        // grows, so memory follows the keys in use, not every key ever seen.
        if counters.len() > 100_000 {
            counters.retain(|_, (end, _)| *end > now);
        }
        let slot = counters.entry(key.to_string()).or_insert((window_end, 0));
        if slot.0 != window_end {
            *slot = (window_end, 0);
        }
        slot.1 = slot.1.saturating_add(hits);
        slot.1
    }
}

/// A minimal RESP client: `INCRBY` then `EXPIRE`, pipelined on one pooled connection.
pub struct RedisStore {
    addr: String,
    pool: tokio::sync::Mutex<Vec<BufReader<TcpStream>>>,
}

impl RedisStore {
    /// `url` is `redis://HOST:PORT` (no auth, database 0).
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let addr = url
            .strip_prefix("redis://")
            .ok_or_else(|| StoreError::Redis(format!("`{url}`: expected redis://HOST:PORT")))?
            .trim_end_matches('/');
        if addr.is_empty() || !addr.contains(':') {
            return Err(StoreError::Redis(format!(
                "`{url}`: expected redis://HOST:PORT"
            )));
        }
        Ok(Self {
            addr: addr.to_string(),
            pool: tokio::sync::Mutex::new(Vec::new()),
        })
    }

    /// Checks that Redis answers (PING), so a wrong address fails at start.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connect().await?;
        conn.get_mut()
            .write_all(b"*1\r\n$4\r\nPING\r\n")
            .await
            .map_err(io)?;
        match read_reply(&mut conn).await? {
            Reply::Simple(s) if s == "PONG" => Ok(()),
            other => Err(StoreError::Redis(format!("PING answered {other:?}"))),
        }
    }

    async fn connect(&self) -> Result<BufReader<TcpStream>, StoreError> {
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&self.addr))
            .await
            .map_err(|_| StoreError::Redis(format!("connect to {} timed out", self.addr)))?
            .map_err(io)?;
        let _ = stream.set_nodelay(true);
        Ok(BufReader::new(stream))
    }

    async fn add(&self, key: &str, hits: u64, ttl_s: u64) -> Result<u64, StoreError> {
        let pooled = self.pool.lock().await.pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect().await?,
        };
        let mut cmd = Vec::new();
        command(&mut cmd, &["INCRBY", key, &hits.to_string()]);
        // The window's own end bounds the key's life: no counter outlives its window
        // by more than a second.
        command(&mut cmd, &["EXPIRE", key, &ttl_s.to_string()]);
        let io_timeout = Duration::from_secs(2);
        let result = tokio::time::timeout(io_timeout, async {
            conn.get_mut().write_all(&cmd).await.map_err(io)?;
            let count = match read_reply(&mut conn).await? {
                Reply::Int(n) => u64::try_from(n).unwrap_or(0),
                other => return Err(StoreError::Redis(format!("INCRBY answered {other:?}"))),
            };
            read_reply(&mut conn).await?;
            Ok(count)
        })
        .await
        .map_err(|_| StoreError::Redis("timed out".into()))?;
        // A connection that failed mid-exchange may hold half a reply: drop it.
        if result.is_ok() {
            self.pool.lock().await.push(conn);
        }
        result
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Redis(e.to_string())
}

fn command(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Int(i64),
    Other(String),
}

async fn read_reply(conn: &mut BufReader<TcpStream>) -> Result<Reply, StoreError> {
    let mut line = String::new();
    if conn.read_line(&mut line).await.map_err(io)? == 0 {
        return Err(StoreError::Redis("connection closed".into()));
    }
    let line = line.trim_end();
    match line.split_at_checked(1) {
        Some(("+", s)) => Ok(Reply::Simple(s.to_string())),
        Some((":", n)) => n
            .parse()
            .map(Reply::Int)
            .map_err(|_| StoreError::Redis(format!("bad integer reply `{n}`"))),
        Some(("-", e)) => Err(StoreError::Redis(e.to_string())),
        _ => Ok(Reply::Other(line.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_windows_count_and_reset() {
        let m = MemoryStore::default();
        assert_eq!(m.add("k", 1, 60, 0), 1);
        assert_eq!(m.add("k", 2, 60, 1), 3);
        assert_eq!(m.add("j", 1, 60, 1), 1);
        // The next window starts from zero.
        assert_eq!(m.add("k", 1, 120, 60), 1);
    }

    #[test]
    fn commands_are_resp_arrays() {
        let mut out = Vec::new();
        command(&mut out, &["INCRBY", "k", "1"]);
        assert_eq!(out, b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$1\r\n1\r\n");
    }

    #[test]
    fn redis_urls_are_checked() {
        assert!(RedisStore::new("redis://127.0.0.1:6379").is_ok());
        assert!(RedisStore::new("127.0.0.1:6379").is_err());
        assert!(RedisStore::new("redis://").is_err());
    }
}
