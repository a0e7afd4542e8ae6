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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Services;
use crate::store::changes::{Change, Heard};
use crate::store::{Backend, Store};

/// This process's view of the other replicas.
#[derive(Debug, Clone)]
pub struct Replicas {
    store: Store,
    /// Listening, and caught up since the last connection.
    in_sync: Arc<AtomicBool>,
}

impl Replicas {
    pub fn new(store: Store) -> Self {
        let single = store.backend() == Backend::Sqlite;
        Replicas {
            store,
            in_sync: Arc::new(AtomicBool::new(single)),
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
                    self.catch_up(&s).await;
                    loop {
                        match l.next().await {
                            Ok(Heard::Change(c)) => apply(&s, &c).await,
                            Ok(Heard::Reconnected) => {
                                tracing::warn!(
                                    "the change listener reconnected; reading everything again"
                                );
                                self.in_sync.store(false, Ordering::Relaxed);
                                self.catch_up(&s).await;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "the change listener lost its connection");
                                break;
                            }
                        }
                    }
                }
                Ok(None) => return,
                Err(e) => tracing::warn!(error = %e, "cannot listen for other replicas' changes"),
            }
            self.in_sync.store(false, Ordering::Relaxed);
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
