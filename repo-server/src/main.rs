//! `flotilla-repo-server`: parse flags and environment, then serve (see `flotilla_repo_server::run`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
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
    /// (Cluster), `redis-sentinel://host:26379?sentinelServiceName=mymaster&node=…` (Sentinel)
    /// or `redis://host:port`; `user:password@` for AUTH, `rediss…` for TLS. Unset: no shared
    /// cache (controllers keep their own).
    #[arg(long, env = "FLOTILLA_REDIS_URL")]
    redis_url: Option<String>,
    #[command(flatten)]
    redis_tls: flotilla_cache::redis::RedisTls,
    /// Hours rendered manifests stay in the shared cache.
    #[arg(long, default_value_t = 24, env = "FLOTILLA_CACHE_TTL_HOURS")]
    cache_ttl_hours: u64,
    /// The helm binary for Helm sources (default: helm on PATH).
    #[arg(long, env = "FLOTILLA_HELM")]
    helm: Option<PathBuf>,
    /// A config-management plugin, NAME=COMMAND (repeatable; the command runs with sh -c in
    /// the source directory and prints manifests; it may contain `;` and newlines). The
    /// environment variable holds one plugin; give several with the flag.
    #[arg(long = "plugin", env = "FLOTILLA_REPO_PLUGINS")]
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
    /// SSH known hosts of Git servers (argocd-ssh-known-hosts-cm's `ssh_known_hosts`, mounted
    /// as in Argo CD). Host keys are checked against it unless a repository is `insecure`.
    #[arg(
        long,
        default_value = "/app/config/ssh/ssh_known_hosts",
        env = "FLOTILLA_SSH_KNOWN_HOSTS"
    )]
    ssh_known_hosts: PathBuf,
    /// Directory of CA certificates for Git and Helm servers over HTTPS, one PEM file per
    /// server name (argocd-tls-certs-cm, mounted as in Argo CD); added to the system's roots.
    #[arg(
        long,
        default_value = "/app/config/tls",
        env = "FLOTILLA_TLS_CERTS_DIR"
    )]
    tls_certs_dir: PathBuf,
    /// Check Git submodules out, recursively, as Argo CD does (`false` leaves them empty,
    /// like ARGOCD_GIT_MODULES_ENABLED=false).
    #[arg(
        long,
        env = "FLOTILLA_GIT_SUBMODULES",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    git_submodules: bool,
    /// TLS certificate (PEM file) of the gRPC port. Without it (and without --plaintext) the
    /// repo-server makes a self-signed one at start and writes it to
    /// <cache-dir>/tls/self-signed.crt for controllers to trust (--repo-server-ca).
    #[arg(long, env = "FLOTILLA_REPO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM file).
    #[arg(long, env = "FLOTILLA_REPO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Extra names (DNS or IP) of the self-signed certificate, besides localhost, 127.0.0.1,
    /// ::1, the host name and POD_IP.
    #[arg(
        long = "tls-san",
        env = "FLOTILLA_REPO_TLS_SANS",
        value_delimiter = ','
    )]
    tls_sans: Vec<String>,
    /// Serve gRPC without TLS (tests on loopback only; requests carry repository credentials).
    #[arg(long, env = "FLOTILLA_REPO_PLAINTEXT", conflicts_with = "tls_cert")]
    plaintext: bool,
    /// Memory limit (MiB of address space) of the child process each Jsonnet file is
    /// evaluated in; the child is also killed at the render timeout.
    #[arg(
        long,
        default_value_t = 1024,
        env = "FLOTILLA_REPO_JSONNET_MEMORY_LIMIT_MB"
    )]
    jsonnet_memory_limit_mb: u64,
    /// Log format: text or json.
    #[arg(long, default_value = "text", env = "FLOTILLA_LOG_FORMAT")]
    log_format: LogFormat,
    /// Argo CD's metric names and labels (argocd_git_request_total, ...): off, also (next to
    /// Flotilla's) or instead (of the Flotilla series they stand for).
    #[arg(long, default_value = "off", env = "FLOTILLA_ARGOCD_METRICS")]
    argocd_metrics: flotilla_repo_server::metrics::ArgoCdMetrics,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A Jsonnet evaluation in its own, memory-capped process (see render::jsonnet::Evaluator).
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(flotilla_repo_server::render::jsonnet::CHILD_ARG) {
        std::process::exit(flotilla_repo_server::render::jsonnet::child_main(
            &argv[2..],
        ));
    }
    let args = Args::parse();
    let mut telemetry = flotilla_core::telemetry::init(args.log_format, "flotilla-repo-server");
    let auth_token = args.auth_token.filter(|t| !t.is_empty());
    if auth_token.is_none() && !args.insecure_no_auth {
        anyhow::bail!(
            "no repo-server token: set FLOTILLA_REPO_SERVER_TOKEN (or --auth-token), or pass --insecure-no-auth to serve unauthenticated callers"
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key, args.plaintext) {
        (_, _, true) => None,
        (Some(cert), Some(key), false) => Some(flotilla_repo_server::TlsIdentity {
            cert_pem: std::fs::read(cert)
                .with_context(|| format!("reading --tls-cert {}", cert.display()))?,
            key_pem: std::fs::read(key)
                .with_context(|| format!("reading --tls-key {}", key.display()))?,
        }),
        _ => {
            let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            names.extend(
                ["HOSTNAME", "POD_IP"]
                    .iter()
                    .filter_map(|v| std::env::var(v).ok())
                    .filter(|v| !v.is_empty()),
            );
            names.extend(args.tls_sans.iter().cloned());
            names.sort();
            names.dedup();
            let id = flotilla_repo_server::TlsIdentity::self_signed(&names)?;
            let dir = args.cache_dir.join("tls");
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("self-signed.crt");
            std::fs::write(&path, &id.cert_pem)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "flotilla-repo-server: no --tls-cert: serving a self-signed certificate for {names:?}, written to {}",
                path.display()
            );
            Some(id)
        }
    };
    let cfg = flotilla_repo_server::Config {
        jsonnet_memory_bytes: args.jsonnet_memory_limit_mb.max(64) * 1024 * 1024,
        tls,
        auth_token,
        git_submodules: args.git_submodules,
        argocd_metrics: args.argocd_metrics,
        transport: flotilla_repo_server::transport::TransportConfig {
            known_hosts: args.ssh_known_hosts,
            tls_certs_dir: args.tls_certs_dir,
            ..Default::default()
        },
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
        redis_tls: args.redis_tls,
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
