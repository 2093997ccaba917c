//! A real `redis-server` on a free loopback port, for the replica tests:
//! started per test, killed (SIGKILL, like a crash) and restarted on the
//! same port and data directory, stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    password: Option<String>,
    /// `(cert, key)` PEM files: serve TLS only, on `port`.
    tls: Option<(PathBuf, PathBuf)>,
}

/// Whether `redis-server` can run here. Without it a test is skipped with
/// a note, except under CI (`CI` set), where `.ci/run` installs it and a
/// missing server must fail rather than pass silently.
pub fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is not installed, and CI is set: install it (apt-get install -y redis-server)"
        );
        eprintln!("SKIPPED: redis-server is not installed (apt-get install -y redis-server)");
    }
    found
}

impl RedisServer {
    /// Starts a server with an append-only file fsynced on every write, so a
    /// kill -9 loses nothing that was acknowledged.
    pub fn start() -> RedisServer {
        Self::start_with_password(None)
    }

    pub fn start_with_password(password: Option<&str>) -> RedisServer {
        Self::start_with(password, None)
    }

    /// TLS only (no plain port), with this certificate and key.
    pub fn start_tls(cert: PathBuf, key: PathBuf) -> RedisServer {
        Self::start_with(None, Some((cert, key)))
    }

    fn start_with(password: Option<&str>, tls: Option<(PathBuf, PathBuf)>) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = RedisServer {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            password: password.map(str::to_string),
            tls,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Kills the server as a crash would (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts (again) on the same port and data directory; waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => {
                cmd.args(["--port", &self.port.to_string()]);
            }
            Some((cert, key)) => {
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(cert)
                    .arg("--tls-key-file")
                    .arg(key)
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log());
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server could not be started");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.ping() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start: {}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls.is_some() {
            // Accepting connections is as far as a plain client can tell.
            return true;
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let cmd = match &self.password {
            Some(pw) => format!("AUTH {pw}\r\nPING\r\n"),
            None => "PING\r\n".to_string(),
        };
        if s.write_all(cmd.as_bytes()).is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut got = String::new();
        while !got.contains("PONG") {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => got.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => return false,
            }
        }
        true
    }

    /// A direct client, to look at what the gateways stored.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        let mut info =
            redis::IntoConnectionInfo::into_connection_info(self.url().as_str()).unwrap();
        if let Some(pw) = &self.password {
            let settings = info.redis_settings().clone().set_password(pw);
            info = info.set_redis_settings(settings);
        }
        redis::Client::open(info)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the cluster tests run: only when `CI` is set (they start three
/// servers each), and then `redis-server` and `redis-cli` must be there.
pub fn cluster_wanted() -> bool {
    if std::env::var_os("CI").is_none() {
        eprintln!(
            "SKIPPED: the Redis Cluster tests run when CI is set (CI=1 cargo test --test cluster)"
        );
        return false;
    }
    for tool in ["redis-server", "redis-cli"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is not installed, and CI is set: install it (apt-get install -y redis-server)"
        );
    }
    true
}

/// A free loopback port whose cluster bus port (10,000 above) is free too.
fn node_port() -> u16 {
    for _ in 0..1000 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free pair of loopback ports for a cluster node");
}

/// A three-node Redis Cluster on loopback (no replicas), each node in its
/// own temporary directory; every node is killed when dropped.
pub struct RedisCluster {
    nodes: Vec<(Child, u16)>,
    _dirs: Vec<tempfile::TempDir>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            _dirs: Vec::new(),
        };
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = node_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--save", ""])
                .args(["--appendonly", "yes"])
                .args(["--appendfsync", "always"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(dir.path().join("redis.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server could not be started");
            cluster.nodes.push((child, port));
            cluster._dirs.push(dir);
        }
        for port in cluster.ports() {
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "cluster node {port} did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli could not be started");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every node agrees the cluster is up (all slots served).
        let started = Instant::now();
        for port in cluster.ports() {
            loop {
                let info = cli(port, &["CLUSTER", "INFO"]);
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the cluster did not come up: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(_, p)| *p).collect()
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`.
    pub fn url(&self) -> String {
        let nodes: Vec<_> = self
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// Every key matching `pattern`, from every node.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.ports()
            .iter()
            .flat_map(|p| {
                cli(*p, &["--raw", "KEYS", pattern])
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The slot a key hashes to.
    pub fn slot(&self, key: &str) -> u16 {
        cli(self.ports()[0], &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .unwrap()
    }

    /// A key's value, from whichever node holds it (`-c` follows redirects).
    pub fn get(&self, key: &str) -> String {
        cli(self.ports()[0], &["-c", "--raw", "GET", key])
            .trim()
            .to_string()
    }
}

/// `redis-cli -p PORT args…`, its output.
fn cli(port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    // `--raw` and `-c` are options: they go before the command.
    let (options, command): (Vec<&str>, Vec<&str>) = args.iter().partition(|a| a.starts_with('-'));
    let out = cmd.args(options).args(command).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (child, _) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
