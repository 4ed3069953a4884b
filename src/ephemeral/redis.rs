//! Short-lived state in Redis, shared by every node. Commands go through a
//! connection manager that reconnects after Redis restarts; notices arrive on a
//! pattern subscription that a background task re-establishes whenever it drops.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::broadcast;

use super::{EphemeralError, EphemeralStore, Notice, Result, ttl_millis};

/// Prefix of every key gatehouse writes.
const KEY_PREFIX: &str = "gatehouse:";
/// Prefix of notice channels.
const CHANNEL_PREFIX: &str = "gatehouse:notice:";
/// How long one command may take before the store counts as unreachable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Increments a counter and sets its expiry on the first increment, atomically.
const INCR_SCRIPT: &str = r"
local v = redis.call('INCR', KEYS[1])
if v == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v
";

/// Redis implementation; clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    notices: broadcast::Sender<Notice>,
    incr: redis::Script,
}

fn unavailable(e: redis::RedisError) -> EphemeralError {
    EphemeralError::Unavailable(e.to_string())
}

fn key(k: &str) -> String {
    format!("{KEY_PREFIX}{k}")
}

impl RedisStore {
    /// Connects (failing if Redis cannot be reached now) and starts the notice
    /// subscription task.
    pub async fn connect(url: &str) -> Result<RedisStore> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        let (notices, _) = broadcast::channel(1024);
        tokio::spawn(subscription(client, notices.clone()));
        Ok(RedisStore {
            conn,
            notices,
            incr: redis::Script::new(INCR_SCRIPT),
        })
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(unavailable)
    }
}

/// Keeps a pattern subscription to the notice channels, reconnecting with backoff.
async fn subscription(client: redis::Client, notices: broadcast::Sender<Notice>) {
    let mut delay = Duration::from_millis(100);
    loop {
        // Stop when every handle to the store is gone.
        if notices.receiver_count() == 0 && notices.strong_count() <= 1 {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub
                    .psubscribe(format!("{CHANNEL_PREFIX}*"))
                    .await
                    .is_ok()
                {
                    delay = Duration::from_millis(100);
                    let mut stream = pubsub.on_message();
                    while let Some(msg) = stream.next().await {
                        let channel = msg.get_channel_name();
                        let Some(channel) = channel.strip_prefix(CHANNEL_PREFIX) else {
                            continue;
                        };
                        let message: String = msg.get_payload().unwrap_or_default();
                        let _ = notices.send(Notice {
                            channel: channel.to_owned(),
                            message,
                        });
                    }
                }
                tracing::warn!("redis notice subscription lost; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "redis notice subscription failed; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

impl EphemeralStore for RedisStore {
    async fn put(&self, k: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.run::<()>(
            redis::cmd("SET")
                .arg(key(k))
                .arg(value)
                .arg("PX")
                .arg(ttl_millis(ttl)),
        )
        .await
    }

    async fn put_if_absent(&self, k: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(key(k))
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_millis(ttl)),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn get(&self, k: &str) -> Result<Option<Vec<u8>>> {
        self.run(redis::cmd("GET").arg(key(k))).await
    }

    async fn take(&self, k: &str) -> Result<Option<Vec<u8>>> {
        self.run(redis::cmd("GETDEL").arg(key(k))).await
    }

    async fn delete(&self, k: &str) -> Result<()> {
        self.run::<()>(redis::cmd("DEL").arg(key(k))).await
    }

    async fn incr(&self, k: &str, ttl: Duration) -> Result<u64> {
        let mut conn = self.conn.clone();
        self.incr
            .key(key(k))
            .arg(ttl_millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn publish(&self, channel: &str, message: &str) -> Result<()> {
        self.run::<()>(
            redis::cmd("PUBLISH")
                .arg(format!("{CHANNEL_PREFIX}{channel}"))
                .arg(message),
        )
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        let pong: String = self.run(&redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(EphemeralError::Unavailable(format!(
                "unexpected PING reply {pong:?}"
            )))
        }
    }
}
