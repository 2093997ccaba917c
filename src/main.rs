//! The `countersign` command: argument parsing, logging setup and exit codes
//! (0 ok, 1 config error, 2 runtime failure). Everything else is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use countersign::{admin, config, demo, fake, server};

/// Per-thread free lists: no lock and no arena search on the request path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use http_body_util::Either;

#[derive(Parser)]
#[command(
    name = "countersign",
    version,
    about = "A signing sidecar for third-party APIs"
)]
struct Cli {
    /// Log line format (filter with RUST_LOG, default "info").
    #[arg(long, value_enum, default_value = "pretty", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(short, long, default_value = "config/countersign.toml")]
        config: PathBuf,
    },
    /// Validate the config, resolve every secret, print the route table (secrets redacted).
    Check {
        #[arg(short, long, default_value = "config/countersign.toml")]
        config: PathBuf,
    },
    /// Start fakes of every upstream and a gateway in front of them (config/demo.toml).
    Demo {
        #[arg(short, long, default_value = "config/demo.toml")]
        config: PathBuf,
    },
    /// Print the request countersign would send upstream (secrets redacted), without sending it.
    Explain {
        #[arg(short, long, default_value = "config/countersign.toml")]
        config: PathBuf,
        /// The route name (first path segment).
        route: String,
        /// The HTTP method, e.g. POST.
        method: String,
        /// The path after the route prefix, with its query, e.g. /v1/item/set.
        path: String,
        /// The request body.
        #[arg(short, long)]
        data: Option<String>,
        /// A caller header, 'Name: value' (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
    },
    /// Run one strict fake upstream, for testing the services behind the gateway.
    Fake {
        #[command(subcommand)]
        kind: FakeKind,
    },
}

#[derive(Subcommand)]
enum FakeKind {
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
        #[arg(long, default_value = countersign::fake::tts::DEMO_IDENTIFIER)]
        identifier: String,
        #[arg(long, default_value = countersign::fake::tts::DEMO_EMAIL)]
        email: String,
        #[arg(long, default_value = countersign::fake::tts::DEMO_PASSWORD)]
        password: String,
        /// The access key it accepts first (rotations change it).
        #[arg(long, default_value = countersign::fake::tts::DEMO_ACCESS_KEY)]
        access_key: String,
        /// The secret it expects in bodies; empty: none.
        #[arg(long, default_value = countersign::fake::tts::DEMO_SECRET)]
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
        #[arg(long, default_value = countersign::fake::teamdrive::DEMO_KEY)]
        key: String,
        /// md5 or hmac-sha1.
        #[arg(long, default_value = "md5")]
        auth: String,
        /// Accepted difference between <requesttime> and now.
        #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
        window: Duration,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if let Command::Check { config } = &cli.command {
        return check(config);
    }
    if let Command::Explain {
        config,
        route,
        method,
        path,
        data,
        headers,
    } = &cli.command
    {
        let cfg = match config::load(config) {
            Ok(c) => c,
            Err(problems) => return report(config, &problems),
        };
        return match countersign::explain::explain(
            &cfg,
            route,
            method,
            path,
            data.as_deref(),
            headers,
        ) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async_main(cli.command))
}

async fn async_main(command: Command) -> ExitCode {
    match command {
        Command::Run { config } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(problems) => return report(&config, &problems),
            };
            run(cfg, config).await
        }
        Command::Demo { config } => match demo::run(&config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(demo::DemoError::Config(problems)) => report(&config, &problems),
            Err(e) => {
                eprintln!("demo failed: {e}");
                ExitCode::from(2)
            }
        },
        Command::Fake { kind } => run_fake(kind).await,
        Command::Check { .. } | Command::Explain { .. } => ExitCode::SUCCESS,
    }
}

async fn run(cfg: config::Config, path: PathBuf) -> ExitCode {
    let listen = cfg.server.listen.clone();
    let admin = cfg.server.admin;
    let workers = cfg.server.workers;
    let gateway = match server::gateway(cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let serve_on = match &listen {
        config::Listen::Tcp(addr) => server::bind_reuseport(*addr, workers).map(Either::Left),
        #[cfg(unix)]
        config::Listen::Unix(path) => server::bind_unix(path).map(Either::Right),
        #[cfg(not(unix))]
        config::Listen::Unix(_) => Err(std::io::Error::other("unix sockets need a unix system")),
    };
    let serve_on = match serve_on {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(listen = %listen, workers, "countersign listening");
    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(admin_addr) = admin {
        match tokio::net::TcpListener::bind(admin_addr).await {
            Ok(l) => {
                tracing::info!(%admin_addr, "admin listening: /healthz /readyz /metrics");
                let mut rx = stop_rx.clone();
                tokio::spawn(admin::serve(gateway.clone(), l, async move {
                    let _ = rx.wait_for(|s| *s).await;
                }));
            }
            Err(e) => {
                eprintln!("cannot listen on admin {admin_addr}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    #[cfg(unix)]
    tokio::spawn(server::reload_on_sighup(gateway.clone(), path.clone()));
    tokio::spawn(server::reload_on_file_change(
        gateway.clone(),
        path,
        std::time::Duration::from_secs(2),
    ));
    let signal = async move {
        server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    match serve_on {
        Either::Left(tcp) => {
            let threads = match server::serve_workers(gateway, tcp, stop_rx) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("cannot start worker threads: {e}");
                    return ExitCode::from(2);
                }
            };
            signal.await;
            // Each worker drains its own connections, then flushes state.
            let joined =
                tokio::task::spawn_blocking(move || threads.into_iter().all(|t| t.join().is_ok()))
                    .await;
            if !matches!(joined, Ok(true)) {
                eprintln!("a worker thread failed while draining");
                return ExitCode::from(2);
            }
        }
        Either::Right(unix) => server::serve(gateway, unix, signal).await,
    }
    ExitCode::SUCCESS
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            println!("{}", demo::route_table(&cfg));
            println!(
                "config {} is valid: {} route(s)",
                path.display(),
                cfg.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => report(path, &problems),
    }
}

fn report(path: &std::path::Path, problems: &[config::Problem]) -> ExitCode {
    eprintln!(
        "config {} has {} problem(s):",
        path.display(),
        problems.len()
    );
    for p in problems {
        eprintln!("  {p}");
    }
    ExitCode::from(1)
}

async fn bind(listen: SocketAddr) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            None
        }
    }
}

fn fake_result(r: std::io::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake failed: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run_fake(kind: FakeKind) -> ExitCode {
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
                let Some(l) = bind(at).await else {
                    return ExitCode::from(2);
                };
                tracing::info!(listen = %at, "fake TTS spider listening");
                tokio::spawn(
                    fake.clone()
                        .serve_spider(l, None, server::shutdown_signal()),
                );
            }
            let Some(l) = bind(listen).await else {
                return ExitCode::from(2);
            };
            tracing::info!(%listen, "fake TTS listening; GET /_fake/stats for its counters");
            fake_result(fake.serve(l, None, server::shutdown_signal()).await)
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
                        eprintln!("--app must be APPID=HEXKEY");
                        return ExitCode::from(1);
                    };
                    cfg.apps.push((id.to_string(), key.to_string()));
                }
            }
            let Some(l) = bind(listen).await else {
                return ExitCode::from(2);
            };
            tracing::info!(%listen, "fake utilsio listening under /api/v1");
            fake_result(
                fake::utilsio::Fake::new(cfg)
                    .serve(l, None, server::shutdown_signal())
                    .await,
            )
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
                    eprintln!("--auth must be md5 or hmac-sha1");
                    return ExitCode::from(1);
                }
            };
            let cfg = fake::teamdrive::Config { key, auth, window };
            let Some(l) = bind(listen).await else {
                return ExitCode::from(2);
            };
            tracing::info!(%listen, "fake TeamDrive listening on /yvva/api/api.xml");
            fake_result(
                fake::teamdrive::Fake::new(cfg)
                    .serve(l, None, server::shutdown_signal())
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
                            eprintln!("--account must be ACCOUNTID=APIKEY");
                            return ExitCode::from(1);
                        }
                    }
                }
                cfg.accounts = parsed;
            }
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => match fake::tls_config(&c, &k) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(1);
                    }
                },
                _ => None,
            };
            let listener = match tokio::net::TcpListener::bind(listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("cannot listen on {listen}: {e}");
                    return ExitCode::from(2);
                }
            };
            tracing::info!(%listen, "fake XRTC listening; GET /_fake/stats for its counters");
            match fake::xrtc::Fake::new(cfg)
                .serve(listener, tls, server::shutdown_signal())
                .await
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fake failed: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
