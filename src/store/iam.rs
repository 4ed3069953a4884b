//! IAM rows: resources, users, service accounts and their secrets, OAuth clients and
//! role bindings. Writers take the caller's transaction so that one IAM operation,
//! its change-sequence bump and its audit event commit together.

use sqlx::AnyConnection;

use super::{Result, Store, StoreError, flag};

/// A resource of the tree (organization, folder, project, environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRow {
    /// Opaque id.
    pub id: String,
    /// The path name, e.g. `orgs/acme/projects/backend`.
    pub name: String,
    /// `organization`, `folder`, `project` or `environment`.
    pub kind: String,
    /// The parent's name; `None` for organizations (the instance root is their parent).
    pub parent: Option<String>,
    /// The last segment of the name.
    pub slug: String,
    /// Human-readable name.
    pub display_name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Set when deleted; the name stays reserved.
    pub deleted_at: Option<i64>,
}

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    /// Stable opaque id, the `sub` of its tokens.
    pub id: String,
    /// Normalized email address, the username.
    pub email: String,
    /// Human-readable name.
    pub display_name: String,
    /// PHC string of the argon2id hash, if the account has a password.
    pub password_hash: Option<String>,
    /// Whether the email address was verified (the account is active).
    pub email_verified: bool,
    /// Whether the account is disabled.
    pub disabled: bool,
}

/// A service account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountRow {
    /// Opaque id.
    pub id: String,
    /// OAuth client id used with client credentials.
    pub client_id: String,
    /// `<parent>/service-accounts/<slug>`.
    pub name: String,
    /// The organization or project it belongs to.
    pub parent: String,
    /// Its slug.
    pub slug: String,
    /// Human-readable name.
    pub display_name: String,
    /// Free text.
    pub description: String,
    /// Whether it is disabled.
    pub disabled: bool,
}

/// An OAuth client for browser login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRow {
    /// The client id.
    pub client_id: String,
    /// The resource it is registered under.
    pub parent: String,
    /// Shown on the consent page.
    pub display_name: String,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Public clients have no secret and must use PKCE.
    pub public_client: bool,
    /// First-party clients skip the consent page.
    pub first_party: bool,
    /// Identifier of the API its tokens are for by default.
    pub default_api: Option<String>,
    /// Keyed hash of the client secret (confidential clients).
    pub secret_hash: Option<String>,
}

/// A role binding: principal, role, scope and optional expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingRow {
    /// Opaque id.
    pub id: String,
    /// Name of the resource it is bound on; `*` is the instance root.
    pub scope: String,
    /// Role id.
    pub role: String,
    /// `user`, `serviceAccount` or `group`.
    pub principal_kind: String,
    /// The principal's id.
    pub principal_id: String,
    /// Unix seconds after which it no longer grants.
    pub expires_at: Option<i64>,
}

/// Inserts a resource; a name that exists or existed is a conflict.
pub async fn insert_resource(tx: &mut AnyConnection, r: &ResourceRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO resources (id, name, kind, parent, slug, display_name, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&r.id)
    .bind(&r.name)
    .bind(&r.kind)
    .bind(&r.parent)
    .bind(&r.slug)
    .bind(&r.display_name)
    .bind(r.created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| StoreError::from_write(e, &format!("resource {}", r.name)))?;
    Ok(())
}

/// Inserts a user; an email that exists is a conflict.
pub async fn insert_user(tx: &mut AnyConnection, u: &UserRow) -> Result<()> {
    let now = crate::now_unix();
    sqlx::query(
        "INSERT INTO users (id, email, display_name, password_hash, email_verified, disabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&u.id)
    .bind(&u.email)
    .bind(&u.display_name)
    .bind(&u.password_hash)
    .bind(i64::from(u.email_verified))
    .bind(i64::from(u.disabled))
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| StoreError::from_write(e, "user"))?;
    Ok(())
}

/// Inserts a service account.
pub async fn insert_service_account(tx: &mut AnyConnection, s: &ServiceAccountRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO service_accounts (id, client_id, name, parent, slug, display_name, description, disabled, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&s.id)
    .bind(&s.client_id)
    .bind(&s.name)
    .bind(&s.parent)
    .bind(&s.slug)
    .bind(&s.display_name)
    .bind(&s.description)
    .bind(i64::from(s.disabled))
    .bind(crate::now_unix())
    .execute(&mut *tx)
    .await
    .map_err(|e| StoreError::from_write(e, &format!("service account {}", s.name)))?;
    Ok(())
}

/// Stores a (hashed) service-account secret.
pub async fn insert_secret(
    tx: &mut AnyConnection,
    id: &str,
    service_account_id: &str,
    secret_hash: &str,
    expires_at: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO service_account_secrets (id, service_account_id, secret_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(service_account_id)
    .bind(secret_hash)
    .bind(crate::now_unix())
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Inserts an OAuth client.
pub async fn insert_client(tx: &mut AnyConnection, c: &ClientRow) -> Result<()> {
    let uris =
        serde_json::to_string(&c.redirect_uris).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO clients (client_id, parent, display_name, redirect_uris, public_client, first_party, default_api, secret_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&c.client_id)
    .bind(&c.parent)
    .bind(&c.display_name)
    .bind(uris)
    .bind(i64::from(c.public_client))
    .bind(i64::from(c.first_party))
    .bind(&c.default_api)
    .bind(&c.secret_hash)
    .bind(crate::now_unix())
    .execute(&mut *tx)
    .await
    .map_err(|e| StoreError::from_write(e, &format!("client {}", c.client_id)))?;
    Ok(())
}

/// Inserts a role binding.
pub async fn insert_binding(tx: &mut AnyConnection, b: &BindingRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO role_bindings (id, scope, role, principal_kind, principal_id, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&b.id)
    .bind(&b.scope)
    .bind(&b.role)
    .bind(&b.principal_kind)
    .bind(&b.principal_id)
    .bind(b.expires_at)
    .bind(crate::now_unix())
    .execute(&mut *tx)
    .await
    .map_err(|e| StoreError::from_write(e, "binding"))?;
    Ok(())
}

type ResourceTuple = (
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    Option<i64>,
);

fn resource_from(r: ResourceTuple) -> ResourceRow {
    ResourceRow {
        id: r.0,
        name: r.1,
        kind: r.2,
        parent: r.3,
        slug: r.4,
        display_name: r.5,
        created_at: r.6,
        deleted_at: r.7,
    }
}

type ServiceAccountTuple = (String, String, String, String, String, String, String, i64);
fn service_account_from(r: ServiceAccountTuple) -> ServiceAccountRow {
    ServiceAccountRow {
        id: r.0,
        client_id: r.1,
        name: r.2,
        parent: r.3,
        slug: r.4,
        display_name: r.5,
        description: r.6,
        disabled: flag(r.7),
    }
}

type UserTuple = (String, String, String, Option<String>, i64, i64);
type ClientTuple = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
);

const CLIENT_SELECT: &str = "SELECT client_id, parent, display_name, redirect_uris, public_client, \
     first_party, default_api, secret_hash FROM clients";

fn client_from(r: ClientTuple) -> Result<ClientRow> {
    Ok(ClientRow {
        client_id: r.0,
        parent: r.1,
        display_name: r.2,
        redirect_uris: serde_json::from_str(&r.3)
            .map_err(|e| StoreError::Corrupt(format!("client redirect_uris: {e}")))?,
        public_client: flag(r.4),
        first_party: flag(r.5),
        default_api: r.6,
        secret_hash: r.7,
    })
}

impl Store {
    /// Looks a resource up by name, deleted ones included.
    pub async fn resource(&self, name: &str) -> Result<Option<ResourceRow>> {
        let row: Option<ResourceTuple> = sqlx::query_as(
            "SELECT id, name, kind, parent, slug, display_name, created_at, deleted_at \
                 FROM resources WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(resource_from))
    }

    /// Looks a user up by normalized email.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        self.user_where("email", email).await
    }

    /// Looks a user up by id (the `sub` of its tokens).
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        self.user_where("id", id).await
    }

    async fn user_where(&self, column: &'static str, value: &str) -> Result<Option<UserRow>> {
        let row: Option<UserTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, email, display_name, password_hash, email_verified, disabled \
             FROM users WHERE {column} = $1"
        )))
        .bind(value)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| UserRow {
            id: r.0,
            email: r.1,
            display_name: r.2,
            password_hash: r.3,
            email_verified: flag(r.4),
            disabled: flag(r.5),
        }))
    }

    /// Looks a service account up by client id.
    pub async fn service_account_by_client_id(
        &self,
        client_id: &str,
    ) -> Result<Option<ServiceAccountRow>> {
        let row: Option<ServiceAccountTuple> = sqlx::query_as(
            "SELECT id, client_id, name, parent, slug, display_name, description, disabled \
             FROM service_accounts WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(service_account_from))
    }

    /// Hashes of the unexpired secrets of a service account.
    pub async fn secret_hashes(&self, service_account_id: &str, now: i64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT secret_hash FROM service_account_secrets \
             WHERE service_account_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(service_account_id)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(h,)| h).collect())
    }

    /// Looks an OAuth client up.
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRow>> {
        let row: Option<ClientTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{CLIENT_SELECT} WHERE client_id = $1"
        )))
        .bind(client_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(client_from).transpose()
    }

    /// Every OAuth client, for the node's in-memory view.
    pub async fn clients(&self) -> Result<Vec<ClientRow>> {
        let rows: Vec<ClientTuple> = sqlx::query_as(CLIENT_SELECT).fetch_all(self.pool()).await?;
        rows.into_iter().map(client_from).collect()
    }

    /// Every role binding, for loading the evaluator.
    pub async fn bindings(&self) -> Result<Vec<BindingRow>> {
        let rows: Vec<(String, String, String, String, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, scope, role, principal_kind, principal_id, expires_at \
             FROM role_bindings ORDER BY scope, role, principal_kind, principal_id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| BindingRow {
                id: r.0,
                scope: r.1,
                role: r.2,
                principal_kind: r.3,
                principal_id: r.4,
                expires_at: r.5,
            })
            .collect())
    }

    /// A page of the live children of `parent` (`None`: organizations) of `kind`, by
    /// name after `after`.
    pub async fn children(
        &self,
        parent: Option<&str>,
        kind: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<ResourceRow>> {
        let rows: Vec<ResourceTuple> = sqlx::query_as(
            "SELECT id, name, kind, parent, slug, display_name, created_at, deleted_at \
             FROM resources WHERE deleted_at IS NULL AND kind = $1 \
             AND COALESCE(parent, '') = $2 AND name > $3 ORDER BY name LIMIT $4",
        )
        .bind(kind)
        .bind(parent.unwrap_or(""))
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(resource_from).collect())
    }

    /// How many bindings a principal holds directly.
    pub async fn binding_count(&self, kind: &str, id: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM role_bindings WHERE principal_kind = $1 AND principal_id = $2",
        )
        .bind(kind)
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        Ok(n)
    }

    /// Live (not deleted) resources, parents before children.
    pub async fn resources(&self) -> Result<Vec<ResourceRow>> {
        let rows: Vec<ResourceTuple> = sqlx::query_as(
            "SELECT id, name, kind, parent, slug, display_name, created_at, deleted_at \
                 FROM resources WHERE deleted_at IS NULL ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(resource_from).collect())
    }
}

/// Changes a live resource's display name; tells whether it exists.
pub async fn set_resource_display_name(
    tx: &mut AnyConnection,
    name: &str,
    display_name: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE resources SET display_name = $1 WHERE name = $2 AND deleted_at IS NULL",
    )
    .bind(display_name)
    .bind(name)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Marks a user's email address verified; tells whether the user exists.
pub async fn set_user_verified(tx: &mut AnyConnection, id: &str) -> Result<bool> {
    let done = sqlx::query("UPDATE users SET email_verified = 1, updated_at = $1 WHERE id = $2")
        .bind(crate::now_unix())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Sets a user's password hash; tells whether the user exists.
pub async fn set_user_password(tx: &mut AnyConnection, id: &str, hash: &str) -> Result<bool> {
    let done = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(hash)
        .bind(crate::now_unix())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Renames a user; tells whether it exists.
pub async fn set_user_display_name(tx: &mut AnyConnection, id: &str, name: &str) -> Result<bool> {
    let done = sqlx::query("UPDATE users SET display_name = $1, updated_at = $2 WHERE id = $3")
        .bind(name)
        .bind(crate::now_unix())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Changes the role of a binding (role migration); tells whether it existed.
pub async fn set_binding_role(tx: &mut AnyConnection, id: &str, role: &str) -> Result<bool> {
    let done = sqlx::query("UPDATE role_bindings SET role = $1 WHERE id = $2")
        .bind(role)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes a binding; tells whether it existed.
pub async fn delete_binding(tx: &mut AnyConnection, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM role_bindings WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// How many live children a resource has: resources, and the service accounts,
/// groups and OAuth clients that belong to it.
pub async fn live_children(tx: &mut AnyConnection, name: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM resources WHERE parent = $1 AND deleted_at IS NULL) \
              + (SELECT COUNT(*) FROM service_accounts WHERE parent = $1) \
              + (SELECT COUNT(*) FROM groups WHERE org = $1) \
              + (SELECT COUNT(*) FROM clients WHERE parent = $1)",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    Ok(n)
}

/// Marks a resource deleted (its name stays reserved) and removes the bindings and
/// invitations on it; tells whether it was live.
pub async fn delete_resource(tx: &mut AnyConnection, name: &str) -> Result<bool> {
    let done =
        sqlx::query("UPDATE resources SET deleted_at = $1 WHERE name = $2 AND deleted_at IS NULL")
            .bind(crate::now_unix())
            .bind(name)
            .execute(&mut *tx)
            .await?;
    for sql in [
        "DELETE FROM role_bindings WHERE scope = $1",
        "DELETE FROM invitations WHERE scope = $1",
    ] {
        sqlx::query(sql).bind(name).execute(&mut *tx).await?;
    }
    Ok(done.rows_affected() > 0)
}

/// Deletes one secret of a service account; tells whether it existed.
pub async fn delete_secret(
    tx: &mut AnyConnection,
    service_account_id: &str,
    id: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "DELETE FROM service_account_secrets WHERE id = $1 AND service_account_id = $2",
    )
    .bind(id)
    .bind(service_account_id)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Registers a public key of a service account.
pub async fn insert_key(
    tx: &mut AnyConnection,
    id: &str,
    service_account_id: &str,
    public_key_pem: &str,
    expires_at: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO service_account_keys (id, service_account_id, public_key_pem, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(service_account_id)
    .bind(public_key_pem)
    .bind(crate::now_unix())
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    /// Looks a service account up by name.
    pub async fn service_account_by_name(&self, name: &str) -> Result<Option<ServiceAccountRow>> {
        let row: Option<ServiceAccountTuple> = sqlx::query_as(
            "SELECT id, client_id, name, parent, slug, display_name, description, disabled \
             FROM service_accounts WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(service_account_from))
    }
}

/// Whether a live resource has this name, read on `conn` (inside a write
/// transaction, so a concurrent delete cannot slip between check and write).
pub async fn resource_live_in(conn: &mut AnyConnection, name: &str) -> Result<bool> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT id FROM resources WHERE name = $1 AND deleted_at IS NULL")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.is_some())
}
