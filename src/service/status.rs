//! What `/readyz` (and later `/api/v1/status`) reports about the parts
//! gatehouse depends on.

use std::time::Duration;

use crate::app::Inner;

/// The store's backend name and whether it answered within `within`.
pub async fn store_health(st: &Inner, within: Duration) -> (&'static str, bool) {
    let reachable = matches!(
        tokio::time::timeout(within, st.store.ping()).await,
        Ok(Ok(()))
    );
    (st.store.backend().as_str(), reachable)
}
