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

pub(crate) async fn inviter(
    ctx: &Ctx<'_>,
    label: &str,
) -> Result<Option<PrincipalRef>, AccessError> {
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

/// Invites `email` to hold `role` on `scope` in the organization `org`
/// (`iam.invitations.create` there), if the inviter could grant it; the binding
/// appears when the invitee accepts, the granting rule checked again then.
pub async fn invite(
    ctx: &Ctx<'_>,
    actor: &super::Actor,
    org: &str,
    email: &str,
    role: &str,
    scope: &str,
) -> Result<directory::InvitationRow, AccessError> {
    ctx.require(actor, "iam.invitations.create", org)?;
    let email = crate::bootstrap::normalize_email(email).map_err(|m| AccessError::Invalid {
        field: "email".into(),
        message: m,
    })?;
    if !names::within(scope, org) {
        return Err(AccessError::Invalid {
            field: "scope".into(),
            message: format!("{scope} is not {org} or beneath it"),
        });
    }
    if ctx
        .store
        .resource(scope)
        .await?
        .is_none_or(|r| r.deleted_at.is_some())
    {
        return Err(AccessError::NotFound(scope.to_owned()));
    }
    ctx.evaluator
        .can_grant(&actor.principal, role, scope, ctx.now)
        .map_err(|e| AccessError::CannotGrant(e.to_string()))?;
    let inv = directory::InvitationRow {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.clone(),
        org: org.to_owned(),
        scope: scope.to_owned(),
        role: role.to_owned(),
        expires_at: None,
        invited_by: actor.label.clone(),
    };
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "invitation", &email).await?;
    directory::set_policy_version(&mut tx, scope, seq).await?;
    directory::insert_invitation(&mut tx, &inv)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                AccessError::Refused(format!("{email} is invited to {role} on {scope} already"))
            }
            e => e.into(),
        })?;
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        "invitation.create",
        &format!("user:{email}"),
        scope,
        json!({ "email": email, "role": role, "scope": scope }),
    )
    .await?;
    Ok(inv)
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
        // The policies that change get new etags, so a write from an older read fails.
        directory::set_policy_version(&mut tx, &inv.scope, seq).await?;
        if ok {
            bind(&mut tx, user_id, &inv.role, &inv.scope, inv.expires_at).await?;
        }
        if let Some((role, scope)) = &member_binding {
            bind(&mut tx, user_id, role, scope, None).await?;
            directory::set_policy_version(&mut tx, scope, seq).await?;
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
