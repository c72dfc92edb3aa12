//! The controller's own metrics: reconciles by level and result, their duration, syncs by
//! phase and trigger, status writes, applications counted by sync and health status, and
//! what this replica owns (clusters, applications); plus the Argo CD-shaped series
//! (`flotilla_app_info`, `flotilla_app_reconcile`, `flotilla_app_sync_total`), which
//! `--argocd-metrics` also or instead exports under Argo CD's names (`metrics_argocd`).

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub level: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    pub phase: &'static str,
    pub trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub sync_status: String,
    pub health_status: String,
}

/// `flotilla_app_info`'s labels, as Argo CD's `argocd_app_info` has them, plus what only
/// `argocd_app_info` shows (set when Argo CD's series are exported; not a label here).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct AppInfoLabels {
    pub namespace: String,
    pub name: String,
    pub project: String,
    pub dest_server: String,
    pub dest_namespace: String,
    pub sync_status: String,
    pub health_status: String,
    pub argocd: Option<crate::metrics_argocd::ArgoAppExtra>,
}

impl EncodeLabelSet for AppInfoLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [
            ("namespace", self.namespace.as_str()),
            ("name", self.name.as_str()),
            ("project", self.project.as_str()),
            ("dest_server", self.dest_server.as_str()),
            ("dest_namespace", self.dest_namespace.as_str()),
            ("sync_status", self.sync_status.as_str()),
            ("health_status", self.health_status.as_str()),
        ]
        .encode(encoder)
    }
}

/// `flotilla_app_sync_total`'s labels (Argo CD's `argocd_app_sync_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppSyncLabels {
    pub namespace: String,
    pub name: String,
    pub project: String,
    pub dest_server: String,
    pub phase: &'static str,
}

/// `flotilla_app_reconcile`'s labels (Argo CD's `argocd_app_reconcile`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppReconcileLabels {
    pub namespace: String,
}

fn reconcile_histogram() -> Histogram {
    // Argo CD's buckets for argocd_app_reconcile.
    Histogram::new([0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
}

/// Every controller metric outside the queue, caches and repo client.
#[derive(Clone)]
pub struct ControllerMetrics {
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Every reconcile finished (the sum of `reconciles`, for the fleet view's rate).
    pub reconciles_done: Counter,
    pub reconcile_seconds: Histogram,
    pub syncs: Family<SyncLabels, Counter>,
    pub status_writes: Counter,
    pub apps: Family<AppLabels, Gauge>,
    pub clusters: Gauge,
    pub owned_clusters: Gauge,
    pub owned_apps: Gauge,
    pub app_info: Family<AppInfoLabels, Gauge>,
    pub app_sync: Family<AppSyncLabels, Counter>,
    pub app_reconcile: Family<AppReconcileLabels, Histogram, fn() -> Histogram>,
    pub settings_reloads: Counter,
    pub settings_problems: Gauge,
    pub orphaned: Family<AppKeyLabels, Gauge>,
    /// Which names are exported (`--argocd-metrics`).
    pub mode: crate::metrics_argocd::ArgoCdMetrics,
    /// Argo CD's series, when exported.
    pub argocd: Option<Arc<crate::metrics_argocd::ArgoMetrics>>,
    /// CPU seconds per reconcile phase.
    pub phase_cpu: crate::phase_cpu::PhaseCpu,
}

/// An application by namespace and name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppKeyLabels {
    pub namespace: String,
    pub name: String,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            reconciles_done: Counter::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            syncs: Family::default(),
            status_writes: Counter::default(),
            apps: Family::default(),
            clusters: Gauge::default(),
            owned_clusters: Gauge::default(),
            owned_apps: Gauge::default(),
            app_info: Family::default(),
            app_sync: Family::default(),
            app_reconcile: Family::new_with_constructor(reconcile_histogram),
            settings_reloads: Counter::default(),
            settings_problems: Gauge::default(),
            orphaned: Family::default(),
            mode: Default::default(),
            argocd: None,
            phase_cpu: crate::phase_cpu::PhaseCpu::new(),
        }
    }
}

impl ControllerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        Self::register_mode(registry, Default::default())
    }

    /// Register the metrics under Flotilla's names, Argo CD's, or both (`mode`): the Flotilla
    /// series with an Argo CD counterpart are left out with `instead`.
    pub fn register_mode(
        registry: &mut Registry,
        mode: crate::metrics_argocd::ArgoCdMetrics,
    ) -> Self {
        let m = Self {
            mode,
            argocd: mode
                .argocd()
                .then(|| crate::metrics_argocd::ArgoMetrics::register(registry)),
            ..Self::default()
        };
        m.phase_cpu.register(registry);
        registry.register(
            "flotilla_reconciles",
            "Application reconciles, by level (compare, refresh, hard) and result",
            m.reconciles.clone(),
        );
        registry.register(
            "flotilla_reconcile_seconds",
            "Duration of one application reconcile",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "flotilla_syncs",
            "Sync operations, by final phase and trigger (manual, automated)",
            m.syncs.clone(),
        );
        registry.register(
            "flotilla_status_writes",
            "Application status updates written",
            m.status_writes.clone(),
        );
        registry.register(
            "flotilla_apps",
            "Applications reconciled by this replica, by sync and health status",
            m.apps.clone(),
        );
        registry.register(
            "flotilla_clusters",
            "Destination clusters known from cluster Secrets (plus in-cluster)",
            m.clusters.clone(),
        );
        registry.register(
            "flotilla_owned_clusters",
            "Destination clusters this replica owns (sums to the cluster count across replicas)",
            m.owned_clusters.clone(),
        );
        registry.register(
            "flotilla_owned_applications",
            "Applications whose destination cluster this replica owns",
            m.owned_apps.clone(),
        );
        if mode.flotilla() {
            registry.register(
                "flotilla_app_info",
                "Information about each application this replica reconciles (1 per app), with its sync and health status",
                m.app_info.clone(),
            );
            registry.register(
                "flotilla_app_sync",
                "Sync operations per application, by final phase",
                m.app_sync.clone(),
            );
            registry.register(
                "flotilla_app_reconcile",
                "Application reconciliation performance in seconds",
                m.app_reconcile.clone(),
            );
        }
        registry.register(
            "flotilla_settings_reloads",
            "Changes of argocd-cm put in force without a restart",
            m.settings_reloads.clone(),
        );
        registry.register(
            "flotilla_settings_problems",
            "argocd-cm keys refused in the settings in force (each is logged)",
            m.settings_problems.clone(),
        );
        if mode.flotilla() {
            registry.register(
                "flotilla_app_orphaned_resources",
                "Objects in the app's destination namespace no app tracks (projects with orphanedResources)",
                m.orphaned.clone(),
            );
        }
        m
    }

    /// Report an app's info series (`flotilla_app_info`, `argocd_app_info`) as `info`.
    pub fn set_app_info(&self, info: &AppInfoLabels) {
        if self.mode.flotilla() {
            self.app_info.get_or_create(info).set(1);
        }
        if let Some(a) = &self.argocd {
            a.app_info
                .get_or_create(&crate::metrics_argocd::ArgoAppInfoLabels(info.clone()))
                .set(1);
        }
    }

    /// Drop an app's info series reported as `info`.
    pub fn remove_app_info(&self, info: &AppInfoLabels) {
        self.app_info.remove(info);
        if let Some(a) = &self.argocd {
            a.app_info
                .remove(&crate::metrics_argocd::ArgoAppInfoLabels(info.clone()));
        }
    }
}
