//! Reaching repositories the way platforms do, through the whole fleet (controller →
//! repo-server → the real server): Git over SSH with a key from a repository Secret and host
//! keys from `argocd-ssh-known-hosts-cm` (Debian's sshd on loopback), and repository Secrets
//! using options Flotilla does not support refused with a clear condition.

use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_loadtest::fleet::sshd::SshServer;
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::*;

fn app_yaml(name: &str, url: &str, path: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  project: default\n  source: {{repoURL: '{url}', targetRevision: main, path: {path}}}\n  destination: {{name: cluster-001, namespace: {name}}}\n  syncPolicy:\n    automated: {{prune: true}}\n    syncOptions: [CreateNamespace=true]\n"
    )
}

/// A repository Secret, its values indented as YAML block scalars.
fn repo_secret(name: &str, fields: &[(&str, &str)]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {NS}\n  labels: {{argocd.argoproj.io/secret-type: repository}}\nstringData:\n"
    );
    for (k, v) in fields {
        out.push_str(&format!("  {k}: |-\n"));
        for line in v.trim_end().lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_syncs_from_git_over_ssh_and_unsupported_credentials_are_refused() -> Result<()> {
    let ssh_dir = tempfile::tempdir()?;
    let sshd = SshServer::start(&ssh_dir.path().join("sshd"))?;
    // argocd-ssh-known-hosts-cm as the chart mounts it into the repo-server.
    let known_hosts = ssh_dir.path().join("ssh_known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line))?;
    let fleet = Fleet::start(FleetConfig {
        clusters: 1,
        repo_server_args: vec![
            "--ssh-known-hosts".into(),
            known_hosts.display().to_string(),
        ],
        ..Default::default()
    })
    .await?;
    fleet.git.commit_files(
        &[("over-ssh/cm.yaml", &config_map("over-ssh", "v1"))],
        "ssh",
    )?;
    let url = sshd.url(&fleet.git.bare);
    fleet
        .apply(&repo_secret(
            "ssh-repo",
            &[("url", &url), ("sshPrivateKey", &sshd.client_key)],
        ))
        .await?;
    fleet.apply(&app_yaml("ssh-app", &url, "over-ssh")).await?;
    wait_synced_healthy(&fleet, "ssh-app").await?;
    ensure!(
        live_value(&fleet, "cluster-001", "ssh-app", "over-ssh")
            .await?
            .as_deref()
            == Some("v1")
    );

    // A Secret with GitHub App credentials (not supported yet): a ComparisonError naming the
    // keys, and nothing fetched without them.
    let gh = "https://github.example.invalid/org/private.git";
    fleet
        .apply(&repo_secret(
            "gh-app-repo",
            &[
                ("url", gh),
                ("githubAppID", "1"),
                ("githubAppPrivateKey", "k"),
            ],
        ))
        .await?;
    fleet.apply(&app_yaml("gh-app", gh, "x")).await?;
    let a = wait_app(
        &fleet,
        "gh-app",
        Duration::from_secs(30),
        "a ComparisonError",
        |a| {
            conditions(a)
                .iter()
                .any(|(t, m)| t == "ComparisonError" && m.contains("gcpServiceAccountKey"))
        },
    )
    .await?;
    let msg = conditions(&a)
        .into_iter()
        .map(|(_, m)| m)
        .collect::<Vec<_>>()
        .join(" ");
    ensure!(
        msg.contains("enableLfs") && msg.contains("does not support"),
        "{msg}"
    );
    Ok(())
}
