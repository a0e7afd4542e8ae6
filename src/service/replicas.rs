//! Several gatehouse processes on one PostgreSQL: what another process
//! changes reaches this one at once. The store announces every change the
//! decision path depends on (`store::changes`); here a listener applies each
//! to this process's snapshots — one session re-read by id, or the whole
//! small table of revocations, bans, allowlist or kill switch — and relays
//! other processes' audit entries to this process's admin sockets.
//!
//! When the listener's connection is lost, notifications in between are
//! lost with it: the process says it is not ready (`/readyz`) until it has
//! listened again and re-read everything. The periodic round
//! (`service::jobs`) stays as the backstop. On SQLite there is one process
//! and nothing to listen for.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Services;
use crate::clock::SharedClock;
use crate::store::changes::{Change, Heard};
use crate::store::{Backend, Store};

/// How often the listening process checks that the store answers.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// This process's view of the other replicas.
#[derive(Debug, Clone)]
pub struct Replicas {
    store: Store,
    /// Listening, and caught up since the last connection.
    in_sync: Arc<AtomicBool>,
    /// When `in_sync` last went false (Unix seconds).
    lost_at: Arc<AtomicI64>,
    /// `store.max_staleness` in seconds.
    max_staleness: i64,
    clock: SharedClock,
}

impl Replicas {
    pub fn new(store: Store, clock: SharedClock, max_staleness: Duration) -> Self {
        let single = store.backend() == Backend::Sqlite;
        Replicas {
            store,
            in_sync: Arc::new(AtomicBool::new(single)),
            // The snapshots were read at start: stale from then on until in sync.
            lost_at: Arc::new(AtomicI64::new(clock.now())),
            max_staleness: max_staleness.as_secs() as i64,
            clock,
        }
    }

    /// Whether this process's snapshots may be out of date by more than
    /// `store.max_staleness` (never on SQLite). Two atomic loads.
    #[inline]
    pub fn stale(&self, now: i64) -> bool {
        !self.in_sync.load(Ordering::Relaxed)
            && now - self.lost_at.load(Ordering::Relaxed) > self.max_staleness
    }

    fn lost(&self) {
        if self.in_sync.swap(false, Ordering::Relaxed) {
            self.lost_at.store(self.clock.now(), Ordering::Relaxed);
        }
    }

    /// Whether changes by other processes reach this one now (always on SQLite).
    pub fn in_sync(&self) -> bool {
        self.in_sync.load(Ordering::Relaxed)
    }

    /// Whether there can be other processes to listen to.
    pub fn shared(&self) -> bool {
        self.store.backend() == Backend::Postgres
    }

    /// Starts the listener (PostgreSQL only).
    pub fn spawn(&self, s: Services) -> Option<tokio::task::JoinHandle<()>> {
        if !self.shared() {
            return None;
        }
        let this = self.clone();
        Some(tokio::spawn(async move { this.listen(s).await }))
    }

    async fn listen(&self, s: Services) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.store.listen().await {
                Ok(Some(mut l)) => {
                    backoff = Duration::from_millis(100);
                    // The listener reads in a task of its own and hands over
                    // what it heard, so that the heartbeat below can give up
                    // on a connection that went silent without a word.
                    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
                    let reader = tokio::spawn(async move {
                        loop {
                            let h = l.next().await;
                            let end = h.is_err();
                            if tx.send(h).await.is_err() || end {
                                return;
                            }
                        }
                    });
                    self.catch_up(&s).await;
                    let mut beat = tokio::time::interval(HEARTBEAT);
                    loop {
                        tokio::select! {
                            h = rx.recv() => match h {
                                Some(Ok(Heard::Change(c))) => apply(&s, &c).await,
                                Some(Ok(Heard::Reconnected)) => {
                                    tracing::warn!("the change listener reconnected; reading everything again");
                                    self.lost();
                                    self.catch_up(&s).await;
                                }
                                Some(Err(e)) => {
                                    tracing::warn!(error = %e, "the change listener lost its connection");
                                    break;
                                }
                                None => break,
                            },
                            _ = beat.tick() => {
                                let alive = tokio::time::timeout(HEARTBEAT, self.store.ping()).await;
                                if !matches!(alive, Ok(Ok(()))) {
                                    tracing::warn!(
                                        "the store does not answer: sessions are decided from this process's snapshot for at most store.max_staleness"
                                    );
                                    break;
                                }
                            }
                        }
                    }
                    reader.abort();
                }
                Ok(None) => return,
                Err(e) => tracing::warn!(error = %e, "cannot listen for other replicas' changes"),
            }
            self.lost();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Re-reads everything other processes may have changed; in sync after.
    async fn catch_up(&self, s: &Services) {
        while !super::jobs::reload_shared(s).await {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        s.audit.log().relay_others().await;
        self.in_sync.store(true, Ordering::Relaxed);
        tracing::info!("listening for other replicas' changes; caught up");
    }
}

/// Applies one change another process announced.
async fn apply(s: &Services, c: &Change) {
    let r = match c {
        Change::Session(id) => s.sessions.reload_one(id).await,
        Change::Sessions => s.sessions.reload().await,
        Change::Revocations => s.sessions.reload_revocations().await,
        Change::Bans => s.bans.reload().await.map(|_| ()),
        Change::Allowlist => s.allowlist.reload().await,
        Change::Control => s.control.reload().await,
        Change::Audit => {
            s.audit.log().relay_others().await;
            Ok(())
        }
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, change = ?c, "cannot apply another replica's change; the periodic reload retries");
    }
}
