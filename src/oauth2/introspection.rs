//! Token introspection (RFC 7662) and revocation (RFC 7009) for access tokens.
//!
//! Both need an authenticated client. Introspection answers `active: true` only for a
//! valid, unrevoked token issued to the caller or addressed to it (its `aud` names the
//! caller); for anything else, `{"active": false}`, the same as for garbage.
//! Revoking an access token issued to the caller records its `jti` in short-lived
//! state until the token would have expired, so every node refuses it; revoking
//! anything else succeeds without effect (RFC 7009 section 2.2).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::OAuthError;
use super::client_auth;
use super::token::{Form, form_body};
use crate::crypto::jwt;
use crate::ephemeral::EphemeralStore;
use crate::http::middleware::ClientAddr;
use crate::server::AppState;

/// Path of the introspection endpoint.
pub const INTROSPECT_PATH: &str = "/oauth2/introspect";
/// Path of the revocation endpoint.
pub const REVOKE_PATH: &str = "/oauth2/revoke";

fn revoked_key(jti: &str) -> String {
    format!("revoked-jti:{jti}")
}

/// Whether an access token's `jti` was revoked.
pub async fn is_revoked(state: &AppState, jti: &str) -> Result<bool, OAuthError> {
    state
        .ephemeral
        .get(&revoked_key(jti))
        .await
        .map(|v| v.is_some())
        .map_err(|_| OAuthError::temporarily_unavailable("short-lived state is unavailable"))
}

/// The claims of a token this node signed, still valid now, or `None`.
pub fn verified(state: &AppState, token: &str) -> Option<Value> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.typ.as_deref() != Some("at+jwt") {
        return None;
    }
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[state.issuer.as_str()]);
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.leeway = 0;
    jwt::verify::<Value>(&state.keys.load(), crate::now_unix(), token, &v).ok()
}

fn concerns(claims: &Value, client_id: &str) -> bool {
    let aud_has = match &claims["aud"] {
        Value::String(a) => a == client_id,
        Value::Array(list) => list.iter().any(|a| a == client_id),
        _ => false,
    };
    claims["client_id"] == client_id || aud_has
}

fn no_store(body: Value) -> Response {
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn authenticated(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    addr: &str,
    allow_public: bool,
) -> Result<(Form, String), OAuthError> {
    let form = form_body(headers, body)?;
    let view = state.view.load();
    let view = view
        .as_ref()
        .as_ref()
        .ok_or_else(|| OAuthError::temporarily_unavailable("the server is starting"))?;
    let claimed = client_auth::presented(headers, &form)?
        .map(|p| p.client_id)
        .or_else(|| form.get("client_id").map(str::to_owned));
    let caller = match claimed {
        Some(id) if view.clients.contains_key(&id) => {
            let app = client_auth::authenticate_app(state, view, headers, &form, addr).await?;
            // A public client proves nothing by its id: it may revoke (RFC 7009
            // section 5), not ask about tokens (RFC 7662 section 2.1).
            if app.public_client && !allow_public {
                return Err(OAuthError::invalid_client(false));
            }
            app.client_id.clone()
        }
        _ => client_auth::authenticate(state, view, headers, &form, addr, crate::now_unix())
            .await?
            .client_id
            .clone(),
    };
    if form.get("token").is_none() {
        return Err(OAuthError::invalid_request("token is required"));
    }
    Ok((form, caller))
}

/// Records an access token's `jti` as revoked on every node until `left` seconds
/// (its remaining lifetime) have passed.
pub async fn revoke_jti(state: &AppState, jti: &str, left: i64) -> Result<(), OAuthError> {
    if jti.is_empty() || left <= 0 {
        return Ok(());
    }
    state
        .ephemeral
        .put(
            &revoked_key(jti),
            b"1",
            Duration::from_secs(u64::try_from(left).unwrap_or(1) + 60),
        )
        .await
        .map_err(|_| OAuthError::temporarily_unavailable("short-lived state is unavailable"))
}

/// The live family of a refresh token issued to `caller`.
async fn own_family(
    state: &AppState,
    token: &str,
    caller: &str,
) -> Result<Option<crate::store::oidc::FamilyRow>, OAuthError> {
    if !token.starts_with("ghr_") {
        return Ok(None);
    }
    let presented = state
        .store
        .presented_refresh(&super::issue::refresh_hash(token))
        .await
        .map_err(|_| OAuthError::temporarily_unavailable("the store is unavailable"))?;
    let now = crate::now_unix();
    Ok(presented
        .filter(|p| {
            let f = &p.family;
            !p.used && f.client_id == caller && f.revoked_at.is_none() && f.expires_at > now
        })
        .map(|p| p.family))
}

/// Whether the principal a token was issued to may still act: a service account that
/// is not disabled (from memory), or an active user.
async fn principal_active(state: &AppState, claims: &Value) -> Result<bool, OAuthError> {
    let client_id = claims["client_id"].as_str().unwrap_or("");
    if let Some(sa) = state
        .view
        .load()
        .as_ref()
        .as_ref()
        .and_then(|v| v.service_accounts.get(client_id))
    {
        return Ok(!sa.disabled && claims["sub"] == sa.id.as_str());
    }
    let sub = claims["sub"].as_str().unwrap_or("");
    Ok(super::issue::active_user(state, sub).await?.is_some())
}

/// `POST /oauth2/introspect`.
pub async fn introspect(
    State(state): State<AppState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let addr = ClientAddr::of(addr);
    let run = async {
        let (form, caller) = authenticated(&state, &headers, &body, &addr, false).await?;
        let token = form.get("token").unwrap_or_default();
        if let Some(f) = own_family(&state, token, &caller).await? {
            return Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": f.client_id,
                "sub": f.user_id,
                "scope": f.scope,
                "exp": f.expires_at,
                "iss": state.issuer,
            }));
        }
        let Some(claims) = verified(&state, token).filter(|c| concerns(c, &caller)) else {
            return Ok(json!({ "active": false }));
        };
        if is_revoked(&state, claims["jti"].as_str().unwrap_or("")).await?
            || !principal_active(&state, &claims).await?
        {
            return Ok(json!({ "active": false }));
        }
        let mut out = json!({ "active": true, "token_type": "Bearer" });
        for k in [
            "iss",
            "sub",
            "aud",
            "client_id",
            "scope",
            "jti",
            "iat",
            "exp",
            "roles",
        ] {
            if let Some(v) = claims.get(k) {
                out[k] = v.clone();
            }
        }
        Ok::<Value, OAuthError>(out)
    };
    match run.await {
        Ok(v) => no_store(v),
        Err(e) => e.into_response(),
    }
}

/// `POST /oauth2/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let addr = ClientAddr::of(addr);
    let run = async {
        let (form, caller) = authenticated(&state, &headers, &body, &addr, true).await?;
        let token = form.get("token").unwrap_or_default();
        if let Some(f) = own_family(&state, token, &caller).await? {
            state
                .store
                .revoke_family(&f.id, "revoked", crate::now_unix())
                .await
                .map_err(|_| OAuthError::temporarily_unavailable("the store is unavailable"))?;
            state
                .events
                .record(crate::server::events::AuthEvent::new(
                    format!("client:{caller}"),
                    "token.revoke",
                    "*",
                    json!({ "family": f.id }),
                ))
                .await;
        } else if let Some(claims) =
            verified(&state, token).filter(|c| c["client_id"] == caller.as_str())
        {
            let jti = claims["jti"].as_str().unwrap_or("");
            let left = claims["exp"].as_i64().unwrap_or(0) - crate::now_unix();
            if !jti.is_empty() && left > 0 {
                revoke_jti(&state, jti, left).await?;
                state
                    .events
                    .record(crate::server::events::AuthEvent::new(
                        format!("client:{caller}"),
                        "token.revoke",
                        "*",
                        json!({ "jti": jti }),
                    ))
                    .await;
            }
        }
        Ok::<(), OAuthError>(())
    };
    match run.await {
        Ok(()) => no_store(json!({})),
        Err(e) => e.into_response(),
    }
}
