//! The repo-server's Prometheus metrics: Git fetch and render durations, requests by method and
//! outcome, in-flight deduplication, and the render queue (waiting and running); Argo CD's
//! `git_request_total`/`git_request_duration_seconds`/`repo_pending_request_total` shapes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
        let m = Self::default();
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
        registry.register(
            "flotilla_repo_pending_request_total",
            "Requests being served per repository (resolving, fetching, waiting for or running a render)",
            m.pending.clone(),
        );
        m
    }
}
