//! `cargo bench --bench oauth`: the OAuth load figures the README reports, from a load
//! driver in this file against the release binary on loopback (SQLite, in-memory
//! short-lived state), each next to the limit it is measured against in the same run:
//!
//! - client credentials (RS256, then ES256), tokens per server CPU-second and p99
//!   latency, against the larger of `openssl speed rsa2048` and aws-lc-rs's own signs/s
//!   on one core (`openssl speed ecdsap256` for ES256);
//! - refresh grants without `openid` per server CPU-second, same reference;
//! - complete browser logins (authorize, login page, form post, resume, code exchange)
//!   per server CPU-second, against argon2id hashes per second on one core at the
//!   configured parameters.
//!
//! Server CPU time comes from /proc, so the driver's share of the two cores does not
//! count against the server. `OAUTH_BENCH_SECS` sets each run's length (default 10).

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{Run, free_port, gatehouse, load, openssl, rate, start_with, stop};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "bench-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn challenge() -> String {
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, VERIFIER.as_bytes()).as_ref())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

/// The value of `name` in a `Set-Cookie` of `r`.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (pair, _) = v.split_once(';').unwrap_or((v, ""));
        let (k, val) = pair.split_once('=')?;
        (k == name).then(|| val.to_owned())
    })
}

fn hidden(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    Some(html[at..].split('"').next()?.to_owned())
}

/// A browser: its CSRF cookie and token, kept across logins as a browser would.
struct Browser {
    http: reqwest::Client,
    base: String,
    csrf_cookie: Option<String>,
}

impl Browser {
    /// One complete login; the token response.
    async fn login(&mut self, scope: &str) -> Option<serde_json::Value> {
        let url = format!(
            "{}/oauth2/authorize?client_id=gatehouse-admin&response_type=code&redirect_uri={}&scope={}&state=s&code_challenge={}&code_challenge_method=S256",
            self.base,
            REDIRECT,
            scope.replace(' ', "%20"),
            challenge()
        );
        let cookie = |extra: Option<&str>, csrf: &Option<String>| {
            let mut c = csrf
                .as_ref()
                .map(|v| format!("gatehouse_csrf={v}"))
                .unwrap_or_default();
            if let Some(e) = extra {
                c = format!("{c}; gatehouse_session={e}");
            }
            c
        };
        let r = self
            .http
            .get(&url)
            .header(COOKIE, cookie(None, &self.csrf_cookie))
            .send()
            .await
            .ok()?;
        let login = r.headers().get(LOCATION)?.to_str().ok()?.to_owned();
        let r = self
            .http
            .get(format!("{}{login}", self.base))
            .header(COOKIE, cookie(None, &self.csrf_cookie))
            .send()
            .await
            .ok()?;
        if let Some(c) = set_cookie(&r, "gatehouse_csrf") {
            self.csrf_cookie = Some(c);
        }
        let html = r.text().await.ok()?;
        let token = hidden(&html, "csrf_token")?;
        let pending = hidden(&html, "pending")?;
        let r = self
            .http
            .post(format!("{}/login", self.base))
            .header(COOKIE, cookie(None, &self.csrf_cookie))
            .form(&[
                ("csrf_token", token.as_str()),
                ("pending", pending.as_str()),
                ("email", "owner@bench.test"),
                ("password", "benchmark password"),
            ])
            .send()
            .await
            .ok()?;
        let session = set_cookie(&r, "gatehouse_session")?;
        let resume = r.headers().get(LOCATION)?.to_str().ok()?.to_owned();
        let r = self
            .http
            .get(format!("{}{resume}", self.base))
            .header(COOKIE, cookie(Some(&session), &self.csrf_cookie))
            .send()
            .await
            .ok()?;
        let back = url::Url::parse(r.headers().get(LOCATION)?.to_str().ok()?).ok()?;
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())?;
        let r = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", "gatehouse-admin"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }
}

/// Each run's length: `OAUTH_BENCH_SECS`, default 10.
fn secs() -> u64 {
    std::env::var("OAUTH_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

fn report(what: &str, run: &Run, unit: &str, limit: f64, limit_name: &str) {
    println!(
        "  {what}: {:.0} {unit} per server CPU-second ({:.0}/s wall clock, p99 {:.1} ms, {} failed); ratio to {limit_name} ({limit:.0}/s): {:.2}",
        run.per_cpu(),
        run.done as f64 / run.wall,
        run.p99_ms,
        run.failed,
        run.per_cpu() / limit,
    );
}

/// A bootstrapped instance in a fresh directory; (dir, service account id, secret).
fn instance(vars: &[(&str, &str)]) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = gatehouse(dir.path(), free_port())
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
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("bootstrap");
    assert!(out.status.success(), "bootstrap");
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bootstrap output");
    let id = made["service_account"]["client_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let secret = made["service_account"]["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    (dir, id, secret)
}

async fn client_credentials(pid: u32, base: &str, id: &str, secret: &str) -> Run {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let http = client();
    let url = format!("{base}/oauth2/token");
    load(pid, 32, secs(), vec![(); 32], move |()| {
        let (http, url, basic) = (http.clone(), url.clone(), basic.clone());
        async move {
            let ok = http
                .post(&url)
                .header(AUTHORIZATION, &basic)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials&scope=roles")
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            ((), ok)
        }
    })
    .await
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

    // The limits, measured first, on one core.
    let rsa_openssl = openssl(&["rsa2048"], 5).unwrap_or(0.0);
    let ec_openssl = openssl(&["ecdsap256"], 6).unwrap_or(0.0);
    let rsa_own = {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pair =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa key");
        let mut sig = vec![0u8; pair.public_modulus_len()];
        rate(|| {
            pair.sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                b"header.payload",
                &mut sig,
            )
            .expect("sign");
        })
    };
    let rsa_limit = rsa_openssl.max(rsa_own);
    let argon2 = {
        let mut n = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            gatehouse::crypto::password::hash_blocking("benchmark password").expect("hash");
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    println!("gatehouse OAuth load (release binary, SQLite, in-memory short-lived state)");
    println!(
        "  limits on one core: RSA-2048 signs {rsa_openssl:.0}/s (openssl speed), {rsa_own:.0}/s (aws-lc-rs); P-256 signs {ec_openssl:.0}/s (openssl speed); argon2id hashes {argon2:.1}/s (m=19456 KiB, t=2, p=1)"
    );

    // client credentials, RS256
    let rs256 = [("GATEHOUSE_LOG", "warn")];
    let (dir, id, secret) = instance(&rs256);
    let (child, port, _) = start_with(dir.path(), &rs256);
    let base = format!("http://127.0.0.1:{port}");
    let pid = child.id();
    let run = rt.block_on(client_credentials(pid, &base, &id, &secret));
    report(
        "client_credentials, RS256, roles claim, 32 connections",
        &run,
        "tokens",
        rsa_limit,
        "RSA-2048 signs",
    );

    // refresh grants without openid: 32 chains, each rotating its own token
    let tokens: Vec<String> = rt.block_on(async {
        let mut b = Browser {
            http: client(),
            base: base.clone(),
            csrf_cookie: None,
        };
        let mut out = Vec::new();
        for _ in 0..32 {
            let t = b.login("roles").await.expect("login");
            out.push(t["refresh_token"].as_str().expect("refresh").to_owned());
        }
        out
    });
    let http = client();
    let url = format!("{base}/oauth2/token");
    let run = rt.block_on(load(pid, 32, secs(), tokens, move |token: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .post(&url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", "gatehouse-admin"),
                    ("refresh_token", token.as_str()),
                ])
                .send()
                .await;
            let next = match r {
                Ok(r) if r.status().is_success() => r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v["refresh_token"].as_str().map(str::to_owned)),
                _ => None,
            };
            match next {
                Some(n) => (n, true),
                None => (token, false),
            }
        }
    }));
    report(
        "refresh_token (rotation, no openid), 32 chains",
        &run,
        "refreshes",
        rsa_limit,
        "RSA-2048 signs",
    );

    // complete logins: 8 browsers
    let browsers: Vec<Browser> = (0..8)
        .map(|_| Browser {
            http: client(),
            base: base.clone(),
            csrf_cookie: None,
        })
        .collect();
    let run = rt.block_on(load(
        pid,
        8,
        secs(),
        browsers,
        |mut b: Browser| async move {
            let ok = b.login("openid roles").await.is_some();
            (b, ok)
        },
    ));
    report(
        "complete logins (authorize, login page, form post, resume, code exchange), 8 browsers",
        &run,
        "logins",
        argon2,
        "argon2id hashes",
    );
    stop(child);

    // client credentials, ES256
    let es256 = [
        ("GATEHOUSE_LOG", "warn"),
        ("GATEHOUSE_SIGNING_ALG", "ES256"),
    ];
    let (dir, id, secret) = instance(&es256);
    let (child, port, _) = start_with(dir.path(), &es256);
    let run = rt.block_on(client_credentials(
        child.id(),
        &format!("http://127.0.0.1:{port}"),
        &id,
        &secret,
    ));
    report(
        "client_credentials, ES256, roles claim, 32 connections",
        &run,
        "tokens",
        ec_openssl,
        "P-256 signs (openssl speed)",
    );
    stop(child);
}
