//! Metrics of the cluster caches: objects held, watch events and errors, and which clusters
//! are unreachable, labelled by cluster name; Kubernetes API requests by server, verb,
//! resource and response code (Argo CD's `argocd_app_k8s_request_total`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

/// `flotilla_app_k8s_request_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct K8sRequestLabels {
    pub server: String,
    pub verb: &'static str,
    pub resource: String,
    pub response_code: String,
}

/// Every cache metric.
#[derive(Clone, Default)]
pub struct CacheMetrics {
    pub objects: Family<ClusterLabels, Gauge>,
    pub watched_kinds: Family<ClusterLabels, Gauge>,
    pub watch_events: Family<ClusterLabels, Counter>,
    pub watch_errors: Family<ClusterLabels, Counter>,
    pub ignored_updates: Family<ClusterLabels, Counter>,
    pub unreachable: Family<ClusterLabels, Gauge>,
    pub k8s_requests: Family<K8sRequestLabels, Counter>,
}

impl CacheMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "flotilla_cluster_cache_objects",
            "Managed live objects held in the cluster cache",
            m.objects.clone(),
        );
        registry.register(
            "flotilla_cluster_cache_watched_kinds",
            "Kinds watched in the cluster (only those its applications use)",
            m.watched_kinds.clone(),
        );
        registry.register(
            "flotilla_cluster_watch_events",
            "Watch events received from the cluster",
            m.watch_events.clone(),
        );
        registry.register(
            "flotilla_cluster_watch_errors",
            "Watch errors from the cluster (each retried with backoff)",
            m.watch_errors.clone(),
        );
        registry.register(
            "flotilla_cluster_ignored_updates",
            "Watch updates that changed only fields ignoreResourceUpdates names (no reconcile)",
            m.ignored_updates.clone(),
        );
        registry.register(
            "flotilla_cluster_unreachable",
            "1 while the cluster cannot be reached",
            m.unreachable.clone(),
        );
        registry.register(
            "flotilla_app_k8s_request",
            "Requests to destination clusters' API servers, by server, verb, resource and response code",
            m.k8s_requests.clone(),
        );
        m
    }

    pub fn labels(cluster: &str) -> ClusterLabels {
        ClusterLabels {
            cluster: cluster.to_string(),
        }
    }
}
