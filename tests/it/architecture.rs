//! The layering, checked on the source text so that it cannot drift:
//! - nothing outside `src/http/` (and the binary's `main.rs`) names `crate::http`,
//!   axum or hyper: HTTP stays in the adapters;
//! - `src/decision/` names neither the store, HTTP, tokio, the services nor the
//!   configuration (which compiles into the decision's types, not the reverse):
//!   the decision is pure and there is no `config` ↔ `decision` cycle;
//! - services do not reach into the application state (`crate::app`,
//!   `AppState`, `Inner`): each holds the handles it works on;
//! - the store (the `Store` handle) is named only by the services, the wiring
//!   that builds them (`app.rs`), the audit log that writes through it, the
//!   CLI's offline commands (`main.rs`) and the store itself: handlers cannot
//!   reach it.
//!
//! Comments are skipped; a name counts wherever else it appears.

use std::path::{Path, PathBuf};

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
                // A file's unit tests (its trailing `#[cfg(test)]` module) are
                // not part of the layering: they may build from a config.
                .take_while(|l| l.trim() != "#[cfg(test)]")
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
        &[
            "crate::store",
            "crate::http",
            "crate::config",
            "crate::service",
            "crate::app",
            "tokio",
            "sqlx",
            "axum",
        ],
    );
    assert!(bad.is_empty(), "decision/ is not pure:\n{}", bad.join("\n"));
}

#[test]
fn services_do_not_reach_into_the_application_state() {
    let files = sources();
    let bad = offences(
        &files,
        |p| p.starts_with("src/service/"),
        &["crate::app", "AppState", "Inner"],
    );
    assert!(
        bad.is_empty(),
        "services on the application state (give the service the handle it needs):\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_services_reach_the_store() {
    let files = sources();
    let allowed = |p: &str| {
        p.starts_with("src/service/")
            || p.starts_with("src/store/")
            || ["src/app.rs", "src/audit/log.rs", "src/main.rs"].contains(&p)
    };
    let mut bad = offences(&files, |p| !allowed(p), &["Store"]);
    // (`config.store` is the configuration's section, so `.store.` is looked
    // for only where a handle could hide: the adapters.)
    bad.extend(offences(
        &files,
        |p| p.starts_with("src/http/"),
        &[".store."],
    ));
    assert!(
        bad.is_empty(),
        "the store outside the services (call a service method):\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_checker_sees_what_it_must() {
    assert!(names("use axum::Router;", "axum"));
    assert!(!names("let axumish = 1;", "axum"));
    assert!(names("use crate::http::api;", "crate::http"));
    assert!(!names("use crate::httpx;", "crate::http"));
    assert!(names("tokio::spawn(x)", "tokio"));
    assert!(names("st.store.session(id)", ".store."));
    assert!(names("use crate::store::{Store, X};", "Store"));
    assert!(!names("use crate::store::StoreError;", "Store"));
    assert!(!names("let k = Inner2;", "Inner"));
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
