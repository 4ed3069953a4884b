//! The admin API under `/v1` as a client sees it (DESIGN.md section 3): bearer
//! access tokens for the admin API and nothing else, one permission per route
//! checked before the body is looked at, resources by name, policies with etags,
//! `/v1/check` and `/v1/{name}/access`, and every error an RFC 9457 problem with a
//! stable `type`. Every request goes through [`send`], which fails on any 5xx.

use std::collections::HashSet;

use base64::Engine;
use gatehouse::access::policy::PolicyBinding;
use gatehouse::access::principals::{self, Change};
use gatehouse::admin::routes::ROUTES;
use gatehouse::iam::evaluator::PrincipalRef;
use gatehouse::iam::names::{self, Kind};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::policies::{World, binding};
use crate::support::{self, client, form, input_value, jwt_claims, secret};

const PROBLEM: &str = "application/problem+json";

/// A service account with a secret.
struct Sa {
    id: String,
    client_id: String,
    secret: String,
    name: String,
}

impl Sa {
    fn member(&self) -> String {
        format!("serviceAccount:{}", self.client_id)
    }

    fn basic(&self) -> String {
        support::basic(&self.client_id, &self.secret)
    }
}

/// A server with `orgs/acme` (owned by `owner@acme.test`, an instance owner),
/// `orgs/acme/projects/backend`, `orgs/other`, and two service accounts of
/// `orgs/acme`: `admin`, owner of `orgs/acme` and of the instance, and `nobody`,
/// bound to nothing. Each has an admin API token.
struct Env {
    w: World,
    /// One client for the whole test (building one loads the system's roots).
    http: reqwest::Client,
    admin: Sa,
    admin_token: String,
    nobody: Sa,
    nobody_token: String,
}

/// One answer.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
    text: String,
    what: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem of `kind` with `status`.
    #[track_caller]
    fn problem(&self, status: u16, kind: &str) -> &Answer {
        assert_eq!(
            self.status, status,
            "{}: want {status} {kind}, got {}",
            self.what, self.text
        );
        assert_eq!(
            self.header("content-type"),
            PROBLEM,
            "{}: {}",
            self.what,
            self.text
        );
        assert_eq!(
            self.body["type"],
            format!("urn:gatehouse:problem:{kind}"),
            "{}: {}",
            self.what,
            self.text
        );
        assert_eq!(self.body["status"], status, "{}", self.what);
        assert!(self.body["title"].is_string(), "{}", self.what);
        assert!(self.body["detail"].is_string(), "{}", self.what);
        self
    }

    /// Asserts a 400 validation problem naming `field`.
    #[track_caller]
    fn invalid(&self, field: &str) -> &Answer {
        self.problem(400, "validation");
        assert_eq!(self.body["field"], field, "{}: {}", self.what, self.text);
        self
    }

    /// Asserts a 401 with the Bearer challenge.
    #[track_caller]
    fn unauthenticated(&self) -> &Answer {
        self.problem(401, "unauthenticated");
        assert!(
            self.header("www-authenticate").starts_with("Bearer"),
            "{}: {:?}",
            self.what,
            self.headers
        );
        self
    }

    #[track_caller]
    fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}: {}", self.what, self.text);
        &self.body
    }
}

/// Sends a request; no request of this module may get a 5xx.
async fn send(req: reqwest::RequestBuilder) -> Answer {
    let (http, req) = req.build_split();
    let req = req.expect("request");
    let what = format!("{} {}", req.method(), req.url().path());
    let r = http.execute(req).await.expect("send");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    assert!(status < 500, "{what} answered {status}: {text}");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
        what,
    }
}

impl Env {
    async fn new(adjust: impl FnOnce(&mut gatehouse::config::Config)) -> Env {
        let w = World::new(adjust).await;
        let admin = service_account(&w, "admin").await;
        let nobody = service_account(&w, "nobody").await;
        for scope in ["orgs/acme", "*"] {
            let p = w.get(&w.owner, scope).await.expect("read");
            let mut bindings = p.bindings.clone();
            let owner = bindings
                .iter_mut()
                .find(|b| b.role == "owner")
                .expect("owner binding");
            owner.members.push(admin.member());
            set_policy(&w, scope, &p.etag, &bindings).await;
        }
        let admin_token = token_of(&w, &admin, "").await;
        let nobody_token = token_of(&w, &nobody, "").await;
        Env {
            w,
            http: client(),
            admin,
            admin_token,
            nobody,
            nobody_token,
        }
    }

    fn base(&self) -> &str {
        &self.w.s.base
    }

    fn admin_api(&self) -> String {
        format!("{}/v1", self.base())
    }

    /// A request to `path` (from `/v1`) with `token` as bearer, if any.
    fn req(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base()));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn as_admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let r = self.req(method, path, Some(&self.admin_token));
        send(match body {
            Some(b) => r.json(&b),
            None => r,
        })
        .await
    }

    async fn get(&self, path: &str) -> Answer {
        self.as_admin(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.as_admin(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        self.as_admin(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.as_admin(Method::DELETE, path, None).await
    }

    /// A raw body with an optional content type.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut r = self.req(method, path, Some(&self.admin_token)).body(body);
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        send(r).await
    }
}

/// Creates a service account of `orgs/acme` with one secret.
async fn service_account(w: &World, slug: &str) -> Sa {
    let v = w.view();
    let ctx = w.ctx(&v);
    let sa = gatehouse::access::accounts::create_service_account(
        &ctx,
        &w.owner,
        "orgs/acme",
        slug,
        slug,
        "",
    )
    .await
    .expect("service account");
    let minted =
        gatehouse::access::accounts::mint_secret(&ctx, &w.s.state.kek, &w.owner, &sa.name, None)
            .await
            .expect("secret");
    settle(w).await;
    let row =
        w.s.state
            .store
            .service_account_by_client_id(&sa.client_id)
            .await
            .expect("read")
            .expect("exists");
    Sa {
        id: row.id,
        client_id: sa.client_id,
        secret: minted.client_secret,
        name: sa.name,
    }
}

/// Waits until this node's view reflects every committed change. The node's own
/// follower is the only one that reloads here: a second, concurrent reload (like
/// `World::reload`) can finish last with an older view, which `sync::reload` stores
/// anyway and which then sticks, because `applied_seq` already moved past it.
async fn settle(w: &World) {
    let want = w.s.state.store.current_seq().await.expect("seq");
    for _ in 0..1000 {
        if w.view().as_ref().as_ref().is_some_and(|v| v.seq >= want) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the view did not reach change {want}");
}

/// Writes a policy through the access layer as the owner, then waits for the view.
async fn set_policy(w: &World, scope: &str, etag: &str, bindings: &[PolicyBinding]) {
    {
        let v = w.view();
        let ctx = w.ctx(&v);
        gatehouse::access::policy::set(&ctx, &w.owner, scope, etag, bindings)
            .await
            .expect("policy");
    }
    settle(w).await;
}

/// A client-credentials token of `sa`; `extra` is appended to the form.
async fn token_of(w: &World, sa: &Sa, extra: &str) -> String {
    let r = client()
        .post(format!("{}/oauth2/token", w.s.base))
        .header("authorization", sa.basic())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials{extra}"))
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "token: {body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// `token`'s header and claims signed again with a key this server never had.
fn resigned_elsewhere(token: &str) -> String {
    let key =
        gatehouse::crypto::keyring::generate(gatehouse::config::SigningAlg::RS256).expect("key");
    let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&key.pkcs8).expect("pkcs8");
    let signed = token.rsplit_once('.').expect("jws").0;
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    format!(
        "{signed}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    )
}

/// Logs the owner in through the login form; the cookies of the signed-in browser.
async fn browser_session(env: &Env) -> String {
    let page = send(env.http.get(format!("{}/login", env.base()))).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let csrf_cookie = set_cookie(&page, "gatehouse_csrf").expect("csrf cookie");
    let csrf = input_value(&page.text, "csrf_token").expect("csrf_token");
    let form = form(&[
        ("csrf_token", &csrf),
        ("email", "owner@acme.test"),
        ("password", "owner password"),
    ]);
    let r = send(
        env.http
            .post(format!("{}/login", env.base()))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("gatehouse_csrf={csrf_cookie}"))
            .body(form),
    )
    .await;
    let session = set_cookie(&r, "gatehouse_session")
        .unwrap_or_else(|| panic!("login gave no session: {} {}", r.status, r.text));
    format!("gatehouse_session={session}; gatehouse_csrf={csrf_cookie}")
}

fn set_cookie(a: &Answer, name: &str) -> Option<String> {
    a.headers.get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let pair = v.split(';').next()?;
        let (n, value) = pair.split_once('=')?;
        (n.trim() == name && !value.is_empty()).then(|| value.to_owned())
    })
}

async fn authentication(env: Env) {
    let w = &env.w;
    let probe = "/v1/orgs/acme";
    // the admin's token works: everything below fails for its own reason
    env.get(probe).await.ok(200);

    // no Authorization at all
    let a = send(env.req(Method::GET, probe, None)).await;
    a.unauthenticated();
    assert!(a.body.get("field").is_none());
    // not a bearer token
    send(
        env.req(Method::GET, probe, None)
            .header("authorization", env.admin.basic()),
    )
    .await
    .unauthenticated();
    send(
        env.req(Method::GET, probe, None)
            .header("authorization", "Bearer"),
    )
    .await
    .unauthenticated();
    send(
        env.req(Method::GET, probe, None)
            .header("authorization", "Bearer "),
    )
    .await
    .unauthenticated();
    // unknown routes and writes say nothing to strangers either
    send(env.req(Method::GET, "/v1/nope", None))
        .await
        .unauthenticated();
    send(
        env.req(Method::POST, "/v1/orgs", None)
            .json(&json!({ "slug": "sneaky", "display_name": "Sneaky" })),
    )
    .await
    .unauthenticated();

    // a browser session is not a credential of the admin API
    let cookies = browser_session(&env).await;
    send(env.req(Method::GET, probe, None).header("cookie", &cookies))
        .await
        .unauthenticated();
    send(
        env.req(Method::POST, "/v1/orgs", None)
            .header("cookie", &cookies)
            .json(&json!({ "slug": "from-a-browser", "display_name": "x" })),
    )
    .await
    .unauthenticated();

    // garbage
    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        send(env.req(Method::GET, probe, Some(garbage)))
            .await
            .unauthenticated();
    }

    // a token of this server for another registered API
    {
        let v = w.view();
        let ctx = w.ctx(&v);
        gatehouse::access::definitions::register_api(
            &ctx,
            &w.owner,
            &w.s.state.issuer,
            "https://storage.example",
            "Storage",
            &[],
        )
        .await
        .expect("register api");
    }
    settle(w).await;
    let storage = token_of(w, &env.admin, "&resource=https%3A%2F%2Fstorage.example").await;
    assert_eq!(jwt_claims(&storage)["aud"], "https://storage.example");
    send(env.req(Method::GET, probe, Some(&storage)))
        .await
        .unauthenticated();

    // an ID token, even one naming the admin API as its audience
    let owner_id = w.owner.principal.id.clone();
    let now = gatehouse::now_unix();
    let ring = w.s.state.keys.load();
    let admin_api = env.admin_api();
    for aud in ["gatehouse-admin", admin_api.as_str()] {
        let id_token = gatehouse::oidc::id_token::sign(
            &ring,
            now,
            &gatehouse::oidc::id_token::IdClaims {
                iss: &w.s.state.issuer,
                sub: &owner_id,
                aud,
                azp: "gatehouse-admin",
                iat: now,
                exp: now + 300,
                auth_time: now,
                nonce: None,
                sid: None,
                at_hash: None,
                amr: &["pwd"],
                email: Some("owner@acme.test"),
                email_verified: Some(true),
                name: None,
            },
        )
        .expect("id token");
        send(env.req(Method::GET, probe, Some(&id_token)))
            .await
            .unauthenticated();
    }

    // an access token for the admin API, signed here, for the owner (a user): works;
    // the same token expired, or signed by another key, does not
    let token_for = |sub: &str, iat: i64, exp: i64| {
        gatehouse::oauth2::access_token::sign(
            &ring,
            now,
            &mut gatehouse::oauth2::access_token::Claims {
                iss: &w.s.state.issuer,
                sub,
                aud: &admin_api,
                client_id: "gatehouse-admin",
                scope: "openid",
                jti: gatehouse::oauth2::access_token::new_jti(),
                iat,
                exp,
                roles: None,
            },
        )
        .expect("sign")
    };
    let user_token = |iat: i64, exp: i64| token_for(&owner_id, iat, exp);
    send(env.req(Method::GET, probe, Some(&user_token(now, now + 300))))
        .await
        .ok(200);
    send(env.req(Method::GET, probe, Some(&user_token(now - 700, now - 5))))
        .await
        .unauthenticated();
    for token in [&env.admin_token, &user_token(now, now + 300)] {
        let forged = resigned_elsewhere(token);
        assert_eq!(jwt_claims(&forged), jwt_claims(token));
        send(env.req(Method::GET, probe, Some(&forged)))
            .await
            .unauthenticated();
    }
    // the scheme is case-insensitive
    send(env.req(Method::GET, probe, None).header(
        "authorization",
        format!("bearer {}", user_token(now, now + 300)),
    ))
    .await
    .ok(200);
    // a user who is disabled since is no caller any more
    let alice = w.actor("alice@acme.test").await.principal.id;
    let alice_token = token_for(&alice, now, now + 300);
    send(env.req(Method::GET, probe, Some(&alice_token)))
        .await
        .problem(403, "forbidden");
    drop(ring);
    env.as_admin(
        Method::PATCH,
        &format!("/v1/users/{alice}"),
        Some(json!({ "disabled": true })),
    )
    .await
    .ok(200);
    send(env.req(Method::GET, probe, Some(&alice_token)))
        .await
        .unauthenticated();

    // a revoked access token
    let doomed = token_of(w, &env.admin, "").await;
    send(env.req(Method::GET, probe, Some(&doomed)))
        .await
        .ok(200);
    let r = send(
        env.http
            .post(format!("{}/oauth2/revoke", env.base()))
            .header("authorization", env.admin.basic())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={doomed}&token_type_hint=access_token")),
    )
    .await;
    assert_eq!(r.status, 200, "revoke: {}", r.text);
    send(env.req(Method::GET, probe, Some(&doomed)))
        .await
        .unauthenticated();
    env.get(probe).await.ok(200);

    // a token of a service account disabled since
    let temp = service_account(w, "temp").await;
    let p = w.get(&w.owner, "orgs/acme").await.expect("read");
    let mut bindings = p.bindings.clone();
    bindings.push(binding("viewer", &[&temp.member()]));
    set_policy(w, "orgs/acme", &p.etag, &bindings).await;
    let temp_token = token_of(w, &temp, "").await;
    send(env.req(Method::GET, probe, Some(&temp_token)))
        .await
        .ok(200);
    {
        let v = w.view();
        let ctx = w.ctx(&v);
        principals::change(
            &ctx,
            &w.owner,
            &PrincipalRef::service_account(temp.id.clone()),
            &temp.name,
            Change::Disable,
        )
        .await
        .expect("disable");
    }
    settle(w).await;
    send(env.req(Method::GET, probe, Some(&temp_token)))
        .await
        .unauthenticated();
    env.w.s.stop().await;
}

#[tokio::test]
async fn only_bearer_tokens_for_the_admin_api_of_active_principals_get_in() {
    authentication(Env::new(|_| {}).await).await;
}

#[tokio::test]
async fn only_bearer_tokens_get_in_on_postgres_and_redis() {
    let Some(db) = support::postgres_url().await else {
        return;
    };
    let Some(redis) = support::redis_url() else {
        return;
    };
    authentication(
        Env::new(|c| {
            c.database_url = secret(&db);
            c.redis_url = secret(&redis);
        })
        .await,
    )
    .await;
}

fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Organization => "organizations",
        Kind::Folder => "folders",
        Kind::Project => "projects",
        Kind::Environment => "environments",
    }
}

/// One concrete request for a route of [`ROUTES`].
struct Case {
    path: String,
    /// The body the owner's service account sends.
    body: Option<Value>,
    /// The permission and resource a forbidden caller is told it lacks.
    permission: String,
    resource: String,
    /// Bodies a forbidden caller sends: it must be refused before any is looked at.
    bad_bodies: Vec<(Option<&'static str>, Vec<u8>)>,
}

/// What the walk works on, made before it starts.
struct Fixtures {
    /// A service account of `orgs/acme` with no bindings.
    target: String,
    /// One of its secrets.
    secret_id: String,
    /// A public key for it.
    public_key_pem: String,
    /// A user to rename, and one to delete.
    alice_id: String,
    carol_id: String,
}

/// An Ed25519 public key, as PEM.
fn ed25519_public_pem() -> String {
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate()
        .expect("key")
        .to_pkcs8()
        .expect("pkcs8");
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse");
    let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
        aws_lc_rs::signature::KeyPair::public_key(&pair),
    )
    .expect("der");
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    )
}

/// Builds the concrete request for one entry of [`ROUTES`]: values for the
/// template's placeholders (substituted into the path and into the permission
/// template, so the 403 can be checked against the table itself) and the body the
/// owner's service account sends.
async fn case(env: &Env, fx: &Fixtures, method: &str, template: &str, permission: &str) -> Case {
    let named = |slug: &str| json!({ "slug": slug, "display_name": format!("Walked {slug}") });
    let current = |scope: &'static str| async move {
        let p = env.w.get(&env.w.owner, scope).await.expect("read policy");
        json!({ "etag": p.etag, "bindings": p.bindings })
    };
    let backend = "orgs/acme/projects/backend".to_owned();
    let acme = "orgs/acme".to_owned();
    let sa = fx.target.clone();
    let group = vec![("{org}", "acme".to_owned()), ("{slug}", "ops".to_owned())];
    let with = |mut vars: Vec<(&'static str, String)>, extra: Vec<(&'static str, String)>| {
        vars.extend(extra);
        vars
    };
    let (vars, body): (Vec<(&str, String)>, Option<Value>) = match (method, template) {
        ("POST", "/v1/orgs") => (vec![], Some(named("walked"))),
        ("POST", "/v1/{parent}/folders") => (vec![("{parent}", acme)], Some(named("walked-f"))),
        ("POST", "/v1/{parent}/projects") => (vec![("{parent}", acme)], Some(named("walked-p"))),
        ("POST", "/v1/{parent}/envs") => (vec![("{parent}", backend)], Some(named("walked-e"))),
        ("GET", "/v1/{name}") => (vec![("{name}", backend)], None),
        ("PATCH", "/v1/{name}") => (
            vec![("{name}", backend)],
            Some(json!({ "display_name": "Backend, walked" })),
        ),
        ("GET", "/v1/orgs") => (vec![], None),
        ("GET", "/v1/{parent}/folders") | ("GET", "/v1/{parent}/projects") => {
            (vec![("{parent}", acme)], None)
        }
        ("GET", "/v1/{parent}/envs") => (vec![("{parent}", backend)], None),
        ("GET", "/v1/roles") => (vec![], None),
        ("GET", "/v1/orgs/{org}/roles") => (vec![("{org}", "acme".to_owned())], None),
        ("POST", "/v1/orgs/{org}/roles") => (
            vec![("{org}", "acme".to_owned())],
            Some(json!({
                "slug": "walked-r",
                "description": "Reads projects",
                "permissions": ["resourcemanager.projects.get"],
            })),
        ),
        ("POST", "/v1/{parent}/clients") => (
            vec![("{parent}", acme)],
            Some(json!({
                "display_name": "Walked app",
                "redirect_uris": ["https://app.example/callback"],
                "public": false,
            })),
        ),
        ("DELETE", "/v1/{name}") => (
            vec![("{name}", "orgs/acme/projects/doomed".to_owned())],
            None,
        ),
        ("GET", "/v1/policy") => (vec![], None),
        ("PUT", "/v1/policy") => (vec![], Some(current("*").await)),
        ("GET", "/v1/{name}/policy") => (vec![("{name}", acme)], None),
        ("PUT", "/v1/{name}/policy") => (vec![("{name}", acme)], Some(current("orgs/acme").await)),
        ("GET", "/v1/{name}/access") => (vec![("{name}", backend)], None),
        ("POST", "/v1/check") => (
            vec![],
            Some(json!({
                "principal": env.admin.member(),
                "permission": "resourcemanager.projects.get",
                "resource": backend,
            })),
        ),
        ("POST", "/v1/users") => (
            vec![],
            Some(json!({ "email": "walked@acme.test", "display_name": "Walked" })),
        ),
        ("POST", "/v1/{parent}/service-accounts") => {
            (vec![("{parent}", acme)], Some(named("walked-sa")))
        }
        ("POST", "/v1/{service account}/secrets") => {
            (vec![("{service account}", sa)], Some(json!({})))
        }
        ("DELETE", "/v1/{service account}/secrets/{id}") => (
            vec![("{service account}", sa), ("{id}", fx.secret_id.clone())],
            None,
        ),
        ("POST", "/v1/{service account}/keys") => (
            vec![("{service account}", sa)],
            Some(json!({ "public_key_pem": fx.public_key_pem })),
        ),
        ("POST", "/v1/orgs/{org}/invitations") => (
            vec![("{org}", "acme".to_owned())],
            Some(
                json!({ "email": "walked-invitee@acme.test", "role": "viewer", "scope": "orgs/acme" }),
            ),
        ),
        ("POST", "/v1/orgs/{org}/groups") => {
            (vec![("{org}", "acme".to_owned())], Some(named("walked-g")))
        }
        ("PUT", "/v1/orgs/{org}/groups/{slug}/members/{member}") => (
            with(
                group,
                vec![("{member}", "user:alice%40acme.test".to_owned())],
            ),
            None,
        ),
        ("DELETE", "/v1/orgs/{org}/groups/{slug}/members/{member}") => (
            with(group, vec![("{member}", "user:bob%40acme.test".to_owned())]),
            None,
        ),
        ("GET", "/v1/users?email={email}") => {
            (vec![("{email}", "owner%40acme.test".to_owned())], None)
        }
        ("PATCH", "/v1/users/{id}") => (
            vec![("{id}", fx.alice_id.clone())],
            Some(json!({ "display_name": "Alice Walked" })),
        ),
        ("DELETE", "/v1/users/{id}") => (vec![("{id}", fx.carol_id.clone())], None),
        ("GET", "/v1/audit-events?scope={scope}") => (vec![("{scope}", acme)], None),
        ("GET", "/v1/apis") => (vec![], None),
        ("POST", "/v1/apis") => (
            vec![],
            Some(json!({
                "identifier": "https://walked.example",
                "display_name": "Walked",
                "permissions": [{ "name": "walked.things.read", "description": "Read things" }],
            })),
        ),
        ("GET", "/v1/identity-providers") => (vec![], None),
        ("POST", "/v1/identity-providers") => (
            vec![],
            Some(json!({
                "id": "walked-idp",
                "display_name": "Walked SSO",
                "issuer": "http://127.0.0.1:9",
                "client_id": "gatehouse",
                "client_secret": "walked secret",
            })),
        ),
        ("GET", "/v1/identity-providers/{id}") | ("DELETE", "/v1/identity-providers/{id}") => {
            (vec![("{id}", "walked-idp".to_owned())], None)
        }
        ("PUT", "/v1/identity-providers/{id}") => (
            vec![("{id}", "walked-idp".to_owned())],
            Some(json!({
                "display_name": "Walked SSO, renamed",
                "issuer": "http://127.0.0.1:9",
                "client_id": "gatehouse",
            })),
        ),
        _ => panic!(
            "ROUTES lists {method} {template}, which this walk does not know: add a case for it"
        ),
    };
    let (perm, on) = permission.split_once(" on ").unwrap_or_else(|| {
        panic!("{method} {template}: {permission:?} is not '<perm> on <where>'")
    });
    let mut path = template.to_owned();
    let mut perm = perm.to_owned();
    // "on {scope} (default *)": the resource is the placeholder's value
    let mut resource = on.split(" (").next().unwrap_or(on).to_owned();
    for (var, value) in &vars {
        path = path.replace(var, value);
        resource = resource.replace(var, value);
        if *var == "{name}" {
            let kind = names::parse(value).expect("a resource name").kind;
            perm = perm.replace("{kind}", plural(kind));
        }
    }
    let bad_bodies: Vec<(Option<&'static str>, Vec<u8>)> = if resource == "the body's resource" {
        // the permission applies to the body's resource, so the body must be read;
        // but the principal it names is not looked up for a caller without it
        let body = body.as_ref().expect("check has a body");
        resource = body["resource"].as_str().expect("resource").to_owned();
        ["not a member", "serviceAccount:no-such-client"]
            .iter()
            .map(|principal| {
                let b = json!({ "principal": principal, "permission": body["permission"], "resource": resource });
                (Some("application/json"), b.to_string().into_bytes())
            })
            .collect()
    } else {
        vec![
            (Some("application/json"), b"{\"slug\": ".to_vec()),
            (
                Some("application/json"),
                br#"{"etag": 1, "bindings": 2, "slug": "Not A Slug", "unknown": true}"#.to_vec(),
            ),
            (None, vec![b'x'; gatehouse::admin::BODY_LIMIT + 1]),
        ]
    };
    assert!(
        !path.contains('{') && !resource.contains('{') && !perm.contains('{'),
        "{method} {template}: placeholders left in {path} / {perm} on {resource}"
    );
    Case {
        path,
        body,
        permission: perm,
        resource,
        bad_bodies,
    }
}

#[tokio::test]
async fn every_route_is_guarded_by_its_one_permission() {
    let env = Env::new(|_| {}).await;
    let w = &env.w;
    let fx = {
        let v = w.view();
        let ctx = w.ctx(&v);
        gatehouse::access::resources::create(
            &ctx,
            &w.owner,
            Some("orgs/acme"),
            Kind::Project,
            "doomed",
            "Doomed",
        )
        .await
        .expect("project");
        let target = gatehouse::access::accounts::create_service_account(
            &ctx,
            &w.owner,
            "orgs/acme",
            "target",
            "Target",
            "",
        )
        .await
        .expect("service account");
        let minted = gatehouse::access::accounts::mint_secret(
            &ctx,
            &w.s.state.kek,
            &w.owner,
            &target.name,
            None,
        )
        .await
        .expect("secret");
        gatehouse::access::groups::add_member(
            &ctx,
            &w.owner,
            "orgs/acme/groups/ops",
            "user:bob@acme.test",
        )
        .await
        .expect("member");
        Fixtures {
            target: target.name,
            secret_id: minted.id,
            public_key_pem: ed25519_public_pem(),
            alice_id: w.actor("alice@acme.test").await.principal.id,
            carol_id: w.actor("carol@acme.test").await.principal.id,
        }
    };
    settle(w).await;
    let mut exercised = HashSet::new();
    for (method, template, permission) in ROUTES {
        let c = case(&env, &fx, method, template, permission).await;
        let m: Method = method.parse().expect("method");
        // a caller holding no role is refused with the permission named, whatever
        // it sends
        for (content_type, bad) in &c.bad_bodies {
            let mut r = env
                .req(m.clone(), &c.path, Some(&env.nobody_token))
                .body(bad.clone());
            if let Some(ct) = content_type {
                r = r.header("content-type", *ct);
            }
            let a = send(r).await;
            a.problem(403, "forbidden");
            assert_eq!(
                (&a.body["permission"], &a.body["resource"]),
                (&json!(c.permission), &json!(c.resource)),
                "{method} {template}: {}",
                a.text
            );
            assert!(
                a.body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&c.permission)),
                "{}",
                a.text
            );
        }
        if let Some(body) = &c.body {
            let a = send(
                env.req(m.clone(), &c.path, Some(&env.nobody_token))
                    .json(body),
            )
            .await;
            a.problem(403, "forbidden");
            assert_eq!(a.body["permission"], c.permission, "{}", a.text);
        }
        // the owner's service account succeeds
        let a = env.as_admin(m, &c.path, c.body.clone()).await;
        assert!(
            (200..300).contains(&a.status),
            "{method} {template} as the owner: {} {}",
            a.status,
            a.text
        );
        if *template == "/v1/check" {
            assert_eq!(a.body["allowed"], true, "{}", a.text);
        }
        assert!(
            exercised.insert((*method, *template)),
            "{method} {template} is listed twice"
        );
    }
    assert_eq!(exercised.len(), ROUTES.len(), "every route was walked");
    // what the walk did is real
    env.get("/v1/orgs/walked").await.ok(200);
    env.get("/v1/orgs/acme/projects/backend/envs/walked-e")
        .await
        .ok(200);
    env.get("/v1/orgs/acme/projects/doomed")
        .await
        .problem(404, "not-found");
    // a caller without the permission cannot tell a missing resource from a hidden one
    send(env.req(Method::GET, "/v1/orgs/ghost", Some(&env.nobody_token)))
        .await
        .problem(403, "forbidden");
    env.get("/v1/orgs/ghost").await.problem(404, "not-found");
    env.w.s.stop().await;
}

async fn resources(env: Env) {
    let projects = "/v1/orgs/acme/projects";
    let created = env
        .post(
            projects,
            json!({ "slug": "frontend", "display_name": "Frontend" }),
        )
        .await;
    let body = created.ok(201).clone();
    assert_eq!(body["name"], "orgs/acme/projects/frontend");
    assert_eq!(body["kind"], "project");
    assert_eq!(body["parent"], "orgs/acme");
    assert_eq!(body["slug"], "frontend");
    assert_eq!(body["display_name"], "Frontend");
    assert!(
        created
            .header("content-type")
            .starts_with("application/json"),
        "{:?}",
        created.headers
    );
    let got = env.get("/v1/orgs/acme/projects/frontend").await;
    assert_eq!(got.ok(200), &body, "what was created reads back");

    // a duplicate is the client's mistake, not the server's
    let dup = env
        .post(
            projects,
            json!({ "slug": "frontend", "display_name": "Again" }),
        )
        .await;
    assert!(
        (400..500).contains(&dup.status) && dup.header("content-type") == PROBLEM,
        "duplicate: {} {}",
        dup.status,
        dup.text
    );

    // validation names the field
    for slug in ["Not_A_Slug", "a", "-lead", &"x".repeat(64), ""] {
        env.post(projects, json!({ "slug": slug, "display_name": "x" }))
            .await
            .invalid("slug");
    }
    env.post(projects, json!({ "slug": "blank", "display_name": "  " }))
        .await
        .invalid("display_name");
    env.post(
        projects,
        json!({ "slug": "colored", "display_name": "x", "colour": "red" }),
    )
    .await
    .invalid("colour");
    env.post(projects, json!({ "slug": "half" }))
        .await
        .invalid("display_name");
    env.post(projects, json!({ "display_name": "half" }))
        .await
        .invalid("slug");
    env.post(projects, json!({ "slug": 7, "display_name": "x" }))
        .await
        .problem(400, "validation");
    for malformed in [
        "{\"slug\": ",
        "",
        "null",
        "[]",
        "not json",
        "{\"slug\":\"a\",}",
    ] {
        env.raw(
            Method::POST,
            projects,
            Some("application/json"),
            malformed.to_owned(),
        )
        .await
        .problem(400, "validation");
    }
    // the content type must be JSON
    let good = json!({ "slug": "typed", "display_name": "Typed" }).to_string();
    env.raw(Method::POST, projects, None, good.clone())
        .await
        .problem(415, "unsupported-media-type");
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        env.raw(Method::POST, projects, Some(ct), good.clone())
            .await
            .problem(415, "unsupported-media-type");
    }
    env.raw(
        Method::POST,
        projects,
        Some("application/json; charset=utf-8"),
        good,
    )
    .await
    .ok(201);
    // at most 64 KiB: exactly the limit is read, one byte more is refused
    let limit = gatehouse::admin::BODY_LIMIT;
    let mut at_limit = json!({ "slug": "at-limit", "display_name": "Big" }).to_string();
    at_limit.push_str(&" ".repeat(limit - at_limit.len()));
    assert_eq!(at_limit.len(), limit);
    env.raw(
        Method::POST,
        projects,
        Some("application/json"),
        at_limit.clone(),
    )
    .await
    .ok(201);
    let mut over = json!({ "slug": "over-limit", "display_name": "Big" }).to_string();
    over.push_str(&" ".repeat(limit + 1 - over.len()));
    env.raw(Method::POST, projects, Some("application/json"), over)
        .await
        .problem(413, "payload-too-large");
    env.get("/v1/orgs/acme/projects/over-limit")
        .await
        .problem(404, "not-found");

    // the tree: folders nest projects; a parent must exist
    let folder = env
        .post(
            "/v1/orgs/acme/folders",
            json!({ "slug": "eu", "display_name": "EU" }),
        )
        .await;
    assert_eq!(folder.ok(201)["name"], "orgs/acme/folders/eu");
    let shop = env
        .post(
            "/v1/orgs/acme/folders/eu/projects",
            json!({ "slug": "shop", "display_name": "Shop" }),
        )
        .await;
    assert_eq!(shop.ok(201)["name"], "orgs/acme/folders/eu/projects/shop");
    assert_eq!(shop.body["parent"], "orgs/acme/folders/eu");
    env.post(
        "/v1/orgs/acme/projects/ghost/envs",
        json!({ "slug": "prod", "display_name": "Prod" }),
    )
    .await
    .problem(404, "not-found");
    let misplaced = env
        .post(
            "/v1/orgs/acme/envs",
            json!({ "slug": "prod", "display_name": "Prod" }),
        )
        .await;
    assert!(
        (400..500).contains(&misplaced.status) && misplaced.header("content-type") == PROBLEM,
        "an environment directly under an organization: {} {}",
        misplaced.status,
        misplaced.text
    );

    // delete: 204, then gone; the name stays reserved
    let d = env.delete("/v1/orgs/acme/projects/frontend").await;
    assert_eq!(d.status, 204, "{}", d.text);
    assert!(d.text.is_empty(), "{}", d.text);
    env.get("/v1/orgs/acme/projects/frontend")
        .await
        .problem(404, "not-found");
    env.delete("/v1/orgs/acme/projects/frontend")
        .await
        .problem(404, "not-found");
    let again = env
        .post(
            projects,
            json!({ "slug": "frontend", "display_name": "Reborn" }),
        )
        .await;
    assert!(
        (400..500).contains(&again.status) && again.header("content-type") == PROBLEM,
        "a deleted name is never reused: {} {}",
        again.status,
        again.text
    );
    env.get("/v1/orgs/acme/projects/frontend")
        .await
        .problem(404, "not-found");

    // a resource with children cannot be deleted
    env.post(
        projects,
        json!({ "slug": "parent", "display_name": "Parent" }),
    )
    .await
    .ok(201);
    env.post(
        "/v1/orgs/acme/projects/parent/envs",
        json!({ "slug": "prod", "display_name": "Prod" }),
    )
    .await
    .ok(201);
    env.delete("/v1/orgs/acme/projects/parent")
        .await
        .problem(409, "invariant");
    env.get("/v1/orgs/acme/projects/parent").await.ok(200);
    env.delete("/v1/orgs/acme/folders/eu")
        .await
        .problem(409, "invariant");
    env.delete("/v1/orgs/acme").await.problem(409, "invariant");
    assert_eq!(
        env.delete("/v1/orgs/acme/projects/parent/envs/prod")
            .await
            .status,
        204
    );
    assert_eq!(
        env.delete("/v1/orgs/acme/projects/parent").await.status,
        204
    );
    env.w.s.stop().await;
}

#[tokio::test]
async fn resources_are_created_read_and_deleted_by_name() {
    resources(Env::new(|_| {}).await).await;
}

#[tokio::test]
async fn resources_by_name_on_postgres() {
    let Some(db) = support::postgres_url().await else {
        return;
    };
    resources(Env::new(|c| c.database_url = secret(&db)).await).await;
}

async fn policies(env: Env) {
    let w = &env.w;
    let path = "/v1/orgs/acme/policy";
    let p = env.get(path).await;
    let first = p.ok(200).clone();
    let etag = first["etag"].as_str().expect("etag").to_owned();
    assert!(!etag.is_empty());
    let bindings = first["bindings"].as_array().expect("bindings");
    let owners = bindings
        .iter()
        .find(|b| b["role"] == "owner")
        .expect("owner binding");
    for m in ["user:owner@acme.test".to_owned(), env.admin.member()] {
        assert!(
            owners["members"]
                .as_array()
                .expect("members")
                .contains(&json!(m)),
            "{m}: {first}"
        );
    }

    // write with the current etag: a new etag, and warnings
    let mut more = bindings.clone();
    more.push(json!({ "role": "viewer", "members": ["user:alice@acme.test"] }));
    more.push(json!({ "role": "organization.auditor", "members": ["user:bob@acme.test"] }));
    let written = env
        .put(path, json!({ "etag": etag, "bindings": more }))
        .await;
    let body = written.ok(200).clone();
    let new_etag = body["etag"].as_str().expect("etag").to_owned();
    assert_ne!(new_etag, etag);
    let warnings = body["warnings"].as_array().expect("warnings array");
    assert!(
        warnings
            .iter()
            .any(|x| x["type"] == "urn:gatehouse:warning:deprecated-role"
                && x["role"] == "organization.auditor"),
        "{body}"
    );
    let viewer = body["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .find(|b| b["role"] == "viewer")
        .expect("viewer");
    assert_eq!(viewer["members"], json!(["user:alice@acme.test"]));
    let read = env.get(path).await;
    assert_eq!(read.ok(200)["etag"], new_etag);
    assert_eq!(read.body["bindings"], body["bindings"]);
    assert!(read.body.get("warnings").is_none() || read.body["warnings"].is_array());

    // a stale etag is refused and changes nothing
    env.put(path, json!({ "etag": etag, "bindings": bindings }))
        .await
        .problem(412, "stale-etag");
    assert_eq!(env.get(path).await.ok(200)["etag"], new_etag);

    // the last owner cannot go
    let current = env.get(path).await.body.clone();
    let without_owner: Vec<Value> = current["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .filter(|b| b["role"] != "owner")
        .cloned()
        .collect();
    env.put(path, json!({ "etag": new_etag, "bindings": without_owner }))
        .await
        .problem(409, "invariant");
    env.put(path, json!({ "etag": new_etag, "bindings": [] }))
        .await
        .problem(409, "invariant");
    assert_eq!(env.get(path).await.ok(200)["etag"], new_etag);

    // validation names the field
    let mut unknown_role = current["bindings"].as_array().expect("bindings").clone();
    unknown_role.push(json!({ "role": "nope", "members": ["user:alice@acme.test"] }));
    env.put(path, json!({ "etag": new_etag, "bindings": unknown_role }))
        .await
        .invalid(&format!("bindings[{}].role", unknown_role.len() - 1));
    env.put(path, json!({ "bindings": [] }))
        .await
        .invalid("etag");
    env.put(
        "/v1/orgs/ghost/policy",
        json!({ "etag": "1", "bindings": [] }),
    )
    .await
    .problem(404, "not-found");
    env.get("/v1/orgs/ghost/policy")
        .await
        .problem(404, "not-found");

    // the granting rule: a non-inheriting project.owner cannot grant an inheriting role
    let limited = service_account(w, "limited").await;
    let backend = "orgs/acme/projects/backend";
    let bp = w.get(&w.owner, backend).await.expect("read");
    set_policy(
        w,
        backend,
        &bp.etag,
        &[binding("project.owner", &[&limited.member()])],
    )
    .await;
    let limited_token = token_of(w, &limited, "").await;
    let backend_path = "/v1/orgs/acme/projects/backend/policy";
    let lp = send(env.req(Method::GET, backend_path, Some(&limited_token))).await;
    let lp = lp.ok(200).clone();
    let mut widened = lp["bindings"].as_array().expect("bindings").clone();
    widened.push(json!({ "role": "viewer", "members": ["user:alice@acme.test"] }));
    send(
        env.req(Method::PUT, backend_path, Some(&limited_token))
            .json(&json!({ "etag": lp["etag"], "bindings": widened })),
    )
    .await
    .problem(403, "cannot-grant");
    // and it cannot touch the organization's policy at all
    let a = send(
        env.req(Method::PUT, path, Some(&limited_token))
            .json(&json!({ "etag": new_etag, "bindings": [] })),
    )
    .await;
    a.problem(403, "forbidden");
    assert_eq!(a.body["permission"], "iam.policies.set");

    // the instance root's policy
    let root = env.get("/v1/policy").await;
    let root = root.ok(200).clone();
    assert!(root["etag"].is_string());
    let w2 = env
        .put(
            "/v1/policy",
            json!({ "etag": root["etag"], "bindings": root["bindings"] }),
        )
        .await;
    assert!(w2.ok(200)["warnings"].is_array());
    env.w.s.stop().await;
}

#[tokio::test]
async fn policies_are_written_whole_with_an_etag() {
    policies(Env::new(|_| {}).await).await;
}

#[tokio::test]
async fn policies_with_an_etag_on_postgres() {
    let Some(db) = support::postgres_url().await else {
        return;
    };
    policies(Env::new(|c| c.database_url = secret(&db)).await).await;
}

#[tokio::test]
async fn check_explains_and_access_lists_the_holders() {
    let env = Env::new(|_| {}).await;
    let check = |principal: String, permission: &str, resource: &str| json!({ "principal": principal, "permission": permission, "resource": resource });
    let backend = "orgs/acme/projects/backend";
    let a = env
        .post(
            "/v1/check",
            check(
                env.admin.member(),
                "resourcemanager.projects.create",
                backend,
            ),
        )
        .await;
    let body = a.ok(200).clone();
    assert_eq!(body["allowed"], true, "{body}");
    let granted = body["granted_by"].as_array().expect("granted_by");
    assert!(
        granted
            .iter()
            .any(|g| g["role"] == "owner" && g["scope"] == "orgs/acme"),
        "{body}"
    );
    assert!(
        granted
            .iter()
            .all(|g| g["holder"]["id"] == env.admin.id.as_str()),
        "{body}"
    );
    let owner = env
        .post(
            "/v1/check",
            check("user:Owner@Acme.test".into(), "iam.policies.set", backend),
        )
        .await;
    assert_eq!(owner.ok(200)["allowed"], true, "{}", owner.text);

    // denied: allowed false and no grants
    for (principal, permission, resource) in [
        (env.nobody.member(), "resourcemanager.projects.get", backend),
        (
            "user:alice@acme.test".to_owned(),
            "resourcemanager.projects.get",
            backend,
        ),
        (
            env.admin.member(),
            "no.such.permission",
            "orgs/acme/projects/backend",
        ),
    ] {
        let a = env
            .post("/v1/check", check(principal, permission, resource))
            .await;
        assert_eq!(
            a.ok(200),
            &json!({ "allowed": false, "granted_by": [] }),
            "{}",
            a.text
        );
    }

    // principals: unknown is 404, malformed is 400 naming the field
    for unknown in [
        "serviceAccount:no-such-client",
        "user:ghost@acme.test",
        "group:orgs/acme/groups/none",
    ] {
        env.post(
            "/v1/check",
            check(unknown.into(), "resourcemanager.projects.get", backend),
        )
        .await
        .problem(404, "not-found");
    }
    for malformed in ["robot", "wizard:merlin", "user:", "user:not-an-email", ""] {
        env.post(
            "/v1/check",
            check(malformed.into(), "resourcemanager.projects.get", backend),
        )
        .await
        .invalid("principal");
    }
    env.post(
        "/v1/check",
        json!({ "principal": env.admin.member(), "permission": "iam.policies.get" }),
    )
    .await
    .invalid("resource");
    env.post(
        "/v1/check",
        json!({ "principal": env.admin.member(), "permission": "iam.policies.get", "resource": backend, "why": true }),
    )
    .await
    .invalid("why");

    // access: who holds which role there, inherited ones included
    let a = env.get("/v1/orgs/acme/access").await;
    let body = a.ok(200).clone();
    assert_eq!(body["resource"], "orgs/acme");
    let holders = body["holders"].as_array().expect("holders");
    let holds = |kind: &str, id: &str, scope: &str, inherited: bool| {
        holders.iter().any(|h| {
            h["principal"]["kind"] == kind
                && h["principal"]["id"] == id
                && h["role"] == "owner"
                && h["scope"] == scope
                && h["inherited"] == inherited
        })
    };
    let owner_id = env.w.owner.principal.id.as_str();
    assert!(
        holds("serviceAccount", &env.admin.id, "orgs/acme", false),
        "{body}"
    );
    assert!(holds("user", owner_id, "orgs/acme", false), "{body}");
    assert!(holds("user", owner_id, "*", true), "{body}");
    assert!(
        !holders
            .iter()
            .any(|h| h["principal"]["id"] == env.nobody.id.as_str()),
        "{body}"
    );
    let a = env.get("/v1/orgs/acme/projects/backend/access").await;
    let body = a.ok(200).clone();
    assert!(
        body["holders"]
            .as_array()
            .expect("holders")
            .iter()
            .any(|h| {
                h["principal"]["id"] == env.admin.id.as_str()
                    && h["scope"] == "orgs/acme"
                    && h["inherited"] == true
            }),
        "{body}"
    );
    env.get("/v1/orgs/ghost/access")
        .await
        .problem(404, "not-found");
    env.w.s.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let env = Env::new(|_| {}).await;
    for path in [
        "/v1",
        "/v1/nope",
        "/v1/orgs/acme/nope",
        "/v1/orgs/acme/widgets/x",
        "/v1/orgs//acme",
        "/v1/orgs/ACME",
        "/v1/orgs/acme/projects/backend/policy/extra",
    ] {
        env.get(path).await.problem(404, "not-found");
    }
    for (method, path) in [
        (Method::DELETE, "/v1/orgs"),
        (Method::PATCH, "/v1/policy"),
        (Method::DELETE, "/v1/check"),
        (Method::GET, "/v1/check"),
        (Method::PUT, "/v1/orgs/acme"),
        (Method::DELETE, "/v1/orgs/acme/policy"),
        (Method::POST, "/v1/orgs/acme/access"),
        (Method::PUT, "/v1/orgs/acme/projects"),
        (Method::POST, "/v1/orgs/acme"),
    ] {
        env.as_admin(method, path, None)
            .await
            .problem(405, "method-not-allowed");
    }
    env.w.s.stop().await;
}

#[tokio::test]
async fn method_not_allowed_names_the_allowed_methods() {
    // RFC 9110 section 15.5.6: a 405 response MUST carry Allow.
    let env = Env::new(|_| {}).await;
    for (method, path, allowed) in [
        (Method::DELETE, "/v1/orgs", "GET, POST"),
        (Method::PATCH, "/v1/orgs/acme/policy", "GET, PUT"),
        (Method::GET, "/v1/check", "POST"),
    ] {
        let a = env.as_admin(method.clone(), path, None).await;
        a.problem(405, "method-not-allowed");
        let allow: HashSet<&str> = a.header("allow").split(',').map(str::trim).collect();
        let want: HashSet<&str> = allowed.split(',').map(str::trim).collect();
        assert!(
            want.is_subset(&allow),
            "{method} {path}: Allow is {:?}, want {allowed}",
            a.header("allow")
        );
    }
    env.w.s.stop().await;
}

#[tokio::test]
async fn every_path_under_v1_answers_with_problems() {
    // `/v1/` is under the admin API too (the dispatcher's `/v1/{*path}` route does
    // not match an empty tail, so the router's generic fallback answers instead)
    let env = Env::new(|_| {}).await;
    env.get("/v1/").await.problem(404, "not-found");
    send(env.req(Method::GET, "/v1/", None))
        .await
        .unauthenticated();
    env.w.s.stop().await;
}

#[tokio::test]
async fn bodies_over_the_server_wide_limit_are_problems_too() {
    // the admin API reads at most 64 KiB and says so with a problem; a body over the
    // router's 1 MiB limit should get the same kind of answer, not plain text
    let env = Env::new(|_| {}).await;
    let huge = vec![b' '; 2 * 1024 * 1024];
    let a = env
        .raw(
            Method::POST,
            "/v1/orgs/acme/projects",
            Some("application/json"),
            huge,
        )
        .await;
    a.problem(413, "payload-too-large");
    env.w.s.stop().await;
}
