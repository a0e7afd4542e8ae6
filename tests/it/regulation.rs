//! Brute-force regulation: refused credentials from one address (or a verified
//! user insisting with revoked tokens) lead to a ban that the next decision
//! honours; bans are listed, added and lifted through the API, expire on time
//! (injected clock) and survive a restart.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use gatehouse::clock::{Clock, ManualClock, SharedClock, SystemClock};
use gatehouse::identity::MintRequest;
use serde_json::{json, Value};

/// What these tests change in the base test configuration.
const OVERRIDES: &str = r#"
[regulation]
max_failures = 3
window = "2m"
ban_time = "15m"
"#;

fn config() -> String {
    config_with(OVERRIDES)
}

struct T {
    gh: Server,
    clock: Arc<ManualClock>,
}

impl T {
    fn mint(&self, sub: &str, roles: &[&str]) -> String {
        let req = MintRequest {
            sub: sub.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ttl_secs: 3600,
            ..Default::default()
        };
        self.gh
            .state
            .local
            .as_ref()
            .unwrap()
            .mint(&req, self.clock.now())
            .unwrap()
    }

    /// `/authz/forward` as a proxy would send it for a client at `ip`.
    async fn ask(&self, ip: Option<&str>, token: &str) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        let mut h = vec![("Authorization", auth.as_str())];
        if let Some(ip) = ip {
            h.push(("X-Forwarded-For", ip));
        }
        let r = self.gh.forward("app.example.com", "/", &h).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = client()
            .request(method, self.gh.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn forged(token: &str) -> String {
    // Same header and claims, another signature.
    let (head, _) = token.rsplit_once('.').unwrap();
    format!("{head}.{}", "A".repeat(86))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_after_repeated_failures() {
    let clock = ManualClock::new(SystemClock.now());
    let shared: SharedClock = clock.clone();
    let gh = Server::start_with_clock(&config(), Some(shared)).await;
    let t = T { gh, clock };
    let good = t.mint("alice", &[]);
    let bad = forged(&good);
    let admin = t.mint("ops", &["admin"]);
    let attacker = Some("203.0.113.7");

    // Two refusals: still allowed to pass with good credentials.
    for _ in 0..2 {
        assert_eq!(t.ask(attacker, &bad).await.0, 401);
    }
    assert_eq!(t.ask(attacker, &good).await.0, 200);
    // The third within the window bans the address: the next decision denies.
    assert_eq!(t.ask(attacker, &bad).await.0, 401);
    let (status, body) = t.ask(attacker, &good).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "banned");
    assert_eq!(
        t.ask(Some("203.0.113.8"), &good).await.0,
        200,
        "other addresses pass"
    );

    // Failures spread beyond the window do not add up.
    for _ in 0..4 {
        assert_eq!(t.ask(Some("198.51.100.4"), &bad).await.0, 401);
        t.clock.advance(61);
    }
    assert_eq!(t.ask(Some("198.51.100.4"), &good).await.0, 200);

    // The ordinary end of a token's life is not an attack.
    let short = {
        let req = MintRequest {
            sub: "bob".into(),
            ttl_secs: 60,
            ..Default::default()
        };
        t.gh.state
            .local
            .as_ref()
            .unwrap()
            .mint(&req, t.clock.now())
            .unwrap()
    };
    t.clock.advance(120);
    for _ in 0..5 {
        assert_eq!(t.ask(Some("198.51.100.5"), &short).await.0, 401);
    }
    assert_eq!(
        t.ask(Some("198.51.100.5"), &good).await.0,
        200,
        "expired tokens never ban"
    );

    // The trusted proxy itself is never banned (everyone is behind it).
    for _ in 0..5 {
        assert_eq!(t.ask(None, &bad).await.0, 401);
    }
    assert_eq!(t.ask(None, &good).await.0, 200);

    // The API lists the ban (it reaches the store in the background) and lifts it.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let (s, b) = t
                .api(reqwest::Method::GET, "/api/v1/bans", &admin, None)
                .await;
            s == 200 && b["bans"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await
    );
    let (_, listed) = t
        .api(reqwest::Method::GET, "/api/v1/bans", &admin, None)
        .await;
    let ban = &listed["bans"][0];
    assert_eq!(ban["kind"], "ip");
    assert_eq!(ban["value"], "203.0.113.7");
    assert_eq!(ban["reason"], "bad_signature");
    assert_eq!(ban["failures"], 3);
    let id = ban["id"].as_i64().unwrap();
    let (s, _) = t
        .api(
            reqwest::Method::GET,
            "/api/v1/bans",
            &t.mint("alice", &[]),
            None,
        )
        .await;
    assert_eq!(s, 403, "admins only");
    let (s, _) = t
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/bans/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        t.ask(attacker, &good).await.0,
        200,
        "lifted: the next decision allows"
    );
    let (s, b) = t
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/bans/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!((s, b["error"]["code"].clone()), (404, json!("not_found")));

    // A ban by hand, of a user: decisions and the API refuse that user.
    let mallory = t.mint("mallory", &["admin"]);
    assert_eq!(t.ask(attacker, &mallory).await.0, 200);
    for (body, why) in [
        (json!({"kind": "host", "value": "x"}), "unknown kind"),
        (json!({"kind": "ip", "value": "300.1.1.1"}), "bad address"),
        (json!({"kind": "user", "value": ""}), "empty user"),
        (
            json!({"kind": "user", "value": "mallory", "duration": "soon"}),
            "bad duration",
        ),
        (
            json!({"kind": "user", "value": "mallory", "extra": 1}),
            "unknown field",
        ),
    ] {
        let (s, b) = t
            .api(reqwest::Method::POST, "/api/v1/bans", &admin, Some(body))
            .await;
        assert_eq!(s, 400, "{why}: {b}");
        assert_eq!(b["error"]["code"], "bad_request");
    }
    let (s, b) = t
        .api(
            reqwest::Method::POST,
            "/api/v1/bans",
            &admin,
            Some(
                json!({"kind": "user", "value": "mallory", "duration": "1h", "reason": "phished"}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["ban"]["expires_at"].as_i64().unwrap() - b["ban"]["created_at"].as_i64().unwrap(),
        3600
    );
    let (status, body) = t.ask(attacker, &mallory).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("banned"))
    );
    let (s, b) = t
        .api(reqwest::Method::GET, "/api/v1/me", &mallory, None)
        .await;
    assert_eq!((s, b["error"]["code"].clone()), (403, json!("banned")));

    // A verified user insisting with revoked tokens is banned as a user.
    let zed = t.mint("zed", &[]);
    let (s, _) = t
        .api(
            reqwest::Method::POST,
            "/api/v1/sessions/terminate-all?user=zed",
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 200);
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert_eq!(t.ask(Some(ip), &zed).await.0, 401);
    }
    t.clock.advance(2);
    let fresh = t.mint("zed", &[]);
    let (status, body) = t.ask(Some("192.0.2.9"), &fresh).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("banned")),
        "a new token does not help a banned user"
    );

    // Bans end on time.
    t.clock.advance(16 * 60);
    assert_eq!(t.ask(Some("192.0.2.9"), &t.mint("zed", &[])).await.0, 200);

    // And survive a restart (mallory's lasts an hour).
    let dir = t.gh.stop().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shared: SharedClock = t.clock.clone();
    let gh = Server::start_bound(listener, &config(), Some(shared), dir).await;
    let t = T { gh, clock: t.clock };
    let (status, _) = t.ask(attacker, &mallory).await;
    assert_eq!(status, 403, "the ban outlived the restart");
}

#[tokio::test]
async fn regulation_can_be_switched_off() {
    let cfg = config_with_all(&[OVERRIDES, "[regulation]\nenabled = false"]);
    let gh = Server::start(&cfg).await;
    let clock = ManualClock::new(SystemClock.now());
    let t = T { gh, clock };
    let good = t.mint("alice", &[]);
    for _ in 0..10 {
        assert_eq!(t.ask(Some("203.0.113.7"), &forged(&good)).await.0, 401);
    }
    assert_eq!(t.ask(Some("203.0.113.7"), &good).await.0, 200);
}
