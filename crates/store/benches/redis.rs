//! One counter reservation through Redis on loopback (`bench/redis.sh` starts a private
//! redis-server and sets `TOOLGATE_BENCH_REDIS_URL`), beside the same reservation in memory.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use toolgate_policy::{CounterKey, Counters, MemoryCounters, Reservation, Scope};
use toolgate_store::RedisCounters;

fn reservation(counter: &str) -> Vec<Reservation> {
    vec![
        Reservation {
            key: CounterKey::new(counter, Scope::Grant, "g_bench"),
            window_secs: 60,
            max: u64::MAX / 2,
            amount: 1,
            pointer: "/tools/t/limits/0".into(),
        },
        Reservation {
            key: CounterKey::new("all", Scope::Global, ""),
            window_secs: 1,
            max: u64::MAX / 2,
            amount: 1,
            pointer: "/all_tools/limits/0".into(),
        },
    ]
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("reserve_two_limits");
    let mem = MemoryCounters::new();
    let r = reservation("bench-mem");
    g.bench_function("memory", |b| b.iter(|| mem.reserve(&r, 0).unwrap()));
    match std::env::var("TOOLGATE_BENCH_REDIS_URL") {
        Ok(url) => {
            let redis = RedisCounters::open(&url).unwrap();
            let r = reservation(&format!("bench-{}", std::process::id()));
            g.bench_function("redis_loopback", |b| {
                b.iter(|| redis.reserve(&r, 0).unwrap())
            });
        }
        Err(_) => {
            eprintln!("TOOLGATE_BENCH_REDIS_URL not set: run bench/redis.sh for the Redis figure")
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
