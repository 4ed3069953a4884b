//! Group membership. Adding a member grants every binding of the group, so the
//! granting rule applies to each; removing one may empty a group that owns an
//! organization, so the last-owner rule applies.

use serde_json::json;

use super::{AccessError, Actor, Ctx, Warning, parse_member};
use crate::bootstrap::normalize_email;
use crate::iam::evaluator::{OwnerChange, PrincipalKind, PrincipalRef};
use crate::iam::names;
use crate::store;
use crate::store::directory::{self, GroupRow};

async fn group(ctx: &Ctx<'_>, name: &str) -> Result<GroupRow, AccessError> {
    ctx.store
        .group_by_name(name)
        .await?
        .ok_or_else(|| AccessError::NotFound(name.to_owned()))
}

/// Resolves a member (`user:<email>` of a verified account, or
/// `serviceAccount:<client_id>` of the group's organization).
async fn member(
    ctx: &Ctx<'_>,
    group: &GroupRow,
    member: &str,
) -> Result<PrincipalRef, AccessError> {
    let invalid = |m: String| AccessError::Invalid {
        field: "member".into(),
        message: m,
    };
    match parse_member(member) {
        Some((PrincipalKind::User, email)) => {
            let email = normalize_email(email).map_err(invalid)?;
            match ctx.store.user_by_email(&email).await? {
                Some(u) if u.email_verified => Ok(PrincipalRef::user(u.id)),
                _ => Err(invalid(format!("{email} has no verified account"))),
            }
        }
        Some((PrincipalKind::ServiceAccount, client_id)) => {
            match ctx.store.service_account_by_client_id(client_id).await? {
                Some(sa) if names::within(&sa.parent, &group.org) => {
                    Ok(PrincipalRef::service_account(sa.id))
                }
                Some(_) => Err(invalid(format!(
                    "service account {client_id} is not in {}",
                    group.org
                ))),
                None => Err(invalid(format!(
                    "no service account has client_id {client_id:?}"
                ))),
            }
        }
        Some((PrincipalKind::Group, _)) => Err(invalid("groups do not nest".into())),
        None => Err(invalid(format!(
            "{member:?} is not user:<email> or serviceAccount:<client_id>"
        ))),
    }
}

async fn write(
    ctx: &Ctx<'_>,
    actor: &Actor,
    g: &GroupRow,
    who: &PrincipalRef,
    label: &str,
    add: bool,
) -> Result<(), AccessError> {
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "group", &g.name).await?;
    let changed = if add {
        directory::add_member(&mut tx, &g.id, who).await?;
        true
    } else {
        let removed = directory::remove_member(&mut tx, &g.id, who).await?;
        let owner_role = &ctx.evaluator.roles().catalog().owner_role;
        super::keep_owners_in(&mut tx, owner_role, std::slice::from_ref(&g.org)).await?;
        removed
    };
    if !changed {
        return Ok(());
    }
    let action = if add {
        "group.member.add"
    } else {
        "group.member.remove"
    };
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        action,
        &g.name,
        &g.org,
        json!({ "member": label }),
    )
    .await?;
    Ok(())
}

/// Adds `member` to the group named `name` (`iam.groupMembers.set`).
pub async fn add_member(
    ctx: &Ctx<'_>,
    actor: &Actor,
    name: &str,
    member_text: &str,
) -> Result<(), AccessError> {
    ctx.require(actor, "iam.groupMembers.set", name)?;
    let g = group(ctx, name).await?;
    let who = member(ctx, &g, member_text).await?;
    ctx.evaluator
        .can_add_member(&actor.principal, &g.id, ctx.now)
        .map_err(|e| {
            AccessError::CannotGrant(format!(
                "adding a member to {} grants its roles: {e}",
                g.name
            ))
        })?;
    write(ctx, actor, &g, &who, member_text, true).await
}

/// Removes `member` from the group named `name` (`iam.groupMembers.set`); refused
/// when that would leave an organization the group owns without an owner.
pub async fn remove_member(
    ctx: &Ctx<'_>,
    actor: &Actor,
    name: &str,
    member_text: &str,
) -> Result<Vec<Warning>, AccessError> {
    ctx.require(actor, "iam.groupMembers.set", name)?;
    let g = group(ctx, name).await?;
    let who = member(ctx, &g, member_text).await?;
    let mut warnings = Vec::new();
    let removed = [(g.id.clone(), who.clone())];
    let orgs = ctx.evaluator.owned_orgs(&PrincipalRef::group(g.id.clone()));
    ctx.keep_owners(
        &orgs,
        &OwnerChange {
            removed_members: &removed,
            ..Default::default()
        },
        &mut warnings,
    )?;
    write(ctx, actor, &g, &who, member_text, false).await?;
    Ok(warnings)
}
