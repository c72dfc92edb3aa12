//! `kubesim` command: serve N virtual Kubernetes clusters plus a control plane until stopped.

/// jemalloc fragments far less than glibc malloc under many tokio threads and returns freed
/// memory in the background: RSS stays near what the stores hold.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kubesim::{KubeSim, LatencyProfile, SimConfig, SimSettings};

/// Serve many virtual Kubernetes clusters over the real Kubernetes HTTP API, for tests and
/// load tests of Flotilla. Writes a kubeconfig with one context per cluster and, in the
/// control-plane cluster, an Argo CD-format cluster Secret for each target cluster.
#[derive(Debug, Parser)]
#[command(name = "kubesim", version)]
struct Args {
    /// Number of target clusters (the control plane comes on top).
    #[arg(long, default_value_t = 3, env = "KUBESIM_CLUSTERS")]
    clusters: usize,
    /// Address to listen on (loopback only is recommended).
    #[arg(long, default_value = "127.0.0.1", env = "KUBESIM_HOST")]
    host: IpAddr,
    /// First port: the control plane gets it, cluster i gets base+i. 0 picks free ports.
    #[arg(long, default_value_t = 0, env = "KUBESIM_BASE_PORT")]
    base_port: u16,
    /// Port for the admin API (faults, request logs, stats). 0 picks a free port.
    #[arg(long, env = "KUBESIM_ADMIN_PORT")]
    admin_port: Option<u16>,
    /// Where to write the kubeconfig (one context per cluster).
    #[arg(long, default_value = "kubesim.kubeconfig", env = "KUBESIM_KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Namespace in the control plane for the cluster Secrets.
    #[arg(long, default_value = "argocd", env = "KUBESIM_SECRETS_NAMESPACE")]
    secrets_namespace: String,
    /// Delay before simulated workloads report ready, in milliseconds.
    #[arg(long, default_value_t = 500, env = "KUBESIM_READY_DELAY_MS")]
    ready_delay_ms: u64,
    /// Deployments get ReplicaSets and Pods, as on a real cluster (`false`: status only, which
    /// saves memory in big load tests).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "KUBESIM_WORKLOAD_CHILDREN")]
    workload_children: bool,
    /// Watch events kept per cluster; older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 10_000, env = "KUBESIM_HISTORY")]
    history: usize,
    /// The most MiB of objects the watch history holds per cluster (0: no bound); the oldest
    /// events go first.
    #[arg(long, default_value_t = 256, env = "KUBESIM_HISTORY_MIB")]
    history_mib: usize,
    /// Request-log records kept per cluster.
    #[arg(long, default_value_t = 100_000, env = "KUBESIM_REQUEST_LOG")]
    request_log: usize,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 5, env = "KUBESIM_BOOKMARK_SECONDS")]
    bookmark_seconds: u64,
    /// Serve HTTPS with a generated self-signed certificate (its CA goes into the kubeconfig
    /// and the cluster Secrets). kubectl sends bearer tokens only over TLS.
    #[arg(long, env = "KUBESIM_TLS")]
    tls: bool,
    /// API latency and per-client rate limits of the target clusters: `none` (answers at
    /// once), `realistic` (reads p50 5 ms, writes 15 ms, p99 5 × p50, LIST +20 µs per item,
    /// watch events 2 ms, 100 qps burst 200 per client) or a YAML profile file.
    #[arg(long, default_value = "none", env = "KUBESIM_LATENCY_PROFILE")]
    latency_profile: String,
    /// The same for the control-plane cluster (kept apart: it is the GitOps tool's own
    /// cluster, usually close by).
    #[arg(
        long,
        default_value = "none",
        env = "KUBESIM_CONTROL_PLANE_LATENCY_PROFILE"
    )]
    control_plane_latency_profile: String,
    /// Seed for the latency draws (overrides the profile's `seed`).
    #[arg(long, env = "KUBESIM_LATENCY_SEED")]
    latency_seed: Option<u64>,
    /// Print a JSON line with the cluster URLs and admin address once serving.
    #[arg(long)]
    json: bool,
    /// Also write that JSON document to this file once serving (written whole, then renamed).
    #[arg(long)]
    json_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let profile = |arg: &str| -> anyhow::Result<LatencyProfile> {
        let mut p = LatencyProfile::from_arg(arg)?;
        if let Some(seed) = args.latency_seed {
            p.seed = seed;
        }
        Ok(p)
    };
    let latency = profile(&args.latency_profile).context("--latency-profile")?;
    let control_plane_latency =
        profile(&args.control_plane_latency_profile).context("--control-plane-latency-profile")?;
    let sim = KubeSim::start(SimConfig {
        clusters: args.clusters,
        host: args.host,
        base_port: args.base_port,
        admin_port: args.admin_port,
        secrets_namespace: args.secrets_namespace,
        history: args.history,
        history_bytes: args.history_mib << 20,
        request_log: args.request_log,
        bookmark_interval: Duration::from_secs(args.bookmark_seconds.max(1)),
        tls: args.tls,
        latency,
        control_plane_latency,
        sim: SimSettings {
            ready_delay: Duration::from_millis(args.ready_delay_ms),
            children: args.workload_children,
            ..SimSettings::default()
        },
        ..SimConfig::default()
    })
    .await?;
    sim.write_kubeconfig(&args.kubeconfig)?;
    let clusters: Vec<_> = sim
        .clusters()
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "server": c.url()}))
        .collect();
    let doc = serde_json::json!({
        "controlPlane": sim.control_plane().url(),
        "controlPlaneName": sim.control_plane().name,
        "admin": sim.admin_addr().map(|a| a.to_string()),
        "kubeconfig": args.kubeconfig,
        "clusters": clusters,
        "latencyProfile": args.latency_profile,
    });
    if let Some(path) = &args.json_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, doc.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    if args.json {
        println!("{doc}");
    } else {
        println!(
            "kubesim: control plane {} and {} clusters; kubeconfig {}{}",
            sim.control_plane().url(),
            sim.clusters().len(),
            args.kubeconfig.display(),
            sim.admin_addr()
                .map(|a| format!("; admin http://{a}"))
                .unwrap_or_default()
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sim.shutdown();
    Ok(())
}
