//! The request bodies of the admin API. Unknown fields are refused; the doc comments
//! are the field descriptions of the OpenAPI document.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::access::policy::PolicyBinding;
use crate::iam::permissions::Permission;

/// A new organization, folder, project or environment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewResource {
    /// The last segment of its name: `[a-z0-9][a-z0-9-]{1,62}`, never changed.
    pub slug: String,
    /// A name for people, 1 to 200 bytes.
    pub display_name: String,
}

/// A change to a resource.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcePatch {
    /// A new name for people, 1 to 200 bytes (the slug never changes).
    pub display_name: String,
}

/// A custom role of an organization, created or replaced whole.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// Its slug: the role is `orgs/<org>/roles/<slug>`.
    pub slug: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Registered permissions or patterns over them (`object-storage.*`).
    pub permissions: Vec<String>,
}

/// A whole policy, written with the etag it was read with.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// The etag of the policy this write replaces; a stale one is refused.
    pub etag: String,
    /// Every binding of the resource after the write.
    pub bindings: Vec<PolicyBinding>,
}

/// An invitation: the email will hold the role on the scope once it accepts.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    /// The invitee's email address.
    pub email: String,
    /// The role.
    pub role: String,
    /// Where: the organization or a resource beneath it.
    pub scope: String,
}

/// A new user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The email address, the username.
    pub email: String,
    /// A name for people.
    pub display_name: String,
    /// An initial password (8 to 1024 bytes); without one the account cannot log in
    /// with a password.
    #[serde(default)]
    pub password: Option<String>,
    /// Whether the email address is known to be the user's.
    #[serde(default)]
    pub email_verified: bool,
}

/// A change to a user; at least one field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// A new display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Disable (revokes sessions and refresh tokens at once) or enable.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// A new service account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServiceAccount {
    /// The last segment of its name.
    pub slug: String,
    /// A name for people.
    pub display_name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// A new client secret of a service account (the body may be empty).
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSecret {
    /// When it stops working (Unix seconds); none: never.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// A public key for `private_key_jwt`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// PEM (SPKI) of an RSA, P-256 or Ed25519 public key.
    pub public_key_pem: String,
}

/// A new OAuth client for browser login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// Shown on the consent page.
    pub display_name: String,
    /// https, http on loopback, or a private-use scheme of a native app.
    pub redirect_uris: Vec<String>,
    /// A public client has no secret and must use PKCE.
    pub public: bool,
    /// The API its access tokens are for by default.
    #[serde(default)]
    pub default_api: Option<String>,
    /// No consent screen; instance owners only.
    #[serde(default)]
    pub first_party: bool,
}

/// A new API and its permissions.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApi {
    /// Its identifier, the `aud` of tokens for it (`resource` in token requests).
    pub identifier: String,
    /// A name for people.
    pub display_name: String,
    /// Its permissions, `service.resource.verb`.
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// A permission check.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// Written like a policy member: `user:<email>`, `serviceAccount:<client_id>`,
    /// `group:<name>`.
    pub principal: String,
    /// The permission.
    pub permission: String,
    /// The resource name.
    pub resource: String,
}

/// An upstream OpenID provider people may log in through. Its client secret is
/// stored sealed with the key-encryption key and never returned.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIdentityProvider {
    /// A slug; appears in the redirect URI `<issuer>/federation/<id>/callback`.
    pub id: String,
    /// The button's text: "Continue with <display_name>".
    pub display_name: String,
    /// The upstream's issuer (https, or http on loopback); discovered from it.
    pub issuer: String,
    /// gatehouse's client id at the upstream.
    pub client_id: String,
    /// gatehouse's client secret at the upstream.
    pub client_secret: String,
    /// Scopes asked for; must include `openid`. Default: openid, email, profile.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Believe the upstream's `email_verified`: link to the account with that address
    /// (never an unverified one, never one with instance-level roles) and count
    /// provisioned accounts verified.
    #[serde(default)]
    pub trust_email: bool,
    /// Create an account on a first login that matches none.
    #[serde(default)]
    pub provision: bool,
    /// The upstream claim that lists the person's groups.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Upstream group values that make the person a member of gatehouse groups; the
    /// creator must be able to add members to each.
    #[serde(default)]
    pub group_mappings: Vec<crate::config::GroupMapping>,
}

/// An identity provider replaced whole (its id stays); without `client_secret`
/// the stored secret is kept.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderUpdate {
    /// See [`NewIdentityProvider`].
    pub display_name: String,
    /// See [`NewIdentityProvider`].
    pub issuer: String,
    /// See [`NewIdentityProvider`].
    pub client_id: String,
    /// A new client secret; omitted keeps the stored one.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// See [`NewIdentityProvider`].
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// See [`NewIdentityProvider`].
    #[serde(default)]
    pub trust_email: bool,
    /// See [`NewIdentityProvider`].
    #[serde(default)]
    pub provision: bool,
    /// See [`NewIdentityProvider`].
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// See [`NewIdentityProvider`].
    #[serde(default)]
    pub group_mappings: Vec<crate::config::GroupMapping>,
}

impl NewIdentityProvider {
    /// The provider it defines.
    pub fn into_config(self) -> crate::config::ProviderConfig {
        let id = self.id;
        let secret = self.client_secret;
        IdentityProviderUpdate {
            display_name: self.display_name,
            issuer: self.issuer,
            client_id: self.client_id,
            client_secret: None,
            scopes: self.scopes,
            trust_email: self.trust_email,
            provision: self.provision,
            groups_claim: self.groups_claim,
            group_mappings: self.group_mappings,
        }
        .into_config(id, secret)
    }
}

impl IdentityProviderUpdate {
    /// The provider `id` it defines, with `secret` unless it brings its own.
    pub fn into_config(self, id: String, secret: String) -> crate::config::ProviderConfig {
        crate::config::ProviderConfig {
            id,
            display_name: self.display_name,
            issuer: self.issuer,
            client_id: self.client_id,
            client_secret: crate::config::Secret(self.client_secret.unwrap_or(secret)),
            scopes: self
                .scopes
                .unwrap_or_else(|| ["openid", "email", "profile"].map(String::from).to_vec()),
            trust_email: self.trust_email,
            provision: self.provision,
            groups_claim: self.groups_claim,
            group_mappings: self.group_mappings,
        }
    }
}
