//! [`MemoryState`]: the shared state in this process's memory, for tests of what sits on
//! top of a [`StateStore`] (the gateway's call pipeline) without files or sockets. It
//! passes the same contract suite as SQLite and Redis (`tests/state_contract.rs`), so a
//! test on it exercises the store's real semantics, and it can be taken down and brought
//! back ([`Outage`]) to test what a store failure does.
//!
//! Nothing survives the process: it is not a backend users can choose.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::admin::{AdminToken, Role};
use crate::approvals::{Approval, ApprovalStatus, DecideError, NewApproval};
use crate::connections::{Connection, PendingConnection, PENDING_TTL_MS};
use crate::grants::{constant_time_eq, hash_token, new_token, random_hex, Grant, NewGrant};
use crate::policy_versions::PolicyVersion;
use crate::sqlite::{Observed, Pin};
use crate::state::{
    AdminStore, ApprovalStore, ConnectionStore, GrantStore, PinStore, PolicyHistory, StateStore,
};
use crate::StoreError;

/// A switch that makes a store (or an audit log) fail every call while it is on, as an
/// unreachable server would; cloned handles share it.
#[derive(Debug, Clone, Default)]
pub struct Outage(Arc<AtomicBool>);

impl Outage {
    /// Takes the store down (`true`) or brings it back (`false`).
    pub fn set(&self, down: bool) {
        self.0.store(down, Ordering::SeqCst);
    }

    /// True while the store is down.
    pub fn is_down(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Grants with their token hash, in creation order.
    grants: Vec<(Grant, String)>,
    /// Admin tokens with their token hash, in creation order.
    admins: Vec<(AdminToken, String)>,
    /// Pins by server, then tool.
    pins: BTreeMap<String, BTreeMap<String, Pin>>,
    /// Capability sets seen per server.
    caps: BTreeMap<String, Vec<String>>,
    /// Approvals in creation order.
    approvals: Vec<Approval>,
    /// Policy versions in the order stored.
    versions: Vec<PolicyVersion>,
    /// Upstream connections by (server, identity).
    connections: BTreeMap<(String, String), Connection>,
    /// Consent flows by state.
    pending: BTreeMap<String, PendingConnection>,
    /// Client registrations by (server, issuer).
    registrations: BTreeMap<(String, String), Vec<u8>>,
    /// Refresh locks by (server, identity): holder and until when.
    refresh_locks: BTreeMap<(String, String), (String, u64)>,
}

type Watcher = Box<dyn Fn(&str) + Send + Sync>;

/// The shared state in memory (see the module documentation).
#[derive(Default)]
pub struct MemoryState {
    inner: Mutex<Inner>,
    version: AtomicI64,
    watchers: Mutex<Vec<Watcher>>,
    outage: Outage,
}

impl std::fmt::Debug for MemoryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryState").finish_non_exhaustive()
    }
}

impl MemoryState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The switch that takes this store down: while it is on, every call fails with
    /// [`StoreError::Interrupted`], as a store that cannot be reached.
    pub fn outage(&self) -> Outage {
        self.outage.clone()
    }

    /// The state, or the outage.
    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        if self.outage.is_down() {
            return Err(StoreError::Interrupted(
                "the in-memory store is down".into(),
            ));
        }
        Ok(self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Grants, admin tokens, pins or connections changed: caches keyed by the version are
    /// stale.
    fn changed(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }
}

fn not_found(what: impl Into<String>) -> StoreError {
    StoreError::NotFound(what.into())
}

impl GrantStore for MemoryState {
    fn create_grant(&self, new: &NewGrant, now_ms: u64) -> Result<(Grant, String), StoreError> {
        let (grant, token) = new.mint(now_ms)?;
        self.lock()?
            .grants
            .push((grant.clone(), hash_token(&token)));
        self.changed();
        Ok((grant, token))
    }

    fn list_grants(&self) -> Result<Vec<Grant>, StoreError> {
        Ok(self.lock()?.grants.iter().map(|(g, _)| g.clone()).collect())
    }

    fn grant_count(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.grants.len() as u64)
    }

    fn grant(&self, id: &str) -> Result<Grant, StoreError> {
        self.lock()?
            .grants
            .iter()
            .find(|(g, _)| g.id == id)
            .map(|(g, _)| g.clone())
            .ok_or_else(|| not_found(id))
    }

    fn rotate_grant(&self, id: &str) -> Result<(Grant, String), StoreError> {
        let token = new_token()?;
        let mut inner = self.lock()?;
        let (g, hash) = inner
            .grants
            .iter_mut()
            .find(|(g, _)| g.id == id)
            .ok_or_else(|| not_found(id))?;
        *hash = hash_token(&token);
        g.token_prefix = token.chars().take(9).collect();
        let g = g.clone();
        drop(inner);
        self.changed();
        Ok((g, token))
    }

    fn revoke_grant(&self, id: &str, now_ms: u64) -> Result<Grant, StoreError> {
        let mut inner = self.lock()?;
        let (g, _) = inner
            .grants
            .iter_mut()
            .find(|(g, _)| g.id == id)
            .ok_or_else(|| not_found(id))?;
        g.revoked_at_ms.get_or_insert(now_ms);
        let g = g.clone();
        drop(inner);
        self.changed();
        Ok(g)
    }

    fn grant_by_token(&self, token: &str) -> Result<Option<Grant>, StoreError> {
        let hash = hash_token(token);
        Ok(self
            .lock()?
            .grants
            .iter()
            .find(|(_, h)| constant_time_eq(h.as_bytes(), hash.as_bytes()))
            .map(|(g, _)| g.clone()))
    }

    fn grant_for_identity(
        &self,
        server: &str,
        identity: &str,
        now_ms: u64,
    ) -> Result<Option<Grant>, StoreError> {
        Ok(self
            .lock()?
            .grants
            .iter()
            .rev()
            .map(|(g, _)| g)
            .filter(|g| g.server == server && g.identity == identity)
            .find(|g| g.status(now_ms) == crate::GrantStatus::Active)
            .cloned())
    }
}

impl AdminStore for MemoryState {
    fn create_admin_token(
        &self,
        name: &str,
        role: Role,
        now_ms: u64,
    ) -> Result<(AdminToken, String), StoreError> {
        let (t, token) = AdminToken::mint(name, role, now_ms)?;
        self.lock()?.admins.push((t.clone(), hash_token(&token)));
        self.changed();
        Ok((t, token))
    }

    fn admin_tokens(&self) -> Result<Vec<AdminToken>, StoreError> {
        Ok(self.lock()?.admins.iter().map(|(t, _)| t.clone()).collect())
    }

    fn revoke_admin_token(&self, id: &str, now_ms: u64) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let (t, _) = inner
            .admins
            .iter_mut()
            .find(|(t, _)| t.id == id)
            .ok_or_else(|| not_found(id))?;
        t.revoked_at_ms.get_or_insert(now_ms);
        drop(inner);
        self.changed();
        Ok(())
    }

    fn admin_by_token(&self, token: &str) -> Result<Option<AdminToken>, StoreError> {
        let hash = hash_token(token);
        Ok(self
            .lock()?
            .admins
            .iter()
            .find(|(t, h)| {
                constant_time_eq(h.as_bytes(), hash.as_bytes()) && t.revoked_at_ms.is_none()
            })
            .map(|(t, _)| t.clone()))
    }
}

impl PinStore for MemoryState {
    fn pins(&self, server: &str) -> Result<Vec<Pin>, StoreError> {
        Ok(self
            .lock()?
            .pins
            .get(server)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default())
    }

    fn observe_tools(
        &self,
        server: &str,
        tools: &[(String, String, String)],
        now_ms: u64,
    ) -> Result<Observed, StoreError> {
        let mut inner = self.lock()?;
        let pins = inner.pins.entry(server.to_string()).or_default();
        let first_sight = pins.is_empty();
        let mut out = Observed::default();
        for (tool, hash, definition) in tools {
            let pin = pins.entry(tool.clone()).or_insert_with(|| Pin {
                server: server.to_string(),
                tool: tool.clone(),
                hash: None,
                definition: None,
                pinned_at_ms: None,
                pending_hash: None,
                pending_definition: None,
            });
            if pin.hash.is_none() && pin.pending_hash.is_none() {
                if first_sight {
                    pin.hash = Some(hash.clone());
                    pin.definition = Some(definition.clone());
                    pin.pinned_at_ms = Some(now_ms);
                } else {
                    pin.pending_hash = Some(hash.clone());
                    pin.pending_definition = Some(definition.clone());
                    out.changed
                        .push((tool.clone(), "new since pinning".to_string()));
                }
            } else if pin.hash.as_deref() == Some(hash.as_str()) {
                // Back to the approved definition: nothing pending any more.
                pin.pending_hash = None;
                pin.pending_definition = None;
            } else if pin.pending_hash.as_deref() != Some(hash.as_str()) {
                pin.pending_hash = Some(hash.clone());
                pin.pending_definition = Some(definition.clone());
                let was = pin.hash.as_deref().unwrap_or("none");
                out.changed.push((
                    tool.clone(),
                    format!("definition changed: pinned {was}, now {hash}"),
                ));
            }
            out.pins.push(pin.clone());
        }
        drop(inner);
        self.changed();
        Ok(out)
    }

    fn is_held(&self, server: &str, tool: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()?
            .pins
            .get(server)
            .and_then(|m| m.get(tool))
            .is_some_and(Pin::is_held))
    }

    fn approve_pin(&self, server: &str, tool: &str, now_ms: u64) -> Result<Pin, StoreError> {
        let mut inner = self.lock()?;
        let pin = inner
            .pins
            .get_mut(server)
            .and_then(|m| m.get_mut(tool))
            .filter(|p| p.is_held())
            .ok_or_else(|| {
                not_found(format!(
                    "{server}/{tool} (no change is waiting for approval)"
                ))
            })?;
        pin.hash = pin.pending_hash.take();
        pin.definition = pin.pending_definition.take();
        pin.pinned_at_ms = Some(now_ms);
        let pin = pin.clone();
        drop(inner);
        self.changed();
        Ok(pin)
    }

    fn observe_capabilities(
        &self,
        server: &str,
        caps: &str,
        _now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock()?;
        let seen = inner.caps.entry(server.to_string()).or_default();
        if seen.iter().any(|c| c == caps) {
            return Ok(false);
        }
        seen.push(caps.to_string());
        Ok(true)
    }
}

impl ApprovalStore for MemoryState {
    fn request_approval(
        &self,
        new: &NewApproval,
        now_ms: u64,
    ) -> Result<(Approval, bool), StoreError> {
        let mut inner = self.lock()?;
        if let Some(a) = inner.approvals.iter().find(|a| {
            a.grant_id == new.grant_id
                && a.tool == new.tool
                && a.arg_hash == new.arg_hash
                && a.status == ApprovalStatus::Pending
                && a.expires_at_ms > now_ms
        }) {
            return Ok((a.clone(), false));
        }
        let a = Approval {
            id: format!("ap_{}", random_hex(8)?),
            server: new.server.clone(),
            grant_id: new.grant_id.clone(),
            grant_label: new.grant_label.clone(),
            identity: new.identity.clone(),
            tool: new.tool.clone(),
            arguments: new.arguments.clone(),
            arg_hash: new.arg_hash.clone(),
            policy: new.policy.clone(),
            policy_version: new.policy_version.clone(),
            rule: new.rule.clone(),
            required: new.required.max(1),
            timeout_ms: new.timeout_ms,
            status: ApprovalStatus::Opening,
            reason: None,
            decided_by: None,
            approvers: vec![],
            created_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(new.timeout_ms),
            decided_at_ms: None,
            used_at_ms: None,
        };
        inner.approvals.push(a.clone());
        Ok((a, true))
    }

    fn open_approval(&self, id: &str) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if let Some(a) = inner
            .approvals
            .iter_mut()
            .find(|a| a.id == id && a.status == ApprovalStatus::Opening)
        {
            a.status = ApprovalStatus::Pending;
        }
        Ok(())
    }

    fn approval(&self, id: &str) -> Result<Approval, StoreError> {
        self.lock()?
            .approvals
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    fn approvals(&self, waiting_only: bool, now_ms: u64) -> Result<Vec<Approval>, StoreError> {
        let inner = self.lock()?;
        let newest_first = inner.approvals.iter().rev();
        Ok(if waiting_only {
            newest_first
                .filter(|a| a.status == ApprovalStatus::Pending && a.expires_at_ms > now_ms)
                .cloned()
                .collect()
        } else {
            newest_first.take(1000).cloned().collect()
        })
    }

    fn approve(
        &self,
        id: &str,
        approver: &str,
        now_ms: u64,
    ) -> Result<Result<Approval, DecideError>, StoreError> {
        let mut inner = self.lock()?;
        let Some(a) = inner.approvals.iter_mut().find(|a| a.id == id) else {
            return Ok(Err(DecideError::NotFound(id.to_string())));
        };
        let status = a.status_at(now_ms);
        if status != ApprovalStatus::Pending {
            if status == ApprovalStatus::Expired && a.status == ApprovalStatus::Pending {
                a.status = ApprovalStatus::Expired;
            }
            return Ok(Err(DecideError::NotPending {
                id: id.to_string(),
                status: status.as_str(),
            }));
        }
        if a.approvers.iter().any(|w| w == approver) {
            return Ok(Err(DecideError::AlreadyApproved {
                id: id.to_string(),
                approver: approver.to_string(),
                required: a.required,
            }));
        }
        a.approvers.push(approver.to_string());
        if a.approvers.len() as u64 >= u64::from(a.required) {
            a.status = ApprovalStatus::Approved;
            a.decided_by = Some(approver.to_string());
            a.decided_at_ms = Some(now_ms);
            a.expires_at_ms = now_ms.saturating_add(a.timeout_ms);
        }
        Ok(Ok(a.clone()))
    }

    fn deny_approval(
        &self,
        id: &str,
        approver: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<Result<Approval, DecideError>, StoreError> {
        let mut inner = self.lock()?;
        let Some(a) = inner.approvals.iter_mut().find(|a| a.id == id) else {
            return Ok(Err(DecideError::NotFound(id.to_string())));
        };
        if a.status != ApprovalStatus::Pending || a.expires_at_ms <= now_ms {
            return Ok(Err(DecideError::NotPending {
                id: id.to_string(),
                status: a.status_at(now_ms).as_str(),
            }));
        }
        a.status = ApprovalStatus::Denied;
        a.reason = Some(reason.to_string());
        a.decided_by = Some(approver.to_string());
        a.decided_at_ms = Some(now_ms);
        Ok(Ok(a.clone()))
    }

    fn expire_approval(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let mut inner = self.lock()?;
        match inner
            .approvals
            .iter_mut()
            .find(|a| a.id == id && a.status == ApprovalStatus::Pending)
        {
            Some(a) => {
                a.status = ApprovalStatus::Expired;
                a.decided_at_ms = Some(now_ms);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn take_approved(
        &self,
        grant_id: &str,
        tool: &str,
        arg_hash: &str,
        id: Option<&str>,
        now_ms: u64,
    ) -> Result<Option<Approval>, StoreError> {
        let mut inner = self.lock()?;
        let found = inner
            .approvals
            .iter_mut()
            .filter(|a| {
                a.grant_id == grant_id
                    && a.tool == tool
                    && a.arg_hash == arg_hash
                    && a.status == ApprovalStatus::Approved
                    && a.expires_at_ms > now_ms
                    && id.is_none_or(|id| a.id == id)
            })
            .min_by_key(|a| a.decided_at_ms);
        Ok(found.map(|a| {
            a.status = ApprovalStatus::Used;
            a.used_at_ms = Some(now_ms);
            a.clone()
        }))
    }
}

impl PolicyHistory for MemoryState {
    fn record_policy_version(&self, v: &PolicyVersion) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if !inner
            .versions
            .iter()
            .any(|o| o.name == v.name && o.version == v.version)
        {
            inner.versions.push(v.clone());
        }
        Ok(())
    }

    fn policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        let inner = self.lock()?;
        let mut out: Vec<(usize, PolicyVersion)> = inner
            .versions
            .iter()
            .enumerate()
            .filter(|(_, v)| v.name == name)
            .map(|(i, v)| (i, v.clone()))
            .collect();
        out.sort_by(|(ia, a), (ib, b)| b.created_at_ms.cmp(&a.created_at_ms).then(ib.cmp(ia)));
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    fn policy_version(&self, name: &str, version: &str) -> Result<PolicyVersion, StoreError> {
        self.lock()?
            .versions
            .iter()
            .find(|v| v.name == name && v.version == version)
            .cloned()
            .ok_or_else(|| not_found(format!("policy `{name}` version `{version}`")))
    }
}

impl ConnectionStore for MemoryState {
    fn put_connection(&self, c: &Connection) -> Result<(), StoreError> {
        self.lock()?
            .connections
            .insert((c.server.clone(), c.identity.clone()), c.clone());
        self.changed();
        Ok(())
    }

    fn connection(&self, server: &str, identity: &str) -> Result<Option<Connection>, StoreError> {
        Ok(self
            .lock()?
            .connections
            .get(&(server.to_string(), identity.to_string()))
            .cloned())
    }

    fn connections(&self) -> Result<Vec<Connection>, StoreError> {
        Ok(self.lock()?.connections.values().cloned().collect())
    }

    fn delete_connection(&self, server: &str, identity: &str) -> Result<bool, StoreError> {
        let gone = {
            let mut inner = self.lock()?;
            inner
                .pending
                .retain(|_, p| !(p.server == server && p.identity == identity));
            inner
                .connections
                .remove(&(server.to_string(), identity.to_string()))
                .is_some()
        };
        if gone {
            self.changed();
        }
        Ok(gone)
    }

    fn swap_connection(
        &self,
        expected: &Connection,
        next: Option<&Connection>,
    ) -> Result<bool, StoreError> {
        let key = (expected.server.clone(), expected.identity.clone());
        {
            let mut inner = self.lock()?;
            if inner.connections.get(&key).map(|c| &c.sealed) != Some(&expected.sealed) {
                return Ok(false);
            }
            match next {
                Some(c) => inner.connections.insert(key, c.clone()),
                None => inner.connections.remove(&key),
            };
        }
        self.changed();
        Ok(true)
    }

    fn begin_connection(&self, p: &PendingConnection) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let oldest = p.created_at_ms.saturating_sub(PENDING_TTL_MS);
        inner.pending.retain(|_, o| {
            !(o.server == p.server && o.identity == p.identity) && o.created_at_ms >= oldest
        });
        inner.pending.insert(p.state.clone(), p.clone());
        Ok(())
    }

    fn take_pending(
        &self,
        state: &str,
        now_ms: u64,
    ) -> Result<Option<PendingConnection>, StoreError> {
        let p = self.lock()?.pending.remove(state);
        Ok(p.filter(|p| now_ms < p.created_at_ms.saturating_add(PENDING_TTL_MS)))
    }

    fn put_registration(
        &self,
        server: &str,
        issuer: &str,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.lock()?
            .registrations
            .insert((server.to_string(), issuer.to_string()), sealed.to_vec());
        Ok(())
    }

    fn lock_refresh(
        &self,
        server: &str,
        identity: &str,
        holder: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock()?;
        let key = (server.to_string(), identity.to_string());
        match inner.refresh_locks.get(&key) {
            Some((h, until)) if h != holder && *until > now_ms => Ok(false),
            _ => {
                inner
                    .refresh_locks
                    .insert(key, (holder.to_string(), now_ms.saturating_add(ttl_ms)));
                Ok(true)
            }
        }
    }

    fn unlock_refresh(&self, server: &str, identity: &str, holder: &str) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let key = (server.to_string(), identity.to_string());
        if inner
            .refresh_locks
            .get(&key)
            .is_some_and(|(h, _)| h == holder)
        {
            inner.refresh_locks.remove(&key);
        }
        Ok(())
    }

    fn registration(&self, server: &str, issuer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lock()?
            .registrations
            .get(&(server.to_string(), issuer.to_string()))
            .cloned())
    }
}

impl StateStore for MemoryState {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn data_version(&self) -> Result<i64, StoreError> {
        drop(self.lock()?);
        Ok(self.version.load(Ordering::SeqCst))
    }

    fn data_version_now(&self) -> Option<i64> {
        (!self.outage.is_down()).then(|| self.version.load(Ordering::SeqCst))
    }

    fn watch_decisions(&self, on_decided: Box<dyn Fn(&str) + Send + Sync>) {
        self.watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(on_decided);
    }

    fn announce_decided(&self, id: &str) {
        for w in self
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            w(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_fails_every_call_until_it_ends() {
        let s = MemoryState::new();
        let out = s.outage();
        out.set(true);
        assert!(s.list_grants().is_err());
        assert!(s.data_version().is_err());
        assert_eq!(s.data_version_now(), None);
        out.set(false);
        assert!(s.list_grants().unwrap().is_empty());
    }
}
