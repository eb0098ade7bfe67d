//! The approval queue in Redis.

use super::*;

impl ApprovalStore for RedisState {
    fn request_approval(
        &self,
        new: &NewApproval,
        now_ms: u64,
    ) -> Result<(Approval, bool), StoreError> {
        let id = format!("ap_{}", random_hex(8)?);
        let expires = now_ms.saturating_add(new.timeout_ms);
        let mut fields: Vec<(&str, String)> = vec![
            ("id", id.clone()),
            ("server", new.server.clone()),
            ("grant_id", new.grant_id.clone()),
            ("grant_label", new.grant_label.clone()),
            ("identity", new.identity.clone()),
            ("tool", new.tool.clone()),
            ("arguments", new.arguments.clone()),
            ("arg_hash", new.arg_hash.clone()),
            ("rule", new.rule.clone()),
            ("required", new.required.max(1).to_string()),
            ("timeout_ms", new.timeout_ms.to_string()),
            ("status", "opening".to_string()),
            ("created_at_ms", now_ms.to_string()),
            ("expires_at_ms", expires.to_string()),
        ];
        if let Some(p) = &new.policy {
            fields.push(("policy", p.clone()));
        }
        if let Some(v) = &new.policy_version {
            fields.push(("policy_version", v.clone()));
        }
        let (created, _, f, votes): (i64, String, Fields, Vec<String>) = self.with(|c| {
            let mut inv = self.scripts.request.prepare_invoke();
            inv.key(call_key(&new.grant_id, &new.tool, &new.arg_hash))
                .key(ALL_APPROVALS)
                .arg(now_ms)
                .arg(&id)
                .arg(expires.saturating_add(KEEP_MS));
            for (k, v) in &fields {
                inv.arg(*k).arg(v);
            }
            inv.invoke(c)
        })?;
        let a = approval_from(&f, votes).ok_or_else(|| corrupt("an approval"))?;
        Ok((a, created == 1))
    }

    fn open_approval(&self, id: &str) -> Result<(), StoreError> {
        let _: i64 = self.with(|c| {
            self.scripts
                .open
                .key(approval_key(id))
                .key(PENDING)
                .arg(id)
                .invoke(c)
        })?;
        Ok(())
    }

    fn approval(&self, id: &str) -> Result<Approval, StoreError> {
        self.approvals_by_ids(&[id.to_string()])?
            .pop()
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    fn approvals(&self, waiting_only: bool, now_ms: u64) -> Result<Vec<Approval>, StoreError> {
        let index = if waiting_only { PENDING } else { ALL_APPROVALS };
        let ids: Vec<String> = self.read(|c| {
            redis::cmd("ZREVRANGE")
                .arg(index)
                .arg(0)
                .arg(if waiting_only { -1 } else { 999 })
                .query(c)
        })?;
        let list: Vec<Approval> = self
            .approvals_by_ids(&ids)?
            .into_iter()
            .filter(|a| !waiting_only || a.status_at(now_ms) == ApprovalStatus::Pending)
            .collect();
        if list.len() < ids.len() && (waiting_only || ids.len() < 1000) {
            // Gone from Redis, or (in the pending index) past their time and never to be
            // pending again: drop them from the index.
            let stale: Vec<&String> = ids
                .iter()
                .filter(|id| !list.iter().any(|a| &a.id == *id))
                .collect();
            self.with(|c| redis::cmd("ZREM").arg(index).arg(&stale).query::<i64>(c))?;
        }
        Ok(list)
    }

    fn approve(
        &self,
        id: &str,
        approver: &str,
        now_ms: u64,
    ) -> Result<Result<Approval, DecideError>, StoreError> {
        let answer: Vec<redis::Value> = self.with(|c| {
            self.scripts
                .approve
                .key(approval_key(id))
                .key(votes_key(id))
                .key(PENDING)
                .arg(id)
                .arg(approver)
                .arg(now_ms)
                .arg(KEEP_MS)
                .invoke(c)
        })?;
        let text = |v: Option<&redis::Value>| -> String {
            v.and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
                .unwrap_or_default()
        };
        match (text(answer.first()).as_str(), &answer[..]) {
            ("ok", [_, f, votes]) => {
                let parsed: Option<(Fields, Vec<String>)> = redis::from_redis_value(f.clone())
                    .ok()
                    .zip(redis::from_redis_value(votes.clone()).ok());
                let (f, votes) = parsed.ok_or_else(|| corrupt("an approval"))?;
                approval_from(&f, votes)
                    .map(Ok)
                    .ok_or_else(|| corrupt("an approval"))
            }
            ("notfound", _) => Ok(Err(DecideError::NotFound(id.to_string()))),
            ("notpending", _) => Ok(Err(DecideError::NotPending {
                id: id.to_string(),
                status: status_name(&text(answer.get(1))),
            })),
            ("already", _) => Ok(Err(DecideError::AlreadyApproved {
                id: id.to_string(),
                approver: approver.to_string(),
                required: text(answer.get(1)).parse().unwrap_or(1),
            })),
            (other, _) => Err(self.err(format!("unexpected script answer {other:?}"))),
        }
    }

    fn deny_approval(
        &self,
        id: &str,
        approver: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<Result<Approval, DecideError>, StoreError> {
        let denied: Option<(Fields, Vec<String>)> = self.with(|c| {
            self.scripts
                .deny
                .key(approval_key(id))
                .key(PENDING)
                .arg(id)
                .arg(reason)
                .arg(approver)
                .arg(now_ms)
                .invoke(c)
        })?;
        match denied {
            Some((f, votes)) => approval_from(&f, votes)
                .map(Ok)
                .ok_or_else(|| corrupt("an approval")),
            None => match self.approval(id) {
                Ok(a) => Ok(Err(DecideError::NotPending {
                    id: id.to_string(),
                    status: a.status_at(now_ms).as_str(),
                })),
                Err(StoreError::NotFound(_)) => Ok(Err(DecideError::NotFound(id.to_string()))),
                Err(e) => Err(e),
            },
        }
    }

    fn expire_approval(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let n: i64 = self.with(|c| {
            self.scripts
                .expire
                .key(approval_key(id))
                .key(PENDING)
                .arg(id)
                .arg(now_ms)
                .invoke(c)
        })?;
        Ok(n == 1)
    }

    fn take_approved(
        &self,
        grant_id: &str,
        tool: &str,
        arg_hash: &str,
        id: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<Approval>, StoreError> {
        let used: Option<(Fields, Vec<String>)> = self.with(|c| {
            self.scripts
                .take
                .key(call_key(grant_id, tool, arg_hash))
                .arg(now_ms)
                .arg(id.unwrap_or(""))
                .invoke(c)
        })?;
        match used {
            Some((f, votes)) => Ok(Some(
                approval_from(&f, votes).ok_or_else(|| corrupt("an approval"))?,
            )),
            None => Ok(None),
        }
    }
}
