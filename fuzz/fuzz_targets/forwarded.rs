//! The forwarded-header reader and the path/host canonicaliser: arbitrary
//! header values for every header a decision reads, from a trusted proxy and
//! from an untrusted one (which must always be refused).
#![no_main]
use libfuzzer_sys::fuzz_target;

use gatehouse::http::authz::{parse_target, Flavour, Seen};
use http::{HeaderMap, HeaderName, HeaderValue};

const NAMES: [&str; 8] = [
    "x-original-url",
    "x-original-method",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-for",
];

fuzz_target!(|data: &[u8]| {
    let mut h = HeaderMap::new();
    // Records separated by 0xff: (header index byte, value bytes).
    for rec in data.split(|b| *b == 0xff) {
        if let Some((i, v)) = rec.split_first() {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                h.append(HeaderName::from_static(NAMES[*i as usize % NAMES.len()]), v);
            }
        }
    }
    let seen = Seen::from_map(&h);
    let trusted = ["127.0.0.1/32".parse().unwrap()];
    for flavour in [Flavour::Nginx, Flavour::Forward] {
        if let Ok(t) = parse_target(flavour, &trusted, [127, 0, 0, 1].into(), &seen, 1_800_000_000) {
            assert!(canonical(&t.path), "{:?}", t.path);
            assert!(t.host.bytes().all(|b| !b.is_ascii_uppercase()), "host lower-cased");
        }
        assert!(
            parse_target(flavour, &trusted, [192, 0, 2, 1].into(), &seen, 1_800_000_000).is_err(),
            "an untrusted peer is always refused"
        );
    }
});

/// A decided path is absolute and has no dot or empty segments left: nothing
/// a protected prefix could be walked around with.
fn canonical(p: &str) -> bool {
    p.starts_with('/')
        && p[1..]
            .split('/')
            .enumerate()
            .all(|(i, seg)| seg != "." && seg != ".." && (!seg.is_empty() || i == p[1..].split('/').count() - 1))
}
