//! The layering, checked on the source text so that it cannot drift:
//! - nothing outside `src/http/` (and the binary's `main.rs`) names `crate::http`,
//!   axum or hyper: HTTP stays in the adapters;
//! - `src/decision/` names neither the store, HTTP nor tokio: the decision is pure;
//! - services do not reach into the application state (`crate::app`), except the
//!   files listed in [`SERVICES_STILL_ON_APP_STATE`] — a ratchet that may only
//!   shrink (a listed file that no longer needs it fails too, so the list stays true);
//! - handlers do not reach the store: no `.store.` or `crate::store::Store` under
//!   `src/http/` beyond [`HANDLERS_STILL_ON_STORE`], the same kind of ratchet.
//!
//! Comments are skipped; a name counts wherever else it appears.

use std::path::{Path, PathBuf};

/// Services that still take `&app::Inner` instead of their own dependencies
/// (issue #10's next step gives each service the handles it needs).
const SERVICES_STILL_ON_APP_STATE: &[&str] = &[
    "src/service/allowlist.rs",
    "src/service/audit.rs",
    "src/service/bans.rs",
    "src/service/login.rs",
    "src/service/sessions.rs",
    "src/service/status.rs",
    "src/service/usage.rs",
];

/// Handlers that still call the store directly (the login pages' session
/// writes move behind `service::login` next).
const HANDLERS_STILL_ON_STORE: &[&str] = &["src/http/login.rs"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// (path relative to the repository, code lines without comments).
fn sources() -> Vec<(String, Vec<(usize, String)>)> {
    let mut files = vec![];
    rust_files(&root().join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap();
            let lines = text
                .lines()
                .enumerate()
                .filter_map(|(i, l)| {
                    let code = match l.find("//") {
                        Some(at) => &l[..at],
                        None => l,
                    };
                    (!code.trim().is_empty()).then(|| (i + 1, code.to_string()))
                })
                .collect();
            (rel, lines)
        })
        .collect()
}

/// Whether `word` appears in `line` as a path segment start (not inside a longer name).
fn names(line: &str, word: &str) -> bool {
    let wordish = |c: char| c.is_alphanumeric() || c == '_';
    let (starts, ends) = (
        word.chars().next().is_some_and(wordish),
        word.chars().next_back().is_some_and(wordish),
    );
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !(starts && before.is_some_and(wordish) || ends && after.is_some_and(wordish))
    })
}

fn offences(
    files: &[(String, Vec<(usize, String)>)],
    applies: impl Fn(&str) -> bool,
    words: &[&str],
) -> Vec<String> {
    let mut out = vec![];
    for (path, lines) in files.iter().filter(|(p, _)| applies(p)) {
        for (n, line) in lines {
            for w in words {
                if names(line, w) {
                    out.push(format!("{path}:{n} names {w}: {}", line.trim()));
                }
            }
        }
    }
    out
}

#[test]
fn http_stays_in_the_adapters() {
    let files = sources();
    let bad = offences(
        &files,
        |p| !p.starts_with("src/http/") && p != "src/main.rs",
        &["crate::http", "axum", "hyper", "hyper_util"],
    );
    assert!(
        bad.is_empty(),
        "HTTP outside src/http/:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_decision_core_is_pure() {
    let files = sources();
    let bad = offences(
        &files,
        |p| p.starts_with("src/decision/"),
        &["crate::store", "crate::http", "tokio", "sqlx", "axum"],
    );
    assert!(bad.is_empty(), "decision/ is not pure:\n{}", bad.join("\n"));
}

/// A ratchet: offenders must be listed, and listed files must still offend.
fn ratchet(kind: &str, offenders: Vec<String>, listed: &[&str]) {
    let mut files: Vec<&str> = offenders
        .iter()
        .map(|o| o.split(':').next().unwrap())
        .collect();
    files.dedup();
    let new: Vec<&String> = offenders
        .iter()
        .filter(|o| !listed.iter().any(|l| o.starts_with(&format!("{l}:"))))
        .collect();
    assert!(
        new.is_empty(),
        "{kind}: not allowed in new code (use a service):\n{}",
        new.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stale: Vec<&&str> = listed.iter().filter(|l| !files.contains(l)).collect();
    assert!(
        stale.is_empty(),
        "{kind}: these files no longer need their exception; remove them from the list: {stale:?}"
    );
}

#[test]
fn services_do_not_reach_into_the_application_state() {
    let files = sources();
    let bad = offences(&files, |p| p.starts_with("src/service/"), &["crate::app"]);
    ratchet("services on app state", bad, SERVICES_STILL_ON_APP_STATE);
}

#[test]
fn handlers_do_not_reach_the_store() {
    let files = sources();
    let bad = offences(
        &files,
        |p| p.starts_with("src/http/"),
        &[".store.", "crate::store::Store", "st.store"],
    );
    ratchet("store calls in handlers", bad, HANDLERS_STILL_ON_STORE);
}

#[test]
fn the_checker_sees_what_it_must() {
    assert!(names("use axum::Router;", "axum"));
    assert!(!names("let axumish = 1;", "axum"));
    assert!(names("use crate::http::api;", "crate::http"));
    assert!(!names("use crate::httpx;", "crate::http"));
    assert!(names("tokio::spawn(x)", "tokio"));
    assert!(names("st.store.session(id)", ".store."));
    assert!(!names(
        "use crate::store::StoreError;",
        "crate::store::Store"
    ));
}

#[test]
fn one_crypto_library() {
    // rustls, jsonwebtoken and our own hashing all run on aws-lc-rs; ring (a
    // second C crypto library) must not come back through a feature default.
    // (Cargo.lock still names ring as rustls-webpki's optional dependency; what
    // counts is the build graph. sqlx's PostgreSQL login brings RustCrypto
    // sha2/hmac for itself.)
    let tree = |krate: &str| {
        let out = std::process::Command::new(env!("CARGO"))
            .args(["tree", "--offline", "-e", "normal,build", "-i", krate])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(out.status.success(), "cargo tree failed: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ring = tree("ring");
    assert!(
        ring.trim().is_empty(),
        "ring is in the build graph:\n{ring}"
    );
    assert!(
        tree("aws-lc-rs").contains("rustls"),
        "rustls is not on aws-lc-rs"
    );
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    for dep in ["sha2 =", "hmac =", "ring ="] {
        assert!(!manifest.contains(dep), "Cargo.toml depends on {dep}");
    }
}
