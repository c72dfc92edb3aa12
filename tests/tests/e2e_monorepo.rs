//! Monorepo refreshes end to end (Argo CD's `UpdateRevisionForPaths`): after a commit that
//! touches one app's directory, an app that declares its paths (`manifest-generate-paths`) and
//! whose paths did not change moves to the new commit without a render; the touched app and an
//! app without the annotation render.

use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::{NS, config_map, live_value, refresh, wait_app, wait_synced_healthy};

fn app(fleet: &Fleet, name: &str, annotated: bool) -> String {
    let annotation = if annotated {
        "\n  annotations: {argocd.argoproj.io/manifest-generate-paths: .}"
    } else {
        ""
    };
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: {NS}{annotation}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: apps/{name}}}\n  destination: {{name: cluster-001, namespace: mono}}\n  syncPolicy: {{automated: {{}}, syncOptions: [CreateNamespace=true]}}\n",
        url = fleet.git.url()
    )
}

async fn reused(fleet: &Fleet) -> Result<f64> {
    fleet
        .controller_metric_sum("flotilla_manifest_cache_total", &[("outcome", "reused")])
        .await
}

async fn renders(fleet: &Fleet) -> Result<f64> {
    fleet
        .repo_metric_sum("flotilla_repo_renders_total", &[("result", "ok")])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_whose_paths_did_not_change_moves_to_the_new_commit_without_a_render() -> Result<()>
{
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.git.commit_files(
        &[
            ("apps/a/cm.yaml", &config_map("a", "v1")),
            ("apps/b/cm.yaml", &config_map("b", "v1")),
            ("apps/c/cm.yaml", &config_map("c", "v1")),
        ],
        "three apps",
    )?;
    fleet.apply(&app(&fleet, "a", true)).await?;
    fleet.apply(&app(&fleet, "b", true)).await?;
    fleet.apply(&app(&fleet, "c", false)).await?;
    for n in ["a", "b", "c"] {
        wait_synced_healthy(&fleet, n).await?;
    }
    let before = renders(&fleet).await?;
    ensure!(reused(&fleet).await? == 0.0);

    // One commit touching only a's directory.
    let commit = fleet
        .git
        .commit_files(&[("apps/a/cm.yaml", &config_map("a", "v2"))], "a v2")?;
    for n in ["a", "b", "c"] {
        refresh(&fleet, n).await?;
    }
    for n in ["a", "b", "c"] {
        wait_app(
            &fleet,
            n,
            Duration::from_secs(60),
            "Synced at the new commit",
            |a| {
                a.status.as_ref().is_some_and(|s| {
                    s.sync.as_ref().is_some_and(|y| {
                        y.status == "Synced" && y.revision.as_deref() == Some(commit.as_str())
                    })
                })
            },
        )
        .await?;
    }
    ensure!(
        live_value(&fleet, "cluster-001", "mono", "a")
            .await?
            .as_deref()
            == Some("v2"),
        "the touched app deployed its change"
    );
    let rendered = renders(&fleet).await? - before;
    ensure!(
        rendered == 2.0,
        "a (touched) and c (no annotation) render, b does not: {rendered} renders"
    );
    ensure!(
        reused(&fleet).await? == 1.0,
        "b's render was reused: {}",
        reused(&fleet).await?
    );
    Ok(())
}
