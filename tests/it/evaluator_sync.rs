//! The evaluator is loaded from the store at start and follows the change sequence:
//! on SQLite by polling, on PostgreSQL with Redis by notice (and polling). A node
//! applies a short run of changes as a delta to what it holds; after every write of
//! a realistic sequence through the admin API, that equals a full load.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use gatehouse::access::policy::{Policy, PolicyBinding};
use gatehouse::access::principals::{self, Change};
use gatehouse::iam::PrincipalKind;
use gatehouse::iam::evaluator::PrincipalRef;
use gatehouse::iam::permissions::Permission;
use gatehouse::server::sync;
use gatehouse::store::directory::{self, GroupRow};
use gatehouse::store::iam::{self, BindingRow, ClientRow, UserRow};
use gatehouse::store::{self as st, audit};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::policies::World;
use crate::support::{self, TestServer, client, gatehouse, input_value, secret};

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn allowed(s: &TestServer, user: &str, perm: &str, resource: &str) -> bool {
    let view = s.state.view.load();
    view.as_ref().as_ref().is_some_and(|v| {
        v.evaluator.check(
            PrincipalKind::User,
            user,
            perm,
            resource,
            gatehouse::now_unix(),
        )
    })
}

async fn within_a_second(s: &TestServer, user: &str, perm: &str, resource: &str, want: bool) {
    for _ in 0..20 {
        if allowed(s, user, perm, resource).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{user} {perm} on {resource} did not become {want} within a second");
}

/// A group with a user in it gets a binding; then the user leaves the group.
async fn group_binding_round_trip(s: &TestServer) {
    let store = &s.state.store;
    let user = id();
    let group = GroupRow {
        id: id(),
        name: "orgs/acme/groups/ops".into(),
        org: "orgs/acme".into(),
        slug: "ops".into(),
        display_name: "Ops".into(),
    };
    let mut tx = store.begin().await.expect("begin");
    iam::insert_user(
        &mut tx,
        &UserRow {
            id: user.clone(),
            email: format!("{user}@example.com"),
            display_name: "Op".into(),
            password_hash: None,
            email_verified: true,
            disabled: false,
        },
    )
    .await
    .expect("user");
    directory::insert_group(&mut tx, &group)
        .await
        .expect("group");
    directory::add_member(&mut tx, &group.id, &PrincipalRef::user(user.clone()))
        .await
        .expect("member");
    directory::register_api(
        &mut tx,
        "https://storage.example",
        "Storage",
        &[Permission {
            name: "object-storage.buckets.read".into(),
            description: "read".into(),
        }],
    )
    .await
    .expect("api");
    iam::insert_binding(
        &mut tx,
        &BindingRow {
            id: id(),
            scope: "orgs/acme/projects/p1".into(),
            role: "object-storage.reader".into(),
            principal_kind: "group".into(),
            principal_id: group.id.clone(),
            expires_at: None,
        },
    )
    .await
    .expect("binding");
    let seq = st::bump_change(&mut tx, "test", "ops").await.expect("bump");
    audit::append(
        &mut tx,
        seq,
        audit::NewAuditEvent {
            actor: "test",
            action: "test",
            target: "ops",
            scope: "orgs/acme",
            before: None,
            after: None,
        },
    )
    .await
    .expect("audit");
    tx.commit().await.expect("commit");
    sync::announce(&s.state.ephemeral, seq).await;
    within_a_second(
        s,
        &user,
        "object-storage.buckets.read",
        "orgs/acme/projects/p1/buckets/logs",
        true,
    )
    .await;

    let mut tx = store.begin().await.expect("begin");
    assert!(
        directory::remove_member(&mut tx, &group.id, &PrincipalRef::user(user.clone()))
            .await
            .expect("remove")
    );
    let seq = st::bump_change(&mut tx, "test", "ops").await.expect("bump");
    tx.commit().await.expect("commit");
    sync::announce(&s.state.ephemeral, seq).await;
    within_a_second(
        s,
        &user,
        "object-storage.buckets.read",
        "orgs/acme/projects/p1/buckets/logs",
        false,
    )
    .await;
}

#[tokio::test]
async fn sqlite_node_follows_changes_by_polling() {
    let s = TestServer::start().await;
    group_binding_round_trip(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn postgres_and_redis_node_follows_changes() {
    let Some(db) = support::postgres_url().await else {
        return;
    };
    let Some(redis) = support::redis_url() else {
        return;
    };
    let s = TestServer::start_with(|c| {
        c.database_url = secret(&db);
        c.redis_url = secret(&redis);
        c.poll_interval_ms = 1000;
    })
    .await;
    group_binding_round_trip(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn stored_roles_the_catalog_lacks_stop_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = gatehouse(
        dir.path(),
        &["bootstrap", "--org", "acme", "--owner-email", "o@acme.test"],
        &[("GATEHOUSE_BOOTSTRAP_PASSWORD", "long enough password")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listen = format!("127.0.0.1:{}", support::free_port());
    let out = gatehouse(
        dir.path(),
        &["serve"],
        &[
            ("GATEHOUSE_CATALOG", "stackpath"),
            ("GATEHOUSE_LISTEN", &listen),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().lines().count() == 1
            && stderr.contains("GATEHOUSE_CATALOG")
            && stderr.contains("\"owner\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn stackpath_bootstrap_binds_the_system_owner_and_makes_the_default_stack() {
    let s = TestServer::start_with(|c| c.catalog = "stackpath".into()).await;
    let out = gatehouse(
        &s.dir,
        &[
            "bootstrap",
            "--org",
            "acme",
            "--owner-email",
            "root@acme.test",
        ],
        &[
            ("GATEHOUSE_BOOTSTRAP_PASSWORD", "long enough password"),
            ("GATEHOUSE_CATALOG", "stackpath"),
            (
                "GATEHOUSE_DATA_DIR",
                s.dir.join("data").to_str().expect("path"),
            ),
            (
                "GATEHOUSE_KEYS_DIR",
                s.dir.join("keys").to_str().expect("path"),
            ),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owner = s
        .state
        .store
        .user_by_email("root@acme.test")
        .await
        .expect("get")
        .expect("owner");
    assert!(
        s.state
            .store
            .resource("orgs/acme/projects/default")
            .await
            .expect("get")
            .is_some(),
        "default stack"
    );
    within_a_second(&s, &owner.id, "billing.invoices.get", "orgs/acme", true).await;
    within_a_second(
        &s,
        &owner.id,
        "resourcemanager.projects.update",
        "orgs/acme/projects/default",
        true,
    )
    .await;
    s.stop().await;
}

// ---------------------------------------------------------------------------
// delta against a full load, after writes through the admin API

const EU: &str = "orgs/acme/folders/eu";
const SHOP: &str = "orgs/acme/folders/eu/projects/shop";
const PROD: &str = "orgs/acme/folders/eu/projects/shop/envs/prod";
const SCRATCH: &str = "orgs/acme/projects/scratch";
const BACKEND: &str = "orgs/acme/projects/backend";
const ENG: &str = "group:orgs/acme/groups/eng";
const REDIRECT: &str = "https://web.example/callback";
const PASSWORD: &str = "a good password";

/// The world of [`World`] written to through the admin API by its owner
/// (`owner@acme.test`, an instance owner), with an access token the node signed.
struct Admin {
    w: World,
    http: reqwest::Client,
    token: String,
    /// The registered APIs of the view the last comparison saw: a delta keeps them
    /// as they are, a full reload reads them anew.
    apis: Option<Arc<HashSet<String>>>,
}

impl Admin {
    async fn new(adjust: impl FnOnce(&mut gatehouse::config::Config)) -> Admin {
        let w = World::new(adjust).await;
        let state = &w.s.state;
        let now = gatehouse::now_unix();
        let aud = format!("{}/v1", state.issuer);
        let token = gatehouse::oauth2::access_token::sign(
            &state.keys.load(),
            now,
            &mut gatehouse::oauth2::access_token::Claims {
                iss: &state.issuer,
                sub: &w.owner.principal.id,
                aud: &aud,
                client_id: "gatehouse-admin",
                scope: "openid",
                jti: gatehouse::oauth2::access_token::new_jti(),
                iat: now,
                exp: now + 3600,
                roles: None,
            },
        )
        .expect("owner token");
        Admin {
            w,
            http: client(),
            token,
            apis: None,
        }
    }

    fn base(&self) -> &str {
        &self.w.s.base
    }

    /// A request to `/v1{path}`; no answer may be a 5xx.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/v1{path}", self.base()))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("admin API request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        assert!(status < 500, "{method} /v1{path} answered {status}: {text}");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request that must answer `want`; the answer's body.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>, want: u16) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert_eq!(status, want, "{method} /v1{path}: {answer}");
        answer
    }

    /// A write that must answer `want`, then the comparison named `step`.
    async fn write(
        &mut self,
        step: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> Value {
        let answer = self.ok(method, path, body, want).await;
        self.agrees(step).await;
        answer
    }

    /// Reads the policy of `scope`, lets `edit` change its bindings and writes it back
    /// (invitees stay, written as members).
    async fn put_policy(&self, scope: &str, edit: impl FnOnce(&mut Vec<PolicyBinding>)) {
        let path = match scope {
            "*" => "/policy".to_owned(),
            _ => format!("/{scope}/policy"),
        };
        let p: Policy =
            serde_json::from_value(self.ok(Method::GET, &path, None, 200).await).expect("policy");
        let mut bindings = p.bindings;
        for b in &mut bindings {
            let pending = std::mem::take(&mut b.pending_members);
            b.members.extend(pending);
        }
        edit(&mut bindings);
        bindings.retain(|b| !b.members.is_empty());
        let body = json!({ "etag": p.etag, "bindings": bindings });
        self.ok(Method::PUT, &path, Some(body), 200).await;
    }

    /// [`Admin::put_policy`], then the comparison named `step`.
    async fn edit_policy(
        &mut self,
        step: &str,
        scope: &str,
        edit: impl FnOnce(&mut Vec<PolicyBinding>),
    ) {
        self.put_policy(scope, edit).await;
        self.agrees(step).await;
    }

    /// Disables, enables or deletes a service account (as the created answer gave it)
    /// through the access layer, since the admin API has no route for it; then the
    /// comparison named `step`.
    async fn service_account(&mut self, step: &str, sa: &Value, change: Change) {
        {
            let v = self.w.view();
            let ctx = self.w.ctx(&v);
            let id = sa["id"].as_str().expect("id");
            let name = sa["name"].as_str().expect("name");
            let who = PrincipalRef::service_account(id);
            principals::change(&ctx, &self.w.owner, &who, name, change)
                .await
                .unwrap_or_else(|e| panic!("{step}: {e}"));
        }
        self.agrees(step).await;
    }

    /// Waits (2 s at most) until the node applied every committed change, then
    /// asserts that what it holds equals a full load from the store, and that it got
    /// there by deltas (no full reload since the last comparison).
    async fn agrees(&mut self, step: &str) {
        let state = &self.w.s.state;
        let want = state.store.current_seq().await.expect("seq");
        let deadline = Instant::now() + Duration::from_secs(2);
        while state.applied_seq() < want {
            assert!(
                Instant::now() < deadline,
                "{step}: the node did not apply change {want} within 2 s (it is at {})",
                state.applied_seq()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let view = state.view.load_full();
        let v = view.as_ref().as_ref().expect("view");
        let full = sync::load_evaluator(&state.store, &state.catalog)
            .await
            .expect("full load");
        let (held, fresh) = (v.evaluator.summary(), full.summary());
        if held != fresh {
            let only = |a: &[String], b: &[String]| -> Vec<String> {
                a.iter().filter(|l| !b.contains(l)).cloned().collect()
            };
            panic!(
                "{step}: the view at change {} ({} lines) differs from a full load ({} lines)\n\
                 only in the view: {:#?}\nonly in the full load: {:#?}",
                v.seq,
                held.len(),
                fresh.len(),
                only(&held, &fresh),
                only(&fresh, &held)
            );
        }
        let credentials: HashMap<_, _> = state
            .store
            .service_account_credentials()
            .await
            .expect("credentials")
            .into_iter()
            .map(|c| (c.client_id.clone(), c))
            .collect();
        assert_eq!(
            *v.service_accounts, credentials,
            "{step}: service-account credentials"
        );
        let clients: HashMap<_, _> = state
            .store
            .clients()
            .await
            .expect("clients")
            .into_iter()
            .map(|c| (c.client_id.clone(), c))
            .collect();
        let held_clients: HashMap<String, ClientRow> = v
            .clients
            .iter()
            .map(|(id, c)| (id.clone(), ClientRow::clone(c)))
            .collect();
        assert_eq!(held_clients, clients, "{step}: clients");
        if let Some(before) = &self.apis {
            assert!(
                Arc::ptr_eq(before, &v.apis),
                "{step}: the node reloaded everything instead of applying the changes"
            );
        }
        self.apis = Some(v.apis.clone());
    }

    /// Whether a line of what the node holds contains `needle`.
    fn holds(&self, needle: &str) -> bool {
        let view = self.w.s.state.view.load_full();
        let v = view.as_ref().as_ref().expect("view");
        v.evaluator.summary().iter().any(|l| l.contains(needle))
    }

    /// `POST /v1/check`'s `allowed`.
    async fn allowed(&self, principal: &str, permission: &str, resource: &str) -> bool {
        let body =
            json!({ "principal": principal, "permission": permission, "resource": resource });
        let a = self.ok(Method::POST, "/check", Some(body), 200).await;
        a["allowed"].as_bool().expect("allowed")
    }

    /// Asserts that `POST /v1/check` answers `want` within a second.
    async fn check(
        &self,
        why: &str,
        principal: &str,
        permission: &str,
        resource: &str,
        want: bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.allowed(principal, permission, resource).await != want {
            assert!(
                Instant::now() < deadline,
                "{why}: {principal} {permission} on {resource} did not become {want} within a second"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Asserts that a client-credentials token request answers `want` within a second.
    async fn token(&self, why: &str, client_id: &str, secret: &str, want: u16) {
        let basic = support::basic(client_id, secret);
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let r = self
                .http
                .post(format!("{}/oauth2/token", self.base()))
                .header("authorization", &basic)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
                .send()
                .await
                .expect("token request");
            let status = r.status().as_u16();
            if status == want {
                return;
            }
            let text = r.text().await.expect("body");
            assert!(
                Instant::now() < deadline,
                "{why}: the token request answered {status}, not {want}, for a second: {text}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `GET /oauth2/authorize` for `client_id`: the status and the body.
    async fn authorize(&self, client_id: &str) -> (u16, String) {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "openid")
            .append_pair("state", "s1")
            .append_pair(
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            )
            .append_pair("code_challenge_method", "S256")
            .finish();
        let r = self
            .http
            .get(format!("{}/oauth2/authorize?{query}", self.base()))
            .send()
            .await
            .expect("authorize");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// The invitation link mailed to `email` (5 s at most).
    async fn invitation_link(&self, email: &str) -> String {
        let data_dir = &self.w.s.state.config.data_dir;
        let issuer = &self.w.s.state.issuer;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(link) = support::mails(data_dir)
                .iter()
                .filter(|m| m.to.contains(email))
                .find_map(|m| m.try_link(issuer, "/invite"))
            {
                return link;
            }
            assert!(
                Instant::now() < deadline,
                "no invitation to {email} in {}",
                data_dir.join("outbox").display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens the invitation mailed to `email` and presses its button (choosing
    /// `password` when the page asks for one), then the comparison named `step`.
    async fn accept(&mut self, step: &str, email: &str, password: Option<&str>) {
        let link = self.invitation_link(email).await;
        let page = self.http.get(&link).send().await.expect("invitation page");
        let status = page.status().as_u16();
        let cookies: Vec<String> = page
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
            .collect();
        let html = page.text().await.expect("page");
        assert_eq!(status, 200, "{step}: {html}");
        assert_eq!(
            html.contains("name=\"password\""),
            password.is_some(),
            "{step}: {html}"
        );
        let csrf = input_value(&html, "csrf_token").expect("csrf_token");
        let token = input_value(&html, "token").expect("token");
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf_token", &csrf)
            .append_pair("token", &token)
            .append_pair("display_name", "Invitee")
            .append_pair("password", password.unwrap_or(""))
            .finish();
        let r = self
            .http
            .post(format!("{}/invite", self.base()))
            .header("cookie", cookies.join("; "))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("accept");
        let status = r.status().as_u16();
        let html = r.text().await.expect("answer");
        assert!(
            status == 200 && html.contains("<h1>Welcome</h1>"),
            "{step}: {status} {html}"
        );
        self.agrees(step).await;
    }
}

/// Adds `member` to the binding of `role` that expires at `expires_at`.
fn grant(bindings: &mut Vec<PolicyBinding>, role: &str, member: &str, expires_at: Option<i64>) {
    match bindings
        .iter_mut()
        .find(|b| b.role == role && b.expires_at == expires_at)
    {
        Some(b) => b.members.push(member.to_owned()),
        None => bindings.push(PolicyBinding {
            role: role.into(),
            members: vec![member.into()],
            expires_at,
            ..Default::default()
        }),
    }
}

/// Takes `member` out of every binding of `role`.
fn revoke(bindings: &mut [PolicyBinding], role: &str, member: &str) {
    for b in bindings.iter_mut().filter(|b| b.role == role) {
        b.members.retain(|m| m != member);
    }
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

fn user(name: &str) -> String {
    format!("user:{name}@acme.test")
}

/// Every kind of change a delta covers (resource, policy, user, service account,
/// group, invitation, client), each write compared with a full load.
async fn admin_api_writes_match_a_full_load(mut a: Admin) {
    let now = gatehouse::now_unix();
    a.agrees("setup").await;

    // resources: an organization (its creator becomes owner), a folder, projects, an env
    for (step, path, slug) in [
        ("create orgs/beta", "/orgs", "beta"),
        ("create a folder", "/orgs/acme/folders", "eu"),
        (
            "create a project in it",
            "/orgs/acme/folders/eu/projects",
            "shop",
        ),
        (
            "create an env",
            "/orgs/acme/folders/eu/projects/shop/envs",
            "prod",
        ),
        ("create a project", "/orgs/acme/projects", "scratch"),
    ] {
        let body = json!({ "slug": slug, "display_name": slug });
        a.write(step, Method::POST, path, Some(body), 201).await;
    }

    // users
    let mut ids = HashMap::new();
    for (name, verified) in [
        ("dana", true),
        ("erin", true),
        ("frank", true),
        ("gina", false),
    ] {
        let body = json!({
            "email": format!("{name}@acme.test"),
            "display_name": name,
            "email_verified": verified,
        });
        let step = format!("create user {name}");
        let u = a
            .write(&step, Method::POST, "/users", Some(body), 201)
            .await;
        ids.insert(name, u["id"].as_str().expect("id").to_owned());
    }

    // policies on several scopes, expiring bindings among them
    a.edit_policy("eu: editor dana, viewer erin for an hour", EU, |b| {
        grant(b, "editor", &user("dana"), None);
        grant(b, "viewer", &user("erin"), Some(now + 3600));
    })
    .await;
    let why = "an editor of a folder edits an env beneath it";
    a.check(
        why,
        &user("dana"),
        "resourcemanager.environments.update",
        PROD,
        true,
    )
    .await;
    a.check(
        "an expiring viewer reads",
        &user("erin"),
        "iam.policies.get",
        SHOP,
        true,
    )
    .await;
    a.edit_policy(
        "shop: project.member frank, editor erin for two hours",
        SHOP,
        |b| {
            grant(b, "project.member", &user("frank"), None);
            grant(b, "editor", &user("erin"), Some(now + 7200));
        },
    )
    .await;
    let (frank, update) = (user("frank"), "resourcemanager.projects.update");
    a.check(
        "a primitive role grants where bound",
        &frank,
        update,
        SHOP,
        true,
    )
    .await;
    let why = "a primitive role does not inherit";
    a.check(
        why,
        &frank,
        "resourcemanager.environments.update",
        PROD,
        false,
    )
    .await;
    a.edit_policy("scratch: editor frank and dana", SCRATCH, |b| {
        grant(b, "editor", &user("frank"), None);
        grant(b, "editor", &user("dana"), None);
    })
    .await;
    a.edit_policy("backend: viewer alice and bob", BACKEND, |b| {
        grant(b, "viewer", &user("alice"), None);
        grant(b, "viewer", &user("bob"), None);
    })
    .await;
    a.edit_policy("instance: viewer erin", "*", |b| {
        grant(b, "viewer", &user("erin"), None);
    })
    .await;
    let why = "a viewer of the instance reads any organization";
    a.check(why, &user("erin"), "iam.policies.get", "orgs/other", true)
        .await;
    a.check(
        "bob reads backend",
        &user("bob"),
        "iam.policies.get",
        BACKEND,
        true,
    )
    .await;
    a.edit_policy("eu: erin's expiry replaced, bob added", EU, |b| {
        revoke(b, "viewer", &user("erin"));
        grant(b, "viewer", &user("erin"), Some(now + 1800));
        grant(b, "viewer", &user("bob"), None);
    })
    .await;
    a.edit_policy("backend: bob removed", BACKEND, |b| {
        revoke(b, "viewer", &user("bob"))
    })
    .await;
    let why = "a removed binding no longer grants";
    a.check(why, &user("bob"), "iam.policies.get", BACKEND, false)
        .await;
    a.edit_policy("instance: erin removed", "*", |b| {
        revoke(b, "viewer", &user("erin"))
    })
    .await;
    a.check(why, &user("erin"), "iam.policies.get", "orgs/other", false)
        .await;

    // a group, bound, with members added and removed
    let body = json!({ "slug": "eng", "display_name": "Eng" });
    a.write(
        "create group eng",
        Method::POST,
        "/orgs/acme/groups",
        Some(body),
        201,
    )
    .await;
    a.edit_policy("shop: editor eng", SHOP, |b| grant(b, "editor", ENG, None))
        .await;
    a.edit_policy("scratch: viewer eng", SCRATCH, |b| {
        grant(b, "viewer", ENG, None)
    })
    .await;
    let alice = user("alice");
    a.check("alice is no member yet", &alice, update, SHOP, false)
        .await;
    let members = "/orgs/acme/groups/eng/members";
    for who in ["alice", "bob", "frank"] {
        let path = format!("{members}/user:{who}%40acme.test");
        a.write(&format!("eng: add {who}"), Method::PUT, &path, None, 204)
            .await;
    }
    let why = "a group member gains the group's access";
    a.check(
        why,
        &alice,
        "resourcemanager.environments.update",
        PROD,
        true,
    )
    .await;
    let path = format!("{members}/user:bob%40acme.test");
    a.write("eng: remove bob", Method::DELETE, &path, None, 200)
        .await;
    let why = "a removed member loses the group's access";
    a.check(why, &user("bob"), update, SHOP, false).await;

    // service accounts: credentials, bindings, membership, disabled, deleted
    let body = json!({ "slug": "ci", "display_name": "CI" });
    let ci = a
        .write(
            "create service account ci",
            Method::POST,
            "/orgs/acme/service-accounts",
            Some(body),
            201,
        )
        .await;
    let ci_client = ci["client_id"].as_str().expect("client_id").to_owned();
    let ci_member = format!("serviceAccount:{ci_client}");
    let sa_path = "/orgs/acme/service-accounts/ci";
    let p = format!("{sa_path}/secrets");
    let minted = a
        .write("mint a secret for ci", Method::POST, &p, None, 201)
        .await;
    let ci_secret = minted["client_secret"].as_str().expect("secret").to_owned();
    a.token("a minted secret gets a token", &ci_client, &ci_secret, 200)
        .await;
    let body = json!({ "public_key_pem": ed25519_public_pem() });
    let p = format!("{sa_path}/keys");
    a.write("add a key to ci", Method::POST, &p, Some(body), 201)
        .await;
    a.edit_policy("backend: viewer ci", BACKEND, |b| {
        grant(b, "viewer", &ci_member, None)
    })
    .await;
    let path = format!("{members}/{ci_member}");
    a.write("eng: add ci", Method::PUT, &path, None, 204).await;
    a.check("ci edits shop through eng", &ci_member, update, SHOP, true)
        .await;
    let body = json!({ "slug": "deployer", "display_name": "Deployer" });
    let p = format!("/{BACKEND}/service-accounts");
    let deployer = a
        .write(
            "create service account deployer",
            Method::POST,
            &p,
            Some(body),
            201,
        )
        .await;
    let deployer_id = deployer["id"].as_str().expect("id").to_owned();
    let deployer_member = format!(
        "serviceAccount:{}",
        deployer["client_id"].as_str().expect("client_id")
    );
    a.edit_policy("backend: editor deployer", BACKEND, |b| {
        grant(b, "editor", &deployer_member, None)
    })
    .await;
    a.edit_policy("eu: viewer deployer", EU, |b| {
        grant(b, "viewer", &deployer_member, None)
    })
    .await;
    let path = format!("{members}/{deployer_member}");
    a.write("eng: add deployer", Method::PUT, &path, None, 204)
        .await;
    a.check(
        "deployer edits backend",
        &deployer_member,
        update,
        BACKEND,
        true,
    )
    .await;
    a.service_account("delete deployer", &deployer, Change::Delete)
        .await;
    assert!(
        !a.holds(&deployer_id),
        "a deleted service account's bindings and membership stay in the view"
    );
    let body = json!({ "principal": deployer_member, "permission": update, "resource": BACKEND });
    a.ok(Method::POST, "/check", Some(body), 404).await;
    a.service_account("disable ci", &ci, Change::Disable).await;
    a.token(
        "a disabled account gets no token",
        &ci_client,
        &ci_secret,
        401,
    )
    .await;
    let why = "a disabled account holds nothing";
    a.check(why, &ci_member, "iam.policies.get", BACKEND, false)
        .await;
    a.service_account("enable ci", &ci, Change::Enable).await;
    a.token(
        "an enabled account gets a token",
        &ci_client,
        &ci_secret,
        200,
    )
    .await;
    a.check(
        "enabled again",
        &ci_member,
        "iam.policies.get",
        BACKEND,
        true,
    )
    .await;

    // users disabled, enabled, renamed and deleted
    let erin = format!("/users/{}", ids["erin"]);
    let body = json!({ "disabled": true });
    a.write("disable erin", Method::PATCH, &erin, Some(body), 200)
        .await;
    let why = "a disabled user holds nothing";
    a.check(why, &user("erin"), "iam.policies.get", SHOP, false)
        .await;
    let body = json!({ "disabled": false });
    a.write("enable erin", Method::PATCH, &erin, Some(body), 200)
        .await;
    a.check(
        "enabled again",
        &user("erin"),
        "iam.policies.get",
        SHOP,
        true,
    )
    .await;
    let body = json!({ "display_name": "Erin E." });
    a.write("rename erin", Method::PATCH, &erin, Some(body), 200)
        .await;
    let path = format!("/users/{}", ids["frank"]);
    a.write(
        "delete frank (bound, in eng)",
        Method::DELETE,
        &path,
        None,
        204,
    )
    .await;
    assert!(
        !a.holds(&ids["frank"]),
        "a deleted user's bindings and membership stay in the view"
    );

    // resources that hold bindings deleted
    a.edit_policy("prod: viewer alice", PROD, |b| {
        grant(b, "viewer", &alice, None)
    })
    .await;
    let path = format!("/{PROD}");
    a.write("delete env prod", Method::DELETE, &path, None, 204)
        .await;
    assert!(
        !a.holds(&format!(" {PROD} ")),
        "a deleted resource's bindings stay in the view"
    );
    let dana = user("dana");
    a.check("dana edits scratch", &dana, update, SCRATCH, true)
        .await;
    let path = format!("/{SCRATCH}");
    a.write("delete project scratch", Method::DELETE, &path, None, 204)
        .await;
    let why = "a deleted resource's bindings are gone";
    a.check(why, &dana, update, SCRATCH, false).await;

    // invitations, sent and accepted through the mailed link
    let hank = "hank@example.com";
    for (step, email, role, scope) in [
        (
            "invite gina (unverified)",
            "gina@acme.test",
            "viewer",
            BACKEND,
        ),
        ("invite hank (no account)", hank, "editor", SHOP),
        ("invite alice (verified)", "alice@acme.test", "viewer", EU),
    ] {
        let body = json!({ "email": email, "role": role, "scope": scope });
        a.write(
            step,
            Method::POST,
            "/orgs/acme/invitations",
            Some(body),
            201,
        )
        .await;
    }
    let read = "iam.policies.get";
    a.check("alice does not read eu yet", &alice, read, EU, false)
        .await;
    a.accept("gina accepts", "gina@acme.test", Some(PASSWORD))
        .await;
    a.check("gina reads backend", &user("gina"), read, BACKEND, true)
        .await;
    a.accept("hank accepts with a new account", hank, Some(PASSWORD))
        .await;
    let hank = format!("user:{hank}");
    a.check("hank edits shop", &hank, update, SHOP, true).await;
    a.accept("alice accepts", "alice@acme.test", None).await;
    a.check("alice reads eu", &alice, read, EU, true).await;

    // a client, known to /oauth2/authorize at once
    let (status, page) = a.authorize("no-such-client").await;
    assert!(
        status == 400 && page.contains("is not registered"),
        "{status} {page}"
    );
    let body = json!({ "display_name": "Web", "redirect_uris": [REDIRECT], "public": false });
    let c = a
        .write(
            "create client web",
            Method::POST,
            "/orgs/acme/clients",
            Some(body),
            201,
        )
        .await;
    let client_id = c["client_id"].as_str().expect("client_id");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (status, page) = a.authorize(client_id).await;
        if status == 303 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a new client is not accepted within a second: {status} {page}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // a burst of writes, which the node may apply as one delta of several changes
    let body = json!({ "slug": "burst", "display_name": "Burst" });
    a.ok(Method::POST, "/orgs/acme/projects", Some(body), 201)
        .await;
    let burst = "orgs/acme/projects/burst";
    a.put_policy(burst, |b| {
        grant(b, "editor", &dana, None);
        grant(b, "viewer", ENG, Some(now + 600));
    })
    .await;
    let path = format!("{members}/user:erin%40acme.test");
    a.ok(Method::PUT, &path, None, 204).await;
    let body = json!({ "slug": "batch", "display_name": "Batch" });
    let batch = a
        .ok(
            Method::POST,
            &format!("/{burst}/service-accounts"),
            Some(body),
            201,
        )
        .await;
    let path = format!("/{burst}/service-accounts/batch/secrets");
    a.ok(Method::POST, &path, None, 201).await;
    let batch_member = format!(
        "serviceAccount:{}",
        batch["client_id"].as_str().expect("id")
    );
    a.put_policy(burst, |b| grant(b, "viewer", &batch_member, None))
        .await;
    let path = format!("/users/{}", ids["dana"]);
    a.ok(Method::DELETE, &path, None, 204).await;
    a.service_account("a burst of writes", &batch, Change::Disable)
        .await;
    a.check(
        "erin reads burst through eng",
        &user("erin"),
        read,
        burst,
        true,
    )
    .await;
    a.w.s.stop().await;
}

#[tokio::test]
async fn sqlite_node_applies_admin_api_writes_as_deltas_equal_to_a_full_load() {
    admin_api_writes_match_a_full_load(Admin::new(|_| {}).await).await;
}

#[tokio::test]
async fn postgres_and_redis_node_applies_admin_api_writes_as_deltas_equal_to_a_full_load() {
    let Some(db) = support::postgres_url().await else {
        return;
    };
    let Some(redis) = support::redis_url() else {
        return;
    };
    let a = Admin::new(|c| {
        c.database_url = secret(&db);
        c.redis_url = secret(&redis);
        c.poll_interval_ms = 1000;
    })
    .await;
    admin_api_writes_match_a_full_load(a).await;
}
