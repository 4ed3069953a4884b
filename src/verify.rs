//! The verification kit for resource servers written in Rust: everything a service
//! needs to trust gatehouse access tokens offline and decide access from them.
//!
//! [`Verifier::discover`] reads the issuer's discovery document, its JWKS and its role
//! catalog, and keeps them with their HTTP caching headers (`Cache-Control: max-age`,
//! `ETag`, revalidated with `If-None-Match`) and the parsed keys per `kid`. A token
//! whose `kid` is not known makes it read the JWKS again, at most once per
//! [`REFETCH_INTERVAL`], so a flood of forged kids costs one request. [`Verifier::verify`]
//! checks a token fully: the algorithm allow-list (RS256, ES256, EdDSA; never `none`
//! or a shared-secret one), the signature, `typ: at+jwt` (an ID token is not an
//! access token), `iss`, `aud`, and `exp`/`nbf` with a small leeway.
//! [`AccessToken::has_role`] and [`AccessToken::has_permission`] answer from the
//! `roles` claim with gatehouse's reach rule: `<role>@<scope>/*` reaches the scope and
//! every name beneath it (a resource server's own resources beneath a gatehouse name
//! included), `<role>@<scope>` the scope alone, `<role>@*` everything.
//!
//! [`Verified`] is an axum extractor and [`RequireToken`] a tower layer for it:
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use gatehouse::verify::{RequireToken, Verified, Verifier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Arc::new(Verifier::discover("https://id.example", "https://storage.example").await?);
//! let app: Router = Router::new()
//!     .route("/buckets", get(|Verified(t): Verified| async move { t.sub }))
//!     .layer(RequireToken::new(verifier));
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The least time between two JWKS reads caused by unknown kids.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Default tolerance for clock skew on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// How long a document without caching headers is kept.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// The longest a document is kept, whatever its headers say.
const MAX_MAX_AGE: Duration = Duration::from_secs(86_400);
const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Why a token is not accepted, or the issuer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The issuer's documents could not be fetched or read.
    #[error("issuer: {0}")]
    Issuer(String),
    /// The token is malformed.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header's algorithm is not allowed.
    #[error("algorithm {0} is not allowed")]
    Algorithm(String),
    /// The token is not an access token (`typ` is not `at+jwt`).
    #[error("not an access token (typ {0:?})")]
    NotAnAccessToken(Option<String>),
    /// The issuer publishes no key with the token's `kid`.
    #[error("no published key has kid {0:?}")]
    UnknownKey(String),
    /// Signature, issuer, audience or time checks failed.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The claims of a verified access token.
#[derive(Clone, Debug, Deserialize)]
pub struct AccessToken {
    /// The principal: a user's or service account's stable id.
    pub sub: String,
    /// The client the token was issued to.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The granted scopes, space-separated.
    #[serde(default)]
    pub scope: Option<String>,
    /// `<role>@<scope>` entries (present when the `roles` scope was granted).
    #[serde(default)]
    pub roles: Vec<String>,
    /// The token's id.
    #[serde(default)]
    pub jti: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Whether a `roles`-claim scope reaches `resource`.
pub fn reaches(scope: &str, resource: &str) -> bool {
    if scope == "*" {
        return true;
    }
    match scope.strip_suffix("/*") {
        Some(base) => {
            resource == base
                || (resource.len() > base.len()
                    && resource.starts_with(base)
                    && resource.as_bytes()[base.len()] == b'/')
        }
        None => resource == scope,
    }
}

impl AccessToken {
    /// Whether the token carries `role` somewhere that reaches `resource`.
    pub fn has_role(&self, role: &str, resource: &str) -> bool {
        self.entries()
            .any(|(r, s)| r == role && reaches(s, resource))
    }

    /// Whether a role the token carries grants `permission` on `resource`, by the
    /// role catalog.
    pub fn has_permission(&self, catalog: &RoleCatalog, permission: &str, resource: &str) -> bool {
        self.entries()
            .any(|(r, s)| catalog.grants(r, permission) && reaches(s, resource))
    }

    /// Whether the token was granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|x| x == scope))
    }

    fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.roles.iter().filter_map(|e| e.split_once('@'))
    }
}

/// The published role catalog: each role's permissions.
#[derive(Clone, Debug, Default)]
pub struct RoleCatalog {
    roles: HashMap<String, HashSet<String>>,
}

#[derive(Deserialize)]
struct CatalogDocument {
    roles: Vec<CatalogRole>,
}

#[derive(Deserialize)]
struct CatalogRole {
    id: String,
    #[serde(default)]
    permissions: Vec<String>,
}

impl RoleCatalog {
    /// Reads the catalog document.
    pub fn from_json(body: &[u8]) -> Result<RoleCatalog, String> {
        let doc: CatalogDocument = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok(RoleCatalog {
            roles: doc
                .roles
                .into_iter()
                .map(|r| (r.id, r.permissions.into_iter().collect()))
                .collect(),
        })
    }

    /// Whether `role` includes `permission`.
    pub fn grants(&self, role: &str, permission: &str) -> bool {
        self.roles.get(role).is_some_and(|p| p.contains(permission))
    }
}

/// A cached document: its value, its validator, and until when it is fresh.
struct Cached<T> {
    value: Arc<T>,
    etag: Option<HeaderValue>,
    fresh_until: Instant,
}

struct Keys {
    by_kid: HashMap<String, (Algorithm, DecodingKey)>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    role_catalog_uri: Option<String>,
}

/// Verifies gatehouse access tokens for one API (audience).
pub struct Verifier {
    issuer: String,
    audience: String,
    jwks_uri: String,
    catalog_uri: Option<String>,
    http: reqwest::Client,
    leeway: Duration,
    keys: ArcSwap<Cached<Keys>>,
    catalog: ArcSwap<Cached<RoleCatalog>>,
    last_refetch: Mutex<Option<Instant>>,
    refresh: tokio::sync::Mutex<()>,
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Duration {
    let Some(cc) = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return DEFAULT_MAX_AGE;
    };
    let mut age = DEFAULT_MAX_AGE;
    for d in cc.split(',').map(str::trim) {
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            return Duration::ZERO;
        }
        if let Some(v) = d.strip_prefix("max-age=")
            && let Ok(secs) = v.trim_matches('"').parse::<u64>()
        {
            age = Duration::from_secs(secs);
        }
    }
    age.min(MAX_MAX_AGE)
}

/// What a GET found.
enum Fetched {
    /// The document, its validator and how long it stays fresh.
    Fresh(bytes::Bytes, Option<HeaderValue>, Duration),
    /// 304: the document held is still good, for this long.
    NotModified(Duration),
}

/// A GET that revalidates `etag`.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    etag: Option<&HeaderValue>,
) -> Result<Fetched, VerifyError> {
    let mut req = http.get(url);
    if let Some(tag) = etag {
        req = req.header(header::IF_NONE_MATCH, tag.clone());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| VerifyError::Issuer(format!("{url}: {e}")))?;
    if resp.status() == StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified(max_age(resp.headers())));
    }
    if !resp.status().is_success() {
        return Err(VerifyError::Issuer(format!(
            "{url}: HTTP {}",
            resp.status()
        )));
    }
    let age = max_age(resp.headers());
    let tag = resp.headers().get(header::ETAG).cloned();
    let body = resp
        .bytes()
        .await
        .map_err(|e| VerifyError::Issuer(format!("{url}: {e}")))?;
    Ok(Fetched::Fresh(body, tag, age))
}

/// A first GET, which has nothing to revalidate.
async fn fetch_new(
    http: &reqwest::Client,
    url: &str,
) -> Result<(bytes::Bytes, Option<HeaderValue>, Duration), VerifyError> {
    match fetch(http, url, None).await? {
        Fetched::Fresh(body, tag, age) => Ok((body, tag, age)),
        Fetched::NotModified(_) => Err(VerifyError::Issuer(format!("{url}: 304 to a plain GET"))),
    }
}

fn parse_keys(body: &[u8]) -> Result<Keys, VerifyError> {
    let set: JwkSet =
        serde_json::from_slice(body).map_err(|e| VerifyError::Issuer(format!("JWKS: {e}")))?;
    let mut by_kid = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let alg = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
            // shared-secret keys (and anything else) are never trusted
            _ => continue,
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            by_kid.insert(kid, (alg, key));
        }
    }
    Ok(Keys { by_kid })
}

impl Verifier {
    /// Reads `issuer`'s discovery document, keys and role catalog; tokens must be
    /// addressed to `audience` (the API's identifier, or `<issuer>/v1`).
    pub async fn discover(issuer: &str, audience: &str) -> Result<Verifier, VerifyError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| VerifyError::Issuer(e.to_string()))?;
        Verifier::discover_with(http, issuer, audience).await
    }

    /// Like [`Verifier::discover`], with the caller's HTTP client.
    pub async fn discover_with(
        http: reqwest::Client,
        issuer: &str,
        audience: &str,
    ) -> Result<Verifier, VerifyError> {
        let issuer = issuer.trim_end_matches('/').to_owned();
        let url = format!("{issuer}/.well-known/openid-configuration");
        let (body, _, _) = fetch_new(&http, &url).await?;
        let d: Discovery = serde_json::from_slice(&body)
            .map_err(|e| VerifyError::Issuer(format!("discovery: {e}")))?;
        if d.issuer != issuer {
            return Err(VerifyError::Issuer(format!(
                "discovery names issuer {:?}, not {issuer:?}",
                d.issuer
            )));
        }
        let (body, etag, age) = fetch_new(&http, &d.jwks_uri).await?;
        let keys = Cached {
            value: Arc::new(parse_keys(&body)?),
            etag,
            fresh_until: Instant::now() + age,
        };
        let catalog = match &d.role_catalog_uri {
            Some(uri) => {
                let (body, etag, age) = fetch_new(&http, uri).await?;
                Cached {
                    value: Arc::new(
                        RoleCatalog::from_json(&body)
                            .map_err(|e| VerifyError::Issuer(format!("role catalog: {e}")))?,
                    ),
                    etag,
                    fresh_until: Instant::now() + age,
                }
            }
            None => Cached {
                value: Arc::new(RoleCatalog::default()),
                etag: None,
                fresh_until: Instant::now() + MAX_MAX_AGE,
            },
        };
        Ok(Verifier {
            issuer,
            audience: audience.to_owned(),
            jwks_uri: d.jwks_uri,
            catalog_uri: d.role_catalog_uri,
            http,
            leeway: DEFAULT_LEEWAY,
            keys: ArcSwap::from_pointee(keys),
            catalog: ArcSwap::from_pointee(catalog),
            last_refetch: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    /// Sets the clock-skew tolerance.
    pub fn with_leeway(mut self, leeway: Duration) -> Verifier {
        self.leeway = leeway;
        self
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Reads the JWKS again (revalidating). When that fails the keys held stay, and
    /// are tried again after [`REFETCH_INTERVAL`], so an unreachable issuer costs one
    /// request per interval rather than one per token.
    /// With `stale_only`, nothing happens when another call refreshed them meanwhile
    /// (a burst of tokens after the lifetime ends reads the JWKS once).
    async fn refresh_keys(&self, stale_only: bool) -> Result<(), VerifyError> {
        let _one = self.refresh.lock().await;
        let current = self.keys.load_full();
        if stale_only && Instant::now() < current.fresh_until {
            return Ok(());
        }
        let keep = |until: Instant| {
            Arc::new(Cached {
                value: current.value.clone(),
                etag: current.etag.clone(),
                fresh_until: until,
            })
        };
        let fetched = fetch(&self.http, &self.jwks_uri, current.etag.as_ref()).await;
        let parsed = match fetched {
            Ok(Fetched::NotModified(age)) => {
                self.keys.store(keep(Instant::now() + age));
                return Ok(());
            }
            Ok(Fetched::Fresh(body, etag, age)) => parse_keys(&body).map(|k| (k, etag, age)),
            Err(e) => Err(e),
        };
        match parsed {
            Ok((keys, etag, age)) => {
                self.keys.store(Arc::new(Cached {
                    value: Arc::new(keys),
                    etag,
                    fresh_until: Instant::now() + age,
                }));
                Ok(())
            }
            Err(e) => {
                self.keys.store(keep(Instant::now() + REFETCH_INTERVAL));
                Err(e)
            }
        }
    }

    /// The role catalog, read again when its cache lifetime is over.
    pub async fn catalog(&self) -> Arc<RoleCatalog> {
        let current = self.catalog.load_full();
        if Instant::now() < current.fresh_until {
            return current.value.clone();
        }
        let Some(uri) = &self.catalog_uri else {
            return current.value.clone();
        };
        let _one = self.refresh.lock().await;
        // Another call may have read it while this one waited.
        let current = self.catalog.load_full();
        if Instant::now() < current.fresh_until {
            return current.value.clone();
        }
        let backoff = || {
            Arc::new(Cached {
                value: current.value.clone(),
                etag: current.etag.clone(),
                fresh_until: Instant::now() + REFETCH_INTERVAL,
            })
        };
        let fresh = match fetch(&self.http, uri, current.etag.as_ref()).await {
            Ok(Fetched::Fresh(body, etag, age)) => match RoleCatalog::from_json(&body) {
                Ok(c) => Cached {
                    value: Arc::new(c),
                    etag,
                    fresh_until: Instant::now() + age,
                },
                Err(_) => {
                    self.catalog.store(backoff());
                    return current.value.clone();
                }
            },
            Ok(Fetched::NotModified(age)) => Cached {
                value: current.value.clone(),
                etag: current.etag.clone(),
                fresh_until: Instant::now() + age,
            },
            // Keep deciding with the catalog we have; try again after the interval.
            Err(_) => {
                self.catalog.store(backoff());
                return current.value.clone();
            }
        };
        let value = fresh.value.clone();
        self.catalog.store(Arc::new(fresh));
        value
    }

    fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        self.keys.load().value.by_kid.get(kid).cloned()
    }

    /// Whether an unknown kid may cause a JWKS read now (rate-limited).
    fn may_refetch(&self) -> bool {
        let mut last = self.last_refetch.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(at) if at.elapsed() < REFETCH_INTERVAL => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    /// Verifies an access token fully; its claims.
    pub async fn verify(&self, token: &str) -> Result<AccessToken, VerifyError> {
        if token.len() > 16 * 1024 {
            return Err(VerifyError::Malformed("longer than 16 KiB".into()));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(VerifyError::Algorithm(format!("{:?}", header.alg)));
        }
        let typ = header.typ.clone();
        if !typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        }) {
            return Err(VerifyError::NotAnAccessToken(typ));
        }
        let kid = header
            .kid
            .ok_or_else(|| VerifyError::Malformed("no kid".into()))?;
        if Instant::now() >= self.keys.load().fresh_until {
            let _ = self.refresh_keys(true).await;
        }
        let (alg, key) = match self.key(&kid) {
            Some(k) => k,
            None => {
                if self.may_refetch() {
                    self.refresh_keys(false).await?;
                } else {
                    // A read another token started may be bringing the key.
                    drop(self.refresh.lock().await);
                }
                self.key(&kid)
                    .ok_or_else(|| VerifyError::UnknownKey(kid.clone()))?
            }
        };
        // The key decides the algorithm: a token cannot pick another family.
        if alg != header.alg {
            return Err(VerifyError::Algorithm(format!(
                "{:?} with a {alg:?} key",
                header.alg
            )));
        }
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = self.leeway.as_secs();
        jsonwebtoken::decode::<AccessToken>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| VerifyError::Invalid(e.to_string()))
    }

    /// Verifies `token` and answers whether it grants `permission` on `resource`.
    pub async fn allows(
        &self,
        token: &str,
        permission: &str,
        resource: &str,
    ) -> Result<bool, VerifyError> {
        let t = self.verify(token).await?;
        Ok(t.has_permission(&*self.catalog().await, permission, resource))
    }
}

/// The 401 a resource server answers for a missing or bad token (RFC 6750).
fn unauthorized(error: Option<&VerifyError>) -> Response {
    let challenge = match error {
        None => "Bearer".to_owned(),
        Some(e) => format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            e.to_string()
                .chars()
                .map(|c| match c {
                    '"' | '\\' => '\'',
                    c if c.is_ascii_graphic() || c == ' ' => c,
                    _ => '?',
                })
                .collect::<String>()
        ),
    };
    let mut r = StatusCode::UNAUTHORIZED.into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// An axum extractor: the request's verified access token. It takes the one
/// [`RequireToken`] verified, or verifies the bearer token with the [`Verifier`]
/// found in the request's extensions (`Extension(Arc<Verifier>)`); otherwise 401.
pub struct Verified(pub AccessToken);

impl<S: Send + Sync> FromRequestParts<S> for Verified {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        if let Some(t) = parts.extensions.get::<AccessToken>() {
            return Ok(Verified(t.clone()));
        }
        let Some(verifier) = parts.extensions.get::<Arc<Verifier>>().cloned() else {
            tracing::error!("Verified used without RequireToken or an Arc<Verifier> extension");
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        let Some(token) = bearer(&parts.headers) else {
            return Err(unauthorized(None));
        };
        verifier
            .verify(token)
            .await
            .map(Verified)
            .map_err(|e| unauthorized(Some(&e)))
    }
}

/// A tower layer that lets through only requests with a valid bearer access token,
/// and puts its [`AccessToken`] (and the verifier) into the request's extensions.
#[derive(Clone)]
pub struct RequireToken {
    verifier: Arc<Verifier>,
}

impl RequireToken {
    /// The layer for `verifier`.
    pub fn new(verifier: Arc<Verifier>) -> RequireToken {
        RequireToken { verifier }
    }
}

impl<S> tower::Layer<S> for RequireToken {
    type Service = RequireTokenService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireTokenService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`RequireToken`] makes.
#[derive(Clone)]
pub struct RequireTokenService<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

impl<S, B> tower::Service<Request<B>> for RequireTokenService<S>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was made ready is the one that serves.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let Some(token) = bearer(req.headers()).map(str::to_owned) else {
                return Ok(unauthorized(None));
            };
            match verifier.verify(&token).await {
                Ok(t) => {
                    req.extensions_mut().insert(t);
                    req.extensions_mut().insert(verifier);
                    inner.call(req).await
                }
                Err(e) => Ok(unauthorized(Some(&e))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(roles: &[&str]) -> AccessToken {
        AccessToken {
            sub: "u".into(),
            client_id: None,
            scope: Some("openid roles".into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            jti: None,
            exp: 0,
        }
    }

    #[test]
    fn the_reach_rule_never_matches_a_name_that_merely_starts_alike() {
        assert!(reaches("orgs/test/*", "orgs/test"));
        assert!(reaches("orgs/test/*", "orgs/test/projects/backend"));
        assert!(reaches(
            "orgs/test/*",
            "orgs/test/projects/backend/buckets/logs"
        ));
        assert!(!reaches("orgs/test/*", "orgs/testing"));
        assert!(!reaches("orgs/test/*", "orgs/testing/projects/x"));
        assert!(!reaches("orgs/test", "orgs/test/projects/backend"));
        assert!(reaches("orgs/test", "orgs/test"));
        assert!(reaches("*", "orgs/anything"));
        assert!(!reaches("orgs/test/*", "orgs"));
    }

    #[test]
    fn roles_and_permissions_come_from_the_claim_and_the_catalog() {
        let catalog = RoleCatalog::from_json(
            br#"{"roles":[{"id":"owner","permissions":["a.b.get","a.b.delete"]},{"id":"viewer","permissions":["a.b.get"]}]}"#,
        )
        .expect("catalog");
        let t = token(&[
            "viewer@orgs/test/*",
            "owner@orgs/test/projects/p",
            "bad-entry",
        ]);
        assert!(t.has_role("viewer", "orgs/test/projects/p"));
        assert!(!t.has_role("viewer", "orgs/testing"));
        assert!(t.has_permission(&catalog, "a.b.get", "orgs/test/x"));
        assert!(!t.has_permission(&catalog, "a.b.delete", "orgs/test/x"));
        assert!(t.has_permission(&catalog, "a.b.delete", "orgs/test/projects/p"));
        assert!(!t.has_permission(&catalog, "a.b.delete", "orgs/test/projects/p/envs/e"));
        assert!(!t.has_permission(&catalog, "unknown", "orgs/test"));
        assert!(t.has_scope("roles") && !t.has_scope("role"));
    }

    #[test]
    fn cache_lifetimes_follow_cache_control() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(max_age(&h), DEFAULT_MAX_AGE);
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        assert_eq!(max_age(&h), Duration::from_secs(60));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert_eq!(max_age(&h), Duration::ZERO);
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=99999999"),
        );
        assert_eq!(max_age(&h), MAX_MAX_AGE);
    }
}
