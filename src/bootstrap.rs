//! `gatehouse bootstrap`: the first organization of an instance, its owner (verified,
//! and an instance owner), the first-party public client `gatehouse-admin` and,
//! when asked, a service account that owns the organization. Everything is written in
//! one transaction with its audit events; a second run changes nothing.

use serde_json::{Value, json};

use crate::crypto::kek::Kek;
use crate::crypto::{password, secret};
use crate::iam::Catalog;
pub use crate::iam::names::valid_slug;
use crate::store::iam::{self, BindingRow, ClientRow, ResourceRow, ServiceAccountRow, UserRow};
use crate::store::{self, Store, StoreError, audit};

/// Client id of the admin client.
pub const ADMIN_CLIENT_ID: &str = "gatehouse-admin";
/// Its registered redirect URI (RFC 8252 loopback: any port matches).
pub const ADMIN_REDIRECT_URI: &str = "http://127.0.0.1/callback";
/// The meta key recording that the instance was bootstrapped.
const META_KEY: &str = "bootstrapped";

/// What to create. `Debug` never prints the password.
pub struct Request {
    /// Slug of the organization.
    pub org: String,
    /// The owner's email address (normalized here).
    pub owner_email: String,
    /// The owner's password.
    pub owner_password: String,
    /// Slug of a service account to create, if any.
    pub service_account: Option<String>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("org", &self.org)
            .field("owner_email", &self.owner_email)
            .field("owner_password", &"[redacted]")
            .field("service_account", &self.service_account)
            .finish()
    }
}

/// Why bootstrapping failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// An argument is invalid; the text names it.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Normalizes an email address (trimmed, lower case) or says why it is not one.
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("an email address needs an @".into());
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '@' || c == '<' || c == '>';
    if local.is_empty()
        || domain.is_empty()
        || email.len() > 254
        || local.len() > 64
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || local.chars().any(bad)
        || domain.chars().any(bad)
    {
        return Err(format!("{raw:?} is not a valid email address"));
    }
    Ok(email)
}

/// Checks a new password: 8 to 1024 bytes.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < 8 {
        return Err("the password must have at least 8 characters".into());
    }
    if password.len() > 1024 {
        return Err("the password must be at most 1024 bytes".into());
    }
    Ok(())
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Bootstraps the instance; returns the JSON object `gatehouse bootstrap` prints and
/// the change sequence it wrote (`None` when nothing was created).
pub async fn run(
    store: &Store,
    kek: &Kek,
    issuer: &str,
    catalog: &Catalog,
    req: Request,
) -> Result<(Value, Option<i64>), BootstrapError> {
    if !valid_slug(&req.org) {
        return Err(BootstrapError::Invalid(format!(
            "--org: {:?} is not a valid slug ([a-z0-9][a-z0-9-]{{1,62}})",
            req.org
        )));
    }
    if let Some(sa) = req.service_account.as_ref().filter(|sa| !valid_slug(sa)) {
        return Err(BootstrapError::Invalid(format!(
            "--service-account: {sa:?} is not a valid slug ([a-z0-9][a-z0-9-]{{1,62}})"
        )));
    }
    let email = normalize_email(&req.owner_email)
        .map_err(|e| BootstrapError::Invalid(format!("--owner-email: {e}")))?;
    check_password(&req.owner_password)
        .map_err(|e| BootstrapError::Invalid(format!("owner password: {e}")))?;
    if store.meta(META_KEY).await?.is_some() {
        return Ok((json!({ "created": false }), None));
    }
    // Hash before the transaction: argon2 is slow and must not hold the write lock.
    let password_hash = password::hash_blocking(&req.owner_password)
        .map_err(|e| BootstrapError::Invalid(format!("owner password: {e}")))?;

    let mut tx = store.begin().await?;
    // Taking the change-counter lock first serializes concurrent bootstraps.
    let seq = store::bump_change(&mut tx, "bootstrap", &req.org).await?;
    let already: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE key = $1")
        .bind(META_KEY)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    if already.is_some() {
        return Ok((json!({ "created": false }), None));
    }
    let actor = "system:bootstrap";
    let owner_role = catalog.owner_role.as_str();
    let now = crate::now_unix();
    let org_name = format!("orgs/{}", req.org);
    let org = ResourceRow {
        id: new_id(),
        name: org_name.clone(),
        kind: "organization".into(),
        parent: None,
        slug: req.org.clone(),
        display_name: req.org.clone(),
        created_at: now,
        deleted_at: None,
    };
    iam::insert_resource(&mut tx, &org).await?;
    let mut events = vec![(
        "organization.create",
        org_name.clone(),
        json!({ "name": org_name }),
    )];
    // A preset may give every organization a default project (StackPath's stack).
    if let Some(default) = &catalog.on_organization_create.default_project {
        let project = ResourceRow {
            id: new_id(),
            name: format!("{org_name}/projects/{}", default.slug),
            kind: "project".into(),
            parent: Some(org_name.clone()),
            slug: default.slug.clone(),
            display_name: default.display_name.clone(),
            created_at: now,
            deleted_at: None,
        };
        iam::insert_resource(&mut tx, &project).await?;
        events.push((
            "project.create",
            project.name.clone(),
            json!({ "name": project.name }),
        ));
    }
    let owner = UserRow {
        id: new_id(),
        email: email.clone(),
        display_name: email.clone(),
        password_hash: Some(password_hash),
        email_verified: true,
        disabled: false,
    };
    iam::insert_user(&mut tx, &owner).await?;
    let mut bindings = vec![
        (owner_role, org_name.clone(), "user", owner.id.clone()),
        (owner_role, "*".to_owned(), "user", owner.id.clone()),
    ];
    let admin = ClientRow {
        client_id: ADMIN_CLIENT_ID.into(),
        parent: "*".into(),
        display_name: "gatehouse admin".into(),
        redirect_uris: vec![ADMIN_REDIRECT_URI.into()],
        public_client: true,
        first_party: true,
        default_api: Some(format!("{issuer}/v1")),
        secret_hash: None,
    };
    iam::insert_client(&mut tx, &admin).await?;

    let mut out = json!({
        "created": true,
        "organization": { "name": org_name, "id": org.id },
        "owner": { "id": owner.id, "email": email, "instance_owner": true },
        "admin_client": { "client_id": ADMIN_CLIENT_ID, "redirect_uri": ADMIN_REDIRECT_URI, "public": true },
    });
    events.extend([
        (
            "user.create",
            email.clone(),
            json!({ "id": owner.id, "email": email, "email_verified": true }),
        ),
        (
            "client.create",
            ADMIN_CLIENT_ID.to_owned(),
            json!({ "client_id": ADMIN_CLIENT_ID, "first_party": true }),
        ),
    ]);
    if let Some(slug) = &req.service_account {
        let sa = ServiceAccountRow {
            id: new_id(),
            client_id: new_id(),
            name: format!("{org_name}/service-accounts/{slug}"),
            parent: org_name.clone(),
            slug: slug.clone(),
            display_name: slug.clone(),
            description: "created by gatehouse bootstrap".into(),
            disabled: false,
        };
        iam::insert_service_account(&mut tx, &sa).await?;
        let client_secret = secret::generate();
        let secret_id = new_id();
        iam::insert_secret(
            &mut tx,
            &secret_id,
            &sa.id,
            &secret::hash(kek.secret_key(), &client_secret),
            None,
        )
        .await?;
        bindings.push((
            owner_role,
            org_name.clone(),
            "serviceAccount",
            sa.id.clone(),
        ));
        events.push((
            "service_account.create",
            sa.name.clone(),
            json!({ "name": sa.name, "client_id": sa.client_id }),
        ));
        events.push((
            "service_account.secret.create",
            sa.name.clone(),
            json!({ "secret_id": secret_id }),
        ));
        out["service_account"] = json!({
            "name": sa.name,
            "client_id": sa.client_id,
            "client_secret": client_secret,
            "secret_id": secret_id,
        });
    }
    for (role, scope, kind, principal) in bindings {
        let b = BindingRow {
            id: new_id(),
            scope: scope.clone(),
            role: role.into(),
            principal_kind: kind.into(),
            principal_id: principal.clone(),
            expires_at: None,
        };
        iam::insert_binding(&mut tx, &b).await?;
        events.push((
            "binding.create",
            scope.clone(),
            json!({ "role": role, "scope": scope, "principal": format!("{kind}:{principal}") }),
        ));
    }
    for (action, target, after) in events {
        let scope = if target.starts_with("orgs/") {
            org_name.as_str()
        } else {
            "*"
        };
        audit::append(
            &mut tx,
            seq,
            audit::NewAuditEvent {
                actor,
                action,
                target: &target,
                scope,
                before: None,
                after: Some(after),
            },
        )
        .await?;
    }
    store::set_meta(
        &mut tx,
        META_KEY,
        &json!({ "at": now, "org": org_name }).to_string(),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok((out, Some(seq)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["ab", "acme", "a-1", "0x", &"a".repeat(63)] {
            assert!(valid_slug(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "-ab",
            "Acme",
            "ac me",
            "ac_me",
            "äb",
            &"a".repeat(64),
            "ab/c",
            "../x",
        ] {
            assert!(!valid_slug(bad), "{bad}");
        }
    }

    #[test]
    fn emails_normalize_and_reject_junk() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").as_deref(),
            Ok("alice@example.com")
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "a b@example.com",
            "a@b@c.com",
            "<a>@x.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_have_bounds() {
        assert!(check_password("short").is_err());
        assert!(check_password(&"x".repeat(1025)).is_err());
        assert!(check_password("long enough").is_ok());
    }
}
