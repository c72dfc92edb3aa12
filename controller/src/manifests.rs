//! Desired state from the repo-server: revision resolution and rendered manifests over gRPC
//! (`flotilla.repo.v1`), read through a manifest cache keyed by (commit, source) so an
//! unchanged commit is never rendered twice. The in-memory LRU cache is the embedded default.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_proto::repo::v1 as pb;
use lru::LruCache;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, Endpoint};

use crate::repos::RepoCreds;
use crate::types::application::ApplicationSource;

/// Why desired state could not be had.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The repo-server (or the Git server behind it) could not be reached: retry later.
    #[error("repo-server unavailable: {0}")]
    Unavailable(String),
    /// The request failed for a reason a retry will not fix without a change (bad path,
    /// unknown revision, invalid manifests).
    #[error("{0}")]
    Failed(String),
    #[error("invalid repo-server address {0:?}")]
    BadEndpoint(String),
}

fn from_status(s: tonic::Status) -> ManifestError {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            ManifestError::Unavailable(s.message().to_string())
        }
        _ => ManifestError::Failed(s.message().to_string()),
    }
}

/// Rendered objects of one source at one commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub commit: String,
    pub objects: Arc<Vec<Value>>,
    pub source_type: String,
}

/// Where rendered manifests are kept between renders.
pub trait ManifestCache: Send + Sync {
    fn get(&self, key: &str) -> Option<Rendered>;
    fn put(&self, key: &str, value: Rendered);
}

/// A bounded in-process LRU (the default when no shared cache is configured).
pub struct MemoryCache {
    entries: Mutex<LruCache<String, Rendered>>,
}

impl MemoryCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }
}

impl ManifestCache for MemoryCache {
    fn get(&self, key: &str) -> Option<Rendered> {
        self.entries.lock().ok()?.get(key).cloned()
    }
    fn put(&self, key: &str, value: Rendered) {
        if let Ok(mut e) = self.entries.lock() {
            e.put(key.to_string(), value);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Metrics of desired-state retrieval.
#[derive(Clone)]
pub struct ManifestMetrics {
    pub cache: Family<OutcomeLabels, Counter>,
    pub rpc_seconds: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    pub rpc_in_flight: Gauge,
}

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for ManifestMetrics {
    fn default() -> Self {
        Self {
            cache: Family::default(),
            rpc_seconds: Family::new_with_constructor(seconds),
            rpc_in_flight: Gauge::default(),
        }
    }
}

impl ManifestMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "flotilla_manifest_cache",
            "Manifest cache lookups, by outcome (hit, miss)",
            m.cache.clone(),
        );
        registry.register(
            "flotilla_repo_rpc_seconds",
            "Duration of calls to the repo-server, by outcome (resolve, generate, error)",
            m.rpc_seconds.clone(),
        );
        registry.register(
            "flotilla_repo_rpc_in_flight",
            "Calls to the repo-server in flight",
            m.rpc_in_flight.clone(),
        );
        m
    }
}

/// The wire form of an Application source.
pub fn wire_source(src: &ApplicationSource) -> pb::ApplicationSource {
    use pb::application_source::Kind;
    let kind = if let Some(k) = &src.kustomize {
        Some(Kind::Kustomize(pb::KustomizeSource {
            name_prefix: k.name_prefix.clone().unwrap_or_default(),
            name_suffix: k.name_suffix.clone().unwrap_or_default(),
            images: k.images.clone().unwrap_or_default(),
            common_labels: k
                .common_labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            common_annotations: k
                .common_annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            namespace: k.namespace.clone().unwrap_or_default(),
        }))
    } else {
        src.directory.as_ref().map(|d| {
            Kind::Directory(pb::DirectorySource {
                recurse: d.recurse,
                include: d.include.clone().unwrap_or_default(),
                exclude: d.exclude.clone().unwrap_or_default(),
            })
        })
    };
    pb::ApplicationSource {
        repo_url: src.repo_url.clone(),
        path: src.path.clone().unwrap_or_default(),
        target_revision: src.target_revision.clone().unwrap_or_default(),
        kind,
    }
}

/// The wire form of a repository and its credentials.
pub fn wire_repo(url: &str, creds: Option<&RepoCreds>) -> pb::Repository {
    pb::Repository {
        url: url.to_string(),
        username: creds.and_then(|c| c.username.clone()).unwrap_or_default(),
        password: creds.and_then(|c| c.password.clone()).unwrap_or_default(),
        bearer_token: creds
            .and_then(|c| c.bearer_token.clone())
            .unwrap_or_default(),
        insecure: creds.is_some_and(|c| c.insecure),
    }
}

/// The cache key of a render: commit plus a digest of everything else that shapes it.
pub fn cache_key(commit: &str, src: &pb::ApplicationSource, app: &str, namespace: &str) -> String {
    use prost::Message;
    let mut h = Sha256::new();
    h.update(src.encode_to_vec());
    h.update([0]);
    h.update(app.as_bytes());
    h.update([0]);
    h.update(namespace.as_bytes());
    format!("{commit}:{}", hex::encode(&h.finalize()[..16]))
}

/// The controller's way to desired state.
pub struct ManifestClient {
    client: pb::repo_server_client::RepoServerClient<Channel>,
    cache: Arc<dyn ManifestCache>,
    metrics: ManifestMetrics,
    timeout: Duration,
}

/// Largest message accepted from the repo-server.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

impl ManifestClient {
    /// A client for `endpoint` (`http://host:port`); connects on first use and reconnects.
    pub fn new(
        endpoint: &str,
        cache: Arc<dyn ManifestCache>,
        metrics: ManifestMetrics,
        timeout: Duration,
    ) -> Result<Self, ManifestError> {
        let ep = Endpoint::from_shared(endpoint.to_string())
            .map_err(|_| ManifestError::BadEndpoint(endpoint.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout);
        let client = pb::repo_server_client::RepoServerClient::new(ep.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self {
            client,
            cache,
            metrics,
            timeout,
        })
    }

    fn observe(&self, outcome: &'static str, started: std::time::Instant) {
        self.metrics
            .rpc_seconds
            .get_or_create(&OutcomeLabels { outcome })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Resolve `revision` of `repo` to a commit.
    pub async fn resolve(
        &self,
        repo: pb::Repository,
        revision: &str,
    ) -> Result<String, ManifestError> {
        let started = std::time::Instant::now();
        self.metrics.rpc_in_flight.inc();
        let res = self
            .client
            .clone()
            .resolve_revision(pb::ResolveRevisionRequest {
                repo: Some(repo),
                revision: revision.to_string(),
            })
            .await;
        self.metrics.rpc_in_flight.dec();
        match res {
            Ok(r) => {
                self.observe("resolve", started);
                Ok(r.into_inner().commit_sha)
            }
            Err(s) => {
                self.observe("error", started);
                Err(from_status(s))
            }
        }
    }

    /// The manifests of `src` at `commit`: from the cache, else rendered by the repo-server.
    /// `bypass_cache` (a hard refresh) renders again and replaces the cached copy.
    pub async fn manifests(
        &self,
        repo: pb::Repository,
        src: pb::ApplicationSource,
        app: &str,
        namespace: &str,
        commit: &str,
        bypass_cache: bool,
    ) -> Result<Rendered, ManifestError> {
        let key = cache_key(commit, &src, app, namespace);
        if !bypass_cache && let Some(hit) = self.cache.get(&key) {
            self.metrics
                .cache
                .get_or_create(&OutcomeLabels { outcome: "hit" })
                .inc();
            return Ok(hit);
        }
        self.metrics
            .cache
            .get_or_create(&OutcomeLabels { outcome: "miss" })
            .inc();
        let started = std::time::Instant::now();
        self.metrics.rpc_in_flight.inc();
        let res = self
            .client
            .clone()
            .generate_manifests(pb::GenerateManifestsRequest {
                repo: Some(repo),
                source: Some(src),
                commit_sha: commit.to_string(),
                app_name: app.to_string(),
                namespace: namespace.to_string(),
            })
            .await;
        self.metrics.rpc_in_flight.dec();
        let resp = match res {
            Ok(r) => {
                self.observe("generate", started);
                r.into_inner()
            }
            Err(s) => {
                self.observe("error", started);
                return Err(from_status(s));
            }
        };
        let objects = resp
            .manifests
            .iter()
            .map(|m| serde_json::from_str::<Value>(m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ManifestError::Failed(format!("repo-server sent invalid JSON: {e}")))?;
        let rendered = Rendered {
            commit: resp.commit_sha,
            objects: Arc::new(objects),
            source_type: resp.source_type,
        };
        self.cache.put(&key, rendered.clone());
        Ok(rendered)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::application::{DirectoryOptions, KustomizeOptions};

    #[test]
    fn wire_source_carries_the_type_options() {
        let mut src = ApplicationSource {
            repo_url: "https://git/x".into(),
            path: Some("apps/web".into()),
            target_revision: Some("main".into()),
            directory: Some(DirectoryOptions {
                recurse: true,
                include: Some("*.yaml".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let w = wire_source(&src);
        assert!(
            matches!(w.kind, Some(pb::application_source::Kind::Directory(ref d)) if d.recurse && d.include == "*.yaml")
        );
        src.kustomize = Some(KustomizeOptions {
            name_prefix: Some("dev-".into()),
            ..Default::default()
        });
        assert!(
            matches!(wire_source(&src).kind, Some(pb::application_source::Kind::Kustomize(ref k)) if k.name_prefix == "dev-")
        );
    }

    #[test]
    fn cache_keys_differ_by_commit_source_and_app() {
        let src = wire_source(&ApplicationSource {
            repo_url: "u".into(),
            path: Some("p".into()),
            ..Default::default()
        });
        let k = cache_key("c1", &src, "a", "n");
        assert_eq!(k, cache_key("c1", &src, "a", "n"));
        assert_ne!(k, cache_key("c2", &src, "a", "n"));
        assert_ne!(k, cache_key("c1", &src, "b", "n"));
        let mut other = src.clone();
        other.path = "q".into();
        assert_ne!(k, cache_key("c1", &other, "a", "n"));
    }

    #[test]
    fn memory_cache_is_bounded_lru() {
        let c = MemoryCache::new(2);
        let r = |n: &str| Rendered {
            commit: n.into(),
            objects: Arc::new(Vec::new()),
            source_type: "Directory".into(),
        };
        c.put("a", r("a"));
        c.put("b", r("b"));
        assert!(c.get("a").is_some());
        c.put("c", r("c"));
        assert!(c.get("b").is_none(), "least recently used is evicted");
        assert!(c.get("a").is_some() && c.get("c").is_some());
    }
}
