//! The store on SQLite and on a real PostgreSQL server: migrations (idempotent,
//! concurrent), sessions and revocations, and `gatehouse migrate`.

use crate::common;

use common::pg::Postgres;
use gatehouse::store::{Backend, Revocation, RevocationKind, SessionRecord, Store};

fn session(id: &str, user: &str, created: i64, expires: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        issuer: "https://sso.example.com/realms/main".into(),
        subject: format!("sub-{user}"),
        username: user.into(),
        groups: vec!["admin".into(), "ops/admins".into()],
        email: Some(format!("{user}@example.com")),
        name: None,
        acr: Some("gold".into()),
        amr: vec!["pwd".into(), "otp".into()],
        auth_time: Some(created),
        sid: Some(format!("sid-{id}")),
        client_addr: Some("203.0.113.9".into()),
        user_agent: Some("Mozilla/5.0 \u{1F600}".into()),
        created_at: created,
        last_seen: created,
        expires_at: expires,
        terminated_at: None,
        terminated_by: None,
        id_token: None,
        refresh_token: None,
        refresh_at: None,
    }
}

async fn live_ids(store: &Store, now: i64, user: Option<&str>) -> Vec<String> {
    store
        .live_sessions(now, user)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect()
}

async fn scenario(url: &str, backend: Backend) {
    let store = Store::connect(url).await.unwrap();
    assert_eq!(store.backend(), backend);
    assert_eq!(
        store.migrate().await.unwrap(),
        7,
        "first run applies every migration"
    );
    assert_eq!(store.migrate().await.unwrap(), 0, "second run is a no-op");
    assert_eq!(
        store.applied_versions().await.unwrap(),
        vec![1, 2, 3, 4, 5, 6, 7]
    );
    store.ping().await.unwrap();

    let now = 1_800_000_000;
    let a1 = session("a1", "alice", now - 10, now + 3600);
    let a2 = session("a2", "alice", now - 5, now + 3600);
    let b1 = session("b1", "bob", now - 1, now + 3600);
    let old = session("old", "alice", now - 7200, now - 1);
    for s in [&a1, &a2, &b1, &old] {
        store.insert_session(s).await.unwrap();
    }
    assert!(store.insert_session(&a1).await.is_err(), "ids are unique");
    assert_eq!(
        store.session("a1").await.unwrap().unwrap(),
        a1,
        "round trip, unicode included"
    );
    assert!(store.session("nope").await.unwrap().is_none());

    let live: Vec<String> = live_ids(&store, now, None).await;
    assert_eq!(
        live,
        vec!["a1", "a2", "b1"],
        "expired sessions are not live"
    );
    let alice: Vec<String> = live_ids(&store, now, Some("alice")).await;
    assert_eq!(alice, vec!["a1", "a2"]);

    store.touch_session("a1", now + 5).await.unwrap();
    store.touch_session("a1", now + 1).await.unwrap(); // never moves backwards
    assert_eq!(
        store.session("a1").await.unwrap().unwrap().last_seen,
        now + 5
    );

    assert!(store.terminate_session("a1", now, "admin").await.unwrap());
    assert!(
        !store.terminate_session("a1", now, "admin").await.unwrap(),
        "already terminated"
    );
    let t = store.session("a1").await.unwrap().unwrap();
    assert_eq!(
        (t.terminated_at, t.terminated_by.as_deref()),
        (Some(now), Some("admin"))
    );

    let ended = store
        .terminate_sessions(now, "admin", Some("alice"))
        .await
        .unwrap();
    assert_eq!(ended, vec!["a2"]);
    let live: Vec<String> = live_ids(&store, now, None).await;
    assert_eq!(live, vec!["b1"]);
    let ended = store.terminate_sessions(now, "admin", None).await.unwrap();
    assert_eq!(ended, vec!["b1"]);
    assert!(store.live_sessions(now, None).await.unwrap().is_empty());

    let r1 = Revocation {
        issuer: "iss".into(),
        kind: RevocationKind::Sid,
        value: "sid-a1".into(),
        not_before: now,
        created_at: now,
        expires_at: now + 300,
    };
    let r2 = Revocation {
        kind: RevocationKind::Sub,
        value: "sub-alice".into(),
        expires_at: now - 1,
        ..r1.clone()
    };
    store.insert_revocation(&r1).await.unwrap();
    store.insert_revocation(&r2).await.unwrap();
    assert_eq!(store.live_revocations(now).await.unwrap(), vec![r1]);

    // Usage over time: minutes summed into slots, denials apart.
    let row = |bucket: i64, result: &str, count: i64| gatehouse::store::UsageRow {
        bucket,
        user: "u".into(),
        host: "h".into(),
        rule: -1,
        result: result.into(),
        reason: "r".into(),
        count,
    };
    store
        .add_usage(&[
            row(6000, "allow", 5),
            row(6060, "forbidden", 2),
            row(6240, "allow", 1),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.usage_series(6000, 120).await.unwrap(),
        vec![(6000, 7, 2), (6240, 1, 0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sub/../g.db").display());
    scenario(&url, Backend::Sqlite).await;
    assert!(
        dir.path().join("g.db").exists(),
        "the database file is created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    let pg = Postgres::start();
    let url = pg.database("gatehouse_test").await;
    scenario(&url, Backend::Postgres).await;

    // Several gatehouse processes starting at once migrate exactly once.
    let url2 = pg.database("gatehouse_race").await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let u = url2.clone();
        tasks.push(tokio::spawn(async move {
            let s = Store::connect(&u).await.unwrap();
            s.migrate().await.unwrap()
        }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += t.await.unwrap();
    }
    assert_eq!(
        applied, 7,
        "each migration applied exactly once among 4 migrators"
    );
}

#[test]
fn migrate_command_applies_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(
        &cfg,
        "[server]\npublic_url = \"https://auth.example.com\"\n[store]\nurl = \"sqlite://state/g.db\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["migrate", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("applied 7 migration(s), now at version 7"),
        "{out}"
    );
    assert!(
        dir.path().join("state/g.db").exists(),
        "relative to the config file"
    );
    let (code, out, _) = run();
    assert_eq!(code, Some(0));
    assert!(out.contains("applied 0 migration(s)"), "{out}");

    // An unreachable PostgreSQL fails with a non-zero exit and no password in the output.
    std::fs::write(
        &cfg,
        "[server]\npublic_url = \"https://auth.example.com\"\n[store]\nurl = \"postgres://u:hunter2@127.0.0.1:1/db\"\n",
    )
    .unwrap();
    let (code, out, err) = run();
    assert_ne!(code, Some(0));
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );
}
