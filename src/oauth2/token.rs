//! The token endpoint (RFC 6749 section 3.2): form-encoded requests, each parameter
//! at most once (`resource` may repeat, RFC 8707), dispatched by `grant_type`.
//! Responses carry `Cache-Control: no-store`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::OAuthError;
use crate::http::middleware::ClientAddr;
use crate::server::AppState;

/// Path of the token endpoint.
pub const PATH: &str = "/oauth2/token";

/// The most parameters a request may carry.
pub const MAX_PARAMETERS: usize = 64;

/// A parsed form body. `Debug` prints parameter names only: values may be secrets.
#[derive(Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Form {
    /// Parses `application/x-www-form-urlencoded`; a repeated parameter other than
    /// `resource` is `invalid_request`.
    pub fn parse(body: &str) -> Result<Form, OAuthError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
            if pairs.len() == MAX_PARAMETERS {
                return Err(OAuthError::invalid_request(format!(
                    "more than {MAX_PARAMETERS} parameters"
                )));
            }
            if k != "resource" && !seen.insert(k.clone()) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} appears more than once",
                    k.chars().take(64).collect::<String>()
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Form { pairs })
    }

    /// The value of a parameter; an empty value counts as absent (RFC 6749 section 3.1).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A successful token response (RFC 6749 section 5.1).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The granted scope.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// The refresh token (user grants).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The ID token (with scope `openid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// `POST /oauth2/token`.
pub async fn token(
    State(state): State<AppState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let addr = ClientAddr::of(addr);
    match handle(&state, &headers, &body, &addr).await {
        Ok(t) => no_store(Json(t).into_response()),
        Err(e) => {
            if e.code == "server_error" {
                tracing::error!("token endpoint failed");
            }
            e.into_response()
        }
    }
}

/// Parses a form-encoded request body; anything else is `invalid_request`.
pub fn form_body(headers: &HeaderMap, body: &[u8]) -> Result<Form, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    Form::parse(text)
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    addr: &str,
) -> Result<TokenResponse, OAuthError> {
    let form = form_body(headers, body)?;
    match form.get("grant_type") {
        None => Err(OAuthError::invalid_request("grant_type is required")),
        Some("client_credentials") => {
            super::client_credentials::grant(state, headers, &form, addr).await
        }
        Some("authorization_code") => super::code::grant(state, headers, &form, addr).await,
        Some("refresh_token") => super::refresh::grant(state, headers, &form, addr).await,
        Some(other) => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {other:?} is not supported here"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_appear_once_except_resource() {
        let f = Form::parse(
            "grant_type=client_credentials&scope=roles%20roles%3Aorgs%2Fa&resource=a&resource=b",
        )
        .expect("form");
        assert_eq!(f.get("scope"), Some("roles roles:orgs/a"));
        assert_eq!(f.all("resource"), vec!["a", "b"]);
        assert_eq!(
            Form::parse("scope=a&scope=b").expect_err("repeated").code,
            "invalid_request"
        );
        assert_eq!(Form::parse("scope=").expect("empty").get("scope"), None);
        let many: Vec<String> = (0..=MAX_PARAMETERS).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            Form::parse(&many.join("&")).expect_err("too many").code,
            "invalid_request"
        );
        assert!(Form::parse(&many[..MAX_PARAMETERS].join("&")).is_ok());
    }
}
