//! The OpenAPI document is generated from the handlers; the committed copy in
//! docs/openapi.json must not drift from it. To regenerate after an API change:
//! `GATEHOUSE_WRITE_OPENAPI=1 cargo test --test openapi`.

use crate::common;

use common::*;
use serde_json::Value;

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

#[test]
fn committed_document_matches_the_handlers() {
    let generated = gatehouse::http::api::openapi_json();
    if std::env::var_os("GATEHOUSE_WRITE_OPENAPI").is_some() {
        std::fs::write(committed_path(), &generated).unwrap();
    }
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json drifted from the handlers; regenerate it with \
         GATEHOUSE_WRITE_OPENAPI=1 cargo test --test openapi and commit it"
    );
    let doc: Value = serde_json::from_str(&generated).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/me", "get"),
        ("/api/v1/sessions", "get"),
        ("/api/v1/sessions/{id}", "delete"),
        ("/api/v1/sessions/terminate-all", "post"),
        ("/api/v1/allowlist", "post"),
        ("/api/v1/allowlist/import", "post"),
        ("/api/v1/allowlist/{id}", "delete"),
        ("/api/v1/bans", "post"),
        ("/api/v1/audit", "get"),
        ("/api/v1/audit/verify", "get"),
        ("/api/v1/monitoring/usage", "get"),
        ("/api/v1/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not documented"
        );
    }
}

#[tokio::test]
async fn served_document_is_the_committed_one() {
    let gh = Server::start("[server]\npublic_url = \"https://auth.example.com\"\n[store]\nurl = \"sqlite://{dir}/g.db\"\n").await;
    let r = client()
        .get(gh.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.text().await.unwrap(),
        gatehouse::http::api::openapi_json()
    );
}

#[tokio::test]
async fn a_wrong_method_answers_json() {
    let gh = Server::start("[server]\npublic_url = \"https://auth.example.com\"\n[store]\nurl = \"sqlite://{dir}/g.db\"\n").await;
    for (m, p) in [
        (reqwest::Method::PUT, "/api/v1/sessions"),
        (reqwest::Method::GET, "/api/v1/allowlist/import"),
        (reqwest::Method::POST, "/api/v1/me"),
    ] {
        let r = client().request(m.clone(), gh.url(p)).send().await.unwrap();
        assert_eq!(r.status(), 405, "{m} {p}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "method_not_allowed", "{m} {p}");
    }
}
