//! End to end, the failure paths: a project refuses an app and nothing is applied; a render
//! error, an empty render and an unreachable cluster become conditions and never prune; an
//! app deleted with Argo CD's finalizer takes its resources with it.

use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_loadtest::kubesim::FaultSpec;
use flotilla_tests::e2e::*;

const CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n";
const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n";

fn mk_app(fleet: &Fleet, name: &str, path: &str, cluster: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: argocd}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: {path}}}\n  destination: {{name: {cluster}, namespace: {name}}}\n  syncPolicy:\n    automated: {{prune: true, selfHeal: true}}\n    syncOptions: [CreateNamespace=true]\n",
        url = fleet.git.url()
    )
}

fn has_condition(a: &flotilla_controller::types::Application, ty: &str, needle: &str) -> bool {
    conditions(a)
        .iter()
        .any(|(t, m)| t == ty && m.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_refuses_what_it_does_not_allow_and_nothing_is_applied() -> Result<()> {
    let examples = flotilla_loadtest::fleet::process::workspace_dir().join("examples");
    let fleet = Fleet::start(FleetConfig {
        seed: Some(examples.join("repo")),
        ..Default::default()
    })
    .await?;
    for f in ["projects.yaml", "team-a.yaml"] {
        let yaml = std::fs::read_to_string(examples.join("applications").join(f))?;
        fleet.apply(&with_repo(&yaml, &fleet)).await?;
    }
    wait_synced_healthy(&fleet, "team-a-web").await?;
    let refused = wait_app(
        &fleet,
        "team-a-secrets",
        Duration::from_secs(30),
        "refused",
        |a| has_condition(a, "InvalidSpecError", "Secret"),
    )
    .await?;
    ensure!(
        conditions(&refused)
            .iter()
            .any(|(_, m)| m.contains("not permitted in project team-a"))
    );
    ensure!(
        refused
            .status
            .as_ref()
            .and_then(|s| s.operation_state.as_ref())
            .is_none(),
        "no sync ran"
    );
    // Nothing of the refused app reached the cluster, not even its allowed ConfigMap.
    for (kind, name) in [("Secret", "team-a-token"), ("ConfigMap", "team-a-extra")] {
        ensure!(
            live(
                &fleet,
                "control-plane",
                "v1",
                kind,
                Some("team-a-web"),
                name
            )
            .await?
            .is_none(),
            "{kind} {name}"
        );
    }
    // Outside the allowed source repositories and destinations.
    let other_repo = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: team-a-elsewhere, namespace: argocd}}\nspec:\n  project: team-a\n  source: {{repoURL: {}, targetRevision: main, path: team-a/web}}\n  destination: {{server: https://kubernetes.default.svc, namespace: kube-system}}\n  syncPolicy: {{automated: {{prune: true}}}}\n",
        fleet.git.file_url()
    );
    fleet.apply(&other_repo).await?;
    let a = wait_app(
        &fleet,
        "team-a-elsewhere",
        Duration::from_secs(30),
        "refused",
        |a| {
            has_condition(
                a,
                "InvalidSpecError",
                "is not permitted in project 'team-a'",
            )
        },
    )
    .await?;
    ensure!(
        has_condition(
            &a,
            "InvalidSpecError",
            "do not match any of the allowed destinations"
        ),
        "{:?}",
        conditions(&a)
    );
    ensure!(
        live(
            &fleet,
            "control-plane",
            "apps/v1",
            "Deployment",
            Some("kube-system"),
            "team-a-web"
        )
        .await?
        .is_none()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_error_keeps_the_live_objects_and_recovers() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet
        .git
        .commit_files(&[("web/cm.yaml", CM), ("web/deploy.yaml", DEPLOY)], "web")?;
    fleet
        .apply(&mk_app(&fleet, "web", "web", "cluster-001"))
        .await?;
    wait_synced_healthy(&fleet, "web").await?;
    fleet.git.commit_files(
        &[(
            "web/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [oops\n",
        )],
        "broken",
    )?;
    refresh(&fleet, "web").await?;
    let a = wait_app(
        &fleet,
        "web",
        Duration::from_secs(30),
        "ComparisonError",
        |a| has_condition(a, "ComparisonError", "cm.yaml"),
    )
    .await?;
    ensure!(codes(&a).0 == "Unknown", "{:?}", codes(&a));
    // Give a careless controller time to prune, then check nothing was.
    tokio::time::sleep(Duration::from_secs(2)).await;
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
        .is_some()
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
    fleet.git.commit_files(&[("web/cm.yaml", CM)], "fixed")?;
    refresh(&fleet, "web").await?;
    let a = wait_synced_healthy(&fleet, "web").await?;
    ensure!(conditions(&a).is_empty(), "{:?}", conditions(&a));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_render_or_a_missing_path_never_prunes() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.git.commit_files(
        &[("web/cm.yaml", CM), ("web/README.md", "docs only\n")],
        "web",
    )?;
    fleet
        .apply(&mk_app(&fleet, "web", "web", "cluster-001"))
        .await?;
    wait_synced_healthy(&fleet, "web").await?;
    // Every manifest gone: the render is empty (the README keeps the directory).
    fleet.git.remove("web/cm.yaml")?;
    fleet.git.commit("empty")?;
    refresh(&fleet, "web").await?;
    wait_app(
        &fleet,
        "web",
        Duration::from_secs(30),
        "SyncError about an empty render",
        |a| has_condition(a, "SyncError", "allowEmpty"),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
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
        .is_some()
    );
    // The whole path gone: a render error, still no prune.
    fleet.git.remove("web")?;
    fleet.git.commit("path gone")?;
    refresh(&fleet, "web").await?;
    wait_app(
        &fleet,
        "web",
        Duration::from_secs(30),
        "ComparisonError about the path",
        |a| has_condition(a, "ComparisonError", "does not exist"),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
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
        .is_some()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_a_condition_and_the_app_recovers() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet
        .git
        .commit_files(&[("web/cm.yaml", CM), ("other/cm.yaml", CM)], "apps")?;
    fleet
        .apply(&mk_app(&fleet, "web", "web", "cluster-002"))
        .await?;
    fleet
        .apply(&mk_app(&fleet, "other", "other", "cluster-001"))
        .await?;
    wait_synced_healthy(&fleet, "web").await?;
    wait_synced_healthy(&fleet, "other").await?;
    let c2 = fleet
        .sim
        .in_process()?
        .cluster("cluster-002")
        .ok_or_else(|| anyhow::anyhow!("cluster-002"))?;
    let objects_before = c2.store.object_count();
    c2.faults.set(&FaultSpec {
        unreachable: true,
        ..Default::default()
    });
    // Meanwhile Git changes: the controller must not act blindly.
    fleet
        .git
        .commit_files(&[("web/cm.yaml", &CM.replace("blue", "green"))], "green")?;
    refresh(&fleet, "web").await?;
    let a = wait_app(
        &fleet,
        "web",
        Duration::from_secs(30),
        "unreachable condition",
        |a| has_condition(a, "ComparisonError", "unreachable"),
    )
    .await?;
    ensure!(
        codes(&a) == ("Unknown".into(), "Unknown".into()),
        "{:?}",
        codes(&a)
    );
    // The other cluster's app is unaffected.
    let other = app(&fleet, "other").await?;
    ensure!(conditions(&other).is_empty() && codes(&other).0 == "Synced");
    c2.faults.set(&FaultSpec::default());
    ensure!(
        c2.store.object_count() == objects_before,
        "nothing changed while unreachable"
    );
    let a = wait_app(
        &fleet,
        "web",
        Duration::from_secs(60),
        "recovered and synced to green",
        |a| conditions(a).is_empty() && codes(a) == ("Synced".into(), "Healthy".into()),
    )
    .await?;
    ensure!(a.status.is_some());
    let cm = live(
        &fleet,
        "cluster-002",
        "v1",
        "ConfigMap",
        Some("web"),
        "settings",
    )
    .await?;
    ensure!(cm.is_some_and(|c| c["data"]["color"] == "green"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_app_with_the_finalizer_deletes_its_resources_and_without_keeps_them()
-> Result<()> {
    use flotilla_controller::types::Application;
    use kube::Api;
    use kube::api::DeleteParams;
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet
        .git
        .commit_files(&[("a/cm.yaml", CM), ("b/cm.yaml", CM)], "apps")?;
    let with_finalizer = mk_app(&fleet, "a", "a", "cluster-001").replace(
        "metadata: {name: a, namespace: argocd}",
        "metadata: {name: a, namespace: argocd, finalizers: [resources-finalizer.argocd.argoproj.io]}",
    );
    fleet.apply(&with_finalizer).await?;
    fleet
        .apply(&mk_app(&fleet, "b", "b", "cluster-001"))
        .await?;
    wait_synced_healthy(&fleet, "a").await?;
    wait_synced_healthy(&fleet, "b").await?;
    let apps: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    apps.delete("a", &DeleteParams::default()).await?;
    apps.delete("b", &DeleteParams::default()).await?;
    flotilla_tests::eventually("app a gone", Duration::from_secs(30), || async {
        Ok(apps.get_opt("a").await?.is_none().then_some(()))
    })
    .await?;
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "v1",
            "ConfigMap",
            Some("a"),
            "settings"
        )
        .await?
        .is_none(),
        "cascaded"
    );
    ensure!(apps.get_opt("b").await?.is_none());
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "v1",
            "ConfigMap",
            Some("b"),
            "settings"
        )
        .await?
        .is_some(),
        "orphaned"
    );
    Ok(())
}
