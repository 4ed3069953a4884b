//! Mail to account holders and the password reset it carries, over HTTP against
//! real servers: delivery to a local SMTP relay or into the outbox, the link (from
//! the issuer, single-use, expiring), what a reset revokes, and what the pages do
//! not give away (whether an account exists) or let through (cross-site posts,
//! floods of requests).
//!
//! [`Browser`] is a trimmed copy of the one in `oidc_flow`: a cookie jar kept by
//! hand, no redirects followed, hidden fields read from the HTML.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use gatehouse::ephemeral::EphemeralStore;
use gatehouse::store::iam::{self, UserRow};
use serde_json::Value;

use crate::policies::World;
use crate::support::{
    self, Browser, Pkce, Resp, SmtpRelay, client, form, params_of, pkce, quoted_printable, secret,
};

const ADMIN: &str = "gatehouse-admin";
const ADMIN_CB: &str = "http://127.0.0.1:53682/callback";
const OLD: &str = "old password 1";
const NEW: &str = "new password 2";
const SENT_TITLE: &str = "Check your email";
const DEAD_LINK: &str = "This link does not work";
const CHANGED: &str = "Your password is changed";
/// How long a mail sent in the background may take to arrive.
const MAIL_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for a mail that must not come, once the requests are answered.
const QUIET: Duration = Duration::from_millis(300);

/// The account-mail steps of a browser.
impl Browser {
    /// `GET /reset`, then posts its form for `email`.
    async fn ask_reset(&mut self, email: &str) -> Resp {
        let page = self.get("/reset").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.input("csrf_token").expect("csrf_token on /reset");
        self.post("/reset", &[("csrf_token", &csrf), ("email", email)])
            .await
    }

    /// Opens a reset link and asserts it shows the new-password form; returns the
    /// form's CSRF token and link token.
    async fn open_link(&mut self, link: &str) -> (String, String) {
        let page = self.get(link).await;
        assert_eq!(page.status, 200, "the link shows a form: {}", page.body);
        assert!(page.posts_to("/reset/confirm"), "{}", page.body);
        assert!(page.body.contains(r#"name="password""#), "{}", page.body);
        let csrf = page.input("csrf_token").expect("csrf_token");
        let token = page.input("token").expect("token");
        assert_eq!(token, token_of(link), "the form carries the link's token");
        (csrf, token)
    }

    /// Opens a reset link and sets `password` through its form.
    async fn set_password(&mut self, link: &str, password: &str) -> Resp {
        let (csrf, token) = self.open_link(link).await;
        self.post(
            "/reset/confirm",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("password", password),
            ],
        )
        .await
    }

    /// Authorizes the admin client (signing in as `who` when asked) and exchanges
    /// the code; returns the tokens.
    async fn admin_tokens(&mut self, who: (&str, &str)) -> Value {
        let p = pkce();
        let r = self.get(&admin_path(&p, &[])).await;
        let back = self.run_to_client(r, Some(who), "allow").await;
        assert!(back.starts_with(ADMIN_CB), "back to the client: {back}");
        let back = params_of(&back);
        let (status, t) = oauth_token(
            &self.base,
            &[
                ("grant_type", "authorization_code"),
                ("code", &back["code"]),
                ("redirect_uri", ADMIN_CB),
                ("client_id", ADMIN),
                ("code_verifier", &p.verifier),
            ],
        )
        .await;
        assert_eq!(status, 200, "{t}");
        t
    }

    /// An authorization request with `prompt=none`: what comes back to the client.
    async fn silent(&mut self) -> BTreeMap<String, String> {
        let r = self.get(&admin_path(&pkce(), &[("prompt", "none")])).await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert!(r.location().starts_with(ADMIN_CB), "{}", r.location());
        params_of(r.location())
    }
}

fn admin_path(p: &Pkce, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("client_id", ADMIN),
        ("redirect_uri", ADMIN_CB),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "st"),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    pairs.extend_from_slice(extra);
    format!("/oauth2/authorize?{}", form(&pairs))
}

async fn oauth_token(base: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
    let r = client()
        .post(format!("{base}/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A mail as sent: its recipient and the whole message.
#[derive(Debug)]
struct Sent {
    to: String,
    raw: String,
}

impl Sent {
    /// The body, quoted-printable decoded.
    fn body(&self) -> String {
        let (head, body) = self
            .raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("headers and a body: {}", self.raw));
        let head = head.to_ascii_lowercase();
        if head.contains("content-transfer-encoding: base64") {
            let b: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("base64 body");
            return String::from_utf8(bytes).expect("utf-8 body");
        }
        quoted_printable(body)
    }

    /// The reset link in the body.
    fn link(&self) -> String {
        let body = self.body();
        let at = body
            .find("/reset/confirm?token=")
            .unwrap_or_else(|| panic!("a reset link in the mail: {body}"));
        let start = body[..at].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let end = body[at..]
            .find(char::is_whitespace)
            .map_or(body.len(), |i| at + i);
        body[start..end].to_owned()
    }
}

/// The `token` parameter of a reset link.
fn token_of(link: &str) -> String {
    params_of(link).get("token").cloned().unwrap_or_default()
}

/// A unique address (so suites sharing Redis never share a throttle count).
fn unique(name: &str) -> String {
    format!("{name}.{}@acme.test", uuid::Uuid::new_v4().simple())
}

/// A server with the bootstrap's owner and the admin client; users are added by
/// each test.
struct Env {
    w: World,
}

impl Env {
    async fn new(adjust: impl FnOnce(&mut gatehouse::config::Config)) -> Env {
        Env {
            w: World::new(adjust).await,
        }
    }

    /// On PostgreSQL and Redis, or `None` when they are not configured. Requests
    /// come through a trusted proxy from an address of their own, so that runs
    /// sharing Redis never share the per-address throttle.
    async fn on_postgres_and_redis() -> Option<(Env, String)> {
        let db = support::postgres_url().await?;
        let redis = support::redis_url()?;
        let env = Env::new(|c| {
            c.database_url = secret(&db);
            c.redis_url = secret(&redis);
            c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
        })
        .await;
        let b = uuid::Uuid::new_v4().into_bytes();
        Some((env, format!("198.18.{}.{}", b[0], b[1])))
    }

    fn base(&self) -> &str {
        &self.w.s.base
    }

    fn issuer(&self) -> String {
        self.w.s.state.issuer.clone()
    }

    fn browser(&self) -> Browser {
        Browser::new(self.base())
    }

    /// Adds a verified user with a password; returns its id.
    async fn add_user(&self, email: &str, password: &str, disabled: bool) -> String {
        let st = &self.w.s.state;
        let id = uuid::Uuid::new_v4().to_string();
        let hash = gatehouse::crypto::password::hash_blocking(password).expect("hash");
        let mut tx = st.store.begin().await.expect("begin");
        iam::insert_user(
            &mut tx,
            &UserRow {
                id: id.clone(),
                email: email.into(),
                display_name: email.into(),
                password_hash: Some(hash),
                email_verified: true,
                disabled,
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

    fn outbox_dir(&self) -> PathBuf {
        self.w.s.state.config.data_dir.join("outbox")
    }

    /// The messages in the outbox, oldest first (file names are UUIDv7).
    fn outbox(&self) -> Vec<Sent> {
        support::outbox(&self.w.s.state.config.data_dir)
            .into_iter()
            .map(|raw| {
                let to = raw
                    .lines()
                    .find_map(|l| l.strip_prefix("To: "))
                    .unwrap_or_else(|| panic!("a To header: {raw}"))
                    .trim()
                    .to_owned();
                Sent { to, raw }
            })
            .collect()
    }

    /// Waits until the outbox holds at least `n` messages (or the wait runs out).
    async fn wait_outbox(&self, n: usize) -> Vec<Sent> {
        let deadline = tokio::time::Instant::now() + MAIL_WAIT;
        loop {
            let m = self.outbox();
            if m.len() >= n || tokio::time::Instant::now() >= deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The reset link of the one message the outbox must hold for `email` after a
    /// request; waits for it.
    async fn link_for(&self, email: &str, expect_total: usize) -> String {
        let mails = self.wait_outbox(expect_total).await;
        assert_eq!(mails.len(), expect_total, "{mails:#?}");
        let last = mails.last().expect("a mail");
        assert_eq!(last.to, email, "{last:#?}");
        last.link()
    }

    /// Signs in through `/login` in a fresh browser; returns the status.
    async fn login(&self, email: &str, password: &str) -> u16 {
        let mut b = self.browser();
        let page = b.get("/login").await;
        assert_eq!(page.status, 200);
        let csrf = page.input("csrf_token").expect("csrf_token");
        let r = b
            .post(
                "/login",
                &[
                    ("csrf_token", &csrf),
                    ("email", email),
                    ("password", password),
                ],
            )
            .await;
        assert!(
            r.status != 200 || r.body.contains("You are signed in"),
            "{}",
            r.body
        );
        r.status
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        oauth_token(
            self.base(),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", ADMIN),
            ],
        )
        .await
    }

    async fn stop(self) {
        self.w.s.stop().await;
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}"))
}

// 1. delivery over SMTP

/// The test relay itself, driven by lettre directly: a failure of the tests below
/// is the server's, not the relay's.
#[tokio::test]
async fn the_test_relay_takes_a_message_from_lettre() {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let relay = SmtpRelay::start().await;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(relay.addr.port())
        .build();
    let m = Message::builder()
        .from("a <a@example.com>".parse().expect("from"))
        .to("b@example.com".parse().expect("to"))
        .subject("hi")
        .body(format!(
            ".leading dot\r\nhttps://x.example/?t={}",
            "a".repeat(90)
        ))
        .expect("message");
    mailer
        .send(m)
        .await
        .expect("the relay accepts lettre's mail");
    let got = relay.wait_for(1, MAIL_WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "a@example.com");
    assert_eq!(got[0].to, vec!["b@example.com".to_owned()]);
    let sent = Sent {
        to: got[0].to[0].clone(),
        raw: got[0].data.clone(),
    };
    let body = sent.body();
    assert!(body.starts_with(".leading dot"), "dot-unstuffed: {body}");
    assert!(body.contains(&"a".repeat(90)), "{body}");
}

#[tokio::test]
async fn a_reset_request_sends_one_mail_through_the_smtp_relay() {
    let relay = SmtpRelay::start().await;
    // The configuration's documented form for a local relay without TLS.
    let url = relay.url("?tls=none");
    let env = Env::new(|c| c.smtp_url = secret(&url)).await;
    let email = unique("sam");
    env.add_user(&email, OLD, false).await;
    let mut b = env.browser();
    let r = b.ask_reset(&email).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.title(), SENT_TITLE);
    let got = relay.wait_for(1, MAIL_WAIT).await;
    tokio::time::sleep(QUIET).await;
    let got_all = relay.messages();
    assert_eq!(got.len(), 1, "one message: {got_all:#?}");
    assert_eq!(got_all.len(), 1, "one message: {got_all:#?}");
    let m = &got_all[0];
    assert_eq!(m.to, vec![email.clone()], "the envelope names the account");
    assert_eq!(m.from, "noreply@localhost", "from mail_from");
    let sent = Sent {
        to: m.to[0].clone(),
        raw: m.data.clone(),
    };
    assert!(
        sent.raw.contains(&format!("To: {email}")),
        "the header names the account: {}",
        sent.raw
    );
    let link = sent.link();
    assert!(
        link.starts_with(&format!("{}/reset/confirm?token=", env.issuer())),
        "{link}"
    );
    assert_eq!(token_of(&link).len(), 43, "256 bits: {link}");
    assert!(env.outbox().is_empty(), "nothing in the outbox with SMTP");
    // the link works
    let r = b.set_password(&link, NEW).await;
    assert_eq!((r.status, r.title()), (200, CHANGED.into()), "{}", r.body);
    assert_eq!(env.login(&email, NEW).await, 200);
    env.stop().await;
}

/// `smtp://host` without `tls` is documented as STARTTLS: against a relay that
/// offers no STARTTLS the mail must not go out in cleartext.
#[tokio::test]
async fn an_smtp_url_without_tls_never_sends_the_link_in_cleartext() {
    let relay = SmtpRelay::start().await;
    let env = Env::new(|c| c.smtp_url = secret(&relay.url(""))).await;
    let email = unique("tess");
    env.add_user(&email, OLD, false).await;
    let r = env.browser().ask_reset(&email).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = tokio::time::Instant::now() + MAIL_WAIT;
    while relay.sessions() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(relay.sessions(), 1, "the server tried the relay");
    tokio::time::sleep(QUIET).await;
    assert!(
        relay.messages().is_empty(),
        "smtp:// is documented as STARTTLS, yet the reset link went to a relay \
         without STARTTLS in cleartext (commands: {:?})",
        relay.commands()
    );
    env.stop().await;
}

// 2. the outbox

#[tokio::test]
async fn without_smtp_the_mail_lands_in_the_private_outbox() {
    let env = Env::new(|_| {}).await;
    let email = unique("olga");
    env.add_user(&email, OLD, false).await;
    let r = env.browser().ask_reset(&email).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let link = env.link_for(&email, 1).await;
    assert!(
        link.starts_with(&format!("{}/reset/confirm?token=", env.issuer())),
        "{link}"
    );
    let files: Vec<PathBuf> = std::fs::read_dir(env.outbox_dir())
        .expect("outbox")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0].extension().and_then(|x| x.to_str()),
        Some("eml"),
        "{files:?}"
    );
    let raw = std::fs::read_to_string(&files[0]).expect("read");
    assert!(
        raw.contains("Subject: Reset your gatehouse password"),
        "{raw}"
    );
    assert!(raw.contains("From: gatehouse <noreply@localhost>"), "{raw}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0])
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "readable by the owner only");
    }
    env.stop().await;
}

// 3. the whole reset

async fn full_reset(env: Env, addr: Option<String>) {
    let email = unique("erin");
    env.add_user(&email, OLD, false).await;
    let browser = || {
        let mut b = env.browser();
        if let Some(a) = &addr {
            b.always("x-forwarded-for", a);
        }
        b
    };

    // a device signed in before the reset, with a session and a refresh token
    let mut device = browser();
    let t = device.admin_tokens((&email, OLD)).await;
    let (status, r) = env.refresh(s(&t, "refresh_token")).await;
    assert_eq!(status, 200, "{r}");
    let rt = s(&r, "refresh_token").to_owned();
    assert!(
        device.silent().await.contains_key("code"),
        "the session works"
    );

    // the reset, from another browser
    let mut b = browser();
    let r = b.ask_reset(&email).await;
    assert_eq!(
        (r.status, r.title()),
        (200, SENT_TITLE.into()),
        "{}",
        r.body
    );
    let link = env.link_for(&email, 1).await;
    assert!(
        link.starts_with(&format!("{}/reset/confirm?token=", env.issuer())),
        "{link}"
    );
    let r = b.set_password(&link, NEW).await;
    assert_eq!((r.status, r.title()), (200, CHANGED.into()), "{}", r.body);
    let cookies = r.set_cookies();
    assert!(
        cookies.iter().any(|c| c.starts_with("gatehouse_session=;")
            || (c.starts_with("gatehouse_session=")
                && c.to_ascii_lowercase().contains("max-age=0"))),
        "the answer clears the session cookie: {cookies:?}"
    );

    assert_eq!(env.login(&email, NEW).await, 200, "the new password works");
    assert_eq!(env.login(&email, OLD).await, 401, "the old one does not");

    // once only
    let again = b.get(&link).await;
    assert_eq!(
        (again.status, again.title()),
        (400, DEAD_LINK.into()),
        "{}",
        again.body
    );
    assert!(!again.posts_to("/reset/confirm"));
    let page = b.get("/reset").await;
    let csrf = page.input("csrf_token").expect("csrf_token");
    let token = token_of(&link);
    let r = b
        .post(
            "/reset/confirm",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("password", "third password 3"),
            ],
        )
        .await;
    assert_eq!((r.status, r.title()), (400, DEAD_LINK.into()), "{}", r.body);
    assert_eq!(env.login(&email, "third password 3").await, 401);
    assert_eq!(env.login(&email, NEW).await, 200);

    // what was signed in before the reset is signed out
    let (status, r) = env.refresh(&rt).await;
    assert_eq!(
        (status, r["error"].as_str()),
        (400, Some("invalid_grant")),
        "a refresh token from before the reset: {r}"
    );
    assert_eq!(
        device.silent().await.get("error").map(String::as_str),
        Some("login_required"),
        "a session from before the reset"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_reset_link_sets_the_password_once_and_signs_every_device_out() {
    full_reset(Env::new(|_| {}).await, None).await;
}

#[tokio::test]
async fn a_reset_link_sets_the_password_once_on_postgres_and_redis() {
    let Some((env, addr)) = Env::on_postgres_and_redis().await else {
        return;
    };
    full_reset(env, Some(addr)).await;
}

// 4. no enumeration

#[tokio::test]
async fn asking_for_a_reset_tells_nothing_about_the_account() {
    let env = Env::new(|_| {}).await;
    let known = unique("kim");
    let disabled = unique("dora");
    let unknown = unique("nobody");
    env.add_user(&known, OLD, false).await;
    env.add_user(&disabled, OLD, true).await;
    let mut b = env.browser();
    let mut answers = Vec::new();
    // the accounts without mail first: a mail they caused would arrive before the
    // known account's
    for email in [&unknown, &disabled, &known] {
        let r = b.ask_reset(email).await;
        let body = r.body.replace(email.as_str(), "EMAIL");
        answers.push((email.clone(), r.status, r.title(), body, r.set_cookies()));
    }
    let (_, status, title, body, cookies) = &answers[2];
    assert_eq!((*status, title.as_str()), (200, SENT_TITLE));
    assert!(
        body.contains("EMAIL"),
        "the page repeats the address: {body}"
    );
    for (email, st, t, bd, ck) in &answers[..2] {
        assert_eq!(st, status, "{email}: the same status");
        assert_eq!(t, title, "{email}: the same title");
        assert_eq!(bd, body, "{email}: the same page");
        assert_eq!(ck, cookies, "{email}: the same cookies");
    }
    env.wait_outbox(1).await;
    tokio::time::sleep(QUIET).await;
    let mails: Vec<String> = env.outbox().into_iter().map(|m| m.to).collect();
    assert_eq!(
        mails,
        vec![known.clone()],
        "mail for the known account only"
    );
    env.stop().await;
}

// 5. CSRF

#[tokio::test]
async fn reset_forms_need_the_csrf_cookie_and_token() {
    let env = Env::new(|_| {}).await;
    let email = unique("cleo");
    env.add_user(&email, OLD, false).await;

    // POST /reset
    let mut b = env.browser();
    let page = b.get("/reset").await;
    let csrf = page.input("csrf_token").expect("csrf_token");
    let r = env
        .browser()
        .post("/reset", &[("csrf_token", &csrf), ("email", &email)])
        .await;
    assert_eq!(r.status, 403, "a token without its cookie: {}", r.body);
    let r = b.post("/reset", &[("email", &email)]).await;
    assert_eq!(r.status, 403, "the cookie without a token: {}", r.body);
    let r = b
        .post("/reset", &[("csrf_token", "forged"), ("email", &email)])
        .await;
    assert_eq!(r.status, 403, "a wrong token: {}", r.body);
    let mut other_site = env.browser();
    other_site.jar = b.jar.clone();
    other_site.always("origin", "https://evil.example");
    let r = other_site
        .post("/reset", &[("csrf_token", &csrf), ("email", &email)])
        .await;
    assert_eq!(r.status, 403, "posted from another origin: {}", r.body);
    tokio::time::sleep(QUIET).await;
    assert!(env.outbox().is_empty(), "refused requests send no mail");

    // POST /reset/confirm
    let r = b
        .post("/reset", &[("csrf_token", &csrf), ("email", &email)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let link = env.link_for(&email, 1).await;
    let (csrf, token) = b.open_link(&link).await;
    let r = env
        .browser()
        .post(
            "/reset/confirm",
            &[("csrf_token", &csrf), ("token", &token), ("password", NEW)],
        )
        .await;
    assert_eq!(r.status, 403, "a token without its cookie: {}", r.body);
    let r = b
        .post("/reset/confirm", &[("token", &token), ("password", NEW)])
        .await;
    assert_eq!(r.status, 403, "the cookie without a token: {}", r.body);
    other_site.jar = b.jar.clone();
    let r = other_site
        .post(
            "/reset/confirm",
            &[("csrf_token", &csrf), ("token", &token), ("password", NEW)],
        )
        .await;
    assert_eq!(r.status, 403, "posted from another origin: {}", r.body);
    assert_eq!(env.login(&email, NEW).await, 401, "nothing changed");
    // the refusals did not use the link up
    let r = b.set_password(&link, NEW).await;
    assert_eq!((r.status, r.title()), (200, CHANGED.into()), "{}", r.body);
    assert_eq!(env.login(&email, NEW).await, 200);
    env.stop().await;
}

// 6. throttle

#[tokio::test]
async fn reset_requests_for_one_email_are_throttled_without_a_word() {
    let env = Env::new(|_| {}).await;
    let email = unique("tina");
    let sentinel = unique("sven");
    env.add_user(&email, OLD, false).await;
    env.add_user(&sentinel, OLD, false).await;
    let mut b = env.browser();
    let first = b.ask_reset(&email).await;
    assert_eq!((first.status, first.title()), (200, SENT_TITLE.into()));
    for i in 2..=7 {
        let r = b.ask_reset(&email).await;
        assert_eq!(r.status, first.status, "request {i}");
        assert_eq!(r.body, first.body, "request {i}: the same page");
    }
    // a request for another email is not throttled; once its mail is in, the
    // throttled ones would be too
    let r = b.ask_reset(&sentinel).await;
    assert_eq!(r.status, 200);
    env.wait_outbox(6).await;
    tokio::time::sleep(QUIET).await;
    let mails = env.outbox();
    let to_email = mails.iter().filter(|m| m.to == email).count();
    let to_sentinel = mails.iter().filter(|m| m.to == sentinel).count();
    assert_eq!(
        (to_email, to_sentinel),
        (5, 1),
        "5 mails in the window, then none"
    );
    env.stop().await;
}

// 7. a short password

#[tokio::test]
async fn a_short_password_is_refused_and_the_link_stays_good() {
    let env = Env::new(|_| {}).await;
    let email = unique("pat");
    env.add_user(&email, OLD, false).await;
    let mut b = env.browser();
    b.ask_reset(&email).await;
    let link = env.link_for(&email, 1).await;
    for short in ["", "short", "7 chars"] {
        let (csrf, token) = b.open_link(&link).await;
        let r = b
            .post(
                "/reset/confirm",
                &[
                    ("csrf_token", &csrf),
                    ("token", &token),
                    ("password", short),
                ],
            )
            .await;
        assert_eq!(r.status, 400, "{short:?}: {}", r.body);
        assert!(
            r.posts_to("/reset/confirm"),
            "{short:?}: the form again: {}",
            r.body
        );
        assert_eq!(
            r.input("token").as_deref(),
            Some(token.as_str()),
            "{short:?}"
        );
        assert!(r.input("csrf_token").is_some_and(|c| !c.is_empty()));
        let alert = r.alert().unwrap_or_default();
        assert!(alert.contains('8'), "{short:?}: says why: {alert:?}");
    }
    assert_eq!(
        env.login(&email, OLD).await,
        200,
        "the password is unchanged"
    );
    let r = b.set_password(&link, NEW).await;
    assert_eq!((r.status, r.title()), (200, CHANGED.into()), "{}", r.body);
    assert_eq!(env.login(&email, NEW).await, 200);
    env.stop().await;
}

// 8. dead links, and the Host header

#[tokio::test]
async fn expired_and_made_up_tokens_do_not_work() {
    let env = Env::new(|_| {}).await;
    let email = unique("eve");
    env.add_user(&email, OLD, false).await;
    let mut b = env.browser();
    let page = b.get("/reset").await;
    let csrf = page.input("csrf_token").expect("csrf_token");
    let made_up = gatehouse::crypto::b64(&[7u8; 32]);
    for token in [made_up.as_str(), "", "not a token", &"A".repeat(5000)] {
        let target = format!("/reset/confirm?{}", form(&[("token", token)]));
        let r = b.get(&target).await;
        assert_eq!(
            (r.status, r.title()),
            (400, DEAD_LINK.into()),
            "GET {token:.20}: {}",
            r.body
        );
        assert!(!r.posts_to("/reset/confirm"));
        let r = b
            .post(
                "/reset/confirm",
                &[("csrf_token", &csrf), ("token", token), ("password", NEW)],
            )
            .await;
        assert_eq!(
            (r.status, r.title()),
            (400, DEAD_LINK.into()),
            "POST {token:.20}: {}",
            r.body
        );
    }
    let r = b.get("/reset/confirm").await;
    assert_eq!((r.status, r.title()), (400, DEAD_LINK.into()), "no token");

    // a real link, aged past its expiry: its state is kept under the token's hash
    // for LINK_TTL; here it is given a TTL that runs out at once
    b.ask_reset(&email).await;
    let link = env.link_for(&email, 1).await;
    let token = token_of(&link);
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let key = format!("reset:{}", gatehouse::crypto::b64(d.as_ref()));
    let eph = &env.w.s.state.ephemeral;
    let value = eph
        .get(&key)
        .await
        .expect("get")
        .expect("the link's state, where the server keeps it");
    eph.put(&key, &value, Duration::from_millis(1))
        .await
        .expect("put");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = b.get(&link).await;
    assert_eq!((r.status, r.title()), (400, DEAD_LINK.into()), "{}", r.body);
    let r = b
        .post(
            "/reset/confirm",
            &[("csrf_token", &csrf), ("token", &token), ("password", NEW)],
        )
        .await;
    assert_eq!((r.status, r.title()), (400, DEAD_LINK.into()), "{}", r.body);
    assert_eq!(env.login(&email, NEW).await, 401);
    assert_eq!(env.login(&email, OLD).await, 200);
    env.stop().await;
}

#[tokio::test]
async fn the_link_comes_from_the_issuer_never_from_the_host_header() {
    let env = Env::new(|_| {}).await;
    let email = unique("hugo");
    env.add_user(&email, OLD, false).await;
    let mut b = env.browser();
    b.always("host", "evil.example");
    b.always("x-forwarded-host", "evil.example");
    b.always("forwarded", "host=evil.example;proto=https");
    let r = b.ask_reset(&email).await;
    assert_eq!(
        (r.status, r.title()),
        (200, SENT_TITLE.into()),
        "{}",
        r.body
    );
    let mails = env.wait_outbox(1).await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let link = mails[0].link();
    assert!(
        link.starts_with(&format!("{}/reset/confirm?token=", env.issuer())),
        "{link}"
    );
    assert!(
        !mails[0].body().contains("evil.example"),
        "{}",
        mails[0].raw
    );
    env.stop().await;
}
