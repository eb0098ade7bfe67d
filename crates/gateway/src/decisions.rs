//! How a held call learns its approval's fate: wake-ups when an approval is decided (this
//! process, or any replica or CLI when the store publishes them), a look at the store on
//! each wake-up (and every [`POLL`] at the latest), and the denial for each way it can end.

use std::time::Duration;

use toolgate_policy::{labels, Decision};
use toolgate_store::{Approval, ApprovalStatus};

use crate::bridge::blocking;
use crate::enforce::denial_message;
pub use crate::wakeups::Decisions;

/// How often a held call looks at its approval when no wake-up came.
const POLL: Duration = Duration::from_millis(200);

/// How a held call's wait ended.
#[derive(Debug)]
pub enum Decided {
    /// Approved, and now used by this call (judge it again, then forward).
    Approved(Approval),
    /// Refused: the denial to give (rule and message) and the approval.
    Refused(Decision, Approval),
    /// The store failed.
    StoreDown(String),
}

/// Records an approver's decision (`approved`, `denied`) in the audit log, durably, then
/// wakes the held calls waiting for it here and, through the store, on every replica: the
/// one path for decisions from the admin API, the dashboard and the agent's client.
pub async fn record_and_wake(
    st: &crate::state::AppState,
    a: &Approval,
    event: &str,
    approver: &str,
    message: String,
) {
    if let Some(log) = &st.audit {
        let r = a.audit_record(
            event,
            Some(approver.to_string()),
            Some(message),
            st.now_ms(),
        );
        if let Err(e) = crate::trail::append_durable(log, r).await {
            tracing::error!("audit log: {e}");
        }
    }
    // Woken after the record, so the held call's `used` follows this `approved`.
    if a.status != ApprovalStatus::Pending {
        st.decisions.decided(&a.id);
        let id = a.id.clone();
        let _ = blocking(&st.store, move |s| {
            s.announce_decided(&id);
            Ok(())
        })
        .await;
    }
}

/// Sleeps for `POLL`, or less when approval `id` is announced as decided.
async fn nap(wake: &mut tokio::sync::broadcast::Receiver<String>, id: &str) {
    let announced = async {
        loop {
            match wake.recv().await {
                Ok(got) if got == id => return,
                Ok(_) => {}
                // Missed some: look now rather than risk missing ours.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await
                }
            }
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(POLL) => {}
        _ = announced => {}
    }
}

/// Waits until approval `id` is decided. An approved one is taken (used) for this call;
/// an expired one is marked so (and `on_expired` told, to record it).
pub async fn wait_decision(
    st: &crate::state::AppState,
    id: &str,
    on_expired: impl Fn(&Approval),
) -> Decided {
    // Subscribed before the first look, so a decision made in between is not missed.
    let (store, mut wake) = (&st.store, st.decisions.subscribe());
    loop {
        let now = st.now_ms();
        let owned = id.to_string();
        let current = match blocking(store, move |s| s.approval(&owned)).await {
            Ok(x) => x,
            Err(e) => return Decided::StoreDown(e.to_string()),
        };
        match current.status_at(now) {
            ApprovalStatus::Opening | ApprovalStatus::Pending => {}
            ApprovalStatus::Approved => {
                let (grant, tool, hash, owned) = (
                    current.grant_id.clone(),
                    current.tool.clone(),
                    current.arg_hash.clone(),
                    id.to_string(),
                );
                match blocking(store, move |s| {
                    s.take_approved(&grant, &tool, &hash, Some(&owned), now)
                })
                .await
                {
                    Ok(Some(taken)) => return Decided::Approved(taken),
                    Ok(None) => {} // used by a retry meanwhile: the next look says so
                    Err(e) => return Decided::StoreDown(e.to_string()),
                }
            }
            ApprovalStatus::Used | ApprovalStatus::Denied => {
                if let Some(d) = refusal(&current) {
                    return Decided::Refused(d, current);
                }
            }
            ApprovalStatus::Expired => {
                let owned = id.to_string();
                if matches!(
                    blocking(store, move |s| s.expire_approval(&owned, now)).await,
                    Ok(true)
                ) {
                    on_expired(&current);
                }
                let (_, d) = timed_out("null", &current);
                return Decided::Refused(d, current);
            }
        }
        nap(&mut wake, id).await;
    }
}

/// The denial for an approval that was denied, or used by another call; `None` for
/// any other status.
pub fn refusal(a: &Approval) -> Option<Decision> {
    match a.status {
        ApprovalStatus::Used => Some(Decision::denied(
            APPROVAL_DENIED,
            &format!(
                "approval {} was used by another call with the same arguments; ask again",
                a.id
            ),
        )),
        ApprovalStatus::Denied => {
            let who = a.decided_by.as_deref().unwrap_or("an approver");
            let why = a.reason.as_deref().unwrap_or("no reason given");
            Some(Decision::denied(
                APPROVAL_DENIED,
                &format!("{who} denied `{}`: {why}", a.tool),
            ))
        }
        _ => None,
    }
}

/// The label of a call an approver denied.
pub const APPROVAL_DENIED: &str = "(approval denied)";

/// The denial for an expired approval.
pub fn timed_out(id_text: &str, a: &Approval) -> (String, Decision) {
    let d = Decision::denied(
        labels::APPROVAL_TIMED_OUT,
        &format!(
            "nobody approved `{}` within {} s (approval {})",
            a.tool,
            a.timeout_ms / 1000,
            a.id
        ),
    );
    (denial_message(id_text, &d), d)
}
