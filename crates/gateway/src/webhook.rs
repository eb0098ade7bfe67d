//! The approval webhook: a JSON POST to a configured URL when a call is held, signed with
//! HMAC-SHA256 so the receiver (a chat bot, a pager) can trust it.
//!
//! Headers: `Content-Type: application/json`, `X-Toolgate-Event: approval.requested`,
//! `X-Toolgate-Signature: sha256=<hex HMAC of the exact body with the shared secret>`.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use toolgate_store::Approval;

use crate::config::Webhook;

/// The hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this branch cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The JSON sent for an approval event.
pub fn payload(event: &str, a: &Approval) -> serde_json::Value {
    json!({
        "event": event,
        "approval": {
            "id": a.id,
            "server": a.server,
            "grant": a.grant_label,
            "identity": a.identity,
            "tool": a.tool,
            "arguments": serde_json::from_str::<serde_json::Value>(&a.arguments).unwrap_or_default(),
            "arg_hash": a.arg_hash,
            "rule": a.rule,
            "approvers_needed": a.required,
            "created_at_ms": a.created_at_ms,
            "expires_at_ms": a.expires_at_ms,
        },
        "approve": format!("toolgate approvals approve {}", a.id),
        "deny": format!("toolgate approvals deny {} --reason REASON", a.id),
    })
}

/// Posts the event in the background (one retry after a second); failures are logged and
/// never hold up the call (the approval is in the store either way).
pub fn notify(http: &reqwest::Client, hook: &Webhook, event: &str, a: &Approval) {
    let body = payload(event, a).to_string();
    let signature = format!("sha256={}", sign(&hook.secret, body.as_bytes()));
    let http = http.clone();
    let url = hook.url.clone();
    let event = event.to_string();
    let id = a.id.clone();
    tokio::spawn(async move {
        for attempt in 0..2 {
            let sent = http
                .post(&url)
                .header("content-type", "application/json")
                .header("x-toolgate-event", &event)
                .header("x-toolgate-signature", &signature)
                .timeout(std::time::Duration::from_secs(10))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => tracing::warn!(approval = %id, "approval webhook answered {}", r.status()),
                Err(e) => tracing::warn!(approval = %id, "approval webhook failed: {e}"),
            }
            if attempt == 0 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
