//! The authorization endpoint (`/oauth2/authorize`) and the consent page.
//!
//! A checked request is kept in short-lived state as a pending authorization while
//! the user signs in and consents; the browser carries only its random id. Once the
//! user is signed in (fresh enough for `max_age` and `prompt=login`) and has
//! consented (first-party clients need no consent), a code goes back to the client's
//! verified redirect URI with `state` and `iss` (RFC 9207).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use super::session::{self, Current};
use crate::ephemeral::{EphemeralError, EphemeralStore};
use crate::oauth2::authorize::{self, AuthorizeError, AuthorizeRequest};
use crate::oauth2::code::{self, CodeGrant};
use crate::oauth2::token::Form;
use crate::oauth2::{OAuthError, issue};
use crate::server::AppState;
use crate::store::iam::ClientRow;

/// Path of the authorization endpoint.
pub const PATH: &str = "/oauth2/authorize";
/// Where the flow continues after login.
pub const RESUME_PATH: &str = "/oauth2/authorize/resume";
/// Where the consent form posts.
pub const CONSENT_PATH: &str = "/consent";

/// How long a user has to sign in and consent.
const PENDING_TTL: Duration = Duration::from_secs(15 * 60);

/// An authorization request waiting for the user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    /// The checked request.
    pub request: AuthorizeRequest,
    /// The session (hash) created by a login made for this request: in that session,
    /// it satisfies `prompt=login` and `max_age`.
    pub authenticated_sid: Option<String>,
}

fn pending_key(id: &str) -> String {
    format!("authz:{id}")
}

/// Loads a pending authorization.
pub async fn load(state: &AppState, id: &str) -> Result<Option<Pending>, EphemeralError> {
    if id.len() > 64 {
        return Ok(None);
    }
    Ok(state
        .ephemeral
        .get(&pending_key(id))
        .await?
        .and_then(|raw| serde_json::from_slice(&raw).ok()))
}

/// Stores a pending authorization under `id`.
pub async fn save(state: &AppState, id: &str, p: &Pending) -> Result<(), EphemeralError> {
    let body = serde_json::to_vec(p).unwrap_or_default();
    state
        .ephemeral
        .put(&pending_key(id), &body, PENDING_TTL)
        .await
}

/// A redirect to the client with `params` added to its redirect URI, plus `iss`.
fn back_to_client(state: &AppState, req: &AuthorizeRequest, params: &[(&str, &str)]) -> Response {
    let Ok(mut u) = Url::parse(&req.redirect_uri) else {
        return state
            .pages
            .error("the application's return address is invalid");
    };
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = &req.state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", &state.issuer);
    }
    super::see_other(u.as_str())
}

fn error_to_client(state: &AppState, req: &AuthorizeRequest, e: &OAuthError) -> Response {
    back_to_client(
        state,
        req,
        &[("error", e.code), ("error_description", &e.description)],
    )
}

fn client_of(state: &AppState, id: &str) -> Option<std::sync::Arc<ClientRow>> {
    state
        .view
        .load()
        .as_ref()
        .as_ref()
        .and_then(|v| v.clients.get(id).cloned())
}

/// `GET /oauth2/authorize` (and `POST`, form-encoded, OpenID Connect Core 3.1.2.1).
pub async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    method: axum::http::Method,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    let text = if method == axum::http::Method::POST {
        match std::str::from_utf8(&body) {
            Ok(t) => t.to_owned(),
            Err(_) => return state.pages.error("the request is not valid UTF-8"),
        }
    } else {
        uri.query().unwrap_or("").to_owned()
    };
    let params = match Form::parse(&text) {
        Ok(p) => p,
        Err(e) => return state.pages.error(&e.description),
    };
    let client = params.get("client_id").and_then(|id| client_of(&state, id));
    let req = match authorize::check(&params, client.as_deref()) {
        Ok(r) => r,
        Err(AuthorizeError::Page(msg)) => return state.pages.error(&msg),
        Err(e @ AuthorizeError::Redirect { .. }) => {
            return match e.location(&state.issuer) {
                Some(l) => super::see_other(&l),
                None => state
                    .pages
                    .error("the application's return address is invalid"),
            };
        }
    };
    let Some(client) = client else {
        return state.pages.error("the application is not registered");
    };
    // The API asked for must exist before the user is bothered.
    if let Some(view) = state.view.load().as_ref().as_ref()
        && let Err(e) = issue::audience(&state.issuer, view, &client, req.resource.as_deref())
    {
        return error_to_client(&state, &req, &e);
    }
    let id = crate::crypto::b64(&crate::crypto::random_bytes::<24>());
    let pending = Pending {
        request: req,
        authenticated_sid: None,
    };
    if save(&state, &id, &pending).await.is_err() {
        return state.pages.unavailable();
    }
    proceed(&state, &headers, &id, pending, &client).await
}

/// Query of the resume and login pages.
#[derive(Debug, Deserialize)]
pub struct PendingQuery {
    /// The pending authorization's id.
    pub pending: Option<String>,
}

/// `GET /oauth2/authorize/resume?pending=...`: continues after login.
pub async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PendingQuery>,
) -> Response {
    let id = q.pending.unwrap_or_default();
    match load(&state, &id).await {
        Err(_) => state.pages.unavailable(),
        Ok(None) => expired(&state),
        Ok(Some(p)) => match client_of(&state, &p.request.client_id) {
            Some(client) => proceed(&state, &headers, &id, p, &client).await,
            None => state.pages.error("the application is no longer registered"),
        },
    }
}

/// The page for a pending authorization that ran out.
pub fn expired(state: &AppState) -> Response {
    state.pages.message(
        StatusCode::BAD_REQUEST,
        "This sign-in took too long",
        "The sign-in request expired before it was finished.",
        "Go back to the application and start again.",
    )
}

/// The user behind a session, if the session is live and the account still active.
pub async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Option<Current>, ()> {
    let Some(cur) = session::current(state, headers).await.map_err(|_| ())? else {
        return Ok(None);
    };
    let void_before = state
        .ephemeral
        .get(&crate::access::principals::sessions_void_key(
            &cur.session.user_id,
        ))
        .await
        .map_err(|_| ())?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<i64>().ok());
    if void_before.is_some_and(|t| cur.session.started_ms <= t) {
        let _ = session::end(state, &cur.sid).await;
        return Ok(None);
    }
    match issue::active_user(state, &cur.session.user_id).await {
        Ok(Some(_)) => Ok(Some(cur)),
        Ok(None) => {
            let _ = session::end(state, &cur.sid).await;
            Ok(None)
        }
        Err(_) => Err(()),
    }
}

/// The consent items a request needs: its scopes, and the API it asks for.
fn consent_items(req: &AuthorizeRequest) -> Vec<String> {
    let mut items: Vec<String> = req.scopes.clone();
    if let Some(r) = &req.resource {
        items.push(format!("resource:{r}"));
    }
    items
}

/// Whether the session is fresh enough for the request: a login made for this very
/// request, in this session, satisfies `prompt=login` and any `max_age` (even 0).
fn fresh(p: &Pending, c: &Current, now: i64) -> bool {
    if p.authenticated_sid.as_deref() == Some(c.sid.as_str()) {
        return true;
    }
    let req = &p.request;
    !req.prompt.login
        && req
            .max_age
            .is_none_or(|m| now - c.session.auth_time <= i64::try_from(m).unwrap_or(i64::MAX))
}

/// Decides what comes next for a pending authorization: login, consent, or the code.
async fn proceed(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    p: Pending,
    client: &ClientRow,
) -> Response {
    let req = &p.request;
    let now = crate::now_unix();
    let cur = match signed_in(state, headers).await {
        Ok(c) => c,
        Err(()) => return state.pages.unavailable(),
    };
    let Some(cur) = cur.filter(|c| fresh(&p, c, now)) else {
        if req.prompt.none {
            return error_to_client(
                state,
                req,
                &OAuthError {
                    code: "login_required",
                    ..OAuthError::invalid_request("the user is not signed in")
                },
            );
        }
        return super::see_other(&format!("{}?pending={id}", super::login::PATH));
    };
    if !client.first_party {
        let given = match state
            .store
            .consent(&cur.session.user_id, &client.client_id)
            .await
        {
            Ok(g) => g,
            Err(_) => return state.pages.unavailable(),
        };
        let missing = consent_items(req).into_iter().any(|i| !given.contains(&i));
        if missing || req.prompt.consent {
            if req.prompt.none {
                return error_to_client(
                    state,
                    req,
                    &OAuthError {
                        code: "consent_required",
                        ..OAuthError::invalid_request("the user has not consented")
                    },
                );
            }
            return consent_page(state, headers, id, req, client, &cur).await;
        }
    }
    finish(state, id, req, &cur).await
}

/// Issues the code and sends the browser back to the client.
async fn finish(state: &AppState, id: &str, req: &AuthorizeRequest, cur: &Current) -> Response {
    let grant = CodeGrant {
        client_id: req.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        user_id: cur.session.user_id.clone(),
        scopes: req.scopes.clone(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        auth_time: cur.session.auth_time,
        resource: req.resource.clone(),
        sid: cur.sid.clone(),
        amr: cur.session.amr.clone(),
    };
    let Ok(code) = code::issue(state, &grant).await else {
        return state.pages.unavailable();
    };
    let _ = state.ephemeral.delete(&pending_key(id)).await;
    back_to_client(state, req, &[("code", &code)])
}

/// What a consent item means, in words.
fn describe(item: &str) -> String {
    match item {
        "openid" => "Know who you are".into(),
        "profile" => "See your name".into(),
        "email" => "See your email address".into(),
        "offline_access" => "Stay signed in and act for you while you are away".into(),
        "roles" => "See your roles and where they apply".into(),
        other => match (
            other.strip_prefix("roles:"),
            other.strip_prefix("resource:"),
        ) {
            (Some(r), _) => format!("See your roles in {r}"),
            (_, Some(api)) => format!("Use {api} on your behalf"),
            _ => other.to_owned(),
        },
    }
}

async fn consent_page(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    req: &AuthorizeRequest,
    client: &ClientRow,
    cur: &Current,
) -> Response {
    let email = match state.store.user_by_id(&cur.session.user_id).await {
        Ok(Some(u)) => u.email,
        _ => return state.pages.unavailable(),
    };
    let items: Vec<String> = consent_items(req).iter().map(|i| describe(i)).collect();
    super::form(
        state,
        headers,
        StatusCode::OK,
        "consent.html",
        json!({
            "pending": id,
            "client_name": client.display_name,
            "email": email,
            "items": items,
        }),
    )
}

/// The consent form.
#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    /// The CSRF token.
    pub csrf_token: Option<String>,
    /// The pending authorization.
    pub pending: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
}

/// `POST /consent`.
pub async fn consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<ConsentForm>,
) -> Response {
    if !session::csrf_ok(&state, &headers, f.csrf_token.as_deref()) {
        return forbidden(&state);
    }
    let id = f.pending.unwrap_or_default();
    let p = match load(&state, &id).await {
        Err(_) => return state.pages.unavailable(),
        Ok(None) => return expired(&state),
        Ok(Some(p)) => p,
    };
    let cur = match signed_in(&state, &headers).await {
        Err(()) => return state.pages.unavailable(),
        Ok(Some(c)) if fresh(&p, &c, crate::now_unix()) => c,
        Ok(_) => return super::see_other(&format!("{}?pending={id}", super::login::PATH)),
    };
    if f.decision.as_deref() != Some("allow") {
        let _ = state.ephemeral.delete(&pending_key(&id)).await;
        return error_to_client(
            &state,
            &p.request,
            &OAuthError {
                code: "access_denied",
                ..OAuthError::invalid_request("the user denied access")
            },
        );
    }
    let mut given = match state
        .store
        .consent(&cur.session.user_id, &p.request.client_id)
        .await
    {
        Ok(g) => g,
        Err(_) => return state.pages.unavailable(),
    };
    for item in consent_items(&p.request) {
        if !given.contains(&item) {
            given.push(item);
        }
    }
    if state
        .store
        .put_consent(
            &cur.session.user_id,
            &p.request.client_id,
            &given,
            crate::now_unix(),
        )
        .await
        .is_err()
    {
        return state.pages.unavailable();
    }
    state
        .events
        .record(crate::server::events::AuthEvent::new(
            format!("user:{}", cur.session.user_id),
            "consent.grant",
            "*",
            json!({ "client_id": p.request.client_id, "scopes": given }),
        ))
        .await;
    finish(&state, &id, &p.request, &cur).await
}

/// The page for a form posted without a valid CSRF token.
pub fn forbidden(state: &AppState) -> Response {
    let mut r = state.pages.message(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "For your security, the form could not be accepted.",
        "Go back, reload the page and try again.",
    );
    r.headers_mut().remove(header::SET_COOKIE);
    r.into_response()
}
