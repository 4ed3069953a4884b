//! The account page: who is signed in, the upstream identities linked to the account
//! (each can be unlinked, as long as one way to sign in remains) and the providers it
//! can be linked to.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::session;
use crate::access::{self, AccessError, Ctx};
use crate::server::AppState;

/// Path of the account page.
pub const PATH: &str = "/account";
/// Where the unlink buttons post.
pub const UNLINK_PATH: &str = "/account/unlink";

/// The page's query.
#[derive(Deserialize)]
pub struct AccountQuery {
    /// What just happened: `linked` or `unlinked`.
    pub done: Option<String>,
}

async fn render(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    let current = match super::authorize::signed_in(state, headers).await {
        Ok(Some(c)) => c,
        Ok(None) => return super::see_other(super::login::PATH),
        Err(_) => return state.pages.unavailable(),
    };
    let (user, linked) = match (
        state.store.user_by_id(&current.session.user_id).await,
        state
            .store
            .federated_identities_of(&current.session.user_id)
            .await,
    ) {
        (Ok(Some(u)), Ok(l)) => (u, l),
        (Ok(None), _) => return super::see_other(super::login::PATH),
        _ => return state.pages.unavailable(),
    };
    let upstreams = state.upstreams.list();
    let name_of = |id: &str| {
        upstreams
            .iter()
            .find(|u| u.def.id == id)
            .map(|u| u.def.display_name.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    let last_way = user.password_hash.is_none() && linked.len() < 2;
    let identities: Vec<_> = linked
        .iter()
        .map(|i| {
            json!({
                "provider": name_of(&i.provider_id),
                "issuer": i.issuer,
                "subject": i.subject,
                "email": i.email,
                "removable": !last_way,
            })
        })
        .collect();
    let linkable: Vec<_> = upstreams
        .iter()
        .filter(|u| !linked.iter().any(|i| i.provider_id == u.def.id))
        .map(|u| {
            json!({
                "display_name": u.def.display_name,
                "available": u.available(),
                "url": crate::federation::flow::start_url(&u.def.id, None),
            })
        })
        .collect();
    super::form(
        state,
        headers,
        status,
        "account.html",
        json!({
            "email": user.email,
            "display_name": user.display_name,
            "identities": identities,
            "linkable": linkable,
            "has_password": user.password_hash.is_some(),
            "notice": notice,
            "error": error,
        }),
    )
}

/// `GET /account`.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AccountQuery>,
) -> Response {
    let notice = match q.done.as_deref() {
        Some("linked") => Some("The provider is linked: you can sign in with it now."),
        Some("unlinked") => Some("The provider is unlinked."),
        _ => None,
    };
    render(&state, &headers, StatusCode::OK, notice, None).await
}

/// The posted unlink form.
#[derive(Deserialize)]
pub struct UnlinkForm {
    /// The CSRF token.
    pub csrf_token: Option<String>,
    /// The identity's issuer.
    #[serde(default)]
    pub issuer: String,
    /// The identity's subject.
    #[serde(default)]
    pub subject: String,
}

/// `POST /account/unlink`.
pub async fn unlink(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<UnlinkForm>,
) -> Response {
    if !session::csrf_ok(&state, &headers, f.csrf_token.as_deref()) {
        return super::authorize::forbidden(&state);
    }
    let current = match super::authorize::signed_in(&state, &headers).await {
        Ok(Some(c)) => c,
        Ok(None) => return super::see_other(super::login::PATH),
        Err(_) => return state.pages.unavailable(),
    };
    let Ok(Some(user)) = state.store.user_by_id(&current.session.user_id).await else {
        return state.pages.unavailable();
    };
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
    match access::federation::unlink(&ctx, &user, &f.issuer, &f.subject).await {
        Ok(()) => super::see_other(&format!("{PATH}?done=unlinked")),
        Err(AccessError::Refused(m)) => {
            render(&state, &headers, StatusCode::CONFLICT, None, Some(&m)).await
        }
        Err(AccessError::NotFound(_)) => {
            render(
                &state,
                &headers,
                StatusCode::NOT_FOUND,
                None,
                Some("That identity is not linked to this account."),
            )
            .await
        }
        Err(_) => state.pages.unavailable(),
    }
}
