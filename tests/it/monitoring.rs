//! Usage monitoring: decisions counted in memory and written in batches, then
//! grouped by user, host, rule, result and reason over a window; and the
//! Prometheus metrics the operator scrapes.

use crate::common;

use common::*;
use serde_json::Value;

/// What these tests change in the base test configuration.
const OVERRIDES: &str = r#"
[[access.rules]]
domains = ["app.example.com"]
paths = ["^/admin"]
subjects = ["role:admin"]
policy = "one_factor"
[[access.rules]]
domains = ["app.example.com"]
paths = ["^/admin"]
policy = "deny"
"#;

fn config() -> String {
    config_with(OVERRIDES)
}

fn row<'a>(v: &'a Value, table: &str, key: &str) -> &'a Value {
    v[table]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("{table} has no {key}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_over_a_window() {
    let gh = Server::start(&config()).await;
    let (alice, bob, admin) = (
        gh.mint("alice", &[]),
        gh.mint("bob", &[]),
        gh.mint("ops", &["admin"]),
    );
    let ask = |host: &'static str, path: &'static str, token: Option<String>| {
        let gh = &gh;
        async move {
            let auth = token.map(|t| format!("Bearer {t}"));
            let mut h = vec![];
            if let Some(a) = &auth {
                h.push(("Authorization", a.as_str()));
            }
            gh.forward(host, path, &h).await.status().as_u16()
        }
    };
    for _ in 0..50 {
        assert_eq!(ask("app.example.com", "/", Some(alice.clone())).await, 200);
    }
    for _ in 0..2 {
        assert_eq!(
            ask("app.example.com", "/admin", Some(alice.clone())).await,
            403
        );
    }
    for _ in 0..3 {
        assert_eq!(ask("app.example.com", "/", None).await, 401);
    }
    assert_eq!(ask("other.example.com", "/", Some(bob.clone())).await, 200);

    let r = client()
        .get(gh.url("/api/v1/monitoring/usage?window=1h"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["requests"].as_i64(), v["denials"].as_i64()),
        (Some(56), Some(5)),
        "{v}"
    );
    let a = row(&v, "by_user", "alice");
    assert_eq!(
        (a["requests"].as_i64(), a["denials"].as_i64()),
        (Some(52), Some(2))
    );
    assert_eq!(row(&v, "by_user", "(anonymous)")["denials"], 3);
    assert_eq!(row(&v, "by_user", "bob")["requests"], 1);
    assert_eq!(row(&v, "by_host", "app.example.com")["requests"], 55);
    assert_eq!(row(&v, "by_rule", "1")["denials"], 2, "the deny rule");
    assert_eq!(row(&v, "by_rule", "default")["requests"], 54);
    assert_eq!(row(&v, "by_reason", "policy_deny")["requests"], 2);
    assert_eq!(row(&v, "by_reason", "no_credentials")["requests"], 3);
    assert_eq!(row(&v, "by_result", "allow")["requests"], 51);
    assert_eq!(v["by_user"][0]["key"], "alice", "busiest first");
    assert!(v["sessions"].as_array().is_some());
    // Over time: the hour in minute slots, the sums the same as the totals.
    assert_eq!(v["series"]["step_secs"], 60);
    let points = v["series"]["points"].as_array().unwrap();
    let sum = |k: &str| points.iter().map(|p| p[k].as_i64().unwrap()).sum::<i64>();
    assert_eq!((sum("requests"), sum("denials")), (56, 5), "{v}");

    // Written in batches: one row per minute and label set, not per request.
    sqlx::any::install_default_drivers();
    let url = gh.state.config.store.url.clone();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(rows <= 8, "{rows} rows for 56 decisions");
    pool.close().await;

    for bad in ["?window=0s", "?window=soon", "?window=40d", "?period=1h"] {
        let r = client()
            .get(gh.url(&format!("/api/v1/monitoring/usage{bad}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_request");
    }
    let r = client()
        .get(gh.url("/api/v1/monitoring/usage"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "admins only");

    // The Prometheus families an operator scrapes.
    gh.audit()
        .append(gatehouse::audit::NewEntry::new(
            "ops",
            "",
            "test.event",
            "",
            "ok",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
    let text = text_of(gh.url("/metrics")).await;
    for family in [
        "gatehouse_decisions_total{endpoint=\"forward\",result=\"allow\",reason=\"authorized\"} 51",
        "gatehouse_decision_duration_seconds_count 56",
        "gatehouse_auth_failures_total",
        "gatehouse_audit_entries_total{action=\"test.event\"} 1",
        "gatehouse_active_sessions 0",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
}
