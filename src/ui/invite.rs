//! Invitation links. An invitation made through the admin API mails the invitee a
//! link (built from the issuer, good for 7 days and once); since only the address's
//! owner can open it, following it verifies the address. Someone without an account
//! chooses a password and gets one (with no organization of their own); someone with
//! one just accepts. Either way the pending invitations of the address become
//! bindings, the granting rule checked again against each inviter.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::session;
use crate::access::{self, AccessError, Ctx};
use crate::ephemeral::{EphemeralError, EphemeralStore};
use crate::mail::Mail;
use crate::server::AppState;

/// Where invitation links lead.
pub const PATH: &str = "/invite";
/// How long an invitation link is good.
pub const LINK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn key(token: &str) -> String {
    format!("invite:{}", crate::crypto::token_hash(token))
}

/// Mails `email` a link to accept being invited to `role` on `scope` by `by`.
pub async fn send(
    state: &AppState,
    email: &str,
    role: &str,
    scope: &str,
    by: &str,
) -> Result<(), EphemeralError> {
    let token = crate::crypto::new_token();
    let what = format!("{role} on {scope}");
    let body = serde_json::to_vec(&json!({ "email": email, "what": what })).unwrap_or_default();
    state.ephemeral.put(&key(&token), &body, LINK_TTL).await?;
    let name = &state.config.instance_name;
    state.mailer.send_later(
        state.mail_from.clone(),
        Mail {
            to: email.to_owned(),
            subject: format!("You are invited to {scope} on {name}"),
            text: format!(
                "{by} invited you ({email}) to {what} on {name}.\n\n\
                 To accept, open this link within 7 days:\n\n{}{PATH}?token={token}\n\n\
                 If you do not know why you got this, ignore it.\n",
                state.issuer
            ),
        },
    );
    Ok(())
}

async fn link(state: &AppState, token: &str, take: bool) -> Result<Option<(String, String)>, ()> {
    let raw = if take {
        state.ephemeral.take(&key(token)).await
    } else {
        state.ephemeral.get(&key(token)).await
    }
    .map_err(|_| ())?;
    Ok(raw
        .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r).ok())
        .and_then(|v| {
            Some((
                v["email"].as_str()?.to_owned(),
                v["what"].as_str()?.to_owned(),
            ))
        }))
}

fn broken(state: &AppState) -> Response {
    state.pages.message(
        StatusCode::BAD_REQUEST,
        "This invitation link does not work",
        "The link is expired or was used already.",
        "Ask the person who invited you to invite you again.",
    )
}

fn page_for(state: &AppState, headers: &HeaderMap, ctx: serde_json::Value) -> Response {
    super::form_again(state, headers, "invite.html", ctx)
}

/// The link's query.
#[derive(Deserialize)]
pub struct LinkQuery {
    /// The token.
    pub token: Option<String>,
}

/// `GET /invite?token=...`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    let (email, what) = match link(&state, &token, false).await {
        Err(()) => return state.pages.unavailable(),
        Ok(None) => return broken(&state),
        Ok(Some(l)) => l,
    };
    let Ok(user) = state.store.user_by_email(&email).await else {
        return state.pages.unavailable();
    };
    page_for(
        &state,
        &headers,
        json!({ "token": token, "email": email, "what": what, "new_account": user.is_none_or(|u| !u.email_verified), "display_name": "" }),
    )
}

/// The acceptance form.
#[derive(Deserialize)]
pub struct AcceptForm {
    /// The CSRF token.
    pub csrf_token: Option<String>,
    /// The link's token.
    #[serde(default)]
    pub token: String,
    /// For a new account.
    #[serde(default)]
    pub display_name: String,
    /// For a new account.
    #[serde(default)]
    pub password: String,
}

/// `POST /invite`.
pub async fn accept(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<AcceptForm>,
) -> Response {
    if !session::csrf_ok(&state, &headers, f.csrf_token.as_deref()) {
        return super::authorize::forbidden(&state);
    }
    let (email, what) = match link(&state, &f.token, false).await {
        Err(()) => return state.pages.unavailable(),
        Ok(None) => return broken(&state),
        Ok(Some(l)) => l,
    };
    let user = match state.store.user_by_email(&email).await {
        Err(_) => return state.pages.unavailable(),
        Ok(Some(u)) if u.disabled => return broken(&state),
        Ok(u) => u,
    };
    // An unverified account is as good as none: whoever made it never proved the
    // address, so the invitee chooses the password now.
    let needs_password = user.as_ref().is_none_or(|u| !u.email_verified);
    if needs_password && let Err(m) = crate::bootstrap::check_password(&f.password) {
        return page_for(
            &state,
            &headers,
            json!({ "token": f.token, "email": email, "what": what, "new_account": true, "display_name": f.display_name, "error": m }),
        );
    }
    // Only now is the link used up: once, even when two requests race.
    match link(&state, &f.token, true).await {
        Err(()) => return state.pages.unavailable(),
        Ok(None) => return broken(&state),
        Ok(Some(_)) => {}
    }
    let mut password_hash = None;
    let user = match user {
        Some(u) if u.email_verified => u,
        Some(u) => {
            match state.passwords.hash(f.password.clone()).await {
                Ok(h) => password_hash = Some(h),
                Err(_) => return state.pages.unavailable(),
            }
            u
        }
        None => {
            let view = state.view.load_full();
            let Some(v) = view.as_ref().as_ref() else {
                return state.pages.unavailable();
            };
            let ctx = Ctx {
                store: &state.store,
                evaluator: &v.evaluator,
                ephemeral: &state.ephemeral,
                now: crate::now_unix(),
            };
            match access::accounts::sign_up(
                &ctx,
                &state.passwords,
                &email,
                &f.display_name,
                f.password.clone(),
                true,
            )
            .await
            {
                Ok(Some(u)) => u,
                Ok(None) => match state.store.user_by_email(&email).await {
                    Ok(Some(u)) => u,
                    _ => return state.pages.unavailable(),
                },
                Err(AccessError::Invalid { message, .. }) => {
                    return state.pages.message(
                        StatusCode::BAD_REQUEST,
                        "The account was not created",
                        &message,
                        "",
                    );
                }
                Err(_) => return state.pages.unavailable(),
            }
        }
    };
    match super::signup::finish_verification(&state, &user, password_hash.as_deref(), false).await {
        Ok(said) => state
            .pages
            .message(StatusCode::OK, "Welcome", &said, "Sign in to continue."),
        Err(_) => state.pages.unavailable(),
    }
}
