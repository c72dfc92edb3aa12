//! Multi-source Applications end to end (two Git repositories and a Helm repository →
//! repo-server → controller → kubesim): a chart from one repository (Git, or a Helm repository)
//! with its values from another (`ref: values`, `valueFiles: [$values/prod.yaml]`), as Argo CD
//! does them: every source's revision in
//! `status.sync.revisions`, a values commit that changes the render, history entries with
//! `revisions`/`sources`, a sync of one source at an older revision (`sourcePositions`), a
//! rollback that restores every source, and an unknown `$name` named in a condition.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use flotilla_controller::types::Application;
use flotilla_loadtest::fleet::static_http::StaticHttp;
use flotilla_loadtest::fleet::{Fleet, FleetConfig, GitServer};
use flotilla_tests::e2e::*;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CHART: &str = "apiVersion: v2\nname: web\nversion: 1.0.0\n";
const DEFAULTS: &str = "color: blue\n";

/// The chart's one template; `tier` is the chart's own (it changes with the chart's commits),
/// `color` comes from the values.
fn template(tier: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-settings\ndata:\n  color: {{{{ .Values.color | quote }}}}\n  tier: {tier}\n"
    )
}

/// A Helm repository serving the chart (`tier: registry`) as version 1.0.0, in `dir`.
async fn helm_repository(dir: &std::path::Path) -> Result<StaticHttp> {
    let src = dir.join("src/web");
    std::fs::create_dir_all(src.join("templates"))?;
    std::fs::write(src.join("Chart.yaml"), CHART)?;
    std::fs::write(src.join("values.yaml"), DEFAULTS)?;
    std::fs::write(src.join("templates/cm.yaml"), template("registry"))?;
    let tgz = dir.join("web-1.0.0.tgz");
    let st = std::process::Command::new("tar")
        .arg("czf")
        .arg(&tgz)
        .arg("-C")
        .arg(dir.join("src"))
        .arg("web")
        .status()?;
    ensure!(st.success(), "tar failed");
    let digest = hex::encode(Sha256::digest(std::fs::read(&tgz)?));
    std::fs::write(
        dir.join("index.yaml"),
        format!(
            "apiVersion: v1\nentries:\n  web:\n  - name: web\n    version: 1.0.0\n    digest: {digest}\n    urls: [web-1.0.0.tgz]\n"
        ),
    )?;
    StaticHttp::start(dir, None).await
}

fn require_helm() -> Result<()> {
    let found = std::env::var_os("FLOTILLA_HELM").is_some()
        || std::env::split_paths(&std::env::var("PATH").unwrap_or_default())
            .any(|d| d.join("helm").is_file());
    if !found {
        bail!(
            "no helm on PATH: run ./scripts/test.sh, which installs a helm shim on Helm's own engine"
        );
    }
    Ok(())
}

/// An auto-synced Application: the chart at `charts/web` of `charts`, its values from
/// `values_url` through `value_file`.
fn multi_app(name: &str, charts: &str, values_url: &str, value_file: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  project: default\n  sources:\n  - repoURL: {charts}\n    targetRevision: main\n    path: charts/web\n    helm:\n      valueFiles: ['{value_file}']\n  - {{repoURL: {values_url}, targetRevision: main, ref: values}}\n  destination: {{name: cluster-001, namespace: {name}}}\n  syncPolicy:\n    automated: {{prune: true}}\n    syncOptions: [CreateNamespace=true]\n"
    )
}

/// `data` of the chart's ConfigMap, live.
async fn settings(fleet: &Fleet) -> Result<Value> {
    Ok(live(
        fleet,
        "cluster-001",
        "v1",
        "ConfigMap",
        Some("multi"),
        "web-settings",
    )
    .await?
    .map(|c| c["data"].clone())
    .unwrap_or(Value::Null))
}

/// Wait until the live ConfigMap has `color` and `tier`.
async fn wait_live(fleet: &Fleet, color: &str, tier: &str) -> Result<()> {
    let want = json!({"color": color, "tier": tier});
    let mut last = Value::Null;
    for _ in 0..200 {
        last = settings(fleet).await?;
        if last == want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("live settings are {last}, not {want}")
}

fn history(a: &Application) -> Vec<Value> {
    a.status
        .as_ref()
        .and_then(|s| s.history.clone())
        .unwrap_or_default()
}

fn sync_revisions(a: &Application) -> Vec<String> {
    a.status
        .as_ref()
        .and_then(|s| s.sync.as_ref())
        .and_then(|s| s.revisions.clone())
        .unwrap_or_default()
}

/// Wait until the app has `n` history entries and no pending operation.
async fn wait_history(fleet: &Fleet, n: usize) -> Result<Application> {
    wait_app(
        fleet,
        "multi",
        Duration::from_secs(30),
        &format!("{n} history entries"),
        |a| a.operation.is_none() && history(a).len() == n,
    )
    .await
}

async fn request_operation(fleet: &Fleet, operation: Value) -> Result<()> {
    let apps: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    apps.patch(
        "multi",
        &PatchParams::default(),
        &Patch::Merge(json!({ "operation": operation })),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_with_values_from_another_repository_syncs_moves_and_rolls_back() -> Result<()> {
    require_helm()?;
    let fleet = Fleet::start(FleetConfig::default()).await?;
    let c1 = fleet.git.commit_files(
        &[
            ("charts/web/Chart.yaml", CHART),
            ("charts/web/values.yaml", DEFAULTS),
            ("charts/web/templates/cm.yaml", &template("one")),
        ],
        "chart",
    )?;
    // The values live in a second repository with a Git server of its own.
    let values_dir = tempfile::tempdir()?;
    let values = GitServer::start(values_dir.path(), "values", None)?;
    let v1 = values.commit_files(&[("prod.yaml", "color: green\n")], "values v1")?;
    let (charts, values_url) = (fleet.git.url(), values.url());

    fleet
        .apply(&multi_app(
            "multi",
            &charts,
            &values_url,
            "$values/prod.yaml",
        ))
        .await?;
    // The chart from a Helm repository, the values from Git.
    let registry_dir = tempfile::tempdir()?;
    let registry = helm_repository(registry_dir.path()).await?;
    fleet
        .apply(
            &multi_app("registry", &charts, &values_url, "$values/prod.yaml").replace(
                &format!("repoURL: {charts}\n    targetRevision: main\n    path: charts/web"),
                &format!(
                    "repoURL: {}\n    targetRevision: 1.0.0\n    chart: web",
                    registry.url()
                ),
            ),
        )
        .await?;
    // A `$name` no source defines is a condition naming it.
    fleet
        .apply(&multi_app(
            "unknown-ref",
            &charts,
            &values_url,
            "$vals/prod.yaml",
        ))
        .await?;

    // 1. Synced with the values of the other repository applied.
    wait_live(&fleet, "green", "one").await?;
    let a = wait_history(&fleet, 1).await?;
    let both = vec![c1.clone(), v1.clone()];
    ensure!(sync_revisions(&a) == both, "{:?}", a.status);
    let entry = &history(&a)[0];
    ensure!(
        entry["revisions"] == json!(both)
            && entry["sources"].as_array().map(Vec::len) == Some(2)
            && entry["sources"][1]["ref"] == "values"
            && entry.get("revision").is_none(),
        "a multi-source history entry: {entry}"
    );
    let op = a
        .status
        .as_ref()
        .and_then(|s| s.operation_state.clone())
        .context("operationState")?;
    ensure!(
        op["syncResult"]["revisions"] == json!(both)
            && op["syncResult"]["sources"].as_array().map(Vec::len) == Some(2),
        "{op}"
    );
    let broken = wait_app(
        &fleet,
        "unknown-ref",
        Duration::from_secs(30),
        "ComparisonError",
        |a| {
            conditions(a).iter().any(|(t, m)| {
                t == "ComparisonError"
                    && m.contains("source referenced \"$vals\", which is not one of the available sources ($values)")
            })
        },
    )
    .await?;
    ensure!(codes(&broken).0 == "Unknown", "{:?}", broken.status);
    let from_registry = wait_app(&fleet, "registry", Duration::from_secs(30), "Synced", |a| {
        codes(a).0 == "Synced" && history(a).len() == 1
    })
    .await?;
    ensure!(
        sync_revisions(&from_registry) == vec!["1.0.0".to_string(), v1.clone()],
        "{:?}",
        from_registry.status
    );
    let cm = live(
        &fleet,
        "cluster-001",
        "v1",
        "ConfigMap",
        Some("registry"),
        "web-settings",
    )
    .await?
    .context("the registry chart's ConfigMap")?;
    ensure!(
        cm["data"] == json!({"color": "green", "tier": "registry"}),
        "{cm}"
    );

    // 2. A commit to the values repository changes the live object after a refresh.
    let v2 = values.commit_files(&[("prod.yaml", "color: red\n")], "values v2")?;
    refresh(&fleet, "multi").await?;
    wait_live(&fleet, "red", "one").await?;
    let a = wait_history(&fleet, 2).await?;
    ensure!(
        sync_revisions(&a) == vec![c1.clone(), v2.clone()],
        "{:?}",
        a.status
    );

    // 3. And so does one to the chart's.
    let c2 = fleet
        .git
        .commit_files(&[("charts/web/templates/cm.yaml", &template("two"))], "c2")?;
    refresh(&fleet, "multi").await?;
    wait_live(&fleet, "red", "two").await?;
    let a = wait_history(&fleet, 3).await?;
    ensure!(history(&a)[2]["revisions"] == json!([c2, v2]), "{a:?}");

    // 4. Manual from now on: the chart source alone at its first commit (`argocd app sync
    // --source-positions 1 --revisions <c1>`); the values stay at the spec's revision.
    let apps: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    apps.patch(
        "multi",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"syncPolicy": {"automated": null}}})),
    )
    .await?;
    wait_app(&fleet, "multi", Duration::from_secs(10), "manual", |a| {
        a.spec
            .sync_policy
            .as_ref()
            .is_some_and(|p| p.automated.is_none())
    })
    .await?;
    request_operation(
        &fleet,
        json!({"sync": {"revisions": [c1], "sourcePositions": [1]},
               "initiatedBy": {"username": "admin"}}),
    )
    .await?;
    let a = wait_history(&fleet, 4).await?;
    wait_live(&fleet, "red", "one").await?;
    ensure!(
        history(&a)[3]["revisions"] == json!([c1, v2]),
        "{:?}",
        history(&a)
    );

    // 5. A rollback to the first deployment restores both sources' revisions.
    let op = flotilla_controller::operation::rollback_operation(
        &a,
        0,
        false,
        false,
        Some("admin".into()),
    )
    .map_err(anyhow::Error::msg)?;
    request_operation(&fleet, serde_json::to_value(&op)?).await?;
    let a = wait_history(&fleet, 5).await?;
    wait_live(&fleet, "green", "one").await?;
    ensure!(
        history(&a)[4]["revisions"] == json!([c1, v1]),
        "{:?}",
        history(&a)
    );
    // The spec still tracks main in both repositories: OutOfSync until synced again.
    wait_app(&fleet, "multi", Duration::from_secs(30), "OutOfSync", |a| {
        codes(a).0 == "OutOfSync" && sync_revisions(a) == vec![c2.clone(), v2.clone()]
    })
    .await?;
    Ok(())
}
