//! `/metrics` in the Prometheus text format: calls by server, tool and decision; decision
//! and upstream latency histograms; requests by method; upstream health; pending
//! approvals; store errors.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    server: String,
    tool: String,
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    server: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    server: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InspectionLabels {
    server: String,
    kind: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    store: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    requests: Family<MethodLabels, Counter>,
    decision_seconds: Family<ServerLabels, Histogram, fn() -> Histogram>,
    upstream_seconds: Family<ServerLabels, Histogram, fn() -> Histogram>,
    outcomes: Family<OutcomeLabels, Counter>,
    store_errors: Family<ErrorLabels, Counter>,
    upstream_up: Family<ServerLabels, Gauge>,
    pending_approvals: Gauge,
    open_sessions: Family<ServerLabels, Gauge>,
    upstream_channels: Family<ServerLabels, Gauge>,
    sessions_refused: Family<ServerLabels, Counter>,
    open_connections: Gauge,
    connections_refused: Counter,
    inspections: Family<InspectionLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("toolgate");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "tool_calls",
            "tools/call requests judged, by server, tool and decision",
            calls.clone(),
        );
        let requests = Family::<MethodLabels, Counter>::default();
        registry.register(
            "requests",
            "JSON-RPC requests that passed authentication, by server and method",
            requests.clone(),
        );
        let decision_seconds =
            Family::<ServerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        registry.register(
            "decision_seconds",
            "Time from a tools/call's arrival to its decision (limits and audit record included)",
            decision_seconds.clone(),
        );
        let upstream_seconds =
            Family::<ServerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        registry.register(
            "upstream_seconds",
            "Time the upstream took to answer a forwarded tools/call",
            upstream_seconds.clone(),
        );
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register("upstream_outcomes", "Forwarded tools/call outcomes (ok, tool_error, jsonrpc_error, transport_error, timeout, abandoned)", outcomes.clone());
        let store_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Errors of the state stores (store: grants, counters and approvals; audit): each refused a call, or let it through under state_fail_mode = \"open\"",
            store_errors.clone(),
        );
        let upstream_up = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "upstream_up",
            "1 when the server's last forwarded call got an answer (even an error result), 0 when it failed to reach it or timed out",
            upstream_up.clone(),
        );
        let pending_approvals = Gauge::default();
        registry.register(
            "pending_approvals",
            "Calls waiting for a person's approval",
            pending_approvals.clone(),
        );
        let open_sessions = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "open_sessions",
            "Agent sessions open, by server (max_sessions_per_server)",
            open_sessions.clone(),
        );
        let upstream_channels = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "upstream_channels",
            "Live upstream channels, by server: stdio children and legacy SSE connections, one per session",
            upstream_channels.clone(),
        );
        let sessions_refused = Family::<ServerLabels, Counter>::default();
        registry.register(
            "sessions_refused",
            "initialize requests refused at a session cap (max_sessions_per_grant, max_sessions_per_server)",
            sessions_refused.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open (max_connections)",
            open_connections.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Client connections closed at once because max_connections were open",
            connections_refused.clone(),
        );
        let inspections = Family::<InspectionLabels, Counter>::default();
        registry.register(
            "inspections",
            "Findings of content inspection in tool results, by server, kind (secrets, email, card, an injection signal, ...) and action (redacted, flagged, stripped, denied)",
            inspections.clone(),
        );
        Metrics {
            registry,
            inspections,
            open_sessions,
            upstream_channels,
            sessions_refused,
            open_connections,
            connections_refused,
            calls,
            requests,
            decision_seconds,
            upstream_seconds,
            outcomes,
            store_errors,
            upstream_up,
            pending_approvals,
        }
    }
}

impl Metrics {
    /// A judged `tools/call`.
    pub fn call(&self, server: &str, tool: &str, decision: &str, decision_secs: f64) {
        self.calls
            .get_or_create(&CallLabels {
                server: server.to_string(),
                tool: tool.to_string(),
                decision: decision.to_string(),
            })
            .inc();
        self.decision_seconds
            .get_or_create(&ServerLabels {
                server: server.to_string(),
            })
            .observe(decision_secs);
    }

    /// A request that passed authentication.
    pub fn request(&self, server: &str, method: &str) {
        self.requests
            .get_or_create(&MethodLabels {
                server: server.to_string(),
                method: method.to_string(),
            })
            .inc();
    }

    /// How a forwarded call ended, and how long the upstream took.
    pub fn outcome(&self, server: &str, outcome: &str, upstream_secs: f64) {
        let up = match outcome {
            "transport_error" | "timeout" => Some(0),
            "abandoned" => None,
            _ => Some(1),
        };
        if let Some(up) = up {
            self.upstream_up
                .get_or_create(&ServerLabels {
                    server: server.to_string(),
                })
                .set(up);
        }
        self.outcomes
            .get_or_create(&OutcomeLabels {
                server: server.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.upstream_seconds
            .get_or_create(&ServerLabels {
                server: server.to_string(),
            })
            .observe(upstream_secs);
    }

    /// A store failed (`counters`, `audit`, `store`).
    pub fn store_error(&self, store: &str) {
        self.store_errors
            .get_or_create(&ErrorLabels {
                store: store.to_string(),
            })
            .inc();
    }

    /// Content inspection found `count` of `kind` in a result and did `action`.
    pub fn inspection(&self, server: &str, kind: &str, action: &str, count: usize) {
        self.inspections
            .get_or_create(&InspectionLabels {
                server: server.to_string(),
                kind: kind.to_string(),
                action: action.to_string(),
            })
            .inc_by(count as u64);
    }

    /// An `initialize` refused at a session cap.
    pub fn session_refused(&self, server: &str) {
        self.sessions_refused
            .get_or_create(&ServerLabels {
                server: server.to_string(),
            })
            .inc();
    }

    /// A client connection opened (`+1`) or closed (`-1`).
    pub fn connection(&self, delta: i64) {
        self.open_connections.inc_by(delta);
    }

    /// A client connection refused at `max_connections`.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// The text exposition. `sessions`: (server, open sessions, live channels), every
    /// configured server listed (0 when none).
    pub fn render(
        &self,
        pending_approvals: i64,
        sessions: &[(String, usize, usize)],
    ) -> Result<String, std::fmt::Error> {
        self.pending_approvals.set(pending_approvals);
        for (server, open, channels) in sessions {
            let labels = ServerLabels {
                server: server.clone(),
            };
            self.open_sessions
                .get_or_create(&labels)
                .set(i64::try_from(*open).unwrap_or(i64::MAX));
            self.upstream_channels
                .get_or_create(&labels)
                .set(i64::try_from(*channels).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
