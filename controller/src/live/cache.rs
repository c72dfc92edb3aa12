//! One destination cluster's cache: discovery (cached per kind), one watch per kind its apps
//! use (selected by the tracking label) feeding a `LiveStore`, write-through of our own
//! writes, and reachability (watch failures mark the cluster down; a probe brings it back).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::Scope;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::metrics::CacheMetrics;
use super::store::LiveStore;
use crate::tracking::{AppKey, ResourceKey, group_version};

/// Why the cache cannot answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CacheError {
    #[error("cluster {cluster} is unreachable: {message}")]
    Unreachable { cluster: String, message: String },
    #[error("the cluster {cluster} does not serve {api_version} {kind}")]
    UnknownKind {
        cluster: String,
        api_version: String,
        kind: String,
    },
    #[error("watching {kind} in cluster {cluster} has not caught up: {message}")]
    NotSynced {
        cluster: String,
        kind: String,
        message: String,
    },
}

/// How a kind is reached: its API resource and whether it is namespaced.
#[derive(Debug, Clone)]
pub struct ApiInfo {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// What of a cluster Flotilla may manage (a cluster Secret's `namespaces` and
/// `clusterResources`): every namespace when `namespaces` is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterScope {
    pub namespaces: Vec<String>,
    pub cluster_resources: bool,
}

impl ClusterScope {
    /// Whether the whole cluster is in scope.
    pub fn is_cluster_wide(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// Why an object of `kind` named `name` (in `namespace` when `namespaced`) may not be
    /// managed on `cluster`, if it may not (Argo CD's messages for namespaced clusters).
    pub fn refusal(
        &self,
        cluster: &str,
        namespaced: bool,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<String> {
        if self.is_cluster_wide() {
            return None;
        }
        if namespaced {
            (!self.namespaces.iter().any(|n| n == namespace)).then(|| {
                format!(
                    "namespace {namespace:?} for {kind} {name:?} is not managed: cluster {cluster} is limited to the namespaces {:?} by its Secret",
                    self.namespaces
                )
            })
        } else {
            (!self.cluster_resources).then(|| {
                format!(
                    "cluster level {kind} {name:?} can not be managed when in namespaced mode: cluster {cluster}'s Secret sets namespaces without clusterResources: \"true\""
                )
            })
        }
    }
}

/// Where the cache reports changes (the controller turns them into reconciles).
pub trait CacheEvents: Send + Sync + 'static {
    /// Live objects of these apps changed.
    fn objects_changed(&self, apps: Vec<AppKey>);
    /// The cluster became reachable or unreachable.
    fn reachability_changed(&self, server: &str, reachable: bool);
}

struct KindWatch {
    synced: watch::Receiver<bool>,
    error: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
    /// Field managers whose `managedFields` the objects listed by this watch keep.
    managers: std::collections::BTreeSet<String>,
}

/// The cache of one cluster.
pub struct ClusterCache {
    pub name: String,
    pub server: String,
    client: Client,
    store: Arc<RwLock<LiveStore>>,
    kinds: Mutex<HashMap<(String, String), KindWatch>>,
    discovery: Mutex<HashMap<(String, String), ApiInfo>>,
    reachable: Arc<watch::Sender<Result<(), String>>>,
    probe: Mutex<Option<JoinHandle<()>>>,
    events: Arc<dyn CacheEvents>,
    metrics: CacheMetrics,
    /// Orphaned-resource candidates, started when an app first asks.
    orphans: Mutex<Option<Arc<super::orphans::OrphanIndex>>>,
    /// The cluster's version and API versions (for Helm and plugins), with when they were read.
    capabilities: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Capabilities>)>>,
    /// What may be watched and written (set once, before the first watch).
    scope: RwLock<ClusterScope>,
    /// When this cache was made (its first lists follow): Argo CD's cluster cache age.
    born: std::time::Instant,
}

/// What a cluster serves, as Helm's `.Capabilities` and Argo CD's plugins see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `v1.30.2` (pre-release and build metadata removed).
    pub kube_version: String,
    /// Every `group/version` and `group/version/Kind` (core: `v1`, `v1/Pod`), sorted.
    pub api_versions: Vec<String>,
}

/// How long capabilities are reused before discovery runs again.
const CAPABILITIES_TTL: std::time::Duration = std::time::Duration::from_secs(600);

impl Drop for ClusterCache {
    fn drop(&mut self) {
        if let Ok(kinds) = self.kinds.lock() {
            for k in kinds.values() {
                k.task.abort();
            }
        }
        if let Ok(Some(p)) = self.probe.lock().map(|mut p| p.take()) {
            p.abort();
        }
    }
}

fn is_connection_error(e: &kube::Error) -> bool {
    !matches!(e, kube::Error::Api(_))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl ClusterCache {
    pub fn new(
        name: String,
        server: String,
        client: Client,
        events: Arc<dyn CacheEvents>,
        metrics: CacheMetrics,
    ) -> Arc<Self> {
        // Known clusters start as reachable (0), so the series exists before any failure.
        metrics
            .unreachable
            .get_or_create(&CacheMetrics::labels(&name))
            .set(0);
        Arc::new(Self {
            name,
            server,
            client,
            store: Arc::new(RwLock::new(LiveStore::default())),
            kinds: Mutex::new(HashMap::new()),
            discovery: Mutex::new(HashMap::new()),
            reachable: Arc::new(watch::channel(Ok(())).0),
            probe: Mutex::new(None),
            events,
            metrics,
            orphans: Mutex::new(None),
            capabilities: tokio::sync::Mutex::new(None),
            scope: RwLock::new(ClusterScope::default()),
            born: std::time::Instant::now(),
        })
    }

    /// The cluster's capabilities (discovery, cached for 10 minutes).
    pub async fn capabilities(&self) -> Result<Arc<Capabilities>, kube::Error> {
        let mut slot = self.capabilities.lock().await;
        if let Some((at, c)) = slot.as_ref()
            && at.elapsed() < CAPABILITIES_TTL
        {
            return Ok(c.clone());
        }
        let info = self.client.apiserver_version().await?;
        let core = info
            .git_version
            .trim_start_matches('v')
            .split(['-', '+'])
            .next()
            .unwrap_or_default()
            .to_string();
        let discovery = kube::discovery::Discovery::new(self.client.clone())
            .run()
            .await?;
        let mut api = std::collections::BTreeSet::new();
        for group in discovery.groups() {
            for version in group.versions() {
                let gv = if group.name().is_empty() {
                    version.to_string()
                } else {
                    format!("{}/{version}", group.name())
                };
                for (ar, _) in group.versioned_resources(version) {
                    api.insert(format!("{gv}/{}", ar.kind));
                }
                api.insert(gv);
            }
        }
        let caps = Arc::new(Capabilities {
            kube_version: format!("v{core}"),
            api_versions: api.into_iter().collect(),
        });
        *slot = Some((std::time::Instant::now(), caps.clone()));
        Ok(caps)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `Ok` while reachable, else the last connection error.
    pub fn reachability(&self) -> Result<(), CacheError> {
        self.reachable
            .borrow()
            .clone()
            .map_err(|message| CacheError::Unreachable {
                cluster: self.name.clone(),
                message,
            })
    }

    /// Record a connection failure seen anywhere (watch, discovery, apply) and start probing.
    pub fn mark_unreachable(self: &Arc<Self>, message: String) {
        let was_ok = self.reachable.borrow().is_ok();
        let _ = self.reachable.send_replace(Err(message.clone()));
        self.metrics
            .unreachable
            .get_or_create(&CacheMetrics::labels(&self.name))
            .set(1);
        if was_ok {
            tracing::warn!(cluster = %self.name, error = %message, "cluster unreachable");
            self.events.reachability_changed(&self.server, false);
        }
        let mut probe = lock(&self.probe);
        if probe.as_ref().is_some_and(|p| !p.is_finished()) {
            return;
        }
        let weak = Arc::downgrade(self);
        *probe = Some(tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            loop {
                tokio::time::sleep(delay).await;
                let Some(this) = weak.upgrade() else { return };
                let res =
                    tokio::time::timeout(Duration::from_secs(5), this.client.apiserver_version())
                        .await;
                match res {
                    Ok(Ok(_)) => {
                        let _ = this.reachable.send_replace(Ok(()));
                        this.metrics
                            .unreachable
                            .get_or_create(&CacheMetrics::labels(&this.name))
                            .set(0);
                        tracing::info!(cluster = %this.name, "cluster reachable again");
                        this.events.reachability_changed(&this.server, true);
                        return;
                    }
                    Ok(Err(e)) => {
                        let _ = this.reachable.send_replace(Err(e.to_string()));
                    }
                    Err(_) => {
                        let _ = this
                            .reachable
                            .send_replace(Err("no answer within 5s".to_string()));
                    }
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }));
    }

    /// The API resource of `api_version`/`kind`, from discovery (cached once found).
    pub async fn api_info(
        self: &Arc<Self>,
        api_version: &str,
        kind: &str,
    ) -> Result<ApiInfo, CacheError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(i) = lock(&self.discovery).get(&key) {
            return Ok(i.clone());
        }
        let (group, version) = group_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((resource, caps)) => {
                let info = ApiInfo {
                    resource,
                    namespaced: caps.scope == Scope::Namespaced,
                };
                lock(&self.discovery).insert(key, info.clone());
                Ok(info)
            }
            Err(e) if is_connection_error(&e) && !matches!(e, kube::Error::Discovery(_)) => {
                self.mark_unreachable(e.to_string());
                Err(CacheError::Unreachable {
                    cluster: self.name.clone(),
                    message: e.to_string(),
                })
            }
            Err(_) => Err(CacheError::UnknownKind {
                cluster: self.name.clone(),
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            }),
        }
    }

    /// Limit the cache to a cluster Secret's namespaces (call before the first watch).
    pub fn set_scope(&self, scope: ClusterScope) {
        if let Ok(mut s) = self.scope.write() {
            *s = scope;
        }
    }

    /// What may be watched and written.
    pub fn scope(&self) -> ClusterScope {
        self.scope.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Forget discovery of a kind (after a CRD was applied or removed).
    pub fn forget_kind(&self, api_version: &str, kind: &str) {
        lock(&self.discovery).remove(&(api_version.to_string(), kind.to_string()));
    }

    /// An API handle for `info` in `namespace` (empty = all / cluster-scoped).
    pub fn api(&self, info: &ApiInfo, namespace: &str) -> Api<DynamicObject> {
        if info.namespaced && !namespace.is_empty() {
            Api::namespaced_with(self.client.clone(), namespace, &info.resource)
        } else {
            Api::all_with(self.client.clone(), &info.resource)
        }
    }

    /// Watch every kind in `kinds` ((apiVersion, kind)) and wait until each has listed once.
    /// Kinds the cluster does not serve are returned (not an error: they may come with a CRD).
    pub async fn ensure_watched(
        self: &Arc<Self>,
        kinds: &[(String, String)],
        timeout: Duration,
    ) -> Result<Vec<(String, String)>, CacheError> {
        self.reachability()?;
        let mut unknown = Vec::new();
        let mut waits = Vec::new();
        let settings = crate::settings::current();
        for (api_version, kind) in kinds {
            let (group, _) = group_version(api_version);
            if settings.excluded(group, kind, &self.server) {
                continue;
            }
            let gk = (group.to_string(), kind.clone());
            let existing = lock(&self.kinds)
                .get(&gk)
                .map(|w| (w.synced.clone(), w.error.clone()));
            let (synced, error) = match existing {
                Some(x) => x,
                None => {
                    let info = match self.api_info(api_version, kind).await {
                        Ok(i) => i,
                        Err(CacheError::UnknownKind { .. }) => {
                            unknown.push((api_version.clone(), kind.clone()));
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let mut kinds = lock(&self.kinds);
                    let w = kinds
                        .entry(gk.clone())
                        .or_insert_with(|| self.start_watch(gk.clone(), info));
                    let handles = (w.synced.clone(), w.error.clone());
                    self.metrics
                        .watched_kinds
                        .get_or_create(&CacheMetrics::labels(&self.name))
                        .set(kinds.len() as i64);
                    handles
                }
            };
            waits.push((kind.clone(), synced, error));
        }
        for (kind, mut synced, error) in waits {
            let done = tokio::time::timeout(timeout, synced.wait_for(|s| *s)).await;
            if !matches!(done, Ok(Ok(_))) {
                self.reachability()?;
                return Err(CacheError::NotSynced {
                    cluster: self.name.clone(),
                    kind,
                    message: lock(&error)
                        .clone()
                        .unwrap_or_else(|| format!("no initial list within {timeout:?}")),
                });
            }
        }
        Ok(unknown)
    }

    fn start_watch(self: &Arc<Self>, gk: (String, String), info: ApiInfo) -> KindWatch {
        let (synced_tx, synced) = watch::channel(false);
        let error = Arc::new(Mutex::new(None));
        let cfg = match crate::tracking::settings().watch_label() {
            Some(label) => watcher::Config::default().labels(label),
            None => watcher::Config::default(),
        };
        let scope = self.scope();
        // One watch over the whole cluster, or (a namespace-scoped cluster) one per namespace,
        // each event tagged with the namespace its list covers. Cluster-level kinds outside
        // the scope are not watched at all: nothing of them is ours to see.
        let streams: Vec<(Option<String>, Api<DynamicObject>)> = if scope.is_cluster_wide() {
            vec![(None, Api::all_with(self.client.clone(), &info.resource))]
        } else if info.namespaced {
            scope
                .namespaces
                .iter()
                .map(|ns| {
                    (
                        Some(ns.clone()),
                        Api::namespaced_with(self.client.clone(), ns, &info.resource),
                    )
                })
                .collect()
        } else if scope.cluster_resources {
            vec![(None, Api::all_with(self.client.clone(), &info.resource))]
        } else {
            Vec::new()
        };
        let weak = Arc::downgrade(self);
        let err_slot = error.clone();
        let name = self.name.clone();
        tracing::info!(cluster = %name, group = %gk.0, kind = %gk.1, lists = streams.len(), "watching");
        let task = tokio::spawn(async move {
            let lists = streams.len();
            if lists == 0 {
                synced_tx.send_replace(true);
                return;
            }
            let mut stream = futures::stream::select_all(streams.into_iter().map(|(ns, api)| {
                watcher::watcher(api, cfg.clone())
                    .default_backoff()
                    .map(move |ev| (ns.clone(), ev))
                    .boxed()
            }));
            let mut buffers: HashMap<Option<String>, Vec<Value>> = HashMap::new();
            let mut listed: std::collections::HashSet<Option<String>> = Default::default();
            let mut counters = None;
            while let Some((ns, ev)) = stream.next().await {
                let Some(this) = weak.upgrade() else { return };
                if crate::settings::current().excluded(&gk.0, &gk.1, &this.server) {
                    return;
                }
                let labels = CacheMetrics::labels(&this.name);
                let changed = match ev {
                    Ok(ev) => {
                        let (flotilla, argocd) = counters.get_or_insert_with(|| {
                            this.metrics
                                .event_counters(&this.name, &this.server, &gk.0, &gk.1)
                        });
                        flotilla.iter().chain(argocd.iter()).for_each(|c| {
                            c.inc();
                        });
                        *lock(&err_slot) = None;
                        match ev {
                            Event::Init => {
                                buffers.remove(&ns);
                                Vec::new()
                            }
                            Event::InitApply(o) => {
                                buffers
                                    .entry(ns.clone())
                                    .or_default()
                                    .extend(serde_json::to_value(o).ok());
                                Vec::new()
                            }
                            Event::InitDone => {
                                let objs = buffers.remove(&ns).unwrap_or_default();
                                let affected =
                                    this.write()
                                        .replace_kind_in(&gk.0, &gk.1, ns.as_deref(), objs);
                                listed.insert(ns.clone());
                                if listed.len() == lists {
                                    synced_tx.send_replace(true);
                                }
                                affected
                            }
                            Event::Apply(o) => match serde_json::to_value(o) {
                                Ok(v) => {
                                    let quiet = this.update_ignorable(&v);
                                    let changed = this.write().upsert(v);
                                    if quiet {
                                        this.metrics.ignored_updates.get_or_create(&labels).inc();
                                        Vec::new()
                                    } else {
                                        changed
                                    }
                                }
                                Err(_) => Vec::new(),
                            },
                            Event::Delete(o) => serde_json::to_value(o)
                                .ok()
                                .and_then(|v| this.write().remove_version(&v))
                                .into_iter()
                                .collect(),
                        }
                    }
                    Err(e) => {
                        this.metrics.watch_errors.get_or_create(&labels).inc();
                        let msg = e.to_string();
                        tracing::debug!(cluster = %this.name, kind = %gk.1, error = %msg, "watch error");
                        *lock(&err_slot) = Some(msg.clone());
                        let connection = match &e {
                            watcher::Error::InitialListFailed(k)
                            | watcher::Error::WatchStartFailed(k)
                            | watcher::Error::WatchFailed(k) => is_connection_error(k),
                            _ => false,
                        };
                        if connection {
                            this.mark_unreachable(msg);
                        }
                        Vec::new()
                    }
                };
                this.metrics
                    .objects
                    .get_or_create(&labels)
                    .set(this.read_len() as i64);
                if !changed.is_empty() {
                    this.events.objects_changed(changed);
                }
            }
        });
        KindWatch {
            synced,
            error,
            task,
            managers: crate::ignore::kept_managers(),
        }
    }

    /// Whether `new` changes only fields `ignoreResourceUpdates` names of the cached copy
    /// (same owner, same health): stored, but no reconcile.
    fn update_ignorable(&self, new: &Value) -> bool {
        let settings = crate::settings::current();
        if !settings.ignore_updates_enabled {
            return false;
        }
        let Some(key) = ResourceKey::of(new) else {
            return false;
        };
        let Some((app, old)) = self.read().get(&key) else {
            return false;
        };
        crate::tracking::owner(new).as_ref() == Some(&app)
            && settings.update_ignorable(&key, &old, &super::store::trim(new.clone()))
    }

    /// The cluster's orphaned-resource index, started on first use (metadata-only watches of
    /// every namespaced kind not excluded by the settings).
    pub fn orphans(&self) -> Arc<super::orphans::OrphanIndex> {
        let mut slot = lock(&self.orphans);
        if let Some(i) = slot.as_ref() {
            return i.clone();
        }
        let server = self.server.clone();
        let index = super::orphans::OrphanIndex::start(
            self.client.clone(),
            self.name.clone(),
            Arc::new(move |g: &str, k: &str| crate::settings::current().excluded(g, k, &server)),
            self.scope().namespaces,
        );
        *slot = Some(index.clone());
        index
    }

    /// Stop watching the kinds `drop` names and forget their objects (excluded by new
    /// settings); the apps that held some are told.
    pub fn drop_kinds(&self, drop: impl Fn(&str, &str) -> bool) {
        let stopped: Vec<(String, String)> = lock(&self.kinds)
            .keys()
            .filter(|(g, k)| drop(g, k))
            .cloned()
            .collect();
        for gk in &stopped {
            if let Some(w) = lock(&self.kinds).remove(gk) {
                w.task.abort();
                tracing::info!(cluster = %self.name, group = %gk.0, kind = %gk.1, "excluded by the settings: no longer watched");
            }
        }
        let apps = self.write().drop_kinds(drop);
        if !apps.is_empty() {
            self.events.objects_changed(apps);
        }
    }

    /// Watch again (a fresh list replaces the cached objects when it completes; until then
    /// they stay) every watched kind some rule covers whose watch started before the rule's
    /// field managers were kept: their objects lack those managers' `managedFields`.
    pub fn relist_for_managers(&self, rules: &[crate::ignore::IgnoreRule]) {
        let mut kinds = lock(&self.kinds);
        let stale: Vec<(String, String)> = kinds
            .iter()
            .filter(|((g, k), w)| {
                rules.iter().any(|r| {
                    r.managers.iter().any(|m| !w.managers.contains(m))
                        && crate::settings::wildcard(&r.group, g)
                        && crate::settings::wildcard(&r.kind, k)
                })
            })
            .map(|(gk, _)| gk.clone())
            .collect();
        for gk in stale {
            if let Some(w) = kinds.remove(&gk) {
                w.task.abort();
                tracing::info!(cluster = %self.name, group = %gk.0, kind = %gk.1, "listing again for the field managers ignoreDifferences names");
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, LiveStore> {
        match self.store.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, LiveStore> {
        match self.store.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn read_len(&self) -> usize {
        self.read().len()
    }

    /// Objects held and kinds watched (Argo CD's `argocd_cluster_api_resource_objects` and
    /// `argocd_cluster_api_resources`).
    pub fn stats(&self) -> (usize, usize) {
        (self.read_len(), lock(&self.kinds).len())
    }

    /// How long ago this cache was made.
    pub fn age(&self) -> Duration {
        self.born.elapsed()
    }

    /// The live objects `app` owns in this cluster.
    /// Objects of kinds the settings exclude are never shown (so never compared or pruned),
    /// even while their watch is being stopped.
    pub fn live_for(&self, app: &AppKey) -> BTreeMap<ResourceKey, Arc<Value>> {
        let mut objs = self.read().for_app(app);
        let settings = crate::settings::current();
        objs.retain(|k, _| !settings.excluded(&k.group, &k.kind, &self.server));
        objs
    }

    /// Write-through: an object our own write returned (newer than or equal to what the
    /// watch has delivered), so a comparison right after a sync sees it.
    /// The app owning the cached object at `key`.
    pub fn owner_of(&self, key: &ResourceKey) -> Option<AppKey> {
        self.read().owner_of(key)
    }

    pub fn observe(&self, obj: Value) {
        self.write().upsert(obj);
    }

    /// Write-through of a completed delete.
    pub fn observe_deleted(&self, key: &ResourceKey) {
        self.write().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterScope;

    #[test]
    fn a_namespaced_cluster_refuses_other_namespaces_and_cluster_level_objects() {
        let all = ClusterScope::default();
        assert!(all.refusal("c", false, "Namespace", "", "x").is_none());
        let scoped = ClusterScope {
            namespaces: vec!["team-a".into()],
            cluster_resources: false,
        };
        assert!(
            scoped
                .refusal("c", true, "ConfigMap", "team-a", "x")
                .is_none()
        );
        let other = scoped
            .refusal("c", true, "ConfigMap", "payments", "x")
            .expect("refused");
        assert!(
            other.contains("\"payments\"") && other.contains("is not managed"),
            "{other}"
        );
        assert!(scoped.refusal("c", false, "ClusterRole", "", "r").is_some());
        let with_cluster = ClusterScope {
            cluster_resources: true,
            ..scoped
        };
        assert!(
            with_cluster
                .refusal("c", false, "ClusterRole", "", "r")
                .is_none()
        );
    }
}
