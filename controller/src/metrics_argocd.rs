//! Argo CD's metric names and labels (`--argocd-metrics also|instead`): the events Flotilla's
//! own series count, exported the way Argo CD's application controller names them
//! (`argocd_app_info`, `argocd_app_sync_total`, `argocd_app_reconcile`,
//! `argocd_app_k8s_request_total`, `argocd_cluster_*`, `argocd_redis_request_*`), so existing
//! dashboards and alerts keep working. `tests/fixtures/argocd-metrics.yaml` lists every Argo CD
//! series, its source, and what Flotilla cannot know (those labels get Argo CD's empty value).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::context::Context;
use crate::metrics::AppInfoLabels;
use crate::operation::{OperationState, Phase};
use crate::tracking::AppKey;
use crate::types::Application;

pub use flotilla_core::metrics_mode::ArgoCdMetrics;

/// The labels `argocd_app_info` has beyond `flotilla_app_info`'s, from the app's spec and the
/// cluster registry.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct ArgoAppExtra {
    pub autosync_enabled: bool,
    /// The first source's repository, normalized as Argo CD's `NormalizeGitURL` does.
    pub repo: String,
    /// The destination cluster's server URL (resolved from `destination.name` too).
    pub dest_server: String,
    /// `sync` while an operation is requested, `delete` while the app is being deleted.
    pub operation: &'static str,
}

/// `argocd_app_info`'s series of an app: Argo CD's labels, in Argo CD's order.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ArgoAppInfoLabels(pub AppInfoLabels);

impl EncodeLabelSet for ArgoAppInfoLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let i = &self.0;
        let extra = i.argocd.clone().unwrap_or_default();
        [
            ("namespace", i.namespace.as_str()),
            ("name", i.name.as_str()),
            ("project", i.project.as_str()),
            (
                "autosync_enabled",
                if extra.autosync_enabled {
                    "true"
                } else {
                    "false"
                },
            ),
            ("repo", extra.repo.as_str()),
            ("dest_server", extra.dest_server.as_str()),
            ("dest_namespace", i.dest_namespace.as_str()),
            ("sync_status", i.sync_status.as_str()),
            ("health_status", i.health_status.as_str()),
            ("operation", extra.operation),
        ]
        .encode(encoder)
    }
}

/// `argocd_app_sync_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgoSyncLabels {
    pub namespace: String,
    pub name: String,
    pub project: String,
    pub dest_server: String,
    pub phase: &'static str,
    pub dry_run: &'static str,
}

/// `argocd_app_sync_duration_seconds_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgoSyncDurationLabels {
    pub namespace: String,
    pub name: String,
    pub project: String,
    pub dest_server: String,
}

/// `argocd_app_reconcile`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgoReconcileLabels {
    pub namespace: String,
    pub dest_server: String,
}

/// `argocd_app_orphaned_resources_count`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgoAppLabels {
    pub namespace: String,
    pub name: String,
    pub project: String,
}

/// `argocd_app_k8s_request_total`. Flotilla's cluster clients are shared by every app of a
/// cluster, so `namespace`, `name` and `project` are empty (as Argo CD's are for its cluster
/// cache's own requests) and `dry_run` is `false`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgoK8sRequestLabels {
    pub namespace: &'static str,
    pub name: &'static str,
    pub project: &'static str,
    pub server: String,
    pub response_code: String,
    pub verb: &'static str,
    pub resource_kind: String,
    pub resource_namespace: String,
    pub dry_run: &'static str,
}

/// `argocd_kubectl_requests_total` (client-go's request results, named by Argo CD).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgoKubectlRequestLabels {
    pub host: Arc<str>,
    pub method: String,
    pub code: String,
}

/// `argocd_cluster_events_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgoClusterEventLabels {
    pub server: String,
    pub group: String,
    pub kind: String,
}

/// `argocd_redis_request_total` of the application controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgoRedisLabels {
    pub hostname: String,
    pub initiator: &'static str,
    pub failed: &'static str,
}

/// `argocd_redis_request_duration`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArgoRedisDurationLabels {
    pub hostname: String,
    pub initiator: &'static str,
}

/// Argo CD's `initiator` value for the application controller.
pub const INITIATOR: &str = "argocd-application-controller";

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn reconcile_buckets() -> Histogram {
    // Argo CD's argocd_app_reconcile buckets.
    Histogram::new([0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
}

fn redis_buckets() -> Histogram {
    // Argo CD's argocd_redis_request_duration buckets (application controller).
    Histogram::new([0.01, 0.05, 0.10, 0.25, 0.5, 1.0])
}

/// Argo CD's series of the application controller.
#[derive(Debug)]
pub struct ArgoMetrics {
    pub app_info: Family<ArgoAppInfoLabels, Gauge>,
    pub app_sync: Family<ArgoSyncLabels, Counter>,
    pub sync_seconds: Family<ArgoSyncDurationLabels, Counter>,
    pub reconcile: Histograms<ArgoReconcileLabels>,
    pub orphaned: Family<ArgoAppLabels, Gauge>,
    pub k8s_requests: Family<ArgoK8sRequestLabels, Counter>,
    pub kubectl_requests: Family<ArgoKubectlRequestLabels, Counter>,
    pub cluster_events: Family<ArgoClusterEventLabels, Counter>,
    pub redis_requests: Family<ArgoRedisLabels, Counter>,
    pub redis_seconds: Histograms<ArgoRedisDurationLabels>,
    /// What the `argocd_cluster_*` gauges are read from at each scrape.
    pub clusters: Arc<ClusterSource>,
    /// This process's host name (the pod name), Argo CD's `hostname` label.
    pub hostname: String,
    /// The project each orphaned-resources series carries, by app.
    orphan_projects: Mutex<HashMap<AppKey, String>>,
}

/// The host name, as Go's `os.Hostname()` gives Argo CD.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_default()
}

impl ArgoMetrics {
    /// Create Argo CD's series and register them under Argo CD's names.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Arc::new(Self {
            app_info: Family::default(),
            app_sync: Family::default(),
            sync_seconds: Family::default(),
            reconcile: Family::new_with_constructor(reconcile_buckets),
            orphaned: Family::default(),
            k8s_requests: Family::default(),
            kubectl_requests: Family::default(),
            cluster_events: Family::default(),
            redis_requests: Family::default(),
            redis_seconds: Family::new_with_constructor(redis_buckets),
            clusters: Arc::default(),
            hostname: hostname(),
            orphan_projects: Mutex::default(),
        });
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "argocd_app_info",
            "Information about application.",
            m.app_info.clone(),
        );
        registry.register(
            "argocd_app_sync",
            "Number of application syncs.",
            m.app_sync.clone(),
        );
        registry.register(
            "argocd_app_sync_duration_seconds",
            "Application sync performance in seconds total.",
            m.sync_seconds.clone(),
        );
        registry.register(
            "argocd_app_reconcile",
            "Application reconciliation performance in seconds.",
            m.reconcile.clone(),
        );
        registry.register(
            "argocd_app_orphaned_resources_count",
            "Number of orphaned resources per application",
            m.orphaned.clone(),
        );
        registry.register(
            "argocd_app_k8s_request",
            "Number of kubernetes requests executed during application reconciliation.",
            m.k8s_requests.clone(),
        );
        registry.register(
            "argocd_kubectl_requests",
            "Number of kubectl request results",
            m.kubectl_requests.clone(),
        );
        registry.register(
            "argocd_cluster_events",
            "Number of processes k8s resource events.",
            m.cluster_events.clone(),
        );
        registry.register(
            "argocd_redis_request",
            "Number of redis requests executed during application reconciliation.",
            m.redis_requests.clone(),
        );
        registry.register(
            "argocd_redis_request_duration",
            "Redis requests duration.",
            m.redis_seconds.clone(),
        );
        registry.register_collector(Box::new(ClusterCollector(m.clusters.clone())));
        m
    }

    /// Count one Redis command (the same event as `flotilla_redis_request_total`).
    pub fn redis_request(&self, seconds: f64, failed: bool) {
        self.redis_seconds
            .get_or_create(&ArgoRedisDurationLabels {
                hostname: self.hostname.clone(),
                initiator: INITIATOR,
            })
            .observe(seconds);
        self.redis_requests
            .get_or_create(&ArgoRedisLabels {
                hostname: self.hostname.clone(),
                initiator: INITIATOR,
                failed: if failed { "true" } else { "false" },
            })
            .inc();
    }
}

/// The shared cache's metrics (Redis, memory) of the controller, with Argo CD's Redis series
/// fed from the same requests when asked for.
pub fn cache_metrics(
    registry: &mut Registry,
    metrics: &crate::metrics::ControllerMetrics,
) -> flotilla_cache::CacheMetrics {
    let observer = metrics.argocd.clone().map(|a| {
        flotilla_cache::metrics::RedisObserver(Arc::new(move |seconds, failed| {
            a.redis_request(seconds, failed)
        }))
    });
    flotilla_cache::CacheMetrics::register_with(
        registry,
        "controller",
        metrics.mode.flotilla(),
        observer,
    )
}

/// Argo CD's `NormalizeGitURL` (v2/v3): trimmed, lowercased, `user@host:path` as
/// `user@host/path`, no `.git` suffix, no `ssh://`. Credentials of other schemes are hidden.
pub fn normalize_git_url(url: &str) -> String {
    let mut s = url.trim().to_lowercase();
    let scp_like = !s.contains("://")
        && s.split_once('@')
            .is_some_and(|(user, rest)| !user.contains('/') && rest.contains(':'));
    if scp_like {
        s = format!("ssh://{}", s.replacen(':', "/", 1));
    }
    if let Some(t) = s.strip_suffix(".git") {
        s = t.to_string();
    }
    match s.strip_prefix("ssh://") {
        // An SSH user name is not a secret (the key is); Argo CD keeps it.
        Some(rest) => rest.to_string(),
        None => crate::redact::redact_url(&s),
    }
}

/// The server URL of `app`'s destination cluster (also when named by `destination.name`), or
/// empty when no known cluster matches (as Argo CD reports it).
pub fn dest_server_url(ctx: &Context, app: &Application) -> String {
    let d = &app.spec.destination;
    ctx.registry
        .borrow()
        .resolve(d.server.as_deref(), d.name.as_deref())
        .map(|c| c.server.clone())
        .unwrap_or_default()
}

/// `argocd_app_info`'s extra labels of `app`, when Argo CD's series are exported.
pub fn app_extra(ctx: &Context, app: &Application) -> Option<ArgoAppExtra> {
    ctx.metrics.argocd.as_ref()?;
    let source = app
        .spec
        .sources
        .as_ref()
        .and_then(|s| s.first())
        .or(app.spec.source.as_ref());
    let operation = if app.metadata.deletion_timestamp.is_some() {
        "delete"
    } else if app
        .operation
        .as_ref()
        .and_then(|o| o.get("sync"))
        .is_some_and(|s| !s.is_null())
    {
        "sync"
    } else {
        ""
    };
    Some(ArgoAppExtra {
        autosync_enabled: app
            .spec
            .sync_policy
            .as_ref()
            .is_some_and(|p| p.automated.is_some()),
        repo: source
            .map(|s| normalize_git_url(&s.repo_url))
            .unwrap_or_default(),
        dest_server: dest_server_url(ctx, app),
        operation,
    })
}

/// Count a finished operation of `app` (the event `flotilla_app_sync_total` counts) in
/// `argocd_app_sync_total` and `argocd_app_sync_duration_seconds_total`.
pub fn count_sync(ctx: &Context, app: &Application, key: &AppKey, st: &OperationState) {
    let m = &ctx.metrics;
    let project = crate::reconcile::project_name(app).to_string();
    if m.mode.flotilla() {
        m.app_sync
            .get_or_create(&crate::metrics::AppSyncLabels {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                project: project.clone(),
                dest_server: crate::reconcile::dest_server(app).to_string(),
                phase: st.phase.as_str(),
            })
            .inc();
    }
    let Some(argo) = &m.argocd else { return };
    // Argo CD counts completed operations only.
    if !matches!(st.phase, Phase::Succeeded | Phase::Failed | Phase::Error) {
        return;
    }
    let dest_server = dest_server_url(ctx, app);
    argo.app_sync
        .get_or_create(&ArgoSyncLabels {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            project: project.clone(),
            dest_server: dest_server.clone(),
            phase: st.phase.as_str(),
            dry_run: if st.operation.dry_run() {
                "true"
            } else {
                "false"
            },
        })
        .inc();
    // Whole seconds from start to finish, as Argo CD adds them.
    let secs = |t: &str| t.parse::<jiff::Timestamp>().ok().map(|t| t.as_second());
    if let (Some(start), Some(end)) = (
        secs(&st.started_at),
        st.finished_at.as_deref().and_then(secs),
    ) {
        argo.sync_seconds
            .get_or_create(&ArgoSyncDurationLabels {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                project,
                dest_server,
            })
            .inc_by(end.saturating_sub(start).max(0) as u64);
    }
}

/// Observe one reconcile of `key` (the event `flotilla_app_reconcile` observes).
pub fn observe_reconcile(ctx: &Context, key: &AppKey, seconds: f64) {
    let m = &ctx.metrics;
    if m.mode.flotilla() {
        m.app_reconcile
            .get_or_create(&crate::metrics::AppReconcileLabels {
                namespace: key.namespace.clone(),
            })
            .observe(seconds);
    }
    let Some(argo) = &m.argocd else { return };
    // The destination as last reported, so no app lookup per reconcile.
    let dest_server = ctx
        .memo
        .lock()
        .ok()
        .and_then(|memo| {
            memo.get(key)?
                .reported
                .as_ref()?
                .argocd
                .as_ref()
                .map(|a| a.dest_server.clone())
        })
        .unwrap_or_default();
    argo.reconcile
        .get_or_create(&ArgoReconcileLabels {
            namespace: key.namespace.clone(),
            dest_server,
        })
        .observe(seconds);
}

/// Set the orphaned-resource count of `key` (project `project`).
pub fn set_orphaned(ctx: &Context, key: &AppKey, project: &str, n: usize) {
    let m = &ctx.metrics;
    if m.mode.flotilla() {
        m.orphaned
            .get_or_create(&crate::metrics::AppKeyLabels {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
            })
            .set(n as i64);
    }
    if let Some(argo) = &m.argocd {
        let labels = ArgoAppLabels {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            project: project.to_string(),
        };
        // One series per app: a project change replaces it.
        if let Ok(mut seen) = argo.orphan_projects.lock()
            && let Some(old) = seen.insert(key.clone(), project.to_string())
            && old != project
        {
            argo.orphaned.remove(&ArgoAppLabels {
                project: old,
                ..labels.clone()
            });
        }
        argo.orphaned.get_or_create(&labels).set(n as i64);
    }
}

/// Forget the orphaned-resource series of an app that is gone.
pub fn forget_orphaned(ctx: &Context, key: &AppKey) {
    let m = &ctx.metrics;
    m.orphaned.remove(&crate::metrics::AppKeyLabels {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    });
    if let Some(argo) = &m.argocd
        && let Some(project) = argo
            .orphan_projects
            .lock()
            .ok()
            .and_then(|mut s| s.remove(key))
    {
        argo.orphaned.remove(&ArgoAppLabels {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            project,
        });
    }
}

/// What the `argocd_cluster_*` gauges are read from: this replica's cluster caches (the
/// clusters it owns, as Argo CD reports the clusters its shard manages) and their versions.
#[derive(Debug, Default)]
pub struct ClusterSource {
    ctx: OnceLock<Weak<Context>>,
    /// Kubernetes version (`major.minor`, as Argo CD's) by server, read once per cache.
    versions: Mutex<HashMap<String, String>>,
}

/// How often the versions of newly owned clusters are read.
const VERSION_REFRESH: Duration = Duration::from_secs(5);

/// Give the cluster collector the context once it exists, and keep the clusters' versions
/// read (nothing when Argo CD's series are off).
pub fn attach(ctx: &Arc<Context>) {
    let Some(argo) = ctx.metrics.argocd.clone() else {
        return;
    };
    let _ = argo.clusters.ctx.set(Arc::downgrade(ctx));
    let weak = Arc::downgrade(ctx);
    tokio::spawn(async move {
        loop {
            {
                let Some(ctx) = weak.upgrade() else { return };
                refresh_versions(&ctx, &argo.clusters).await;
            }
            tokio::time::sleep(VERSION_REFRESH).await;
        }
    });
}

async fn refresh_versions(ctx: &Context, source: &ClusterSource) {
    let servers = ctx.caches.servers();
    let missing: Vec<String> = {
        let Ok(mut known) = source.versions.lock() else {
            return;
        };
        known.retain(|s, _| servers.contains(s));
        servers
            .iter()
            .filter(|s| !known.contains_key(*s))
            .cloned()
            .collect()
    };
    for server in missing {
        let Some(cache) = ctx.caches.get(&server) else {
            continue;
        };
        let asked =
            tokio::time::timeout(Duration::from_secs(5), cache.client().apiserver_version()).await;
        if let Ok(Ok(info)) = asked
            && let Ok(mut known) = source.versions.lock()
        {
            known.insert(server, format!("{}.{}", info.major, info.minor));
        }
    }
}

/// Encodes the `argocd_cluster_*` gauges from the cluster caches at each scrape.
#[derive(Debug)]
struct ClusterCollector(Arc<ClusterSource>);

type Labels = Vec<(&'static str, String)>;

fn encode_gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    family: &Family<Labels, Gauge>,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
    family.encode(metric)
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(ctx) = self.0.ctx.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let versions = self
            .0
            .versions
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        let info = Family::<Labels, Gauge>::default();
        let objects = Family::<Labels, Gauge>::default();
        let kinds = Family::<Labels, Gauge>::default();
        let age = Family::<Labels, Gauge>::default();
        let connected = Family::<Labels, Gauge>::default();
        for server in ctx.caches.servers() {
            let Some(cache) = ctx.caches.get(&server) else {
                continue;
            };
            let version = versions.get(&server).cloned().unwrap_or_default();
            let (n_objects, n_kinds) = cache.stats();
            let s = || vec![("server", server.clone())];
            info.get_or_create(&vec![
                ("server", server.clone()),
                ("k8s_version", version.clone()),
                ("name", cache.name.clone()),
            ])
            .set(1);
            objects.get_or_create(&s()).set(n_objects as i64);
            kinds.get_or_create(&s()).set(n_kinds as i64);
            age.get_or_create(&s()).set(cache.age().as_secs() as i64);
            connected
                .get_or_create(&vec![("server", server.clone()), ("k8s_version", version)])
                .set(i64::from(cache.reachability().is_ok()));
        }
        encode_gauges(
            &mut encoder,
            "argocd_cluster_info",
            "Information about cluster.",
            &info,
        )?;
        encode_gauges(
            &mut encoder,
            "argocd_cluster_api_resource_objects",
            "Number of k8s resource objects in the cache.",
            &objects,
        )?;
        encode_gauges(
            &mut encoder,
            "argocd_cluster_api_resources",
            "Number of monitored kubernetes API resources.",
            &kinds,
        )?;
        encode_gauges(
            &mut encoder,
            "argocd_cluster_cache_age_seconds",
            "Cluster cache age in seconds.",
            &age,
        )?;
        encode_gauges(
            &mut encoder,
            "argocd_cluster_connection_status",
            "The k8s cluster current connection status.",
            &connected,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_say_what_is_exported() {
        use ArgoCdMetrics::*;
        for (text, mode, flotilla, argocd) in [
            ("off", Off, true, false),
            ("also", Also, true, true),
            ("instead", Instead, false, true),
        ] {
            let m: ArgoCdMetrics = text.parse().expect("a mode");
            assert_eq!(m, mode);
            assert_eq!((m.flotilla(), m.argocd()), (flotilla, argocd), "{text}");
            assert_eq!(m.to_string(), text);
        }
        assert!("both".parse::<ArgoCdMetrics>().is_err());
    }

    #[test]
    fn argo_cd_families_are_described_under_argo_cds_names() {
        let mut registry = Registry::default();
        let m = ArgoMetrics::register(&mut registry);
        m.orphaned
            .get_or_create(&ArgoAppLabels {
                namespace: "argocd".into(),
                name: "web".into(),
                project: "default".into(),
            })
            .set(2);
        m.app_sync
            .get_or_create(&ArgoSyncLabels {
                namespace: "argocd".into(),
                name: "web".into(),
                project: "default".into(),
                dest_server: "https://kubernetes.default.svc".into(),
                phase: "Succeeded",
                dry_run: "false",
            })
            .inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
        // A counter's family is described without `_total`, its samples carry it.
        assert!(text.contains("# TYPE argocd_app_sync counter\n"), "{text}");
        assert!(text.contains(r#"argocd_app_sync_total{namespace="argocd",name="web",project="default",dest_server="https://kubernetes.default.svc",phase="Succeeded",dry_run="false"} 1"#), "{text}");
        // Families without a series are not described at all.
        assert!(!text.contains("argocd_app_info"), "{text}");
        assert!(
            text.contains("# TYPE argocd_app_orphaned_resources_count gauge\n"),
            "{text}"
        );
        assert!(text.contains(
            r#"argocd_app_orphaned_resources_count{namespace="argocd",name="web",project="default"} 2"#
        ), "{text}");
    }

    #[test]
    fn git_urls_normalize_as_argo_cd_does() {
        for (url, want) in [
            (
                "https://GitHub.com/Org/Repo.git",
                "https://github.com/org/repo",
            ),
            ("git@github.com:org/repo.git", "git@github.com/org/repo"),
            ("ssh://git@host:22/org/repo", "git@host:22/org/repo"),
            (" https://user:TOKEN@host/x.git ", "https://***@host/x"),
            ("git://127.0.0.1:9418/web", "git://127.0.0.1:9418/web"),
        ] {
            assert_eq!(normalize_git_url(url), want, "{url}");
        }
    }

    #[test]
    fn app_info_labels_are_argo_cds_in_argo_cds_order() {
        let info = AppInfoLabels {
            namespace: "argocd".into(),
            name: "web".into(),
            project: "default".into(),
            dest_server: "in-cluster".into(),
            dest_namespace: "web".into(),
            sync_status: "Synced".into(),
            health_status: "Healthy".into(),
            argocd: Some(ArgoAppExtra {
                autosync_enabled: true,
                repo: "https://host/x".into(),
                dest_server: "https://kubernetes.default.svc".into(),
                operation: "",
            }),
        };
        let mut registry = Registry::default();
        let argo = Family::<ArgoAppInfoLabels, Gauge>::default();
        let flotilla = Family::<AppInfoLabels, Gauge>::default();
        registry.register("argocd_app_info", "", argo.clone());
        registry.register("flotilla_app_info", "", flotilla.clone());
        argo.get_or_create(&ArgoAppInfoLabels(info.clone())).set(1);
        flotilla.get_or_create(&info).set(1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
        assert!(text.contains(
            r#"argocd_app_info{namespace="argocd",name="web",project="default",autosync_enabled="true",repo="https://host/x",dest_server="https://kubernetes.default.svc",dest_namespace="web",sync_status="Synced",health_status="Healthy",operation=""} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"flotilla_app_info{namespace="argocd",name="web",project="default",dest_server="in-cluster",dest_namespace="web",sync_status="Synced",health_status="Healthy"} 1"#
        ), "{text}");
    }
}
