//! The audit log as an operator relies on it: every tampering with the store or
//! an exported file is named by `gatehouse audit verify` (and the API); appends
//! from many concurrent admin actions — and from two gatehouse processes on one
//! PostgreSQL — form one linear chain; checkpoints reach a real syslog listener
//! and a webhook; a 100,000-entry log verifies.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use gatehouse::audit::chain::{seal, Entry};
use gatehouse::audit::NewEntry;
use gatehouse::clock::{Clock, SystemClock};
use gatehouse::identity::MintRequest;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn config(dir: &Path, store: &str, extra: &str) -> String {
    let d = dir.display();
    config_with(&format!(
        r#"
[store]
url = "{store}"
[local_issuer]
signing_key_file = "{d}/local.pem"
[audit]
jsonl_file = "{d}/audit.jsonl"
checkpoint_key_file = "{d}/audit.key"
checkpoint_file = "{d}/checkpoints.log"
checkpoint_every = 10
checkpoint_interval = "1h"
{extra}
"#
    ))
}

/// Runs `gatehouse audit verify` with a config file; (exit code, stdout).
fn verify_cli(cfg_text: &str, dir: &Path, args: &[&str]) -> (i32, String) {
    let cfg = dir.join(format!("verify-{}.toml", SystemClock.now() ^ rand_u32()));
    std::fs::write(&cfg, cfg_text).unwrap();
    let mut all = vec!["audit", "verify", "--config", cfg.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = Command::new(BIN).args(&all).output().unwrap();
    let _ = std::fs::remove_file(&cfg);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn rand_u32() -> i64 {
    gatehouse::identity::seal::random_token(4).len() as i64
        + std::process::id() as i64 * 7
        + (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as i64)
}

async fn sql(url: &str, statements: &[&str]) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    for s in statements {
        sqlx::query(s)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    pool.close().await;
}

fn entry(i: usize) -> NewEntry {
    NewEntry::new(
        "alice",
        "192.0.2.1",
        "allowlist.add",
        &format!("10.{i}.0.0/16"),
        "ok",
        json!({"i": i}),
    )
}

fn copy_db(from: &Path, to: &Path) {
    for ext in ["", "-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{ext}", from.display()));
        if f.exists() {
            std::fs::copy(&f, format!("{}{ext}", to.display())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("g.db");
    let url = format!("sqlite://{}", db.display());
    let cfg = config(d, &url, "");
    let gh = Server::start(&cfg).await;
    for i in 0..40 {
        gh.audit().append(entry(i)).await.unwrap();
    }
    let api = gh.audit().verify().await.unwrap();
    assert!(api.ok, "{api:?}");
    assert_eq!((api.entries, api.checkpoints, api.unanchored), (40, 4, 0));
    drop(gh);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Intact: the store, and the exported JSON lines.
    let (code, out) = verify_cli(&cfg, d, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("ok: 40 entries, head {}", api.head)),
        "{out}"
    );
    let jsonl = d.join("audit.jsonl");
    let (code, out) = verify_cli(&cfg, d, &["--file", jsonl.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");

    // Each fixture is a copy of the database, changed one way.
    let fixture = |name: &str| {
        let p = d.join(format!("{name}.db"));
        copy_db(&db, &p);
        (p.clone(), format!("sqlite://{}", p.display()))
    };
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "edited",
            vec!["UPDATE audit SET target = '0.0.0.0/0' WHERE seq = 15".into()],
            "broken at entry 15: entry 15 was altered",
        ),
        (
            "deleted",
            vec!["DELETE FROM audit WHERE seq = 15".into()],
            "broken at entry 16: entries missing between 14 and 16",
        ),
        (
            "tail",
            vec!["DELETE FROM audit WHERE seq > 32".into()],
            "broken at entry 40: the log ends at entry 32 but a checkpoint was signed at entry 40",
        ),
        (
            "swapped",
            vec![
                "UPDATE audit SET target = 'x' WHERE seq = 15".into(),
                "UPDATE audit SET target = (SELECT target FROM audit WHERE seq = 16) WHERE seq = 15".into(),
                "UPDATE audit SET target = '10.14.0.0/16' WHERE seq = 16".into(),
            ],
            "broken at entry 15: entry 15 was altered",
        ),
        (
            "unreadable",
            vec!["UPDATE audit SET details = '{not json' WHERE seq = 5".into()],
            "broken: entry at row 5 cannot be read",
        ),
    ];
    for (name, statements, want) in &cases {
        let (_, furl) = fixture(name);
        let st: Vec<&str> = statements.iter().map(String::as_str).collect();
        sql(&furl, &st).await;
        let (code, out) = verify_cli(&cfg.replace(&url, &furl), d, &[]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains(want), "{name}: {out}");
    }

    // Rolled back to an older state (entry 20) and continued differently.
    let (_, furl) = fixture("rolledback");
    sql(&furl, &["DELETE FROM audit WHERE seq > 20"]).await;
    {
        let store = gatehouse::store::Store::connect(&furl).await.unwrap();
        let e20 = store
            .audit_page(&gatehouse::store::AuditFilter {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        sql(
            &furl,
            &[&format!(
                "UPDATE audit_head SET seq = 20, hash = '{}' WHERE id = 1",
                e20[0].hash
            )],
        )
        .await;
        let (code, out) = verify_cli(&cfg.replace(&url, &furl), d, &[]);
        assert_eq!(code, 1);
        assert!(
            out.contains("the log ends at entry 20 but a checkpoint was signed at entry 30"),
            "{out}"
        );
        for i in 0..25 {
            // A forger with write access who knows the chain's rules.
            let n = NewEntry::new(
                "mallory",
                "",
                "allowlist.add",
                "0.0.0.0/0",
                "ok",
                json!({"i": i}),
            );
            store
                .append_audit(|prev| {
                    let e = gatehouse::audit::chain::seal(&n, prev, "2026-11-23T00:00:00Z".into());
                    let details = gatehouse::audit::chain::canonical_json(&e.details);
                    (e, details)
                })
                .await
                .unwrap();
        }
    }
    let (code, out) = verify_cli(&cfg.replace(&url, &furl), d, &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("broken at entry 30: checkpoint at entry 30 names another hash"),
        "{out}"
    );

    // The same attacks on an exported file.
    let lines: Vec<String> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 40);
    let write = |name: &str, ls: &[String]| {
        let p = d.join(format!("{name}.jsonl"));
        std::fs::write(&p, ls.join("\n") + "\n").unwrap();
        p
    };
    let mut swapped = lines.clone();
    swapped.swap(14, 15);
    let mut edited = lines.clone();
    edited[14] = edited[14].replace("10.14.0.0/16", "0.0.0.0/0");
    let mut forked = lines[..30].to_vec();
    let e30: Entry = serde_json::from_str(&lines[29]).unwrap();
    for who in ["writer-a", "writer-b"] {
        let e = seal(
            &NewEntry::new(who, "", "x", "", "ok", json!({})),
            Some((e30.seq, &e30.hash)),
            "t".into(),
        );
        forked.push(serde_json::to_string(&e).unwrap());
    }
    let mut garbage = lines.clone();
    garbage[7] = "{\"seq\": 8, \"oops\"".into();
    for (name, ls, want) in [
        (
            "swapped",
            swapped,
            "broken at entry 15: entry 15 is out of order",
        ),
        ("edited", edited, "broken at entry 15: entry 15 was altered"),
        (
            "forked",
            forked,
            "broken at entry 31: the chain forks at entry 31",
        ),
        (
            "truncated",
            lines[..35].to_vec(),
            "the log ends at entry 35 but a checkpoint was signed at entry 40",
        ),
        ("garbage", garbage, "garbage.jsonl:8 cannot be read"),
    ] {
        let p = write(name, &ls);
        let (code, out) = verify_cli(&cfg, d, &["--file", p.to_str().unwrap()]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains(want), "{name}: {out}");
    }

    // A forged checkpoint file (signed with another key).
    let forged_cp = d.join("forged-checkpoints.log");
    let other = gatehouse::audit::Checkpoint::sign(
        b"not the key",
        40,
        &api.head,
        "2026-11-23T00:00:00Z".into(),
    );
    std::fs::write(&forged_cp, serde_json::to_string(&other).unwrap() + "\n").unwrap();
    let (code, out) = verify_cli(&cfg, d, &["--checkpoints", forged_cp.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("checkpoint at entry 40 has an invalid signature"),
        "{out}"
    );
}

/// 50 concurrent admin actions (each an intent and an outcome entry): one
/// linear chain, nothing lost.
async fn concurrent_admin_actions(servers: &[&Server], admin: &str) {
    let before: i64 = servers[0].store().await.audit_head().await.unwrap().0;
    let mut tasks = vec![];
    for i in 0..50 {
        let url = servers[i % servers.len()].url("/api/v1/bans");
        let admin = admin.to_string();
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(admin)
                .json(&json!({"kind": "ip", "value": format!("198.51.100.{i}"), "duration": "1h"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let report = servers[0].audit().verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(
        report.entries,
        before + 100,
        "every intent and outcome is in the chain"
    );
    let page = servers[0]
        .store()
        .await
        .audit_page(&gatehouse::store::AuditFilter {
            action: Some("ban.add".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.iter().filter(|e| e.result == "requested").count(), 50);
    assert_eq!(page.iter().filter(|e| e.result == "ok").count(), 50);
}

fn admin_token(gh: &Server) -> String {
    gh.mint("ops", &["admin"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let gh = Server::start(&config(
        dir.path(),
        &format!("sqlite://{}/g.db", dir.path().display()),
        "",
    ))
    .await;
    let admin = admin_token(&gh);
    concurrent_admin_actions(&[&gh], &admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_postgres_two_processes() {
    let pg = common::pg::Postgres::start();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Two gatehouse instances, each with its own pool and in-process lock,
    // sharing one database and one signing key.
    let a = Server::start(&config(d1.path(), &pg.url, "")).await;
    std::fs::copy(d1.path().join("local.pem"), d2.path().join("local.pem")).unwrap();
    let b = Server::start(&config(d2.path(), &pg.url, "")).await;
    let admin = admin_token(&a);
    concurrent_admin_actions(&[&a, &b], &admin).await;
    let rb = b.audit().verify().await.unwrap();
    assert!(rb.ok && rb.entries == 100, "{rb:?}");
    // Each replica's mirror is a whole copy of the chain, the other's entries too.
    for d in [&d1, &d2] {
        let file = d.path().join("audit.jsonl");
        let whole = || {
            let read = gatehouse::audit::log::read_jsonl(std::slice::from_ref(&file)).unwrap();
            read.len() == 100 && gatehouse::audit::chain::verify(read, &[], None).ok
        };
        assert!(
            eventually(Duration::from_secs(10), || std::future::ready(whole())).await,
            "{} is not the whole chain",
            file.display()
        );
        let cfg = config(d.path(), &pg.url, "");
        let (code, text) = verify_cli(&cfg, d.path(), &["--file", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_reach_syslog_and_a_webhook() {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (hook_tx, mut hook_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let hook_addr = hook.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut s, _) = hook.accept().await.unwrap();
            let mut buf = vec![0u8; 16384];
            let mut got = Vec::new();
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let _ = hook_tx.send(body.to_string());
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "syslog = \"udp://{}\"\nwebhook = \"http://{hook_addr}/audit\"",
        udp.local_addr().unwrap()
    );
    let gh = Server::start(
        &config(
            dir.path(),
            &format!("sqlite://{}/g.db", dir.path().display()),
            &extra,
        )
        .replace("checkpoint_every = 10", "checkpoint_every = 5"),
    )
    .await;
    for i in 0..5 {
        gh.audit().append(entry(i)).await.unwrap();
    }
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), udp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    let head = gh.store().await.audit_head().await.unwrap();
    // RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
    assert!(msg.starts_with("<85>1 "), "{msg}");
    let parts: Vec<&str> = msg.splitn(8, ' ').collect();
    assert_eq!(parts[3], "gatehouse");
    assert_eq!(parts[5], "audit-checkpoint");
    assert!(gatehouse::clock::parse_rfc3339(parts[1]).is_some(), "{msg}");
    assert!(
        msg.contains(&format!("seq=\"5\" hash=\"{}\"", head.1)),
        "{msg}"
    );
    let body = tokio::time::timeout(Duration::from_secs(5), hook_rx.recv())
        .await
        .unwrap()
        .unwrap();
    let cp: gatehouse::audit::Checkpoint = serde_json::from_str(&body).unwrap();
    assert_eq!((cp.seq, cp.hash.as_str()), (5, head.1.as_str()));
    let key = std::fs::read_to_string(dir.path().join("audit.key")).unwrap();
    assert!(
        cp.valid(key.trim().as_bytes()),
        "the webhook got a valid signed checkpoint"
    );
    drop(gh);

    // TCP, octet-counted (RFC 6587).
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("syslog = \"tcp://{}\"", tcp.local_addr().unwrap());
    let gh = Server::start(
        &config(
            dir.path(),
            &format!("sqlite://{}/g.db", dir.path().display()),
            &extra,
        )
        .replace("checkpoint_every = 10", "checkpoint_every = 5"),
    )
    .await;
    for i in 0..5 {
        gh.audit().append(entry(i)).await.unwrap();
    }
    let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), tcp.accept())
        .await
        .unwrap()
        .unwrap();
    let mut text = String::new();
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    let (len, rest) = text.split_once(' ').unwrap();
    assert_eq!(len.parse::<usize>().unwrap(), rest.len(), "{text}");
    assert!(
        rest.starts_with("<85>1 ") && rest.contains("seq=\"5\""),
        "{text}"
    );
}

/// A mirror whose last entry is not the store's (an edited file, a database
/// restored from a backup) is left exactly as it is and reported, not
/// "repaired" over the evidence; moved aside, the next start writes the
/// whole chain to a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_that_disagrees_with_the_store_is_left_alone_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("sqlite://{}/g.db", dir.path().display()),
        "",
    );
    let gh = Server::start(&cfg).await;
    for i in 0..3 {
        gh.audit().append(entry(i)).await.unwrap();
    }
    gh.stop().await;
    let mirror = dir.path().join("audit.jsonl");
    let edited = std::fs::read_to_string(&mirror)
        .unwrap()
        .replace("\"target\":\"10.2.0.0/16\"", "\"target\":\"10.9.0.0/16\"");
    assert!(edited.contains("10.9.0.0/16"));
    std::fs::write(&mirror, &edited).unwrap();
    let gh = Server::start(&cfg).await;
    let admin = admin_token(&gh);
    let mut report = Value::Null;
    for _ in 0..50 {
        let (_, v) = gh.api("GET", "/api/v1/status", Some(&admin), None).await;
        report = v["audit"]["mirror"].clone();
        if report["behind"] == -1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(report["behind"], -1, "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("disagrees with the store"),
        "{report}"
    );
    gh.audit().append(entry(9)).await.unwrap();
    assert_eq!(std::fs::read_to_string(&mirror).unwrap(), edited);
    gh.stop().await;
    std::fs::rename(&mirror, dir.path().join("evidence.jsonl")).unwrap();
    let gh = Server::start(&cfg).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            let read = gatehouse::audit::log::read_jsonl(std::slice::from_ref(&mirror))
                .unwrap_or_default();
            read.len() == 4 && gatehouse::audit::chain::verify(read, &[], None).ok
        })
        .await,
        "a new mirror holds the whole chain"
    );
    drop(gh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_rotates_and_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("sqlite://{}/g.db", dir.path().display()),
        "jsonl_max_bytes = 4096\njsonl_keep = 50",
    );
    let gh = Server::start(&cfg).await;
    for i in 0..40 {
        gh.audit().append(entry(i)).await.unwrap();
    }
    assert!(dir.path().join("audit.jsonl.1").exists());
    assert!(
        dir.path().join("audit.jsonl.3").exists(),
        "rotated more than twice"
    );
    let jsonl = dir.path().join("audit.jsonl");
    let (code, out) = verify_cli(&cfg, dir.path(), &["--file", jsonl.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 40 entries"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_pages_filters_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let gh = Server::start(&config(
        dir.path(),
        &format!("sqlite://{}/g.db", dir.path().display()),
        "",
    ))
    .await;
    let admin = admin_token(&gh);
    for i in 0..12 {
        gh.audit().append(entry(i)).await.unwrap();
    }
    gh.audit()
        .append(NewEntry::new(
            "bob",
            "",
            "session.terminate",
            "x",
            "ok",
            json!({}),
        ))
        .await
        .unwrap();
    let get = |q: String| {
        let url = gh.url(&format!("/api/v1/audit{q}"));
        let admin = admin.clone();
        async move {
            let r = client().get(url).bearer_auth(admin).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = get("?limit=5".into()).await;
    assert_eq!(s, 200);
    let seqs: Vec<i64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![13, 12, 11, 10, 9], "newest first");
    let (_, v) = get(format!("?limit=5&before={}", v["next_before"])).await;
    assert_eq!(v["entries"][0]["seq"], 8);
    let (_, v) = get("?actor=bob".into()).await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    let (_, v) = get("?action=allowlist.add&limit=1000".into()).await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 12);
    let (_, v) = get("?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z".into()).await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 13);
    let (_, v) = get("?until=2000-01-01T00:00:00Z".into()).await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 0);
    for bad in ["?since=yesterday", "?limit=0", "?limit=5000", "?colour=red"] {
        let (s, v) = get(bad.into()).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let r = client()
        .get(gh.url("/api/v1/audit/verify"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["entries"], 13);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("ok: 13 entries, head "));
    let user = {
        let req = MintRequest {
            sub: "eve".into(),
            ttl_secs: 600,
            ..Default::default()
        };
        gh.state
            .local
            .as_ref()
            .unwrap()
            .mint(&req, SystemClock.now())
            .unwrap()
    };
    let r = client()
        .get(gh.url("/api/v1/audit"))
        .bearer_auth(user)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "admins only");
}

#[test]
fn a_large_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut prev: Option<(i64, String)> = None;
    for i in 0..100_000 {
        let e = seal(
            &entry(i),
            prev.as_ref().map(|(s, h)| (*s, h.as_str())),
            "2026-11-23T00:00:00Z".into(),
        );
        use std::io::Write;
        writeln!(out, "{}", serde_json::to_string(&e).unwrap()).unwrap();
        prev = Some((e.seq, e.hash));
    }
    drop(out);
    let cfg = "[server]\npublic_url = \"https://auth.example.com\"\n";
    let (code, text) = verify_cli(cfg, dir.path(), &["--file", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with(&format!("ok: 100000 entries, head {}", prev.unwrap().1)),
        "{text}"
    );
}

/// Two real `gatehouse serve` processes on one PostgreSQL database, 50
/// concurrent admin actions split between them: `gatehouse audit verify` finds
/// one linear chain with every entry.
#[test]
fn two_processes_on_postgres_keep_one_chain() {
    let pg = common::pg::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://auth.example.com\"\n\
             [store]\nurl = \"{}\"\n[local_issuer]\nsigning_key_file = \"k.pem\"\n[admin]\nroles = [\"admin\"]\n\
             [audit]\ncheckpoint_key_file = \"audit.key\"\ncheckpoint_file = \"cp.log\"\ncheckpoint_every = 10\n",
            pg.url
        ),
    )
    .unwrap();
    // Create the shared keys first, so the two processes do not race to.
    let out = Command::new(BIN)
        .args([
            "token",
            "mint",
            "--sub",
            "ops",
            "--roles",
            "admin",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let admin = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::write(
        dir.path().join("audit.key"),
        "a-shared-checkpoint-key-of-32-chars-or-more\n",
    )
    .unwrap();
    let start = || {
        common::spawn_serve(
            &["serve", "--config", cfg.to_str().unwrap()],
            dir.path(),
            &[],
        )
    };
    let (mut a, addr_a) = start();
    let (mut b, addr_b) = start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let statuses: Vec<u16> = rt.block_on(async {
        let mut tasks = vec![];
        for i in 0..50 {
            let addr = if i % 2 == 0 { addr_a.clone() } else { addr_b.clone() };
            let admin = admin.clone();
            tasks.push(tokio::spawn(async move {
                client()
                    .post(format!("http://{addr}/api/v1/bans"))
                    .bearer_auth(admin)
                    .json(&json!({"kind": "ip", "value": format!("198.51.100.{i}"), "duration": "1h"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        let mut out = vec![];
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for c in [&mut a, &mut b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let out = Command::new(BIN)
        .args(["audit", "verify", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // Two server.start entries, then an intent and an outcome for each action.
    assert!(text.starts_with("ok: 102 entries"), "{text}");
}

/// A small tmpfs mounted for one test and unmounted after it.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None where mounting is not permitted (not root, no CAP_SYS_ADMIN).
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    /// Fills it up to `free` bytes: returns the filler file.
    fn fill(&self, free: u64) -> PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = [0u8; 1024];
        while f.write_all(&chunk).and_then(|_| f.sync_data()).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(free)).unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// The audit mirror's disk is full (a 128 KiB tmpfs) while 50 admin actions
/// run, and the process is killed with SIGKILL among them. After it: the
/// chain in the store verifies and holds both entries of every acknowledged
/// action; the mirror has no torn line; a restart on the still-full disk
/// reports how far the mirror is behind (status and metric); once there is
/// space it catches up by itself and verifies as a whole copy of the chain,
/// checkpoints included; a mirror that lost its last entries and ends in
/// half a line (a crash) is repaired at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mirror_disk_and_sigkill_lose_no_acknowledged_action() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "128k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    };
    let d = dir.path().display();
    let cfg = dir.path().join("g.toml");
    let cfg_text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://auth.example.com\"\n\
         [store]\nurl = \"sqlite://{d}/g.db\"\n[local_issuer]\nsigning_key_file = \"{d}/k.pem\"\n\
         [admin]\nroles = [\"admin\"]\n\
         [audit]\njsonl_file = \"{d}/disk/audit.jsonl\"\ncheckpoint_key_file = \"{d}/audit.key\"\n\
         checkpoint_file = \"{d}/disk/cp.log\"\ncheckpoint_every = 5\n"
    );
    std::fs::write(&cfg, &cfg_text).unwrap();
    let c = cfg.to_str().unwrap();
    let out = Command::new(BIN)
        .args([
            "token", "mint", "--sub", "ops", "--roles", "admin", "--config", c,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let admin = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mirror = dir.path().join("disk/audit.jsonl");
    let ban = |addr: &str, i: usize| {
        client()
            .post(format!("http://{addr}/api/v1/bans"))
            .bearer_auth(&admin)
            .json(&json!({"kind": "ip", "value": format!("198.51.100.{i}"), "duration": "1h"}))
            .send()
    };

    let (gh, addr) = spawn_serve(&["serve", "--config", c], dir.path(), &[]);
    let mut gh = Reaped(gh);
    for i in 0..5 {
        assert_eq!(ban(&addr, i).await.unwrap().status(), 200);
    }
    // 8 KiB left: a few more entries fit, then every write fails part-way.
    let filler = disk.fill(8 * 1024);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 10..60 {
        let (tx, r) = (tx.clone(), ban(&addr, i));
        tokio::spawn(async move {
            let ok = matches!(r.await, Ok(r) if r.status() == 200);
            let _ = tx.send((i, ok));
        });
    }
    drop(tx);
    let mut acknowledged = vec![];
    let mut killed = false;
    while let Some((i, ok)) = rx.recv().await {
        if ok {
            acknowledged.push(i);
        }
        if acknowledged.len() == 25 && !killed {
            gh.kill(); // SIGKILL
            killed = true;
        }
    }
    assert!(killed, "only {} actions acknowledged", acknowledged.len());

    // The chain in the store: whole, and every acknowledged action in it.
    let (code, text) = verify_cli(&cfg_text, dir.path(), &[]);
    assert_eq!(code, 0, "{text}");
    let store = gatehouse::store::Store::connect(&format!("sqlite://{d}/g.db"))
        .await
        .unwrap();
    let entries: Vec<Entry> = store
        .audit_entries()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for i in &acknowledged {
        let target = format!("ip:198.51.100.{i}");
        for result in ["requested", "ok"] {
            assert!(
                entries
                    .iter()
                    .any(|e| e.action == "ban.add" && e.target == target && e.result == result),
                "acknowledged ban of {target} has no `{result}` entry"
            );
        }
    }
    let stored = entries.len();
    drop(store);
    let lines_now = || {
        let text = std::fs::read_to_string(&mirror).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<Entry>(l).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        lines_now().len() < stored,
        "the full disk should have cost the mirror entries"
    );

    // Restart on the still-full disk: the gap is reported, no torn line.
    let (gh, addr) = spawn_serve(&["serve", "--config", c], dir.path(), &[]);
    let mut gh = Reaped(gh);
    let (seen, state) =
        until_mirror(&addr, &admin, 10, |m| m["behind"].as_i64().unwrap_or(0) > 0).await;
    assert!(seen, "{state}");
    assert!(
        state["error"].as_str().unwrap().contains("No space left"),
        "{state}"
    );
    let metrics = text_of(format!("http://{addr}/metrics")).await;
    let behind = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gatehouse_audit_mirror_behind "))
        .unwrap();
    assert!(behind.parse::<i64>().unwrap() > 0, "{behind}");
    let raw = std::fs::read(&mirror).unwrap();
    assert_eq!(
        raw.last(),
        Some(&b'\n'),
        "a torn line is left in the mirror"
    );
    lines_now();

    // Space again: the mirror catches up by itself (the background round).
    std::fs::remove_file(&filler).unwrap();
    let (seen, state) = until_mirror(&addr, &admin, 15, caught_up).await;
    assert!(seen, "{state}");
    let (code, text) = verify_cli(&cfg_text, dir.path(), &["--file", mirror.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(lines_now().len(), stored + 1, "the chain and server.start");

    // A crash that lost the mirror's last three entries mid-write: repaired at start.
    gh.kill();
    let text = std::fs::read_to_string(&mirror).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    let cut = kept[..kept.len() - 3].join("\n") + "\n" + &kept[kept.len() - 3][..40];
    std::fs::write(&mirror, cut).unwrap();
    let (gh, addr) = spawn_serve(&["serve", "--config", c], dir.path(), &[]);
    let mut gh = Reaped(gh);
    let (seen, state) = until_mirror(&addr, &admin, 10, caught_up).await;
    assert!(seen, "{state}");
    let (code, text) = verify_cli(&cfg_text, dir.path(), &["--file", mirror.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = verify_cli(&cfg_text, dir.path(), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with(&format!("ok: {} entries", stored + 2)),
        "{text}"
    );
    gh.kill();
}

fn caught_up(m: &Value) -> bool {
    m["behind"] == 0 && m["error"].is_null()
}

/// Polls the status overview's `audit.mirror` until `want` holds or `secs`
/// pass: (held, the last state seen).
async fn until_mirror(
    addr: &str,
    admin: &str,
    secs: u64,
    want: fn(&Value) -> bool,
) -> (bool, Value) {
    let t = std::time::Instant::now();
    loop {
        let r = client()
            .get(format!("http://{addr}/api/v1/status"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let m = v["audit"]["mirror"].clone();
        if want(&m) || t.elapsed() > Duration::from_secs(secs) {
            return (want(&m), m);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
