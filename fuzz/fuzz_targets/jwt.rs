//! Bearer-token checks that need no network: a token of arbitrary bytes
//! against a validator with one pinned key (header, algorithm, signature and
//! claims checks), and arbitrary JWKS documents. Nothing is ever accepted
//! that was not signed by the pinned key.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gatehouse::identity::keys::parse_jwks(data);
    if let Ok(token) = std::str::from_utf8(data) {
        let v = validator();
        let r = runtime().block_on(v.validate(token));
        assert!(r.is_err(), "a fuzzed token must never validate");
    }
});

/// One issuer with one pinned Ed25519 key (RFC 8037's example public key).
fn validator() -> &'static gatehouse::identity::TokenValidator {
    use std::sync::{Arc, OnceLock};
    static V: OnceLock<gatehouse::identity::TokenValidator> = OnceLock::new();
    V.get_or_init(|| {
        let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let keys = gatehouse::identity::keys::parse_jwks(jwks).unwrap();
        let issuer = gatehouse::identity::IssuerHandle::with_static_keys(
            "https://issuer.example",
            "gatehouse",
            keys,
            &["realm_access.roles"],
        );
        gatehouse::identity::TokenValidator::new(
            vec![Arc::new(issuer)],
            Arc::new(gatehouse::clock::SystemClock),
            Arc::new(gatehouse::metrics::Metrics::default()),
            1 << 20,
        )
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    use std::sync::OnceLock;
    static R: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    R.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}
