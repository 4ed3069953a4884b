//! Short-lived state: values with a time-to-live, one-time values taken atomically,
//! counters that expire, and change notices between nodes.
//!
//! Two implementations of one contract, [`EphemeralStore`]: process memory (the
//! default, one node) and Redis (shared by every node). Nothing here is durable: losing
//! it logs people out and resets rate limits, never loses IAM data.

mod memory;
mod redis;

use std::future::Future;
use std::time::Duration;

use tokio::sync::broadcast;

pub use memory::MemoryStore;
pub use redis::RedisStore;

/// Why a short-lived state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    /// The backing service cannot be reached.
    #[error("short-lived state unavailable: {0}")]
    Unavailable(String),
}

/// Result of short-lived state operations.
pub type Result<T> = std::result::Result<T, EphemeralError>;

/// A message published on a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The channel, e.g. `changes`.
    pub channel: String,
    /// The payload.
    pub message: String,
}

/// The contract both implementations keep (see the contract suite in `tests/`).
pub trait EphemeralStore: Send + Sync {
    /// Stores `value` under `key` for `ttl`, replacing any value.
    fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Stores `value` only if `key` holds nothing; tells whether it did.
    fn put_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// The value under `key`, if it has not expired.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// Removes and returns the value under `key`, atomically: of concurrent takers,
    /// exactly one gets it (one-time codes).
    fn take(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// Removes `key`.
    fn delete(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
    /// Increments the counter under `key` and returns the new value; a new counter
    /// expires `ttl` after its first increment.
    fn incr(&self, key: &str, ttl: Duration) -> impl Future<Output = Result<u64>> + Send;
    /// Publishes a notice to every subscriber on every node.
    fn publish(&self, channel: &str, message: &str) -> impl Future<Output = Result<()>> + Send;
    /// Receives every notice published from now on (possibly with gaps: notices are
    /// hints, and subscribers must also poll the durable change sequence).
    fn subscribe(&self) -> broadcast::Receiver<Notice>;
    /// Round trip to the backing service.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
}

/// The configured implementation.
#[derive(Clone)]
pub enum Ephemeral {
    /// Process memory.
    Memory(MemoryStore),
    /// Redis.
    Redis(RedisStore),
}

impl Ephemeral {
    /// Opens the store named by `redis_url`, or process memory when there is none.
    pub async fn open(redis_url: Option<&str>) -> Result<Ephemeral> {
        Ok(match redis_url {
            Some(url) => Ephemeral::Redis(RedisStore::connect(url).await?),
            None => Ephemeral::Memory(MemoryStore::new()),
        })
    }

    /// `memory` or `redis`.
    pub fn backend(&self) -> &'static str {
        match self {
            Ephemeral::Memory(_) => "memory",
            Ephemeral::Redis(_) => "redis",
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Ephemeral::Memory($s) => $e,
            Ephemeral::Redis($s) => $e,
        }
    };
}

impl EphemeralStore for Ephemeral {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        delegate!(self, s => s.put(key, value, ttl).await)
    }
    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        delegate!(self, s => s.put_if_absent(key, value, ttl).await)
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        delegate!(self, s => s.get(key).await)
    }
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>> {
        delegate!(self, s => s.take(key).await)
    }
    async fn delete(&self, key: &str) -> Result<()> {
        delegate!(self, s => s.delete(key).await)
    }
    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64> {
        delegate!(self, s => s.incr(key, ttl).await)
    }
    async fn publish(&self, channel: &str, message: &str) -> Result<()> {
        delegate!(self, s => s.publish(channel, message).await)
    }
    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        delegate!(self, s => s.subscribe())
    }
    async fn ping(&self) -> Result<()> {
        delegate!(self, s => s.ping().await)
    }
}

/// A time-to-live in whole milliseconds, at least one.
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
