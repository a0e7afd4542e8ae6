//! Appending to the audit chain and keeping its evidence outside the database:
//! every entry goes to the store (one linear chain) and to a JSON-lines mirror
//! rotated by size; every `checkpoint_every` entries and every
//! `checkpoint_interval` a signed checkpoint is appended to the checkpoint file
//! and sent to syslog (RFC 5424, UDP or TCP) and a webhook.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::chain::{self, Checkpoint, Entry, NewEntry, Read, Report};
use crate::clock::{rfc3339, SharedClock};
use crate::config::AuditConfig;
use crate::store::{Store, StoreError};

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
    jsonl: Mutex<()>,
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
            jsonl: Mutex::new(()),
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
            let time = rfc3339(self.clock.now());
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
        if let Err(err) = self.mirror(&e) {
            tracing::error!(error = %err, "cannot write the audit JSON-lines mirror");
        }
        if e.seq % self.cfg.checkpoint_every as i64 == 0 {
            self.checkpoint(e.seq, &e.hash).await;
        }
        Ok(e)
    }

    /// Publishes to this process's subscribers the entries other processes
    /// appended since the last call (the first call only marks where to start).
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

    /// Appends, and on failure logs it; for events that already happened
    /// (a login, a ban) whose recording must not undo them.
    pub async fn record(&self, n: NewEntry) {
        let action = n.action.clone();
        if let Err(e) = self.append(n).await {
            tracing::error!(error = %e, action, "an audit entry could not be written");
        }
    }

    fn mirror(&self, e: &Entry) -> std::io::Result<()> {
        let Some(path) = &self.cfg.jsonl_file else {
            return Ok(());
        };
        let line = format!("{}\n", serde_json::to_string(e).unwrap_or_default());
        let _g = self.jsonl.lock().unwrap_or_else(|e| e.into_inner());
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size > 0 && size + line.len() as u64 > self.cfg.jsonl_max_bytes {
            rotate(path, self.cfg.jsonl_keep)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(line.as_bytes())
    }

    /// Signs the chain's state at (seq, hash) and sends it everywhere configured.
    pub async fn checkpoint(&self, seq: i64, hash: &str) {
        let (Some(key), Some(file)) = (&self.key, &self.cfg.checkpoint_file) else {
            return;
        };
        let now = self.clock.now();
        {
            let mut st = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
            if seq <= st.last_seq {
                return;
            }
            st.last_seq = seq;
            st.last_at = now;
        }
        let cp = Checkpoint::sign(key, seq, hash, rfc3339(now));
        let line = serde_json::to_string(&cp).unwrap_or_default();
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| {
                f.write_all(format!("{line}\n").as_bytes())?;
                f.sync_data()
            });
        if let Err(e) = written {
            tracing::error!(error = %e, path = %file.display(), "cannot append an audit checkpoint");
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

/// `audit.jsonl` -> `.1` -> `.2` ... keeping `keep` old files.
fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    let name = |i: u32| -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{i}"));
        PathBuf::from(s)
    };
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(name(keep));
    for i in (1..keep).rev() {
        if name(i).exists() {
            std::fs::rename(name(i), name(i + 1))?;
        }
    }
    std::fs::rename(path, name(1))
}

/// The mirror files of `path` oldest first: `.N` ... `.1`, then `path`.
pub fn mirror_files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = vec![];
    if let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|f| f.to_str())) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name();
                let Some(n) = n.to_str() else { continue };
                if let Some(i) = n
                    .strip_prefix(base)
                    .and_then(|r| r.strip_prefix('.'))
                    .and_then(|i| i.parse::<u32>().ok())
                {
                    rotated.push((i, e.path()));
                }
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// Reads exported entries (JSON lines, possibly rotated) in file order.
pub fn read_jsonl(files: &[PathBuf]) -> Result<Vec<Read>, String> {
    let mut out = vec![];
    for f in files {
        let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let at = format!("{}:{}", f.display(), i + 1);
            match line {
                Ok(l) if l.trim().is_empty() => continue,
                Ok(l) => {
                    out.push(serde_json::from_str::<Entry>(&l).map_err(|e| (at, e.to_string())))
                }
                Err(e) => out.push(Err((at, e.to_string()))),
            }
        }
    }
    Ok(out)
}

/// Reads the checkpoint file; a missing file has no checkpoints yet.
pub fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e.to_string()),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
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
