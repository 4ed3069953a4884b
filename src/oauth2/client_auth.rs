//! Client authentication at the token endpoint: `client_secret_basic` (RFC 6749
//! section 2.3.1, the id and secret form-urlencoded inside HTTP Basic) and
//! `client_secret_post`. Exactly one method per request.

use axum::http::{HeaderMap, header};
use base64::Engine;

use serde_json::json;

use super::OAuthError;
use super::token::Form;
use crate::crypto::secret;
use crate::server::AppState;
use crate::server::events::AuthEvent;
use crate::server::state::View;
use crate::store::directory::ServiceAccountCredentials;
use crate::store::iam::ClientRow;
use std::sync::Arc;

/// The credentials a client presented. `Debug` never prints the secret.
#[derive(PartialEq, Eq)]
pub struct Presented {
    /// The client id.
    pub client_id: String,
    /// The secret.
    pub secret: String,
    /// Whether they came in HTTP Basic (failures then challenge for it).
    pub basic: bool,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("client_id", &self.client_id)
            .field("secret", &"[redacted]")
            .field("basic", &self.basic)
            .finish()
    }
}

fn form_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// Reads the client's credentials from the request; `None` when it presented none.
pub fn presented(headers: &HeaderMap, form: &Form) -> Result<Option<Presented>, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| OAuthError::invalid_client(true))?;
            let Some(encoded) = v
                .strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
            else {
                return Err(OAuthError::invalid_request(
                    "unsupported Authorization scheme at the token endpoint",
                ));
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| OAuthError::invalid_client(true))?;
            let text = String::from_utf8(raw).map_err(|_| OAuthError::invalid_client(true))?;
            let (id, secret) = text
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client(true))?;
            let id = form_decode(id).ok_or_else(|| OAuthError::invalid_client(true))?;
            let secret = form_decode(secret).ok_or_else(|| OAuthError::invalid_client(true))?;
            Some(Presented {
                client_id: id,
                secret,
                basic: true,
            })
        }
    };
    let post_secret = form.get("client_secret");
    match (basic, post_secret) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(
            "use one client authentication method, not two",
        )),
        (Some(b), None) => {
            if form.get("client_id").is_some_and(|id| id != b.client_id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the authenticated client",
                ));
            }
            Ok(Some(b))
        }
        (None, Some(secret)) => {
            let id = form
                .get("client_id")
                .ok_or_else(|| OAuthError::invalid_request("client_secret without client_id"))?;
            Ok(Some(Presented {
                client_id: id.to_owned(),
                secret: secret.to_owned(),
                basic: false,
            }))
        }
        (None, None) => Ok(None),
    }
}

/// Authenticates a service account by any of its methods (`client_secret_basic`,
/// `client_secret_post`, `private_key_jwt`), from memory; failures are audited.
pub async fn authenticate<'v>(
    state: &AppState,
    view: &'v View,
    headers: &HeaderMap,
    form: &Form,
    addr: &str,
    now: i64,
) -> Result<&'v ServiceAccountCredentials, OAuthError> {
    // Repeated failures from one address slow its every attempt down. Service
    // accounts are never locked out: that would let anyone lock out a pipeline.
    if let Ok(wait) = crate::identity::throttle::owed(&state.ephemeral, None, addr).await
        && !wait.is_zero()
    {
        tokio::time::sleep(wait).await;
    }
    Ok(
        if form.get("client_assertion").is_some() || form.get("client_assertion_type").is_some() {
            if headers.contains_key(axum::http::header::AUTHORIZATION)
                || form.get("client_secret").is_some()
            {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not two",
                ));
            }
            match super::rfc7523::authenticate(state, view, form).await {
                Ok(sa) => sa,
                Err(e) => {
                    refused(state, &claimed_issuer(form), addr).await;
                    return Err(e);
                }
            }
        } else {
            let presented =
                presented(headers, form)?.ok_or_else(|| OAuthError::invalid_client(false))?;
            let key = state.kek.secret_key();
            let account = view.service_accounts.get(&presented.client_id);
            let authenticated = match account {
                Some(sa) => {
                    // Check every live secret, so the time does not say which one matched.
                    let mut ok = false;
                    for (hash, expires_at) in &sa.secrets {
                        let live = expires_at.is_none_or(|e| e > now);
                        ok |= secret::verify(key, &presented.secret, hash) && live;
                    }
                    ok && !sa.disabled
                }
                None => {
                    let _ = secret::verify(key, &presented.secret, DUMMY_HASH);
                    false
                }
            };
            match account.filter(|_| authenticated) {
                Some(sa) => sa,
                None => {
                    refused(state, &presented.client_id, addr).await;
                    return Err(OAuthError::invalid_client(presented.basic));
                }
            }
        },
    )
}

/// Authenticates a browser-login client (an application): a confidential client by
/// its secret (`client_secret_basic` or `client_secret_post`), a public client by its
/// `client_id` alone (it proves itself with PKCE). From memory; failures are audited
/// and throttled like a service account's.
pub async fn authenticate_app(
    state: &AppState,
    view: &View,
    headers: &HeaderMap,
    form: &Form,
    addr: &str,
) -> Result<Arc<ClientRow>, OAuthError> {
    if let Ok(wait) = crate::identity::throttle::owed(&state.ephemeral, None, addr).await
        && !wait.is_zero()
    {
        tokio::time::sleep(wait).await;
    }
    if form.get("client_assertion").is_some() {
        return Err(OAuthError::invalid_client(false));
    }
    match presented(headers, form)? {
        Some(p) => {
            let client = view.clients.get(&p.client_id);
            let hash = client.and_then(|c| c.secret_hash.as_deref());
            let ok = secret::verify(
                state.kek.secret_key(),
                &p.secret,
                hash.unwrap_or(DUMMY_HASH),
            ) && hash.is_some();
            match client.filter(|_| ok) {
                Some(c) => Ok(c.clone()),
                None => {
                    refused(state, &p.client_id, addr).await;
                    Err(OAuthError::invalid_client(p.basic))
                }
            }
        }
        None => {
            let id = form
                .get("client_id")
                .ok_or_else(|| OAuthError::invalid_client(false))?;
            match view.clients.get(id).filter(|c| c.public_client) {
                Some(c) => Ok(c.clone()),
                None => {
                    refused(state, id, addr).await;
                    Err(OAuthError::invalid_client(false))
                }
            }
        }
    }
}

/// A stored-hash stand-in verified when the client is unknown, so that answering
/// costs the same.
const DUMMY_HASH: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Records a failed client authentication: the address counts towards its throttle,
/// and the audit log gets an event naming the client it claimed to be (marked
/// unverified, bounded in length). Under a flood the events are dropped, never
/// waited for.
async fn refused(state: &AppState, claimed: &str, addr: &str) {
    let _ = crate::identity::throttle::failed(&state.ephemeral, None, addr).await;
    let claimed: String = claimed.chars().take(128).collect();
    state.events.record_lossy(AuthEvent::new(
        format!("client:{claimed}"),
        "token.refused",
        "*",
        json!({ "reason": "invalid_client", "address": addr, "client_verified": false }),
    ));
}

/// The client an assertion claims to come from (its unverified `iss`).
fn claimed_issuer(form: &Form) -> String {
    form.get("client_assertion")
        .and_then(|a| jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(a).ok())
        .and_then(|d| d.claims["iss"].as_str().map(str::to_owned))
        .or_else(|| form.get("client_id").map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form::parse(
            &pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&"),
        )
        .expect("form")
    }

    fn basic(user: &str, pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).expect("header"),
        );
        h
    }

    #[test]
    fn basic_and_post_are_read_and_exclusive() {
        let p = presented(&basic("my%20client", "s%3Acret"), &form(&[]))
            .expect("ok")
            .expect("some");
        assert_eq!(
            (p.client_id.as_str(), p.secret.as_str(), p.basic),
            ("my client", "s:cret", true)
        );
        let p = presented(
            &HeaderMap::new(),
            &form(&[("client_id", "c"), ("client_secret", "s")]),
        )
        .expect("ok")
        .expect("some");
        assert_eq!((p.client_id.as_str(), p.basic), ("c", false));
        assert!(
            presented(&HeaderMap::new(), &form(&[]))
                .expect("ok")
                .is_none()
        );
        let both =
            presented(&basic("c", "s"), &form(&[("client_secret", "s")])).expect_err("two methods");
        assert_eq!(both.code, "invalid_request");
        let differs =
            presented(&basic("c", "s"), &form(&[("client_id", "d")])).expect_err("mismatch");
        assert_eq!(differs.code, "invalid_request");
        let mut junk = HeaderMap::new();
        junk.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic %%%"));
        let e = presented(&junk, &form(&[])).expect_err("junk");
        assert_eq!((e.code, e.basic_challenge), ("invalid_client", true));
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(
            presented(&bearer, &form(&[])).expect_err("scheme").code,
            "invalid_request"
        );
        assert_eq!(
            presented(&HeaderMap::new(), &form(&[("client_secret", "s")]))
                .expect_err("no id")
                .code,
            "invalid_request"
        );
    }
}
