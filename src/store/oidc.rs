//! The OpenID provider's durable rows: consents, and refresh-token families.
//!
//! A family starts at a code exchange and gains one token per refresh. Each token is
//! stored by its hash; exchanging it marks it used in the same transaction that adds
//! its successor ([`Store::rotate_presented`]), so of two concurrent exchanges exactly
//! one wins, and presenting a used token again is recognized as reuse (the caller then
//! revokes the family).

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
    /// How (`amr` values, space-separated).
    pub amr: String,
    /// The hashed browser session it came from.
    pub session: Option<String>,
    /// Unix seconds after which no token of the family is accepted.
    pub expires_at: i64,
    /// Set when the family was revoked.
    pub revoked_at: Option<i64>,
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
    Option<String>,
);

const FAMILY_COLUMNS: &str = "f.id, f.user_id, f.client_id, f.scope, f.resource, f.auth_time, \
     f.session, f.expires_at, f.revoked_at, f.amr";

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
        amr: r.9.unwrap_or_else(|| "pwd".to_owned()),
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

/// A refresh token as presented: its family, generation and use, and the family's
/// user if the account still exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presented {
    /// The family.
    pub family: FamilyRow,
    /// The token's generation in the family.
    pub generation: i64,
    /// Whether it was already exchanged for its successor.
    pub used: bool,
    /// The family's user, when it still exists.
    pub user: Option<crate::store::iam::UserRow>,
}

impl Store {
    /// A refresh token with its family and user, in one query.
    pub async fn presented_refresh(&self, hash: &str) -> Result<Option<Presented>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FAMILY_COLUMNS}, t.generation, t.used_at, u.email, u.display_name, \
             u.password_hash, u.email_verified, u.disabled FROM refresh_tokens t \
             JOIN refresh_families f ON f.id = t.family_id \
             LEFT JOIN users u ON u.id = f.user_id WHERE t.token_hash = $1"
        )))
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        // More columns than sqlx decodes as a tuple: the family's by position, then
        // the token's and the user's (all null when the user is gone).
        use sqlx::Row;
        let family = family_from((
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
            row.try_get(6)?,
            row.try_get(7)?,
            row.try_get(8)?,
            row.try_get(9)?,
        ));
        let generation: i64 = row.try_get(10)?;
        let used_at: Option<i64> = row.try_get(11)?;
        let email: Option<String> = row.try_get(12)?;
        let display_name: Option<String> = row.try_get(13)?;
        let password_hash: Option<String> = row.try_get(14)?;
        let verified: Option<i64> = row.try_get(15)?;
        let disabled: Option<i64> = row.try_get(16)?;
        let user = match (email, display_name, password_hash, verified, disabled) {
            (Some(email), Some(display_name), password_hash, Some(verified), Some(disabled)) => {
                Some(crate::store::iam::UserRow {
                    id: family.user_id.clone(),
                    email,
                    display_name,
                    password_hash,
                    email_verified: super::flag(verified),
                    disabled: super::flag(disabled),
                })
            }
            _ => None,
        };
        Ok(Some(Presented {
            family,
            generation,
            used: used_at.is_some(),
            user,
        }))
    }

    /// Marks the token stored as `old_hash` (generation `generation` of `family`) used
    /// and adds its successor, in one transaction; false when another exchange used it
    /// first (the caller treats that as reuse).
    pub async fn rotate_presented(
        &self,
        old_hash: &str,
        new_hash: &str,
        family: &str,
        generation: i64,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let won = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(old_hash)
        .execute(&mut *tx)
        .await?;
        if won.rows_affected() != 1 {
            return Ok(false);
        }
        insert_token(&mut tx, new_hash, family, generation + 1, now).await?;
        tx.commit().await?;
        Ok(true)
    }

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
             session, created_at, expires_at, amr) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        .bind(&family.amr)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_write(e, "refresh family"))?;
        insert_token(&mut tx, hash, &family.id, 0, now).await?;
        tx.commit().await?;
        Ok(())
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
