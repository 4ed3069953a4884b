//! Disabling and deleting users and service accounts. Either revokes what the
//! principal holds at once (a disabled principal holds nothing; a deleted one loses
//! its bindings, memberships and credentials), and is refused when it would leave an
//! organization without an owner.

use serde_json::json;

use super::{AccessError, Actor, Ctx, Warning};
use crate::iam::evaluator::{OwnerChange, PrincipalKind, PrincipalRef};
use crate::store;
use crate::store::directory::lifecycle;

/// What to do to a principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Disable (keeps the account and its bindings, which stop granting).
    Disable,
    /// Enable again.
    Enable,
    /// Delete with everything it holds.
    Delete,
}

/// Applies `change` to `principal` (a user or a service account). `resource` is where
/// the permission is checked: the instance root for users, the service account's
/// name for service accounts.
pub async fn change(
    ctx: &Ctx<'_>,
    actor: &Actor,
    principal: &PrincipalRef,
    resource: &str,
    change: Change,
) -> Result<Vec<Warning>, AccessError> {
    let (permission, table) = match (principal.kind, change) {
        (PrincipalKind::User, Change::Delete) => ("iam.users.delete", "user"),
        (PrincipalKind::User, _) => ("iam.users.update", "user"),
        (PrincipalKind::ServiceAccount, Change::Delete) => {
            ("iam.serviceAccounts.delete", "service_account")
        }
        (PrincipalKind::ServiceAccount, _) => ("iam.serviceAccounts.update", "service_account"),
        (PrincipalKind::Group, _) => {
            return Err(AccessError::Invalid {
                field: "principal".into(),
                message: "groups are not disabled".into(),
            });
        }
    };
    ctx.require(actor, permission, resource)?;
    let mut warnings = Vec::new();
    if change != Change::Enable {
        let removed = [principal.clone()];
        let orgs = ctx.evaluator.owned_orgs(principal);
        ctx.keep_owners(
            &orgs,
            &OwnerChange {
                removed: &removed,
                ..Default::default()
            },
            &mut warnings,
        )?;
    }
    if change != Change::Enable {
        let roles = ctx.evaluator.roles();
        if let Some(b) = ctx
            .evaluator
            .bindings_of(principal)
            .into_iter()
            .find(|b| roles.get(&b.role).is_some_and(|r| r.def.protected))
        {
            return Err(AccessError::Refused(format!(
                "it holds {} on {}, which cannot be removed",
                b.role, b.scope
            )));
        }
    }
    let owner_role = ctx.evaluator.roles().catalog().owner_role.clone();
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, table, &principal.id).await?;
    let owned = crate::store::directory::owner_scopes_in(&mut tx, principal, &owner_role).await?;
    let found = match (principal.kind, change) {
        (_, Change::Delete) => lifecycle::delete_principal(&mut tx, principal).await?,
        (PrincipalKind::User, c) => {
            lifecycle::set_user_disabled(&mut tx, &principal.id, c == Change::Disable).await?
        }
        (_, c) => {
            lifecycle::set_service_account_disabled(&mut tx, &principal.id, c == Change::Disable)
                .await?
        }
    };
    if !found {
        return Err(AccessError::NotFound(format!(
            "{}:{}",
            principal.kind.as_str(),
            principal.id
        )));
    }
    if change != Change::Enable {
        super::keep_owners_in(&mut tx, &owner_role, &owned).await?;
    }
    // What the user holds stops working with the same commit: refresh tokens now,
    // browser sessions at their next use (they are checked against the account).
    if principal.kind == PrincipalKind::User && change != Change::Enable {
        let reason = if change == Change::Delete {
            "user_deleted"
        } else {
            "user_disabled"
        };
        store::oidc::revoke_user_families(&mut tx, &principal.id, reason, crate::now_unix())
            .await?;
    }
    let action = format!(
        "{table}.{}",
        match change {
            Change::Disable => "disable",
            Change::Enable => "enable",
            Change::Delete => "delete",
        }
    );
    let target = format!("{}:{}", principal.kind.as_str(), principal.id);
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        &action,
        &target,
        resource,
        json!({ "change": action }),
    )
    .await?;
    if principal.kind == PrincipalKind::User && change != Change::Enable {
        end_sessions(ctx, &principal.id).await;
    }
    Ok(warnings)
}

/// Short-lived-state key of the time (milliseconds) up to which a user's sessions
/// are void.
pub fn sessions_void_key(user_id: &str) -> String {
    format!("sessions-void-before:{user_id}")
}

/// How long the mark is kept: no session lives longer (the most `session_ttl_secs`
/// accepts).
pub const SESSIONS_VOID_TTL: std::time::Duration = std::time::Duration::from_secs(2_592_000);

/// Voids every browser session the user has now, so that enabling the account again
/// does not bring them back.
pub(crate) async fn end_sessions(ctx: &Ctx<'_>, user_id: &str) {
    use crate::ephemeral::EphemeralStore;
    let now = crate::now_millis().to_string();
    if let Err(e) = ctx
        .ephemeral
        .put(
            &sessions_void_key(user_id),
            now.as_bytes(),
            SESSIONS_VOID_TTL,
        )
        .await
    {
        tracing::error!(error = %e, "sessions of a disabled user not voided; they end when used while it is disabled");
    }
}
