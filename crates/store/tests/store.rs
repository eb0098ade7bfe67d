//! SQLite store: counters surviving a reopen (grants and the rest: state_contract.rs).
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::json;
use toolgate_policy::{evaluate, load_str, Call, CounterError, Counters, Facts};
use toolgate_store::{PersistentCounters, SqliteStore};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("toolgate-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("toolgate.db")
}

#[test]
fn counters_survive_reopen_and_give_back_is_durable() {
    let path = tmp("counters");
    let policy = load_str(r#"{"version":"1","default":"allow","all_tools":{"limits":[{"counter":"daily","window":"day","max":3}]}}"#).unwrap().policy;
    let args = json!({});
    let call = Call {
        tool: "t",
        args: &args,
        grant: "g1",
        identity: "a",
        session: "",
        server: "demo",
    };
    let d = evaluate(&call, &policy, &Facts::default(), 0);
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
