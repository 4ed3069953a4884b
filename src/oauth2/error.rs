//! OAuth errors (RFC 6749 section 5.2, RFC 8707 section 2): a code, a description
//! for the client, and the HTTP status. Token-endpoint errors are JSON with
//! `Cache-Control: no-store`; a failed HTTP Basic client authentication is a 401 with
//! a `WWW-Authenticate` challenge (section 5.2, `invalid_client`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An OAuth error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    /// The RFC error code.
    pub code: &'static str,
    /// Human-readable, safe to show the client.
    pub description: String,
    /// The HTTP status.
    pub status: StatusCode,
    /// Whether to challenge for HTTP Basic (the client tried it).
    pub basic_challenge: bool,
}

impl OAuthError {
    fn new(code: &'static str, status: StatusCode, description: impl Into<String>) -> OAuthError {
        OAuthError {
            code,
            description: description.into(),
            status,
            basic_challenge: false,
        }
    }

    /// `invalid_request`: malformed, missing or repeated parameters.
    pub fn invalid_request(d: impl Into<String>) -> OAuthError {
        Self::new("invalid_request", StatusCode::BAD_REQUEST, d)
    }

    /// `invalid_client`: client authentication failed (401).
    pub fn invalid_client(basic: bool) -> OAuthError {
        OAuthError {
            basic_challenge: basic,
            ..Self::new(
                "invalid_client",
                StatusCode::UNAUTHORIZED,
                "client authentication failed",
            )
        }
    }

    /// `invalid_grant`: the grant or refresh token is invalid, expired or revoked.
    pub fn invalid_grant(d: impl Into<String>) -> OAuthError {
        Self::new("invalid_grant", StatusCode::BAD_REQUEST, d)
    }

    /// `unauthorized_client`: this client may not use this grant.
    pub fn unauthorized_client(d: impl Into<String>) -> OAuthError {
        Self::new("unauthorized_client", StatusCode::BAD_REQUEST, d)
    }

    /// `unsupported_grant_type`.
    pub fn unsupported_grant_type(d: impl Into<String>) -> OAuthError {
        Self::new("unsupported_grant_type", StatusCode::BAD_REQUEST, d)
    }

    /// `invalid_scope`.
    pub fn invalid_scope(d: impl Into<String>) -> OAuthError {
        Self::new("invalid_scope", StatusCode::BAD_REQUEST, d)
    }

    /// `invalid_target` (RFC 8707): the resource is not a registered API.
    pub fn invalid_target(d: impl Into<String>) -> OAuthError {
        Self::new("invalid_target", StatusCode::BAD_REQUEST, d)
    }

    /// `server_error`: anything else; details are logged, not sent.
    pub fn server_error() -> OAuthError {
        Self::new(
            "server_error",
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server could not complete the request",
        )
    }

    /// `temporarily_unavailable`.
    pub fn temporarily_unavailable(d: impl Into<String>) -> OAuthError {
        Self::new(
            "temporarily_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            d,
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({ "error": self.code, "error_description": self.description })),
        )
            .into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.basic_challenge {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"gatehouse\", charset=\"UTF-8\""),
            );
        }
        r
    }
}
