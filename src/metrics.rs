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
    pub upstream_errors: Family<RouteClass, Counter>,
    pub replays: Family<RouteLabel, Counter>,
    pub reloads: Family<ReloadResult, Counter>,
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
        Metrics {
            registry,
            reloads,
            requests,
            duration,
            logins,
            rate_limited,
            quota_used,
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
        }
    }
}

pub fn route(route: &str) -> RouteLabel {
    RouteLabel {
        route: route.to_string(),
    }
}
