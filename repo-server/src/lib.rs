//! flotilla-repo-server: fetches and caches Git repositories, resolves revisions, renders
//! application sources into Kubernetes objects and serves that over gRPC (`run`).
//! Must not talk to target clusters: it only reads Git and writes rendered manifests.
#![forbid(unsafe_code)]

pub mod backend;
pub mod error;
pub mod git;
pub mod git_lfs;
pub mod git_listing;
pub mod git_semver;
pub mod git_submodule;
pub mod github_app;
pub mod grpc;
pub mod helm_repo;
pub mod metrics;
pub mod oci;
pub mod paths;
pub mod render;
pub mod slots;
pub mod source;
pub mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::RenderError;

use backend::{GitBackend, GitBackendConfig};
use flotilla_proto::repo::v1::repo_server_server::RepoServerServer;

/// Largest gRPC message the server sends (rendered manifests of a large app).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Everything `run` needs; the binary fills it from flags and environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub cache_dir: PathBuf,
    pub parallelism: usize,
    pub fetch_timeout: Duration,
    pub max_exports: usize,
    /// When set, the bound addresses are written here as JSON once serving.
    pub address_file: Option<PathBuf>,
    /// Redis (Cluster) URL of the shared manifest cache; none = no shared cache.
    pub redis_url: Option<String>,
    /// TLS for `rediss…` URLs.
    pub redis_tls: flotilla_cache::redis::RedisTls,
    /// How long rendered manifests stay in the shared cache.
    pub cache_ttl: Duration,
    /// `helm` binary (default: `FLOTILLA_HELM`, then PATH).
    pub helm: Option<PathBuf>,
    /// Config-management plugins.
    pub plugins: Vec<render::plugin::PluginConfig>,
    /// Names this replica in render locks and logs.
    pub identity: String,
    /// The token every gRPC call must carry (`authorization: Bearer <token>`); `None` serves
    /// unauthenticated callers (only with the binary's explicit `--insecure-no-auth`).
    pub auth_token: Option<String>,
    /// Serve `file://` repositories.
    pub allow_file_urls: bool,
    /// How long one render may take.
    pub render_timeout: Duration,
    /// Address-space limit of the child process each Jsonnet evaluation runs in.
    pub jsonnet_memory_bytes: u64,
    /// The gRPC port's TLS certificate and key (PEM); `None` serves plaintext (only with the
    /// binary's explicit `--plaintext`).
    pub tls: Option<TlsIdentity>,
    /// SSH known hosts and TLS CAs of repositories (`argocd-ssh-known-hosts-cm`,
    /// `argocd-tls-certs-cm` as mounted files).
    pub transport: transport::TransportConfig,
    /// Check Git submodules out.
    pub git_submodules: bool,
    /// Export Argo CD's metric names too, or instead of Flotilla's.
    pub argocd_metrics: metrics::ArgoCdMetrics,
}

/// A TLS certificate chain and its private key, PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity(<redacted>)")
    }
}

impl TlsIdentity {
    /// A self-signed certificate for `names` (DNS names or IP addresses), for a repo-server
    /// started without one: traffic is encrypted, and a controller can pin this certificate
    /// as its CA.
    pub fn self_signed(names: &[String]) -> Result<Self, ServeError> {
        let key = rcgen::KeyPair::generate()
            .map_err(|e| ServeError::Setup(format!("generating a TLS key: {e}")))?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .map_err(|e| ServeError::Setup(format!("certificate names: {e}")))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "flotilla-repo-server");
        let cert = params
            .self_signed(&key)
            .map_err(|e| ServeError::Setup(format!("self-signing: {e}")))?;
        Ok(Self {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        })
    }
}

/// The gRPC interceptor that lets only callers holding the shared token in.
#[derive(Clone)]
pub struct TokenCheck {
    token: Option<Arc<str>>,
}

impl TokenCheck {
    pub fn new(token: Option<String>) -> Self {
        Self {
            token: token.map(Arc::from),
        }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(want) = &self.token else {
            return Ok(req);
        };
        let got = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if constant_time_eq(got.as_bytes(), want.as_bytes()) {
            Ok(req)
        } else {
            Err(tonic::Status::unauthenticated(
                "missing or wrong repo-server token (authorization: Bearer)",
            ))
        }
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, y) in b.iter().enumerate() {
        let x = a.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] flotilla_core::http::HttpError),
    #[error("setting up: {0}")]
    Setup(String),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// Serve the repo-server until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    // https:// Git remotes go through rustls; use ring like the rest of the workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = metrics::RepoMetrics::register_mode(&mut registry, cfg.argocd_metrics);
    let cache_metrics = metrics::cache_metrics(&mut registry, &metrics);
    let mut bcfg = GitBackendConfig::new(cfg.cache_dir.join("repos"), cfg.cache_dir.join("work"));
    bcfg.parallelism = cfg.parallelism;
    bcfg.fetch_timeout = cfg.fetch_timeout;
    bcfg.max_exports = cfg.max_exports;
    bcfg.helm_dir = cfg.cache_dir.join("helm-charts");
    bcfg.identity = cfg.identity.clone();
    bcfg.allow_file_urls = cfg.allow_file_urls;
    bcfg.render_timeout = cfg.render_timeout;
    bcfg.transport = cfg.transport.clone();
    bcfg.git_submodules = cfg.git_submodules;
    if cfg.auth_token.is_none() {
        tracing::warn!("repo-server gRPC serves unauthenticated callers (--insecure-no-auth)");
    }
    if cfg.tls.is_none() {
        tracing::warn!(
            "repo-server gRPC serves plaintext (--plaintext): requests carry repository credentials"
        );
    }
    // Exports from an earlier run are stale; start the work area clean.
    let _ = std::fs::remove_dir_all(&bcfg.work_dir);
    let kustomize = render::kustomize::KustomizeTool::find();
    match &kustomize {
        Some(t) => tracing::info!(tool = ?t, "Kustomize sources enabled"),
        None => tracing::warn!(
            "neither kustomize nor kubectl on PATH: Kustomize sources will fail with a clear error"
        ),
    }
    let helm = cfg.helm.clone().or_else(render::helm::find_helm);
    match &helm {
        Some(h) => tracing::info!(helm = %h.display(), "Helm sources enabled"),
        None => tracing::warn!(
            "no helm binary (PATH or FLOTILLA_HELM): Helm sources will fail with a clear error"
        ),
    }
    for p in &cfg.plugins {
        tracing::info!(plugin = %p.name, "config-management plugin configured");
    }
    let exe = std::env::current_exe()
        .map_err(|e| ServeError::Setup(format!("locating this executable for Jsonnet: {e}")))?;
    bcfg.renderers = Arc::new(
        render::Renderers::new(kustomize, helm, cfg.plugins.clone()).with_jsonnet(
            render::jsonnet::Evaluator::Isolated {
                exe,
                memory_bytes: cfg.jsonnet_memory_bytes,
            },
        ),
    );
    if let Some(url) = &cfg.redis_url {
        let store = flotilla_cache::redis::RedisStore::connect(
            flotilla_cache::redis::RedisConfig {
                tls: cfg.redis_tls.clone(),
                ..flotilla_cache::redis::RedisConfig::new(url)
            },
            cache_metrics.clone(),
        )
        .map_err(|e| ServeError::Setup(e.to_string()))?;
        bcfg.shared = Some(flotilla_cache::ManifestStore::new(
            Arc::new(store),
            cfg.cache_ttl,
            cache_metrics,
        ));
    }
    let backend =
        GitBackend::new(bcfg, metrics.clone()).map_err(|e| ServeError::Setup(e.to_string()))?;
    let service = grpc::RepoGrpc::new(Arc::new(backend), metrics);
    let ready = flotilla_core::http::Ready::default();
    let metrics_addr = flotilla_core::http::serve(
        cfg.metrics_listen,
        flotilla_core::http::router(Arc::new(registry), ready.clone()),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let grpc_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    if let Some(path) = &cfg.address_file {
        let doc =
            serde_json::json!({"grpc": grpc_addr.to_string(), "metrics": metrics_addr.to_string()});
        std::fs::write(path, doc.to_string())
            .map_err(|e| ServeError::Setup(format!("writing {}: {e}", path.display())))?;
    }
    tracing::info!(grpc = %grpc_addr, metrics = %metrics_addr, parallelism = cfg.parallelism, "repo-server serving");
    ready.set(true);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &cfg.tls {
        server = server.tls_config(tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem),
        ))?;
    }
    server
        .add_service(tonic::service::interceptor::InterceptedService::new(
            RepoServerServer::new(service)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            TokenCheck::new(cfg.auth_token.clone()),
        ))
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), {
            // Not ready from the first moment of shutdown: endpoints drain while
            // in-flight renders finish.
            let ready = ready.clone();
            async move {
                shutdown.await;
                ready.set(false);
            }
        })
        .await?;
    Ok(())
}
