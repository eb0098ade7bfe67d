//! The audit log in this process's memory, for tests of what writes it (the gateway's call
//! pipeline) without files: the same writer thread, chain and verification as the real
//! backends, and an [`Outage`] switch that makes every commit fail as a full disk or a
//! stopped database would. Not a backend users choose: nothing survives the process, and
//! it does not prune.

use std::sync::{Arc, Mutex, MutexGuard};

use toolgate_audit::{Record, StoredRecord, GENESIS};

use crate::audit::{verify_rows, AuditFilter, Backend, Stats, Verified, COLUMNS};
use crate::memory::Outage;
use crate::StoreError;

/// One committed record: the record, its canonical body and its hash.
type Row = (Record, String, String);

/// The records, shared by the writer's and the reader's handle.
#[derive(Clone, Default)]
pub(crate) struct MemoryBackend {
    rows: Arc<Mutex<Vec<Row>>>,
    outage: Outage,
}

impl MemoryBackend {
    /// Two handles on one empty log that fails while `outage` is on.
    pub(crate) fn new(outage: Outage) -> Self {
        MemoryBackend {
            rows: Arc::default(),
            outage,
        }
    }

    fn rows(&self) -> Result<MutexGuard<'_, Vec<Row>>, StoreError> {
        if self.outage.is_down() {
            return Err(StoreError::Audit("the in-memory audit log is down".into()));
        }
        Ok(self.rows.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The filter as the SQL backends apply it.
fn matches(f: &AuditFilter, r: &Record) -> bool {
    let eq = |want: &Option<String>, have: &Option<String>| {
        want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
    };
    eq(&f.identity, &r.identity)
        && eq(&f.server, &r.server)
        && eq(&f.tool, &r.tool)
        && eq(&f.decision, &r.decision)
        && eq(&f.rule, &r.rule)
        && eq(&f.method, &r.method)
        && f.kind.as_ref().is_none_or(|k| k == r.kind.as_str())
        && f.grant
            .as_ref()
            .is_none_or(|g| r.grant_id.as_ref() == Some(g) || r.grant_label.as_ref() == Some(g))
        && f.since_ms.is_none_or(|s| r.at_ms >= s)
        && f.until_ms.is_none_or(|u| r.at_ms < u)
        && f.after_seq.is_none_or(|a| r.seq > a)
}

impl Backend for MemoryBackend {
    fn commit(&mut self, records: &mut [Box<Record>]) -> Result<(), String> {
        let mut rows = self.rows().map_err(|e| e.to_string())?;
        for r in records.iter_mut() {
            let (seq, prev) = rows
                .last()
                .map(|(last, _, hash)| (last.seq, hash.clone()))
                .unwrap_or((0, GENESIS.to_string()));
            r.seq = seq + 1;
            r.prev_hash = prev;
            let body = r.canonical();
            let hash = toolgate_audit::record::hash_body(&body);
            rows.push(((**r).clone(), body, hash));
        }
        Ok(())
    }

    fn prune(&mut self, _before_ms: u64, _now_ms: u64) -> Result<u64, String> {
        Err("the in-memory audit log does not prune".into())
    }

    fn query(
        &mut self,
        filter: &AuditFilter,
        newest_first: bool,
        limit: Option<u64>,
        each: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), StoreError> {
        let found: Vec<Record> = {
            let rows = self.rows()?;
            let kept = rows
                .iter()
                .map(|(r, _, _)| r)
                .filter(|r| matches(filter, r));
            let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
            if newest_first {
                kept.rev().take(limit).cloned().collect()
            } else {
                kept.take(limit).cloned().collect()
            }
        };
        for r in found {
            if !each(r) {
                break;
            }
        }
        Ok(())
    }

    fn last_seq(&mut self) -> Result<u64, StoreError> {
        Ok(self.rows()?.last().map_or(0, |(r, _, _)| r.seq))
    }

    fn verify(&mut self) -> Result<Result<Verified, toolgate_audit::Break>, StoreError> {
        let stored: Vec<StoredRecord> = self
            .rows()?
            .iter()
            .map(|(r, body, hash)| StoredRecord {
                seq: r.seq,
                body: body.clone(),
                hash: hash.clone(),
                columns: COLUMNS
                    .iter()
                    .map(|c| (*c, toolgate_audit::chain::sealed_column(r, c)))
                    .collect(),
            })
            .collect();
        verify_rows(1, GENESIS, stored.into_iter().map(Ok))
    }

    fn stats(&mut self, since_ms: u64) -> Result<Stats, StoreError> {
        let rows = self.rows()?;
        let calls: Vec<&Record> = rows
            .iter()
            .map(|(r, _, _)| r)
            .filter(|r| {
                r.kind == toolgate_audit::Kind::Call
                    && r.method.as_deref() == Some("tools/call")
                    && r.at_ms >= since_ms
                    && r.decision.as_deref() != Some("require_approval")
            })
            .collect();
        let denied: Vec<&&Record> = calls
            .iter()
            .filter(|r| r.decision.as_deref() == Some("deny"))
            .collect();
        let mut by_rule: std::collections::BTreeMap<String, u64> = Default::default();
        for r in &denied {
            *by_rule
                .entry(r.rule.clone().unwrap_or_default())
                .or_default() += 1;
        }
        let mut top: Vec<(String, u64)> = by_rule.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(5);
        Ok(Stats {
            calls: calls.len() as u64,
            denied: denied.len() as u64,
            top_deny_rules: top,
        })
    }
}
