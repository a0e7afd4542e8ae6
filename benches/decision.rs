//! The decision path, measured: `decide()` alone; the fast path that serves
//! proxies' keep-alive connections (`http::wire`, a request in and its answer
//! out, over an in-memory stream) and the general axum handler, each with a
//! cached token; full verification of a first-seen token (EdDSA and ES256 local
//! keys, RS256 2048-bit from an issuer's key set). Run: `cargo bench --bench decision`.

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

/// An issuer with one RSA 2048 key (RS256), and a signer of its tokens.
fn rsa_issuer() -> (gatehouse::identity::TokenValidator, impl Fn(&str) -> String) {
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = kp.public_key();
    let jwks = serde_json::json!({"keys": [{
        "kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig",
        "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
        "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
    }]});
    let keys = gatehouse::identity::keys::parse_jwks(jwks.to_string().as_bytes()).unwrap();
    let issuer = gatehouse::identity::IssuerHandle::with_static_keys(
        "https://sso.example.com/realms/main",
        "gatehouse",
        keys,
        &["realm_access.roles"],
    );
    let validator = gatehouse::identity::TokenValidator::new(
        vec![Arc::new(issuer)],
        Arc::new(SystemClock),
        Arc::new(gatehouse::metrics::Metrics::default()),
        1 << 20,
    );
    let sign = move |sub: &str| {
        let now = SystemClock.now();
        let head = B64.encode(r#"{"alg":"RS256","typ":"JWT","kid":"r1"}"#);
        let claims = serde_json::json!({
            "iss": "https://sso.example.com/realms/main", "aud": "gatehouse", "sub": sub,
            "preferred_username": sub, "iat": now, "exp": now + 3600,
            "email": format!("{sub}@example.com"), "realm_access": {"roles": ["viewer", "editor"]},
        });
        let input = format!("{head}.{}", B64.encode(claims.to_string()));
        let mut sig = vec![0u8; kp.public_modulus_len()];
        kp.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{input}.{}", B64.encode(sig))
    };
    (validator, sign)
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

    // 2. the fast path: a proxy's keep-alive connection, one request and its
    // answer per iteration (parse, decide, encode, over an in-memory stream)
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(());
        let (st_c, app_c) = (st.clone(), router(st.clone()));
        let _conn = rt.spawn(gatehouse::http::wire::serve_connection(
            server,
            SocketAddr::from(([127, 0, 0, 1], 40000)),
            st_c,
            app_c,
            hyper::server::conn::http1::Builder::new(),
            stop_rx,
        ));
        let request = format!(
            "GET /authz/forward HTTP/1.1\r\nHost: gatehouse\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: grafana.example.com\r\nX-Forwarded-Uri: /d/abc/overview?orgId=1&refresh=30s\r\n\
             X-Forwarded-Method: GET\r\nX-Forwarded-For: 203.0.113.7\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        let mut buf = vec![0u8; 4096];
        c.bench_function("fast path /authz/forward, cached token", |b| {
            b.iter(|| {
                rt.block_on(async {
                    client.write_all(request.as_bytes()).await.unwrap();
                    let mut n = 0;
                    while !buf[..n].ends_with(b"\r\n\r\n") {
                        n += client.read(&mut buf[n..]).await.unwrap();
                    }
                    assert!(buf.starts_with(b"HTTP/1.1 200"));
                })
            })
        });
    }

    // 2b. the general handler (axum) with a cached token
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

    // 3b. RS256, 2048-bit (a Keycloak realm's default key)
    let (rsa, sign) = rsa_issuer();
    let rs_tokens: Vec<String> = (0..64).map(|i| sign(&format!("user{i}"))).collect();
    c.bench_function("verify first-seen token (RS256 2048)", |b| {
        b.iter(|| {
            i = (i + 1) % rs_tokens.len();
            rt.block_on(rsa.verify(&rs_tokens[i])).unwrap()
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
