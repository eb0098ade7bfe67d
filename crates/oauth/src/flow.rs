//! The requests of the authorization code flow (OAuth 2.1 with PKCE, RFC 8707 `resource`):
//! the authorization URL a person opens, the form bodies of the code exchange, the
//! refresh and the revocation, and the dynamic registration document (RFC 7591).

use serde_json::{json, Value};
use url::Url;

use crate::metadata::ServerMetadata;
use crate::OAuthError;

/// The client toolgate is at an authorization server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Client {
    /// Its client id (registered, configured, or a Client ID Metadata Document URL).
    pub client_id: String,
    /// Its secret, for a confidential client (sent with `client_secret_post`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// Everything an authorization request needs.
#[derive(Debug, Clone)]
pub struct Authorization<'a> {
    /// The authorization server.
    pub server: &'a ServerMetadata,
    /// toolgate's client there.
    pub client: &'a Client,
    /// Where the server sends the person back (toolgate's `/oauth/callback`).
    pub redirect_uri: &'a str,
    /// The protected server's URL (RFC 8707 `resource`).
    pub resource: &'a str,
    /// Scopes asked for (space-separated), if any.
    pub scope: Option<&'a str>,
    /// The unguessable `state` that ties the callback to this request.
    pub state: &'a str,
    /// The PKCE challenge (S256).
    pub code_challenge: &'a str,
}

impl Authorization<'_> {
    /// The URL the person opens.
    pub fn url(&self) -> Result<String, OAuthError> {
        let mut u = Url::parse(&self.server.authorization_endpoint)
            .map_err(|e| OAuthError::invalid("the authorization endpoint", e.to_string()))?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client.client_id)
                .append_pair("redirect_uri", self.redirect_uri)
                .append_pair("state", self.state)
                .append_pair("code_challenge", self.code_challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("resource", self.resource);
            if let Some(s) = self.scope.filter(|s| !s.is_empty()) {
                q.append_pair("scope", s);
            }
        }
        Ok(u.to_string())
    }
}

fn with_client(mut form: Vec<(String, String)>, client: &Client) -> Vec<(String, String)> {
    form.push(("client_id".into(), client.client_id.clone()));
    if let Some(secret) = &client.client_secret {
        form.push(("client_secret".into(), secret.clone()));
    }
    form
}

/// The form of the code exchange.
pub fn code_exchange(
    client: &Client,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
    resource: &str,
) -> Vec<(String, String)> {
    with_client(
        vec![
            ("grant_type".into(), "authorization_code".into()),
            ("code".into(), code.into()),
            ("code_verifier".into(), verifier.into()),
            ("redirect_uri".into(), redirect_uri.into()),
            ("resource".into(), resource.into()),
        ],
        client,
    )
}

/// The form of a refresh.
pub fn refresh(client: &Client, refresh_token: &str, resource: &str) -> Vec<(String, String)> {
    with_client(
        vec![
            ("grant_type".into(), "refresh_token".into()),
            ("refresh_token".into(), refresh_token.into()),
            ("resource".into(), resource.into()),
        ],
        client,
    )
}

/// The form of a revocation (RFC 7009).
pub fn revocation(client: &Client, token: &str, hint: &str) -> Vec<(String, String)> {
    with_client(
        vec![
            ("token".into(), token.into()),
            ("token_type_hint".into(), hint.into()),
        ],
        client,
    )
}

/// The dynamic registration document (RFC 7591) of toolgate as a public client with PKCE
/// and refresh tokens.
pub fn registration(redirect_uri: &str, scope: Option<&str>) -> Value {
    let mut doc = json!({
        "client_name": "toolgate",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    if let Some(s) = scope.filter(|s| !s.is_empty()) {
        doc["scope"] = Value::String(s.to_string());
    }
    doc
}

/// RFC 8693's grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The registration document of toolgate as a confidential client that exchanges agents'
/// JWTs for tokens (RFC 8693; `client_secret_post`).
pub fn exchange_registration(redirect_uri: &str) -> Value {
    json!({
        "client_name": "toolgate (token exchange)",
        "redirect_uris": [redirect_uri],
        "grant_types": [TOKEN_EXCHANGE],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_post",
    })
}

/// The form of a token exchange (RFC 8693): the agent's JWT for an access token to
/// `resource`.
pub fn token_exchange(
    client: &Client,
    subject_jwt: &str,
    resource: &str,
    scope: Option<&str>,
) -> Vec<(String, String)> {
    let mut form = vec![
        ("grant_type".into(), TOKEN_EXCHANGE.into()),
        ("subject_token".into(), subject_jwt.into()),
        (
            "subject_token_type".into(),
            "urn:ietf:params:oauth:token-type:jwt".into(),
        ),
        (
            "requested_token_type".into(),
            "urn:ietf:params:oauth:token-type:access_token".into(),
        ),
        ("resource".into(), resource.into()),
    ];
    if let Some(s) = scope.filter(|s| !s.is_empty()) {
        form.push(("scope".into(), s.into()));
    }
    with_client(form, client)
}

/// Reads a registration answer: the client toolgate now is.
pub fn registered(body: &[u8]) -> Result<Client, OAuthError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| OAuthError::invalid("the registration answer", format!("not JSON ({e})")))?;
    let Some(id) = v.get("client_id").and_then(Value::as_str) else {
        return Err(OAuthError::invalid(
            "the registration answer",
            "it has no `client_id`",
        ));
    };
    Ok(Client {
        client_id: id.to_string(),
        client_secret: v
            .get("client_secret")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorization_url_carries_pkce_state_and_resource() {
        let server = ServerMetadata::read(
            "http://127.0.0.1:8",
            br#"{"issuer":"http://127.0.0.1:8","authorization_endpoint":"http://127.0.0.1:8/auth?x=1","token_endpoint":"http://127.0.0.1:8/token","code_challenge_methods_supported":["S256"]}"#,
        )
        .unwrap();
        let client = Client {
            client_id: "c1".into(),
            client_secret: None,
        };
        let url = Authorization {
            server: &server,
            client: &client,
            redirect_uri: "http://127.0.0.1:5/oauth/callback",
            resource: "http://127.0.0.1:9/mcp",
            scope: Some("mcp:tools"),
            state: "s t",
            code_challenge: "abc",
        }
        .url()
        .unwrap();
        let u = Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["x"], "1");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["resource"], "http://127.0.0.1:9/mcp");
        assert_eq!(q["state"], "s t");
        assert_eq!(q["scope"], "mcp:tools");
        let form = code_exchange(&client, "code", "ver", "http://r", "http://res");
        assert!(form.contains(&("code_verifier".into(), "ver".into())));
        assert!(form.contains(&("resource".into(), "http://res".into())));
        assert!(registered(br#"{"client_id":"abc","client_secret":"s"}"#)
            .unwrap()
            .client_secret
            .is_some());
        assert!(registered(br#"{}"#).is_err());
    }
}
