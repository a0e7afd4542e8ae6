//! The runtime allowlist: an added entry opens the gate on the next request, a
//! removed or expired one closes it; imports are all or nothing and name every
//! bad line; static entries are read-only; every change is audited.

use crate::common;

use std::sync::Arc;

use common::*;
use gatehouse::clock::{rfc3339, Clock, ManualClock, SharedClock, SystemClock};
use gatehouse::identity::MintRequest;
use serde_json::{json, Value};

/// What these tests change in the base test configuration.
const OVERRIDES: &str = r#"
[access]
allowlist_enforced = true
allowlist = ["192.0.2.0/24"]
"#;

fn config() -> String {
    config_with(OVERRIDES)
}

struct T {
    gh: Server,
    clock: Arc<ManualClock>,
    admin: String,
    user: String,
}

impl T {
    async fn start() -> T {
        let clock = ManualClock::new(SystemClock.now());
        let shared: SharedClock = clock.clone();
        let gh = Server::start_with_clock(&config(), Some(shared)).await;
        let mint = |sub: &str, roles: &[&str]| {
            let req = MintRequest {
                sub: sub.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                ttl_secs: 7200,
                ..Default::default()
            };
            gh.state
                .local
                .as_ref()
                .unwrap()
                .mint(&req, clock.now())
                .unwrap()
        };
        let (admin, user) = (mint("ops", &["admin"]), mint("alice", &[]));
        T {
            gh,
            clock,
            admin,
            user,
        }
    }

    async fn from(&self, ip: &str) -> u16 {
        let auth = format!("Bearer {}", self.user);
        self.gh
            .forward(
                "app.example.com",
                "/",
                &[("Authorization", &auth), ("X-Forwarded-For", ip)],
            )
            .await
            .status()
            .as_u16()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        ctype: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut req = client()
            .request(method, self.gh.url(path))
            .bearer_auth(&self.admin);
        if let Some(c) = ctype {
            req = req.header("Content-Type", c);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let r = req.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn add(&self, v: Value) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            "/api/v1/allowlist",
            Some("application/json"),
            Some(v.to_string()),
        )
        .await
    }

    async fn cidrs(&self) -> Vec<String> {
        let (s, v) = self
            .call(reqwest::Method::GET, "/api/v1/allowlist", None, None)
            .await;
        assert_eq!(s, 200);
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["cidr"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Every allowlist change is audited with its intent and outcome, by its admin.
async fn audited(t: &T, action: &str, n: usize) {
    let page =
        t.gh.store()
            .await
            .audit_page(&gatehouse::store::AuditFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
    let count = |result: &str| {
        page.iter()
            .filter(|e| e.action == action && e.result == result)
            .count()
    };
    assert_eq!((count("requested"), count("ok")), (n, n), "{action}");
    assert!(page.iter().all(|e| e.actor == "ops"));
}

/// Static entries are listed read-only; a runtime entry opens on the next
/// request and closes when removed or when it expires; only admins manage it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_open_and_close_on_the_next_request() {
    let t = T::start().await;
    assert_eq!(t.from("192.0.2.9").await, 200, "static entry");
    assert_eq!(t.from("203.0.113.5").await, 403, "not allowlisted");

    let (s, v) = t
        .call(reqwest::Method::GET, "/api/v1/allowlist", None, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["enforced"], true);
    assert_eq!(v["entries"][0]["id"], "static-0");
    assert_eq!(v["entries"][0]["read_only"], true);

    // Add: open on the next request. Remove: closed on the next request.
    let (s, v) = t
        .add(json!({"cidr": "203.0.113.0/24", "description": "office"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["entry"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["entry"]["created_by"], "ops");
    assert_eq!(t.from("203.0.113.5").await, 200);
    let (s, _) = t
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/allowlist/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(t.from("203.0.113.5").await, 403);
    let (s, v) = t
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/allowlist/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!((s, v["error"]["code"].clone()), (404, json!("not_found")));
    let (s, _) = t
        .call(
            reqwest::Method::DELETE,
            "/api/v1/allowlist/static-0",
            None,
            None,
        )
        .await;
    assert_eq!(s, 400, "configuration entries are read-only");

    // An entry that expires stops matching on time.
    let soon = rfc3339(t.clock.now() + 60);
    let (s, v) = t
        .add(json!({"cidr": "198.51.100.7", "expires_at": soon}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["entry"]["cidr"], "198.51.100.7/32", "normalised");
    assert_eq!(t.from("198.51.100.7").await, 200);
    t.clock.advance(61);
    assert_eq!(t.from("198.51.100.7").await, 403, "expired");

    let r = client()
        .get(t.gh.url("/api/v1/allowlist"))
        .bearer_auth(&t.user)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "admins only");
    audited(&t, "allowlist.add", 2).await;
    audited(&t, "allowlist.remove", 1).await;
}

/// Bad entries are refused with what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entries_are_refused_with_the_reason() {
    let t = T::start().await;
    for (body, why) in [
        (json!({"cidr": "10.0.0.1/8"}), "host bits"),
        (json!({"cidr": "not-an-ip"}), "is not an IP network"),
        (
            json!({"cidr": "10.0.0.0/8", "expires_at": "2000-01-01T00:00:00Z"}),
            "in the past",
        ),
        (
            json!({"cidr": "10.0.0.0/8", "expires_at": "soon"}),
            "RFC 3339",
        ),
        (
            json!({"cidr": "10.0.0.0/8", "description": "a\nb"}),
            "control",
        ),
        (
            json!({"cidr": "10.0.0.0/8", "owner": "me"}),
            "unknown field",
        ),
    ] {
        let (s, v) = t.add(body).await;
        assert_eq!(s, 400, "{why}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(why),
            "{why}: {v}"
        );
    }
}

/// Imports (text or JSON) are all or nothing and name every bad line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_are_all_or_nothing_and_name_every_bad_line() {
    let t = T::start().await;
    // An import with mixed lines changes nothing and names every bad line.
    let before = t.cidrs().await;
    let text = "10.0.0.0/8 # lan\nbad-line\n10.0.0.1/8\n\n# a comment\n2001:db8::/32\n192.0.2.0/24\n10.0.0.0/8\n";
    let (s, v) = t
        .call(
            reqwest::Method::POST,
            "/api/v1/allowlist/import",
            Some("text/plain"),
            Some(text.into()),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_import");
    let lines: Vec<i64> = v["error"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3, 8], "{v}");
    assert!(v["error"]["lines"][2]["message"]
        .as_str()
        .unwrap()
        .contains("repeats line 1"));
    assert_eq!(t.cidrs().await, before, "nothing imported");
    assert_eq!(t.from("10.1.2.3").await, 403);

    // The good lines alone import, with comments as descriptions.
    let text = "10.0.0.0/8 # lan\n# a comment\n2001:db8::/32\n";
    let (s, v) = t
        .call(
            reqwest::Method::POST,
            "/api/v1/allowlist/import",
            Some("text/plain"),
            Some(text.into()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["imported"], 2);
    assert_eq!(t.from("10.1.2.3").await, 200);
    let (_, v) = t
        .call(reqwest::Method::GET, "/api/v1/allowlist", None, None)
        .await;
    assert!(v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["cidr"] == "10.0.0.0/8" && e["description"] == "lan"));
    // Importing it again: every line already present.
    let (s, v) = t
        .call(
            reqwest::Method::POST,
            "/api/v1/allowlist/import",
            Some("text/plain"),
            Some(text.into()),
        )
        .await;
    assert_eq!(s, 400);
    assert!(v["error"]["lines"][0]["message"]
        .as_str()
        .unwrap()
        .contains("already in the allowlist"));

    // JSON import: the same rules, lines are array positions.
    let body = json!([
        {"cidr": "172.16.0.0/12", "description": "vpn"},
        {"cidr": "172.16.0.1/12"},
        {"cidr": "100.64.0.0/10", "colour": "red"},
    ]);
    let (s, v) = t
        .call(
            reqwest::Method::POST,
            "/api/v1/allowlist/import",
            Some("application/json"),
            Some(body.to_string()),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"] == 3),
        "{v}"
    );
    let body = json!([{"cidr": "172.16.0.0/12", "description": "vpn"}, {"cidr": "100.64.0.0/10"}]);
    let (s, v) = t
        .call(
            reqwest::Method::POST,
            "/api/v1/allowlist/import",
            Some("application/json"),
            Some(body.to_string()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(t.from("172.16.5.5").await, 200);
    let (s, _) = t
        .call(
            reqwest::Method::POST,
            "/api/v1/allowlist/import",
            Some("application/xml"),
            Some("<x/>".into()),
        )
        .await;
    assert_eq!(s, 400);

    audited(&t, "allowlist.import", 2).await;
}
