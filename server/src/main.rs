//! `flotilla-server`: watch Applications (in the control-plane namespace, and in those of
//! `--application-namespaces`) and AppProjects, and serve them over `/api/v1` (plus
//! `/metrics`, `/healthz`, `/readyz`) on one address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use flotilla_controller::types::{AppProject, Application};
use flotilla_core::telemetry::LogFormat;
use flotilla_server::api::{Server, router};
use flotilla_server::auth::{Authenticator, bootstrap_admin_token};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::{reflector, watcher};
use prometheus_client::registry::Registry;

/// Flotilla's API server.
#[derive(Debug, Parser)]
#[command(
    name = "flotilla-server",
    version,
    next_line_help = true,
    after_help = "Environment: RUST_LOG sets the log filter (default info). Traces are exported over OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp) is set; OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS and OTEL_BSP_* are honoured; OTEL_SDK_DISABLED=true turns them off. The API (/api/v1, described at /api/v1/openapi.json) needs Authorization: Bearer <token> on every call."
)]
struct Args {
    /// Kubeconfig of the control plane (default: in-cluster or $KUBECONFIG).
    #[arg(long, env = "FLOTILLA_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig (default: its current context).
    #[arg(long, env = "FLOTILLA_CONTEXT")]
    context: Option<String>,
    /// Namespace of the Applications and AppProjects.
    #[arg(long, default_value = "argocd", env = "FLOTILLA_NAMESPACE")]
    namespace: String,
    /// Further namespaces (comma-separated globs, e.g. team-*) whose Applications are served
    /// too (Argo CD's --application-namespaces; give the controllers the same list). Such an
    /// Application may use only a project whose spec.sourceNamespaces lists its namespace; its
    /// RBAC object is <project>/<namespace>/<name>. Needs cluster-wide access to Applications.
    #[arg(
        long,
        env = "FLOTILLA_APPLICATION_NAMESPACES",
        value_delimiter = ',',
        num_args = 0..
    )]
    application_namespaces: Vec<String>,
    /// Address of the API (and /metrics, /healthz, /readyz).
    #[arg(long, default_value = "0.0.0.0:8080", env = "FLOTILLA_SERVER_LISTEN")]
    listen: SocketAddr,
    /// The local admin's bearer token. Without it, the token is read from (or created in) the
    /// Secret flotilla-initial-admin-secret, key `token`.
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// No local admin (every call is refused until another way of signing in is configured).
    /// A bootstrapped admin (no --admin-token) is also off while SSO (argocd-cm oidc.config)
    /// is configured.
    #[arg(long, env = "FLOTILLA_NO_LOCAL_ADMIN")]
    no_local_admin: bool,
    #[command(flatten)]
    auth: flotilla_server::auth::AuthArgs,
    /// Write the bound address here as JSON (useful with port 0).
    #[arg(long, env = "FLOTILLA_ADDRESS_FILE")]
    address_file: Option<PathBuf>,
    /// Bearer token of the controllers' status routes (their --status-token): needed for an
    /// app's resources and diffs, which only the owning replica has, and for the fleet view.
    #[arg(long, env = "FLOTILLA_STATUS_TOKEN", hide_env_values = true)]
    status_token: Option<String>,
    /// The controllers' sharding group (their --shard-group): whose Leases say who owns what.
    #[arg(
        long,
        default_value = "flotilla-controller",
        env = "FLOTILLA_SHARD_GROUP"
    )]
    shard_group: String,
    /// host:port of a controller running with --no-sharding (no Leases to route by).
    #[arg(long, env = "FLOTILLA_CONTROLLER_ADDRESS")]
    controller_address: Option<String>,
    /// The control plane is not a destination (as the controllers' --no-in-cluster).
    #[arg(long, env = "FLOTILLA_NO_IN_CLUSTER")]
    no_in_cluster: bool,
    /// Log format: text or json.
    #[arg(long, default_value = "text", env = "FLOTILLA_LOG_FORMAT")]
    log_format: LogFormat,
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
    let mut telemetry = flotilla_core::telemetry::init(args.log_format, "flotilla-server");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let control = client(&args)
        .await
        .context("connecting to the control plane")?;
    let admin = match (&args.admin_token, args.no_local_admin) {
        (_, true) => None,
        (Some(t), false) => Some(t.clone()),
        (None, false) => Some(
            bootstrap_admin_token(&control, &args.namespace)
                .await
                .context("bootstrapping the local admin's token")?,
        ),
    };
    if admin.is_some() {
        tracing::info!(
            secret = flotilla_server::auth::ADMIN_SECRET,
            "local admin enabled"
        );
    }

    let (apps, apps_writer) = reflector::store::<Application>();
    let (projects, projects_writer) = reflector::store::<AppProject>();
    let scope =
        flotilla_server::scope::AppScope::new(&args.namespace, &args.application_namespaces);
    // Apps in any namespace: one cluster-wide watch, keeping only the namespaces served (globs
    // cannot be namespaced watches), as the controllers do.
    let app_api: Api<Application> = if scope.any_namespace() {
        tracing::info!(namespaces = ?args.application_namespaces, "serving Applications in further namespaces");
        Api::all(control.clone())
    } else {
        Api::namespaced(control.clone(), &args.namespace)
    };
    let in_scope = {
        let scope = scope.clone();
        move |a: &Application| {
            a.metadata
                .namespace
                .as_deref()
                .is_some_and(|n| scope.serves(n))
        }
    };
    let project_api: Api<AppProject> = Api::namespaced(control.clone(), &args.namespace);
    let changes = flotilla_server::stream::channel();
    let index = Arc::new(flotilla_server::query::AppIndex::default());
    let index_w = index.clone();
    let publish = changes.clone();
    tokio::spawn(
        reflector::reflector(
            apps_writer,
            watcher::watcher(app_api, watcher::Config::default())
                // Another namespace's Application never enters the store.
                .try_filter(move |ev| {
                    futures::future::ready(match ev {
                        watcher::Event::Apply(a)
                        | watcher::Event::InitApply(a)
                        | watcher::Event::Delete(a) => in_scope(a),
                        _ => true,
                    })
                })
                .modify(|a| {
                    a.metadata.managed_fields = None;
                }),
        )
        .default_backoff()
        .for_each(move |ev| {
            use flotilla_server::stream::Change;
            let change = match ev {
                Ok(watcher::Event::Apply(a)) => {
                    index_w.upsert(&a);
                    Some(Change::Upsert {
                        application: flotilla_server::query::summary(&a),
                    })
                }
                Ok(watcher::Event::Delete(a)) => {
                    index_w.remove(&a);
                    Some(Change::Delete {
                        application: flotilla_server::query::summary(&a),
                    })
                }
                Ok(watcher::Event::Init) => {
                    index_w.relist_start();
                    None
                }
                Ok(watcher::Event::InitApply(a)) => {
                    index_w.upsert(&a);
                    None
                }
                Ok(watcher::Event::InitDone) => {
                    index_w.relist_done();
                    Some(Change::Resync)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watching Applications");
                    None
                }
            };
            if let Some(c) = change {
                // No subscriber is fine.
                let _ = publish.send(c);
            }
            async {}
        }),
    );
    let secret_api: Api<Secret> = Api::namespaced(control.clone(), &args.namespace);
    let (cluster_secrets, cluster_writer) = reflector::store::<Secret>();
    let (repo_secrets, repo_writer) = reflector::store::<Secret>();
    for (writer, selector) in [
        (cluster_writer, flotilla_controller::run::CLUSTER_SECRETS),
        (repo_writer, flotilla_controller::run::REPO_SECRETS),
    ] {
        tokio::spawn(
            reflector::reflector(
                writer,
                watcher::watcher(
                    secret_api.clone(),
                    watcher::Config::default().labels(selector),
                ),
            )
            .default_backoff()
            .for_each(|_| async {}),
        );
    }
    let (leases, lease_writer) = reflector::store::<Lease>();
    tokio::spawn(
        reflector::reflector(
            lease_writer,
            watcher::watcher(
                Api::<Lease>::namespaced(control.clone(), &args.namespace),
                watcher::Config::default().labels(&format!(
                    "{}={}",
                    flotilla_sharding::membership::GROUP_LABEL,
                    args.shard_group
                )),
            ),
        )
        .default_backoff()
        .for_each(|_| async {}),
    );
    tokio::spawn(
        reflector::reflector(
            projects_writer,
            watcher::watcher(project_api, watcher::Config::default()),
        )
        .default_backoff()
        .for_each(|_| async {}),
    );

    let mut registry = Registry::default();
    let requests = Server::register(&mut registry);
    flotilla_server::stream::register(&mut registry);
    let ready = flotilla_core::http::Ready::default();
    let events = Arc::new(flotilla_controller::events::AppEvents::new(
        control.clone(),
        "flotilla-server",
        &mut registry,
    ));
    let auth = Authenticator::start(
        admin,
        args.admin_token.is_some(),
        &args.auth,
        control.clone(),
        &args.namespace,
        projects.clone(),
        &mut registry,
    )
    .await;
    let server = Arc::new(Server {
        apps: apps.clone(),
        projects: projects.clone(),
        auth,
        rbac: std::sync::RwLock::new(Arc::new(
            flotilla_server::rbac::Policy::new("", None).await?,
        )),
        actions: flotilla_server::actions::Actions {
            client: control.clone(),
            events,
        },
        requests,
        controllers: flotilla_server::controllers::Controllers {
            leases: leases.clone(),
            clusters: cluster_secrets.clone(),
            group: args.shard_group.clone(),
            token: args.status_token.clone().filter(|t| !t.is_empty()),
            fallback: args.controller_address.clone().filter(|a| !a.is_empty()),
            in_cluster: !args.no_in_cluster,
            http: flotilla_server::controllers::http_client(),
        },
        repos: repo_secrets.clone(),
        namespace: args.namespace.clone(),
        scope,
        index,
        changes,
        memory: Default::default(),
    });
    tokio::spawn(flotilla_server::rbac::watch(
        control.clone(),
        args.namespace.clone(),
        server.clone(),
    ));
    let sampled = server.clone();
    let app = router(server).merge(flotilla_core::http::router(
        Arc::new(registry),
        ready.clone(),
    ));
    let bound = flotilla_core::http::serve(args.listen, app).await?;
    if let Some(path) = &args.address_file {
        std::fs::write(
            path,
            serde_json::json!({"api": bound.to_string()}).to_string(),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    tracing::info!(api = %bound, namespace = %args.namespace, "API server listening");
    let synced = async {
        let _ = apps.wait_until_ready().await;
        let _ = projects.wait_until_ready().await;
        let _ = cluster_secrets.wait_until_ready().await;
        let _ = repo_secrets.wait_until_ready().await;
        let _ = leases.wait_until_ready().await;
    };
    if tokio::time::timeout(Duration::from_secs(120), synced)
        .await
        .is_err()
    {
        anyhow::bail!("Applications and AppProjects did not list within 120 s");
    }
    ready.set(true);
    tokio::spawn(flotilla_server::fleet_memory::run(sampled));
    tracing::info!(applications = apps.state().len(), "stores synced; serving");
    flotilla_core::shutdown_signal().await;
    telemetry.shutdown();
    Ok(())
}
