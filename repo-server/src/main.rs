//! `flotilla-repo-server`: parse flags and environment, then serve (see `flotilla_repo_server::run`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use flotilla_core::telemetry::LogFormat;

/// Flotilla's repo-server: fetches Git repositories and Helm charts, resolves revisions and
/// renders manifests (directory with Jsonnet, Kustomize, Helm, plugins) for the controllers,
/// over gRPC (flotilla.repo.v1), writing them to the shared cache.
#[derive(Debug, Parser)]
#[command(
    name = "flotilla-repo-server",
    version,
    after_help = "Environment: RUST_LOG sets the log filter (default info). Traces are exported over OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp) is set; OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS and OTEL_BSP_* are honoured; OTEL_SDK_DISABLED=true turns them off. SIGTERM: stop taking work, finish in-flight work, release what this process holds, exit."
)]
struct Args {
    /// gRPC listen address.
    #[arg(long, default_value = "0.0.0.0:8081", env = "FLOTILLA_REPO_LISTEN")]
    listen: SocketAddr,
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(
        long,
        default_value = "0.0.0.0:8084",
        env = "FLOTILLA_REPO_METRICS_LISTEN"
    )]
    metrics_listen: SocketAddr,
    /// Git caches and rendering work area.
    #[arg(
        long,
        default_value = "/tmp/flotilla-repo-server",
        env = "FLOTILLA_REPO_CACHE_DIR"
    )]
    cache_dir: PathBuf,
    /// Renders running at once; more wait in a queue (see flotilla_repo_renders_waiting).
    #[arg(long, default_value_t = 4, env = "FLOTILLA_REPO_PARALLELISM")]
    parallelism: usize,
    /// Give up on a Git fetch after this many seconds.
    #[arg(
        long,
        default_value_t = 90,
        env = "FLOTILLA_REPO_FETCH_TIMEOUT_SECONDS"
    )]
    fetch_timeout_seconds: u64,
    /// Commits kept written out for reuse by later renders.
    #[arg(long, default_value_t = 16, env = "FLOTILLA_REPO_MAX_EXPORTS")]
    max_exports: usize,
    /// Write the bound gRPC and metrics addresses here as JSON (useful with port 0).
    #[arg(long, env = "FLOTILLA_REPO_ADDRESS_FILE")]
    address_file: Option<PathBuf>,
    /// Redis URL of the shared manifest cache: `redis-cluster://host:port?node=host2:port2`
    /// (Cluster) or `redis://host:port`. Unset: no shared cache (controllers keep their own).
    #[arg(long, env = "FLOTILLA_REDIS_URL")]
    redis_url: Option<String>,
    /// Hours rendered manifests stay in the shared cache.
    #[arg(long, default_value_t = 24, env = "FLOTILLA_CACHE_TTL_HOURS")]
    cache_ttl_hours: u64,
    /// The helm binary for Helm sources (default: helm on PATH).
    #[arg(long, env = "FLOTILLA_HELM")]
    helm: Option<PathBuf>,
    /// A config-management plugin, NAME=COMMAND (repeatable; the command runs with sh -c in
    /// the source directory and prints manifests).
    #[arg(long = "plugin", env = "FLOTILLA_REPO_PLUGINS", value_delimiter = ';')]
    plugins: Vec<flotilla_repo_server::render::plugin::PluginConfig>,
    /// This replica's name in render locks (default: POD_NAME, then the host name).
    #[arg(long, env = "FLOTILLA_IDENTITY")]
    identity: Option<String>,
    /// The shared token controllers present on every gRPC call (`authorization: Bearer`);
    /// in the chart it comes from a generated Secret. Required unless --insecure-no-auth.
    #[arg(long, env = "FLOTILLA_REPO_SERVER_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Serve gRPC to anyone who can reach the port, without a token (tests on loopback only).
    #[arg(long, env = "FLOTILLA_REPO_SERVER_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// Allow file:// repository URLs (off: a file URL can name any path this process reads).
    #[arg(long, env = "FLOTILLA_REPO_ALLOW_FILE_REPOS")]
    allow_file_repos: bool,
    /// Seconds one render may take; helm, kustomize and plugins are killed (with their whole
    /// process group) after it, like Argo CD's ARGOCD_EXEC_TIMEOUT.
    #[arg(
        long,
        default_value_t = 90,
        env = "FLOTILLA_REPO_RENDER_TIMEOUT_SECONDS"
    )]
    render_timeout_seconds: u64,
    /// Log format: text or json.
    #[arg(long, default_value = "text", env = "FLOTILLA_LOG_FORMAT")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut telemetry = flotilla_core::telemetry::init(args.log_format, "flotilla-repo-server");
    let auth_token = args.auth_token.filter(|t| !t.is_empty());
    if auth_token.is_none() && !args.insecure_no_auth {
        anyhow::bail!(
            "no repo-server token: set FLOTILLA_REPO_SERVER_TOKEN (or --auth-token), or pass --insecure-no-auth to serve unauthenticated callers"
        );
    }
    let cfg = flotilla_repo_server::Config {
        auth_token,
        allow_file_urls: args.allow_file_repos,
        render_timeout: Duration::from_secs(args.render_timeout_seconds.max(1)),
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        cache_dir: args.cache_dir,
        parallelism: args.parallelism,
        fetch_timeout: Duration::from_secs(args.fetch_timeout_seconds),
        max_exports: args.max_exports,
        address_file: args.address_file,
        redis_url: args.redis_url.filter(|u| !u.is_empty()),
        cache_ttl: Duration::from_secs(args.cache_ttl_hours.max(1) * 3600),
        helm: args.helm,
        plugins: args.plugins,
        identity: args
            .identity
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("repo-server-{}", std::process::id())),
    };
    let res = flotilla_repo_server::run(cfg, flotilla_core::shutdown_signal()).await;
    telemetry.shutdown();
    res?;
    Ok(())
}
