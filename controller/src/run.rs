//! Wiring: the watches of the control plane (Applications, AppProjects, cluster and
//! repository Secrets) feeding read-only stores and the work queue, the reconcile workers,
//! and the HTTP endpoint. `run` returns when the shutdown future resolves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_sharding::membership::{MembershipConfig, STATUS_ADDRESS_ANNOTATION};
use flotilla_sharding::ring::quantize_weight;
use flotilla_sharding::{Gate, KeySet, Keys, ShardMetrics, ShardStatus};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};

use crate::phase_cpu::Phase;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use prometheus_client::registry::Registry as MetricsRegistry;
use tokio::sync::watch;
use tracing::Instrument;

use crate::clusters::{Cluster, Registry};
use crate::config::{Balance, ControllerConfig};
use crate::context::{Caches, Context, Level};
use crate::live::metrics::CacheMetrics;
use crate::manifests::{ManifestClient, ManifestMetrics, MemoryCache};
use crate::metrics::ControllerMetrics;
use crate::queue::{QueueMetrics, WorkQueue};
use crate::reconcile::{REFRESH_ANNOTATION, reconcile, schedule};
use crate::repo_pool::{Discovery, PoolMetrics, RepoPool};
use crate::repos::RepoCredsIndex;
use crate::tracking::{self, AppKey};
use crate::types::{AppProject, Application};
use flotilla_cache::{ManifestStore, RevisionStore};

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "the Argo CD CRDs are not installed in the control plane ({0}); apply them first: flotilla-controller --print-crds | kubectl apply -f -"
    )]
    CrdsMissing(String),
    #[error("control plane: {0}")]
    ControlPlane(String),
    #[error(transparent)]
    Http(#[from] flotilla_core::http::HttpError),
    #[error(transparent)]
    Manifests(#[from] crate::manifests::ManifestError),
    #[error("writing {path}: {message}")]
    AddressFile { path: String, message: String },
    #[error(transparent)]
    Sharding(#[from] flotilla_sharding::ShardError),
    #[error("argocd-cm: {0}")]
    Settings(String),
}

/// Argo CD's resource-tracking settings from the `argocd-cm` ConfigMap (absent: Flotilla's
/// own marks only). Read once at start: changing the method means a restart, as moving
/// tracking always needs a full resync.
pub async fn read_tracking(
    control: &Client,
    namespace: &str,
) -> Result<tracking::Tracking, RunError> {
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(control.clone(), namespace);
    let data = match cms.get_opt("argocd-cm").await {
        Ok(cm) => cm.and_then(|c| c.data).unwrap_or_default(),
        Err(e) => return Err(RunError::ControlPlane(format!("reading argocd-cm: {e}"))),
    };
    let method_text = data
        .get("application.resourceTrackingMethod")
        .cloned()
        .unwrap_or_default();
    let method = tracking::Method::parse(&method_text).ok_or_else(|| {
        RunError::Settings(format!(
            "application.resourceTrackingMethod {method_text:?} is not one of label, annotation, annotation+label"
        ))
    })?;
    put_in_force(&data);
    Ok(tracking::Tracking {
        method,
        instance_label: data
            .get("application.instanceLabelKey")
            .filter(|k| !k.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| tracking::DEFAULT_INSTANCE_LABEL.into()),
        installation_id: data
            .get("installationID")
            .filter(|i| !i.is_empty())
            .cloned(),
        control_namespace: namespace.to_string(),
    })
}

/// Parse `argocd-cm`'s data and put the settings in force; `true` when they changed. Every
/// refused key is logged (the rest apply).
fn put_in_force(data: &BTreeMap<String, String>) -> bool {
    let s = crate::settings::Settings::parse(data);
    for p in &s.problems {
        tracing::error!(problem = %p, "argocd-cm: setting refused");
    }
    crate::settings::install(s)
}

/// Watch `argocd-cm`: a change puts the new settings in force, stops watching kinds they now
/// exclude and re-compares every app (no restart needed).
async fn watch_settings(ctx: Arc<Context>, control: Client, namespace: String) {
    let mut stream = crate::config_map::data_stream(control, &namespace, "argocd-cm").boxed();
    while let Some(data) = stream.next().await {
        let changed = put_in_force(&data);
        let now = crate::settings::current();
        ctx.metrics.settings_problems.set(now.problems.len() as i64);
        if !changed {
            continue;
        }
        ctx.metrics.settings_reloads.inc();
        let tracked = tracking::settings();
        let method = data
            .get("application.resourceTrackingMethod")
            .map(String::as_str)
            .unwrap_or_default();
        let label = data
            .get("application.instanceLabelKey")
            .map(String::as_str)
            .filter(|l| !l.trim().is_empty())
            .unwrap_or(tracking::DEFAULT_INSTANCE_LABEL);
        if tracking::Method::parse(method) != Some(tracked.method)
            || label != tracked.instance_label
        {
            tracing::error!(
                "argocd-cm: a change of the tracking settings (resourceTrackingMethod, instanceLabelKey) takes effect at the next restart"
            );
        }
        // Kinds now excluded stop being watched (and their objects are forgotten); kinds the
        // rules name field managers for are listed again when their watch predates them.
        let rules = now.ignore_rules();
        crate::ignore::keep_managers(rules);
        for server in ctx.caches.servers() {
            if let Some(cache) = ctx.caches.get(&server) {
                cache.drop_kinds(|group, kind| now.excluded(group, kind, &server));
                cache.relist_for_managers(rules);
            }
        }

        tracing::info!(
            problems = now.problems.len(),
            "argocd-cm changed: settings in force"
        );
        for app in ctx.apps.state() {
            if let Some(k) = key_of(&app) {
                ctx.queue.add(k, Level::Compare);
            }
        }
    }
}

/// Label selector of Argo CD cluster Secrets.
pub const CLUSTER_SECRETS: &str = "argocd.argoproj.io/secret-type=cluster";
/// Label selector of repository credential Secrets.
pub const REPO_SECRETS: &str = "argocd.argoproj.io/secret-type in (repository,repo-creds)";

/// Create the `default` AppProject (allow everything) when it is missing, as Argo CD does.
async fn ensure_default_project(client: &Client, namespace: &str) -> Result<(), RunError> {
    let api: Api<AppProject> = Api::namespaced(client.clone(), namespace);
    match api.get_opt("default").await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            let mut p = AppProject::new("default", crate::project::default_project());
            p.meta_mut().namespace = Some(namespace.to_string());
            match api.create(&PostParams::default(), &p).await {
                Ok(_) => {
                    tracing::info!(namespace, "created the default AppProject");
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(RunError::ControlPlane(format!(
                    "creating the default project: {e}"
                ))),
            }
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Err(RunError::CrdsMissing(s.message.clone())),
        Err(e) => Err(RunError::ControlPlane(e.to_string())),
    }
}

/// Whether the installed Application CRD serves `/status` (ours does, Argo CD's does not).
async fn has_status_subresource(client: &Client) -> bool {
    let gvk = kube::api::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((_, caps)) => {
            let has = caps.subresources.iter().any(|(r, _)| r.plural == "status");
            tracing::info!(
                status_subresource = has,
                "Application CRD: status is written {}",
                if has {
                    "through /status"
                } else {
                    "with the object (Argo CD's CRD)"
                }
            );
            has
        }
        Err(e) => {
            tracing::warn!(error = %e, "discovering the Application CRD; assuming a /status subresource");
            true
        }
    }
}

fn registry_of(secrets: &Store<Secret>, in_cluster: bool) -> Registry {
    let state = secrets.state();
    let implicit = in_cluster.then(Cluster::in_cluster);
    let r = Registry::from_secrets(state.iter().map(|s| s.as_ref()), implicit);
    for e in &r.errors {
        tracing::warn!(error = %e, "ignoring cluster Secret");
    }
    r
}

/// What makes an Application event worth a reconcile (status-only writes are not).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Trigger {
    uid: Option<String>,
    generation: Option<i64>,
    refresh: Option<String>,
    deleting: bool,
}

impl Trigger {
    fn of(app: &Application) -> Self {
        Self {
            uid: app.metadata.uid.clone(),
            generation: app.metadata.generation,
            refresh: app
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REFRESH_ANNOTATION))
                .cloned(),
            deleting: app.metadata.deletion_timestamp.is_some(),
        }
    }

    /// Whether moving from `old` to `self` needs a reconcile.
    fn fires_after(&self, old: Option<&Trigger>) -> bool {
        let Some(old) = old else { return true };
        old.uid != self.uid
            || old.generation != self.generation
            || (self.refresh.is_some() && old.refresh != self.refresh)
            || (self.deleting && !old.deleting)
    }
}

fn key_of(app: &Application) -> Option<AppKey> {
    Some(AppKey::new(
        app.metadata.namespace.clone()?,
        app.metadata.name.clone()?,
    ))
}

/// The metrics endpoint: `/metrics`, `/healthz` and `/readyz`, plus `/status` only when a
/// handler is given (`--status-endpoint`); otherwise `/status` is not routed (404).
fn endpoint_router(
    metrics: Arc<MetricsRegistry>,
    ready: flotilla_core::http::Ready,
    status: Option<axum::routing::MethodRouter>,
) -> axum::Router {
    let router = flotilla_core::http::router(metrics, ready);
    match status {
        Some(handler) => router.route("/status", handler),
        None => router,
    }
}

/// Run the controller until `shutdown` resolves.
pub async fn run(
    cfg: ControllerConfig,
    control: Client,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let mut metrics_registry = MetricsRegistry::default();
    let metrics = ControllerMetrics::register_mode(&mut metrics_registry, cfg.argocd_metrics);
    let shard_metrics = ShardMetrics::register(&mut metrics_registry);
    let mut membership_cfg = MembershipConfig {
        namespace: cfg.namespace.clone(),
        group: cfg.sharding.group.clone(),
        identity: cfg.sharding.identity.clone(),
        lease_duration: cfg.sharding.lease_duration,
        renew_interval: cfg.sharding.renew_interval,
        epsilon: cfg.sharding.epsilon,
        vnodes: cfg.sharding.vnodes,
        ..MembershipConfig::default()
    };
    if cfg.sharding.enabled {
        membership_cfg.validate()?;
    }
    let tracking_settings = read_tracking(&control, &cfg.namespace).await?;
    tracing::info!(method = ?tracking_settings.method, label = %tracking_settings.instance_label,
        "resource tracking");
    tracking::configure(tracking_settings);
    let gate = if cfg.sharding.enabled {
        Gate::none()
    } else {
        Gate::all()
    };
    let (shard_tx, shard_rx) = watch::channel(Arc::new(ShardStatus {
        identity: cfg.sharding.identity.clone(),
        ..Default::default()
    }));
    let (keys_tx, keys_rx) = watch::channel::<Keys>(Arc::new(KeySet::default()));
    let keys_dirty = Arc::new(tokio::sync::Notify::new());
    let queue_metrics = QueueMetrics::register(&mut metrics_registry);
    let cache_metrics = CacheMetrics::register_with(&mut metrics_registry, &metrics);
    let manifest_metrics = ManifestMetrics::register(&mut metrics_registry);
    let pool_metrics = PoolMetrics::register(&mut metrics_registry);
    let webhook_metrics = WebhookMetrics::register(&mut metrics_registry);
    let selection_metrics = crate::selection::SelectionMetrics::register(&mut metrics_registry);
    let appset_metrics = crate::appset_controller::AppSetMetrics::register(&mut metrics_registry);
    let events = Arc::new(crate::events::AppEvents::new(
        control.clone(),
        &cfg.sharding.identity,
        &mut metrics_registry,
    ));
    let cache_metrics_shared =
        crate::metrics_argocd::cache_metrics(&mut metrics_registry, &metrics);
    ensure_default_project(&control, &cfg.namespace).await?;
    let status_subresource = has_status_subresource(&control).await;

    let ns = cfg.namespace.clone();
    let (apps, apps_writer) = reflector::store::<Application>();
    let (projects, projects_writer) = reflector::store::<AppProject>();
    let (cluster_secrets, cluster_writer) = reflector::store::<Secret>();
    let (repo_secrets, repo_writer) = reflector::store::<Secret>();
    let (registry_tx, registry_rx) = watch::channel(Arc::new(Registry::default()));
    let (creds_tx, creds_rx) = watch::channel(Arc::new(RepoCredsIndex::default()));
    let discovery: Discovery = cfg.repo_server.parse().map_err(|e: String| {
        RunError::Manifests(crate::manifests::ManifestError::BadEndpoint(e))
    })?;
    let tls = cfg.repo_server_ca.as_ref().map(|pem| {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(pem))
    });
    let pool = RepoPool::with_tls(discovery, cfg.rpc_timeout, pool_metrics, tls)
        .with_token(cfg.repo_server_token.clone())
        .with_max_in_flight(cfg.repo_server_max_in_flight);
    let (shared, revision_backend): (Option<ManifestStore>, Arc<dyn flotilla_cache::Store>) =
        match &cfg.redis_url {
            Some(url) => {
                let store: Arc<dyn flotilla_cache::Store> = Arc::new(
                    flotilla_cache::redis::RedisStore::connect(
                        flotilla_cache::redis::RedisConfig {
                            tls: cfg.redis_tls.clone(),
                            ..flotilla_cache::redis::RedisConfig::new(url)
                        },
                        cache_metrics_shared.clone(),
                    )
                    .map_err(|e| RunError::ControlPlane(format!("Redis: {e}")))?,
                );
                (
                    Some(ManifestStore::new(
                        store.clone(),
                        flotilla_cache::manifests::DEFAULT_TTL,
                        cache_metrics_shared.clone(),
                    )),
                    store,
                )
            }
            None => (None, Arc::new(flotilla_cache::MemoryStore::new(16_384))),
        };
    let revisions = RevisionStore::new(
        revision_backend,
        cfg.revision_cache_ttl.unwrap_or(cfg.refresh_interval),
        cache_metrics_shared,
    );
    let manifests = ManifestClient::new(
        pool,
        MemoryCache::new(cfg.manifest_cache_entries),
        shared,
        revisions,
        manifest_metrics,
    );
    let ctx = Arc::new(Context {
        cfg: cfg.clone(),
        control: control.clone(),
        apps: apps.clone(),
        projects: projects.clone(),
        registry: registry_rx,
        repo_creds: creds_rx,
        gate: gate.clone(),
        shard: shard_rx.clone(),
        caches: Caches::new(cfg.user_agent()).with_limits(crate::client_limits::ClientLimits::new(
            cfg.kube_client,
            crate::client_limits::ClientLimitMetrics::register(&mut metrics_registry),
        )),
        status_subresource,
        manifests,
        queue: Arc::new(WorkQueue::new(queue_metrics)),
        memo: Mutex::new(HashMap::new()),
        metrics,
        cache_metrics,
        events,
    });
    crate::metrics_argocd::attach(&ctx);
    // Fairness in the queue: an app's group is its destination cluster (server, else name).
    // The cluster as the registry resolves it, so spellings of one cluster (`https://c/`,
    // `https://c`, its name) share one turn; unresolvable destinations share one group.
    {
        let apps = ctx.apps.clone();
        let registry = ctx.registry.clone();
        ctx.queue.set_grouper(move |k: &AppKey| {
            let app =
                apps.get(&kube::runtime::reflector::ObjectRef::new(&k.name).within(&k.namespace));
            let reg = registry.borrow().clone();
            let cluster = app.as_ref().and_then(|a| {
                reg.resolve(
                    a.spec.destination.server.as_deref(),
                    a.spec.destination.name.as_deref(),
                )
            });
            Arc::from(cluster.map_or("<unresolved>", |c| c.server.as_str()))
        });
    }
    let mut tasks = Vec::new();

    // Applications: reconcile on spec/operation changes, refresh requests and deletion.
    {
        let ctx = ctx.clone();
        let keys_dirty = keys_dirty.clone();
        // Apps in any namespace: one cluster-wide watch, keeping only the namespaces this
        // controller serves (globs cannot be namespaced watches).
        let any_namespace = !cfg.application_namespaces.is_empty();
        let api: Api<Application> = if any_namespace {
            Api::all(control.clone())
        } else {
            Api::namespaced(control.clone(), &ns)
        };
        let scope = cfg.clone();
        let mut selection =
            crate::selection::Tracker::new(cfg.selection.clone(), selection_metrics);
        let handover_ctx = ctx.clone();
        if cfg.selection.narrows() {
            tracing::info!(
                selector = %cfg.selection.selector_text,
                projects = ?cfg.selection.projects,
                side_by_side = cfg.selection.side_by_side,
                "reconciling only the selected Applications"
            );
        }
        tasks.push(tokio::spawn(
            async move {
                let mut seen: HashMap<AppKey, Trigger> = HashMap::new();
                let in_scope = move |app: &Application| {
                    app.metadata
                        .namespace
                        .as_deref()
                        .is_some_and(|n| scope.watches_app_namespace(n))
                };
                // managedFields and kubectl's last-applied copy are never read here: keeping
                // them would hold a second copy of every spec in memory.
                let mut stream = reflector::reflector(
                    apps_writer,
                    watcher::watcher(api, watcher::Config::default())
                        // Another namespace's Application never enters the store.
                        .try_filter(move |ev| {
                            futures::future::ready(match ev {
                                watcher::Event::Apply(a)
                                | watcher::Event::InitApply(a)
                                | watcher::Event::Delete(a) => in_scope(a),
                                _ => true,
                            })
                        })
                        .modify(|app| {
                            app.metadata.managed_fields = None;
                            if let Some(a) = app.metadata.annotations.as_mut() {
                                a.remove("kubectl.kubernetes.io/last-applied-configuration");
                            }
                            // Every replica holds every Application; the status a reconcile
                            // reads stays as compact JSON until it does (`Context::app`).
                            app.pack();
                        })
                        // An app not selected (or not yet handed over by Argo CD) never
                        // enters the store; one that leaves the selection leaves it.
                        .try_filter_map(move |ev| {
                            // A hand-over seen now: the first reconcile waits out the grace.
                            let mut admit = |a: &Application| match selection.admit(a) {
                                None => false,
                                Some(handed) => {
                                    if handed && let Some(key) = key_of(a) {
                                        let now = Instant::now();
                                        handover_ctx
                                            .update_memo(&key, |m| m.handed_over_at = Some(now));
                                    }
                                    true
                                }
                            };
                            let ev = match ev {
                                watcher::Event::Apply(a) if !admit(&a) => {
                                    Some(watcher::Event::Delete(a))
                                }
                                watcher::Event::InitApply(a) if !admit(&a) => None,
                                watcher::Event::Delete(a) => {
                                    selection.deleted(&a);
                                    Some(watcher::Event::Delete(a))
                                }
                                watcher::Event::Init => {
                                    selection.relist();
                                    Some(watcher::Event::Init)
                                }
                                other => Some(other),
                            };
                            futures::future::ready(Ok(ev))
                        }),
                )
                .default_backoff()
                .boxed();
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(Event::Apply(app) | Event::InitApply(app)) => {
                            let Some(key) = key_of(&app) else { continue };
                            ctx.caught_up(&key, &app);
                            let t = Trigger::of(&app);
                            if t.refresh.is_some()
                                && seen.get(&key).is_none_or(|old| old.refresh != t.refresh)
                            {
                                let now = Instant::now();
                                ctx.update_memo(&key, |m| m.refresh_requested = Some(now));
                            }
                            if t.fires_after(seen.get(&key)) {
                                // An app seen before changed (a refresh asked, a sync, an
                                // edit): urgent; a new one (or the first list) is bulk.
                                let lane = if seen.contains_key(&key) {
                                    crate::queue::Lane::Urgent
                                } else {
                                    crate::queue::Lane::Bulk
                                };
                                ctx.queue.add_in(key.clone(), Level::Refresh, lane);
                                keys_dirty.notify_one();
                            }
                            seen.insert(key, t);
                        }
                        Ok(Event::Delete(app)) => {
                            if let Some(key) = key_of(&app) {
                                seen.remove(&key);
                                ctx.forget(&key);
                                keys_dirty.notify_one();
                            }
                        }
                        Ok(Event::InitDone) => {
                            // A relist leaves out what is gone or no longer selected without a
                            // Delete: forget those too, so a later hand-back fires again.
                            let gone: Vec<AppKey> = seen
                                .keys()
                                .filter(|k| {
                                    ctx.apps
                                        .get(&ObjectRef::new(&k.name).within(&k.namespace))
                                        .is_none()
                                })
                                .cloned()
                                .collect();
                            for k in gone {
                                seen.remove(&k);
                                ctx.forget(&k);
                            }
                        }
                        Ok(Event::Init) => {}
                        Err(e) => tracing::warn!(error = %e, "watching Applications"),
                    }
                }
            }
            .instrument(tracing::info_span!("watch", kind = "Application")),
        ));
    }
    tasks.push(tokio::spawn(
        watch_settings(ctx.clone(), control.clone(), ns.clone())
            .instrument(tracing::info_span!("watch", kind = "argocd-cm")),
    ));
    // AppProjects: a change re-checks the project's apps.
    {
        let ctx = ctx.clone();
        let api: Api<AppProject> = Api::namespaced(control.clone(), &ns);
        tasks.push(tokio::spawn(
            async move {
                let mut stream = reflector::reflector(
                    projects_writer,
                    watcher::watcher(api, watcher::Config::default()),
                )
                .default_backoff()
                .boxed();
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(Event::Apply(p) | Event::Delete(p)) => {
                            let name = p.metadata.name.clone().unwrap_or_default();
                            for app in ctx.apps.state() {
                                let proj = if app.spec.project.is_empty() {
                                    "default"
                                } else {
                                    app.spec.project.as_str()
                                };
                                if proj == name
                                    && let Some(k) = key_of(&app)
                                {
                                    ctx.queue.add(k, Level::Refresh);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "watching AppProjects"),
                    }
                }
            }
            .instrument(tracing::info_span!("watch", kind = "AppProject")),
        ));
    }
    // Cluster Secrets: rebuild the registry; a change refreshes every app.
    {
        let ctx = ctx.clone();
        let keys_dirty = keys_dirty.clone();
        let api: Api<Secret> = Api::namespaced(control.clone(), &ns);
        let in_cluster = cfg.in_cluster;
        let store = cluster_secrets.clone();
        tasks.push(tokio::spawn(
            async move {
                let mut stream = reflector::reflector(
                    cluster_writer,
                    watcher::watcher(api, watcher::Config::default().labels(CLUSTER_SECRETS)),
                )
                .default_backoff()
                .boxed();
                let mut initialised = false;
                while let Some(ev) = stream.next().await {
                    let rebuild = match ev {
                        Ok(Event::InitDone) => {
                            initialised = true;
                            true
                        }
                        Ok(Event::Apply(_) | Event::Delete(_)) => initialised,
                        Ok(_) => false,
                        Err(e) => {
                            tracing::warn!(error = %e, "watching cluster Secrets");
                            false
                        }
                    };
                    if !rebuild {
                        continue;
                    }
                    let reg = registry_of(&store, in_cluster);
                    ctx.metrics.clusters.set(reg.len() as i64);
                    let dropped = ctx.caches.retain_known(&reg);
                    let changed = registry_tx.borrow().clusters().ne(reg.clusters());
                    registry_tx.send_replace(Arc::new(reg));
                    keys_dirty.notify_one();
                    if changed {
                        tracing::info!(dropped = dropped.len(), "cluster registry changed");
                        for app in ctx.apps.state() {
                            if let Some(k) = key_of(&app) {
                                ctx.queue.add(k, Level::Refresh);
                            }
                        }
                    }
                }
            }
            .instrument(tracing::info_span!("watch", kind = "ClusterSecret")),
        ));
    }
    // Repository Secrets: the credentials index.
    {
        let api: Api<Secret> = Api::namespaced(control.clone(), &ns);
        let store = repo_secrets.clone();
        tasks.push(tokio::spawn(
            async move {
                let mut stream = reflector::reflector(
                    repo_writer,
                    watcher::watcher(api, watcher::Config::default().labels(REPO_SECRETS)),
                )
                .default_backoff()
                .boxed();
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(Event::InitApply(_) | Event::Init) => {}
                        Ok(_) => {
                            let state = store.state();
                            creds_tx.send_replace(Arc::new(RepoCredsIndex::from_secrets(
                                state.iter().map(|s| s.as_ref()),
                            )));
                        }
                        Err(e) => tracing::warn!(error = %e, "watching repository Secrets"),
                    }
                }
            }
            .instrument(tracing::info_span!("watch", kind = "RepositorySecret")),
        ));
    }

    // The endpoint answers health at once and readiness once the stores are synced.
    let ready = flotilla_core::http::Ready::default();
    let status_ctx = Arc::downgrade(&ctx);
    // `/status` lists every cluster URL, unauthenticated: only with --status-endpoint.
    let status = cfg.status_endpoint.then(|| {
        axum::routing::get(move || {
            let ctx = status_ctx.upgrade();
            async move { axum::Json(crate::status_routes::replica_status(ctx.as_ref())) }
        })
    });
    let mut router = endpoint_router(Arc::new(metrics_registry), ready.clone(), status);
    let status_routes = cfg
        .status_token
        .clone()
        .map(|secret| crate::status_routes::StatusRoutes::new(Arc::downgrade(&ctx), secret));
    if let Some(routes) = &status_routes {
        router = router.merge(crate::status_routes::router(routes.clone()));
    }
    let metrics_addr = flotilla_core::http::serve(cfg.metrics_listen, router).await?;
    let advertised = match (&cfg.advertise_address, metrics_addr.ip().is_unspecified()) {
        (Some(a), _) => Some(a.clone()),
        (None, false) => Some(metrics_addr.to_string()),
        (None, true) => None,
    };
    if let (Some(routes), Some(a)) = (&status_routes, &advertised) {
        let _ = routes.address.set(a.clone());
    }
    match &advertised {
        Some(a) => {
            membership_cfg
                .annotations
                .insert(STATUS_ADDRESS_ANNOTATION.into(), a.clone());
        }
        None if cfg.status_token.is_some() => tracing::warn!(
            metrics = %metrics_addr,
            "no --advertise-address: the API server cannot reach this replica's status routes"
        ),
        None => {}
    }
    let webhook_addr = match cfg.webhook_listen {
        Some(addr) => {
            let metrics = webhook_metrics;
            let router = axum::Router::new()
                .route("/api/webhook", axum::routing::post(receive_webhook))
                .layer(axum::extract::DefaultBodyLimit::max(
                    cfg.webhook.max_body_bytes,
                ))
                .with_state((Arc::downgrade(&ctx), metrics));
            let bound = flotilla_core::http::serve(addr, router).await?;
            tracing::info!(webhook = %bound, "Git webhook receiver listening on /api/webhook");
            let unconfigured: Vec<&str> = crate::webhook::Provider::ALL
                .iter()
                .filter(|p| !crate::webhook::configured(**p, &cfg.webhook))
                .map(|p| p.as_str())
                .collect();
            if !unconfigured.is_empty() {
                if cfg.webhook.allow_unauthenticated {
                    tracing::warn!(providers = ?unconfigured, "webhooks of these providers are accepted unsigned (--webhook-allow-unauthenticated)");
                } else {
                    tracing::info!(providers = ?unconfigured, "webhooks of these providers are refused: no secret configured");
                }
            }
            Some(bound.to_string())
        }
        None => None,
    };
    if let Some(path) = &cfg.address_file {
        std::fs::write(
            path,
            serde_json::json!({"metrics": metrics_addr.to_string(), "webhook": webhook_addr})
                .to_string(),
        )
        .map_err(|e| RunError::AddressFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    }
    tracing::info!(metrics = %metrics_addr, namespace = %ns, repo_server = %cfg.repo_server, "controller starting");
    let wait = async {
        let _ = apps.wait_until_ready().await;
        let _ = projects.wait_until_ready().await;
        let _ = cluster_secrets.wait_until_ready().await;
        let _ = repo_secrets.wait_until_ready().await;
        // The registry is built right after the cluster Secrets list.
        let mut rx = ctx.registry.clone();
        let _ = rx.wait_for(|r| !r.is_empty() || !cfg.in_cluster).await;
    };
    if tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .is_err()
    {
        for t in &tasks {
            t.abort();
        }
        return Err(RunError::ControlPlane(
            "the control plane's Applications, AppProjects and Secrets did not list within 120s"
                .into(),
        ));
    }
    ready.set(true);
    // ApplicationSets, once the cluster Secrets and Applications are listed (not before: a
    // generator on an empty store would delete Applications; and not by waiting on the stores
    // from that task: kube-runtime's wait_until_ready wakes only one of several waiters). Each
    // set is a ring key; side by side, Argo CD's ApplicationSet
    // controller keeps them (two controllers would fight over the same Applications).
    if !cfg.applicationsets {
        tracing::info!("ApplicationSets are not reconciled (--no-applicationsets)");
    } else if cfg.selection.side_by_side {
        tracing::info!(
            "side by side with Argo CD: its ApplicationSet controller keeps the ApplicationSets"
        );
    } else {
        tasks.push(tokio::spawn(
            crate::appset_controller::run(
                ctx.clone(),
                control.clone(),
                ns.clone(),
                cluster_secrets.clone(),
                appset_metrics,
            )
            .instrument(tracing::info_span!("watch", kind = "ApplicationSet")),
        ));
    }

    tracing::info!(
        applications = apps.state().len(),
        workers = cfg.workers,
        "caches synced; reconciling"
    );

    for _ in 0..cfg.workers.max(1) {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some((key, level)) = ctx.queue.pop().await {
                let started = Instant::now();
                let span = tracing::info_span!("reconcile", app = %key, level = level.as_str());
                let cpu = &ctx.metrics.phase_cpu;
                let res = cpu
                    .timed(Phase::Reconcile, reconcile(&ctx, &key, level))
                    .instrument(span)
                    .await;
                ctx.queue.done(&key);
                if let Some((delay, next_level)) =
                    schedule(&ctx, &key, level, &res, started.elapsed())
                {
                    // A follow-up of work under way (the next wave of a sync, self-heal)
                    // is urgent; periodic refreshes and backoffs are bulk.
                    let lane = if next_level == Level::Compare {
                        crate::queue::Lane::Urgent
                    } else {
                        crate::queue::Lane::Bulk
                    };
                    ctx.queue.add_after_in(key, next_level, lane, delay);
                }
            }
        }));
    }

    // Sharding: membership, the keys it shares out, and what to do when ownership changes.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let membership = if cfg.sharding.enabled {
        tasks.push(tokio::spawn(feed_keys(
            ctx.clone(),
            keys_tx,
            keys_dirty.clone(),
        )));
        Some(tokio::spawn(flotilla_sharding::membership::run(
            control.clone(),
            membership_cfg,
            keys_rx,
            gate.clone(),
            shard_tx,
            shard_metrics,
            async {
                let _ = stop_rx.await;
            },
        )))
    } else {
        drop((keys_tx, keys_rx, shard_tx, stop_rx));
        None
    };
    tasks.push(tokio::spawn(follow_ownership(ctx.clone(), keys_dirty)));

    shutdown.await;
    ready.set(false);
    // Stop taking work; writes in flight finish (their permits hold the hand-over back), then
    // every cluster is released and the Lease deleted so successors take over at once.
    ctx.queue.shutdown();
    if let Some(m) = membership {
        let _ = stop_tx.send(());
        match tokio::time::timeout(Duration::from_secs(40), m).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "leaving the ring"),
            Ok(Err(e)) => tracing::warn!(error = %e, "membership task"),
            Err(_) => tracing::warn!("leaving the ring took too long"),
        }
    }
    for t in &tasks {
        t.abort();
    }
    Ok(())
}

/// Webhook metrics.
#[derive(Clone, Default)]
struct WebhookMetrics {
    requests: prometheus_client::metrics::family::Family<
        WebhookLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    refreshes: prometheus_client::metrics::counter::Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct WebhookLabels {
    provider: &'static str,
    /// `refreshed`, `ignored`, `unauthorized`, `invalid`.
    result: &'static str,
}

impl WebhookMetrics {
    fn register(registry: &mut MetricsRegistry) -> Self {
        let m = Self::default();
        registry.register(
            "flotilla_webhook_requests",
            "Git webhook requests by provider and result",
            m.requests.clone(),
        );
        registry.register(
            "flotilla_webhook_refreshes",
            "Applications asked to refresh by a webhook",
            m.refreshes.clone(),
        );
        // Every provider's series exists from the start (rate() and dashboards need it).
        for p in crate::webhook::Provider::ALL {
            let _ = m.requests.get_or_create(&WebhookLabels {
                provider: p.as_str(),
                result: "refreshed",
            });
        }
        m
    }
}

/// `POST /api/webhook`: verify, parse, forget the moved revisions, refresh matching apps.
async fn receive_webhook(
    axum::extract::State((ctx, metrics)): axum::extract::State<(
        std::sync::Weak<Context>,
        WebhookMetrics,
    )>,
    headers: http::HeaderMap,
    body: bytes::Bytes,
) -> (http::StatusCode, axum::Json<serde_json::Value>) {
    use crate::webhook::{self, WebhookError};
    use http::StatusCode;
    let Some(ctx) = ctx.upgrade() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": "stopping"})),
        );
    };
    let count = |provider: &'static str, result: &'static str| {
        metrics
            .requests
            .get_or_create(&WebhookLabels { provider, result })
            .inc();
    };
    let reply = |code: StatusCode, e: &WebhookError| {
        tracing::warn!(error = %e, "webhook refused");
        (
            code,
            axum::Json(serde_json::json!({"error": e.to_string()})),
        )
    };
    let Some(p) = webhook::provider(&headers) else {
        count("unknown", "invalid");
        return reply(StatusCode::BAD_REQUEST, &WebhookError::UnknownProvider);
    };
    if let Err(e) = webhook::verify(p, &headers, &body, &ctx.cfg.webhook) {
        count(p.as_str(), "unauthorized");
        return reply(StatusCode::UNAUTHORIZED, &e);
    }
    let push = match webhook::parse(p, &headers, &body) {
        Ok(Some(push)) => push,
        Ok(None) => {
            count(p.as_str(), "ignored");
            return (
                StatusCode::OK,
                axum::Json(serde_json::json!({"refreshed": 0, "ignored": "not a push event"})),
            );
        }
        Err(e) => {
            count(p.as_str(), "invalid");
            return reply(StatusCode::BAD_REQUEST, &e);
        }
    };
    let moved = webhook::moved_revisions(&push);
    let moved_list: Vec<String> = moved.iter().cloned().collect();
    for url in &push.repo_urls {
        ctx.manifests.revisions().invalidate(url, &moved_list).await;
    }
    let targets: Vec<AppKey> = ctx
        .apps
        .state()
        .iter()
        .filter(|a| {
            let paths = a
                .metadata
                .annotations
                .as_ref()
                .and_then(|m| m.get(webhook::MANIFEST_PATHS_ANNOTATION));
            // Every source, ref-only ones included: a push to a values repository reaches
            // the apps reading `$values/…` (a ref source has no path to filter by).
            crate::reconcile::all_sources(a).iter().any(|s| {
                s.chart.is_none()
                    && match (paths, &push.changed_files) {
                        (Some(p), Some(files)) if !crate::reconcile::is_ref_only(s) => {
                            webhook::paths_changed(p, s.path.as_deref().unwrap_or(""), files)
                        }
                        _ => true,
                    }
                    && webhook::matches(
                        &push,
                        &moved,
                        &s.repo_url,
                        s.target_revision
                            .as_deref()
                            .filter(|r| !r.is_empty())
                            .unwrap_or("HEAD"),
                    )
            })
        })
        .filter_map(|a| key_of(a))
        .collect();
    // Annotate concurrently: a monorepo push can name thousands of Applications.
    let refreshed = futures::stream::iter(targets)
        .map(|k: AppKey| {
            let api: Api<Application> = Api::namespaced(ctx.control.clone(), &k.namespace);
            async move {
                let patch = serde_json::json!({"metadata": {"annotations": {REFRESH_ANNOTATION: "normal"}}});
                match api
                    .patch(
                        &k.name,
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => 1u64,
                    Err(e) => {
                        tracing::warn!(app = %k, error = %e, "webhook: asking for a refresh failed");
                        0
                    }
                }
            }
        })
        .buffer_unordered(WEBHOOK_PATCH_CONCURRENCY)
        .fold(0u64, |n, x| async move { n + x })
        .await;
    metrics.refreshes.inc_by(refreshed);
    let sets = if ctx.cfg.applicationsets && !ctx.cfg.selection.side_by_side {
        crate::appset_controller::refresh_on_push(&ctx, &push, &moved).await
    } else {
        0
    };
    count(
        p.as_str(),
        if refreshed + sets > 0 {
            "refreshed"
        } else {
            "ignored"
        },
    );
    let repos: Vec<String> = push
        .repo_urls
        .iter()
        .map(|u| crate::redact::redact_url(u))
        .collect();
    tracing::info!(provider = p.as_str(), ?repos, refs = ?push.refs, refreshed, application_sets = sets, "webhook push");
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"refreshed": refreshed, "applicationSets": sets})),
    )
}

/// Refresh annotations written at once by one webhook push.
const WEBHOOK_PATCH_CONCURRENCY: usize = 16;

/// Keep the sharding keys current: every known cluster, weighted by its Applications when
/// balancing by applications. Debounced: at most one recount per second.
async fn feed_keys(
    ctx: Arc<Context>,
    keys_tx: watch::Sender<Keys>,
    dirty: Arc<tokio::sync::Notify>,
) {
    loop {
        dirty.notified().await;
        let registry = ctx.registry.borrow().clone();
        let counts = ctx.app_counts_by_server();
        let keys = KeySet {
            weights: registry
                .clusters()
                .map(|c| {
                    let w = match ctx.cfg.sharding.balance {
                        Balance::Clusters => 1,
                        Balance::Applications => {
                            quantize_weight(counts.get(&c.server).copied().unwrap_or(0) as u64)
                        }
                    };
                    (c.server.clone(), w)
                })
                .collect(),
            // A cluster Secret's `shard` pins the cluster to that replica.
            pins: registry
                .clusters()
                .filter_map(|c| Some((c.server.clone(), c.shard?)))
                .collect(),
        };
        keys_tx.send_if_modified(|cur| {
            if **cur == keys {
                false
            } else {
                *cur = Arc::new(keys);
                true
            }
        });
        let held = ctx.gate.held();
        let owned: usize = if ctx.gate.owns_all() {
            counts.values().sum()
        } else {
            held.iter().filter_map(|s| counts.get(s)).sum()
        };
        ctx.metrics.owned_apps.set(owned as i64);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// React to ownership changes: reconcile the apps of clusters just acquired; stop the caches
/// of clusters released and forget their apps (their new owner reports them now).
async fn follow_ownership(ctx: Arc<Context>, keys_dirty: Arc<tokio::sync::Notify>) {
    let mut rx = ctx.gate.subscribe();
    let mut before: Arc<BTreeSet<String>> = rx.borrow().clone();
    while rx.changed().await.is_ok() {
        let now = rx.borrow_and_update().clone();
        let acquired: Vec<&String> = now.difference(&before).collect();
        let released: Vec<&String> = before.difference(&now).collect();
        if !acquired.is_empty() || !released.is_empty() {
            let by_server = ctx.apps_by_server();
            for s in &acquired {
                let apps = by_server.get(*s).map(Vec::as_slice).unwrap_or_default();
                tracing::info!(cluster = %s, apps = apps.len(), "now owner of this cluster");
                for k in apps {
                    ctx.queue.add(k.clone(), Level::Refresh);
                }
            }
            for s in &released {
                ctx.caches.remove(s);
                let apps = by_server.get(*s).map(Vec::as_slice).unwrap_or_default();
                for k in apps {
                    ctx.forget(k);
                }
                tracing::info!(cluster = %s, apps = apps.len(), "no longer owner of this cluster");
            }
            tracing::info!(owned = now.len(), clusters = ?now, "owned clusters changed");
            ctx.metrics.owned_clusters.set(now.len() as i64);
            keys_dirty.notify_one();
        }
        before = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_trigger(generation: i64, refresh: Option<&str>, deleting: bool) -> Trigger {
        Trigger {
            uid: Some("u".into()),
            generation: Some(generation),
            refresh: refresh.map(str::to_string),
            deleting,
        }
    }

    async fn mk_status_code(router: axum::Router) -> http::StatusCode {
        use tower::ServiceExt;
        let req = http::Request::get("/status")
            .body(axum::body::Body::empty())
            .expect("request");
        match router.oneshot(req).await {
            Ok(resp) => resp.status(),
            Err(never) => match never {},
        }
    }

    #[tokio::test]
    async fn status_is_served_only_when_enabled() {
        assert!(
            !ControllerConfig::default().status_endpoint,
            "off by default"
        );
        let off = endpoint_router(
            Arc::new(MetricsRegistry::default()),
            flotilla_core::http::Ready::default(),
            None,
        );
        assert_eq!(mk_status_code(off).await, http::StatusCode::NOT_FOUND);
        let on = endpoint_router(
            Arc::new(MetricsRegistry::default()),
            flotilla_core::http::Ready::default(),
            Some(axum::routing::get(|| async { "members" })),
        );
        assert_eq!(mk_status_code(on).await, http::StatusCode::OK);
    }

    #[test]
    fn status_writes_do_not_trigger_but_spec_refresh_and_deletion_do() {
        let base = mk_trigger(1, None, false);
        assert!(base.fires_after(None), "a new app");
        assert!(!base.fires_after(Some(&base)), "status-only write");
        assert!(
            mk_trigger(2, None, false).fires_after(Some(&base)),
            "spec or operation"
        );
        assert!(
            mk_trigger(1, Some("normal"), false).fires_after(Some(&base)),
            "refresh asked"
        );
        assert!(
            !base.fires_after(Some(&mk_trigger(1, Some("normal"), false))),
            "refresh acknowledged"
        );
        assert!(
            mk_trigger(1, None, true).fires_after(Some(&base)),
            "deletion"
        );
    }
}
