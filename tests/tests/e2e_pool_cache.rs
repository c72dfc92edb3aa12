//! The repo-server pool and the shared cache through real processes: 2 sharded controllers,
//! 3 repo-servers and a 3-master Redis Cluster. A 200-app monorepo renders each (commit, path)
//! once across the fleet; a warm cache needs no repo-server call; a killed repo-server fails
//! over; a killed Redis master only costs the cache. And the Git webhook: a signed push syncs
//! at once, a bad signature is refused.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use flotilla_controller::types::Application;
use flotilla_loadtest::fleet::{Fleet, FleetConfig, http_post, metric_value};
use flotilla_tests::e2e::*;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

const APPS: usize = 200;

fn cm(i: usize, color: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{i:03}\ndata:\n  color: {color}\n"
    )
}

fn app_yaml(fleet: &Fleet, i: usize, clusters: usize) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: app-{i:03}, namespace: argocd}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: mono/app-{i:03}}}\n  destination: {{name: cluster-{c:03}, namespace: app-{i:03}}}\n  syncPolicy:\n    automated: {{prune: true}}\n    syncOptions: [CreateNamespace=true]\n",
        url = fleet.git.url(),
        c = i % clusters + 1,
    )
}

async fn all_apps(fleet: &Fleet) -> Result<Vec<Application>> {
    let api: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    Ok(api.list(&ListParams::default()).await?.items)
}

fn revision(a: &Application) -> Option<&str> {
    a.status.as_ref()?.sync.as_ref()?.revision.as_deref()
}

/// Wait until all `n` apps are Synced at `commit`.
async fn wait_commit(fleet: &Fleet, n: usize, commit: &str, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let apps = all_apps(fleet).await?;
        let done = apps
            .iter()
            .filter(|a| codes(a).0 == "Synced" && revision(a) == Some(commit))
            .count();
        if apps.len() >= n && done == n {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            let stuck: Vec<String> = apps
                .iter()
                .filter(|a| !(codes(a).0 == "Synced" && revision(a) == Some(commit)))
                .take(3)
                .map(|a| {
                    format!(
                        "{:?}: {:?}",
                        a.metadata.name,
                        a.status.as_ref().map(|s| (&s.sync, &s.conditions))
                    )
                })
                .collect();
            bail!("{done} of {n} apps at {commit} after {timeout:?}; e.g. {stuck:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn refresh_all(fleet: &Fleet) -> Result<()> {
    let api: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    for a in all_apps(fleet).await? {
        let name = a.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}),
            ),
        )
        .await?;
    }
    Ok(())
}

/// Commit a new color in every app's path (one commit) and ask every app to refresh.
async fn roll(fleet: &Fleet, color: &str) -> Result<String> {
    let files: Vec<(String, String)> = (0..APPS)
        .map(|i| (format!("mono/app-{i:03}/cm.yaml"), cm(i, color)))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_str()))
        .collect();
    let commit = fleet.git.commit_files(&refs, color)?;
    refresh_all(fleet).await?;
    Ok(commit)
}

async fn renders(fleet: &Fleet) -> Result<f64> {
    fleet
        .repo_metric_sum("flotilla_repo_renders_total", &[("result", "ok")])
        .await
}

async fn fetches(fleet: &Fleet) -> Result<f64> {
    fleet
        .repo_metric_sum("flotilla_repo_git_fetches_total", &[("result", "ok")])
        .await
}

async fn repo_requests(fleet: &Fleet) -> Result<f64> {
    fleet
        .repo_metric_sum("flotilla_repo_requests_total", &[])
        .await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monorepo_renders_once_per_commit_across_a_pool_and_survives_losses() -> Result<()> {
    let clusters = 4;
    let mut fleet = Fleet::start(FleetConfig {
        clusters,
        controllers: 2,
        repo_servers: 3,
        redis_masters: 3,
        workers: 8,
        lease_duration_seconds: 6,
        lease_renew_seconds: 1.0,
        ready_delay: Duration::from_millis(50),
        ..Default::default()
    })
    .await?;
    let files: Vec<(String, String)> = (0..APPS)
        .map(|i| (format!("mono/app-{i:03}/cm.yaml"), cm(i, "blue")))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_str()))
        .collect();
    let first = fleet.git.commit_files(&refs, "monorepo")?;
    for i in 0..APPS {
        fleet.apply(&app_yaml(&fleet, i, clusters)).await?;
    }
    let took = wait_commit(&fleet, APPS, &first, Duration::from_secs(120)).await?;
    let (r1, f1) = (renders(&fleet).await?, fetches(&fleet).await?);
    println!(
        "200 apps synced in {took:?}: {r1} renders, {f1} git fetches (3 repo-servers, 2 controllers)"
    );
    ensure!(
        r1 == APPS as f64,
        "each (commit, path) rendered exactly once: {r1}"
    );

    // A new commit touching every path: 200 renders more, across the pool, still once each.
    let second = roll(&fleet, "green").await?;
    let took = wait_commit(&fleet, APPS, &second, Duration::from_secs(120)).await?;
    let (r2, f2) = (renders(&fleet).await?, fetches(&fleet).await?);
    println!(
        "rollout of one commit to 200 apps: {took:?}, {} renders, {} git fetches",
        r2 - r1,
        f2 - f1
    );
    ensure!(
        r2 - r1 == APPS as f64,
        "one render per path for the new commit: {}",
        r2 - r1
    );

    // Warm shared cache: fresh controller processes reconcile every app without a single
    // repo-server call (revisions and manifests come from Redis).
    let before = repo_requests(&fleet).await?;
    for id in fleet.controller_ids() {
        fleet.stop_controller(&id)?;
    }
    fleet.start_controller().await?;
    fleet.start_controller().await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hits = fleet
            .controller_metric_sum(
                "flotilla_manifest_cache_total",
                &[("outcome", "hit-shared")],
            )
            .await?;
        if hits >= APPS as f64 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {hits} shared-cache hits after restart"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after = repo_requests(&fleet).await?;
    ensure!(
        after == before,
        "the warm path made {} repo-server calls",
        after - before
    );
    let misses = fleet
        .controller_metric_sum("flotilla_manifest_cache_total", &[("outcome", "miss")])
        .await?;
    ensure!(
        misses == 0.0,
        "{misses} misses after a restart with a warm cache"
    );
    println!("restart with a warm cache: {APPS} apps reconciled from Redis, 0 repo-server calls");

    // Latency of one source's manifests on a shared-cache hit and on a miss (a hard refresh
    // renders again), measured in this process against the fleet's Redis and repo-servers.
    {
        use flotilla_cache::{CacheMetrics, ManifestStore, RevisionStore};
        use flotilla_controller::manifests::{ManifestClient, ManifestMetrics, MemoryCache};
        use flotilla_controller::repo_pool::{Discovery, PoolMetrics, RepoPool};
        use std::sync::Arc;
        let redis = fleet.redis.as_ref().context("redis")?;
        let store: Arc<dyn flotilla_cache::Store> =
            Arc::new(flotilla_cache::redis::RedisStore::connect(
                flotilla_cache::redis::RedisConfig::new(&redis.url()),
                CacheMetrics::default(),
            )?);
        let endpoints: Vec<String> = fleet
            .repo_servers
            .iter()
            .map(|r| format!("https://{}", r.grpc))
            .collect();
        let client = ManifestClient::new(
            RepoPool::with_tls(
                Discovery::Static(endpoints),
                Duration::from_secs(60),
                PoolMetrics::default(),
                Some(fleet.repo_tls.client_config()?),
            )
            .with_token(Some(fleet.repo_token.clone())),
            MemoryCache::new(1),
            Some(ManifestStore::new(
                store.clone(),
                Duration::from_secs(3600),
                CacheMetrics::default(),
            )),
            RevisionStore::new(store, Duration::from_secs(60), CacheMetrics::default()),
            ManifestMetrics::default(),
        );
        let mut hit = Vec::new();
        let mut miss = Vec::new();
        for i in 0..APPS {
            let src = flotilla_proto::repo::v1::ApplicationSource {
                repo_url: fleet.git.url(),
                path: format!("mono/app-{i:03}"),
                target_revision: "main".into(),
                ..Default::default()
            };
            let repo = flotilla_proto::repo::v1::Repository {
                url: fleet.git.url(),
                ..Default::default()
            };
            let name = format!("app-{i:03}");
            let t = Instant::now();
            client
                .manifests(repo.clone(), src.clone(), &name, &name, &second, false)
                .await?;
            hit.push(t.elapsed());
            if i % 4 == 0 {
                let t = Instant::now();
                client
                    .manifests(repo, src, &name, &name, &second, true)
                    .await?;
                miss.push(t.elapsed());
            }
        }
        hit.sort();
        miss.sort();
        println!(
            "manifest retrieval: shared-cache hit p50 {:?} p99 {:?} ({} lookups); miss (render via gRPC) p50 {:?} p99 {:?} ({})",
            percentile(&hit, 0.5),
            percentile(&hit, 0.99),
            hit.len(),
            percentile(&miss, 0.5),
            percentile(&miss, 0.99),
            miss.len()
        );
    }

    // Lose the repo-server that holds the repository's Git cache, in the middle of a rollout.
    let mut busiest = (String::new(), -1.0);
    for r in &fleet.repo_servers {
        let f = metric_value(
            &flotilla_loadtest::fleet::http_get(&r.metrics, "/metrics")
                .await?
                .1,
            "flotilla_repo_git_fetches_total",
            &[],
        );
        if f > busiest.1 {
            busiest = (r.name.clone(), f);
        }
    }
    let third = roll(&fleet, "red").await?;
    fleet.kill_repo_server(&busiest.0)?;
    let took = wait_commit(&fleet, APPS, &third, Duration::from_secs(120)).await?;
    let failovers = fleet
        .controller_metric_sum("flotilla_repo_server_failovers_total", &[])
        .await?;
    println!(
        "{} killed mid-rollout: all 200 apps at the new commit in {took:?}; {failovers} failovers",
        busiest.0
    );
    ensure!(failovers > 0.0, "calls failed over to another repo-server");

    // Lose a Redis master: the cache degrades, syncs go on.
    fleet.redis.as_mut().context("redis")?.kill(0);
    let fourth = roll(&fleet, "violet").await?;
    let took = wait_commit(&fleet, APPS, &fourth, Duration::from_secs(120)).await?;
    let degraded = fleet
        .controller_metric_sum("flotilla_cache_degraded", &[("store", "redis")])
        .await?;
    println!(
        "Redis master killed: all 200 apps at the new commit in {took:?}; degraded on {degraded} controllers"
    );
    ensure!(degraded >= 1.0, "controllers report the cache as degraded");
    Ok(())
}

fn github_push(fleet: &Fleet, after: &str) -> Vec<u8> {
    json!({
        "ref": "refs/heads/main",
        "after": after,
        "repository": {"html_url": "https://example.invalid/apps", "clone_url": fleet.git.url(), "default_branch": "main"}
    })
    .to_string()
    .into_bytes()
}

fn sign(secret: &str, body: &[u8]) -> String {
    flotilla_loadtest::fleet::github_signature(secret, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_syncs_at_once_and_a_bad_signature_is_refused() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        webhook_github_secret: Some("s3cret".into()),
        controller_args: [
            "--webhook-gogs-secret",
            "gogs-s3cret",
            "--webhook-azuredevops-username",
            "ado",
            "--webhook-azuredevops-password",
            "ado-s3cret",
        ]
        .map(String::from)
        .to_vec(),
        refresh_seconds: 3600,
        ..Default::default()
    })
    .await?;
    let webhook = fleet.controllers[0]
        .webhook
        .clone()
        .context("webhook address")?;
    fleet
        .git
        .commit_files(&[("hook/cm.yaml", &cm(0, "blue"))], "hook")?;
    for (name, cluster) in [("hook", "cluster-001"), ("hook-2", "cluster-002")] {
        fleet
            .apply(&format!(
                "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: argocd}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: hook}}\n  destination: {{name: {cluster}, namespace: {name}}}\n  syncPolicy:\n    automated: {{prune: true}}\n    syncOptions: [CreateNamespace=true]\n",
                url = fleet.git.url()
            ))
            .await?;
        wait_synced_healthy(&fleet, name).await?;
    }

    // A push with a bad signature is refused and changes nothing.
    let commit = fleet
        .git
        .commit_files(&[("hook/cm.yaml", &cm(0, "green"))], "green")?;
    let body = github_push(&fleet, &commit);
    let (code, reply) = http_post(
        &webhook,
        "/api/webhook",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sign("wrong", &body)),
        ],
        &body,
    )
    .await?;
    ensure!(code == 401, "bad signature: {code} {reply}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = app(&fleet, "hook").await?;
    ensure!(
        revision(&a) != Some(commit.as_str()),
        "nothing synced on a refused webhook"
    );
    ensure!(
        a.metadata
            .annotations
            .as_ref()
            .is_none_or(|m| !m.contains_key("argocd.argoproj.io/refresh")),
        "no refresh was asked"
    );

    // The signed push: both apps sync the new commit in seconds (the poll is an hour away).
    let pushed = Instant::now();
    let (code, reply) = http_post(
        &webhook,
        "/api/webhook",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sign("s3cret", &body)),
        ],
        &body,
    )
    .await?;
    ensure!(
        code == 200 && reply.contains("\"refreshed\":2"),
        "{code} {reply}"
    );
    let mut live_at = HashMap::new();
    for name in ["hook", "hook-2"] {
        wait_app(
            &fleet,
            name,
            Duration::from_secs(20),
            "the pushed commit",
            |a| codes(a).0 == "Synced" && revision(a) == Some(commit.as_str()),
        )
        .await?;
        live_at.insert(name, pushed.elapsed());
    }
    println!("webhook push to synced: {live_at:?}");
    let m = fleet.controller_metrics().await?;
    ensure!(
        metric_value(
            &m,
            "flotilla_webhook_requests_total",
            &[("result", "unauthorized")]
        ) == 1.0
    );
    ensure!(metric_value(&m, "flotilla_webhook_refreshes_total", &[]) == 2.0);
    // A ping is answered and ignored.
    let (code, _) = http_post(
        &webhook,
        "/api/webhook",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-Hub-Signature-256", &sign("s3cret", b"{}")),
        ],
        b"{}",
    )
    .await?;
    ensure!(code == 200);

    // Gogs: its own signature header over a GitHub-like payload.
    let commit = fleet
        .git
        .commit_files(&[("hook/cm.yaml", &cm(0, "gogs"))], "gogs")?;
    let body = json!({
        "ref": "refs/heads/main", "after": commit,
        "commits": [{"id": commit, "added": [], "removed": [], "modified": ["hook/cm.yaml"]}],
        "repository": {"html_url": "https://gogs.example.invalid/org/apps", "clone_url": fleet.git.url(), "default_branch": "main"}
    })
    .to_string()
    .into_bytes();
    let gogs_sig = sign("gogs-s3cret", &body)
        .trim_start_matches("sha256=")
        .to_string();
    let (code, reply) = http_post(
        &webhook,
        "/api/webhook",
        &[("X-Gogs-Event", "push"), ("X-Gogs-Signature", &gogs_sig)],
        &body,
    )
    .await?;
    ensure!(
        code == 200 && reply.contains("\"refreshed\":2"),
        "gogs: {code} {reply}"
    );
    wait_app(
        &fleet,
        "hook",
        Duration::from_secs(20),
        "the Gogs push",
        |a| codes(a).0 == "Synced" && revision(a) == Some(commit.as_str()),
    )
    .await?;

    // Azure DevOps: a basic-auth account; the wrong one is refused and changes nothing.
    let commit = fleet
        .git
        .commit_files(&[("hook/cm.yaml", &cm(0, "azure"))], "azure")?;
    let body = json!({
        "eventType": "git.push", "publisherId": "tfs",
        "resource": {
            "refUpdates": [{"name": "refs/heads/main", "newObjectId": commit}],
            "repository": {"defaultBranch": "refs/heads/main", "remoteUrl": fleet.git.url()}
        }
    })
    .to_string()
    .into_bytes();
    let basic = |user: &str, pass: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let activity = ("X-VSS-ActivityId", "5e8f2a4c-9d4e-4a65-9a3c-1f2a3b4c5d6e");
    let (code, _) = http_post(
        &webhook,
        "/api/webhook",
        &[activity, ("Authorization", &basic("ado", "guess"))],
        &body,
    )
    .await?;
    ensure!(code == 401, "azure with a wrong password: {code}");
    let (code, reply) = http_post(
        &webhook,
        "/api/webhook",
        &[activity, ("Authorization", &basic("ado", "ado-s3cret"))],
        &body,
    )
    .await?;
    ensure!(
        code == 200 && reply.contains("\"refreshed\":2"),
        "azure: {code} {reply}"
    );
    wait_app(
        &fleet,
        "hook-2",
        Duration::from_secs(20),
        "the Azure DevOps push",
        |a| codes(a).0 == "Synced" && revision(a) == Some(commit.as_str()),
    )
    .await?;
    let m = fleet.controller_metrics().await?;
    ensure!(
        metric_value(
            &m,
            "flotilla_webhook_requests_total",
            &[("result", "unauthorized")]
        ) == 2.0
    );
    Ok(())
}
