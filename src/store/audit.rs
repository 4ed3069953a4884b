//! The append-only audit log: who did what to which target, with the state before and
//! after. Rows are only ever inserted; nothing in gatehouse updates or deletes them.

use serde::Serialize;
use serde_json::Value;
use sqlx::AnyConnection;

use super::{Result, Store};

/// One audit event, as written.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AuditEvent {
    /// Time-ordered unique id (UUIDv7).
    pub id: String,
    /// Change sequence number the event was written with.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who acted, written like a member (`user:<email>`), or `system:<command>`.
    pub actor: String,
    /// What was done, e.g. `organization.create`.
    pub action: String,
    /// The object acted on, by name or id.
    pub target: String,
    /// The resource the event belongs to (for filtering by scope).
    pub scope: String,
    /// State before, if any.
    pub before: Option<Value>,
    /// State after, if any.
    pub after: Option<Value>,
}

/// What a caller provides; id, sequence and time are filled in on append.
#[derive(Clone, Debug)]
pub struct NewAuditEvent<'a> {
    /// See [`AuditEvent::actor`].
    pub actor: &'a str,
    /// See [`AuditEvent::action`].
    pub action: &'a str,
    /// See [`AuditEvent::target`].
    pub target: &'a str,
    /// See [`AuditEvent::scope`].
    pub scope: &'a str,
    /// See [`AuditEvent::before`].
    pub before: Option<Value>,
    /// See [`AuditEvent::after`].
    pub after: Option<Value>,
}

/// Appends an event inside the transaction that made the change.
pub async fn append(tx: &mut AnyConnection, seq: i64, event: NewAuditEvent<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, seq, at, actor, action, target, scope, before_state, after_state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(seq)
    .bind(crate::now_unix())
    .bind(event.actor)
    .bind(event.action)
    .bind(event.target)
    .bind(event.scope)
    .bind(event.before.map(|v| v.to_string()))
    .bind(event.after.map(|v| v.to_string()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

type Row = (
    String,
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// Which audit events to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Events in this scope or beneath it (`*` or `None`: all).
    pub scope: Option<String>,
    /// Events by this actor, exactly as written (`user:<email>`, ...).
    pub actor: Option<String>,
    /// Events at or after this time (Unix seconds).
    pub since: Option<i64>,
}

impl Store {
    /// A page of audit events matching `filter` after `after_id` (exclusive), oldest
    /// first, at most `limit`.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let scope = filter.scope.as_deref().filter(|s| *s != "*");
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, seq, at, actor, action, target, scope, before_state, after_state \
             FROM audit_events WHERE id > $1 \
             AND ($2 = '' OR scope = $2 OR substr(scope, 1, length($2) + 1) = $2 || '/') \
             AND ($3 = '' OR actor = $3) AND at >= $4 ORDER BY id LIMIT $5",
        )
        .bind(after_id.unwrap_or(""))
        .bind(scope.unwrap_or(""))
        .bind(filter.actor.as_deref().unwrap_or(""))
        .bind(filter.since.unwrap_or(0))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(event_from).collect())
    }

    /// Audit events after `after_id` (exclusive), oldest first, at most `limit`.
    pub async fn audit_events(
        &self,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, seq, at, actor, action, target, scope, before_state, after_state \
             FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(event_from).collect())
    }
}

fn event_from((id, seq, at, actor, action, target, scope, before, after): Row) -> AuditEvent {
    AuditEvent {
        id,
        seq,
        at,
        actor,
        action,
        target,
        scope,
        before: before.and_then(|s| serde_json::from_str(&s).ok()),
        after: after.and_then(|s| serde_json::from_str(&s).ok()),
    }
}
