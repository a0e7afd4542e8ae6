//! The decision path, measured: `decide()` alone; the whole `/authz/forward`
//! handler with a cached token; and full verification of a first-seen token
//! (EdDSA and ES256 local keys). Run: `cargo bench --bench decision`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::app::{build_state, AppState};
use gatehouse::clock::{Clock, SystemClock};
use gatehouse::config::Config;
use gatehouse::decision::{decide, Scheme, Subject, Target};
use gatehouse::http::server::router;
use gatehouse::identity::MintRequest;
use tower::ServiceExt;

const RULES: &str = r#"
[server]
public_url = "https://auth.example.com"
[local_issuer]
signing_key_file = "key.pem"
[access]
default_policy = "deny"
two_factor_amr = ["otp"]
[[access.rules]]
domains = ["status.example.com"]
policy = "bypass"
[[access.rules]]
domains = ["grafana.example.com"]
paths = ["^/api/admin", "^/admin"]
subjects = ["role:admin"]
policy = "two_factor"
[[access.rules]]
domains = ["grafana.example.com"]
paths = ["^/api/admin", "^/admin"]
policy = "deny"
[[access.rules]]
domains = ["grafana.example.com", "*.ops.example.com"]
methods = ["GET", "HEAD", "POST"]
policy = "one_factor"
"#;

fn state(rt: &tokio::runtime::Runtime, dir: &Path, key_pem: Option<&str>) -> AppState {
    if let Some(pem) = key_pem {
        std::fs::write(dir.join("key.pem"), pem).unwrap();
    }
    let cfg = Config::from_toml_str(RULES, dir, "bench", &[]).unwrap();
    rt.block_on(build_state(cfg, None)).unwrap()
}

fn mint(st: &AppState, sub: &str) -> String {
    let req = MintRequest {
        sub: sub.into(),
        roles: vec!["viewer".into(), "editor".into()],
        ttl_secs: 3600,
        email: Some(format!("{sub}@example.com")),
        name: Some("Bench User".into()),
        amr: vec!["pwd".into()],
        ..Default::default()
    };
    st.local
        .as_ref()
        .unwrap()
        .mint(&req, SystemClock.now())
        .unwrap()
}

fn forward_request(token: &str) -> Request<Body> {
    let mut req = Request::get("/authz/forward")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "grafana.example.com")
        .header("x-forwarded-uri", "/d/abc/overview?orgId=1&refresh=30s")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-for", "203.0.113.7")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    req
}

fn p256_pem() -> String {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::Engine;
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let body: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        body.join("\n")
    )
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let st = state(&rt, dir.path(), None);

    // 1. decide() alone
    let token = mint(&st, "alice");
    let id = rt.block_on(st.validator.validate(&token)).unwrap();
    let subject = Subject::User(id);
    let target = Target {
        scheme: Scheme::Https,
        host: "grafana.example.com".into(),
        port: None,
        path: "/d/abc/overview".into(),
        raw_path_and_query: "/d/abc/overview?orgId=1".into(),
        method: "GET".into(),
        client: "203.0.113.7".parse().unwrap(),
        websocket: false,
        at: 0,
    };
    let policy = st.policy.load_full();
    c.bench_function("decide (pure, 4 rules)", |b| {
        b.iter(|| std::hint::black_box(decide(&policy, &subject, &target)))
    });

    // 2. the whole handler with a cached token
    let app = router(st.clone());
    c.bench_function("/authz/forward, cached token", |b| {
        b.iter(|| {
            let resp = rt
                .block_on(app.clone().oneshot(forward_request(&token)))
                .unwrap();
            assert_eq!(resp.status(), 200);
        })
    });

    // 3. first-seen tokens: full verification, no cache (EdDSA, then ES256)
    let tokens: Vec<String> = (0..64).map(|i| mint(&st, &format!("user{i}"))).collect();
    let mut i = 0;
    c.bench_function("verify first-seen token (EdDSA)", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            rt.block_on(st.validator.verify(&tokens[i])).unwrap()
        })
    });
    let dir2 = tempfile::tempdir().unwrap();
    let st2 = state(&rt, dir2.path(), Some(&p256_pem()));
    let es_tokens: Vec<String> = (0..64).map(|i| mint(&st2, &format!("user{i}"))).collect();
    c.bench_function("verify first-seen token (ES256)", |b| {
        b.iter(|| {
            i = (i + 1) % es_tokens.len();
            rt.block_on(st2.validator.verify(&es_tokens[i])).unwrap()
        })
    });

    // 4. the whole handler with a first-seen token each time (cache cleared)
    let app2 = router(st2.clone());
    let st2c: Arc<_> = st2.clone();
    c.bench_function("/authz/forward, first-seen token (ES256)", |b| {
        b.iter(|| {
            i = (i + 1) % es_tokens.len();
            st2c.validator.clear_cache();
            let resp = rt
                .block_on(app2.clone().oneshot(forward_request(&es_tokens[i])))
                .unwrap();
            assert_eq!(resp.status(), 200);
        })
    });
}

criterion_group! {
    name = decision;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(decision);
