//! Federation's writes: identity providers through the admin API, linking and
//! unlinking upstream identities, provisioning accounts for them, and claim mappings.
//! Each is audited in the transaction that makes it.

use serde_json::json;

use super::{AccessError, Actor, Ctx};
use crate::config::ProviderConfig;
use crate::crypto::kek::Kek;
use crate::federation::matching::Asserted;
use crate::federation::{Source, StoredSettings, Upstream, secret_aad};
use crate::iam::evaluator::PrincipalRef;
use crate::iam::names::ROOT;
use crate::store::federation::{self as fed, IdentityRow, ProviderRow, mapping_source};
use crate::store::iam::{self, UserRow};
use crate::store::{self, StoreError};

fn invalid(e: String) -> AccessError {
    match e.split_once(": ") {
        Some((field, message)) => AccessError::Invalid {
            field: field.to_owned(),
            message: message.to_owned(),
        },
        None => AccessError::Invalid {
            field: "body".into(),
            message: e,
        },
    }
}

/// The creator must be able to add members to each mapped group, now and (checked
/// again at every login) later.
fn check_mappings(ctx: &Ctx<'_>, actor: &Actor, def: &ProviderConfig) -> Result<(), AccessError> {
    for (i, m) in def.group_mappings.iter().enumerate() {
        ctx.require(actor, "iam.groupMembers.set", &m.group)
            .map_err(|_| AccessError::Invalid {
                field: format!("group_mappings[{i}].group"),
                message: format!(
                    "adding members to {} needs iam.groupMembers.set there",
                    m.group
                ),
            })?;
    }
    Ok(())
}

/// Stores a new identity provider (`iam.identityProviders.create` on the instance);
/// its secret is sealed with the key-encryption key.
pub async fn create_provider(
    ctx: &Ctx<'_>,
    kek: &Kek,
    configured: &[ProviderConfig],
    actor: &Actor,
    def: &ProviderConfig,
) -> Result<(), AccessError> {
    save_provider(ctx, kek, configured, actor, def, true).await
}

/// Replaces a stored provider (`iam.identityProviders.update`); the configuration
/// file's cannot be changed here.
pub async fn update_provider(
    ctx: &Ctx<'_>,
    kek: &Kek,
    configured: &[ProviderConfig],
    actor: &Actor,
    def: &ProviderConfig,
) -> Result<(), AccessError> {
    save_provider(ctx, kek, configured, actor, def, false).await
}

async fn save_provider(
    ctx: &Ctx<'_>,
    kek: &Kek,
    configured: &[ProviderConfig],
    actor: &Actor,
    def: &ProviderConfig,
    create: bool,
) -> Result<(), AccessError> {
    let (permission, action) = match create {
        true => ("iam.identityProviders.create", "identity_provider.create"),
        false => ("iam.identityProviders.update", "identity_provider.update"),
    };
    ctx.require(actor, permission, ROOT)?;
    if configured.iter().any(|p| p.id == def.id) {
        let why = format!(
            "identity provider {} is defined in the configuration file; change it there",
            def.id
        );
        return Err(match create {
            true => AccessError::Store(StoreError::Conflict(why)),
            false => AccessError::Refused(why),
        });
    }
    def.validate().map_err(invalid)?;
    check_mappings(ctx, actor, def)?;
    let settings = StoredSettings::of(def);
    let row = ProviderRow {
        id: def.id.clone(),
        settings: serde_json::to_string(&settings).unwrap_or_default(),
        client_secret: kek.seal(&secret_aad(&def.id), def.client_secret.0.as_bytes()),
        created_by: actor.label.clone(),
    };
    let target = format!("identity-providers/{}", def.id);
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "identity_provider", &def.id).await?;
    if create {
        fed::insert_provider(&mut tx, &row).await?;
    } else if !fed::update_provider(&mut tx, &row).await? {
        return Err(AccessError::NotFound(target));
    }
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        action,
        &target,
        ROOT,
        json!({ "settings": settings }),
    )
    .await
}

/// Deletes a stored provider and its links (`iam.identityProviders.delete`).
pub async fn delete_provider(
    ctx: &Ctx<'_>,
    configured: &[ProviderConfig],
    actor: &Actor,
    id: &str,
) -> Result<(), AccessError> {
    ctx.require(actor, "iam.identityProviders.delete", ROOT)?;
    if configured.iter().any(|p| p.id == id) {
        return Err(AccessError::Refused(format!(
            "identity provider {id} is defined in the configuration file; remove it there"
        )));
    }
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "identity_provider", id).await?;
    if !fed::delete_provider(&mut tx, id).await? {
        return Err(AccessError::NotFound(format!("identity-providers/{id}")));
    }
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        "identity_provider.delete",
        &format!("identity-providers/{id}"),
        ROOT,
        json!({}),
    )
    .await
}

fn identity(up: &Upstream, a: &Asserted, user_id: &str, now: i64) -> IdentityRow {
    IdentityRow {
        issuer: a.issuer.clone(),
        subject: a.subject.clone(),
        provider_id: up.def.id.clone(),
        user_id: user_id.to_owned(),
        email: a.email.clone(),
        linked_at: now,
        last_login_at: Some(now),
    }
}

fn conflict_as_refusal(e: AccessError) -> AccessError {
    match e {
        AccessError::Store(StoreError::Conflict(_)) => {
            AccessError::Refused("this identity is linked to another account already".into())
        }
        e => e,
    }
}

/// Links the identity to `user`; `how` says why (`email` matched, or `account`: the
/// signed-in person linked it).
pub async fn link(
    ctx: &Ctx<'_>,
    up: &Upstream,
    a: &Asserted,
    user: &UserRow,
    how: &str,
) -> Result<(), AccessError> {
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "user", &user.id).await?;
    fed::link_identity(&mut tx, &identity(up, a, &user.id, ctx.now))
        .await
        .map_err(|e| conflict_as_refusal(e.into()))?;
    super::finish(
        ctx,
        tx,
        seq,
        &super::accounts::self_actor(user),
        "federation.link",
        &format!("user:{}", user.email),
        ROOT,
        json!({ "provider": up.def.id, "issuer": a.issuer, "subject": a.subject, "matched_by": how }),
    )
    .await
}

/// Creates a verified account for the identity (its address was verified by a
/// trusted provider) and links it, in one transaction.
pub async fn provision(ctx: &Ctx<'_>, up: &Upstream, a: &Asserted) -> Result<UserRow, AccessError> {
    let Some(email) = a.email.clone() else {
        return Err(AccessError::Refused("no email address".into()));
    };
    let name: String = a
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(&email)
        .chars()
        .take(200)
        .collect();
    let user = UserRow {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.clone(),
        display_name: name,
        password_hash: None,
        email_verified: true,
        disabled: false,
    };
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "user", &user.id).await?;
    iam::insert_user(&mut tx, &user)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                AccessError::Refused("an account with this address exists".into())
            }
            e => e.into(),
        })?;
    fed::link_identity(&mut tx, &identity(up, a, &user.id, ctx.now))
        .await
        .map_err(|e| conflict_as_refusal(e.into()))?;
    super::finish(
        ctx,
        tx,
        seq,
        &super::accounts::self_actor(&user),
        "federation.provision",
        &format!("user:{email}"),
        ROOT,
        json!({ "id": user.id, "provider": up.def.id, "issuer": a.issuer, "subject": a.subject }),
    )
    .await?;
    Ok(user)
}

/// Unlinks one of `user`'s identities, keeping at least one way to log in (a
/// password or another identity).
pub async fn unlink(
    ctx: &Ctx<'_>,
    user: &UserRow,
    issuer: &str,
    subject: &str,
) -> Result<(), AccessError> {
    let linked = ctx.store.federated_identities_of(&user.id).await?;
    let Some(target) = linked
        .iter()
        .find(|i| i.issuer == issuer && i.subject == subject)
    else {
        return Err(AccessError::NotFound("that linked identity".into()));
    };
    if user.password_hash.is_none() && linked.len() < 2 {
        return Err(AccessError::Refused(
            "this is the account's only way to sign in; set a password first".into(),
        ));
    }
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "user", &user.id).await?;
    if !fed::unlink_identity(&mut tx, &user.id, issuer, subject).await? {
        return Err(AccessError::NotFound("that linked identity".into()));
    }
    super::finish(
        ctx,
        tx,
        seq,
        &super::accounts::self_actor(user),
        "federation.unlink",
        &format!("user:{}", user.email),
        ROOT,
        json!({ "provider": target.provider_id, "issuer": issuer, "subject": subject }),
    )
    .await
}

/// Applies the provider's claim mappings to `user` after a login: a mapped group
/// the upstream lists makes them a member (when the mapping's creator may add
/// members there: the granting rule); one it no longer lists ends a membership the
/// mapping made (unless that would leave an organization without an owner).
/// Returns what changed, as `+group` / `-group`.
pub async fn apply_mappings(
    ctx: &Ctx<'_>,
    up: &Upstream,
    user: &UserRow,
    groups: &[String],
) -> Result<Vec<String>, AccessError> {
    if up.def.group_mappings.is_empty() {
        return Ok(Vec::new());
    }
    let member = PrincipalRef::user(user.id.clone());
    let source = mapping_source(&up.def.id);
    let granter = match &up.source {
        Source::Config => None,
        Source::Api { created_by } => match super::invitations::inviter(ctx, created_by).await? {
            Some(p) => Some(p),
            // The creator is gone: the mapping adds nobody any more.
            None => return Ok(Vec::new()),
        },
    };
    let mapped = ctx.store.mapped_groups(&member, &source).await?;
    let mut changes = Vec::new();
    for m in &up.def.group_mappings {
        let Some(g) = ctx.store.group_by_name(&m.group).await? else {
            tracing::warn!(provider = %up.def.id, group = %m.group, "mapped group does not exist");
            continue;
        };
        let wanted = up
            .def
            .group_mappings
            .iter()
            .any(|x| x.group == m.group && groups.contains(&x.upstream));
        let is_mapped = mapped.contains(&g.id);
        if wanted && !is_mapped {
            if let Some(granter) = &granter
                && let Err(e) = ctx.evaluator.can_add_member(granter, &g.id, ctx.now)
            {
                tracing::warn!(provider = %up.def.id, group = %g.name, error = %e, "claim mapping refused by the granting rule");
                continue;
            }
            let mut tx = ctx.store.begin().await?;
            let seq = store::bump_change(&mut tx, "group", &g.name).await?;
            if !fed::add_mapped_member(&mut tx, &g.id, &member, &source).await? {
                continue;
            }
            super::finish(
                ctx,
                tx,
                seq,
                &mapping_actor(up),
                "group.member.add",
                &g.name,
                &g.org,
                json!({ "member": format!("user:{}", user.email), "claim": m.upstream }),
            )
            .await?;
            changes.push(format!("+{}", g.name));
        } else if !wanted && is_mapped {
            let mut tx = ctx.store.begin().await?;
            let seq = store::bump_change(&mut tx, "group", &g.name).await?;
            if !fed::remove_mapped_member(&mut tx, &g.id, &member, &source).await? {
                continue;
            }
            let owner_role = &ctx.evaluator.roles().catalog().owner_role;
            if let Err(e) =
                super::keep_owners_in(&mut tx, owner_role, std::slice::from_ref(&g.org)).await
            {
                tracing::warn!(provider = %up.def.id, group = %g.name, error = %e, "mapped membership kept");
                continue;
            }
            super::finish(
                ctx,
                tx,
                seq,
                &mapping_actor(up),
                "group.member.remove",
                &g.name,
                &g.org,
                json!({ "member": format!("user:{}", user.email), "claim": m.upstream }),
            )
            .await?;
            changes.push(format!("-{}", g.name));
        }
    }
    Ok(changes)
}

fn mapping_actor(up: &Upstream) -> Actor {
    Actor {
        principal: PrincipalRef::user(String::new()),
        label: format!("system:federation/{}", up.def.id),
    }
}
