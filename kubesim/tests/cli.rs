//! The `kubesim` binary: documents its options and serves the clusters it announces.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn help_documents_every_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .arg("--help")
        .output()
        .expect("kubesim runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--clusters",
        "--host",
        "--base-port",
        "--admin-port",
        "--kubeconfig",
        "--secrets-namespace",
        "--ready-delay-ms",
        "--history",
        "--request-log",
        "--bookmark-seconds",
        "--latency-profile",
        "--control-plane-latency-profile",
        "--latency-seed",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn serves_announced_clusters_and_writes_kubeconfig() {
    let dir = std::env::temp_dir().join(format!("kubesim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args([
            "--clusters",
            "4",
            "--json",
            "--admin-port",
            "0",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubesim starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("announcement");
    let announced: serde_json::Value = serde_json::from_str(&line).expect("json line");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(announced["clusters"].as_array().map(Vec::len), Some(4));
    let text = std::fs::read_to_string(&kubeconfig).expect("kubeconfig written");
    for c in announced["clusters"].as_array().into_iter().flatten() {
        let server = c["server"].as_str().expect("server");
        assert!(text.contains(server), "kubeconfig lacks {server}");
    }
    assert!(text.contains("current-context: control-plane"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_latency_profile_fails_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("kubesim-cli-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let profile = dir.join("slow.yaml");
    std::fs::write(&profile, "get: {p50Ms: 5}\nwrite: {p50Ms: 15, tail: 0.5}\n").expect("profile");
    let out = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(["--clusters", "1", "--kubeconfig"])
        .arg(dir.join("kubeconfig"))
        .arg("--latency-profile")
        .arg(&profile)
        .output()
        .expect("kubesim runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("write.tail"), "{err}");
    assert!(err.contains("--latency-profile"), "{err}");
}
