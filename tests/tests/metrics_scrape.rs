//! `/metrics` of running processes, parsed as Prometheus text: applications are counted by
//! status, reconcile histograms grow, owned clusters sum to the total across replicas, and the
//! Argo CD-shaped series (app info, syncs, k8s requests, git, Redis) move as work happens.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::*;
use prometheus_parse::{Scrape, Value};

const CLUSTERS: usize = 3;
const APPS: usize = 6;

fn parse(text: &str) -> Result<Scrape> {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).context("Prometheus text")
}

fn scalar(v: &Value) -> f64 {
    match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => *x,
        Value::Histogram(_) | Value::Summary(_) => 0.0,
    }
}

/// Sum over `scrapes` of the samples named `name` carrying every label in `labels`.
fn sum(scrapes: &[Scrape], name: &str, labels: &[(&str, &str)]) -> f64 {
    scrapes
        .iter()
        .flat_map(|s| s.samples.iter())
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| scalar(&s.value))
        .sum()
}

fn count(scrapes: &[Scrape], name: &str) -> usize {
    scrapes
        .iter()
        .flat_map(|s| s.samples.iter())
        .filter(|s| s.metric == name)
        .count()
}

async fn controllers(fleet: &Fleet) -> Result<Vec<Scrape>> {
    fleet
        .controller_metric_texts()
        .await?
        .iter()
        .map(|t| parse(t))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_work_happens() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        clusters: CLUSTERS,
        controllers: 2,
        redis_masters: 3,
        ..Default::default()
    })
    .await?;
    fleet
        .git
        .commit_files(&[("web/cm.yaml", CONFIG_MAP)], "web")?;
    for i in 0..APPS {
        let cluster = format!("cluster-{:03}", i % CLUSTERS + 1);
        fleet
            .apply(&auto_synced_app(
                &fleet,
                &format!("app-{i}"),
                "web",
                &cluster,
                &[],
            ))
            .await?;
    }
    for i in 0..APPS {
        wait_synced_healthy(&fleet, &format!("app-{i}")).await?;
    }
    // Statuses are reported as they are written; give the last writes a moment to count.
    let before = flotilla_tests::eventually("apps counted", Duration::from_secs(20), || async {
        let s = controllers(&fleet).await?;
        let healthy = [("sync_status", "Synced"), ("health_status", "Healthy")];
        // Every replica knows every cluster (ours plus the in-cluster destination).
        let total = sum(&s[..1], "flotilla_clusters", &[]);
        let got = (
            sum(&s, "flotilla_apps", &healthy),
            sum(&s, "flotilla_app_info", &healthy),
            sum(&s, "flotilla_owned_clusters", &[]),
        );
        ensure!(
            total == (CLUSTERS + 1) as f64 && got == (APPS as f64, APPS as f64, total),
            "apps, app_info, owned clusters: {got:?} of {total} clusters"
        );
        Ok(Some(s))
    })
    .await?;
    // One app_info series per app, each on exactly one replica, with Argo CD's labels.
    ensure!(count(&before, "flotilla_app_info") == APPS);
    let info = before
        .iter()
        .flat_map(|s| s.samples.iter())
        .find(|s| s.metric == "flotilla_app_info" && s.labels.get("name") == Some("app-0"))
        .context("app-0's info")?;
    ensure!(info.labels.get("project") == Some("default"));
    ensure!(info.labels.get("dest_server") == Some("cluster-001"));
    ensure!(info.labels.get("dest_namespace") == Some("app-0"));
    ensure!(
        sum(
            &before,
            "flotilla_app_sync_total",
            &[("phase", "Succeeded")]
        ) >= APPS as f64,
        "syncs counted per app"
    );
    ensure!(
        sum(
            &before,
            "flotilla_app_k8s_request_total",
            &[("verb", "Patch")]
        ) >= APPS as f64,
        "server-side applies counted as k8s requests"
    );
    ensure!(
        sum(
            &before,
            "flotilla_app_k8s_request_total",
            &[("verb", "Watch")]
        ) > 0.0
    );
    ensure!(
        sum(
            &before,
            "flotilla_redis_request_total",
            &[("initiator", "controller")]
        ) > 0.0,
        "Redis requests counted"
    );
    ensure!(count(&before, "flotilla_queue_oldest_seconds") == 2);
    ensure!(count(&before, "flotilla_shard_members") == 2);

    // A refresh of every app: each replica's reconcile histogram count grows.
    let reconciles = sum(&before, "flotilla_app_reconcile_count", &[]);
    ensure!(reconciles >= APPS as f64, "{reconciles} reconciles");
    for i in 0..APPS {
        refresh(&fleet, &format!("app-{i}")).await?;
    }
    flotilla_tests::eventually("reconciles counted", Duration::from_secs(20), || async {
        let s = controllers(&fleet).await?;
        Ok(
            (sum(&s, "flotilla_app_reconcile_count", &[]) >= reconciles + APPS as f64)
                .then_some(()),
        )
    })
    .await?;

    // The repo-server: git requests by repository, nothing pending once idle, Redis writes.
    let repo = parse(&fleet.repo_metrics().await?)?;
    let repo = [repo];
    let url = fleet.git.url();
    ensure!(
        sum(
            &repo,
            "flotilla_git_request_total",
            &[("repo", url.as_str()), ("request_type", "fetch")]
        ) >= 1.0,
        "git fetches counted for {url}"
    );
    ensure!(sum(&repo, "flotilla_repo_pending_request_total", &[]) == 0.0);
    ensure!(count(&repo, "flotilla_repo_pending_request_total") >= 1);
    ensure!(
        sum(
            &repo,
            "flotilla_redis_request_total",
            &[("initiator", "repo-server")]
        ) > 0.0
    );
    Ok(())
}
