//! Request ids, access logs, metrics and security headers, in one middleware so the
//! hot path pays for one layer.
//!
//! The request id comes from a well-formed incoming `x-request-id` (so a proxy's id
//! carries through) or is made here; every log line written while the request runs
//! carries it, and the response echoes it. The access log records the route and the
//! path without its query string, which may hold codes or tokens.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::server::AppState;

/// The client's address (see [`super::client_addr`]), set on every request served
/// over TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

impl ClientAddr {
    /// From a request's extensions; `unknown` when served without a socket.
    pub fn of(ext: Option<axum::Extension<ClientAddr>>) -> String {
        ext.map(|e| e.0.0.to_string())
            .unwrap_or_else(|| "unknown".into())
    }
}

/// The request id header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A random per-process prefix keeps ids unique across nodes; a counter keeps them
/// unique within one without a random draw per request.
static ID_PREFIX: LazyLock<String> =
    LazyLock::new(|| crate::crypto::b64(&crate::crypto::random_bytes::<6>()));
static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

fn incoming_id(req: &Request) -> Option<String> {
    let v = req.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| v.to_owned())
}

fn new_id() -> String {
    let n = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n:x}", *ID_PREFIX)
}

/// Wraps every request: id, span, metrics, access log, security headers.
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    if let Some(peer) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
    {
        let addr =
            super::client_addr::client_addr(peer, req.headers(), &state.config.trusted_proxies);
        req.extensions_mut().insert(ClientAddr(addr));
    }
    let id = incoming_id(&req).unwrap_or_else(new_id);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .request(&route, method.as_str(), status, elapsed.as_secs_f64());
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(%method, %path, status, micros = elapsed.as_micros() as u64, "request failed");
        } else {
            tracing::debug!(%method, %path, status, micros = elapsed.as_micros() as u64, "request");
        }
    });
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(&REQUEST_ID, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    response
}
