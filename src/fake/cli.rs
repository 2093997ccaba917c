//! `countersign fake KIND`: one strict fake upstream on its own, for testing
//! the services behind the gateway. The command line's arguments and the
//! code that starts each fake.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use clap::Subcommand;

/// Why a fake could not run: bad arguments (exit 1) or a runtime failure (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum FakeCliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Run(String),
}

/// A future that resolves when the fake must stop; one per listener.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Subcommand)]
pub enum FakeKind {
    /// The XRTC API.
    Xrtc {
        #[arg(long, default_value = "127.0.0.1:18101")]
        listen: SocketAddr,
        /// An account the fake accepts, as ACCOUNTID=APIKEY (repeatable; default: the demo account).
        #[arg(long = "account")]
        accounts: Vec<String>,
        /// LOGIN_TIMEOUT: least time between two logins of one API key.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        login_timeout: Duration,
        /// A session unused this long is dead.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        session_idle: Duration,
        /// Requests per second per API key.
        #[arg(long, default_value_t = 20)]
        rate: u32,
        /// GET_ITEM_TIMEOUT for watch and stream modes.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        get_item_timeout: Duration,
        /// Serve HTTPS with this certificate chain (PEM) and --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// The utilsio API (under /api/v1), accepting the demo app or --app ID=HEXKEY.
    Utilsio {
        #[arg(long, default_value = "127.0.0.1:18102")]
        listen: SocketAddr,
        /// An app the fake accepts, as APPID=HEXKEY (repeatable; default: the demo app).
        #[arg(long = "app")]
        apps: Vec<String>,
        /// Accepted clock difference for X-utilsio-Timestamp.
        #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
        window: Duration,
        /// Expect millisecond timestamps.
        #[arg(long)]
        timestamp_ms: bool,
    },
    /// The TTS Utility Server API, and its spider host with --spider-listen.
    Tts {
        #[arg(long, default_value = "127.0.0.1:18104")]
        listen: SocketAddr,
        /// Also serve the spider host (HEAD /https://…) here.
        #[arg(long)]
        spider_listen: Option<SocketAddr>,
        #[arg(long, default_value = super::tts::DEMO_IDENTIFIER)]
        identifier: String,
        #[arg(long, default_value = super::tts::DEMO_EMAIL)]
        email: String,
        #[arg(long, default_value = super::tts::DEMO_PASSWORD)]
        password: String,
        /// The access key it accepts first (rotations change it).
        #[arg(long, default_value = super::tts::DEMO_ACCESS_KEY)]
        access_key: String,
        /// The secret it expects in bodies; empty: none.
        #[arg(long, default_value = super::tts::DEMO_SECRET)]
        secret: String,
        /// A session unused this long expires.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        session_idle: Duration,
        /// At most this many requests per second, then 429 with Retry-After (0: no limit).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// The TeamDrive Registration Server API (POST /yvva/api/api.xml).
    Teamdrive {
        #[arg(long, default_value = "127.0.0.1:18103")]
        listen: SocketAddr,
        /// The service key (default: the demo key).
        #[arg(long, default_value = super::teamdrive::DEMO_KEY)]
        key: String,
        /// md5 or hmac-sha1.
        #[arg(long, default_value = "md5")]
        auth: String,
        /// Accepted difference between <requesttime> and now.
        #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
        window: Duration,
    },
    /// AWS SigV4: S3-like objects (path style), a DynamoDB-like JSON API and
    /// STS AssumeRoleWithWebIdentity, with the demo credentials.
    Aws {
        #[arg(long, default_value = "127.0.0.1:18106")]
        listen: SocketAddr,
        #[arg(long, default_value = super::aws::DEMO_REGION)]
        region: String,
        /// How long credentials issued by its STS live.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        credential_lifetime: Duration,
    },
    /// OAuth 2.0: a client-credentials token endpoint (POST /token) and a
    /// bearer-protected resource (every other path), with the demo client.
    Oauth2 {
        #[arg(long, default_value = "127.0.0.1:18107")]
        listen: SocketAddr,
        /// Token lifetime (announced as expires_in).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        token_lifetime: Duration,
    },
    /// OAuth 1.0a (RFC 5849): a resource that verifies HMAC-SHA1,
    /// HMAC-SHA256 and PLAINTEXT signatures, nonces and timestamps.
    Oauth1 {
        #[arg(long, default_value = "127.0.0.1:18108")]
        listen: SocketAddr,
    },
}

async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, FakeCliError> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| FakeCliError::Run(format!("cannot listen on {listen}: {e}")))
}

fn fake_result(r: std::io::Result<()>) -> Result<(), FakeCliError> {
    r.map_err(|e| FakeCliError::Run(format!("fake failed: {e}")))
}

/// Runs the fake `kind` until the shutdown futures `stop` makes resolve.
pub async fn run(kind: FakeKind, stop: impl Fn() -> Shutdown) -> Result<(), FakeCliError> {
    use super as fake;
    match kind {
        FakeKind::Tts {
            listen,
            spider_listen,
            identifier,
            email,
            password,
            access_key,
            secret,
            session_idle,
            rate,
        } => {
            let cfg = fake::tts::Config {
                identifier,
                email,
                password,
                access_key,
                secret: (!secret.is_empty()).then_some(secret),
                session_idle,
                rate: (rate > 0).then_some((rate, Duration::from_secs(1))),
                ..Default::default()
            };
            let fake = fake::tts::Fake::new(cfg);
            if let Some(at) = spider_listen {
                let l = bind(at).await?;
                tracing::info!(listen = %at, "fake TTS spider listening");
                tokio::spawn(fake.clone().serve_spider(l, None, stop()));
            }
            let l = bind(listen).await?;
            tracing::info!(%listen, "fake TTS listening; GET /_fake/stats for its counters");
            fake_result(fake.serve(l, None, stop()).await)
        }
        FakeKind::Utilsio {
            listen,
            apps,
            window,
            timestamp_ms,
        } => {
            let mut cfg = fake::utilsio::Config {
                window,
                timestamp_ms,
                ..Default::default()
            };
            if !apps.is_empty() {
                cfg.apps = Vec::new();
                for a in &apps {
                    let Some((id, key)) = a.split_once('=') else {
                        return Err(FakeCliError::Usage("--app must be APPID=HEXKEY".into()));
                    };
                    cfg.apps.push((id.to_string(), key.to_string()));
                }
            }
            let l = bind(listen).await?;
            tracing::info!(%listen, "fake utilsio listening under /api/v1");
            fake_result(fake::utilsio::Fake::new(cfg).serve(l, None, stop()).await)
        }
        FakeKind::Teamdrive {
            listen,
            key,
            auth,
            window,
        } => {
            let auth = match auth.as_str() {
                "md5" => fake::teamdrive::Auth::Md5,
                "hmac-sha1" => fake::teamdrive::Auth::HmacSha1,
                _ => {
                    return Err(FakeCliError::Usage(
                        "--auth must be md5 or hmac-sha1".into(),
                    ))
                }
            };
            let cfg = fake::teamdrive::Config { key, auth, window };
            let l = bind(listen).await?;
            tracing::info!(%listen, "fake TeamDrive listening on /yvva/api/api.xml");
            fake_result(fake::teamdrive::Fake::new(cfg).serve(l, None, stop()).await)
        }
        FakeKind::Aws {
            listen,
            region,
            credential_lifetime,
        } => {
            let cfg = fake::aws::Config {
                region,
                credential_lifetime,
                ..Default::default()
            };
            let l = bind(listen).await?;
            tracing::info!(%listen, "fake AWS (S3, JSON API, STS) listening; GET /_fake/stats for its counters");
            fake_result(fake::aws::Fake::new(cfg).serve(l, None, stop()).await)
        }
        FakeKind::Oauth2 {
            listen,
            token_lifetime,
        } => {
            let cfg = fake::oauth2::Config {
                token_lifetime: Some(token_lifetime),
                ..Default::default()
            };
            let l = bind(listen).await?;
            tracing::info!(%listen, "fake OAuth 2.0 token endpoint (POST /token) and resource listening");
            fake_result(fake::oauth2::Fake::new(cfg).serve(l, None, stop()).await)
        }
        FakeKind::Oauth1 { listen } => {
            let l = bind(listen).await?;
            tracing::info!(%listen, "fake OAuth 1.0a resource listening");
            fake_result(
                fake::oauth1::Fake::new(fake::oauth1::Config::default())
                    .serve(l, None, stop())
                    .await,
            )
        }
        FakeKind::Xrtc {
            listen,
            accounts,
            login_timeout,
            session_idle,
            rate,
            get_item_timeout,
            tls_cert,
            tls_key,
        } => {
            let mut cfg = fake::xrtc::Config {
                login_timeout,
                session_idle,
                rate_per_second: rate,
                get_item_timeout,
                ..Default::default()
            };
            if !accounts.is_empty() {
                let mut parsed = Vec::new();
                for a in &accounts {
                    match a.split_once('=') {
                        Some((id, key)) => parsed.push((id.to_string(), key.to_string())),
                        None => {
                            return Err(FakeCliError::Usage(
                                "--account must be ACCOUNTID=APIKEY".into(),
                            ))
                        }
                    }
                }
                cfg.accounts = parsed;
            }
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => {
                    Some(fake::tls_config(&c, &k).map_err(|e| FakeCliError::Usage(e.to_string()))?)
                }
                _ => None,
            };
            let listener = bind(listen).await?;
            tracing::info!(%listen, "fake XRTC listening; GET /_fake/stats for its counters");
            fake_result(
                fake::xrtc::Fake::new(cfg)
                    .serve(listener, tls, stop())
                    .await,
            )
        }
    }
}
