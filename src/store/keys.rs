//! Signing keys at rest. The private key is already encrypted by the caller
//! ([`crate::crypto::kek`]); this module only stores rows and their lifecycle times.

use super::{Result, Store, audit, bump_change};

/// A stored signing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRow {
    /// Key id, the JWS `kid`.
    pub kid: String,
    /// JWS algorithm.
    pub alg: String,
    /// Encrypted PKCS#8 document (base64url of nonce and ciphertext).
    pub private_key: String,
    /// The public JWK, as JSON text.
    pub public_jwk: String,
    /// Unix seconds when it was made (and first published).
    pub created_at: i64,
    /// When it starts signing.
    pub activates_at: i64,
    /// When it stops signing (a successor takes over).
    pub retires_at: Option<i64>,
    /// When it stops being published (every token it signed has expired).
    pub expires_at: Option<i64>,
    /// When it was revoked: unpublished at once.
    pub revoked_at: Option<i64>,
}

type Row = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn from_row(r: Row) -> KeyRow {
    KeyRow {
        kid: r.0,
        alg: r.1,
        private_key: r.2,
        public_jwk: r.3,
        created_at: r.4,
        activates_at: r.5,
        retires_at: r.6,
        expires_at: r.7,
        revoked_at: r.8,
    }
}

const COLUMNS: &str = "kid, alg, private_key, public_jwk, created_at, activates_at, retires_at, expires_at, revoked_at";

impl Store {
    /// Every stored key, oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<KeyRow>> {
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM signing_keys ORDER BY created_at, kid"
        )))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Stores a key that signs from now, unless some node already stored a usable one
    /// (the first start of an instance, or one whose keys all expired).
    /// Returns whether this key was stored.
    pub async fn insert_initial_key(&self, key: &KeyRow, now: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        // Bumping first takes the change-counter lock, so two nodes starting on an
        // empty PostgreSQL store serialize here and the second sees the first's key.
        let seq = bump_change(&mut tx, "keys", &key.kid).await?;
        let (existing,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM signing_keys WHERE revoked_at IS NULL \
             AND activates_at <= $1 AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if existing > 0 {
            return Ok(false);
        }
        insert(&mut tx, key).await?;
        audit::append(
            &mut tx,
            seq,
            key_event("system:serve", "signing_key.create", key),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Adds a successor key: every key without a retirement time retires when the new
    /// one activates, and stays published `publish_after_retire` seconds longer.
    pub async fn rotate_signing_key(
        &self,
        key: &KeyRow,
        publish_after_retire: i64,
        actor: &str,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE signing_keys SET retires_at = $1, expires_at = $2 \
             WHERE retires_at IS NULL AND revoked_at IS NULL",
        )
        .bind(key.activates_at)
        .bind(key.activates_at + publish_after_retire)
        .execute(&mut *tx)
        .await?;
        insert(&mut tx, key).await?;
        let seq = bump_change(&mut tx, "keys", &key.kid).await?;
        audit::append(&mut tx, seq, key_event(actor, "signing_key.rotate", key)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes a key at once; with `replacement`, stores a key that signs from now on
    /// in the same transaction. Returns false when no such unrevoked key exists.
    pub async fn revoke_signing_key(
        &self,
        kid: &str,
        replacement: Option<&KeyRow>,
        actor: &str,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let now = crate::now_unix();
        let done = sqlx::query(
            "UPDATE signing_keys SET revoked_at = $1 WHERE kid = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(kid)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let seq = bump_change(&mut tx, "keys", kid).await?;
        audit::append(
            &mut tx,
            seq,
            audit::NewAuditEvent {
                actor,
                action: "signing_key.revoke",
                target: kid,
                scope: "*",
                before: None,
                after: Some(serde_json::json!({ "revoked_at": now })),
            },
        )
        .await?;
        if let Some(key) = replacement {
            insert(&mut tx, key).await?;
            audit::append(&mut tx, seq, key_event(actor, "signing_key.create", key)).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes keys that are no longer published (expired or revoked) before `before`.
    pub async fn purge_signing_keys(&self, before: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM signing_keys WHERE (expires_at IS NOT NULL AND expires_at < $1) \
             OR (revoked_at IS NOT NULL AND revoked_at < $1)",
        )
        .bind(before)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

async fn insert(tx: &mut sqlx::AnyConnection, key: &KeyRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO signing_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )))
    .bind(&key.kid)
    .bind(&key.alg)
    .bind(&key.private_key)
    .bind(&key.public_jwk)
    .bind(key.created_at)
    .bind(key.activates_at)
    .bind(key.retires_at)
    .bind(key.expires_at)
    .bind(key.revoked_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| super::StoreError::from_write(e, "signing key"))?;
    Ok(())
}

fn key_event<'a>(actor: &'a str, action: &'a str, key: &'a KeyRow) -> audit::NewAuditEvent<'a> {
    audit::NewAuditEvent {
        actor,
        action,
        target: &key.kid,
        scope: "*",
        before: None,
        after: Some(serde_json::json!({
            "kid": key.kid, "alg": key.alg, "activates_at": key.activates_at,
        })),
    }
}
