//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) at `/oauth2/logout`.
//!
//! With a valid `id_token_hint` (signed here, in the current session; an expired one
//! still names who and which client) the session ends at once. Without one, the user
//! is asked to confirm through a form with a CSRF token, so that no other site can
//! sign a user out with a link. `post_logout_redirect_uri` must be registered for the
//! client (named by the hint or by `client_id`), matched like a redirect URI;
//! otherwise the user stays on gatehouse's "signed out" page. Ending a session also
//! revokes the refresh tokens it gave out without `offline_access`.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use url::Url;

use crate::crypto::jwt;
use crate::oauth2::redirect;
use crate::oauth2::token::Form;
use crate::server::AppState;
use crate::server::events::AuthEvent;
use crate::ui::{self, authorize, session};

/// Path of the logout endpoint.
pub const PATH: &str = "/oauth2/logout";

/// The claims of an ID token signed here, expired or not.
fn hint_claims(state: &AppState, token: &str) -> Option<Value> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.typ.as_deref() != Some("JWT") {
        return None;
    }
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[state.issuer.as_str()]);
    v.validate_aud = false;
    v.validate_exp = false;
    v.set_required_spec_claims(&["iss", "sub", "aud"]);
    jwt::verify::<Value>(&state.keys.load(), crate::now_unix(), token, &v).ok()
}

/// `GET` or `POST /oauth2/logout`.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let text = if method == Method::POST {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        uri.query().unwrap_or("").to_owned()
    };
    let Ok(params) = Form::parse(&text) else {
        return state
            .pages
            .error("the sign-out request repeats a parameter");
    };
    let cur = match authorize::signed_in(&state, &headers).await {
        Ok(c) => c,
        Err(()) => return state.pages.unavailable(),
    };
    let hint = params
        .get("id_token_hint")
        .and_then(|t| hint_claims(&state, t));
    if params.get("id_token_hint").is_some() && hint.is_none() {
        tracing::debug!("logout with an id_token_hint that was not signed here");
    }
    let hint_client = hint
        .as_ref()
        .and_then(|c| c["aud"].as_str().map(str::to_owned));
    let client_id = match (hint_client, params.get("client_id")) {
        (Some(h), Some(c)) if h != c => {
            return state
                .pages
                .error("the sign-out request names two different applications");
        }
        (Some(h), _) => Some(h),
        (None, c) => c.map(str::to_owned),
    };
    let client = client_id.as_deref().and_then(|id| {
        state
            .view
            .load()
            .as_ref()
            .as_ref()
            .and_then(|v| v.clients.get(id).cloned())
    });
    let back = match (params.get("post_logout_redirect_uri"), &client) {
        (None, _) => None,
        (Some(uri), Some(c)) if redirect::matches(&c.redirect_uris, uri) => Some(uri.to_owned()),
        (Some(_), _) => {
            return state
                .pages
                .error("the application asked to return you to an address it has not registered");
        }
    };
    // The hint is good when it was issued in the current session (or nobody is signed
    // in): an ID token of an earlier session does not end this one unasked.
    let hint_ok = hint.as_ref().is_some_and(|h| {
        cur.as_ref().is_none_or(|c| {
            h["sub"].as_str() == Some(c.session.user_id.as_str())
                && h["sid"].as_str() == Some(c.sid.as_str())
        })
    });
    let confirmed = method == Method::POST && params.get("confirm") == Some("yes") && {
        session::csrf_ok(&state, &headers, params.get("csrf_token"))
    };
    if method == Method::POST && params.get("confirm").is_some() && !confirmed {
        return authorize::forbidden(&state);
    }
    if cur.is_some() && !hint_ok && !confirmed {
        return ui::form(
            &state,
            &headers,
            StatusCode::OK,
            "logout.html",
            json!({
                "client_id": client.as_ref().map(|c| c.client_id.clone()),
                "client_name": client.as_ref().map(|c| c.display_name.clone()),
                "post_logout_redirect_uri": back,
                "state": params.get("state"),
            }),
        );
    }
    if let Some(c) = &cur {
        let now = crate::now_unix();
        if session::end(&state, &c.sid).await.is_err() {
            return state.pages.unavailable();
        }
        let Ok(revoked) = state.store.revoke_session_families(&c.sid, now).await else {
            return state.pages.unavailable();
        };
        state
            .events
            .record(AuthEvent::new(
                format!("user:{}", c.session.user_id),
                "logout",
                "*",
                json!({ "session": c.sid, "client_id": client_id, "revoked_families": revoked }),
            ))
            .await;
    }
    let mut r = match back.and_then(|b| Url::parse(&b).ok()) {
        Some(mut u) => {
            if let Some(s) = params.get("state") {
                u.query_pairs_mut().append_pair("state", s);
            }
            ui::see_other(u.as_str())
        }
        None => state.pages.message(
            StatusCode::OK,
            "You are signed out",
            "You have signed out. You can close this page.",
            "",
        ),
    };
    r.headers_mut()
        .append(header::SET_COOKIE, session::clear(&state));
    r
}
