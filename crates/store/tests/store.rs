//! SQLite store: grants lifecycle and counters surviving a reopen.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::json;
use toolgate_policy::{evaluate, load_str, Call, CounterError, Counters, Facts};
use toolgate_store::{GrantStatus, NewGrant, PersistentCounters, SqliteStore};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("toolgate-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("toolgate.db")
}

#[test]
fn grant_lifecycle() {
    let s = SqliteStore::open(&tmp("grants")).unwrap();
    assert_eq!(s.grant_count().unwrap(), 0);
    let (g, token) = s
        .create_grant(
            &NewGrant {
                label: "alice".into(),
                server: "demo".into(),
                policy: Some("demo".into()),
                identity: None,
                expires_at_ms: Some(5_000),
            },
            1_000,
        )
        .unwrap();
    assert!(token.starts_with("tg_") && token.len() == 51);
    assert_eq!(g.identity, "alice");
    let found = s.grant_by_token(&token).unwrap().unwrap();
    assert_eq!(found, g);
    assert_eq!(found.status(4_999), GrantStatus::Active);
    assert_eq!(found.status(5_000), GrantStatus::Expired);
    assert!(s.grant_by_token("tg_wrong").unwrap().is_none());
    let (_, token2) = s.rotate_grant(&g.id).unwrap();
    assert!(s.grant_by_token(&token).unwrap().is_none());
    assert_eq!(s.grant_by_token(&token2).unwrap().unwrap().id, g.id);
    let r = s.revoke_grant(&g.id, 2_000).unwrap();
    assert_eq!(r.status(2_000), GrantStatus::Revoked);
    assert!(s.revoke_grant("g_nope", 1).is_err());
    assert_eq!(s.list_grants().unwrap().len(), 1);
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
