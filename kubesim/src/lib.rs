//! kubesim: one process serving many virtual Kubernetes clusters over the real HTTP API, each on
//! its own loopback port, plus a control-plane cluster holding Argo CD-format cluster Secrets.
//!
//! Start it with [`KubeSim::start`]; talk to it with any Kubernetes client using
//! [`KubeSim::kubeconfig_yaml`]; inject faults and read the request log through [`Cluster`].
//! Must not know about Flotilla: it is a Kubernetes API server, nothing more.
#![forbid(unsafe_code)]

pub mod actions;
pub mod admin;
mod api;
pub mod audit;
pub mod children;
pub mod error;
pub mod faults;
pub mod fields;
pub mod footprint;
pub mod latency;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod quantities;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod simulate;
pub mod store;
pub mod stored;
pub mod structural;
pub mod tls;
pub mod tokens;
pub mod typed;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::RwLock;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use audit::{RequestLog, RequestRecord};
pub use faults::{FaultSpec, Faults};
pub use latency::{LatencyProfile, ProfileError};
pub use simulate::{BEHAVIOR_ANNOTATION, DELAY_ANNOTATION, SimSettings};
use store::{Store, WriteCtx};

/// Label Argo CD puts on its cluster/repository Secrets.
/// The Kubernetes version kubesim reports (`/version`, OpenAPI `info.version`).
pub const K8S_VERSION: &str = "v1.32.0-kubesim";

pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";

/// Errors starting or driving kubesim.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("seeding cluster {cluster}: {source}")]
    Seed {
        cluster: String,
        source: error::ApiError,
    },
    #[error("generating the TLS certificate: {0}")]
    Tls(String),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// How to start kubesim.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Target clusters (besides the control plane).
    pub clusters: usize,
    pub host: IpAddr,
    /// First port; cluster `i` gets `base_port + i` (control plane `base_port`). 0 = ephemeral.
    pub base_port: u16,
    /// Port of the admin API (`None` = no admin API; `Some(0)` = ephemeral).
    pub admin_port: Option<u16>,
    pub control_plane_name: String,
    /// Namespace of the cluster Secrets in the control plane.
    pub secrets_namespace: String,
    /// Watch-event history kept per cluster (older resourceVersions get 410 Gone).
    pub history: usize,
    /// The most JSON bytes of objects that history holds per cluster (0: no bound).
    pub history_bytes: usize,
    /// Request-log records kept per cluster (counters are kept regardless).
    pub request_log: usize,
    pub bookmark_interval: Duration,
    /// Watch timeout when the client gives none.
    pub watch_timeout: Duration,
    pub sim: SimSettings,
    /// Serve HTTPS with a generated self-signed certificate (kubeconfig and Secrets carry
    /// its CA). Needed by clients such as kubectl that send tokens only over TLS.
    pub tls: bool,
    /// API latency and per-client rate limits of the target clusters (default: none).
    pub latency: LatencyProfile,
    /// The same for the control-plane cluster (default: none).
    pub control_plane_latency: LatencyProfile,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            clusters: 3,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 0,
            admin_port: None,
            control_plane_name: "control-plane".into(),
            secrets_namespace: "argocd".into(),
            history: 10_000,
            history_bytes: 256 << 20,
            request_log: 100_000,
            bookmark_interval: Duration::from_secs(5),
            watch_timeout: Duration::from_secs(1800),
            sim: SimSettings::default(),
            tls: false,
            latency: LatencyProfile::none(),
            control_plane_latency: LatencyProfile::none(),
        }
    }
}

/// Settings the HTTP layer reads.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub bookmark_interval: Duration,
    pub watch_timeout: Duration,
}

/// One virtual cluster.
pub struct Cluster {
    pub name: String,
    pub addr: SocketAddr,
    pub token: String,
    pub store: Arc<Store>,
    pub faults: Faults,
    /// Latency profile and rate limits in force (`None`: the `none` profile, no cost).
    pub latency: Option<latency::Latency>,
    pub log: RequestLog,
    pub settings: ServeSettings,
    pub watches_open: AtomicU64,
    pub watches_opened: AtomicU64,
    /// PEM of the CA that signed the serving certificate (TLS only).
    pub ca_pem: Option<String>,
    tokens: Arc<RwLock<HashMap<String, String>>>,
}

impl Cluster {
    /// `http://127.0.0.1:PORT` (or `https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Base64 of the CA PEM, as kubeconfigs and Argo CD Secrets carry it.
    pub fn ca_data(&self) -> Option<String> {
        use base64::Engine;
        self.ca_pem
            .as_ref()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p))
    }

    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// The user a bearer token authenticates as on this cluster.
    pub fn user_for_token(&self, token: &str) -> Option<String> {
        if token == self.token {
            return Some("admin".into());
        }
        self.static_user(token)
            .or_else(|| tokens::user_for(self, token))
    }

    /// The user of a token added with [`KubeSim::add_token`].
    pub(crate) fn static_user(&self, token: &str) -> Option<String> {
        self.tokens.read().get(token).cloned()
    }

    fn version_doc(&self) -> Value {
        json!({"major": "1", "minor": "32", "gitVersion": K8S_VERSION,
               "gitCommit": "kubesim", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
               "goVersion": "n/a", "compiler": "rustc", "platform": "linux/amd64"})
    }

    /// Snapshot of counters for reports.
    pub fn stats(&self) -> Value {
        use std::sync::atomic::Ordering::Relaxed;
        json!({"name": self.name, "server": self.url(), "objects": self.store.object_count(),
               "resourceVersion": self.store.resource_version(), "requests": self.log.total(),
               "watchesOpen": self.watches_open.load(Relaxed),
               "watchesOpened": self.watches_opened.load(Relaxed),
               "faults": self.faults.get(),
               "latency": self.latency.as_ref().map_or_else(latency::Latency::none_stats, |l| l.stats())})
    }
}

/// A running kubesim.
pub struct KubeSim {
    control: Arc<Cluster>,
    clusters: Vec<Arc<Cluster>>,
    tokens: Arc<RwLock<HashMap<String, String>>>,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    secrets_namespace: String,
}

fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

impl KubeSim {
    /// Bind every cluster's port, seed the standard namespaces and the cluster Secrets, and
    /// start serving.
    pub async fn start(cfg: SimConfig) -> Result<Self, SimError> {
        let tokens = Arc::new(RwLock::new(HashMap::new()));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let settings = ServeSettings {
            bookmark_interval: cfg.bookmark_interval,
            watch_timeout: cfg.watch_timeout,
        };
        let tls = if cfg.tls {
            Some(tls::Tls::generate(cfg.host).map_err(SimError::Tls)?)
        } else {
            None
        };
        let mut all = Vec::with_capacity(cfg.clusters + 1);
        for i in 0..=cfg.clusters {
            let name = if i == 0 {
                cfg.control_plane_name.clone()
            } else {
                format!("cluster-{i:03}")
            };
            let port = if cfg.base_port == 0 {
                0
            } else {
                cfg.base_port.saturating_add(i as u16)
            };
            let addr = SocketAddr::new(cfg.host, port);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SimError::Bind { addr, source })?;
            let addr = listener
                .local_addr()
                .map_err(|source| SimError::Bind { addr, source })?;
            let store =
                Arc::new(Store::new(cfg.history, 4096).with_history_bytes(cfg.history_bytes));
            let (sim_tx, sim_rx) = mpsc::unbounded_channel();
            store.set_simulator(sim_tx);
            tasks.push(tokio::spawn(simulate::run(
                store.clone(),
                sim_rx,
                cfg.sim.clone(),
            )));
            let cluster = Arc::new(Cluster {
                name,
                addr,
                token: random_token(),
                store,
                faults: Faults::default(),
                latency: latency::Latency::new(
                    if i == 0 {
                        &cfg.control_plane_latency
                    } else {
                        &cfg.latency
                    },
                    i,
                ),
                log: RequestLog::new(cfg.request_log),
                settings: settings.clone(),
                watches_open: AtomicU64::new(0),
                watches_opened: AtomicU64::new(0),
                ca_pem: tls.as_ref().map(|t| t.ca_pem.clone()),
                tokens: tokens.clone(),
            });
            seed_namespaces(&cluster)?;
            tasks.push(tokio::spawn(serve_cluster(
                cluster.clone(),
                listener,
                tls.as_ref().map(|t| t.acceptor.clone()),
                shutdown_rx.clone(),
            )));
            all.push(cluster);
        }
        let control = all.remove(0);
        let mut sim = Self {
            control,
            clusters: all,
            tokens,
            admin_addr: None,
            shutdown,
            tasks,
            secrets_namespace: cfg.secrets_namespace.clone(),
        };
        sim.seed_cluster_secrets()?;
        if let Some(port) = cfg.admin_port {
            let addr = SocketAddr::new(cfg.host, port);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SimError::Bind { addr, source })?;
            sim.admin_addr = listener.local_addr().ok();
            let state = admin::AdminState {
                clusters: std::iter::once(sim.control.clone())
                    .chain(sim.clusters.iter().cloned())
                    .collect(),
                tokens: sim.tokens.clone(),
                kubeconfig: sim.kubeconfig_yaml(),
            };
            sim.tasks.push(tokio::spawn(admin::serve(
                Arc::new(state),
                listener,
                shutdown_rx,
            )));
        }
        tracing::info!(clusters = sim.clusters.len(), control = %sim.control.url(), "kubesim serving");
        Ok(sim)
    }

    pub fn control_plane(&self) -> &Arc<Cluster> {
        &self.control
    }

    /// The target clusters (not the control plane).
    pub fn clusters(&self) -> &[Arc<Cluster>] {
        &self.clusters
    }

    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        std::iter::once(&self.control)
            .chain(self.clusters.iter())
            .find(|c| c.name == name)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Accept `token` on every cluster as `user` (e.g. one identity per controller replica).
    pub fn add_token(&self, token: &str, user: &str) {
        self.tokens.write().insert(token.into(), user.into());
    }

    /// One kubeconfig with a context per cluster; the control plane is the current context.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig(
            std::iter::once(&self.control).chain(self.clusters.iter()),
            &self.control.name,
        )
    }

    pub fn write_kubeconfig(&self, path: &std::path::Path) -> Result<(), SimError> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| SimError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Stop serving (open connections end with the runtime).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }

    fn seed_cluster_secrets(&mut self) -> Result<(), SimError> {
        let ns = self.secrets_namespace.clone();
        let cp = self.control.clone();
        let seed_err = |source| SimError::Seed {
            cluster: cp.name.clone(),
            source,
        };
        let ctx = WriteCtx {
            manager: "kubesim".into(),
            dry_run: false,
            field_validation: Default::default(),
            warnings: Default::default(),
        };
        let ns_rt = cp
            .store
            .lookup("", "v1", "namespaces")
            .ok_or_else(|| seed_err(error::ApiError::no_route()))?;
        if cp.store.get(&ns_rt, "", &ns).is_err() {
            cp.store
                .create(&ns_rt, "", json!({"metadata": {"name": ns}}), &ctx)
                .map_err(seed_err)?;
        }
        let secret_rt = cp
            .store
            .lookup("", "v1", "secrets")
            .ok_or_else(|| seed_err(error::ApiError::no_route()))?;
        for c in &self.clusters {
            let mut tls_config = json!({"insecure": false});
            if let Some(ca) = c.ca_data() {
                tls_config["caData"] = json!(ca);
            }
            let config = json!({"bearerToken": c.token, "tlsClientConfig": tls_config});
            let secret = json!({
                "metadata": {"name": format!("cluster-{}", c.name), "namespace": ns,
                             "labels": {SECRET_TYPE_LABEL: "cluster"}},
                "type": "Opaque",
                "stringData": {"name": c.name, "server": c.url(), "config": config.to_string()},
            });
            cp.store
                .create(&secret_rt, &ns, secret, &ctx)
                .map_err(seed_err)?;
        }
        Ok(())
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What a fresh API server holds: its namespaces, the `default/kubernetes` Service and the
/// bootstrap ClusterRoles.
fn seed_namespaces(cluster: &Cluster) -> Result<(), SimError> {
    let ctx = WriteCtx {
        manager: "kubesim".into(),
        dry_run: false,
        field_validation: Default::default(),
        warnings: Default::default(),
    };
    let seed = |group: &str, plural: &str, ns: &str, obj: serde_json::Value| {
        let fail = |source| SimError::Seed {
            cluster: cluster.name.clone(),
            source,
        };
        let rt = cluster
            .store
            .lookup(group, "v1", plural)
            .ok_or_else(|| fail(error::ApiError::no_route()))?;
        cluster
            .store
            .create(&rt, ns, obj, &ctx)
            .map(|_| ())
            .map_err(fail)
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        seed("", "namespaces", "", json!({"metadata": {"name": ns}}))?;
    }
    cluster.store.sync_api_services();
    // What every real API server has from its first moment.
    seed(
        "",
        "services",
        "default",
        json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
    )?;
    let read = json!(["get", "list", "watch"]);
    let write = json!([
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection"
    ]);
    for (name, rules, aggregate) in [
        (
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                   {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
            None,
        ),
        (
            "admin",
            json!([{"apiGroups": ["", "apps", "batch", "rbac.authorization.k8s.io"], "resources": ["*"], "verbs": write}]),
            Some("rbac.authorization.k8s.io/aggregate-to-admin"),
        ),
        (
            "edit",
            json!([{"apiGroups": ["", "apps", "batch"], "resources": ["*"], "verbs": write}]),
            Some("rbac.authorization.k8s.io/aggregate-to-edit"),
        ),
        (
            "view",
            json!([{"apiGroups": ["", "apps", "batch"], "resources": ["*"], "verbs": read}]),
            Some("rbac.authorization.k8s.io/aggregate-to-view"),
        ),
    ] {
        let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
        if let Some(a) = aggregate {
            labels[a] = json!("true");
        }
        seed(
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
            json!({"metadata": {"name": name, "labels": labels,
                                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
                   "rules": rules}),
        )?;
    }
    Ok(())
}

/// A kubeconfig naming each cluster, user and context after the cluster.
pub fn kubeconfig<'a>(clusters: impl Iterator<Item = &'a Arc<Cluster>>, current: &str) -> String {
    let mut cs = Vec::new();
    let mut users = Vec::new();
    let mut contexts = Vec::new();
    for c in clusters {
        let mut cluster = json!({"server": c.url()});
        if let Some(ca) = c.ca_data() {
            cluster["certificate-authority-data"] = json!(ca);
        }
        cs.push(json!({"name": c.name, "cluster": cluster}));
        users.push(json!({"name": c.name, "user": {"token": c.token}}));
        contexts.push(json!({"name": c.name, "context": {"cluster": c.name, "user": c.name, "namespace": "default"}}));
    }
    let doc = json!({"apiVersion": "v1", "kind": "Config", "preferences": {},
                     "clusters": cs, "users": users, "contexts": contexts,
                     "current-context": current});
    serde_yaml::to_string(&doc).unwrap_or_default()
}

async fn serve_cluster(
    cluster: Arc<Cluster>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(cluster = %cluster.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if cluster.faults.is_unreachable() {
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let c = cluster.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(c, stream).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => serve_connection(c, s).await,
                            Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                        },
                    }
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Serve HTTP/1.1 and HTTP/2 on one connection until it ends or the cluster goes unreachable.
async fn serve_connection<I>(c: Arc<Cluster>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Subscribe before looking: a cluster that went unreachable between the accept and this
    // point has already sent its cut, which a later subscription would never see.
    let mut cut = c.faults.subscribe();
    if c.faults.is_unreachable() {
        return;
    }
    let svc_cluster = c.clone();
    let svc = service_fn(move |req| {
        let c = svc_cluster.clone();
        async move {
            // A request that reaches an idle connection after the cluster went unreachable,
            // before the cut below is seen, gets no answer: the service error aborts the
            // connection, as a vanished server would.
            if c.faults.is_unreachable() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "cluster unreachable (kubesim fault)",
                ));
            }
            Ok(api::handle(c, req).await)
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            biased;
            changed = cut.changed() => {
                if changed.is_err() || c.faults.is_unreachable() { break; }
            }
            _ = conn.as_mut() => break,
        }
    }
}
