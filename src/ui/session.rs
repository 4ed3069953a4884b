//! Browser sessions and CSRF tokens.
//!
//! A session is a random id in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` unless
//! the issuer is `http` on loopback); short-lived state holds what it stands for under
//! the id's hash, so a leak of the store never yields a usable cookie, and every node
//! sees the same sessions when Redis is configured.
//!
//! CSRF tokens are the HMAC of a random per-browser cookie under a key derived from
//! the key-encryption key: a form posted from another site carries neither the
//! cookie's value nor a token that matches it.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};

use crate::ephemeral::{EphemeralError, EphemeralStore};
use crate::identity::session_key as key;
use crate::server::AppState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "gatehouse_session";
/// The per-browser cookie CSRF tokens are bound to.
pub const CSRF_COOKIE: &str = "gatehouse_csrf";

/// What a session stands for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The signed-in user's id.
    pub user_id: String,
    /// When the user last authenticated (Unix seconds).
    pub auth_time: i64,
    /// How (`pwd`).
    pub amr: Vec<String>,
    /// When the session started, in milliseconds (orders it against a voiding).
    #[serde(default)]
    pub started_ms: i64,
}

/// A session found on a request: its hash (the `sid` of ID tokens, the key of its
/// refresh-token families) and what it stands for.
#[derive(Clone, Debug)]
pub struct Current {
    /// The hash of the session id.
    pub sid: String,
    /// The session.
    pub session: Session,
}

/// A cookie's name: with an https issuer it carries the `__Host-` prefix, so that
/// the browser accepts it only from this origin (a sibling subdomain cannot plant
/// it).
pub fn cookie_name(state: &AppState, base: &str) -> String {
    if state.issuer.starts_with("https://") {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// The value of the cookie `base` (named by [`cookie_name`]), if the request has it.
fn read(state: &AppState, headers: &HeaderMap, base: &str) -> Option<String> {
    cookie(headers, &cookie_name(state, base))
}

/// The value of the cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value for the cookie `name` (see [`cookie_name`]); `max_age` `None`
/// makes a browser-session cookie, zero removes it.
pub fn set_cookie(
    state: &AppState,
    name: &str,
    value: &str,
    max_age: Option<Duration>,
) -> HeaderValue {
    let mut c = Cookie::build((cookie_name(state, name), value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.issuer.starts_with("https://"));
    if let Some(age) = max_age {
        let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
        c = c.max_age(cookie::time::Duration::seconds(secs));
    }
    HeaderValue::from_str(&c.build().to_string()).unwrap_or(HeaderValue::from_static(""))
}

/// A well-formed random id from a cookie (43 base64url characters).
fn well_formed(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The hash a session id is stored under.
pub fn sid_of(id: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    crate::crypto::b64(&d.as_ref()[..18])
}

/// The request's session, if it has a live one.
pub async fn current(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Current>, EphemeralError> {
    let Some(id) = read(state, headers, SESSION_COOKIE).filter(|v| well_formed(v)) else {
        return Ok(None);
    };
    let sid = sid_of(&id);
    let Some(raw) = state.ephemeral.get(&key(&sid)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<Session>(&raw)
        .ok()
        .map(|session| Current { sid, session }))
}

/// Starts a session; returns its `Set-Cookie` value and its hash.
pub async fn start(
    state: &AppState,
    session: &Session,
) -> Result<(HeaderValue, String), EphemeralError> {
    let id = crate::crypto::new_token();
    let sid = sid_of(&id);
    let ttl = Duration::from_secs(state.config.session_ttl_secs);
    let body = serde_json::to_vec(session).unwrap_or_default();
    state.ephemeral.put(&key(&sid), &body, ttl).await?;
    Ok((set_cookie(state, SESSION_COOKIE, &id, None), sid))
}

/// Ends the session with hash `sid`.
pub async fn end(state: &AppState, sid: &str) -> Result<(), EphemeralError> {
    state.ephemeral.delete(&key(sid)).await
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear(state: &AppState) -> HeaderValue {
    set_cookie(state, SESSION_COOKIE, "", Some(Duration::ZERO))
}

/// A CSRF token for a form, and the cookie to set when the browser has none yet.
pub struct Csrf {
    /// Goes into the form's `csrf_token` field.
    pub token: String,
    /// `Set-Cookie` for a new per-browser cookie.
    pub set_cookie: Option<HeaderValue>,
}

fn token_for(state: &AppState, browser: &str) -> String {
    let tag = aws_lc_rs::hmac::sign(state.kek.csrf_key(), browser.as_bytes());
    crate::crypto::b64(tag.as_ref())
}

/// The CSRF token of this browser, making its cookie when it has none.
pub fn csrf(state: &AppState, headers: &HeaderMap) -> Csrf {
    match read(state, headers, CSRF_COOKIE).filter(|v| well_formed(v)) {
        Some(browser) => Csrf {
            token: token_for(state, &browser),
            set_cookie: None,
        },
        None => {
            let browser = crate::crypto::new_token();
            Csrf {
                token: token_for(state, &browser),
                set_cookie: Some(set_cookie(state, CSRF_COOKIE, &browser, None)),
            }
        }
    }
}

/// Whether a posted form's `csrf_token` belongs to this browser (constant time),
/// and the request does not come from another origin.
pub fn csrf_ok(state: &AppState, headers: &HeaderMap, presented: Option<&str>) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let own = url::Url::parse(&state.issuer)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        // `null`: the page's no-referrer policy hides the origin; the token decides.
        if origin != "null" && origin != own {
            return false;
        }
    }
    let (Some(browser), Some(presented)) = (
        read(state, headers, CSRF_COOKIE).filter(|v| well_formed(v)),
        presented,
    ) else {
        return false;
    };
    let Some(tag) = crate::crypto::unb64(presented) else {
        return false;
    };
    aws_lc_rs::hmac::verify(state.kek.csrf_key(), browser.as_bytes(), &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_from_every_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("gatehouse_session=xyz"),
        );
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(!well_formed("xyz"));
        assert!(well_formed(&crate::crypto::b64(&[0u8; 32])));
        assert!(!well_formed(&format!(
            "{}=",
            crate::crypto::b64(&[0u8; 31])
        )));
    }
}
