//! The shared cache on a real Redis Cluster (3 masters from Debian's `redis-server`): entries
//! round-trip and spread over the masters, render locks work across clients, a killed master
//! degrades to "no cache" at once (errors skipped, no stall) and the store recovers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use flotilla_cache::codec::Manifests;
use flotilla_cache::redis::{RedisConfig, RedisStore};
use flotilla_cache::{CacheMetrics, ManifestStore, Store, keys};
use flotilla_loadtest::fleet::redis::RedisCluster;
use serde_json::json;

fn mk_manifests(i: usize) -> Manifests {
    Manifests {
        commit: format!("{i:040x}"),
        source_digest: "src".into(),
        app: String::new(),
        source_type: "Directory".into(),
        objects: vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")}}),
        ],
    }
}

fn degraded(m: &CacheMetrics) -> i64 {
    m.degraded
        .get_or_create(&flotilla_cache::metrics::StoreLabels { store: "redis" })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_live_in_the_cluster_and_a_lost_master_only_costs_the_cache() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = RedisCluster::start(dir.path(), 3).await?;
    let metrics = CacheMetrics::default();
    let mut cfg = RedisConfig::new(&cluster.url());
    cfg.command_timeout = Duration::from_millis(300);
    cfg.max_backoff = Duration::from_secs(1);
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(cfg, metrics.clone())?);
    let cache = ManifestStore::new(store.clone(), Duration::from_secs(600), metrics.clone());

    // Entries round-trip and are spread over all three masters.
    for i in 0..60 {
        let base = cache.put(&mk_manifests(i), ("a", "ns"), false).await;
        ensure!(base == keys::manifests(&format!("{i:040x}"), "src"));
    }
    for i in 0..60 {
        let base = keys::manifests(&format!("{i:040x}"), "src");
        let app = keys::app_manifests(&base, "b", "ns");
        ensure!(
            cache.get(&base, &app).await.map(|h| h.manifests) == Some(mk_manifests(i)),
            "entry {i}"
        );
    }
    for n in 0..3 {
        ensure!(cluster.keys_on(n)? > 0, "master {n} holds part of the keys");
    }
    // A second client (another replica) sees the render lock.
    let other = ManifestStore::new(
        Arc::new(RedisStore::connect(
            RedisConfig::new(&cluster.url()),
            CacheMetrics::default(),
        )?),
        Duration::from_secs(600),
        CacheMetrics::default(),
    );
    let base = keys::manifests("locked", "src");
    ensure!(cache.lock(&base, "repo-server-0").await);
    ensure!(
        !other.lock(&base, "repo-server-1").await,
        "held by the first"
    );
    cache.unlock(&base).await;
    ensure!(other.lock(&base, "repo-server-1").await);
    ensure!(degraded(&metrics) == 0);

    // A master dies: the cluster cannot serve every slot; lookups become misses at once.
    cluster.kill(1);
    let t = Instant::now();
    let mut misses = 0;
    for i in 0..200 {
        let base = keys::manifests(&format!("{:040x}", i % 60), "src");
        let app = keys::app_manifests(&base, "a", "ns");
        if cache.get(&base, &app).await.is_none() {
            misses += 1;
        }
    }
    let took = t.elapsed();
    println!("200 lookups with a master down: {misses} misses in {took:?}");
    ensure!(misses > 0, "lookups to the lost master's slots miss");
    ensure!(
        took < Duration::from_secs(10),
        "no stall: 200 lookups took {took:?}"
    );
    ensure!(degraded(&metrics) == 1, "the store reports itself degraded");

    // The master comes back: the cache works again.
    cluster.restart(1).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let base = cache.put(&mk_manifests(7), ("a", "ns"), false).await;
        let app = keys::app_manifests(&base, "a", "ns");
        if cache.get(&base, &app).await.map(|h| h.manifests) == Some(mk_manifests(7)) {
            break;
        }
        ensure!(Instant::now() < deadline, "cache did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(degraded(&metrics) == 0, "recovered");
    Ok(())
}
