//! Self-service sign-up, email verification and invitations, over HTTP against real
//! servers with mail in the outbox: the mailed links (from the issuer, single-use),
//! the button that verifies (a fetched link verifies nothing), the organization a
//! person who signed up gets, what sign-up does not give away (whether an address
//! is registered), the invitation API's refusals, and the granting rule checked
//! again when an invitation is accepted.
//!
//! [`Browser`] keeps cookies by hand and reads the forms' hidden fields from the
//! HTML; admin-API calls use client-credentials tokens of service accounts made
//! through the access layer at setup.

use std::collections::BTreeSet;
use std::time::Duration;

use gatehouse::access::policy::PolicyBinding;
use gatehouse::store::iam::UserRow;
use reqwest::Method;
use serde_json::{Value, json};

use crate::policies::World;
use crate::support::{self, Browser, Mail, Resp, client, secret};

/// How long a mail sent in the background may take to arrive.
const MAIL_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for a mail that must not come.
const QUIET: Duration = Duration::from_millis(300);
const SENT: &str = "Check your email";
const DEAD_VERIFY: &str = "This link does not work";
const DEAD_INVITE: &str = "This invitation link does not work";
const EXPIRED_FORM: &str = "This form has expired";
const PASSWORD: &str = "a good password";

// ---------------------------------------------------------------------------
// mail

// ---------------------------------------------------------------------------
// the admin API

/// A service account with an admin-API token.
struct Sa {
    client_id: String,
    token: String,
}

impl Sa {
    fn member(&self) -> String {
        format!("serviceAccount:{}", self.client_id)
    }
}

/// One admin-API answer.
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

    /// Asserts a problem of `kind` with `status`.
    #[track_caller]
    fn problem(&self, status: u16, kind: &str) -> &Api {
        assert_eq!(
            (self.status, self.body["type"].as_str().unwrap_or("")),
            (status, format!("urn:gatehouse:problem:{kind}").as_str()),
            "{}: {}",
            self.what,
            self.text
        );
        self
    }
}

/// A server with the world of [`World`] (`orgs/acme` owned by `owner@acme.test`,
/// `orgs/acme/projects/backend`, `orgs/other`, the verified `alice@acme.test` and
/// `bob@acme.test`) plus service accounts of `orgs/acme`: `admin`, owner of
/// `orgs/acme` and of the instance, and `nobody`, bound to nothing.
struct Env {
    w: World,
    http: reqwest::Client,
    admin: Sa,
    nobody: Sa,
    /// Sent with every browser request (a client address of this test's own, when
    /// the short-lived state is shared).
    browser_headers: Vec<(String, String)>,
}

impl Env {
    async fn new(adjust: impl FnOnce(&mut gatehouse::config::Config)) -> Env {
        let w = World::new(adjust).await;
        let http = client();
        let admin = service_account(
            &w,
            &http,
            "admin",
            &[("orgs/acme", "owner"), ("*", "owner")],
        )
        .await;
        let nobody = service_account(&w, &http, "nobody", &[]).await;
        Env {
            w,
            http,
            admin,
            nobody,
            browser_headers: Vec::new(),
        }
    }

    /// On PostgreSQL and Redis, or `None` when they are not configured. Redis is
    /// shared by every test and run, so the browser comes from an address of its own
    /// (through a trusted proxy) and the emails are made unique by the caller.
    async fn on_postgres_and_redis() -> Option<Env> {
        let db = support::postgres_url().await?;
        let redis = support::redis_url()?;
        let mut env = Env::new(|c| {
            c.database_url = secret(&db);
            c.redis_url = secret(&redis);
            c.trusted_proxies = vec!["127.0.0.1".parse().expect("cidr")];
        })
        .await;
        let r = gatehouse::crypto::random_bytes::<3>();
        env.browser_headers.push((
            "x-forwarded-for".into(),
            format!("10.{}.{}.{}", r[0], r[1], r[2]),
        ));
        Some(env)
    }

    fn base(&self) -> &str {
        &self.w.s.base
    }

    fn issuer(&self) -> &str {
        &self.w.s.state.issuer
    }

    fn browser(&self) -> Browser {
        let mut b = Browser::with_client(self.base(), self.http.clone()).no_server_errors();
        for (k, v) in &self.browser_headers {
            b.always(k, v);
        }
        b
    }

    async fn api(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Api {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/v1{path}", self.base()))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("admin API request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let what = format!("{method} /v1{path}");
        assert!(status < 500, "{what} answered {status}: {text}");
        Api {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            what,
        }
    }

    async fn get(&self, path: &str) -> Api {
        self.api(&self.admin.token, Method::GET, path, None).await
    }

    /// `POST /v1/orgs/acme/invitations` as `by`.
    async fn invite(&self, by: &Sa, email: &str, role: &str, scope: &str) -> Api {
        self.api(
            &by.token,
            Method::POST,
            "/orgs/acme/invitations",
            Some(json!({ "email": email, "role": role, "scope": scope })),
        )
        .await
    }

    async fn policy(&self, scope: &str) -> Value {
        self.get(&format!("/{scope}/policy")).await.ok(200).clone()
    }

    /// The members (or, with `pending`, the pending members) holding `role` in the
    /// policy of `scope`.
    async fn holders(&self, scope: &str, role: &str, pending: bool) -> Vec<String> {
        let p = self.policy(scope).await;
        let field = if pending {
            "pending_members"
        } else {
            "members"
        };
        p["bindings"]
            .as_array()
            .expect("bindings")
            .iter()
            .filter(|b| b["role"] == role)
            .flat_map(|b| b[field].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect()
    }

    /// The names of every organization.
    async fn orgs(&self) -> BTreeSet<String> {
        let page = self.get("/orgs?limit=100").await;
        page.ok(200)["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|o| o["name"].as_str().expect("name").to_owned())
            .collect()
    }

    /// Whether `POST /v1/check` allows `user:<email>` `permission` on `resource`.
    async fn allowed(&self, email: &str, permission: &str, resource: &str) -> bool {
        let a = self
            .api(
                &self.admin.token,
                Method::POST,
                "/check",
                Some(json!({
                    "principal": format!("user:{email}"),
                    "permission": permission,
                    "resource": resource,
                })),
            )
            .await;
        a.ok(200)["allowed"].as_bool().expect("allowed")
    }

    async fn user(&self, email: &str) -> Option<UserRow> {
        self.w
            .s
            .state
            .store
            .user_by_email(email)
            .await
            .expect("read")
    }

    /// Waits until this node's view holds every committed change.
    async fn settle(&self) {
        settle(&self.w).await;
    }

    // mail

    /// Every message in the outbox, oldest first.
    fn mails(&self) -> Vec<Mail> {
        support::mails(&self.w.s.state.config.data_dir)
    }

    fn mails_to(&self, email: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.contains(email))
            .collect()
    }

    /// Waits for the `n`th mail to `email` and returns it.
    #[track_caller]
    fn nth_mail(&self, email: &str, n: usize) -> impl Future<Output = Mail> + '_ {
        let caller = std::panic::Location::caller();
        let email = email.to_owned();
        async move {
            let deadline = tokio::time::Instant::now() + MAIL_WAIT;
            loop {
                let mails = self.mails_to(&email);
                if mails.len() >= n {
                    return mails[n - 1].clone();
                }
                if tokio::time::Instant::now() >= deadline {
                    panic!(
                        "{caller}: mail {n} to {email} did not arrive; the outbox: {:?}",
                        self.mails()
                    );
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// The mails to `email` once nothing more arrives for a moment.
    async fn quiet_mails_to(&self, email: &str) -> Vec<Mail> {
        tokio::time::sleep(QUIET).await;
        self.mails_to(email)
    }

    // pages

    /// Fills and posts the sign-up form in `b`.
    async fn sign_up(&self, b: &mut Browser, email: &str, name: &str, password: &str) -> Resp {
        let page = b.get("/signup").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.input("csrf_token").expect("csrf_token");
        b.post(
            "/signup",
            &[
                ("csrf_token", &csrf),
                ("email", email),
                ("display_name", name),
                ("password", password),
            ],
        )
        .await
    }

    /// Signs in through the login form in a new browser.
    async fn login(&self, email: &str, password: &str) -> Resp {
        let mut b = self.browser();
        let page = b.get("/login").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.input("csrf_token").expect("csrf_token");
        b.post(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("email", email),
                ("password", password),
            ],
        )
        .await
    }

    #[track_caller]
    fn signs_in(&self, email: &str, password: &str) -> impl Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        let (email, password) = (email.to_owned(), password.to_owned());
        async move {
            let r = self.login(&email, &password).await;
            assert_eq!(
                (r.status, r.title().as_str()),
                (200, "You are signed in"),
                "{caller}: {email} signs in: {}",
                r.body
            );
            assert!(r.set_cookie("gatehouse_session").is_some(), "{caller}");
        }
    }

    /// Opens a link and presses the page's button (the form's hidden fields, plus
    /// `extra`); returns the page and the answer.
    async fn press(&self, b: &mut Browser, link: &str, extra: &[(&str, &str)]) -> (Resp, Resp) {
        let page = b.get(link).await;
        assert_eq!(page.status, 200, "{link}: {}", page.body);
        let action = if page.posts_to("/verify") {
            "/verify"
        } else if page.posts_to("/invite") {
            "/invite"
        } else {
            panic!("{link}: no form: {}", page.body)
        };
        let csrf = page.input("csrf_token").expect("csrf_token");
        let token = page.input("token").expect("token");
        let mut pairs = vec![("csrf_token", csrf.as_str()), ("token", token.as_str())];
        pairs.extend_from_slice(extra);
        let answer = b.post(action, &pairs).await;
        (page, answer)
    }

    async fn stop(self) {
        self.w.s.stop().await;
    }
}

/// Creates a service account of `orgs/acme` with a secret and the bindings `roles`
/// (scope, role), written through the access layer as the owner; returns it with an
/// admin-API token.
async fn service_account(
    w: &World,
    http: &reqwest::Client,
    slug: &str,
    roles: &[(&str, &str)],
) -> Sa {
    let (client_id, client_secret) = {
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
        let minted = gatehouse::access::accounts::mint_secret(
            &ctx,
            &w.s.state.kek,
            &w.owner,
            &sa.name,
            None,
        )
        .await
        .expect("secret");
        (sa.client_id, minted.client_secret)
    };
    settle(w).await;
    let member = format!("serviceAccount:{client_id}");
    for (scope, role) in roles {
        let p = w.get(&w.owner, scope).await.expect("read policy");
        let mut bindings: Vec<PolicyBinding> = p.bindings.clone();
        match bindings.iter_mut().find(|b| b.role == *role) {
            Some(b) => b.members.push(member.clone()),
            None => bindings.push(crate::policies::binding(role, &[&member])),
        }
        {
            let v = w.view();
            let ctx = w.ctx(&v);
            gatehouse::access::policy::set(&ctx, &w.owner, scope, &p.etag, &bindings)
                .await
                .expect("policy");
        }
        settle(w).await;
    }
    let r = http
        .post(format!("{}/oauth2/token", w.s.base))
        .header("authorization", support::basic(&client_id, &client_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "token: {body}");
    Sa {
        client_id,
        token: body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
    }
}

/// Waits until the node's view reflects every committed change (its own follower
/// reloads; a second, concurrent reload could store an older view).
async fn settle(w: &World) {
    let want = w.s.state.store.current_seq().await.expect("seq");
    for _ in 0..1000 {
        if w.view().as_ref().as_ref().is_some_and(|v| v.seq >= want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the view did not reach change {want}");
}

/// A fresh address at `example.com` beginning with `local`.
fn unique(local: &str) -> String {
    format!(
        "{local}.{}@example.com",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// The organization named in the page of a verification that created one.
#[track_caller]
fn org_of(page: &Resp) -> String {
    let lead = page.lead();
    let rest = lead
        .strip_prefix("Your organization ")
        .unwrap_or_else(|| panic!("no organization in: {}", page.body));
    rest.split_whitespace().next().expect("name").to_owned()
}

// ---------------------------------------------------------------------------
// 1. sign-up, verification by button, an organization of one's own

async fn sign_up_flow(env: Env) {
    let email = unique("new.person");
    let issuer = env.issuer().to_owned();
    let orgs_before = env.orgs().await;

    // the form, then "check your email"
    let mut b = env.browser();
    let r = env.sign_up(&mut b, &email, "New Person", PASSWORD).await;
    r.is(200, SENT);
    assert!(r.lead().contains(&email), "{}", r.body);

    // the account exists, unverified, and cannot sign in yet
    let user = env.user(&email).await.expect("the account exists");
    assert!(!user.email_verified);
    assert!(!user.disabled);
    assert_eq!(user.display_name, "New Person");
    let r = env.login(&email, PASSWORD).await;
    r.is(403, "Verify your email address first");
    assert!(r.set_cookie("gatehouse_session").is_none());

    // the mail: a link to /verify built from the issuer
    let mail = env.nth_mail(&email, 1).await;
    assert!(mail.subject.starts_with("Verify your email"), "{mail:?}");
    let link = mail.link(&issuer, "/verify");

    // opening it shows a button and verifies nothing, however often it is fetched
    let mut scanner = env.browser();
    for _ in 0..2 {
        let page = scanner.get(&link).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.posts_to("/verify"), "{}", page.body);
        assert!(page.body.contains("<button"), "{}", page.body);
        assert!(page.input("csrf_token").is_some_and(|t| !t.is_empty()));
    }
    let user = env.user(&email).await.expect("account");
    assert!(
        !user.email_verified,
        "fetching the link verified the account"
    );
    assert_eq!(
        env.orgs().await,
        orgs_before,
        "fetching the link made an org"
    );

    // pressing the button verifies and makes the person's organization
    let mut b = env.browser();
    let (page, r) = env.press(&mut b, &link, &[]).await;
    assert_eq!(page.input("token").as_deref(), link.split("token=").nth(1));
    r.is(200, "Your email is verified");
    let org = org_of(&r);
    let user = env.user(&email).await.expect("account");
    assert!(user.email_verified);
    let slug = org.strip_prefix("orgs/").expect("an organization");
    // `new.person.1a2b3c4d` -> `new-person-1a2b3c4d-<4 random>`
    let local = email.split('@').next().expect("local").replace('.', "-");
    let suffix = slug
        .strip_prefix(&format!("{local}-"))
        .unwrap_or_else(|| panic!("{slug} is not made from {email}"));
    assert_eq!(suffix.len(), 4, "{slug}");
    assert!(
        gatehouse::iam::names::valid_slug(slug),
        "{slug} is a valid slug"
    );
    let mut orgs_after = orgs_before.clone();
    orgs_after.insert(org.clone());
    assert_eq!(env.orgs().await, orgs_after);
    let o = env.get(&format!("/{org}")).await;
    assert_eq!(o.ok(200)["name"], org.as_str());
    assert_eq!(
        env.holders(&org, "owner", false).await,
        vec![format!("user:{email}")],
        "the person owns the organization"
    );
    env.settle().await;
    assert!(env.allowed(&email, "iam.policies.set", &org).await);
    env.signs_in(&email, PASSWORD).await;

    // the link works once
    let again = env.browser().get(&link).await;
    again.is(400, DEAD_VERIFY);
    let token = page.input("token").expect("token");
    let csrf = page.input("csrf_token").expect("csrf");
    let r = b
        .post("/verify", &[("csrf_token", &csrf), ("token", &token)])
        .await;
    r.is(400, DEAD_VERIFY);
    assert_eq!(env.orgs().await, orgs_after, "a second press made an org");

    // a made-up token, or none
    let mut other = env.browser();
    other
        .get("/verify?token=bm90LWEtcmVhbC10b2tlbi1hdC1hbGwtbm90LWF0LWFsbA")
        .await
        .is(400, DEAD_VERIFY);
    other.get("/verify").await.is(400, DEAD_VERIFY);
    let csrf = other
        .get("/signup")
        .await
        .input("csrf_token")
        .expect("csrf");
    other
        .post("/verify", &[("csrf_token", &csrf), ("token", "made-up")])
        .await
        .is(400, DEAD_VERIFY);
    env.stop().await;
}

#[tokio::test]
async fn sign_up_mails_a_link_whose_button_verifies_and_makes_an_organization() {
    sign_up_flow(Env::new(|_| {}).await).await;
}

#[tokio::test]
async fn sign_up_on_postgres_and_redis() {
    if let Some(env) = Env::on_postgres_and_redis().await {
        sign_up_flow(env).await;
    }
}

// 2. no enumeration

#[tokio::test]
async fn signing_up_with_a_registered_email_tells_nobody_and_mails_the_owner() {
    let env = Env::new(|_| {}).await;
    let fresh = "fresh@example.com";
    let taken = "owner@acme.test";
    let owner_before = env.user(taken).await.expect("owner");
    let orgs_before = env.orgs().await;

    let new = env
        .sign_up(&mut env.browser(), fresh, "Fresh", PASSWORD)
        .await;
    let old = env
        .sign_up(&mut env.browser(), taken, "Impostor", "another password")
        .await;
    new.is(200, SENT);
    old.is(200, SENT);
    assert_eq!(
        new.body.replace(fresh, "EMAIL"),
        old.body.replace(taken, "EMAIL"),
        "the pages differ"
    );
    assert_eq!(
        new.headers.get("content-type"),
        old.headers.get("content-type")
    );

    // the owner is told, with no verification link
    let mail = env.nth_mail(taken, 1).await;
    assert!(mail.subject.contains("account"), "{mail:?}");
    assert!(mail.body.contains("has one already"), "{mail:?}");
    assert!(
        mail.body.contains(&format!("{}/login", env.issuer())),
        "{mail:?}"
    );
    assert!(mail.try_link(env.issuer(), "/verify").is_none(), "{mail:?}");
    let fresh_mail = env.nth_mail(fresh, 1).await;
    assert!(fresh_mail.try_link(env.issuer(), "/verify").is_some());
    assert_eq!(env.quiet_mails_to(taken).await.len(), 1);

    // the account is untouched: same id, name and password; no second one
    let owner = env.user(taken).await.expect("owner");
    assert_eq!(owner.id, owner_before.id);
    assert_eq!(owner.display_name, owner_before.display_name);
    assert_eq!(owner.password_hash, owner_before.password_hash);
    let found = env
        .get("/users?email=owner%40acme.test")
        .await
        .ok(200)
        .clone();
    assert_eq!(found["users"].as_array().map(Vec::len), Some(1), "{found}");
    env.login(taken, "another password")
        .await
        .is(401, "Sign in");
    env.signs_in(taken, "owner password").await;
    assert_eq!(env.orgs().await, orgs_before);
    env.stop().await;
}

// 3. sign-up closed

#[tokio::test]
async fn sign_up_can_be_closed() {
    let env = Env::new(|c| c.signup_enabled = false).await;
    let mut b = env.browser();
    let page = b.get("/signup").await;
    page.is(403, "Sign-up is closed");
    assert!(!page.posts_to("/signup"));
    // a form from elsewhere, with a good token, creates nothing
    let login = b.get("/login").await;
    let csrf = login.input("csrf_token").expect("csrf");
    let r = b
        .post(
            "/signup",
            &[
                ("csrf_token", &csrf),
                ("email", "closed@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    r.is(403, "Sign-up is closed");
    assert!(env.user("closed@example.com").await.is_none());
    assert!(env.quiet_mails_to("closed@example.com").await.is_empty());
    env.stop().await;
}

// 4. CSRF

#[tokio::test]
async fn forms_without_their_csrf_token_are_refused() {
    let env = Env::new(|_| {}).await;
    let email = "csrf@example.com";
    let invitee = "csrf-invitee@example.com";

    // sign-up: no token, a token of another browser, no cookie
    let mut b = env.browser();
    b.get("/signup").await;
    let fields = [("email", email), ("password", PASSWORD)];
    b.post("/signup", &fields).await.is(403, EXPIRED_FORM);
    let mut other = env.browser();
    let foreign = other
        .get("/signup")
        .await
        .input("csrf_token")
        .expect("csrf");
    let mut with_foreign = fields.to_vec();
    with_foreign.push(("csrf_token", &foreign));
    b.post("/signup", &with_foreign).await.is(403, EXPIRED_FORM);
    env.browser()
        .post("/signup", &with_foreign)
        .await
        .is(403, EXPIRED_FORM);
    assert!(env.user(email).await.is_none(), "a forged sign-up went in");

    // a real sign-up, then /verify without the token
    env.sign_up(&mut env.browser(), email, "", PASSWORD)
        .await
        .is(200, SENT);
    let link = env.nth_mail(email, 1).await.link(env.issuer(), "/verify");
    let mut b = env.browser();
    let page = b.get(&link).await;
    let token = page.input("token").expect("token");
    b.post("/verify", &[("token", &token)])
        .await
        .is(403, EXPIRED_FORM);
    b.post("/verify", &[("token", &token), ("csrf_token", &foreign)])
        .await
        .is(403, EXPIRED_FORM);
    assert!(!env.user(email).await.expect("account").email_verified);

    // /invite without the token
    env.invite(&env.admin, invitee, "viewer", "orgs/acme")
        .await
        .ok(201);
    let link = env.nth_mail(invitee, 1).await.link(env.issuer(), "/invite");
    let mut b = env.browser();
    let page = b.get(&link).await;
    let token = page.input("token").expect("token");
    b.post("/invite", &[("token", &token), ("password", PASSWORD)])
        .await
        .is(403, EXPIRED_FORM);
    assert!(env.user(invitee).await.is_none());

    // both links still work with the token
    env.press(&mut env.browser(), &link, &[("password", PASSWORD)])
        .await
        .1
        .is(200, "Welcome");
    let link = env.nth_mail(email, 1).await.link(env.issuer(), "/verify");
    env.press(&mut env.browser(), &link, &[])
        .await
        .1
        .is(200, "Your email is verified");
    env.stop().await;
}

// 5. an invitation to a new address

async fn invitation_flow(env: Env) {
    let email = unique("invitee");
    let issuer = env.issuer().to_owned();
    let orgs_before = env.orgs().await;
    let etag_before = env.policy("orgs/acme").await["etag"].clone();

    let r = env.invite(&env.admin, &email, "viewer", "orgs/acme").await;
    let inv = r.ok(201);
    assert_eq!(inv["email"], email.as_str());
    assert_eq!(inv["role"], "viewer");
    assert_eq!(inv["scope"], "orgs/acme");
    assert_eq!(inv["invited_by"], env.admin.member().as_str());
    assert!(inv["id"].is_string());

    // the mail
    let mail = env.nth_mail(&email, 1).await;
    assert!(mail.subject.contains("orgs/acme"), "{mail:?}");
    assert!(mail.body.contains("viewer on orgs/acme"), "{mail:?}");
    assert!(mail.body.contains(&env.admin.member()), "{mail:?}");
    let link = mail.link(&issuer, "/invite");
    assert!(link.starts_with(&format!("{issuer}/invite?token=")));

    // pending, with a new etag; no account yet
    let pending = env.policy("orgs/acme").await;
    assert_ne!(pending["etag"], etag_before, "the invitation kept the etag");
    assert_eq!(
        env.holders("orgs/acme", "viewer", true).await,
        vec![format!("user:{email}")],
        "{pending}"
    );
    assert!(env.holders("orgs/acme", "viewer", false).await.is_empty());
    assert!(env.user(&email).await.is_none());

    // the page: a new account's form
    let mut b = env.browser();
    let page = b.get(&link).await;
    page.is(200, "You are invited");
    assert!(page.posts_to("/invite"));
    assert!(page.has_input("password"), "{}", page.body);
    assert!(page.lead().contains(&email), "{}", page.body);
    assert!(page.lead().contains("viewer on orgs/acme"), "{}", page.body);
    let csrf = page.input("csrf_token").expect("csrf");
    let token = page.input("token").expect("token");

    // a short password: the form again, and the link still works
    let r = b
        .post(
            "/invite",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("display_name", "Invited Person"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.alert().unwrap_or_default().contains("8 characters"),
        "{}",
        r.body
    );
    assert!(r.has_input("password"));
    assert!(env.user(&email).await.is_none());
    b.get(&link).await.is(200, "You are invited");

    // a good password: a verified account and the binding, no organization
    let r = b
        .post(
            "/invite",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("display_name", "Invited Person"),
                ("password", PASSWORD),
            ],
        )
        .await;
    r.is(200, "Welcome");
    assert!(r.lead().contains("viewer on orgs/acme"), "{}", r.body);
    let user = env.user(&email).await.expect("the account");
    assert!(user.email_verified);
    assert_eq!(user.display_name, "Invited Person");
    let after = env.policy("orgs/acme").await;
    assert_ne!(after["etag"], pending["etag"], "acceptance kept the etag");
    assert_eq!(
        env.holders("orgs/acme", "viewer", false).await,
        vec![format!("user:{email}")],
        "{after}"
    );
    assert!(env.holders("orgs/acme", "viewer", true).await.is_empty());
    env.settle().await;
    assert!(env.allowed(&email, "iam.policies.get", "orgs/acme").await);
    assert!(
        env.allowed(&email, "iam.policies.get", "orgs/acme/projects/backend")
            .await
    );
    assert!(!env.allowed(&email, "iam.policies.set", "orgs/acme").await);
    assert_eq!(
        env.orgs().await,
        orgs_before,
        "the invitee got an organization"
    );
    env.signs_in(&email, PASSWORD).await;

    // the link works once
    b.get(&link).await.is(400, DEAD_INVITE);
    let r = b
        .post(
            "/invite",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("password", PASSWORD),
            ],
        )
        .await;
    r.is(400, DEAD_INVITE);
    env.browser()
        .get("/invite?token=made-up")
        .await
        .is(400, DEAD_INVITE);
    env.stop().await;
}

#[tokio::test]
async fn an_invitation_link_makes_a_verified_account_with_the_binding_and_no_organization() {
    invitation_flow(Env::new(|_| {}).await).await;
}

#[tokio::test]
async fn invitations_on_postgres_and_redis() {
    if let Some(env) = Env::on_postgres_and_redis().await {
        invitation_flow(env).await;
    }
}

// 6. an invitation to an address with a verified account

#[tokio::test]
async fn a_verified_account_accepts_an_invitation_without_a_password() {
    let env = Env::new(|_| {}).await;
    let email = "alice@acme.test";
    let orgs_before = env.orgs().await;
    env.invite(&env.admin, email, "viewer", "orgs/acme/projects/backend")
        .await
        .ok(201);
    let link = env.nth_mail(email, 1).await.link(env.issuer(), "/invite");
    assert_eq!(
        env.holders("orgs/acme/projects/backend", "viewer", true)
            .await,
        vec![format!("user:{email}")]
    );
    let mut b = env.browser();
    let (page, r) = env.press(&mut b, &link, &[]).await;
    assert!(!page.has_input("password"), "{}", page.body);
    assert!(page.body.contains("Accept the invitation"), "{}", page.body);
    r.is(200, "Welcome");
    assert!(
        r.lead().contains("viewer on orgs/acme/projects/backend"),
        "{}",
        r.body
    );
    assert_eq!(
        env.holders("orgs/acme/projects/backend", "viewer", false)
            .await,
        vec![format!("user:{email}")]
    );
    assert!(
        env.holders("orgs/acme/projects/backend", "viewer", true)
            .await
            .is_empty()
    );
    env.settle().await;
    assert!(
        env.allowed(email, "iam.policies.get", "orgs/acme/projects/backend")
            .await
    );
    assert!(!env.allowed(email, "iam.policies.get", "orgs/acme").await);
    assert_eq!(env.orgs().await, orgs_before);
    b.get(&link).await.is(400, DEAD_INVITE);
    env.stop().await;
}

// 7. the granting rule, again at acceptance

#[tokio::test]
async fn an_inviter_who_lost_the_right_to_grant_grants_nothing_at_acceptance() {
    let env = Env::new(|_| {}).await;
    let deputy = service_account(&env.w, &env.http, "deputy", &[("orgs/acme", "owner")]).await;
    let email = "late@example.com";
    let scope = "orgs/acme/projects/backend";
    let orgs_before = env.orgs().await;

    env.invite(&deputy, email, "viewer", scope).await.ok(201);
    let link = env.nth_mail(email, 1).await.link(env.issuer(), "/invite");
    assert!(env.nth_mail(email, 1).await.body.contains(&deputy.member()));

    // another owner removes the deputy's owner binding
    let p = env.policy("orgs/acme").await;
    let mut bindings = p["bindings"].as_array().expect("bindings").clone();
    for b in &mut bindings {
        if b["role"] == "owner" {
            let members: Vec<Value> = b["members"]
                .as_array()
                .expect("members")
                .iter()
                .filter(|m| m.as_str() != Some(deputy.member().as_str()))
                .cloned()
                .collect();
            b["members"] = Value::Array(members);
        }
    }
    env.api(
        &env.admin.token,
        Method::PUT,
        "/orgs/acme/policy",
        Some(json!({ "etag": p["etag"], "bindings": bindings })),
    )
    .await
    .ok(200);
    assert!(
        !env.holders("orgs/acme", "owner", false)
            .await
            .contains(&deputy.member())
    );
    // the invitation, on the project, is still pending
    assert_eq!(
        env.holders(scope, "viewer", true).await,
        vec![format!("user:{email}")]
    );
    env.settle().await;

    // accepting creates no binding, and says so
    let mut b = env.browser();
    let (page, r) = env.press(&mut b, &link, &[("password", PASSWORD)]).await;
    assert!(page.has_input("password"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.lead().contains("could no longer be honored"),
        "{}",
        r.body
    );
    assert!(env.holders(scope, "viewer", false).await.is_empty());
    assert!(env.holders(scope, "viewer", true).await.is_empty());
    env.settle().await;
    assert!(!env.allowed(email, "iam.policies.get", scope).await);
    assert_eq!(
        env.orgs().await,
        orgs_before,
        "the invitee got an organization"
    );
    let refused = env
        .w
        .s
        .state
        .store
        .audit_events(None, 1000)
        .await
        .expect("audit")
        .into_iter()
        .any(|e| e.action == "invitation.refuse" && e.actor == format!("user:{email}"));
    assert!(refused, "the refusal is audited");
    b.get(&link).await.is(400, DEAD_INVITE);
    env.stop().await;
}

// 8. what the invitation API refuses

#[tokio::test]
async fn the_invitation_api_refuses_what_the_inviter_cannot_do() {
    let env = Env::new(|_| {}).await;
    // `organization.owner` is not inherited: it may invite to `orgs/acme` but not grant
    // the inheriting `owner`, which reaches the projects beneath.
    let narrow = service_account(
        &env.w,
        &env.http,
        "narrow",
        &[("orgs/acme", "organization.owner")],
    )
    .await;
    let who = "refused@example.com";

    env.invite(&narrow, who, "owner", "orgs/acme")
        .await
        .problem(403, "cannot-grant");
    env.invite(&env.admin, who, "viewer", "orgs/other")
        .await
        .problem(400, "validation");
    let outside = env.invite(&env.admin, who, "viewer", "orgs/other").await;
    assert_eq!(outside.body["field"], "scope", "{}", outside.text);
    let outside = env.invite(&env.admin, who, "viewer", "*").await;
    outside.problem(400, "validation");
    assert_eq!(outside.body["field"], "scope", "{}", outside.text);
    env.invite(&env.nobody, who, "viewer", "orgs/acme")
        .await
        .problem(403, "forbidden");
    assert!(
        env.quiet_mails_to(who).await.is_empty(),
        "a refused invitation mailed"
    );
    assert!(
        env.w
            .s
            .state
            .store
            .invitations_for(who)
            .await
            .expect("read")
            .is_empty()
    );

    // twice: the second is a conflict, with no second mail
    env.invite(&env.admin, who, "viewer", "orgs/acme")
        .await
        .ok(201);
    env.invite(&env.admin, who, "viewer", "orgs/acme")
        .await
        .problem(409, "invariant");
    env.nth_mail(who, 1).await;
    assert_eq!(env.quiet_mails_to(who).await.len(), 1);
    // another role or scope is another invitation
    env.invite(&env.admin, who, "editor", "orgs/acme")
        .await
        .ok(201);
    env.invite(&env.admin, who, "viewer", "orgs/acme/projects/backend")
        .await
        .ok(201);
    env.stop().await;
}

// 9. an unverified sign-up, then an invitation

#[tokio::test]
async fn an_invitation_link_verifies_an_unverified_sign_up_without_an_organization() {
    let env = Env::new(|_| {}).await;
    let email = "sam@example.com";
    let orgs_before = env.orgs().await;
    env.sign_up(&mut env.browser(), email, "Sam", PASSWORD)
        .await
        .is(200, SENT);
    let verify_link = env.nth_mail(email, 1).await.link(env.issuer(), "/verify");
    assert!(!env.user(email).await.expect("account").email_verified);

    env.invite(&env.admin, email, "viewer", "orgs/acme")
        .await
        .ok(201);
    let link = env.nth_mail(email, 2).await.link(env.issuer(), "/invite");
    let mut b = env.browser();
    let page = b.get(&link).await;
    page.is(200, "You are invited");
    // (a form that asks for a password gets one)
    let extra: &[(&str, &str)] = if page.has_input("password") {
        &[("password", PASSWORD)]
    } else {
        &[]
    };
    let (_, r) = env.press(&mut b, &link, extra).await;
    r.is(200, "Welcome");
    assert!(r.lead().contains("viewer on orgs/acme"), "{}", r.body);
    let user = env.user(email).await.expect("account");
    assert!(user.email_verified, "the invitation did not verify");
    assert_eq!(
        env.holders("orgs/acme", "viewer", false).await,
        vec![format!("user:{email}")]
    );
    env.settle().await;
    assert!(env.allowed(email, "iam.policies.get", "orgs/acme").await);
    assert_eq!(
        env.orgs().await,
        orgs_before,
        "the invitee got an organization"
    );
    env.signs_in(email, PASSWORD).await;

    // the sign-up's own link, pressed later, makes no organization either
    let (_, r) = env.press(&mut env.browser(), &verify_link, &[]).await;
    r.is(200, "Your email is verified");
    assert_eq!(
        env.orgs().await,
        orgs_before,
        "the late verification made an org"
    );
    env.stop().await;
}

// found while writing the above

/// The broken-link page says "If your account is not verified yet, sign up again
/// with the same address to get a new link"; signing up again is the only way an
/// unverified account can get one.
#[tokio::test]
async fn signing_up_again_before_verifying_mails_a_new_link() {
    let env = Env::new(|_| {}).await;
    let email = "again@example.com";
    env.sign_up(&mut env.browser(), email, "", PASSWORD)
        .await
        .is(200, SENT);
    let first = env.nth_mail(email, 1).await.link(env.issuer(), "/verify");
    let hint = env.browser().get("/verify?token=expired").await;
    hint.is(400, DEAD_VERIFY);
    assert!(hint.body.contains("sign up again with the same address"));
    env.sign_up(&mut env.browser(), email, "", PASSWORD)
        .await
        .is(200, SENT);
    let second = env.nth_mail(email, 2).await;
    let link = second.try_link(env.issuer(), "/verify").unwrap_or_else(|| {
        panic!(
            "signing up again with an unverified address mailed no new link, \
             so the account can never be verified: {second:?}"
        )
    });
    assert_ne!(link, first);
    env.press(&mut env.browser(), &link, &[])
        .await
        .1
        .is(200, "Your email is verified");
    env.stop().await;
}

/// An invitation link outlives its invitation (withdrawn by a policy write); opening
/// it must not give a self-service organization, which invitation links never do.
#[tokio::test]
async fn a_withdrawn_invitations_link_makes_no_organization() {
    let env = Env::new(|c| c.signup_enabled = false).await;
    let email = "withdrawn@example.com";
    let orgs_before = env.orgs().await;
    env.invite(&env.admin, email, "viewer", "orgs/acme")
        .await
        .ok(201);
    let link = env.nth_mail(email, 1).await.link(env.issuer(), "/invite");

    // an owner writes the policy without the invitee: the invitation is gone
    let p = env.policy("orgs/acme").await;
    let bindings: Vec<Value> = p["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .filter(|b| b["members"].as_array().is_some_and(|m| !m.is_empty()))
        .map(|b| {
            let mut b = b.clone();
            b.as_object_mut().expect("object").remove("pending_members");
            b
        })
        .collect();
    env.api(
        &env.admin.token,
        Method::PUT,
        "/orgs/acme/policy",
        Some(json!({ "etag": p["etag"], "bindings": bindings })),
    )
    .await
    .ok(200);
    assert!(env.holders("orgs/acme", "viewer", true).await.is_empty());
    env.settle().await;

    let mut b = env.browser();
    let page = b.get(&link).await;
    if page.status == 200 {
        let (_, r) = env.press(&mut b, &link, &[("password", PASSWORD)]).await;
        assert!(r.status < 500, "{}", r.body);
        assert_eq!(
            env.orgs().await,
            orgs_before,
            "a withdrawn invitation's link made an organization \
             (with sign-up closed), answering: {}",
            r.lead()
        );
    } else {
        page.is(400, DEAD_INVITE);
    }
    env.stop().await;
}

/// Someone signs up with another person's address (unverified, with a password
/// only they know), and that person is then invited: accepting the invitation must
/// not leave the account verified with the first one's password.
#[tokio::test]
async fn an_unverified_sign_up_cannot_preclaim_an_invited_address() {
    let env = Env::new(|_| {}).await;
    let victim = "victim@example.com";
    let squatter_password = "squatter password";
    env.sign_up(&mut env.browser(), victim, "Victim", squatter_password)
        .await
        .is(200, SENT);
    env.invite(&env.admin, victim, "viewer", "orgs/acme")
        .await
        .ok(201);
    let link = env.nth_mail(victim, 2).await.link(env.issuer(), "/invite");
    let mut b = env.browser();
    let page = b.get(&link).await;
    page.is(200, "You are invited");
    let extra: &[(&str, &str)] = if page.has_input("password") {
        &[("password", "the victim's password")]
    } else {
        &[]
    };
    let (_, r) = env.press(&mut b, &link, extra).await;
    r.is(200, "Welcome");
    assert!(env.user(victim).await.expect("account").email_verified);
    let r = env.login(victim, squatter_password).await;
    assert_ne!(
        r.status,
        200,
        "the password set by an unverified sign-up signs in to the invitee's account \
         after the invitee accepted (the invite page asked for no password): {}",
        r.title()
    );
    env.stop().await;
}
