//! `flotilla-server`: watch Applications and AppProjects in the control-plane namespace and
//! serve them over `/api/v1` (plus `/metrics`, `/healthz`, `/readyz`) on one address.

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
use futures::StreamExt;
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
    /// Address of the API (and /metrics, /healthz, /readyz).
    #[arg(long, default_value = "0.0.0.0:8080", env = "FLOTILLA_SERVER_LISTEN")]
    listen: SocketAddr,
    /// The local admin's bearer token. Without it, the token is read from (or created in) the
    /// Secret flotilla-initial-admin-secret, key `token`.
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// No local admin (every call is refused until another way of signing in is configured).
    #[arg(long, env = "FLOTILLA_NO_LOCAL_ADMIN")]
    no_local_admin: bool,
    /// Write the bound address here as JSON (useful with port 0).
    #[arg(long, env = "FLOTILLA_ADDRESS_FILE")]
    address_file: Option<PathBuf>,
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
    let app_api: Api<Application> = Api::namespaced(control.clone(), &args.namespace);
    let project_api: Api<AppProject> = Api::namespaced(control.clone(), &args.namespace);
    tokio::spawn(
        reflector::reflector(
            apps_writer,
            watcher::watcher(app_api, watcher::Config::default()).modify(|a| {
                a.metadata.managed_fields = None;
            }),
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
    let ready = flotilla_core::http::Ready::default();
    let events = Arc::new(flotilla_controller::events::AppEvents::new(
        control.clone(),
        "flotilla-server",
        &mut registry,
    ));
    let server = Arc::new(Server {
        apps: apps.clone(),
        projects: projects.clone(),
        auth: Authenticator::new(admin),
        rbac: std::sync::RwLock::new(Arc::new(
            flotilla_server::rbac::Policy::new("", None).await?,
        )),
        actions: flotilla_server::actions::Actions {
            client: control.clone(),
            events,
        },
        requests,
    });
    tokio::spawn(watch_rbac(
        control.clone(),
        args.namespace.clone(),
        server.clone(),
    ));
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
    };
    if tokio::time::timeout(Duration::from_secs(120), synced)
        .await
        .is_err()
    {
        anyhow::bail!("Applications and AppProjects did not list within 120 s");
    }
    ready.set(true);
    tracing::info!(applications = apps.state().len(), "stores synced; serving");
    flotilla_core::shutdown_signal().await;
    telemetry.shutdown();
    Ok(())
}

/// Keep the RBAC policy in force from `argocd-rbac-cm` (`policy.csv`, `policy.default`): a
/// change applies at once; a policy that does not parse is refused (logged) and the previous
/// one stays; without the ConfigMap only the built-in roles apply.
async fn watch_rbac(control: kube::Client, namespace: String, server: Arc<Server>) {
    let mut stream =
        flotilla_controller::config_map::data_stream(control, &namespace, "argocd-rbac-cm").boxed();
    while let Some(data) = stream.next().await {
        let csv = data
            .get("policy.csv")
            .map(String::as_str)
            .unwrap_or_default();
        let default = data.get("policy.default").map(String::as_str);
        if data.get("scopes").is_some_and(|s| !s.trim().is_empty()) {
            tracing::warn!(
                "argocd-rbac-cm scopes are not honoured yet: group claims come with SSO"
            );
        }
        match flotilla_server::rbac::Policy::new(csv, default).await {
            Ok(p) => {
                if let Ok(mut slot) = server.rbac.write() {
                    *slot = Arc::new(p);
                }
                tracing::info!("argocd-rbac-cm policy in force");
            }
            Err(e) => {
                tracing::error!(error = %e, "argocd-rbac-cm refused; the previous policy stays")
            }
        }
    }
}
