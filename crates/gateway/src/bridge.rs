//! The one bridge between the async gateway and the synchronous stores.

use std::sync::Arc;

use toolgate_store::{StateStore, StoreError};

/// Runs a call on the state store on tokio's blocking pool: the one bridge between the
/// async gateway and the synchronous stores. No store call blocks a runtime thread, so a
/// Redis that stalls, or SQLite waiting for another process's write lock, delays only the
/// requests that need it.
pub async fn blocking<T, F>(store: &Arc<dyn StateStore>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&dyn StateStore) -> Result<T, StoreError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .unwrap_or_else(|e| Err(StoreError::Interrupted(e.to_string())))
}

/// The most threads the blocking pool runs at once (`serve` and `run` build their runtime
/// with it): store calls beyond it wait in the pool's queue. Each thread holds one store
/// call (a Redis round trip, a SQLite statement), so a stalled store can hold at most this
/// many, and the gateway's memory stays bounded.
pub const MAX_BLOCKING_THREADS: usize = 64;
