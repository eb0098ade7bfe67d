//! The gateway's shared state: the current config (swapped on reload), the store, the
//! counters, the sessions and the upstream HTTP client.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use toolgate_store::CounterStore;
use toolgate_store::{AuditLog, Grant, StateStore, StoreError};

use crate::bridge::blocking;
use crate::config::Config;
use crate::session::Sessions;
use serde_json::{json, Value};

/// How many policy documents are checked (inline tests run) at once; see
/// [`AppState::validations`].
pub const MAX_CONCURRENT_VALIDATIONS: usize = 1;

/// Everything a request handler needs.
pub struct AppState {
    config: RwLock<Arc<Config>>,
    /// Grants, admin tokens, pins, approvals and policy history (SQLite or Redis).
    pub store: Arc<dyn StateStore>,
    /// Rate-limit counters.
    pub counters: Arc<dyn CounterStore>,
    /// Live agent sessions.
    pub sessions: Sessions,
    /// The client for Streamable HTTP upstreams (no proxies: upstreams are reached directly).
    pub http: reqwest::Client,
    /// Grants by token and pin checks, valid while the store's version is unchanged.
    pub cache: Arc<crate::cache::StateCache>,
    /// The audit log (`None` when `[audit] enabled = false`).
    pub audit: Option<Arc<AuditLog>>,
    /// What `/metrics` shows.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// JWT identities, when `[auth.jwt]` is configured.
    pub jwt: Option<Arc<crate::jwt::JwtVerifier>>,
    /// Span export, when `[tracing] otlp_endpoint` is set.
    pub otlp: Option<Arc<crate::otlp::Exporter>>,
    /// Held while the admin API rewrites a file (a policy, the config), one change at a time.
    pub admin_lock: Mutex<()>,
    /// Wake-ups for calls held for approval.
    pub decisions: crate::wakeups::Decisions,
    /// Included servers of virtual servers last seen unreachable (`/readyz`).
    pub virtual_down: VirtualDown,
    /// Which era each Streamable HTTP upstream speaks, as found out.
    pub eras: Eras,
    /// Held while a pooled session (one per grant, [`crate::virtual_server::pooled`]) is
    /// looked up and made.
    pub pool_lock: Mutex<()>,
    /// Permits to check a policy document and run its inline tests (CPU work on a
    /// blocking thread): [`MAX_CONCURRENT_VALIDATIONS`] at once.
    /// `POST /api/v1/policies/validate` is refused with 429 while none is free; puts wait.
    pub validations: Arc<tokio::sync::Semaphore>,
    /// `toolgate run`: the one grant every request is admitted with, without a token (its
    /// router is only reached in process, from the stdio front; `serve` never sets it).
    pub local_grant: Option<Grant>,
    /// Where the call path reads the time (the system clock; a manual one in tests).
    pub clock: crate::clock::Clock,
    /// toolgate as the OAuth client of `auth = "oauth"` servers (`None`: no such server).
    pub oauth: Option<Arc<crate::oauth::Broker>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl AppState {
    /// Builds the state.
    pub fn new(
        config: Config,
        store: Arc<dyn StateStore>,
        counters: Arc<dyn CounterStore>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            // An upstream that redirects is refused, not followed: a redirect could lead
            // the gateway to an address its config (or the API's checks) never allowed.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(AppState {
            config: RwLock::new(Arc::new(config)),
            store: store.clone(),
            counters,
            sessions: Sessions::default(),
            http,
            cache: Arc::default(),
            audit: None,
            metrics: Arc::default(),
            jwt: None,
            otlp: None,
            admin_lock: Mutex::new(()),
            decisions: crate::wakeups::Decisions::watch(store.as_ref()),
            virtual_down: VirtualDown::default(),
            eras: Eras::default(),
            pool_lock: Mutex::new(()),
            validations: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_VALIDATIONS)),
            local_grant: None,
            clock: crate::clock::Clock::system(),
            oauth: None,
        })
    }

    /// Accepts JWTs checked by `verifier` as identities.
    pub fn with_jwt(mut self, verifier: Arc<crate::jwt::JwtVerifier>) -> Self {
        self.jwt = Some(verifier);
        self
    }

    /// Exports a span per judged `tools/call` (inside a tokio runtime).
    pub fn with_otlp(mut self, t: &crate::config::TracingConfig) -> Self {
        self.otlp = Some(crate::otlp::Exporter::start(
            &t.otlp_endpoint,
            &t.service_name,
            self.http.clone(),
        ));
        self
    }

    /// Reaches `auth = "oauth"` servers with each identity's own token ([`crate::oauth`]).
    pub fn with_oauth(mut self, broker: Option<Arc<crate::oauth::Broker>>) -> Self {
        self.oauth = broker;
        self
    }

    /// Admits every request with `grant` (stdio mode: see [`AppState::local_grant`]).
    pub fn with_local_grant(mut self, grant: Grant) -> Self {
        self.local_grant = Some(grant);
        self
    }

    /// Reads the time from `clock` on the call path (tests: a [`crate::clock::Clock::manual`]).
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The time now on the call path, in ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Records every judged request in `log`.
    pub fn with_audit(mut self, log: Arc<AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// Runs `f` with the store off the runtime threads (see [`blocking`]).
    pub async fn state<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn StateStore) -> Result<T, StoreError> + Send + 'static,
    {
        blocking(&self.store, f).await
    }

    /// The grant a token opens. Cached; the cache is dropped whenever another process
    /// changed the store (a grant created, rotated or revoked), so changes apply at once.
    pub async fn grant_by_token(&self, token: &str) -> Result<Option<Grant>, StoreError> {
        self.state_version().await?;
        if let Some(hit) = self.cache.grant(token) {
            return Ok(hit);
        }
        let at = self.cache.generation();
        let owned = token.to_string();
        let found = self.state(move |s| s.grant_by_token(&owned)).await?;
        self.cache.keep_grant(at, token, found.clone());
        Ok(found)
    }

    /// The state store's version (see [`StateStore::data_version`]): read in place when the
    /// store can answer without waiting (SQLite's shared memory), else off the runtime
    /// threads. A new version empties [`AppState::cache`].
    pub async fn state_version(&self) -> Result<i64, StoreError> {
        let v = match self.store.data_version_now() {
            Some(v) => v,
            None => self.state(|s| s.data_version()).await?,
        };
        self.cache.seen_version(v);
        Ok(v)
    }

    /// The current config.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in a new config (a reload). Sessions and counters are kept.
    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }
}

/// Included servers that could not be reached, per virtual server (for `/readyz`).
#[derive(Debug, Default)]
pub struct VirtualDown {
    map: std::sync::Mutex<std::collections::BTreeMap<(String, String), String>>,
}

impl VirtualDown {
    /// Marks `server` of `vsrv` down (with why) or up (`None`).
    pub fn mark(&self, vsrv: &str, server: &str, why: Option<String>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = (vsrv.to_string(), server.to_string());
        match why {
            Some(w) => {
                map.insert(key, w);
            }
            None => {
                map.remove(&key);
            }
        }
    }

    /// `{virtual server: {server: why}}` for servers last seen down.
    pub fn report(&self) -> Value {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = serde_json::Map::new();
        for ((v, s), why) in map.iter() {
            let entry = out.entry(v.clone()).or_insert_with(|| json!({}));
            entry[s] = Value::String(why.clone());
        }
        Value::Object(out)
    }
}

/// How long the era found out for an upstream is kept ([`crate::era`]).
pub const ERA_KEEP: Duration = Duration::from_secs(300);

/// How long after a failed probe an upstream is not asked again.
pub const ERA_RETRY: Duration = Duration::from_secs(10);

/// The probe's answers, by server: `Some(modern)`, or `None` for a probe that failed.
#[derive(Debug, Default)]
pub struct Eras {
    known: Mutex<std::collections::HashMap<String, (Option<bool>, std::time::Instant)>>,
}

impl Eras {
    /// What is known of `server`: `Some(Some(modern))`, `Some(None)` when a probe failed
    /// within [`ERA_RETRY`], `None` when it must be asked.
    pub(crate) fn get(&self, server: &str) -> Option<Option<bool>> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let (modern, at) = known.get(server)?;
        let keep = if modern.is_some() {
            ERA_KEEP
        } else {
            ERA_RETRY
        };
        (at.elapsed() < keep).then_some(*modern)
    }

    pub(crate) fn put(&self, server: &str, modern: bool) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.insert(
            server.to_string(),
            (Some(modern), std::time::Instant::now()),
        );
    }

    pub(crate) fn failed(&self, server: &str) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.insert(server.to_string(), (None, std::time::Instant::now()));
    }

    /// Forgets what was found out about `server` (asked again next time).
    pub fn forget(&self, server: &str) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.remove(server);
    }
}
