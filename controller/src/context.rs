//! What every reconcile shares: read-only stores of Applications, AppProjects and Secrets, the
//! cluster registry, the per-cluster caches, the repo-server client, the work queue, ownership,
//! per-app memory (last desired state, failure count) and metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flotilla_sharding::{Gate, Permit, ShardStatus};
use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::watch;

use crate::client_limits::ClientLimits;
use crate::clusters::{Cluster, IN_CLUSTER_SERVER, Registry};
use crate::config::ControllerConfig;
use crate::live::metrics::CacheMetrics;
use crate::live::{CacheEvents, ClusterCache};
use crate::manifests::ManifestClient;
use crate::metrics::{AppInfoLabels, AppLabels, ControllerMetrics};
use crate::queue::WorkQueue;
use crate::repos::RepoCredsIndex;
use crate::tracking::AppKey;
use crate::types::{AppProject, Application};

/// How much a reconcile must redo. Watch events on live objects only re-compare against the
/// last desired state; refreshes resolve the revision again; hard refreshes also bypass the
/// manifest cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Compare,
    Refresh,
    Hard,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compare => "compare",
            Self::Refresh => "refresh",
            Self::Hard => "hard",
        }
    }
}

/// The desired state last rendered for an app.
#[derive(Debug, Clone)]
pub struct DesiredMemo {
    /// Digest of the spec fields that shape the render.
    pub fingerprint: String,
    pub revisions: Vec<String>,
    pub objects: Arc<Vec<serde_json::Value>>,
    pub source_type: String,
}

/// Per-app memory between reconciles.
#[derive(Debug, Clone, Default)]
pub struct AppMemo {
    pub desired: Option<DesiredMemo>,
    pub failures: u32,
    /// What was last reported, for the `flotilla_apps` and `flotilla_app_info` gauges.
    pub reported: Option<AppInfoLabels>,
    /// When this replica saw the latest refresh request (annotation) for the app: a resolve
    /// that began after it sees every push made before the request.
    pub refresh_requested: Option<std::time::Instant>,
    /// The Application as our last write returned it: newer than the watch-fed store until
    /// the watch catches up, so decisions never rest on a status we already replaced.
    pub written: Option<Arc<Application>>,
    /// A sync operation applied a wave that is not its last: its next step waits until
    /// then (the delay between waves), whatever wakes the app sooner.
    pub next_wave_at: Option<std::time::Instant>,
    /// Side by side with Argo CD: when this replica saw the app handed over; its first
    /// reconcile waits out the hand-over grace from then.
    pub handed_over_at: Option<std::time::Instant>,
}

fn resource_version(app: &Application) -> Option<u64> {
    app.metadata.resource_version.as_deref()?.parse().ok()
}

/// The fresher of the store's copy and the copy our last write returned.
pub fn freshest(stored: Arc<Application>, written: Option<Arc<Application>>) -> Arc<Application> {
    match (written, resource_version(&stored)) {
        (Some(w), Some(s))
            if w.metadata.uid == stored.metadata.uid
                && resource_version(&w).is_some_and(|rv| rv > s) =>
        {
            w
        }
        _ => stored,
    }
}

/// A client for the destination `cluster` built the controller's way: connect timeout, user
/// agent, credentials, per-attempt deadline, request counting, then rate limit and bounded
/// retry (`crate::client_limits`; kube's own unbounded-ish retry is off).
pub fn cluster_client(
    cluster: &Cluster,
    user_agent: &str,
    limits: &ClientLimits,
    metrics: &CacheMetrics,
) -> Result<Client, String> {
    let mut cfg = cluster.kube_config().map_err(|e| e.to_string())?;
    cfg.connect_timeout = Some(std::time::Duration::from_secs(5));
    cfg.default_retry = false;
    if let Ok(ua) = http::HeaderValue::from_str(user_agent)
        && !user_agent.is_empty()
    {
        cfg.headers.push((http::header::USER_AGENT, ua));
    }
    Ok(kube::client::ClientBuilder::try_from(cfg)
        .map_err(|e| format!("client for {}: {e}", cluster.server))?
        .with_layer(&crate::cluster_auth::CredentialLayer::for_cluster(cluster))
        .with_layer(&limits.deadline())
        .with_layer(&crate::live::requests::CountRequests::new(
            &cluster.server,
            metrics,
        ))
        .with_layer(&limits.bounded())
        .build())
}

/// The caches of the clusters this replica works on, created on first use.
#[derive(Default)]
pub struct Caches {
    by_server: Mutex<HashMap<String, (Cluster, Arc<ClusterCache>)>>,
    /// Sent with every request to a destination cluster.
    user_agent: String,
    /// Rate limit, deadline and retries of every destination cluster's client.
    limits: ClientLimits,
}

impl Caches {
    pub fn new(user_agent: String) -> Self {
        Self {
            by_server: Mutex::default(),
            user_agent,
            limits: ClientLimits::default(),
        }
    }

    /// Bound the clients of caches created from now on by `limits`.
    pub fn with_limits(mut self, limits: ClientLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Drop the cache of `server` (its watches stop), e.g. when another replica took it over.
    pub fn remove(&self, server: &str) -> bool {
        self.by_server
            .lock()
            .map(|mut m| m.remove(server).is_some())
            .unwrap_or(false)
    }

    /// The cache of `cluster` (recreated when its credentials changed).
    pub fn get_or_create(
        &self,
        cluster: &Cluster,
        control: &Client,
        events: Arc<dyn CacheEvents>,
        metrics: &CacheMetrics,
    ) -> Result<Arc<ClusterCache>, String> {
        let mut map = self.by_server.lock().map_err(|e| e.to_string())?;
        if let Some((known, cache)) = map.get(&cluster.server)
            && known == cluster
        {
            return Ok(cache.clone());
        }
        let client = if cluster.secret.is_none() && cluster.server == IN_CLUSTER_SERVER {
            control.clone()
        } else {
            cluster_client(cluster, &self.user_agent, &self.limits, metrics)?
        };
        let cache = ClusterCache::new(
            cluster.name.clone(),
            cluster.server.clone(),
            client,
            events,
            metrics.clone(),
        );
        cache.set_scope(crate::live::cache::ClusterScope {
            namespaces: cluster.namespaces.clone(),
            cluster_resources: cluster.cluster_resources,
        });
        map.insert(cluster.server.clone(), (cluster.clone(), cache.clone()));
        Ok(cache)
    }

    /// Drop caches of clusters that are gone or changed; returns their servers.
    pub fn retain_known(&self, registry: &Registry) -> Vec<String> {
        let Ok(mut map) = self.by_server.lock() else {
            return Vec::new();
        };
        let stale: Vec<String> = map
            .iter()
            .filter(|(server, (c, _))| registry.resolve(Some(server), None) != Some(c))
            .map(|(s, _)| s.clone())
            .collect();
        for s in &stale {
            map.remove(s);
        }
        stale
    }

    pub fn get(&self, server: &str) -> Option<Arc<ClusterCache>> {
        self.by_server
            .lock()
            .ok()
            .and_then(|m| m.get(server).map(|(_, c)| c.clone()))
    }

    pub fn servers(&self) -> Vec<String> {
        self.by_server
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Shared handles of the controller.
pub struct Context {
    pub cfg: ControllerConfig,
    pub control: Client,
    pub apps: Store<Application>,
    pub projects: Store<AppProject>,
    pub registry: watch::Receiver<Arc<Registry>>,
    pub repo_creds: watch::Receiver<Arc<RepoCredsIndex>>,
    /// The clusters this replica may write to (permits held across each write).
    pub gate: Arc<Gate>,
    /// Ring membership as this replica sees it.
    pub shard: watch::Receiver<Arc<ShardStatus>>,
    /// The Application CRD has a `/status` subresource (ours does; Argo CD's does not, and
    /// then `status` is written through the main resource).
    pub status_subresource: bool,
    pub caches: Caches,
    pub manifests: ManifestClient,
    pub queue: Arc<WorkQueue<AppKey, Level>>,
    pub memo: Mutex<HashMap<AppKey, AppMemo>>,
    pub metrics: ControllerMetrics,
    pub cache_metrics: CacheMetrics,
    /// Kubernetes Events on Applications.
    pub events: Arc<crate::events::AppEvents>,
}

impl Context {
    /// The app as the store has it (its packed status parsed back), or as our own last
    /// write left it when that is newer.
    pub fn app(&self, key: &AppKey) -> Option<Arc<Application>> {
        self.app_packed(key).map(|a| a.unpacked())
    }

    /// `app` without parsing the packed status back: enough to tell whose the app is
    /// (metadata, spec, sync and health), at a fraction of the cost.
    pub fn app_packed(&self, key: &AppKey) -> Option<Arc<Application>> {
        let stored = self
            .apps
            .get(&ObjectRef::new(&key.name).within(&key.namespace))?;
        Some(freshest(stored, self.memo(key).written))
    }

    /// The watch delivered `app`: once it is as new as our last write, drop that second copy.
    pub fn caught_up(&self, key: &AppKey, app: &Application) {
        let Ok(mut memo) = self.memo.lock() else {
            return;
        };
        if let Some(m) = memo.get_mut(key)
            && m.written.as_ref().is_some_and(|w| {
                w.metadata.uid != app.metadata.uid || resource_version(w) <= resource_version(app)
            })
        {
            m.written = None;
        }
    }

    pub fn project(&self, namespace: &str, name: &str) -> Option<Arc<AppProject>> {
        self.projects.get(&ObjectRef::new(name).within(namespace))
    }

    /// Whether this replica may act on the cluster `server` right now.
    pub fn owns(&self, server: &str) -> bool {
        self.gate.holds(server)
    }

    /// A permit to write to the cluster `server`, held for the length of one write, or `None`
    /// when the cluster is not (or no longer) this replica's.
    pub fn permit(&self, server: &str) -> Option<Permit> {
        self.gate.enter(server)
    }

    /// Whether this replica answers for an app whose cluster is unknown (exactly one replica
    /// does: the ring's plain owner of the app's key).
    pub fn answers_for(&self, key: &AppKey) -> bool {
        self.gate.owns_all() || self.shard.borrow().is_primary(&key.to_string())
    }

    pub fn memo(&self, key: &AppKey) -> AppMemo {
        self.memo
            .lock()
            .ok()
            .and_then(|m| m.get(key).cloned())
            .unwrap_or_default()
    }

    pub fn update_memo(&self, key: &AppKey, f: impl FnOnce(&mut AppMemo)) {
        if let Ok(mut m) = self.memo.lock() {
            f(m.entry(key.clone()).or_default());
        }
    }

    /// Forget an app that is gone (memory, schedule, gauge).
    pub fn forget(&self, key: &AppKey) {
        self.queue.forget(key);
        crate::metrics_argocd::forget_orphaned(self, key);
        let old = self.memo.lock().ok().and_then(|mut m| m.remove(key));
        if let Some(info) = old.and_then(|m| m.reported) {
            self.unreport(&info);
        }
    }

    fn unreport(&self, info: &AppInfoLabels) {
        self.metrics
            .apps
            .get_or_create(&AppLabels {
                sync_status: info.sync_status.clone(),
                health_status: info.health_status.clone(),
            })
            .dec();
        self.metrics.remove_app_info(info);
    }

    /// Record how an app is reported (sync, health, destination), moving it between the
    /// `flotilla_apps` buckets and replacing its `flotilla_app_info` series.
    pub fn report(&self, key: &AppKey, info: AppInfoLabels) {
        let mut old = None;
        let mut changed = false;
        self.update_memo(key, |m| {
            if m.reported.as_ref() != Some(&info) {
                old = m.reported.replace(info.clone());
                changed = true;
            }
        });
        if !changed {
            return;
        }
        if let Some(prev) = old {
            self.unreport(&prev);
        }
        self.metrics
            .apps
            .get_or_create(&AppLabels {
                sync_status: info.sync_status.clone(),
                health_status: info.health_status.clone(),
            })
            .inc();
        self.metrics.set_app_info(&info);
    }

    /// Apps by destination cluster server (apps whose destination is unknown left out).
    pub fn apps_by_server(&self) -> HashMap<String, Vec<AppKey>> {
        let registry = self.registry.borrow().clone();
        let mut out: HashMap<String, Vec<AppKey>> = HashMap::new();
        for a in self.apps.state() {
            let Some(c) = registry.resolve(
                a.spec.destination.server.as_deref(),
                a.spec.destination.name.as_deref(),
            ) else {
                continue;
            };
            if let (Some(ns), Some(name)) = (a.metadata.namespace.clone(), a.metadata.name.clone())
            {
                out.entry(c.server.clone())
                    .or_default()
                    .push(AppKey::new(ns, name));
            }
        }
        out
    }

    /// Number of apps per destination cluster server.
    pub fn app_counts_by_server(&self) -> HashMap<String, usize> {
        let registry = self.registry.borrow().clone();
        let mut out: HashMap<String, usize> = HashMap::new();
        for a in self.apps.state() {
            if let Some(c) = registry.resolve(
                a.spec.destination.server.as_deref(),
                a.spec.destination.name.as_deref(),
            ) {
                *out.entry(c.server.clone()).or_default() += 1;
            }
        }
        out
    }

    /// Apps whose destination is the cluster `server`.
    pub fn apps_on(&self, server: &str) -> Vec<AppKey> {
        let registry = self.registry.borrow().clone();
        self.apps
            .state()
            .iter()
            .filter(|a| {
                registry
                    .resolve(
                        a.spec.destination.server.as_deref(),
                        a.spec.destination.name.as_deref(),
                    )
                    .is_some_and(|c| c.server == server)
            })
            .filter_map(|a| {
                Some(AppKey::new(
                    a.metadata.namespace.clone()?,
                    a.metadata.name.clone()?,
                ))
            })
            .collect()
    }
}

/// Routes cache events into the work queue (weakly: a cache never keeps the context alive).
pub struct QueueEvents {
    pub ctx: std::sync::Weak<Context>,
}

impl CacheEvents for QueueEvents {
    fn objects_changed(&self, apps: Vec<AppKey>) {
        if let Some(ctx) = self.ctx.upgrade() {
            // A live object changed (a workload became ready): a status-only compare, urgent.
            for app in apps {
                ctx.queue.add_urgent(app, Level::Compare);
            }
        }
    }

    fn reachability_changed(&self, server: &str, _reachable: bool) {
        if let Some(ctx) = self.ctx.upgrade() {
            for app in ctx.apps_on(server) {
                ctx.queue.add(app, Level::Refresh);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_app(uid: &str, rv: &str, phase: &str) -> Arc<Application> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "a", "namespace": "argocd", "uid": uid, "resourceVersion": rv},
                "spec": {"destination": {}},
                "status": {"operationState": {"phase": phase}}
            }))
            .expect("app"),
        )
    }

    #[test]
    fn our_newer_write_wins_until_the_store_catches_up() {
        let stored = mk_app("u", "10", "Running");
        let written = mk_app("u", "11", "Succeeded");
        assert_eq!(
            freshest(stored.clone(), Some(written.clone()))
                .metadata
                .resource_version
                .as_deref(),
            Some("11")
        );
        let caught_up = mk_app("u", "12", "Succeeded");
        assert_eq!(
            freshest(caught_up, Some(written.clone()))
                .metadata
                .resource_version
                .as_deref(),
            Some("12")
        );
        // A recreated app (new uid) never takes the old one's status.
        let recreated = mk_app("v", "5", "Running");
        assert_eq!(
            freshest(recreated, Some(written)).metadata.uid.as_deref(),
            Some("v")
        );
        assert_eq!(
            freshest(stored, None).metadata.resource_version.as_deref(),
            Some("10")
        );
    }
}
