//! Keeping nothing forever: once `store.retention` (default 7 days) has
//! passed since a session ended, a revocation or ban ran out or was lifted,
//! or an allowlist entry was removed or expired, its row is deleted — in
//! batches of [`BATCH`], at most [`MAX_BATCHES`] per table and run, so a
//! purge never holds a table for long. The audit log is never purged (its
//! retention is the operator's, by export).

use std::time::Duration;

use crate::clock::SharedClock;
use crate::store::{Purgeable, Store, StoreError};

pub const BATCH: i64 = 1000;
pub const MAX_BATCHES: usize = 100;
/// How often the background round purges.
pub const EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Retention {
    store: Store,
    clock: SharedClock,
    keep: Duration,
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retention")
            .field("keep", &self.keep)
            .finish()
    }
}

impl Retention {
    pub fn new(store: Store, clock: SharedClock, keep: Duration) -> Self {
        Retention { store, clock, keep }
    }

    /// One purge of every table; how many rows each lost.
    pub async fn purge(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let cutoff = self.clock.now() - self.keep.as_secs() as i64;
        let mut out = vec![];
        for t in Purgeable::ALL {
            let mut total = 0;
            for _ in 0..MAX_BATCHES {
                let n = self.store.purge(t, cutoff, BATCH).await?;
                total += n;
                if n < BATCH as u64 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            if total > 0 {
                tracing::info!(
                    table = t.as_str(),
                    rows = total,
                    "purged rows past store.retention"
                );
            }
            out.push((t.as_str(), total));
        }
        Ok(out)
    }
}
