//! The audit log, measured: appends through the store (SQLite file, one
//! transaction each, head row locked) and verification of an in-memory chain.
//! Entries per second = 1 / time per append, and 10,000 / time per verify.
//! Run: `cargo bench --bench audit`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse::audit::chain::{self, seal, verify, Entry};
use gatehouse::audit::NewEntry;
use serde_json::json;

fn entry(i: u64) -> NewEntry {
    NewEntry::new(
        "alice",
        "192.0.2.1",
        "allowlist.add",
        &format!("10.{}.0.0/16", i % 256),
        "ok",
        json!({"i": i, "description": "office network"}),
    )
}

fn chain(n: u64) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
        let e = seal(&entry(i), prev, "2026-11-23T00:00:00Z".into());
        out.push(e);
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit");
    let entries = chain(10_000);
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("verify (per 10,000 entries)", |b| {
        b.iter(|| {
            let r = verify(entries.iter().cloned().map(Ok), &[], None);
            assert!(r.ok);
        })
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        let s = gatehouse::store::Store::connect(&format!(
            "sqlite://{}/bench.db",
            dir.path().display()
        ))
        .await
        .unwrap();
        s.migrate().await.unwrap();
        s
    });
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("append (SQLite file, one transaction)", |b| {
        b.iter(|| {
            i += 1;
            let n = entry(i);
            rt.block_on(store.append_audit(|prev| {
                let e = chain::seal(&n, prev, "2026-11-23T00:00:00Z".into());
                let details = chain::canonical_json(&e.details);
                (e, details)
            }))
            .unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
