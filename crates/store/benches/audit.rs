//! Durable audit appends per second: W concurrent calls (tasks on a two-thread tokio
//! runtime, as in the gateway), each waiting for its record to be committed
//! (`synchronous=FULL`) before appending the next, as the gateway waits before forwarding.
//! Group commit lets many waiters share one fsync.
//!
//! `cargo bench -p toolgate-store --bench audit`; the figure is time per record, so
//! records per second = 1 / time (criterion also prints it as throughput).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use toolgate_audit::{Kind, Record};
use toolgate_store::AuditLog;

fn record(i: u64) -> Record {
    Record {
        at_ms: 1_795_000_000_000 + i,
        kind: Kind::Call,
        request_id: Some(i.to_string()),
        grant_id: Some("g_0123456789ab".into()),
        grant_label: Some("bench".into()),
        identity: Some("bench".into()),
        server: Some("demo".into()),
        session: Some("tgs_0123456789abcdef0123456789abcdef".into()),
        method: Some("tools/call".into()),
        tool: Some("get_patient".into()),
        policy: Some("bench".into()),
        policy_version: Some("0123456789abcdef".into()),
        decision: Some("allow".into()),
        rule: Some("/tools/get_patient".into()),
        arg_keys: Some(vec!["patient_id".into()]),
        arg_hash: Some("ab".repeat(32)),
        decision_us: Some(12),
        bytes_in: Some(120),
        ..Record::default()
    }
}

fn durable(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("tg-bench-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = Arc::new(AuditLog::open(&dir.join("audit.db")).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("audit_append_durable");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    for writers in [1u64, 16, 64, 256] {
        g.bench_function(format!("{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(writers);
                let start = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = (0..writers)
                        .map(|w| {
                            let log = log.clone();
                            tokio::spawn(async move {
                                for i in 0..per {
                                    let (tx, rx) = tokio::sync::oneshot::channel();
                                    log.append_then(
                                        record(w * per + i),
                                        Box::new(move |r| {
                                            let _ = tx.send(r);
                                        }),
                                    );
                                    rx.await.unwrap().unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
                // Time per record actually written.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per * writers) as f64)
            })
        });
    }
    g.finish();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, durable);
criterion_main!(benches);
