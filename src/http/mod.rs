//! The HTTP surface: [`app`] builds the router from the node state, so tests can
//! serve it on a free port or call it in process. Cross-cutting concerns live in
//! [`middleware`]: request ids, access logs, metrics, security headers and limits.

pub mod client_addr;
pub mod health;
pub mod middleware;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::server::AppState;
use crate::{admin, oauth2, oidc, ui};

/// Largest request body accepted anywhere.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The router of a node.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(oidc::DISCOVERY_PATH, get(oidc::discovery_document))
        .route(oidc::JWKS_PATH, get(oidc::jwks_document))
        .route(oidc::ROLE_CATALOG_PATH, get(oidc::role_catalog_document))
        .route(oauth2::token::PATH, post(oauth2::token::token))
        .route(
            oauth2::introspection::INTROSPECT_PATH,
            post(oauth2::introspection::introspect),
        )
        .route(
            oauth2::introspection::REVOKE_PATH,
            post(oauth2::introspection::revoke),
        )
        .route(
            ui::authorize::PATH,
            get(ui::authorize::authorize).post(ui::authorize::authorize),
        )
        .route(ui::authorize::RESUME_PATH, get(ui::authorize::resume))
        .route(ui::authorize::CONSENT_PATH, post(ui::authorize::consent))
        .route(
            ui::login::PATH,
            get(ui::login::page).post(ui::login::submit),
        )
        .route(ui::CSS_PATH, get(ui::stylesheet))
        .route(
            crate::federation::flow::START_PATH,
            get(crate::federation::flow::start).post(crate::federation::flow::link),
        )
        .route(
            crate::federation::flow::CALLBACK_PATH,
            get(crate::federation::flow::callback),
        )
        .route(ui::account::PATH, get(ui::account::page))
        .route(ui::account::UNLINK_PATH, post(ui::account::unlink))
        .route(
            ui::reset::PATH,
            get(ui::reset::page).post(ui::reset::request),
        )
        .route(
            ui::reset::CONFIRM_PATH,
            get(ui::reset::confirm_page).post(ui::reset::confirm),
        )
        .route(
            ui::invite::PATH,
            get(ui::invite::page).post(ui::invite::accept),
        )
        .route(
            ui::signup::PATH,
            get(ui::signup::page).post(ui::signup::submit),
        )
        .route(
            ui::signup::VERIFY_PATH,
            get(ui::signup::verify_page).post(ui::signup::verify),
        )
        .route(
            oidc::userinfo::PATH,
            get(oidc::userinfo::userinfo).post(oidc::userinfo::userinfo),
        )
        .route(
            oidc::logout::PATH,
            get(oidc::logout::logout).post(oidc::logout::logout),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        // The admin API reads (and limits) its bodies itself, after authorization,
        // so that even an oversized body gets a problem document.
        .route("/v1", any(admin::dispatch))
        .route("/v1/", any(admin::dispatch))
        .route("/v1/{*path}", any(admin::dispatch))
        .fallback(health::not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .with_state(state)
}
