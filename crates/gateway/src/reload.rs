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

/// Watches until the process ends. Each look (file metadata, and on a change the load
/// of the config and every policy) runs on a blocking thread, not on the async workers.
pub async fn watch(state: Arc<AppState>) {
    let mut files = state.config().watched_files();
    let mut last = fingerprint(&files);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (st, f, l) = (state.clone(), files.clone(), last.clone());
        match tokio::task::spawn_blocking(move || look(&st, f, l)).await {
            Ok((l, f)) => (last, files) = (l, f),
            Err(e) => tracing::error!("config reload check failed: {e}"),
        }
    }
}

/// One look at the watched files; reloads on a change. Returns the fingerprint and the
/// files to watch next. Blocking.
fn look(
    state: &AppState,
    files: Vec<PathBuf>,
    last: Vec<Option<(SystemTime, u64)>>,
) -> (Vec<Option<(SystemTime, u64)>>, Vec<PathBuf>) {
    if fingerprint(&files) == last {
        return (last, files);
    }
    // One change at a time with the admin API (which writes these files and swaps the
    // config itself): a load here must not install an older view over its change.
    let _one_at_a_time = state.admin_lock.lock().unwrap_or_else(|e| e.into_inner());
    let current = state.config();
    // What is on disk before the load: a write after it is seen at the next look.
    let seen = fingerprint(&files);
    match Config::load(&current.file) {
        Ok(new) => {
            if new.listen != current.listen || new.store != current.store {
                tracing::warn!("config reloaded, but `listen` and `store` changes take effect only after a restart");
            }
            let new_files = new.watched_files();
            let last = if new_files == files {
                seen
            } else {
                fingerprint(&new_files)
            };
            state.set_config(new);
            tracing::info!(file = %current.file.display(), "config and policies reloaded");
            println!("toolgate: reloaded {}", current.file.display());
            (last, new_files)
        }
        Err(e) => {
            tracing::error!("reload refused, keeping the running config: {e}");
            eprintln!("toolgate: reload refused, keeping the running config: {e}");
            (seen, files)
        }
    }
}
