//! Authentication events (token issuance, refusals, logins) go to the audit log from
//! a background writer, so the hot paths that produce them touch no database. The
//! queue is bounded: when the store falls behind, producers wait rather than lose
//! events.

use serde_json::Value;
use tokio::sync::mpsc;

use crate::store::{Store, audit};

/// How many events may wait for the writer.
const QUEUE: usize = 4096;
/// How many events one transaction writes at most.
const BATCH: usize = 256;

/// One authentication event.
#[derive(Debug)]
pub struct AuthEvent {
    actor: String,
    action: &'static str,
    scope: String,
    after: Value,
}

impl AuthEvent {
    /// An event by `actor` in `scope`.
    pub fn new(actor: String, action: &'static str, scope: &str, after: Value) -> AuthEvent {
        AuthEvent {
            actor,
            action,
            scope: scope.to_owned(),
            after,
        }
    }
}

/// The producers' side.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<AuthEvent>,
}

impl Events {
    /// Starts the writer on `store`.
    pub fn start(store: Store) -> Events {
        let (tx, mut rx) = mpsc::channel::<AuthEvent>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                if let Err(err) = write(&store, &batch).await {
                    tracing::error!(error = %err, events = batch.len(), "audit events not written");
                }
                batch.clear();
            }
        });
        Events { tx }
    }

    /// Queues an event (waits when the queue is full).
    pub async fn record(&self, event: AuthEvent) {
        let _ = self.tx.send(event).await;
    }

    /// Queues an event unless the queue is full (then it is dropped and counted in
    /// the log): for events an attacker can produce at will.
    pub fn record_lossy(&self, event: AuthEvent) {
        if self.tx.try_send(event).is_err() {
            tracing::warn!("audit queue full: a refused-authentication event was dropped");
        }
    }

    /// Waits (at most `limit`) until every queued event is written.
    pub async fn drain(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.tx.capacity() < self.tx.max_capacity() && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Writes a batch of events in one transaction.
async fn write(store: &Store, events: &[AuthEvent]) -> crate::store::Result<()> {
    let seq = store.current_seq().await?;
    let mut tx = store.begin().await?;
    for e in events {
        audit::append(
            &mut tx,
            seq,
            audit::NewAuditEvent {
                actor: &e.actor,
                action: e.action,
                target: &e.actor,
                scope: &e.scope,
                before: None,
                after: Some(e.after.clone()),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
