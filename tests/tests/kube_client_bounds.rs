//! The controller's destination-cluster clients against kubesim (issue 19): the per-cluster
//! rate limit paces requests, throttled reads are retried at most three times after
//! Retry-After, and a hung request ends at the deadline. Clients are built by the controller's
//! own `context::cluster_client`; attempts are counted in kubesim's request log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use flotilla_controller::client_limits::{ClientLimitMetrics, ClientLimits, RetryLabels};
use flotilla_controller::clusters::{Cluster, ClusterConfig};
use flotilla_controller::config::KubeClientSettings;
use flotilla_controller::context::cluster_client;
use flotilla_controller::live::metrics::CacheMetrics;
use flotilla_loadtest::kubesim::{FaultSpec, KubeSim, SimConfig};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};

async fn start() -> Result<KubeSim> {
    Ok(KubeSim::start(SimConfig {
        clusters: 1,
        ..SimConfig::default()
    })
    .await?)
}

fn mk_limits(qps: f64, burst: u32, timeout: Duration) -> ClientLimits {
    ClientLimits::new(
        KubeClientSettings {
            qps,
            burst,
            request_timeout: Some(timeout),
            ..KubeClientSettings::default()
        },
        ClientLimitMetrics::default(),
    )
}

/// A client for kubesim's first cluster built the controller's way, with its own user agent
/// so its requests can be told apart in the log.
fn mk_client(sim: &KubeSim, limits: &ClientLimits, agent: &str) -> Result<Client> {
    let c = &sim.clusters()[0];
    let cluster = Cluster {
        name: c.name.clone(),
        server: c.url(),
        config: ClusterConfig {
            bearer_token: Some(c.token.clone()),
            ..ClusterConfig::default()
        },
        secret: Some(format!("cluster-{}", c.name)),
        project: None,
        namespaces: Vec::new(),
        cluster_resources: true,
        shard: None,
    };
    cluster_client(&cluster, agent, limits, &CacheMetrics::default()).map_err(anyhow::Error::msg)
}

/// Requests `agent` sent to the first cluster, and how many were answered `code`.
fn attempts(sim: &KubeSim, agent: &str, code: u16) -> (usize, usize) {
    let log = sim.clusters()[0].log.since(0);
    let mine: Vec<_> = log.iter().filter(|r| r.user_agent == agent).collect();
    let with_code = mine.iter().filter(|r| r.code == code).count();
    (mine.len(), with_code)
}

fn retries(limits: &ClientLimits) -> u64 {
    limits
        .metrics
        .retries
        .get_or_create(&RetryLabels {
            reason: "too_many_requests",
        })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_gets_at_qps_five_burst_five_take_two_seconds() -> Result<()> {
    let sim = start().await?;
    let limits = mk_limits(5.0, 5, Duration::from_secs(30));
    let client = mk_client(&sim, &limits, "bounds-rate")?;
    let api: Api<Namespace> = Api::all(client);
    let t0 = Instant::now();
    let gets = (0..15).map(|_| {
        let api = api.clone();
        async move { api.get("default").await }
    });
    for r in futures::future::join_all(gets).await {
        r?;
    }
    let took = t0.elapsed();
    // 5 at once, then 10 more 200 ms apart.
    ensure!(took >= Duration::from_millis(1950), "15 GETs took {took:?}");
    ensure!(attempts(&sim, "bounds-rate", 200) == (15, 15));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_throttled_twice_succeeds_after_retry_after() -> Result<()> {
    let sim = Arc::new(start().await?);
    let limits = mk_limits(0.0, 0, Duration::from_secs(30));
    let client = mk_client(&sim, &limits, "bounds-retry")?;
    let cluster = sim.clusters()[0].clone();
    cluster.faults.set(&FaultSpec {
        throttle_rate: 1.0,
        ..FaultSpec::default()
    });
    // Lift the fault once two 429s went out: kubesim's Retry-After is 1 s, ample time.
    let lift = {
        let sim = sim.clone();
        tokio::spawn(async move {
            while attempts(&sim, "bounds-retry", 429).1 < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sim.clusters()[0].faults.set(&FaultSpec::default());
        })
    };
    let t0 = Instant::now();
    let ns = Api::<Namespace>::all(client).get("default").await?;
    let took = t0.elapsed();
    lift.await?;
    ensure!(ns.metadata.name.as_deref() == Some("default"));
    ensure!(
        took >= Duration::from_secs(2),
        "two Retry-After: 1 waits, took {took:?}"
    );
    ensure!(retries(&limits) == 2, "retries {}", retries(&limits));
    let (sent, throttled) = attempts(&sim, "bounds-retry", 429);
    ensure!(
        (sent, throttled) == (3, 2),
        "sent {sent}, throttled {throttled}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_429_fails_after_one_plus_three_attempts() -> Result<()> {
    let sim = start().await?;
    let limits = mk_limits(0.0, 0, Duration::from_secs(30));
    let client = mk_client(&sim, &limits, "bounds-429")?;
    sim.clusters()[0].faults.set(&FaultSpec {
        throttle_rate: 1.0,
        ..FaultSpec::default()
    });
    let t0 = Instant::now();
    let err = Api::<Namespace>::all(client)
        .get("default")
        .await
        .expect_err("still throttled");
    let took = t0.elapsed();
    ensure!(
        matches!(&err, kube::Error::Api(s) if s.code == 429),
        "the last answer is returned: {err}"
    );
    ensure!(
        took >= Duration::from_secs(3),
        "three Retry-After waits, took {took:?}"
    );
    let (sent, throttled) = attempts(&sim, "bounds-429", 429);
    ensure!(
        (sent, throttled) == (4, 4),
        "sent {sent}, throttled {throttled}"
    );
    ensure!(retries(&limits) == 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_request_ends_at_the_deadline() -> Result<()> {
    let sim = start().await?;
    let limits = mk_limits(0.0, 0, Duration::from_secs(1));
    let client = mk_client(&sim, &limits, "bounds-deadline")?;
    sim.clusters()[0].faults.set(&FaultSpec {
        latency_ms: 20_000,
        ..FaultSpec::default()
    });
    let t0 = Instant::now();
    let err = Api::<Namespace>::all(client)
        .get("default")
        .await
        .expect_err("timed out");
    let took = t0.elapsed();
    ensure!(took >= Duration::from_secs(1), "took {took:?}");
    // A service error, as any unreachable cluster's: the reconcile reports it on the app.
    ensure!(
        matches!(&err, kube::Error::Service(_)) && err.to_string().contains("timed out"),
        "{err}"
    );
    ensure!(limits.metrics.timeouts.get() == 1);
    sim.clusters()[0].faults.set(&FaultSpec::default());
    Ok(())
}
