//! The browser flow through an upstream provider:
//!
//! - `GET /federation/{id}/start[?pending=...]` (and, to link the provider to the
//!   signed-in account, `POST` with a CSRF token from the account page) sends the browser to the
//!   upstream with PKCE (S256), `state` and `nonce`; what it needs later is kept in
//!   short-lived state under the hash of `state`, bound to this browser by a cookie.
//! - `GET /federation/{id}/callback` checks that binding (once: the state is taken),
//!   exchanges the code, validates the upstream ID token fully (signature from the
//!   upstream's JWKS, refetched once for an unknown key; issuer; audience; expiry;
//!   nonce), decides the account ([`super::matching`]), applies the claim mappings,
//!   and signs the person in, continuing the original authorization request.
//!   With `link`, it links the identity to the signed-in account instead.
//!
//! Every failure is a page that says what happened; none of them signs anybody in.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

use super::Upstream;
use super::matching::{self, Asserted, ByEmail, Decision};
use crate::access::{self, AccessError, Ctx};
use crate::ephemeral::EphemeralStore;
use crate::http::middleware::ClientAddr;
use crate::iam::evaluator::PrincipalRef;
use crate::server::AppState;
use crate::server::events::AuthEvent;
use crate::ui::{authorize, login, session};

/// Where the login page's buttons lead.
pub const START_PATH: &str = "/federation/{id}/start";
/// Where upstreams send the browser back (register `<issuer>/federation/<id>/callback`).
pub const CALLBACK_PATH: &str = "/federation/{id}/callback";

/// How long a person has at the upstream.
const FLOW_TTL: Duration = Duration::from_secs(10 * 60);
const FLOW_COOKIE: &str = "gatehouse_federation";

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What the callback needs, kept under the hash of `state`.
#[derive(Serialize, Deserialize)]
struct Flow {
    provider: String,
    nonce: String,
    verifier: String,
    pending: Option<String>,
    /// The hash of the browser's flow cookie.
    browser: String,
    /// The session linking an identity to its account, in link mode.
    link_sid: Option<String>,
}

/// The URL an upstream sends the browser back to.
pub fn callback_url(state: &AppState, id: &str) -> String {
    format!("{}{}", state.issuer, CALLBACK_PATH.replace("{id}", id))
}

/// The login page's link for a provider.
pub fn start_url(id: &str, pending: Option<&str>) -> String {
    let base = START_PATH.replace("{id}", id);
    match pending {
        Some(p) => format!(
            "{base}?pending={}",
            percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => base,
    }
}

fn flow_key(state_value: &str) -> String {
    format!("federation:{}", crate::crypto::token_hash(state_value))
}

fn client(state: &AppState, up: &Upstream, md: &CoreProviderMetadata) -> Result<Client, String> {
    let redirect = RedirectUrl::new(callback_url(state, &up.def.id)).map_err(|e| e.to_string())?;
    let basic = md
        .token_endpoint_auth_methods_supported()
        .is_none_or(|m| m.iter().any(|a| a.as_ref() == "client_secret_basic"));
    Ok(CoreClient::from_provider_metadata(
        md.clone(),
        ClientId::new(up.def.client_id.clone()),
        Some(ClientSecret::new(up.def.client_secret.0.clone())),
    )
    .set_redirect_uri(redirect)
    .set_auth_type(if basic {
        AuthType::BasicAuth
    } else {
        AuthType::RequestBody
    }))
}

fn unavailable_provider(state: &AppState, up: &Upstream) -> Response {
    state.pages.message(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{} is unavailable right now", up.def.display_name),
        &format!(
            "{} cannot be reached at the moment, so signing in through it does not work.",
            up.def.display_name
        ),
        "Try again in a minute, or sign in with your email address and password.",
    )
}

fn failed(state: &AppState, up: &Upstream, why: &str) -> Response {
    state.pages.message(
        StatusCode::BAD_GATEWAY,
        &format!("Signing in with {} did not work", up.def.display_name),
        why,
        "Go back to the application and start again. If it keeps happening, tell your \
         administrator.",
    )
}

fn unknown(state: &AppState) -> Response {
    state.pages.message(
        StatusCode::NOT_FOUND,
        "This sign-in option does not exist",
        "No identity provider of that name is configured here.",
        "Go back to the sign-in page and choose another way to sign in.",
    )
}

/// The start query.
#[derive(Deserialize)]
pub struct StartQuery {
    /// The pending authorization to continue afterwards.
    pub pending: Option<String>,
    /// Refused: linking is a form on the account page.
    pub link: Option<String>,
}

/// `GET /federation/{id}/start`.
pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StartQuery>,
) -> Response {
    let Some(up) = state.upstreams.get(&id) else {
        return unknown(&state);
    };
    let Some(md) = up.metadata.clone().filter(|_| up.available()) else {
        return unavailable_provider(&state, &up);
    };
    let pending = q.pending.filter(|p| !p.is_empty());
    if let Some(p) = &pending {
        match authorize::load(&state, p).await {
            Ok(Some(_)) => {}
            Ok(None) => return authorize::expired(&state),
            Err(_) => return state.pages.unavailable(),
        }
    }
    // Linking changes the signed-in account, so it is a form with a CSRF token (a
    // link that a page could make the browser follow would let someone link their
    // own upstream identity to a victim's account).
    if q.link.is_some() {
        return state.pages.message(
            StatusCode::BAD_REQUEST,
            "Link providers from your account page",
            "A provider is linked with the button on your account page only.",
            "Open your account page and choose the provider there.",
        );
    }
    begin(&state, &up, &md, pending, None).await
}

/// The link form of the account page.
#[derive(Deserialize)]
pub struct LinkForm {
    /// The CSRF token.
    pub csrf_token: Option<String>,
}

/// `POST /federation/{id}/start`: links the provider to the signed-in account.
pub async fn link(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<LinkForm>,
) -> Response {
    if !session::csrf_ok(&state, &headers, f.csrf_token.as_deref()) {
        return authorize::forbidden(&state);
    }
    let Some(up) = state.upstreams.get(&id) else {
        return unknown(&state);
    };
    let Some(md) = up.metadata.clone().filter(|_| up.available()) else {
        return unavailable_provider(&state, &up);
    };
    let sid = match authorize::signed_in(&state, &headers).await {
        Ok(Some(c)) => c.sid,
        Ok(None) => return crate::ui::see_other(login::PATH),
        Err(_) => return state.pages.unavailable(),
    };
    begin(&state, &up, &md, None, Some(sid)).await
}

/// Sends the browser to the upstream, remembering what the callback needs.
async fn begin(
    state: &AppState,
    up: &Upstream,
    md: &CoreProviderMetadata,
    pending: Option<String>,
    link_sid: Option<String>,
) -> Response {
    let state = state.clone();
    let client = match client(&state, up, md) {
        Ok(c) => c,
        Err(e) => return failed(&state, up, &e),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for s in up.def.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(s.clone()));
    }
    let (url, csrf, nonce) = request.set_pkce_challenge(challenge).url();
    let browser = crate::crypto::new_token();
    let flow = Flow {
        provider: up.def.id.clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        pending,
        browser: crate::crypto::token_hash(&browser),
        link_sid,
    };
    let body = serde_json::to_vec(&flow).unwrap_or_default();
    if state
        .ephemeral
        .put(&flow_key(csrf.secret()), &body, FLOW_TTL)
        .await
        .is_err()
    {
        return state.pages.unavailable();
    }
    let mut r = crate::ui::see_other(url.as_str());
    r.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(&state, FLOW_COOKIE, &browser, Some(FLOW_TTL)),
    );
    r
}

/// The callback query.
#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// Claims beyond the standard ones, from userinfo.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct Extra {
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
}
impl openidconnect::AdditionalClaims for Extra {}

/// The values of `claim` in a JSON object: an array of strings, or one string.
fn claim_values(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str())
            .map(str::to_owned)
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The payload of a JWT whose signature was verified already.
fn payload(jwt: &str) -> Option<serde_json::Value> {
    let part = jwt.split('.').nth(1)?;
    serde_json::from_slice(&crate::crypto::unb64(part)?).ok()
}

/// `GET /federation/{id}/callback`.
pub async fn callback(
    State(state): State<AppState>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let addr = ClientAddr::of(addr);
    let Some(up) = state.upstreams.get(&id) else {
        return unknown(&state);
    };
    let incomplete = || {
        state.pages.error(
            "This sign-in link is incomplete or was used already, or it was opened in another \
             browser than the one that started signing in.",
        )
    };
    let Some(state_value) = q.state.as_deref().filter(|s| s.len() <= 256) else {
        return incomplete();
    };
    let flow = match state.ephemeral.take(&flow_key(state_value)).await {
        Ok(Some(raw)) => match serde_json::from_slice::<Flow>(&raw) {
            Ok(f) => f,
            Err(_) => return incomplete(),
        },
        Ok(None) => return incomplete(),
        Err(_) => return state.pages.unavailable(),
    };
    let bound = session::cookie(&headers, &session::cookie_name(&state, FLOW_COOKIE))
        .map(|c| crate::crypto::token_hash(&c))
        .is_some_and(|h| {
            aws_lc_rs::constant_time::verify_slices_are_equal(h.as_bytes(), flow.browser.as_bytes())
                .is_ok()
        });
    if !bound || flow.provider != up.def.id {
        return incomplete();
    }
    let refuse = |reason: &str| {
        let state = state.clone();
        let addr = addr.clone();
        let reason = reason.to_owned();
        let provider = up.def.id.clone();
        async move {
            state
                .events
                .record(AuthEvent::new(
                    format!("federation:{provider}"),
                    "federation.refused",
                    "*",
                    json!({ "address": addr, "reason": reason }),
                ))
                .await;
        }
    };
    if let Some(error) = &q.error {
        refuse(&format!("upstream error {error}")).await;
        let described: String = q
            .error_description
            .as_deref()
            .unwrap_or(error)
            .chars()
            .take(200)
            .collect();
        return failed(
            &state,
            &up,
            &format!("{} answered: {described}", up.def.display_name),
        );
    }
    let Some(md) = up.metadata.clone() else {
        return unavailable_provider(&state, &up);
    };
    // RFC 9207: an issuer in the response must be the one the request went to.
    if q.iss
        .as_deref()
        .is_some_and(|iss| iss != md.issuer().as_str())
    {
        refuse("issuer mix-up").await;
        return failed(&state, &up, "The answer came from another provider.");
    }
    let Some(code) = q.code.clone().filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return incomplete();
    };
    let asserted = match exchange(&state, &up, &md, &flow, code).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(provider = %up.def.id, error = %e, "federated login failed");
            refuse(&e).await;
            return failed(
                &state,
                &up,
                &format!("{}'s answer could not be verified.", up.def.display_name),
            );
        }
    };
    match &flow.link_sid {
        Some(sid) => link_to_account(&state, &headers, &up, &asserted, sid).await,
        None => {
            sign_in(
                &state,
                &headers,
                &up,
                &asserted,
                flow.pending.as_deref(),
                addr,
            )
            .await
        }
    }
}

/// Exchanges the code and validates the ID token; what it asserts.
async fn exchange(
    state: &AppState,
    up: &Upstream,
    md: &CoreProviderMetadata,
    flow: &Flow,
    code: String,
) -> Result<Asserted, String> {
    let http = state.upstreams.http();
    let client = client(state, up, md)?;
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| e.to_string())?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
        .request_async(http)
        .await
        .map_err(|e| format!("code exchange: {e}"))?;
    let id_token = token
        .id_token()
        .ok_or("the token response has no ID token")?;
    let nonce = Nonce::new(flow.nonce.clone());
    let algs = [
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        CoreJwsSigningAlgorithm::RsaSsaPssSha384,
        CoreJwsSigningAlgorithm::RsaSsaPssSha512,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        CoreJwsSigningAlgorithm::EdDsa,
    ];
    let verified = id_token
        .claims(
            &client.id_token_verifier().set_allowed_algs(algs.clone()),
            &nonce,
        )
        .cloned();
    let claims = match verified {
        Ok(c) => c,
        // The upstream may have rotated its keys since they were read: read them again
        // once, then verify with what it publishes now.
        Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
            let fresh = super::discover(http, &up.def.issuer).await?;
            let client = self::client(state, up, &fresh)?;
            let claims = id_token
                .claims(
                    &client.id_token_verifier().set_allowed_algs(algs.clone()),
                    &nonce,
                )
                .map_err(|e| format!("ID token: {e}"))?
                .clone();
            super::refresh_one(state, up).await;
            claims
        }
        Err(e) => return Err(format!("ID token: {e}")),
    };
    let raw = payload(&id_token.to_string()).unwrap_or_default();
    let mut email = claims.email().map(|e| e.as_str().to_owned());
    let mut email_verified = claims.email_verified().unwrap_or(false);
    let mut name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().to_owned());
    let groups_claim = up.def.groups_claim.as_deref();
    let mut groups = groups_claim
        .map(|c| claim_values(raw.get(c)))
        .unwrap_or_default();
    let wants_more = email.is_none()
        || (groups_claim.is_some() && raw.get(groups_claim.unwrap_or("")).is_none());
    if wants_more
        && let Ok(request) =
            client.user_info(token.access_token().clone(), Some(claims.subject().clone()))
    {
        match request
            .request_async::<Extra, _, CoreGenderClaim>(http)
            .await
        {
            Ok(info) => {
                if email.is_none() {
                    email = info.email().map(|e| e.as_str().to_owned());
                    email_verified = info.email_verified().unwrap_or(false);
                }
                if name.is_none() {
                    name = info
                        .name()
                        .and_then(|n| n.get(None))
                        .map(|n| n.as_str().to_owned());
                }
                if let Some(c) = groups_claim
                    && groups.is_empty()
                {
                    groups = claim_values(info.additional_claims().other.get(c));
                }
            }
            Err(e) => tracing::info!(provider = %up.def.id, error = %e, "userinfo not read"),
        }
    }
    let email = email.and_then(|e| crate::bootstrap::normalize_email(&e).ok());
    Ok(Asserted {
        issuer: claims.issuer().as_str().to_owned(),
        subject: claims.subject().as_str().to_owned(),
        email_verified: email_verified && email.is_some(),
        email,
        name,
        groups,
    })
}

fn ctx<'a>(state: &'a AppState, evaluator: &'a crate::iam::Evaluator) -> Ctx<'a> {
    Ctx {
        store: &state.store,
        evaluator,
        ephemeral: &state.ephemeral,
        now: crate::now_unix(),
    }
}

async fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    up: &Upstream,
    a: &Asserted,
    pending: Option<&str>,
    addr: String,
) -> Response {
    let view = state.view.load_full();
    let Some(v) = view.as_ref().as_ref() else {
        return state.pages.unavailable();
    };
    let ctx = ctx(state, &v.evaluator);
    let looked_up = async {
        let linked = match state
            .store
            .federated_identity(&a.issuer, &a.subject)
            .await?
        {
            Some(i) => state.store.user_by_id(&i.user_id).await?,
            None => None,
        };
        let by_email = match (&linked, &a.email) {
            (None, Some(e)) => state.store.user_by_email(e).await?,
            _ => None,
        };
        Ok::<_, crate::store::StoreError>((linked, by_email))
    };
    let Ok((linked, by_email)) = looked_up.await else {
        return state.pages.unavailable();
    };
    let instance_roles = by_email.as_ref().is_some_and(|u| {
        v.evaluator
            .grants_for(&PrincipalRef::user(u.id.clone()), ctx.now)
            .iter()
            .any(|g| g.scope == crate::iam::names::ROOT)
    });
    let decision = matching::decide(
        &up.def,
        a,
        linked.as_ref(),
        by_email.as_ref().map(|user| ByEmail {
            user,
            instance_roles,
        }),
    );
    let outcome = match decision {
        Decision::Linked(_) => linked.ok_or(AccessError::Refused("gone".into())),
        Decision::LinkByEmail(_) => match by_email {
            Some(u) => access::federation::link(&ctx, up, a, &u, "email")
                .await
                .map(|()| u),
            None => Err(AccessError::Refused("gone".into())),
        },
        Decision::Provision => access::federation::provision(&ctx, up, a).await,
        Decision::Refuse(r) => {
            state
                .events
                .record(AuthEvent::new(
                    format!("federation:{}", up.def.id),
                    "federation.refused",
                    "*",
                    json!({ "address": addr, "reason": format!("{r:?}"), "subject": a.subject, "email": a.email }),
                ))
                .await;
            let (title, message, hint) = matching::words(r, &up.def.display_name);
            return state
                .pages
                .message(StatusCode::FORBIDDEN, &title, &message, &hint);
        }
    };
    let user = match outcome {
        Ok(u) => u,
        Err(AccessError::Refused(m)) => {
            return state.pages.message(
                StatusCode::CONFLICT,
                &format!("Signing in with {} did not work", up.def.display_name),
                &format!("The account could not be used: {m}."),
                "Try again; if it keeps happening, tell your administrator.",
            );
        }
        Err(_) => return state.pages.unavailable(),
    };
    let _ = state
        .store
        .touch_identity(&a.issuer, &a.subject, a.email.as_deref(), ctx.now)
        .await;
    let mapped = match access::federation::apply_mappings(&ctx, up, &user, &a.groups).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(provider = %up.def.id, error = %e, "claim mappings not applied");
            Vec::new()
        }
    };
    login::establish(
        state,
        headers,
        &user,
        vec!["fed".into()],
        pending,
        json!({ "address": addr, "provider": up.def.id, "subject": a.subject, "groups": mapped }),
    )
    .await
}

async fn link_to_account(
    state: &AppState,
    headers: &HeaderMap,
    up: &Upstream,
    a: &Asserted,
    sid: &str,
) -> Response {
    let current = match authorize::signed_in(state, headers).await {
        Ok(Some(c)) if c.sid == sid => c,
        Ok(_) => {
            return state.pages.message(
                StatusCode::FORBIDDEN,
                "Sign in again to link this provider",
                "The session that asked to link it has ended.",
                "Sign in, then link the provider from your account page.",
            );
        }
        Err(_) => return state.pages.unavailable(),
    };
    let Ok(Some(user)) = state.store.user_by_id(&current.session.user_id).await else {
        return state.pages.unavailable();
    };
    match state.store.federated_identity(&a.issuer, &a.subject).await {
        Ok(Some(i)) if i.user_id == user.id => {
            return crate::ui::see_other(&format!("{}?done=linked", crate::ui::account::PATH));
        }
        Ok(Some(_)) => {
            return state.pages.message(
                StatusCode::CONFLICT,
                "This identity belongs to another account",
                &format!(
                    "The {} identity you signed in with is linked to another account.",
                    up.def.display_name
                ),
                "Unlink it there first, or sign in with that account.",
            );
        }
        Ok(None) => {}
        Err(_) => return state.pages.unavailable(),
    }
    let view = state.view.load_full();
    let Some(v) = view.as_ref().as_ref() else {
        return state.pages.unavailable();
    };
    match access::federation::link(&ctx(state, &v.evaluator), up, a, &user, "account").await {
        Ok(()) => crate::ui::see_other(&format!("{}?done=linked", crate::ui::account::PATH)),
        Err(AccessError::Refused(m)) => state.pages.message(
            StatusCode::CONFLICT,
            "This identity could not be linked",
            &m,
            "Go back to your account page and try again.",
        ),
        Err(_) => state.pages.unavailable(),
    }
}
