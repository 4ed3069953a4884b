//! Accepting invitations: when an invited email gets a verified account, each pending
//! invitation becomes a binding, with the granting rule checked again against the
//! inviter as things stand now (an inviter who lost the right cannot grant through an
//! old invitation).

use serde::Serialize;
use serde_json::json;

use super::{AccessError, Ctx, parse_member};
use crate::iam::evaluator::{PrincipalKind, PrincipalRef};
use crate::iam::names::{self, Kind};
use crate::server::sync;
use crate::store::iam::{self, BindingRow};
use crate::store::{self, StoreError, audit, directory};

/// What became of one invitation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Where.
    pub scope: String,
    /// The role.
    pub role: String,
    /// Whether the binding was created (false: the inviter can no longer grant it).
    pub accepted: bool,
}

async fn inviter(ctx: &Ctx<'_>, label: &str) -> Result<Option<PrincipalRef>, AccessError> {
    Ok(match parse_member(label) {
        Some((PrincipalKind::User, email)) => ctx
            .store
            .user_by_email(email)
            .await?
            .map(|u| PrincipalRef::user(u.id)),
        Some((PrincipalKind::ServiceAccount, client_id)) => ctx
            .store
            .service_account_by_client_id(client_id)
            .await?
            .map(|s| PrincipalRef::service_account(s.id)),
        _ => None,
    })
}

/// Creates a binding unless it exists.
async fn bind(
    tx: &mut sqlx::AnyConnection,
    user_id: &str,
    role: &str,
    scope: &str,
    expires_at: Option<i64>,
) -> Result<(), AccessError> {
    let created = iam::insert_binding(
        tx,
        &BindingRow {
            id: uuid::Uuid::new_v4().to_string(),
            scope: scope.to_owned(),
            role: role.to_owned(),
            principal_kind: "user".into(),
            principal_id: user_id.to_owned(),
            expires_at,
        },
    )
    .await;
    match created {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Turns the invitations of `email` into bindings of the verified user `user_id`.
pub async fn accept(
    ctx: &Ctx<'_>,
    user_id: &str,
    email: &str,
) -> Result<Vec<Outcome>, AccessError> {
    let pending = ctx.store.invitations_for(email).await?;
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let catalog = ctx.evaluator.roles().catalog();
    let defaults = &catalog.on_organization_create;
    let mut decided = Vec::with_capacity(pending.len());
    for inv in &pending {
        let by = inviter(ctx, &inv.invited_by).await?;
        let can = |role: &str, scope: &str| {
            by.as_ref()
                .is_some_and(|p| ctx.evaluator.can_grant(p, role, scope, ctx.now).is_ok())
        };
        let ok = can(&inv.role, &inv.scope) && inv.expires_at.is_none_or(|e| e > ctx.now);
        // Joining an organization of a preset with a default project (StackPath's
        // default stack) also gives the member its role there, if the inviter can.
        let joins_org = names::parse(&inv.scope).is_some_and(|p| p.kind == Kind::Organization);
        let member_binding = match (&defaults.default_project, &defaults.member_role) {
            (Some(project), Some(role)) if ok && joins_org => {
                let scope = format!("{}/projects/{}", inv.scope, project.slug);
                can(role, &scope).then(|| (role.clone(), scope))
            }
            _ => None,
        };
        decided.push((inv, ok, member_binding));
    }
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "invitation", email).await?;
    let mut outcomes = Vec::new();
    for (inv, ok, member_binding) in decided {
        if !directory::delete_invitation(&mut tx, &inv.id).await? {
            continue;
        }
        if ok {
            bind(&mut tx, user_id, &inv.role, &inv.scope, inv.expires_at).await?;
        }
        if let Some((role, scope)) = &member_binding {
            bind(&mut tx, user_id, role, scope, None).await?;
        }
        audit::append(
            &mut tx,
            seq,
            audit::NewAuditEvent {
                actor: &format!("user:{email}"),
                action: if ok {
                    "invitation.accept"
                } else {
                    "invitation.refuse"
                },
                target: &inv.scope,
                scope: &inv.scope,
                before: Some(json!({ "invited_by": inv.invited_by })),
                after: Some(json!({ "role": inv.role, "accepted": ok })),
            },
        )
        .await?;
        outcomes.push(Outcome {
            scope: inv.scope.clone(),
            role: inv.role.clone(),
            accepted: ok,
        });
    }
    tx.commit().await.map_err(StoreError::from)?;
    sync::announce(ctx.ephemeral, seq).await;
    Ok(outcomes)
}
