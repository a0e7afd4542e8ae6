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

/// The decision path's session table rebuilt from the store a page at a time:
/// every live session across page boundaries and nothing else; a reload keeps
/// the entry of a session that did not change (no new allocation), takes the
/// store's newer last-seen time, replaces a changed one and drops an ended one.
async fn table_scenario(url: &str) {
    use gatehouse::identity::session::SessionTable;
    use gatehouse::service::sessions::load_table;
    use gatehouse::store::SessionUpdate;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    let store = Store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    let now = 1_800_000_000;
    let id = |i: usize| format!("{i:064x}");
    for i in 0..1_001 {
        let mut s = session(&id(i), &format!("user{i}"), now - 10, now + 3600);
        s.id_token = Some("sealed-id-token".into());
        store.insert_session(&s).await.unwrap();
    }
    store
        .insert_session(&session(&id(5_000), "old", now - 7200, now - 1))
        .await
        .unwrap();
    let table = SessionTable::default();
    load_table(&store, &table, now).await.unwrap();
    assert_eq!(table.len(), 1_001, "three pages, the expired one left out");
    let first = table.get_by_id(&id(0)).unwrap();
    assert_eq!(first.identity.groups, vec!["admin", "ops/admins"]);
    assert_eq!(first.identity.iat, Some(now - 10));
    assert!(table.get_by_id(&id(1_000)).is_some());

    let update = SessionUpdate {
        groups: vec!["viewer".into()],
        email: None,
        name: None,
        acr: None,
        amr: vec![],
        auth_time: Some(now),
        id_token: None,
        refresh_token: None,
        refresh_at: Some(now + 300),
    };
    assert!(store.update_session(&id(1), &update).await.unwrap());
    assert!(store.terminate_session(&id(2), now, "admin").await.unwrap());
    store.touch_session(&id(0), now + 5).await.unwrap();
    let unchanged = table.get_by_id(&id(3)).unwrap();
    load_table(&store, &table, now).await.unwrap();
    assert_eq!(table.len(), 1_000);
    assert!(table.get_by_id(&id(2)).is_none(), "terminated elsewhere");
    assert!(Arc::ptr_eq(&unchanged, &table.get_by_id(&id(3)).unwrap()));
    let touched = table.get_by_id(&id(0)).unwrap();
    assert!(Arc::ptr_eq(&first, &touched));
    assert_eq!(touched.last_seen.load(Ordering::Relaxed), now + 5);
    let changed = table.get_by_id(&id(1)).unwrap();
    assert_eq!(changed.identity.groups, vec!["viewer"]);
    assert_eq!(changed.refresh_at, Some(now + 300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_table_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    table_scenario(&format!("sqlite://{}", dir.path().join("t.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_table_on_postgres() {
    let pg = Postgres::start();
    table_scenario(&pg.database("gatehouse_table").await).await;
}

/// 10,000 logins in ten rounds, each round's sessions ended 8 days ago, with
/// revocations, bans and allowlist entries run out alike: after each round's
/// purge the tables hold only what is live (they stop growing); what is live
/// is never touched; the audit log is left alone.
async fn retention_scenario(url: &str) {
    use gatehouse::store::Purgeable;
    sqlx::any::install_default_drivers();
    let store = Store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    let clock = gatehouse::clock::ManualClock::new(gatehouse::clock::Clock::now(
        &gatehouse::clock::SystemClock,
    ));
    let now = gatehouse::clock::Clock::now(&*clock);
    let old = now - 8 * 86_400;
    let retention = gatehouse::service::retention::Retention::new(
        store.clone(),
        clock.clone(),
        std::time::Duration::from_secs(7 * 86_400),
    );
    let raw = sqlx::AnyPool::connect(url).await.unwrap();
    for round in 0..10 {
        let mut tx = raw.begin().await.unwrap();
        for i in 0..1000 {
            let id = format!("r{round}s{i}");
            let (created, expires) = if i < 10 {
                (now, now + 3600)
            } else {
                (old - 60, old)
            };
            sqlx::query(
                "INSERT INTO sessions (id, issuer, subject, username, groups, amr, created_at, last_seen, expires_at) \
                 VALUES ($1, 'i', 'u', 'u', '[]', '[]', $2, $2, $3)",
            )
            .bind(id)
            .bind(created)
            .bind(expires)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        for (q, n) in [
            ("INSERT INTO revocations (issuer, kind, value, not_before, created_at, expires_at) VALUES ('i', 'sub', 'u', $1, $1, $1)", 50),
            ("INSERT INTO bans (kind, value, reason, failures, created_at, expires_at) VALUES ('ip', '192.0.2.1', 'r', 1, $1, $1)", 50),
            ("INSERT INTO allowlist (cidr, description, created_by, created_at, expires_at) VALUES ('192.0.2.0/24', '', 't', $1, $1)", 50),
        ] {
            for _ in 0..n {
                sqlx::query(q).bind(old).execute(&mut *tx).await.unwrap();
            }
        }
        tx.commit().await.unwrap();
        let purged = retention.purge().await.unwrap();
        assert_eq!(
            purged,
            vec![
                ("sessions", 990),
                ("revocations", 50),
                ("bans", 50),
                ("allowlist", 50)
            ],
            "round {round}"
        );
        assert_eq!(
            store.count(Purgeable::Sessions).await.unwrap(),
            10 * (round + 1),
            "only the live sessions stay"
        );
        for t in [
            Purgeable::Revocations,
            Purgeable::Bans,
            Purgeable::Allowlist,
        ] {
            assert_eq!(store.count(t).await.unwrap(), 0);
        }
    }
    // Within the retention nothing goes: a session that ended yesterday stays.
    let mut ended = session("yesterday", "u", now - 2 * 86_400, now - 86_400);
    ended.terminated_at = Some(now - 86_400);
    store.insert_session(&ended).await.unwrap();
    assert_eq!(retention.purge().await.unwrap()[0], ("sessions", 0));
    // A big backlog goes in batches of 1000 within one purge.
    let mut tx = raw.begin().await.unwrap();
    for i in 0..2500 {
        sqlx::query(
            "INSERT INTO revocations (issuer, kind, value, not_before, created_at, expires_at) VALUES ('i', 'sid', $1, $2, $2, $2)",
        )
        .bind(format!("s{i}"))
        .bind(old)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(retention.purge().await.unwrap()[1], ("revocations", 2500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    retention_scenario(&format!("sqlite://{}", dir.path().join("r.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_postgres() {
    let pg = Postgres::start();
    retention_scenario(&pg.database("gatehouse_retention").await).await;
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
