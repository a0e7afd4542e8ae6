//! Configured actions against real processes: parameters checked by type and
//! constraint (every bad one named, nothing run), landing only as whole argv
//! elements (shell metacharacters stay text), runs followed to their end,
//! time limits, per-action permissions, and the audit trail.

use std::time::Duration;

use crate::common;
use common::*;
use serde_json::{json, Value};

const OVERRIDES: &str = r#"
[admin.permissions]
ops = ["actions:run"]
svc = ["control:services"]

[[actions]]
name = "rotate-logs"
description = "Rotate the feed's logs"
argv = ["/bin/sh", "-c", "echo rotating $1 days, $2 mode; exit $3", "sh", "{days}", "{mode}", "{code}"]
params = { days = { type = "integer", min = 1, max = 90 }, mode = { type = "enum", values = ["gzip", "plain"] }, code = { type = "integer", min = 0, max = 9 } }
timeout = "10s"

[[actions]]
name = "say"
argv = ["/bin/echo", "{text}"]
params = { text = { type = "string", pattern = "[ -~]{1,80}" } }

[[actions]]
name = "slow"
argv = ["/bin/sleep", "{secs}"]
params = { secs = { type = "integer", min = 1, max = 100 } }
timeout = "500ms"

[[actions]]
name = "flush-cache"
argv = ["/bin/true"]
permission = "control:services"
"#;

struct T {
    gh: Server,
}

impl T {
    async fn start() -> T {
        T {
            gh: Server::start(&config_with(OVERRIDES)).await,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.gh.api(method, path, Some(token), body).await
    }

    async fn run(&self, token: &str, action: &str, params: Value) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/actions/{action}/run"),
            token,
            Some(json!({ "params": params })),
        )
        .await
    }

    /// Polls the run until it is no longer running.
    async fn finished(&self, token: &str, id: &str) -> Value {
        for _ in 0..100 {
            let (s, v) = self
                .call("GET", &format!("/api/v1/actions/runs/{id}"), token, None)
                .await;
            assert_eq!(s, 200, "{v}");
            if v["run"]["state"] != "running" {
                return v["run"].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("run {id} did not end");
    }

    async fn audit(&self, target: &str) -> Vec<String> {
        let page = self
            .gh
            .store()
            .await
            .audit_page(&gatehouse::store::AuditFilter {
                action: Some("action.run".into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        page.into_iter()
            .rev()
            .filter(|e| e.target == target)
            .map(|e| e.result)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_checked_parameters_is_followed_to_its_end() {
    let t = T::start().await;
    let ops = t.gh.mint("olga", &["ops"]);
    let (s, v) = t
        .run(
            &ops,
            "rotate-logs",
            json!({"days": 7, "mode": "gzip", "code": 0}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["run"]["state"], "running");
    let run = t.finished(&ops, &id).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["exit_code"], 0);
    assert_eq!(run["output"], "rotating 7 days, gzip mode\n");
    assert_eq!(run["by"], "olga");
    assert_eq!(
        run["params"],
        json!({"days": "7", "mode": "gzip", "code": "0"})
    );

    let (_, v) = t
        .run(
            &ops,
            "rotate-logs",
            json!({"days": 1, "mode": "plain", "code": 3}),
        )
        .await;
    let run = t.finished(&ops, v["id"].as_str().unwrap()).await;
    assert_eq!(
        (run["state"].as_str(), run["exit_code"].as_i64()),
        (Some("failed"), Some(3))
    );

    let (_, v) = t.run(&ops, "slow", json!({"secs": 30})).await;
    let run = t.finished(&ops, v["id"].as_str().unwrap()).await;
    assert_eq!(run["state"], "timed_out", "{run}");

    assert_eq!(
        t.audit("rotate-logs").await,
        vec!["requested", "ok", "requested", "failed"],
        "intent before, outcome after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_named_and_nothing_runs() {
    let t = T::start().await;
    let ops = t.gh.mint("olga", &["ops"]);
    for (params, bad) in [
        (json!({"days": 0, "mode": "gzip", "code": 0}), vec!["days"]),
        (
            json!({"days": 91, "mode": "zip", "code": "0"}),
            vec!["code", "days", "mode"],
        ),
        (
            json!({"mode": "gzip", "code": 0, "extra": 1}),
            vec!["days", "extra"],
        ),
        (
            json!({"days": 1.5, "mode": "gzip", "code": 0}),
            vec!["days"],
        ),
    ] {
        let (s, v) = t.run(&ops, "rotate-logs", params.clone()).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (422, Some("invalid_params")),
            "{params}: {v}"
        );
        let mut named: Vec<&str> = v["error"]["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        named.sort();
        assert_eq!(named, bad, "{v}");
    }
    let (s, v) = t.run(&ops, "say", json!({"text": "tab\there"})).await;
    assert_eq!(s, 422, "{v}");
    let (s, _) = t.run(&ops, "no-such-action", json!({})).await;
    assert_eq!(s, 404);
    assert_eq!(
        t.audit("rotate-logs").await,
        vec!["refused"; 4],
        "refusals audited, nothing requested"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_land_as_whole_arguments_never_as_shell() {
    let t = T::start().await;
    let ops = t.gh.mint("olga", &["ops"]);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let text = format!("x; touch {} $(id)", marker.display());
    let (s, v) = t.run(&ops, "say", json!({ "text": text })).await;
    assert_eq!(s, 202, "{v}");
    let run = t.finished(&ops, v["id"].as_str().unwrap()).await;
    assert_eq!(run["output"], format!("{text}\n"), "printed as text");
    assert!(!marker.exists(), "nothing was executed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_needs_its_own_permission() {
    let t = T::start().await;
    let ops = t.gh.mint("olga", &["ops"]);
    let svc = t.gh.mint("sven", &["svc"]);
    let nobody = t.gh.mint("nina", &[]);
    let names = |v: &Value| -> Vec<String> {
        v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = t.call("GET", "/api/v1/actions", &ops, None).await;
    assert_eq!(names(&v), vec!["rotate-logs", "say", "slow"]);
    assert_eq!(
        v["actions"][0]["params"]["days"],
        json!({"type": "integer", "min": 1, "max": 90, "description": ""})
    );
    let (_, v) = t.call("GET", "/api/v1/actions", &svc, None).await;
    assert_eq!(names(&v), vec!["flush-cache"]);
    let (s, _) = t.call("GET", "/api/v1/actions", &nobody, None).await;
    assert_eq!(s, 403);

    let (s, v) = t.run(&svc, "say", json!({"text": "hi"})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    assert_eq!(t.audit("say").await, vec!["refused"]);
    let (s, v) = t.run(&svc, "flush-cache", json!({})).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let run = t.finished(&svc, &id).await;
    assert_eq!(run["state"], "succeeded");
    let (s, _) = t
        .call("GET", &format!("/api/v1/actions/runs/{id}"), &ops, None)
        .await;
    assert_eq!(s, 403, "a run is shown to those who may run its action");
}
