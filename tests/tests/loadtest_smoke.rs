//! The `smoke` load-test scenario, run in CI: the harness starts a whole fleet of processes
//! (kubesim, git daemon, Redis Cluster, 2 repo-servers, 2 controllers), and everything must
//! converge, every change must go live and every fault must be recovered from. It checks the
//! harness's report too, so a harness that measured nothing would fail here.

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::harness::{self, RunOptions, scenario::Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scenario_converges_changes_go_live_and_faults_recover() -> Result<()> {
    let path = flotilla_loadtest::fleet::process::package_dir().join("scenarios/smoke.yaml");
    let scenario = Scenario::load(&path)?;
    let out = tempfile::tempdir()?;
    let report = harness::run(
        &scenario,
        &RunOptions {
            out_dir: Some(out.path().to_path_buf()),
            progress: false,
        },
    )
    .await?;
    ensure!(report.ok, "smoke failed: {:?}", report.problems);
    let c = &report.convergence;
    ensure!(
        c.synced_healthy == scenario.applications && c.per_app.count == scenario.applications,
        "every application measured: {c:?}"
    );
    ensure!(c.all_synced_seconds.is_some_and(|s| s > 0.0));
    ensure!(
        c.renders >= scenario.applications as f64 && c.reconciles > 0.0 && c.kube_requests > 0.0,
        "counters read from the fleet: {c:?}"
    );
    let expected = scenario.changes.webhook_commits + scenario.changes.poll_commits;
    ensure!(report.changes.len() == expected, "{:?}", report.changes);
    ensure!(
        report.webhook_latency.count
            == scenario.changes.webhook_commits * scenario.changes.apps_per_commit
    );
    ensure!(
        report.api.queries.len() == 7
            && report.api.ready_seconds > 0.0
            && report.api.queries.iter().all(|q| {
                q.errors == 0 && q.latency.count >= scenario.api.requests && q.latency.p50 > 0.0
            }),
        "the API measured: {:?}",
        report.api
    );
    let ui = report.api.ui.as_ref().context("the web UI measured")?;
    ensure!(
        ui.listed == scenario.applications as u64
            && ui.cold_load > 0.0
            && ui.warm_load.count == scenario.api.ui_loads
            && ui.search.count == scenario.api.ui_loads + 1
            && ui.scroll_to_end.p50 > 0.0
            && ui.dom_rows > 0,
        "{ui:?}"
    );
    ensure!(report.faults.len() == scenario.faults.len());
    for f in &report.faults {
        ensure!(
            f.recovered_seconds.is_some() && f.clusters_moved >= 1 && f.apps_on_moved_clusters >= 1,
            "{f:?}"
        );
    }
    ensure!(
        report.resources.processes.contains_key("kubesim")
            && report.resources.controllers_cpu_seconds > 0.0
            && report.resources.controllers_peak_rss_mib > 0.0,
        "processes sampled: {:?}",
        report.resources.processes.keys().collect::<Vec<_>>()
    );
    ensure!(!report.timeline.is_empty(), "a progress timeline");
    for f in ["report.json", "report.md", "progress.svg", "latency.svg"] {
        ensure!(out.path().join(f).is_file(), "{f} written");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json"))?)?;
    ensure!(json["convergence"]["applications"] == scenario.applications);
    Ok(())
}
