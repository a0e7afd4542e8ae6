//! What `/readyz` (and later `/api/v1/status`) reports about the parts
//! gatehouse depends on.

use std::time::Duration;

use crate::store::Store;

#[derive(Debug, Clone)]
pub struct Status {
    store: Store,
}

impl Status {
    pub fn new(store: Store) -> Self {
        Status { store }
    }

    /// The store's backend name and whether it answered within `within`.
    pub async fn store_health(&self, within: Duration) -> (&'static str, bool) {
        let reachable = matches!(
            tokio::time::timeout(within, self.store.ping()).await,
            Ok(Ok(()))
        );
        (self.store.backend().as_str(), reachable)
    }
}
