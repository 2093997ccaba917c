//! The configuration: figment (TOML file + `COUNTERSIGN_` environment) into a
//! typed, validated [`Config`]. Loading never stops at the first mistake: it
//! returns every [`Problem`] with its key path, and never prints a secret.

mod section;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::value::Dict;
use figment::Figment;
use http::Uri;

pub use section::{parse_size, Problem, Section};
pub use state::{redact_url, OnStateFailure, StateConfig};

use crate::secret::Secret;

/// What the config needs to know of the kinds, which live in a layer above
/// (`kinds::Catalog` implements it): each kind's defaults, and the reading
/// of its own keys into `K`, its parsed settings.
pub trait KindCatalog {
    /// A kind's parsed settings, kept in [`RouteConfig::kind`].
    type Settings: Clone + std::fmt::Debug;
    /// Every kind's name, for the "not a kind" problem.
    fn names(&self) -> Vec<&'static str>;
    fn defaults(&self, kind: &str) -> Option<KindDefaults>;
    /// Reads the kind's own keys from the route's table; problems go to `s`.
    fn parse(&self, kind: &str, s: &mut Section<'_>) -> Option<Self::Settings>;
}

/// What a kind implies when the route does not say otherwise (README,
/// "Configuration").
#[derive(Debug, Clone, Copy)]
pub struct KindDefaults {
    pub rate_limit: Option<RateLimit>,
    pub quota_per_month: Option<u64>,
    pub has_session: bool,
    /// With a shared state store, one session serves every replica (the
    /// upstream allows one per credential); otherwise each replica holds its own.
    pub shared_session: bool,
    /// `session_idle` when the route does not set it.
    pub session_idle: Duration,
    /// `login_interval` when the route does not set it.
    pub login_interval: Duration,
}

impl KindDefaults {
    /// A kind with no session, rate limit or quota of its own.
    pub const PLAIN: KindDefaults = KindDefaults {
        rate_limit: None,
        quota_per_month: None,
        has_session: false,
        shared_session: false,
        session_idle: Duration::from_secs(60),
        login_interval: Duration::from_secs(5),
    };
}

/// The whole configuration; `K` is a route's parsed kind settings (the
/// kinds layer's `kinds::Config` fixes it).
#[derive(Debug, Clone)]
pub struct Config<K> {
    pub server: ServerConfig,
    pub clients: BTreeMap<String, ClientConfig>,
    pub routes: BTreeMap<String, RouteConfig<K>>,
    /// Every `{ file = … }` secret, watched for rotation (Kubernetes replaces the file).
    pub secret_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Listen,
    pub admin: Option<SocketAddr>,
    pub max_body: u64,
    pub state_dir: PathBuf,
    /// A shared state store (Redis) instead of the embedded one in `state_dir`.
    pub state: Option<StateConfig>,
    pub shutdown_grace: Duration,
    /// A caller must send its whole request head within this time (slowloris).
    pub header_read_timeout: Duration,
    /// A caller's whole request body must arrive within this time of its
    /// head (a stalled or trickled body); past it, 408 and close.
    pub body_read_timeout: Duration,
    /// Caller connections open at once in the process; at the cap the
    /// longest-idle keep-alive one is closed for a new one.
    pub max_connections: usize,
    /// Worker threads for a TCP listener, each a single-threaded runtime with
    /// its own SO_REUSEPORT socket and upstream connections (two per core
    /// unless set).
    pub workers: usize,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub token: Secret,
    pub routes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
    /// How long a request may queue for a permit before it gets a 429.
    pub wait: Duration,
}

#[derive(Debug, Clone)]
pub struct RouteConfig<K> {
    pub name: String,
    /// The kind's name, as written in `kind = "..."`.
    pub kind_name: String,
    /// What the kind's defaults are (has it a session, is it shared).
    pub defaults: KindDefaults,
    /// Scheme and authority of the upstream; `base_path` holds its path without the trailing '/'.
    pub upstream: Uri,
    pub base_path: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The longest silence from the upstream once a request is sent, before
    /// its answer head and between reads of its body.
    pub read_timeout: Duration,
    pub rate_limit: Option<RateLimit>,
    pub quota_per_month: Option<u64>,
    pub login_interval: Duration,
    pub session_idle: Duration,
    pub ca_file: Option<PathBuf>,
    /// At most this many requests of the route upstream at once (the
    /// others wait their turn within their deadline); `None`: unlimited.
    pub max_in_flight: Option<u32>,
    /// The kind's own settings, read by the kind.
    pub kind: K,
    /// `(key, source)` of each secret, e.g. `("api_key", "env:XRTC_API_KEY")`, for `check`.
    pub secret_sources: Vec<(String, String)>,
}

/// Loads `path`, then the `COUNTERSIGN_*` environment over it.
pub fn load<C: KindCatalog>(path: &Path, kinds: &C) -> Result<Config<C::Settings>, Vec<Problem>> {
    if !path.exists() {
        return Err(vec![Problem::new(
            path.display().to_string(),
            "config file not found",
        )]);
    }
    let figment = Figment::new()
        .merge(Toml::file(path))
        .merge(Env::prefixed("COUNTERSIGN_").split("__"));
    from_figment(figment, kinds).map_err(|mut problems| {
        // A syntax error knows its line; the text around it names the key.
        if problems.iter().any(|p| p.key_unknown()) {
            if let Ok(text) = std::fs::read_to_string(path) {
                let text = zeroize::Zeroizing::new(text);
                problems.iter_mut().for_each(|p| p.locate(&text));
            }
        }
        problems
    })
}

/// Parses TOML text alone (tests, `demo`), environment overrides included.
pub fn from_toml<C: KindCatalog>(
    text: &str,
    kinds: &C,
) -> Result<Config<C::Settings>, Vec<Problem>> {
    let figment = Figment::new()
        .merge(Toml::string(text))
        .merge(Env::prefixed("COUNTERSIGN_").split("__"));
    from_figment(figment, kinds).map_err(|mut problems| {
        problems.iter_mut().for_each(|p| p.locate(text));
        problems
    })
}

fn from_figment<C: KindCatalog>(
    figment: Figment,
    kinds: &C,
) -> Result<Config<C::Settings>, Vec<Problem>> {
    let root: Dict = match figment.extract() {
        Ok(d) => d,
        // Rewritten: figment's and toml's own texts quote the offending
        // line or value, which may be a secret (`api_key = "…`).
        Err(e) => return Err(e.into_iter().map(|e| Problem::from_figment(&e)).collect()),
    };
    let mut problems = Vec::new();
    let config = parse_root(root, kinds, &mut problems);
    match config {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(problems),
    }
}

fn parse_root<C: KindCatalog>(
    root: Dict,
    kinds: &C,
    problems: &mut Vec<Problem>,
) -> Option<Config<C::Settings>> {
    let mut top = Section::new("", root, problems);
    let server_dict = top.table("server").unwrap_or_default();
    let server = top.child("server", server_dict, parse_server);
    let routes_dict = top.table("routes").unwrap_or_default();
    let routes = top.child("routes", routes_dict.clone(), |s| {
        let mut routes = BTreeMap::new();
        for name in routes_dict.keys() {
            if let Some(d) = s.table(name) {
                if let Some(r) = s.child(name, d, |rs| parse_route(name, rs, kinds)) {
                    routes.insert(name.clone(), r);
                }
            }
        }
        routes
    });
    let clients_dict = top.table("clients").unwrap_or_default();
    let clients = top.child("clients", clients_dict.clone(), |s| {
        let mut clients = BTreeMap::new();
        for name in clients_dict.keys() {
            if let Some(d) = s.table(name) {
                if let Some(c) = s.child(name, d, |cs| parse_client(cs, &routes_dict)) {
                    clients.insert(name.clone(), c);
                }
            }
        }
        clients
    });
    refuse_shared_tokens(&clients, &mut top);
    if routes_dict.is_empty() {
        top.problem(
            "routes",
            "no route is configured: add a [routes.NAME] table",
        );
    }
    let secret_files = routes
        .values()
        .flat_map(|r| r.secret_sources.iter())
        .chain(top.secret_sources.iter())
        .filter_map(|(_, source)| source.strip_prefix("file:").map(PathBuf::from))
        .collect();
    top.finish();
    Some(Config {
        server: server?,
        clients,
        routes,
        secret_files,
    })
}

/// Two clients with one token: the caller would be whichever was read last,
/// with that client's routes. Compared by digest, never printed.
fn refuse_shared_tokens(clients: &BTreeMap<String, ClientConfig>, top: &mut Section<'_>) {
    use sha2::Digest;
    let mut seen: Vec<([u8; 32], &str)> = Vec::new();
    for (name, c) in clients {
        let digest: [u8; 32] = sha2::Sha256::digest(c.token.expose().as_bytes()).into();
        match seen.iter().find(|(d, _)| *d == digest) {
            Some((_, first)) => top.problem(
                &format!("clients.{name}.token"),
                format!("is the same token as clients.{first}.token: give each client its own (a caller could not be told apart, and would get one client's routes)"),
            ),
            None => seen.push((digest, name)),
        }
    }
}

fn parse_server(s: &mut Section<'_>) -> Option<ServerConfig> {
    let listen = match s.get::<String>("listen") {
        None => Some(Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080)))),
        Some(text) => parse_listen(&text).or_else(|| {
            s.problem("listen", "is neither HOST:PORT nor unix:/path");
            None
        }),
    };
    let admin = s.get::<String>("admin").and_then(|text| {
        text.parse::<SocketAddr>().ok().or_else(|| {
            s.problem("admin", "is not an address like 127.0.0.1:9090");
            None
        })
    });
    let max_body = s.size("max_body").unwrap_or(1 << 20);
    let state_dir = s
        .get::<PathBuf>("state_dir")
        .unwrap_or_else(|| "state".into());
    let shutdown_grace = s
        .duration("shutdown_grace")
        .unwrap_or(Duration::from_secs(10));
    let header_read_timeout = s
        .duration("header_read_timeout")
        .unwrap_or(Duration::from_secs(30));
    let body_read_timeout = s
        .duration("body_read_timeout")
        .unwrap_or(Duration::from_secs(30));
    let max_connections = match s.get::<usize>("max_connections") {
        Some(0) => {
            s.problem("max_connections", "must be at least 1");
            1
        }
        Some(n) => n,
        None => 10_000,
    };
    let state = state::parse(s);
    // Two workers per core: when a local caller or upstream wakes a worker
    // onto its own core and the two take turns there, another worker can use
    // the idle core (docs/performance.md, "Two workers per core": xrtc
    // 0.75x -> 1.05x of nginx's requests/s on two cores).
    let default_workers =
        2 * std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let workers = match s.get::<usize>("workers") {
        Some(0) => {
            s.problem(
                "workers",
                "must be at least 1 (leave it out for two per core)",
            );
            default_workers
        }
        Some(n) => n,
        None => default_workers,
    };
    Some(ServerConfig {
        listen: listen?,
        admin,
        max_body,
        state_dir,
        state,
        shutdown_grace,
        header_read_timeout,
        body_read_timeout,
        max_connections,
        workers,
    })
}

fn parse_listen(text: &str) -> Option<Listen> {
    if let Some(path) = text.strip_prefix("unix:") {
        return (!path.is_empty()).then(|| Listen::Unix(path.into()));
    }
    text.parse().ok().map(Listen::Tcp)
}

fn parse_client(s: &mut Section<'_>, routes: &Dict) -> Option<ClientConfig> {
    let token = s.secret("token", true);
    let names: Vec<String> = s.required("routes")?;
    for name in &names {
        if !routes.contains_key(name) {
            s.problem(
                "routes",
                format!("names route \"{name}\", which is not configured"),
            );
        }
    }
    Some(ClientConfig {
        token: token?,
        routes: names,
    })
}

fn parse_route<C: KindCatalog>(
    name: &str,
    s: &mut Section<'_>,
    kinds: &C,
) -> Option<RouteConfig<C::Settings>> {
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        let path = s.path().to_string();
        s.problem("", format!("route name in {path} must be letters, digits, '-' or '_' (it is a URL path segment)"));
    }
    let kind_name: Option<String> = s.required("kind");
    let upstream = s.required::<String>("upstream").and_then(|u| {
        parse_upstream(&u)
            .map_err(|m| s.problem("upstream", m))
            .ok()
    });
    let defaults = kind_name
        .as_deref()
        .and_then(|k| kinds.defaults(k))
        .or_else(|| {
            if kind_name.is_some() {
                s.problem(
                    "kind",
                    format!("is not a kind (one of: {})", kinds.names().join(", ")),
                );
            }
            None
        });
    let connect_timeout = s
        .duration("connect_timeout")
        .unwrap_or(Duration::from_secs(5));
    let request_timeout = s
        .duration("request_timeout")
        .unwrap_or(Duration::from_secs(30));
    let read_timeout = s
        .duration("read_timeout")
        .unwrap_or(Duration::from_secs(60));
    let rate_limit = match s.table("rate_limit") {
        Some(d) => s.child("rate_limit", d, parse_rate_limit),
        None => defaults.and_then(|d| d.rate_limit),
    };
    let quota_per_month = match s.table("quota") {
        Some(d) => s.child("quota", d, |q| q.required::<u64>("per_month")),
        None => defaults.and_then(|d| d.quota_per_month),
    };
    let has_session = defaults.map(|d| d.has_session).unwrap_or(true);
    for key in ["login_interval", "session_idle"] {
        if !has_session && s.has(key) {
            let k = kind_name.clone().unwrap_or_default();
            s.problem(
                key,
                format!("kind {k} holds no login session; remove this key"),
            );
        }
    }
    let login_interval = s
        .duration("login_interval")
        .unwrap_or_else(|| defaults.map_or(Duration::from_secs(5), |d| d.login_interval));
    let session_idle = s
        .duration("session_idle")
        .unwrap_or_else(|| defaults.map_or(Duration::from_secs(60), |d| d.session_idle));
    let ca_file = s.get::<PathBuf>("ca_file");
    if let Some(p) = &ca_file {
        if !p.is_file() {
            s.problem("ca_file", format!("file {} not found", p.display()));
        }
    }
    let max_in_flight = s.get::<u32>("max_in_flight");
    if max_in_flight == Some(0) {
        s.problem(
            "max_in_flight",
            "must be at least 1 (leave it out for no limit)",
        );
    }
    let kind = kind_name.as_deref().and_then(|k| kinds.parse(k, s));
    let (upstream, base_path) = upstream?;
    Some(RouteConfig {
        name: name.to_string(),
        kind_name: kind_name?,
        defaults: defaults?,
        upstream,
        base_path,
        connect_timeout,
        request_timeout,
        read_timeout,
        rate_limit,
        quota_per_month,
        login_interval,
        session_idle,
        ca_file,
        max_in_flight: max_in_flight.filter(|n| *n > 0),
        kind: kind?,
        secret_sources: std::mem::take(&mut s.secret_sources),
    })
}

fn parse_rate_limit(s: &mut Section<'_>) -> Option<RateLimit> {
    let per_second = s.required::<f64>("per_second")?;
    if !(per_second > 0.0 && per_second.is_finite()) {
        s.problem("per_second", "must be a positive number");
        return None;
    }
    let burst = s
        .get::<u32>("burst")
        .unwrap_or_else(|| per_second.ceil().max(1.0) as u32);
    if burst == 0 {
        s.problem("burst", "must be at least 1");
    }
    let wait = s.duration("wait").unwrap_or(Duration::from_secs(5));
    Some(RateLimit {
        per_second,
        burst: burst.max(1),
        wait,
    })
}

/// Splits `https://host:port/base` into the origin and the base path (no
/// trailing '/'). Messages never repeat the URL: it could carry a password.
pub fn parse_upstream(text: &str) -> Result<(Uri, String), String> {
    let uri: Uri = text.parse().map_err(|_| "is not a URL".to_string())?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("must start with http:// or https://".into()),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| "has no host".to_string())?
        .clone();
    if authority.as_str().contains('@') {
        // It would be printed by `check`, logged, and sent in `Host`.
        return Err("must not carry a user name or password (user:pass@): credentials belong in the route's secret keys".into());
    }
    if uri.query().is_some() {
        return Err("must not carry a query string".into());
    }
    let origin = Uri::builder()
        .scheme(uri.scheme_str().unwrap_or("https"))
        .authority(authority)
        .path_and_query("/")
        .build()
        .map_err(|_| "is not a URL".to_string())?;
    let base = uri.path().trim_end_matches('/').to_string();
    Ok((origin, base))
}
