//! What the benchmarks share: starting the release binary on a free port, reading a
//! process's CPU time and memory from /proc, rates and medians, and `openssl speed`
//! as the reference on the same machine.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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
    let port = free_port();
    let started = Instant::now();
    let child = gatehouse(dir, port)
        .envs(vars.iter().copied())
        .arg("serve")
        .spawn()
        .expect("spawn");
    while status(port, "/readyz") != Some(200) {
        if started.elapsed() > Duration::from_secs(30) {
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
