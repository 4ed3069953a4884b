//! `cargo bench --bench startup`: the figures the README reports for a node on its
//! embedded defaults (SQLite, in-memory short-lived state), measured on the release
//! binary as a user runs it.
//!
//! - time from process start to the first 200 from `/readyz`, on a bootstrapped
//!   instance (median of 15 starts);
//! - resident memory of the idle server after it has served a few requests;
//! - requests per CPU-second of the server for the JWKS and discovery documents
//!   under `wrk -t2 -c32 -d10s` with keep-alive and the default log level (median of
//!   three runs each; the server's CPU time is read from /proc, so the load
//!   generator's share of the two cores does not count against it).
//!
//! Runs are bounded and target loopback only. `wrk` comes from Debian's package;
//! without it the throughput rows are skipped with a note.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{cpu_seconds, free_port, gatehouse, median, rss_kib, start_until_ready, status, stop};

/// Runs wrk once; (requests completed, requests per wall second, server CPU seconds).
fn wrk(pid: u32, port: u16, path: &str) -> Option<(f64, f64, f64)> {
    wrk_with(pid, port, path, None)
}

/// Runs wrk once with an optional Lua script.
fn wrk_with(pid: u32, port: u16, path: &str, script: Option<&Path>) -> Option<(f64, f64, f64)> {
    let before = cpu_seconds(pid);
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c32", "-d10s", "--latency"]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    let cpu = cpu_seconds(pid) - before;
    let text = String::from_utf8_lossy(&out.stdout);
    let total: f64 = text
        .lines()
        .find(|l| l.contains("requests in"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let rps: f64 = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    if text.contains("Non-2xx") {
        eprintln!("wrk saw non-2xx answers on {path}:\n{text}");
        return None;
    }
    Some((total, rps, cpu))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = gatehouse(dir.path(), free_port())
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
        .output()
        .expect("bootstrap");
    assert!(out.status.success(), "bootstrap");
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bootstrap output");
    let client_id = made["service_account"]["client_id"]
        .as_str()
        .expect("client id")
        .to_owned();
    let secret = made["service_account"]["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    let mut ready = Vec::new();
    for _ in 0..15 {
        let (child, _, took) = start_until_ready(dir.path());
        ready.push(took.as_secs_f64() * 1000.0);
        stop(child);
    }
    let (child, port, _) = start_until_ready(dir.path());
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/readyz",
    ] {
        assert_eq!(status(port, path), Some(200), "{path}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kib(child.id());

    println!("gatehouse startup benchmark (release binary, SQLite, in-memory short-lived state)");
    println!(
        "  start to ready, bootstrapped instance: median {:.1} ms of 15 (min {:.1}, max {:.1})",
        median(ready.clone()),
        ready.iter().cloned().fold(f64::MAX, f64::min),
        ready.iter().cloned().fold(0.0, f64::max)
    );
    println!("  idle resident memory: {:.1} MiB", idle as f64 / 1024.0);

    if Command::new("wrk").arg("--version").output().is_err() {
        println!("  throughput: SKIPPED (wrk is not installed; apt-get install wrk)");
        stop(child);
        return;
    }
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        let mut per_cpu = Vec::new();
        let mut per_wall = Vec::new();
        for _ in 0..3 {
            if let Some((total, rps, cpu)) = wrk(child.id(), port, path) {
                per_cpu.push(total / cpu.max(0.01));
                per_wall.push(rps);
            }
        }
        if per_cpu.is_empty() {
            println!("  {path}: wrk failed");
            continue;
        }
        println!(
            "  {path}: median {:.0} requests per server CPU-second ({:.0} requests/s wall clock, wrk -t2 -c32 -d10s, server and wrk sharing 2 cores)",
            median(per_cpu),
            median(per_wall)
        );
    }
    // client credentials: RS256 tokens with the roles claim, per server CPU-second
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
    let script = dir.path().join("token.lua");
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = \"grant_type=client_credentials&scope=roles\"\n\
         wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
         wrk.headers[\"Authorization\"] = \"Basic {basic}\"\n"
    );
    std::fs::write(&script, lua).expect("script");
    let mut per_cpu = Vec::new();
    let mut per_wall = Vec::new();
    for _ in 0..3 {
        if let Some((total, rps, cpu)) = wrk_with(child.id(), port, "/oauth2/token", Some(&script))
        {
            per_cpu.push(total / cpu.max(0.01));
            per_wall.push(rps);
        }
    }
    if !per_cpu.is_empty() {
        println!(
            "  /oauth2/token (client_credentials, RS256, roles claim): median {:.0} tokens per server CPU-second ({:.0} tokens/s wall clock)",
            median(per_cpu),
            median(per_wall)
        );
    }
    println!(
        "  resident memory after load: {:.1} MiB",
        rss_kib(child.id()) as f64 / 1024.0
    );
    stop(child);
}
