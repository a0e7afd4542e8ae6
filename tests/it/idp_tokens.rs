//! Bearer tokens from a real OpenID provider (npm oidc-provider) shaped like
//! Keycloak's: claims to headers, rules, refused token kinds, key rotation, and
//! an IdP that goes down or is not there yet.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn users() -> Value {
    json!({
        "alice": {"claims": {
            "preferred_username": "alice", "email": "alice@example.com", "name": "Alice Liddell",
            "realm_access": {"roles": ["admin", "offline_access"]},
            "resource_access": {"gatehouse": {"roles": ["editor"]}, "account": {"roles": ["manage-account"]}},
            "groups": ["/operators"], "acr": "gold", "amr": ["pwd", "otp"], "sid": "sess-1"
        }},
        "bob": {"claims": {"preferred_username": "bob", "realm_access": {"roles": ["viewer"]}, "acr": "1"}},
        "root1fa": {"claims": {"preferred_username": "root", "realm_access": {"roles": ["admin"]}, "acr": "1", "amr": ["pwd"]}},
        "carol": {"alg": "ES256", "claims": {"preferred_username": "carol", "realm_access": {"roles": ["viewer"]}}},
        "acct": {"claims": {"aud": "account", "preferred_username": "acct"}},
        "idtok": {"claims": {"typ": "ID"}},
        "refresh": {"claims": {"typ": "Refresh"}},
        "logout": {"claims": {"typ": null, "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}},
        "noexp": {"claims": {"exp": null}},
        "strexp": {"claims": {"exp": "9999999999"}},
        "future": {"claims": {"nbf": 9999999999u64}},
        "crlf": {"claims": {"preferred_username": "bob\r\nRemote-User: admin"}},
        "comma": {"claims": {"preferred_username": "dave", "realm_access": {"roles": ["a,admin"]}}},
        "badroles": {"claims": {"realm_access": {"roles": "admin"}, "groups": [1]}},
        "x5u": {"header": {"x5u": "http://127.0.0.1:1/evil.pem"}},
        "jku": {"header": {"jku": "http://127.0.0.1:1/evil.json"}},
        "hdrtyp": {"header": {"typ": "logout+jwt"}},
    })
}

fn config(issuer: &str, extra_issuer: &str) -> String {
    config_with(&format!(
        r#"
[[issuers]]
issuer = "{issuer}"
allow_insecure_http = true
audiences = ["gatehouse"]
client_id = "gatehouse"
jwks_min_refetch_interval = "1s"
{extra_issuer}
[access]
default_policy = "deny"
two_factor_acr = ["gold"]
[[access.rules]]
domains = ["grafana.example.com"]
paths = ["^/admin"]
subjects = ["role:admin"]
policy = "two_factor"
[[access.rules]]
domains = ["grafana.example.com"]
paths = ["^/admin"]
policy = "deny"
[[access.rules]]
domains = ["grafana.example.com", "*.ops.example.com"]
policy = "one_factor"
"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_shaped_tokens_become_identity_headers_and_rules_apply() {
    let idp = Idp::start(0, &[gen_key("RSA", "r1"), gen_key("EC", "e1")], &users());
    let gh = Server::start(&config(&idp.issuer, "")).await;
    assert!(gh.state.validator.ready(), "keys are loaded at start");

    let alice = idp.token("alice").await;
    let r = gh
        .forward(
            "grafana.example.com",
            "/d/abc?orgId=1",
            &[("Authorization", &format!("Bearer {alice}"))],
        )
        .await;
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["remote-user"], "alice");
    assert_eq!(h["remote-groups"], "admin,editor,offline_access,operators");
    assert_eq!(h["remote-email"], "alice@example.com");
    assert_eq!(h["remote-name"], "Alice Liddell");

    // two_factor by acr for the admin, a plain viewer falls through to deny
    assert_eq!(
        gh.forward_status("grafana.example.com", "/admin/users", &alice)
            .await,
        200
    );
    let bob = idp.token("bob").await;
    assert_eq!(
        gh.forward_status("grafana.example.com", "/", &bob).await,
        200
    );
    assert_eq!(
        gh.forward_status("grafana.example.com", "/admin/users", &bob)
            .await,
        403
    );
    let root = idp.token("root1fa").await;
    let r = gh
        .forward(
            "grafana.example.com",
            "/admin",
            &[("Authorization", &format!("Bearer {root}"))],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "two_factor_required"
    );
    // an unlisted host is denied by default even with a valid token
    assert_eq!(
        gh.forward_status("other.example.com", "/", &alice).await,
        403
    );
    // wildcard domain
    assert_eq!(
        gh.forward_status("db.ops.example.com", "/", &bob).await,
        200
    );

    // ES256 from the same issuer (EC key, pinned to ES256)
    let carol = idp.token("carol").await;
    assert_eq!(
        gh.forward_status("grafana.example.com", "/", &carol).await,
        200
    );

    // the nginx flavour with the same token
    let r = client()
        .get(gh.url("/authz/nginx"))
        .header("X-Original-URL", "https://grafana.example.com/d/abc")
        .header("X-Original-Method", "GET")
        .header("Authorization", format!("Bearer {alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-user"], "alice");

    // the second request with the same token comes from the cache
    let hits = gh
        .state
        .metrics
        .token_cache_hits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(hits >= 4, "cache hits: {hits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_by_the_real_idp_but_not_acceptable_are_refused() {
    let idp = Idp::start(0, &[gen_key("RSA", "r1")], &users());
    let gh = Server::start(&config(&idp.issuer, "")).await;
    let cases = [
        ("acct", 401, "bad_audience"),
        ("idtok", 401, "wrong_token_type"),
        ("refresh", 401, "wrong_token_type"),
        ("logout", 401, "wrong_token_type"),
        ("noexp", 401, "missing_exp"),
        ("strexp", 401, "missing_exp"),
        ("future", 401, "not_yet_valid"),
        ("badroles", 401, "bad_roles_claim"),
        ("x5u", 401, "forbidden_header"),
        ("jku", 401, "forbidden_header"),
        ("hdrtyp", 401, "wrong_token_type"),
        ("crlf", 403, ""),
        ("comma", 403, ""),
    ];
    for (user, status, reason) in cases {
        let t = idp.token(user).await;
        let r = gh
            .forward(
                "grafana.example.com",
                "/",
                &[("Authorization", &format!("Bearer {t}"))],
            )
            .await;
        assert_eq!(r.status().as_u16(), status, "{user}");
        assert!(r.headers().get("remote-user").is_none(), "{user}");
        if status == 401 {
            assert_eq!(
                r.headers()["www-authenticate"],
                "Bearer realm=\"gatehouse\", error=\"invalid_token\"",
                "{user}"
            );
            let line = format!("gatehouse_auth_failures_total{{reason=\"{reason}\"}}");
            assert!(gh.metric(&line).await >= 1, "{user}: {line}");
        } else {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unrepresentable_claim", "{user}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azp_may_stand_in_for_the_audience_when_configured() {
    let idp = Idp::start(
        0,
        &[gen_key("RSA", "r1")],
        &json!({"gatehouse": {"claims": {"aud": "account"}}}),
    );
    let strict = Server::start(&config(&idp.issuer, "")).await;
    let t = idp.token("gatehouse").await;
    assert_eq!(
        strict.forward_status("grafana.example.com", "/", &t).await,
        401
    );
    let lenient = Server::start(&config(&idp.issuer, "accept_azp_as_audience = true")).await;
    assert_eq!(
        lenient.forward_status("grafana.example.com", "/", &t).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_outage_and_withdrawal() {
    let k1 = gen_key("RSA", "k1");
    let k2 = gen_key("RSA", "k2");
    let k3 = gen_key("RSA", "k3");
    let u = users();
    let idp = Idp::start(0, std::slice::from_ref(&k1), &u);
    let port = idp.port;
    let gh = Server::start(&config(&idp.issuer, "")).await;
    let t1 = idp.token("bob").await;
    assert_eq!(
        gh.forward_status("grafana.example.com", "/", &t1).await,
        200
    );
    idp.stop();

    // Rotation: the IdP now signs with k2 (k1 still published). The unknown kid
    // triggers one refetch and the new token passes.
    let idp = Idp::start(port, &[k2.clone(), k1.clone()], &u);
    let t2 = idp.token("bob").await;
    let t2b = idp.token("alice").await;
    let refetch = "gatehouse_jwks_refreshes_total{issuer=\"";
    assert_eq!(
        gh.forward_status("grafana.example.com", "/", &t2).await,
        200
    );
    let ok_line = format!(
        "{refetch}{}\",trigger=\"unknown_kid\",result=\"ok\"}}",
        idp.issuer
    );
    assert_eq!(gh.metric(&ok_line).await, 1);
    idp.stop();

    // Outage: the last good keys keep working, also for a token never seen before.
    assert_eq!(
        gh.forward_status("grafana.example.com", "/", &t2b).await,
        200
    );
    let ready = client().get(gh.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // A token signed by a key the gateway has never seen, while the IdP is down:
    // refused, and refetches are rate-limited (one attempt within the interval).
    let idp3 = Idp::start(0, std::slice::from_ref(&k3), &u);
    let foreign = idp3.token("bob").await; // other issuer URL: unknown issuer
    assert_eq!(
        gh.forward_status("grafana.example.com", "/", &foreign)
            .await,
        401
    );
    idp3.stop();
    let mut parts: Vec<String> = t2.split('.').map(str::to_string).collect();
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": "k3"}).to_string();
    parts[0] = base64url(header.as_bytes());
    let unknown_kid = parts.join(".");
    // Let the last refetch age past jwks_min_refetch_interval first.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err_line = format!(
        "{refetch}{}\",trigger=\"unknown_kid\",result=\"error\"}}",
        gh.state.config.issuers[0].issuer
    );
    assert_eq!(
        gh.forward_status("grafana.example.com", "/", &unknown_kid)
            .await,
        401
    );
    assert_eq!(
        gh.forward_status("grafana.example.com", "/", &unknown_kid)
            .await,
        401
    );
    assert_eq!(
        gh.metric(&err_line).await,
        1,
        "second unknown kid within 1s must not refetch"
    );

    // Withdrawal: the IdP drops k1. After the next fetch, t1 (cached) stops working.
    let idp = Idp::start(port, std::slice::from_ref(&k2), &u);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        gh.forward_status("grafana.example.com", "/", &unknown_kid)
            .await,
        401
    );
    assert_eq!(
        gh.forward_status("grafana.example.com", "/", &t1).await,
        401,
        "withdrawn key"
    );
    assert_eq!(
        gh.forward_status("grafana.example.com", "/", &t2).await,
        200
    );
    drop(idp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_that_is_down_at_start_is_picked_up_when_it_comes() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let gh = Server::start(&config(&issuer, "")).await;
    let ready = client().get(gh.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    let ours = body["issuers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["issuer"] == issuer.as_str())
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(ours["keys_loaded"], false);

    let idp = Idp::start(port, &[gen_key("RSA", "r1")], &users());
    let t = idp.token("bob").await;
    let up = eventually(Duration::from_secs(15), || async {
        client()
            .get(gh.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    assert!(up, "keys were not loaded after the IdP came up");
    assert_eq!(gh.forward_status("grafana.example.com", "/", &t).await, 200);
}

fn base64url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
