//! One contract for both audit backends: SQLite and PostgreSQL (a real server:
//! `TOOLGATE_TEST_POSTGRES_URL`, set by the test command after it starts a private one;
//! under `CI` its absence fails). Chaining, verification, two writers on one log, retention,
//! queries and stats.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use toolgate_audit::{Kind, Record};
use toolgate_store::{AuditFilter, AuditLog};

/// A backend's name and how to open (another handle on) its log.
type Opener = (&'static str, Box<dyn Fn() -> AuditLog>);

fn logs(test: &str) -> Vec<Opener> {
    let dir = std::env::temp_dir().join(format!("tg-audit-contract-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("audit.db");
    let mut out: Vec<Opener> = vec![("sqlite", Box::new(move || AuditLog::open(&file).unwrap()))];
    match std::env::var("TOOLGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            // A fresh database per test, so tests do not share one chain.
            let (url, _) = fresh_database(&url, &format!("tg_{test}_{}", std::process::id()));
            out.push((
                "postgres",
                Box::new(move || AuditLog::open_postgres(&url).unwrap()),
            ));
        }
        _ if std::env::var_os("CI").is_some() => {
            panic!("TOOLGATE_TEST_POSTGRES_URL is not set: the test command starts PostgreSQL and sets it")
        }
        _ => eprintln!(
            "note: TOOLGATE_TEST_POSTGRES_URL not set; the postgres backend is not checked here"
        ),
    }
    out
}

/// Creates (again) database `db` on the server of `url`; its URL, and the admin connection.
fn fresh_database(url: &str, db: &str) -> (String, postgres::Client) {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    (format!("{}/{db}", url.rsplit_once('/').unwrap().0), admin)
}

fn rec(at_ms: u64, tool: &str, decision: &str) -> Record {
    Record {
        at_ms,
        kind: Kind::Call,
        method: Some("tools/call".into()),
        tool: Some(tool.into()),
        decision: Some(decision.into()),
        rule: Some(
            if decision == "deny" {
                "(default deny)"
            } else {
                "/tools/t"
            }
            .into(),
        ),
        grant_label: Some("alice".into()),
        ..Record::default()
    }
}

#[test]
fn appends_chain_query_and_stats() {
    // The in-memory log (for tests of the gateway) keeps this part of the contract too.
    let memory: Opener = ("memory", Box::new(|| AuditLog::in_memory().unwrap().0));
    for (name, open) in logs("chain").into_iter().chain([memory]) {
        let log = open();
        for i in 0..30 {
            log.append(rec(
                1000 + i,
                "t",
                if i % 3 == 0 { "deny" } else { "allow" },
            ));
        }
        assert_eq!(
            log.append_sync(rec(2000, "last", "allow")).unwrap(),
            31,
            "{name}"
        );
        // A held call's first record is not counted: its verdict (seq 31) is.
        log.append_sync(rec(2000, "last", "require_approval"))
            .unwrap();
        let v = log.verify().unwrap().unwrap();
        assert_eq!(
            (v.records, v.first_seq, v.last_seq),
            (32, Some(1), Some(32)),
            "{name}"
        );
        let mut seen = vec![];
        let f = AuditFilter {
            grant: Some("alice".into()),
            decision: Some("deny".into()),
            ..AuditFilter::default()
        };
        log.query(&f, true, Some(3), |r| {
            seen.push(r.seq);
            true
        })
        .unwrap();
        assert_eq!(seen, vec![28, 25, 22], "{name}");
        let s = log.stats(0).unwrap();
        assert_eq!((s.calls, s.denied), (31, 10), "{name}");
        assert_eq!(
            s.top_deny_rules,
            vec![("(default deny)".to_string(), 10)],
            "{name}"
        );
        assert_eq!(log.last_seq().unwrap(), 32, "{name}");
    }
}

#[test]
fn the_memory_log_fails_while_down_and_keeps_its_chain() {
    let (log, outage) = AuditLog::in_memory().unwrap();
    assert_eq!(log.append_sync(rec(1, "a", "allow")).unwrap(), 1);
    outage.set(true);
    assert!(log.append_sync(rec(2, "b", "allow")).is_err());
    assert!(log.verify().is_err());
    outage.set(false);
    assert_eq!(log.append_sync(rec(3, "c", "allow")).unwrap(), 2);
    let v = log.verify().unwrap().unwrap();
    assert_eq!((v.records, v.last_seq), (2, Some(2)));
}

#[test]
fn concurrent_writers_keep_one_chain() {
    for (name, open) in logs("writers") {
        let logs: Vec<AuditLog> = (0..3).map(|_| open()).collect();
        std::thread::scope(|s| {
            for (w, log) in logs.iter().enumerate() {
                s.spawn(move || {
                    for i in 0..40 {
                        log.append_sync(rec(i, &format!("w{w}"), "allow")).unwrap();
                    }
                });
            }
        });
        let v = logs[0].verify().unwrap().unwrap();
        assert_eq!(v.records, 120, "{name}");
    }
}

#[test]
fn retention_keeps_the_chain_verifiable() {
    for (name, open) in logs("prune") {
        let log = open();
        for i in 0..10 {
            log.append(rec(1000 * i, "t", "allow"));
        }
        log.append_sync(rec(20_000, "t", "allow")).unwrap();
        assert_eq!(log.prune_before(5000, 30_000).unwrap(), 5, "{name}");
        let v = log.verify().unwrap().unwrap();
        assert_eq!(
            (v.first_seq, v.last_seq, v.records),
            (Some(6), Some(12), 7),
            "{name}"
        );
        log.append_sync(rec(40_000, "t", "allow")).unwrap();
        assert!(log.verify().unwrap().is_ok(), "{name}");
    }
}

#[test]
fn a_lost_postgres_connection_is_made_again() {
    let Ok(url) = std::env::var("TOOLGATE_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TOOLGATE_TEST_POSTGRES_URL is not set: the test command starts PostgreSQL and sets it"
        );
        return;
    };
    let db = format!("tg_reconnect_{}", std::process::id());
    let (db_url, mut admin) = fresh_database(&url, &db);
    let log = AuditLog::open_postgres(&db_url).unwrap();
    log.append_sync(rec(1, "t", "allow")).unwrap();
    // PostgreSQL restarts, or an operator kills the sessions: every connection is gone.
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db],
        )
        .unwrap();
    assert!(!killed.is_empty(), "the log's connections were found");
    // The first write may find its connection dead (that call is refused: fail closed);
    // the next ones reconnect, as do reads.
    let mut wrote = false;
    for _ in 0..3 {
        if log.append_sync(rec(2, "t", "allow")).is_ok() {
            wrote = true;
            break;
        }
    }
    assert!(wrote, "the writer reconnected");
    let _ = log.check();
    log.check().expect("reads reconnect too");
    let v = log.verify().unwrap().unwrap();
    assert!(v.records >= 2, "{v:?}");
}
