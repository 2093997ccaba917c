//! Maintained Python libraries as independent judges (boto3, authlib,
//! oauthlib): started on loopback by a test, killed when dropped. Without
//! the libraries a test prints why and passes, unless `CI` is set: then it
//! fails (CI installs them).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `tests/py/NAME`.
pub fn script(name: &str) -> String {
    format!("{}/tests/py/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Whether `python3 -c 'import MODULES'` works; in CI its failure fails.
pub fn has(modules: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: python3 -c 'import {modules}' failed; .ci/run must pip install them"
        );
        eprintln!(
            "skipped: python3 -c 'import {modules}' failed (pip install them to run this judge)"
        );
    }
    ok
}

/// A Python server that prints `PORT <n>` first; killed when dropped.
pub struct Judge {
    child: Child,
    pub port: u16,
}

impl Judge {
    pub fn start(name: &str, args: &[&str]) -> Judge {
        let mut child = Command::new("python3")
            .arg(script(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut judge = Judge { child, port: 0 };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        // `judge` is dropped (the process killed) if this panics.
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the judge prints its port within 30 s");
        judge.port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: first line {line:?} is not `PORT <n>`"));
        judge
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Judge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
