//! The OpenID provider's durable rows: consents, and refresh-token families.
//!
//! A family starts at a code exchange and gains one token per refresh. Each token is
//! stored by its hash; exchanging it marks it used in the same transaction that adds
//! its successor, so of two concurrent exchanges exactly one wins, and presenting a
//! used token again is recognized as reuse (the caller then revokes the family).

use sqlx::AnyConnection;

use super::{Result, Store, StoreError};

/// A refresh-token family: one grant to one client by one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyRow {
    /// Opaque id.
    pub id: String,
    /// The user it was granted by.
    pub user_id: String,
    /// The client it was granted to.
    pub client_id: String,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// The API (RFC 8707) the grant is for, if one was asked for.
    pub resource: Option<String>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The hashed browser session it came from.
    pub session: Option<String>,
    /// Unix seconds after which no token of the family is accepted.
    pub expires_at: i64,
    /// Set when the family was revoked.
    pub revoked_at: Option<i64>,
}

/// What presenting a refresh token found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// The token was current: it is now used, and `new_hash` is the family's token.
    Rotated(FamilyRow),
    /// The token was already used (rotated away): a reuse.
    Reused(FamilyRow),
    /// The family is revoked or expired.
    Dead(FamilyRow),
    /// No such token.
    Unknown,
}

type FamilyTuple = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
    i64,
    Option<i64>,
);

/// A token's generation and use, then its family's columns.
type TokenFamilyTuple = (
    i64,
    Option<i64>,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
    i64,
    Option<i64>,
);

const FAMILY_COLUMNS: &str = "f.id, f.user_id, f.client_id, f.scope, f.resource, f.auth_time, \
     f.session, f.expires_at, f.revoked_at";

fn family_from(r: FamilyTuple) -> FamilyRow {
    FamilyRow {
        id: r.0,
        user_id: r.1,
        client_id: r.2,
        scope: r.3,
        resource: r.4,
        auth_time: r.5,
        session: r.6,
        expires_at: r.7,
        revoked_at: r.8,
    }
}

async fn insert_token(
    tx: &mut AnyConnection,
    hash: &str,
    family: &str,
    generation: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, generation, created_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(hash)
    .bind(family)
    .bind(generation)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| StoreError::from_write(e, "refresh token"))?;
    Ok(())
}

/// Revokes every live family of a user (disabled or deleted), in the caller's
/// transaction; returns how many.
pub async fn revoke_user_families(
    tx: &mut AnyConnection,
    user_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE refresh_families SET revoked_at = $1, revoked_reason = $2 \
         WHERE user_id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected())
}

impl Store {
    /// The scopes a user consented to for a client.
    pub async fn consent(&self, user_id: &str, client_id: &str) -> Result<Vec<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT scopes FROM consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(self.pool())
                .await?;
        match row {
            None => Ok(Vec::new()),
            Some((json,)) => serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("consent scopes: {e}"))),
        }
    }

    /// Records consent to `scopes` (replacing what was consented before).
    pub async fn put_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<()> {
        let json = serde_json::to_string(scopes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO consents (user_id, client_id, scopes, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, \
             updated_at = excluded.updated_at",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(json)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Starts a family with its first token (stored by `hash`).
    pub async fn create_family(&self, family: &FamilyRow, hash: &str, now: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO refresh_families (id, user_id, client_id, scope, resource, auth_time, \
             session, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&family.id)
        .bind(&family.user_id)
        .bind(&family.client_id)
        .bind(&family.scope)
        .bind(&family.resource)
        .bind(family.auth_time)
        .bind(&family.session)
        .bind(now)
        .bind(family.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_write(e, "refresh family"))?;
        insert_token(&mut tx, hash, &family.id, 0, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Exchanges the token stored as `old_hash` for one stored as `new_hash`, if it is
    /// the family's current token, the family is alive and belongs to `client_id` (a
    /// token of another client's family is [`Redeemed::Unknown`], and left as it is).
    pub async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        client_id: &str,
        now: i64,
    ) -> Result<Redeemed> {
        let mut tx = self.begin().await?;
        let row: Option<TokenFamilyTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT t.generation, t.used_at, {FAMILY_COLUMNS} FROM refresh_tokens t \
                 JOIN refresh_families f ON f.id = t.family_id WHERE t.token_hash = $1"
        )))
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = row else {
            return Ok(Redeemed::Unknown);
        };
        let (generation, used_at) = (r.0, r.1);
        let family = family_from((r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10));
        if family.client_id != client_id {
            return Ok(Redeemed::Unknown);
        }
        if family.revoked_at.is_some() || family.expires_at <= now {
            return Ok(Redeemed::Dead(family));
        }
        if used_at.is_some() {
            return Ok(Redeemed::Reused(family));
        }
        let won = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(old_hash)
        .execute(&mut *tx)
        .await?;
        if won.rows_affected() != 1 {
            return Ok(Redeemed::Reused(family));
        }
        insert_token(&mut tx, new_hash, &family.id, generation + 1, now).await?;
        tx.commit().await?;
        Ok(Redeemed::Rotated(family))
    }

    /// The family of a token, whatever its state, and whether the token was already
    /// exchanged for its successor.
    pub async fn family_of(&self, hash: &str) -> Result<Option<(FamilyRow, bool)>> {
        let row: Option<TokenFamilyTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT t.generation, t.used_at, {FAMILY_COLUMNS} FROM refresh_tokens t \
             JOIN refresh_families f ON f.id = t.family_id WHERE t.token_hash = $1"
        )))
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| {
            (
                family_from((r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10)),
                r.1.is_some(),
            )
        }))
    }

    /// Revokes a family; tells whether it was alive.
    pub async fn revoke_family(&self, id: &str, reason: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE refresh_families SET revoked_at = $1, revoked_reason = $2 \
             WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Revokes every live family that came from a browser session (logout).
    pub async fn revoke_session_families(&self, session: &str, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE refresh_families SET revoked_at = $1, revoked_reason = 'logout' \
             WHERE session = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(session)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
