//! A resource's policy, read and written whole with an etag (DESIGN.md section 1):
//! bindings grouped by role and expiry, members written `user:<email>`,
//! `serviceAccount:<client_id>` or `group:orgs/<org>/groups/<slug>`, and emails
//! without a verified account listed as `pending_members` (invitations).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AccessError, Actor, Ctx, Warning, parse_member};
use crate::bootstrap::normalize_email;
use crate::iam::evaluator::{BindingInput, OwnerChange, PrincipalKind, PrincipalRef};
use crate::iam::names::{self, Kind, ROOT};
use crate::server::sync;
use crate::store::directory::{self, InvitationRow, PolicyRow};
use crate::store::{self, audit, iam};

/// One entry of a policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBinding {
    /// The role.
    pub role: String,
    /// Who holds it.
    #[serde(default)]
    pub members: Vec<String>,
    /// Invited emails without a verified account yet (read only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_members: Vec<String>,
    /// Unix seconds after which it no longer grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A resource's policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Changes with every write; a write must present the current one.
    pub etag: String,
    /// The bindings, sorted by role.
    pub bindings: Vec<PolicyBinding>,
}

/// A policy write's answer.
#[derive(Clone, Debug, Serialize)]
pub struct Written {
    /// The policy as stored now.
    pub policy: Policy,
    /// Deprecated roles, a single owner left.
    pub warnings: Vec<Warning>,
}

fn etag(version: i64) -> String {
    format!("{version:x}")
}

/// The organization a scope belongs to, or `None` for the root.
fn org_of(scope: &str) -> Option<&str> {
    names::parse(scope).map(|p| p.org)
}

async fn check_scope(ctx: &Ctx<'_>, scope: &str) -> Result<(), AccessError> {
    if scope == ROOT {
        return Ok(());
    }
    match ctx.store.resource(scope).await? {
        Some(r) if r.deleted_at.is_none() => Ok(()),
        _ => Err(AccessError::NotFound(scope.to_owned())),
    }
}

/// A pooled connection for reads outside a transaction.
async fn connection(ctx: &Ctx<'_>) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, AccessError> {
    Ok(ctx
        .store
        .pool()
        .acquire()
        .await
        .map_err(crate::store::StoreError::from)?)
}

/// Reads the policy of `scope` (`iam.policies.get`).
pub async fn get(ctx: &Ctx<'_>, actor: &Actor, scope: &str) -> Result<Policy, AccessError> {
    ctx.require(actor, "iam.policies.get", scope)?;
    check_scope(ctx, scope).await?;
    let mut conn = connection(ctx).await?;
    let version = directory::policy_version_in(&mut conn, scope).await?;
    let rows = directory::policy_rows(&mut conn, scope).await?;
    drop(conn);
    let invitations = ctx.store.invitations_at(scope).await?;
    Ok(assemble(version, &rows, &invitations))
}

type Grouped = BTreeMap<(String, Option<i64>), PolicyBinding>;

/// The entry of a policy for a role and expiry, made on first use.
fn slot<'g>(
    grouped: &'g mut Grouped,
    role: &str,
    expires_at: Option<i64>,
) -> &'g mut PolicyBinding {
    grouped
        .entry((role.to_owned(), expires_at))
        .or_insert_with(|| PolicyBinding {
            role: role.to_owned(),
            expires_at,
            ..Default::default()
        })
}

fn assemble(version: i64, rows: &[PolicyRow], invitations: &[InvitationRow]) -> Policy {
    let mut grouped = Grouped::new();
    for r in rows {
        slot(&mut grouped, &r.role, r.expires_at)
            .members
            .push(format!("{}:{}", r.principal.kind.as_str(), r.label));
    }
    for i in invitations {
        slot(&mut grouped, &i.role, i.expires_at)
            .pending_members
            .push(format!("user:{}", i.email));
    }
    let mut bindings: Vec<PolicyBinding> = grouped.into_values().collect();
    for b in &mut bindings {
        b.members.sort();
        b.pending_members.sort();
    }
    Policy {
        etag: etag(version),
        bindings,
    }
}

/// A resolved entry of the policy being written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Entry {
    role: String,
    principal: PrincipalRef,
    expires_at: Option<i64>,
}

/// Resolves members to principals; emails without a verified account become pending.
async fn resolve(
    ctx: &Ctx<'_>,
    scope: &str,
    bindings: &[PolicyBinding],
) -> Result<(Vec<Entry>, Vec<(String, String, Option<i64>)>), AccessError> {
    let roles = ctx.evaluator.roles();
    let scope_org = org_of(scope);
    let mut entries = Vec::new();
    let mut pending = Vec::new();
    for (i, b) in bindings.iter().enumerate() {
        let field = |f: &str| format!("bindings[{i}].{f}");
        let invalid = |f: &str, m: String| AccessError::Invalid {
            field: field(f),
            message: m,
        };
        let Some(role) = roles.get(&b.role) else {
            return Err(invalid("role", format!("unknown role {:?}", b.role)));
        };
        if let Some(org) = &role.org
            && Some(org.as_str()) != scope_org
        {
            return Err(invalid(
                "role",
                format!("custom role {} can only be bound within {org}", b.role),
            ));
        }
        if let Some(at) = b.expires_at
            && at <= ctx.now
        {
            return Err(invalid("expires_at", "must be in the future".into()));
        }
        if !b.pending_members.is_empty() {
            return Err(invalid(
                "pending_members",
                "is read only; write invitees under members".into(),
            ));
        }
        for (j, member) in b.members.iter().enumerate() {
            let f = format!("members[{j}]");
            let Some((kind, value)) = parse_member(member) else {
                return Err(invalid(
                    &f,
                    format!(
                        "{member:?} is not user:<email>, serviceAccount:<client_id> or group:<name>"
                    ),
                ));
            };
            let principal = match kind {
                PrincipalKind::User => {
                    let email = normalize_email(value).map_err(|e| invalid(&f, e))?;
                    match ctx.store.user_by_email(&email).await? {
                        Some(u) if u.email_verified => PrincipalRef::user(u.id),
                        // No verified account: an invitation, with the same answer shape.
                        _ => {
                            pending.push((b.role.clone(), email, b.expires_at));
                            continue;
                        }
                    }
                }
                PrincipalKind::ServiceAccount => {
                    match ctx.store.service_account_by_client_id(value).await? {
                        Some(sa) => PrincipalRef::service_account(sa.id),
                        None => {
                            return Err(invalid(
                                &f,
                                format!("no service account has client_id {value:?}"),
                            ));
                        }
                    }
                }
                PrincipalKind::Group => match ctx.store.group_by_name(value).await? {
                    Some(g) if Some(g.org.as_str()) == scope_org => PrincipalRef::group(g.id),
                    Some(g) => {
                        return Err(invalid(
                            &f,
                            format!("group {} can only be bound within {}", g.name, g.org),
                        ));
                    }
                    None => return Err(invalid(&f, format!("no group is named {value:?}"))),
                },
            };
            entries.push(Entry {
                role: b.role.clone(),
                principal,
                expires_at: b.expires_at,
            });
        }
    }
    let mut seen = HashSet::new();
    entries.retain(|e| seen.insert((e.role.clone(), e.principal.clone())));
    let mut seen = HashSet::new();
    pending.retain(|(role, email, _)| seen.insert((role.clone(), email.clone())));
    Ok((entries, pending))
}

/// Writes the policy of `scope` whole (`iam.policies.set`): refused with a stale
/// etag, when the caller could not grant an added binding, when a protected binding
/// would change, or when the organization would be left without an owner.
pub async fn set(
    ctx: &Ctx<'_>,
    actor: &Actor,
    scope: &str,
    expected_etag: &str,
    bindings: &[PolicyBinding],
) -> Result<Written, AccessError> {
    ctx.require(actor, "iam.policies.set", scope)?;
    check_scope(ctx, scope).await?;
    let (entries, pending) = resolve(ctx, scope, bindings).await?;
    let roles = ctx.evaluator.roles();

    let current = directory::policy_rows(&mut *connection(ctx).await?, scope).await?;
    let old: HashSet<Entry> = current
        .iter()
        .map(|r| Entry {
            role: r.role.clone(),
            principal: r.principal.clone(),
            expires_at: r.expires_at,
        })
        .collect();
    let new: HashSet<Entry> = entries.iter().cloned().collect();
    let added: Vec<&Entry> = new.difference(&old).collect();
    let removed: Vec<&Entry> = old.difference(&new).collect();

    for e in added.iter().chain(&removed) {
        if roles.get(&e.role).is_some_and(|r| r.def.protected) {
            return Err(AccessError::Refused(format!(
                "bindings of {} cannot be added, edited or removed",
                e.role
            )));
        }
    }
    let mut warnings = Vec::new();
    let mut granted: Vec<&str> = added.iter().map(|e| e.role.as_str()).collect();
    granted.extend(pending.iter().map(|(role, _, _)| role.as_str()));
    granted.sort_unstable();
    granted.dedup();
    for role in granted {
        ctx.evaluator
            .can_grant(&actor.principal, role, scope, ctx.now)
            .map_err(|e| AccessError::CannotGrant(e.to_string()))?;
        if let Some(d) = roles.get(role).and_then(|r| r.def.deprecated.clone()) {
            warnings.push(Warning::DeprecatedRole {
                role: role.to_owned(),
                replacement: d.replacement,
                end_of_life: d.end_of_life,
            });
        }
    }
    if names::parse(scope).is_some_and(|p| p.kind == Kind::Organization) {
        let proposed: Vec<BindingInput> = entries
            .iter()
            .map(|e| BindingInput {
                id: String::new(),
                scope: scope.to_owned(),
                role: e.role.clone(),
                principal: e.principal.clone(),
                expires_at: e.expires_at,
            })
            .collect();
        ctx.keep_owners(
            &[scope.to_owned()],
            &OwnerChange {
                policy: Some(&proposed),
                ..Default::default()
            },
            &mut warnings,
        )?;
    }

    let before = assemble(0, &current, &ctx.store.invitations_at(scope).await?);
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "policy", scope).await?;
    if etag(directory::policy_version_in(&mut tx, scope).await?) != expected_etag {
        return Err(AccessError::StaleEtag);
    }
    if scope != ROOT && !iam::resource_live_in(&mut tx, scope).await? {
        return Err(AccessError::NotFound(scope.to_owned()));
    }
    for r in &current {
        let e = Entry {
            role: r.role.clone(),
            principal: r.principal.clone(),
            expires_at: r.expires_at,
        };
        if removed.contains(&&e) {
            iam::delete_binding(&mut tx, &r.id).await?;
        }
    }
    for e in &added {
        iam::insert_binding(
            &mut tx,
            &iam::BindingRow {
                id: uuid::Uuid::new_v4().to_string(),
                scope: scope.to_owned(),
                role: e.role.clone(),
                principal_kind: e.principal.kind.as_str().to_owned(),
                principal_id: e.principal.id.clone(),
                expires_at: e.expires_at,
            },
        )
        .await?;
    }
    let invitations: Vec<InvitationRow> = pending
        .iter()
        .map(|(role, email, expires_at)| InvitationRow {
            id: uuid::Uuid::new_v4().to_string(),
            email: email.clone(),
            org: org_of(scope).unwrap_or(ROOT).to_owned(),
            scope: scope.to_owned(),
            role: role.clone(),
            expires_at: *expires_at,
            invited_by: actor.label.clone(),
        })
        .collect();
    directory::replace_invitations(&mut tx, scope, org_of(scope).unwrap_or(ROOT), &invitations)
        .await?;
    directory::set_policy_version(&mut tx, scope, seq).await?;
    super::keep_owners_in(&mut tx, &roles.catalog().owner_role, &[scope.to_owned()]).await?;
    let after = {
        let rows = directory::policy_rows(&mut tx, scope).await?;
        assemble(seq, &rows, &invitations)
    };
    audit::append(
        &mut tx,
        seq,
        audit::NewAuditEvent {
            actor: &actor.label,
            action: "policy.set",
            target: scope,
            scope,
            before: Some(json!(before.bindings)),
            after: Some(json!(after.bindings)),
        },
    )
    .await?;
    tx.commit().await.map_err(crate::store::StoreError::from)?;
    sync::announce(ctx.ephemeral, seq).await;
    Ok(Written {
        policy: after,
        warnings,
    })
}
