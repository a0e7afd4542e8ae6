//! Usage monitoring: the decisions counted in a window (this process's
//! unwritten counts included) and live sessions' last activity; the batched
//! writes of the counts the decision path keeps in memory.

use std::sync::Arc;

use super::access::{Admin, Permission};
use super::sessions::Sessions;
use super::DomainError;
use crate::clock::SharedClock;
use crate::store::{SessionRecord, Store, StoreError, UsageRow};
use crate::usage::Usage;

/// How long usage counters are kept in the store.
pub const USAGE_RETENTION_SECS: i64 = 31 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct UsageReports {
    store: Store,
    clock: SharedClock,
    /// The counts the decision path keeps.
    counts: Arc<Usage>,
    sessions: Sessions,
}

impl UsageReports {
    pub fn new(store: Store, clock: SharedClock, counts: Arc<Usage>, sessions: Sessions) -> Self {
        UsageReports {
            store,
            clock,
            counts,
            sessions,
        }
    }

    /// Writes the usage counted since the last flush in one batch; on failure
    /// the counts are kept for the next flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let rows = self.counts.drain();
        if rows.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.add_usage(&rows).await {
            self.counts.restore(rows);
            return Err(e);
        }
        self.store
            .prune_usage(self.clock.now() - USAGE_RETENTION_SECS)
            .await
    }

    /// The usage rows since the start of the minute `window_secs` before `now`,
    /// and that start.
    pub async fn rows(
        &self,
        who: &Admin,
        window_secs: u64,
        now: i64,
    ) -> Result<(i64, Vec<UsageRow>), DomainError> {
        who.require(Permission::MonitoringRead)?;
        // What this process counted but has not written yet is included.
        self.flush().await?;
        let from = now - window_secs as i64;
        let from = from - from.rem_euclid(60);
        Ok((from, self.store.usage_since(from).await?))
    }

    /// Requests and denials over the window in at most 60 slots of whole
    /// minutes: `(slot seconds, [(slot start, requests, denials)])`.
    pub async fn series(
        &self,
        who: &Admin,
        window_secs: u64,
        now: i64,
    ) -> Result<(i64, Vec<(i64, i64, i64)>), DomainError> {
        who.require(Permission::MonitoringRead)?;
        let step = window_secs.div_ceil(60 * 60).max(1) as i64 * 60;
        let from = now - window_secs as i64;
        let from = from - from.rem_euclid(60);
        Ok((step, self.store.usage_series(from, step).await?))
    }

    /// Live sessions with their newest activity.
    pub async fn live_sessions(
        &self,
        who: &Admin,
        now: i64,
    ) -> Result<Vec<SessionRecord>, DomainError> {
        who.require(Permission::MonitoringRead)?;
        self.sessions.active(now, None).await
    }
}
