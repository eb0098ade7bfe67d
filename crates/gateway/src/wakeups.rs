//! The wake-ups of held calls ([`Decisions`]): a broadcast of the ids of decided approvals,
//! fed by this process and by whatever the store publishes. Apart from `decisions` (how a
//! held call waits), so that the gateway's state can hold it without a module cycle.

/// Wake-ups for held calls: the ids of approvals just decided, by this process (the admin
/// API) or, when the store publishes them (Redis), by any replica or CLI. A wake-up only
/// shortens the wait; held calls still look at their approval every 200 ms (see `decisions`).
#[derive(Clone, Debug)]
pub struct Decisions(tokio::sync::broadcast::Sender<String>);

impl Decisions {
    /// Wake-ups from this process and from whatever `store` publishes.
    pub fn watch(store: &dyn toolgate_store::StateStore) -> Self {
        let (tx, _) = tokio::sync::broadcast::channel(256);
        let feed = tx.clone();
        store.watch_decisions(Box::new(move |id| {
            let _ = feed.send(id.to_string());
        }));
        Decisions(tx)
    }

    /// A receiver of the wake-ups from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.0.subscribe()
    }

    /// Tells this process's waiters that approval `id` was decided.
    pub fn decided(&self, id: &str) {
        let _ = self.0.send(id.to_string());
    }
}
