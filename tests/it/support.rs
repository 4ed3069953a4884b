//! Shared test support: servers started in process on free ports, the real binary,
//! per-test PostgreSQL schemas, Redis, and a TCP proxy that can cut a backend off.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse::config::{Config, Secret};
use gatehouse::server::{self, AppState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Installs the TLS crypto provider once (reqwest is built without one).
pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The URL of a backend the suite needs, or `None` (with a plain note) when the
/// variable is unset. In CI (`CI` set) a missing backend fails the test instead.
pub fn backend(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!("{var} is not set: in CI the backend suites must run, not be skipped");
            }
            eprintln!("SKIPPED: {var} is not set, so this backend's suite did not run");
            None
        }
    }
}

/// A fresh PostgreSQL schema for one test, as a database URL, or `None` when
/// PostgreSQL is not configured.
pub async fn postgres_url() -> Option<String> {
    let base = backend("GATEHOUSE_TEST_DATABASE_URL")?;
    Some(fresh_schema(&base).await)
}

/// Creates a schema with a unique name and returns `base` pointed at it.
pub async fn fresh_schema(base: &str) -> String {
    use sqlx::Connection;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("connect to test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// The Redis URL, or `None` when Redis is not configured.
pub fn redis_url() -> Option<String> {
    backend("GATEHOUSE_TEST_REDIS_URL")
}

/// A configuration rooted in `dir` (data and keys), listening on `addr`.
pub fn config_in(dir: &Path, addr: SocketAddr) -> Config {
    Config {
        listen: addr,
        issuer: Some(format!("http://{addr}")),
        data_dir: dir.join("data"),
        keys_dir: dir.join("keys"),
        poll_interval_ms: 100,
        jwks_cache_secs: 2,
        ..Config::default()
    }
}

/// A server running in this process.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The node's state.
    pub state: AppState,
    /// Its working directory (data and keys).
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server with default test settings in a new temporary directory.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` edits its configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut server = Self::start_in(&dir, adjust).await.expect("server starts");
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server rooted in `dir` (which the caller keeps).
    pub async fn start_in(
        dir: &Path,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<TestServer, server::StartError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_in_on(dir, listener, adjust).await
    }

    /// Starts a server in a new temporary directory on `listener`, which the caller
    /// bound (so its address, and URLs built from it, are known before it starts).
    pub async fn start_on(listener: TcpListener, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut server = Self::start_in_on(&dir, listener, adjust)
            .await
            .expect("server starts");
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server rooted in `dir` (which the caller keeps) on `listener`.
    pub async fn start_in_on(
        dir: &Path,
        listener: TcpListener,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<TestServer, server::StartError> {
        init();
        let addr = listener.local_addr().expect("addr");
        let mut config = config_in(dir, addr);
        adjust(&mut config);
        let state = server::open(config).await?;
        let (stop, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        Ok(TestServer {
            base: format!("http://{addr}"),
            state,
            dir: dir.to_path_buf(),
            stop: Some(stop),
            handle: Some(handle),
            _tmp: None,
        })
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }

    /// `GET base + path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }
}

/// An HTTP client that never follows redirects.
pub fn client() -> reqwest::Client {
    init();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Runs the real binary with exactly these `GATEHOUSE_*` variables (the test
/// process's own are removed) and waits for it.
pub fn gatehouse(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    command(dir, args, vars).output().expect("run gatehouse")
}

/// The binary as a command, working directory `dir`.
pub fn command(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEHOUSE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("GATEHOUSE_LOG", "warn");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `url` until it answers `want` or `timeout` passes.
pub async fn wait_for_status(url: &str, want: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let http = client();
    while tokio::time::Instant::now() < deadline {
        if let Ok(r) = http.get(url).send().await
            && r.status().as_u16() == want
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Parses the one JSON object a command printed.
pub fn json_out(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "command failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A secret setting.
pub fn secret(s: &str) -> Option<Secret> {
    Some(Secret(s.to_owned()))
}

/// A TCP proxy in front of a backend that a test can cut off and restore, or slow.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    _accept: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    down: bool,
    delay: Duration,
    conns: Vec<tokio::task::AbortHandle>,
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if st.lock().expect("lock").down {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let st2 = st.clone();
                let task = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        pipe(client, server, st2).await;
                    }
                });
                st.lock().expect("lock").conns.push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            state,
            _accept: accept,
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        let mut s = self.state.lock().expect("lock");
        s.down = true;
        for c in s.conns.drain(..) {
            c.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.lock().expect("lock").down = false;
    }

    /// Delays every chunk from the backend by `d`.
    pub fn slow(&self, d: Duration) {
        self.state.lock().expect("lock").delay = d;
    }
}

async fn pipe(client: TcpStream, server: TcpStream, state: Arc<Mutex<ProxyState>>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let delay = state.lock().expect("lock").delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(up, down);
}

/// One message a [`SmtpRelay`] accepted: its envelope and its data (dot-unstuffed,
/// without the final `.` line).
#[derive(Clone, Debug)]
pub struct SmtpMessage {
    /// The `MAIL FROM` address.
    pub from: String,
    /// The `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The message as sent after `DATA`.
    pub data: String,
}

#[derive(Default)]
struct RelayLog {
    sessions: usize,
    commands: Vec<String>,
    messages: Vec<SmtpMessage>,
}

/// A local SMTP relay speaking just enough SMTP for lettre (no TLS, no AUTH): it
/// accepts every message and records it.
pub struct SmtpRelay {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<RelayLog>>,
    _accept: JoinHandle<()>,
}

impl SmtpRelay {
    /// Starts a relay on a free loopback port.
    pub async fn start() -> SmtpRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(RelayLog::default()));
        let l = log.clone();
        let accept = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                l.lock().expect("lock").sessions += 1;
                tokio::spawn(smtp_session(conn, l.clone()));
            }
        });
        SmtpRelay {
            addr,
            log,
            _accept: accept,
        }
    }

    /// An `smtp://` URL of this relay with `query` appended (say `?tls=none`).
    pub fn url(&self, query: &str) -> String {
        format!("smtp://{}{query}", self.addr)
    }

    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        self.log.lock().expect("lock").messages.clone()
    }

    /// The connections accepted so far.
    pub fn sessions(&self) -> usize {
        self.log.lock().expect("lock").sessions
    }

    /// The command verbs received so far (`EHLO`, `MAIL`, ...), in order.
    pub fn commands(&self) -> Vec<String> {
        self.log.lock().expect("lock").commands.clone()
    }

    /// Waits until at least `n` messages arrived or `timeout` passed; returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SmtpMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let m = self.messages();
            if m.len() >= n || tokio::time::Instant::now() >= deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The address inside `MAIL FROM:<a> ...` or `RCPT TO:<a>`.
fn angle_addr(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].to_owned()
}

async fn smtp_session(conn: TcpStream, log: Arc<Mutex<RelayLog>>) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    if w.write_all(b"220 relay.test ESMTP\r\n").await.is_err() {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let cmd = line.trim_end();
        let (verb, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
        let verb = verb.to_ascii_uppercase();
        log.lock().expect("lock").commands.push(verb.clone());
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-relay.test\r\n250 8BITMIME\r\n",
            "HELO" => b"250 relay.test\r\n",
            "MAIL" => {
                from = angle_addr(arg);
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                to.push(angle_addr(arg));
                b"250 OK\r\n"
            }
            "DATA" => {
                if w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    match r.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                log.lock().expect("lock").messages.push(SmtpMessage {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                });
                b"250 OK queued\r\n"
            }
            "RSET" => {
                from.clear();
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                let _ = w.write_all(b"221 Bye\r\n").await;
                return;
            }
            _ => b"502 Command not implemented\r\n",
        };
        if w.write_all(reply).await.is_err() {
            return;
        }
    }
}
