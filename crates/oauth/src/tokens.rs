//! Token sets: what a token endpoint answers, kept per identity, and when to refresh.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::OAuthError;

/// Refresh this long before an access token expires (or at half its lifetime, when it
/// lives less than twice this: short-lived tokens are not refreshed on every call).
pub const REFRESH_MARGIN_MS: u64 = 60_000;

/// One identity's tokens at one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    /// The access token (never shown to agents, logs or the audit log).
    pub access_token: String,
    /// The refresh token, if the server gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires (ms since the epoch), if the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// The scopes granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// How long the access token lived when issued (ms), if the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_ms: Option<u64>,
}

impl TokenSet {
    /// Reads a token endpoint's answer received at `now_ms`. A refresh answer without a
    /// new refresh token keeps `previous_refresh` (RFC 6749 §6).
    pub fn read(
        body: &[u8],
        now_ms: u64,
        previous_refresh: Option<&str>,
    ) -> Result<Self, OAuthError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| OAuthError::invalid("the token answer", format!("not JSON ({e})")))?;
        if let Some(err) = v.get("error").and_then(Value::as_str) {
            let desc = v
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(OAuthError::invalid(
                "the token answer",
                format!("{err} {desc}").trim().to_string(),
            ));
        }
        let Some(access) = v.get("access_token").and_then(Value::as_str) else {
            return Err(OAuthError::invalid(
                "the token answer",
                "it has no `access_token`",
            ));
        };
        if let Some(t) = v.get("token_type").and_then(Value::as_str) {
            if !t.eq_ignore_ascii_case("bearer") {
                return Err(OAuthError::invalid(
                    "the token answer",
                    format!("token type `{t}` is not Bearer"),
                ));
            }
        }
        // A number of seconds; some servers send it as a string.
        let lifetime_ms = v
            .get("expires_in")
            .and_then(|e| {
                e.as_u64()
                    .or_else(|| e.as_str().and_then(|s| s.trim().parse().ok()))
            })
            .map(|s: u64| s.saturating_mul(1000));
        let expires_at_ms = lifetime_ms.map(|l| now_ms.saturating_add(l));
        Ok(TokenSet {
            access_token: access.to_string(),
            refresh_token: v
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| previous_refresh.map(str::to_string)),
            expires_at_ms,
            scope: v.get("scope").and_then(Value::as_str).map(str::to_string),
            lifetime_ms,
        })
    }

    /// How long before expiry a refresh is due: [`REFRESH_MARGIN_MS`], or half the
    /// token's lifetime when that is shorter.
    fn margin_ms(&self) -> u64 {
        self.lifetime_ms
            .map_or(REFRESH_MARGIN_MS, |l| REFRESH_MARGIN_MS.min(l / 2))
    }

    /// True when the access token should be refreshed before use at `now_ms` (expired,
    /// or within its refresh margin of it) and can be.
    pub fn needs_refresh(&self, now_ms: u64) -> bool {
        self.refresh_token.is_some()
            && self
                .expires_at_ms
                .is_some_and(|e| now_ms.saturating_add(self.margin_ms()) >= e)
    }

    /// Until when the access token is used as it is (ms since the epoch; `None`: it does
    /// not expire): a refreshable token until its refresh margin before it expires,
    /// another until it expires. Before this, neither [`TokenSet::needs_refresh`] nor
    /// [`TokenSet::expired`] holds; from it, one of them does.
    pub fn fresh_until_ms(&self) -> Option<u64> {
        let e = self.expires_at_ms?;
        Some(if self.refresh_token.is_some() {
            e.saturating_sub(self.margin_ms())
        } else {
            e
        })
    }

    /// The `error` code of a token endpoint's answer (RFC 6749 §5.2), if it has one.
    pub fn error_code(body: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        v.get("error").and_then(Value::as_str).map(str::to_string)
    }

    /// True when the access token has expired at `now_ms` (and cannot be used).
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|e| now_ms >= e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers_are_read_and_refreshed_before_they_expire() {
        let t = TokenSet::read(br#"{"access_token":"a","token_type":"Bearer","expires_in":300,"refresh_token":"r","scope":"x"}"#, 1_000, None).unwrap();
        assert_eq!(t.expires_at_ms, Some(301_000));
        assert!(!t.needs_refresh(200_000));
        assert!(t.needs_refresh(241_000));
        assert!(!t.expired(300_999) && t.expired(301_000));
        // Fresh until the minute before expiry: then it needs a refresh, never before.
        assert_eq!(t.fresh_until_ms(), Some(241_000));
        assert!(!t.needs_refresh(240_999) && t.needs_refresh(241_000));
        let no_refresh = TokenSet {
            refresh_token: None,
            ..t.clone()
        };
        assert_eq!(no_refresh.fresh_until_ms(), Some(301_000));
        // A token living 20 s is refreshed at half its life, not on every call.
        let short = TokenSet::read(
            br#"{"access_token":"s","token_type":"Bearer","expires_in":"20","refresh_token":"r"}"#,
            1_000,
            None,
        )
        .unwrap();
        assert_eq!(short.expires_at_ms, Some(21_000), "expires_in as a string");
        assert_eq!(short.fresh_until_ms(), Some(11_000));
        assert!(!short.needs_refresh(10_999) && short.needs_refresh(11_000));
        assert_eq!(
            TokenSet::error_code(br#"{"error":"invalid_grant"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(TokenSet::error_code(b"<html>busy</html>"), None);
        // A refresh answer without a refresh token keeps the old one.
        let r = TokenSet::read(
            br#"{"access_token":"b","token_type":"bearer"}"#,
            0,
            Some("r"),
        )
        .unwrap();
        assert_eq!(r.refresh_token.as_deref(), Some("r"));
        assert!(!r.needs_refresh(u64::MAX), "no expiry known");
        assert!(TokenSet::read(
            br#"{"error":"invalid_grant","error_description":"gone"}"#,
            0,
            None
        )
        .unwrap_err()
        .to_string()
        .contains("invalid_grant gone"));
        assert!(TokenSet::read(br#"{"access_token":"a","token_type":"DPoP"}"#, 0, None).is_err());
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<TokenSet>(&json).unwrap(), t);
    }
}
