//! What the benchmarks share: starting the release binary on a free port, reading a
//! process's CPU time and memory from /proc, a load loop timed against the server's
//! CPU, rates and medians, `openssl speed` as the reference on the same machine, and
//! the generated IAM instance ([`dataset`]).
#![allow(dead_code, unreachable_pub)]

pub mod dataset;

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

pub fn gatehouse(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("GATEHOUSE_LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEHOUSE_BOOTSTRAP_PASSWORD", "benchmark password")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One HTTP/1.1 GET; the status code, or None if nothing answers.
pub fn status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Starts `gatehouse serve` in `dir` and waits for `/readyz`: (process, port, time to ready).
pub fn start_until_ready(dir: &Path) -> (Child, u16, Duration) {
    start_with(dir, &[])
}

/// [`start_until_ready`] with extra environment variables.
pub fn start_with(dir: &Path, vars: &[(&str, &str)]) -> (Child, u16, Duration) {
    start_within(dir, vars, Duration::from_secs(30))
}

/// [`start_with`], waiting up to `limit` for `/readyz` (a large instance takes a
/// while to load).
pub fn start_within(dir: &Path, vars: &[(&str, &str)], limit: Duration) -> (Child, u16, Duration) {
    let port = free_port();
    let started = Instant::now();
    let child = gatehouse(dir, port)
        .envs(vars.iter().copied())
        .arg("serve")
        .spawn()
        .expect("spawn");
    while status(port, "/readyz") != Some(200) {
        if started.elapsed() > limit {
            stop(child);
            panic!("server never became ready");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    (child, port, started.elapsed())
}

pub fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// What one load run measured.
pub struct Run {
    /// Operations that succeeded.
    pub done: u64,
    /// Operations that failed.
    pub failed: u64,
    /// Server CPU seconds during the run.
    pub cpu: f64,
    /// Wall-clock seconds of the run.
    pub wall: f64,
    /// Latencies of the successful operations, in milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
    /// The 99th percentile of those.
    pub p99_ms: f64,
}

impl Run {
    /// Successful operations per server CPU-second.
    pub fn per_cpu(&self) -> f64 {
        self.done as f64 / self.cpu.max(0.01)
    }

    /// Successful operations per wall-clock second.
    pub fn per_sec(&self) -> f64 {
        self.done as f64 / self.wall.max(0.001)
    }

    /// The latency at quantile `q` (0 to 1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let l = &self.latencies_ms;
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// Runs `tasks` concurrent loops of `op` for `secs` seconds, timing each call; the
/// server process `pid`'s CPU time is read before and after. A loop whose `op`
/// answers `None` has nothing left to do and ends early.
pub async fn load_until<S, F, Fut>(pid: u32, tasks: usize, secs: u64, init: Vec<S>, op: F) -> Run
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Option<(S, bool)>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let before = cpu_seconds(pid);
    let started = Instant::now();
    let mut handles = Vec::new();
    for s in init.into_iter().take(tasks) {
        let stop = stop.clone();
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let mut s = s;
            let mut lat = Vec::new();
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let Some((next, ok)) = op(s).await else {
                    break;
                };
                s = next;
                if ok {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    failed += 1;
                }
            }
            (lat, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut failed = 0;
    for h in handles {
        let (l, f) = h.await.expect("task");
        lat.extend(l);
        failed += f;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - before;
    lat.sort_by(|a, b| a.total_cmp(b));
    let mut run = Run {
        done: lat.len() as u64,
        failed,
        cpu,
        wall,
        latencies_ms: lat,
        p99_ms: f64::NAN,
    };
    run.p99_ms = run.quantile_ms(0.99);
    run
}

/// [`load_until`] with an `op` that never runs out.
pub async fn load<S, F, Fut>(pid: u32, tasks: usize, secs: u64, init: Vec<S>, op: F) -> Run
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = (S, bool)> + Send,
{
    load_until(pid, tasks, secs, init, move |s| {
        let f = op(s);
        async move { Some(f.await) }
    })
    .await
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// User plus system CPU seconds of a process.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the parenthesized command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// Operations per second of `op` on this thread: the median of five one-second rounds.
pub fn rate(mut op: impl FnMut()) -> f64 {
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(1) {
            for _ in 0..16 {
                op();
            }
            n += 16;
        }
        rounds.push(n as f64 / start.elapsed().as_secs_f64());
    }
    rounds.sort_by(|a, b| a.total_cmp(b));
    rounds[2]
}

/// `openssl speed`'s sign/s (the given column of its last line), if openssl is installed.
pub fn openssl(args: &[&str], column: usize) -> Option<f64> {
    let out = Command::new("openssl")
        .arg("speed")
        .args(["-seconds", "3"])
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .last()?
        .split_whitespace()
        .nth(column)?
        .parse()
        .ok()
}
