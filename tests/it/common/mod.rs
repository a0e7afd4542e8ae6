//! Test harness: gatehouse on 127.0.0.1:0 through the library, and the real
//! OpenID provider (npm oidc-provider) on a free loopback port. Everything a test
//! starts is stopped when its handle drops.
#![allow(dead_code)]

pub mod browser;
pub mod config;
pub mod nanokvm;
pub mod pg;
pub mod proxies;
pub mod raw;
pub mod redfish;
pub mod webdriver;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse::app::{build_state, start_background, AppState};
use gatehouse::clock::SharedClock;
use gatehouse::config::Config;
use gatehouse::http::server::serve_on;
use serde_json::Value;

pub use config::{config_with, config_with_all};

pub fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp")
}

/// Installs the IdP's npm packages once (the tests work on a fresh checkout).
pub fn ensure_idp_installed() {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if idp_dir()
        .join("node_modules/oidc-provider/package.json")
        .exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(idp_dir())
        .status()
        .expect("npm must be installed to run the IdP integration tests");
    assert!(status.success(), "npm ci in tests/idp failed");
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private JWK made by the IdP script (`genkey`), for key files. Node has been
/// seen to hang at exit (a futex wait after the key was printed), so each try
/// is bounded and a hung one is killed and tried again.
pub fn gen_key(kty: &str, kid: &str) -> Value {
    ensure_idp_installed();
    for _ in 0..3 {
        let mut child = Command::new("node")
            .args(["idp.mjs", "genkey", kty, kid])
            .current_dir(idp_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed");
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut out).map(|_| out)
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Killing one that already exited does nothing; the wait reaps it either way.
        let _ = child.kill();
        let status = child.wait().ok();
        let out = reader.join().unwrap().unwrap_or_default();
        // A key printed whole is good even when node then hung on its way out.
        if let Ok(v) = serde_json::from_slice::<Value>(&out) {
            return v;
        }
        eprintln!("node idp.mjs genkey {kty}: no key (status {status:?}); trying again");
    }
    panic!("node idp.mjs genkey {kty} failed three times");
}

/// The real OpenID provider, running until dropped.
pub struct Idp {
    pub issuer: String,
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Idp {
    /// Starts the IdP on `port` (0: any) with these private keys and users.
    pub fn start(port: u16, keys: &[Value], users: &Value) -> Idp {
        Self::start_with_env(port, keys, users, &[])
    }

    /// The same, with more `IDP_*` settings (see tests/idp/idp.mjs).
    pub fn start_with_env(port: u16, keys: &[Value], users: &Value, env: &[(&str, String)]) -> Idp {
        ensure_idp_installed();
        let dir = tempfile::tempdir().unwrap();
        let kf = dir.path().join("keys.json");
        let uf = dir.path().join("users.json");
        std::fs::write(&kf, serde_json::json!({ "keys": keys }).to_string()).unwrap();
        std::fs::write(&uf, users.to_string()).unwrap();
        let mut child = Command::new("node")
            .arg("idp.mjs")
            .current_dir(idp_dir())
            .env("IDP_PORT", port.to_string())
            .env("IDP_KEYS", &kf)
            .env("IDP_USERS", &uf)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(iss) = line.strip_prefix("listening ") {
                    let _ = tx.send(iss.to_string());
                }
            }
        });
        let issuer = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(i) => i,
            Err(_) => {
                let _ = child.kill();
                panic!("the IdP did not start within 20s");
            }
        };
        let port = issuer.rsplit(':').next().unwrap().parse().unwrap();
        Idp {
            issuer,
            port,
            child,
            _dir: dir,
        }
    }

    /// An access token for a client_credentials "user" defined in `users`.
    pub async fn token(&self, user: &str) -> String {
        let resp = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", user),
                ("client_secret", "secret"),
                ("scope", "api"),
            ])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(
            status.is_success(),
            "token request for {user} failed: {body}"
        );
        body["access_token"].as_str().unwrap().to_string()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// gatehouse serving on 127.0.0.1:0 until dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Starts with a TOML configuration; `{dir}` in it is replaced by a temp dir.
    pub async fn start(toml: &str) -> Server {
        Self::start_with_clock(toml, None).await
    }

    pub async fn start_with_clock(toml: &str, clock: Option<SharedClock>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_bound(listener, toml, clock, tempfile::tempdir().unwrap()).await
    }

    /// Starts on an already bound listener (when the port must be known before,
    /// e.g. for the IdP's redirect URI), with `{dir}` replaced by `dir`.
    pub async fn start_bound(
        listener: tokio::net::TcpListener,
        toml: &str,
        clock: Option<SharedClock>,
        dir: tempfile::TempDir,
    ) -> Server {
        let text = toml.replace("{dir}", dir.path().to_str().unwrap());
        let cfg =
            Config::from_toml_str(&text, dir.path(), "test", &[]).unwrap_or_else(|e| panic!("{e}"));
        // A server of this test just dropped may still hold its SQLite claim
        // for a moment (its tasks end asynchronously): wait for it.
        let t = Instant::now();
        let state = loop {
            match build_state(cfg.clone(), clock.clone()).await {
                Ok(s) => break s,
                Err(e)
                    if e.to_string().contains("another gatehouse process")
                        && t.elapsed() < Duration::from_secs(5) =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{e}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tasks = start_background(&state).await;
        let st = state.clone();
        tasks.push(tokio::spawn(async move {
            let _ = serve_on(listener, st, async {
                let _ = rx.await;
            })
            .await;
        }));
        Server {
            addr,
            state,
            dir,
            stop: Some(tx),
            tasks,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends exactly these headers (values as raw bytes) to `path`; an error only
    /// when the server drops the connection.
    pub async fn authz(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::Response> {
        let mut req = client().get(self.url(path));
        for (k, v) in headers {
            let v = reqwest::header::HeaderValue::from_bytes(v.as_bytes())
                .expect("a sendable header value");
            req = req.header(*k, v);
        }
        req.send().await
    }

    /// Asks `/authz/forward` about `GET https://host{uri}` with extra headers
    /// (appended, so a name may repeat).
    pub async fn forward(
        &self,
        host: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut all = vec![
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", host),
            ("X-Forwarded-Uri", uri),
            ("X-Forwarded-Method", "GET"),
        ];
        all.extend_from_slice(headers);
        self.authz("/authz/forward", &all).await.unwrap()
    }

    /// Status of `/authz/forward` for a bearer token.
    pub async fn forward_status(&self, host: &str, uri: &str, token: &str) -> u16 {
        let auth = format!("Bearer {token}");
        self.forward(host, uri, &[("Authorization", &auth)])
            .await
            .status()
            .as_u16()
    }

    /// Reads one sample from `/metrics` (exact line prefix match), 0 if absent.
    pub async fn metric(&self, line_prefix: &str) -> u64 {
        let text = text_of(self.url("/metrics")).await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(line_prefix)
                    .map(|v| v.trim().parse::<f64>().unwrap() as u64)
            })
            .unwrap_or(0)
    }

    /// A token from the local signing key for `sub` with these realm roles,
    /// issued at the server's clock, valid for an hour.
    pub fn mint(&self, sub: &str, roles: &[&str]) -> String {
        self.mint_req(&gatehouse::identity::MintRequest {
            sub: sub.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ttl_secs: 3600,
            ..Default::default()
        })
    }

    /// A token from the local signing key as `req` asks, issued now.
    pub fn mint_req(&self, req: &gatehouse::identity::MintRequest) -> String {
        self.state
            .local
            .as_ref()
            .expect("a [local_issuer] in the test config")
            .mint(req, self.state.clock.wall())
            .unwrap()
    }

    /// A local token for `sub` with these roles, with a second factor (`acr`
    /// gold, as the control tests configure) or not, authenticated `age`
    /// seconds ago, valid for two hours.
    pub fn mint_as(&self, sub: &str, roles: &[&str], two_factor: bool, age: i64) -> String {
        let req = gatehouse::identity::MintRequest {
            sub: sub.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ttl_secs: 7200,
            acr: two_factor.then(|| "gold".to_string()),
            ..Default::default()
        };
        self.state
            .local
            .as_ref()
            .expect("a [local_issuer] in the test config")
            .mint(&req, self.state.clock.wall() - age)
            .unwrap()
    }

    /// Bans `value` (`kind` ip or user) for an hour through the API as `token`.
    pub async fn ban(&self, token: &str, kind: &str, value: &str) -> (u16, Value) {
        let body = serde_json::json!({"kind": kind, "value": value, "duration": "1h"});
        self.api("POST", "/api/v1/bans", Some(token), Some(body))
            .await
    }

    /// A companion API call (JSON body, bearer token); (status, JSON answer).
    /// Long enough a limit for power operations that wait for a device.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = client()
            .request(m, self.url(path))
            .timeout(Duration::from_secs(90));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// The local signing key (to craft hostile tokens with a trusted key).
    pub fn local_key_pem(&self) -> String {
        let path = self
            .state
            .config
            .local_issuer
            .as_ref()
            .and_then(|l| l.signing_key_file.clone())
            .unwrap();
        std::fs::read_to_string(path).unwrap()
    }
}

impl Server {
    /// A store handle of the test's own on the server's database (the
    /// server's is reachable only through its services).
    pub async fn store(&self) -> gatehouse::store::Store {
        gatehouse::store::Store::connect(&self.state.config.store.url)
            .await
            .unwrap()
    }

    /// The server's audit log.
    pub fn audit(&self) -> &gatehouse::audit::log::AuditLog {
        self.state.services.audit.log()
    }

    /// Stops serving and gives back the temp dir (to restart on the same files).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// An HTTP client that does not follow redirects (we assert on them).
pub fn client() -> reqwest::Client {
    // gatehouse's builder: it installs the one TLS crypto provider first.
    gatehouse::crypto::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Waits until something listens on 127.0.0.1:`port` (a process a test
/// started), at most `limit`; `what` names it in the failure.
pub fn wait_for_listener(port: u16, what: &str, limit: Duration) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < limit, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub type Shared<T> = Arc<Mutex<T>>;

/// The body of a GET of `url` as text (e.g. `/metrics`, a page of the UI).
pub async fn text_of(url: impl reqwest::IntoUrl) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `/authz/forward` at `base` (`http://addr` or `https://addr`) for
/// `https://app.example.com/`, as a proxy asks it, with this Authorization.
pub fn forward_to(c: &reqwest::Client, base: &str, auth: Option<&str>) -> reqwest::RequestBuilder {
    let r = c
        .get(format!("{base}/authz/forward"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "app.example.com")
        .header("X-Forwarded-Uri", "/")
        .header("X-Forwarded-Method", "GET");
    match auth {
        Some(a) => r.header("Authorization", a),
        None => r,
    }
}

/// An issuer's discovery document at `base` naming `{base}/jwks` as its key
/// set (the caller adds the `/jwks` route).
pub fn discovery(base: &str) -> axum::Router {
    let b = base.to_string();
    axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || {
            let b = b.clone();
            async move {
                axum::Json(serde_json::json!({"issuer": b, "jwks_uri": format!("{b}/jwks")}))
            }
        }),
    )
}

/// A child process killed (SIGKILL) and reaped when dropped, so that a
/// failing test leaves no server behind holding the test's output open.
pub struct Reaped(pub Child);

impl Reaped {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
    /// SIGKILL now (a crash), and wait for it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the gatehouse binary with these arguments (a config with
/// `listen = "127.0.0.1:0"`) and returns it with the address it reported.
pub fn spawn_serve(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (Child, String) {
    spawn_serve_bin(Path::new(env!("CARGO_BIN_EXE_gatehouse")), args, dir, env)
}

/// [`spawn_serve`] with another gatehouse binary (an installed one).
pub fn spawn_serve_bin(
    bin: &Path,
    args: &[&str],
    dir: &Path,
    env: &[(&str, &str)],
) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env_remove("GATEHOUSE_CONFIG")
        .env("GATEHOUSE_LOG", "info")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let echo = std::env::var_os("GATEHOUSE_TEST_ECHO").is_some();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if echo {
                eprintln!("[serve] {line}");
            }
            if let Some(i) = line.find("address=") {
                let _ = tx.send(line[i + 8..].split_whitespace().next().unwrap().to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => (child, addr),
        Err(_) => {
            let _ = child.kill();
            panic!("gatehouse serve did not report its address");
        }
    }
}

/// Running as root (servers that refuse root then run as another user).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A live session record of `user` (no sid, address or tokens), for tests
/// that store sessions directly.
pub fn session_record(
    id: String,
    user: &str,
    groups: &[&str],
    now: i64,
) -> gatehouse::store::SessionRecord {
    gatehouse::store::SessionRecord {
        id,
        issuer: "gatehouse-local".into(),
        subject: user.into(),
        username: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        email: None,
        name: None,
        acr: None,
        amr: vec![],
        auth_time: Some(now),
        sid: None,
        client_addr: None,
        user_agent: None,
        created_at: now,
        last_seen: now,
        expires_at: now + 3600,
        terminated_at: None,
        terminated_by: None,
        id_token: None,
        refresh_token: None,
        refresh_at: None,
    }
}

impl Server {
    /// A browser session of `user` stored and loaded into the table, as a
    /// login would leave it; returns the cookie value.
    pub async fn stored_session(&self, user: &str, groups: &[&str]) -> String {
        use gatehouse::identity::{seal::random_token, session};
        let cookie = random_token(session::SESSION_COOKIE_BYTES);
        let record = session_record(
            session::session_id(&cookie),
            user,
            groups,
            self.state.clock.now(),
        );
        self.store().await.insert_session(&record).await.unwrap();
        self.state.services.sessions.reload().await.unwrap();
        cookie
    }
}

/// The PKCS#8 DER of an Ed25519 private JWK (from [`gen_key`]), for signing
/// tokens in tests.
pub fn ed_pkcs8(jwk: &Value) -> Vec<u8> {
    use base64::Engine;
    let d = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["d"].as_str().unwrap())
        .unwrap();
    // The fixed PKCS#8 prefix of an Ed25519 private key, then the 32 key bytes.
    let mut der: Vec<u8> = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ]
    .to_vec();
    der.extend_from_slice(&d);
    der
}
