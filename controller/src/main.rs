//! `flotilla-controller`: parse flags and environment, connect to the control plane, then run
//! (see `flotilla_controller::run`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use flotilla_controller::config::ControllerConfig;
use flotilla_core::telemetry::LogFormat;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Flotilla's application controller: reconciles Argo CD Applications (argoproj.io/v1alpha1)
/// against their destination clusters, with manifests rendered by flotilla-repo-server.
#[derive(Debug, Parser)]
#[command(name = "flotilla-controller", version)]
struct Args {
    /// Kubeconfig of the control plane (default: in-cluster config, then ~/.kube/config).
    #[arg(long, env = "FLOTILLA_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig (default: its current context).
    #[arg(long, env = "FLOTILLA_CONTEXT")]
    context: Option<String>,
    /// Namespace of Applications, AppProjects and cluster/repository Secrets.
    #[arg(long, default_value = "argocd", env = "FLOTILLA_NAMESPACE")]
    namespace: String,
    /// gRPC endpoint of the repo-server.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8081",
        env = "FLOTILLA_REPO_SERVER"
    )]
    repo_server: String,
    /// Applications reconciled at once.
    #[arg(long, default_value_t = 16, env = "FLOTILLA_WORKERS")]
    workers: usize,
    /// Seconds between periodic full refreshes of an application (plus up to 20% jitter).
    #[arg(long, default_value_t = 180, env = "FLOTILLA_REFRESH_SECONDS")]
    refresh_seconds: u64,
    /// Rendered manifest sets kept in the in-memory cache.
    #[arg(long, default_value_t = 4096, env = "FLOTILLA_MANIFEST_CACHE_ENTRIES")]
    manifest_cache_entries: usize,
    /// Deadline of one repo-server call, in seconds.
    #[arg(long, default_value_t = 120, env = "FLOTILLA_RPC_TIMEOUT_SECONDS")]
    rpc_timeout_seconds: u64,
    /// Do not offer https://kubernetes.default.svc (the control plane) as a destination.
    #[arg(long, env = "FLOTILLA_NO_IN_CLUSTER")]
    no_in_cluster: bool,
    /// Address of /metrics, /healthz, /readyz and /status.
    #[arg(long, default_value = "0.0.0.0:8082", env = "FLOTILLA_METRICS_LISTEN")]
    metrics_listen: SocketAddr,
    /// Write the bound metrics address here as JSON (useful with port 0).
    #[arg(long, env = "FLOTILLA_ADDRESS_FILE")]
    address_file: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, default_value = "text", env = "FLOTILLA_LOG_FORMAT")]
    log_format: LogFormat,
    /// Print the Application and AppProject CRDs as YAML and exit.
    #[arg(long)]
    print_crds: bool,
}

async fn client(args: &Args) -> anyhow::Result<kube::Client> {
    let cfg = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)?;
            let opts = KubeConfigOptions {
                context: args.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(cfg)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_crds {
        use kube::CustomResourceExt;
        print!(
            "{}---\n{}",
            serde_yaml::to_string(&flotilla_controller::types::application_crd())?,
            serde_yaml::to_string(&flotilla_controller::types::AppProject::crd())?
        );
        return Ok(());
    }
    flotilla_core::telemetry::init(args.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let control = client(&args).await?;
    let cfg = ControllerConfig {
        namespace: args.namespace,
        repo_server: args.repo_server,
        workers: args.workers,
        refresh_interval: Duration::from_secs(args.refresh_seconds),
        manifest_cache_entries: args.manifest_cache_entries,
        rpc_timeout: Duration::from_secs(args.rpc_timeout_seconds),
        in_cluster: !args.no_in_cluster,
        metrics_listen: args.metrics_listen,
        address_file: args.address_file,
        ..ControllerConfig::default()
    };
    // A lone replica owns every cluster; sharded membership feeds this channel later.
    let (_assignment_tx, assignment) =
        tokio::sync::watch::channel(flotilla_sharding::Assignment::single_replica());
    flotilla_controller::run::run(cfg, control, assignment, flotilla_core::shutdown_signal())
        .await?;
    Ok(())
}
