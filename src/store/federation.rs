//! Federation's durable rows: identity providers managed through the admin API (their
//! client secrets sealed with the key-encryption key), the upstream identities linked
//! to accounts, and the group memberships a provider's claim mapping made.

use sqlx::AnyConnection;

use super::{Result, Store, StoreError};
use crate::iam::evaluator::PrincipalRef;

/// An identity provider as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderRow {
    /// Its slug.
    pub id: String,
    /// Everything but the secret, as JSON.
    pub settings: String,
    /// The sealed client secret.
    pub client_secret: String,
    /// Who created it, written like a member.
    pub created_by: String,
}

/// An upstream identity linked to an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRow {
    /// The upstream's issuer.
    pub issuer: String,
    /// The person's `sub` there.
    pub subject: String,
    /// The provider it came through.
    pub provider_id: String,
    /// The account.
    pub user_id: String,
    /// The address the upstream gave last.
    pub email: Option<String>,
    /// When it was linked.
    pub linked_at: i64,
    /// When it was last used to log in.
    pub last_login_at: Option<i64>,
}

type IdentityTuple = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
);

fn identity_from(r: IdentityTuple) -> IdentityRow {
    IdentityRow {
        issuer: r.0,
        subject: r.1,
        provider_id: r.2,
        user_id: r.3,
        email: r.4,
        linked_at: r.5,
        last_login_at: r.6,
    }
}

const IDENTITY_COLUMNS: &str =
    "issuer, subject, provider_id, user_id, email, linked_at, last_login_at";

/// The membership source of a provider's claim mapping.
pub fn mapping_source(provider_id: &str) -> String {
    format!("idp:{provider_id}")
}

impl Store {
    /// Every stored identity provider, by id.
    pub async fn identity_providers(&self) -> Result<Vec<ProviderRow>> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT id, settings, client_secret, created_by FROM identity_providers ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, settings, client_secret, created_by)| ProviderRow {
                id,
                settings,
                client_secret,
                created_by,
            })
            .collect())
    }

    /// The identity linked to (issuer, subject), if any.
    pub async fn federated_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<IdentityRow>> {
        let row: Option<IdentityTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {IDENTITY_COLUMNS} FROM federated_identities WHERE issuer = $1 AND subject = $2"
        )))
        .bind(issuer)
        .bind(subject)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(identity_from))
    }

    /// The identities linked to an account, oldest first.
    pub async fn federated_identities_of(&self, user_id: &str) -> Result<Vec<IdentityRow>> {
        let rows: Vec<IdentityTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {IDENTITY_COLUMNS} FROM federated_identities WHERE user_id = $1 \
             ORDER BY linked_at, provider_id"
        )))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(identity_from).collect())
    }

    /// Records a login through a linked identity.
    pub async fn touch_identity(
        &self,
        issuer: &str,
        subject: &str,
        email: Option<&str>,
        at: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE federated_identities SET last_login_at = $1, email = $2 \
             WHERE issuer = $3 AND subject = $4",
        )
        .bind(at)
        .bind(email)
        .bind(issuer)
        .bind(subject)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The groups `member` is in because of `source`'s mapping.
    pub async fn mapped_groups(&self, member: &PrincipalRef, source: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT group_id FROM group_members WHERE member_kind = $1 AND member_id = $2 \
             AND source = $3",
        )
        .bind(member.kind.as_str())
        .bind(&member.id)
        .bind(source)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(g,)| g).collect())
    }
}

/// Stores a new identity provider; a taken id is a conflict.
pub async fn insert_provider(tx: &mut AnyConnection, p: &ProviderRow) -> Result<()> {
    let now = crate::now_unix();
    sqlx::query(
        "INSERT INTO identity_providers (id, settings, client_secret, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(&p.id)
    .bind(&p.settings)
    .bind(&p.client_secret)
    .bind(&p.created_by)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| StoreError::from_write(e, "identity provider"))?;
    Ok(())
}

/// Replaces a stored provider's settings and secret; tells whether it existed.
pub async fn update_provider(tx: &mut AnyConnection, p: &ProviderRow) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE identity_providers SET settings = $1, client_secret = $2, updated_at = $3 \
         WHERE id = $4",
    )
    .bind(&p.settings)
    .bind(&p.client_secret)
    .bind(crate::now_unix())
    .bind(&p.id)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes a stored provider with its links; tells whether it existed. Memberships
/// its mapping made stay, as ordinary ones.
pub async fn delete_provider(tx: &mut AnyConnection, id: &str) -> Result<bool> {
    sqlx::query("DELETE FROM federated_identities WHERE provider_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE group_members SET source = NULL WHERE source = $1")
        .bind(mapping_source(id))
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM identity_providers WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Links an upstream identity to an account; an identity linked already is a
/// conflict.
pub async fn link_identity(tx: &mut AnyConnection, i: &IdentityRow) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO federated_identities ({IDENTITY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )))
    .bind(&i.issuer)
    .bind(&i.subject)
    .bind(&i.provider_id)
    .bind(&i.user_id)
    .bind(&i.email)
    .bind(i.linked_at)
    .bind(i.last_login_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| StoreError::from_write(e, "federated identity"))?;
    Ok(())
}

/// Unlinks one of an account's identities; tells whether it was linked.
pub async fn unlink_identity(
    tx: &mut AnyConnection,
    user_id: &str,
    issuer: &str,
    subject: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "DELETE FROM federated_identities WHERE user_id = $1 AND issuer = $2 AND subject = $3",
    )
    .bind(user_id)
    .bind(issuer)
    .bind(subject)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Adds a membership made by a claim mapping (one that exists already keeps its
/// source, so a mapping never takes over a membership an administrator made).
pub async fn add_mapped_member(
    tx: &mut AnyConnection,
    group_id: &str,
    member: &PrincipalRef,
    source: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO group_members (group_id, member_kind, member_id, added_at, source) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (group_id, member_kind, member_id) DO NOTHING",
    )
    .bind(group_id)
    .bind(member.kind.as_str())
    .bind(&member.id)
    .bind(crate::now_unix())
    .bind(source)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Ends a membership made by `source`'s mapping; tells whether there was one.
pub async fn remove_mapped_member(
    tx: &mut AnyConnection,
    group_id: &str,
    member: &PrincipalRef,
    source: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "DELETE FROM group_members WHERE group_id = $1 AND member_kind = $2 AND member_id = $3 \
         AND source = $4",
    )
    .bind(group_id)
    .bind(member.kind.as_str())
    .bind(&member.id)
    .bind(source)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() > 0)
}
