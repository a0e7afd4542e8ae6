//! The background round every [`ROUND`]: what other gatehouse processes
//! sharing the store changed (revocations, bans, the allowlist, sessions) is
//! read back into this process's snapshots (the backstop: on PostgreSQL,
//! `service::replicas` applies each change as it is announced); what this process keeps in memory
//! (session activity, usage counts) is written; sessions due are refreshed at
//! the IdP; the audit chain gets its checkpoint when one is due and its
//! mirror what it lacks. Each step
//! that fails keeps the last snapshot and is tried again next round.

use std::time::Duration;

use super::Services;

/// How often the round runs (local changes apply at once; this bounds how
/// long another process's change takes to arrive).
pub const ROUND: Duration = Duration::from_secs(5);

/// Re-reads what other processes may have changed (revocations, bans, the
/// allowlist, the kill switch, sessions) into the snapshots; true when every
/// part was read (a part that fails keeps its last snapshot).
pub async fn reload_shared(s: &Services) -> bool {
    let mut ok = true;
    if let Err(e) = s.sessions.reload_revocations().await {
        tracing::warn!(error = %e, "cannot refresh revocations; keeping the last snapshot");
        ok = false;
    }
    if let Err(e) = s.bans.reload().await {
        tracing::warn!(error = %e, "cannot refresh bans; keeping the last snapshot");
        ok = false;
    }
    if let Err(e) = s.allowlist.reload().await {
        tracing::warn!(error = %e, "cannot refresh the allowlist; keeping the last snapshot");
        ok = false;
    }
    if let Err(e) = s.control.reload().await {
        tracing::warn!(error = %e, "cannot read the kill switch state; keeping the last one");
        ok = false;
    }
    if let Err(e) = s.sessions.reload().await {
        tracing::warn!(error = %e, "cannot refresh sessions; keeping the last snapshot");
        ok = false;
    }
    ok
}

/// One round: this process's own upkeep, and (with `reload`) re-reading
/// what others changed.
pub async fn round(s: &Services, reload: bool) {
    if let Err(e) = s.sessions.flush_last_seen().await {
        tracing::warn!(error = %e, "cannot record session activity; will retry");
    }
    if reload {
        reload_shared(s).await;
    }
    s.login.refresh_due().await;
    s.audit.log().checkpoint_if_due().await;
    s.audit.log().catch_up_mirror().await;
    if let Err(e) = s.usage.flush().await {
        tracing::warn!(error = %e, "cannot write usage counters; keeping them for the next try");
    }
}

/// Runs [`round`] every [`ROUND`] until the task is dropped, re-reading
/// others' changes every `reload_every` (`store.reload_interval`).
pub fn spawn(s: Services, reload_every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_reload = tokio::time::Instant::now();
        let mut last_purge = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(ROUND.min(reload_every)).await;
            let reload = last_reload.elapsed() >= reload_every;
            if reload {
                last_reload = tokio::time::Instant::now();
            }
            round(&s, reload).await;
            if last_purge.elapsed() >= super::retention::EVERY {
                last_purge = tokio::time::Instant::now();
                if let Err(e) = s.retention.purge().await {
                    tracing::warn!(error = %e, "cannot purge old rows; will retry");
                }
            }
        }
    })
}
