//! Brute-force regulation: refused credentials are counted per client address
//! (and per verified user) in memory; `max_failures` within `window` ban the
//! address or user for `ban_time`. Bans live in an immutable snapshot that the
//! decision path reads without locking; the store keeps them across restarts
//! and processes, and the companion API lists and lifts them.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::config::RegulationConfig;
use crate::snapshot::{Emptiness, Sparse};
use crate::store::Ban;

/// Most addresses and users whose recent failures are remembered at once.
const MAX_TRACKED: usize = 100_000;

/// What a ban applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BanKey {
    Ip(IpAddr),
    User(String),
}

impl BanKey {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ip(_) => "ip",
            Self::User(_) => "user",
        }
    }
    pub fn value(&self) -> String {
        match self {
            Self::Ip(ip) => ip.to_string(),
            Self::User(u) => u.clone(),
        }
    }
    /// From a stored ban; `None` for anything unreadable.
    pub fn of(b: &Ban) -> Option<BanKey> {
        match b.kind.as_str() {
            "ip" => b
                .value
                .parse::<IpAddr>()
                .ok()
                .map(|ip| BanKey::Ip(ip.to_canonical())),
            "user" => Some(BanKey::User(b.value.clone())),
            _ => None,
        }
    }
}

/// Bans in force, by key, with their end.
#[derive(Debug, Default)]
pub struct BanSnapshot {
    until: HashMap<BanKey, i64>,
}

impl BanSnapshot {
    pub fn from_bans(bans: &[Ban]) -> Self {
        let mut until = HashMap::new();
        for b in bans {
            if let Some(k) = BanKey::of(b) {
                let e = until.entry(k).or_insert(b.expires_at);
                *e = (*e).max(b.expires_at);
            }
        }
        BanSnapshot { until }
    }
    /// Bans in force at `now`.
    pub fn in_force(&self, now: i64) -> usize {
        self.until.values().filter(|u| now < **u).count()
    }
    fn banned(&self, k: &BanKey, now: i64) -> bool {
        self.until.get(k).is_some_and(|u| now < *u)
    }
}

impl Emptiness for BanSnapshot {
    fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

/// The regulator shared by the decision endpoints, the login flow and the API.
#[derive(Debug)]
pub struct Regulation {
    cfg: RegulationConfig,
    failures: Mutex<HashMap<BanKey, VecDeque<i64>>>,
    /// When the counters were last swept of stale entries (a full map is
    /// swept at most once a second, not once per new address).
    last_sweep: std::sync::atomic::AtomicI64,
    bans: Sparse<BanSnapshot>,
}

impl Regulation {
    pub fn new(cfg: RegulationConfig, bans: &[Ban]) -> Self {
        Regulation {
            cfg,
            failures: Mutex::new(HashMap::new()),
            last_sweep: std::sync::atomic::AtomicI64::new(0),
            bans: Sparse::new(BanSnapshot::from_bans(bans)),
        }
    }

    /// The client address is banned (the hot-path check: one plain atomic
    /// read when nothing is banned).
    pub fn ip_banned(&self, ip: IpAddr, now: i64) -> bool {
        self.bans
            .nonempty()
            .is_some_and(|snap| snap.banned(&BanKey::Ip(ip.to_canonical()), now))
    }

    pub fn user_banned(&self, user: &str, now: i64) -> bool {
        self.bans
            .nonempty()
            .is_some_and(|snap| snap.banned(&BanKey::User(user.to_string()), now))
    }

    /// Replaces the bans in force (from the store).
    /// Bans in force at `now`.
    pub fn bans_in_force(&self, now: i64) -> usize {
        self.bans.load().in_force(now)
    }

    pub fn load(&self, bans: &[Ban]) {
        self.bans.store(BanSnapshot::from_bans(bans));
    }

    /// Counts one refused credential. Returns the ban to record when this one
    /// crossed the limit; the snapshot already holds it when this returns.
    pub fn failure(&self, key: BanKey, reason: &str, now: i64) -> Option<Ban> {
        if !self.cfg.enabled || (matches!(key, BanKey::User(_)) && !self.cfg.ban_users) {
            return None;
        }
        let window = self.cfg.window.as_secs() as i64;
        let limit = self.cfg.max_failures as usize;
        let count = {
            let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
                use std::sync::atomic::Ordering::Relaxed;
                if self.last_sweep.swap(now, Relaxed) != now {
                    map.retain(|_, q| q.back().is_some_and(|t| now - t < window));
                }
                if map.len() >= MAX_TRACKED {
                    // Still full of live counters (a flood of addresses): forget
                    // a tenth of them at once rather than grow without bound
                    // (one pass per 10,000 new addresses, not one per address).
                    let mut forget = MAX_TRACKED / 10;
                    map.retain(|_, _| {
                        let keep = forget == 0;
                        forget = forget.saturating_sub(1);
                        keep
                    });
                }
            }
            let q = map.entry(key.clone()).or_default();
            while q.front().is_some_and(|t| now - t >= window) {
                q.pop_front();
            }
            q.push_back(now);
            while q.len() > limit {
                q.pop_front();
            }
            let n = q.len();
            if n >= limit {
                map.remove(&key);
            }
            n
        };
        if count < limit {
            return None;
        }
        let ban = Ban {
            id: 0,
            kind: key.kind().to_string(),
            value: key.value(),
            reason: reason.to_string(),
            failures: count as i64,
            created_at: now,
            expires_at: now + self.cfg.ban_time.as_secs() as i64,
            lifted_at: None,
            lifted_by: None,
        };
        // Effective on the next request, before the store has it.
        self.bans.update(|snap| {
            let mut until = snap.until.clone();
            until.insert(key, ban.expires_at);
            BanSnapshot { until }
        });
        Some(ban)
    }

    /// Forgets the failures counted against a key (after an admin lifts a ban).
    pub fn forgive(&self, key: &BanKey) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reg(max: u32) -> Regulation {
        Regulation::new(
            RegulationConfig {
                enabled: true,
                max_failures: max,
                window: Duration::from_secs(120),
                ban_time: Duration::from_secs(900),
                ban_users: true,
            },
            &[],
        )
    }

    #[test]
    fn a_flood_of_new_addresses_stays_bounded_and_cheap_and_bans_still_work() {
        let r = reg(3);
        // 300,000 addresses, one failure each, all within the window: the
        // counters stay at MAX_TRACKED, each new one costing O(1) (a sweep at
        // most once a second, not one per address).
        let started = std::time::Instant::now();
        for i in 0..300_000u32 {
            let ip = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            assert!(r
                .failure(
                    BanKey::Ip(ip),
                    "bad_signature",
                    1000 + i64::from(i / 100_000)
                )
                .is_none());
        }
        assert!(r.failures.lock().unwrap().len() <= MAX_TRACKED);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a flood must not cost a sweep per address: {:?}",
            started.elapsed()
        );
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(r.failure(BanKey::Ip(ip), "bad_signature", 1003).is_none());
        assert!(r.failure(BanKey::Ip(ip), "bad_signature", 1003).is_none());
        assert!(
            r.failure(BanKey::Ip(ip), "bad_signature", 1003).is_some(),
            "still bans"
        );
        assert!(r.ip_banned(ip, 1004));
    }

    #[test]
    fn bans_after_max_failures_within_window() {
        let r = reg(3);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(r.failure(BanKey::Ip(ip), "bad_signature", 1000).is_none());
        assert!(r.failure(BanKey::Ip(ip), "bad_signature", 1050).is_none());
        // the first one left the window
        assert!(r.failure(BanKey::Ip(ip), "bad_signature", 1121).is_none());
        assert!(!r.ip_banned(ip, 1121));
        let ban = r.failure(BanKey::Ip(ip), "expired", 1130).unwrap();
        assert_eq!(
            (ban.kind.as_str(), ban.value.as_str()),
            ("ip", "203.0.113.9")
        );
        assert_eq!(ban.expires_at, 1130 + 900);
        assert!(r.ip_banned(ip, 1131));
        assert!(
            r.ip_banned("::ffff:203.0.113.9".parse().unwrap(), 1131),
            "IPv4-mapped IPv6 is the same client"
        );
        assert!(!r.ip_banned(ip, 1130 + 900), "the ban ends on time");
        assert!(!r.ip_banned("203.0.113.10".parse().unwrap(), 1131));
    }

    #[test]
    fn users_and_switches() {
        let r = reg(2);
        r.failure(BanKey::User("alice".into()), "revoked", 10);
        assert!(r
            .failure(BanKey::User("alice".into()), "revoked", 11)
            .is_some());
        assert!(r.user_banned("alice", 12));
        assert!(!r.user_banned("bob", 12));
        let mut cfg = reg(1).cfg.clone();
        cfg.ban_users = false;
        let r = Regulation::new(cfg.clone(), &[]);
        assert!(r.failure(BanKey::User("alice".into()), "x", 1).is_none());
        cfg.enabled = false;
        let r = Regulation::new(cfg, &[]);
        assert!(r.failure(BanKey::Ip([1, 2, 3, 4].into()), "x", 1).is_none());
    }

    #[test]
    fn loads_and_lifts_from_the_store() {
        let r = reg(5);
        let ban = Ban {
            id: 1,
            kind: "ip".into(),
            value: "198.51.100.1".into(),
            reason: "x".into(),
            failures: 5,
            created_at: 0,
            expires_at: 100,
            lifted_at: None,
            lifted_by: None,
        };
        r.load(std::slice::from_ref(&ban));
        assert!(r.ip_banned("198.51.100.1".parse().unwrap(), 50));
        r.load(&[]);
        assert!(!r.ip_banned("198.51.100.1".parse().unwrap(), 50));
    }
}
