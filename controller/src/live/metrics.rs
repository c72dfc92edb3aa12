//! Metrics of the cluster caches: objects held, watch events and errors, and which clusters
//! are unreachable, labelled by cluster name; Kubernetes API requests by server, verb,
//! resource and response code (Argo CD's `argocd_app_k8s_request_total`). With
//! `--argocd-metrics instead` the series Argo CD's replace are not exported.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics_argocd::ArgoMetrics;

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
    /// Argo CD's series (`argocd_app_k8s_request_total`, `argocd_cluster_events_total`).
    pub argocd: Option<Arc<ArgoMetrics>>,
    /// The Flotilla series with an Argo CD counterpart are not exported (nor counted when
    /// counting costs per event).
    pub argocd_only: bool,
}

impl CacheMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        Self::register_with(registry, &crate::metrics::ControllerMetrics::default())
    }

    /// Register under the names `controller` exports (`--argocd-metrics`): the cluster series
    /// Argo CD's `argocd_cluster_*` and `argocd_app_k8s_request_total` replace are left out with
    /// `instead` (the gauges among them stay current: they cost nothing per event).
    pub fn register_with(
        registry: &mut Registry,
        controller: &crate::metrics::ControllerMetrics,
    ) -> Self {
        let m = Self {
            argocd: controller.argocd.clone(),
            argocd_only: !controller.mode.flotilla(),
            ..Self::default()
        };
        // Flotilla-only: no Argo CD series counts these.
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
        if m.argocd_only {
            return m;
        }
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

    /// Counters of one watch's events (Flotilla's by cluster, Argo CD's by server, group and
    /// kind), looked up once per watch instead of once per event.
    pub fn event_counters(
        &self,
        cluster: &str,
        server: &str,
        group: &str,
        kind: &str,
    ) -> (Option<Counter>, Option<Counter>) {
        let flotilla = (!self.argocd_only).then(|| {
            self.watch_events
                .get_or_create(&Self::labels(cluster))
                .clone()
        });
        let argocd = self.argocd.as_ref().map(|a| {
            a.cluster_events
                .get_or_create(&crate::metrics_argocd::ArgoClusterEventLabels {
                    server: server.to_string(),
                    group: group.to_string(),
                    kind: kind.to_string(),
                })
                .clone()
        });
        (flotilla, argocd)
    }

    pub fn labels(cluster: &str) -> ClusterLabels {
        ClusterLabels {
            cluster: cluster.to_string(),
        }
    }
}
