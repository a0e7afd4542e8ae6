//! Prometheus text-format metrics with lock-free hot-path updates.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

/// A counter family keyed by static label values: no allocation and no lock on
/// an increment. Label sets live in a fixed table of slots, found by hashing
/// the label strings' addresses (a call site passes the same literals every
/// time) and claimed once; two equal label sets at different addresses get two
/// slots, merged when read. Beyond [`SLOTS`] label sets, the rest share a
/// locked map.
#[derive(Debug)]
pub struct StaticCounter<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    slots: [OnceLock<Slot<N>>; SLOTS],
    overflow: RwLock<BTreeMap<[&'static str; N], u64>>,
}

#[derive(Debug)]
struct Slot<const N: usize> {
    key: [&'static str; N],
    count: AtomicU64,
}

/// Slots of a [`StaticCounter`] (a power of two); a label set looks at
/// [`PROBES`] of them.
const SLOTS: usize = 64;
const PROBES: usize = 8;

/// The same label strings: by address and length first (what a call site's
/// literals give), by content otherwise.
fn same_labels<const N: usize>(a: &[&'static str; N], b: &[&'static str; N]) -> bool {
    a.iter().zip(b).all(|(x, y)| std::ptr::eq(*x, *y) || x == y)
}

impl<const N: usize> StaticCounter<N> {
    pub const fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        StaticCounter {
            name,
            help,
            labels,
            slots: [const { OnceLock::new() }; SLOTS],
            overflow: RwLock::new(BTreeMap::new()),
        }
    }

    fn home(key: &[&'static str; N]) -> usize {
        let h = key.iter().fold(0u64, |h, s| {
            (h ^ (s.as_ptr() as usize as u64) ^ (s.len() as u64))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        });
        (h >> 32) as usize
    }

    pub fn inc(&self, key: [&'static str; N]) {
        let home = Self::home(&key);
        for i in 0..PROBES {
            let cell = &self.slots[(home + i) % SLOTS];
            let slot = match cell.get() {
                Some(slot) => slot,
                None => cell.get_or_init(|| Slot {
                    key,
                    count: AtomicU64::new(0),
                }),
            };
            if same_labels(&slot.key, &key) {
                slot.count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut map = self.overflow.write().unwrap_or_else(|e| e.into_inner());
        *map.entry(key).or_insert(0) += 1;
    }

    /// Every label set with its count, equal label sets merged, in order.
    fn values(&self) -> BTreeMap<[&'static str; N], u64> {
        let mut all = self
            .overflow
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for slot in self.slots.iter().filter_map(OnceLock::get) {
            *all.entry(slot.key).or_insert(0) += slot.count.load(Ordering::Relaxed);
        }
        all
    }

    /// The total over every label set whose `index`-th label is `value`.
    pub fn sum_where(&self, index: usize, value: &str) -> u64 {
        self.values()
            .iter()
            .filter(|(k, _)| k.get(index) == Some(&value))
            .map(|(_, c)| c)
            .sum()
    }

    pub fn get(&self, key: [&'static str; N]) -> u64 {
        self.values().get(&key).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        for (k, v) in self.values() {
            let _ = writeln!(
                out,
                "{}{{{}}} {}",
                self.name,
                labels(&self.labels, k.iter().copied()),
                v
            );
        }
    }
}

/// A counter family keyed by runtime label values (for rare events only).
#[derive(Debug)]
pub struct DynCounter {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: RwLock<BTreeMap<Vec<String>, u64>>,
}

impl DynCounter {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        DynCounter {
            name,
            help,
            labels,
            values: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn inc(&self, key: &[&str]) {
        let mut map = self.values.write().unwrap_or_else(|e| e.into_inner());
        *map.entry(key.iter().map(|s| s.to_string()).collect())
            .or_insert(0) += 1;
    }

    pub fn get(&self, key: &[&str]) -> u64 {
        let map = self.values.read().unwrap_or_else(|e| e.into_inner());
        let k: Vec<String> = key.iter().map(|s| s.to_string()).collect();
        map.get(&k).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        let map = self.values.read().unwrap_or_else(|e| e.into_inner());
        for (k, v) in map.iter() {
            let _ = writeln!(
                out,
                "{}{{{}}} {}",
                self.name,
                labels(self.labels, k.iter().map(String::as_str)),
                v
            );
        }
    }
}

fn labels<'a>(names: &[&str], values: impl Iterator<Item = &'a str>) -> String {
    let mut s = String::new();
    for (i, (n, v)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{n}=\"{}\"", escape(v));
    }
    s
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

const BUCKETS: [f64; 12] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0,
];

/// [`BUCKETS`] in nanoseconds, for observing without floating point.
const BUCKETS_NS: [u64; BUCKETS.len()] = {
    let mut ns = [0; BUCKETS.len()];
    let mut i = 0;
    while i < ns.len() {
        ns[i] = (BUCKETS[i] * 1e9 + 0.5) as u64;
        i += 1;
    }
    ns
};

/// A latency histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub const fn new(name: &'static str, help: &'static str) -> Self {
        Histogram {
            name,
            help,
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // Most observations fall in the first buckets: a forward search.
        if let Some(i) = BUCKETS_NS.iter().position(|&b| ns <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(self.buckets.iter()) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{}_bucket{{le=\"{b}\"}} {cumulative}", self.name);
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{}_bucket{{le=\"+Inf\"}} {count}", self.name);
        let _ = writeln!(
            out,
            "{}_sum {}",
            self.name,
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{}_count {count}", self.name);
    }
}

/// Every metric gatehouse exports.
#[derive(Debug)]
pub struct Metrics {
    pub decisions: StaticCounter<3>,
    pub decision_duration: Histogram,
    pub auth_failures: StaticCounter<1>,
    pub jwks_refreshes: DynCounter,
    pub token_cache_hits: AtomicU64,
    pub token_cache_misses: AtomicU64,
    pub audit_entries: DynCounter,
    /// Bans by kind (ip, user) and by whom (regulation, admin).
    pub bans: DynCounter,
    /// Audit chain verifications by result (ok, broken).
    pub audit_verifications: DynCounter,
    /// Entries in the chain that the JSON-lines mirror lacks (-1: it
    /// disagrees with the store, or its state is unknown).
    pub audit_mirror_behind: std::sync::atomic::AtomicI64,
    /// Notifications by channel and result (ok, failed after retries, dropped).
    pub notifications: DynCounter,
    /// Set when /metrics is rendered (from the session table).
    pub active_sessions: AtomicU64,
    pub connections: AtomicU64,
    /// Connections that left the decision fast path for the general server.
    pub connections_general: AtomicU64,
    /// Admin socket events not delivered because the socket read too slowly.
    pub ws_events_dropped: AtomicU64,
    /// Admin sockets refused for the per-user or total limit.
    pub ws_refused: AtomicU64,
    /// Admin sockets open now.
    pub ws_open: AtomicU64,
    /// Admin sockets closed because one message could not be written in
    /// `admin.live.send_timeout` (a reader that stopped reading).
    pub ws_closed_slow: AtomicU64,
    /// Admin sockets closed after `admin.live.idle_timeout` of silence.
    pub ws_closed_idle: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            decisions: StaticCounter::new(
                "gatehouse_decisions_total",
                "Decisions by endpoint, result and reason.",
                ["endpoint", "result", "reason"],
            ),
            decision_duration: Histogram::new(
                "gatehouse_decision_duration_seconds",
                "Time from request to verdict on the decision endpoints.",
            ),
            auth_failures: StaticCounter::new(
                "gatehouse_auth_failures_total",
                "Presented credentials that were refused, by reason.",
                ["reason"],
            ),
            notifications: DynCounter::new(
                "gatehouse_notifications_total",
                "Notifications by channel (webhook, telegram, smtp) and result (ok, failed, dropped).",
                &["channel", "result"],
            ),
            jwks_refreshes: DynCounter::new(
                "gatehouse_jwks_refreshes_total",
                "JWKS fetches by issuer, trigger and result.",
                &["issuer", "trigger", "result"],
            ),
            token_cache_hits: AtomicU64::new(0),
            token_cache_misses: AtomicU64::new(0),
            audit_entries: DynCounter::new(
                "gatehouse_audit_entries_total",
                "Audit entries appended by this process, by action.",
                &["action"],
            ),
            bans: DynCounter::new(
                "gatehouse_bans_total",
                "Bans by kind (ip, user) and by whom (regulation: repeated refused credentials; admin).",
                &["kind", "by"],
            ),
            audit_verifications: DynCounter::new(
                "gatehouse_audit_verifications_total",
                "Verifications of the audit chain by result (ok, broken).",
                &["result"],
            ),
            audit_mirror_behind: std::sync::atomic::AtomicI64::new(0),
            active_sessions: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            connections_general: AtomicU64::new(0),
            ws_events_dropped: AtomicU64::new(0),
            ws_refused: AtomicU64::new(0),
            ws_open: AtomicU64::new(0),
            ws_closed_slow: AtomicU64::new(0),
            ws_closed_idle: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.decisions.render(&mut out);
        self.decision_duration.render(&mut out);
        self.auth_failures.render(&mut out);
        self.jwks_refreshes.render(&mut out);
        self.notifications.render(&mut out);
        self.audit_entries.render(&mut out);
        self.audit_verifications.render(&mut out);
        self.bans.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP gatehouse_active_sessions Browser sessions alive now.\n# TYPE gatehouse_active_sessions gauge\ngatehouse_active_sessions {}",
            self.active_sessions.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gatehouse_audit_mirror_behind Audit entries the JSON-lines mirror lacks (-1: it disagrees with the store).\n# TYPE gatehouse_audit_mirror_behind gauge\ngatehouse_audit_mirror_behind {}",
            self.audit_mirror_behind.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gatehouse_ws_open Admin sockets open now.\n# TYPE gatehouse_ws_open gauge\ngatehouse_ws_open {}",
            self.ws_open.load(Ordering::Relaxed)
        );
        for (name, help, v) in [
            (
                "gatehouse_token_cache_hits_total",
                "Bearer tokens answered from the validated-token cache.",
                &self.token_cache_hits,
            ),
            (
                "gatehouse_token_cache_misses_total",
                "Bearer tokens that needed full verification.",
                &self.token_cache_misses,
            ),
            (
                "gatehouse_connections_total",
                "Connections accepted.",
                &self.connections,
            ),
            (
                "gatehouse_connections_general_total",
                "Connections handed from the decision fast path to the general HTTP server (another endpoint, or an unusual request).",
                &self.connections_general,
            ),
            (
                "gatehouse_ws_events_dropped_total",
                "Admin socket events dropped because the socket read too slowly (the server never waits for one).",
                &self.ws_events_dropped,
            ),
            (
                "gatehouse_ws_refused_total",
                "Admin sockets refused for the per-user or total limit.",
                &self.ws_refused,
            ),
            (
                "gatehouse_ws_closed_slow_total",
                "Admin sockets closed because a message could not be written within admin.live.send_timeout.",
                &self.ws_closed_slow,
            ),
            (
                "gatehouse_ws_closed_idle_total",
                "Admin sockets closed after admin.live.idle_timeout without a message or pong.",
                &self.ws_closed_idle,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.decisions.inc(["forward", "allow", "authorized"]);
        m.decisions.inc(["forward", "allow", "authorized"]);
        m.decision_duration.observe(Duration::from_micros(30));
        m.jwks_refreshes.inc(&["https://idp/\"x", "startup", "ok"]);
        let t = m.render();
        assert!(t.contains(
            "gatehouse_decisions_total{endpoint=\"forward\",result=\"allow\",reason=\"authorized\"} 2"
        ));
        assert!(t.contains("gatehouse_decision_duration_seconds_bucket{le=\"0.00005\"} 1"));
        assert!(t.contains("gatehouse_decision_duration_seconds_count 1"));
        assert!(t.contains("issuer=\"https://idp/\\\"x\""));
    }

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds() {
        let h = Histogram::new("h_seconds", "h");
        for ns in [25_000, 25_001, 1_000_000_000, 1_000_000_001] {
            h.observe(Duration::from_nanos(ns));
        }
        h.observe(Duration::MAX);
        let mut t = String::new();
        h.render(&mut t);
        for line in [
            "h_seconds_bucket{le=\"0.000025\"} 1",
            "h_seconds_bucket{le=\"0.00005\"} 2",
            "h_seconds_bucket{le=\"0.25\"} 2",
            "h_seconds_bucket{le=\"1\"} 3",
            "h_seconds_bucket{le=\"+Inf\"} 5",
            "h_seconds_count 5",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} in\n{t}");
        }
        assert_eq!(BUCKETS_NS[0], 25_000);
        assert_eq!(BUCKETS_NS[BUCKETS.len() - 1], 1_000_000_000);
    }

    /// A `&'static str` equal to `s` at another address.
    fn elsewhere(s: &str) -> &'static str {
        Box::leak(s.to_string().into_boxed_str())
    }

    #[test]
    fn equal_labels_from_anywhere_count_as_one_series() {
        let c = StaticCounter::new("t_total", "t", ["a", "b"]);
        c.inc(["x", "y"]);
        c.inc([elsewhere("x"), "y"]);
        c.inc(["x", elsewhere("y")]);
        c.inc(["x", "z"]);
        assert_eq!(c.get(["x", "y"]), 3);
        assert_eq!(c.get([elsewhere("x"), elsewhere("y")]), 3);
        assert_eq!(c.get(["x", "z"]), 1);
        assert_eq!(c.get(["q", "z"]), 0);
        assert_eq!(c.sum_where(0, "x"), 4);
        let mut out = String::new();
        c.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_total t\n# TYPE t_total counter\nt_total{a=\"x\",b=\"y\"} 3\nt_total{a=\"x\",b=\"z\"} 1\n"
        );
    }

    #[test]
    fn more_label_sets_than_slots_are_all_counted() {
        let c = StaticCounter::new("t_total", "t", ["n"]);
        let names: Vec<&'static str> = (0..3 * SLOTS)
            .map(|i| elsewhere(&format!("{i:04}")))
            .collect();
        for (i, n) in names.iter().enumerate() {
            for _ in 0..=i % 3 {
                c.inc([n]);
            }
        }
        // Threads racing for the same slots lose nothing.
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for n in &names {
                        c.inc([n]);
                    }
                });
            }
        });
        for (i, n) in names.iter().enumerate() {
            assert_eq!(c.get([n]), (i % 3 + 1 + 4) as u64, "{n}");
        }
        let mut out = String::new();
        c.render(&mut out);
        assert_eq!(out.lines().count(), 2 + 3 * SLOTS);
        assert!(out.contains("t_total{n=\"0000\"} 5\n"));
    }
}
