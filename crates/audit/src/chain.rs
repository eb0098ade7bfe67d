//! Verifying the chain: each record's hash covers its content and the hash before it, so an
//! edit, a deletion, an insertion or a reordering breaks the chain at the first bad record.

use crate::record::{hash_body, Record};

/// One record as stored: its position and hash as columns, its sealed content as the
/// canonical body, and the columns kept beside it for queries (which must agree).
#[derive(Debug, Clone, Default)]
pub struct StoredRecord {
    /// The `seq` column.
    pub seq: u64,
    /// The canonical encoding, as written.
    pub body: String,
    /// The `hash` column.
    pub hash: String,
    /// The query columns: (name, value) pairs, each compared with the sealed record.
    pub columns: Vec<(&'static str, Option<String>)>,
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record #{seq}: {why}")]
pub struct Break {
    /// The first bad record.
    pub seq: u64,
    /// What is wrong with it.
    pub why: String,
}

/// Walks stored records in `seq` order.
#[derive(Debug, Clone)]
pub struct Verifier {
    prev_hash: String,
    prev_seq: Option<u64>,
    next_seq: u64,
    checked: u64,
}

/// The value of a query column as the sealed record has it (what a backend's column
/// must hold for the record to verify).
pub fn sealed_column(r: &Record, name: &str) -> Option<String> {
    match name {
        "at_ms" => Some(r.at_ms.to_string()),
        "kind" => Some(r.kind.as_str().to_string()),
        "grant_id" => r.grant_id.clone(),
        "grant_label" => r.grant_label.clone(),
        "identity" => r.identity.clone(),
        "server" => r.server.clone(),
        "method" => r.method.clone(),
        "tool" => r.tool.clone(),
        "decision" => r.decision.clone(),
        "rule" => r.rule.clone(),
        "call_seq" => r.call_seq.map(|s| s.to_string()),
        _ => None,
    }
}

impl Verifier {
    /// Starts at the beginning of the chain (`first_seq` 1 and [`crate::GENESIS`]), or at
    /// a retention anchor: the first kept record and the hash it must follow.
    pub fn new(first_seq: u64, prev_hash: &str) -> Self {
        Verifier {
            prev_hash: prev_hash.to_string(),
            prev_seq: None,
            next_seq: first_seq,
            checked: 0,
        }
    }

    /// How many records passed.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The hash of the last record that passed (the head of the chain so far).
    pub fn head(&self) -> &str {
        &self.prev_hash
    }

    /// Checks the next record.
    pub fn push(&mut self, row: &StoredRecord) -> Result<(), Break> {
        let fail = |why: String| Break { seq: row.seq, why };
        let after = match self.prev_seq {
            Some(p) => format!("record #{p}"),
            None => "the start of the log".to_string(),
        };
        if row.seq > self.next_seq {
            let missing = if row.seq - self.next_seq == 1 {
                format!("record #{} is missing", self.next_seq)
            } else {
                format!("records #{} to #{} are missing", self.next_seq, row.seq - 1)
            };
            return Err(fail(format!("{missing} (deleted)")));
        }
        if row.seq < self.next_seq {
            return Err(fail(format!("out of order after {after}")));
        }
        let record = Record::from_body(&row.body)
            .map_err(|e| fail(format!("its content is not a valid record (edited): {e}")))?;
        if hash_body(&row.body) != row.hash {
            return Err(fail(
                "edited: its content does not match its hash".to_string(),
            ));
        }
        if record.canonical() != row.body {
            return Err(fail(
                "edited: its content is not in canonical form".to_string(),
            ));
        }
        if record.seq != row.seq {
            return Err(fail(format!(
                "moved: it was written as record #{}",
                record.seq
            )));
        }
        if record.prev_hash != self.prev_hash {
            return Err(fail(format!(
                "does not follow {after}: a record was inserted, deleted or moved here, or {after} was edited"
            )));
        }
        for (name, value) in &row.columns {
            let sealed = sealed_column(&record, name);
            if &sealed != value {
                return Err(fail(format!(
                    "edited: column `{name}` is {} but the sealed record has {}",
                    show(value),
                    show(&sealed)
                )));
            }
        }
        self.prev_hash = row.hash.clone();
        self.prev_seq = Some(row.seq);
        self.next_seq = row.seq + 1;
        self.checked += 1;
        Ok(())
    }
}

fn show(v: &Option<String>) -> String {
    match v {
        Some(s) => format!("{s:?}"),
        None => "nothing".to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::record::{Kind, GENESIS};

    fn chain(n: u64) -> Vec<StoredRecord> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let r = Record {
                    seq,
                    at_ms: 1000 + seq,
                    kind: Kind::Call,
                    tool: Some(format!("t{seq}")),
                    decision: Some("allow".into()),
                    prev_hash: prev.clone(),
                    ..Record::default()
                };
                let body = r.canonical();
                let hash = hash_body(&body);
                prev = hash.clone();
                StoredRecord {
                    seq,
                    body,
                    hash,
                    columns: vec![("tool", r.tool.clone()), ("decision", r.decision.clone())],
                }
            })
            .collect()
    }

    fn verify(rows: &[StoredRecord]) -> Result<u64, Break> {
        let mut v = Verifier::new(1, GENESIS);
        for r in rows {
            v.push(r)?;
        }
        Ok(v.checked())
    }

    #[test]
    fn intact_chain_passes() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn an_edit_is_found() {
        let mut rows = chain(5);
        rows[2].body = rows[2].body.replace("\"allow\"", "\"deny\"");
        assert_eq!(verify(&rows).unwrap_err().seq, 3);
        // Re-hashing the edited record moves the break to the next one.
        let mut rows = chain(5);
        rows[2].body = rows[2].body.replace("\"allow\"", "\"deny\"");
        rows[2].hash = hash_body(&rows[2].body);
        rows[2].columns[1].1 = Some("deny".into());
        assert_eq!(verify(&rows).unwrap_err().seq, 4);
        // A query column changed alone.
        let mut rows = chain(5);
        rows[1].columns[1].1 = Some("deny".into());
        let b = verify(&rows).unwrap_err();
        assert_eq!(b.seq, 2);
        assert!(b.why.contains("column `decision`"), "{b}");
    }

    #[test]
    fn deletion_insertion_and_reorder_are_found() {
        let mut rows = chain(5);
        rows.remove(2);
        let b = verify(&rows).unwrap_err();
        assert_eq!((b.seq, b.why.contains("missing")), (4, true));

        let mut rows = chain(5);
        let mut extra = rows[1].clone();
        extra.seq = 3;
        for r in rows.iter_mut().skip(2) {
            r.seq += 1;
        }
        rows.insert(2, extra);
        assert_eq!(verify(&rows).unwrap_err().seq, 3);

        let mut rows = chain(5);
        rows.swap(1, 2);
        let (a, b) = (rows[1].seq, rows[2].seq);
        rows[1].seq = b;
        rows[2].seq = a;
        assert_eq!(verify(&rows).unwrap_err().seq, 2);
    }
}
