//! OAuth clients for browser login (DESIGN.md section 3): registered under an
//! organization or project (`iam.clients.create` there), with redirect URIs that are
//! https, http on loopback, or a native app's private-use scheme; confidential
//! clients get a secret shown once. Only instance owners may make a client
//! first-party (no consent screen).

use serde_json::json;

use super::{AccessError, Actor, Ctx};
use crate::crypto::kek::Kek;
use crate::crypto::secret;
use crate::iam::names::{self, Kind, ROOT};
use crate::oauth2::redirect;
use crate::store::iam::{self, ClientRow};
use crate::store::{self, StoreError};

/// What to register.
#[derive(Clone, Debug, Default)]
pub struct NewClient {
    /// Shown on the consent page.
    pub display_name: String,
    /// Exact redirect URIs (RFC 8252 loopback ones match any port).
    pub redirect_uris: Vec<String>,
    /// A public client (no secret; PKCE required).
    pub public: bool,
    /// The API its tokens are for by default.
    pub default_api: Option<String>,
    /// No consent screen (instance owners only).
    pub first_party: bool,
}

/// A registered client, with its secret (confidential clients) in this answer only.
pub struct Created {
    /// The client.
    pub client: ClientRow,
    /// Its secret.
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("client_id", &self.client.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

fn invalid(field: &str, message: impl Into<String>) -> AccessError {
    AccessError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Whether the actor owns the whole instance (the owner role bound at `*`).
fn instance_owner(ctx: &Ctx<'_>, actor: &Actor) -> bool {
    let owner = &ctx.evaluator.roles().catalog().owner_role;
    ctx.evaluator
        .effective_roles(actor.principal.kind, &actor.principal.id, ROOT, ctx.now)
        .iter()
        .any(|g| g.role == *owner && g.scope == ROOT)
}

/// Registers a client under `parent`.
pub async fn create(
    ctx: &Ctx<'_>,
    kek: &Kek,
    actor: &Actor,
    issuer: &str,
    parent: &str,
    c: NewClient,
) -> Result<Created, AccessError> {
    ctx.require(actor, "iam.clients.create", parent)?;
    if !matches!(
        names::parse(parent).map(|p| p.kind),
        Some(Kind::Organization | Kind::Project)
    ) {
        return Err(invalid(
            "parent",
            "clients belong to an organization or a project",
        ));
    }
    let name = c.display_name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(invalid("display_name", "must be 1 to 200 bytes"));
    }
    if c.redirect_uris.is_empty() || c.redirect_uris.len() > 20 {
        return Err(invalid("redirect_uris", "give 1 to 20 redirect URIs"));
    }
    for (i, uri) in c.redirect_uris.iter().enumerate() {
        redirect::check_registration(uri)
            .map_err(|e| invalid(&format!("redirect_uris[{i}]"), e.to_string()))?;
    }
    if c.first_party && !instance_owner(ctx, actor) {
        return Err(AccessError::CannotGrant(
            "only instance owners may register first-party clients".into(),
        ));
    }
    if let Some(api) = &c.default_api
        && *api != format!("{issuer}/v1")
        && ctx.store.api(api).await?.is_none()
    {
        return Err(invalid(
            "default_api",
            format!("{api:?} is not a registered API"),
        ));
    }
    let client_secret = (!c.public).then(secret::generate);
    let client = ClientRow {
        client_id: uuid::Uuid::new_v4().to_string(),
        parent: parent.to_owned(),
        display_name: name.to_owned(),
        redirect_uris: c.redirect_uris,
        public_client: c.public,
        first_party: c.first_party,
        default_api: c.default_api,
        secret_hash: client_secret
            .as_ref()
            .map(|s| secret::hash(kek.secret_key(), s)),
    };
    let mut tx = ctx.store.begin().await?;
    let seq = store::bump_change(&mut tx, "client", &client.client_id).await?;
    iam::insert_client(&mut tx, &client)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => AccessError::Refused(m),
            e => e.into(),
        })?;
    super::finish(
        ctx,
        tx,
        seq,
        actor,
        "client.create",
        &format!("client:{}", client.client_id),
        parent,
        json!({
            "client_id": client.client_id, "public": client.public_client,
            "first_party": client.first_party, "redirect_uris": client.redirect_uris,
            "default_api": client.default_api,
        }),
    )
    .await?;
    Ok(Created {
        client,
        client_secret,
    })
}
