//! What a shared (Redis) permit costs per request, against the local
//! limiter, in one run: `cargo bench --bench state`.
//!
//! Starts its own `redis-server` on a free loopback port (skips with a note
//! when there is none), then takes permits (rate + quota, as every xrtc
//! request does) one after another and from 64 tasks at once, and prints
//! p50 / p99 per permit and permits per second, for the local limiter and
//! for Redis with each persistence setting an operator may choose.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: a panic is a failed run

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign::config::{OnStateFailure, RateLimit, StateConfig};
use countersign::limits::{Gcra, Limits, Quota, SharedLimits, UpstreamHold};
use countersign::secret::Secret;
use countersign::state::{FileStore, RedisState, StateStore};

const SEQUENTIAL: usize = 20_000;
const TASKS: usize = 64;
const PER_TASK: usize = 500;

fn rate() -> RateLimit {
    // High enough that no permit waits: this measures the permit itself.
    // (A million a second is the most Redis's µs schedule can express.)
    RateLimit {
        per_second: 1_000_000.0,
        burst: 1_000_000,
        wait: Duration::from_secs(5),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(name: &str, limits: Arc<Limits>) {
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(30);
    let mut one = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        limits.acquire(deadline()).await.unwrap();
        one.push(t.elapsed());
    }
    one.sort();
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let limits = limits.clone();
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(PER_TASK);
                for _ in 0..PER_TASK {
                    let t = Instant::now();
                    limits.acquire(deadline()).await.unwrap();
                    took.push(t.elapsed());
                }
                took
            })
        })
        .collect();
    let mut many = Vec::with_capacity(TASKS * PER_TASK);
    for t in tasks {
        many.extend(t.await.unwrap());
    }
    let per_second = many.len() as f64 / started.elapsed().as_secs_f64();
    many.sort();
    println!(
        "{name:<34} {:>9.1} {:>9.1} {:>11.1} {:>11.1} {:>12.0}",
        percentile(&one, 0.5).as_secs_f64() * 1e6,
        percentile(&one, 0.99).as_secs_f64() * 1e6,
        percentile(&many, 0.5).as_secs_f64() * 1e6,
        percentile(&many, 0.99).as_secs_f64() * 1e6,
        per_second
    );
}

struct Redis {
    child: std::process::Child,
    /// Redis's data directory, removed with the server.
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_server(port: u16, persistence: &[&str]) -> Redis {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(persistence)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis { child, _dir: dir }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn shared_limits(port: u16, prefix: &str) -> Arc<Limits> {
    let cfg = StateConfig {
        url: Secret::new(format!("redis://127.0.0.1:{port}/0")),
        display: format!("redis://127.0.0.1:{port}/0"),
        password: None,
        password_source: None,
        prefix: prefix.into(),
        ca_file: None,
        timeout: Duration::from_secs(2),
        on_failure: OnStateFailure::FailClosed,
        expected_replicas: 1,
    };
    let state = Arc::new(RedisState::connect(&cfg).unwrap());
    let shared = SharedLimits::new(
        state,
        "bench-cred",
        "bench-quota",
        Some(rate()),
        Some(u64::MAX / 2),
    );
    Arc::new(Limits {
        rate: None,
        quota: None,
        hold: Arc::new(UpstreamHold::default()),
        shared: Some(Arc::new(shared)),
    })
}

fn main() {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:<34} {:>9} {:>9} {:>11} {:>11} {:>12}",
        "permit (rate + quota)", "p50 us", "p99 us", "p50 us x64", "p99 us x64", "permits/s x64"
    );
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        let local = Arc::new(Limits {
            rate: Some((Arc::new(Gcra::new(&rate())), Duration::from_secs(5))),
            quota: Some(Arc::new(Quota::new(u64::MAX / 2, "bench", store))),
            hold: Arc::new(UpstreamHold::default()),
            shared: None,
        });
        measure("local (embedded store)", local).await;
        if !found {
            println!("redis-server not found: install it (apt-get install -y redis-server) to measure the shared permit");
            return;
        }
        for (name, persistence) in [
            ("redis, no persistence", &[][..]),
            ("redis, appendfsync everysec", &["--appendonly", "yes", "--appendfsync", "everysec"][..]),
            ("redis, appendfsync always", &["--appendonly", "yes", "--appendfsync", "always"][..]),
        ] {
            let port = free_port();
            let _server = redis_server(port, persistence);
            measure(name, shared_limits(port, "bench")).await;
        }
    });
}
