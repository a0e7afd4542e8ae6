//! An identity provider that misbehaves: it answers after 30 s, sends a 10 MB
//! key set, 10,000 keys, invalid JSON, a redirect elsewhere, or an error. In
//! each case a token with an unknown key (which makes gatehouse fetch the keys
//! again) is refused within a bounded time, tokens with the keys already known
//! go on being decided at once meanwhile, and the last good keys stay.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(u8)]
enum Mode {
    Good,
    Slow,
    Huge,
    ManyKeys,
    InvalidJson,
    Redirect,
    Error,
    /// The key set with a second key (the IdP rotated).
    Rotated,
}

const HOSTILE: [Mode; 6] = [
    Mode::Slow,
    Mode::Huge,
    Mode::ManyKeys,
    Mode::InvalidJson,
    Mode::Redirect,
    Mode::Error,
];

fn public(jwk: &Value) -> Value {
    let mut p = jwk.clone();
    p.as_object_mut().unwrap().remove("d");
    p
}

/// The misbehaving IdP: discovery is fine, the key set is whatever `mode` says.
async fn idp(mode: Arc<AtomicU8>, keys: Vec<Value>) -> String {
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = discovery(&base)
        .route(
            "/jwks",
            axum::routing::get(move || {
                let (mode, keys) = (mode.clone(), keys.clone());
                async move {
                    let m = mode.load(Ordering::SeqCst);
                    let good = json!({"keys": [public(&keys[0])]});
                    if m == Mode::Good as u8 {
                        axum::Json(good).into_response()
                    } else if m == Mode::Rotated as u8 {
                        axum::Json(json!({"keys": [public(&keys[0]), public(&keys[1])]}))
                            .into_response()
                    } else if m == Mode::Slow as u8 {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        axum::Json(good).into_response()
                    } else if m == Mode::Huge as u8 {
                        let mut s = String::from("{\"keys\":[");
                        s.push_str(&" ".repeat(10 * 1024 * 1024));
                        s.push_str("]}");
                        s.into_response()
                    } else if m == Mode::ManyKeys as u8 {
                        let many: Vec<Value> = (0..10_000)
                            .map(|i| json!({"kty": "OKP", "crv": "Ed25519", "kid": i.to_string(), "x": "AA"}))
                            .collect();
                        axum::Json(json!({"keys": many})).into_response()
                    } else if m == Mode::InvalidJson as u8 {
                        "{\"keys\": [ not json".into_response()
                    } else if m == Mode::Redirect as u8 {
                        (
                            axum::http::StatusCode::FOUND,
                            [(axum::http::header::LOCATION, "http://127.0.0.1:9/elsewhere.json")],
                        )
                            .into_response()
                    } else {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                }
            }),
        );
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    base
}

fn token(issuer: &str, key: &Value, kid: &str, sub: &str) -> String {
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(kid.into());
    let now = gatehouse::clock::Clock::now(&gatehouse::clock::SystemClock);
    jsonwebtoken::encode(
        &h,
        &json!({"iss": issuer, "aud": "gatehouse", "sub": sub, "iat": now, "exp": now + 600}),
        &EncodingKey::from_ed_der(&ed_pkcs8(key)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_idp_bounds_time_and_memory_and_known_keys_go_on() {
    let keys = vec![gen_key("OKP", "known"), gen_key("OKP", "rotated")];
    let mode = Arc::new(AtomicU8::new(Mode::Good as u8));
    let issuer = idp(mode.clone(), keys.clone()).await;
    let gh = Server::start(&config_with(&format!(
        r#"
[[issuers]]
issuer = "{issuer}"
allow_insecure_http = true
audiences = ["gatehouse"]
jwks_min_refetch_interval = "1s"
"#
    )))
    .await;
    let known = token(&issuer, &keys[0], "known", "alice");
    let unknown = token(&issuer, &keys[1], "rotated", "bob");
    assert_eq!(gh.forward_status("app.example.com", "/", &known).await, 200);

    for m in HOSTILE {
        mode.store(m as u8, Ordering::SeqCst);
        // Past jwks_min_refetch_interval: the unknown key makes gatehouse fetch again.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let t = Instant::now();
        let refused = {
            let gh = &gh;
            let unknown = &unknown;
            async move { gh.forward_status("app.example.com", "/", unknown).await }
        };
        let meanwhile = async {
            // While that fetch is under way, the known key is decided at once.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = Instant::now();
            let s = gh.forward_status("app.example.com", "/", &known).await;
            (s, t.elapsed())
        };
        let (refused, (known_status, known_took)) = tokio::join!(refused, meanwhile);
        assert_eq!(refused, 401, "{m:?}: an unknown key is refused");
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "{m:?}: refused within the fetch's time limit, not {:?}",
            t.elapsed()
        );
        assert_eq!(known_status, 200, "{m:?}: the known key still passes");
        assert!(
            known_took < Duration::from_millis(500),
            "{m:?}: the known key did not wait for the IdP: {known_took:?}"
        );
    }
    let errors = gh
        .metric(&format!(
            "gatehouse_jwks_refreshes_total{{issuer=\"{issuer}\",trigger=\"unknown_kid\",result=\"error\"}}"
        ))
        .await;
    assert_eq!(
        errors,
        HOSTILE.len() as u64,
        "each hostile answer was a failed fetch"
    );

    // The IdP behaves again, with the new key: it is picked up.
    mode.store(Mode::Rotated as u8, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        gh.forward_status("app.example.com", "/", &unknown).await,
        200
    );
    assert_eq!(gh.forward_status("app.example.com", "/", &known).await, 200);
}
