//! The operator's kit against the real tools: the Prometheus example passes
//! `promtool` (configuration, rules, and the rules' unit tests); a real
//! Prometheus scrapes a live gatehouse with it, evaluates every rule without
//! error and gives the series back; every metric and label that the rules
//! and the Grafana dashboard name is one a live `/metrics` exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use common::*;
use serde_json::{json, Value};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn tool(name: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = format!("{dir}/{name}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} is not installed: scripts/test.sh installs Debian's prometheus package");
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new(tool("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn promtool_accepts_the_prometheus_example_and_its_rules_fire_as_tested() {
    let dir = examples().join("prometheus");
    promtool(&["check", "config", "prometheus.yml"], &dir);
    let rules = promtool(&["check", "rules", "gatehouse-rules.yml"], &dir);
    assert!(rules.contains("SUCCESS: 8 rules found"), "{rules}");
    promtool(&["test", "rules", "gatehouse-rules.test.yml"], &dir);
}

/// What a `/metrics` scrape exports: each name (samples, and families from
/// their HELP lines) with the label names its samples carry.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let label = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)=""#).unwrap();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            out.entry(rest.split(' ').next().unwrap().to_string())
                .or_default();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap();
        let labels = out.entry(line[..name_end].to_string()).or_default();
        if line[name_end..].starts_with('{') {
            let end = line.rfind('}').unwrap();
            for c in label.captures_iter(&line[name_end..end]) {
                labels.insert(c[1].to_string());
            }
        }
    }
    out
}

/// Checks that every `gatehouse_*` metric named in `expr` is exported, and
/// every label it matches on is one its samples carry (when it has any).
fn check_expr(expr: &str, live: &BTreeMap<String, BTreeSet<String>>, whose: &str) -> usize {
    let name = regex::Regex::new(r"gatehouse_[a-z0-9_]+").unwrap();
    let matcher = regex::Regex::new(r"(gatehouse_[a-z0-9_]+)\{([^}]*)\}").unwrap();
    let label = regex::Regex::new(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)").unwrap();
    let by = regex::Regex::new(r"by \(([^)]*)\)").unwrap();
    let mut n = 0;
    let mut labels_here: BTreeSet<String> = ["instance", "job", "le"].map(String::from).into();
    for m in name.find_iter(expr) {
        let known = live.get(m.as_str());
        assert!(
            known.is_some(),
            "{whose}: {} is not a metric gatehouse exports\n  in: {expr}",
            m.as_str()
        );
        labels_here.extend(known.unwrap().iter().cloned());
        n += 1;
    }
    for c in matcher.captures_iter(expr) {
        let carried = &live[&c[1]];
        if carried.is_empty() {
            continue;
        }
        for l in label.captures_iter(&c[2]) {
            assert!(
                ["instance", "job"].contains(&&l[1]) || carried.contains(&l[1]),
                "{whose}: {} has no label {} (it has {carried:?})\n  in: {expr}",
                &c[1],
                &l[1]
            );
        }
    }
    for c in by.captures_iter(expr) {
        for l in c[1].split(',').map(str::trim).filter(|l| !l.is_empty()) {
            assert!(
                labels_here.contains(l),
                "{whose}: no metric in the expression has the label {l}\n  in: {expr}"
            );
        }
    }
    n
}

/// The rule expressions of the rules file (`expr:` lines and `expr: |` blocks).
fn rule_exprs(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix("expr:") else {
            continue;
        };
        if rest.trim() != "|" {
            out.push(rest.trim().to_string());
            continue;
        }
        let indent = line.len() - t.len();
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let nt = next.trim_start();
            if !nt.is_empty() && next.len() - nt.len() <= indent {
                break;
            }
            block.push_str(nt);
            block.push(' ');
            lines.next();
        }
        out.push(block);
    }
    out
}

/// An issuer on loopback serving its discovery document and one public key.
async fn issuer() -> String {
    let mut key = gen_key("OKP", "k1");
    key.as_object_mut().unwrap().remove("d");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = discovery(&base)
        .route(
            "/jwks",
            axum::routing::get(move || {
                let key = key.clone();
                async move { axum::Json(json!({"keys": [key]})) }
            }),
        )
        .route("/hook", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_live_gatehouse_and_the_dashboard_names_only_its_metrics() {
    let issuer = issuer().await;
    let gh = Server::start(&config_with(&format!(
        "[[issuers]]\nissuer = \"{issuer}\"\nallow_insecure_http = true\naudiences = [\"gatehouse\"]\n\
         [notify]\nwebhook = [{{ url = \"{issuer}/hook\", secret = \"hook-secret-of-some-length\" }}]\n"
    )))
    .await;
    // Some of everything: decisions allowed and denied, refused credentials,
    // a ban (and its notification), a verification.
    let admin = gh.mint("ops", &["admin"]);
    let alice = gh.mint("alice", &[]);
    for _ in 0..3 {
        gh.forward(
            "app.example.com",
            "/",
            &[("Authorization", &format!("Bearer {alice}"))],
        )
        .await;
        gh.forward("app.example.com", "/", &[]).await;
        gh.forward(
            "app.example.com",
            "/",
            &[("Authorization", "Bearer not.a.token")],
        )
        .await;
    }
    assert_eq!(gh.ban(&admin, "ip", "203.0.113.5").await.0, 200);
    let (s, _) = gh
        .api("GET", "/api/v1/audit/verify", Some(&admin), None)
        .await;
    assert_eq!(s, 200);
    assert!(
        eventually(Duration::from_secs(10), || async {
            gh.metric("gatehouse_notifications_total{channel=\"webhook\",result=\"ok\"} ")
                .await
                > 0
        })
        .await,
        "the ban's notification was not sent"
    );
    let live = exported(&text_of(gh.url("/metrics")).await);

    // Every metric and label the rules and the dashboard name.
    let rules_text =
        std::fs::read_to_string(examples().join("prometheus/gatehouse-rules.yml")).unwrap();
    let exprs = rule_exprs(&rules_text);
    assert_eq!(exprs.len(), 8);
    let mut named = 0;
    for e in &exprs {
        named += check_expr(e, &live, "gatehouse-rules.yml");
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(examples().join("grafana/gatehouse.json")).unwrap(),
    )
    .unwrap();
    let mut panels = 0;
    for p in dash["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        panels += 1;
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let e = t["expr"].as_str().unwrap();
            let whose = format!("dashboard panel {}", p["title"]);
            assert!(
                check_expr(e, &live, &whose) > 0,
                "{whose} names no gatehouse metric"
            );
        }
    }
    assert!(panels >= 15 && named >= 8);
    for q in dash["templating"]["list"].as_array().unwrap() {
        check_expr(
            q["definition"].as_str().unwrap(),
            &live,
            "dashboard variable",
        );
    }

    // A real Prometheus with the example configuration, pointed at this gatehouse.
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(examples().join("prometheus/prometheus.yml"))
        .unwrap()
        .replace("127.0.0.1:9091", &gh.addr.to_string())
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(
        examples().join("prometheus/gatehouse-rules.yml"),
        dir.path().join("gatehouse-rules.yml"),
    )
    .unwrap();
    let port = free_port();
    let _prom = Reaped(
        Command::new(tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = |path: String| async move {
        let r = client()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await;
        match r {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    };
    let query = |q: &str| {
        let q = percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
        api(format!("/api/v1/query?query={q}"))
    };
    let t = Instant::now();
    let series = loop {
        let v = query("gatehouse_decisions_total").await;
        let r = v["data"]["result"].as_array().cloned().unwrap_or_default();
        if r.len() >= 2 {
            break r;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "Prometheus gave no gatehouse series back: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let results: BTreeSet<&str> = series
        .iter()
        .filter_map(|s| s["metric"]["result"].as_str())
        .collect();
    assert!(
        results.contains("allow") && results.contains("unauthenticated"),
        "{series:?}"
    );
    assert!(series
        .iter()
        .all(|s| s["metric"]["job"] == "gatehouse" && s["metric"]["service"] == "gatehouse"));
    for (q, want) in [
        ("gatehouse_store_up", "1"),
        ("gatehouse_ready", "1"),
        ("sum(gatehouse_bans_total)", "1"),
        ("gatehouse_audit_verifications_total{result=\"ok\"}", "1"),
    ] {
        let v = query(q).await;
        assert_eq!(v["data"]["result"][0]["value"][1], json!(want), "{q}: {v}");
    }
    // Every rule evaluated against the live series without error.
    let t = Instant::now();
    loop {
        let v = api("/api/v1/rules".into()).await;
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = rules.len() == 8
            && rules
                .iter()
                .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z");
        if evaluated {
            // Nothing is wrong with this gatehouse: no alert is firing.
            let firing: Vec<_> = rules.iter().filter(|r| r["state"] == "firing").collect();
            assert!(firing.is_empty(), "{firing:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "rules not evaluated: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
