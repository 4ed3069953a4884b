//! The userinfo endpoint (OpenID Connect Core section 5.3): a bearer access token
//! granted `openid` (RFC 6750, header only) gets the user's claims for the scopes it
//! was granted, the `roles` claim built now with the same narrowing as the token.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::iam::PrincipalKind;
use crate::iam::claim::roles_claim;
use crate::oauth2::{introspection, issue};
use crate::server::AppState;

/// Path of the userinfo endpoint.
pub const PATH: &str = "/oauth2/userinfo";

/// An RFC 6750 error with its `WWW-Authenticate` challenge.
fn challenge(status: StatusCode, code: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(json!({ "error": code, "error_description": description })),
    )
        .into_response();
    let value = if code.is_empty() {
        "Bearer".to_owned()
    } else {
        let description = description.replace(['"', '\\'], "'");
        format!("Bearer error=\"{code}\", error_description=\"{description}\"")
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// `GET` or `POST /oauth2/userinfo`.
pub async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else {
        return challenge(StatusCode::UNAUTHORIZED, "", "");
    };
    let invalid = || {
        challenge(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is invalid, expired or revoked",
        )
    };
    let Some(claims) = introspection::verified(&state, token) else {
        return invalid();
    };
    match introspection::is_revoked(&state, claims["jti"].as_str().unwrap_or("")).await {
        Ok(false) => {}
        Ok(true) => return invalid(),
        Err(e) => return e.into_response(),
    }
    let scopes: Vec<String> = claims["scope"]
        .as_str()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        return challenge(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the access token was not granted the openid scope",
        );
    }
    let sub = claims["sub"].as_str().unwrap_or("");
    let user = match issue::active_user(&state, sub).await {
        Ok(Some(u)) => u,
        Ok(None) => return invalid(),
        Err(e) => return e.into_response(),
    };
    let mut out = json!({ "sub": user.id });
    if scopes.iter().any(|s| s == "email") {
        out["email"] = json!(user.email);
        out["email_verified"] = json!(user.email_verified);
    }
    if scopes.iter().any(|s| s == "profile") {
        out["name"] = json!(user.display_name);
    }
    let (want_roles, narrow) = issue::role_scopes(&scopes);
    if want_roles {
        let view = state.view.load();
        let Some(view) = view.as_ref().as_ref() else {
            return invalid();
        };
        let client_id = claims["client_id"].as_str().unwrap_or("");
        let Some(client) = view.clients.get(client_id) else {
            return invalid();
        };
        match roles_claim(
            &view.evaluator,
            PrincipalKind::User,
            &user.id,
            &narrow,
            &client.parent,
            crate::now_unix(),
        ) {
            Ok(c) => out["roles"] = Value::from(c.roles),
            Err(e) => {
                return challenge(StatusCode::FORBIDDEN, "insufficient_scope", &e.to_string());
            }
        }
    }
    let mut r = Json(out).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
