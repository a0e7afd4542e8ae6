//! The `rd` (return URL) validator: whatever it accepts is an http(s) URL on
//! an allowed domain, without user info.
#![no_main]
use libfuzzer_sys::fuzz_target;

use gatehouse::decision::rules::DomainPattern;

fuzz_target!(|data: &[u8]| {
    let Ok(rd) = std::str::from_utf8(data) else { return };
    let allowed = [
        DomainPattern::parse("example.com").unwrap(),
        DomainPattern::parse("*.example.com").unwrap(),
    ];
    for http in [false, true] {
        if let Some(u) = gatehouse::identity::oidc::safe_redirect(rd, &allowed, http) {
            let p = url::Url::parse(&u).expect("an accepted rd is a URL");
            assert!(p.scheme() == "https" || (http && p.scheme() == "http"));
            // (a trailing dot names the same host)
            let host = p.host_str().expect("with a host").trim_end_matches('.');
            assert!(host == "example.com" || host.ends_with(".example.com"), "{u}");
            assert!(p.username().is_empty() && p.password().is_none());
        }
    }
});
