//! Tokens for a user, issued to a browser-login client: the access token (RFC 9068),
//! the ID token when `openid` was granted, and a refresh token. Shared by the
//! authorization-code and refresh grants so both build the same tokens.
//!
//! Refresh tokens of a grant without `offline_access` belong to the browser session
//! and end with it (logout); with `offline_access` they outlive it.

use serde_json::json;

use super::OAuthError;
use super::access_token::{self, Claims};
use super::token::TokenResponse;
use crate::iam::PrincipalKind;
use crate::iam::claim::roles_claim;
use crate::oidc::id_token;
use crate::server::AppState;
use crate::server::events::AuthEvent;
use crate::server::state::View;
use crate::store::iam::{ClientRow, UserRow};
use crate::store::oidc::FamilyRow;

/// What the user granted.
pub struct UserGrant<'a> {
    /// The user.
    pub user_id: &'a str,
    /// The granted scopes.
    pub scopes: &'a [String],
    /// The API asked for (RFC 8707).
    pub resource: Option<&'a str>,
    /// The nonce of the authorization request (first ID token only).
    pub nonce: Option<&'a str>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The browser session (hash).
    pub sid: &'a str,
    /// How the user authenticated (`amr` values; none means `pwd`).
    pub amr: &'a [String],
}

/// Tokens built for a grant, not yet handed out.
pub struct Issued {
    /// The token response.
    pub response: TokenResponse,
    /// The access token's id.
    pub jti: String,
    /// The access token's expiry.
    pub access_exp: i64,
    /// The access token's audience.
    pub aud: String,
}

/// The audience of the access token: the `resource` asked for (the admin API or a
/// registered API), else the client's default API (the admin API for first-party
/// clients), else the client itself.
pub fn audience(
    issuer: &str,
    view: &View,
    client: &ClientRow,
    resource: Option<&str>,
) -> Result<String, OAuthError> {
    let admin_api = format!("{issuer}/v1");
    Ok(match resource {
        Some(r) if r == admin_api || view.apis.contains(r) => r.to_owned(),
        Some(r) => {
            return Err(OAuthError::invalid_target(format!(
                "{r:?} is not a registered API"
            )));
        }
        None => match &client.default_api {
            Some(api) => api.clone(),
            None if client.first_party => admin_api,
            None => client.client_id.clone(),
        },
    })
}

/// The `roles:<name>` scopes among `scopes`, and whether the claim was asked for.
pub fn role_scopes(scopes: &[String]) -> (bool, Vec<&str>) {
    let narrow: Vec<&str> = scopes
        .iter()
        .filter_map(|s| s.strip_prefix("roles:"))
        .collect();
    (
        !narrow.is_empty() || scopes.iter().any(|s| s == "roles"),
        narrow,
    )
}

/// The user, if it may still get tokens (exists, verified, not disabled).
pub async fn active_user(state: &AppState, user_id: &str) -> Result<Option<UserRow>, OAuthError> {
    let user = state
        .store
        .user_by_id(user_id)
        .await
        .map_err(|_| OAuthError::temporarily_unavailable("the store is unavailable"))?;
    Ok(user.filter(|u| u.email_verified && !u.disabled))
}

/// Builds the tokens of `grant` for `client` and the (active) `user`, with
/// `refresh_token` as the refresh
/// token. Nothing is stored or recorded: the caller commits the refresh token (a new
/// family, or a rotation) and then calls [`record`], so a request refused on the way
/// leaves every token as it was.
pub async fn build(
    state: &AppState,
    view: &View,
    client: &ClientRow,
    user: &UserRow,
    grant: &UserGrant<'_>,
    refresh_token: String,
    jti: String,
) -> Result<Issued, OAuthError> {
    let now = crate::now_unix();
    let aud = audience(&state.issuer, view, client, grant.resource)?;
    let (want_roles, narrow) = role_scopes(grant.scopes);
    let claim = if want_roles {
        Some(
            roles_claim(
                &view.evaluator,
                PrincipalKind::User,
                &user.id,
                &narrow,
                &client.parent,
                now,
            )
            .map_err(|e| OAuthError::invalid_scope(e.to_string()))?,
        )
    } else {
        None
    };
    let exp = access_token::expiry(
        now,
        state.config.access_token_ttl_secs,
        claim.as_ref().and_then(|c| c.expires_at),
    );
    let scope = grant.scopes.join(" ");
    let mut claims = Claims {
        iss: &state.issuer,
        sub: &user.id,
        aud: &aud,
        client_id: &client.client_id,
        scope: &scope,
        jti,
        iat: now,
        exp,
        roles: claim.map(|c| c.roles),
    };
    let ring = state.keys.load();
    let no_key = |e: crate::crypto::jwt::JwtError| {
        tracing::error!(error = %e, "cannot sign a token");
        OAuthError::temporarily_unavailable("no signing key is available")
    };
    let access = access_token::sign(&ring, now, &mut claims).map_err(no_key)?;
    let amr: Vec<&str> = match grant.amr {
        [] => vec!["pwd"],
        values => values.iter().map(String::as_str).collect(),
    };
    let id_token = if grant.scopes.iter().any(|s| s == "openid") {
        Some(
            id_token::sign(
                &ring,
                now,
                &id_token::IdClaims {
                    iss: &state.issuer,
                    sub: &user.id,
                    aud: &client.client_id,
                    azp: &client.client_id,
                    iat: now,
                    exp: now.saturating_add(
                        i64::try_from(state.config.id_token_ttl_secs).unwrap_or(i64::MAX),
                    ),
                    auth_time: grant.auth_time,
                    nonce: grant.nonce,
                    sid: Some(grant.sid).filter(|s| !s.is_empty()),
                    at_hash: id_token::at_hash(&access, ring.signer(now).map(|k| k.alg)),
                    amr: &amr,
                    email: grant
                        .scopes
                        .iter()
                        .any(|s| s == "email")
                        .then_some(user.email.as_str()),
                    email_verified: grant
                        .scopes
                        .iter()
                        .any(|s| s == "email")
                        .then_some(user.email_verified),
                    name: grant
                        .scopes
                        .iter()
                        .any(|s| s == "profile")
                        .then_some(user.display_name.as_str()),
                },
            )
            .map_err(no_key)?,
        )
    } else {
        None
    };
    Ok(Issued {
        response: TokenResponse {
            access_token: access,
            token_type: "Bearer".into(),
            expires_in: claims.exp - now,
            scope: scope.clone(),
            refresh_token: Some(refresh_token),
            id_token,
        },
        jti: claims.jti,
        access_exp: claims.exp,
        aud,
    })
}

/// Starts the refresh-token family `id` of a code exchange, whose first token is
/// `token`.
pub async fn new_family(
    state: &AppState,
    id: &str,
    client: &ClientRow,
    grant: &UserGrant<'_>,
    token: &str,
) -> Result<(), OAuthError> {
    let now = crate::now_unix();
    let offline = grant.scopes.iter().any(|s| s == "offline_access");
    let family = FamilyRow {
        id: id.to_owned(),
        user_id: grant.user_id.to_owned(),
        client_id: client.client_id.clone(),
        scope: grant.scopes.join(" "),
        resource: grant.resource.map(str::to_owned),
        auth_time: grant.auth_time,
        amr: if grant.amr.is_empty() {
            "pwd".to_owned()
        } else {
            grant.amr.join(" ")
        },
        session: (!offline && !grant.sid.is_empty()).then(|| grant.sid.to_owned()),
        expires_at: now
            .saturating_add(i64::try_from(state.config.refresh_token_ttl_secs).unwrap_or(i64::MAX)),
        revoked_at: None,
    };
    state
        .store
        .create_family(&family, &refresh_hash(token), now)
        .await
        .map_err(|_| OAuthError::temporarily_unavailable("the store is unavailable"))
}

/// Counts and audits tokens that are being handed out.
pub async fn record(state: &AppState, client: &ClientRow, user_id: &str, issued: &Issued) {
    state
        .metrics
        .count("tokens_issued_total", &[("grant", "user")]);
    state
        .events
        .record(AuthEvent::new(
            format!("user:{user_id}"),
            "token.issue",
            &client.parent,
            json!({
                "client_id": client.client_id, "aud": issued.aud, "scope": issued.response.scope,
                "jti": issued.jti, "exp": issued.access_exp,
            }),
        ))
        .await;
}

/// A new refresh token: 256 random bits, prefixed so it is told from a JWT at a
/// glance (and by secret scanners).
pub fn new_refresh_token() -> String {
    format!("ghr_{}", crate::crypto::new_token())
}

/// The stored form of a refresh token.
pub fn refresh_hash(token: &str) -> String {
    crate::crypto::token_hash(token)
}
