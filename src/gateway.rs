//! The running gateway: one immutable [`Snapshot`] of config + routes behind
//! one `ArcSwap`. A request takes the snapshot once, so it never mixes old
//! keys with new limits. Sessions, rate limiters and quotas are kept in a
//! [`Registry`] by credential identity, so two routes sharing a credential
//! share them, and a new snapshot (reload) keeps what did not change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::keys::Keyring;
use crate::kinds::{BuildEnv, Config, RouteConfig};
use crate::limits::{Gcra, Limits, Quota, SharedLimits, UpstreamHold};
use crate::session::{SessionSlot, SharedLogin};
use crate::state::migrate::{Claim, Space};
use crate::state::{RedisState, StateStore};
use crate::upstream::{Upstream, UpstreamError};
use crate::vocab::{credential_at, quota_at, Kind};

/// A configured route, ready for requests.
pub struct Route {
    /// The route's name: the first path segment, and a metric label.
    pub name: String,
    /// The kind's hooks, built from the route's settings.
    pub kind: Arc<dyn Kind>,
    /// The kind's credential at this route's upstream
    /// ([`crate::vocab::credential_at`]): what the session, limits and
    /// state are kept under.
    pub credential: String,
    /// The quota's identity ([`crate::vocab::quota_at`]).
    pub quota_id: String,
    /// Where requests go: the route's `upstream` first, then each of the
    /// kind's further endpoints ([`Kind::endpoints`]), with the same settings.
    pub upstreams: Vec<Upstream>,
    /// The held session, for kinds that log in.
    pub session: Option<Arc<SessionSlot>>,
    /// Rate permit, quota and upstream holds, shared by every route of the credential.
    pub limits: Limits,
    /// `max_in_flight`: requests of this route upstream at once.
    pub in_flight: Option<Arc<tokio::sync::Semaphore>>,
    /// The route's settings as loaded (timeouts, kind defaults), for readyz and explain.
    pub config: RouteConfig,
    /// The route's own metric handles, so the common answer needs no label lookup.
    pub metrics: crate::metrics::RouteMetrics,
}

impl Route {
    /// The route's main upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.upstreams[0]
    }
}

/// An inbound client allowed by `[clients.NAME]`.
pub struct Client {
    /// The `[clients.NAME]` name, for the log line.
    pub name: String,
    /// SHA-256 of the token: compared in constant time, never kept in clear.
    pub token_digest: [u8; 32],
    /// Routes this client may use (403 for the others).
    pub routes: Vec<String>,
}

/// One immutable view of the config and its routes: a request takes it once
/// at its start, so it never mixes old keys with new limits.
pub struct Snapshot {
    /// By name, for `/readyz`, `explain` and tests.
    pub routes: HashMap<String, Arc<Route>>,
    /// The same routes for the request path: a handful, found by a scan
    /// that costs less than hashing the name.
    by_name: Vec<Arc<Route>>,
    /// Inbound access control; empty: any caller may use every route.
    pub clients: Vec<Client>,
    /// `server.max_body`, read on every request.
    pub max_body: u64,
    /// The config this snapshot was built from (reload compares against it).
    pub config: Config,
}

/// Long-lived per-credential state, reused across snapshots: each map is
/// keyed by credential identity, so two routes sharing a credential share
/// the entry, and a reload that keeps the credential keeps its state.
pub struct Registry {
    /// Held login sessions.
    sessions: Mutex<HashMap<String, Arc<SessionSlot>>>,
    /// Local rate limiters (no Redis), by credential and limit.
    rates: Mutex<HashMap<String, Arc<Gcra>>>,
    /// Local monthly quotas (no Redis), by quota identity and limit.
    quotas: Mutex<HashMap<String, Arc<Quota>>>,
    /// "Slow down" holds the upstream imposed, by credential.
    holds: Mutex<HashMap<String, Arc<UpstreamHold>>>,
    /// Limits decided in Redis for every replica, by credential and limit.
    shared_limits: Mutex<HashMap<String, Arc<SharedLimits>>>,
    /// Keys an upstream rotated, stored before use.
    keyring: Keyring,
    /// Redis, when replicas share credentials: limits, logins, sessions and
    /// rotated keys are then decided there.
    pub shared: Option<Arc<RedisState>>,
}

impl Registry {
    pub fn new(store: Arc<dyn StateStore>, shared: Option<Arc<RedisState>>) -> Self {
        Registry {
            sessions: Mutex::default(),
            rates: Mutex::default(),
            quotas: Mutex::default(),
            holds: Mutex::default(),
            shared_limits: Mutex::default(),
            keyring: Keyring::new(store, shared.clone()),
            shared,
        }
    }

    fn get_or<T>(
        map: &Mutex<HashMap<String, Arc<T>>>,
        key: &str,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key.to_string())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }

    /// Drops the sessions and held keys no route uses any more (a removed
    /// credential, a replaced key), so that their secrets are zeroed now
    /// rather than held for the life of the process. Those still used by
    /// requests in flight on an older snapshot go at a later reload.
    fn prune(&self) {
        let mut m = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, slot| Arc::strong_count(slot) > 1);
        drop(m);
        self.keyring.prune();
    }

    /// Every quota, for the exact flush at shutdown.
    pub fn quotas(&self) -> Vec<Arc<Quota>> {
        let m = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        m.values().cloned().collect()
    }

    /// Every shared (Redis) limit, to give back what it holds at shutdown.
    pub fn shared_limits(&self) -> Vec<Arc<SharedLimits>> {
        let m = self.shared_limits.lock().unwrap_or_else(|p| p.into_inner());
        m.values().cloned().collect()
    }
}

pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Snapshot {
    pub fn build(
        config: Config,
        store: &Arc<dyn StateStore>,
        registry: &Registry,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Snapshot, UpstreamError> {
        let mut routes = HashMap::new();
        for (name, rc) in &config.routes {
            let env = BuildEnv {
                keyring: &registry.keyring,
                route: rc,
            };
            let kind = rc.kind.build(&env).map_err(|reason| UpstreamError::Kind {
                route: name.clone(),
                reason,
            })?;
            // Who, at which upstream: a session is never sent elsewhere.
            let cred = credential_at(&kind.credential_id(), &rc.upstream, &rc.base_path);
            let quota_id = quota_at(&kind.quota_id(), &rc.upstream);
            let has_session = rc.defaults.has_session;
            let shared_session = rc.defaults.shared_session;
            let session = has_session.then(|| {
                Registry::get_or(&registry.sessions, &cred, || {
                    SessionSlot::new(
                        cred.clone(),
                        rc.login_interval,
                        rc.session_idle,
                        store.clone(),
                        registry
                            .shared
                            .as_ref()
                            .map(|st| SharedLogin::new(st.clone(), &cred, shared_session)),
                    )
                })
            });
            let limited = rc.rate_limit.is_some() || rc.quota_per_month.is_some();
            let shared = match &registry.shared {
                Some(st) if limited => {
                    let key = format!("{cred}/{:?}/{:?}", rc.rate_limit, rc.quota_per_month);
                    Some(Registry::get_or(&registry.shared_limits, &key, || {
                        SharedLimits::new(
                            st.clone(),
                            &cred,
                            &quota_id,
                            rc.rate_limit,
                            rc.quota_per_month,
                        )
                    }))
                }
                _ => None,
            };
            let rate = rc.rate_limit.filter(|_| shared.is_none()).map(|rl| {
                let key = format!("{cred}/{}/{}", rl.per_second, rl.burst);
                (
                    Registry::get_or(&registry.rates, &key, || Gcra::new(&rl)),
                    rl.wait,
                )
            });
            let quota = rc
                .quota_per_month
                .filter(|_| shared.is_none())
                .map(|limit| {
                    Registry::get_or(&registry.quotas, &format!("{quota_id}/{limit}"), || {
                        Quota::new(limit, &quota_id, store.clone())
                    })
                });
            let hold = Registry::get_or(&registry.holds, &cred, UpstreamHold::default);
            let mut upstreams = vec![Upstream::new(rc)?];
            for (origin, base_path) in kind.endpoints() {
                upstreams.push(Upstream::at(rc, &origin, &base_path)?);
            }
            let route = Route {
                name: name.clone(),
                credential: cred,
                quota_id,
                upstreams,
                kind,
                session,
                in_flight: rc
                    .max_in_flight
                    .map(|n| Arc::new(tokio::sync::Semaphore::new(n as usize))),
                limits: Limits {
                    rate,
                    quota,
                    hold,
                    shared,
                },
                config: rc.clone(),
                metrics: metrics.for_route(name),
            };
            routes.insert(name.clone(), Arc::new(route));
        }
        let clients = config
            .clients
            .iter()
            .map(|(name, c)| Client {
                name: name.clone(),
                token_digest: token_digest(c.token.expose()),
                routes: c.routes.clone(),
            })
            .collect();
        Ok(Snapshot {
            by_name: routes.values().cloned().collect(),
            routes,
            clients,
            max_body: config.server.max_body,
            config,
        })
    }
}

impl Snapshot {
    /// The route named `name` (the first path segment).
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.by_name.iter().find(|r| r.name == name)
    }
}

/// The gateway shared by every connection.
pub struct Gateway {
    /// The config and routes in force; swapped whole by a reload.
    pub snapshot: ArcSwap<Snapshot>,
    /// The Prometheus registry and its families, for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// What outlives a reload: sessions, limits, quotas, rotated keys.
    pub registry: Registry,
    /// Where durable state goes (files in `state_dir`, or Redis).
    pub store: Arc<dyn StateStore>,
}

impl Gateway {
    pub fn new(
        config: Config,
        store: Arc<dyn StateStore>,
        shared: Option<Arc<RedisState>>,
    ) -> Result<Self, UpstreamError> {
        let mut metrics = crate::metrics::Metrics::default();
        if let Some(st) = &shared {
            metrics.register_state(&st.metrics);
        }
        let registry = Registry::new(store.clone(), shared);
        let snapshot = Snapshot::build(config, &store, &registry, &metrics)?;
        Ok(Gateway {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            registry,
            store,
        })
    }

    /// Swaps in a new config. Routes whose credentials did not change keep
    /// their sessions, rate state and quota counters (the registry is keyed
    /// by credential identity); requests in flight finish on the old snapshot.
    pub fn reload(&self, config: Config) -> Result<(), UpstreamError> {
        {
            let old = self.snapshot.load();
            if old.config.server.listen != config.server.listen {
                tracing::warn!(
                    old = %old.config.server.listen,
                    new = %config.server.listen,
                    "server.listen changed: it takes effect only on restart"
                );
            }
            if old.config.server.state.as_ref().map(|s| s.display.as_str())
                != config.server.state.as_ref().map(|s| s.display.as_str())
            {
                tracing::warn!("server.state changed: it takes effect only on restart");
            }
        }
        let snapshot = Snapshot::build(config, &self.store, &self.registry, &self.metrics)?;
        self.snapshot.store(Arc::new(snapshot));
        self.registry.prune();
        Ok(())
    }

    /// What each route's state was kept under in 0.1 and is now, for
    /// `state::migrate` at start.
    pub fn state_claims(&self) -> Vec<Claim> {
        let snap = self.snapshot.load();
        let mut claims = Vec::new();
        for r in snap.routes.values() {
            if let Some(old) = r.kind.legacy_credential_id() {
                claims.push(Claim {
                    route: r.name.clone(),
                    space: Space::Credential,
                    old,
                    new: r.credential.clone(),
                    key_names: self.registry.keyring.names(&r.credential),
                });
            }
            if let Some(old) = r.kind.legacy_quota_id() {
                claims.push(Claim {
                    route: r.name.clone(),
                    space: Space::Quota,
                    old,
                    new: r.quota_id.clone(),
                    key_names: Vec::new(),
                });
            }
        }
        claims
    }

    /// Writes exact quota counts (clean shutdown).
    pub async fn flush(&self) {
        for q in self.registry.quotas() {
            if let Err(e) = q.flush().await {
                tracing::error!(error = %e, "quota flush failed; the stored count stays at its reservation");
            }
        }
        for s in self.registry.shared_limits() {
            if let Err(e) = s.flush().await {
                tracing::error!(error = %e, "could not give back the unused quota units and rate slots to Redis; they stay counted");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload that replaces a key dropped the snapshot, but the registry
    /// kept the old key (and the old credential's session) for the life
    /// of the process.
    #[test]
    fn a_reload_lets_go_of_replaced_keys_and_sessions() {
        let toml = |key: &str| {
            format!(
                "[routes.t]\nkind = \"tts\"\nupstream = \"http://127.0.0.1:1\"\nidentifier = \"site\"\nclient_ver = \"V1\"\nemail = \"m@example.com\"\npassword = \"pw\"\naccess_key = \"{key}\"\nip_address = \"192.0.2.1\"\n\n[routes.x]\nkind = \"xrtc\"\nupstream = \"http://127.0.0.1:2\"\naccount_id = \"AC1\"\napi_key = \"{key}\"\n"
            )
        };
        let config = |key: &str| crate::kinds::from_toml(&toml(key)).unwrap();
        let store: Arc<dyn StateStore> = Arc::new(crate::state::MemoryStore::default());
        let gw = Gateway::new(config("key-one"), store, None).unwrap();
        let held = |gw: &Gateway| {
            let sessions = gw.registry.sessions.lock().unwrap().len();
            (sessions, gw.registry.keyring.len())
        };
        assert_eq!(held(&gw), (2, 1));
        gw.reload(config("key-two")).unwrap();
        // The TTS session is the member's (kept); XRTC's is the old key's (gone).
        assert_eq!(held(&gw), (2, 1));
        gw.reload(config("key-two")).unwrap();
        assert_eq!(held(&gw), (2, 1));
    }
}
