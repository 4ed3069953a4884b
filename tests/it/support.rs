//! Shared test support: servers started in process on free ports, the real binary,
//! per-test PostgreSQL schemas, Redis, a TCP proxy that can cut a backend off, an
//! SMTP relay, and a [`Browser`] with the HTML, OAuth and mail helpers the flows
//! share.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use gatehouse::config::{Config, Secret};
use gatehouse::server::{self, AppState};
use reqwest::header::HeaderMap;
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

// ---------------------------------------------------------------------------
// A browser, and the bits of HTML, OAuth and mail the flows read

/// Undoes the HTML escaping of the server's templates.
pub fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of the (hidden or any) input `name` in a page, unescaped.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let v = tag.find("value=\"")? + "value=\"".len();
    let len = tag[v..].find('"')?;
    Some(unescape(&tag[v..v + len]))
}

/// `pairs` as an `application/x-www-form-urlencoded` body (or query).
pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The query parameters of a URL.
pub fn params_of(location: &str) -> BTreeMap<String, String> {
    let u = url::Url::parse(location).unwrap_or_else(|e| panic!("{location:?}: {e}"));
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

/// A new PKCE pair.
pub fn pkce() -> Pkce {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    Pkce {
        challenge: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref()),
        verifier,
    }
}

/// An HTTP Basic `Authorization` value.
pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// The claims of a JWT, unverified (the server verifies; the test reads).
pub fn jwt_claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Decodes a quoted-printable body: soft line breaks and `=XX` escapes.
pub fn quoted_printable(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The raw messages in the outbox under `data_dir` (the `.eml` files), oldest first
/// (the file names are UUIDv7: in the order written).
pub fn outbox(data_dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(data_dir.join("outbox")) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// One message of the outbox, parsed.
#[derive(Clone, Debug)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    /// The body, decoded.
    pub body: String,
}

impl Mail {
    /// The link to `path` (`/verify`, `/invite`) the mail carries, whole.
    #[track_caller]
    pub fn link(&self, issuer: &str, path: &str) -> String {
        self.try_link(issuer, path)
            .unwrap_or_else(|| panic!("no {issuer}{path}?token= link in: {self:?}"))
    }

    pub fn try_link(&self, issuer: &str, path: &str) -> Option<String> {
        let start = self.body.find(&format!("{issuer}{path}?token="))?;
        let end = self.body[start..]
            .find(char::is_whitespace)
            .map_or(self.body.len(), |i| start + i);
        Some(self.body[start..end].to_owned())
    }
}

/// Parses one `.eml` file as lettre writes it.
pub fn parse_mail(raw: &str) -> Mail {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .unwrap_or((raw, ""));
    // Unfold continued header lines.
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let qp = header("content-transfer-encoding").eq_ignore_ascii_case("quoted-printable");
    Mail {
        to: header("to"),
        subject: header("subject"),
        body: if qp {
            quoted_printable(body)
        } else {
            body.to_owned()
        },
    }
}

/// The messages in the outbox under `data_dir`, parsed, oldest first.
pub fn mails(data_dir: &Path) -> Vec<Mail> {
    outbox(data_dir).iter().map(|raw| parse_mail(raw)).collect()
}

/// One HTTP answer, read whole.
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    /// The `Location` header, or "".
    pub fn location(&self) -> &str {
        self.header("location")
    }

    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `Set-Cookie` value for cookie `name`, if the answer sets it.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    /// Every `Set-Cookie` value of the answer.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    /// A hidden (or any) input's value from the page's HTML.
    pub fn input(&self, name: &str) -> Option<String> {
        input_value(&self.body, name)
    }

    /// Whether the page has an input `name`.
    pub fn has_input(&self, name: &str) -> bool {
        self.body.contains(&format!("name=\"{name}\""))
    }

    /// Whether the page holds a form posting to `action`.
    pub fn posts_to(&self, action: &str) -> bool {
        self.body.contains(&format!(r#"action="{action}""#))
    }

    /// The text between `open` and the next `close`, unescaped ("" when absent).
    pub fn between(&self, open: &str, close: &str) -> String {
        let Some(start) = self.body.find(open).map(|i| i + open.len()) else {
            return String::new();
        };
        let end = self.body[start..].find(close).map_or(start, |i| start + i);
        unescape(&self.body[start..end])
    }

    /// The page's `<h1>`.
    pub fn title(&self) -> String {
        self.between("<h1>", "</h1>")
    }

    /// The page's lead paragraph (a message page's message).
    pub fn lead(&self) -> String {
        self.between(r#"<p class="lead">"#, "</p>")
    }

    /// The text of the page's alert, if it has one.
    pub fn alert(&self) -> Option<String> {
        let start = self.body.find(r#"role="alert">"#)? + r#"role="alert">"#.len();
        let end = self.body[start..].find("</div>")? + start;
        Some(unescape(&self.body[start..end]))
    }

    /// Status, location and title, for assertion messages.
    pub fn what(&self) -> String {
        format!(
            "{} {} {:?}: {}",
            self.status,
            self.location(),
            self.title(),
            self.body.chars().take(1500).collect::<String>()
        )
    }

    /// Asserts the status and the title, with the page in the message.
    #[track_caller]
    pub fn is(&self, status: u16, title: &str) -> &Resp {
        assert_eq!(
            (self.status, self.title().as_str()),
            (status, title),
            "page: {}",
            self.body
        );
        self
    }

    /// The pending authorization a redirect to the login page carries.
    pub fn pending(&self) -> String {
        let loc = self.location();
        assert!(
            self.status == 303 && loc.starts_with("/login?pending="),
            "a redirect to the login page: {} {loc}",
            self.status
        );
        loc["/login?pending=".len()..].to_owned()
    }

    /// The headers of every browser-facing answer: never framed, never cached.
    pub fn assert_page_headers(&self) {
        assert!(
            self.header("content-security-policy")
                .contains("frame-ancestors 'none'"),
            "status {}: CSP {:?}",
            self.status,
            self.header("content-security-policy")
        );
        assert_eq!(
            self.header("x-frame-options"),
            "DENY",
            "status {}: X-Frame-Options",
            self.status
        );
        assert_eq!(
            self.header("cache-control"),
            "no-store",
            "status {}: Cache-Control",
            self.status
        );
    }
}

/// A browser talking to one server (`base`): a cookie jar kept by hand, headers
/// sent with every request, redirects followed by hand.
pub struct Browser {
    /// Where relative targets go.
    pub base: String,
    http: reqwest::Client,
    /// The cookies, by name.
    pub jar: BTreeMap<String, String>,
    headers: Vec<(String, String)>,
    no_server_errors: bool,
}

impl Browser {
    /// A browser for `base` with a client of its own.
    pub fn new(base: &str) -> Browser {
        Browser::with_client(base, client())
    }

    /// A browser for `base` sending through `http`.
    pub fn with_client(base: &str, http: reqwest::Client) -> Browser {
        Browser {
            base: base.to_owned(),
            http,
            jar: BTreeMap::new(),
            headers: Vec::new(),
            no_server_errors: false,
        }
    }

    /// Fails the test on any answer with a 5xx status.
    pub fn no_server_errors(mut self) -> Browser {
        self.no_server_errors = true;
        self
    }

    /// Sends `name: value` with every further request.
    pub fn always(&mut self, name: &str, value: &str) {
        self.headers.push((name.to_owned(), value.to_owned()));
    }

    /// The jar's value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.get(name).cloned()
    }

    /// Puts cookie `name` in the jar.
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.jar.insert(name.to_owned(), value.to_owned());
    }

    fn absorb(&mut self, headers: &HeaderMap) {
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().expect("set-cookie is ASCII");
            let mut parts = v.split(';').map(str::trim);
            let (name, value) = parts
                .next()
                .and_then(|p| p.split_once('='))
                .expect("name=value");
            let removed = parts.any(|a| a.eq_ignore_ascii_case("max-age=0"));
            if removed || value.is_empty() {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// `target` as a URL: as is when absolute, else under `base`.
    pub fn url(&self, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            target.to_owned()
        } else {
            format!("{}{target}", self.base)
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Sends `req` with the jar's cookies and the standing headers; keeps the
    /// cookies the answer sets.
    pub async fn send(&mut self, mut req: reqwest::RequestBuilder) -> Resp {
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if !self.jar.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.expect("body");
        if self.no_server_errors {
            assert!(status < 500, "a server error {status}: {body}");
        }
        self.absorb(&headers);
        Resp {
            status,
            headers,
            body,
        }
    }

    /// A form post built with this browser's cookies but not sent, to send several
    /// at once.
    pub fn post_request(&self, path: &str, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", self.cookie_header())
            .body(form(pairs))
    }

    pub async fn get(&mut self, target: &str) -> Resp {
        let req = self.http.get(self.url(target));
        self.send(req).await
    }

    /// Posts a form.
    pub async fn post(&mut self, target: &str, pairs: &[(&str, &str)]) -> Resp {
        let req = self
            .http
            .post(self.url(target))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
        self.send(req).await
    }

    /// A form post that a page of `origin` made the browser send.
    pub async fn post_from(&mut self, origin: &str, path: &str, pairs: &[(&str, &str)]) -> Resp {
        let req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", origin)
            .body(form(pairs));
        self.send(req).await
    }

    /// Follows a redirect to this server.
    pub async fn follow(&mut self, r: &Resp) -> Resp {
        assert_eq!(r.status, 303, "a redirect: {}", r.what());
        let loc = r.location().to_owned();
        assert!(
            loc.starts_with('/') || loc.starts_with(&self.base),
            "a redirect to this server ({}): {loc}",
            self.base
        );
        self.get(&loc).await
    }

    /// Shows the login page (at `to_login`, a path) and posts its form as `who`,
    /// with the pending authorization the page carries, if any.
    pub async fn sign_in_at(&mut self, to_login: &str, who: (&str, &str)) -> Resp {
        let page = self.get(to_login).await;
        assert_eq!(page.status, 200, "the login page: {}", page.what());
        let csrf = page.input("csrf_token").expect("csrf_token");
        let mut pairs = vec![
            ("csrf_token", csrf.as_str()),
            ("email", who.0),
            ("password", who.1),
        ];
        let pending = page.input("pending");
        if let Some(p) = &pending {
            pairs.push(("pending", p));
        }
        self.post("/login", &pairs).await
    }

    /// From a redirect to the login page with a pending authorization: shows it
    /// and posts the form. Returns the answer to the post.
    pub async fn sign_in(&mut self, to_login: &Resp, who: (&str, &str)) -> Resp {
        to_login.pending();
        let loc = to_login.location().to_owned();
        self.sign_in_at(&loc, who).await
    }

    /// Answers a consent page with `decision`.
    pub async fn consent(&mut self, page: &Resp, decision: &str) -> Resp {
        let csrf = page.input("csrf_token").expect("csrf_token");
        let pending = page.input("pending").expect("pending");
        self.post(
            "/consent",
            &[
                ("csrf_token", &csrf),
                ("pending", &pending),
                ("decision", decision),
            ],
        )
        .await
    }

    /// Runs this server's side of an authorization from `r` on: signs in as `who`
    /// when sent to the login page (with `None`, being sent there fails the test:
    /// the browser must have a session), answers the consent page with `decision`,
    /// and returns where the browser is finally sent elsewhere (the client's
    /// redirect URI, with the answer).
    pub async fn run_to_client(
        &mut self,
        mut r: Resp,
        who: Option<(&str, &str)>,
        decision: &str,
    ) -> String {
        let mut signed_in = false;
        for _ in 0..10 {
            if r.status == 303 {
                let loc = r.location().to_owned();
                let here = loc
                    .strip_prefix(&self.base)
                    .filter(|rest| rest.starts_with('/'))
                    .map(str::to_owned)
                    .or_else(|| loc.starts_with('/').then(|| loc.clone()));
                match here {
                    Some(path) if path.starts_with("/login") => {
                        let who = who.unwrap_or_else(|| {
                            panic!(
                                "{} asked for a login although the browser has a session: {loc}",
                                self.base
                            )
                        });
                        assert!(
                            !signed_in,
                            "sent to the login page again right after signing in: {loc}"
                        );
                        r = self.sign_in_at(&path, who).await;
                        signed_in = true;
                    }
                    Some(path) => r = self.get(&path).await,
                    None => return loc,
                }
            } else if r.status == 200 && r.posts_to("/consent") {
                r = self.consent(&r, decision).await;
            } else {
                panic!("unexpected answer at {}: {}", self.base, r.what());
            }
        }
        panic!("the authorization at {} does not end", self.base);
    }

    /// Runs the authorization request at `path` to its end, signing in as `who`
    /// and allowing consent when asked; returns the parameters sent back to the
    /// client.
    pub async fn authorize(&mut self, path: &str, who: (&str, &str)) -> BTreeMap<String, String> {
        let r = self.get(path).await;
        params_of(&self.run_to_client(r, Some(who), "allow").await)
    }
}
