//! Desired state from the repo-servers: revision resolution and rendered manifests over gRPC
//! (`flotilla.repo.v1`, through the `RepoPool`), read through two caches keyed by
//! (commit, source): an in-process LRU, then the shared cache (Redis) when configured.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_cache::{ManifestStore, RevisionStore, keys};
use flotilla_proto::repo::v1 as pb;
use lru::LruCache;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tracing::Instrument;

use crate::redact::{redact_text, redact_url};
use crate::repo_pool::{PoolError, RepoPool};
use crate::repos::RepoCreds;
use crate::types::application::ApplicationSource;

/// Why desired state could not be had.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// No repo-server (or the Git server behind it) could be reached: retry later.
    #[error("repo-server unavailable: {0}")]
    Unavailable(String),
    /// The request failed for a reason a retry will not fix without a change (bad path,
    /// unknown revision, invalid manifests).
    #[error("{0}")]
    Failed(String),
    #[error("invalid repo-server address {0:?}")]
    BadEndpoint(String),
}

/// The repo-server's error as a `ManifestError`, with credentials in any URL it quotes
/// redacted (the text reaches logs and Application conditions).
fn from_pool(e: PoolError) -> ManifestError {
    let s = e.status;
    let message = redact_text(s.message());
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            ManifestError::Unavailable(message)
        }
        _ if e.unreachable => ManifestError::Unavailable(message),
        _ => ManifestError::Failed(message),
    }
}

/// Rendered objects of one source at one commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub commit: String,
    pub objects: Arc<Vec<Value>>,
    pub source_type: String,
}

/// An in-process cache entry: a render, or a pointer to the per-app key.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    Rendered(Rendered),
    AppSpecific,
}

/// A bounded in-process LRU of decoded renders (always on; the first place looked). Its slots
/// are keyed by source without the commit, so a source holds one commit: storing a render at
/// a new commit replaces the previous one (apps move forward together; a stale commit's render
/// is dead weight).
pub struct MemoryCache {
    /// Slot → (full key, entry).
    entries: Mutex<LruCache<String, (String, Cached)>>,
}

/// The LRU slot of `key`: its source part for render keys, else the key itself.
fn slot(key: &str) -> &str {
    keys::manifests_source(key).unwrap_or(key)
}

impl MemoryCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &str) -> Option<Cached> {
        let mut e = self.entries.lock().ok()?;
        let (stored, cached) = e.get(slot(key))?;
        (stored == key).then(|| cached.clone())
    }

    pub fn put(&self, key: &str, value: Cached) {
        if let Ok(mut e) = self.entries.lock() {
            e.put(slot(key).to_string(), (key.to_string(), value));
        }
    }

    /// The render for an app: under `base`, or under `app` when `base` says app-specific.
    fn lookup(&self, base: &str, app: &str) -> Option<Rendered> {
        match self.get(base)? {
            Cached::Rendered(r) => Some(r),
            Cached::AppSpecific => match self.get(app)? {
                Cached::Rendered(r) => Some(r),
                Cached::AppSpecific => None,
            },
        }
    }

    fn store(&self, base: &str, app: &str, r: &Rendered, app_specific: bool) {
        if app_specific {
            self.put(base, Cached::AppSpecific);
            self.put(app, Cached::Rendered(r.clone()));
        } else {
            self.put(base, Cached::Rendered(r.clone()));
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
    pub retrieval_seconds: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    pub rpc_in_flight: Gauge,
}

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

impl Default for ManifestMetrics {
    fn default() -> Self {
        Self {
            cache: Family::default(),
            rpc_seconds: Family::new_with_constructor(seconds),
            retrieval_seconds: Family::new_with_constructor(seconds),
            rpc_in_flight: Gauge::default(),
        }
    }
}

impl ManifestMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "flotilla_manifest_cache",
            "Manifest lookups by outcome (hit-memory, hit-shared, miss; reused: the app's manifest-generate-paths did not change since its last render)",
            m.cache.clone(),
        );
        registry.register(
            "flotilla_manifest_retrieval_seconds",
            "Time to get one source's manifests, by outcome (hit-memory, hit-shared, miss)",
            m.retrieval_seconds.clone(),
        );
        registry.register(
            "flotilla_repo_rpc_seconds",
            "Duration of calls to the repo-server, by outcome (resolve, generate, paths, error)",
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

fn jsonnet_vars(v: Option<&Value>) -> Vec<pb::JsonnetVar> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|x| pb::JsonnetVar {
            name: x["name"].as_str().unwrap_or_default().to_string(),
            value: x["value"].as_str().unwrap_or_default().to_string(),
            code: x["code"].as_bool().unwrap_or(false),
        })
        .collect()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// `spec.source.helm` (Argo CD's shape) on the wire.
fn wire_helm(h: &Value) -> pb::HelmSource {
    // valuesObject wins over the values string, as in Argo CD.
    let values = match h.get("valuesObject") {
        Some(obj) if obj.is_object() => serde_yaml::to_string(obj).unwrap_or_default(),
        _ => h["values"].as_str().unwrap_or_default().to_string(),
    };
    pb::HelmSource {
        value_files: strings(h.get("valueFiles")),
        values,
        parameters: h["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| pb::HelmParameter {
                name: p["name"].as_str().unwrap_or_default().to_string(),
                value: match &p["value"] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                },
                force_string: p["forceString"].as_bool().unwrap_or(false),
            })
            .collect(),
        file_parameters: h["fileParameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| pb::HelmFileParameter {
                name: p["name"].as_str().unwrap_or_default().to_string(),
                path: p["path"].as_str().unwrap_or_default().to_string(),
            })
            .collect(),
        release_name: h["releaseName"].as_str().unwrap_or_default().to_string(),
        skip_crds: h["skipCrds"].as_bool().unwrap_or(false),
        ignore_missing_value_files: h["ignoreMissingValueFiles"].as_bool().unwrap_or(false),
        pass_credentials: h["passCredentials"].as_bool().unwrap_or(false),
        capabilities: None,
    }
}

/// The wire form of an Application source.
pub fn wire_source(src: &ApplicationSource) -> pb::ApplicationSource {
    wire_source_for(src, None)
}

/// The wire form of a source rendered for a destination with `caps` (Helm and plugin sources
/// carry them; they are part of the render's cache key).
pub fn wire_source_for(
    src: &ApplicationSource,
    caps: Option<&crate::live::Capabilities>,
) -> pb::ApplicationSource {
    let caps = caps.map(|c| pb::DestinationCapabilities {
        kube_version: c.kube_version.clone(),
        api_versions: c.api_versions.clone(),
    });
    use pb::application_source::Kind;
    let kind = if src.helm.is_some() || (src.chart.is_some() && src.plugin.is_none()) {
        let mut helm = src.helm.as_ref().map(wire_helm).unwrap_or_default();
        helm.capabilities = caps;
        Some(Kind::Helm(helm))
    } else if let Some(p) = &src.plugin {
        Some(Kind::Plugin(pb::PluginSource {
            capabilities: caps,
            target_revision: src.target_revision.clone().unwrap_or_default(),
            name: p["name"].as_str().unwrap_or_default().to_string(),
            env: p["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    Some((
                        e["name"].as_str()?.to_string(),
                        e["value"].as_str().unwrap_or_default().to_string(),
                    ))
                })
                .collect(),
        }))
    } else if let Some(k) = &src.kustomize {
        Some(Kind::Kustomize(pb::KustomizeSource {
            name_prefix: k.name_prefix.clone().unwrap_or_default(),
            name_suffix: k.name_suffix.clone().unwrap_or_default(),
            images: k.images.clone().unwrap_or_default(),
            common_labels: k.common_labels.clone().unwrap_or_default(),
            common_annotations: k.common_annotations.clone().unwrap_or_default(),
            namespace: k.namespace.clone().unwrap_or_default(),
        }))
    } else {
        src.directory.as_ref().map(|d| {
            Kind::Directory(pb::DirectorySource {
                recurse: d.recurse,
                include: d.include.clone().unwrap_or_default(),
                exclude: d.exclude.clone().unwrap_or_default(),
                jsonnet: d.jsonnet.as_ref().map(|j| pb::JsonnetOptions {
                    ext_vars: jsonnet_vars(j.get("extVars")),
                    tlas: jsonnet_vars(j.get("tlas")),
                    libs: strings(j.get("libs")),
                }),
            })
        })
    };
    pb::ApplicationSource {
        repo_url: src.repo_url.clone(),
        path: src.path.clone().unwrap_or_default(),
        target_revision: src.target_revision.clone().unwrap_or_default(),
        chart: src.chart.clone().unwrap_or_default(),
        kind,
    }
}

/// The wire form of a repository and its credentials.
pub fn wire_repo(url: &str, creds: Option<&RepoCreds>) -> pb::Repository {
    let app = creds.and_then(|c| c.github_app.as_ref());
    pb::Repository {
        url: url.to_string(),
        username: creds.and_then(|c| c.username.clone()).unwrap_or_default(),
        password: creds.and_then(|c| c.password.clone()).unwrap_or_default(),
        bearer_token: creds
            .and_then(|c| c.bearer_token.clone())
            .unwrap_or_default(),
        insecure: creds.is_some_and(|c| c.insecure),
        credential_scope: creds.and_then(|c| c.project.clone()).unwrap_or_default(),
        ssh_private_key: creds
            .and_then(|c| c.ssh_private_key.clone())
            .unwrap_or_default(),
        tls_client_cert_data: creds
            .and_then(|c| c.tls_client_cert_data.clone())
            .unwrap_or_default(),
        tls_client_cert_key: creds
            .and_then(|c| c.tls_client_cert_key.clone())
            .unwrap_or_default(),
        proxy: creds.and_then(|c| c.proxy.clone()).unwrap_or_default(),
        no_proxy: creds.and_then(|c| c.no_proxy.clone()).unwrap_or_default(),
        enable_oci: creds.is_some_and(|c| c.enable_oci),
        enable_lfs: creds.is_some_and(|c| c.enable_lfs),
        github_app_id: app.map(|a| a.app_id).unwrap_or_default(),
        github_app_installation_id: app.map(|a| a.installation_id).unwrap_or_default(),
        github_app_private_key: app.map(|a| a.private_key.clone()).unwrap_or_default(),
        github_app_enterprise_base_url: app
            .and_then(|a| a.enterprise_base_url.clone())
            .unwrap_or_default(),
    }
}

/// What a render reads besides its own source: in an Application with `spec.sources`, the ref
/// sources its Helm value files and file parameters name (`$name/...`), each at its resolved
/// commit. Part of the render's cache keys.
#[derive(Debug, Clone, Default)]
pub struct RenderRefs {
    /// The Application has `spec.sources` (`$name/...` paths name ref sources).
    pub multiple_sources: bool,
    /// The ref sources the source reads, with their repositories' credentials.
    pub refs: Vec<pb::RefSource>,
}

/// The shared cache keys of a render that reads `refs`: (every app, this app), made exactly as
/// the repo-server makes them when it stores a render (`flotilla_cache::keys::for_render`).
pub fn render_cache_keys(
    commit: &str,
    src: &pb::ApplicationSource,
    scope: &str,
    refs: &RenderRefs,
    app: &str,
    namespace: &str,
) -> (String, String) {
    keys::for_render(
        commit,
        src,
        scope,
        refs.multiple_sources,
        &refs.refs,
        app,
        namespace,
    )
}

/// The shared cache keys of a render: (every app, this app), made exactly as the repo-server
/// makes them when it stores a render (`flotilla_cache::keys::for_source`).
pub fn cache_keys(
    commit: &str,
    src: &pb::ApplicationSource,
    scope: &str,
    app: &str,
    namespace: &str,
) -> (String, String) {
    keys::for_source(commit, src, scope, app, namespace)
}

/// The controller's way to desired state.
pub struct ManifestClient {
    pool: RepoPool,
    /// Resolves of one (repository, revision), one at a time; a caller reuses a resolve that
    /// began after its freshness point.
    resolving: flotilla_core::coalesce::FreshRuns<(String, String), Result<String, ManifestError>>,
    memory: MemoryCache,
    shared: Option<ManifestStore>,
    revisions: RevisionStore,
    metrics: ManifestMetrics,
}

impl ManifestClient {
    pub fn new(
        pool: RepoPool,
        memory: MemoryCache,
        shared: Option<ManifestStore>,
        revisions: RevisionStore,
        metrics: ManifestMetrics,
    ) -> Self {
        Self {
            pool,
            resolving: flotilla_core::coalesce::FreshRuns::default(),
            memory,
            shared,
            revisions,
            metrics,
        }
    }

    pub fn pool(&self) -> &RepoPool {
        &self.pool
    }

    /// Desired-state retrievals so far by outcome: (memory hits, shared-cache hits, misses).
    pub fn cache_counts(&self) -> (u64, u64, u64) {
        let get = |outcome: &'static str| {
            self.metrics
                .cache
                .get_or_create(&OutcomeLabels { outcome })
                .get()
        };
        (get("hit-memory"), get("hit-shared"), get("miss"))
    }

    /// Repo-server calls in flight now.
    pub fn rpc_in_flight(&self) -> i64 {
        self.metrics.rpc_in_flight.get()
    }

    pub fn revisions(&self) -> &RevisionStore {
        &self.revisions
    }

    fn observe(&self, outcome: &'static str, started: Instant) {
        self.metrics
            .rpc_seconds
            .get_or_create(&OutcomeLabels { outcome })
            .observe(started.elapsed().as_secs_f64());
    }

    fn outcome(&self, outcome: &'static str, started: Instant) {
        self.metrics
            .cache
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.metrics
            .retrieval_seconds
            .get_or_create(&OutcomeLabels { outcome })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Resolve `revision` of `src`'s repository (a chart version for Helm repositories) to a
    /// commit. Without `fresh_after`, the revision cache may answer. With it (a refresh was
    /// asked for at that moment), only a resolve that began after it counts: one resolve then
    /// serves every app whose refresh was asked before it began.
    pub async fn resolve(
        &self,
        repo: pb::Repository,
        src: &pb::ApplicationSource,
        revision: &str,
        fresh_after: Option<Instant>,
    ) -> Result<String, ManifestError> {
        let rev_key = if src.chart.is_empty() {
            revision.to_string()
        } else {
            format!("{}@{revision}", src.chart)
        };
        if fresh_after.is_none()
            && let Some(c) = self.revisions.get(&repo.url, &rev_key).await
        {
            return Ok(c);
        }
        let fresh_after = fresh_after.unwrap_or_else(Instant::now);
        let key = (
            flotilla_cache::keys::normalize_repo_url(&repo.url),
            rev_key.clone(),
        );
        let req = pb::ResolveRevisionRequest {
            repo: Some(repo),
            revision: revision.to_string(),
            chart: src.chart.clone(),
        };
        let (pool, metrics, revisions) = (
            self.pool.clone(),
            self.metrics.clone(),
            self.revisions.clone(),
        );
        let out = self
            .resolving
            .run(key, fresh_after, move || async move {
                let started = Instant::now();
                metrics.rpc_in_flight.inc();
                let url = req.repo.as_ref().map(|r| r.url.clone()).unwrap_or_default();
                let res = pool
                    .call(&url, |mut c| {
                        let req = pool.request(req.clone());
                        async move { c.resolve_revision(req).await }
                    })
                    .instrument(tracing::info_span!("repo_server.resolve_revision", repo = %redact_url(&url)))
                    .await;
                metrics.rpc_in_flight.dec();
                let outcome = if res.is_ok() { "resolve" } else { "error" };
                metrics
                    .rpc_seconds
                    .get_or_create(&OutcomeLabels { outcome })
                    .observe(started.elapsed().as_secs_f64());
                match res {
                    Ok(r) => {
                        let commit = r.into_inner().commit_sha;
                        revisions.put(&url, &rev_key, &commit).await;
                        Ok(commit)
                    }
                    Err(e) => Err(from_pool(e)),
                }
            })
            .await;
        out.value
    }

    /// The cached manifests under (`base`, `app_key`): memory first, then the shared cache.
    async fn lookup(&self, base: &str, app_key: &str) -> Option<Rendered> {
        let started = Instant::now();
        if let Some(hit) = self.memory.lookup(base, app_key) {
            self.outcome("hit-memory", started);
            return Some(hit);
        }
        let hit = self.shared.as_ref()?.get(base, app_key).await?;
        let r = Rendered {
            commit: hit.manifests.commit,
            objects: Arc::new(hit.manifests.objects),
            source_type: hit.manifests.source_type,
        };
        self.memory.store(base, app_key, &r, hit.app_specific);
        self.outcome("hit-shared", started);
        Some(r)
    }

    /// The manifests of `src` at `commit`: from memory, the shared cache, or a repo-server.
    /// `bypass_cache` (a hard refresh) renders again and replaces the cached copies.
    pub async fn manifests(
        &self,
        repo: pb::Repository,
        src: pb::ApplicationSource,
        app: &str,
        namespace: &str,
        commit: &str,
        bypass_cache: bool,
    ) -> Result<Rendered, ManifestError> {
        self.manifests_with(
            repo,
            src,
            &RenderRefs::default(),
            app,
            namespace,
            commit,
            bypass_cache,
        )
        .await
    }

    /// [`Self::manifests`] of a source that reads files from ref sources (`refs`): cached
    /// under keys that hold every ref source's commit, so a new commit of a values repository
    /// is a new render.
    #[allow(clippy::too_many_arguments)]
    pub async fn manifests_with(
        &self,
        repo: pb::Repository,
        src: pb::ApplicationSource,
        refs: &RenderRefs,
        app: &str,
        namespace: &str,
        commit: &str,
        bypass_cache: bool,
    ) -> Result<Rendered, ManifestError> {
        let started = Instant::now();
        let (base, app_key) =
            render_cache_keys(commit, &src, &repo.credential_scope, refs, app, namespace);
        if !bypass_cache
            && let Some(hit) = self
                .lookup(&base, &app_key)
                .instrument(tracing::info_span!("cache_lookup"))
                .await
        {
            return Ok(hit);
        }
        let rpc_started = Instant::now();
        self.metrics.rpc_in_flight.inc();
        let url = repo.url.clone();
        let req = pb::GenerateManifestsRequest {
            repo: Some(repo),
            source: Some(src),
            commit_sha: commit.to_string(),
            app_name: app.to_string(),
            namespace: namespace.to_string(),
            cache_key: base.clone(),
            app_cache_key: app_key.clone(),
            no_cache: bypass_cache,
            has_multiple_sources: refs.multiple_sources,
            ref_sources: refs.refs.clone(),
        };
        let res = self
            .pool
            .call(&url, |mut c| {
                let req = self.pool.request(req.clone());
                async move { c.generate_manifests(req).await }
            })
            .instrument(
                tracing::info_span!("repo_server.generate_manifests", repo = %redact_url(&url)),
            )
            .await;
        self.metrics.rpc_in_flight.dec();
        let resp = match res {
            Ok(r) => {
                self.observe("generate", rpc_started);
                r.into_inner()
            }
            Err(e) => {
                self.observe("error", rpc_started);
                return Err(from_pool(e));
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
        self.memory
            .store(&base, &app_key, &rendered, resp.app_specific);
        self.outcome("miss", started);
        Ok(rendered)
    }

    /// Argo CD's `UpdateRevisionForPaths`: whether anything under `paths` (from the root)
    /// differs between the Git commits `old` and `new` of `repo` (asked of a repo-server, which
    /// checks the credentials as for a render and compares tree ids).
    pub async fn paths_changed(
        &self,
        repo: pb::Repository,
        old: &str,
        new: &str,
        paths: Vec<String>,
    ) -> Result<bool, ManifestError> {
        let started = Instant::now();
        self.metrics.rpc_in_flight.inc();
        let url = repo.url.clone();
        let req = pb::UpdateRevisionForPathsRequest {
            repo: Some(repo),
            synced_commit: old.to_string(),
            commit: new.to_string(),
            paths,
        };
        let res = self
            .pool
            .call(&url, |mut c| {
                let req = self.pool.request(req.clone());
                async move { c.update_revision_for_paths(req).await }
            })
            .instrument(tracing::info_span!(
                "repo_server.update_revision_for_paths",
                repo = %redact_url(&url)
            ))
            .await;
        self.metrics.rpc_in_flight.dec();
        match res {
            Ok(r) => {
                self.observe("paths", started);
                Ok(r.into_inner().changes)
            }
            Err(e) => {
                self.observe("error", started);
                Err(from_pool(e))
            }
        }
    }

    /// Count a render reused because the app's paths did not change (`reused` in
    /// `flotilla_manifest_cache`).
    pub fn count_reuse(&self) {
        self.metrics
            .cache
            .get_or_create(&OutcomeLabels { outcome: "reused" })
            .inc();
    }

    /// What the ApplicationSet git generator reads from `repo_url` at `revision` (resolved
    /// by the repo-server, with `creds`): every directory, or the files matching globs with
    /// their contents (`ListRepoPaths`, bounded by the repo-server; nothing is cached here).
    pub async fn list_repo_paths(
        &self,
        repo_url: &str,
        creds: Option<&RepoCreds>,
        revision: &str,
        query: &RepoPathsQuery,
    ) -> Result<RepoPaths, ManifestError> {
        let (directories, file_globs, doublestar_globbing) = match query {
            RepoPathsQuery::Directories => (true, Vec::new(), false),
            RepoPathsQuery::Files { globs, doublestar } => (false, globs.clone(), *doublestar),
        };
        let req = pb::ListRepoPathsRequest {
            repo: Some(wire_repo(repo_url, creds)),
            revision: revision.to_string(),
            directories,
            file_globs,
            doublestar_globbing,
        };
        let started = Instant::now();
        self.metrics.rpc_in_flight.inc();
        let res = self
            .pool
            .call(repo_url, |mut c| {
                let req = self.pool.request(req.clone());
                async move { c.list_repo_paths(req).await }
            })
            .instrument(
                tracing::info_span!("repo_server.list_repo_paths", repo = %redact_url(repo_url)),
            )
            .await;
        self.metrics.rpc_in_flight.dec();
        match res {
            Ok(r) => {
                self.observe("list", started);
                let r = r.into_inner();
                Ok(RepoPaths {
                    commit: r.commit_sha,
                    directories: r.directories,
                    files: r.files.into_iter().map(|f| (f.path, f.content)).collect(),
                })
            }
            Err(e) => {
                self.observe("error", started);
                Err(from_pool(e))
            }
        }
    }
}

/// What [`ManifestClient::list_repo_paths`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoPathsQuery {
    /// Every directory of the commit (Argo CD's `GetGitDirectories`).
    Directories,
    /// The files matching any of `globs` (Argo CD's `GetGitFiles`): doublestar semantics when
    /// `doublestar` (`applicationsetcontroller.enable.new.git.file.globbing`), else
    /// `git ls-files -- <glob>`.
    Files {
        globs: Vec<String>,
        doublestar: bool,
    },
}

/// A repository's paths at one commit, as the git generator reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoPaths {
    /// The commit the revision resolved to.
    pub commit: String,
    /// Directory paths (no leading or trailing `/`), in Argo CD's walk order.
    pub directories: Vec<String>,
    /// (path, content) of the matching files, sorted by path.
    pub files: Vec<(String, Vec<u8>)>,
}

/// How long resolved revisions are kept by default: the refresh interval.
pub fn default_revision_ttl(refresh: Duration) -> Duration {
    refresh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::application::{DirectoryOptions, KustomizeOptions};
    use serde_json::json;

    #[test]
    fn repo_server_errors_lose_url_credentials() {
        let e = from_pool(PoolError {
            status: tonic::Status::not_found(
                "fetching https://alice:TOPSECRET-TOKEN@git.example/x.git: not found",
            ),
            unreachable: false,
        });
        assert_eq!(
            e,
            ManifestError::Failed("fetching https://***@git.example/x.git: not found".into())
        );
    }

    #[test]
    fn wire_source_carries_the_type_options() {
        let mut src = ApplicationSource {
            repo_url: "https://git/x".into(),
            path: Some("apps/web".into()),
            target_revision: Some("main".into()),
            directory: Some(DirectoryOptions {
                recurse: true,
                include: Some("*.yaml".into()),
                jsonnet: Some(json!({"extVars": [{"name": "env", "value": "prod"}],
                    "tlas": [{"name": "n", "value": "3", "code": true}], "libs": ["lib"]})),
                ..Default::default()
            }),
            ..Default::default()
        };
        let w = wire_source(&src);
        let Some(pb::application_source::Kind::Directory(d)) = w.kind else {
            panic!("directory expected");
        };
        assert!(d.recurse && d.include == "*.yaml");
        let j = d.jsonnet.expect("jsonnet");
        assert_eq!(
            (
                j.ext_vars[0].name.as_str(),
                j.tlas[0].code,
                j.libs[0].as_str()
            ),
            ("env", true, "lib")
        );
        src.kustomize = Some(KustomizeOptions {
            name_prefix: Some("dev-".into()),
            ..Default::default()
        });
        assert!(
            matches!(wire_source(&src).kind, Some(pb::application_source::Kind::Kustomize(ref k)) if k.name_prefix == "dev-")
        );
        src.helm = Some(json!({"valueFiles": ["values-prod.yaml"], "values": "a: 1",
            "valuesObject": {"b": 2}, "releaseName": "web",
            "parameters": [{"name": "replicas", "value": "3"}, {"name": "port", "value": "80", "forceString": true}]}));
        src.chart = Some("nginx".into());
        let w = wire_source(&src);
        assert_eq!(w.chart, "nginx");
        let Some(pb::application_source::Kind::Helm(h)) = w.kind else {
            panic!("helm expected");
        };
        assert_eq!(h.value_files, ["values-prod.yaml"]);
        assert!(h.values.contains("b: 2"), "valuesObject wins: {}", h.values);
        assert_eq!(h.release_name, "web");
        assert!(h.parameters[1].force_string);
    }

    #[test]
    fn the_memory_cache_keeps_one_commit_per_source() {
        let src = |path: &str| {
            wire_source(&ApplicationSource {
                repo_url: "u".into(),
                path: Some(path.into()),
                ..Default::default()
            })
        };
        let r = |commit: &str| Rendered {
            commit: commit.into(),
            objects: Arc::new(vec![json!({"kind": "ConfigMap"})]),
            source_type: "Directory".into(),
        };
        let m = MemoryCache::new(16);
        let (p1, a1) = cache_keys("c1", &src("p"), "", "a", "n");
        let (q1, qa1) = cache_keys("c1", &src("q"), "", "a", "n");
        m.store(&p1, &a1, &r("c1"), false);
        m.store(&q1, &qa1, &r("c1"), false);
        let (p2, a2) = cache_keys("c2", &src("p"), "", "a", "n");
        m.store(&p2, &a2, &r("c2"), false);
        assert!(m.lookup(&p1, &a1).is_none(), "p@c1 superseded by p@c2");
        assert_eq!(m.lookup(&p2, &a2).map(|r| r.commit), Some("c2".into()));
        assert!(
            m.lookup(&q1, &qa1).is_some(),
            "another source keeps its commit"
        );
        assert_eq!(m.len(), 2);
        // App-specific renders are kept per app.
        let (p3, a3) = cache_keys("c3", &src("p"), "", "a", "n");
        let (_, b3) = cache_keys("c3", &src("p"), "", "b", "n");
        m.store(&p3, &a3, &r("c3"), true);
        m.store(&p3, &b3, &r("c3"), true);
        assert!(m.lookup(&p3, &a3).is_some() && m.lookup(&p3, &b3).is_some());
    }

    #[test]
    fn cache_keys_share_across_apps_and_revisions_but_not_sources_or_commits() {
        let mk = |rev: &str, path: &str| {
            wire_source(&ApplicationSource {
                repo_url: "u".into(),
                path: Some(path.into()),
                target_revision: Some(rev.into()),
                kustomize: Some(KustomizeOptions {
                    common_labels: Some(
                        [("b".into(), "2".into()), ("a".into(), "1".into())].into(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        let (base, app_a) = cache_keys("c1", &mk("main", "p"), "", "a", "n");
        let (base2, app_b) = cache_keys("c1", &mk("HEAD", "p"), "", "b", "n");
        assert_eq!(
            base, base2,
            "same source and commit: one render for both apps"
        );
        assert_ne!(app_a, app_b);
        assert_ne!(base, cache_keys("c2", &mk("main", "p"), "", "a", "n").0);
        assert_ne!(base, cache_keys("c1", &mk("main", "q"), "", "a", "n").0);
        // Stable across processes: a fixed value for a fixed input.
        assert_eq!(base.len(), "flotilla:m:c1:".len() + 32);
    }

    #[test]
    fn renders_with_another_ref_commit_never_share_a_cache_entry() {
        let src = wire_source(&ApplicationSource {
            repo_url: "https://charts.example".into(),
            chart: Some("web".into()),
            target_revision: Some("1.0.0".into()),
            helm: Some(json!({"valueFiles": ["$values/prod.yaml"]})),
            ..Default::default()
        });
        let refs = |commit: &str| RenderRefs {
            multiple_sources: true,
            refs: vec![pb::RefSource {
                name: "values".into(),
                repo: Some(wire_repo("https://git.example/values", None)),
                commit_sha: commit.into(),
            }],
        };
        let (b1, a1) = render_cache_keys("1.0.0", &src, "", &refs("v1"), "web", "ns");
        let (b2, a2) = render_cache_keys("1.0.0", &src, "", &refs("v2"), "web", "ns");
        assert_ne!(b1, b2);
        assert_ne!(a1, a2);
        let m = MemoryCache::new(16);
        let r = Rendered {
            commit: "1.0.0".into(),
            objects: Arc::new(vec![json!({"kind": "ConfigMap"})]),
            source_type: "Helm".into(),
        };
        m.store(&b1, &a1, &r, true);
        assert!(m.lookup(&b1, &a1).is_some());
        assert!(
            m.lookup(&b2, &a2).is_none(),
            "a render with the values at v1 is never served for v2"
        );
        // Without refs, a source keeps its plain keys.
        assert_eq!(
            render_cache_keys("1.0.0", &src, "", &RenderRefs::default(), "web", "ns"),
            cache_keys("1.0.0", &src, "", "web", "ns")
        );
    }

    #[test]
    fn memory_cache_follows_app_specific_markers() {
        let c = MemoryCache::new(10);
        let r = |n: &str| Rendered {
            commit: n.into(),
            objects: Arc::new(Vec::new()),
            source_type: "Helm".into(),
        };
        c.store("base", "base:a", &r("a"), true);
        assert_eq!(c.lookup("base", "base:a"), Some(r("a")));
        assert_eq!(c.lookup("base", "base:b"), None);
        c.store("shared", "shared:a", &r("s"), false);
        assert_eq!(c.lookup("shared", "shared:b"), Some(r("s")));
        let small = MemoryCache::new(1);
        small.store("x", "x:a", &r("x"), false);
        small.store("y", "y:a", &r("y"), false);
        assert_eq!(small.lookup("x", "x:a"), None, "bounded");
    }
}
