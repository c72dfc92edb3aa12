//! `kubesim-bench`: measure kubesim's own throughput over real HTTP with the `kube` client —
//! GETs, server-side apply patches and watch fan-out — with many clusters and objects loaded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use kubesim::store::WriteCtx;
use kubesim::{KubeSim, SimConfig};
use rand::Rng;
use serde_json::json;

/// Load kubesim with clusters and objects, then measure GET, SSA and watch fan-out rates.
#[derive(Debug, Parser)]
#[command(name = "kubesim-bench")]
struct Args {
    #[arg(long, default_value_t = 200)]
    clusters: usize,
    #[arg(long, default_value_t = 1000)]
    objects_per_cluster: usize,
    /// Seconds per throughput phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent client tasks in the GET and apply phases.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Open watch streams in the fan-out phase (spread evenly over clusters).
    #[arg(long, default_value_t = 2000)]
    watchers: usize,
    /// Writes per cluster in the fan-out phase.
    #[arg(long, default_value_t = 10)]
    fanout_writes: usize,
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn client(sim: &KubeSim, i: usize) -> Result<Client> {
    let c = &sim.clusters()[i];
    let mut cfg = kube::Config::new(c.url().parse()?);
    cfg.auth_info.token = Some(c.token.clone().into());
    cfg.default_retry = false;
    Ok(Client::try_from(cfg)?)
}

async fn run_phase<F, Fut>(seconds: u64, concurrency: usize, op: F) -> (u64, u64, f64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (ok, failed, op) = (ok.clone(), failed.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if op(worker).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    (ok, failed.load(Ordering::Relaxed), ok as f64 / secs)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sim = Arc::new(
        KubeSim::start(SimConfig {
            clusters: args.clusters,
            request_log: 1000,
            history: 20_000,
            ..SimConfig::default()
        })
        .await?,
    );
    let rss_empty = rss_mb();

    // Seed through the store (the HTTP paths are measured below).
    let seed_start = Instant::now();
    let ctx = WriteCtx {
        manager: "seed".into(),
        dry_run: false,
        field_validation: Default::default(),
        warnings: Default::default(),
    };
    for c in sim.clusters() {
        let rt = c
            .store
            .lookup("", "v1", "configmaps")
            .context("configmaps served")?;
        for i in 0..args.objects_per_cluster {
            let cm = json!({"metadata": {"name": format!("cm-{i}"), "labels": {"app": format!("app-{}", i % 50), "flotilla.dev/tracked": "true"}},
                            "data": {"key": "value", "index": i.to_string()}});
            c.store
                .create(&rt, "default", cm, &ctx)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let seeded = args.clusters * args.objects_per_cluster;
    let seed_secs = seed_start.elapsed().as_secs_f64();
    let rss_loaded = rss_mb();
    println!(
        "seeded {seeded} objects on {} clusters in {seed_secs:.1}s ({:.0}/s); RSS {rss_empty:.0} MB empty -> {rss_loaded:.0} MB loaded ({:.2} KB/object)",
        args.clusters,
        seeded as f64 / seed_secs,
        (rss_loaded - rss_empty) * 1024.0 / seeded as f64
    );

    let clients: Arc<Vec<Api<ConfigMap>>> = Arc::new(
        (0..args.clusters)
            .map(|i| client(&sim, i).map(|c| Api::namespaced(c, "default")))
            .collect::<Result<_>>()?,
    );
    let n = args.objects_per_cluster;

    let cl = clients.clone();
    let (ok, failed, rate) = run_phase(args.seconds, args.concurrency, move |_| {
        let cl = cl.clone();
        async move {
            let (c, o) = {
                let mut r = rand::rng();
                (r.random_range(0..cl.len()), r.random_range(0..n))
            };
            cl[c].get(&format!("cm-{o}")).await.is_ok()
        }
    })
    .await;
    println!(
        "GET: {rate:.0} req/s ({ok} ok, {failed} failed, {} tasks)",
        args.concurrency
    );

    let cl = clients.clone();
    let counter = Arc::new(AtomicU64::new(0));
    let (ok, failed, rate) = run_phase(args.seconds, args.concurrency, move |_| {
        let cl = cl.clone();
        let counter = counter.clone();
        async move {
            let (c, o) = {
                let mut r = rand::rng();
                (r.random_range(0..cl.len()), r.random_range(0..n))
            };
            let v = counter.fetch_add(1, Ordering::Relaxed);
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{o}"), "labels": {"flotilla.dev/tracked": "true"}},
                "data": {"key": format!("v{v}")}});
            cl[c]
                .patch(
                    &format!("cm-{o}"),
                    &PatchParams::apply("bench").force(),
                    &Patch::Apply(cm),
                )
                .await
                .is_ok()
        }
    })
    .await;
    println!(
        "server-side apply: {rate:.0} req/s ({ok} ok, {failed} failed, {} tasks)",
        args.concurrency
    );

    // Watch fan-out: W streams, then writes; count deliveries.
    let per_cluster = (args.watchers / args.clusters).max(1);
    let delivered = Arc::new(AtomicU64::new(0));
    let mut watch_tasks = Vec::new();
    for c in 0..args.clusters {
        let rv = sim.clusters()[c].store.resource_version().to_string();
        for _ in 0..per_cluster {
            let api = clients[c].clone();
            let delivered = delivered.clone();
            let rv = rv.clone();
            watch_tasks.push(tokio::spawn(async move {
                let Ok(stream) = api
                    .watch(
                        &WatchParams::default().labels("fanout=yes").timeout(120),
                        &rv,
                    )
                    .await
                else {
                    return;
                };
                let mut stream = stream.boxed();
                while let Some(ev) = stream.next().await {
                    if matches!(ev, Ok(WatchEvent::Added(_) | WatchEvent::Modified(_))) {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    let open_wait = Instant::now();
    let total_watchers = per_cluster * args.clusters;
    while sim
        .clusters()
        .iter()
        .map(|c| c.watches_open.load(Ordering::Relaxed))
        .sum::<u64>()
        < total_watchers as u64
        && open_wait.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fan_start = Instant::now();
    for w in 0..args.fanout_writes {
        for c in sim.clusters() {
            let rt = c
                .store
                .lookup("", "v1", "configmaps")
                .context("configmaps")?;
            let cm = json!({"metadata": {"name": format!("fan-{w}"), "labels": {"fanout": "yes"}}});
            c.store
                .create(&rt, "default", cm, &ctx)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let expected = (args.fanout_writes * args.clusters * per_cluster) as u64;
    while delivered.load(Ordering::Relaxed) < expected
        && fan_start.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = fan_start.elapsed().as_secs_f64();
    let got = delivered.load(Ordering::Relaxed);
    println!(
        "watch fan-out: {total_watchers} streams, {} writes -> {got}/{expected} events delivered in {secs:.2}s ({:.0} events/s)",
        args.fanout_writes * args.clusters,
        got as f64 / secs
    );
    println!("peak RSS {:.0} MB", rss_mb());
    for t in watch_tasks {
        t.abort();
    }
    sim.shutdown();
    Ok(())
}
