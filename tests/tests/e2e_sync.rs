//! End to end through real processes: Git (git daemon) → repo-server → controller → kubesim.
//! Create, update, prune, self-heal, manual sync, and the Argo CD example app verbatim.

use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::*;

const CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n";
const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n";

fn mk_app(fleet: &Fleet, name: &str, path: &str, cluster: &str, policy: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: argocd}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: {path}}}\n  destination: {{name: {cluster}, namespace: {name}}}\n{policy}",
        url = fleet.git.url()
    )
}

const AUTO: &str = "  syncPolicy:\n    automated: {prune: true, selfHeal: true}\n    syncOptions: [CreateNamespace=true]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_and_prune() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet
        .git
        .commit_files(&[("web/cm.yaml", CM), ("web/deploy.yaml", DEPLOY)], "web")?;
    fleet
        .apply(&mk_app(&fleet, "web", "web", "cluster-001", AUTO))
        .await?;
    let a = wait_synced_healthy(&fleet, "web").await?;
    let st = a.status.clone().unwrap_or_default();
    ensure!(st.resources.as_ref().map(Vec::len) == Some(2), "{st:?}");
    let cm = live(
        &fleet,
        "cluster-001",
        "v1",
        "ConfigMap",
        Some("web"),
        "settings",
    )
    .await?;
    ensure!(
        cm.as_ref().is_some_and(|c| c["data"]["color"] == "blue"),
        "{cm:?}"
    );

    // A change in Git rolls out after a refresh request.
    let commit = fleet
        .git
        .commit_files(&[("web/cm.yaml", &CM.replace("blue", "green"))], "green")?;
    refresh(&fleet, "web").await?;
    wait_app(
        &fleet,
        "web",
        Duration::from_secs(30),
        "synced to the new commit",
        |a| {
            codes(a).0 == "Synced"
                && a.status
                    .as_ref()
                    .and_then(|s| s.sync.as_ref())
                    .and_then(|s| s.revision.as_deref())
                    == Some(commit.as_str())
        },
    )
    .await?;
    let cm = live(
        &fleet,
        "cluster-001",
        "v1",
        "ConfigMap",
        Some("web"),
        "settings",
    )
    .await?;
    ensure!(
        cm.as_ref().is_some_and(|c| c["data"]["color"] == "green"),
        "{cm:?}"
    );

    // A file removed from Git is pruned.
    fleet.git.remove("web/cm.yaml")?;
    fleet.git.commit("drop the ConfigMap")?;
    refresh(&fleet, "web").await?;
    wait_app(
        &fleet,
        "web",
        Duration::from_secs(30),
        "one resource left",
        |a| {
            codes(a).0 == "Synced"
                && a.status
                    .as_ref()
                    .and_then(|s| s.resources.as_ref())
                    .map(Vec::len)
                    == Some(1)
        },
    )
    .await?;
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "v1",
            "ConfigMap",
            Some("web"),
            "settings"
        )
        .await?
        .is_none()
    );
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "apps/v1",
            "Deployment",
            Some("web"),
            "web"
        )
        .await?
        .is_some()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_heal_reverts_drift_and_without_it_drift_stays_visible() -> Result<()> {
    use kube::Api;
    use kube::api::{Patch, PatchParams};
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet
        .git
        .commit_files(&[("heal/cm.yaml", CM), ("keep/cm.yaml", CM)], "two apps")?;
    fleet
        .apply(&mk_app(&fleet, "heal", "heal", "cluster-001", AUTO))
        .await?;
    let no_heal =
        "  syncPolicy:\n    automated: {prune: true}\n    syncOptions: [CreateNamespace=true]\n";
    fleet
        .apply(&mk_app(&fleet, "keep", "keep", "cluster-001", no_heal))
        .await?;
    wait_synced_healthy(&fleet, "heal").await?;
    wait_synced_healthy(&fleet, "keep").await?;
    // Someone edits both ConfigMaps by hand.
    let client = fleet.cluster("cluster-001").await?;
    for ns in ["heal", "keep"] {
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
        cms.patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"color": "red"}})),
        )
        .await?;
    }
    // Self-heal puts it back (after its 5 s backoff since the last sync at most).
    flotilla_tests::eventually("self-heal", Duration::from_secs(30), || async {
        let cm = live(
            &fleet,
            "cluster-001",
            "v1",
            "ConfigMap",
            Some("heal"),
            "settings",
        )
        .await?;
        Ok(cm.filter(|c| c["data"]["color"] == "blue").map(|_| ()))
    })
    .await?;
    wait_synced_healthy(&fleet, "heal").await?;
    // Without self-heal the drift is reported and left alone.
    let keep = wait_app(&fleet, "keep", Duration::from_secs(30), "OutOfSync", |a| {
        codes(a).0 == "OutOfSync"
    })
    .await?;
    let drifted = keep
        .status
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .is_some_and(|r| {
            r.iter()
                .any(|r| r.name == "settings" && r.status.as_deref() == Some("OutOfSync"))
        });
    ensure!(drifted, "{:?}", keep.status);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let cm = live(
        &fleet,
        "cluster-001",
        "v1",
        "ConfigMap",
        Some("keep"),
        "settings",
    )
    .await?;
    ensure!(
        cm.is_some_and(|c| c["data"]["color"] == "red"),
        "left alone"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_sync_through_the_operation_field() -> Result<()> {
    use flotilla_controller::types::Application;
    use kube::Api;
    use kube::api::{Patch, PatchParams};
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.git.commit_files(
        &[("manual/cm.yaml", CM), ("manual/deploy.yaml", DEPLOY)],
        "manual",
    )?;
    let manual = "  syncPolicy:\n    syncOptions: [CreateNamespace=true]\n";
    fleet
        .apply(&mk_app(&fleet, "manual", "manual", "cluster-002", manual))
        .await?;
    let a = wait_app(
        &fleet,
        "manual",
        Duration::from_secs(30),
        "OutOfSync/Missing",
        |a| codes(a) == ("OutOfSync".into(), "Missing".into()),
    )
    .await?;
    ensure!(
        a.status
            .as_ref()
            .and_then(|s| s.operation_state.as_ref())
            .is_none(),
        "no sync without a request"
    );
    ensure!(
        live(
            &fleet,
            "cluster-002",
            "v1",
            "ConfigMap",
            Some("manual"),
            "settings"
        )
        .await?
        .is_none()
    );
    // What `argocd app sync manual --prune` writes.
    let apps: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    apps.patch(
        "manual",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"operation": {
            "initiatedBy": {"username": "alice"},
            "sync": {"revision": "main", "prune": true}}})),
    )
    .await?;
    let a = wait_synced_healthy(&fleet, "manual").await?;
    let st = a.status.clone().unwrap_or_default();
    let op = st.operation_state.clone().unwrap_or_default();
    ensure!(op["phase"] == "Succeeded", "{op}");
    ensure!(
        op["operation"]["initiatedBy"]["username"] == "alice",
        "{op}"
    );
    ensure!(
        op["syncResult"]["resources"].as_array().map(Vec::len) == Some(2),
        "{op}"
    );
    let history = st.history.unwrap_or_default();
    ensure!(
        history.len() == 1 && history[0]["initiatedBy"]["username"] == "alice",
        "{history:?}"
    );
    let a = wait_app(
        &fleet,
        "manual",
        Duration::from_secs(10),
        "operation cleared",
        |a| a.operation.is_none(),
    )
    .await?;
    ensure!(a.operation.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_refresh_picks_up_a_commit_without_any_trigger() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        refresh_seconds: 2,
        ..Default::default()
    })
    .await?;
    fleet.git.commit_files(&[("poll/cm.yaml", CM)], "poll")?;
    fleet
        .apply(&mk_app(&fleet, "poll", "poll", "cluster-001", AUTO))
        .await?;
    wait_synced_healthy(&fleet, "poll").await?;
    let commit = fleet
        .git
        .commit_files(&[("poll/cm.yaml", &CM.replace("blue", "violet"))], "violet")?;
    wait_app(
        &fleet,
        "poll",
        Duration::from_secs(30),
        "the new commit by polling",
        |a| {
            a.status
                .as_ref()
                .and_then(|s| s.sync.as_ref())
                .and_then(|s| s.revision.as_deref())
                == Some(commit.as_str())
                && codes(a).0 == "Synced"
        },
    )
    .await?;
    let cm = live(
        &fleet,
        "cluster-001",
        "v1",
        "ConfigMap",
        Some("poll"),
        "settings",
    )
    .await?;
    ensure!(cm.is_some_and(|c| c["data"]["color"] == "violet"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_argo_cd_example_applies_verbatim_with_kustomize_and_create_namespace() -> Result<()> {
    let examples = flotilla_loadtest::fleet::process::workspace_dir().join("examples");
    let fleet = Fleet::start(FleetConfig {
        seed: Some(examples.join("repo")),
        ..Default::default()
    })
    .await?;
    let yaml = std::fs::read_to_string(examples.join("applications/my-app.yaml"))?;
    fleet.apply(&with_repo(&yaml, &fleet)).await?;
    let a = wait_synced_healthy(&fleet, "my-app").await?;
    ensure!(a.status.as_ref().and_then(|s| s.source_type.as_deref()) == Some("Kustomize"));
    // The destination is the control plane itself (https://kubernetes.default.svc).
    let ns = live(
        &fleet,
        "control-plane",
        "v1",
        "Namespace",
        None,
        "my-app-dev",
    )
    .await?;
    ensure!(ns.is_some(), "CreateNamespace=true created my-app-dev");
    let d = live(
        &fleet,
        "control-plane",
        "apps/v1",
        "Deployment",
        Some("my-app-dev"),
        "my-app",
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("deployment missing"))?;
    ensure!(
        d["spec"]["replicas"] == 2,
        "overlay replicas: {}",
        d["spec"]
    );
    ensure!(d["metadata"]["labels"]["env"] == "dev", "overlay label");
    ensure!(
        d["metadata"]["annotations"]["flotilla.dev/tracking-id"]
            == "argocd/my-app:apps/Deployment:my-app-dev/my-app",
        "{}",
        d["metadata"]
    );
    Ok(())
}

/// Argo CD's own Application CRD has no `/status` subresource: status is then written with the
/// object, and syncs (automated and manual) work the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_argo_cds_crd_without_a_status_subresource() -> Result<()> {
    use flotilla_controller::types::Application;
    use kube::Api;
    use kube::api::{Patch, PatchParams};
    let fleet = Fleet::start(FleetConfig {
        argo_cd_crds: true,
        ..Default::default()
    })
    .await?;
    fleet.git.commit_files(&[("argo/cm.yaml", CM)], "argo")?;
    fleet
        .apply(&mk_app(&fleet, "argo", "argo", "cluster-001", AUTO))
        .await?;
    wait_synced_healthy(&fleet, "argo").await?;
    let manual = "  syncPolicy:\n    syncOptions: [CreateNamespace=true]\n";
    fleet
        .apply(&mk_app(
            &fleet,
            "argo-manual",
            "argo",
            "cluster-002",
            manual,
        ))
        .await?;
    wait_app(
        &fleet,
        "argo-manual",
        Duration::from_secs(30),
        "OutOfSync",
        |a| codes(a).0 == "OutOfSync",
    )
    .await?;
    let apps: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    apps.patch(
        "argo-manual",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"operation": {"sync": {"revision": "main"}}})),
    )
    .await?;
    let a = wait_synced_healthy(&fleet, "argo-manual").await?;
    let history = a.status.and_then(|s| s.history).unwrap_or_default();
    ensure!(history.len() == 1, "{history:?}");
    let a = wait_app(
        &fleet,
        "argo-manual",
        Duration::from_secs(10),
        "operation cleared",
        |a| a.operation.is_none(),
    )
    .await?;
    ensure!(a.operation.is_none());
    Ok(())
}
