//! Self-service sign-up and email verification.
//!
//! `POST /signup` answers the same "check your email" page whether or not the email
//! has an account (an existing account gets a mail saying so instead), so sign-up
//! tells nobody which addresses are registered. The account starts unverified; the
//! mailed link (built from the issuer, good for 24 hours and once) leads to a page
//! whose button verifies it, so that mail scanners fetching links verify nothing.
//! Verifying turns pending invitations into bindings (the granting rule checked again
//! against each inviter); a person who signed up with no invitation waiting gets an
//! organization of their own, with a generated slug, as its owner.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::session;
use crate::access::{self, AccessError, Ctx};
use crate::ephemeral::EphemeralStore;
use crate::http::middleware::ClientAddr;
use crate::iam::names::Kind;
use crate::identity::throttle;
use crate::mail::Mail;
use crate::server::AppState;

/// The sign-up page.
pub const PATH: &str = "/signup";
/// Where verification links lead.
pub const VERIFY_PATH: &str = "/verify";
/// How long a verification link is good.
pub const LINK_TTL: Duration = Duration::from_secs(24 * 3600);
/// Sign-ups per client address in the throttle window.
pub const PER_ADDRESS: u64 = 10;

/// What a verification link stands for.
#[derive(Serialize, Deserialize)]
struct Link {
    user_id: String,
    /// The password chosen with the sign-up that asked for this link.
    #[serde(default)]
    password_hash: Option<String>,
}

fn key(token: &str) -> String {
    format!("verify:{}", crate::crypto::token_hash(token))
}

fn closed(state: &AppState) -> Response {
    state.pages.message(
        StatusCode::FORBIDDEN,
        "Sign-up is closed",
        "This instance does not let people create accounts themselves.",
        "Ask an administrator of your organization for an invitation.",
    )
}

fn form(state: &AppState, headers: &HeaderMap, ctx: serde_json::Value) -> Response {
    super::form_again(state, headers, "signup.html", ctx)
}

/// `GET /signup`.
pub async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.config.signup_enabled {
        return closed(&state);
    }
    form(&state, &headers, json!({ "email": "", "display_name": "" }))
}

/// The sign-up form.
#[derive(Deserialize)]
pub struct SignupForm {
    /// The CSRF token.
    pub csrf_token: Option<String>,
    /// The email address.
    #[serde(default)]
    pub email: String,
    /// The person's name.
    #[serde(default)]
    pub display_name: String,
    /// The password.
    #[serde(default)]
    pub password: String,
}

fn ctx_of(state: &AppState) -> Option<(std::sync::Arc<Option<crate::server::View>>, i64)> {
    let view = state.view.load_full();
    view.is_some().then(|| (view, crate::now_unix()))
}

/// `POST /signup`.
pub async fn submit(
    State(state): State<AppState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<SignupForm>,
) -> Response {
    if !state.config.signup_enabled {
        return closed(&state);
    }
    if !session::csrf_ok(&state, &headers, f.csrf_token.as_deref()) {
        return super::authorize::forbidden(&state);
    }
    let addr = ClientAddr::of(addr);
    let again = |error: &str| {
        form(
            &state,
            &headers,
            json!({ "email": f.email, "display_name": f.display_name, "error": error }),
        )
    };
    let Ok(email) = crate::bootstrap::normalize_email(&f.email) else {
        return again("Enter a valid email address.");
    };
    if let Err(m) = crate::bootstrap::check_password(&f.password) {
        return again(&m);
    }
    if throttle::attempt(&state.ephemeral, &format!("signup-addr:{addr}"))
        .await
        .is_ok_and(|n| n > PER_ADDRESS)
    {
        return state.pages.message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-ups",
            "Too many accounts were created from your network just now.",
            "Try again in 15 minutes.",
        );
    }
    let Some((view, now)) = ctx_of(&state) else {
        return state.pages.unavailable();
    };
    let Some(v) = view.as_ref().as_ref() else {
        return state.pages.unavailable();
    };
    let ctx = Ctx {
        store: &state.store,
        evaluator: &v.evaluator,
        ephemeral: &state.ephemeral,
        now,
    };
    let sent = state.pages.message(
        StatusCode::OK,
        "Check your email",
        &format!("We sent a link to {email}. Open it to finish creating your account."),
        "The link works for 24 hours. Nothing arrived? Check the spam folder.",
    );
    let name = state.config.instance_name.clone();
    match access::accounts::sign_up(
        &ctx,
        &state.passwords,
        &email,
        &f.display_name,
        f.password.clone(),
        false,
    )
    .await
    {
        Ok(Some(user)) => {
            if send_link(&state, &user.id, &user.email, user.password_hash.clone())
                .await
                .is_err()
            {
                return state.pages.unavailable();
            }
        }
        // Signing up again before verifying: a new link, carrying the new password.
        Ok(None) if existing_unverified(&state, &email).await.is_some() => {
            let user = existing_unverified(&state, &email).await;
            let hash = state.passwords.hash(f.password.clone()).await.ok();
            let sent_link = match (user, hash) {
                (Some(u), Some(h)) => send_link(&state, &u.id, &u.email, Some(h)).await,
                _ => Err(()),
            };
            if sent_link.is_err() {
                return state.pages.unavailable();
            }
        }
        Ok(None) => state.mailer.send_later(
            state.mail_from.clone(),
            Mail {
                to: email.clone(),
                subject: format!("Your {name} account"),
                text: format!(
                    "Someone tried to create a {name} account for {email}, which has one already.\n\n\
                     To sign in, go to {}/login. If you forgot the password, reset it at {}/reset.\n\
                     If it was not you, ignore this mail.\n",
                    state.issuer, state.issuer
                ),
            },
        ),
        Err(AccessError::Invalid { message, .. }) => return again(&message),
        Err(_) => return state.pages.unavailable(),
    }
    sent
}

/// The account of `email` if it exists, is not verified and not disabled.
async fn existing_unverified(state: &AppState, email: &str) -> Option<crate::store::iam::UserRow> {
    state
        .store
        .user_by_email(email)
        .await
        .ok()
        .flatten()
        .filter(|u| !u.email_verified && !u.disabled)
}

/// Mails a verification link for `user_id` to `email`; verifying sets
/// `password_hash`.
async fn send_link(
    state: &AppState,
    user_id: &str,
    email: &str,
    password_hash: Option<String>,
) -> Result<(), ()> {
    let token = crate::crypto::new_token();
    let body = serde_json::to_vec(&Link {
        user_id: user_id.to_owned(),
        password_hash,
    })
    .map_err(|_| ())?;
    state
        .ephemeral
        .put(&key(&token), &body, LINK_TTL)
        .await
        .map_err(|_| ())?;
    let name = &state.config.instance_name;
    state.mailer.send_later(
        state.mail_from.clone(),
        Mail {
            to: email.to_owned(),
            subject: format!("Verify your email for {name}"),
            text: format!(
                "Welcome to {name}.\n\nTo verify {email} and finish creating your account, open this link within 24 hours:\n\n\
                 {}{VERIFY_PATH}?token={token}\n\nIf you did not sign up, ignore this mail.\n",
                state.issuer
            ),
        },
    );
    Ok(())
}

/// The link's query.
#[derive(Deserialize)]
pub struct LinkQuery {
    /// The token.
    pub token: Option<String>,
}

fn broken(state: &AppState) -> Response {
    state.pages.message(
        StatusCode::BAD_REQUEST,
        "This link does not work",
        "The link is expired or was used already.",
        "If your account is not verified yet, sign up again with the same address to get a new link.",
    )
}

async fn linked_user(
    state: &AppState,
    token: &str,
    take: bool,
) -> Result<Option<(crate::store::iam::UserRow, Option<String>)>, ()> {
    let raw = if take {
        state.ephemeral.take(&key(token)).await
    } else {
        state.ephemeral.get(&key(token)).await
    }
    .map_err(|_| ())?;
    let Some(link) = raw.and_then(|r| serde_json::from_slice::<Link>(&r).ok()) else {
        return Ok(None);
    };
    state
        .store
        .user_by_id(&link.user_id)
        .await
        .map(|u| u.filter(|u| !u.disabled).map(|u| (u, link.password_hash)))
        .map_err(|_| ())
}

/// `GET /verify?token=...`: a page with the button that verifies.
pub async fn verify_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    match linked_user(&state, &token, false).await {
        Err(()) => state.pages.unavailable(),
        Ok(None) => broken(&state),
        Ok(Some((u, _))) => super::form(
            &state,
            &headers,
            StatusCode::OK,
            "verify.html",
            json!({ "token": token, "email": u.email }),
        ),
    }
}

/// The verification form.
#[derive(Deserialize)]
pub struct VerifyForm {
    /// The CSRF token.
    pub csrf_token: Option<String>,
    /// The link's token.
    #[serde(default)]
    pub token: String,
}

/// `POST /verify`.
pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<VerifyForm>,
) -> Response {
    if !session::csrf_ok(&state, &headers, f.csrf_token.as_deref()) {
        return super::authorize::forbidden(&state);
    }
    let (user, hash) = match linked_user(&state, &f.token, true).await {
        Err(()) => return state.pages.unavailable(),
        Ok(None) => return broken(&state),
        Ok(Some(l)) => l,
    };
    match finish_verification(&state, &user, hash.as_deref(), state.config.signup_enabled).await {
        Ok(joined) => state.pages.message(
            StatusCode::OK,
            "Your email is verified",
            &joined,
            "Sign in to continue.",
        ),
        Err(_) => state.pages.unavailable(),
    }
}

/// Marks `user` verified (with `password_hash` as its password, when given), accepts
/// its invitations or, with none and when `may_create_org`, creates its organization;
/// says what happened.
pub async fn finish_verification(
    state: &AppState,
    user: &crate::store::iam::UserRow,
    password_hash: Option<&str>,
    may_create_org: bool,
) -> Result<String, AccessError> {
    let view = state.view.load_full();
    let Some(v) = view.as_ref().as_ref() else {
        return Err(AccessError::Refused("the server is starting".into()));
    };
    let ctx = Ctx {
        store: &state.store,
        evaluator: &v.evaluator,
        ephemeral: &state.ephemeral,
        now: crate::now_unix(),
    };
    if !user.email_verified || password_hash.is_some() {
        access::accounts::verify_email(&ctx, user, password_hash).await?;
    }
    let outcomes = access::invitations::accept(&ctx, &user.id, &user.email).await?;
    let joined: Vec<String> = outcomes
        .iter()
        .filter(|o| o.accepted)
        .map(|o| format!("{} on {}", o.role, o.scope))
        .collect();
    if !outcomes.is_empty() {
        return Ok(if joined.is_empty() {
            "Your invitations could no longer be honored; ask for new ones.".into()
        } else {
            format!("You now hold {}.", joined.join(", "))
        });
    }
    // Signed up with no invitation waiting: an organization of their own (the store
    // decides, not this node's view, which may trail it).
    if !may_create_org || state.store.binding_count("user", &user.id).await? > 0 {
        return Ok("You can sign in now.".into());
    }
    let actor = access::accounts::self_actor(user);
    let display = format!("{}'s organization", user.display_name);
    let display: String = display.chars().take(200).collect();
    for _ in 0..3 {
        let slug = access::accounts::generated_slug(&user.email);
        match access::resources::create_as(&ctx, &actor, None, Kind::Organization, &slug, &display)
            .await
        {
            Ok(org) => {
                return Ok(format!(
                    "Your organization {} is ready, and you own it.",
                    org.name
                ));
            }
            Err(AccessError::Refused(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(AccessError::Refused("no free organization slug".into()))
}
