//! Federation (DESIGN.md section 5) end to end, with a real OpenID provider upstream:
//! a second gatehouse in this process. The downstream gatehouse names it in
//! `federation.providers` (or through `/v1/identity-providers`), and is registered
//! at the upstream as a confidential client through the upstream's admin API.
//!
//! Both servers listen on 127.0.0.1, on different ports, and both use cookies named
//! `gatehouse_session` and `gatehouse_csrf`. A cookie jar keyed by host would mix
//! them up, so every test drives one [`Browser`] per server, each with a jar of its
//! own, and carries the redirects between them by hand: the downstream's 303 to the
//! upstream's authorize endpoint is opened in the upstream browser, the upstream's
//! 303 back to `/federation/<id>/callback` in the downstream browser. That is how a
//! real browser keeps the two origins apart, and no step is hidden.
//!
//! gatehouse as an upstream never gives tokens to an unverified account, so "the
//! upstream says `email_verified: false`" cannot happen with it alone: that case
//! runs through [`Forger`], a reverse proxy at the upstream's issuer address that
//! adds claims to its (unsigned) userinfo answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use gatehouse::config::{Config, GroupMapping, ProviderConfig, Secret};
use gatehouse::iam::evaluator::PrincipalRef;
use gatehouse::store::audit::AuditEvent;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use url::Url;

use crate::support::{
    self, Browser, Pkce, Resp, TestServer, client, form, params_of, pkce, secret, unescape,
};

const ADMIN: &str = "gatehouse-admin";
const ADMIN_CB: &str = "http://127.0.0.1:53682/callback";
/// The bootstrap's owner, on both servers (an instance owner on each).
const OWNER: (&str, &str) = ("owner@acme.test", "owner password");

/// Trusted for email, provisions.
const CORP: &str = "corp";
/// Not trusted for email (provisions, but never matches by address).
const STRICT: &str = "strict";
/// Trusted for email, does not provision.
const CLOSED: &str = "closed";
/// Asks for `openid profile` only: the upstream's ID token carries no address.
const BARE: &str = "bare";
/// Maps the upstream's `roles` claim onto a downstream group.
const GROUPS: &str = "groups";
/// Created through the admin API, not the configuration file.
const API: &str = "api-sso";
/// The upstream's `roles` entry that [`GROUPS`] maps, and the group it maps to.
const VIEWER_ACME: &str = "viewer@orgs/acme/*";
const ENG: &str = "orgs/acme/groups/eng";

// ---------------------------------------------------------------------------
// A browser per server

/// The `href` of the login page's button for provider `id`, if it is a working link.
fn provider_href(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("data-provider=\"{id}\""))?;
    let start = html[..at].rfind('<')?;
    let tag = &html[start..at];
    let h = tag.find("href=\"")? + "href=\"".len();
    let len = tag[h..].find('"')?;
    Some(unescape(&tag[h..h + len]))
}

/// `location` with query parameter `name` set to `value` (or removed, for `None`).
fn with_param(location: &str, name: &str, value: Option<&str>) -> String {
    let mut u = Url::parse(location).unwrap_or_else(|e| panic!("{location:?}: {e}"));
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = u.query_pairs_mut();
        q.clear();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        if let Some(v) = value {
            q.append_pair(name, v);
        }
    }
    u.to_string()
}

/// What the federation tests ask of a browser besides the shared steps.
impl Browser {
    /// Signs in with a password on the login page (no authorization pending).
    async fn password_login(&mut self, who: (&str, &str)) -> Resp {
        self.sign_in_at("/login", who).await
    }

    /// Asserts that this browser has no session: the account page sends it to
    /// the login page.
    async fn assert_signed_out(&mut self) {
        let r = self.get("/account").await;
        assert_eq!(
            (r.status, r.location()),
            (303, "/login"),
            "no session: {}",
            r.what()
        );
    }

    /// The address the account page says is signed in.
    async fn signed_in_as(&mut self) -> String {
        let r = self.get("/account").await;
        assert_eq!(r.status, 200, "the account page: {}", r.what());
        let start = r.body.find("<strong>").expect("<strong>") + "<strong>".len();
        let end = start + r.body[start..].find("</strong>").expect("</strong>");
        unescape(&r.body[start..end])
    }
}

/// An authorization request of the admin client (public, PKCE).
fn admin_path(p: &Pkce, scope: &str, nonce: &str) -> String {
    format!(
        "/oauth2/authorize?{}",
        form(&[
            ("client_id", ADMIN),
            ("redirect_uri", ADMIN_CB),
            ("response_type", "code"),
            ("scope", scope),
            ("state", "app-state"),
            ("nonce", nonce),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ])
    )
}

/// Redeems an admin-client code at `base`.
async fn admin_exchange(base: &str, code: &str, verifier: &str) -> Value {
    let r = client()
        .post(format!("{base}/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", ADMIN_CB),
            ("client_id", ADMIN),
            ("code_verifier", verifier),
        ]))
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "code exchange at {base}: {body}");
    body
}

/// An admin API token of the instance owner of `base`, through the admin client.
async fn owner_token(base: &str) -> String {
    let mut b = Browser::new(base);
    let p = pkce();
    let first = b.get(&admin_path(&p, "openid", "n")).await;
    let back = params_of(&b.run_to_client(first, Some(OWNER), "allow").await);
    let t = admin_exchange(base, &back["code"], &p.verifier).await;
    t["access_token"].as_str().expect("access_token").to_owned()
}

/// One admin API answer.
struct Api {
    status: u16,
    body: Value,
    text: String,
    what: String,
}

impl Api {
    #[track_caller]
    fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}: {}", self.what, self.text);
        &self.body
    }
}

async fn api(base: &str, token: &str, method: Method, path: &str, body: Option<Value>) -> Api {
    let mut req = client()
        .request(method.clone(), format!("{base}/v1{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("admin API request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let what = format!("{method} {base}/v1{path}");
    assert!(status < 500, "{what} answered {status}: {text}");
    Api {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        what,
    }
}

/// Bootstraps `acme` and its owner [`OWNER`] on `s`; returns the owner's id.
async fn bootstrap(s: &TestServer) -> String {
    let catalog = gatehouse::iam::Catalog::named(&s.state.config.catalog).expect("catalog");
    let (out, _) = gatehouse::bootstrap::run(
        &s.state.store,
        &s.state.kek,
        &s.state.issuer,
        &catalog,
        gatehouse::bootstrap::Request {
            org: "acme".into(),
            owner_email: OWNER.0.into(),
            owner_password: OWNER.1.into(),
            service_account: None,
        },
    )
    .await
    .expect("bootstrap");
    settle(s).await;
    out["owner"]["id"].as_str().expect("owner id").to_owned()
}

/// Waits until `s`'s view reflects every committed change.
async fn settle(s: &TestServer) {
    let want = s.state.store.current_seq().await.expect("seq");
    for _ in 0..1000 {
        if s.state
            .view
            .load()
            .as_ref()
            .as_ref()
            .is_some_and(|v| v.seq >= want)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the view did not reach change {want}");
}

/// Waits (at most `timeout`) until provider `id` of `s` is available (or, with
/// `want` false, until its discovery failed); whether it happened.
async fn provider_state(s: &TestServer, id: &str, want: bool, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = s.state.upstreams.get(id).map(|u| {
            if want {
                u.available()
            } else {
                u.error.is_some()
            }
        });
        if now == Some(true) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The audit log of `s` once the queued authentication events are written.
async fn audit_log(s: &TestServer) -> Vec<AuditEvent> {
    s.state.events.drain(Duration::from_secs(2)).await;
    s.state.store.audit_events(None, 5000).await.expect("audit")
}

/// The first audit event of `s` with `action` that `pred` accepts (waiting a
/// little for the background writer).
async fn audited(
    s: &TestServer,
    action: &str,
    pred: impl Fn(&AuditEvent) -> bool,
) -> Option<AuditEvent> {
    for _ in 0..40 {
        if let Some(e) = audit_log(s)
            .await
            .into_iter()
            .find(|e| e.action == action && pred(e))
        {
            return Some(e);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

fn after(e: &AuditEvent) -> Value {
    e.after.clone().unwrap_or(Value::Null)
}

fn provider(
    id: &str,
    display_name: &str,
    issuer: &str,
    (client_id, client_secret): (&str, &str),
    trust_email: bool,
    provision: bool,
) -> ProviderConfig {
    ProviderConfig {
        id: id.into(),
        display_name: display_name.into(),
        issuer: issuer.into(),
        client_id: client_id.into(),
        client_secret: Secret(client_secret.into()),
        scopes: ["openid", "email", "profile"].map(String::from).to_vec(),
        trust_email,
        provision,
        groups_claim: None,
        group_mappings: Vec::new(),
    }
}

/// The providers of the downstream's configuration file, all at the same upstream
/// with the same client.
fn configured(issuer: &str, creds: (&str, &str)) -> Vec<ProviderConfig> {
    let mut bare = provider(BARE, "Bare SSO", issuer, creds, true, true);
    bare.scopes = vec!["openid".into(), "profile".into()];
    let mut groups = provider(GROUPS, "Groups SSO", issuer, creds, true, true);
    groups.scopes = ["openid", "email", "roles"].map(String::from).to_vec();
    groups.groups_claim = Some("roles".into());
    groups.group_mappings = vec![GroupMapping {
        upstream: VIEWER_ACME.into(),
        group: ENG.into(),
    }];
    vec![
        provider(CORP, "Corp SSO", issuer, creds, true, true),
        provider(STRICT, "Partner ID", issuer, creds, false, true),
        provider(CLOSED, "Closed SSO", issuer, creds, true, false),
        bare,
        groups,
    ]
}

/// The admin API's body for a new user `email` at the `side` server.
fn user_body(email: &str, side: &str, password: Option<&str>, verified: bool) -> Value {
    json!({
        "email": email, "display_name": format!("{email} {side}"),
        "password": password, "email_verified": verified,
    })
}

// ---------------------------------------------------------------------------
// The forging proxy

/// A reverse proxy in front of the upstream, at the address of its issuer: passes
/// everything through, but merges `extra` into the upstream's userinfo answers and
/// can swap or tamper with the ID token of its token answers.
struct Forger {
    st: ForgeState,
    task: tokio::task::JoinHandle<()>,
}

/// What the forger does to the ID token of a token answer.
#[derive(Clone, Debug)]
enum Swap {
    /// Nothing.
    Keep,
    /// Replaces it with this JWT.
    With(String),
    /// Merges these claims into its payload, keeping its header and signature.
    Claims(Value),
    /// Its payload under `alg: none`, without a signature.
    Unsigned,
}

#[derive(Clone)]
struct ForgeState {
    target: String,
    http: reqwest::Client,
    extra: Arc<Mutex<Value>>,
    swap: Arc<Mutex<Swap>>,
    /// Every ID token the upstream's token endpoint gave out, in order.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Forger {
    /// Serves on `listener`, forwarding to `target` (`http://host:port`).
    fn start(listener: TcpListener, target: String) -> Forger {
        let st = ForgeState {
            target,
            http: client(),
            extra: Arc::new(Mutex::new(json!({}))),
            swap: Arc::new(Mutex::new(Swap::Keep)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let app = axum::Router::new().fallback(forward).with_state(st.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Forger { st, task }
    }

    /// What the upstream's userinfo says from now on, besides what it says itself.
    fn set(&self, extra: Value) {
        *self.st.extra.lock().expect("lock") = extra;
    }

    /// What happens to the ID tokens of token answers from now on.
    fn swap(&self, swap: Swap) {
        *self.st.swap.lock().expect("lock") = swap;
    }

    /// The last ID token the upstream gave out.
    fn last_id_token(&self) -> String {
        self.st
            .seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("an ID token went through")
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `jwt` changed as `swap` says.
fn swapped(jwt: &str, swap: &Swap) -> String {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS: {jwt}");
    match swap {
        Swap::Keep => jwt.to_owned(),
        Swap::With(other) => other.clone(),
        Swap::Claims(add) => {
            let mut claims = support::jwt_claims(jwt);
            if let (Some(c), Some(add)) = (claims.as_object_mut(), add.as_object()) {
                for (k, v) in add {
                    c.insert(k.clone(), v.clone());
                }
            }
            let payload = b64(&serde_json::to_vec(&claims).expect("json"));
            format!("{}.{payload}.{}", parts[0], parts[2])
        }
        Swap::Unsigned => {
            let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
            format!("{header}.{}.", parts[1])
        }
    }
}

async fn forward(
    axum::extract::State(f): axum::extract::State<ForgeState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::header;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = f
        .http
        .request(parts.method.clone(), format!("{}{pq}", f.target));
    for (k, v) in &parts.headers {
        if k != header::HOST && k != header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let r = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            let mut resp = axum::response::Response::new(axum::body::Body::from(e.to_string()));
            *resp.status_mut() = axum::http::StatusCode::BAD_GATEWAY;
            return resp;
        }
    };
    let status = r.status();
    let headers = r.headers().clone();
    let mut bytes = r.bytes().await.unwrap_or_default().to_vec();
    if parts.uri.path() == "/oauth2/userinfo"
        && status.is_success()
        && let Ok(mut v) = serde_json::from_slice::<Value>(&bytes)
    {
        let extra = f.extra.lock().expect("lock").clone();
        if let (Some(out), Some(add)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in add {
                out.insert(k.clone(), x.clone());
            }
        }
        bytes = serde_json::to_vec(&v).expect("json");
    }
    if parts.uri.path() == "/oauth2/token"
        && status.is_success()
        && let Ok(mut v) = serde_json::from_slice::<Value>(&bytes)
        && let Some(id_token) = v["id_token"].as_str().map(str::to_owned)
    {
        f.seen.lock().expect("lock").push(id_token.clone());
        let swap = f.swap.lock().expect("lock").clone();
        v["id_token"] = json!(swapped(&id_token, &swap));
        bytes = serde_json::to_vec(&v).expect("json");
    }
    let mut resp = axum::response::Response::new(axum::body::Body::from(bytes));
    *resp.status_mut() = status;
    for (k, v) in &headers {
        if k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
            resp.headers_mut().append(k, v.clone());
        }
    }
    resp
}

// ---------------------------------------------------------------------------
// Two gatehouses

/// An upstream gatehouse and a downstream one that federates to it.
struct Fed {
    up: TestServer,
    /// The upstream's issuer (where browsers and the downstream reach it).
    up_issuer: String,
    down: TestServer,
    up_token: String,
    down_token: String,
    /// The downstream's client at the upstream.
    client_id: String,
    client_secret: String,
    forger: Option<Forger>,
}

impl Fed {
    /// Two servers on SQLite and in-memory state.
    async fn new() -> Fed {
        Fed::build(false, |_| {}).await
    }

    /// The downstream on PostgreSQL and Redis, or `None` when they are not
    /// configured (the suite then says it was skipped).
    async fn on_postgres_and_redis() -> Option<Fed> {
        let db = support::postgres_url().await?;
        let redis = support::redis_url()?;
        Some(
            Fed::build(false, |c| {
                c.database_url = secret(&db);
                c.redis_url = secret(&redis);
            })
            .await,
        )
    }

    /// With `forge`, the upstream's issuer is a [`Forger`] in front of it.
    async fn build(forge: bool, adjust_down: impl FnOnce(&mut Config)) -> Fed {
        support::init();
        let (up, forger) = if forge {
            let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let issuer = format!("http://{}", proxy.local_addr().expect("addr"));
            let up = TestServer::start_with(|c| c.issuer = Some(issuer)).await;
            let forger = Forger::start(proxy, up.base.clone());
            (up, Some(forger))
        } else {
            (TestServer::start().await, None)
        };
        let up_issuer = up.state.issuer.clone();
        bootstrap(&up).await;
        let up_token = owner_token(&up_issuer).await;

        // The downstream's address is known before it starts, so it can be
        // registered at the upstream with exact redirect URIs first.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let down_base = format!("http://{}", listener.local_addr().expect("addr"));
        let redirect_uris: Vec<String> = [CORP, STRICT, CLOSED, BARE, GROUPS, API]
            .iter()
            .map(|id| format!("{down_base}/federation/{id}/callback"))
            .collect();
        let c = api(
            &up_issuer,
            &up_token,
            Method::POST,
            "/orgs/acme/clients",
            Some(json!({
                "display_name": "Downstream gatehouse",
                "redirect_uris": redirect_uris,
                "public": false,
            })),
        )
        .await;
        let c = c.ok(201);
        let client_id = c["client_id"].as_str().expect("client_id").to_owned();
        let client_secret = c["client_secret"]
            .as_str()
            .expect("client_secret")
            .to_owned();

        let providers = configured(&up_issuer, (&client_id, &client_secret));
        let down = TestServer::start_on(listener, |c| {
            c.federation.providers = providers;
            adjust_down(c);
        })
        .await;
        assert_eq!(down.base, down_base);
        bootstrap(&down).await;
        for id in [CORP, STRICT, CLOSED, BARE, GROUPS] {
            assert!(
                provider_state(&down, id, true, Duration::from_secs(5)).await,
                "provider {id} discovered: {:?}",
                down.state.upstreams.get(id).and_then(|u| u.error.clone())
            );
        }
        let down_token = owner_token(&down.base).await;
        Fed {
            up,
            up_issuer,
            down,
            up_token,
            down_token,
            client_id,
            client_secret,
            forger,
        }
    }

    fn down_browser(&self) -> Browser {
        Browser::new(&self.down.base)
    }

    fn up_browser(&self) -> Browser {
        Browser::new(&self.up_issuer)
    }

    async fn up_api(&self, method: Method, path: &str, body: Option<Value>) -> Api {
        api(&self.up_issuer, &self.up_token, method, path, body).await
    }

    async fn down_api(&self, method: Method, path: &str, body: Option<Value>) -> Api {
        api(&self.down.base, &self.down_token, method, path, body).await
    }

    /// A verified person at the upstream with a password; their id there (the
    /// `sub` the upstream asserts).
    async fn upstream_user(&self, email: &str, password: &str) -> String {
        let a = self
            .up_api(
                Method::POST,
                "/users",
                Some(user_body(email, "upstream", Some(password), true)),
            )
            .await;
        a.ok(201)["id"].as_str().expect("id").to_owned()
    }

    /// An account at the downstream (created through its admin API).
    async fn downstream_user(&self, email: &str, password: Option<&str>, verified: bool) -> String {
        let a = self
            .down_api(
                Method::POST,
                "/users",
                Some(user_body(email, "downstream", password, verified)),
            )
            .await;
        a.ok(201)["id"].as_str().expect("id").to_owned()
    }

    /// The downstream account an upstream subject is linked to, if any.
    async fn linked(&self, subject: &str) -> Option<String> {
        self.down
            .state
            .store
            .federated_identity(&self.up_issuer, subject)
            .await
            .expect("store")
            .map(|i| i.user_id)
    }

    /// From the downstream's provider start URL `start` to the downstream's answer
    /// to the callback, `who` signing in at the upstream (unless `up` has a session
    /// there) and consenting.
    async fn through(
        &self,
        down: &mut Browser,
        up: &mut Browser,
        start: &str,
        who: (&str, &str),
    ) -> Resp {
        let r = down.get(start).await;
        let cb = self.upstream_side(down, up, r, who, "allow").await;
        down.get(&cb).await
    }

    /// Given the downstream's answer `r` that should send the browser to the
    /// upstream: runs the upstream's side, returns the callback URL it sends the
    /// browser back to (checked to be the downstream's).
    async fn upstream_side(
        &self,
        down: &Browser,
        up: &mut Browser,
        r: Resp,
        who: (&str, &str),
        decision: &str,
    ) -> String {
        assert_eq!(r.status, 303, "to the upstream: {}", r.what());
        let authorize = r.location().to_owned();
        assert!(
            authorize.starts_with(&format!("{}/oauth2/authorize?", self.up_issuer)),
            "to the upstream's authorize endpoint: {authorize}"
        );
        assert!(
            down.cookie("gatehouse_federation").is_some(),
            "the start binds the flow to the browser"
        );
        let q = params_of(&authorize);
        assert_eq!(q["client_id"], self.client_id);
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        for p in ["state", "nonce", "code_challenge", "redirect_uri"] {
            assert!(q.contains_key(p), "{p} in {authorize}");
        }
        let first = up.get(&authorize).await;
        let cb = up.run_to_client(first, Some(who), decision).await;
        assert!(
            cb.starts_with(&format!("{}/federation/", self.down.base)),
            "back to the downstream's callback: {cb}"
        );
        assert_eq!(params_of(&cb)["state"], q["state"]);
        cb
    }

    /// Signs in through provider `id` from the bare login page (no application);
    /// the downstream's answer to the callback.
    async fn login_via(
        &self,
        down: &mut Browser,
        up: &mut Browser,
        id: &str,
        who: (&str, &str),
    ) -> Resp {
        self.through(down, up, &format!("/federation/{id}/start"), who)
            .await
    }

    /// The downstream's admin client authorizes with PKCE; the person chooses
    /// provider `id` on the login page and signs in upstream as `who`. Returns the
    /// verified claims of the ID token the downstream issues.
    async fn app_login(
        &self,
        down: &mut Browser,
        up: &mut Browser,
        id: &str,
        who: (&str, &str),
    ) -> Value {
        let p = pkce();
        let nonce = format!("n-{}", uuid::Uuid::new_v4().simple());
        let r = down
            .get(&admin_path(&p, "openid email profile", &nonce))
            .await;
        assert!(
            r.status == 303 && r.location().starts_with("/login?pending="),
            "to the login page: {}",
            r.what()
        );
        let pending = r.location()["/login?pending=".len()..].to_owned();
        let page = down.follow(&r).await;
        assert_eq!(page.status, 200, "{}", page.what());
        let href = provider_href(&page.body, id)
            .unwrap_or_else(|| panic!("a working button for {id}: {}", page.body));
        assert!(
            href.starts_with(&format!("/federation/{id}/start?pending=")),
            "the button carries the pending authorization: {href}"
        );
        let r = self.through(down, up, &href, who).await;
        assert_eq!(
            (r.status, r.location()),
            (
                303,
                format!("/oauth2/authorize/resume?pending={pending}").as_str()
            ),
            "the callback continues the authorization: {}",
            r.what()
        );
        let r = down.follow(&r).await;
        assert_eq!(r.status, 303, "{}", r.what());
        assert!(r.location().starts_with(ADMIN_CB), "{}", r.what());
        let back = params_of(r.location());
        assert_eq!(back["state"], "app-state");
        assert_eq!(back["iss"], self.down.base);
        let t = admin_exchange(&self.down.base, &back["code"], &p.verifier).await;
        let id_token = t["id_token"].as_str().expect("id_token");
        let claims = self.verify_id_token(id_token);
        assert_eq!(claims["nonce"], nonce.as_str());
        claims
    }

    /// Verifies an ID token of the downstream for the admin client.
    fn verify_id_token(&self, token: &str) -> Value {
        let ring = self.down.state.keys.load();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&[ADMIN]);
        v.set_issuer(&[&self.down.base]);
        gatehouse::crypto::jwt::verify(&ring, gatehouse::now_unix(), token, &v)
            .unwrap_or_else(|e| panic!("a valid ID token: {e}"))
    }

    /// Asserts `r` is the page of a refused federated login titled `title`, that it
    /// left the browser signed out and linked nothing to `subject`.
    async fn assert_refused(
        &self,
        down: &mut Browser,
        r: &Resp,
        status: u16,
        title: &str,
        subject: &str,
    ) {
        assert_eq!(r.status, status, "refused: {}", r.what());
        assert_eq!(r.title(), title, "{}", r.what());
        assert!(
            r.headers
                .get_all("set-cookie")
                .iter()
                .all(|c| !c.to_str().unwrap_or("").starts_with("gatehouse_session=")),
            "a refusal sets no session cookie"
        );
        down.assert_signed_out().await;
        assert_eq!(
            self.linked(subject).await,
            None,
            "a refusal links no identity"
        );
    }

    /// Signs in through provider `id` as `who` in fresh browsers, and asserts it
    /// is refused as [`Fed::assert_refused`] says; the refusal.
    async fn login_refused(
        &self,
        id: &str,
        who: (&str, &str),
        status: u16,
        title: &str,
        subject: &str,
    ) -> Resp {
        let (mut down, mut up) = (self.down_browser(), self.up_browser());
        let r = self.login_via(&mut down, &mut up, id, who).await;
        self.assert_refused(&mut down, &r, status, title, subject)
            .await;
        r
    }

    /// The downstream's stored identity providers.
    async fn stored_providers(&self) -> Vec<gatehouse::store::federation::ProviderRow> {
        self.down
            .state
            .store
            .identity_providers()
            .await
            .expect("rows")
    }

    async fn stop(self) {
        self.down.stop().await;
        self.up.stop().await;
        if let Some(f) = self.forger {
            f.task.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// 1. provisioning and linking by address through a provider of the file

async fn provisioning_and_linking(fed: Fed) {
    let ada = ("ada@corp.test", "ada upstream password");
    let ada_up = fed.upstream_user(ada.0, ada.1).await;

    // a new person: provisioned, verified, no password, signed in with amr fed
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let claims = fed.app_login(&mut down, &mut up, CORP, ada).await;
    assert_eq!(claims["amr"], json!(["fed"]), "{claims}");
    assert_eq!(claims["email"], ada.0, "{claims}");
    assert_eq!(claims["email_verified"], true, "{claims}");
    let sub = claims["sub"].as_str().expect("sub").to_owned();
    assert_ne!(sub, ada_up, "the downstream account is its own");
    let user = fed
        .down
        .state
        .store
        .user_by_id(&sub)
        .await
        .expect("store")
        .expect("the ID token's sub is a downstream account");
    assert_eq!(user.email, ada.0);
    assert!(user.email_verified, "provisioned from a trusted address");
    assert!(
        user.password_hash.is_none(),
        "provisioned without a password"
    );
    assert!(!user.disabled);
    let identity = fed
        .down
        .state
        .store
        .federated_identity(&fed.up_issuer, &ada_up)
        .await
        .expect("store")
        .expect("the identity is linked");
    assert_eq!(identity.user_id, sub);
    assert_eq!(identity.provider_id, CORP);
    assert_eq!(identity.email.as_deref(), Some(ada.0));

    // the second login (new browsers on both sides) is the same account
    let (mut down2, mut up2) = (fed.down_browser(), fed.up_browser());
    let again = fed.app_login(&mut down2, &mut up2, CORP, ada).await;
    assert_eq!(again["sub"], sub.as_str(), "the same account: {again}");
    assert_eq!(again["amr"], json!(["fed"]));
    // ... and with the upstream session kept, without signing in there again
    let mut down3 = fed.down_browser();
    let third = fed.app_login(&mut down3, &mut up2, CORP, ada).await;
    assert_eq!(third["sub"], sub.as_str());
    let provisioned = audit_log(&fed.down)
        .await
        .into_iter()
        .filter(|e| e.action == "federation.provision")
        .count();
    assert_eq!(provisioned, 1, "one account, provisioned once");

    let e = audited(&fed.down, "federation.provision", |e| {
        after(e)["subject"] == ada_up.as_str()
    })
    .await
    .expect("federation.provision audited");
    let a = after(&e);
    assert_eq!(a["provider"], CORP, "{a}");
    assert_eq!(a["id"], sub.as_str(), "{a}");
    assert_eq!(a["issuer"], fed.up_issuer.as_str(), "{a}");
    assert_eq!(e.target, format!("user:{}", ada.0));
    let e = audited(&fed.down, "login.success", |e| {
        e.actor == format!("user:{sub}") && after(e)["provider"] == CORP
    })
    .await
    .expect("login.success with the provider audited");
    let a = after(&e);
    assert_eq!(a["amr"], json!(["fed"]), "{a}");
    assert_eq!(a["subject"], ada_up.as_str(), "{a}");

    // an existing, verified account without instance roles: linked by address
    let grace = ("grace@acme.test", "grace upstream password");
    let grace_down = fed
        .downstream_user(grace.0, Some("grace downstream password"), true)
        .await;
    let grace_up = fed.upstream_user(grace.0, grace.1).await;
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let claims = fed.app_login(&mut down, &mut up, CORP, grace).await;
    assert_eq!(claims["sub"], grace_down.as_str(), "the existing account");
    assert_eq!(claims["amr"], json!(["fed"]));
    assert_eq!(fed.linked(&grace_up).await, Some(grace_down.clone()));
    let e = audited(&fed.down, "federation.link", |e| {
        after(e)["subject"] == grace_up.as_str()
    })
    .await
    .expect("federation.link audited");
    assert_eq!(after(&e)["matched_by"], "email", "{:?}", e.after);
    assert_eq!(after(&e)["provider"], CORP);
    assert!(
        audited(&fed.down, "federation.provision", |e| after(e)["subject"]
            == grace_up.as_str())
        .await
        .is_none(),
        "linking provisions nothing"
    );
    let still = fed
        .down
        .state
        .store
        .user_by_email(grace.0)
        .await
        .expect("store")
        .expect("grace");
    assert_eq!(still.id, grace_down);
    assert!(still.password_hash.is_some(), "the password stays");
    fed.stop().await;
}

#[tokio::test]
async fn a_new_upstream_person_is_provisioned_and_an_existing_address_linked() {
    provisioning_and_linking(Fed::new().await).await;
}

#[tokio::test]
async fn provisioning_and_linking_on_postgres_and_redis() {
    let Some(fed) = Fed::on_postgres_and_redis().await else {
        return;
    };
    provisioning_and_linking(fed).await;
}

// ---------------------------------------------------------------------------
// 2. a provider managed through the admin API

#[tokio::test]
async fn a_provider_created_through_the_api_works_keeps_its_secret_sealed_and_goes_away() {
    let fed = Fed::new().await;
    let plain = fed.client_secret.clone();
    let created = fed
        .down_api(
            Method::POST,
            "/identity-providers",
            Some(json!({
                "id": API, "display_name": "API SSO", "issuer": fed.up_issuer,
                "client_id": fed.client_id, "client_secret": plain,
                "trust_email": true, "provision": true,
            })),
        )
        .await;
    let body = created.ok(201).clone();
    assert!(
        !created.text.contains(&plain),
        "no secret: {}",
        created.text
    );
    assert!(body.get("client_secret").is_none(), "{body}");
    assert_eq!(body["id"], API);
    assert_eq!(body["source"], "api");
    assert_eq!(body["available"], true, "discovered at once: {body}");
    assert_eq!(
        body["redirect_uri"],
        format!("{}/federation/{API}/callback", fed.down.base)
    );
    assert_eq!(body["scopes"], json!(["openid", "email", "profile"]));

    let list = fed.down_api(Method::GET, "/identity-providers", None).await;
    assert!(!list.text.contains(&plain), "no secret: {}", list.text);
    let list = list.ok(200)["identity_providers"]
        .as_array()
        .expect("list")
        .clone();
    let source_of = |id: &str| {
        list.iter()
            .find(|p| p["id"] == id)
            .map(|p| p["source"].clone())
    };
    assert_eq!(source_of(API), Some(json!("api")), "{list:?}");
    assert_eq!(source_of(CORP), Some(json!("config")), "{list:?}");
    let got = fed
        .down_api(Method::GET, &format!("/identity-providers/{API}"), None)
        .await;
    assert!(!got.text.contains(&plain), "no secret: {}", got.text);
    assert_eq!(got.ok(200)["available"], true);
    assert!(got.body.get("client_secret").is_none());

    // the stored row holds the secret sealed with the key-encryption key
    let rows = fed.stored_providers().await;
    let row = rows.iter().find(|r| r.id == API).expect("stored row");
    assert!(
        !row.client_secret.contains(&plain) && !row.settings.contains(&plain),
        "the stored row holds no plaintext secret: {:?} {:?}",
        row.client_secret,
        row.settings
    );
    let opened = gatehouse::federation::from_row(row, &fed.down.state.kek).expect("opens");
    assert_eq!(opened.client_secret.0, plain, "sealed, and opens to it");
    assert!(
        row.created_by.contains(OWNER.0),
        "created by the owner: {}",
        row.created_by
    );

    // its button, and a login through it
    let mut b = fed.down_browser();
    let page = b.get("/login").await;
    assert_eq!(
        provider_href(&page.body, API).as_deref(),
        Some("/federation/api-sso/start")
    );
    let bea = ("bea@corp.test", "bea upstream password");
    let bea_up = fed.upstream_user(bea.0, bea.1).await;
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let claims = fed.app_login(&mut down, &mut up, API, bea).await;
    assert_eq!(claims["amr"], json!(["fed"]));
    let sub = claims["sub"].as_str().expect("sub").to_owned();
    assert_eq!(fed.linked(&bea_up).await, Some(sub.clone()));

    // replaced without a client secret: the stored one is kept, logins work
    let put = fed
        .down_api(
            Method::PUT,
            &format!("/identity-providers/{API}"),
            Some(json!({
                "display_name": "API SSO renamed", "issuer": fed.up_issuer,
                "client_id": fed.client_id, "trust_email": true, "provision": true,
            })),
        )
        .await;
    assert!(!put.text.contains(&plain), "no secret: {}", put.text);
    assert_eq!(put.ok(200)["display_name"], "API SSO renamed");
    let rows = fed.stored_providers().await;
    let row = rows.iter().find(|r| r.id == API).expect("stored row");
    let opened = gatehouse::federation::from_row(row, &fed.down.state.kek).expect("opens");
    assert_eq!(opened.client_secret.0, plain, "the secret is kept");
    assert_eq!(opened.display_name, "API SSO renamed");
    assert!(
        provider_state(&fed.down, API, true, Duration::from_secs(5)).await,
        "discovered again after the change"
    );
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let again = fed.app_login(&mut down, &mut up, API, bea).await;
    assert_eq!(
        again["sub"],
        sub.as_str(),
        "the login works with the kept secret"
    );

    // the file's providers are not the API's to change
    let a = fed
        .down_api(
            Method::PUT,
            &format!("/identity-providers/{CORP}"),
            Some(json!({
                "display_name": "Hijacked", "issuer": fed.up_issuer,
                "client_id": fed.client_id,
            })),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.text);
    let a = fed
        .down_api(Method::DELETE, &format!("/identity-providers/{CORP}"), None)
        .await;
    assert_eq!(a.status, 409, "{}", a.text);

    // deleted: gone from the API, the store, the login page and the routes
    fed.down_api(Method::DELETE, &format!("/identity-providers/{API}"), None)
        .await
        .ok(204);
    let a = fed
        .down_api(Method::GET, &format!("/identity-providers/{API}"), None)
        .await;
    assert_eq!(a.status, 404, "{}", a.text);
    let rows = fed.stored_providers().await;
    assert!(rows.iter().all(|r| r.id != API));
    assert_eq!(fed.linked(&bea_up).await, None, "its links went with it");
    let page = b.get("/login").await;
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains(&format!("data-provider=\"{API}\"")),
        "no button: {}",
        page.body
    );
    assert!(page.body.contains(&format!("data-provider=\"{CORP}\"")));
    let r = b.get(&format!("/federation/{API}/start")).await;
    assert_eq!(r.status, 404, "{}", r.what());
    fed.stop().await;
}

// ---------------------------------------------------------------------------
// 3. matching: who is never logged in

#[tokio::test]
async fn matching_never_takes_over_an_account_it_should_not() {
    let fed = Fed::new().await;

    // (a) not trusted for email: an existing account with the address stays alone
    let grace = ("grace@acme.test", "grace upstream password");
    let grace_down = fed
        .downstream_user(grace.0, Some("grace downstream password"), true)
        .await;
    let grace_up = fed.upstream_user(grace.0, grace.1).await;
    let r = fed
        .login_refused(
            STRICT,
            grace,
            403,
            "An account with this address exists",
            &grace_up,
        )
        .await;
    assert!(r.body.contains("Partner ID"), "{}", r.what());
    let e = audited(&fed.down, "federation.refused", |e| {
        after(e)["subject"] == grace_up.as_str()
    })
    .await
    .expect("federation.refused audited");
    assert_eq!(after(&e)["reason"], "AddressTaken", "{:?}", e.after);
    assert_eq!(e.actor, format!("federation:{STRICT}"));
    let u = fed
        .down
        .state
        .store
        .user_by_email(grace.0)
        .await
        .expect("store")
        .expect("grace");
    assert_eq!(u.id, grace_down, "nothing provisioned over it");

    // (c) the downstream's instance owner: only with the password
    let owner_up = api(
        &fed.up_issuer,
        &fed.up_token,
        Method::GET,
        &format!("/users?email={}", OWNER.0),
        None,
    )
    .await;
    let owner_up = owner_up.ok(200)["users"][0]["id"]
        .as_str()
        .expect("upstream owner id")
        .to_owned();
    fed.login_refused(
        CORP,
        OWNER,
        403,
        "Sign in with your password to link this account",
        &owner_up,
    )
    .await;

    // (d) an unverified account with the address
    let uma = ("uma@acme.test", "uma upstream password");
    fed.downstream_user(uma.0, Some("uma downstream password"), false)
        .await;
    let uma_up = fed.upstream_user(uma.0, uma.1).await;
    fed.login_refused(CORP, uma, 403, "Verify your email address first", &uma_up)
        .await;
    let u = fed
        .down
        .state
        .store
        .user_by_email(uma.0)
        .await
        .expect("store")
        .expect("uma");
    assert!(!u.email_verified, "still unverified");

    // (e) no account, and the provider does not provision
    let nina = ("nina@corp.test", "nina upstream password");
    let nina_up = fed.upstream_user(nina.0, nina.1).await;
    fed.login_refused(
        CLOSED,
        nina,
        403,
        "No account is linked to this identity",
        &nina_up,
    )
    .await;
    assert!(
        fed.down
            .state
            .store
            .user_by_email(nina.0)
            .await
            .expect("store")
            .is_none(),
        "no account created"
    );

    // no address shared (the provider asks for openid profile): nothing to provision
    let otto = ("otto@corp.test", "otto upstream password");
    let otto_up = fed.upstream_user(otto.0, otto.1).await;
    fed.login_refused(BARE, otto, 403, "No email address was shared", &otto_up)
        .await;
    assert!(
        fed.down
            .state
            .store
            .user_by_email(otto.0)
            .await
            .expect("store")
            .is_none()
    );

    // none of them left a provisioned account or a link behind
    let log = audit_log(&fed.down).await;
    assert!(
        !log.iter()
            .any(|e| e.action == "federation.provision" || e.action == "federation.link"),
        "no provisioning, no link"
    );

    fed.stop().await;
}

/// Disabling an account revokes its sessions "at once" (`PATCH /v1/users/{id}`,
/// `UserPatch::disabled`): no federated login, and the session it had is over for
/// the account page and the link flow as well.
#[tokio::test]
async fn a_disabled_account_neither_signs_in_through_a_provider_nor_keeps_its_session() {
    let fed = Fed::new().await;
    let ada = ("ada@corp.test", "ada upstream password");
    let ada_up = fed.upstream_user(ada.0, ada.1).await;
    let (mut old, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut old, &mut up, CORP, ada).await;
    assert_eq!(r.status, 200, "provisioned: {}", r.what());
    let ada_id = fed.linked(&ada_up).await.expect("linked");
    assert_eq!(old.signed_in_as().await, ada.0);
    let csrf = old
        .get("/account")
        .await
        .input("csrf_token")
        .expect("csrf_token");

    fed.down_api(
        Method::PATCH,
        &format!("/users/{ada_id}"),
        Some(json!({ "disabled": true })),
    )
    .await
    .ok(200);
    settle(&fed.down).await;

    // a new federated login of the linked identity is refused
    let (mut down, mut up2) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up2, CORP, ada).await;
    assert_eq!(r.status, 403, "{}", r.what());
    assert_eq!(r.title(), "This account is disabled");
    down.assert_signed_out().await;

    // the session from before: what it can still do on the account page
    let account = old.get("/account").await;
    let zed = ("zed@corp.test", "zed upstream password");
    let zed_up = fed.upstream_user(zed.0, zed.1).await;
    let start = old
        .post(
            &format!("/federation/{CORP}/start"),
            &[("csrf_token", &csrf)],
        )
        .await;
    let linked_zed = if start.status == 303 && start.location().starts_with(&fed.up_issuer) {
        let mut zed_browser = fed.up_browser();
        let url = fed
            .upstream_side(&old, &mut zed_browser, start, zed, "allow")
            .await;
        let r = old.get(&url).await;
        format!("{} {}", r.status, r.location())
    } else {
        format!("{} {}", start.status, start.location())
    };
    assert!(
        account.status == 303 && account.location() == "/login",
        "the session of a disabled account still works on the account page: GET \
         /account answered {} {:?} (want 303 /login). src/ui/account.rs (page, unlink) and \
         src/federation/flow.rs (link, link_to_account) use session::current, which checks \
         neither the sessions-void-before mark that disabling sets nor the account's state \
         (authorize::signed_in does both). The disabled account's session also linked a new \
         upstream identity: POST /federation/corp/start + callback ended in {linked_zed:?}, \
         identity now linked to {:?}",
        account.status,
        account.title(),
        fed.linked(&zed_up).await,
    );
    assert_eq!(
        fed.linked(&zed_up).await,
        None,
        "a disabled account's old session linked a new identity"
    );
    fed.stop().await;
}

#[tokio::test]
async fn an_address_the_upstream_did_not_verify_is_neither_linked_nor_provisioned() {
    let fed = Fed::build(true, |_| {}).await;
    let forger = fed.forger.as_ref().expect("forger");

    // the control: a verified address from userinfo provisions (so the refusals
    // below are about email_verified, not about the proxy)
    let vic = ("vic@corp.test", "vic upstream password");
    let vic_up = fed.upstream_user(vic.0, vic.1).await;
    forger.set(json!({ "email": vic.0, "email_verified": true }));
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up, BARE, vic).await;
    assert_eq!(r.status, 200, "{}", r.what());
    assert_eq!(r.title(), "You are signed in");
    assert_eq!(down.signed_in_as().await, vic.0);
    assert!(fed.linked(&vic_up).await.is_some());

    // (b) trusted for email, an account has the address, the upstream did not verify it
    let grace = ("grace@acme.test", "grace upstream password");
    fed.downstream_user(grace.0, Some("grace downstream password"), true)
        .await;
    let gus = ("gus@corp.test", "gus upstream password");
    let gus_up = fed.upstream_user(gus.0, gus.1).await;
    forger.set(json!({ "email": grace.0, "email_verified": false }));
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up, BARE, gus).await;
    fed.assert_refused(
        &mut down,
        &r,
        403,
        "An account with this address exists",
        &gus_up,
    )
    .await;

    // ... and no account: an unverified address is not provisioned either
    let wes = ("wes@corp.test", "wes upstream password");
    let wes_up = fed.upstream_user(wes.0, wes.1).await;
    forger.set(json!({ "email": wes.0, "email_verified": false }));
    fed.login_refused(
        BARE,
        wes,
        403,
        "Your email address is not verified",
        &wes_up,
    )
    .await;
    assert!(
        fed.down
            .state
            .store
            .user_by_email(wes.0)
            .await
            .expect("store")
            .is_none()
    );
    // email_verified missing altogether counts as not verified
    forger.set(json!({ "email": wes.0 }));
    fed.login_refused(
        BARE,
        wes,
        403,
        "Your email address is not verified",
        &wes_up,
    )
    .await;
    fed.stop().await;
}

#[tokio::test]
async fn forged_replayed_or_foreign_id_tokens_and_userinfo_for_another_subject_are_refused() {
    let fed = Fed::build(true, |_| {}).await;
    let forger = fed.forger.as_ref().expect("forger");
    let failed = "Signing in with Corp SSO did not work";
    let grace = ("grace@acme.test", "grace downstream password");
    let grace_id = fed.downstream_user(grace.0, Some(grace.1), true).await;
    let grace_untouched = || async {
        let linked = fed
            .down
            .state
            .store
            .federated_identities_of(&grace_id)
            .await
            .expect("store");
        assert!(linked.is_empty(), "nothing linked to grace: {linked:?}");
    };

    // the control: through the proxy, untouched, a login works
    let ada = ("ada@corp.test", "ada upstream password");
    let ada_up = fed.upstream_user(ada.0, ada.1).await;
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up, CORP, ada).await;
    assert_eq!(r.status, 200, "{}", r.what());
    let ada_id = fed.linked(&ada_up).await.expect("provisioned");
    let ada_token = forger.last_id_token();
    assert_eq!(support::jwt_claims(&ada_token)["sub"], ada_up.as_str());

    // eve, at the upstream, tries to become grace downstream
    let eve = ("eve@corp.test", "eve upstream password");
    let eve_up = fed.upstream_user(eve.0, eve.1).await;

    // her ID token with grace's address: the signature no longer holds
    forger.swap(Swap::Claims(
        json!({ "email": grace.0, "email_verified": true }),
    ));
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up, CORP, eve).await;
    fed.assert_refused(&mut down, &r, 502, failed, &eve_up)
        .await;
    assert!(r.body.contains("could not be verified"), "{}", r.what());
    grace_untouched().await;

    // ... or as ada's subject: same
    forger.swap(Swap::Claims(json!({ "sub": ada_up })));
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up, CORP, eve).await;
    fed.assert_refused(&mut down, &r, 502, failed, &eve_up)
        .await;

    // her ID token unsigned (alg none)
    forger.swap(Swap::Unsigned);
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up, CORP, eve).await;
    fed.assert_refused(&mut down, &r, 502, failed, &eve_up)
        .await;

    // ada's genuine ID token from her earlier login, replayed into eve's flow:
    // signed, for this client, but not for this flow's nonce
    forger.swap(Swap::With(ada_token));
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up, CORP, eve).await;
    fed.assert_refused(&mut down, &r, 502, failed, &eve_up)
        .await;
    assert_eq!(fed.linked(&ada_up).await, Some(ada_id.clone()));

    // a genuine ID token the upstream issued to another client (its admin client)
    forger.swap(Swap::Keep);
    let mut other = fed.up_browser();
    let p = pkce();
    let first = other.get(&admin_path(&p, "openid email", "n")).await;
    let back = params_of(&other.run_to_client(first, Some(eve), "allow").await);
    admin_exchange(&fed.up_issuer, &back["code"], &p.verifier).await;
    let foreign = forger.last_id_token();
    assert_eq!(support::jwt_claims(&foreign)["aud"], ADMIN);
    forger.swap(Swap::With(foreign));
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up, CORP, eve).await;
    fed.assert_refused(&mut down, &r, 502, failed, &eve_up)
        .await;
    forger.swap(Swap::Keep);

    // userinfo (unsigned) for another subject, with grace's verified address: not
    // believed, so no address at all
    forger.set(json!({ "sub": "someone-else", "email": grace.0, "email_verified": true }));
    fed.login_refused(BARE, eve, 403, "No email address was shared", &eve_up)
        .await;
    grace_untouched().await;

    // the control again: untouched, eve signs in as herself
    forger.set(json!({}));
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up, CORP, eve).await;
    assert_eq!(r.status, 200, "{}", r.what());
    assert_eq!(down.signed_in_as().await, eve.0);
    grace_untouched().await;
    fed.stop().await;
}

// ---------------------------------------------------------------------------
// 4. the callback, attacked

#[tokio::test]
async fn callbacks_that_are_unknown_replayed_unbound_or_forged_sign_nobody_in() {
    let fed = Fed::new().await;
    let cb = format!("/federation/{CORP}/callback");
    let ivy = ("ivy@corp.test", "ivy upstream password");
    let ivy_up = fed.upstream_user(ivy.0, ivy.1).await;
    let incomplete = "This sign-in link does not work";

    // an unknown state, no state, a state that is too long
    let mut b = fed.down_browser();
    for q in [
        "?code=abc&state=nobody-made-this".to_owned(),
        "?code=abc".to_owned(),
        format!("?code=abc&state={}", "s".repeat(300)),
        "?error=access_denied&error_description=forged&state=unknown".to_owned(),
    ] {
        let r = b.get(&format!("{cb}{q}")).await;
        assert_eq!(r.status, 400, "{q}: {}", r.what());
        assert_eq!(r.title(), incomplete, "{q}");
        assert!(
            !r.body.contains("forged"),
            "no upstream text without a flow"
        );
    }
    b.assert_signed_out().await;

    // presented without the flow cookie: by a browser that did not start it
    let (mut a, mut up) = (fed.down_browser(), fed.up_browser());
    let start = a.get(&format!("/federation/{CORP}/start")).await;
    let url = fed.upstream_side(&a, &mut up, start, ivy, "allow").await;
    let mut other = fed.down_browser();
    let r = other.get(&url).await;
    fed.assert_refused(&mut other, &r, 400, incomplete, &ivy_up)
        .await;
    a.assert_signed_out().await;

    // presented with another browser's flow cookie
    let (mut a, mut up) = (fed.down_browser(), fed.up_browser());
    let start = a.get(&format!("/federation/{CORP}/start")).await;
    let url = fed.upstream_side(&a, &mut up, start, ivy, "allow").await;
    let mut mallory = fed.down_browser();
    let own = mallory.get(&format!("/federation/{CORP}/start")).await;
    assert_eq!(own.status, 303);
    assert_ne!(
        mallory.cookie("gatehouse_federation"),
        a.cookie("gatehouse_federation")
    );
    let r = mallory.get(&url).await;
    fed.assert_refused(&mut mallory, &r, 400, incomplete, &ivy_up)
        .await;

    // the same flow cookie at another provider's callback
    let (mut a, mut up) = (fed.down_browser(), fed.up_browser());
    let start = a.get(&format!("/federation/{CORP}/start")).await;
    let url = fed.upstream_side(&a, &mut up, start, ivy, "allow").await;
    let elsewhere = url.replace(
        &format!("/federation/{CORP}/callback"),
        &format!("/federation/{STRICT}/callback"),
    );
    let r = a.get(&elsewhere).await;
    fed.assert_refused(&mut a, &r, 400, incomplete, &ivy_up)
        .await;

    // an iss that is not the upstream's (RFC 9207 mix-up)
    let (mut a, mut up) = (fed.down_browser(), fed.up_browser());
    let start = a.get(&format!("/federation/{CORP}/start")).await;
    let url = fed.upstream_side(&a, &mut up, start, ivy, "allow").await;
    assert_eq!(
        params_of(&url)["iss"],
        fed.up_issuer,
        "the upstream names itself"
    );
    let mixed = with_param(&url, "iss", Some("https://attacker.example"));
    let r = a.get(&mixed).await;
    fed.assert_refused(
        &mut a,
        &r,
        502,
        "Signing in with Corp SSO did not work",
        &ivy_up,
    )
    .await;
    assert!(r.body.contains("The answer came from another provider."));

    // a tampered code
    let (mut a, mut up) = (fed.down_browser(), fed.up_browser());
    let start = a.get(&format!("/federation/{CORP}/start")).await;
    let url = fed.upstream_side(&a, &mut up, start, ivy, "allow").await;
    let code = params_of(&url)["code"].clone();
    let r = a
        .get(&with_param(&url, "code", Some(&format!("{code}x"))))
        .await;
    fed.assert_refused(
        &mut a,
        &r,
        502,
        "Signing in with Corp SSO did not work",
        &ivy_up,
    )
    .await;
    assert!(r.body.contains("could not be verified"), "{}", r.what());

    // a code the upstream issued to another client (its own admin client), for the
    // same person
    let (mut a, mut up) = (fed.down_browser(), fed.up_browser());
    let start = a.get(&format!("/federation/{CORP}/start")).await;
    let url = fed.upstream_side(&a, &mut up, start, ivy, "allow").await;
    let p = pkce();
    let first = up.get(&admin_path(&p, "openid email", "n")).await;
    let foreign = params_of(&up.run_to_client(first, Some(ivy), "allow").await)["code"].clone();
    let r = a.get(&with_param(&url, "code", Some(&foreign))).await;
    fed.assert_refused(
        &mut a,
        &r,
        502,
        "Signing in with Corp SSO did not work",
        &ivy_up,
    )
    .await;
    let e = audited(&fed.down, "federation.refused", |e| {
        after(e)["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("code exchange"))
    })
    .await
    .expect("the failed exchange is audited");
    assert_eq!(e.actor, format!("federation:{CORP}"));

    // replayed: the second use of a callback URL that worked
    let (mut a, mut up) = (fed.down_browser(), fed.up_browser());
    let start = a.get(&format!("/federation/{CORP}/start")).await;
    let url = fed.upstream_side(&a, &mut up, start, ivy, "allow").await;
    let r = a.get(&url).await;
    assert_eq!(r.status, 200, "the first use signs in: {}", r.what());
    let sub = fed.linked(&ivy_up).await.expect("provisioned");
    let r = a.get(&url).await;
    assert_eq!(r.status, 400, "replayed: {}", r.what());
    assert_eq!(r.title(), incomplete);
    // ... in a browser that copied the flow cookie too
    let mut thief = fed.down_browser();
    thief.jar.insert(
        "gatehouse_federation".into(),
        a.cookie("gatehouse_federation").unwrap_or_default(),
    );
    let r = thief.get(&url).await;
    assert_eq!(r.status, 400, "replayed elsewhere: {}", r.what());
    thief.assert_signed_out().await;
    assert_eq!(fed.linked(&ivy_up).await, Some(sub));

    // the upstream says access_denied: a page says so; nobody is signed in
    let (mut a, mut up) = (fed.down_browser(), fed.up_browser());
    let jo = ("jo@corp.test", "jo upstream password");
    let jo_up = fed.upstream_user(jo.0, jo.1).await;
    let start = a.get(&format!("/federation/{CORP}/start")).await;
    let url = fed.upstream_side(&a, &mut up, start, jo, "deny").await;
    let q = params_of(&url);
    assert_eq!(q["error"], "access_denied", "{url}");
    let r = a.get(&url).await;
    fed.assert_refused(
        &mut a,
        &r,
        502,
        "Signing in with Corp SSO did not work",
        &jo_up,
    )
    .await;
    let described = q.get("error_description").map_or("access_denied", |d| d);
    assert!(
        r.body.contains(&format!("Corp SSO answered: {described}")),
        "the page names the upstream's answer: {}",
        r.what()
    );
    let e = audited(&fed.down, "federation.refused", |e| {
        after(e)["reason"] == "upstream error access_denied"
    })
    .await;
    assert!(e.is_some(), "the upstream's error is audited");

    // ... with a description that is markup: shown as text
    let mut a = fed.down_browser();
    let start = a.get(&format!("/federation/{CORP}/start")).await;
    assert_eq!(start.status, 303);
    let state = params_of(start.location())["state"].clone();
    let script = "<script>alert(document.cookie)</script>";
    let forged = format!(
        "{cb}?{}",
        form(&[
            ("error", "access_denied"),
            ("error_description", script),
            ("state", &state),
            ("iss", &fed.up_issuer),
        ])
    );
    let r = a.get(&forged).await;
    assert_eq!(r.status, 502, "{}", r.what());
    assert!(!r.body.contains(script), "escaped: {}", r.body);
    assert!(!r.body.contains("<script>"), "escaped: {}", r.body);
    assert!(
        r.body.contains("&lt;script&gt;alert(document.cookie)&lt;"),
        "shown as text: {}",
        r.body
    );
    a.assert_signed_out().await;
    fed.stop().await;
}

// ---------------------------------------------------------------------------
// 5. the account page

#[tokio::test]
async fn the_account_page_links_and_unlinks_while_a_way_to_sign_in_remains() {
    let fed = Fed::new().await;
    let dana = ("dana@acme.test", "dana downstream password");
    let dana_id = fed.downstream_user(dana.0, Some(dana.1), true).await;
    let dan = ("dan@corp.test", "dan upstream password");
    let dan_up = fed.upstream_user(dan.0, dan.1).await;

    let mut b = fed.down_browser();
    let r = b.password_login(dana).await;
    assert_eq!(r.status, 200, "signed in with the password: {}", r.what());
    let page = b.get("/account").await;
    assert_eq!(page.status, 200, "{}", page.what());
    let html = unescape(&page.body);
    assert!(html.contains("Link another provider"), "{html}");
    assert!(
        html.contains(&format!(r#"action="/federation/{CORP}/start""#)),
        "a link form: {html}"
    );
    let csrf = page.input("csrf_token").expect("csrf_token");
    assert!(html.contains("None yet."), "nothing linked yet: {html}");

    // linking is a form with a CSRF token, not a link a page could make one follow
    let r = b.get(&format!("/federation/{CORP}/start?link=1")).await;
    assert_eq!(r.status, 400, "GET ?link=1 does not link: {}", r.what());
    assert_eq!(r.title(), "Link providers from your account page");
    let r = b.post(&format!("/federation/{CORP}/start"), &[]).await;
    assert_eq!(r.status, 403, "no CSRF token: {}", r.what());
    let r = b
        .post(
            &format!("/federation/{CORP}/start"),
            &[("csrf_token", "forged")],
        )
        .await;
    assert_eq!(r.status, 403, "a wrong CSRF token: {}", r.what());
    let mut signed_out = fed.down_browser();
    let r = signed_out.get("/login").await;
    let other_csrf = r.input("csrf_token").expect("csrf");
    let r = signed_out
        .post(
            &format!("/federation/{CORP}/start"),
            &[("csrf_token", &other_csrf)],
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (303, "/login"),
        "linking needs a session: {}",
        r.what()
    );

    // linked through the upstream, back on the account page
    let mut up = fed.up_browser();
    let r = b
        .post(
            &format!("/federation/{CORP}/start"),
            &[("csrf_token", &csrf)],
        )
        .await;
    let url = fed.upstream_side(&b, &mut up, r, dan, "allow").await;
    let r = b.get(&url).await;
    assert_eq!(
        (r.status, r.location()),
        (303, "/account?done=linked"),
        "{}",
        r.what()
    );
    let page = b.follow(&r).await;
    assert_eq!(page.status, 200);
    let html = unescape(&page.body);
    assert!(html.contains("The provider is linked"), "{html}");
    assert!(html.contains("Corp SSO"), "{html}");
    assert!(html.contains(dan.0), "the identity's address: {html}");
    assert_eq!(fed.linked(&dan_up).await, Some(dana_id.clone()));
    let e = audited(&fed.down, "federation.link", |e| {
        after(e)["subject"] == dan_up.as_str()
    })
    .await
    .expect("federation.link audited");
    assert_eq!(after(&e)["matched_by"], "account");
    assert_eq!(b.signed_in_as().await, dana.0, "still dana's session");

    // the linked identity signs in as dana now
    let (mut d2, mut u2) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut d2, &mut u2, CORP, dan).await;
    assert_eq!(r.status, 200, "{}", r.what());
    assert_eq!(d2.signed_in_as().await, dana.0);

    // unlinking: CSRF required, then it goes (dana has a password)
    let page = b.get("/account").await;
    let csrf = page.input("csrf_token").expect("csrf_token");
    let issuer = page.input("issuer").expect("issuer");
    let subject = page.input("subject").expect("subject");
    assert_eq!(
        (issuer.as_str(), subject.as_str()),
        (fed.up_issuer.as_str(), dan_up.as_str())
    );
    let r = b
        .post(
            "/account/unlink",
            &[("issuer", &issuer), ("subject", &subject)],
        )
        .await;
    assert_eq!(r.status, 403, "no CSRF token: {}", r.what());
    assert_eq!(fed.linked(&dan_up).await, Some(dana_id.clone()), "kept");
    let r = b
        .post(
            "/account/unlink",
            &[
                ("csrf_token", &csrf),
                ("issuer", &issuer),
                ("subject", "somebody else"),
            ],
        )
        .await;
    assert_eq!(r.status, 404, "not linked to this account: {}", r.what());
    let r = b
        .post(
            "/account/unlink",
            &[
                ("csrf_token", &csrf),
                ("issuer", &issuer),
                ("subject", &subject),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (303, "/account?done=unlinked"),
        "{}",
        r.what()
    );
    assert_eq!(fed.linked(&dan_up).await, None, "unlinked");
    let page = b.follow(&r).await;
    assert!(unescape(&page.body).contains("The provider is unlinked"));
    assert!(
        audited(&fed.down, "federation.unlink", |e| after(e)["subject"]
            == dan_up.as_str())
        .await
        .is_some()
    );

    // an account provisioned by a login has no password: its only identity stays
    let pia = ("pia@corp.test", "pia upstream password");
    let pia_up = fed.upstream_user(pia.0, pia.1).await;
    let (mut p, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut p, &mut up, CORP, pia).await;
    assert_eq!(r.status, 200, "provisioned: {}", r.what());
    let pia_id = fed.linked(&pia_up).await.expect("provisioned and linked");
    let page = p.get("/account").await;
    assert_eq!(page.status, 200);
    let html = unescape(&page.body);
    assert!(html.contains("your only way to sign in"), "{html}");
    assert!(
        !html.contains(r#"action="/account/unlink""#),
        "no unlink form: {html}"
    );
    let csrf = page.input("csrf_token").expect("csrf_token");
    let r = p
        .post(
            "/account/unlink",
            &[
                ("csrf_token", &csrf),
                ("issuer", &fed.up_issuer),
                ("subject", &pia_up),
            ],
        )
        .await;
    assert_eq!(r.status, 409, "the last way to sign in: {}", r.what());
    assert!(
        unescape(&r.body).contains("only way to sign in"),
        "says why: {}",
        r.what()
    );
    assert_eq!(fed.linked(&pia_up).await, Some(pia_id), "still linked");

    // an identity linked to another account cannot be linked to dana's
    let page = b.get("/account").await;
    let csrf = page.input("csrf_token").expect("csrf_token");
    let r = b
        .post(
            &format!("/federation/{CORP}/start"),
            &[("csrf_token", &csrf)],
        )
        .await;
    let mut up = fed.up_browser();
    let url = fed.upstream_side(&b, &mut up, r, pia, "allow").await;
    let r = b.get(&url).await;
    assert_eq!(r.status, 409, "{}", r.what());
    assert_eq!(r.title(), "This identity belongs to another account");
    assert_ne!(fed.linked(&pia_up).await, Some(dana_id));
    fed.stop().await;
}

// ---------------------------------------------------------------------------
// 6. a provider that cannot be reached

const LEGACY: &str = "legacy";

/// A downstream whose provider [`LEGACY`] is at `port`, where nothing listens.
async fn with_unreachable(port: u16) -> TestServer {
    let issuer = format!("http://127.0.0.1:{port}");
    let down = TestServer::start_with(|c| {
        c.federation_refresh_secs = 5;
        c.federation.providers = vec![provider(
            LEGACY,
            "Legacy SSO",
            &issuer,
            ("legacy-client", "legacy secret"),
            true,
            true,
        )];
    })
    .await;
    bootstrap(&down).await;
    assert!(
        provider_state(&down, LEGACY, false, Duration::from_secs(5)).await,
        "the first discovery failed"
    );
    down
}

#[tokio::test]
async fn an_unreachable_provider_is_a_disabled_button_and_passwords_still_work() {
    support::init();
    let down = with_unreachable(support::free_port()).await;
    let mut b = Browser::new(&down.base);
    let page = b.get("/login").await;
    assert_eq!(
        page.status,
        200,
        "the login page still works: {}",
        page.what()
    );
    assert!(
        page.body.contains(&format!("data-provider=\"{LEGACY}\"")),
        "{}",
        page.body
    );
    assert_eq!(
        provider_href(&page.body, LEGACY),
        None,
        "no link: {}",
        page.body
    );
    assert!(page.body.contains(r#"aria-disabled="true""#));
    assert!(
        page.body.contains("Legacy SSO is unavailable right now"),
        "{}",
        page.body
    );
    let r = b.get(&format!("/federation/{LEGACY}/start")).await;
    assert_eq!(r.status, 503, "{}", r.what());
    assert_eq!(r.title(), "Legacy SSO is unavailable right now");
    assert!(
        b.cookie("gatehouse_federation").is_none(),
        "no flow started"
    );

    // the password form on the same page
    let r = b.password_login(OWNER).await;
    assert_eq!(r.status, 200, "{}", r.what());
    assert_eq!(b.signed_in_as().await, OWNER.0);

    // the admin API says why
    let token = owner_token(&down.base).await;
    let a = api(
        &down.base,
        &token,
        Method::GET,
        &format!("/identity-providers/{LEGACY}"),
        None,
    )
    .await;
    let body = a.ok(200);
    assert_eq!(body["available"], false, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert!(!a.text.contains("legacy secret"));
    down.stop().await;
}

/// Slow (about 15 s): an unreachable provider is retried after `federation::RETRY`
/// whatever `federation_refresh_secs` says.
#[tokio::test]
async fn a_provider_that_comes_up_is_used_after_the_retry() {
    support::init();
    let port = support::free_port();
    let down = with_unreachable(port).await;
    let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await else {
        eprintln!("SKIPPED: port {port} was taken in the meantime");
        down.stop().await;
        return;
    };
    let up = TestServer::start_on(listener, |_| {}).await;
    assert_eq!(up.base, format!("http://127.0.0.1:{port}"));
    let retry = gatehouse::federation::RETRY + Duration::from_secs(5);
    assert!(
        provider_state(&down, LEGACY, true, retry).await,
        "available within {retry:?}: {:?}",
        down.state
            .upstreams
            .get(LEGACY)
            .and_then(|u| u.error.clone())
    );
    let mut b = Browser::new(&down.base);
    let page = b.get("/login").await;
    assert_eq!(
        provider_href(&page.body, LEGACY).as_deref(),
        Some("/federation/legacy/start"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("is unavailable right now"));
    let r = b.get(&format!("/federation/{LEGACY}/start")).await;
    assert_eq!(r.status, 303, "{}", r.what());
    assert!(
        r.location()
            .starts_with(&format!("{}/oauth2/authorize?", up.base)),
        "{}",
        r.location()
    );
    down.stop().await;
    up.stop().await;
}

// ---------------------------------------------------------------------------
// 7. claim mappings, with gatehouse's `roles` claim as the groups claim

/// gatehouse puts no groups claim in its ID tokens, but its userinfo answers with
/// `roles` (`<role>@<scope>` strings) when the `roles` scope is granted: the
/// provider [`GROUPS`] maps `viewer@orgs/acme/*` onto the downstream group
/// `orgs/acme/groups/eng`. The ID token lacks the claim, so this also exercises
/// the userinfo fallback.
#[tokio::test]
async fn an_upstream_role_maps_onto_a_downstream_group_and_its_loss_unmaps_it() {
    let fed = Fed::new().await;
    let group = fed
        .down_api(
            Method::POST,
            "/orgs/acme/groups",
            Some(json!({ "slug": "eng", "display_name": "Engineering" })),
        )
        .await;
    let group_id = group.ok(201)["id"].as_str().expect("id").to_owned();
    let lin = ("lin@corp.test", "lin upstream password");
    let lin_up = fed.upstream_user(lin.0, lin.1).await;

    // lin is a viewer of orgs/acme upstream
    let policy = fed
        .up_api(Method::GET, "/orgs/acme/policy", None)
        .await
        .ok(200)
        .clone();
    let mut bindings = policy["bindings"].as_array().expect("bindings").clone();
    let original = bindings.clone();
    bindings.push(json!({ "role": "viewer", "members": [format!("user:{}", lin.0)] }));
    let written = fed
        .up_api(
            Method::PUT,
            "/orgs/acme/policy",
            Some(json!({ "etag": policy["etag"], "bindings": bindings })),
        )
        .await;
    let etag = written.ok(200)["etag"].clone();
    settle(&fed.up).await;

    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up, GROUPS, lin).await;
    assert_eq!(r.status, 200, "{}", r.what());
    let lin_id = fed.linked(&lin_up).await.expect("provisioned");
    let member = PrincipalRef::user(lin_id.clone());
    let source = gatehouse::store::federation::mapping_source(GROUPS);
    let mapped = fed
        .down
        .state
        .store
        .mapped_groups(&member, &source)
        .await
        .expect("store");
    assert_eq!(mapped, vec![group_id.clone()], "a mapped member of eng");
    let e = audited(&fed.down, "login.success", |e| {
        e.actor == format!("user:{lin_id}")
    })
    .await
    .expect("login.success");
    assert_eq!(
        after(&e)["groups"],
        json!([format!("+{ENG}")]),
        "{:?}",
        e.after
    );
    let e = audited(&fed.down, "group.member.add", |e| e.target == ENG)
        .await
        .expect("group.member.add audited");
    assert_eq!(e.actor, format!("system:federation/{GROUPS}"));

    // the role is gone upstream: the next login ends the mapped membership
    fed.up_api(
        Method::PUT,
        "/orgs/acme/policy",
        Some(json!({ "etag": etag, "bindings": original })),
    )
    .await
    .ok(200);
    settle(&fed.up).await;
    let (mut down, mut up) = (fed.down_browser(), fed.up_browser());
    let r = fed.login_via(&mut down, &mut up, GROUPS, lin).await;
    assert_eq!(r.status, 200, "{}", r.what());
    let mapped = fed
        .down
        .state
        .store
        .mapped_groups(&member, &source)
        .await
        .expect("store");
    assert!(mapped.is_empty(), "unmapped: {mapped:?}");
    let e = audited(&fed.down, "group.member.remove", |e| e.target == ENG)
        .await
        .expect("group.member.remove audited");
    assert_eq!(e.actor, format!("system:federation/{GROUPS}"));
    fed.stop().await;
}
