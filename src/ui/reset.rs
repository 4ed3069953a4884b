//! Password reset by mail. `POST /reset` always answers the same page, whether the
//! email has an account or not, and sends the mail in the background, so neither
//! the words nor the timing tell; requests are throttled per address and per email.
//! The link (built from the issuer, never from `Host`) carries 256 random bits, is
//! good for 30 minutes and once; setting the password revokes the account's refresh
//! tokens and voids its sessions.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::session;
use crate::access::{AccessError, Ctx};
use crate::ephemeral::EphemeralStore;
use crate::http::middleware::ClientAddr;
use crate::identity::throttle;
use crate::mail::Mail;
use crate::server::AppState;
use crate::server::events::AuthEvent;

/// Where a reset is asked for.
pub const PATH: &str = "/reset";
/// Where the link leads.
pub const CONFIRM_PATH: &str = "/reset/confirm";
/// How long a link is good.
pub const LINK_TTL: Duration = Duration::from_secs(30 * 60);
/// Reset requests per email (and per address) in the throttle window.
pub const REQUESTS_PER_WINDOW: u64 = 5;

fn key(token: &str) -> String {
    format!("reset:{}", crate::crypto::token_hash(token))
}

fn form(state: &AppState, headers: &HeaderMap, template: &str, ctx: serde_json::Value) -> Response {
    super::form_again(state, headers, template, ctx)
}

/// `GET /reset`.
pub async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    form(&state, &headers, "reset.html", json!({ "email": "" }))
}

/// The request form.
#[derive(Deserialize)]
pub struct RequestForm {
    /// The CSRF token.
    pub csrf_token: Option<String>,
    /// The account's email.
    #[serde(default)]
    pub email: String,
}

/// `POST /reset`.
pub async fn request(
    State(state): State<AppState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<RequestForm>,
) -> Response {
    let addr = ClientAddr::of(addr);
    if !session::csrf_ok(&state, &headers, f.csrf_token.as_deref()) {
        return super::authorize::forbidden(&state);
    }
    let Ok(email) = crate::bootstrap::normalize_email(&f.email) else {
        return form(
            &state,
            &headers,
            "reset.html",
            json!({ "email": f.email, "error": "Enter a valid email address." }),
        );
    };
    let sent = state.pages.message(
        StatusCode::OK,
        "Check your email",
        &format!(
            "If an account uses {email}, we sent it a link to choose a new password. The link works for 30 minutes, once."
        ),
        "Nothing arrived? Check the spam folder, or ask again in a few minutes.",
    );
    // Counted per email and per address whether or not the account exists.
    let by_email = throttle::attempt(&state.ephemeral, &format!("reset:{email}")).await;
    let by_addr = throttle::attempt(&state.ephemeral, &format!("reset-addr:{addr}")).await;
    if by_email.is_ok_and(|n| n > REQUESTS_PER_WINDOW)
        || by_addr.is_ok_and(|n| n > REQUESTS_PER_WINDOW * 4)
    {
        return sent;
    }
    let Ok(user) = state.store.user_by_email(&email).await else {
        return state.pages.unavailable();
    };
    let user = user.filter(|u| !u.disabled);
    // The same write either way (for no account, a link that leads nowhere), so the
    // answer takes as long.
    let token = crate::crypto::new_token();
    let value = user.as_ref().map(|u| u.id.as_bytes()).unwrap_or(b"");
    if state
        .ephemeral
        .put(&key(&token), value, LINK_TTL)
        .await
        .is_err()
    {
        return state.pages.unavailable();
    }
    if let Some(user) = user {
        let link = format!("{}{CONFIRM_PATH}?token={token}", state.issuer);
        state.mailer.send_later(
            state.mail_from.clone(),
            Mail {
                to: user.email.clone(),
                subject: format!("Reset your {} password", state.config.instance_name),
                text: format!(
                    "Someone asked to reset the password of your {} account ({}).\n\n\
                     To choose a new password, open this link within 30 minutes:\n\n{link}\n\n\
                     If it was not you, ignore this mail: your password stays as it is.\n",
                    state.config.instance_name, user.email
                ),
            },
        );
        state.events.record_lossy(AuthEvent::new(
            format!("user:{}", user.email),
            "user.password_reset_requested",
            "*",
            json!({ "address": addr }),
        ));
    }
    sent
}

/// The link's query.
#[derive(Deserialize)]
pub struct LinkQuery {
    /// The token.
    pub token: Option<String>,
}

fn expired(state: &AppState) -> Response {
    state.pages.message(
        StatusCode::BAD_REQUEST,
        "This link does not work",
        "The link is expired or was used already.",
        "Ask for a new one on the sign-in page (Forgot your password?).",
    )
}

/// `GET /reset/confirm?token=...`.
pub async fn confirm_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    match state.ephemeral.get(&key(&token)).await {
        Ok(Some(id)) if !id.is_empty() => form(
            &state,
            &headers,
            "reset_confirm.html",
            json!({ "token": token }),
        ),
        Ok(_) => expired(&state),
        Err(_) => state.pages.unavailable(),
    }
}

/// The new-password form.
#[derive(Deserialize)]
pub struct ConfirmForm {
    /// The CSRF token.
    pub csrf_token: Option<String>,
    /// The link's token.
    #[serde(default)]
    pub token: String,
    /// The new password.
    #[serde(default)]
    pub password: String,
}

/// `POST /reset/confirm`.
pub async fn confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<ConfirmForm>,
) -> Response {
    if !session::csrf_ok(&state, &headers, f.csrf_token.as_deref()) {
        return super::authorize::forbidden(&state);
    }
    if let Err(m) = crate::bootstrap::check_password(&f.password) {
        return form(
            &state,
            &headers,
            "reset_confirm.html",
            json!({ "token": f.token, "error": m }),
        );
    }
    // Taken, so the link works once even when two requests race.
    let user_id = match state.ephemeral.take(&key(&f.token)).await {
        Ok(Some(id)) => String::from_utf8(id).unwrap_or_default(),
        Ok(None) => return expired(&state),
        Err(_) => return state.pages.unavailable(),
    };
    let user = match state.store.user_by_id(&user_id).await {
        Ok(Some(u)) if !u.disabled => u,
        Ok(_) => return expired(&state),
        Err(_) => return state.pages.unavailable(),
    };
    let view = state.view.load();
    let Some(view) = view.as_ref().as_ref() else {
        return state.pages.unavailable();
    };
    let ctx = Ctx {
        store: &state.store,
        evaluator: &view.evaluator,
        ephemeral: &state.ephemeral,
        now: crate::now_unix(),
    };
    match crate::access::accounts::reset_password(&ctx, &state.passwords, &user, f.password).await {
        Ok(()) => {}
        Err(AccessError::Invalid { message, .. }) => {
            return form(
                &state,
                &headers,
                "reset_confirm.html",
                json!({ "token": "", "error": message }),
            );
        }
        Err(_) => return state.pages.unavailable(),
    }
    let _ = throttle::succeeded(&state.ephemeral, &user.email).await;
    let mut r = state.pages.message(
        StatusCode::OK,
        "Your password is changed",
        "Sign in with your new password. Every device that was signed in is signed out.",
        "",
    );
    r.headers_mut()
        .append(header::SET_COOKIE, session::clear(&state));
    r
}
