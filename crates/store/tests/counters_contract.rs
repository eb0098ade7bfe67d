//! One contract for every counter backend: in memory, SQLite (`PersistentCounters`) and
//! Redis (`RedisCounters`, against a real server: `TOOLGATE_TEST_REDIS_URL`, which the test
//! command sets after starting a private `redis-server`; under `CI` its absence fails).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use toolgate_policy::{CounterError, CounterKey, Counters, MemoryCounters, Reservation, Scope};
use toolgate_store::{PersistentCounters, RedisCounters, SqliteStore};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), now_ms())
}

fn backends(test: &str) -> Vec<(&'static str, Arc<dyn Counters>)> {
    let dir = std::env::temp_dir().join(format!("tg-contract-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("s.db")).unwrap());
    let mut out: Vec<(&'static str, Arc<dyn Counters>)> = vec![
        ("memory", Arc::new(MemoryCounters::new())),
        (
            "sqlite",
            Arc::new(PersistentCounters::open(store, now_ms()).unwrap()),
        ),
    ];
    match std::env::var("TOOLGATE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            out.push(("redis", Arc::new(RedisCounters::open(&url).unwrap())))
        }
        _ if std::env::var_os("CI").is_some() => {
            panic!("TOOLGATE_TEST_REDIS_URL is not set: the test command starts redis-server and sets it")
        }
        _ => eprintln!(
            "note: TOOLGATE_TEST_REDIS_URL not set; the redis backend is not checked here"
        ),
    }
    out
}

fn res(counter: &str, window_secs: u64, max: u64, amount: u64) -> Reservation {
    Reservation {
        key: CounterKey::new(counter, Scope::Grant, "g_test"),
        window_secs,
        max,
        amount,
        pointer: format!("/tools/t/limits/{counter}"),
    }
}

#[test]
fn all_or_nothing_across_limits() {
    for (name, c) in backends("aon") {
        let (a, b) = (unique("a"), unique("b"));
        c.reserve(&[res(&b, 60, 1, 1)], now_ms()).unwrap();
        match c.reserve(&[res(&a, 60, 5, 1), res(&b, 60, 1, 1)], now_ms()) {
            Err(CounterError::Exceeded(e)) => assert_eq!(e.index, 1, "{name}"),
            other => panic!("{name}: expected the second limit to refuse, got {other:?}"),
        }
        // Nothing was taken from `a`: five still fit.
        for i in 0..5 {
            c.reserve(&[res(&a, 60, 5, 1)], now_ms())
                .unwrap_or_else(|e| panic!("{name}: call {i} refused: {e}"));
        }
        assert!(c.reserve(&[res(&a, 60, 5, 1)], now_ms()).is_err(), "{name}");
    }
}

#[test]
fn exact_under_concurrency() {
    for (name, c) in backends("conc") {
        let counter = unique("conc");
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    for _ in 0..40 {
                        if c.reserve(&[res(&counter, 60, 300, 1)], now_ms()).is_ok() {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 300, "{name}");
    }
}

#[test]
fn give_back_restores_and_amounts_count() {
    for (name, c) in backends("give") {
        let counter = unique("amount");
        let t1 = c.reserve(&[res(&counter, 60, 100, 30)], now_ms()).unwrap();
        c.reserve(&[res(&counter, 60, 100, 30)], now_ms()).unwrap();
        c.reserve(&[res(&counter, 60, 100, 30)], now_ms()).unwrap();
        let e = c
            .reserve(&[res(&counter, 60, 100, 30)], now_ms())
            .unwrap_err();
        match e {
            CounterError::Exceeded(x) => {
                assert!(
                    x.retry_after_ms > 0 && x.retry_after_ms <= 60_000,
                    "{name}: {x:?}"
                )
            }
            other => panic!("{name}: {other:?}"),
        }
        c.give_back(&t1).unwrap();
        // Give-back may be queued (persistent backends): wait until it shows.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match c.reserve(&[res(&counter, 60, 100, 30)], now_ms()) {
                Ok(_) => break,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("{name}: the given-back amount was not restored: {e}"),
            }
        }
        assert!(
            c.reserve(&[res(&counter, 60, 100, 10)], now_ms()).is_ok(),
            "{name}: 100 - 90 leaves 10"
        );
        assert!(
            c.reserve(&[res(&counter, 60, 100, 1)], now_ms()).is_err(),
            "{name}"
        );
    }
}

#[test]
fn the_window_slides() {
    for (name, c) in backends("slide") {
        let counter = unique("slide");
        c.reserve(&[res(&counter, 1, 2, 1)], now_ms()).unwrap();
        c.reserve(&[res(&counter, 1, 2, 1)], now_ms()).unwrap();
        assert!(
            c.reserve(&[res(&counter, 1, 2, 1)], now_ms()).is_err(),
            "{name}"
        );
        std::thread::sleep(Duration::from_millis(1100));
        c.reserve(&[res(&counter, 1, 2, 1)], now_ms())
            .unwrap_or_else(|e| panic!("{name}: a second later the window has room: {e}"));
    }
}

#[test]
fn mixed_amounts_slide_and_come_back_exactly() {
    for (name, c) in backends("mixed") {
        let counter = unique("mixed");
        let one = c.reserve(&[res(&counter, 1, 5, 1)], now_ms()).unwrap();
        c.reserve(&[res(&counter, 1, 5, 3)], now_ms()).unwrap();
        // 4 of 5 taken: 2 more do not fit, and the wait is within the window.
        match c.reserve(&[res(&counter, 1, 5, 2)], now_ms()) {
            Err(CounterError::Exceeded(x)) => {
                assert!(
                    x.retry_after_ms > 0 && x.retry_after_ms <= 1000,
                    "{name}: {x:?}"
                )
            }
            other => panic!("{name}: expected a full counter, got {other:?}"),
        }
        // The entry of amount 1 given back: 1 + 3 - 1 + 2 = 5 fits, then nothing does.
        c.give_back(&one).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while c.reserve(&[res(&counter, 1, 5, 2)], now_ms()).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: the given-back entry of amount 1 was not restored"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            c.reserve(&[res(&counter, 1, 5, 1)], now_ms()).is_err(),
            "{name}"
        );
        // A window later every amount has left it: all five fit at once.
        std::thread::sleep(Duration::from_millis(1100));
        c.reserve(&[res(&counter, 1, 5, 5)], now_ms())
            .unwrap_or_else(|e| panic!("{name}: the window slid, yet {e}"));
    }
}

/// Redis forgot the scripts (a restart, `SCRIPT FLUSH`): the next reservations load them
/// again and go through, exactly once each.
#[test]
fn redis_scripts_flushed_are_loaded_again() {
    let Ok(url) = std::env::var("TOOLGATE_TEST_REDIS_URL") else {
        return;
    };
    if url.is_empty() {
        return;
    }
    let c = RedisCounters::open(&url).unwrap();
    let k = unique("flush");
    c.reserve(&[res(&k, 60, 3, 1)], now_ms()).unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
    c.reserve(&[res(&k, 60, 3, 1)], now_ms()).unwrap();
    c.reserve(&[res(&k, 60, 3, 1)], now_ms()).unwrap();
    assert!(
        matches!(
            c.reserve(&[res(&k, 60, 3, 1)], now_ms()),
            Err(CounterError::Exceeded(_))
        ),
        "three reservations, each counted once"
    );
}
