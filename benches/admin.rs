//! `cargo bench --bench admin`: the admin API under load, from a load driver in this
//! file against the release binary on loopback:
//!
//! - `POST /v1/check` per server CPU-second and its latency, on the instance of the
//!   `iam` benchmark (100,000 users, 5,000 groups, about 1,000,000 bindings) written
//!   into the server's SQLite database before it starts, every request carrying a
//!   client-credentials access token that the server verifies (a service account with
//!   the owner role at `*`); 32 connections, then one; then three policy writes on
//!   that instance, each timed until a check on the node sees it;
//! - policy writes per second (`GET` the policy for its etag, `PUT` it back with one
//!   binding added), one writer and four writers on distinct projects, on SQLite and,
//!   when `GATEHOUSE_TEST_DATABASE_URL` is set, on PostgreSQL (a fresh schema), on a
//!   small instance: bootstrap, 200 projects and 100 users made through the API.
//!
//! Server CPU time comes from /proc, so the driver's share of the two cores does not
//! count against the server. `ADMIN_BENCH_SECS` sets each run's length (default 10);
//! `ADMIN_BENCH_QUICK=1` uses an instance ten times smaller for the checks.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::dataset::{self, USERS};
use common::{Run, free_port, gatehouse, load, load_until, rss_kib, start_within, stop};
use gatehouse::iam::evaluator::PrincipalKind;
use gatehouse::store::Store;
use gatehouse::store::iam::BindingRow;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};

fn secs() -> u64 {
    std::env::var("ADMIN_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

/// Failed requests by status (0: no answer), with the first answer of each.
#[derive(Clone, Default)]
struct Failures(Arc<Mutex<BTreeMap<u16, (u64, String)>>>);

impl Failures {
    fn note(&self, status: u16, body: String) {
        let mut m = self.0.lock().expect("lock");
        let e = m.entry(status).or_insert((0, body));
        e.0 += 1;
    }

    fn take(&self) -> String {
        let m = std::mem::take(&mut *self.0.lock().expect("lock"));
        m.iter()
            .map(|(s, (n, body))| {
                let body: String = body.chars().take(300).collect();
                format!("{n} x {s}: {body}")
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A bootstrapped data directory; the service account's client id and secret.
fn bootstrap(dir: &Path, vars: &[(&str, &str)]) -> (String, String) {
    let out = gatehouse(dir, free_port())
        .envs(vars.iter().copied())
        .args([
            "bootstrap",
            "--org",
            "bench",
            "--owner-email",
            "owner@bench.test",
            "--service-account",
            "ci",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("bootstrap");
    assert!(
        out.status.success(),
        "bootstrap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).expect("bootstrap output");
    let sa = &made["service_account"];
    (
        sa["client_id"].as_str().expect("client_id").to_owned(),
        sa["client_secret"].as_str().expect("secret").to_owned(),
    )
}

/// Writes, in one transaction, the owner role at `*` for the service account and,
/// when given, the generated instance; the seconds it took.
async fn prepare(url: &str, client_id: &str, instance: Option<&dataset::Instance>) -> f64 {
    let store = Store::connect(url, 2).await.expect("connect");
    let sa = store
        .service_account_by_client_id(client_id)
        .await
        .expect("read")
        .expect("the bootstrap service account");
    let owner = gatehouse::iam::Catalog::named("default")
        .expect("catalog")
        .owner_role;
    let started = Instant::now();
    let mut tx = store.begin().await.expect("begin");
    gatehouse::store::iam::insert_binding(
        &mut tx,
        &BindingRow {
            id: uuid::Uuid::new_v4().to_string(),
            scope: "*".into(),
            role: owner,
            principal_kind: "serviceAccount".into(),
            principal_id: sa.id,
            expires_at: None,
        },
    )
    .await
    .expect("owner binding");
    if let Some(i) = instance {
        dataset::write(&mut tx, i)
            .await
            .expect("write the instance");
    }
    tx.commit().await.expect("commit");
    let took = started.elapsed().as_secs_f64();
    store.close().await;
    took
}

/// A client-credentials access token for the admin API.
async fn token(http: &reqwest::Client, base: &str, id: &str, secret: &str) -> String {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let r = http
        .post(format!("{base}/oauth2/token"))
        .header(AUTHORIZATION, basic)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("token request");
    let status = r.status();
    let body: Value = r.json().await.expect("token json");
    assert!(status.is_success(), "token: {status} {body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn quantiles(run: &Run) -> String {
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        run.quantile_ms(0.50),
        run.quantile_ms(0.95),
        run.p99_ms
    )
}

/// `POST /v1/check` from `tasks` connections, each walking the questions from its own
/// offset; the run and the share of answers that allowed.
async fn checks(
    pid: u32,
    base: &str,
    bearer: &str,
    bodies: Arc<Vec<bytes::Bytes>>,
    tasks: usize,
    failures: &Failures,
) -> (Run, f64) {
    let http = client();
    let url = format!("{base}/v1/check");
    let bearer = format!("Bearer {bearer}");
    let allowed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let step = bodies.len() / tasks;
    let init: Vec<usize> = (0..tasks).map(|t| t * step).collect();
    let (a, f) = (allowed.clone(), failures.clone());
    let run = load(pid, tasks, secs(), init, move |at: usize| {
        let (http, url, bearer, bodies, allowed, failures) = (
            http.clone(),
            url.clone(),
            bearer.clone(),
            bodies.clone(),
            a.clone(),
            f.clone(),
        );
        async move {
            let body = bodies[at % bodies.len()].clone();
            let r = http
                .post(&url)
                .header(AUTHORIZATION, &bearer)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await;
            let ok = match r {
                Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                    Ok(v) if v["allowed"].is_boolean() => {
                        if v["allowed"] == true {
                            allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        true
                    }
                    Ok(v) => {
                        failures.note(200, v.to_string());
                        false
                    }
                    Err(e) => {
                        failures.note(200, e.to_string());
                        false
                    }
                },
                Ok(r) => {
                    let s = r.status().as_u16();
                    failures.note(s, r.text().await.unwrap_or_default());
                    false
                }
                Err(e) => {
                    failures.note(0, e.to_string());
                    false
                }
            };
            (at + 1, ok)
        }
    })
    .await;
    let share = allowed.load(std::sync::atomic::Ordering::Relaxed) as f64 / run.done.max(1) as f64;
    (run, share)
}

async fn check_section(dir: &Path, quick: bool) {
    let users = if quick { USERS / 10 } else { USERS };
    let vars = [("GATEHOUSE_LOG", "warn")];
    let (id, secret) = bootstrap(dir, &vars);

    let started = Instant::now();
    let instance = dataset::generate(users, 0);
    let generated = started.elapsed().as_secs_f64();
    let counts = (
        instance.principals.len(),
        instance.groups.len(),
        instance.memberships.len(),
        instance.bindings.len(),
    );
    // What the evaluator answers in process on the same data, to hold the server to.
    let questions = dataset::queries(users);
    let expected: Vec<bool> = {
        let roles = gatehouse::iam::Roles::resolve(
            Arc::new(gatehouse::iam::Catalog::named("default").expect("catalog")),
            &dataset::api_permissions(),
            &[],
        )
        .expect("roles");
        let ev = gatehouse::iam::Evaluator::build(
            Arc::new(roles),
            &instance.principals,
            &instance.memberships,
            &instance.bindings,
        )
        .expect("evaluator");
        let now = gatehouse::now_unix();
        questions
            .iter()
            .map(|(u, p, r)| ev.check(PrincipalKind::User, u, p, r, now))
            .collect()
    };
    let url = format!("sqlite://{}", dir.join("data/gatehouse.db").display());
    let written = prepare(&url, &id, Some(&instance)).await;
    drop(instance);
    println!(
        "  instance: {} users, {} groups, {} memberships, {} bindings (+3 from bootstrap, +1 owner at * for the caller); generated in {generated:.1} s, written to SQLite in one transaction in {written:.1} s",
        counts.0, counts.1, counts.2, counts.3
    );

    let (child, port, ready) = start_within(dir, &vars, Duration::from_secs(900));
    let pid = child.id();
    println!(
        "  gatehouse serve: ready in {:.1} s, resident memory {:.0} MiB",
        ready.as_secs_f64(),
        rss_kib(pid) as f64 / 1024.0
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let bearer = token(&http, &base, &id, &secret).await;

    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        questions
            .iter()
            .map(|(u, p, r)| {
                let b = json!({
                    "principal": format!("user:{}", dataset::email(u)),
                    "permission": p,
                    "resource": r,
                });
                bytes::Bytes::from(b.to_string())
            })
            .collect(),
    );
    // One pass over every question, one at a time, before the timed runs: it warms
    // SQLite's page cache and holds each answer to the in-process evaluator's.
    let mut differ = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        let r = http
            .post(format!("{base}/v1/check"))
            .bearer_auth(&bearer)
            .header(CONTENT_TYPE, "application/json")
            .body(b.clone())
            .send()
            .await
            .expect("check");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_default();
        if !status.is_success() || v["allowed"] != expected[i] {
            differ.push(format!("{} -> {status} {v}", String::from_utf8_lossy(b)));
        }
    }
    let allowed = expected.iter().filter(|a| **a).count();
    println!(
        "  {} questions ({} allowed in process): {} server answers differ{}",
        bodies.len(),
        allowed,
        differ.len(),
        differ
            .first()
            .map(|d| format!(", first: {d}"))
            .unwrap_or_default()
    );
    let failures = Failures::default();

    for tasks in [32, 1] {
        let (run, share) = checks(pid, &base, &bearer, bodies.clone(), tasks, &failures).await;
        println!(
            "  POST /v1/check, {tasks} connection{}: {:.0} checks per server CPU-second ({:.0}/s wall clock, {}; {:.0}% allowed; {} failed)",
            if tasks == 1 { "" } else { "s" },
            run.per_cpu(),
            run.per_sec(),
            quantiles(&run),
            share * 100.0,
            run.failed
        );
        let f = failures.take();
        if !f.is_empty() {
            println!("    failures: {f}");
        }
    }
    println!(
        "  server resident memory after the checks: {:.0} MiB",
        rss_kib(pid) as f64 / 1024.0
    );
    // A policy write on this instance: how long the PUT takes, and how long and how
    // much server CPU until the node's view shows it (every change reloads the view).
    for n in 0..3 {
        let member = format!("user:{}", dataset::email(&format!("u{n}")));
        let (put_ms, visible_s, cpu) = visible_write(&http, &base, &bearer, pid, &member).await;
        println!(
            "  policy write on this instance ({member} as viewer on orgs/bench): PUT {put_ms:.1} ms; in the node's view after {visible_s:.1} s, {cpu:.1} server CPU-seconds"
        );
    }
    stop(child);
}

/// Adds `member` (holding nothing on `orgs/bench` before) as viewer on `orgs/bench`;
/// (PUT milliseconds, seconds until `POST /v1/check` allows it, server CPU-seconds
/// meanwhile).
async fn visible_write(
    http: &reqwest::Client,
    base: &str,
    bearer: &str,
    pid: u32,
    member: &str,
) -> (f64, f64, f64) {
    let url = format!("{base}/v1/orgs/bench/policy");
    let policy: Value = http
        .get(&url)
        .bearer_auth(bearer)
        .send()
        .await
        .expect("get policy")
        .json()
        .await
        .expect("policy json");
    let mut bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
    bindings.push(json!({ "role": "viewer", "members": [member] }));
    let cpu = common::cpu_seconds(pid);
    let started = Instant::now();
    let r = http
        .put(&url)
        .bearer_auth(bearer)
        .json(&json!({ "etag": policy["etag"], "bindings": bindings }))
        .send()
        .await
        .expect("put policy");
    let put_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = r.status();
    assert!(
        status.is_success(),
        "policy write: {status} {}",
        r.text().await.unwrap_or_default()
    );
    let question = json!({
        "principal": member,
        "permission": "resourcemanager.organizations.get",
        "resource": "orgs/bench",
    });
    loop {
        let v: Value = http
            .post(format!("{base}/v1/check"))
            .bearer_auth(bearer)
            .json(&question)
            .send()
            .await
            .expect("check")
            .json()
            .await
            .unwrap_or_default();
        if v["allowed"] == true || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (
        put_ms,
        started.elapsed().as_secs_f64(),
        common::cpu_seconds(pid) - cpu,
    )
}

/// One writer's projects and, per project, how many bindings it has added.
struct Writer {
    projects: Vec<String>,
    added: Vec<usize>,
    next: usize,
}

/// Roles the writers add, with each of the users: 400 distinct bindings per project.
const WRITE_ROLES: &[&str] = &["viewer", "editor", "project.member", "project.auditor"];
const WRITE_USERS: usize = 100;

fn write_member(n: usize) -> String {
    format!("user:w{n:03}@bench.test")
}

/// `writers` concurrent read-modify-write loops over `projects` (each writer its own).
async fn policy_writes(
    pid: u32,
    base: &str,
    bearer: &str,
    projects: &[String],
    writers: usize,
    failures: &Failures,
) -> Run {
    let http = client();
    let bearer = format!("Bearer {bearer}");
    let base = base.to_owned();
    let init: Vec<Writer> = (0..writers)
        .map(|w| {
            let projects: Vec<String> = projects.iter().skip(w).step_by(writers).cloned().collect();
            Writer {
                added: vec![0; projects.len()],
                projects,
                next: 0,
            }
        })
        .collect();
    let f = failures.clone();
    load_until(pid, writers, secs(), init, move |mut w: Writer| {
        let (http, bearer, base, failures) =
            (http.clone(), bearer.clone(), base.clone(), f.clone());
        async move {
            let at = w.next % w.projects.len();
            let n = w.added[at];
            if n >= WRITE_ROLES.len() * WRITE_USERS {
                return None;
            }
            let url = format!("{base}/v1/{}/policy", w.projects[at]);
            let role = WRITE_ROLES[n / WRITE_USERS];
            let member = write_member(n % WRITE_USERS);
            let fail = |status: u16, body: String| {
                failures.note(status, body);
            };
            let r = match http.get(&url).header(AUTHORIZATION, &bearer).send().await {
                Ok(r) => r,
                Err(e) => {
                    fail(0, e.to_string());
                    return Some((w, false));
                }
            };
            if !r.status().is_success() {
                let s = r.status().as_u16();
                fail(s, format!("GET: {}", r.text().await.unwrap_or_default()));
                return Some((w, false));
            }
            let Ok(policy) = r.json::<Value>().await else {
                fail(200, "GET: not JSON".into());
                return Some((w, false));
            };
            let mut bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
            match bindings
                .iter_mut()
                .find(|b| b["role"] == role && b.get("expires_at").is_none())
            {
                Some(b) => {
                    if let Some(m) = b["members"].as_array_mut() {
                        m.push(json!(member));
                    }
                }
                None => bindings.push(json!({ "role": role, "members": [member] })),
            }
            let body = json!({ "etag": policy["etag"], "bindings": bindings });
            let ok = match http
                .put(&url)
                .header(AUTHORIZATION, &bearer)
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => true,
                Ok(r) => {
                    let s = r.status().as_u16();
                    fail(s, format!("PUT: {}", r.text().await.unwrap_or_default()));
                    false
                }
                Err(e) => {
                    fail(0, e.to_string());
                    false
                }
            };
            if ok {
                w.added[at] += 1;
            }
            w.next += 1;
            Some((w, ok))
        }
    })
    .await
}

/// Creates `n` projects under `orgs/bench` named `<prefix>-NNN`, through the API.
async fn projects(http: &reqwest::Client, base: &str, bearer: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..100 {
        let slug = format!("{prefix}-{i:03}");
        let r = http
            .post(format!("{base}/v1/orgs/bench/projects"))
            .bearer_auth(bearer)
            .json(&json!({ "slug": slug, "display_name": slug }))
            .send()
            .await
            .expect("create project");
        let status = r.status();
        assert!(
            status.is_success(),
            "project {slug}: {status} {}",
            r.text().await.unwrap_or_default()
        );
        out.push(format!("orgs/bench/projects/{slug}"));
    }
    out
}

async fn write_section(what: &str, dir: &Path, vars: &[(&str, &str)], url: &str) {
    let (id, secret) = bootstrap(dir, vars);
    prepare(url, &id, None).await;
    let (child, port, _) = start_within(dir, vars, Duration::from_secs(60));
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let bearer = token(&http, &base, &id, &secret).await;
    for n in 0..WRITE_USERS {
        let email = write_member(n).trim_start_matches("user:").to_owned();
        let r = http
            .post(format!("{base}/v1/users"))
            .bearer_auth(&bearer)
            .json(&json!({ "email": email, "display_name": email, "email_verified": true }))
            .send()
            .await
            .expect("create user");
        let status = r.status();
        assert!(
            status.is_success(),
            "user {email}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }
    let failures = Failures::default();
    for (writers, prefix) in [(1, "s"), (4, "c")] {
        let projects = projects(&http, &base, &bearer, prefix).await;
        let run = policy_writes(pid, &base, &bearer, &projects, writers, &failures).await;
        println!(
            "  {what}, {writers} writer{} on distinct projects: {:.0} policy writes/s wall clock ({:.0} per server CPU-second; GET+PUT {}; {} failed)",
            if writers == 1 { "" } else { "s" },
            run.per_sec(),
            run.per_cpu(),
            quantiles(&run),
            run.failed
        );
        let f = failures.take();
        if !f.is_empty() {
            println!("    failures: {f}");
        }
    }
    stop(child);
}

/// A fresh schema in the PostgreSQL database at `base`; `base` pointed at it.
async fn fresh_schema(base: &str) -> String {
    use sqlx::Connection;
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let quick = std::env::var_os("ADMIN_BENCH_QUICK").is_some_and(|v| v == "1");
    println!(
        "gatehouse admin API load (release binary, loopback, in-memory short-lived state, {} s per run{})",
        secs(),
        if quick {
            ", ADMIN_BENCH_QUICK: instance ten times smaller"
        } else {
            ""
        }
    );

    let dir = tempfile::tempdir().expect("tempdir");
    rt.block_on(check_section(dir.path(), quick));
    drop(dir);

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}",
        dir.path().join("data/gatehouse.db").display()
    );
    rt.block_on(write_section(
        "SQLite",
        dir.path(),
        &[("GATEHOUSE_LOG", "warn")],
        &url,
    ));
    drop(dir);

    match std::env::var("GATEHOUSE_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            let url = rt.block_on(fresh_schema(&base));
            let dir = tempfile::tempdir().expect("tempdir");
            rt.block_on(write_section(
                "PostgreSQL",
                dir.path(),
                &[("GATEHOUSE_LOG", "warn"), ("GATEHOUSE_DATABASE_URL", &url)],
                &url,
            ));
        }
        _ => println!("  PostgreSQL: skipped (set GATEHOUSE_TEST_DATABASE_URL)"),
    }
}
