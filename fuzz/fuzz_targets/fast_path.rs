//! The fast path's request parser and hand-off: any bytes as a request head.
//! Never panics; a head it takes is one httparse (hyper's parser) reads the
//! same way, and is about a canonical target (an absolute path without dot or
//! empty segments).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = gatehouse::http::head::agrees_with_httparse(data) {
        panic!("{e}");
    }
    let trusted = ["127.0.0.1/32".parse().unwrap()];
    if let Some(Ok(t)) =
        gatehouse::http::wire::read_head(data, &trusted, [127, 0, 0, 1].into(), 1_800_000_000)
    {
        assert!(canonical(&t.path), "{:?}", t.path);
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
