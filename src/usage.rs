//! Usage counting on the hot path: decisions by minute, user, host, rule,
//! result and reason, counted in memory (a short lock, and a hash unless the
//! key is the one counted last; no allocation once a key has been seen) and
//! written to the store in batches.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Mutex;

use crate::store::UsageRow;

/// Most distinct keys held between two flushes; beyond it new hosts and users
/// are counted under "(other)" so that a flood of names cannot grow memory.
pub const MAX_KEYS: usize = 20_000;
const OTHER: &str = "(other)";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    minute: i64,
    user: String,
    host: String,
    rule: i64,
    result: &'static str,
    reason: &'static str,
}

/// The map's keys are already hashes (keyed, see [`Usage::hash_of`]): used as they are.
#[derive(Debug, Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// Every key counted since the last drain, with its count.
    rows: Vec<(Key, i64)>,
    /// Positions in `rows` by the key's hash.
    by_hash: HashMap<u64, Vec<u32>, BuildHasherDefault<PreHashed>>,
    /// The position of the key counted last: a run of decisions with one key
    /// (one user on one host, as most traffic is) is counted without hashing.
    last: Option<usize>,
    /// Rows whose flush failed, to be written with the next batch.
    pending: Vec<UsageRow>,
}

/// A decision's key as `record` is given it (borrowed; [`Key`] owns its names).
#[derive(Debug, Clone, Copy, Hash)]
struct KeyRef<'a> {
    minute: i64,
    user: &'a str,
    host: &'a str,
    rule: i64,
    result: &'a str,
    reason: &'a str,
}

impl Key {
    fn is(&self, k: &KeyRef<'_>) -> bool {
        self.minute == k.minute
            && self.rule == k.rule
            && self.result == k.result
            && self.reason == k.reason
            && self.user == k.user
            && self.host == k.host
    }
}

/// The in-memory counters.
#[derive(Debug, Default)]
pub struct Usage {
    counts: Mutex<Counts>,
    /// A per-process random key, so nobody can choose names that share a hash.
    keys: foldhash::quality::RandomState,
}

impl Usage {
    fn hash_of(&self, k: &KeyRef<'_>) -> u64 {
        // foldhash: keyed per process like SipHash, a fraction of its cost.
        self.keys.hash_one(k)
    }

    /// Counts one decision at `at` (Unix seconds).
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        at: i64,
        user: Option<&str>,
        host: &str,
        rule: Option<usize>,
        result: &'static str,
        reason: &'static str,
    ) {
        let minute = at - at.rem_euclid(60);
        let user = user.unwrap_or("");
        let rule = rule.map_or(-1, |r| r as i64);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *c;
        let (user, host) = if c.rows.len() >= MAX_KEYS {
            (OTHER, OTHER)
        } else {
            (user, host)
        };
        let key = KeyRef {
            minute,
            user,
            host,
            rule,
            result,
            reason,
        };
        if let Some((k, n)) = c.last.and_then(|i| c.rows.get_mut(i)) {
            if k.is(&key) {
                *n += 1;
                return;
            }
        }
        let bucket = c.by_hash.entry(self.hash_of(&key)).or_default();
        for &i in bucket.iter() {
            let (k, n) = &mut c.rows[i as usize];
            if k.is(&key) {
                *n += 1;
                c.last = Some(i as usize);
                return;
            }
        }
        // MAX_KEYS (and one "(other)" key per minute and outcome) keep this far below u32::MAX.
        bucket.push(c.rows.len() as u32);
        c.last = Some(c.rows.len());
        c.rows.push((
            Key {
                minute,
                user: user.to_string(),
                host: host.to_string(),
                rule,
                result,
                reason,
            },
            1,
        ));
    }

    /// Takes every count so far (for a flush), leaving the counters empty.
    pub fn drain(&self) -> Vec<UsageRow> {
        let taken = {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *c)
        };
        let mut rows = taken.pending;
        rows.extend(taken.rows.into_iter().map(|(k, n)| UsageRow {
            bucket: k.minute,
            user: k.user,
            host: k.host,
            rule: k.rule,
            result: k.result.to_string(),
            reason: k.reason.to_string(),
            count: n,
        }));
        rows
    }

    /// Puts counts back after a failed flush, so none are lost (the next
    /// drain returns them again).
    pub fn restore(&self, rows: Vec<UsageRow>) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.pending.extend(rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_drains() {
        let u = Usage::default();
        for _ in 0..3 {
            u.record(120, Some("alice"), "app", Some(0), "allow", "authorized");
        }
        u.record(121, Some("alice"), "app", Some(0), "allow", "authorized");
        u.record(181, None, "app", None, "unauthenticated", "no_credentials");
        let mut rows = u.drain();
        rows.sort_by_key(|r| r.bucket);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].bucket, rows[0].count, rows[0].user.as_str()),
            (120, 4, "alice")
        );
        assert_eq!(
            (rows[1].bucket, rows[1].rule, rows[1].user.as_str()),
            (180, -1, "")
        );
        assert!(u.drain().is_empty(), "drained");
        u.restore(rows);
        let total: i64 = u.drain().iter().map(|r| r.count).sum();
        assert_eq!(total, 5, "restored after a failed flush");
    }

    #[test]
    fn the_last_key_shortcut_counts_each_key_apart() {
        let u = Usage::default();
        // Runs of one key, keys that differ in one field each, and returns to
        // an earlier key after others.
        type K = (
            i64,
            Option<&'static str>,
            &'static str,
            Option<usize>,
            &'static str,
            &'static str,
        );
        let keys: [K; 7] = [
            (120, Some("alice"), "app", Some(0), "allow", "authorized"),
            (180, Some("alice"), "app", Some(0), "allow", "authorized"),
            (120, Some("bob"), "app", Some(0), "allow", "authorized"),
            (120, Some("alice"), "ops", Some(0), "allow", "authorized"),
            (120, Some("alice"), "app", Some(1), "allow", "authorized"),
            (
                120,
                Some("alice"),
                "app",
                Some(0),
                "forbidden",
                "authorized",
            ),
            (120, Some("alice"), "app", Some(0), "allow", "default_deny"),
        ];
        for round in 1..=3 {
            for (i, &(at, user, host, rule, result, reason)) in keys.iter().enumerate() {
                for _ in 0..(i + round) {
                    u.record(at, user, host, rule, result, reason);
                }
            }
        }
        let rows = u.drain();
        assert_eq!(rows.len(), keys.len());
        for (i, &(at, user, host, rule, result, reason)) in keys.iter().enumerate() {
            let row = rows
                .iter()
                .find(|r| {
                    r.bucket == at - at % 60
                        && r.user == user.unwrap_or("")
                        && r.host == host
                        && r.rule == rule.map_or(-1, |r| r as i64)
                        && r.result == result
                        && r.reason == reason
                })
                .expect("a row for every key");
            assert_eq!(row.count, 3 * i as i64 + 6, "key {i}");
        }
        // After a drain nothing is remembered: the same key starts a new row.
        u.record(120, Some("alice"), "app", Some(0), "allow", "default_deny");
        let rows = u.drain();
        assert_eq!((rows.len(), rows[0].count), (1, 1));
    }

    #[test]
    fn bounded() {
        let u = Usage::default();
        for i in 0..(MAX_KEYS + 100) {
            u.record(
                0,
                None,
                &format!("h{i}.example"),
                None,
                "forbidden",
                "default_deny",
            );
        }
        let rows = u.drain();
        assert!(rows.len() <= MAX_KEYS + 1);
        assert_eq!(
            rows.iter().map(|r| r.count).sum::<i64>(),
            (MAX_KEYS + 100) as i64
        );
        assert!(rows.iter().any(|r| r.host == OTHER));
    }
}
