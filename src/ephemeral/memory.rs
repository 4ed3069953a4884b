//! Short-lived state in process memory, for a single node. Expiry uses tokio's clock,
//! so tests can pause and advance time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{EphemeralStore, Notice, Result};

/// Expired entries are swept after this many writes.
const SWEEP_EVERY: u32 = 1024;

enum Value {
    Bytes(Vec<u8>),
    Counter(u64),
}

struct Entry {
    value: Value,
    expires: Instant,
}

/// In-memory implementation; clones share the same map.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Mutex<HashMap<String, Entry>>,
    writes: AtomicU32,
    notices: broadcast::Sender<Notice>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        let (notices, _) = broadcast::channel(1024);
        MemoryStore {
            inner: Arc::new(Inner {
                entries: Mutex::new(HashMap::new()),
                writes: AtomicU32::new(0),
                notices,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written, so a
        // poisoned map is still consistent.
        self.inner
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the map for a write, sweeping expired entries now and then.
    fn lock_for_write(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        let mut map = self.lock();
        if self.inner.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            let now = Instant::now();
            map.retain(|_, e| e.expires > now);
        }
        map
    }

    fn live<'a>(map: &'a mut HashMap<String, Entry>, key: &str) -> Option<&'a mut Entry> {
        let now = Instant::now();
        if map.get(key).is_some_and(|e| e.expires <= now) {
            map.remove(key);
        }
        map.get_mut(key)
    }
}

fn bytes(entry: &Entry) -> Option<Vec<u8>> {
    match &entry.value {
        Value::Bytes(b) => Some(b.clone()),
        Value::Counter(n) => Some(n.to_string().into_bytes()),
    }
}

impl EphemeralStore for MemoryStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let expires = Instant::now() + ttl;
        self.lock_for_write().insert(
            key.to_owned(),
            Entry {
                value: Value::Bytes(value.to_vec()),
                expires,
            },
        );
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        let mut map = self.lock_for_write();
        if Self::live(&mut map, key).is_some() {
            return Ok(false);
        }
        let expires = Instant::now() + ttl;
        map.insert(
            key.to_owned(),
            Entry {
                value: Value::Bytes(value.to_vec()),
                expires,
            },
        );
        Ok(true)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut map = self.lock();
        Ok(Self::live(&mut map, key).and_then(|e| bytes(e)))
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut map = self.lock();
        Self::live(&mut map, key);
        Ok(map.remove(key).and_then(|e| bytes(&e)))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.lock().remove(key);
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64> {
        let mut map = self.lock_for_write();
        if let Some(entry) = Self::live(&mut map, key) {
            let next = match &entry.value {
                Value::Counter(n) => n.saturating_add(1),
                Value::Bytes(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
                    .saturating_add(1),
            };
            entry.value = Value::Counter(next);
            return Ok(next);
        }
        let expires = Instant::now() + ttl;
        map.insert(
            key.to_owned(),
            Entry {
                value: Value::Counter(1),
                expires,
            },
        );
        Ok(1)
    }

    async fn publish(&self, channel: &str, message: &str) -> Result<()> {
        // No subscriber is not an error: notices are hints.
        let _ = self.inner.notices.send(Notice {
            channel: channel.to_owned(),
            message: message.to_owned(),
        });
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.inner.notices.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
