//! `private_key_jwt` client authentication (RFC 7523 section 2.2, OpenID Connect
//! Core section 9): the client signs a short-lived JWT with a key whose public half
//! it registered. `iss` and `sub` are its client id, `aud` names this token endpoint
//! or the issuer, `exp` is near, and each `jti` is accepted once (remembered in
//! short-lived state until the assertion expires, so it holds across nodes).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::OAuthError;
use super::token::Form;
use crate::ephemeral::EphemeralStore;
use crate::server::AppState;
use crate::server::state::View;
use crate::store::directory::ServiceAccountCredentials;

/// The only assertion type accepted.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may live.
const MAX_LIFETIME_SECS: i64 = 600;

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    jti: Option<String>,
}

/// A registered key parsed for verification, with the algorithms it may use.
fn parse(pem: &str) -> Option<(DecodingKey, Vec<Algorithm>)> {
    let b = pem.as_bytes();
    if let Ok(k) = DecodingKey::from_ed_pem(b) {
        return Some((k, vec![Algorithm::EdDSA]));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(b) {
        return Some((k, vec![Algorithm::ES256]));
    }
    DecodingKey::from_rsa_pem(b)
        .ok()
        .map(|k| (k, vec![Algorithm::RS256, Algorithm::PS256]))
}

/// Authenticates the client from its assertion; `invalid_client` for anything wrong.
pub async fn authenticate<'v>(
    state: &AppState,
    view: &'v View,
    form: &Form,
) -> Result<&'v ServiceAccountCredentials, OAuthError> {
    let refuse = || OAuthError::invalid_client(false);
    if form.get("client_assertion_type") != Some(JWT_BEARER) {
        return Err(OAuthError::invalid_request(format!(
            "client_assertion_type must be {JWT_BEARER}"
        )));
    }
    let assertion = form
        .get("client_assertion")
        .ok_or_else(|| OAuthError::invalid_request("client_assertion is missing"))?;
    // Which client: the unverified `iss`, checked against the signature below.
    let unverified = jsonwebtoken::dangerous::insecure_decode::<AssertionClaims>(assertion)
        .map_err(|_| refuse())?;
    let client_id = unverified.claims.iss;
    if form.get("client_id").is_some_and(|id| id != client_id) {
        return Err(refuse());
    }
    let sa = view
        .service_accounts
        .get(&client_id)
        .filter(|sa| !sa.disabled)
        .ok_or_else(refuse)?;
    let now = crate::now_unix();
    let token_endpoint = format!("{}{}", state.issuer, super::token::PATH);
    let mut verified: Option<AssertionClaims> = None;
    for (pem, expires_at) in &sa.keys {
        if expires_at.is_some_and(|e| e <= now) {
            continue;
        }
        let Some((key, algorithms)) = parse(pem) else {
            continue;
        };
        let mut v = Validation::new(algorithms[0]);
        v.algorithms = algorithms;
        v.set_audience(&[token_endpoint.as_str(), state.issuer.as_str()]);
        v.set_issuer(&[client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        v.leeway = 30;
        if let Ok(data) = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v) {
            verified = Some(data.claims);
            break;
        }
    }
    let claims = verified.ok_or_else(refuse)?;
    if claims.sub != client_id
        || claims.exp - claims.iat.unwrap_or(now).min(now) > MAX_LIFETIME_SECS
    {
        return Err(refuse());
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(refuse)?;
    let ttl = Duration::from_secs(u64::try_from(claims.exp - now + 60).unwrap_or(60).max(60));
    let fresh = state
        .ephemeral
        .put_if_absent(&format!("assertion-jti:{client_id}:{jti}"), b"1", ttl)
        .await
        .map_err(|_| OAuthError::temporarily_unavailable("short-lived state is unavailable"))?;
    if !fresh {
        return Err(refuse());
    }
    Ok(sa)
}
