//! Appending to the audit chain and keeping its evidence outside the database:
//! every entry goes to the store (one linear chain) and to a JSON-lines mirror
//! rotated by size; every `checkpoint_every` entries and every
//! `checkpoint_interval` a signed checkpoint is appended to the checkpoint file
//! and sent to syslog (RFC 5424, UDP or TCP) and a webhook.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use super::chain::{self, Checkpoint, Entry, NewEntry, Report};
pub use super::mirror::{mirror_files, read_jsonl};
use crate::clock::{rfc3339, SharedClock};
use crate::config::AuditConfig;
use crate::store::{Store, StoreError};

/// Entries read from the store per write when the mirror is filled.
const MIRROR_BATCH: i64 = 500;

/// Why an append failed. The action it was to record must not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store: {0}")]
    Store(#[from] StoreError),
}

/// Where relaying other processes' entries stands: the last sequence number
/// read from the store, and this process's own entries above it (already
/// published when they were appended).
#[derive(Debug, Default)]
struct Relay {
    cursor: Option<i64>,
    own: std::collections::BTreeSet<i64>,
}

/// Where the JSON-lines mirror stands against the chain in the store.
#[derive(Debug, Default)]
struct MirrorState {
    /// The mirror's last entry was read at start (and checked against the store).
    opened: bool,
    /// The sequence number of the mirror's last entry (0: none yet).
    last: i64,
    /// The mirror's last entry is not the store's: it is left untouched.
    diverged: bool,
}

/// What the status overview shows of the mirror.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MirrorReport {
    /// Entries in the chain that the mirror lacks.
    pub behind: i64,
    /// Why, while it is behind or diverged.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct CheckpointState {
    last_seq: i64,
    last_at: i64,
}

/// The audit log of one gatehouse process.
#[derive(Debug)]
pub struct AuditLog {
    store: Store,
    clock: SharedClock,
    cfg: AuditConfig,
    key: Option<Vec<u8>>,
    /// Serialises this process's appends (the store serialises across processes).
    append_gate: tokio::sync::Mutex<()>,
    /// Held while the mirror is written (entries are written in order).
    mirror: tokio::sync::Mutex<MirrorState>,
    mirror_report: Mutex<MirrorReport>,
    checkpoints: Mutex<CheckpointState>,
    /// Every committed entry, for live subscribers (the admin socket); a send
    /// never waits, a subscriber that falls behind loses the oldest.
    events: tokio::sync::broadcast::Sender<Entry>,
    /// Other processes' entries relayed to this one's subscribers (PostgreSQL).
    relay: Mutex<Relay>,
    /// The last verification's time and report (for the status overview).
    last_verification: Mutex<Option<(i64, Report)>>,
    http: reqwest::Client,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl AuditLog {
    pub fn new(
        store: Store,
        clock: SharedClock,
        cfg: AuditConfig,
        key: Option<Vec<u8>>,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        if let Some(p) = &cfg.checkpoint_file {
            match super::mirror::repair_tail(p) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    path = %p.display(),
                    bytes = n,
                    "removed a checkpoint line whose write was cut short"
                ),
                Err(e) => {
                    tracing::error!(path = %p.display(), error = %e, "cannot repair the checkpoint file")
                }
            }
        }
        let last = cfg
            .checkpoint_file
            .as_deref()
            .and_then(|p| read_checkpoints(p).ok())
            .and_then(|c| c.last().map(|c| c.seq))
            .unwrap_or(0);
        AuditLog {
            store,
            cfg,
            key,
            append_gate: tokio::sync::Mutex::new(()),
            mirror: tokio::sync::Mutex::new(MirrorState::default()),
            mirror_report: Mutex::new(MirrorReport::default()),
            checkpoints: Mutex::new(CheckpointState {
                last_seq: last,
                last_at: clock.now(),
            }),
            last_verification: Mutex::new(None),
            relay: Mutex::new(Relay::default()),
            events: tokio::sync::broadcast::channel(1024).0,
            clock,
            http: crate::crypto::http_client()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("the TLS backend initialises"),
            metrics,
        }
    }

    /// Appends an entry; when this returns Ok the entry is in the chain.
    pub async fn append(&self, n: NewEntry) -> Result<Entry, AuditError> {
        let e = {
            let _g = self.append_gate.lock().await;
            let time = rfc3339(self.clock.wall());
            self.store
                .append_audit(|prev| {
                    let e = chain::seal(&n, prev, time);
                    let details = chain::canonical_json(&e.details);
                    (e, details)
                })
                .await?
        };
        self.metrics.audit_entries.inc(&[&e.action]);
        self.relay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .own
            .insert(e.seq);
        let _ = self.events.send(e.clone());
        self.mirror_entry(&e).await;
        if e.seq % self.cfg.checkpoint_every as i64 == 0 {
            self.checkpoint(e.seq, &e.hash).await;
        }
        Ok(e)
    }

    /// Publishes to this process's subscribers the entries other processes
    /// appended since the last call (the first call only marks where to start),
    /// and writes them to this process's mirror.
    pub async fn relay_others(&self) {
        let cursor = self.relay.lock().unwrap_or_else(|p| p.into_inner()).cursor;
        let Some(cursor) = cursor else {
            if let Ok((head, _)) = self.store.audit_head().await {
                let mut r = self.relay.lock().unwrap_or_else(|p| p.into_inner());
                r.cursor = Some(head);
                r.own.retain(|s| *s > head);
            }
            return;
        };
        let entries = match self.store.audit_after(cursor, 1000).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read other replicas' audit entries");
                return;
            }
        };
        {
            let mut r = self.relay.lock().unwrap_or_else(|p| p.into_inner());
            for e in entries {
                r.cursor = Some(e.seq);
                if !r.own.remove(&e.seq) {
                    let _ = self.events.send(e);
                }
            }
            let c = r.cursor.unwrap_or(0);
            r.own.retain(|s| *s > c);
        }
        // Every replica's mirror holds the whole chain, the others' entries too.
        self.catch_up_mirror().await;
    }

    /// Appends, and on failure logs it; for events that already happened
    /// (a login, a ban) whose recording must not undo them.
    pub async fn record(&self, n: NewEntry) {
        let action = n.action.clone();
        if let Err(e) = self.append(n).await {
            tracing::error!(error = %e, action, "an audit entry could not be written");
        }
    }

    /// Writes a committed entry to the mirror: at once when it follows the
    /// mirror's last entry, after the entries before it (read from the store)
    /// when those are few; a larger gap is left to [`Self::catch_up_mirror`].
    async fn mirror_entry(&self, e: &Entry) {
        let Some(path) = &self.cfg.jsonl_file else {
            return;
        };
        let mut st = self.mirror.lock().await;
        if !st.opened || st.diverged || e.seq <= st.last {
            return;
        }
        if e.seq == st.last + 1 {
            let written = self.write_mirror(path, std::slice::from_ref(e));
            self.mirrored(&mut st, written, e.seq);
        } else if e.seq - st.last <= MIRROR_BATCH {
            drop(st);
            self.catch_up_mirror().await;
        }
    }

    /// Brings the mirror up to the chain's head from the store: at start
    /// (after removing a torn last line and checking that its last entry is
    /// the store's), every background round, and after other processes'
    /// entries (PostgreSQL: every replica's mirror holds the whole chain). A
    /// mirror that cannot be written (a full disk) is reported behind, and
    /// caught up here once it can.
    pub async fn catch_up_mirror(&self) {
        let Some(path) = &self.cfg.jsonl_file else {
            return;
        };
        loop {
            let mut st = self.mirror.lock().await;
            if !st.opened {
                match self.open_mirror(path).await {
                    Ok(s) => *st = s,
                    Err(why) => {
                        self.report_mirror(-1, Some(why));
                        return;
                    }
                }
            }
            if st.diverged {
                return;
            }
            let batch = match self.store.audit_after(st.last, MIRROR_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the audit chain to fill the mirror");
                    return;
                }
            };
            let Some(end) = batch.last().map(|e| e.seq) else {
                let last = st.last;
                self.mirrored(&mut st, Ok(()), last);
                return;
            };
            let full = batch.len() as i64 == MIRROR_BATCH;
            let written = self.write_mirror(path, &batch);
            let ok = written.is_ok();
            self.mirrored(&mut st, written, end);
            if !ok || !full {
                return;
            }
            // The lock is let go between batches: appends wait one batch at most.
        }
    }

    /// Reads the mirror's state at start: a torn last line is removed, and
    /// its last entry must be the store's entry of that number.
    async fn open_mirror(&self, path: &Path) -> Result<MirrorState, String> {
        match super::mirror::repair_tail(path) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                path = %path.display(),
                bytes = n,
                "removed an audit mirror line whose write was cut short (a crash or a full disk)"
            ),
            Err(e) => return Err(format!("cannot repair {}: {e}", path.display())),
        }
        let last = match super::mirror::last_entry(path) {
            Ok(None) => {
                return Ok(MirrorState {
                    opened: true,
                    ..Default::default()
                })
            }
            Ok(Some(e)) => e,
            Err(why) => return Ok(self.diverged(path, why)),
        };
        let stored = self
            .store
            .audit_after(last.seq - 1, 1)
            .await
            .map_err(|e| format!("cannot read the audit chain: {e}"))?;
        match stored.first() {
            Some(s) if *s == last => Ok(MirrorState {
                opened: true,
                last: last.seq,
                diverged: false,
            }),
            Some(_) => {
                Ok(self.diverged(path, format!("its entry {} is not the store's", last.seq)))
            }
            None => Ok(self.diverged(
                path,
                format!("it has entry {}, which the store does not", last.seq),
            )),
        }
    }

    fn diverged(&self, path: &Path, why: String) -> MirrorState {
        let why = format!(
            "the audit mirror {} disagrees with the store: {why}; it is left as it is \
             (evidence) and not written to; move it aside to start a new mirror",
            path.display()
        );
        tracing::error!("{why}");
        self.report_mirror(-1, Some(why));
        MirrorState {
            opened: true,
            last: 0,
            diverged: true,
        }
    }

    fn write_mirror(&self, path: &Path, entries: &[Entry]) -> std::io::Result<()> {
        let mut lines = String::new();
        for e in entries {
            lines.push_str(&serde_json::to_string(e).unwrap_or_default());
            lines.push('\n');
        }
        super::mirror::append(path, &lines, self.cfg.jsonl_max_bytes, self.cfg.jsonl_keep)
    }

    /// Records the result of writing the mirror up to `upto`.
    fn mirrored(&self, st: &mut MirrorState, written: std::io::Result<()>, upto: i64) {
        match written {
            Ok(()) => {
                st.last = st.last.max(upto);
                let was = self.report_mirror(0, None);
                if was.behind != 0 {
                    tracing::info!(
                        last = st.last,
                        "the audit mirror has caught up with the chain"
                    );
                }
            }
            Err(e) => {
                let why = format!("cannot write the audit mirror: {e}");
                let was = self.report_mirror(upto - st.last, Some(why.clone()));
                if was.error.as_deref() != Some(why.as_str()) {
                    tracing::error!(
                        behind = upto - st.last,
                        "{why}; the entries are in the store and will be written when it can"
                    );
                }
            }
        }
    }

    /// Sets what the overview and metrics show (`behind` -1: unknown); the old value.
    fn report_mirror(&self, behind: i64, error: Option<String>) -> MirrorReport {
        let mut r = self.mirror_report.lock().unwrap_or_else(|p| p.into_inner());
        self.metrics
            .audit_mirror_behind
            .store(behind, std::sync::atomic::Ordering::Relaxed);
        std::mem::replace(&mut *r, MirrorReport { behind, error })
    }

    /// Where the mirror stands (None when there is none).
    pub fn mirror_report(&self) -> Option<MirrorReport> {
        self.cfg.jsonl_file.as_ref()?;
        Some(
            self.mirror_report
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    /// Signs the chain's state at (seq, hash) and sends it everywhere configured.
    pub async fn checkpoint(&self, seq: i64, hash: &str) {
        let (Some(key), Some(file)) = (&self.key, &self.cfg.checkpoint_file) else {
            return;
        };
        let now = self.clock.now();
        let prev_seq = {
            let mut st = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
            if seq <= st.last_seq {
                return;
            }
            st.last_at = now;
            std::mem::replace(&mut st.last_seq, seq)
        };
        let cp = Checkpoint::sign(key, seq, hash, rfc3339(now));
        let line = serde_json::to_string(&cp).unwrap_or_default();
        if let Err(e) = super::mirror::append_synced(file, &format!("{line}\n")) {
            tracing::error!(error = %e, path = %file.display(), "cannot append an audit checkpoint; the next one is tried at the next interval");
            let mut st = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
            if st.last_seq == seq {
                st.last_seq = prev_seq;
            }
        }
        if let Some(target) = &self.cfg.syslog {
            if let Err(e) = send_syslog(target, &syslog_message(&cp, now)).await {
                tracing::warn!(error = %e, "cannot send an audit checkpoint to syslog");
            }
        }
        if let Some(url) = &self.cfg.webhook {
            let r = self.http.post(url.clone()).json(&cp).send().await;
            match r {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(
                    status = r.status().as_u16(),
                    "the audit webhook refused a checkpoint"
                ),
                Err(_) => tracing::warn!("cannot reach the audit webhook"),
            }
        }
    }

    /// A checkpoint when entries arrived since the last one and
    /// `checkpoint_interval` passed (called from the background loop).
    pub async fn checkpoint_if_due(&self) {
        let due = {
            let st = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
            self.clock.now() - st.last_at >= self.cfg.checkpoint_interval.as_secs() as i64
        };
        if !due {
            return;
        }
        match self.store.audit_head().await {
            Ok((seq, hash)) if seq > 0 => self.checkpoint(seq, &hash).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the audit head for a checkpoint"),
        }
    }

    /// Verifies the live chain against the checkpoint file.
    pub async fn verify(&self) -> Result<Report, StoreError> {
        let entries = self.store.audit_entries().await?;
        let cps = match &self.cfg.checkpoint_file {
            Some(p) => match read_checkpoints(p) {
                Ok(c) => c,
                Err(e) => {
                    return Ok(Report {
                        ok: false,
                        entries: 0,
                        head: chain::GENESIS.into(),
                        unanchored: 0,
                        checkpoints: 0,
                        error: Some(chain::Break::Unreadable {
                            at: p.display().to_string(),
                            why: e,
                        }),
                    })
                }
            },
            None => vec![],
        };
        let report = chain::verify(entries, &cps, self.key.as_deref());
        self.metrics
            .audit_verifications
            .inc(&[if report.ok { "ok" } else { "broken" }]);
        *self
            .last_verification
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((self.clock.now(), report.clone()));
        Ok(report)
    }

    /// Entries as they commit (live events).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Entry> {
        self.events.subscribe()
    }

    /// When the chain was last verified by this process, and the report.
    pub fn last_verification(&self) -> Option<(i64, Report)> {
        self.last_verification
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The sequence number of the last checkpoint this process knows of.
    pub fn last_checkpoint_seq(&self) -> i64 {
        self.checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_seq
    }
}

/// Reads the checkpoint file; a missing file has no checkpoints yet.
pub fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, String> {
    let lines = match super::mirror::read_lines(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e.to_string()),
    };
    lines
        .iter()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {i}: {e}")))
        .collect()
}

/// RFC 5424: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`, facility
/// security/authorization (10), severity notice (5).
pub fn syslog_message(cp: &Checkpoint, now: i64) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "-".into());
    format!(
        "<{}>1 {} {} gatehouse {} audit-checkpoint [checkpoint@32473 seq=\"{}\" hash=\"{}\" mac=\"{}\"] audit checkpoint seq={} hash={}",
        10 * 8 + 5,
        rfc3339(now),
        host,
        std::process::id(),
        cp.seq,
        cp.hash,
        cp.mac,
        cp.seq,
        cp.hash
    )
}

async fn send_syslog(target: &str, msg: &str) -> std::io::Result<()> {
    let io = |e: String| std::io::Error::other(e);
    if let Some(addr) = target.strip_prefix("udp://") {
        let sock = tokio::net::UdpSocket::bind(if addr.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        })
        .await?;
        tokio::time::timeout(Duration::from_secs(5), sock.send_to(msg.as_bytes(), addr))
            .await
            .map_err(|_| io("timed out".into()))??;
        Ok(())
    } else if let Some(addr) = target.strip_prefix("tcp://") {
        use tokio::io::AsyncWriteExt;
        let mut s =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| io("timed out".into()))??;
        // RFC 6587 octet counting.
        let framed = format!("{} {msg}", msg.len());
        tokio::time::timeout(Duration::from_secs(5), s.write_all(framed.as_bytes()))
            .await
            .map_err(|_| io("timed out".into()))??;
        s.shutdown().await
    } else {
        Err(io(format!("{target} is neither udp:// nor tcp://")))
    }
}
