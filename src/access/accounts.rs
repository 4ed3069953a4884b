//! Users and service accounts: creating them, and minting service-account
//! credentials. Minting a secret or registering a key is impersonating the account,
//! so it needs `iam.serviceAccountKeys.create` and every permission the account holds
//! (the granting rule, applied to each of its bindings).

use serde::Serialize;
use serde_json::json;

use super::{AccessError, Actor, Ctx};
use crate::bootstrap::{check_password, normalize_email};
use crate::crypto::kek::Kek;
use crate::crypto::password::Passwords;
use crate::crypto::secret;
use crate::iam::evaluator::PrincipalRef;
use crate::iam::names::{self, Kind, ROOT};
use crate::store::iam::{self, ServiceAccountRow, UserRow};
use crate::store::{self, StoreError};

/// Creates a user (`iam.users.create` on the instance).
pub async fn create_user(
    ctx: &Ctx<'_>,
    passwords: &Passwords,
    actor: &Actor,
    email: &str,
    display_name: &str,
    password: Option<String>,
    email_verified: bool,
) -> Result<UserRow, AccessError> {
    ctx.require(actor, "iam.users.create", ROOT)?;
    let email = normalize_email(email).map_err(|m| AccessError::Invalid {
        field: "email".into(),
        message: m,
    })?;
    let password_hash = match password {
        Some(p) => {
            check_password(&p).map_err(|m| AccessError::Invalid {
                field: "password".into(),
                message: m,
            })?;
            Some(passwords.hash(p).await.map_err(|e| AccessError::Invalid {
                field: "password".into(),
                message: e.to_string(),
            })?)
        }
        None => None,
    };
    let user = UserRow {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.clone(),
        display_name: if display_name.trim().is_empty() {
            email.clone()
        } else {
            display_name.to_owned()
        },
        password_hash,
        email_verified,
        disabled: false,
    };
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "user", &user.id).await?;
    iam::insert_user(&mut tx, &user)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                AccessError::Refused(format!("an account for {email} exists"))
            }
            e => e.into(),
        })?;
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        "user.create",
        &format!("user:{email}"),
        ROOT,
        json!({ "id": user.id, "email": email, "email_verified": email_verified }),
    )
    .await?;
    Ok(user)
}

/// The actor of a person acting on their own account.
pub fn self_actor(user: &UserRow) -> Actor {
    Actor {
        principal: PrincipalRef::user(user.id.clone()),
        label: format!("user:{}", user.email),
    }
}

/// Creates an account for a person signing up (no permission: anyone may, when the
/// instance allows sign-up), unverified unless `verified` (the person proved the
/// address already, e.g. through an invitation link). `None` when an account for the
/// email exists: the caller answers the same either way.
pub async fn sign_up(
    ctx: &Ctx<'_>,
    passwords: &Passwords,
    email: &str,
    display_name: &str,
    password: String,
    verified: bool,
) -> Result<Option<UserRow>, AccessError> {
    let email = normalize_email(email).map_err(|m| AccessError::Invalid {
        field: "email".into(),
        message: m,
    })?;
    check_password(&password).map_err(|m| AccessError::Invalid {
        field: "password".into(),
        message: m,
    })?;
    if display_name.len() > 200 {
        return Err(AccessError::Invalid {
            field: "display_name".into(),
            message: "must be at most 200 bytes".into(),
        });
    }
    let hash = passwords
        .hash(password)
        .await
        .map_err(|e| AccessError::Invalid {
            field: "password".into(),
            message: e.to_string(),
        })?;
    let user = UserRow {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.clone(),
        display_name: if display_name.trim().is_empty() {
            email.clone()
        } else {
            display_name.trim().to_owned()
        },
        password_hash: Some(hash),
        email_verified: verified,
        disabled: false,
    };
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "user", &user.id).await?;
    match iam::insert_user(&mut tx, &user).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    super::finish(
        ctx,
        tx,
        seq,
        &self_actor(&user),
        "user.sign_up",
        &format!("user:{email}"),
        ROOT,
        json!({ "id": user.id, "email": email, "email_verified": verified }),
    )
    .await?;
    Ok(Some(user))
}

/// Marks the user's email verified (the person opened the link mailed to it), with
/// the password hash chosen by whoever asked for that link, when given: an address
/// pre-claimed by someone else's unverified sign-up ends up with its owner's
/// password, not theirs.
pub async fn verify_email(
    ctx: &Ctx<'_>,
    user: &UserRow,
    password_hash: Option<&str>,
) -> Result<(), AccessError> {
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "user", &user.id).await?;
    if !iam::set_user_verified(&mut tx, &user.id).await? {
        return Err(AccessError::NotFound(format!("user:{}", user.id)));
    }
    if let Some(hash) = password_hash {
        iam::set_user_password(&mut tx, &user.id, hash).await?;
        store::oidc::revoke_user_families(&mut tx, &user.id, "password_set", ctx.now).await?;
    }
    super::finish(
        ctx,
        tx,
        seq,
        &self_actor(user),
        "user.verify",
        &format!("user:{}", user.email),
        ROOT,
        json!({ "id": user.id }),
    )
    .await
}

/// A slug for the organization of a person who signed up: from the email's local
/// part, with a random suffix so that it is free.
pub fn generated_slug(email: &str) -> String {
    let local: String = email
        .split('@')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let base: String = local
        .trim_matches('-')
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
        .chars()
        .take(40)
        .collect();
    let base = base.trim_end_matches('-');
    let suffix: String = crate::crypto::random_bytes::<4>()
        .iter()
        .map(|b| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[usize::from(*b) % 32]))
        .collect();
    let slug = if base.is_empty() {
        format!("org-{suffix}")
    } else {
        format!("{base}-{suffix}")
    };
    if names::valid_slug(&slug) {
        slug
    } else {
        format!("org-{suffix}")
    }
}

/// Sets a new password for a user who proved control of the account's email (a
/// single-use reset link): every refresh token of the user is revoked in the same
/// transaction, and the caller voids its browser sessions.
pub async fn reset_password(
    ctx: &Ctx<'_>,
    passwords: &Passwords,
    user: &UserRow,
    password: String,
) -> Result<(), AccessError> {
    check_password(&password).map_err(|m| AccessError::Invalid {
        field: "password".into(),
        message: m,
    })?;
    let hash = passwords
        .hash(password)
        .await
        .map_err(|e| AccessError::Invalid {
            field: "password".into(),
            message: e.to_string(),
        })?;
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "user", &user.id).await?;
    if !iam::set_user_password(&mut tx, &user.id, &hash).await? {
        return Err(AccessError::NotFound(format!("user:{}", user.id)));
    }
    store::oidc::revoke_user_families(&mut tx, &user.id, "password_reset", ctx.now).await?;
    let actor = Actor {
        principal: PrincipalRef::user(user.id.clone()),
        label: format!("user:{}", user.email),
    };
    super::finish(
        ctx,
        tx,
        seq,
        &actor,
        "user.password_reset",
        &format!("user:{}", user.email),
        ROOT,
        json!({ "id": user.id }),
    )
    .await?;
    super::principals::end_sessions(ctx, &user.id).await;
    Ok(())
}

/// Changes a user's display name (`iam.users.update` on the instance).
pub async fn rename_user(
    ctx: &Ctx<'_>,
    actor: &Actor,
    id: &str,
    display_name: &str,
) -> Result<(), AccessError> {
    ctx.require(actor, "iam.users.update", ROOT)?;
    let name = display_name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AccessError::Invalid {
            field: "display_name".into(),
            message: "must be 1 to 200 bytes".into(),
        });
    }
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "user", id).await?;
    if !iam::set_user_display_name(&mut tx, id, name).await? {
        return Err(AccessError::NotFound(format!("user:{id}")));
    }
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        "user.update",
        &format!("user:{id}"),
        ROOT,
        json!({ "display_name": name }),
    )
    .await
}

/// Creates a service account in an organization or project
/// (`iam.serviceAccounts.create` there).
pub async fn create_service_account(
    ctx: &Ctx<'_>,
    actor: &Actor,
    parent: &str,
    slug: &str,
    display_name: &str,
    description: &str,
) -> Result<ServiceAccountRow, AccessError> {
    ctx.require(actor, "iam.serviceAccounts.create", parent)?;
    match names::parse(parent).map(|p| p.kind) {
        Some(Kind::Organization | Kind::Project) => {}
        _ => {
            return Err(AccessError::Invalid {
                field: "parent".into(),
                message: "service accounts belong to an organization or a project".into(),
            });
        }
    }
    super::check_slug("slug", slug)?;
    let live = ctx
        .store
        .resource(parent)
        .await?
        .filter(|r| r.deleted_at.is_none());
    if live.is_none() {
        return Err(AccessError::NotFound(parent.to_owned()));
    }
    let sa = ServiceAccountRow {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: uuid::Uuid::new_v4().to_string(),
        name: format!("{parent}/service-accounts/{slug}"),
        parent: parent.to_owned(),
        slug: slug.to_owned(),
        display_name: display_name.to_owned(),
        description: description.to_owned(),
        disabled: false,
    };
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "service_account", &sa.name).await?;
    if !iam::resource_live_in(&mut tx, parent).await? {
        return Err(AccessError::NotFound(parent.to_owned()));
    }
    iam::insert_service_account(&mut tx, &sa)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => AccessError::Refused(format!("{} exists", sa.name)),
            e => e.into(),
        })?;
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        "service_account.create",
        &sa.name,
        parent,
        json!({ "name": sa.name, "client_id": sa.client_id }),
    )
    .await?;
    Ok(sa)
}

/// Checks that `actor` may act as the service account: `iam.serviceAccountKeys.create`
/// on it and every permission of each of its bindings.
fn may_impersonate(
    ctx: &Ctx<'_>,
    actor: &Actor,
    sa: &ServiceAccountRow,
) -> Result<(), AccessError> {
    ctx.require(actor, "iam.serviceAccountKeys.create", &sa.name)?;
    // Every binding the account would act with, its groups' included.
    for b in ctx
        .evaluator
        .grants_for(&PrincipalRef::service_account(sa.id.clone()), ctx.now)
    {
        ctx.evaluator
            .can_grant(&actor.principal, &b.role, &b.scope, ctx.now)
            .map_err(|e| {
                AccessError::CannotGrant(format!(
                    "minting credentials for {} means acting as it: {e}",
                    sa.name
                ))
            })?;
    }
    Ok(())
}

async fn service_account(ctx: &Ctx<'_>, name: &str) -> Result<ServiceAccountRow, AccessError> {
    ctx.store
        .service_account_by_name(name)
        .await?
        .ok_or_else(|| AccessError::NotFound(name.to_owned()))
}

/// A minted secret, shown exactly once. `Debug` never prints it.
#[derive(Clone, Serialize)]
pub struct MintedSecret {
    /// The secret's id (for revoking it).
    pub id: String,
    /// The secret itself; only its keyed hash is stored.
    pub client_secret: String,
    /// When it stops working.
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for MintedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedSecret")
            .field("id", &self.id)
            .field("client_secret", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Mints a client secret for the service account named `name`.
pub async fn mint_secret(
    ctx: &Ctx<'_>,
    kek: &Kek,
    actor: &Actor,
    name: &str,
    expires_at: Option<i64>,
) -> Result<MintedSecret, AccessError> {
    let sa = service_account(ctx, name).await?;
    may_impersonate(ctx, actor, &sa)?;
    if expires_at.is_some_and(|e| e <= ctx.now) {
        return Err(AccessError::Invalid {
            field: "expires_at".into(),
            message: "must be in the future".into(),
        });
    }
    let minted = MintedSecret {
        id: uuid::Uuid::new_v4().to_string(),
        client_secret: secret::generate(),
        expires_at,
    };
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "service_account", &sa.name).await?;
    iam::insert_secret(
        &mut tx,
        &minted.id,
        &sa.id,
        &secret::hash(kek.secret_key(), &minted.client_secret),
        expires_at,
    )
    .await?;
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        "service_account.secret.create",
        &sa.name,
        &sa.parent,
        json!({ "secret_id": minted.id, "expires_at": expires_at }),
    )
    .await?;
    Ok(minted)
}

/// Revokes one secret (`iam.serviceAccountKeys.delete`).
pub async fn revoke_secret(
    ctx: &Ctx<'_>,
    actor: &Actor,
    name: &str,
    secret_id: &str,
) -> Result<(), AccessError> {
    let sa = service_account(ctx, name).await?;
    ctx.require(actor, "iam.serviceAccountKeys.delete", &sa.name)?;
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "service_account", &sa.name).await?;
    if !iam::delete_secret(&mut tx, &sa.id, secret_id).await? {
        return Err(AccessError::NotFound(format!("{name}/secrets/{secret_id}")));
    }
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        "service_account.secret.delete",
        &sa.name,
        &sa.parent,
        json!({ "secret_id": secret_id }),
    )
    .await
}

/// Registers a public key (PEM, RSA, P-256 or Ed25519) for `private_key_jwt`.
pub async fn add_key(
    ctx: &Ctx<'_>,
    actor: &Actor,
    name: &str,
    public_key_pem: &str,
) -> Result<String, AccessError> {
    let sa = service_account(ctx, name).await?;
    may_impersonate(ctx, actor, &sa)?;
    let pem = public_key_pem.as_bytes();
    let parses = jsonwebtoken::DecodingKey::from_rsa_pem(pem).is_ok()
        || jsonwebtoken::DecodingKey::from_ec_pem(pem).is_ok()
        || jsonwebtoken::DecodingKey::from_ed_pem(pem).is_ok();
    if !parses || public_key_pem.contains("PRIVATE KEY") {
        return Err(AccessError::Invalid {
            field: "public_key_pem".into(),
            message: "expected a PEM public key (RSA, P-256 or Ed25519)".into(),
        });
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "service_account", &sa.name).await?;
    iam::insert_key(&mut tx, &id, &sa.id, public_key_pem.trim(), None).await?;
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        "service_account.key.create",
        &sa.name,
        &sa.parent,
        json!({ "key_id": id }),
    )
    .await?;
    Ok(id)
}
