//! Prometheus metrics (prometheus-client, OpenMetrics text), owned by the
//! gateway rather than a global, so tests can run several gateways at once.
//! Names are the README's ("Operations"), plus what an operator alerts on: login failures,
//! upstream errors by class, replays.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteResult {
    pub route: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteClass {
    pub route: String,
    pub class: &'static str,
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub duration: HistogramFamily,
    pub logins: Family<RouteResult, Counter>,
    pub rate_limited: Family<RouteLabel, Counter>,
    pub quota_used: Family<RouteLabel, Gauge>,
    /// The route's monthly quota, beside `quota_used`, so that an alert can
    /// say "above 90 % of the month" without knowing the config.
    pub quota_limit: Family<RouteLabel, Gauge>,
    pub upstream_errors: Family<RouteClass, Counter>,
    pub replays: Family<RouteLabel, Counter>,
    pub reloads: Family<ReloadResult, Counter>,
    /// Caller connections open in the process (every worker's).
    pub connections_open: Gauge,
    /// `server.max_connections`, beside the open count, for "near the cap".
    pub connections_max: Gauge,
    /// Idle keep-alive connections closed to admit a new one at `max_connections`.
    pub connections_evicted: Counter,
    /// Requests and connections cut off, by [`Cutoff`] reason.
    pub cutoffs: Family<CutoffLabel, Counter>,
}

/// Why countersign cut a caller's request or answer short: each reason is
/// a bound of DESIGN §6, counted in `countersign_cutoffs_total{reason}`
/// and named in the access log line's `cutoff` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cutoff {
    /// A request head begun but not finished within `header_read_timeout`.
    HeaderTimeout,
    /// A request body not whole within `body_read_timeout` of its head: 408.
    BodyTimeout,
    /// The upstream silent past the route's `read_timeout`: 504 before the
    /// answer head, a cut answer after it.
    UpstreamReadTimeout,
    /// A request whose framing cannot be trusted (RFC 9112): 400 and close.
    BadFraming,
}

impl Cutoff {
    pub const ALL: [Cutoff; 4] = [
        Cutoff::HeaderTimeout,
        Cutoff::BodyTimeout,
        Cutoff::UpstreamReadTimeout,
        Cutoff::BadFraming,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cutoff::HeaderTimeout => "header_timeout",
            Cutoff::BodyTimeout => "body_timeout",
            Cutoff::UpstreamReadTimeout => "upstream_read_timeout",
            Cutoff::BadFraming => "bad_framing",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CutoffLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadResult {
    pub result: &'static str,
}

fn duration_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "countersign_requests",
            "Requests answered, by route and status (countersign's or the upstream's)",
            requests.clone(),
        );
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "countersign_request_duration_seconds",
            "Time from arrival to the response head, waits included",
            duration.clone(),
        );
        let logins = Family::<RouteResult, Counter>::default();
        registry.register(
            "countersign_upstream_logins",
            "Upstream logins, by result (ok, failed)",
            logins.clone(),
        );
        let rate_limited = Family::<RouteLabel, Counter>::default();
        registry.register(
            "countersign_rate_limited",
            "Requests refused with 429 rate_limited or quota_exhausted",
            rate_limited.clone(),
        );
        let quota_used = Family::<RouteLabel, Gauge>::default();
        registry.register(
            "countersign_quota_used",
            "Quota units used this UTC month",
            quota_used.clone(),
        );
        let quota_limit = Family::<RouteLabel, Gauge>::default();
        registry.register(
            "countersign_quota_limit",
            "The route's monthly quota (quota.per_month)",
            quota_limit.clone(),
        );
        let upstream_errors = Family::<RouteClass, Counter>::default();
        registry.register(
            "countersign_upstream_errors",
            "Failures reaching the upstream, by class (unreachable, timeout, login_failed, login_throttled)",
            upstream_errors.clone(),
        );
        let replays = Family::<RouteLabel, Counter>::default();
        registry.register(
            "countersign_replays",
            "Requests replayed once after the upstream rejected the session",
            replays.clone(),
        );
        let reloads = Family::<ReloadResult, Counter>::default();
        registry.register(
            "countersign_config_reloads",
            "Config reloads (SIGHUP), by result (ok, rejected)",
            reloads.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "countersign_connections_open",
            "Caller connections open in the process (at most server.max_connections)",
            connections_open.clone(),
        );
        let connections_max = Gauge::default();
        registry.register(
            "countersign_connections_max",
            "server.max_connections: caller connections the process serves at once",
            connections_max.clone(),
        );
        let connections_evicted = Counter::default();
        registry.register(
            "countersign_connections_evicted",
            "Idle keep-alive caller connections closed to admit a new one at server.max_connections",
            connections_evicted.clone(),
        );
        let cutoffs = Family::<CutoffLabel, Counter>::default();
        registry.register(
            "countersign_cutoffs",
            "Requests, answers and connections cut off, by reason (header_timeout, body_timeout, upstream_read_timeout, bad_framing)",
            cutoffs.clone(),
        );
        // Every reason exists from the start, so a rate() over it has a series.
        for c in Cutoff::ALL {
            let _ = cutoffs.get_or_create(&CutoffLabel { reason: c.as_str() });
        }
        Metrics {
            registry,
            connections_open,
            connections_max,
            connections_evicted,
            cutoffs,
            reloads,
            requests,
            duration,
            logins,
            rate_limited,
            quota_used,
            quota_limit,
            upstream_errors,
            replays,
        }
    }
}

/// The shared state store's health, owned by the store and registered here.
#[derive(Clone, Default)]
pub struct StateMetrics {
    /// 1 while Redis answers, 0 from a failure until it answers again.
    pub up: Gauge,
    pub failures: Counter,
    /// Requests let through under local limits (`on_state_failure = "local"`).
    pub fallbacks: Counter,
}

impl Metrics {
    pub fn register_state(&mut self, m: &StateMetrics) {
        self.registry.register(
            "countersign_state_up",
            "Whether the shared state store (Redis) answers: 1 yes, 0 no",
            m.up.clone(),
        );
        self.registry.register(
            "countersign_state_failures",
            "Calls to the shared state store (Redis) that failed or timed out",
            m.failures.clone(),
        );
        self.registry.register(
            "countersign_state_fallbacks",
            "Requests sent under local limits while the shared state store was unreachable",
            m.fallbacks.clone(),
        );
    }

    /// Counts one cut-off.
    pub fn cutoff(&self, c: Cutoff) {
        self.cutoffs
            .get_or_create(&CutoffLabel { reason: c.as_str() })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A route's most used metric handles, looked up once when the route is
/// built instead of by label on every request.
pub struct RouteMetrics {
    /// `countersign_requests_total{route, status="200"}`.
    pub ok: Counter,
    pub duration: Histogram,
    /// Where an answer cut mid-body for the upstream's silence is counted
    /// and logged: the answer's head (and so its access log line) is out
    /// by then.
    pub answer_cut: AnswerCut,
}

/// Counts and logs an answer cut after its head because the upstream went
/// silent past `read_timeout`. One per route, shared by its answers.
#[derive(Clone)]
pub struct AnswerCut(std::sync::Arc<(Counter, String)>);

impl AnswerCut {
    pub fn record(&self) {
        let (counter, route) = &*self.0;
        counter.inc();
        tracing::warn!(
            route = %route,
            cutoff = Cutoff::UpstreamReadTimeout.as_str(),
            "answer cut: the upstream went silent mid-body past read_timeout; the caller sees a truncated answer"
        );
    }
}

impl Metrics {
    pub fn for_route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            ok: self
                .requests
                .get_or_create(&RouteStatus {
                    route: route.to_string(),
                    status: 200,
                })
                .clone(),
            duration: self.duration.get_or_create(&self::route(route)).clone(),
            answer_cut: AnswerCut(std::sync::Arc::new((
                self.cutoffs
                    .get_or_create(&CutoffLabel {
                        reason: Cutoff::UpstreamReadTimeout.as_str(),
                    })
                    .clone(),
                route.to_string(),
            ))),
        }
    }
}

pub fn route(route: &str) -> RouteLabel {
    RouteLabel {
        route: route.to_string(),
    }
}
