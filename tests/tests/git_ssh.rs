//! Git over SSH against Debian's OpenSSH server on loopback: a key from the repository
//! Secret, host keys checked against `argocd-ssh-known-hosts-cm` (strict unless `insecure`),
//! and clear errors for an unknown host, a changed host key and a key the server refuses.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_loadtest::fleet::GitServer;
use flotilla_loadtest::fleet::sshd::{SshServer, key_pair};
use flotilla_repo_server::git::{self, Credentials};
use flotilla_repo_server::transport::TransportConfig;

fn fetch_resolve(url: &str, creds: &Credentials, known_hosts: &Path) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cache = git::GitCache::open(dir.path()).map_err(|e| e.to_string())?;
    let transport = TransportConfig {
        known_hosts: known_hosts.to_path_buf(),
        ..TransportConfig::default()
    };
    let repo = git::fetch(&cache, url, creds, &transport, Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    git::resolve(&repo, url, "main").map_err(|e| e.to_string())
}

#[test]
fn ssh_fetch_with_a_key_and_strict_host_keys() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let origin = GitServer::start(dir.path(), "apps", None)?;
    let head = origin.commit_files(&[("a.yaml", "x: 1\n")], "one")?;
    let sshd = SshServer::start(&dir.path().join("sshd"))?;
    let url = sshd.url(&origin.bare);
    let known = dir.path().join("ssh_known_hosts");
    std::fs::write(&known, format!("{}\n", sshd.known_hosts_line))?;
    let creds = Credentials {
        ssh_private_key: Some(sshd.client_key.clone()),
        ..Credentials::default()
    };

    let ok = fetch_resolve(&url, &creds, &known);
    ensure!(
        ok.as_deref() == Ok(head.as_str()),
        "{ok:?}\nsshd: {}",
        sshd.log()
    );

    // No known hosts at all: refused before connecting, naming the ConfigMap.
    let missing =
        fetch_resolve(&url, &creds, &dir.path().join("none")).expect_err("no known hosts");
    ensure!(missing.contains("argocd-ssh-known-hosts-cm"), "{missing}");

    // The server's key is not the one on record (a man in the middle): refused...
    let (_, other_host) = key_pair(dir.path(), "other_host")?;
    let mut parts = other_host.split_whitespace();
    let forged = dir.path().join("forged_known_hosts");
    std::fs::write(
        &forged,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default()
        ),
    )?;
    let mitm = fetch_resolve(&url, &creds, &forged).expect_err("a changed host key");
    ensure!(
        mitm.contains("fetching") && mitm.to_lowercase().contains("host key"),
        "{mitm}"
    );
    // ...unless the repository is marked insecure.
    let insecure = Credentials {
        insecure: true,
        ..creds.clone()
    };
    ensure!(fetch_resolve(&url, &insecure, &forged).as_deref() == Ok(head.as_str()));

    // A key the server does not know, and no key at all: refused, never a prompt.
    let (stranger, _) = key_pair(dir.path(), "stranger")?;
    for wrong in [
        Credentials {
            ssh_private_key: Some(stranger),
            ..Credentials::default()
        },
        Credentials::default(),
    ] {
        let e = fetch_resolve(&url, &wrong, &known).expect_err("a refused key");
        ensure!(e.contains("Permission denied"), "{e}");
        ensure!(
            !e.contains("OPENSSH PRIVATE KEY"),
            "no key material in errors: {e}"
        );
    }
    Ok(())
}
