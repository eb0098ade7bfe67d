//! toolgate as the OAuth client of protected MCP servers (`auth = "oauth"`): the IO around
//! the pure `toolgate-oauth` crate. Discovery (the server's `401`, its protected resource
//! metadata, its authorization server's metadata), registration, the consent flow
//! ([`Broker::begin`], then [`Broker::finish`] at `/oauth/callback`), each identity's
//! token set sealed in the store, refreshed before it expires (one refresh at a time per
//! identity, in this process and across replicas sharing the store), and disconnection
//! with revocation. The gateway, the admin API and the CLI all go through the one
//! [`Broker`].
//!
//! Tokens never leave this module except as the `Authorization` header of a request to
//! the server they were issued for ([`attach`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use toolgate_oauth::flow::{self, Client};
use toolgate_oauth::metadata::{self, ResourceMetadata, ServerMetadata};
use toolgate_oauth::pkce::Pkce;
use toolgate_oauth::seal::TokenKey;
use toolgate_oauth::tokens::TokenSet;
use toolgate_store::{Connection, PendingConnection, StateStore, StoreError};

use crate::bridge::blocking;
use crate::cache::{StateCache, UpstreamToken};
use crate::config::{Config, OAuthConfig, ServerConfig, TokenKeySource, Transport};

/// How long toolgate waits for an authorization server (metadata, registration, token,
/// revocation endpoints).
pub const OAUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest document toolgate reads from an authorization or protected server.
pub const MAX_DOCUMENT: usize = 256 * 1024;

/// How long one replica may hold an identity's refresh lock.
const REFRESH_LOCK_MS: u64 = 30_000;

/// How long a call waits for another replica's refresh of the same token set.
const REFRESH_WAIT: Duration = Duration::from_secs(15);

/// Why an OAuth step failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The identity has no usable connection: the message says how to connect.
    #[error("{0}")]
    NotConnected(String),
    /// A callback whose `state` names no consent flow (forged, replayed or too late).
    #[error("this authorization answer matches no consent flow toolgate began (a forged or replayed `state`, or one older than 10 minutes): nothing was stored; run `toolgate connect` again")]
    UnknownState,
    /// A server, document or answer that is not usable.
    #[error("{0}")]
    Upstream(String),
    /// A document or answer that breaks the spec.
    #[error(transparent)]
    OAuth(#[from] toolgate_oauth::OAuthError),
    /// The store.
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    /// A request the config does not allow (no such server, not an OAuth server).
    #[error("{0}")]
    Config(String),
}

impl BrokerError {
    /// The HTTP status of an MCP request refused for this error: 403 when the identity is
    /// not connected (a person must act), 503 when toolgate could not find out (the store,
    /// the authorization server).
    pub fn status(&self) -> axum::http::StatusCode {
        match self {
            BrokerError::NotConnected(_) => axum::http::StatusCode::FORBIDDEN,
            _ => axum::http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Reads the token key the config names: the file or environment variable must hold 64
/// hex digits. The error says which and why (toolgate does not start without it).
pub fn load_key(cfg: &OAuthConfig) -> Result<TokenKey, String> {
    let (text, whence) = match &cfg.token_key {
        TokenKeySource::File(p) => (
            std::fs::read_to_string(p)
                .map_err(|e| format!("oauth.token_key_file `{}`: {e}", p.display()))?,
            format!("oauth.token_key_file `{}`", p.display()),
        ),
        TokenKeySource::Env(v) => (
            std::env::var(v).map_err(|_| {
                format!("oauth.token_key_env: the environment variable `{v}` is not set (it must hold the token key: `openssl rand -hex 32`)")
            })?,
            format!("oauth.token_key_env `{v}`"),
        ),
    };
    TokenKey::from_text(&text).map_err(|e| format!("{whence}: {e}"))
}

/// Where an identity's tokens come from and go back to: the same for a consent flow and the
/// connection it makes (flattened into each, so the sealed JSON keeps one level).
#[derive(Serialize, Deserialize)]
struct Endpoints {
    client: Client,
    issuer: String,
    token_endpoint: String,
    revocation_endpoint: Option<String>,
    resource: String,
}

/// What a consent flow needs at its callback (sealed in the store).
#[derive(Serialize, Deserialize)]
struct Flow {
    verifier: String,
    redirect_uri: String,
    /// The server promised `iss` on its answer (RFC 9207).
    #[serde(default)]
    iss_required: bool,
    #[serde(flatten)]
    at: Endpoints,
}

/// An identity's connection as sealed in the store.
#[derive(Serialize, Deserialize)]
struct Held {
    tokens: TokenSet,
    #[serde(flatten)]
    at: Endpoints,
}

/// toolgate's registration at an authorization server (sealed in the store).
#[derive(Serialize, Deserialize)]
struct Registered {
    client: Client,
    redirect_uri: String,
}

/// What discovery found for one server.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The protected server's URL (the RFC 8707 `resource`).
    pub resource: String,
    /// Its authorization server.
    pub server: ServerMetadata,
    /// The scopes to ask for (space-separated), if any.
    pub scope: Option<String>,
}

/// The upstream identity a forwarded call used (for the audit record: never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamIdentity {
    /// Who the server knows the identity as (the token's subject), when known.
    pub subject: Option<String>,
    /// toolgate's client id at the authorization server.
    pub client_id: String,
}

/// Held while one identity's token set is refreshed in this process.
type Flight = Arc<tokio::sync::Mutex<()>>;

/// The OAuth client side of toolgate: one per process.
pub struct Broker {
    key: TokenKey,
    http: reqwest::Client,
    /// One refresh at a time per (server, identity) in this process.
    flights: Mutex<HashMap<(String, String), Flight>>,
    /// This process's name on refresh locks.
    holder: String,
    /// Tokens exchanged for agents' JWTs (`auth = "token_exchange"`), by server and the
    /// JWT's hash: in memory only, each until a minute before it expires.
    exchanged: Mutex<HashMap<(String, String), (TokenSet, UpstreamIdentity)>>,
    /// What discovery found per server, for token exchange (kept [`DISCOVERY_KEEP`]).
    discovered: Mutex<HashMap<String, (Discovered, std::time::Instant)>>,
}

/// How long what discovery found is used for token exchange before it is fetched again.
pub const DISCOVERY_KEEP: Duration = Duration::from_secs(300);

/// The most exchanged tokens kept (expired ones are dropped first; then all).
pub const MAX_EXCHANGED: usize = 10_000;

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> Result<[u8; N], BrokerError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| BrokerError::Upstream(format!("no randomness: {e}")))?;
    Ok(b)
}

/// The subject (`sub`) and client id of a JWT access token, read without checking it (for
/// display and the audit record only; the server checks the token).
fn claims_of(token: &str) -> (Option<String>, Option<String>) {
    let Some(payload) = token.split('.').nth(1) else {
        return (None, None);
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
        return (None, None);
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return (None, None);
    };
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    (s("sub"), s("client_id"))
}

/// The URL people's browsers come back to after consenting.
pub fn redirect_uri(cfg: &Config) -> String {
    let base = cfg
        .oauth
        .as_ref()
        .and_then(|o| o.public_url.clone())
        .unwrap_or_else(|| {
            let mut a = cfg.listen;
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{a}")
        });
    format!("{}/oauth/callback", base.trim_end_matches('/'))
}

fn oauth_server<'a>(
    cfg: &'a Config,
    server: &str,
) -> Result<(&'a ServerConfig, &'a str), BrokerError> {
    let Some(srv) = cfg.server(server) else {
        return Err(BrokerError::Config(format!(
            "no server named `{server}` in the config"
        )));
    };
    match (&srv.oauth, &srv.transport) {
        (Some(_), Transport::Http { url, .. }) => Ok((srv, url.as_str())),
        _ => Err(BrokerError::Config(format!(
            "server `{server}` does not have `auth = \"oauth\"`: its credentials are the config's `headers`"
        ))),
    }
}

/// Where toolgate's own Client ID Metadata Document is (`{public_url}/oauth/client-metadata.json`):
/// only when `public_url` is https, as such a client id must be.
pub fn client_metadata_url(cfg: &Config) -> Option<String> {
    let base = cfg.oauth.as_ref()?.public_url.as_ref()?;
    base.starts_with("https://")
        .then(|| format!("{}/oauth/client-metadata.json", base.trim_end_matches('/')))
}

/// toolgate's Client ID Metadata Document: a public client with PKCE and refresh tokens
/// whose client id is the document's own URL.
pub fn client_metadata(cfg: &Config) -> Option<serde_json::Value> {
    let id = client_metadata_url(cfg)?;
    Some(serde_json::json!({
        "client_id": id,
        "client_name": "toolgate",
        "redirect_uris": [redirect_uri(cfg)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }))
}

/// The command that connects `identity` to `server` (in messages).
pub fn connect_hint(server: &str, identity: &str) -> String {
    format!("toolgate connect {server} --identity {identity}")
}

impl Broker {
    /// A broker sealing with `key`.
    pub fn new(key: TokenKey) -> Result<Self, BrokerError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(OAUTH_TIMEOUT)
            .timeout(OAUTH_TIMEOUT)
            .build()
            .map_err(|e| BrokerError::Upstream(format!("cannot build the HTTP client: {e}")))?;
        Ok(Broker {
            key,
            http,
            flights: Mutex::default(),
            holder: hex::encode(random::<8>()?),
            exchanged: Mutex::default(),
            discovered: Mutex::default(),
        })
    }

    /// The broker the config asks for: `None` when no server has `auth`; an error when the
    /// key cannot be read (toolgate refuses to start).
    pub fn for_config(cfg: &Config) -> Result<Option<Arc<Self>>, String> {
        if !cfg.servers.iter().any(|s| s.oauth.is_some()) && cfg.oauth.is_none() {
            return Ok(None);
        }
        let Some(o) = &cfg.oauth else {
            return Err(
                "a server has `auth = \"oauth\"` but there is no [oauth] table with the token key"
                    .into(),
            );
        };
        if o.public_url.is_none() && cfg.listen.port() == 0 {
            return Err("oauth.public_url: required when `listen` has port 0 (the authorization server must be told where `/oauth/callback` is before toolgate starts)".into());
        }
        let key = load_key(o)?;
        Ok(Some(Arc::new(Broker::new(key).map_err(|e| e.to_string())?)))
    }

    async fn get(
        &self,
        url: &str,
        what: &str,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), BrokerError> {
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| self.failed(what, url, &e))?;
        let status = resp.status();
        let body = read_limited(resp, what).await?;
        Ok((status, body))
    }

    fn failed(&self, what: &str, url: &str, e: &reqwest::Error) -> BrokerError {
        if e.is_timeout() {
            BrokerError::Upstream(format!(
                "{what} at {url} did not answer within {} s",
                OAUTH_TIMEOUT.as_secs()
            ))
        } else {
            BrokerError::Upstream(format!("{what} at {url} cannot be reached: {}", chain(e)))
        }
    }

    async fn post_form(
        &self,
        url: &str,
        form: &[(String, String)],
        what: &str,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), BrokerError> {
        let resp = self
            .http
            .post(url)
            .header("accept", "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| self.failed(what, url, &e))?;
        let status = resp.status();
        Ok((status, read_limited(resp, what).await?))
    }

    /// The body of the first of `places` that answers with success; else why none did.
    async fn first_found(&self, places: Vec<String>, what: &str) -> Result<Vec<u8>, String> {
        let mut last = format!("no {what} found");
        for place in places {
            match self.get(&place, what).await {
                Ok((s, body)) if s.is_success() => return Ok(body),
                Ok((s, _)) => last = format!("{place} answered {s}"),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// Finds a server's authorization server: its `401` challenge (or the well-known
    /// places), its protected resource metadata (which must name the server's URL) and the
    /// authorization server's metadata (which must name the issuer asked).
    pub async fn discover(
        &self,
        url: &str,
        headers: &[(String, String)],
        scopes: &[String],
    ) -> Result<Discovered, BrokerError> {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let probe = req
            .body(r#"{"jsonrpc":"2.0","id":"toolgate-oauth-probe","method":"ping"}"#)
            .send()
            .await
            .map_err(|e| self.failed("the server", url, &e))?;
        let challenge = probe
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(toolgate_oauth::challenge::parse);
        drop(probe);
        let mut places = Vec::new();
        if let Some(u) = challenge
            .as_ref()
            .and_then(|c| c.resource_metadata.as_deref())
        {
            places.push(metadata::challenge_metadata_url(u)?);
        }
        places.extend(metadata::resource_metadata_urls(url)?);
        let body = self
            .first_found(places, "the protected resource metadata (RFC 9728)")
            .await
            .map_err(|last| {
                BrokerError::Upstream(format!(
                    "cannot find the authorization server of {url}: {last}"
                ))
            })?;
        let resource = ResourceMetadata::read(url, &body)?;
        let issuer = resource.issuer().to_string();
        let body = self
            .first_found(
                metadata::server_metadata_urls(&issuer)?,
                "the authorization server metadata",
            )
            .await
            .map_err(|last| {
                BrokerError::Upstream(format!(
                    "cannot read the metadata of the authorization server {issuer}: {last}"
                ))
            })?;
        let server = ServerMetadata::read(&issuer, &body)?;
        let scope = if !scopes.is_empty() {
            Some(scopes.join(" "))
        } else if let Some(s) = challenge.and_then(|c| c.scope) {
            Some(s)
        } else if !resource.scopes_supported.is_empty() {
            Some(resource.scopes_supported.join(" "))
        } else {
            None
        };
        Ok(Discovered {
            resource: url.to_string(),
            server,
            scope,
        })
    }

    /// toolgate's client at the discovered authorization server: the configured one, else
    /// the registration kept in the store, else a new dynamic registration (kept).
    async fn client(
        &self,
        store: &Arc<dyn StateStore>,
        srv: &ServerConfig,
        found: &Discovered,
        redirect_uri: &str,
        metadata_url: Option<&str>,
    ) -> Result<Client, BrokerError> {
        let conf = srv.oauth.clone().unwrap_or_default();
        if let Some(id) = conf.client_id {
            let secret = match conf.client_secret_env {
                Some(v) => Some(std::env::var(&v).map_err(|_| {
                    BrokerError::Config(format!(
                        "server `{}`: client_secret_env names `{v}`, which is not set",
                        srv.name
                    ))
                })?),
                None => None,
            };
            return Ok(Client {
                client_id: id,
                client_secret: secret,
            });
        }
        let exchange = conf.exchange;
        // A Client ID Metadata Document, where the authorization server takes them: the
        // client id is the document's URL, nothing to register or keep.
        if !exchange && found.server.client_id_metadata_document_supported {
            if let Some(url) = conf.client_metadata_url.as_deref().or(metadata_url) {
                return Ok(Client {
                    client_id: url.to_string(),
                    client_secret: None,
                });
            }
        }
        // A registration per server, authorization server and kind (consent or exchange).
        let issuer = if exchange {
            format!("{}#token-exchange", found.server.issuer)
        } else {
            found.server.issuer.clone()
        };
        let (name, iss) = (srv.name.clone(), issuer.clone());
        let kept = blocking(store, move |s| s.registration(&name, &iss)).await?;
        if let Some(sealed) = kept {
            if let Ok(plain) = self.key.open(&srv.name, &issuer, &sealed) {
                if let Ok(r) = serde_json::from_slice::<Registered>(&plain) {
                    if r.redirect_uri == redirect_uri {
                        return Ok(r.client);
                    }
                }
            }
        }
        let Some(endpoint) = found.server.registration_endpoint.clone() else {
            return Err(BrokerError::Config(format!(
                "the authorization server {issuer} of server `{}` offers no dynamic registration: register toolgate there (redirect URI {redirect_uri}) and set `client_id` (and `client_secret_env`) on the server",
                srv.name
            )));
        };
        // No `scope` here: resource scopes are often not the authorization server's own
        // (`scopes_supported`), and registration would be refused for them.
        let doc = if exchange {
            flow::exchange_registration(redirect_uri)
        } else {
            flow::registration(redirect_uri, None)
        };
        let resp = self
            .http
            .post(&endpoint)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(doc.to_string())
            .send()
            .await
            .map_err(|e| self.failed("the registration endpoint", &endpoint, &e))?;
        let status = resp.status();
        let body = read_limited(resp, "the registration answer").await?;
        if !status.is_success() {
            return Err(BrokerError::Upstream(format!(
                "the registration endpoint {endpoint} refused toolgate ({status}): {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            )));
        }
        let client = flow::registered(&body)?;
        let plain = serde_json::to_vec(&Registered {
            client: client.clone(),
            redirect_uri: redirect_uri.to_string(),
        })
        .map_err(|e| BrokerError::Upstream(e.to_string()))?;
        let sealed = self.key.seal(&srv.name, &issuer, random()?, &plain);
        let name = srv.name.clone();
        blocking(store, move |s| s.put_registration(&name, &issuer, &sealed)).await?;
        Ok(client)
    }

    /// Begins connecting `identity` to `server`: discovers, registers if needed, keeps the
    /// flow in the store and returns the URL the person opens to consent.
    pub async fn begin(
        &self,
        store: &Arc<dyn StateStore>,
        cfg: &Config,
        server: &str,
        identity: &str,
        now_ms: u64,
    ) -> Result<String, BrokerError> {
        if identity.is_empty() {
            return Err(BrokerError::Config("the identity is empty".into()));
        }
        let (srv, url) = oauth_server(cfg, server)?;
        if srv.oauth.as_ref().is_some_and(|o| o.exchange) {
            return Err(BrokerError::Config(format!(
                "server `{server}` has `auth = \"token_exchange\"`: each agent's own JWT is exchanged for its token at each call; there is nothing to connect"
            )));
        }
        let headers = match &srv.transport {
            Transport::Http { headers, .. } => headers.clone(),
            _ => Vec::new(),
        };
        let scopes = srv
            .oauth
            .as_ref()
            .map(|o| o.scopes.clone())
            .unwrap_or_default();
        let found = self.discover(url, &headers, &scopes).await?;
        trusted(srv, &found, None)?;
        let redirect = redirect_uri(cfg);
        let client = self
            .client(
                store,
                srv,
                &found,
                &redirect,
                client_metadata_url(cfg).as_deref(),
            )
            .await?;
        let pkce = Pkce::from_random(random()?);
        let state = hex::encode(random::<32>()?);
        let auth_url = flow::Authorization {
            server: &found.server,
            client: &client,
            redirect_uri: &redirect,
            resource: &found.resource,
            scope: found.scope.as_deref(),
            state: &state,
            code_challenge: &pkce.challenge,
        }
        .url()?;
        let plain = serde_json::to_vec(&Flow {
            verifier: pkce.verifier,
            redirect_uri: redirect,
            iss_required: found.server.authorization_response_iss_parameter_supported,
            at: Endpoints {
                client,
                issuer: found.server.issuer.clone(),
                token_endpoint: found.server.token_endpoint.clone(),
                revocation_endpoint: found.server.revocation_endpoint.clone(),
                resource: found.resource.clone(),
            },
        })
        .map_err(|e| BrokerError::Upstream(e.to_string()))?;
        let pending = PendingConnection {
            sealed: self
                .key
                .seal(&pending_aad(server), identity, random()?, &plain),
            state,
            server: server.to_string(),
            identity: identity.to_string(),
            created_at_ms: now_ms,
        };
        blocking(store, move |s| s.begin_connection(&pending)).await?;
        Ok(auth_url)
    }

    /// Finishes a consent flow at the callback: takes the flow `state` names (once),
    /// exchanges `code` with its PKCE verifier and `resource`, and stores the sealed token
    /// set. Returns the server and identity connected.
    pub async fn finish(
        &self,
        store: &Arc<dyn StateStore>,
        state: &str,
        code: &str,
        iss: Option<&str>,
        now_ms: u64,
    ) -> Result<(String, String, UpstreamIdentity), BrokerError> {
        let owned = state.to_string();
        let Some(p) = blocking(store, move |s| s.take_pending(&owned, now_ms)).await? else {
            return Err(BrokerError::UnknownState);
        };
        let plain = self
            .key
            .open(&pending_aad(&p.server), &p.identity, &p.sealed)?;
        let f: Flow = serde_json::from_slice(&plain).map_err(|e| {
            BrokerError::Upstream(format!("a stored consent flow does not read: {e}"))
        })?;
        // RFC 9207: an `iss` that is not the server the flow began with (compared as
        // strings, §2.4) is a mix-up; so is none from a server that promised one.
        match iss {
            Some(i) if i != f.at.issuer => {
                return Err(BrokerError::Upstream(format!(
                    "the authorization answer came from `{i}`, not from {} where the flow began: refused, nothing stored",
                    f.at.issuer
                )));
            }
            None if f.iss_required => {
                return Err(BrokerError::Upstream(format!(
                    "the authorization answer has no `iss`, which {} promises on every answer (RFC 9207): refused, nothing stored",
                    f.at.issuer
                )));
            }
            _ => {}
        }
        let form = flow::code_exchange(
            &f.at.client,
            code,
            &f.verifier,
            &f.redirect_uri,
            &f.at.resource,
        );
        let (status, body) = self
            .post_form(&f.at.token_endpoint, &form, "the token endpoint")
            .await?;
        let tokens = TokenSet::read(&body, now_ms, None).map_err(|e| {
            BrokerError::Upstream(format!("the code exchange failed ({status}): {e}"))
        })?;
        let (c, who) = self.sealed(&p.server, &p.identity, tokens, f.at, now_ms)?;
        blocking(store, move |s| s.put_connection(&c)).await?;
        Ok((p.server, p.identity, who))
    }

    /// The stored form of an identity's token set (sealed), and whose it is.
    fn sealed(
        &self,
        server: &str,
        identity: &str,
        tokens: TokenSet,
        at: Endpoints,
        now_ms: u64,
    ) -> Result<(Connection, UpstreamIdentity), BrokerError> {
        let (sub, _) = claims_of(&tokens.access_token);
        let held = Held { tokens, at };
        let plain = serde_json::to_vec(&held).map_err(|e| BrokerError::Upstream(e.to_string()))?;
        let c = Connection {
            server: server.to_string(),
            identity: identity.to_string(),
            sealed: self.key.seal(server, identity, random()?, &plain),
            subject: sub.clone(),
            client_id: held.at.client.client_id.clone(),
            expires_at_ms: held.tokens.expires_at_ms,
            updated_at_ms: now_ms,
        };
        let who = UpstreamIdentity {
            subject: sub,
            client_id: held.at.client.client_id,
        };
        Ok((c, who))
    }

    fn open(&self, c: &Connection) -> Result<Held, BrokerError> {
        let plain = self.key.open(&c.server, &c.identity, &c.sealed)?;
        serde_json::from_slice(&plain)
            .map_err(|e| BrokerError::Upstream(format!("a stored connection does not read: {e}")))
    }

    /// The access token `identity` uses at `server` now, refreshed first when it expires
    /// within a minute (one refresh at a time, across replicas sharing the store).
    ///
    /// A token that needs no refresh comes from `cache` (valid for the state version the
    /// caller read: every connection written or deleted, by any replica, moves it); else
    /// the connection is read from the store and unsealed, and kept there.
    pub async fn token(
        &self,
        store: &Arc<dyn StateStore>,
        cache: &StateCache,
        clock: &crate::clock::Clock,
        server: &str,
        resource: &str,
        identity: &str,
    ) -> Result<(String, UpstreamIdentity), BrokerError> {
        let not_connected = || {
            BrokerError::NotConnected(format!(
                "identity `{identity}` is not connected to server `{server}`: a person connects it once with `{}` (or the dashboard)",
                connect_hint(server, identity)
            ))
        };
        match cache.token(server, identity) {
            Some(None) => return Err(not_connected()),
            Some(Some(t))
                if t.fresh(clock.now_ms()) && metadata::same_resource(&t.resource, resource) =>
            {
                return Ok((t.access_token.clone(), who_of(&t)))
            }
            _ => {}
        }
        let at = cache.generation();
        let Some(c) = self.read(store, server, identity).await? else {
            cache.keep_token(at, server, identity, None);
            return Err(not_connected());
        };
        let held = self.open(&c)?;
        // A token goes only to the resource it was issued for (the server's URL may have
        // changed in the config since the consent).
        if !metadata::same_resource(&held.at.resource, resource) {
            return Err(BrokerError::NotConnected(format!(
                "the connection of identity `{identity}` to server `{server}` was made for {}, and the server is now {resource}: reconnect with `{}`",
                held.at.resource,
                connect_hint(server, identity)
            )));
        }
        if !held.tokens.needs_refresh(clock.now_ms()) {
            if held.tokens.expired(clock.now_ms()) {
                return Err(BrokerError::NotConnected(format!(
                    "the connection of identity `{identity}` to server `{server}` has expired and cannot be refreshed: reconnect with `{}`",
                    connect_hint(server, identity)
                )));
            }
            let kept = UpstreamToken {
                access_token: held.tokens.access_token.clone(),
                fresh_until_ms: held.tokens.fresh_until_ms(),
                subject: c.subject.clone(),
                client_id: c.client_id.clone(),
                resource: held.at.resource.clone(),
            };
            cache.keep_token(at, server, identity, Some(Arc::new(kept)));
            return Ok(usable(&c, held));
        }
        // One refresh at a time in this process...
        let flight = {
            let mut f = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            if f.len() > 10_000 {
                f.retain(|_, m| Arc::strong_count(m) > 1);
            }
            f.entry((server.to_string(), identity.to_string()))
                .or_default()
                .clone()
        };
        let _one = flight.lock().await;
        let waited = tokio::time::Instant::now();
        loop {
            let c = self
                .read(store, server, identity)
                .await?
                .ok_or_else(not_connected)?;
            let held = self.open(&c)?;
            let now = clock.now_ms();
            if !held.tokens.needs_refresh(now) {
                return Ok(usable(&c, held));
            }
            // ... and across replicas: the store's lock.
            let (s, i, h) = (
                server.to_string(),
                identity.to_string(),
                self.holder.clone(),
            );
            let mine = blocking(store, move |st| {
                st.lock_refresh(&s, &i, &h, now, REFRESH_LOCK_MS)
            })
            .await?;
            if mine {
                // Read again under the lock: another replica may have refreshed between the
                // read above and the lock (its refresh token is then spent).
                let out = match self.read(store, server, identity).await {
                    Ok(Some(c)) => match self.open(&c) {
                        Ok(held) if held.tokens.needs_refresh(now) => {
                            self.refresh(store, &c, held, now).await
                        }
                        Ok(held) => Ok(usable(&c, held)),
                        Err(e) => Err(e),
                    },
                    Ok(None) => Err(not_connected()),
                    Err(e) => Err(e),
                };
                let (s, i, h) = (
                    server.to_string(),
                    identity.to_string(),
                    self.holder.clone(),
                );
                if let Err(e) = blocking(store, move |st| st.unlock_refresh(&s, &i, &h)).await {
                    tracing::warn!(server = %server, "cannot give back the refresh lock: {e}");
                }
                return out;
            }
            if waited.elapsed() > REFRESH_WAIT {
                // The other replica's refresh did not land: use what is held while it is
                // still valid, else refuse.
                if !held.tokens.expired(now) {
                    return Ok(usable(&c, held));
                }
                return Err(BrokerError::Upstream(format!(
                    "the token of identity `{identity}` at server `{server}` is being refreshed by another replica, which has not finished in {} s",
                    REFRESH_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The access token for the agent holding `subject_jwt` (already verified by
    /// `[auth.jwt]`) at `srv`: exchanged at the authorization server (RFC 8693) on first
    /// use and kept in memory until a minute before it expires; one exchange at a time per
    /// agent token.
    pub async fn exchange(
        &self,
        store: &Arc<dyn StateStore>,
        clock: &crate::clock::Clock,
        srv: &ServerConfig,
        subject_jwt: &str,
        jwt_issuer: Option<&str>,
        redirect: &str,
    ) -> Result<(String, UpstreamIdentity), BrokerError> {
        use sha2::Digest;
        let Transport::Http { url, headers } = &srv.transport else {
            return Err(BrokerError::Config(format!(
                "server `{}` is not a Streamable HTTP server",
                srv.name
            )));
        };
        // Kept per server name and URL: a reload that points the name elsewhere starts over.
        let at = format!("{}\u{0}{url}", srv.name);
        let key = (
            at.clone(),
            hex::encode(sha2::Sha256::digest(subject_jwt.as_bytes())),
        );
        let fresh = |now: u64, t: &TokenSet| {
            t.expires_at_ms
                .is_none_or(|e| now.saturating_add(toolgate_oauth::tokens::REFRESH_MARGIN_MS) < e)
        };
        let cached = |now: u64| {
            let held = self.exchanged.lock().unwrap_or_else(|e| e.into_inner());
            held.get(&key)
                .filter(|(t, _)| fresh(now, t))
                .map(|(t, who)| (t.access_token.clone(), who.clone()))
        };
        if let Some(hit) = cached(clock.now_ms()) {
            return Ok(hit);
        }
        let flight = {
            let mut f = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            if f.len() > MAX_EXCHANGED {
                f.retain(|_, m| Arc::strong_count(m) > 1);
            }
            f.entry(key.clone()).or_default().clone()
        };
        let _one = flight.lock().await;
        if let Some(hit) = cached(clock.now_ms()) {
            return Ok(hit);
        }
        let conf = srv.oauth.clone().unwrap_or_default();
        let known = {
            let d = self.discovered.lock().unwrap_or_else(|e| e.into_inner());
            d.get(&at)
                .filter(|(_, at)| at.elapsed() < DISCOVERY_KEEP)
                .map(|(found, _)| found.clone())
        };
        let found = match known {
            Some(f) => f,
            None => {
                let f = self.discover(url, headers, &conf.scopes).await?;
                let mut d = self.discovered.lock().unwrap_or_else(|e| e.into_inner());
                d.insert(at.clone(), (f.clone(), std::time::Instant::now()));
                f
            }
        };
        trusted(srv, &found, jwt_issuer)?;
        // (Registration needs a redirect URI even for a client that never redirects.)
        let client = self.client(store, srv, &found, redirect, None).await?;
        let form = flow::token_exchange(
            &client,
            subject_jwt,
            &found.resource,
            found.scope.as_deref(),
        );
        let now = clock.now_ms();
        let (status, body) = self
            .post_form(&found.server.token_endpoint, &form, "the token endpoint")
            .await?;
        let tokens = TokenSet::read(&body, now, None).map_err(|e| {
            BrokerError::NotConnected(format!(
                "the authorization server of server `{}` would not exchange this agent's token ({status}): {e}",
                srv.name
            ))
        })?;
        let (sub, _) = claims_of(&tokens.access_token);
        let who = UpstreamIdentity {
            subject: sub,
            client_id: client.client_id,
        };
        let token = tokens.access_token.clone();
        let mut held = self.exchanged.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= MAX_EXCHANGED {
            held.retain(|_, (t, _)| fresh(now, t));
            if held.len() >= MAX_EXCHANGED {
                held.clear();
            }
        }
        held.insert(key, (tokens, who.clone()));
        Ok((token, who))
    }

    async fn read(
        &self,
        store: &Arc<dyn StateStore>,
        server: &str,
        identity: &str,
    ) -> Result<Option<Connection>, BrokerError> {
        let (s, i) = (server.to_string(), identity.to_string());
        Ok(blocking(store, move |st| st.connection(&s, &i)).await?)
    }

    async fn refresh(
        &self,
        store: &Arc<dyn StateStore>,
        c: &Connection,
        held: Held,
        now_ms: u64,
    ) -> Result<(String, UpstreamIdentity), BrokerError> {
        let Some(rt) = held.tokens.refresh_token.clone() else {
            return Ok(usable(c, held));
        };
        let form = flow::refresh(&held.at.client, &rt, &held.at.resource);
        let answer = self
            .post_form(&held.at.token_endpoint, &form, "the token endpoint")
            .await;
        let (status, body) = match answer {
            Ok(x) => x,
            Err(e) if !held.tokens.expired(now_ms) => {
                tracing::warn!(server = %c.server, identity = %c.identity, "refresh failed, the current token is still valid: {e}");
                return Ok(usable(c, held));
            }
            Err(e) => return Err(e),
        };
        match TokenSet::read(&body, now_ms, Some(&rt)) {
            Ok(tokens) => {
                let (next, who) =
                    self.sealed(&c.server, &c.identity, tokens.clone(), held.at, now_ms)?;
                // Written only over the row this refresh began from: a disconnect (or a
                // new consent) made meanwhile stands, and the new tokens are revoked.
                let (expected, written) = (c.clone(), next.clone());
                let swapped = blocking(store, move |st| {
                    st.swap_connection(&expected, Some(&written))
                })
                .await?;
                if !swapped {
                    // Rare (a refresh lost to a disconnect): revoked before answering.
                    if let Some(why) = self.revoke(&self.open(&next)?).await {
                        tracing::warn!(server = %c.server, identity = %c.identity, "tokens refreshed during a disconnect: {why}");
                    }
                    return Err(BrokerError::NotConnected(format!(
                        "the connection of identity `{}` to server `{}` was removed or replaced while its token was being refreshed: call again, or reconnect with `{}`",
                        c.identity,
                        c.server,
                        connect_hint(&c.server, &c.identity)
                    )));
                }
                tracing::info!(server = %c.server, identity = %c.identity, "upstream token refreshed");
                Ok((tokens.access_token, who))
            }
            Err(e) if TokenSet::error_code(&body).as_deref() == Some("invalid_grant") => {
                // The grant is gone at the authorization server; so is the connection (the
                // row this refresh read: a new consent made meanwhile stands). Other
                // refusals (a rate limit, a proxy's 403) leave it for the next call.
                let expected = c.clone();
                blocking(store, move |st| st.swap_connection(&expected, None)).await?;
                tracing::warn!(server = %c.server, identity = %c.identity, "refresh refused, connection dropped: {e}");
                Err(BrokerError::NotConnected(format!(
                    "the connection of identity `{}` to server `{}` was refused at refresh ({e}): reconnect with `{}`",
                    c.identity,
                    c.server,
                    connect_hint(&c.server, &c.identity)
                )))
            }
            Err(e) if !held.tokens.expired(now_ms) => {
                tracing::warn!(server = %c.server, identity = %c.identity, "refresh failed, the current token is still valid: {e}");
                Ok(usable(c, held))
            }
            Err(e) => Err(BrokerError::Upstream(format!(
                "refresh failed ({status}): {e}"
            ))),
        }
    }

    /// Disconnects `identity` from `server`: revokes its tokens at the authorization server
    /// when it offers revocation (RFC 7009; a failure there is reported, the row is deleted
    /// all the same), then forgets them, and any consent flow begun for it. False when
    /// there was no connection.
    pub async fn disconnect(
        &self,
        store: &Arc<dyn StateStore>,
        server: &str,
        identity: &str,
    ) -> Result<(bool, Option<String>), BrokerError> {
        let mut note = None;
        let mut removed = false;
        // The row revoked is the row deleted: a refresh that wrote new tokens in between
        // makes the delete miss, and the new ones are revoked in turn (a few rounds at
        // most; then the row is deleted whatever it holds).
        for _ in 0..3 {
            let Some(c) = self.read(store, server, identity).await? else {
                break;
            };
            note = match self.open(&c) {
                Ok(held) => self.revoke(&held).await,
                Err(e) => Some(format!("not revoked: {e}")),
            };
            let expected = c.clone();
            if blocking(store, move |st| st.swap_connection(&expected, None)).await? {
                removed = true;
                break;
            }
        }
        // Whatever is left, and the consent flows begun.
        let (s, i) = (server.to_string(), identity.to_string());
        let gone = blocking(store, move |st| st.delete_connection(&s, &i)).await?;
        Ok((removed || gone, note))
    }

    /// Revokes a token set at its authorization server (RFC 7009: the refresh token, then
    /// the access token); what went wrong, if anything.
    async fn revoke(&self, held: &Held) -> Option<String> {
        let Some(endpoint) = &held.at.revocation_endpoint else {
            return Some("the authorization server offers no revocation: the tokens stay valid there until they expire".into());
        };
        let mut note = None;
        let mut tokens = vec![];
        if let Some(r) = &held.tokens.refresh_token {
            tokens.push((r.as_str(), "refresh_token"));
        }
        tokens.push((held.tokens.access_token.as_str(), "access_token"));
        for (t, hint) in tokens {
            let form = flow::revocation(&held.at.client, t, hint);
            match self
                .post_form(endpoint, &form, "the revocation endpoint")
                .await
            {
                Ok((s, _)) if s.is_success() => {}
                Ok((s, body)) => {
                    note = Some(format!(
                        "the revocation endpoint answered {s} for the {hint}: {}",
                        String::from_utf8_lossy(&body)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    ))
                }
                Err(e) => note = Some(e.to_string()),
            }
        }
        note
    }
}

/// The authorization server discovered for `srv` must be the one its config trusts
/// (`authorization_server`). Without that key, `token_exchange` (`jwt_issuer` given: the
/// `[auth.jwt]` issuer) sends an agent's JWT only to the issuer of those JWTs: a server's
/// metadata alone never decides where an agent's credential goes.
fn trusted(
    srv: &ServerConfig,
    found: &Discovered,
    jwt_issuer: Option<&str>,
) -> Result<(), BrokerError> {
    let issuer = found.server.issuer.as_str();
    let pinned = srv
        .oauth
        .as_ref()
        .and_then(|o| o.authorization_server.as_deref());
    match (pinned, jwt_issuer) {
        (Some(p), _) if !metadata::same_resource(p, issuer) => Err(BrokerError::Upstream(format!(
            "server `{}` names the authorization server {issuer}, not {p} (its `authorization_server` in the config): refused",
            srv.name
        ))),
        (None, Some(j)) if !metadata::same_resource(j, issuer) => Err(BrokerError::Config(format!(
            "server `{}` names the authorization server {issuer}, which did not issue the agents' JWTs ([auth.jwt] issuer {j}): toolgate sends an agent's JWT for exchange only to an authorization server the config names; if you trust it, set `authorization_server = \"{issuer}\"` on the server",
            srv.name
        ))),
        _ => Ok(()),
    }
}

fn pending_aad(server: &str) -> String {
    format!("{server}\u{0}pending")
}

fn usable(c: &Connection, held: Held) -> (String, UpstreamIdentity) {
    (
        held.tokens.access_token,
        UpstreamIdentity {
            subject: c.subject.clone(),
            client_id: c.client_id.clone(),
        },
    )
}

/// Whose a cached token is.
fn who_of(t: &UpstreamToken) -> UpstreamIdentity {
    UpstreamIdentity {
        subject: t.subject.clone(),
        client_id: t.client_id.clone(),
    }
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

/// Reads a body of at most [`MAX_DOCUMENT`] bytes.
async fn read_limited(mut resp: reqwest::Response, what: &str) -> Result<Vec<u8>, BrokerError> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) if body.len() + c.len() <= MAX_DOCUMENT => body.extend_from_slice(&c),
            Ok(Some(_)) => {
                return Err(BrokerError::Upstream(format!(
                    "{what} is over {MAX_DOCUMENT} bytes: refused"
                )))
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(BrokerError::Upstream(format!(
                    "{what} could not be read whole: {}",
                    chain(&e)
                )))
            }
        }
    }
}

/// Puts `identity`'s access token on a request to an `auth = "oauth"` server: the
/// returned config sends `Authorization: Bearer` with every request made from it. A server
/// without `auth` is returned as it is.
pub async fn attach(
    st: &crate::AppState,
    srv: &mut ServerConfig,
    identity: &str,
    agent_bearer: Option<&str>,
) -> Result<Option<UpstreamIdentity>, BrokerError> {
    let Some(conf) = &srv.oauth else {
        return Ok(None);
    };
    let Some(broker) = st.oauth.as_ref() else {
        return Err(BrokerError::Config(format!(
            "server `{}` has `auth = \"oauth\"` but this gateway was started without it: restart toolgate",
            srv.name
        )));
    };
    let (token, who) = if conf.exchange {
        // The agent's own JWT, verified at admission ([auth.jwt]).
        let jwt = agent_bearer.filter(|t| st.jwt.is_some() && crate::jwt::looks_like_jwt(t));
        let Some(jwt) = jwt else {
            return Err(BrokerError::NotConnected(format!(
                "server `{}` is reached with a token exchanged for the agent's own JWT (`auth = \"token_exchange\"`): this agent sent a grant token; send a JWT from [auth.jwt]'s issuer instead",
                srv.name
            )));
        };
        let cfg = st.config();
        let redirect = redirect_uri(&cfg);
        let jwt_issuer = cfg.jwt.as_ref().map(|j| j.issuer.as_str());
        broker
            .exchange(&st.store, &st.clock, srv, jwt, jwt_issuer, &redirect)
            .await?
    } else {
        let Transport::Http { url, .. } = &srv.transport else {
            return Err(BrokerError::Config(format!(
                "server `{}` is not a Streamable HTTP server",
                srv.name
            )));
        };
        // The version first: a connection changed anywhere empties the cached tokens.
        st.state_version().await?;
        broker
            .token(&st.store, &st.cache, &st.clock, &srv.name, url, identity)
            .await?
    };
    if let Transport::Http { headers, .. } = &mut srv.transport {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        headers.push(("Authorization".into(), format!("Bearer {token}")));
    }
    Ok(Some(who))
}

/// The upstream identity `identity` acts as at the `auth = "oauth"` server `server` (for
/// the audit record of a call routed there through a virtual server): from the cached
/// token, else from the stored connection (no unsealing needed). `None` when not connected
/// or unreadable: the member's own request then fails with the reason.
pub(crate) async fn identity_at(
    st: &crate::AppState,
    server: &str,
    identity: &str,
) -> Option<UpstreamIdentity> {
    if let Some(Some(t)) = st.cache.token(server, identity) {
        return Some(who_of(&t));
    }
    let (s, i) = (server.to_string(), identity.to_string());
    let c = st.state(move |st| st.connection(&s, &i)).await.ok()??;
    Some(UpstreamIdentity {
        subject: c.subject,
        client_id: c.client_id,
    })
}

/// `srv` as a request to it is made: for a server with `auth = "oauth"`, with `identity`'s
/// current token (refreshed when due); otherwise `srv` itself.
pub(crate) async fn with_token<'a>(
    st: &crate::AppState,
    srv: &'a ServerConfig,
    identity: Option<&str>,
    agent_jwt: Option<&str>,
) -> Result<std::borrow::Cow<'a, ServerConfig>, String> {
    match (srv.oauth.is_some(), identity) {
        (true, Some(identity)) => {
            let mut owned = srv.clone();
            crate::oauth::attach(st, &mut owned, identity, agent_jwt)
                .await
                .map_err(|e| e.to_string())?;
            Ok(std::borrow::Cow::Owned(owned))
        }
        (true, None) => Err(format!(
            "server `{}` needs an identity's token, and this session has none",
            srv.name
        )),
        (false, _) => Ok(std::borrow::Cow::Borrowed(srv)),
    }
}

/// A member's server config for the request being made ([`with_token`]).
pub(crate) async fn member_srv<'a>(
    st: &crate::AppState,
    m: &'a crate::session::Member,
) -> Result<std::borrow::Cow<'a, ServerConfig>, String> {
    if m.srv.oauth.is_none() {
        return Ok(std::borrow::Cow::Borrowed(&m.srv));
    }
    let jwt = m.agent_jwt.get();
    with_token(st, &m.srv, m.identity.as_deref(), jwt.as_deref()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_from_a_jwt_and_nothing_from_anything_else() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","client_id":"c1"}"#);
        let t = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig");
        assert_eq!(claims_of(&t), (Some("alice".into()), Some("c1".into())));
        assert_eq!(claims_of("opaque-token"), (None, None));
        assert_eq!(claims_of("a.!!!.c"), (None, None));
    }

    #[test]
    fn the_redirect_uri_is_under_the_public_url_or_the_listen_address() {
        let base = std::path::Path::new("/tmp");
        let cfg = Config::parse("listen = \"0.0.0.0:8080\"\n", &base.join("t.toml"), base).unwrap();
        assert_eq!(redirect_uri(&cfg), "http://127.0.0.1:8080/oauth/callback");
        let cfg = Config::parse(
            "[oauth]\ntoken_key_env = \"K\"\npublic_url = \"https://gw.example/\"\n",
            &base.join("t.toml"),
            base,
        )
        .unwrap();
        assert_eq!(redirect_uri(&cfg), "https://gw.example/oauth/callback");
    }

    #[test]
    fn an_agents_jwt_goes_only_to_an_authorization_server_the_config_trusts() {
        let toml = "[oauth]\ntoken_key_env = \"K\"\n[policies]\np = \"p.json\"\n\
            [[servers]]\nname = \"pinned\"\nurl = \"https://gh.example/mcp\"\npolicy = \"p\"\nauth = \"oauth\"\nauthorization_server = \"https://as.example\"\n\
            [[servers]]\nname = \"open\"\nurl = \"https://gh.example/mcp\"\npolicy = \"p\"\nauth = \"oauth\"\n";
        let files = toolgate_config::MemFiles::new()
            .with("/etc/tg/toolgate.toml", toml)
            .with("/etc/tg/p.json", r#"{"version":"1","default":"deny"}"#);
        let cfg = Config::load_with(std::path::Path::new("/etc/tg/toolgate.toml"), &files).unwrap();
        let found = |issuer: &str| {
            Discovered {
            resource: "https://gh.example/mcp".into(),
            server: ServerMetadata::read(
                issuer,
                format!(r#"{{"issuer":"{issuer}","authorization_endpoint":"{issuer}/auth","token_endpoint":"{issuer}/token","code_challenge_methods_supported":["S256"]}}"#).as_bytes(),
            )
            .unwrap(),
            scope: None,
        }
        };
        let (pinned, open) = (cfg.server("pinned").unwrap(), cfg.server("open").unwrap());
        // Pinned: that one only (a trailing slash aside), whatever the JWT issuer.
        assert!(trusted(pinned, &found("https://as.example/"), None).is_ok());
        assert!(trusted(
            pinned,
            &found("https://evil.example"),
            Some("https://evil.example")
        )
        .is_err());
        // Not pinned: anything for a consent flow; for an exchange, the JWTs' issuer only,
        // and the refusal gives the line to add.
        assert!(trusted(open, &found("https://as.example"), None).is_ok());
        assert!(trusted(
            open,
            &found("https://idp.example"),
            Some("https://idp.example")
        )
        .is_ok());
        let e = trusted(
            open,
            &found("https://as.example"),
            Some("https://idp.example"),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains(r#"authorization_server = "https://as.example""#),
            "{e}"
        );
    }
}
