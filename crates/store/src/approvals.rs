//! The approval queue: calls held for a person's decision, in the store so that the CLI (in
//! another process) and the gateway see the same queue.

use rusqlite::{params, OptionalExtension};

use crate::grants::random_hex;
use crate::sqlite::SqliteStore;
use crate::state::ApprovalStore;
use crate::StoreError;

/// The approval table (created with the store's schema).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    grant_label TEXT NOT NULL,
    identity TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    arg_hash TEXT NOT NULL,
    policy TEXT,
    policy_version TEXT,
    rule TEXT NOT NULL,
    required INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    decided_by TEXT,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    decided_at_ms INTEGER,
    used_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS approvals_call ON approvals(grant_id, tool, arg_hash);
CREATE TABLE IF NOT EXISTS approval_votes (
    approval_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (approval_id, approver)
);
";

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalStatus {
    /// Just created: not shown to approvers until its `requested` audit record is written
    /// (see [`ApprovalStore::open_approval`]), so the audit log keeps cause before effect.
    Opening,
    /// Waiting for approvers.
    Pending,
    /// Approved; the call may run once (until it expires).
    Approved,
    /// Denied by an approver.
    Denied,
    /// Nobody decided in time, or an approved call was not made in time.
    Expired,
    /// Approved and the call ran.
    Used,
}

impl ApprovalStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Opening => "opening",
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Used => "used",
        }
    }

    pub(crate) fn parse(s: &str) -> ApprovalStatus {
        match s {
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            "used" => ApprovalStatus::Used,
            "opening" => ApprovalStatus::Opening,
            _ => ApprovalStatus::Pending,
        }
    }
}

/// A held call and its approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// `ap_…`.
    pub id: String,
    /// The server.
    pub server: String,
    /// The grant that made the call.
    pub grant_id: String,
    /// Its label.
    pub grant_label: String,
    /// Its identity.
    pub identity: String,
    /// The tool.
    pub tool: String,
    /// The arguments as shown to approvers (redaction applied), JSON.
    pub arguments: String,
    /// SHA-256 of the exact arguments: an approval is for these arguments only.
    pub arg_hash: String,
    /// The policy.
    pub policy: Option<String>,
    /// Its version.
    pub policy_version: Option<String>,
    /// The rule that asked for approval.
    pub rule: String,
    /// How many distinct approvers are needed.
    pub required: u32,
    /// How long it waits for a decision, and how long an approval stays usable.
    pub timeout_ms: u64,
    /// Where it stands (as stored; see [`Approval::status_at`]).
    pub status: ApprovalStatus,
    /// Why it was denied.
    pub reason: Option<String>,
    /// Who denied it, or who gave the last needed approval.
    pub decided_by: Option<String>,
    /// Who approved, in order.
    pub approvers: Vec<String>,
    /// When it was asked for.
    pub created_at_ms: u64,
    /// When it expires (a pending one: no decision; an approved one: no call).
    pub expires_at_ms: u64,
    /// When it was decided.
    pub decided_at_ms: Option<u64>,
    /// When the approved call ran.
    pub used_at_ms: Option<u64>,
}

impl Approval {
    /// The audit record of an event of this approval (`requested`, `approved`, `denied`,
    /// `expired`, `used`). `approver` defaults to the approvals given so far.
    pub fn audit_record(
        &self,
        event: &str,
        approver: Option<String>,
        message: Option<String>,
        now_ms: u64,
    ) -> toolgate_audit::Record {
        toolgate_audit::Record {
            at_ms: now_ms,
            kind: toolgate_audit::Kind::Approval,
            grant_id: Some(self.grant_id.clone()),
            grant_label: Some(self.grant_label.clone()),
            identity: Some(self.identity.clone()),
            server: Some(self.server.clone()),
            tool: Some(self.tool.clone()),
            arg_hash: Some(self.arg_hash.clone()),
            decision: Some(event.to_string()),
            rule: Some(self.rule.clone()),
            approval_id: Some(self.id.clone()),
            approver: approver
                .or_else(|| (!self.approvers.is_empty()).then(|| self.approvers.join(", "))),
            message,
            ..toolgate_audit::Record::default()
        }
    }

    /// The status at `now`: pending or approved ones past their expiry count as expired.
    pub fn status_at(&self, now_ms: u64) -> ApprovalStatus {
        match self.status {
            ApprovalStatus::Opening | ApprovalStatus::Pending | ApprovalStatus::Approved
                if now_ms >= self.expires_at_ms =>
            {
                ApprovalStatus::Expired
            }
            s => s,
        }
    }
}

/// What a held call asks for.
#[derive(Debug, Clone)]
pub struct NewApproval {
    /// The server.
    pub server: String,
    /// The grant id.
    pub grant_id: String,
    /// Its label.
    pub grant_label: String,
    /// Its identity.
    pub identity: String,
    /// The tool.
    pub tool: String,
    /// Arguments as approvers see them (redacted), JSON.
    pub arguments: String,
    /// Hash of the exact arguments.
    pub arg_hash: String,
    /// The policy.
    pub policy: Option<String>,
    /// Its version.
    pub policy_version: Option<String>,
    /// The rule.
    pub rule: String,
    /// Approvers needed.
    pub required: u32,
    /// The timeout.
    pub timeout_ms: u64,
}

/// Why an approver's decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// No such approval.
    #[error("no approval `{0}`")]
    NotFound(String),
    /// It was already decided, expired or used.
    #[error("approval `{id}` is {status}, not pending")]
    NotPending {
        /// The approval.
        id: String,
        /// Its status.
        status: &'static str,
    },
    /// The same person approved twice.
    #[error("`{approver}` already approved `{id}`; it needs {required} distinct approvers")]
    AlreadyApproved {
        /// The approval.
        id: String,
        /// Who.
        approver: String,
        /// How many are needed.
        required: u32,
    },
}

const COLS: &str = "id, server, grant_id, grant_label, identity, tool, arguments, arg_hash, policy, policy_version, rule, required, timeout_ms, status, reason, decided_by, created_at_ms, expires_at_ms, decided_at_ms, used_at_ms";

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        id: r.get(0)?,
        server: r.get(1)?,
        grant_id: r.get(2)?,
        grant_label: r.get(3)?,
        identity: r.get(4)?,
        tool: r.get(5)?,
        arguments: r.get(6)?,
        arg_hash: r.get(7)?,
        policy: r.get(8)?,
        policy_version: r.get(9)?,
        rule: r.get(10)?,
        required: u32::try_from(r.get::<_, i64>(11)?).unwrap_or(1),
        timeout_ms: u(r.get(12)?),
        status: ApprovalStatus::parse(&r.get::<_, String>(13)?),
        reason: r.get(14)?,
        decided_by: r.get(15)?,
        approvers: vec![],
        created_at_ms: u(r.get(16)?),
        expires_at_ms: u(r.get(17)?),
        decided_at_ms: r.get::<_, Option<i64>>(18)?.map(u),
        used_at_ms: r.get::<_, Option<i64>>(19)?.map(u),
    })
}

impl SqliteStore {
    fn with_votes(conn: &rusqlite::Connection, mut a: Approval) -> rusqlite::Result<Approval> {
        let mut stmt = conn.prepare_cached(
            "SELECT approver FROM approval_votes WHERE approval_id = ?1 ORDER BY at_ms, approver",
        )?;
        a.approvers = stmt
            .query_map([&a.id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(a)
    }
}

impl ApprovalStore for SqliteStore {
    /// Holds a call: returns the pending approval for the same grant, tool and arguments
    /// if one is waiting (a retry does not ask twice), else a new one in status
    /// `opening`, which [`ApprovalStore::open_approval`] makes visible to approvers.
    fn request_approval(
        &self,
        new: &NewApproval,
        now_ms: u64,
    ) -> Result<(Approval, bool), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let existing = tx
            .query_row(
                &format!("SELECT {COLS} FROM approvals WHERE grant_id = ?1 AND tool = ?2 AND arg_hash = ?3 AND status = 'pending' AND expires_at_ms > ?4 ORDER BY created_at_ms LIMIT 1"),
                params![new.grant_id, new.tool, new.arg_hash, i(now_ms)],
                row,
            )
            .optional()?;
        if let Some(a) = existing {
            let a = Self::with_votes(&tx, a)?;
            tx.commit()?;
            return Ok((a, false));
        }
        let id = format!("ap_{}", random_hex(8)?);
        tx.execute(
            "INSERT INTO approvals (id, server, grant_id, grant_label, identity, tool, arguments, arg_hash, policy, policy_version, rule, required, timeout_ms, status, created_at_ms, expires_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'opening', ?14, ?15)",
            params![
                id,
                new.server,
                new.grant_id,
                new.grant_label,
                new.identity,
                new.tool,
                new.arguments,
                new.arg_hash,
                new.policy,
                new.policy_version,
                new.rule,
                i64::from(new.required.max(1)),
                i(new.timeout_ms),
                i(now_ms),
                i(now_ms.saturating_add(new.timeout_ms))
            ],
        )?;
        let a = tx.query_row(
            &format!("SELECT {COLS} FROM approvals WHERE id = ?1"),
            [&id],
            row,
        )?;
        tx.commit()?;
        Ok((a, true))
    }

    /// Makes a new approval visible to approvers (`opening` → `pending`).
    fn open_approval(&self, id: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE approvals SET status = 'pending' WHERE id = ?1 AND status = 'opening'",
            [id],
        )?;
        Ok(())
    }

    /// One approval.
    fn approval(&self, id: &str) -> Result<Approval, StoreError> {
        let conn = self.conn();
        let a = conn
            .query_row(
                &format!("SELECT {COLS} FROM approvals WHERE id = ?1"),
                [id],
                row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        Ok(Self::with_votes(&conn, a)?)
    }

    /// Approvals, newest first: only those waiting (pending, not expired), or all.
    fn approvals(&self, waiting_only: bool, now_ms: u64) -> Result<Vec<Approval>, StoreError> {
        let conn = self.conn();
        let sql = if waiting_only {
            format!("SELECT {COLS} FROM approvals WHERE status = 'pending' AND expires_at_ms > ?1 ORDER BY created_at_ms DESC")
        } else {
            format!(
                "SELECT {COLS} FROM approvals WHERE ?1 >= 0 ORDER BY created_at_ms DESC LIMIT 1000"
            )
        };
        let mut stmt = conn.prepare(&sql)?;
        let list: Vec<Approval> = stmt
            .query_map([i(now_ms)], row)?
            .collect::<Result<_, _>>()?;
        list.into_iter()
            .map(|a| Self::with_votes(&conn, a).map_err(StoreError::from))
            .collect()
    }

    /// Records an approver's approval; the approval is granted once `required` distinct
    /// approvers have approved. An approved call stays usable for `timeout` from then.
    fn approve(
        &self,
        id: &str,
        approver: &str,
        now_ms: u64,
    ) -> Result<Result<Approval, DecideError>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some(a) = tx
            .query_row(
                &format!("SELECT {COLS} FROM approvals WHERE id = ?1"),
                [id],
                row,
            )
            .optional()?
        else {
            return Ok(Err(DecideError::NotFound(id.to_string())));
        };
        let status = a.status_at(now_ms);
        if status != ApprovalStatus::Pending {
            if status == ApprovalStatus::Expired && a.status == ApprovalStatus::Pending {
                tx.execute(
                    "UPDATE approvals SET status = 'expired' WHERE id = ?1",
                    [id],
                )?;
                tx.commit()?;
            }
            return Ok(Err(DecideError::NotPending {
                id: id.to_string(),
                status: status.as_str(),
            }));
        }
        let added = tx.execute(
            "INSERT OR IGNORE INTO approval_votes (approval_id, approver, at_ms) VALUES (?1, ?2, ?3)",
            params![id, approver, i(now_ms)],
        )?;
        if added == 0 {
            return Ok(Err(DecideError::AlreadyApproved {
                id: id.to_string(),
                approver: approver.to_string(),
                required: a.required,
            }));
        }
        let votes: i64 = tx.query_row(
            "SELECT COUNT(*) FROM approval_votes WHERE approval_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        if u(votes) >= u64::from(a.required) {
            tx.execute(
                "UPDATE approvals SET status = 'approved', decided_by = ?2, decided_at_ms = ?3, expires_at_ms = ?4 WHERE id = ?1",
                params![id, approver, i(now_ms), i(now_ms.saturating_add(a.timeout_ms))],
            )?;
        }
        let a = tx.query_row(
            &format!("SELECT {COLS} FROM approvals WHERE id = ?1"),
            [id],
            row,
        )?;
        let a = Self::with_votes(&tx, a)?;
        tx.commit()?;
        Ok(Ok(a))
    }

    /// Denies a pending approval with a reason the agent will read.
    fn deny_approval(
        &self,
        id: &str,
        approver: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<Result<Approval, DecideError>, StoreError> {
        let n = self.conn().execute(
            "UPDATE approvals SET status = 'denied', reason = ?2, decided_by = ?3, decided_at_ms = ?4
             WHERE id = ?1 AND status = 'pending' AND expires_at_ms > ?4",
            params![id, reason, approver, i(now_ms)],
        )?;
        let a = match self.approval(id) {
            Ok(a) => a,
            Err(StoreError::NotFound(_)) => return Ok(Err(DecideError::NotFound(id.to_string()))),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Err(DecideError::NotPending {
                id: id.to_string(),
                status: a.status_at(now_ms).as_str(),
            }));
        }
        Ok(Ok(a))
    }

    /// Marks a pending approval expired (nobody decided in time). True if it was pending.
    fn expire_approval(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE approvals SET status = 'expired', decided_at_ms = ?2 WHERE id = ?1 AND status = 'pending'",
            params![id, i(now_ms)],
        )?;
        Ok(n > 0)
    }

    /// Uses an approval once: the approved, unexpired approval for exactly this grant,
    /// tool and arguments (hash) becomes `used`. `id` narrows it to one approval.
    fn take_approved(
        &self,
        grant_id: &str,
        tool: &str,
        arg_hash: &str,
        id: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<Approval>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found = tx
            .query_row(
                &format!("SELECT {COLS} FROM approvals WHERE grant_id = ?1 AND tool = ?2 AND arg_hash = ?3 AND status = 'approved' AND expires_at_ms > ?4 AND (?5 IS NULL OR id = ?5) ORDER BY decided_at_ms LIMIT 1"),
                params![grant_id, tool, arg_hash, i(now_ms), id],
                row,
            )
            .optional()?;
        let Some(mut a) = found else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE approvals SET status = 'used', used_at_ms = ?2 WHERE id = ?1",
            params![a.id, i(now_ms)],
        )?;
        a.status = ApprovalStatus::Used;
        a.used_at_ms = Some(now_ms);
        let a = Self::with_votes(&tx, a)?;
        tx.commit()?;
        Ok(Some(a))
    }
}
