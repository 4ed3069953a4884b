//! The login page: `GET /login` shows the form (inputs `email` and `password`, a CSRF
//! token), `POST /login` checks it.
//!
//! The answer never tells whether an email has an account: an unknown email costs
//! one password hash like a known one, and gets the same words. Failures are counted
//! per account and per client address in short-lived state (so they hold across
//! nodes with Redis): after a few, every attempt waits longer; after
//! [`LOCKOUT_AFTER`] on one account, the account is locked for the rest of the
//! window whatever the password. Only after the right password does the page say
//! that an account is unverified or disabled. Logins, failures and lockouts are
//! audited.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::authorize::{self, PendingQuery};
use super::session::{self, Session};
use crate::http::middleware::ClientAddr;
use crate::identity::throttle;
use crate::server::AppState;
use crate::server::events::AuthEvent;

/// Path of the login page.
pub const PATH: &str = "/login";

/// Failures on one account, within the throttle window, that lock it.
pub const LOCKOUT_AFTER: u64 = 10;

const WRONG: &str = "The email or password is incorrect.";

/// What the login form needs besides the token.
struct Form<'a> {
    pending: Option<&'a str>,
    client_name: Option<String>,
    email: &'a str,
    error: Option<&'a str>,
}

fn render(state: &AppState, headers: &HeaderMap, status: StatusCode, f: Form<'_>) -> Response {
    super::form(
        state,
        headers,
        status,
        "login.html",
        json!({
            "pending": f.pending,
            "client_name": f.client_name,
            "email": f.email,
            "error": f.error,
            "providers": providers(state, f.pending),
        }),
    )
}

/// One button per upstream provider; one that cannot be reached is shown disabled.
fn providers(state: &AppState, pending: Option<&str>) -> Vec<serde_json::Value> {
    state
        .upstreams
        .list()
        .iter()
        .map(|u| {
            json!({
                "id": u.def.id,
                "display_name": u.def.display_name,
                "available": u.available(),
                "url": crate::federation::flow::start_url(&u.def.id, pending),
            })
        })
        .collect()
}

fn client_name(state: &AppState, client_id: &str) -> Option<String> {
    state
        .view
        .load()
        .as_ref()
        .as_ref()
        .and_then(|v| v.clients.get(client_id).map(|c| c.display_name.clone()))
}

/// `GET /login[?pending=...]`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PendingQuery>,
) -> Response {
    let (pending, client, hint) = match q.pending.as_deref() {
        None => (None, None, String::new()),
        Some(id) => match authorize::load(&state, id).await {
            Err(_) => return state.pages.unavailable(),
            Ok(None) => return authorize::expired(&state),
            Ok(Some(p)) => (
                Some(id),
                client_name(&state, &p.request.client_id),
                p.request.login_hint.unwrap_or_default(),
            ),
        },
    };
    render(
        &state,
        &headers,
        StatusCode::OK,
        Form {
            pending,
            client_name: client,
            email: &hint,
            error: None,
        },
    )
}

/// The posted login form.
#[derive(Deserialize)]
pub struct LoginForm {
    /// The CSRF token.
    pub csrf_token: Option<String>,
    /// The pending authorization, if the login is part of one.
    pub pending: Option<String>,
    /// The email address.
    #[serde(default)]
    pub email: String,
    /// The password.
    #[serde(default)]
    pub password: String,
}

/// `POST /login`.
pub async fn submit(
    State(state): State<AppState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let addr = ClientAddr::of(addr);
    let pending = f.pending.as_deref().filter(|p| !p.is_empty());
    let name = match pending {
        Some(id) => authorize::load(&state, id)
            .await
            .ok()
            .flatten()
            .and_then(|p| client_name(&state, &p.request.client_id)),
        None => None,
    };
    let again = |status: StatusCode, error: &str| {
        render(
            &state,
            &headers,
            status,
            Form {
                pending,
                client_name: name.clone(),
                email: &f.email,
                error: Some(error),
            },
        )
    };
    if !session::csrf_ok(&state, &headers, f.csrf_token.as_deref()) {
        return again(
            StatusCode::FORBIDDEN,
            "The form expired. Enter your email and password again.",
        );
    }
    let Ok(email) = crate::bootstrap::normalize_email(&f.email) else {
        return again(StatusCode::BAD_REQUEST, "Enter a valid email address.");
    };
    // Owed a delay, or locked: decided before the password is looked at. The attempt
    // is counted first, so parallel attempts cannot all pass the lock.
    let Ok(wait) = throttle::owed(&state.ephemeral, Some(&email), &addr).await else {
        return state.pages.unavailable();
    };
    let Ok(attempts) = throttle::attempt(&state.ephemeral, &email).await else {
        return state.pages.unavailable();
    };
    if attempts > LOCKOUT_AFTER {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed attempts. Wait 15 minutes, then try again.",
        );
    }
    tokio::time::sleep(wait).await;
    let Ok(user) = state.store.user_by_email(&email).await else {
        return state.pages.unavailable();
    };
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let ok = state.passwords.verify(f.password.clone(), hash).await;
    let user = match user.filter(|_| ok) {
        Some(u) => u,
        None => {
            let _ = throttle::failed(&state.ephemeral, None, &addr).await;
            let actor = format!("email:{email}");
            state.events.record_lossy(AuthEvent::new(
                actor.clone(),
                "login.failure",
                "*",
                json!({ "address": addr, "reason": "invalid_credentials" }),
            ));
            if attempts == LOCKOUT_AFTER {
                state
                    .events
                    .record(AuthEvent::new(
                        actor,
                        "login.lockout",
                        "*",
                        json!({ "address": addr, "failures": attempts, "for_secs": throttle::WINDOW.as_secs() }),
                    ))
                    .await;
            }
            return again(StatusCode::UNAUTHORIZED, WRONG);
        }
    };
    let _ = throttle::succeeded(&state.ephemeral, &email).await;
    if user.disabled || !user.email_verified {
        let reason = if user.disabled {
            "disabled"
        } else {
            "unverified"
        };
        state
            .events
            .record(AuthEvent::new(
                format!("user:{}", user.id),
                "login.refused",
                "*",
                json!({ "address": addr, "reason": reason }),
            ))
            .await;
        return if user.disabled {
            state.pages.message(
                StatusCode::FORBIDDEN,
                "This account is disabled",
                "An administrator has disabled this account, so it cannot sign in.",
                "If you think this is a mistake, contact your organization's administrator.",
            )
        } else {
            state.pages.message(
                StatusCode::FORBIDDEN,
                "Verify your email address first",
                "This account's email address has not been verified yet.",
                "Open the verification link we sent to your email address, then sign in again. \
                 If you cannot find it, ask your administrator to send a new invitation.",
            )
        };
    }
    establish(
        &state,
        &headers,
        &user,
        vec!["pwd".into()],
        pending,
        json!({ "address": addr }),
    )
    .await
}

/// Signs `user` in: a new session replaces the browser's old one (a new id, so a
/// planted cookie is worthless), the login is audited with `details`, and the
/// pending authorization, if any, continues.
pub async fn establish(
    state: &AppState,
    headers: &HeaderMap,
    user: &crate::store::iam::UserRow,
    amr: Vec<String>,
    pending: Option<&str>,
    mut details: serde_json::Value,
) -> Response {
    if let Ok(Some(old)) = session::current(state, headers).await {
        let _ = session::end(state, &old.sid).await;
        let _ = state
            .store
            .revoke_session_families(&old.sid, crate::now_unix())
            .await;
    }
    let now = crate::now_unix();
    let Ok((cookie, sid)) = session::start(
        state,
        &Session {
            user_id: user.id.clone(),
            auth_time: now,
            amr: amr.clone(),
            started_ms: crate::now_millis(),
        },
    )
    .await
    else {
        return state.pages.unavailable();
    };
    details["session"] = json!(sid);
    details["amr"] = json!(amr);
    state
        .events
        .record(AuthEvent::new(
            format!("user:{}", user.id),
            "login.success",
            "*",
            details,
        ))
        .await;
    let mut r = match pending {
        Some(id) => match authorize::load(state, id).await {
            Ok(Some(mut p)) => {
                p.authenticated_sid = Some(sid.clone());
                if authorize::save(state, id, &p).await.is_err() {
                    return state.pages.unavailable();
                }
                super::see_other(&format!("{}?pending={id}", authorize::RESUME_PATH))
            }
            Ok(None) => authorize::expired(state),
            Err(_) => state.pages.unavailable(),
        },
        None => state.pages.message(
            StatusCode::OK,
            "You are signed in",
            &format!("Signed in as {}.", user.email),
            "You can close this page, go to your account page, or go back to the application \
             you came from.",
        ),
    };
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r
}
