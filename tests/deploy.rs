//! deploy/ cannot run here (no Docker engine, no cluster): validate what can
//! be. The YAML parses, the embedded config is valid, and every countersign
//! command line in deploy/ parses with the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

const BIN: &str = env!("CARGO_BIN_EXE_countersign");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `countersign ARGS --help`: clap rejects an unknown flag before it prints help.
fn flags_exist(args: &[String]) {
    let out = Command::new(BIN).args(args).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "countersign {args:?} does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubernetes_example_parses_and_its_config_is_valid() {
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/kubernetes/sidecar.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let kinds: Vec<_> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["ConfigMap", "Secret", "Deployment"]);

    let config = docs[0]["data"]["countersign.toml"].as_str().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("xrtc_api_key"), "k8s-example-key\n").unwrap();
    let config = config.replace(
        "/run/secrets/countersign",
        &secrets.path().display().to_string(),
    );
    let parsed = countersign::kinds::from_toml(&config).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(parsed.secret_files.len(), 1, "the key is a watched file");

    let containers = &docs[2]["spec"]["template"]["spec"]["containers"];
    let cs = containers
        .as_vec()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some("countersign"))
        .unwrap();
    let args: Vec<String> = cs["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    flags_exist(&args);
    // Probes point at endpoints the admin listener serves.
    assert_eq!(
        cs["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        cs["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert!(config.contains("admin = \"0.0.0.0:9090\""));
    assert_eq!(cs["ports"][0]["containerPort"], Yaml::Integer(9090));
}

#[test]
fn dockerfile_and_systemd_command_lines_parse() {
    let docker = std::fs::read_to_string(format!("{ROOT}/deploy/Dockerfile")).unwrap();
    let cmd = docker.lines().find(|l| l.starts_with("CMD ")).unwrap();
    let args: Vec<String> = serde_json::from_str(cmd.trim_start_matches("CMD ")).unwrap();
    flags_exist(&args);

    let unit = std::fs::read_to_string(format!("{ROOT}/deploy/countersign.service")).unwrap();
    for key in ["ExecStart=", "ExecStartPre="] {
        let line = unit.lines().find(|l| l.starts_with(key)).unwrap();
        let args: Vec<String> = line[key.len()..]
            .split_whitespace()
            .skip(1)
            .map(String::from)
            .collect();
        flags_exist(&args);
    }
}

/// Secrets in memory must not reach a core file, and the state dir must be
/// countersign's alone (it refuses one others can write).
#[test]
fn systemd_unit_writes_no_core_and_keeps_state_private() {
    let unit = std::fs::read_to_string(format!("{ROOT}/deploy/countersign.service")).unwrap();
    let directives: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(directives.contains(&"LimitCORE=0"), "{unit}");
    assert!(directives.contains(&"StateDirectoryMode=0700"), "{unit}");
}

/// An emptyDir is world-writable: the state dir is a subdirectory
/// countersign creates itself, 0700.
#[test]
fn kubernetes_state_dir_is_below_the_volume() {
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/kubernetes/sidecar.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let config = docs[0]["data"]["countersign.toml"].as_str().unwrap();
    let containers = docs[2]["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .unwrap();
    let cs = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("countersign"))
        .unwrap();
    let mount = cs["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == Some("state"))
        .unwrap()["mountPath"]
        .as_str()
        .unwrap()
        .to_string();
    let state_dir = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("state_dir = "))
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap();
    assert!(
        state_dir.starts_with(&format!("{mount}/")),
        "state_dir {state_dir} must be below the volume {mount}"
    );
}
