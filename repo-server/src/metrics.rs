//! The repo-server's Prometheus metrics: Git fetch and render durations, requests by method and
//! outcome, in-flight deduplication, and the render queue (waiting and running); Argo CD's
//! `git_request_total`/`git_request_duration_seconds`/`repo_pending_request_total` shapes,
//! which `--argocd-metrics also|instead` exports under Argo CD's names too, with Argo CD's
//! other repo-server series (`argocd_git_fetch_fail_total`, the render-slot wait, Redis).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use flotilla_core::metrics_mode::ArgoCdMetrics;

/// `argocd_git_fetch_fail_total`'s labels. Flotilla fetches every ref of a repository at once,
/// for whichever revision asked first, so `revision` is empty.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitFailLabels {
    pub repo: String,
    pub revision: &'static str,
}

/// `argocd_redis_request_total`'s labels (repo-server).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgoRedisLabels {
    pub initiator: &'static str,
    pub failed: &'static str,
}

/// `argocd_redis_request_duration_seconds`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgoInitiatorLabels {
    pub initiator: &'static str,
}

/// Argo CD's `initiator` value for the repo-server.
pub const INITIATOR: &str = "argocd-repo-server";

/// Argo CD's repo-server series that do not share Flotilla's (other buckets or labels).
#[derive(Debug)]
pub struct ArgoRepoMetrics {
    pub git_request_seconds: Histograms<GitRequestLabels>,
    pub git_fetch_fail: Family<GitFailLabels, Counter>,
    pub parallelism_wait: Histogram,
    pub redis_requests: Family<ArgoRedisLabels, Counter>,
    pub redis_seconds: Histograms<ArgoInitiatorLabels>,
}

fn argocd_git_buckets() -> Histogram {
    // Argo CD's argocd_git_request_duration_seconds buckets.
    Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0, 20.0])
}

fn argocd_redis_buckets() -> Histogram {
    // Argo CD's argocd_redis_request_duration_seconds buckets (repo-server).
    Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0])
}

impl ArgoRepoMetrics {
    fn register(registry: &mut Registry) -> std::sync::Arc<Self> {
        let m = std::sync::Arc::new(Self {
            git_request_seconds: Family::new_with_constructor(argocd_git_buckets),
            git_fetch_fail: Family::default(),
            // Argo CD's argocd_repo_parallelism_wait_duration_seconds buckets.
            parallelism_wait: Histogram::new([
                0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0, 20.0, 60.0, 120.0,
            ]),
            redis_requests: Family::default(),
            redis_seconds: Family::new_with_constructor(argocd_redis_buckets),
        });
        registry.register(
            "argocd_git_request_duration_seconds",
            "Git requests duration seconds.",
            m.git_request_seconds.clone(),
        );
        registry.register(
            "argocd_git_fetch_fail",
            "Number of git fetch requests failures by repo server",
            m.git_fetch_fail.clone(),
        );
        registry.register(
            "argocd_repo_parallelism_wait_duration_seconds",
            "Time spent waiting for the repo-server manifest generation parallelism semaphore.",
            m.parallelism_wait.clone(),
        );
        registry.register(
            "argocd_redis_request",
            "Number of redis requests executed during application reconciliation.",
            m.redis_requests.clone(),
        );
        registry.register(
            "argocd_redis_request_duration_seconds",
            "Redis requests duration seconds.",
            m.redis_seconds.clone(),
        );
        m
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RenderLabels {
    pub source_type: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Argo CD's `argocd_git_request_*` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitRequestLabels {
    pub repo: String,
    pub request_type: &'static str,
}

/// `flotilla_oci_request*` labels: the chart's registry repository (`oci://host/path/chart`)
/// and the request (`tags`, `manifest`, `blob`, `token`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OciRequestLabels {
    pub repo: String,
    pub request_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoLabels {
    pub repo: String,
}

/// Values of the `kind` label of `flotilla_repo_dedup_joins_total`.
pub mod join {
    pub const FETCH: &str = "fetch";
    pub const EXPORT: &str = "export";
    pub const RECENT: &str = "recent";
    pub const RENDER: &str = "render";
    pub const RENDER_ACROSS_REPLICAS: &str = "render-across-replicas";
    /// Every kind, so each series exists from the start.
    pub const ALL: [&str; 5] = [FETCH, EXPORT, RECENT, RENDER, RENDER_ACROSS_REPLICAS];
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric the repo-server exports.
#[derive(Clone)]
pub struct RepoMetrics {
    pub fetch_seconds: Histograms<ResultLabels>,
    pub render_seconds: Histograms<RenderLabels>,
    pub fetches: Family<ResultLabels, Counter>,
    pub renders: Family<RenderLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub dedup_joins: Family<KindLabels, Counter>,
    pub exports: Counter,
    pub renders_running: Gauge,
    pub renders_waiting: Gauge,
    pub git_requests: Family<GitRequestLabels, Counter>,
    pub git_request_seconds: Histograms<GitRequestLabels>,
    /// HTTP requests to OCI registries (Helm charts), by repository and request type.
    pub oci_requests: Family<OciRequestLabels, Counter>,
    pub oci_request_seconds: Histograms<OciRequestLabels>,
    pub pending: Family<RepoLabels, Gauge>,
    /// Which names are exported.
    pub mode: ArgoCdMetrics,
    /// Argo CD's series of their own (Argo CD's `argocd_git_request_total` and
    /// `argocd_repo_pending_request_total` are `git_requests` and `pending` under a second name).
    pub argocd: Option<std::sync::Arc<ArgoRepoMetrics>>,
    /// Repository label values handed out so far (see [`RepoMetrics::repo_label`]).
    repo_labels: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// Most distinct `repo` label values; later repositories share the value `other`, so no
/// caller can grow the metric series without bound.
pub const MAX_REPO_LABELS: usize = 1000;

impl Default for RepoMetrics {
    fn default() -> Self {
        Self {
            fetch_seconds: Family::new_with_constructor(seconds),
            render_seconds: Family::new_with_constructor(seconds),
            fetches: Family::default(),
            renders: Family::default(),
            requests: Family::default(),
            dedup_joins: Family::default(),
            exports: Counter::default(),
            renders_running: Gauge::default(),
            renders_waiting: Gauge::default(),
            git_requests: Family::default(),
            git_request_seconds: Family::new_with_constructor(seconds),
            oci_requests: Family::default(),
            oci_request_seconds: Family::new_with_constructor(seconds),
            pending: Family::default(),
            mode: ArgoCdMetrics::Off,
            argocd: None,
            repo_labels: Default::default(),
        }
    }
}

impl RepoMetrics {
    /// The `repo` label for `url`: credentials redacted, at most [`MAX_REPO_LABELS`] values.
    pub fn repo_label(&self, url: &str) -> String {
        let label = flotilla_core::redact::redact_url(url);
        let Ok(mut seen) = self.repo_labels.lock() else {
            return "other".into();
        };
        if seen.contains(&label) || seen.len() < MAX_REPO_LABELS {
            seen.insert(label.clone());
            label
        } else {
            "other".into()
        }
    }

    /// Create the metrics and register them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        Self::register_mode(registry, ArgoCdMetrics::Off)
    }

    /// [`Self::register`] under Flotilla's names, Argo CD's, or both (`mode`): with `instead`
    /// the Flotilla series that have an Argo CD counterpart are left out.
    pub fn register_mode(registry: &mut Registry, mode: ArgoCdMetrics) -> Self {
        let m = Self {
            mode,
            argocd: mode.argocd().then(|| ArgoRepoMetrics::register(registry)),
            ..Self::default()
        };
        if mode.argocd() {
            // The same series as Flotilla's, with Argo CD's labels already.
            registry.register(
                "argocd_git_request",
                "Number of git requests performed by repo server",
                m.git_requests.clone(),
            );
            registry.register(
                "argocd_repo_pending_request_total",
                "Number of pending requests requiring repository lock",
                m.pending.clone(),
            );
        }
        registry.register(
            "flotilla_repo_git_fetch_seconds",
            "Duration of Git fetches, by result",
            m.fetch_seconds.clone(),
        );
        registry.register(
            "flotilla_repo_render_seconds",
            "Duration of manifest renders, by source type and result",
            m.render_seconds.clone(),
        );
        registry.register(
            "flotilla_repo_git_fetches",
            "Git fetches, by result",
            m.fetches.clone(),
        );
        registry.register(
            "flotilla_repo_renders",
            "Manifest renders actually computed (deduplicated requests not counted), by source type and result",
            m.renders.clone(),
        );
        registry.register(
            "flotilla_repo_requests",
            "gRPC requests, by method and status code",
            m.requests.clone(),
        );
        registry.register(
            "flotilla_repo_dedup_joins",
            "Requests that joined an identical computation already in flight (fetch, export, render)",
            m.dedup_joins.clone(),
        );
        for kind in join::ALL {
            let _ = m.dedup_joins.get_or_create(&KindLabels { kind });
        }
        registry.register(
            "flotilla_repo_exports",
            "Commits written out of the Git cache for rendering",
            m.exports.clone(),
        );
        registry.register(
            "flotilla_repo_renders_running",
            "Renders running now (bounded by --parallelism)",
            m.renders_running.clone(),
        );
        registry.register(
            "flotilla_repo_renders_waiting",
            "Renders queued for a free slot",
            m.renders_waiting.clone(),
        );
        if mode.flotilla() {
            registry.register(
                "flotilla_git_request",
                "Git requests (fetch), by repository",
                m.git_requests.clone(),
            );
            registry.register(
                "flotilla_git_request_duration_seconds",
                "Git request durations, by repository",
                m.git_request_seconds.clone(),
            );
        }
        registry.register(
            "flotilla_oci_request",
            "HTTP requests to OCI registries for Helm charts (tags, manifest, blob, token), by repository",
            m.oci_requests.clone(),
        );
        registry.register(
            "flotilla_oci_request_duration_seconds",
            "OCI registry request durations, by repository and request type",
            m.oci_request_seconds.clone(),
        );
        if mode.flotilla() {
            registry.register(
                "flotilla_repo_pending_request_total",
                "Requests being served per repository (resolving, fetching, waiting for or running a render)",
                m.pending.clone(),
            );
        }
        m
    }

    /// Count one Git fetch of the repository labelled `repo` (see [`Self::repo_label`]).
    pub fn git_fetch(&self, repo: String, seconds: f64, ok: bool) {
        let git = GitRequestLabels {
            repo,
            request_type: "fetch",
        };
        self.git_requests.get_or_create(&git).inc();
        if self.mode.flotilla() {
            self.git_request_seconds
                .get_or_create(&git)
                .observe(seconds);
        }
        if let Some(a) = &self.argocd {
            a.git_request_seconds.get_or_create(&git).observe(seconds);
            if !ok {
                a.git_fetch_fail
                    .get_or_create(&GitFailLabels {
                        repo: git.repo,
                        revision: "",
                    })
                    .inc();
            }
        }
    }

    /// A render waited `seconds` for a free slot.
    pub fn render_slot_wait(&self, seconds: f64) {
        if let Some(a) = &self.argocd {
            a.parallelism_wait.observe(seconds);
        }
    }
}

/// The shared cache's metrics of the repo-server, with Argo CD's Redis series fed from the
/// same requests when asked for.
pub fn cache_metrics(
    registry: &mut Registry,
    metrics: &RepoMetrics,
) -> flotilla_cache::CacheMetrics {
    let observer = metrics.argocd.clone().map(|a| {
        flotilla_cache::metrics::RedisObserver(std::sync::Arc::new(move |seconds, failed| {
            a.redis_seconds
                .get_or_create(&ArgoInitiatorLabels {
                    initiator: INITIATOR,
                })
                .observe(seconds);
            a.redis_requests
                .get_or_create(&ArgoRedisLabels {
                    initiator: INITIATOR,
                    failed: if failed { "true" } else { "false" },
                })
                .inc();
        }))
    });
    flotilla_cache::CacheMetrics::register_with(
        registry,
        "repo-server",
        metrics.mode.flotilla(),
        observer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(mode: ArgoCdMetrics) -> String {
        let mut registry = Registry::default();
        let m = RepoMetrics::register_mode(&mut registry, mode);
        m.git_fetch(m.repo_label("https://user:TOKEN@host/x.git"), 0.3, false);
        let _ = m.pending.get_or_create(&RepoLabels { repo: "r".into() });
        m.render_slot_wait(0.05);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
        text
    }

    #[test]
    fn argo_cd_names_share_flotillas_counters_or_replace_them() {
        let off = exposition(ArgoCdMetrics::Off);
        assert!(!off.contains("argocd_"), "{off}");
        let also = exposition(ArgoCdMetrics::Also);
        let fetch = r#"{repo="https://***@host/x.git",request_type="fetch"} 1"#;
        for line in [
            format!("flotilla_git_request_total{fetch}"),
            format!("argocd_git_request_total{fetch}"),
            r#"argocd_git_fetch_fail_total{repo="https://***@host/x.git",revision=""} 1"#.into(),
            "argocd_repo_parallelism_wait_duration_seconds_count 1".into(),
            r#"argocd_repo_pending_request_total{repo="r"} 0"#.into(),
            r#"argocd_git_request_duration_seconds_bucket{le="0.5",repo="https://***@host/x.git",request_type="fetch"} 1"#.into(),
        ] {
            assert!(also.contains(&line), "{line}: {also}");
        }
        let instead = exposition(ArgoCdMetrics::Instead);
        assert!(instead.contains(&format!("argocd_git_request_total{fetch}")));
        for gone in [
            "flotilla_git_request",
            "flotilla_repo_pending_request_total",
        ] {
            assert!(!instead.contains(gone), "{gone}: {instead}");
        }
        assert!(
            instead.contains("flotilla_repo_renders_running"),
            "{instead}"
        );
    }
}
