//! Several replicas: three real `gatehouse serve` processes on one real
//! PostgreSQL. A change made through one (a session's termination, a user's
//! token revocation, a ban, an allowlist removal, the kill switch) denies on
//! the others at once — announced with NOTIFY, not found by the periodic
//! reload, which these tests set to a minute. Also: an admin socket on one
//! replica sees the others' audit entries; a replica whose listener loses its
//! connection is not ready until it has caught up; SQLite stays one process.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
/// Far more than NOTIFY needs, far less than the periodic reload (60 s).
const BOUND: Duration = Duration::from_secs(3);

struct Replicas {
    pg: pg::Postgres,
    dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
    procs: Vec<(Child, String)>,
    admin: String,
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for (c, _) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn mint(cfg: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["token", "mint", "--config", cfg.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn start(n: usize) -> Replicas {
    let pg = pg::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
public_url = "https://auth.example.com"
[store]
url = "{}"
reload_interval = "60s"
max_staleness = "3s"
[local_issuer]
signing_key_file = "k.pem"
[session]
secret = "a-shared-session-secret-0123456789abcdef"
[access]
default_policy = "deny"
two_factor_amr = ["otp"]
allowlist_enforced = true
allowlist = ["127.0.0.0/8"]
[[access.rules]]
domains = ["app.example.com"]
policy = "one_factor"
[control.kill_switch]
engage_deny = true
"#,
            pg.url
        ),
    )
    .unwrap();
    // The shared signing key first, so the processes do not race to create it.
    let admin = mint(
        &cfg,
        &["--sub", "root", "--roles", "admin", "--amr", "pwd,otp"],
    );
    let procs = (0..n)
        .map(|_| {
            spawn_serve(
                &["serve", "--config", cfg.to_str().unwrap()],
                dir.path(),
                &[],
            )
        })
        .collect();
    let w = Replicas {
        pg,
        dir,
        cfg,
        procs,
        admin,
    };
    // Ready: listening for the others' changes and caught up.
    for i in 0..n {
        let t = Instant::now();
        loop {
            if ready_now(w.addr(i)) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "replica {i} never ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    w
}

/// `/readyz` answers 200 (a plain blocking request: `start` is not async).
fn ready_now(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let asked =
        c.write_all(b"GET /readyz HTTP/1.1\r\nHost: gatehouse\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    asked.is_ok() && c.read_exact(&mut head).is_ok() && head == *b"HTTP/1.1 200"
}

impl Replicas {
    fn addr(&self, i: usize) -> &str {
        &self.procs[i].1
    }

    async fn api(&self, i: usize, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = client()
            .request(m, format!("http://{}{path}", self.addr(i)))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Bans `value` (`kind` ip or user) for an hour through replica `i`.
    async fn ban(&self, i: usize, kind: &str, value: &str) -> (u16, Value) {
        let body = json!({"kind": kind, "value": value, "duration": "1h"});
        self.api(i, "POST", "/api/v1/bans", Some(body)).await
    }

    /// The decision on replica `i` for `https://host/` with these headers.
    async fn decide(&self, i: usize, host: &str, headers: &[(&str, &str)]) -> u16 {
        let mut r = client()
            .get(format!("http://{}/authz/forward", self.addr(i)))
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", host)
            .header("X-Forwarded-Uri", "/")
            .header("X-Forwarded-Method", "GET");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap().status().as_u16()
    }

    /// Waits until every replica in `which` answers `want`; how long it took.
    async fn until_all(
        &self,
        which: &[usize],
        want: u16,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Duration {
        let t = Instant::now();
        for &i in which {
            loop {
                let got = self.decide(i, host, headers).await;
                if got == want {
                    break;
                }
                assert!(
                    t.elapsed() < BOUND,
                    "replica {i} still answers {got}, not {want}, {:?} after the change",
                    t.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        t.elapsed()
    }

    async fn ready(&self, i: usize) -> (u16, Value) {
        let r = client()
            .get(format!("http://{}/readyz", self.addr(i)))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_replica_denies_on_the_others_at_once() {
    let w = start(3);
    for i in 0..3 {
        let (s, v) = w.ready(i).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["replicas"],
            json!({"shared_store": true, "in_sync": true})
        );
    }

    // A browser session, as a login on any replica would store it.
    let store = gatehouse::store::Store::connect(&w.pg.url).await.unwrap();
    let cookie =
        gatehouse::identity::seal::random_token(gatehouse::identity::session::SESSION_COOKIE_BYTES);
    let now = gatehouse::clock::Clock::now(&gatehouse::clock::SystemClock);
    let id = gatehouse::identity::session::session_id(&cookie);
    store
        .insert_session(&session_record(id.clone(), "carol", &[], now))
        .await
        .unwrap();
    let c = format!("gatehouse_session={cookie}");
    let with_cookie = [("Cookie", c.as_str())];
    w.until_all(&[0, 1, 2], 200, "app.example.com", &with_cookie)
        .await;
    // Terminated through replica 0: replicas 1 and 2 deny the cookie.
    let (s, _) = w
        .api(0, "DELETE", &format!("/api/v1/sessions/{id}"), None)
        .await;
    assert_eq!(s, 200);
    w.until_all(&[1, 2], 401, "app.example.com", &with_cookie)
        .await;

    // A user's tokens revoked through replica 1.
    let alice = format!("Bearer {}", mint(&w.cfg, &["--sub", "alice"]));
    let bearer = [("Authorization", alice.as_str())];
    w.until_all(&[0, 1, 2], 200, "app.example.com", &bearer)
        .await;
    let (s, _) = w
        .api(1, "POST", "/api/v1/sessions/terminate-all?user=alice", None)
        .await;
    assert_eq!(s, 200);
    w.until_all(&[0, 2], 401, "app.example.com", &bearer).await;

    // A ban through replica 2.
    let mallory = format!("Bearer {}", mint(&w.cfg, &["--sub", "mallory"]));
    let bearer = [("Authorization", mallory.as_str())];
    w.until_all(&[0, 1], 200, "app.example.com", &bearer).await;
    let (s, _) = w.ban(2, "user", "mallory").await;
    assert_eq!(s, 200);
    w.until_all(&[0, 1], 403, "app.example.com", &bearer).await;

    // An allowlist entry added through replica 0 lets its network in on the
    // others; removed through replica 1, it keeps it out of 0 and 2 again.
    let bob = format!("Bearer {}", mint(&w.cfg, &["--sub", "bob"]));
    let from_lab = [
        ("X-Forwarded-For", "198.51.100.7"),
        ("Authorization", bob.as_str()),
    ];
    w.until_all(&[0, 1, 2], 403, "app.example.com", &from_lab)
        .await;
    let (s, v) = w
        .api(
            0,
            "POST",
            "/api/v1/allowlist",
            Some(json!({"cidr": "198.51.100.0/24", "description": "lab"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    w.until_all(&[1, 2], 200, "app.example.com", &from_lab)
        .await;
    let entry = v["entry"]["id"].as_str().unwrap().to_string();
    let (s, _) = w
        .api(1, "DELETE", &format!("/api/v1/allowlist/{entry}"), None)
        .await;
    assert_eq!(s, 200);
    w.until_all(&[0, 2], 403, "app.example.com", &from_lab)
        .await;

    // The kill switch pressed through replica 2: the others deny everything.
    let bearer = [("Authorization", bob.as_str())];
    let (s, v) = w
        .api(
            2,
            "POST",
            "/api/v1/control/kill-switch",
            Some(json!({"confirm": "CONFIRM_EMERGENCY_STOP", "reason": "test"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    w.until_all(&[0, 1], 403, "app.example.com", &bearer).await;
    let (s, _) = w
        .api(
            0,
            "POST",
            "/api/v1/control/kill-switch/release",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);
    w.until_all(&[1, 2], 200, "app.example.com", &bearer).await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Ws) -> Value {
    let m = tokio::time::timeout(BOUND, ws.next())
        .await
        .expect("a message in time")
        .unwrap()
        .unwrap();
    serde_json::from_str(m.to_text().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_socket_on_one_replica_sees_what_happens_on_another() {
    let w = start(2);
    let url = format!("ws://{}/api/v1/ws?token={}", w.addr(1), w.admin);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next(&mut ws).await["type"], "connection_established");
    let (s, _) = w.ban(0, "ip", "192.0.2.1").await;
    assert_eq!(s, 200);
    let mut seen = vec![];
    while seen.len() < 2 {
        let m = next(&mut ws).await;
        if m["type"] == "event" {
            seen.push((m["entry"]["action"].clone(), m["entry"]["result"].clone()));
        }
    }
    assert_eq!(
        seen,
        vec![
            (json!("ban.add"), json!("requested")),
            (json!("ban.add"), json!("ok"))
        ],
        "replica 0's entries, on replica 1's socket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_listener_catches_up_before_it_is_ready() {
    let w = start(2);
    let mallory = format!("Bearer {}", mint(&w.cfg, &["--sub", "mallory"]));
    let bearer = [("Authorization", mallory.as_str())];
    w.until_all(&[1], 200, "app.example.com", &bearer).await;
    // Every connection of both replicas is cut (the listeners' too)...
    let admin = sqlx::PgPool::connect(&w.pg.url).await.unwrap();
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(cut >= 2, "the replicas' connections: {cut}");
    // ... and a ban is made through replica 0 meanwhile: replica 1 misses its
    // notification, finds the ban when it reads everything again on
    // reconnecting, and denies long before its periodic reload.
    let t = Instant::now();
    loop {
        let (s, _) = w.ban(0, "user", "mallory").await;
        if s == 200 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "replica 0 reconnects its pool"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = Instant::now();
    while w.decide(1, "app.example.com", &bearer).await != 403 {
        assert!(t.elapsed() < Duration::from_secs(10), "replica 1 caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it says it is ready again once listening and caught up.
    let t = Instant::now();
    loop {
        let (s, v) = w.ready(1).await;
        if s == 200 {
            assert_eq!(v["replicas"]["in_sync"], true);
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "replica 1 never ready again: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = &w.dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_down_tokens_go_on_sessions_stop_after_max_staleness_and_changes_fail_closed(
) {
    let w = start(2);
    let store = gatehouse::store::Store::connect(&w.pg.url).await.unwrap();
    let cookie =
        gatehouse::identity::seal::random_token(gatehouse::identity::session::SESSION_COOKIE_BYTES);
    let now = gatehouse::clock::Clock::now(&gatehouse::clock::SystemClock);
    store
        .insert_session(&session_record(
            gatehouse::identity::session::session_id(&cookie),
            "carol",
            &[],
            now,
        ))
        .await
        .unwrap();
    drop(store);
    let c = format!("gatehouse_session={cookie}");
    let with_cookie = [("Cookie", c.as_str())];
    let alice = format!("Bearer {}", mint(&w.cfg, &["--sub", "alice"]));
    let bearer = [("Authorization", alice.as_str())];
    w.until_all(&[0, 1], 200, "app.example.com", &with_cookie)
        .await;

    w.pg.stop();
    let stopped = Instant::now();
    for i in 0..2 {
        let (s, v) = w.ready(i).await;
        assert_eq!(s, 503, "not ready while the store is down: {v}");
        assert_eq!(v["store"]["reachable"], false);
    }
    // Admin changes fail with 503 and change nothing.
    let (s, v) = w.ban(0, "user", "alice").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{v}"
    );
    // Sessions go on from the snapshot for store.max_staleness (3 s), then stop
    // with their own reason; bearer tokens go on throughout.
    let t = Instant::now();
    let body = loop {
        let r = client()
            .get(format!("http://{}/authz/forward", w.addr(1)))
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "app.example.com")
            .header("X-Forwarded-Uri", "/")
            .header("X-Forwarded-Method", "GET")
            .header("Cookie", &c)
            .send()
            .await
            .unwrap();
        if r.status() == 403 {
            break r.text().await.unwrap();
        }
        assert_eq!(r.status(), 200);
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "sessions never stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("store_unavailable"), "{body}");
    assert!(
        stopped.elapsed() >= Duration::from_secs(3),
        "not before max_staleness"
    );
    for i in 0..2 {
        assert_eq!(
            w.decide(i, "app.example.com", &bearer).await,
            200,
            "bearer tokens go on"
        );
    }

    // The store comes back: both replicas recover by themselves, catch up, are
    // ready, and the refused ban was never made.
    w.pg.start_again();
    for i in 0..2 {
        let t = Instant::now();
        while w.ready(i).await.0 != 200 {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "replica {i} never recovered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(w.decide(i, "app.example.com", &with_cookie).await, 200);
        assert_eq!(
            w.decide(i, "app.example.com", &bearer).await,
            200,
            "alice was never banned"
        );
    }
    let (_, bans) = w.api(0, "GET", "/api/v1/bans", None).await;
    assert_eq!(bans["bans"], json!([]));
}

#[test]
fn a_second_process_on_one_sqlite_file_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://auth.example.com\"\n\
         [store]\nurl = \"sqlite://one.db\"\n[local_issuer]\nsigning_key_file = \"k.pem\"\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let (mut first, _) = spawn_serve(&["serve", "--config", c], dir.path(), &[]);
    let second = Command::new(BIN)
        .args(["serve", "--config", c])
        .env("GATEHOUSE_LOG", "error")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        err.contains("another gatehouse process")
            && err.contains(&format!("pid {}", first.id()))
            && err.contains("PostgreSQL"),
        "{err}"
    );
    // The offline commands still work beside the serving process.
    let verify = Command::new(BIN)
        .args(["audit", "verify", "--config", c])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let _ = first.kill();
    let _ = first.wait();
    // Once the first is gone, the file is free again.
    let (mut again, _) = spawn_serve(&["serve", "--config", c], dir.path(), &[]);
    let _ = again.kill();
    let _ = again.wait();
}
