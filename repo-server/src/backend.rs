//! The repo-server's work behind the gRPC API: the `ManifestBackend` trait and its Git
//! implementation (coalesced fetches per repository, one export per commit, deduplicated and
//! bounded renders).

use std::future::Future;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::Semaphore;

use crate::RenderError;
use crate::coalesce::Coalescer;
use crate::git::{self, Credentials, GitError};
use crate::metrics::{KindLabels, RenderLabels, RepoMetrics, ResultLabels};
use crate::render::kustomize::KustomizeTool;
use crate::source::{Rendered, SourceSpec};

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
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<GitError> for RepoError {
    fn from(e: GitError) -> Self {
        Self::Git(Arc::new(e))
    }
}

impl From<RenderError> for RepoError {
    fn from(e: RenderError) -> Self {
        Self::Render(Arc::new(e))
    }
}

/// What the gRPC layer needs from a backend; tests use an in-memory one.
pub trait ManifestBackend: Send + Sync + 'static {
    /// Resolve a branch, tag, SHA or HEAD (empty) to a commit.
    fn resolve(
        &self,
        repo: RepoRef,
        revision: String,
    ) -> impl Future<Output = Result<Resolved, RepoError>> + Send;

    /// Render `spec` at `commit`, or at `revision` resolved first when `commit` is empty.
    fn generate(
        &self,
        repo: RepoRef,
        spec: SourceSpec,
        revision: String,
        commit: String,
    ) -> impl Future<Output = Result<Arc<Rendered>, RepoError>> + Send;
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
    pub kustomize: Option<KustomizeTool>,
}

impl GitBackendConfig {
    pub fn new(cache_dir: PathBuf, work_dir: PathBuf) -> Self {
        Self {
            cache_dir,
            work_dir,
            parallelism: 4,
            fetch_timeout: Duration::from_secs(90),
            max_exports: 16,
            kustomize: KustomizeTool::find(),
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

/// Git-backed manifest generation.
#[derive(Clone)]
pub struct GitBackend {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: GitBackendConfig,
    metrics: RepoMetrics,
    fetches: Coalescer<String, Result<(), RepoError>>,
    exports: Coalescer<ExportKey, Result<Arc<Export>, RepoError>>,
    renders: Coalescer<RenderKey, Result<Arc<Rendered>, RepoError>>,
    export_cache: Mutex<LruCache<ExportKey, Arc<Export>>>,
    render_slots: Semaphore,
}

fn joined_error(e: String) -> RepoError {
    RepoError::Internal(e)
}

impl GitBackend {
    pub fn new(cfg: GitBackendConfig, metrics: RepoMetrics) -> Result<Self, RepoError> {
        for d in [&cfg.cache_dir, &cfg.work_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| RepoError::Internal(format!("creating {}: {e}", d.display())))?;
        }
        let cap = NonZeroUsize::new(cfg.max_exports.max(1)).unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            inner: Arc::new(Inner {
                render_slots: Semaphore::new(cfg.parallelism.max(1)),
                cfg,
                metrics,
                fetches: Coalescer::default(),
                exports: Coalescer::default(),
                renders: Coalescer::default(),
                export_cache: Mutex::new(LruCache::new(cap)),
            }),
        })
    }

    /// Fetch `repo` (joining a fetch of the same URL already running).
    async fn fetch(&self, repo: &RepoRef) -> Result<(), RepoError> {
        let inner = self.inner.clone();
        let r = repo.clone();
        let out = self
            .inner
            .fetches
            .run(repo.url.clone(), move || async move {
                let started = Instant::now();
                let cache = inner.cfg.cache_dir.clone();
                let timeout = inner.cfg.fetch_timeout;
                let url = r.url.clone();
                let res = tokio::task::spawn_blocking(move || {
                    git::fetch(&cache, &r.url, &r.creds, timeout).map(|_| ())
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
                match &res {
                    Ok(()) => tracing::info!(repo = %url, seconds = secs, "fetched"),
                    Err(e) => tracing::warn!(repo = %url, error = %e, "fetch failed"),
                }
                res
            })
            .await
            .map_err(joined_error)?;
        if out.joined {
            self.count_join("fetch");
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

    /// Whether the cache holds `commit` already.
    async fn has_commit(&self, url: &str, commit: &str) -> bool {
        let cache = self.inner.cfg.cache_dir.clone();
        let (url, commit) = (url.to_string(), commit.to_string());
        tokio::task::spawn_blocking(move || {
            git::cache_dir(&cache, &url).join("HEAD").exists()
                && git::open_cache(&cache, &url)
                    .map(|r| git::has_commit(&r, &commit))
                    .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }

    async fn resolve_fetched(&self, url: &str, revision: &str) -> Result<String, RepoError> {
        let cache = self.inner.cfg.cache_dir.clone();
        let (url, revision) = (url.to_string(), revision.to_string());
        tokio::task::spawn_blocking(move || {
            let repo = git::open_cache(&cache, &url)?;
            git::resolve(&repo, &url, &revision)
        })
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))?
        .map_err(RepoError::from)
    }

    /// The tree of `commit` on disk, written once and shared.
    async fn export(&self, url: &str, commit: &str) -> Result<Arc<Export>, RepoError> {
        let key = (url.to_string(), commit.to_string());
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
        let out = self
            .inner
            .exports
            .run(key, move || async move {
                let (url, commit) = k.clone();
                let cache = inner.cfg.cache_dir.clone();
                let work = inner.cfg.work_dir.clone();
                let res = tokio::task::spawn_blocking(move || -> Result<Export, RepoError> {
                    let dir = tempfile::Builder::new()
                        .prefix(&format!("{}-", &commit[..commit.len().min(12)]))
                        .tempdir_in(&work)
                        .map_err(|e| RepoError::Internal(format!("work dir: {e}")))?;
                    let repo = git::open_cache(&cache, &url)?;
                    git::export(&repo, &url, &commit, &dir.path().join("tree"))?;
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
            self.count_join("export");
        }
        out.value
    }

    async fn render(
        &self,
        repo: &RepoRef,
        spec: SourceSpec,
        commit: String,
    ) -> Result<Arc<Rendered>, RepoError> {
        let key = (commit.clone(), spec.digest());
        let this = self.clone();
        let url = repo.url.clone();
        let out = self
            .inner
            .renders
            .run(key, move || async move {
                let m = &this.inner.metrics;
                m.renders_waiting.inc();
                let permit = this.inner.render_slots.acquire().await;
                m.renders_waiting.dec();
                let _permit = permit.map_err(|e| RepoError::Internal(e.to_string()))?;
                m.renders_running.inc();
                let started = Instant::now();
                let res = this.render_now(&url, spec, commit).await;
                m.renders_running.dec();
                let (source_type, result) = match &res {
                    Ok(r) => (r.source_type, "ok"),
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
                res
            })
            .await
            .map_err(joined_error)?;
        if out.joined {
            self.count_join("render");
        }
        out.value
    }

    async fn render_now(
        &self,
        url: &str,
        spec: SourceSpec,
        commit: String,
    ) -> Result<Arc<Rendered>, RepoError> {
        let export = self.export(url, &commit).await?;
        let tool = self.inner.cfg.kustomize.clone();
        let path = spec.path.clone();
        let (objects, source_type) = tokio::task::spawn_blocking(move || {
            crate::render::render(&export.root(), &spec, tool.as_ref())
        })
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))??;
        tracing::debug!(repo = %url, %commit, %path, objects = objects.len(), "rendered");
        Ok(Arc::new(Rendered {
            commit,
            objects,
            source_type,
        }))
    }
}

impl ManifestBackend for GitBackend {
    async fn resolve(&self, repo: RepoRef, revision: String) -> Result<Resolved, RepoError> {
        if repo.url.is_empty() {
            return Err(RepoError::Invalid("repository URL is empty".into()));
        }
        if git::is_full_sha(&revision) && self.has_commit(&repo.url, &revision).await {
            return Ok(Resolved {
                commit: revision.to_lowercase(),
            });
        }
        self.fetch(&repo).await?;
        let commit = self.resolve_fetched(&repo.url, &revision).await?;
        Ok(Resolved { commit })
    }

    async fn generate(
        &self,
        repo: RepoRef,
        spec: SourceSpec,
        revision: String,
        commit: String,
    ) -> Result<Arc<Rendered>, RepoError> {
        let commit = if commit.is_empty() {
            self.resolve(repo.clone(), revision).await?.commit
        } else if !git::is_full_sha(&commit) {
            return Err(RepoError::Invalid(format!(
                "commit {commit:?} is not a full SHA"
            )));
        } else {
            let commit = commit.to_lowercase();
            if !self.has_commit(&repo.url, &commit).await {
                self.fetch(&repo).await?;
                if !self.has_commit(&repo.url, &commit).await {
                    return Err(GitError::UnknownRevision {
                        url: repo.url.clone(),
                        revision: commit,
                    }
                    .into());
                }
            }
            commit
        };
        self.render(&repo, spec, commit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceKind;
    use std::path::Path;
    use std::process::Command;

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
            .resolve(repo.clone(), "main".into())
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
                    b.generate(repo, spec, String::new(), commit).await
                }));
            }
        }
        for (n, t) in tasks.into_iter().enumerate() {
            let r = t.await.expect("task").expect("renders");
            assert_eq!(
                r.objects[0]["metadata"]["name"],
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
        let err = backend
            .generate(
                repo.clone(),
                spec(&url, "broken"),
                "main".into(),
                String::new(),
            )
            .await
            .expect_err("bad yaml");
        assert!(matches!(err, RepoError::Render(_)), "{err}");
        assert!(err.to_string().contains("x.yaml"), "{err}");
        let err = backend
            .resolve(repo.clone(), "no-such-branch".into())
            .await
            .expect_err("unknown");
        assert!(err.to_string().contains("no-such-branch"), "{err}");
        let err = backend
            .generate(
                repo,
                spec(&url, "apps/app-0"),
                String::new(),
                "f".repeat(40),
            )
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
            .resolve(repo.clone(), "main".into())
            .await
            .expect("r1");
        std::fs::write(
            origin.path().join("apps/app-0/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: renamed}\n",
        )
        .expect("write");
        git(origin.path(), &["commit", "-qam", "rename"]);
        let second = backend
            .resolve(repo.clone(), "main".into())
            .await
            .expect("r2");
        assert_ne!(first, second);
        let r = backend
            .generate(repo, spec(&url, "apps/app-0"), "main".into(), String::new())
            .await
            .expect("render");
        assert_eq!(r.commit, second.commit);
        assert_eq!(r.objects[0]["metadata"]["name"], "renamed");
        assert_eq!(fetches(&metrics), 3);
    }
}
