//! The session API and token revocation: admin-only, JSON errors, and a
//! termination that the very next decision already honours — also across a
//! restart. Sessions are put in the store directly until the login flow exists.

use crate::common;

use common::*;
use gatehouse::clock::{Clock, SystemClock};
use gatehouse::identity::MintRequest;
use gatehouse::store::SessionRecord;
use serde_json::Value;

/// `dir` holds the database and the signing key, so a restarted server shares both.
fn config(dir: &str) -> String {
    config_with("[admin]\nroles = [\"gatehouse-admin\"]").replace("{dir}", dir)
}

fn mint(gh: &Server, sub: &str, roles: &[&str], sid: Option<&str>, iat_offset: i64) -> String {
    let req = MintRequest {
        sub: sub.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ttl_secs: 600,
        sid: sid.map(str::to_string),
        ..Default::default()
    };
    gh.state
        .local
        .as_ref()
        .unwrap()
        .mint(&req, SystemClock.now() + iat_offset)
        .unwrap()
}

fn session(id_byte: char, user: &str, sid: &str) -> SessionRecord {
    SessionRecord {
        sid: Some(sid.into()),
        client_addr: Some("203.0.113.5".into()),
        user_agent: Some("test".into()),
        ..session_record(id_byte.to_string().repeat(64), user, &[], SystemClock.now())
    }
}

async fn api(
    gh: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = client().request(method, gh.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminations_revoke_tokens_on_the_next_decision_and_survive_restarts() {
    let state_dir = tempfile::tempdir().unwrap();
    let cfg = config(state_dir.path().to_str().unwrap());
    let gh = Server::start(&cfg).await;
    let admin = mint(&gh, "root", &["gatehouse-admin"], None, 0);
    let alice_s1 = mint(&gh, "alice", &[], Some("sid-1"), 0);
    let alice_s2 = mint(&gh, "alice", &[], Some("sid-2"), 0);
    let bob = mint(&gh, "bob", &[], Some("sid-3"), 0);
    for s in [
        session('a', "alice", "sid-1"),
        session('b', "alice", "sid-2"),
        session('c', "bob", "sid-3"),
    ] {
        gh.store().await.insert_session(&s).await.unwrap();
    }
    for t in [&alice_s1, &alice_s2, &bob] {
        assert_eq!(gh.forward_status("app.example.com", "/", t).await, 200);
    }

    // Authentication and authorisation of the API itself.
    let (s, body) = api(&gh, reqwest::Method::GET, "/api/v1/sessions", None).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (s, body) = api(&gh, reqwest::Method::GET, "/api/v1/sessions", Some("junk")).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    let (s, body) = api(&gh, reqwest::Method::GET, "/api/v1/sessions", Some(&bob)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(
        body["error"]["message"], "this needs the permission sessions:read",
        "a refusal names the permission"
    );
    let r = client()
        .get(gh.url("/api/v1/sessions"))
        .header("Remote-User", "root")
        .header("Remote-Groups", "gatehouse-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "Remote-* headers from the network are never trusted"
    );
    let (s, me) = api(&gh, reqwest::Method::GET, "/api/v1/me", Some(&bob)).await;
    assert_eq!(
        (s, me["user"].as_str(), me["admin"].as_bool()),
        (200, Some("bob"), Some(false))
    );
    assert_eq!(me["permissions"], serde_json::json!([]));
    let (_, me) = api(&gh, reqwest::Method::GET, "/api/v1/me", Some(&admin)).await;
    assert_eq!(me["admin"], true);
    let perms = me["permissions"].as_array().unwrap();
    assert_eq!(
        perms.len(),
        15,
        "[admin] roles hold every permission: {perms:?}"
    );
    assert!(perms.iter().any(|p| p == "sessions:terminate"));
    let (s, body) = api(&gh, reqwest::Method::GET, "/api/v1/nope", Some(&admin)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // List, filter.
    let (s, body) = api(&gh, reqwest::Method::GET, "/api/v1/sessions", Some(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(body["sessions"].as_array().unwrap().len(), 3);
    let (_, body) = api(
        &gh,
        reqwest::Method::GET,
        "/api/v1/sessions?user=alice",
        Some(&admin),
    )
    .await;
    let ids: Vec<&str> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["a".repeat(64), "b".repeat(64)]);

    // Terminate one: the token carrying its sid is refused on the very next decision.
    let path = format!("/api/v1/sessions/{}", "a".repeat(64));
    let (s, _) = api(&gh, reqwest::Method::DELETE, &path, Some(&admin)).await;
    assert_eq!(s, 200);
    assert_eq!(
        gh.forward_status("app.example.com", "/", &alice_s1).await,
        401
    );
    assert_eq!(
        gh.forward_status("app.example.com", "/", &alice_s2).await,
        200
    );
    let (s, body) = api(&gh, reqwest::Method::DELETE, &path, Some(&admin)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "already terminated"
    );
    let (s, _) = api(
        &gh,
        reqwest::Method::DELETE,
        "/api/v1/sessions/not-an-id",
        Some(&admin),
    )
    .await;
    assert_eq!(s, 404);

    // Terminate all of alice: her other session's token, and any token of hers issued
    // until now, are refused; one issued afterwards works; bob is untouched.
    let alice_no_sid = mint(&gh, "alice", &[], None, 0);
    let (s, body) = api(
        &gh,
        reqwest::Method::POST,
        "/api/v1/sessions/terminate-all?user=alice",
        Some(&admin),
    )
    .await;
    assert_eq!((s, body["terminated"].as_u64()), (200, Some(1)));
    assert_eq!(
        gh.forward_status("app.example.com", "/", &alice_s2).await,
        401
    );
    assert_eq!(
        gh.forward_status("app.example.com", "/", &alice_no_sid)
            .await,
        401
    );
    let alice_later = mint(&gh, "alice", &[], None, 2);
    assert_eq!(
        gh.forward_status("app.example.com", "/", &alice_later)
            .await,
        200
    );
    assert_eq!(gh.forward_status("app.example.com", "/", &bob).await, 200);
    let (_, body) = api(&gh, reqwest::Method::GET, "/api/v1/sessions", Some(&admin)).await;
    assert_eq!(body["sessions"].as_array().unwrap().len(), 1);
    let (s, _) = api(
        &gh,
        reqwest::Method::POST,
        "/api/v1/sessions/terminate-all?user=",
        Some(&admin),
    )
    .await;
    assert_eq!(s, 400);
    let revoked = "gatehouse_auth_failures_total{reason=\"revoked\"}";
    assert!(gh.metric(revoked).await >= 3);
    drop(gh);

    // A restart on the same store and key: terminated stays terminated, the rest works.
    let gh2 = Server::start(&cfg).await;
    assert_eq!(
        gh2.forward_status("app.example.com", "/", &alice_later)
            .await,
        200
    );
    assert_eq!(gh2.forward_status("app.example.com", "/", &bob).await, 200);
    assert_eq!(
        gh2.forward_status("app.example.com", "/", &alice_s1).await,
        401
    );
    assert_eq!(
        gh2.forward_status("app.example.com", "/", &alice_s2).await,
        401
    );
    assert_eq!(
        gh2.forward_status("app.example.com", "/", &alice_no_sid)
            .await,
        401
    );
}
