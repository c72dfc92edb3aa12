//! The shared cache on Redis as platforms run it, against Debian's own servers: Sentinel (Argo
//! CD's HA default) with AUTH surviving a master failover, a Cluster over TLS with AUTH, and a
//! single node over TLS; wrong passwords and unknown CAs are refused, never half-used.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use flotilla_cache::redis::{RedisConfig, RedisStore, RedisTls};
use flotilla_cache::{CacheMetrics, Store};
use flotilla_loadtest::fleet::RepoTls;
use flotilla_loadtest::fleet::redis::{RedisCluster, RedisSecurity, RedisSentinel};

fn store(url: &str, tls: RedisTls) -> Result<RedisStore> {
    let mut cfg = RedisConfig::new(url);
    cfg.tls = tls;
    cfg.command_timeout = Duration::from_millis(500);
    cfg.max_backoff = Duration::from_millis(500);
    Ok(RedisStore::connect(cfg, CacheMetrics::default())?)
}

/// Write and read back `n` keys, retrying for up to `within` (a store that is still
/// connecting, or failing over, answers "unavailable" for a moment).
async fn round_trip(s: &RedisStore, prefix: &str, n: usize, within: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::new();
    'again: loop {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{prefix}: no round trip within {within:?}: {last}");
        }
        for i in 0..n {
            let key = format!("{prefix}-{i}");
            let value = Bytes::from(format!("v{i}"));
            let res = match s.set(&key, value.clone(), Duration::from_secs(600)).await {
                Ok(()) => s.get(&key).await.map(|v| v == Some(value)),
                Err(e) => Err(e),
            };
            match res {
                Ok(true) => {}
                Ok(false) => anyhow::bail!("{key}: read back something else"),
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue 'again;
                }
            }
        }
        return Ok(());
    }
}

/// Whether every attempt over `for_` fails.
async fn refused(s: &RedisStore, for_: Duration) -> bool {
    round_trip(s, "refused", 1, for_).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_with_auth_follows_a_failover() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let security = RedisSecurity {
        password: Some("s3ntinel-pw".into()),
        tls: None,
    };
    let mut redis = RedisSentinel::start(dir.path(), security).await?;
    let url = redis.url();
    ensure!(url.starts_with("redis-sentinel://"), "{url}");
    let s = store(&url, RedisTls::default())?;
    round_trip(&s, "before", 20, Duration::from_secs(15)).await?;
    let first = redis.current_master()?;
    ensure!(
        redis.keys_on(first)? >= 20,
        "written to the master Sentinel named"
    );

    // The master dies: Sentinel promotes the replica and the store follows it.
    redis.kill_master();
    let mut promoted = first;
    for _ in 0..150 {
        promoted = redis.current_master().unwrap_or(first);
        if promoted != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        promoted == redis.replica.port,
        "Sentinel promoted the replica (master now {promoted})"
    );
    round_trip(&s, "after", 20, Duration::from_secs(30))
        .await
        .context("the store did not follow the failover")?;
    ensure!(
        redis.keys_on(promoted)? >= 40,
        "both rounds on the new master"
    );

    // A wrong password is refused: the cache is skipped, not used half-authenticated.
    let wrong = url.replace("s3ntinel-pw", "guess");
    ensure!(refused(&store(&wrong, RedisTls::default())?, Duration::from_secs(3)).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_auth_for_a_cluster_a_single_node_and_sentinel() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let tls_files = RepoTls::generate(dir.path())?;
    let security = RedisSecurity {
        password: Some("tls-pw".into()),
        tls: Some(tls_files.clone()),
    };
    let with_ca = RedisTls {
        ca_file: Some(tls_files.ca.clone()),
        ..RedisTls::default()
    };

    let cluster = RedisCluster::start_with(dir.path(), 3, security.clone()).await?;
    let url = cluster.url();
    ensure!(url.starts_with("rediss-cluster://:tls-pw@"), "{url}");
    let s = store(&url, with_ca.clone())?;
    round_trip(&s, "cluster", 30, Duration::from_secs(15)).await?;
    for n in 0..3 {
        ensure!(cluster.keys_on(n)? > 0, "master {n} holds part of the keys");
    }
    // The test CA is not a system root: without --redis-ca-certificate the handshake fails.
    ensure!(refused(&store(&url, RedisTls::default())?, Duration::from_secs(3)).await);
    // --redis-insecure-skip-tls-verify accepts it (and AUTH still applies).
    let insecure = RedisTls {
        insecure: true,
        ..RedisTls::default()
    };
    round_trip(
        &store(&url, insecure.clone())?,
        "insecure",
        3,
        Duration::from_secs(15),
    )
    .await?;
    let wrong = url.replace("tls-pw", "guess");
    ensure!(refused(&store(&wrong, with_ca.clone())?, Duration::from_secs(3)).await);

    let sentinel = RedisSentinel::start(dir.path(), security).await?;
    let single = format!("rediss://:tls-pw@127.0.0.1:{}", sentinel.master.port);
    round_trip(
        &store(&single, with_ca.clone())?,
        "single",
        10,
        Duration::from_secs(15),
    )
    .await?;
    ensure!(
        refused(
            &store(&single.replace("rediss", "redis"), with_ca.clone())?,
            Duration::from_secs(3)
        )
        .await,
        "plain text to a TLS port"
    );
    let url = sentinel.url();
    ensure!(url.starts_with("rediss-sentinel://"), "{url}");
    round_trip(
        &store(&url, with_ca)?,
        "sentinel",
        10,
        Duration::from_secs(15),
    )
    .await?;
    Ok(())
}
