//! SQLite store: counters surviving a reopen (grants and the rest: state_contract.rs).
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::json;
use toolgate_policy::{evaluate, load_str, Call, CounterError, Counters, Facts};
use toolgate_store::{CounterStore, PersistentCounters, SqliteStore};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("toolgate-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("toolgate.db")
}

/// The decision for one call under a policy with a daily limit of `max` calls.
fn daily_limit(max: u64) -> toolgate_policy::Decision {
    let policy = load_str(&format!(
        r#"{{"version":"1","default":"allow","all_tools":{{"limits":[{{"counter":"daily","window":"day","max":{max}}}]}}}}"#
    ))
    .unwrap()
    .policy;
    let args = json!({});
    let call = Call {
        tool: "t",
        args: &args,
        grant: "g1",
        identity: "a",
        session: "",
        server: "demo",
    };
    evaluate(&call, &policy, &Facts::default(), 0)
}

#[test]
fn counters_survive_reopen_and_give_back_is_durable() {
    let path = tmp("counters");
    let d = daily_limit(3);
    {
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let c = PersistentCounters::open(store, 1_000).unwrap();
        c.reserve(&d.reservations, 1_000).unwrap();
        let t = c.reserve(&d.reservations, 2_000).unwrap();
        c.reserve(&d.reservations, 3_000).unwrap();
        c.give_back(&t).unwrap();
    }
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let c = PersistentCounters::open(store, 10_000).unwrap();
    c.reserve(&d.reservations, 10_000).unwrap();
    assert!(matches!(
        c.reserve(&d.reservations, 11_000),
        Err(CounterError::Exceeded(_))
    ));
    // A day later the window is empty again.
    c.reserve(&d.reservations, 1_000 + 86_400_000).unwrap();
}

#[test]
fn counters_refuse_while_the_store_cannot_write_and_keep_what_was_not_written() {
    let path = tmp("counters-broken");
    let d = daily_limit(100);
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let c = PersistentCounters::open(store, 1_000).unwrap();
    c.reserve(&d.reservations, 1_000).unwrap();
    // Another process breaks the table the entries are written to.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("ALTER TABLE counter_entries RENAME TO moved")
        .unwrap();
    // Written behind: this one is decided in memory, its write fails later.
    c.reserve(&d.reservations, 2_000).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while c.check().is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the failed write was not noticed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Fail closed: no new reservation while the store cannot write.
    assert!(matches!(
        c.reserve(&d.reservations, 3_000),
        Err(CounterError::Unavailable(m)) if m.contains("cannot write")
    ));
    // Repaired: the kept entry is written at the next retry, and reservations resume.
    other
        .execute_batch("ALTER TABLE moved RENAME TO counter_entries")
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while c.check().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store did not recover"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.reserve(&d.reservations, 4_000).unwrap();
    drop(c);
    let n: i64 = other
        .query_row("SELECT count(*) FROM counter_entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        n, 3,
        "the entry written while the store was broken was kept and retried"
    );
}

#[test]
fn data_version_now_sees_every_commit_without_waiting() {
    use toolgate_store::{GrantStore, NewGrant, StateStore};
    let path = tmp("version");
    let store = SqliteStore::open(&path).unwrap();
    let v0 = store
        .data_version_now()
        .expect("an idle file answers at once");
    assert_eq!(store.data_version_now(), Some(v0), "nothing changed");
    // This store's own commit moves it (its pin and grant caches must not outlive it)...
    let g = NewGrant {
        server: "demo".into(),
        identity: None,
        label: "a".into(),
        policy: None,
        expires_at_ms: None,
    };
    store.create_grant(&g, 1).unwrap();
    let v1 = store.data_version_now().unwrap();
    assert_ne!(v1, v0);
    // ...and so does another process's (here: another connection's).
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch("UPDATE grants SET label = 'b'")
        .unwrap();
    let v2 = StateStore::data_version(&store).unwrap();
    assert_ne!(v2, v1);
    assert_eq!(store.data_version_now(), Some(v2));
    // Counter entries, written every few milliseconds, leave the caches alone.
    other
        .execute_batch("INSERT INTO counter_entries (counter, scope, scope_value, at_ms, amount) VALUES ('c', 'grant', 'g', 1, 1)")
        .unwrap();
    assert_eq!(store.data_version_now(), Some(v2));
}
