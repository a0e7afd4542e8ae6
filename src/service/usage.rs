//! Usage monitoring: the decisions counted in a window (this process's
//! unwritten counts included) and live sessions' last activity.

use super::access::{Admin, Permission};
use super::DomainError;
use crate::app::{flush_usage, Inner};
use crate::store::{SessionRecord, UsageRow};

/// The usage rows since the start of the minute `window_secs` before `now`,
/// and that start.
pub async fn rows(
    st: &Inner,
    who: &Admin,
    window_secs: u64,
    now: i64,
) -> Result<(i64, Vec<UsageRow>), DomainError> {
    who.require(Permission::MonitoringRead)?;
    // What this process counted but has not written yet is included.
    flush_usage(st).await?;
    let from = now - window_secs as i64;
    let from = from - from.rem_euclid(60);
    Ok((from, st.store.usage_since(from).await?))
}

/// Live sessions with their newest activity.
pub async fn live_sessions(
    st: &Inner,
    who: &Admin,
    now: i64,
) -> Result<Vec<SessionRecord>, DomainError> {
    who.require(Permission::MonitoringRead)?;
    super::sessions::active_sessions(st, now, None).await
}
