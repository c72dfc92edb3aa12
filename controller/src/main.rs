//! `flotilla-controller`: parse flags and environment, connect to the control plane, then run
//! (see `flotilla_controller::run`).

/// jemalloc returns freed memory to the OS in the background and fragments far less than
/// glibc malloc under many tokio threads (controller RSS per 1,000 apps, see BENCHMARKS.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use flotilla_controller::config::{Balance, ControllerConfig, ShardingSettings};
use flotilla_core::telemetry::LogFormat;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Flotilla's application controller: reconciles Argo CD Applications (argoproj.io/v1alpha1)
/// against their destination clusters, with manifests rendered by flotilla-repo-server.
#[derive(Debug, Parser)]
#[command(
    name = "flotilla-controller",
    version,
    after_help = "Environment: RUST_LOG sets the log filter (default info). Traces are exported over OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp) is set; OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS and OTEL_BSP_* are honoured; OTEL_SDK_DISABLED=true turns them off. SIGTERM: stop taking work, finish in-flight work, release what this process holds, exit."
)]
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
    /// Reconcile Applications in these namespaces too (comma-separated globs, Argo CD's
    /// --application-namespaces). Each such Application may use only a project whose
    /// spec.sourceNamespaces lists its namespace. Needs cluster-wide read on Applications.
    #[arg(
        long,
        env = "FLOTILLA_APPLICATION_NAMESPACES",
        value_delimiter = ',',
        num_args = 0..
    )]
    application_namespaces: Vec<String>,
    /// Reconcile only the Applications whose labels match this selector (kubectl syntax,
    /// e.g. flotilla.dev/managed-by=flotilla). Default: every Application. Others are never
    /// touched: no status, no operation, no finalizer.
    #[arg(long, env = "FLOTILLA_APPLICATION_SELECTOR")]
    application_selector: Option<String>,
    /// Reconcile only the Applications of these projects (comma-separated globs). Default:
    /// every project.
    #[arg(
        long,
        env = "FLOTILLA_APPLICATION_PROJECTS",
        value_delimiter = ',',
        num_args = 0..
    )]
    application_projects: Vec<String>,
    /// Run side by side with Argo CD on the same Applications: a selected Application is
    /// this controller's only once it carries argocd.argoproj.io/skip-reconcile: "true"
    /// (Argo CD's hand-over switch; set by `flotilla admin move`); until then it is left to
    /// Argo CD. Flotilla's own pause switch is then flotilla.dev/skip-reconcile. See
    /// MIGRATION.md.
    #[arg(long, env = "FLOTILLA_ARGOCD_SIDE_BY_SIDE")]
    argocd_side_by_side: bool,
    /// Side by side: seconds an Application waits after it is handed over before its first
    /// reconcile here (Argo CD checks skip-reconcile when it queues an app, so work it queued
    /// just before the move may still run). Raise it when Argo CD's queues are long.
    #[arg(
        long,
        default_value_t = 15,
        env = "FLOTILLA_ARGOCD_HANDOVER_GRACE_SECONDS"
    )]
    argocd_handover_grace_seconds: u64,
    /// Do not reconcile ApplicationSets (side by side with Argo CD they are never reconciled
    /// here: Argo CD's ApplicationSet controller keeps them).
    #[arg(long, env = "FLOTILLA_NO_APPLICATIONSETS")]
    no_applicationsets: bool,
    /// Refuse the ApplicationSet scmProvider and pullRequest generators (Argo CD's
    /// applicationsetcontroller.enable.scm.providers: false).
    #[arg(long, env = "FLOTILLA_NO_SCM_PROVIDERS")]
    no_scm_providers: bool,
    /// The only custom SCM API URLs (a generator's `api`) ApplicationSets may call, comma
    /// separated; empty: any (Argo CD's applicationsetcontroller.allowed.scm.providers). The
    /// public github.com and gitlab.com APIs are always allowed.
    #[arg(
        long,
        env = "FLOTILLA_ALLOWED_SCM_PROVIDERS",
        value_delimiter = ',',
        num_args = 0..
    )]
    allowed_scm_providers: Vec<String>,
    /// The repo-servers: http://host:port[,http://host2:port...], or dns:///name:port to use
    /// every address of a (headless Service) name, re-resolved every 10 s.
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
    /// Calls in flight to one repo-server endpoint at most (0: unbounded); further calls
    /// wait for a slot (flotilla_repo_server_slot_wait_seconds).
    #[arg(
        long,
        default_value_t = flotilla_controller::repo_pool::DEFAULT_MAX_IN_FLIGHT,
        env = "FLOTILLA_REPO_SERVER_MAX_IN_FLIGHT"
    )]
    repo_server_max_in_flight: usize,
    /// Requests per second to each destination cluster, sustained (client-go's QPS, as Argo
    /// CD's ARGOCD_K8S_CLIENT_QPS); 0 or less: unlimited. A watch counts once, when opened.
    #[arg(long, default_value_t = 50.0, env = "FLOTILLA_KUBE_CLIENT_QPS")]
    kube_client_qps: f64,
    /// Requests a destination cluster's client may send at once before --kube-client-qps
    /// paces it (client-go's burst, as Argo CD's ARGOCD_K8S_CLIENT_BURST).
    #[arg(long, default_value_t = 100, env = "FLOTILLA_KUBE_CLIENT_BURST")]
    kube_client_burst: u32,
    /// Deadline of each non-watch request to a destination cluster, in seconds (0: none).
    /// Watches are exempt: the server ends them itself.
    #[arg(
        long,
        default_value_t = 60,
        env = "FLOTILLA_KUBE_REQUEST_TIMEOUT_SECONDS"
    )]
    kube_request_timeout_seconds: u64,
    /// The repo-servers' shared token, sent on every call (`authorization: Bearer`); the
    /// chart generates it in a Secret. Empty: calls carry none.
    #[arg(long, env = "FLOTILLA_REPO_SERVER_TOKEN", hide_env_values = true)]
    repo_server_token: Option<String>,
    /// CA certificate (PEM file) the repo-servers' TLS certificates are verified against
    /// (names checked: the host of each endpoint, or the dns:/// name). Required unless
    /// --repo-server-plaintext.
    #[arg(long, env = "FLOTILLA_REPO_SERVER_CA")]
    repo_server_ca: Option<PathBuf>,
    /// Talk to the repo-servers without TLS (they must run with --plaintext).
    #[arg(long, env = "FLOTILLA_REPO_SERVER_PLAINTEXT")]
    repo_server_plaintext: bool,
    /// Do not offer https://kubernetes.default.svc (the control plane) as a destination.
    #[arg(long, env = "FLOTILLA_NO_IN_CLUSTER")]
    no_in_cluster: bool,
    /// Address of /metrics, /healthz and /readyz (and /status with --status-endpoint).
    #[arg(long, default_value = "0.0.0.0:8082", env = "FLOTILLA_METRICS_LISTEN")]
    metrics_listen: SocketAddr,
    /// Serve /status on the metrics address: ring members, every destination cluster URL, owned
    /// clusters and queue depth, unauthenticated. Off by default (404).
    #[arg(long, env = "FLOTILLA_STATUS_ENDPOINT")]
    status_endpoint: bool,
    /// Bearer token that /status/applications/{namespace}/{name}/resources (each resource's
    /// sync, health and desired-vs-live diff, Secret values masked) requires; the route is not
    /// served without it. For the API server, which routes to the owning replica.
    #[arg(long, env = "FLOTILLA_STATUS_TOKEN", hide_env_values = true)]
    status_token: Option<String>,
    /// host:port where the API server reaches this replica's status routes (published on its
    /// Lease; the chart sets $(POD_IP):<metrics port>). Default: the bound metrics address
    /// unless it is a wildcard such as 0.0.0.0.
    #[arg(long, env = "FLOTILLA_ADVERTISE_ADDRESS")]
    advertise_address: Option<String>,
    /// Write the bound metrics address here as JSON (useful with port 0).
    #[arg(long, env = "FLOTILLA_ADDRESS_FILE")]
    address_file: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, default_value = "text", env = "FLOTILLA_LOG_FORMAT")]
    log_format: LogFormat,
    /// Argo CD's metric names and labels (argocd_app_info, argocd_app_sync_total, ...): off,
    /// also (next to Flotilla's) or instead (of the Flotilla series they stand for).
    #[arg(long, default_value = "off", env = "FLOTILLA_ARGOCD_METRICS")]
    argocd_metrics: flotilla_controller::metrics_argocd::ArgoCdMetrics,
    /// This replica's identity in the ring: the pod name (set POD_NAME from the downward API;
    /// defaults to the host name). Must be unique among running replicas.
    #[arg(long, env = "FLOTILLA_IDENTITY")]
    identity: Option<String>,
    /// Replicas with the same group share the destination clusters (Lease label and prefix).
    #[arg(
        long,
        default_value = "flotilla-controller",
        env = "FLOTILLA_SHARD_GROUP"
    )]
    shard_group: String,
    /// A replica whose Lease is not renewed for this long is considered gone and its clusters
    /// are taken over.
    #[arg(long, default_value_t = 10, env = "FLOTILLA_LEASE_DURATION_SECONDS")]
    lease_duration_seconds: u64,
    /// How often the Lease is renewed, in seconds (at most a third of the duration).
    #[arg(long, default_value_t = 2.0, env = "FLOTILLA_LEASE_RENEW_SECONDS")]
    lease_renew_seconds: f64,
    /// ε of the bounded loads: no replica holds more than ⌈(1+ε)·average⌉ of the weight.
    #[arg(long, default_value_t = 0.25, env = "FLOTILLA_SHARD_EPSILON")]
    shard_epsilon: f64,
    /// What a cluster weighs when sharing them out: applications (its app count, in steps of
    /// about 1.5x) or clusters (each counts one).
    #[arg(long, default_value = "applications", env = "FLOTILLA_SHARD_BALANCE")]
    shard_balance: Balance,
    /// Own every cluster without Leases. Only safe when exactly one replica runs.
    #[arg(long, env = "FLOTILLA_NO_SHARDING")]
    no_sharding: bool,
    /// Redis URL of the shared manifest and revision caches: redis-cluster://host:port?node=...
    /// (Cluster), redis-sentinel://host:26379?sentinelServiceName=mymaster&node=... (Sentinel)
    /// or redis://host:port; user:password@ for AUTH, rediss… for TLS. Unset: in-memory caches
    /// only.
    #[arg(long, env = "FLOTILLA_REDIS_URL")]
    redis_url: Option<String>,
    #[command(flatten)]
    redis_tls: flotilla_cache::redis::RedisTls,
    /// Seconds a resolved branch or tag is trusted before it is resolved again (webhooks
    /// invalidate it at once). Default: the refresh interval.
    #[arg(long, env = "FLOTILLA_REVISION_CACHE_SECONDS")]
    revision_cache_seconds: Option<u64>,
    /// Address of the Git webhook receiver (POST /api/webhook). Unset: off.
    #[arg(long, env = "FLOTILLA_WEBHOOK_LISTEN")]
    webhook_listen: Option<SocketAddr>,
    /// GitHub webhook secret (checks X-Hub-Signature-256).
    #[arg(long, env = "FLOTILLA_WEBHOOK_GITHUB_SECRET", hide_env_values = true)]
    webhook_github_secret: Option<String>,
    /// GitLab webhook secret token (checks X-Gitlab-Token).
    #[arg(long, env = "FLOTILLA_WEBHOOK_GITLAB_SECRET", hide_env_values = true)]
    webhook_gitlab_secret: Option<String>,
    /// Bitbucket Cloud webhook UUID (checks X-Hook-UUID).
    #[arg(long, env = "FLOTILLA_WEBHOOK_BITBUCKET_UUID", hide_env_values = true)]
    webhook_bitbucket_uuid: Option<String>,
    /// Bitbucket Server webhook secret (checks X-Hub-Signature).
    #[arg(
        long,
        env = "FLOTILLA_WEBHOOK_BITBUCKET_SERVER_SECRET",
        hide_env_values = true
    )]
    webhook_bitbucket_server_secret: Option<String>,
    /// Gitea webhook secret (checks X-Gitea-Signature).
    #[arg(long, env = "FLOTILLA_WEBHOOK_GITEA_SECRET", hide_env_values = true)]
    webhook_gitea_secret: Option<String>,
    /// Gogs webhook secret (checks X-Gogs-Signature).
    #[arg(long, env = "FLOTILLA_WEBHOOK_GOGS_SECRET", hide_env_values = true)]
    webhook_gogs_secret: Option<String>,
    /// Azure DevOps service hook: the basic-auth user name it sends.
    #[arg(long, env = "FLOTILLA_WEBHOOK_AZUREDEVOPS_USERNAME")]
    webhook_azuredevops_username: Option<String>,
    /// Azure DevOps service hook: the basic-auth password it sends.
    #[arg(
        long,
        env = "FLOTILLA_WEBHOOK_AZUREDEVOPS_PASSWORD",
        hide_env_values = true
    )]
    webhook_azuredevops_password: Option<String>,
    /// Accept unsigned webhook events from providers that have no secret configured (as Argo CD
    /// does). Off by default: such events are refused with 401.
    #[arg(long, env = "FLOTILLA_WEBHOOK_ALLOW_UNAUTHENTICATED")]
    webhook_allow_unauthenticated: bool,
    /// Pause between the waves of a sync, in milliseconds (Argo CD's ARGOCD_SYNC_WAVE_DELAY
    /// is 2 s).
    #[arg(long, default_value_t = 2000, env = "FLOTILLA_SYNC_WAVE_DELAY_MS")]
    sync_wave_delay_ms: u64,
    /// Terminate sync operations running longer than this many seconds (0: never, as Argo CD's
    /// controller.sync.timeout.seconds).
    #[arg(long, default_value_t = 0, env = "FLOTILLA_SYNC_TIMEOUT_SECONDS")]
    sync_timeout_seconds: u64,
    /// Print the Application and AppProject CRDs as YAML and exit.
    #[arg(long)]
    print_crds: bool,
}

/// The identity: the flag or FLOTILLA_IDENTITY, then POD_NAME, then the host name.
fn identity(args: &Args) -> String {
    args.identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("flotilla-controller-{}", std::process::id()))
}

async fn client(args: &Args, user_agent: &str) -> anyhow::Result<kube::Client> {
    let mut cfg = match &args.kubeconfig {
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
    cfg.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(user_agent)?,
    ));
    Ok(kube::Client::try_from(cfg)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_crds {
        print!(
            "{}---\n{}---\n{}",
            serde_yaml::to_string(&flotilla_controller::types::application_crd())?,
            serde_yaml::to_string(&flotilla_controller::types::project::project_crd())?,
            serde_yaml::to_string(&flotilla_controller::types::appset::applicationset_crd()?)?
        );
        return Ok(());
    }
    let mut telemetry = flotilla_core::telemetry::init(args.log_format, "flotilla-controller");
    let _ = rustls::crypto::ring::default_provider().install_default();
    if args.kube_client_qps.is_nan() {
        anyhow::bail!("--kube-client-qps must be a number");
    }
    if args.lease_renew_seconds.is_nan() || args.lease_renew_seconds <= 0.0 {
        anyhow::bail!("--lease-renew-seconds must be positive");
    }
    let repo_server_ca = match (&args.repo_server_ca, args.repo_server_plaintext) {
        (Some(path), false) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading --repo-server-ca {}", path.display()))?,
        ),
        (None, true) => None,
        (Some(_), true) => {
            anyhow::bail!("--repo-server-ca and --repo-server-plaintext exclude each other")
        }
        (None, false) => anyhow::bail!(
            "repo-servers speak TLS: give their CA with --repo-server-ca (FLOTILLA_REPO_SERVER_CA), or --repo-server-plaintext when they run with --plaintext"
        ),
    };
    let cfg = ControllerConfig {
        namespace: args.namespace.clone(),
        application_namespaces: args
            .application_namespaces
            .iter()
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .collect(),
        applicationsets: !args.no_applicationsets,
        scm_providers: flotilla_controller::config::ScmProviderPolicy {
            enabled: !args.no_scm_providers,
            allowed: args
                .allowed_scm_providers
                .iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
        },
        selection: flotilla_controller::selection::AppSelection::new(
            args.application_selector.as_deref(),
            args.application_projects.clone(),
            args.argocd_side_by_side,
        )
        .context("--application-selector")?
        .with_handover_grace(Duration::from_secs(args.argocd_handover_grace_seconds)),
        repo_server: args.repo_server.clone(),
        workers: args.workers,
        refresh_interval: Duration::from_secs(args.refresh_seconds),
        manifest_cache_entries: args.manifest_cache_entries,
        rpc_timeout: Duration::from_secs(args.rpc_timeout_seconds),
        repo_server_token: args.repo_server_token.clone().filter(|t| !t.is_empty()),
        repo_server_ca,
        in_cluster: !args.no_in_cluster,
        metrics_listen: args.metrics_listen,
        status_endpoint: args.status_endpoint,
        status_token: args.status_token.clone().filter(|t| !t.is_empty()),
        advertise_address: args.advertise_address.clone().filter(|a| !a.is_empty()),
        address_file: args.address_file.clone(),
        webhook_listen: args.webhook_listen,
        redis_url: args.redis_url.clone().filter(|u| !u.is_empty()),
        redis_tls: args.redis_tls.clone(),
        revision_cache_ttl: args.revision_cache_seconds.map(Duration::from_secs),
        webhook: flotilla_controller::config::WebhookSettings {
            github_secret: args.webhook_github_secret.clone(),
            gitlab_secret: args.webhook_gitlab_secret.clone(),
            bitbucket_uuid: args.webhook_bitbucket_uuid.clone(),
            bitbucket_server_secret: args.webhook_bitbucket_server_secret.clone(),
            gitea_secret: args.webhook_gitea_secret.clone(),
            gogs_secret: args.webhook_gogs_secret.clone(),
            azuredevops_username: args.webhook_azuredevops_username.clone(),
            azuredevops_password: args.webhook_azuredevops_password.clone(),
            allow_unauthenticated: args.webhook_allow_unauthenticated,
            ..ControllerConfig::default().webhook
        },
        sharding: ShardingSettings {
            enabled: !args.no_sharding,
            identity: identity(&args),
            group: args.shard_group.clone(),
            lease_duration: Duration::from_secs(args.lease_duration_seconds),
            renew_interval: Duration::from_secs_f64(args.lease_renew_seconds),
            epsilon: args.shard_epsilon,
            balance: args.shard_balance,
            ..ShardingSettings::default()
        },
        operations: flotilla_controller::syncop::OpConfig {
            wave_delay: Duration::from_millis(args.sync_wave_delay_ms),
            timeout: (args.sync_timeout_seconds > 0)
                .then(|| Duration::from_secs(args.sync_timeout_seconds)),
            ..Default::default()
        },
        argocd_metrics: args.argocd_metrics,
        kube_client: flotilla_controller::config::KubeClientSettings {
            qps: args.kube_client_qps,
            burst: args.kube_client_burst,
            request_timeout: (args.kube_request_timeout_seconds > 0)
                .then(|| Duration::from_secs(args.kube_request_timeout_seconds)),
            ..Default::default()
        },
        repo_server_max_in_flight: args.repo_server_max_in_flight,
        ..ControllerConfig::default()
    };
    let control = client(&args, &cfg.user_agent()).await?;
    let res = flotilla_controller::run::run(cfg, control, flotilla_core::shutdown_signal()).await;
    telemetry.shutdown();
    res?;
    Ok(())
}
