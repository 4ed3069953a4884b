//! The real binary: first start, restart, configuration errors, graceful shutdown.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    self, Proxy, client, command, free_port, gatehouse, json_out, wait_for_status,
};

struct Running {
    child: Child,
    base: String,
}

impl Running {
    fn start(dir: &Path, vars: &[(&str, &str)]) -> Running {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec![("GATEHOUSE_LISTEN", listen.as_str())];
        all.extend_from_slice(vars);
        // stderr is not read here: a pipe nobody drains would block the server's logger
        let child = command(dir, &["serve"], &all)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gatehouse");
        Running {
            child,
            base: format!("http://{listen}"),
        }
    }

    async fn ready(&self) {
        assert!(
            wait_for_status(
                &format!("{}/readyz", self.base),
                200,
                Duration::from_secs(20)
            )
            .await,
            "server became ready"
        );
    }

    fn terminate(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    }

    /// Waits for the process to exit, without blocking the test's runtime (which may
    /// be running a proxy the server depends on).
    async fn wait(mut self) -> std::process::ExitStatus {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        panic!("gatehouse did not exit after SIGTERM");
    }
}

async fn kid(base: &str) -> String {
    let jwks: Value = client()
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    jwks["keys"][0]["kid"].as_str().expect("kid").to_owned()
}

async fn change_seq(base: &str) -> i64 {
    let body: Value = client()
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    body["change_seq"].as_i64().expect("seq")
}

#[tokio::test]
async fn first_start_then_restart_keeps_keys_and_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Running::start(dir.path(), &[]);
    server.ready().await;
    let first_kid = kid(&server.base).await;
    let kek = dir.path().join("keys/kek");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kek).expect("kek").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key-encryption key is private");
    }
    assert!(
        dir.path().join("data/gatehouse.db").exists(),
        "SQLite in ./data"
    );

    // bootstrap while it runs: the server sees the write without a restart
    let before = change_seq(&server.base).await;
    let out = gatehouse(
        dir.path(),
        &[
            "bootstrap",
            "--org",
            "acme",
            "--owner-email",
            "owner@acme.test",
        ],
        &[("GATEHOUSE_BOOTSTRAP_PASSWORD", "correct horse battery")],
    );
    let made = json_out(&out);
    assert_eq!(made["created"], true);
    let mut seen = false;
    for _ in 0..40 {
        if change_seq(&server.base).await > before {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen,
        "the running server applied the bootstrap within two seconds"
    );

    server.terminate();
    assert!(server.wait().await.success(), "SIGTERM is a clean exit");

    let again = Running::start(dir.path(), &[]);
    again.ready().await;
    assert_eq!(
        kid(&again.base).await,
        first_kid,
        "same key after a restart"
    );
    let out = gatehouse(
        dir.path(),
        &[
            "bootstrap",
            "--org",
            "acme",
            "--owner-email",
            "owner@acme.test",
        ],
        &[("GATEHOUSE_BOOTSTRAP_PASSWORD", "correct horse battery")],
    );
    assert_eq!(
        json_out(&out),
        serde_json::json!({ "created": false }),
        "data survived"
    );
    again.terminate();
    assert!(again.wait().await.success());
}

/// Runs `serve` expecting it to refuse; returns its single stderr line.
fn refuses(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> String {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec![("GATEHOUSE_LISTEN", listen.as_str())];
    all.extend_from_slice(vars);
    let out = command(dir, args, &all).output().expect("run");
    assert!(!out.status.success(), "must refuse to start: {vars:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one clear line, got: {stderr}");
    assert!(
        std::net::TcpStream::connect(&listen).is_err(),
        "nothing listens"
    );
    stderr
}

#[tokio::test]
async fn bad_settings_stop_it_with_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("bad.toml"), "listen = \"127.0.0.1:1\"\nlisen = 3\n").expect("write");
    let line = refuses(d, &["serve", "--config", "bad.toml"], &[]);
    assert!(
        line.contains("unknown field `lisen`") && line.contains("line 2"),
        "{line}"
    );

    let line = refuses(d, &["serve"], &[("GATEHOUSE_DATABSE_URL", "sqlite://x")]);
    assert!(
        line.contains("GATEHOUSE_DATABSE_URL: unknown setting"),
        "{line}"
    );

    let line = refuses(d, &["serve"], &[("GATEHOUSE_REDIS_URL", "localhost:6379")]);
    assert!(line.contains("GATEHOUSE_REDIS_URL"), "{line}");

    let line = refuses(
        d,
        &["serve"],
        &[("GATEHOUSE_DATABASE_URL", "postgres//nohost")],
    );
    assert!(line.contains("GATEHOUSE_DATABASE_URL"), "{line}");

    let unreachable = format!("postgres://postgres@127.0.0.1:{}/test", free_port());
    let line = refuses(d, &["serve"], &[("GATEHOUSE_DATABASE_URL", &unreachable)]);
    assert!(
        line.contains("GATEHOUSE_DATABASE_URL: cannot open the database"),
        "{line}"
    );

    let unreachable = format!("redis://127.0.0.1:{}/", free_port());
    let line = refuses(d, &["serve"], &[("GATEHOUSE_REDIS_URL", &unreachable)]);
    assert!(
        line.contains("GATEHOUSE_REDIS_URL: cannot connect"),
        "{line}"
    );

    // a key-encryption key that cannot open the stored keys
    let first = Running::start(d, &[]);
    first.ready().await;
    first.terminate();
    assert!(first.wait().await.success());
    let (_, other) = gatehouse::crypto::kek::Kek::generate();
    let line = refuses(d, &["serve"], &[("GATEHOUSE_KEY_ENCRYPTION_KEY", &other)]);
    assert!(
        line.contains("GATEHOUSE_KEY_ENCRYPTION_KEY: the key-encryption key cannot open"),
        "{line}"
    );
    let line = refuses(d, &["serve"], &[("GATEHOUSE_KEY_ENCRYPTION_KEY", "short")]);
    assert!(
        line.contains("GATEHOUSE_KEY_ENCRYPTION_KEY: expected 32 bytes"),
        "{line}"
    );
    std::fs::remove_file(d.join("keys/kek")).expect("remove kek");
    let line = refuses(d, &["serve"], &[]);
    assert!(
        line.contains("the store holds signing keys, but no key-encryption key"),
        "{line}"
    );
    assert!(
        !d.join("keys/kek").exists(),
        "no new key is generated over existing keys"
    );

    // the listen address taken by another process
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = command(
        d,
        &["serve"],
        &[("GATEHOUSE_LISTEN", &addr), ("GATEHOUSE_DATA_DIR", "other")],
    )
    .output()
    .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GATEHOUSE_LISTEN: cannot listen"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let Some(redis) = support::redis_url() else {
        return;
    };
    let upstream = url::Url::parse(&redis).expect("url");
    let proxy = Proxy::start(format!(
        "{}:{}",
        upstream.host_str().expect("host"),
        upstream.port().unwrap_or(6379)
    ))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let redis_url = format!("redis://{}/", proxy.addr);
    let server = Running::start(dir.path(), &[("GATEHOUSE_REDIS_URL", &redis_url)]);
    server.ready().await;

    // /readyz pings Redis; slowing Redis keeps that request in flight
    proxy.slow(Duration::from_millis(700));
    let url = format!("{}/readyz", server.base);
    let in_flight =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.terminate();
    let status = in_flight
        .await
        .expect("join")
        .expect("the in-flight request got an answer");
    assert_eq!(status, 200);
    let base = server.base.clone();
    assert!(server.wait().await.success());
    assert!(
        client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err(),
        "stopped"
    );
}

#[tokio::test]
async fn log_lines_are_json_and_carry_the_request_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = command(
        dir.path(),
        &["serve"],
        &[("GATEHOUSE_LISTEN", &listen), ("GATEHOUSE_LOG", "debug")],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let server = Running {
        child,
        base: format!("http://{listen}"),
    };
    server.ready().await;
    let r = client()
        .get(format!(
            "{}/.well-known/jwks.json?code=do-not-log-me",
            server.base
        ))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    server.terminate();
    let out = server.child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let request_lines: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["path"] == "/.well-known/jwks.json")
        .collect();
    assert!(
        !request_lines.is_empty(),
        "the request was logged at debug: {stderr}"
    );
    for l in request_lines {
        assert_eq!(l["span"]["request_id"], "trace-abc-123", "{l}");
    }
    assert!(
        !stderr.contains("do-not-log-me"),
        "query strings are never logged"
    );
}

#[tokio::test]
async fn readyz_answers_503_until_the_node_has_loaded() {
    let Some(base) = support::backend("GATEHOUSE_TEST_DATABASE_URL") else {
        return;
    };
    let upstream = url::Url::parse(&base).expect("url");
    let proxy = Proxy::start(format!(
        "{}:{}",
        upstream.host_str().expect("host"),
        upstream.port().unwrap_or(5432)
    ))
    .await;
    let mut via = upstream.clone();
    via.set_host(Some("127.0.0.1")).expect("host");
    via.set_port(Some(proxy.addr.port())).expect("port");
    let db = support::fresh_schema(via.as_str()).await;
    // every answer from the database now takes a while: starting takes seconds
    proxy.slow(Duration::from_millis(150));
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Running::start(dir.path(), &[("GATEHOUSE_DATABASE_URL", &db)]);
    let http = client();
    let mut saw_starting = false;
    for _ in 0..200 {
        let answer = http.get(format!("{}/readyz", server.base)).send().await;
        if let Ok(r) = answer
            && r.status() == 503
        {
            let body: Value = r.json().await.expect("json");
            let reason = body["reason"].as_str().expect("reason");
            assert!(reason.starts_with("starting"), "{body}");
            let alive = http
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .expect("healthz");
            assert_eq!(alive.status(), 200, "alive while starting");
            saw_starting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_starting, "/readyz said 503 while the node was starting");
    proxy.slow(Duration::ZERO);
    server.ready().await;
    server.terminate();
    assert!(server.wait().await.success());
}
