//! The `countersign` command: argument parsing, logging setup and exit codes
//! (0 ok, 1 config error, 2 runtime failure). Everything else is in the
//! library: `server::run`, `kinds::load`, `demo::run`, `explain::explain`,
//! `fake::cli::run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use countersign::{config, demo, fake, kinds, server};

/// Per-thread free lists: no lock and no arena search on the request path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        kind: fake::cli::FakeKind,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // The access lines (target countersign::access, one per request) are
    // formatted by hand and written in batches, not by tracing's formatter.
    server::access_log::install(match format {
        LogFormat::Json => countersign::proxy::AccessFormat::Json,
        LogFormat::Pretty => countersign::proxy::AccessFormat::Pretty { ansi },
    });
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
    countersign::secret::protect_process();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Explain {
            config,
            route,
            method,
            path,
            data,
            headers,
        } => {
            let cfg = match kinds::load(&config) {
                Ok(c) => c,
                Err(problems) => return report(&config, &problems),
            };
            let explained = countersign::explain::explain(
                &cfg,
                &route,
                &method,
                &path,
                data.as_deref(),
                &headers,
            );
            match explained {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        command => match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(serve(command)),
            Err(e) => {
                eprintln!("cannot start the async runtime: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// The commands that run until stopped.
async fn serve(command: Command) -> ExitCode {
    let outcome = match command {
        Command::Run { config } => {
            let cfg = match kinds::load(&config) {
                Ok(c) => c,
                Err(problems) => return report(&config, &problems),
            };
            server::run(cfg, config, server::shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
        Command::Demo { config } => match demo::run(&config).await {
            Err(demo::DemoError::Config(problems)) => return report(&config, &problems),
            other => other.map_err(|e| format!("demo failed: {e}")),
        },
        Command::Fake { kind } => {
            let stop = || -> fake::cli::Shutdown { Box::pin(server::shutdown_signal()) };
            match fake::cli::run(kind, stop).await {
                Err(fake::cli::FakeCliError::Usage(e)) => {
                    eprintln!("{e}");
                    return ExitCode::from(1);
                }
                other => other.map_err(|e| e.to_string()),
            }
        }
        Command::Check { .. } | Command::Explain { .. } => Ok(()),
    };
    server::access_log::flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match kinds::load(path) {
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

fn report(path: &Path, problems: &[config::Problem]) -> ExitCode {
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
