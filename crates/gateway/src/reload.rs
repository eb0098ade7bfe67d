//! Hot reload: the config and policy files are polled every second; a valid change is
//! swapped in, an invalid one is refused with its errors logged and the old one kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::state::AppState;

fn fingerprint(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// Watches until the process ends.
pub async fn watch(state: Arc<AppState>) {
    let mut files = state.config().watched_files();
    let mut last = fingerprint(&files);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = fingerprint(&files);
        if now == last {
            continue;
        }
        last = now;
        let current = state.config();
        match Config::load(&current.file) {
            Ok(new) => {
                if new.listen != current.listen || new.store != current.store {
                    tracing::warn!("config reloaded, but `listen` and `store` changes take effect only after a restart");
                }
                files = new.watched_files();
                last = fingerprint(&files);
                state.set_config(new);
                tracing::info!(file = %current.file.display(), "config and policies reloaded");
                println!("toolgate: reloaded {}", current.file.display());
            }
            Err(e) => {
                tracing::error!("reload refused, keeping the running config: {e}");
                eprintln!("toolgate: reload refused, keeping the running config: {e}");
            }
        }
    }
}
