//! The repo-server's work behind the gRPC API: the `ManifestBackend` trait and its
//! implementation over Git, Helm repositories and OCI registries (coalesced fetches, one export per commit,
//! deduplicated and bounded renders, the shared cache with a render lock across replicas).

use std::future::Future;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use flotilla_cache::ManifestStore;
use flotilla_cache::codec::Manifests;

use crate::RenderError;
use crate::git::{self, Credentials, GitError};
use crate::helm_repo::{HelmRepoError, HelmRepos};
use crate::metrics::{KindLabels, RenderLabels, RepoMetrics, ResultLabels};
use crate::render::{RenderInput, Renderers};
use crate::source::{Rendered, SourceSpec};
use flotilla_core::coalesce::Coalescer;
use flotilla_core::redact::redact_url;

/// A repository and how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoRef {
    pub url: String,
    pub creds: Credentials,
}

/// A revision resolved to a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub commit: String,
}

/// Why a request failed. Cheap to clone (shared between deduplicated callers).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Git(Arc<GitError>),
    #[error(transparent)]
    Render(Arc<RenderError>),
    #[error(transparent)]
    Helm(HelmRepoError),
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A bound was exceeded, or something was asked that is not served (a Git LFS object
    /// through `ListRepoPaths`); a retry will not help without a change.
    #[error("{0}")]
    Refused(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<GitError> for RepoError {
    fn from(e: GitError) -> Self {
        Self::Git(Arc::new(e))
    }
}

impl From<HelmRepoError> for RepoError {
    fn from(e: HelmRepoError) -> Self {
        Self::Helm(e)
    }
}

impl From<crate::git_listing::ListError> for RepoError {
    fn from(e: crate::git_listing::ListError) -> Self {
        use crate::git_listing::ListError;
        match e {
            ListError::Invalid(m) => Self::Invalid(m),
            e @ ListError::Refused { .. } => Self::Refused(e.to_string()),
            ListError::Git(g) => Self::from(g),
        }
    }
}

/// What the ApplicationSet git generator asks of one repository (`ListRepoPaths`).
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub repo: RepoRef,
    /// Branch, tag, SHA or HEAD (empty).
    pub revision: String,
    pub wanted: crate::git_listing::Wanted,
}

/// A listing, and the commit it is of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    pub commit: String,
    pub listing: crate::git_listing::Listing,
}

impl From<RenderError> for RepoError {
    fn from(e: RenderError) -> Self {
        Self::Render(Arc::new(e))
    }
}

/// One render request.
#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    pub repo: RepoRef,
    pub spec: SourceSpec,
    /// Resolved first when `commit` is empty.
    pub revision: String,
    /// A full commit SHA (Git), a chart version (Helm repository) or a chart's tag and
    /// manifest digest (OCI registry, [`crate::oci::commit`]).
    pub commit: String,
    /// The digest of the wire source this request renders (`flotilla_cache::keys::
    /// source_digest`), computed by the server from the request itself; the shared cache keys
    /// are made from it and the commit. Empty: do not use the shared cache.
    pub source_digest: String,
    /// Render again even if a cached render exists (a hard refresh).
    pub no_cache: bool,
}

/// A render, and where it came from.
#[derive(Debug, Clone)]
pub struct Generated {
    pub rendered: Arc<Rendered>,
    /// The output depends on the Application (it was cached under the app key).
    pub app_specific: bool,
    /// Another replica rendered it; it came from the shared cache.
    pub from_cache: bool,
}

/// What the gRPC layer needs from a backend; tests use an in-memory one.
pub trait ManifestBackend: Send + Sync + 'static {
    /// Resolve a branch, tag, SHA or HEAD (empty) to a commit; with `chart` set the repository
    /// is a Helm repository and `revision` a chart version or constraint (for an OCI registry
    /// also a digest pin; the commit is then `<version>-sha256.<hex>`, see
    /// [`crate::oci::commit`]).
    fn resolve(
        &self,
        repo: RepoRef,
        revision: String,
        chart: String,
    ) -> impl Future<Output = Result<Resolved, RepoError>> + Send;

    /// Render a source at a commit (see [`GenerateRequest`]).
    fn generate(
        &self,
        req: GenerateRequest,
    ) -> impl Future<Output = Result<Generated, RepoError>> + Send;

    /// Renders running, waiting for a slot, and slots in all.
    fn load(&self) -> (usize, usize, usize);

    /// Whether anything under `paths` (from the root; `""` is the whole tree) differs between
    /// the commits `old` and `new` of a Git repository. Backends without Git say it did (a
    /// render is then made, as always).
    fn paths_changed(
        &self,
        repo: RepoRef,
        old: String,
        new: String,
        paths: Vec<String>,
    ) -> impl Future<Output = Result<bool, RepoError>> + Send {
        let _ = (repo, old, new, paths);
        async { Ok(true) }
    }

    /// The directories, or the files matching globs, of a Git repository at a revision (see
    /// [`crate::git_listing`]). Backends without Git answer that it is not supported.
    fn list_paths(
        &self,
        req: ListRequest,
    ) -> impl Future<Output = Result<Listed, RepoError>> + Send {
        let _ = req;
        async {
            Err(RepoError::Invalid(
                "this repo-server lists no repository paths".into(),
            ))
        }
    }
}

/// Settings of the Git backend.
#[derive(Debug, Clone)]
pub struct GitBackendConfig {
    /// Bare repository caches, one directory per URL.
    pub cache_dir: PathBuf,
    /// Where commits are written out for rendering.
    pub work_dir: PathBuf,
    /// Renders running at once (like Argo CD's `--parallelismlimit`).
    pub parallelism: usize,
    pub fetch_timeout: Duration,
    /// Written-out commits kept for reuse (a monorepo renders many paths of one commit).
    pub max_exports: usize,
    pub renderers: Arc<Renderers>,
    /// Unpacked charts from Helm repositories.
    pub helm_dir: PathBuf,
    /// The shared manifest cache (Redis), if any: renders are written there and other
    /// replicas' renders read from it.
    pub shared: Option<ManifestStore>,
    /// Names this replica in render locks.
    pub identity: String,
    /// How long to wait for another replica's render of the same key before rendering too.
    pub lock_wait: Duration,
    /// Recent renders kept in this process (by commit and source), so repeated requests for
    /// one source at one commit are rendered once even without a shared cache.
    pub recent_renders: usize,
    /// Serve `file://` repositories (off by default: a file URL can name any path the
    /// repo-server can read, other tenants' caches included).
    pub allow_file_urls: bool,
    /// How long one render may take; its tools are killed after it.
    pub render_timeout: Duration,
    /// How long a successful fetch with some credentials vouches for them: within it, cached
    /// commits of that repository are served to requests with the same credentials without
    /// asking the Git server again. Requests with other credentials (or none) always ask.
    pub access_ttl: Duration,
    /// Known SSH hosts and TLS CAs (Argo CD's mounted ConfigMaps).
    pub transport: crate::transport::TransportConfig,
    /// Check Git submodules out (Argo CD's default).
    pub git_submodules: bool,
}

impl GitBackendConfig {
    pub fn new(cache_dir: PathBuf, work_dir: PathBuf) -> Self {
        Self {
            parallelism: 4,
            fetch_timeout: Duration::from_secs(90),
            max_exports: 16,
            renderers: Arc::new(Renderers::discover()),
            helm_dir: work_dir.join("helm-charts"),
            shared: None,
            identity: format!("repo-server-{}", std::process::id()),
            lock_wait: Duration::from_secs(10),
            recent_renders: 512,
            allow_file_urls: false,
            render_timeout: crate::render::exec::DEFAULT_TIMEOUT,
            access_ttl: Duration::from_secs(180),
            transport: crate::transport::TransportConfig::default(),
            git_submodules: true,
            work_dir,
            cache_dir,
        }
    }
}

/// A commit's tree on disk; deleted when the last user drops it.
#[derive(Debug)]
pub struct Export {
    dir: tempfile::TempDir,
}

impl Export {
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("tree")
    }
}

type ExportKey = (String, String);
type RenderKey = (String, String);

/// The tree a source is rendered from: a Git export, or an unpacked Helm chart.
enum Tree {
    Git(Arc<Export>),
    Chart(PathBuf),
}

impl Tree {
    fn root(&self) -> PathBuf {
        match self {
            Self::Git(e) => e.root(),
            Self::Chart(p) => p.clone(),
        }
    }
}

/// A ref source a render reads (`$name/...`), checked readable with the caller's credentials
/// and present in the cache at `commit`; written out only when the render runs.
#[derive(Debug, Clone)]
struct ReadyRef {
    name: String,
    repo: RepoRef,
    commit: String,
}

/// Git-backed manifest generation.
#[derive(Clone)]
pub struct GitBackend {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: GitBackendConfig,
    metrics: RepoMetrics,
    /// Fetches per repository, one at a time; a request is served by a fetch that began after
    /// it arrived (so it sees every push made before it asked).
    fetches: flotilla_core::coalesce::FreshRuns<(String, String), Result<(), RepoError>>,
    git: git::GitCache,
    /// One fetch at a time into a repository's bare cache, whatever the credentials.
    fetch_locks: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// (repository, credential digest) → when a fetch with those credentials last succeeded.
    access: Mutex<std::collections::HashMap<(String, String), Instant>>,
    exports: Coalescer<ExportKey, Result<Arc<Export>, RepoError>>,
    renders: Coalescer<RenderKey, Result<Generated, RepoError>>,
    export_cache: Mutex<LruCache<ExportKey, Arc<Export>>>,
    render_slots: crate::slots::FairSlots,
    helm: Arc<HelmRepos>,
    recent: Mutex<LruCache<RenderKey, Generated>>,
}

fn joined_error(e: String) -> RepoError {
    RepoError::Internal(e)
}

/// Entries kept in the access table before old ones are swept.
const MAX_ACCESS_ENTRIES: usize = 10_000;

impl Inner {
    fn vouch(&self, key: (String, String)) {
        if let Ok(mut a) = self.access.lock() {
            if a.len() >= MAX_ACCESS_ENTRIES {
                let ttl = self.cfg.access_ttl;
                a.retain(|_, at| at.elapsed() < ttl);
            }
            if a.len() < MAX_ACCESS_ENTRIES {
                a.insert(key, Instant::now());
            }
        }
    }

    fn vouched(&self, key: &(String, String)) -> bool {
        self.access
            .lock()
            .ok()
            .and_then(|a| a.get(key).map(|at| at.elapsed() < self.cfg.access_ttl))
            .unwrap_or(false)
    }
}

impl GitBackend {
    pub fn new(cfg: GitBackendConfig, metrics: RepoMetrics) -> Result<Self, RepoError> {
        for d in [&cfg.cache_dir, &cfg.work_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| RepoError::Internal(format!("creating {}: {e}", d.display())))?;
        }
        let cap = NonZeroUsize::new(cfg.max_exports.max(1)).unwrap_or(NonZeroUsize::MIN);
        let git = git::GitCache::open(&cfg.cache_dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                helm: Arc::new(
                    HelmRepos::new(cfg.helm_dir.clone())
                        .with_transport(cfg.transport.clone())
                        .with_metrics(metrics.clone()),
                ),
                recent: Mutex::new(LruCache::new(
                    NonZeroUsize::new(cfg.recent_renders.max(1)).unwrap_or(NonZeroUsize::MIN),
                )),
                render_slots: crate::slots::FairSlots::new(cfg.parallelism.max(1)),
                git,
                fetch_locks: Mutex::default(),
                access: Mutex::default(),
                cfg,
                metrics,
                fetches: flotilla_core::coalesce::FreshRuns::default(),
                exports: Coalescer::default(),
                renders: Coalescer::default(),
                export_cache: Mutex::new(LruCache::new(cap)),
            }),
        })
    }

    /// Fetch `repo`: a fetch of the same URL with the same credentials that began after this
    /// call is shared; one that began before is waited for, then fetched again. A success
    /// vouches for these credentials (see [`GitBackendConfig::access_ttl`]).
    #[tracing::instrument(name = "git_fetch", skip_all, fields(repo = %redact_url(&repo.url)))]
    async fn fetch(&self, repo: &RepoRef) -> Result<(), RepoError> {
        let inner = self.inner.clone();
        let r = repo.clone();
        let arrived = Instant::now();
        let access_key = (repo.url.clone(), repo.creds.digest());
        let out = self
            .inner
            .fetches
            .run(access_key.clone(), arrived, move || async move {
                let lock = inner
                    .fetch_locks
                    .lock()
                    .map(|mut m| m.entry(r.url.clone()).or_default().clone())
                    .unwrap_or_default();
                let _one_at_a_time = lock.lock().await;
                let started = Instant::now();
                let cache = inner.git.clone();
                let timeout = inner.cfg.fetch_timeout;
                let transport = inner.cfg.transport.clone();
                let shown = redact_url(&r.url);
                let res = tokio::task::spawn_blocking(move || {
                    git::fetch(&cache, &r.url, &r.creds, &transport, timeout).map(|_| ())
                })
                .await
                .map_err(|e| RepoError::Internal(e.to_string()))
                .and_then(|r| r.map_err(RepoError::from));
                let result = if res.is_ok() { "ok" } else { "error" };
                let secs = started.elapsed().as_secs_f64();
                let labels = ResultLabels { result };
                inner
                    .metrics
                    .fetch_seconds
                    .get_or_create(&labels)
                    .observe(secs);
                inner.metrics.fetches.get_or_create(&labels).inc();
                let repo_label = inner.metrics.repo_label(&access_key.0);
                inner.metrics.git_fetch(repo_label, secs, res.is_ok());
                match &res {
                    Ok(()) => {
                        tracing::info!(repo = %shown, seconds = secs, "fetched");
                        inner.vouch(access_key);
                    }
                    Err(e) => tracing::warn!(repo = %shown, error = %e, "fetch failed"),
                }
                res
            })
            .await;
        if out.reused {
            self.count_join(crate::metrics::join::FETCH);
        }
        out.value
    }

    fn count_join(&self, kind: &'static str) {
        self.inner
            .metrics
            .dedup_joins
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Refuse a repository URL this server must not fetch: unknown schemes, `file://` unless
    /// allowed, dot-segments (`/../` would leave an allowed prefix) and control characters.
    fn check_url(&self, url: &str) -> Result<(), RepoError> {
        let invalid = |why: &str| {
            Err(RepoError::Invalid(format!(
                "repository {}: {why}",
                redact_url(url)
            )))
        };
        if url.is_empty() {
            return invalid("URL is empty");
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return invalid("URL holds whitespace or control characters");
        }
        let lower = url.to_ascii_lowercase();
        let scheme_ok = ["https://", "http://", "git://", "ssh://"]
            .iter()
            .any(|s| lower.starts_with(s))
            || crate::transport::scp_like(url).is_some();
        if lower.starts_with("file://") {
            if !self.inner.cfg.allow_file_urls {
                return invalid(
                    "file:// repositories are disabled (start the repo-server with --allow-file-repos to allow them)",
                );
            }
        } else if !scheme_ok {
            return invalid(
                "only https://, http://, git://, ssh://, user@host:path (and file:// when allowed) are served",
            );
        }
        if flotilla_core::redact::has_dot_segments(url) {
            return invalid("URL holds a dot-segment (/./ or /../)");
        }
        Ok(())
    }

    /// Make sure `repo`'s credentials may read it before anything cached from it is served:
    /// a fetch with them succeeded within the access TTL, or one is made now.
    async fn ensure_access(&self, repo: &RepoRef) -> Result<(), RepoError> {
        if self.inner.vouched(&(repo.url.clone(), repo.creds.digest())) {
            return Ok(());
        }
        self.fetch(repo).await
    }

    /// The same for a Helm repository: its index is read with the caller's credentials.
    async fn ensure_helm_access(
        &self,
        repo: &RepoRef,
        chart: &str,
        version: &str,
    ) -> Result<(), RepoError> {
        let key = (format!("helm:{}", repo.url), repo.creds.digest());
        if self.inner.vouched(&key) {
            return Ok(());
        }
        self.inner
            .helm
            .resolve(&repo.url, &repo.creds, chart, version)
            .await?;
        self.inner.vouch(key);
        Ok(())
    }

    /// The access-table key of an OCI chart: its repository and chart, and the credentials.
    fn oci_access_key(repo: &RepoRef, chart: &str) -> (String, String) {
        (format!("oci:{}\0{chart}", repo.url), repo.creds.digest())
    }

    /// Resolve `revision` of the OCI chart `chart` with the caller's credentials (see
    /// [`HelmRepos::oci_resolve`]); a success vouches for them.
    async fn resolve_oci(
        &self,
        repo: &RepoRef,
        revision: &str,
        chart: &str,
    ) -> Result<String, RepoError> {
        if chart.is_empty() {
            return Err(RepoError::Invalid(format!(
                "repository {} is an OCI registry: the source must name a Helm chart (`chart`)",
                redact_url(&repo.url)
            )));
        }
        let commit = self
            .inner
            .helm
            .oci_resolve(&repo.url, &repo.creds, chart, revision)
            .await?;
        tracing::debug!(repo = %redact_url(&repo.url), %chart, %revision, %commit, "resolved OCI chart");
        self.inner.vouch(Self::oci_access_key(repo, chart));
        Ok(commit)
    }

    /// The same for an OCI chart: the caller's credentials read the chart's manifest (by
    /// digest) from the registry within the access TTL, or now.
    async fn ensure_oci_access(
        &self,
        repo: &RepoRef,
        chart: &str,
        digest: &crate::oci::Digest,
    ) -> Result<(), RepoError> {
        let key = Self::oci_access_key(repo, chart);
        if self.inner.vouched(&key) {
            return Ok(());
        }
        self.inner
            .helm
            .oci_check_access(&repo.url, &repo.creds, chart, digest)
            .await?;
        self.inner.vouch(key);
        Ok(())
    }

    /// Render a chart from an OCI registry. The commit is the chart's manifest digest (with
    /// its tag, [`crate::oci::commit`]), so renders are cached under something immutable; a
    /// request without one (or with a version or constraint in its place) is resolved first.
    #[allow(clippy::too_many_arguments)]
    async fn generate_oci(
        &self,
        repo: RepoRef,
        refs: Vec<ReadyRef>,
        spec: SourceSpec,
        revision: String,
        commit: String,
        source_digest: String,
        no_cache: bool,
    ) -> Result<Generated, RepoError> {
        let commit = if crate::oci::parse_commit(&commit).is_some() {
            commit
        } else {
            let wanted = if commit.is_empty() { revision } else { commit };
            self.resolve_oci(&repo, &wanted, &spec.chart).await?
        };
        let Some((_, digest)) = crate::oci::parse_commit(&commit) else {
            return Err(RepoError::Internal(format!(
                "resolved OCI chart {commit:?} is not a digest"
            )));
        };
        // Nothing cached (the chart on disk, a render here or in the shared cache) is served
        // before the caller's credentials were shown to read the chart from the registry.
        self.ensure_oci_access(&repo, &spec.chart, &digest).await?;
        if let Some(hit) = self
            .shared_hit(&commit, &source_digest, &spec, no_cache)
            .await
        {
            return Ok(hit);
        }
        let dir = self
            .inner
            .helm
            .oci_chart(&repo.url, &repo.creds, &spec.chart, &digest)
            .await?;
        self.render(
            Tree::Chart(dir),
            refs,
            spec,
            commit,
            source_digest,
            no_cache,
        )
        .await
    }

    /// Whether the cache `repo` fetches into holds `commit` already.
    async fn has_commit(&self, repo: &RepoRef, commit: &str) -> bool {
        let cache = self.inner.git.clone();
        let (url, creds, commit) = (repo.url.clone(), repo.creds.clone(), commit.to_string());
        tokio::task::spawn_blocking(move || {
            cache
                .dir(&git::cache_name(&url, &creds))
                .join("HEAD")
                .exists()
                && git::open_cache_as(&cache, &url, &creds)
                    .map(|r| git::has_commit(&r, &commit))
                    .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }

    async fn resolve_fetched(&self, repo: &RepoRef, revision: &str) -> Result<String, RepoError> {
        let cache = self.inner.git.clone();
        let (url, creds, revision) = (repo.url.clone(), repo.creds.clone(), revision.to_string());
        tokio::task::spawn_blocking(move || {
            let repo = git::open_cache_as(&cache, &url, &creds)?;
            git::resolve(&repo, &url, &revision)
        })
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))?
        .map_err(RepoError::from)
    }

    /// The tree of `commit` on disk, written once and shared.
    /// The tree of `commit` on disk, submodules and LFS objects included (fetched with
    /// `repo`'s credentials, so exports are kept apart per credentials).
    async fn export(&self, repo: &RepoRef, commit: &str) -> Result<Arc<Export>, RepoError> {
        let key = (
            repo.url.clone(),
            format!("{commit}:{}", repo.creds.digest()),
        );
        if let Some(e) = self
            .inner
            .export_cache
            .lock()
            .ok()
            .and_then(|mut c| c.get(&key).cloned())
        {
            return Ok(e);
        }
        let inner = self.inner.clone();
        let k = key.clone();
        let creds = repo.creds.clone();
        let commit = commit.to_string();
        let out = self
            .inner
            .exports
            .run(key, move || async move {
                let url = k.0.clone();
                let cache = inner.git.clone();
                let work = inner.cfg.work_dir.clone();
                let opts = git::ExportOptions {
                    submodules: inner.cfg.git_submodules,
                    allow_file_urls: inner.cfg.allow_file_urls,
                    fetch_timeout: inner.cfg.fetch_timeout,
                    ..Default::default()
                };
                let transport = inner.cfg.transport.clone();
                let res = tokio::task::spawn_blocking(move || -> Result<Export, RepoError> {
                    let dir = tempfile::Builder::new()
                        .prefix(&format!("{}-", &commit[..commit.len().min(12)]))
                        .tempdir_in(&work)
                        .map_err(|e| RepoError::Internal(format!("work dir: {e}")))?;
                    let repo = git::open_cache_as(&cache, &url, &creds)?;
                    let remote = git::Remote {
                        cache: &cache,
                        url: &url,
                        creds: &creds,
                        transport: &transport,
                    };
                    git::export_with(&repo, &remote, &commit, &dir.path().join("tree"), &opts)?;
                    Ok(Export { dir })
                })
                .await
                .map_err(|e| RepoError::Internal(e.to_string()))?;
                let export = Arc::new(res?);
                inner.metrics.exports.inc();
                if let Ok(mut c) = inner.export_cache.lock() {
                    c.put(k, export.clone());
                }
                Ok(export)
            })
            .await
            .map_err(joined_error)?;
        if out.joined {
            self.count_join(crate::metrics::join::EXPORT);
        }
        out.value
    }

    /// Render `spec` from `tree` at `commit`: identical requests (same commit, same source,
    /// same app when the kind is app-specific) run once here, and, with a shared cache, once
    /// across replicas (the first takes a short lock; the others wait for its result).
    #[tracing::instrument(name = "render", skip_all, fields(path = %spec.path, commit = %commit))]
    async fn render(
        &self,
        tree: Tree,
        refs: Vec<ReadyRef>,
        spec: SourceSpec,
        commit: String,
        source_digest: String,
        no_cache: bool,
    ) -> Result<Generated, RepoError> {
        let root = tree.root();
        let renderers = self.inner.cfg.renderers.clone();
        let (kind, spec) = {
            let (root, spec) = (root.clone(), spec);
            tokio::task::spawn_blocking(move || renderers.detect(&root, &spec).map(|k| (k, spec)))
                .await
                .map_err(|e| RepoError::Internal(e.to_string()))??
        };
        let app_specific = kind.app_specific();
        let key = (commit.clone(), spec.render_key(&kind));
        if !no_cache
            && let Some(g) = self
                .inner
                .recent
                .lock()
                .ok()
                .and_then(|mut r| r.get(&key).cloned())
        {
            self.count_join(crate::metrics::join::RECENT);
            return Ok(g);
        }
        let this = self.clone();
        let recent_key = key.clone();
        let (app_name, app_namespace) = (spec.app_name.clone(), spec.namespace.clone());
        let out = self
            .inner
            .renders
            .run(key, move || async move {
                // The keys come from what this render is: the commit and the digest of the
                // request's own source (never from the caller).
                let keys = (!source_digest.is_empty()).then(|| {
                    let base = flotilla_cache::keys::manifests(&commit, &source_digest);
                    let app =
                        flotilla_cache::keys::app_manifests(&base, &spec.app_name, &spec.namespace);
                    CacheKeys { base, app }
                });
                let shared = this.inner.cfg.shared.as_ref().zip(keys.as_ref());
                let mut locked = false;
                if let Some((store, keys)) = shared {
                    locked = store.lock(&keys.base, &this.inner.cfg.identity).await;
                    // The lock may be free because another replica just finished: look again.
                    if locked
                        && !no_cache
                        && let Some(hit) = store.get(&keys.base, &keys.app).await
                    {
                        store.unlock(&keys.base).await;
                        return Ok(from_hit(hit));
                    }
                    if !locked {
                        this.count_join(crate::metrics::join::RENDER_ACROSS_REPLICAS);
                        if let Some(hit) = store
                            .wait_for(
                                &keys.base,
                                &keys.app,
                                this.inner.cfg.lock_wait,
                                Duration::from_millis(50),
                            )
                            .await
                        {
                            return Ok(from_hit(hit));
                        }
                        tracing::warn!(key = %keys.base, "another replica's render did not arrive in time; rendering here");
                    }
                }
                let res = match this.export_refs(&refs).await {
                    Ok(exports) => {
                        let mut kind = kind;
                        if spec.multiple_sources
                            && let crate::source::SourceKind::Helm(h) = &mut kind
                        {
                            h.ref_roots = Some(
                                exports.iter().map(|(n, e)| (n.clone(), e.root())).collect(),
                            );
                        }
                        this.render_now(tree, exports, spec, kind, commit).await
                    }
                    Err(e) => Err(e),
                }
                .map(|rendered| Generated {
                        rendered,
                        app_specific,
                        from_cache: false,
                    });
                if let Some((store, keys)) = shared {
                    if let Ok(g) = &res {
                        let m = Manifests {
                            commit: g.rendered.commit.clone(),
                            source_digest: source_digest.clone(),
                            app: String::new(),
                            source_type: g.rendered.source_type.to_string(),
                            objects: g.rendered.objects.clone(),
                        };
                        store
                            .put(&m, (&app_name, &app_namespace), app_specific)
                            .await;
                    }
                    if locked {
                        store.unlock(&keys.base).await;
                    }
                }
                if let (Ok(g), Ok(mut recent)) = (&res, this.inner.recent.lock()) {
                    recent.put(recent_key, g.clone());
                }
                res
            })
            .await
            .map_err(joined_error)?;
        if out.joined {
            self.count_join(crate::metrics::join::RENDER);
        }
        out.value
    }

    /// Write out the ref sources a render reads (each commit once, shared and reused).
    async fn export_refs(
        &self,
        refs: &[ReadyRef],
    ) -> Result<Vec<(String, Arc<Export>)>, RepoError> {
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            out.push((r.name.clone(), self.export(&r.repo, &r.commit).await?));
        }
        Ok(out)
    }

    /// Check the ref sources `spec` reads: Git repositories the server may fetch, named once
    /// each, at full commit SHAs the caller's credentials can read (fetched when not cached).
    /// Runs before anything cached is served, so a render that read a private values
    /// repository is never handed to someone who cannot read it.
    async fn ready_refs(&self, spec: &SourceSpec) -> Result<Vec<ReadyRef>, RepoError> {
        let mut out: Vec<ReadyRef> = Vec::with_capacity(spec.refs.len());
        for r in &spec.refs {
            let invalid =
                |why: String| Err(RepoError::Invalid(format!("ref source ${}: {why}", r.name)));
            if r.name.is_empty() || r.name.contains(['/', '$']) {
                return invalid("the name must be non-empty, without '/' or '$'".into());
            }
            if out.iter().any(|o| o.name == r.name) {
                return invalid("named twice".into());
            }
            if crate::oci::is_oci(&r.repo.url, r.repo.creds.enable_oci) {
                return invalid(format!(
                    "{} is an OCI registry; ref sources must be Git repositories",
                    redact_url(&r.repo.url)
                ));
            }
            self.check_url(&r.repo.url)?;
            if !git::is_full_sha(&r.commit) {
                return invalid(format!("commit {:?} is not a full SHA", r.commit));
            }
            let commit = self.known_commit(&r.repo, &r.commit).await?;
            out.push(ReadyRef {
                name: r.name.clone(),
                repo: r.repo.clone(),
                commit,
            });
        }
        Ok(out)
    }

    /// The full SHA `commit` of `repo`, lowercased, once the caller's credentials were shown
    /// to read the repository (nothing cached, in Git, on disk or in the shared cache, is
    /// served before that); fetched when the cache does not hold it yet.
    async fn known_commit(&self, repo: &RepoRef, commit: &str) -> Result<String, RepoError> {
        let commit = commit.to_lowercase();
        self.ensure_access(repo).await?;
        if !self.has_commit(repo, &commit).await {
            self.fetch(repo).await?;
            if !self.has_commit(repo, &commit).await {
                return Err(GitError::UnknownRevision {
                    url: redact_url(&repo.url),
                    revision: commit,
                }
                .into());
            }
        }
        Ok(commit)
    }

    async fn render_now(
        &self,
        tree: Tree,
        refs: Vec<(String, Arc<Export>)>,
        spec: SourceSpec,
        kind: crate::source::SourceKind,
        commit: String,
    ) -> Result<Arc<Rendered>, RepoError> {
        let m = &self.inner.metrics;
        m.renders_waiting.inc();
        let slot_key = flotilla_cache::keys::normalize_repo_url(&spec.repo_url);
        let waiting = Instant::now();
        let slot = self.inner.render_slots.acquire(&slot_key).await;
        m.render_slot_wait(waiting.elapsed().as_secs_f64());
        m.renders_waiting.dec();
        m.renders_running.inc();
        let started = Instant::now();
        let renderers = self.inner.cfg.renderers.clone();
        let (url, path) = (redact_url(&spec.repo_url), spec.path.clone());
        let rev = commit.clone();
        let timeout = self.inner.cfg.render_timeout;
        let task = tokio::task::spawn_blocking(move || {
            // The ref sources' trees stay on disk until the render is over.
            let _refs = refs;
            let root = tree.root();
            renderers.render(&RenderInput {
                root: &root,
                spec: &spec,
                kind: &kind,
                revision: &rev,
                timeout,
            })
        });
        // Tools are killed at the timeout by the renderer itself; this bounds the rest (an
        // in-process evaluation) so the slot is freed and the caller answered in time.
        let res = tokio::time::timeout(timeout + Duration::from_secs(2), task).await;
        m.renders_running.dec();
        drop(slot);
        let res = match res {
            Ok(Ok(Ok(r))) => Ok(r),
            Ok(Ok(Err(e))) => Err(RepoError::from(e)),
            Ok(Err(e)) => Err(RepoError::Internal(e.to_string())),
            Err(_) => Err(RepoError::from(RenderError::Timeout {
                tool: "render",
                path: path.clone(),
                after: timeout,
            })),
        };
        let (source_type, result) = match &res {
            Ok((_, t)) => (*t, "ok"),
            Err(_) => ("unknown", "error"),
        };
        let labels = RenderLabels {
            source_type,
            result,
        };
        m.render_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        m.renders.get_or_create(&labels).inc();
        let (objects, source_type) = res?;
        tracing::debug!(repo = %url, %commit, %path, objects = objects.len(), "rendered");
        Ok(Arc::new(Rendered {
            commit,
            objects,
            source_type,
        }))
    }
}

/// The shared cache keys of one render: every app's, and this app's.
struct CacheKeys {
    base: String,
    app: String,
}

fn from_hit(hit: flotilla_cache::Hit) -> Generated {
    let source_type = match hit.manifests.source_type.as_str() {
        "Kustomize" => "Kustomize",
        "Helm" => "Helm",
        "Plugin" => "Plugin",
        _ => "Directory",
    };
    Generated {
        rendered: Arc::new(Rendered {
            commit: hit.manifests.commit,
            objects: hit.manifests.objects,
            source_type,
        }),
        app_specific: hit.app_specific,
        from_cache: true,
    }
}

impl ManifestBackend for GitBackend {
    fn load(&self) -> (usize, usize, usize) {
        self.inner.render_slots.load()
    }

    /// Resolved as `ResolveRevision` resolves (URL policy, a fresh fetch with the caller's
    /// credentials, or a cached commit only for credentials vouched for within the access
    /// TTL), then read from the bare cache. Nothing of it is cached.
    async fn paths_changed(
        &self,
        repo: RepoRef,
        old: String,
        new: String,
        paths: Vec<String>,
    ) -> Result<bool, RepoError> {
        if crate::oci::is_oci(&repo.url, repo.creds.enable_oci) || old == new {
            return Ok(old != new);
        }
        for c in [&old, &new] {
            if c.len() != 40 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(RepoError::Invalid(format!(
                    "UpdateRevisionForPaths needs full commit SHAs, not {c:?}"
                )));
            }
        }
        // Both commits through the same access check as a render (fetched with these
        // credentials when the cache does not vouch for them).
        self.resolve(repo.clone(), old.clone(), String::new())
            .await?;
        self.resolve(repo.clone(), new.clone(), String::new())
            .await?;
        let cache = self.inner.git.clone();
        tokio::task::spawn_blocking(move || -> Result<bool, RepoError> {
            let r = git::open_cache_as(&cache, &repo.url, &repo.creds)?;
            crate::git_listing::paths_changed(&r, &repo.url, &old, &new, &paths)
                .map_err(RepoError::from)
        })
        .await
        .map_err(|e| RepoError::Invalid(format!("comparing commits stopped: {e}")))?
    }

    async fn list_paths(&self, req: ListRequest) -> Result<Listed, RepoError> {
        let ListRequest {
            repo,
            revision,
            wanted,
        } = req;
        if crate::oci::is_oci(&repo.url, repo.creds.enable_oci) {
            return Err(RepoError::Invalid(format!(
                "repository {} is an OCI registry; the git generator reads Git repositories",
                redact_url(&repo.url)
            )));
        }
        crate::git_listing::check(&wanted)?;
        let commit = self
            .resolve(repo.clone(), revision, String::new())
            .await?
            .commit;
        let cache = self.inner.git.clone();
        tokio::task::spawn_blocking(move || -> Result<Listed, RepoError> {
            let r = git::open_cache_as(&cache, &repo.url, &repo.creds)?;
            let listing = crate::git_listing::list(
                &r,
                &repo.url,
                &commit,
                &wanted,
                &crate::git_listing::Limits::default(),
                repo.creds.enable_lfs,
            )?;
            Ok(Listed { commit, listing })
        })
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))?
    }

    async fn resolve(
        &self,
        repo: RepoRef,
        revision: String,
        chart: String,
    ) -> Result<Resolved, RepoError> {
        if crate::oci::is_oci(&repo.url, repo.creds.enable_oci) {
            let commit = self.resolve_oci(&repo, &revision, &chart).await?;
            return Ok(Resolved { commit });
        }
        self.check_url(&repo.url)?;
        if !chart.is_empty() {
            let version = self
                .inner
                .helm
                .resolve(&repo.url, &repo.creds, &chart, &revision)
                .await?;
            return Ok(Resolved { commit: version });
        }
        if git::is_full_sha(&revision) && self.has_commit(&repo, &revision).await {
            // Known commit: served only to credentials that can still read the repository.
            self.ensure_access(&repo).await?;
            return Ok(Resolved {
                commit: revision.to_lowercase(),
            });
        }
        self.fetch(&repo).await?;
        let commit = self.resolve_fetched(&repo, &revision).await?;
        Ok(Resolved { commit })
    }

    async fn generate(&self, req: GenerateRequest) -> Result<Generated, RepoError> {
        let GenerateRequest {
            repo,
            spec,
            revision,
            commit,
            source_digest,
            no_cache,
        } = req;
        let oci = crate::oci::is_oci(&repo.url, repo.creds.enable_oci);
        if !oci {
            self.check_url(&repo.url)?;
        }
        if spec.repo_url != repo.url {
            return Err(RepoError::Invalid(format!(
                "the source's repoURL {} is not the repository {} the request names",
                redact_url(&spec.repo_url),
                redact_url(&repo.url)
            )));
        }
        let refs = self.ready_refs(&spec).await?;
        if oci {
            if spec.chart.is_empty() {
                return Err(RepoError::Invalid(format!(
                    "repository {} is an OCI registry: the source must name a Helm chart (`chart`)",
                    redact_url(&repo.url)
                )));
            }
            return self
                .generate_oci(repo, refs, spec, revision, commit, source_digest, no_cache)
                .await;
        }
        if !spec.chart.is_empty() {
            // The caller's credentials must read the Helm repository before a cached chart or
            // render of it is served.
            let wanted = if commit.is_empty() {
                &revision
            } else {
                &commit
            };
            self.ensure_helm_access(&repo, &spec.chart, wanted).await?;
            let version = if commit.is_empty() {
                self.resolve(repo.clone(), revision, spec.chart.clone())
                    .await?
                    .commit
            } else {
                commit
            };
            if let Some(hit) = self
                .shared_hit(&version, &source_digest, &spec, no_cache)
                .await
            {
                return Ok(hit);
            }
            let pass_credentials =
                matches!(&spec.kind, crate::source::SourceKind::Helm(h) if h.pass_credentials);
            let dir = self
                .inner
                .helm
                .chart_with(
                    &repo.url,
                    &repo.creds,
                    &spec.chart,
                    &version,
                    pass_credentials,
                )
                .await?;
            return self
                .render(
                    Tree::Chart(dir),
                    refs,
                    spec,
                    version,
                    source_digest,
                    no_cache,
                )
                .await;
        }
        let commit = if commit.is_empty() {
            // A fresh fetch with the caller's credentials.
            self.resolve(repo.clone(), revision, String::new())
                .await?
                .commit
        } else if !git::is_full_sha(&commit) {
            return Err(RepoError::Invalid(format!(
                "commit {commit:?} is not a full SHA"
            )));
        } else {
            self.known_commit(&repo, &commit).await?
        };
        if let Some(hit) = self
            .shared_hit(&commit, &source_digest, &spec, no_cache)
            .await
        {
            return Ok(hit);
        }
        let export = self.export(&repo, &commit).await?;
        self.render(
            Tree::Git(export),
            refs,
            spec,
            commit,
            source_digest,
            no_cache,
        )
        .await
    }
}

impl GitBackend {
    /// Another replica's render of this source at `commit`, from the shared cache.
    async fn shared_hit(
        &self,
        commit: &str,
        source_digest: &str,
        spec: &SourceSpec,
        no_cache: bool,
    ) -> Option<Generated> {
        let store = self.inner.cfg.shared.as_ref()?;
        if no_cache || source_digest.is_empty() || commit.is_empty() {
            return None;
        }
        let base = flotilla_cache::keys::manifests(commit, source_digest);
        let app = flotilla_cache::keys::app_manifests(&base, &spec.app_name, &spec.namespace);
        store.get(&base, &app).await.map(from_hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceKind;
    use std::path::Path;
    use std::process::Command;

    #[tokio::test]
    async fn oci_sources_need_a_chart_and_scheme_less_urls_need_enable_oci() {
        let (backend, _m, _work) = mk_backend(1);
        let oci = RepoRef {
            url: "oci://127.0.0.1:9/charts".into(),
            ..Default::default()
        };
        let err = backend
            .resolve(oci.clone(), "1.0.0".into(), String::new())
            .await
            .expect_err("no chart");
        assert!(matches!(err, RepoError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("must name a Helm chart"), "{err}");
        let err = gen_(
            &backend,
            oci.clone(),
            spec(&oci.url, ""),
            "1.0.0",
            String::new(),
        )
        .await
        .expect_err("no chart");
        assert!(err.to_string().contains("must name a Helm chart"), "{err}");
        let bare = RepoRef {
            url: "127.0.0.1:9/charts".into(),
            ..Default::default()
        };
        let err = backend
            .resolve(bare, "1.0.0".into(), "web".into())
            .await
            .expect_err("not a URL the server serves");
        assert!(err.to_string().contains("only https://"), "{err}");
        let err = backend
            .resolve(
                RepoRef {
                    url: "oci://u:secret@127.0.0.1:9/charts".into(),
                    ..Default::default()
                },
                "1.0.0".into(),
                "web".into(),
            )
            .await
            .expect_err("user info");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A monorepo with `n` apps, one ConfigMap each.
    fn mk_monorepo(n: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q"]);
        for i in 0..n {
            let p = dir.path().join(format!("apps/app-{i}"));
            std::fs::create_dir_all(&p).expect("mkdir");
            std::fs::write(
                p.join("cm.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app-{i}}}\n"),
            )
            .expect("write");
        }
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-qm", "apps"]);
        dir
    }

    fn mk_backend(parallelism: usize) -> (GitBackend, RepoMetrics, tempfile::TempDir) {
        let work = tempfile::tempdir().expect("tempdir");
        let mut cfg = GitBackendConfig::new(work.path().join("repos"), work.path().join("work"));
        cfg.allow_file_urls = true;
        cfg.parallelism = parallelism;
        let metrics = RepoMetrics::default();
        (
            GitBackend::new(cfg, metrics.clone()).expect("backend"),
            metrics,
            work,
        )
    }

    fn spec(url: &str, path: &str) -> SourceSpec {
        SourceSpec {
            repo_url: url.into(),
            path: path.into(),
            kind: SourceKind::Auto,
            ..Default::default()
        }
    }

    async fn gen_(
        b: &GitBackend,
        repo: RepoRef,
        spec: SourceSpec,
        revision: &str,
        commit: String,
    ) -> Result<Generated, RepoError> {
        b.generate(GenerateRequest {
            repo,
            spec,
            revision: revision.into(),
            commit,
            source_digest: String::new(),
            no_cache: false,
        })
        .await
    }

    fn fetches(m: &RepoMetrics) -> u64 {
        m.fetches
            .get_or_create(&ResultLabels { result: "ok" })
            .get()
    }

    fn renders(m: &RepoMetrics) -> u64 {
        m.renders
            .get_or_create(&RenderLabels {
                source_type: "Directory",
                result: "ok",
            })
            .get()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identical_concurrent_renders_compute_once_and_a_monorepo_exports_once() {
        let origin = mk_monorepo(20);
        let url = format!("file://{}", origin.path().display());
        let (backend, metrics, _work) = mk_backend(2);
        let repo = RepoRef {
            url: url.clone(),
            ..Default::default()
        };
        let commit = backend
            .resolve(repo.clone(), "main".into(), String::new())
            .await
            .expect("resolve")
            .commit;
        assert_eq!(fetches(&metrics), 1);
        // 20 apps x 5 identical requests each, all at once.
        let mut tasks = Vec::new();
        for i in 0..20 {
            for _ in 0..5 {
                let b = backend.clone();
                let (repo, spec, commit) = (
                    repo.clone(),
                    spec(&url, &format!("apps/app-{i}")),
                    commit.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    gen_(&b, repo, spec, "", commit).await
                }));
            }
        }
        for (n, t) in tasks.into_iter().enumerate() {
            let r = t.await.expect("task").expect("renders");
            assert_eq!(
                r.rendered.objects[0]["metadata"]["name"],
                format!("app-{}", n / 5).as_str()
            );
        }
        // Every render is exact per (commit, path); concurrent duplicates joined (the rest
        // were computed only after an earlier identical one finished).
        assert!(
            renders(&metrics) >= 20 && renders(&metrics) < 100,
            "{}",
            renders(&metrics)
        );
        assert_eq!(
            metrics.exports.get(),
            1,
            "one export of the commit for all paths"
        );
        assert_eq!(fetches(&metrics), 1, "a known commit needs no fetch");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_render_error_is_typed_and_a_missing_revision_is_not_found() {
        let origin = mk_monorepo(1);
        std::fs::create_dir_all(origin.path().join("broken")).expect("mkdir");
        std::fs::write(origin.path().join("broken/x.yaml"), "kind: [").expect("write");
        git(origin.path(), &["add", "."]);
        git(origin.path(), &["commit", "-qm", "broken"]);
        let url = format!("file://{}", origin.path().display());
        let (backend, _m, _work) = mk_backend(1);
        let repo = RepoRef {
            url: url.clone(),
            ..Default::default()
        };
        let err = gen_(
            &backend,
            repo.clone(),
            spec(&url, "broken"),
            "main",
            String::new(),
        )
        .await
        .expect_err("bad yaml");
        assert!(matches!(err, RepoError::Render(_)), "{err}");
        assert!(err.to_string().contains("x.yaml"), "{err}");
        let err = backend
            .resolve(repo.clone(), "no-such-branch".into(), String::new())
            .await
            .expect_err("unknown");
        assert!(err.to_string().contains("no-such-branch"), "{err}");
        let err = gen_(&backend, repo, spec(&url, "apps/app-0"), "", "f".repeat(40))
            .await
            .expect_err("unknown commit");
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_commit_arrives_with_the_next_resolve() {
        let origin = mk_monorepo(1);
        let url = format!("file://{}", origin.path().display());
        let (backend, metrics, _work) = mk_backend(1);
        let repo = RepoRef {
            url: url.clone(),
            ..Default::default()
        };
        let first = backend
            .resolve(repo.clone(), "main".into(), String::new())
            .await
            .expect("r1");
        std::fs::write(
            origin.path().join("apps/app-0/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: renamed}\n",
        )
        .expect("write");
        git(origin.path(), &["commit", "-qam", "rename"]);
        let second = backend
            .resolve(repo.clone(), "main".into(), String::new())
            .await
            .expect("r2");
        assert_ne!(first, second);
        let r = gen_(
            &backend,
            repo,
            spec(&url, "apps/app-0"),
            "main",
            String::new(),
        )
        .await
        .expect("render")
        .rendered;
        assert_eq!(r.commit, second.commit);
        assert_eq!(r.objects[0]["metadata"]["name"], "renamed");
        assert_eq!(fetches(&metrics), 3);
    }

    /// A stand-in `helm` (the test machine may have none): prints a ConfigMap named after the
    /// release, so app-specific renders can be told apart.
    fn fake_helm(dir: &Path) -> PathBuf {
        let p = dir.join("helm");
        std::fs::write(
            &p,
            "#!/bin/sh\nprintf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: %s}\\n' \"$4\"\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn apps_share_a_render_unless_it_depends_on_the_app() {
        let origin = mk_monorepo(1);
        std::fs::create_dir_all(origin.path().join("chart")).expect("mkdir");
        std::fs::write(
            origin.path().join("chart/Chart.yaml"),
            "name: c\nversion: 0.1.0\n",
        )
        .expect("write");
        git(origin.path(), &["add", "."]);
        git(origin.path(), &["commit", "-qm", "chart"]);
        let url = format!("file://{}", origin.path().display());
        let work = tempfile::tempdir().expect("tempdir");
        let mut cfg = GitBackendConfig::new(work.path().join("repos"), work.path().join("work"));
        cfg.allow_file_urls = true;
        cfg.renderers = Arc::new(Renderers::new(
            None,
            Some(fake_helm(work.path())),
            Vec::new(),
        ));
        let metrics = RepoMetrics::default();
        let backend = GitBackend::new(cfg, metrics.clone()).expect("backend");
        let repo = RepoRef {
            url: url.clone(),
            ..Default::default()
        };
        let commit = backend
            .resolve(repo.clone(), "main".into(), String::new())
            .await
            .expect("resolve")
            .commit;
        let app = |name: &str, path: &str| SourceSpec {
            app_name: name.into(),
            namespace: format!("{name}-ns"),
            ..spec(&url, path)
        };
        for name in ["a", "b", "c"] {
            let g = gen_(
                &backend,
                repo.clone(),
                app(name, "apps/app-0"),
                "",
                commit.clone(),
            )
            .await
            .expect("directory");
            assert!(!g.app_specific);
        }
        assert_eq!(
            renders(&metrics),
            1,
            "one render of the directory for three apps"
        );
        for name in ["a", "b"] {
            let g = gen_(
                &backend,
                repo.clone(),
                app(name, "chart"),
                "",
                commit.clone(),
            )
            .await
            .expect("helm");
            assert!(g.app_specific);
            assert_eq!(g.rendered.objects[0]["metadata"]["name"], name);
        }
        let helm_renders = metrics
            .renders
            .get_or_create(&RenderLabels {
                source_type: "Helm",
                result: "ok",
            })
            .get();
        assert_eq!(helm_renders, 2, "a release per app");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chart_reads_values_from_a_ref_source_at_its_commit() {
        // The chart in one repository, its values in another.
        let charts = mk_monorepo(1);
        std::fs::create_dir_all(charts.path().join("chart")).expect("mkdir");
        std::fs::write(
            charts.path().join("chart/Chart.yaml"),
            "name: c\nversion: 0.1.0\n",
        )
        .expect("write");
        git(charts.path(), &["add", "."]);
        git(charts.path(), &["commit", "-qm", "chart"]);
        let values = mk_monorepo(1);
        std::fs::write(values.path().join("prod.yaml"), "color: green").expect("write");
        git(values.path(), &["add", "."]);
        git(values.path(), &["commit", "-qm", "v1"]);
        let v1 = git(values.path(), &["rev-parse", "HEAD"]);
        std::fs::write(values.path().join("prod.yaml"), "color: red").expect("write");
        git(values.path(), &["commit", "-qam", "v2"]);
        let v2 = git(values.path(), &["rev-parse", "HEAD"]);

        let work = tempfile::tempdir().expect("tempdir");
        let mut cfg = GitBackendConfig::new(work.path().join("repos"), work.path().join("work"));
        cfg.allow_file_urls = true;
        let helm = work.path().join("helm");
        std::fs::write(
            &helm,
            "#!/bin/sh\nv=\"\"\nwhile [ $# -gt 0 ]; do\n  [ \"$1\" = --values ] && { v=\"$v$(cat \"$2\")\"; shift; }\n  shift\ndone\nprintf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: x}\\ndata: {values: \"%s\"}\\n' \"$v\"\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        cfg.renderers = Arc::new(Renderers::new(None, Some(helm), Vec::new()));
        let metrics = RepoMetrics::default();
        let backend = GitBackend::new(cfg, metrics.clone()).expect("backend");

        let chart_url = format!("file://{}", charts.path().display());
        let values_url = format!("file://{}", values.path().display());
        let chart_repo = RepoRef {
            url: chart_url.clone(),
            ..Default::default()
        };
        let with_ref = |name: &str, url: &str, commit: &str| SourceSpec {
            kind: SourceKind::Helm(crate::source::HelmOptions {
                value_files: vec!["$values/prod.yaml".into()],
                ..Default::default()
            }),
            app_name: "web".into(),
            multiple_sources: true,
            refs: vec![crate::source::SourceRef {
                name: name.into(),
                repo: RepoRef {
                    url: url.into(),
                    ..Default::default()
                },
                commit: commit.into(),
            }],
            ..spec(&chart_url, "chart")
        };
        let value_of = |g: &Generated| g.rendered.objects[0]["data"]["values"].clone();
        let g = gen_(
            &backend,
            chart_repo.clone(),
            with_ref("values", &values_url, &v1),
            "main",
            String::new(),
        )
        .await
        .expect("renders with the values at v1");
        assert_eq!(value_of(&g), "color: green");
        // Another values commit is another render, never the one remembered for v1.
        let g = gen_(
            &backend,
            chart_repo.clone(),
            with_ref("values", &values_url, &v2),
            "main",
            String::new(),
        )
        .await
        .expect("renders with the values at v2");
        assert_eq!(value_of(&g), "color: red");
        let again = gen_(
            &backend,
            chart_repo.clone(),
            with_ref("values", &values_url, &v1),
            "main",
            String::new(),
        )
        .await
        .expect("v1 again");
        assert_eq!(value_of(&again), "color: green");

        // The ref must name a known commit of a repository the server may read.
        let err = gen_(
            &backend,
            chart_repo.clone(),
            with_ref("values", &values_url, &"f".repeat(40)),
            "main",
            String::new(),
        )
        .await
        .expect_err("unknown commit");
        assert!(err.to_string().contains("not found"), "{err}");
        for (name, url, commit, why) in [
            ("values", values_url.as_str(), "main", "not a full SHA"),
            ("values", "ftp://host/values", v1.as_str(), "only https://"),
            ("", values_url.as_str(), v1.as_str(), "non-empty"),
            (
                "values",
                "oci://127.0.0.1:9/charts",
                v1.as_str(),
                "ref sources must be Git",
            ),
        ] {
            let err = gen_(
                &backend,
                chart_repo.clone(),
                with_ref(name, url, commit),
                "main",
                String::new(),
            )
            .await
            .expect_err(why);
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
        // A name the source uses but the request does not pass.
        let err = gen_(
            &backend,
            chart_repo,
            with_ref("other", &values_url, &v1),
            "main",
            String::new(),
        )
        .await
        .expect_err("unknown ref");
        assert!(err.to_string().contains("\"$values\""), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_with_a_shared_cache_render_once() {
        let origin = mk_monorepo(1);
        let url = format!("file://{}", origin.path().display());
        let shared = flotilla_cache::ManifestStore::new(
            Arc::new(flotilla_cache::MemoryStore::new(100)),
            Duration::from_secs(600),
            flotilla_cache::CacheMetrics::default(),
        );
        let mut replicas = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..2 {
            let work = tempfile::tempdir().expect("tempdir");
            let mut cfg =
                GitBackendConfig::new(work.path().join("repos"), work.path().join("work"));
            cfg.allow_file_urls = true;
            cfg.shared = Some(shared.clone());
            cfg.identity = format!("repo-server-{i}");
            let metrics = RepoMetrics::default();
            replicas.push((
                GitBackend::new(cfg, metrics.clone()).expect("backend"),
                metrics,
            ));
            dirs.push(work);
        }
        let repo = RepoRef {
            url: url.clone(),
            ..Default::default()
        };
        let commit = replicas[0]
            .0
            .resolve(repo.clone(), "main".into(), String::new())
            .await
            .expect("resolve")
            .commit;
        let keys = "src".to_string();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            for (b, _) in &replicas {
                let (b, repo, commit, keys) =
                    (b.clone(), repo.clone(), commit.clone(), keys.clone());
                let spec = spec(&url, "apps/app-0");
                tasks.push(tokio::spawn(async move {
                    b.generate(GenerateRequest {
                        repo,
                        spec,
                        revision: String::new(),
                        commit,
                        source_digest: keys,
                        no_cache: false,
                    })
                    .await
                }));
            }
        }
        let mut from_cache = 0;
        for t in tasks {
            let g = t.await.expect("task").expect("renders");
            assert_eq!(g.rendered.objects[0]["metadata"]["name"], "app-0");
            from_cache += usize::from(g.from_cache);
        }
        let total: u64 = replicas.iter().map(|(_, m)| renders(m)).sum();
        assert_eq!(total, 1, "one render across both replicas");
        assert!(
            from_cache >= 1,
            "the other replica was served from the cache"
        );
    }
}
