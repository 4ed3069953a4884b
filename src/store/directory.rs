//! Loading the evaluator's input in one pass, and the IAM rows beyond the
//! foundation: groups and members, registered APIs and their permissions, custom
//! roles, policy versions and pending invitations.

use sqlx::AnyConnection;

use super::{Result, Store, StoreError, flag};
use crate::iam::catalog::{RoleDef, RoleKind};
use crate::iam::evaluator::{
    BindingInput, MembershipInput, PrincipalInput, PrincipalKind, PrincipalRef, PrincipalSlice,
    ScopeSlice,
};
use crate::iam::permissions::Permission;

/// Everything the evaluator is built from.
#[derive(Debug, Default)]
pub struct IamData {
    /// Users and service accounts with their state.
    pub principals: Vec<PrincipalInput>,
    /// Group memberships.
    pub memberships: Vec<MembershipInput>,
    /// Role bindings.
    pub bindings: Vec<BindingInput>,
    /// Permissions of registered APIs.
    pub permissions: Vec<Permission>,
    /// Custom roles of organizations.
    pub custom_roles: Vec<RoleDef>,
}

fn principal(kind: &str, id: String) -> Result<PrincipalRef> {
    let kind = PrincipalKind::parse(kind)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown principal kind {kind:?}")))?;
    Ok(PrincipalRef { kind, id })
}

type BindingTuple = (String, String, String, String, String, Option<i64>);

fn binding_from((id, scope, role, kind, pid, expires_at): BindingTuple) -> Result<BindingInput> {
    Ok(BindingInput {
        id,
        scope,
        role,
        principal: principal(&kind, pid)?,
        expires_at,
    })
}

/// A group row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    /// Opaque id.
    pub id: String,
    /// `orgs/<org>/groups/<slug>`.
    pub name: String,
    /// Its organization's name.
    pub org: String,
    /// Its slug.
    pub slug: String,
    /// Human-readable name.
    pub display_name: String,
}

/// A pending invitation: a binding for an email that has no verified account yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvitationRow {
    /// Opaque id.
    pub id: String,
    /// Normalized email.
    pub email: String,
    /// The organization it is for.
    pub org: String,
    /// Where the binding will be.
    pub scope: String,
    /// The role.
    pub role: String,
    /// Expiry of the binding it becomes.
    pub expires_at: Option<i64>,
    /// Who invited, written like a member.
    pub invited_by: String,
}

type InvitationTuple = (String, String, String, String, String, Option<i64>, String);

fn invitation_from(r: InvitationTuple) -> InvitationRow {
    InvitationRow {
        id: r.0,
        email: r.1,
        org: r.2,
        scope: r.3,
        role: r.4,
        expires_at: r.5,
        invited_by: r.6,
    }
}

impl Store {
    /// Loads every principal, membership, binding, registered permission and custom
    /// role.
    pub async fn load_iam(&self) -> Result<IamData> {
        let mut data = IamData::default();
        let users: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT id, email_verified, disabled FROM users")
                .fetch_all(self.pool())
                .await?;
        for (id, verified, disabled) in users {
            data.principals.push(PrincipalInput {
                principal: PrincipalRef::user(id),
                active: flag(verified) && !flag(disabled),
            });
        }
        let sas: Vec<(String, i64)> = sqlx::query_as("SELECT id, disabled FROM service_accounts")
            .fetch_all(self.pool())
            .await?;
        for (id, disabled) in sas {
            data.principals.push(PrincipalInput {
                principal: PrincipalRef::service_account(id),
                active: !flag(disabled),
            });
        }
        let groups: Vec<(String,)> = sqlx::query_as("SELECT id FROM groups")
            .fetch_all(self.pool())
            .await?;
        for (id,) in groups {
            data.principals.push(PrincipalInput {
                principal: PrincipalRef::group(id),
                active: true,
            });
        }
        let members: Vec<(String, String, String)> =
            sqlx::query_as("SELECT group_id, member_kind, member_id FROM group_members")
                .fetch_all(self.pool())
                .await?;
        for (group, kind, id) in members {
            data.memberships.push(MembershipInput {
                group,
                member: principal(&kind, id)?,
            });
        }
        let bindings: Vec<BindingTuple> = sqlx::query_as(
            "SELECT id, scope, role, principal_kind, principal_id, expires_at FROM role_bindings",
        )
        .fetch_all(self.pool())
        .await?;
        data.bindings.reserve(bindings.len());
        for row in bindings {
            data.bindings.push(binding_from(row)?);
        }
        let perms: Vec<(String, String)> =
            sqlx::query_as("SELECT name, description FROM api_permissions ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        data.permissions = perms
            .into_iter()
            .map(|(name, description)| Permission { name, description })
            .collect();
        let roles: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, description, permissions FROM custom_roles ORDER BY id")
                .fetch_all(self.pool())
                .await?;
        for (id, description, permissions) in roles {
            let permissions: Vec<String> = serde_json::from_str(&permissions)
                .map_err(|e| StoreError::Corrupt(format!("custom role {id}: {e}")))?;
            data.custom_roles.push(RoleDef {
                id,
                kind: RoleKind::Custom,
                description,
                permissions,
                exclude: Vec::new(),
                deprecated: None,
                protected: false,
            });
        }
        Ok(data)
    }

    /// One principal as stored now: its state, its groups (a group's members) and
    /// its bindings.
    pub async fn principal_slice(&self, p: &PrincipalRef) -> Result<PrincipalSlice> {
        let active = match p.kind {
            PrincipalKind::User => {
                let row: Option<(i64, i64)> =
                    sqlx::query_as("SELECT email_verified, disabled FROM users WHERE id = $1")
                        .bind(&p.id)
                        .fetch_optional(self.pool())
                        .await?;
                row.map(|(verified, disabled)| flag(verified) && !flag(disabled))
            }
            PrincipalKind::ServiceAccount => {
                let row: Option<(i64,)> =
                    sqlx::query_as("SELECT disabled FROM service_accounts WHERE id = $1")
                        .bind(&p.id)
                        .fetch_optional(self.pool())
                        .await?;
                row.map(|(disabled,)| !flag(disabled))
            }
            PrincipalKind::Group => {
                let row: Option<(String,)> = sqlx::query_as("SELECT id FROM groups WHERE id = $1")
                    .bind(&p.id)
                    .fetch_optional(self.pool())
                    .await?;
                row.map(|_| true)
            }
        };
        let related = if p.kind == PrincipalKind::Group {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT member_kind, member_id FROM group_members WHERE group_id = $1",
            )
            .bind(&p.id)
            .fetch_all(self.pool())
            .await?;
            rows.into_iter()
                .map(|(kind, id)| principal(&kind, id))
                .collect::<Result<_>>()?
        } else {
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT group_id FROM group_members WHERE member_kind = $1 AND member_id = $2",
            )
            .bind(p.kind.as_str())
            .bind(&p.id)
            .fetch_all(self.pool())
            .await?;
            rows.into_iter()
                .map(|(g,)| PrincipalRef::group(g))
                .collect()
        };
        let rows: Vec<BindingTuple> = sqlx::query_as(
            "SELECT id, scope, role, principal_kind, principal_id, expires_at FROM role_bindings \
             WHERE principal_kind = $1 AND principal_id = $2",
        )
        .bind(p.kind.as_str())
        .bind(&p.id)
        .fetch_all(self.pool())
        .await?;
        Ok(PrincipalSlice {
            principal: p.clone(),
            active,
            related,
            bindings: rows.into_iter().map(binding_from).collect::<Result<_>>()?,
        })
    }

    /// The bindings stored on `scope` and, with `subtree`, on everything beneath it.
    pub async fn scope_slice(&self, scope: &str, subtree: bool) -> Result<ScopeSlice> {
        let rows: Vec<BindingTuple> = if subtree {
            // LIKE narrows (it ignores ASCII case on SQLite); the exact test follows.
            let escaped = scope
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            sqlx::query_as(
                "SELECT id, scope, role, principal_kind, principal_id, expires_at \
                 FROM role_bindings WHERE scope = $1 OR scope LIKE $2 ESCAPE '\\'",
            )
            .bind(scope)
            .bind(format!("{escaped}/%"))
            .fetch_all(self.pool())
            .await?
        } else {
            sqlx::query_as(
                "SELECT id, scope, role, principal_kind, principal_id, expires_at \
                 FROM role_bindings WHERE scope = $1",
            )
            .bind(scope)
            .fetch_all(self.pool())
            .await?
        };
        let bindings = rows
            .into_iter()
            .filter(|r| r.1 == scope || crate::iam::names::is_proper_ancestor(scope, &r.1))
            .map(binding_from)
            .collect::<Result<_>>()?;
        Ok(ScopeSlice {
            scope: scope.to_owned(),
            subtree,
            bindings,
        })
    }

    /// Applies a role-migration plan in one transaction, each step audited; returns
    /// the change sequence written.
    pub async fn apply_role_migration(
        &self,
        steps: &[crate::iam::migrate::Step],
        actor: &str,
    ) -> Result<i64> {
        let mut tx = self.begin().await?;
        let seq = super::bump_change(&mut tx, "roles.migrate", "*").await?;
        for step in steps {
            let done = if step.duplicate {
                super::iam::delete_binding(&mut tx, &step.binding).await?
            } else {
                super::iam::set_binding_role(&mut tx, &step.binding, &step.to).await?
            };
            if !done {
                continue;
            }
            let target = format!("{}:{}", step.principal.kind.as_str(), step.principal.id);
            super::audit::append(
                &mut tx,
                seq,
                super::audit::NewAuditEvent {
                    actor,
                    action: "binding.migrate",
                    target: &target,
                    scope: &step.scope,
                    before: Some(serde_json::json!({ "role": step.from, "scope": step.scope })),
                    after: Some(serde_json::json!({
                        "role": step.to, "scope": step.scope, "merged_into_existing": step.duplicate,
                        "widens_reach": step.widens_reach, "added_permissions": step.added_permissions,
                    })),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(seq)
    }

    /// Looks a group up by name.
    pub async fn group_by_name(&self, name: &str) -> Result<Option<GroupRow>> {
        let row: Option<(String, String, String, String, String)> =
            sqlx::query_as("SELECT id, name, org, slug, display_name FROM groups WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|r| GroupRow {
            id: r.0,
            name: r.1,
            org: r.2,
            slug: r.3,
            display_name: r.4,
        }))
    }

    /// Pending invitations at a scope.
    pub async fn invitations_at(&self, scope: &str) -> Result<Vec<InvitationRow>> {
        let rows: Vec<InvitationTuple> = sqlx::query_as(
            "SELECT id, email, org, scope, role, expires_at, invited_by FROM invitations WHERE scope = $1 ORDER BY email",
        )
        .bind(scope)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(invitation_from).collect())
    }
}

/// Inserts a group.
pub async fn insert_group(tx: &mut AnyConnection, g: &GroupRow) -> Result<()> {
    sqlx::query("INSERT INTO groups (id, name, org, slug, display_name, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&g.id)
        .bind(&g.name)
        .bind(&g.org)
        .bind(&g.slug)
        .bind(&g.display_name)
        .bind(crate::now_unix())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_write(e, &format!("group {}", g.name)))?;
    Ok(())
}

/// Adds a member to a group (no-op if already a member).
pub async fn add_member(
    tx: &mut AnyConnection,
    group_id: &str,
    member: &PrincipalRef,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO group_members (group_id, member_kind, member_id, added_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (group_id, member_kind, member_id) DO NOTHING",
    )
    .bind(group_id)
    .bind(member.kind.as_str())
    .bind(&member.id)
    .bind(crate::now_unix())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Removes a member from a group; tells whether it was one.
pub async fn remove_member(
    tx: &mut AnyConnection,
    group_id: &str,
    member: &PrincipalRef,
) -> Result<bool> {
    let done = sqlx::query(
        "DELETE FROM group_members WHERE group_id = $1 AND member_kind = $2 AND member_id = $3",
    )
    .bind(group_id)
    .bind(member.kind.as_str())
    .bind(&member.id)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Registers an API, or adds permissions to it. A permission another API already
/// defines is a conflict.
pub async fn register_api(
    tx: &mut AnyConnection,
    identifier: &str,
    display_name: &str,
    permissions: &[Permission],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO apis (identifier, display_name, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (identifier) DO UPDATE SET display_name = excluded.display_name",
    )
    .bind(identifier)
    .bind(display_name)
    .bind(crate::now_unix())
    .execute(&mut *tx)
    .await?;
    for p in permissions {
        let owner: Option<(String,)> =
            sqlx::query_as("SELECT api FROM api_permissions WHERE name = $1")
                .bind(&p.name)
                .fetch_optional(&mut *tx)
                .await?;
        match owner {
            Some((api,)) if api != identifier => {
                return Err(StoreError::Conflict(format!(
                    "permission {} belongs to API {api}",
                    p.name
                )));
            }
            Some(_) => {
                sqlx::query("UPDATE api_permissions SET description = $1 WHERE name = $2")
                    .bind(&p.description)
                    .bind(&p.name)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO api_permissions (name, api, description) VALUES ($1, $2, $3)",
                )
                .bind(&p.name)
                .bind(identifier)
                .bind(&p.description)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// Inserts or replaces a custom role.
pub async fn put_custom_role(tx: &mut AnyConnection, role: &RoleDef, org: &str) -> Result<()> {
    let perms =
        serde_json::to_string(&role.permissions).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let now = crate::now_unix();
    sqlx::query(
        "INSERT INTO custom_roles (id, org, description, permissions, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (id) DO UPDATE SET description = excluded.description, permissions = excluded.permissions, updated_at = excluded.updated_at",
    )
    .bind(&role.id)
    .bind(org)
    .bind(&role.description)
    .bind(perms)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Sets a policy's version.
pub async fn set_policy_version(tx: &mut AnyConnection, scope: &str, version: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO policy_versions (scope, version) VALUES ($1, $2) \
         ON CONFLICT (scope) DO UPDATE SET version = excluded.version",
    )
    .bind(scope)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The version of a policy, read on `conn` (inside a write transaction, or not).
pub async fn policy_version_in(tx: &mut AnyConnection, scope: &str) -> Result<i64> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT version FROM policy_versions WHERE scope = $1")
            .bind(scope)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(row.map(|(v,)| v).unwrap_or(0))
}

/// A binding at a scope with its member written out (`user:<email>`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRow {
    /// The binding's id.
    pub id: String,
    /// The role.
    pub role: String,
    /// Who holds it.
    pub principal: PrincipalRef,
    /// The principal's email, client id or group name.
    pub label: String,
    /// Its expiry.
    pub expires_at: Option<i64>,
}

type PolicyTuple = (String, String, String, String, Option<i64>, Option<String>);

/// The bindings at `scope`, read on `conn`, with their members' labels.
pub async fn policy_rows(conn: &mut AnyConnection, scope: &str) -> Result<Vec<PolicyRow>> {
    let rows: Vec<PolicyTuple> = sqlx::query_as(
        "SELECT b.id, b.role, b.principal_kind, b.principal_id, b.expires_at, \
                COALESCE(u.email, s.client_id, g.name) \
         FROM role_bindings b \
         LEFT JOIN users u ON b.principal_kind = 'user' AND u.id = b.principal_id \
         LEFT JOIN service_accounts s ON b.principal_kind = 'serviceAccount' AND s.id = b.principal_id \
         LEFT JOIN groups g ON b.principal_kind = 'group' AND g.id = b.principal_id \
         WHERE b.scope = $1 ORDER BY b.role, b.principal_kind, b.principal_id",
    )
    .bind(scope)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(id, role, kind, pid, expires_at, label)| {
            Ok(PolicyRow {
                id,
                role,
                label: label.unwrap_or_else(|| pid.clone()),
                principal: principal(&kind, pid)?,
                expires_at,
            })
        })
        .collect()
}

/// Replaces the pending invitations at `scope` with `pending`.
pub async fn replace_invitations(
    tx: &mut AnyConnection,
    scope: &str,
    org: &str,
    pending: &[InvitationRow],
) -> Result<()> {
    sqlx::query("DELETE FROM invitations WHERE scope = $1")
        .bind(scope)
        .execute(&mut *tx)
        .await?;
    for inv in pending {
        insert_invitation(
            tx,
            &InvitationRow {
                org: org.to_owned(),
                scope: scope.to_owned(),
                ..inv.clone()
            },
        )
        .await?;
    }
    Ok(())
}

/// Adds one invitation; the same email, scope and role twice is a conflict.
pub async fn insert_invitation(tx: &mut AnyConnection, inv: &InvitationRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO invitations (id, email, org, scope, role, expires_at, invited_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&inv.id)
    .bind(&inv.email)
    .bind(&inv.org)
    .bind(&inv.scope)
    .bind(&inv.role)
    .bind(inv.expires_at)
    .bind(&inv.invited_by)
    .bind(crate::now_unix())
    .execute(&mut *tx)
    .await
    .map_err(|e| StoreError::from_write(e, &format!("invitation of {}", inv.email)))?;
    Ok(())
}

/// Principal state changes and removal (revoking what the principal held).
pub mod lifecycle {
    use super::*;

    /// Disables or enables a user; tells whether it exists.
    pub async fn set_user_disabled(
        tx: &mut AnyConnection,
        id: &str,
        disabled: bool,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(disabled))
            .bind(crate::now_unix())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Disables or enables a service account; tells whether it exists.
    pub async fn set_service_account_disabled(
        tx: &mut AnyConnection,
        id: &str,
        disabled: bool,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE service_accounts SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a principal with its bindings and memberships (and, for service
    /// accounts, its secrets and keys); tells whether it existed.
    pub async fn delete_principal(tx: &mut AnyConnection, p: &PrincipalRef) -> Result<bool> {
        for sql in [
            "DELETE FROM role_bindings WHERE principal_kind = $1 AND principal_id = $2",
            "DELETE FROM group_members WHERE member_kind = $1 AND member_id = $2",
        ] {
            sqlx::query(sql)
                .bind(p.kind.as_str())
                .bind(&p.id)
                .execute(&mut *tx)
                .await?;
        }
        let table = match p.kind {
            PrincipalKind::User => "users",
            PrincipalKind::ServiceAccount => {
                for sql in [
                    "DELETE FROM service_account_secrets WHERE service_account_id = $1",
                    "DELETE FROM service_account_keys WHERE service_account_id = $1",
                ] {
                    sqlx::query(sql).bind(&p.id).execute(&mut *tx).await?;
                }
                "service_accounts"
            }
            PrincipalKind::Group => "groups",
        };
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE id = $1"
        )))
        .bind(&p.id)
        .execute(&mut *tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

impl Store {
    /// Pending invitations for an email, every scope.
    pub async fn invitations_for(&self, email: &str) -> Result<Vec<InvitationRow>> {
        let rows: Vec<InvitationTuple> = sqlx::query_as(
            "SELECT id, email, org, scope, role, expires_at, invited_by FROM invitations WHERE email = $1 ORDER BY scope, role",
        )
        .bind(email)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(invitation_from).collect())
    }
}

/// Removes one invitation; tells whether it existed.
pub async fn delete_invitation(tx: &mut AnyConnection, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM invitations WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

impl Store {
    /// A registered API's display name and permissions.
    pub async fn api(&self, identifier: &str) -> Result<Option<(String, Vec<Permission>)>> {
        let api: Option<(String,)> =
            sqlx::query_as("SELECT display_name FROM apis WHERE identifier = $1")
                .bind(identifier)
                .fetch_optional(self.pool())
                .await?;
        let Some((display_name,)) = api else {
            return Ok(None);
        };
        let perms: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, description FROM api_permissions WHERE api = $1 ORDER BY name",
        )
        .bind(identifier)
        .fetch_all(self.pool())
        .await?;
        Ok(Some((
            display_name,
            perms
                .into_iter()
                .map(|(name, description)| Permission { name, description })
                .collect(),
        )))
    }
}

/// A service account's credentials as held in memory for client credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountCredentials {
    /// Its id, the `sub` of its tokens.
    pub id: String,
    /// Its client id.
    pub client_id: String,
    /// Its name.
    pub name: String,
    /// The organization or project it belongs to (its tokens are narrowed to it).
    pub parent: String,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Keyed hashes of its secrets, with their expiry.
    pub secrets: Vec<(String, Option<i64>)>,
    /// Its registered public keys (PEM) for `private_key_jwt`, with their expiry.
    pub keys: Vec<(String, Option<i64>)>,
}

impl Store {
    /// Every service account with its secrets.
    pub async fn service_account_credentials(&self) -> Result<Vec<ServiceAccountCredentials>> {
        let accounts: Vec<(String, String, String, String, i64)> =
            sqlx::query_as("SELECT id, client_id, name, parent, disabled FROM service_accounts")
                .fetch_all(self.pool())
                .await?;
        let secrets: Vec<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT service_account_id, secret_hash, expires_at FROM service_account_secrets",
        )
        .fetch_all(self.pool())
        .await?;
        let keys: Vec<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT service_account_id, public_key_pem, expires_at FROM service_account_keys",
        )
        .fetch_all(self.pool())
        .await?;
        type ByAccount = std::collections::HashMap<String, Vec<(String, Option<i64>)>>;
        let group = |rows: Vec<(String, String, Option<i64>)>| {
            let mut by = ByAccount::new();
            for (sa, value, expires_at) in rows {
                by.entry(sa).or_default().push((value, expires_at));
            }
            by
        };
        let mut secrets = group(secrets);
        let mut keys = group(keys);
        Ok(accounts
            .into_iter()
            .map(
                |(id, client_id, name, parent, disabled)| ServiceAccountCredentials {
                    secrets: secrets.remove(&id).unwrap_or_default(),
                    keys: keys.remove(&id).unwrap_or_default(),
                    id,
                    client_id,
                    name,
                    parent,
                    disabled: flag(disabled),
                },
            )
            .collect())
    }

    /// Identifiers of the registered APIs.
    pub async fn api_identifiers(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT identifier FROM apis ORDER BY identifier")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(i,)| i).collect())
    }
}

/// SQL: whether the principal `(kind, id)` columns name an active user or service
/// account.
const ACTIVE: &str = "((%K = 'user' AND EXISTS (SELECT 1 FROM users u WHERE u.id = %I AND u.email_verified = 1 AND u.disabled = 0)) \
     OR (%K = 'serviceAccount' AND EXISTS (SELECT 1 FROM service_accounts s WHERE s.id = %I AND s.disabled = 0)))";

/// The last-owner rule, evaluated on the rows of `conn` (inside the transaction
/// that makes a change, after making it): direct, non-expiring bindings of
/// `owner_role` on `org` to an active user, an active service account, or a group
/// with at least one active member.
pub async fn owner_count_in(conn: &mut AnyConnection, org: &str, owner_role: &str) -> Result<i64> {
    let direct = ACTIVE
        .replace("%K", "b.principal_kind")
        .replace("%I", "b.principal_id");
    let member = ACTIVE
        .replace("%K", "m.member_kind")
        .replace("%I", "m.member_id");
    let sql = format!(
        "SELECT COUNT(*) FROM role_bindings b WHERE b.scope = $1 AND b.role = $2 AND b.expires_at IS NULL AND \
         ({direct} OR (b.principal_kind = 'group' AND EXISTS \
           (SELECT 1 FROM group_members m WHERE m.group_id = b.principal_id AND {member})))"
    );
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(org)
        .bind(owner_role)
        .fetch_one(&mut *conn)
        .await?;
    Ok(n)
}

/// The scopes where `p` holds `owner_role`, directly or through a group, read on
/// `conn`.
pub async fn owner_scopes_in(
    conn: &mut AnyConnection,
    p: &PrincipalRef,
    owner_role: &str,
) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT scope FROM role_bindings WHERE role = $1 AND \
         ((principal_kind = $2 AND principal_id = $3) OR (principal_kind = 'group' AND principal_id IN \
           (SELECT group_id FROM group_members WHERE member_kind = $2 AND member_id = $3)))",
    )
    .bind(owner_role)
    .bind(p.kind.as_str())
    .bind(&p.id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(s,)| s).collect())
}
