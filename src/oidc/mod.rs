//! OpenID Connect documents: discovery (OpenID Connect Discovery 1.0) and the JWKS
//! (RFC 7517), served from bytes prepared when the keys change, with entity tags and
//! cache lifetimes so relying parties and resource servers cache them.

pub mod id_token;
pub mod logout;
pub mod userinfo;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::config::Config;
use crate::server::{AppState, Document};

/// Path of the JWKS document.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Path of the published role catalog.
pub const ROLE_CATALOG_PATH: &str = "/.well-known/role-catalog.json";
/// Path of the discovery document.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The discovery document of `issuer`.
pub fn discovery(issuer: &str, config: &Config) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "userinfo_endpoint": format!("{issuer}/oauth2/userinfo"),
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "role_catalog_uri": format!("{issuer}{ROLE_CATALOG_PATH}"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "end_session_endpoint": format!("{issuer}/oauth2/logout"),
        "scopes_supported": ["openid", "profile", "email", "offline_access", "roles"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [config.signing_alg.as_str()],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt", "none"
        ],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_supported": ["sub", "iss", "aud", "azp", "exp", "iat", "auth_time", "nonce", "sid", "amr", "at_hash", "email", "email_verified", "name", "roles"],
    })
}

/// Serves a prepared document with conditional-GET support.
fn document(doc: &Document, max_age: u64, headers: &HeaderMap) -> Response {
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .unwrap_or(HeaderValue::from_static("no-cache"));
    let etag = HeaderValue::from_str(&doc.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == doc.etag || t.trim() == "*")
        });
    if not_modified {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::CACHE_CONTROL, cache), (header::ETAG, etag)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, cache),
            (header::ETAG, etag),
        ],
        doc.body.clone(),
    )
        .into_response()
}

/// `GET /.well-known/openid-configuration`.
pub async fn discovery_document(State(state): State<AppState>, headers: HeaderMap) -> Response {
    document(&state.discovery, state.config.jwks_cache_secs, &headers)
}

/// `GET /.well-known/role-catalog.json`: role to permissions, inheritance and
/// deprecation, for resource servers deciding offline.
pub async fn role_catalog_document(State(state): State<AppState>, headers: HeaderMap) -> Response {
    document(
        &state.role_catalog.load(),
        state.config.jwks_cache_secs,
        &headers,
    )
}

/// `GET /.well-known/jwks.json`.
pub async fn jwks_document(State(state): State<AppState>, headers: HeaderMap) -> Response {
    document(&state.jwks.load(), state.config.jwks_cache_secs, &headers)
}
