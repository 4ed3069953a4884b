//! The OpenID provider as a browser and its applications see it, over HTTP:
//! authorize, the login page, consent, the code and refresh grants, ID tokens,
//! userinfo, introspection, revocation and logout, and the attacks on each.
//!
//! Redirects are never followed by the HTTP client: [`Browser`] follows them by
//! hand, keeps cookies from `Set-Cookie` and reads the forms' hidden fields from the
//! HTML, so every step of the flow is asserted on its own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use gatehouse::access::principals::{self, Change};
use gatehouse::iam::evaluator::PrincipalRef;
use gatehouse::store::iam::{self, BindingRow, ClientRow, UserRow};
use serde_json::{Value, json};

use crate::policies::World;
use crate::support::{self, Browser, Pkce, Resp, basic, client, form, params_of, pkce, secret};

const ADMIN: &str = "gatehouse-admin";
const WEBAPP: &str = "webapp";
const WEBAPP_CB: &str = "https://app.example/cb";
const OWNER: (&str, &str) = ("owner@acme.test", "owner password");
const DANA: (&str, &str) = ("dana@acme.test", "dana password");
const UMA: (&str, &str) = ("uma@acme.test", "uma password");
const DAVE: (&str, &str) = ("dave@acme.test", "dave password");

fn authorize_path(pairs: &[(&str, &str)]) -> String {
    format!("/oauth2/authorize?{}", form(pairs))
}

/// A server with the bootstrap's owner and admin client, plus: dana (editor on
/// `orgs/acme/projects/backend`, viewer on `orgs/other`), an unverified and a
/// disabled account, all with passwords, and `webapp`, a confidential third-party
/// client registered under `orgs/acme`.
struct Env {
    w: World,
    /// A loopback redirect URI of the admin client, on a port of its own.
    admin_cb: String,
    webapp_secret: String,
    dana: String,
}

impl Env {
    /// An environment on PostgreSQL and Redis, or `None` when they are not configured
    /// (the suite then says it was skipped).
    async fn on_postgres_and_redis() -> Option<Env> {
        let db = support::postgres_url().await?;
        let redis = support::redis_url()?;
        Some(
            Env::new(|c| {
                c.database_url = secret(&db);
                c.redis_url = secret(&redis);
            })
            .await,
        )
    }

    async fn new(adjust: impl FnOnce(&mut gatehouse::config::Config)) -> Env {
        let w = World::new(adjust).await;
        let st = &w.s.state;
        let webapp_secret = gatehouse::crypto::secret::generate();
        let mut ids = BTreeMap::new();
        let mut tx = st.store.begin().await.expect("begin");
        for ((email, password), verified, disabled) in
            [(DANA, true, false), (UMA, false, false), (DAVE, true, true)]
        {
            let id = uuid::Uuid::new_v4().to_string();
            let hash = gatehouse::crypto::password::hash_blocking(password).expect("hash");
            iam::insert_user(
                &mut tx,
                &UserRow {
                    id: id.clone(),
                    email: email.into(),
                    display_name: format!("{email} name"),
                    password_hash: Some(hash),
                    email_verified: verified,
                    disabled,
                },
            )
            .await
            .expect("user");
            ids.insert(email, id);
        }
        let dana = ids[DANA.0].clone();
        for (scope, role) in [
            ("orgs/acme/projects/backend", "editor"),
            ("orgs/other", "viewer"),
        ] {
            iam::insert_binding(
                &mut tx,
                &BindingRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    scope: scope.into(),
                    role: role.into(),
                    principal_kind: "user".into(),
                    principal_id: dana.clone(),
                    expires_at: None,
                },
            )
            .await
            .expect("binding");
        }
        iam::insert_client(
            &mut tx,
            &ClientRow {
                client_id: WEBAPP.into(),
                parent: "orgs/acme".into(),
                display_name: "Web App".into(),
                redirect_uris: vec![WEBAPP_CB.into()],
                public_client: false,
                first_party: false,
                default_api: None,
                secret_hash: Some(gatehouse::crypto::secret::hash(
                    st.kek.secret_key(),
                    &webapp_secret,
                )),
            },
        )
        .await
        .expect("client");
        gatehouse::store::bump_change(&mut tx, "test", "oidc")
            .await
            .expect("bump");
        tx.commit().await.expect("commit");
        w.reload().await;
        Env {
            w,
            admin_cb: "http://127.0.0.1:53682/callback".into(),
            webapp_secret,
            dana,
        }
    }

    fn base(&self) -> &str {
        &self.w.s.base
    }

    fn browser(&self) -> Browser {
        Browser::new(self.base())
    }

    fn webapp_auth(&self) -> (&str, &str) {
        (WEBAPP, &self.webapp_secret)
    }

    /// A form post to an OAuth endpoint, optionally with HTTP Basic.
    async fn oauth(
        &self,
        path: &str,
        basic_auth: Option<(&str, &str)>,
        pairs: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = client()
            .post(format!("{}{path}", self.base()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
        if let Some((id, s)) = basic_auth {
            req = req.header("authorization", basic(id, s));
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        if path == "/oauth2/token" {
            assert_eq!(r.headers()["cache-control"], "no-store");
        }
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn token(
        &self,
        basic_auth: Option<(&str, &str)>,
        pairs: &[(&str, &str)],
    ) -> (u16, Value) {
        self.oauth("/oauth2/token", basic_auth, pairs).await
    }

    /// An admin-client authorization request for `scope` with PKCE.
    fn admin_path(&self, p: &Pkce, scope: &str, extra: &[(&str, &str)]) -> String {
        let mut pairs = vec![
            ("client_id", ADMIN),
            ("redirect_uri", self.admin_cb.as_str()),
            ("response_type", "code"),
            ("scope", scope),
            ("state", "st"),
            ("code_challenge", p.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        pairs.extend_from_slice(extra);
        authorize_path(&pairs)
    }

    /// A webapp authorization request for `scope`, without PKCE.
    fn webapp_path(&self, scope: &str, extra: &[(&str, &str)]) -> String {
        let mut pairs = vec![
            ("client_id", WEBAPP),
            ("redirect_uri", WEBAPP_CB),
            ("response_type", "code"),
            ("scope", scope),
            ("state", "ws"),
        ];
        pairs.extend_from_slice(extra);
        authorize_path(&pairs)
    }

    /// Exchanges an admin-client code.
    async fn admin_exchange(&self, code: &str, verifier: &str) -> (u16, Value) {
        self.token(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.admin_cb),
                ("client_id", ADMIN),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// Signs in as the owner (or uses the browser's session) and returns a code for
    /// the admin client.
    async fn admin_code(&self, b: &mut Browser, p: &Pkce) -> String {
        let back = b.authorize(&self.admin_path(p, "openid", &[]), OWNER).await;
        back["code"].clone()
    }

    /// Signs in (or uses the browser's session) and returns the admin client's tokens.
    async fn admin_tokens(&self, b: &mut Browser, who: (&str, &str), scope: &str) -> Value {
        let p = pkce();
        let back = b.authorize(&self.admin_path(&p, scope, &[]), who).await;
        let (status, t) = self.admin_exchange(&back["code"], &p.verifier).await;
        assert_eq!(status, 200, "{t}");
        t
    }

    /// Signs in (or uses the browser's session), consents, and returns webapp's tokens.
    async fn webapp_tokens(&self, b: &mut Browser, who: (&str, &str), scope: &str) -> Value {
        let back = b.authorize(&self.webapp_path(scope, &[]), who).await;
        let (status, t) = self
            .token(
                Some(self.webapp_auth()),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &back["code"]),
                    ("redirect_uri", WEBAPP_CB),
                ],
            )
            .await;
        assert_eq!(status, 200, "{t}");
        t
    }

    async fn webapp_refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token(
            Some(self.webapp_auth()),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// Introspects `token` as the confidential webapp client.
    async fn webapp_introspect(&self, token: &str) -> Value {
        let (status, info) = self
            .oauth(
                "/oauth2/introspect",
                Some(self.webapp_auth()),
                &[("token", token)],
            )
            .await;
        assert_eq!(status, 200, "{info}");
        info
    }

    /// Posts `body` as a form, whatever it holds; returns the status and the body.
    async fn raw_post(&self, path: &str, body: Vec<u8>) -> (u16, String) {
        let r = client()
            .post(format!("{}{path}", self.base()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Disables, enables or deletes a user as the owner.
    async fn change_user(&self, user_id: &str, change: Change) {
        let v = self.w.view();
        let ctx = self.w.ctx(&v);
        principals::change(
            &ctx,
            &self.w.owner,
            &PrincipalRef::user(user_id.to_owned()),
            "*",
            change,
        )
        .await
        .unwrap_or_else(|e| panic!("{change:?}: {e:?}"));
    }

    /// Adds a verified, enabled user with a password; returns its id.
    async fn add_user(&self, email: &str, password: &str) -> String {
        let st = &self.w.s.state;
        let id = uuid::Uuid::new_v4().to_string();
        let hash = gatehouse::crypto::password::hash_blocking(password).expect("hash");
        let mut tx = st.store.begin().await.expect("begin");
        iam::insert_user(
            &mut tx,
            &UserRow {
                id: id.clone(),
                email: email.into(),
                display_name: format!("{email} name"),
                password_hash: Some(hash),
                email_verified: true,
                disabled: false,
            },
        )
        .await
        .expect("user");
        gatehouse::store::bump_change(&mut tx, "test", "user")
            .await
            .expect("bump");
        tx.commit().await.expect("commit");
        self.w.reload().await;
        id
    }

    async fn admin_refresh(&self, refresh_token: &str, scope: Option<&str>) -> (u16, Value) {
        let mut pairs = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", ADMIN),
        ];
        if let Some(s) = scope {
            pairs.push(("scope", s));
        }
        self.token(None, &pairs).await
    }

    async fn userinfo(&self, access_token: &str) -> (u16, Value) {
        let r = client()
            .get(format!("{}/oauth2/userinfo", self.base()))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Verifies a JWT signed by this server: its `typ`, issuer and audience.
    fn verify(&self, token: &str, typ: &str, aud: &str) -> Value {
        let header = jsonwebtoken::decode_header(token).expect("header");
        assert_eq!(header.typ.as_deref(), Some(typ));
        assert!(header.kid.is_some(), "kid in every header");
        let ring = self.w.s.state.keys.load();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&[aud]);
        v.set_issuer(&[self.base()]);
        gatehouse::crypto::jwt::verify(&ring, gatehouse::now_unix(), token, &v)
            .unwrap_or_else(|e| panic!("a valid {typ} for {aud}: {e}"))
    }

    /// Whether `user` can still sign in silently in `b` (prompt=none).
    async fn silent(&self, b: &mut Browser) -> BTreeMap<String, String> {
        let r = b
            .get(&self.admin_path(&pkce(), "openid", &[("prompt", "none")]))
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert!(r.location().starts_with(&self.admin_cb), "{}", r.location());
        params_of(r.location())
    }

    async fn stop(self) {
        self.w.s.stop().await;
    }
}

fn at_hash(access_token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}"))
}

// 1. the whole code flow

async fn code_flow(env: Env) {
    let base = env.base().to_owned();
    let mut b = env.browser();
    let p = pkce();
    let path = env.admin_path(&p, "openid email roles", &[("nonce", "n-0S6_WzA2Mj")]);
    let r = b.get(&path).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        r.location().starts_with("/login?pending="),
        "{}",
        r.location()
    );
    r.assert_page_headers();

    let page = b.follow(&r).await;
    assert_eq!(page.status, 200);
    page.assert_page_headers();
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(page.body.contains(r#"name="email""#), "{}", page.body);
    assert!(page.body.contains(r#"name="password""#));
    let csrf = page.input("csrf_token").expect("csrf_token");
    assert!(!csrf.is_empty());
    let pending = page.input("pending").expect("pending");
    let csrf_cookie = page.set_cookie("gatehouse_csrf").expect("csrf cookie");
    assert!(csrf_cookie.contains("HttpOnly"), "{csrf_cookie}");

    let r = b
        .post(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("pending", &pending),
                ("email", OWNER.0),
                ("password", OWNER.1),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        r.location(),
        format!("/oauth2/authorize/resume?pending={pending}")
    );
    let cookie = r.set_cookie("gatehouse_session").expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.to_ascii_lowercase().contains("secure"),
        "no Secure on an http loopback issuer: {cookie}"
    );

    let r = b.follow(&r).await;
    assert_eq!(r.status, 303, "{}", r.body);
    r.assert_page_headers();
    assert!(
        r.location().starts_with(&format!("{}?", env.admin_cb)),
        "{}",
        r.location()
    );
    let back = params_of(r.location());
    assert_eq!(back["state"], "st");
    assert_eq!(back["iss"], base);
    let code = back["code"].clone();

    let (status, t) = env.admin_exchange(&code, &p.verifier).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "openid email roles");
    assert!(s(&t, "refresh_token").starts_with("ghr_"));
    let access = s(&t, "access_token");
    let at = env.verify(access, "at+jwt", &format!("{base}/v1"));
    let owner_id = env.w.owner.principal.id.clone();
    assert_eq!(at["sub"], owner_id.as_str());
    assert_eq!(at["client_id"], ADMIN);
    assert_eq!(at["scope"], "openid email roles");
    assert_eq!(at["roles"], json!(["owner@*", "owner@orgs/acme/*"]));
    for c in ["jti", "iat", "exp"] {
        assert!(at.get(c).is_some(), "{c}");
    }
    assert_ne!(at["sub"], OWNER.0, "sub is never the email");

    let id = env.verify(s(&t, "id_token"), "JWT", ADMIN);
    let now = gatehouse::now_unix();
    assert_eq!(id["sub"], owner_id.as_str());
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    let auth_time = id["auth_time"].as_i64().expect("auth_time");
    assert!(auth_time <= now && auth_time > now - 60, "{auth_time}");
    assert_eq!(id["at_hash"], at_hash(access).as_str());
    assert!(!s(&id, "sid").is_empty());
    assert_eq!(id["email"], OWNER.0);

    let (status, info) = env.userinfo(access).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["sub"], owner_id.as_str());
    assert_eq!(info["email"], OWNER.0);
    assert_eq!(info["email_verified"], true);
    assert_eq!(info["roles"], json!(["owner@*", "owner@orgs/acme/*"]));
    let (status, _) = env.userinfo("not-a-token").await;
    assert_eq!(status, 401);
    env.stop().await;
}

#[tokio::test]
async fn code_flow_with_pkce_for_the_admin_client() {
    code_flow(Env::new(|_| {}).await).await;
}

#[tokio::test]
async fn code_flow_with_pkce_on_postgres_and_redis() {
    if let Some(env) = Env::on_postgres_and_redis().await {
        code_flow(env).await;
    }
}

// 2. codes: used once, by their client, with their redirect URI and verifier

#[tokio::test]
async fn codes_are_single_use_and_bound_to_client_redirect_and_verifier() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let p = pkce();
    let c = env.admin_code(&mut b, &p).await;
    let (status, first) = env.admin_exchange(&c, &p.verifier).await;
    assert_eq!(status, 200, "{first}");
    let access = s(&first, "access_token");
    let (status, _) = env.userinfo(access).await;
    assert_eq!(status, 200, "the first access token works");

    // the second exchange fails and undoes the first
    let (status, again) = env.admin_exchange(&c, &p.verifier).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, r) = env.admin_refresh(s(&first, "refresh_token"), None).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "the refresh token of a reused code is revoked: {r}"
    );
    let (status, info) = env
        .oauth(
            "/oauth2/introspect",
            None,
            &[("client_id", ADMIN), ("token", access)],
        )
        .await;
    assert_eq!(
        (status, info["error"].as_str()),
        (401, Some("invalid_client")),
        "a public client may not introspect (RFC 7662 section 2.1): {info}"
    );
    let (status, _) = env.userinfo(access).await;
    assert_eq!(status, 401, "the access token of a reused code is revoked");

    // a code for another client
    let p = pkce();
    let c = env.admin_code(&mut b, &p).await;
    let (status, r) = env
        .token(
            Some(env.webapp_auth()),
            &[
                ("grant_type", "authorization_code"),
                ("code", &c),
                ("redirect_uri", &env.admin_cb),
                ("code_verifier", &p.verifier),
            ],
        )
        .await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "{r}"
    );

    // another redirect URI (even another loopback port)
    let p = pkce();
    let c = env.admin_code(&mut b, &p).await;
    let (status, r) = env
        .token(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &c),
                ("redirect_uri", "http://127.0.0.1:1/callback"),
                ("client_id", ADMIN),
                ("code_verifier", &p.verifier),
            ],
        )
        .await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "{r}"
    );

    // a wrong verifier, and none
    let p = pkce();
    let c = env.admin_code(&mut b, &p).await;
    let (status, r) = env.admin_exchange(&c, &pkce().verifier).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "{r}"
    );
    let p = pkce();
    let c = env.admin_code(&mut b, &p).await;
    let (status, r) = env
        .token(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &c),
                ("redirect_uri", &env.admin_cb),
                ("client_id", ADMIN),
            ],
        )
        .await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "{r}"
    );

    // a confidential client without PKCE: a verifier it never committed to fails,
    // no verifier works; without its secret it is not authenticated
    let mut wb = env.browser();
    let c = wb.authorize(&env.webapp_path("openid", &[]), DANA).await["code"].clone();
    let (status, r) = env
        .token(
            Some(env.webapp_auth()),
            &[
                ("grant_type", "authorization_code"),
                ("code", &c),
                ("redirect_uri", WEBAPP_CB),
                ("code_verifier", &pkce().verifier),
            ],
        )
        .await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "{r}"
    );
    let c = wb.authorize(&env.webapp_path("openid", &[]), DANA).await["code"].clone();
    let r = client()
        .post(format!("{}/oauth2/token", env.base()))
        .header("authorization", basic(WEBAPP, "not-the-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("redirect_uri", WEBAPP_CB),
        ]))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Basic"),
        "a Basic challenge"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
    let c = wb.authorize(&env.webapp_path("openid", &[]), DANA).await["code"].clone();
    let (status, r) = env
        .token(
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &c),
                ("redirect_uri", WEBAPP_CB),
                ("client_id", WEBAPP),
            ],
        )
        .await;
    assert_eq!(
        (status, r["error"].as_str()),
        (401, Some("invalid_client")),
        "{r}"
    );
    let c = wb.authorize(&env.webapp_path("openid", &[]), DANA).await["code"].clone();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", WEBAPP_CB),
    ];
    let (status, r) = env.token(Some(env.webapp_auth()), &exchange).await;
    assert_eq!(status, 200, "{r}");
    // the confidential client sees, by introspection, what a reuse of its code revokes
    let info = env.webapp_introspect(s(&r, "access_token")).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["sub"], env.dana.as_str());
    let info = env.webapp_introspect(s(&r, "refresh_token")).await;
    assert_eq!(info["active"], true, "{info}");
    let (status, again) = env.token(Some(env.webapp_auth()), &exchange).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant")),
        "{again}"
    );
    for token in ["access_token", "refresh_token"] {
        assert_eq!(
            env.webapp_introspect(s(&r, token)).await,
            json!({ "active": false }),
            "the {token} of a reused code"
        );
    }

    // public clients must use PKCE, and only S256
    let no_pkce = authorize_path(&[
        ("client_id", ADMIN),
        ("redirect_uri", &env.admin_cb),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "st"),
    ]);
    let p = pkce();
    let plain = authorize_path(&[
        ("client_id", ADMIN),
        ("redirect_uri", &env.admin_cb),
        ("response_type", "code"),
        ("state", "st"),
        ("code_challenge", &p.verifier),
        ("code_challenge_method", "plain"),
    ]);
    let no_method = authorize_path(&[
        ("client_id", ADMIN),
        ("redirect_uri", &env.admin_cb),
        ("response_type", "code"),
        ("state", "st"),
        ("code_challenge", &p.challenge),
    ]);
    for path in [no_pkce, plain, no_method] {
        let r = b.get(&path).await;
        assert_eq!(r.status, 303, "{path}");
        assert!(r.location().starts_with(&env.admin_cb), "{}", r.location());
        let back = params_of(r.location());
        assert_eq!(back["error"], "invalid_request", "{path}");
        assert_eq!(back["state"], "st");
        assert_eq!(back["iss"], env.base());
        assert!(!back.contains_key("code"));
    }
    env.stop().await;
}

// 3. what cannot be sent back to a client, and what can

#[tokio::test]
async fn unverified_clients_get_a_page_and_verified_ones_get_errors_with_state_and_iss() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let p = pkce();
    let pages = [
        authorize_path(&[
            ("client_id", "no-such-client"),
            ("redirect_uri", WEBAPP_CB),
            ("response_type", "code"),
            ("state", "st"),
        ]),
        authorize_path(&[
            ("client_id", ADMIN),
            ("redirect_uri", "https://evil.example/callback"),
            ("response_type", "code"),
            ("state", "st"),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ]),
        authorize_path(&[
            ("client_id", ADMIN),
            ("redirect_uri", "http://127.0.0.1:53682/other"),
            ("response_type", "code"),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ]),
        authorize_path(&[
            ("client_id", WEBAPP),
            ("redirect_uri", &env.admin_cb),
            ("response_type", "code"),
        ]),
        authorize_path(&[
            ("client_id", WEBAPP),
            ("redirect_uri", "https://app.example/cb/more"),
            ("response_type", "code"),
        ]),
        authorize_path(&[("client_id", WEBAPP), ("response_type", "code")]),
    ];
    for path in &pages {
        let r = b.get(path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.headers.get("location").is_none(), "{path}");
        assert!(r.header("content-type").starts_with("text/html"), "{path}");
        r.assert_page_headers();
        assert!(r.body.contains("<h1>"), "a page that explains: {}", r.body);
    }
    let redirected = [
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "openid admin")], "invalid_scope"),
        (vec![("prompt", "bogus")], "invalid_request"),
        (vec![("max_age", "-1")], "invalid_request"),
        (
            vec![("resource", "https://unregistered.example")],
            "invalid_target",
        ),
    ];
    for (extra, want) in redirected {
        let mut pairs = vec![
            ("client_id", ADMIN),
            ("redirect_uri", env.admin_cb.as_str()),
            ("state", "xyz"),
            ("code_challenge", p.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        if !extra.iter().any(|(k, _)| *k == "response_type") {
            pairs.push(("response_type", "code"));
        }
        pairs.extend(extra.iter().copied());
        let r = b.get(&authorize_path(&pairs)).await;
        assert_eq!(r.status, 303, "{want}: {}", r.body);
        assert!(r.location().starts_with(&env.admin_cb), "{}", r.location());
        let back = params_of(r.location());
        assert_eq!(back["error"], want, "{back:?}");
        assert_eq!(back["state"], "xyz");
        assert_eq!(back["iss"], env.base());
    }
    env.stop().await;
}

// 4. prompt and max_age

#[tokio::test]
async fn prompt_and_max_age_decide_whether_the_user_is_asked() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let back = env.silent(&mut b).await;
    assert_eq!(back["error"], "login_required");
    assert_eq!(back["state"], "st");
    assert_eq!(back["iss"], env.base());

    let first = env.admin_tokens(&mut b, OWNER, "openid").await;
    let first_auth = env.verify(s(&first, "id_token"), "JWT", ADMIN)["auth_time"]
        .as_i64()
        .expect("auth_time");
    // with a session, prompt=none answers at once
    let back = env.silent(&mut b).await;
    assert!(back.contains_key("code"), "{back:?}");
    assert!(!back.contains_key("error"));

    // max_age: a login a second or more ago is too old for max_age=0
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = b
        .get(&env.admin_path(&pkce(), "openid", &[("max_age", "3600")]))
        .await;
    assert_eq!(r.status, 303);
    assert!(
        params_of(r.location()).contains_key("code"),
        "recent enough: {}",
        r.location()
    );
    let r = b
        .get(&env.admin_path(&pkce(), "openid", &[("max_age", "0")]))
        .await;
    assert_eq!(r.status, 303);
    assert!(
        r.location().starts_with("/login?pending="),
        "max_age=0 after an older login: {}",
        r.location()
    );
    let r = b
        .get(&env.admin_path(&pkce(), "openid", &[("prompt", "none"), ("max_age", "0")]))
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(params_of(r.location())["error"], "login_required");

    // prompt=login asks again even with a session, and the new login counts
    let p = pkce();
    let r = b
        .get(&env.admin_path(&p, "openid", &[("prompt", "login")]))
        .await;
    assert_eq!(r.status, 303);
    assert!(
        r.location().starts_with("/login?pending="),
        "{}",
        r.location()
    );
    let r = b.sign_in(&r, OWNER).await;
    let r = b.follow(&r).await;
    assert!(r.location().starts_with(&env.admin_cb), "{}", r.location());
    let back = params_of(r.location());
    let (status, t) = env.admin_exchange(&back["code"], &p.verifier).await;
    assert_eq!(status, 200, "{t}");
    let auth_time = env.verify(s(&t, "id_token"), "JWT", ADMIN)["auth_time"]
        .as_i64()
        .expect("auth_time");
    assert!(auth_time > first_auth, "a new authentication");
    assert!(env.silent(&mut b).await.contains_key("code"));
    env.stop().await;
}

#[tokio::test]
async fn max_age_zero_is_satisfied_by_the_login_it_asks_for() {
    // OpenID Connect Core 3.1.2.1: max_age=0 is equivalent to prompt=login. The login
    // made for this very request must satisfy it, however long the browser takes to
    // come back from the login page.
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let p = pkce();
    let r = b
        .get(&env.admin_path(&p, "openid", &[("max_age", "0")]))
        .await;
    let r = b.sign_in(&r, OWNER).await;
    assert_eq!(r.status, 303, "{}", r.body);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = b.follow(&r).await;
    assert!(
        r.location().starts_with(&env.admin_cb),
        "the user just signed in for this request, yet is sent to {:?}",
        r.location()
    );
    let back = params_of(r.location());
    let (status, t) = env.admin_exchange(&back["code"], &p.verifier).await;
    assert_eq!(status, 200, "{t}");
    env.stop().await;
}

// 5. consent

#[tokio::test]
async fn third_party_clients_need_consent_once() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let r = b.get(&env.webapp_path("openid email", &[])).await;
    let r = b.sign_in(&r, DANA).await;
    let page = b.follow(&r).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_page_headers();
    assert!(page.body.contains(r#"action="/consent""#));
    assert!(page.body.contains("Web App"), "{}", page.body);
    assert!(page.body.contains("Know who you are"));
    assert!(page.body.contains("See your email address"));
    assert!(page.body.contains(DANA.0));

    // no token, a wrong token: refused
    let pending = page.input("pending").expect("pending");
    let r = b
        .post("/consent", &[("pending", &pending), ("decision", "allow")])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let r = b
        .post(
            "/consent",
            &[
                ("csrf_token", &forged),
                ("pending", &pending),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    // deny
    let r = b.consent(&page, "deny").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with(WEBAPP_CB), "{}", r.location());
    let back = params_of(r.location());
    assert_eq!(back["error"], "access_denied");
    assert_eq!(back["state"], "ws");
    assert_eq!(back["iss"], env.base());
    assert!(!back.contains_key("code"));
    assert!(
        env.w
            .s
            .state
            .store
            .consent(&env.dana, WEBAPP)
            .await
            .expect("consent")
            .is_empty()
    );

    // asked again; allow
    let page = b.get(&env.webapp_path("openid email", &[])).await;
    assert_eq!(page.status, 200, "a denial is not remembered");
    assert!(page.body.contains(r#"action="/consent""#));
    let r = b.consent(&page, "allow").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let back = params_of(r.location());
    assert_eq!(back["state"], "ws");
    assert_eq!(back["iss"], env.base());
    let (status, t) = env
        .token(
            Some(env.webapp_auth()),
            &[
                ("grant_type", "authorization_code"),
                ("code", &back["code"]),
                ("redirect_uri", WEBAPP_CB),
            ],
        )
        .await;
    assert_eq!(status, 200, "{t}");
    let at = env.verify(s(&t, "access_token"), "at+jwt", WEBAPP);
    assert_eq!(at["sub"], env.dana.as_str());
    let id = env.verify(s(&t, "id_token"), "JWT", WEBAPP);
    assert_eq!(id["email"], DANA.0);
    let given = env
        .w
        .s
        .state
        .store
        .consent(&env.dana, WEBAPP)
        .await
        .expect("consent");
    assert!(
        given.contains(&"openid".to_string()) && given.contains(&"email".to_string()),
        "{given:?}"
    );

    // remembered: no page
    let r = b.get(&env.webapp_path("openid email", &[])).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        params_of(r.location()).contains_key("code"),
        "{}",
        r.location()
    );
    let r = b
        .get(&env.webapp_path("openid", &[("prompt", "none")]))
        .await;
    assert!(params_of(r.location()).contains_key("code"), "a subset");

    // prompt=consent asks again
    let r = b
        .get(&env.webapp_path("openid email", &[("prompt", "consent")]))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#"action="/consent""#));

    // prompt=none cannot ask for what is missing
    let r = b
        .get(&env.webapp_path("openid email profile", &[("prompt", "none")]))
        .await;
    assert_eq!(r.status, 303);
    let back = params_of(r.location());
    assert_eq!(back["error"], "consent_required");
    assert_eq!(back["state"], "ws");
    assert_eq!(back["iss"], env.base());
    env.stop().await;
}

// 6. login failures

async fn audited(env: &Env, action: &str, actor: &str) -> bool {
    env.w.s.state.events.drain(Duration::from_secs(2)).await;
    for _ in 0..40 {
        let events = env
            .w
            .s
            .state
            .store
            .audit_events(None, 1000)
            .await
            .expect("audit");
        if events
            .iter()
            .any(|e| e.action == action && e.actor == actor)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Posts the login form (without a pending authorization).
async fn post_login(b: &mut Browser, csrf: &str, who: (&str, &str)) -> Resp {
    b.post(
        "/login",
        &[("csrf_token", csrf), ("email", who.0), ("password", who.1)],
    )
    .await
}

#[tokio::test]
async fn login_failures_say_nothing_are_slowed_and_lock_the_account() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let page = b.get("/login").await;
    assert_eq!(page.status, 200);
    page.assert_page_headers();
    let csrf = page.input("csrf_token").expect("csrf_token");

    // without the token, without the cookie: refused before anything is checked
    let r = b
        .post("/login", &[("email", OWNER.0), ("password", OWNER.1)])
        .await;
    assert_eq!(r.status, 403, "no token");
    let mut cookieless = env.browser();
    let r = cookieless
        .post(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("email", OWNER.0),
                ("password", OWNER.1),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "no cookie");
    assert!(r.set_cookie("gatehouse_session").is_none());

    let r = b
        .post_from(
            "https://evil.example",
            "/login",
            &[
                ("csrf_token", &csrf),
                ("email", OWNER.0),
                ("password", OWNER.1),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "posted from another site");
    assert!(r.set_cookie("gatehouse_session").is_none());
    let r = b
        .post_from(
            env.base(),
            "/login",
            &[
                ("csrf_token", &csrf),
                ("email", OWNER.0),
                ("password", OWNER.1),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "posted from the login page: {}", r.body);
    let r = post_login(&mut b, &csrf, OWNER).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.set_cookie("gatehouse_session").is_some());

    // only the right password tells that an account is unverified or disabled
    let r = post_login(&mut b, &csrf, UMA).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("Verify your email address"), "{}", r.body);
    assert!(r.set_cookie("gatehouse_session").is_none());
    let r = post_login(&mut b, &csrf, DAVE).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("This account is disabled"), "{}", r.body);
    assert!(r.set_cookie("gatehouse_session").is_none());
    let r = post_login(&mut b, &csrf, (UMA.0, "wrong password")).await;
    assert_eq!(r.status, 401, "unverified, wrong password: {}", r.body);
    assert!(!r.body.contains("Verify your email"));

    // a wrong password and an unknown email look the same
    let wrong = post_login(&mut b, &csrf, (DANA.0, "wrong password")).await;
    let unknown = post_login(&mut b, &csrf, ("ghost@acme.test", DANA.1)).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        (wrong.status, wrong.alert()),
        (unknown.status, unknown.alert())
    );
    assert!(wrong.alert().is_some_and(|a| !a.is_empty()));
    let r = post_login(&mut b, &csrf, (DANA.0, "wrong again")).await;
    assert_eq!(r.status, 401);

    // four failures from this address so far: the fifth waits
    let started = Instant::now();
    let r = post_login(&mut b, &csrf, (DANA.0, "and again")).await;
    assert_eq!(r.status, 401);
    assert!(
        started.elapsed() >= gatehouse::identity::throttle::BASE,
        "the fifth failure in a row is slowed: {:?}",
        started.elapsed()
    );

    // dana has 3 failures; 6 more from elsewhere, then the 10th locks the account
    let st = &env.w.s.state;
    for _ in 0..6 {
        gatehouse::identity::throttle::failed(&st.ephemeral, Some(DANA.0), "198.51.100.7")
            .await
            .expect("seed");
    }
    assert_eq!(
        gatehouse::identity::throttle::failures(&st.ephemeral, DANA.0)
            .await
            .expect("count"),
        gatehouse::ui::login::LOCKOUT_AFTER - 1
    );
    let r = post_login(&mut b, &csrf, (DANA.0, "the last try")).await;
    assert_eq!(r.status, 401);
    let r = post_login(&mut b, &csrf, DANA).await;
    assert_eq!(r.status, 429, "locked, whatever the password: {}", r.body);
    assert!(r.set_cookie("gatehouse_session").is_none());
    assert!(
        r.alert().is_some_and(|a| a.contains("Too many")),
        "{}",
        r.body
    );

    let owner = format!("user:{}", env.w.owner.principal.id);
    assert!(audited(&env, "login.success", &owner).await);
    assert!(audited(&env, "login.failure", "email:dana@acme.test").await);
    assert!(audited(&env, "login.failure", "email:ghost@acme.test").await);
    assert!(audited(&env, "login.lockout", "email:dana@acme.test").await);
    env.stop().await;
}

// 7. refresh tokens

async fn refresh_rotation(env: Env) {
    let mut b = env.browser();
    let t = env.admin_tokens(&mut b, OWNER, "openid email roles").await;
    let rt1 = s(&t, "refresh_token").to_owned();
    let (status, r) = env.admin_refresh(&rt1, None).await;
    assert_eq!(status, 200, "{r}");
    let rt2 = s(&r, "refresh_token").to_owned();
    assert_ne!(rt1, rt2, "rotated");
    assert_eq!(r["scope"], "openid email roles");
    let at = env.verify(
        s(&r, "access_token"),
        "at+jwt",
        &format!("{}/v1", env.base()),
    );
    assert_eq!(at["roles"], json!(["owner@*", "owner@orgs/acme/*"]));
    env.verify(s(&r, "id_token"), "JWT", ADMIN);

    // reuse of a rotated token revokes the family, the newest token too
    let (status, r) = env.admin_refresh(&rt1, None).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "{r}"
    );
    let (status, r) = env.admin_refresh(&rt2, None).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "the whole family is revoked: {r}"
    );

    // another client's refresh token is no good, and stays good for its client
    let t = env.admin_tokens(&mut b, OWNER, "openid email roles").await;
    let rt = s(&t, "refresh_token").to_owned();
    let (status, r) = env
        .token(
            Some(env.webapp_auth()),
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "{r}"
    );
    let (status, r) = env.admin_refresh(&rt, None).await;
    assert_eq!(status, 200, "{r}");
    let rt = s(&r, "refresh_token").to_owned();

    // narrowing works, widening does not
    let (status, r) = env.admin_refresh(&rt, Some("openid")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["scope"], "openid");
    let at = env.verify(
        s(&r, "access_token"),
        "at+jwt",
        &format!("{}/v1", env.base()),
    );
    assert_eq!(at["scope"], "openid");
    assert!(at.get("roles").is_none(), "{at}");
    let rt = s(&r, "refresh_token").to_owned();
    let (status, r) = env.admin_refresh(&rt, Some("openid profile")).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_scope")),
        "{r}"
    );

    // revocation (RFC 7009): another client's revocation does nothing
    let t = env.admin_tokens(&mut b, OWNER, "openid").await;
    let rt = s(&t, "refresh_token").to_owned();
    let (status, _) = env
        .oauth("/oauth2/revoke", Some(env.webapp_auth()), &[("token", &rt)])
        .await;
    assert_eq!(status, 200);
    let (status, r) = env.admin_refresh(&rt, None).await;
    assert_eq!(status, 200, "still good: {r}");
    let rt = s(&r, "refresh_token").to_owned();
    // a public client proves nothing by its id: it may not introspect (RFC 7662
    // section 2.1), not even its own tokens, but it may revoke them (RFC 7009 section 5)
    let (status, info) = env
        .oauth(
            "/oauth2/introspect",
            None,
            &[("client_id", ADMIN), ("token", &rt)],
        )
        .await;
    assert_eq!(
        (status, info["error"].as_str()),
        (401, Some("invalid_client")),
        "{info}"
    );
    let (status, info) = env
        .oauth(
            "/oauth2/introspect",
            Some(env.webapp_auth()),
            &[("token", &rt)],
        )
        .await;
    assert_eq!(
        (status, info),
        (200, json!({ "active": false })),
        "another client's token"
    );
    let (status, _) = env
        .oauth(
            "/oauth2/revoke",
            None,
            &[
                ("client_id", ADMIN),
                ("token", &rt),
                ("token_type_hint", "refresh_token"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let (status, r) = env.admin_refresh(&rt, None).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "{r}"
    );

    // a confidential client introspects its own refresh tokens
    let mut wb = env.browser();
    let wt = env.webapp_tokens(&mut wb, DANA, "openid").await;
    let wrt = s(&wt, "refresh_token").to_owned();
    let info = env.webapp_introspect(&wrt).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["token_type"], "refresh_token");
    assert_eq!(info["client_id"], WEBAPP);
    assert_eq!(info["sub"], env.dana.as_str());
    let (status, info) = env
        .oauth(
            "/oauth2/introspect",
            None,
            &[("client_id", ADMIN), ("token", &wrt)],
        )
        .await;
    assert_eq!(
        (status, info["error"].as_str()),
        (401, Some("invalid_client")),
        "{info}"
    );
    let (status, _) = env
        .oauth(
            "/oauth2/revoke",
            None,
            &[("client_id", ADMIN), ("token", &wrt)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        env.webapp_introspect(&wrt).await["active"],
        true,
        "another client's revocation does nothing"
    );
    let (status, _) = env
        .oauth(
            "/oauth2/revoke",
            Some(env.webapp_auth()),
            &[("token", &wrt)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        env.webapp_introspect(&wrt).await,
        json!({ "active": false })
    );
    let (status, r) = env.webapp_refresh(&wrt).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "{r}"
    );
    env.stop().await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    refresh_rotation(Env::new(|_| {}).await).await;
}

#[tokio::test]
async fn refresh_tokens_rotate_on_postgres_and_redis() {
    if let Some(env) = Env::on_postgres_and_redis().await {
        refresh_rotation(env).await;
    }
}

#[tokio::test]
async fn a_refused_refresh_does_not_use_up_the_refresh_token() {
    // A refresh request that fails (here: a scope wider than the grant) issues
    // nothing, so the client still holds the token it presented; that token must
    // still work, not count as a stolen token's reuse and revoke the family.
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let t = env.admin_tokens(&mut b, OWNER, "openid email").await;
    let rt = s(&t, "refresh_token").to_owned();
    let (status, r) = env.admin_refresh(&rt, Some("openid profile")).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_scope")),
        "{r}"
    );
    let (status, r) = env.admin_refresh(&rt, None).await;
    assert_eq!(
        status, 200,
        "the token presented with the refused request still works: {r}"
    );
    env.stop().await;
}

#[tokio::test]
async fn refresh_reuse_within_the_grace_window_gets_the_same_answer() {
    // The grace window is for "the same authenticated client": a confidential one.
    let env = Env::new(|c| c.refresh_reuse_grace_secs = 2).await;
    let mut b = env.browser();
    let t = env.webapp_tokens(&mut b, DANA, "openid").await;
    let rt1 = s(&t, "refresh_token").to_owned();
    let (status, first) = env.webapp_refresh(&rt1).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = env.webapp_refresh(&rt1).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first, again, "the identical response");
    let (status, r) = env.admin_refresh(&rt1, None).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "only for the same client: {r}"
    );
    let (status, r) = env.webapp_refresh(s(&first, "refresh_token")).await;
    assert_eq!(status, 200, "the family lives on: {r}");
    let rt3 = s(&r, "refresh_token").to_owned();

    // a public client proves nothing by its id: within the window, a reuse is a reuse
    let t = env.admin_tokens(&mut b, DANA, "openid").await;
    let public1 = s(&t, "refresh_token").to_owned();
    let (status, public_first) = env.admin_refresh(&public1, None).await;
    assert_eq!(status, 200, "{public_first}");
    let (status, r) = env.admin_refresh(&public1, None).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "no grace for a public client: {r}"
    );
    let (status, r) = env
        .admin_refresh(s(&public_first, "refresh_token"), None)
        .await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "the public client's reuse revoked its family: {r}"
    );

    // after the window, a reuse is a reuse for a confidential client too
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, r) = env.webapp_refresh(&rt1).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "{r}"
    );
    let (status, r) = env.webapp_refresh(&rt3).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "family revoked: {r}"
    );
    env.stop().await;
}

#[tokio::test]
async fn disabling_or_deleting_a_user_revokes_its_refresh_tokens_at_once() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let t = env.admin_tokens(&mut b, DANA, "openid").await;
    let (status, r) = env.admin_refresh(s(&t, "refresh_token"), None).await;
    assert_eq!(status, 200, "{r}");
    let rt = s(&r, "refresh_token").to_owned();
    let access = s(&r, "access_token").to_owned();
    let dana = PrincipalRef::user(env.dana.clone());
    {
        let v = env.w.view();
        let ctx = env.w.ctx(&v);
        principals::change(&ctx, &env.w.owner, &dana, "*", Change::Disable)
            .await
            .expect("disable");
    }
    let (status, r) = env.admin_refresh(&rt, None).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "disabled: {r}"
    );
    let (status, _) = env.userinfo(&access).await;
    assert_eq!(status, 401);
    let back = env.silent(&mut b).await;
    assert_eq!(back["error"], "login_required", "the session is gone");
    {
        let v = env.w.view();
        let ctx = env.w.ctx(&v);
        principals::change(&ctx, &env.w.owner, &dana, "*", Change::Enable)
            .await
            .expect("enable");
    }
    env.w.reload().await;
    let (status, r) = env.admin_refresh(&rt, None).await;
    assert_eq!(status, 400, "enabling again does not revive tokens: {r}");

    let t = env.admin_tokens(&mut b, DANA, "openid").await;
    let rt = s(&t, "refresh_token").to_owned();
    {
        let v = env.w.view();
        let ctx = env.w.ctx(&v);
        principals::change(&ctx, &env.w.owner, &dana, "*", Change::Delete)
            .await
            .expect("delete");
    }
    let (status, r) = env.admin_refresh(&rt, None).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "deleted: {r}"
    );
    let (status, _) = env.userinfo(s(&t, "access_token")).await;
    assert_eq!(status, 401);
    env.stop().await;
}

// 8. logout

#[tokio::test]
async fn logout_ends_the_session_and_its_refresh_tokens() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let online = env.admin_tokens(&mut b, OWNER, "openid").await;
    let offline = env
        .admin_tokens(&mut b, OWNER, "openid offline_access")
        .await;
    let session = b.cookie("gatehouse_session").expect("session");
    let hint = s(&online, "id_token").to_owned();
    let r = b
        .get(&format!(
            "/oauth2/logout?{}",
            form(&[
                ("id_token_hint", &hint),
                ("post_logout_redirect_uri", &env.admin_cb),
                ("state", "bye"),
            ])
        ))
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with(&env.admin_cb), "{}", r.location());
    assert_eq!(params_of(r.location())["state"], "bye");
    let cleared = r.set_cookie("gatehouse_session").expect("cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(b.cookie("gatehouse_session").is_none());

    // the old cookie is worth nothing now
    b.set_cookie("gatehouse_session", &session);
    assert_eq!(env.silent(&mut b).await["error"], "login_required");
    let (status, r) = env.admin_refresh(s(&online, "refresh_token"), None).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "the session's refresh tokens end with it: {r}"
    );
    let (status, r) = env.admin_refresh(s(&offline, "refresh_token"), None).await;
    assert_eq!(status, 200, "offline_access outlives the session: {r}");

    // without a hint: asked, with a CSRF token
    let t = env.admin_tokens(&mut b, OWNER, "openid").await;
    let page = b.get("/oauth2/logout").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_page_headers();
    assert!(page.body.contains(r#"action="/oauth2/logout""#));
    let csrf = page.input("csrf_token").expect("csrf_token");
    assert!(
        env.silent(&mut b).await.contains_key("code"),
        "still signed in"
    );
    let r = b.post("/oauth2/logout", &[("confirm", "yes")]).await;
    assert_eq!(r.status, 403, "no token: {}", r.body);
    let r = b
        .post(
            "/oauth2/logout",
            &[("confirm", "yes"), ("csrf_token", "AAAA")],
        )
        .await;
    assert_eq!(r.status, 403, "a wrong token");
    assert!(
        env.silent(&mut b).await.contains_key("code"),
        "still signed in"
    );
    let r = b
        .post(
            "/oauth2/logout",
            &[("confirm", "yes"), ("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("signed out"), "{}", r.body);
    assert_eq!(env.silent(&mut b).await["error"], "login_required");
    let (status, _) = env.admin_refresh(s(&t, "refresh_token"), None).await;
    assert_eq!(status, 400);

    // an unregistered post-logout address is not followed
    let t = env.admin_tokens(&mut b, OWNER, "openid").await;
    for query in [
        form(&[
            ("client_id", ADMIN),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ]),
        form(&[
            ("id_token_hint", s(&t, "id_token")),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ]),
    ] {
        let r = b.get(&format!("/oauth2/logout?{query}")).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert!(r.headers.get("location").is_none());
    }
    assert!(
        env.silent(&mut b).await.contains_key("code"),
        "a refused logout leaves the session"
    );
    env.stop().await;
}

// 9. the roles claim

#[tokio::test]
async fn roles_are_narrowed_to_the_request_and_to_the_client() {
    let env = Env::new(|_| {}).await;
    let admin_api = format!("{}/v1", env.base());
    let mut b = env.browser();
    let both = json!(["editor@orgs/acme/projects/backend/*", "viewer@orgs/other/*"]);
    let acme = json!(["editor@orgs/acme/projects/backend/*"]);

    let t = env.admin_tokens(&mut b, DANA, "openid roles").await;
    let at = env.verify(s(&t, "access_token"), "at+jwt", &admin_api);
    assert_eq!(at["roles"], both);
    let (status, info) = env.userinfo(s(&t, "access_token")).await;
    assert_eq!(status, 200);
    assert_eq!(info["roles"], both);

    let t = env
        .admin_tokens(&mut b, DANA, "openid roles:orgs/acme")
        .await;
    let at = env.verify(s(&t, "access_token"), "at+jwt", &admin_api);
    assert_eq!(at["roles"], acme);
    let (_, info) = env.userinfo(s(&t, "access_token")).await;
    assert_eq!(info["roles"], acme);

    // a client registered in orgs/acme never learns about orgs/other
    let t = env.webapp_tokens(&mut b, DANA, "openid roles").await;
    let at = env.verify(s(&t, "access_token"), "at+jwt", WEBAPP);
    assert_eq!(at["roles"], acme);
    let (status, info) = env.userinfo(s(&t, "access_token")).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["roles"], acme);
    let (status, r) = env
        .token(
            Some(env.webapp_auth()),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", s(&t, "refresh_token")),
            ],
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let at = env.verify(s(&r, "access_token"), "at+jwt", WEBAPP);
    assert_eq!(at["roles"], acme);

    let r = b
        .get(&env.webapp_path("openid roles:orgs/other", &[]))
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with(WEBAPP_CB), "{}", r.location());
    let back = params_of(r.location());
    assert_eq!(back["error"], "invalid_scope");
    assert_eq!(back["state"], "ws");
    assert_eq!(back["iss"], env.base());
    env.stop().await;
}

// 10. introspection of what no longer acts

#[tokio::test]
async fn introspection_answers_inactive_for_rotated_refresh_tokens_and_inactive_principals() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();

    // a rotated refresh token
    let t = env.webapp_tokens(&mut b, DANA, "openid").await;
    let rt1 = s(&t, "refresh_token").to_owned();
    let (status, r) = env.webapp_refresh(&rt1).await;
    assert_eq!(status, 200, "{r}");
    let rt2 = s(&r, "refresh_token").to_owned();
    let access = s(&r, "access_token").to_owned();
    assert_eq!(
        env.webapp_introspect(&rt1).await,
        json!({ "active": false }),
        "a refresh token already exchanged for its successor"
    );
    assert_eq!(env.webapp_introspect(&rt2).await["active"], true);
    let info = env.webapp_introspect(&access).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["sub"], env.dana.as_str());

    // a disabled user's tokens
    env.change_user(&env.dana, Change::Disable).await;
    assert_eq!(
        env.webapp_introspect(&access).await,
        json!({ "active": false }),
        "the access token of a disabled user"
    );
    assert_eq!(
        env.webapp_introspect(&rt2).await,
        json!({ "active": false }),
        "the refresh token of a disabled user"
    );

    // a deleted user's access token
    let erin = env.add_user("erin@acme.test", "erin password").await;
    let mut eb = env.browser();
    let t = env
        .webapp_tokens(&mut eb, ("erin@acme.test", "erin password"), "openid")
        .await;
    let erin_access = s(&t, "access_token").to_owned();
    let info = env.webapp_introspect(&erin_access).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["sub"], erin.as_str());
    env.change_user(&erin, Change::Delete).await;
    assert_eq!(
        env.webapp_introspect(&erin_access).await,
        json!({ "active": false }),
        "the access token of a deleted user"
    );

    // a disabled service account's access token, asked about by the resource server
    // it is addressed to (a confidential client named like the API)
    let st = &env.w.s.state;
    let api = "https://inventory.acme.test";
    let (sa, sa_secret) = {
        let v = env.w.view();
        let ctx = env.w.ctx(&v);
        let sa = gatehouse::access::accounts::create_service_account(
            &ctx,
            &env.w.owner,
            "orgs/acme",
            "robot",
            "Robot",
            "",
        )
        .await
        .expect("sa");
        let minted =
            gatehouse::access::accounts::mint_secret(&ctx, &st.kek, &env.w.owner, &sa.name, None)
                .await
                .expect("secret");
        (sa, minted.client_secret)
    };
    let rs_secret = gatehouse::crypto::secret::generate();
    let mut tx = st.store.begin().await.expect("begin");
    gatehouse::store::directory::register_api(&mut tx, api, "Inventory", &[])
        .await
        .expect("api");
    iam::insert_client(
        &mut tx,
        &ClientRow {
            client_id: api.into(),
            parent: "orgs/acme".into(),
            display_name: "Inventory".into(),
            redirect_uris: vec![],
            public_client: false,
            first_party: false,
            default_api: None,
            secret_hash: Some(gatehouse::crypto::secret::hash(
                st.kek.secret_key(),
                &rs_secret,
            )),
        },
    )
    .await
    .expect("client");
    gatehouse::store::bump_change(&mut tx, "test", "api")
        .await
        .expect("bump");
    tx.commit().await.expect("commit");
    env.w.reload().await;
    let (status, r) = env
        .token(
            Some((&sa.client_id, &sa_secret)),
            &[("grant_type", "client_credentials"), ("resource", api)],
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let sa_access = s(&r, "access_token").to_owned();
    let rs_introspect = [
        ("client_id", api),
        ("client_secret", rs_secret.as_str()),
        ("token", sa_access.as_str()),
    ];
    let (status, info) = env.oauth("/oauth2/introspect", None, &rs_introspect).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        info["active"], true,
        "addressed to the resource server: {info}"
    );
    assert_eq!(info["client_id"], sa.client_id.as_str());
    {
        let v = env.w.view();
        let ctx = env.w.ctx(&v);
        principals::change(
            &ctx,
            &env.w.owner,
            &PrincipalRef::service_account(sa.id.clone()),
            &sa.name,
            Change::Disable,
        )
        .await
        .expect("disable");
    }
    env.w.reload().await;
    let (status, info) = env.oauth("/oauth2/introspect", None, &rs_introspect).await;
    assert_eq!(
        (status, info),
        (200, json!({ "active": false })),
        "the access token of a disabled service account"
    );
    env.stop().await;
}

// 11. sessions end with the account's disabling, and refresh tokens with sessions

/// Waits until a new second of the clock has just begun, so that what follows (if
/// quick) happens within one second of the whole-second times the server records.
async fn at_the_start_of_a_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let left = Duration::from_secs(1) - Duration::from_nanos(u64::from(now.subsec_nanos()));
    tokio::time::sleep(left + Duration::from_millis(10)).await;
}

#[tokio::test]
async fn disabling_a_user_voids_its_browser_sessions() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    env.admin_tokens(&mut b, DANA, "openid").await;
    assert!(env.silent(&mut b).await.contains_key("code"));
    let old = b.cookie("gatehouse_session").expect("session");

    // disabled and enabled again without the session being used in between; then the
    // user signs in again at once (all within one second)
    at_the_start_of_a_second().await;
    let disabled_at = gatehouse::now_unix();
    env.change_user(&env.dana, Change::Disable).await;
    env.change_user(&env.dana, Change::Enable).await;
    let back = env.silent(&mut b).await;
    assert_eq!(
        back["error"], "login_required",
        "enabling the account again does not bring its session back: {back:?}"
    );

    let p = pkce();
    let r = b.get(&env.admin_path(&p, "openid", &[])).await;
    let r = b.sign_in(&r, DANA).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let signed_in_at = gatehouse::now_unix();
    assert_ne!(
        b.cookie("gatehouse_session"),
        Some(old.clone()),
        "a new session"
    );
    let r = b.follow(&r).await;
    assert!(
        r.location().starts_with(&env.admin_cb),
        "a new login after the account is enabled again must work, yet the browser is sent \
         to {:?} (disabled at {disabled_at}, signed in at {signed_in_at})",
        r.location()
    );
    let (status, t) = env
        .admin_exchange(&params_of(r.location())["code"], &p.verifier)
        .await;
    assert_eq!(status, 200, "{t}");
    assert!(env.silent(&mut b).await.contains_key("code"));

    // the old cookie stays worthless
    b.set_cookie("gatehouse_session", &old);
    assert_eq!(env.silent(&mut b).await["error"], "login_required");
    env.stop().await;
}

#[tokio::test]
async fn refresh_tokens_without_offline_access_end_with_their_session() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let online = env.admin_tokens(&mut b, OWNER, "openid").await;
    let offline = env
        .admin_tokens(&mut b, OWNER, "openid offline_access")
        .await;
    let (status, r) = env.admin_refresh(s(&online, "refresh_token"), None).await;
    assert_eq!(status, 200, "{r}");
    let online_rt = s(&r, "refresh_token").to_owned();
    let (status, r) = env.admin_refresh(s(&offline, "refresh_token"), None).await;
    assert_eq!(status, 200, "{r}");
    let offline_rt = s(&r, "refresh_token").to_owned();

    // a new login in the same browser replaces (ends) the session
    let old = b.cookie("gatehouse_session").expect("session");
    let page = b.get("/login").await;
    let csrf = page.input("csrf_token").expect("csrf_token");
    let r = post_login(&mut b, &csrf, OWNER).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(b.cookie("gatehouse_session"), Some(old), "a new session");
    let (status, r) = env.admin_refresh(&online_rt, None).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "the session the token was granted in was replaced: {r}"
    );
    let (status, r) = env.admin_refresh(&offline_rt, None).await;
    assert_eq!(status, 200, "offline_access outlives the session: {r}");
    let offline_rt = s(&r, "refresh_token").to_owned();

    // a session ended by logout
    let t = env.admin_tokens(&mut b, OWNER, "openid").await;
    let (status, r) = env.admin_refresh(s(&t, "refresh_token"), None).await;
    assert_eq!(status, 200, "{r}");
    let rt = s(&r, "refresh_token").to_owned();
    let r = b
        .get(&format!(
            "/oauth2/logout?{}",
            form(&[("id_token_hint", s(&t, "id_token"))])
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("signed out"), "{}", r.body);
    let (status, r) = env.admin_refresh(&rt, None).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "the session ended by logout: {r}"
    );
    let (status, r) = env.admin_refresh(&offline_rt, None).await;
    assert_eq!(status, 200, "offline_access outlives the session: {r}");
    env.stop().await;
}

// 12. a pending authorization belongs to the login made for it

#[tokio::test]
async fn a_pending_authorization_needs_a_fresh_login_in_its_own_browser() {
    let env = Env::new(|_| {}).await;
    let mut a = env.browser();
    env.admin_tokens(&mut a, OWNER, "openid").await;
    let mut other = env.browser();

    // prompt=login, then (a second later, so that A's session is too old) max_age=0,
    // both for the first-party admin client (no consent page)
    for (extra, wait) in [(("prompt", "login"), false), (("max_age", "0"), true)] {
        if wait {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let p = pkce();
        let to_login = a.get(&env.admin_path(&p, "openid", &[extra])).await;
        let id = to_login.pending();
        // another browser signs in with A's pending id
        let r = other.sign_in(&to_login, DANA).await;
        assert_eq!(r.status, 303, "{extra:?}: {}", r.body);
        // A resumes: no code without a login of its own
        let r = a
            .get(&format!("/oauth2/authorize/resume?pending={id}"))
            .await;
        assert_eq!(r.status, 303, "{extra:?}: {}", r.body);
        assert!(
            r.location().starts_with("/login?pending="),
            "{extra:?}: a login in another browser let A's older session through to {:?}",
            r.location()
        );
        // nor by posting the consent form: it checks freshness again
        let page = a.follow(&r).await;
        let csrf = page.input("csrf_token").expect("csrf_token");
        let r = a
            .post(
                "/consent",
                &[
                    ("csrf_token", &csrf),
                    ("pending", &id),
                    ("decision", "allow"),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{extra:?}: {}", r.body);
        assert!(
            r.location().starts_with("/login?pending="),
            "{extra:?}: the consent form let A's older session through to {:?}",
            r.location()
        );
        // A's own login for it counts
        let r = a.sign_in(&r, OWNER).await;
        let r = a.follow(&r).await;
        assert!(
            r.location().starts_with(&env.admin_cb),
            "{extra:?}: {}",
            r.location()
        );
        let (status, t) = env
            .admin_exchange(&params_of(r.location())["code"], &p.verifier)
            .await;
        assert_eq!(status, 200, "{t}");
        let id_token = env.verify(s(&t, "id_token"), "JWT", ADMIN);
        assert_eq!(id_token["sub"], env.w.owner.principal.id.as_str());
    }

    // a third-party client's consent form, posted without the fresh login it needs
    let mut c = env.browser();
    env.webapp_tokens(&mut c, DANA, "openid").await;
    let to_login = c
        .get(&env.webapp_path("openid", &[("prompt", "login")]))
        .await;
    let id = to_login.pending();
    let page = c.follow(&to_login).await;
    let csrf = page.input("csrf_token").expect("csrf_token");
    let r = c
        .post(
            "/consent",
            &[
                ("csrf_token", &csrf),
                ("pending", &id),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        r.location().starts_with("/login?pending="),
        "prompt=login skipped by posting consent: {:?}",
        r.location()
    );
    env.stop().await;
}

// 13. logout hints from earlier sessions

#[tokio::test]
async fn an_id_token_of_an_earlier_session_does_not_end_the_current_one() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let logout = |hint: &str| {
        format!(
            "/oauth2/logout?{}",
            form(&[
                ("id_token_hint", hint),
                ("post_logout_redirect_uri", &env.admin_cb),
                ("state", "bye"),
            ])
        )
    };
    let first = env.admin_tokens(&mut b, OWNER, "openid").await;
    let old_hint = s(&first, "id_token").to_owned();
    let r = b.get(&logout(&old_hint)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with(&env.admin_cb), "{}", r.location());
    assert_eq!(env.silent(&mut b).await["error"], "login_required");

    // signed in again: the old ID token names the same user, in another session
    let second = env.admin_tokens(&mut b, OWNER, "openid").await;
    let sid = |t: &Value| env.verify(s(t, "id_token"), "JWT", ADMIN)["sid"].clone();
    assert_ne!(sid(&first), sid(&second));
    let r = b.get(&logout(&old_hint)).await;
    assert_eq!(
        r.status,
        200,
        "asked first, not signed out: {} {}",
        r.location(),
        r.body
    );
    r.assert_page_headers();
    assert!(r.body.contains(r#"action="/oauth2/logout""#), "{}", r.body);
    assert_eq!(r.input("confirm").as_deref(), Some("yes"));
    assert!(r.input("csrf_token").is_some());
    assert!(r.set_cookie("gatehouse_session").is_none());
    assert!(
        env.silent(&mut b).await.contains_key("code"),
        "still signed in"
    );
    let (status, r) = env.admin_refresh(s(&second, "refresh_token"), None).await;
    assert_eq!(status, 200, "the session's refresh tokens live: {r}");

    // another user's ID token: asked too
    let mut other = env.browser();
    let dana = env.admin_tokens(&mut other, DANA, "openid").await;
    let r = b.get(&logout(s(&dana, "id_token"))).await;
    assert_eq!(r.status, 200, "{} {}", r.location(), r.body);
    assert!(r.body.contains(r#"action="/oauth2/logout""#));
    assert!(env.silent(&mut b).await.contains_key("code"));

    // the current session's ID token ends it at once
    let r = b.get(&logout(s(&second, "id_token"))).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with(&env.admin_cb), "{}", r.location());
    assert_eq!(env.silent(&mut b).await["error"], "login_required");
    env.stop().await;
}

// 14. attacks on the login lockout

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_cannot_get_past_the_lockout() {
    const ATTEMPTS: usize = 20;
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let page = b.get("/login").await;
    let csrf = page.input("csrf_token").expect("csrf_token");
    // one account, spelled three ways
    let spellings = [DANA.0, "DANA@ACME.TEST", " dana@acme.test "];
    let attempts = (0..ATTEMPTS).map(|i| {
        let password = format!("wrong password {i}");
        let req = b.post_request(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("email", spellings[i % spellings.len()]),
                ("password", &password),
            ],
        );
        async move { req.send().await.expect("request").status().as_u16() }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused + locked, ATTEMPTS, "401 or 429 only: {statuses:?}");
    assert!(
        refused as u64 <= gatehouse::ui::login::LOCKOUT_AFTER,
        "{refused} of {ATTEMPTS} parallel attempts had their password checked, more than \
         the {} that lock the account: {statuses:?}",
        gatehouse::ui::login::LOCKOUT_AFTER
    );
    for spelling in spellings {
        let r = post_login(&mut b, &csrf, (spelling, DANA.1)).await;
        assert_eq!(
            r.status, 429,
            "{spelling:?} with the right password: locked: {}",
            r.body
        );
        assert!(r.set_cookie("gatehouse_session").is_none());
    }
    assert!(audited(&env, "login.lockout", "email:dana@acme.test").await);
    env.stop().await;
}

// 15. hostile input

#[tokio::test]
async fn hostile_parameters_are_refused_without_a_server_error() {
    let env = Env::new(|_| {}).await;
    let many: Vec<String> = (0..=64).map(|i| format!("p{i}=v")).collect();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "more than 64 parameters",
            format!("grant_type=refresh_token&{}", many.join("&")).into_bytes(),
        ),
        (
            "a repeated parameter",
            b"grant_type=refresh_token&client_id=gatehouse-admin&refresh_token=a&refresh_token=b"
                .to_vec(),
        ),
        (
            "a body that is not UTF-8",
            b"grant_type=refresh_token&client_id=gatehouse-admin&refresh_token=\xff\xfe\xfd"
                .to_vec(),
        ),
    ];
    for (what, body) in &bodies {
        let (status, text) = env.raw_post("/oauth2/token", body.clone()).await;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_request")),
            "{what}: {text}"
        );
    }
    for path in [
        "/oauth2/introspect",
        "/oauth2/revoke",
        "/oauth2/authorize",
        "/oauth2/logout",
        "/login",
        "/consent",
    ] {
        for (what, body) in &bodies {
            let (status, text) = env.raw_post(path, body.clone()).await;
            assert!(status < 500, "{path}, {what}: {status} {text}");
        }
    }

    // values that would be kept or echoed back are bounded
    let mut b = env.browser();
    let p = pkce();
    let authorize = |name: &'static str, value: String| {
        let mut pairs = vec![
            ("client_id", ADMIN.to_owned()),
            ("redirect_uri", env.admin_cb.clone()),
            ("response_type", "code".to_owned()),
            ("scope", "openid".to_owned()),
            ("code_challenge", p.challenge.clone()),
            ("code_challenge_method", "S256".to_owned()),
        ];
        if name != "state" {
            pairs.push(("state", "st".to_owned()));
        }
        pairs.push((name, value));
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        authorize_path(&pairs)
    };
    let r = b.get(&authorize("state", "s".repeat(1024))).await;
    assert!(
        r.location().starts_with("/login?pending="),
        "a state of 1024 bytes is fine: {} {}",
        r.status,
        r.location()
    );
    let r = b.get(&authorize("state", "s".repeat(1025))).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.location().starts_with(&env.admin_cb), "{}", r.location());
    let back = params_of(r.location());
    assert_eq!(back["error"], "invalid_request", "{back:?}");
    assert!(
        !back.contains_key("state"),
        "an overlong state is not echoed"
    );
    assert!(
        r.location().len() < 1024,
        "nothing overlong is echoed: {}",
        r.location()
    );
    for name in ["nonce", "login_hint"] {
        let r = b.get(&authorize(name, "n".repeat(1025))).await;
        assert_eq!(r.status, 303, "{name}: {}", r.body);
        assert!(r.location().starts_with(&env.admin_cb), "{}", r.location());
        let back = params_of(r.location());
        assert_eq!(back["error"], "invalid_request", "{name}: {back:?}");
        assert_eq!(back["state"], "st");
        assert!(!back.contains_key("code"));
    }

    // a repeated client_id: nobody to send the error to
    let path = format!("{}&client_id={WEBAPP}", env.admin_path(&p, "openid", &[]));
    let r = b.get(&path).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.headers.get("location").is_none());
    assert!(r.header("content-type").starts_with("text/html"));
    r.assert_page_headers();
    assert!(r.body.contains("<h1>"), "{}", r.body);
    env.stop().await;
}

// 16. a code replayed while its first exchange runs

/// Two exchanges of one code fired at once, round after round: at most one may win,
/// and the other, a replay, must revoke what the winner issued, however the two
/// interleave.
async fn code_replay(env: Env) {
    const ROUNDS: usize = 40;
    let mut b = env.browser();
    env.admin_tokens(&mut b, OWNER, "openid").await;
    for round in 0..ROUNDS {
        let p = pkce();
        let r = b
            .get(&env.admin_path(&p, "openid", &[("prompt", "none")]))
            .await;
        let back = params_of(r.location());
        let code = back["code"].as_str();
        let (one, two) = tokio::join!(
            env.admin_exchange(code, &p.verifier),
            env.admin_exchange(code, &p.verifier)
        );
        let answers = [one, two];
        for (status, t) in &answers {
            if *status != 200 {
                assert_eq!(
                    (*status, t["error"].as_str()),
                    (400, Some("invalid_grant")),
                    "round {round}: {t}"
                );
            }
        }
        let won: Vec<&Value> = answers
            .iter()
            .filter(|(status, _)| *status == 200)
            .map(|(_, t)| t)
            .collect();
        assert!(won.len() <= 1, "round {round}: both exchanges succeeded");
        if let Some(t) = won.first() {
            let (status, r) = env.admin_refresh(s(t, "refresh_token"), None).await;
            assert_eq!(
                (status, r["error"].as_str()),
                (400, Some("invalid_grant")),
                "round {round}: the code was replayed, yet the refresh token its exchange \
                 issued still works: {r}"
            );
            let (status, _) = env.userinfo(s(t, "access_token")).await;
            assert_eq!(
                status, 401,
                "round {round}: the code was replayed, yet the access token its exchange \
                 issued still works"
            );
        }
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_replayed_during_its_exchange_revokes_what_it_issued() {
    code_replay(Env::new(|_| {}).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_replayed_during_its_exchange_revokes_what_it_issued_on_postgres_and_redis() {
    if let Some(env) = Env::on_postgres_and_redis().await {
        code_replay(env).await;
    }
}

// 17. page headers

#[tokio::test]
async fn pages_are_neither_cached_nor_framed() {
    let env = Env::new(|_| {}).await;
    let mut b = env.browser();
    let page = b.get("/login").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), "no-store");
    assert_eq!(page.header("x-frame-options"), "DENY");
    page.assert_page_headers();
    let to_login = b.get(&env.admin_path(&pkce(), "openid", &[])).await;
    to_login.assert_page_headers();
    let page = b.follow(&to_login).await;
    assert_eq!(page.status, 200);
    page.assert_page_headers();
    let csrf = page.input("csrf_token").expect("csrf_token");
    let failed = post_login(&mut b, &csrf, (DANA.0, "wrong password")).await;
    assert_eq!(failed.status, 401);
    failed.assert_page_headers();
    env.stop().await;
}
