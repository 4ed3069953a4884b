//! Accepting invitations: when an invited email gets a verified account, each pending
//! invitation becomes a binding, with the granting rule checked again against the
//! inviter as things stand now (an inviter who lost the right cannot grant through an
//! old invitation).

use serde::Serialize;
use serde_json::json;

use super::{AccessError, Ctx, parse_member};
use crate::iam::evaluator::{PrincipalKind, PrincipalRef};
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
    let mut decided = Vec::with_capacity(pending.len());
    for inv in &pending {
        let ok = match inviter(ctx, &inv.invited_by).await? {
            Some(p) => ctx
                .evaluator
                .can_grant(&p, &inv.role, &inv.scope, ctx.now)
                .is_ok(),
            None => false,
        } && inv.expires_at.is_none_or(|e| e > ctx.now);
        decided.push((inv, ok));
    }
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "invitation", email).await?;
    let mut outcomes = Vec::new();
    for (inv, ok) in decided {
        if !directory::delete_invitation(&mut tx, &inv.id).await? {
            continue;
        }
        if ok {
            let created = iam::insert_binding(
                &mut tx,
                &BindingRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    scope: inv.scope.clone(),
                    role: inv.role.clone(),
                    principal_kind: "user".into(),
                    principal_id: user_id.to_owned(),
                    expires_at: inv.expires_at,
                },
            )
            .await;
            match created {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
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
