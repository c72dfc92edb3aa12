//! Reaching repositories the way platforms do, through the whole fleet (controller →
//! repo-server → the real server): Git over SSH with a key from a repository Secret and host
//! keys from `argocd-ssh-known-hosts-cm` (Debian's sshd on loopback), and repository Secrets
//! using options Flotilla does not support refused with a clear condition.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
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

    // Credentials Flotilla does not support: a ComparisonError naming the keys, and nothing
    // fetched without them.
    let gcp = "https://source.example.invalid/org/private.git";
    fleet
        .apply(&repo_secret(
            "gcp-repo",
            &[
                ("url", gcp),
                ("gcpServiceAccountKey", "{}"),
                ("forceHttpBasicAuth", "true"),
            ],
        ))
        .await?;
    fleet.apply(&app_yaml("gcp-app", gcp, "x")).await?;
    let a = wait_app(
        &fleet,
        "gcp-app",
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
        msg.contains("forceHttpBasicAuth") && msg.contains("does not support"),
        "{msg}"
    );
    // Half a GitHub App (no installation ID): unusable as written, said so.
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
    wait_app(
        &fleet,
        "gh-app",
        Duration::from_secs(30),
        "a ComparisonError",
        |a| {
            conditions(a)
                .iter()
                .any(|(t, m)| t == "ComparisonError" && m.contains("go together"))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_in_other_namespaces_need_a_project_that_lists_them() -> Result<()> {
    use flotilla_controller::types::Application;
    use kube::Api;
    let fleet = Fleet::start(FleetConfig {
        clusters: 1,
        controller_args: vec!["--application-namespaces".into(), "team-*".into()],
        ..Default::default()
    })
    .await?;
    fleet
        .git
        .commit_files(&[("team/cm.yaml", &config_map("team-cm", "v1"))], "team")?;
    for ns in ["team-a", "payments"] {
        fleet
            .apply(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
            ))
            .await?;
    }
    let app_in = |ns: &str, name: &str, project: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  project: {project}\n  source: {{repoURL: '{url}', targetRevision: main, path: team}}\n  destination: {{name: cluster-001, namespace: {name}}}\n  syncPolicy:\n    automated: {{prune: true}}\n    syncOptions: [CreateNamespace=true]\n",
            url = fleet.git.url()
        )
    };
    let get = |ns: &str, name: &str| {
        let api: Api<Application> = Api::namespaced(fleet.control().clone(), ns);
        let name = name.to_string();
        async move { api.get(&name).await }
    };
    let wait = |ns: &'static str,
                name: &'static str,
                what: &'static str,
                pred: fn(&Application) -> bool| {
        let get = &get;
        async move {
            flotilla_tests::eventually(what, Duration::from_secs(60), || async move {
                let a = get(ns, name).await?;
                Ok(pred(&a).then_some(a))
            })
            .await
        }
    };

    // The default project does not list team-a: refused with a clear condition.
    fleet.apply(&app_in("team-a", "web", "default")).await?;
    wait("team-a", "web", "InvalidSpecError", |a| {
        conditions(a)
            .iter()
            .any(|(t, m)| t == "InvalidSpecError" && m.contains("sourceNamespaces"))
    })
    .await?;

    // A project whose sourceNamespaces match: synced, tracked under its namespace.
    fleet
        .apply(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {{name: teams, namespace: {NS}}}\nspec:\n  sourceRepos: ['*']\n  destinations: [{{server: '*', namespace: '*'}}]\n  sourceNamespaces: [team-*]\n"
        ))
        .await?;
    fleet.apply(&app_in("team-a", "api", "teams")).await?;
    wait("team-a", "api", "Synced/Healthy", |a| {
        codes(a) == ("Synced".into(), "Healthy".into())
    })
    .await?;
    let live = live(
        &fleet,
        "cluster-001",
        "v1",
        "ConfigMap",
        Some("api"),
        "team-cm",
    )
    .await?
    .context("deployed")?;
    ensure!(
        live["metadata"]["annotations"]["flotilla.dev/tracking-id"]
            .as_str()
            .is_some_and(|id| id.starts_with("team-a/api:")),
        "tracked as team-a/api: {live}"
    );

    // A namespace the controller does not serve: never touched.
    fleet.apply(&app_in("payments", "pay", "teams")).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pay = get("payments", "pay").await?;
    ensure!(
        pay.status.is_none(),
        "no status for an app outside --application-namespaces: {:?}",
        pay.status
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_scoped_cluster_is_watched_and_written_only_in_its_namespaces() -> Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    use kube::Api;
    use kube::api::{Patch, PatchParams};
    let fleet = Fleet::start(FleetConfig {
        clusters: 1,
        ..Default::default()
    })
    .await?;
    let sim = fleet.sim.in_process()?;
    let cluster = sim.cluster("cluster-001").context("cluster")?;
    // The namespaces exist (a namespaced cluster's credentials could not create them).
    fleet
        .git
        .commit_files(
            &[
                ("scoped/cm.yaml", &config_map("inside", "v1")),
                (
                    "outside/cm.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: outside\n  namespace: payments\ndata:\n  k: v1\n",
                ),
                (
                    "cluster-level/ns.yaml",
                    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: made-by-app\n",
                ),
            ],
            "scoped",
        )?;
    let secrets: Api<Secret> = Api::namespaced(fleet.control().clone(), NS);
    secrets
        .patch(
            "cluster-cluster-001",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"namespaces": "team-a, team-b"}})),
        )
        .await?;
    let mark = cluster.log.since(0).last().map(|r| r.seq).unwrap_or(0);
    let app = |name: &str, path: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  project: default\n  source: {{repoURL: '{url}', targetRevision: main, path: {path}}}\n  destination: {{name: cluster-001, namespace: team-a}}\n  syncPolicy:\n    automated: {{prune: true}}\n",
            url = fleet.git.url()
        )
    };
    let target = fleet.cluster("cluster-001").await?;
    for ns in ["team-a", "team-b", "payments"] {
        flotilla_loadtest::fleet::apply_yaml(
            &target,
            &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"),
            "test-setup",
        )
        .await?;
    }
    fleet.apply(&app("scoped", "scoped")).await?;
    wait_synced_healthy(&fleet, "scoped").await?;
    ensure!(
        live_value(&fleet, "cluster-001", "team-a", "inside")
            .await?
            .as_deref()
            == Some("v1")
    );

    // Another namespace, and a cluster-level object: the sync fails naming why, nothing written.
    for (name, path, why) in [
        ("outside", "outside", "is not managed"),
        ("cluster-level", "cluster-level", "namespaced mode"),
    ] {
        fleet.apply(&app(name, path)).await?;
        wait_app(&fleet, name, Duration::from_secs(60), why, |a| {
            a.status
                .as_ref()
                .and_then(|s| s.operation_state.as_ref())
                .is_some_and(|o| o.to_string().contains(why))
        })
        .await?;
    }
    ensure!(
        live_value(&fleet, "cluster-001", "payments", "outside")
            .await?
            .is_none()
    );

    // Every list and watch since the Secret changed stayed inside team-a/team-b.
    let wide: Vec<String> = cluster
        .log
        .since(mark)
        .into_iter()
        .filter(|r| matches!(r.verb.as_str(), "list" | "watch"))
        .filter(|r| r.user_agent.starts_with("flotilla-controller"))
        .filter(|r| !["team-a", "team-b"].contains(&r.namespace.as_str()))
        .map(|r| format!("{} {}/{} ns={:?}", r.verb, r.group, r.resource, r.namespace))
        .collect();
    ensure!(
        wide.is_empty(),
        "cluster-wide reads of a namespaced cluster: {wide:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_syncs_a_chart_from_an_oci_registry_behind_a_private_ca() -> Result<()> {
    use flotilla_loadtest::fleet::git_http::TestCa;
    use flotilla_loadtest::fleet::registry::{self, Registry, RegistryAuth, RegistryConfig};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let work = tempfile::tempdir()?;
    let ca = TestCa::new("registry CA")?;
    let ca_file = work.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem)?;
    let hash = bcrypt::hash_with_result("reg-pass", 4)?.format_for_version(bcrypt::Version::TwoY);
    let registry = Registry::start(RegistryConfig {
        tls: Some(&ca),
        auth: RegistryAuth::Htpasswd(format!("puller:{hash}\n")),
    })
    .await?;
    let chart = work.path().join("src/web");
    std::fs::create_dir_all(chart.join("templates"))?;
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: web\nversion: 0.0.0\n",
    )?;
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  k: {{ .Chart.Version | quote }}\n",
    )?;
    registry::push_chart(
        work.path(),
        &registry,
        Some(&ca_file),
        Some(("puller", "reg-pass")),
        &chart,
        "web",
        &["1.0.0", "1.2.0", "2.0.0"],
    )?;
    // argocd-tls-certs-cm as the chart mounts it: the registry's CA under its server name.
    let certs = work.path().join("tls-certs");
    std::fs::create_dir_all(&certs)?;
    std::fs::write(certs.join("127.0.0.1"), &ca.pem)?;
    let fleet = Fleet::start(FleetConfig {
        clusters: 1,
        repo_server_args: vec!["--tls-certs-dir".into(), certs.display().to_string()],
        ..Default::default()
    })
    .await?;
    let url = registry.oci_url("charts");
    fleet
        .apply(&repo_secret(
            "registry",
            &[
                ("url", &url),
                ("type", "helm"),
                ("username", "puller"),
                ("password", "reg-pass"),
            ],
        ))
        .await?;
    fleet
        .apply(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: oci-web, namespace: {NS}}}\nspec:\n  project: default\n  source: {{repoURL: '{url}', chart: web, targetRevision: '>=1.0 <2'}}\n  destination: {{name: cluster-001, namespace: oci-web}}\n  syncPolicy:\n    automated: {{prune: true}}\n    syncOptions: [CreateNamespace=true]\n"
        ))
        .await?;
    let a = wait_synced_healthy(&fleet, "oci-web").await?;
    let revision = a
        .status
        .as_ref()
        .and_then(|s| s.sync.as_ref())
        .and_then(|s| s.revision.clone())
        .unwrap_or_default();
    ensure!(revision.starts_with("1.2.0-sha256."), "{revision}");
    ensure!(
        live_value(&fleet, "cluster-001", "oci-web", "web")
            .await?
            .as_deref()
            == Some("1.2.0"),
        "the highest 1.x chart is live"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_renders_a_submodule_at_its_gitlinked_commit() -> Result<()> {
    use flotilla_loadtest::fleet::GitServer;
    let fleet = Fleet::start(FleetConfig {
        clusters: 1,
        ..Default::default()
    })
    .await?;
    // A library repository next to the fleet's (served by the same daemon root), whose first
    // commit the app repository links as a submodule with a relative URL.
    let root = fleet
        .git
        .bare
        .parent()
        .and_then(|p| p.parent())
        .context("fleet git dir")?
        .to_path_buf();
    let lib = GitServer::start(&root, "lib", None)?;
    let linked = lib.commit_files(&[("cm.yaml", &config_map("from-lib", "linked"))], "lib")?;
    lib.commit_files(
        &[("cm.yaml", &config_map("from-lib", "later"))],
        "lib moves on",
    )?;
    fleet.git.commit_with_gitlinks(
        &[(
            ".gitmodules",
            "[submodule \"lib\"]\n\tpath = with-lib/vendor\n\turl = ../lib.git\n",
        )],
        &[("with-lib/vendor", &linked)],
        "vendor lib",
    )?;
    fleet
        .apply(&app_yaml("sub", &fleet.git.url(), "with-lib/vendor"))
        .await?;
    wait_synced_healthy(&fleet, "sub").await?;
    ensure!(
        live_value(&fleet, "cluster-001", "sub", "from-lib")
            .await?
            .as_deref()
            == Some("linked"),
        "the gitlinked commit's content, not the library's head"
    );
    Ok(())
}
