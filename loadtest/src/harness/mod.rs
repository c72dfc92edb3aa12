//! The load-test harness: runs a scenario against a whole fleet of real processes (kubesim,
//! git daemon, Redis Cluster, repo-servers, controllers), measures it and writes the report.
//!
//! Phases: start the fleet and write the workload to Git; create the Applications and wait
//! until all are Synced and Healthy; measure an idle window; make commits (webhook and poll)
//! and time them to live; inject the faults one by one and time the recovery; then the chaos
//! or soak phase when the scenario has one; report.

pub mod chaos;
pub mod charts;
pub mod inventory;
pub mod membership;
pub mod observe;
pub mod phases_report;
pub mod procstat;
pub mod report;
pub mod scenario;
pub mod simadmin;
pub mod soak;
pub mod trends;
pub mod workload;
pub mod writers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::fleet::{
    Fleet, FleetConfig, GitServer, github_signature, http_get, http_post, metric_sum, metric_value,
};
use membership::SharedTimeline;
use observe::{Observed, Shared};
use procstat::Usage;
use report::{
    CacheStats, Change, FaultResult, Idle, Machine, Percentiles, Report, Resources, Sample,
};
use scenario::{Fault, Scenario};

/// Namespace of the Applications.
const NS: &str = "argocd";
/// The GitHub webhook secret the controllers are started with.
const WEBHOOK_SECRET: &str = "flotilla-loadtest";
/// Field manager of the harness's writes.
const MANAGER: &str = "flotilla-loadtest";

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Write `report.json`, `report.md`, `progress.svg` and `latency.svg` here.
    pub out_dir: Option<PathBuf>,
    /// Print a live progress line on stderr.
    pub progress: bool,
}

/// How often the chaos and soak phases poll every replica's `/status` for ownership changes.
const OWNERSHIP_POLL: Duration = Duration::from_secs(1);

/// A process the sampler watches: (name, pid, metrics address for controllers).
#[derive(Debug, Clone)]
struct Target {
    name: String,
    pid: u32,
    controller_metrics: Option<String>,
}

/// State shared between the run and its sampler task.
struct Live {
    targets: Mutex<Vec<Target>>,
    usage: Mutex<Usage>,
    timeline: Mutex<Vec<Sample>>,
    phase: Mutex<String>,
    /// When the first Application was created (the timeline's zero).
    t0: Mutex<Option<Instant>>,
    /// Off in the idle window: it measures the controllers' own idle work, and a scrape a
    /// second (Prometheus scrapes every 15-30 s) would dominate it.
    scrape: AtomicBool,
}

fn targets(fleet: &Fleet) -> Vec<Target> {
    let mut v = Vec::new();
    if let Some(pid) = fleet.sim.pid() {
        v.push(Target {
            name: "kubesim".into(),
            pid,
            controller_metrics: None,
        });
    }
    for c in &fleet.controllers {
        if let Some(pid) = c.proc.pid() {
            v.push(Target {
                name: c.identity.clone(),
                pid,
                controller_metrics: Some(c.metrics.clone()),
            });
        }
    }
    for r in &fleet.repo_servers {
        if let Some(pid) = r.proc.pid() {
            v.push(Target {
                name: r.name.clone(),
                pid,
                controller_metrics: None,
            });
        }
    }
    if let Some(redis) = &fleet.redis {
        for (name, pid) in redis.pids() {
            v.push(Target {
                name,
                pid,
                controller_metrics: None,
            });
        }
    }
    v
}

/// (name, pid) of each target, for [`Usage::sample`].
fn pids(targets: &[Target]) -> Vec<(String, u32)> {
    targets.iter().map(|t| (t.name.clone(), t.pid)).collect()
}

/// Every second: CPU and memory of every process, syncs per replica, the progress line.
fn spawn_sampler(
    live: Arc<Live>,
    obs: Shared,
    total: usize,
    progress: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        loop {
            let targets = live.targets.lock().clone();
            live.usage.lock().sample(&pids(&targets));
            let mut syncs = BTreeMap::new();
            let scrape = live.scrape.load(Ordering::Relaxed);
            for t in targets.iter().filter(|_| scrape) {
                if let Some(addr) = &t.controller_metrics
                    && let Ok((200, text)) = http_get(addr, "/metrics").await
                {
                    syncs.insert(
                        t.name.clone(),
                        metric_value(&text, "flotilla_syncs_total", &[("phase", "Succeeded")]),
                    );
                }
            }
            let (synced, ok) = {
                let o = obs.lock();
                (o.synced_count(), o.currently_ok())
            };
            let t0 = *live.t0.lock();
            if let Some(t0) = t0 {
                let cpu = live.usage.lock().cpu("controller-");
                live.timeline.lock().push(Sample {
                    t: t0.elapsed().as_secs_f64(),
                    synced_healthy: synced,
                    syncs_by_replica: syncs,
                    controllers_cpu_seconds: cpu,
                });
            }
            if progress {
                let phase = live.phase.lock().clone();
                let cpu = live.usage.lock().cpu("");
                eprint!(
                    "\r\x1b[2K[{:>6.1} s] {phase:<28} synced {synced}/{total} (now ok {ok}) · fleet CPU {cpu:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Counters summed over the running fleet.
#[derive(Debug, Clone, Default)]
struct Totals {
    reconciles: f64,
    renders: f64,
    fetches: f64,
    kube_requests: f64,
    hits_memory: f64,
    hits_shared: f64,
    misses: f64,
    /// `flotilla_reconcile_cpu_seconds_total` by phase, summed over the controllers.
    reconcile_cpu: BTreeMap<String, f64>,
}

/// The phases of `flotilla_reconcile_cpu_seconds_total` (`reconcile` is their whole).
const RECONCILE_PHASES: [&str; 6] = ["reconcile", "render", "live", "diff", "sync", "status"];

async fn totals(fleet: &Fleet) -> Result<Totals> {
    let controllers = fleet.controller_metric_texts().await?;
    let repos = fleet.repo_metric_texts().await?;
    let c = |n: &str, l: &[(&str, &str)]| metric_sum(&controllers, n, l);
    let r = |n: &str, l: &[(&str, &str)]| metric_sum(&repos, n, l);
    let mut kube_requests = 0.0;
    if let Some(admin) = fleet.sim.admin() {
        let (_, body) = http_get(&admin, "/stats").await?;
        let stats: Value = serde_json::from_str(&body).context("kubesim /stats")?;
        kube_requests = stats
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["requests"].as_f64()).sum())
            .unwrap_or(0.0);
    }
    Ok(Totals {
        reconciles: c("flotilla_reconciles_total", &[]),
        renders: r("flotilla_repo_renders_total", &[("result", "ok")]),
        fetches: r("flotilla_repo_git_fetches_total", &[("result", "ok")]),
        kube_requests,
        hits_memory: c(
            "flotilla_manifest_cache_total",
            &[("outcome", "hit-memory")],
        ),
        hits_shared: c(
            "flotilla_manifest_cache_total",
            &[("outcome", "hit-shared")],
        ),
        misses: c("flotilla_manifest_cache_total", &[("outcome", "miss")]),
        reconcile_cpu: RECONCILE_PHASES
            .iter()
            .map(|p| {
                let v = c("flotilla_reconcile_cpu_seconds_total", &[("phase", p)]);
                (p.to_string(), v)
            })
            .collect(),
    })
}

/// How long ownership may take to settle after a change: a Lease must expire, then claims
/// confirm.
fn settle_time(s: &Scenario) -> Duration {
    Duration::from_secs(s.lease_duration_seconds * 4 + 60)
}

/// Who owns which cluster (cluster name → replica), read from every replica's `/status`.
async fn ownership(
    fleet: &Fleet,
    servers: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for id in fleet.controller_ids() {
        let st = fleet.controller_status(&id).await?;
        // Target clusters only (the in-cluster destination is owned too but runs no apps).
        for s in st["ownedClusters"].as_array().into_iter().flatten() {
            if let Some(name) = s.as_str().and_then(|s| servers.get(s)) {
                out.insert(name.clone(), id.clone());
            }
        }
    }
    Ok(out)
}

/// Wait until every cluster has an owner among the running replicas, unchanged over two reads.
async fn stable_ownership(
    fleet: &Fleet,
    servers: &BTreeMap<String, String>,
    clusters: usize,
    timeout: Duration,
) -> Result<BTreeMap<String, String>> {
    let deadline = Instant::now() + timeout;
    let mut last = BTreeMap::new();
    loop {
        let now = ownership(fleet, servers).await.unwrap_or_default();
        if now.len() == clusters && now == last {
            return Ok(now);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "ownership did not settle: {} of {clusters} clusters owned",
            now.len()
        );
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The Git side of the workload: one server per repository and each app's current version.
struct Workload {
    extra_repos: Vec<GitServer>,
    versions: Vec<u64>,
}

impl Workload {
    fn repo<'a>(&'a self, fleet: &'a Fleet, j: usize) -> &'a GitServer {
        if j == 0 {
            &fleet.git
        } else {
            &self.extra_repos[j - 1]
        }
    }
}

/// Send a signed GitHub push event to a controller's webhook receiver at `addr`.
async fn post_push(addr: &str, body: &[u8]) -> Result<()> {
    let (code, reply) = http_post(
        addr,
        "/api/webhook",
        &[
            ("X-GitHub-Event", "push"),
            (
                "X-Hub-Signature-256",
                &github_signature(WEBHOOK_SECRET, body),
            ),
        ],
        body,
    )
    .await?;
    anyhow::ensure!(code == 200, "webhook answered {code}: {reply}");
    Ok(())
}

fn github_push(url: &str, commit: &str, files: &[String]) -> Vec<u8> {
    json!({
        "ref": "refs/heads/main",
        "after": commit,
        "repository": {"html_url": url, "clone_url": url, "default_branch": "main"},
        "commits": [{"id": commit, "added": [], "modified": files, "removed": []}],
    })
    .to_string()
    .into_bytes()
}

/// Run `s` and return its report (also written to `opts.out_dir` when set).
pub async fn run(s: &Scenario, opts: &RunOptions) -> Result<Report> {
    s.validate()?;
    let mut report = Report {
        scenario: s.clone(),
        machine: Machine::detect(),
        started: jiff::Timestamp::now()
            .round(jiff::Unit::Second)?
            .to_string(),
        flotilla_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    let phase = set_phase;
    let live = Arc::new(Live {
        targets: Mutex::new(Vec::new()),
        usage: Mutex::new(Usage::default()),
        timeline: Mutex::new(Vec::new()),
        phase: Mutex::new("starting the fleet".into()),
        t0: Mutex::new(None),
        scrape: AtomicBool::new(true),
    });

    let fleet_start_us = kubesim::audit::unix_micros();
    let mut fleet = Fleet::start(FleetConfig {
        // With ApplicationSets, one more cluster joins after convergence.
        clusters: s.clusters + usize::from(s.application_sets > 0),
        ready_delay: Duration::from_millis(s.ready_delay_ms),
        seed: None,
        refresh_seconds: s.refresh_seconds,
        workers: s.workers,
        controllers: s.controllers,
        lease_duration_seconds: s.lease_duration_seconds,
        lease_renew_seconds: s.lease_renew_seconds,
        controller_args: s.controller_args.clone(),
        argo_cd_crds: false,
        repo_servers: s.repo_servers,
        redis_masters: s.redis_masters,
        webhook_github_secret: Some(WEBHOOK_SECRET.into()),
        repo_server_args: s.repo_server_args.clone(),
        kubesim_process: true,
        // Status-only workloads: the scenarios measure Flotilla, and their numbers stay
        // comparable with earlier reports (see KUBESIM.md for what child objects cost).
        workload_children: false,
        env: Vec::new(),
        latency_profile: s.latency_profile.clone(),
    })
    .await?;
    *live.targets.lock() = targets(&fleet);
    let timeline: SharedTimeline = Arc::default();
    timeline.lock().action(
        fleet_start_us,
        kubesim::audit::unix_micros(),
        format!("started the fleet ({})", fleet.controller_ids().join(", ")),
    );
    if s.orphaned_resources {
        fleet
            .apply("apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: default, namespace: argocd}\nspec:\n  sourceRepos: ['*']\n  destinations: [{server: '*', namespace: '*'}]\n  clusterResourceWhitelist: [{group: '*', kind: '*'}]\n  orphanedResources: {warn: true}\n")
            .await?;
    }
    let servers: BTreeMap<String, String> = (1..=s.clusters)
        .filter_map(|i| {
            let name = workload::cluster_name(i);
            Some((fleet.server(&name).ok()?, name))
        })
        .collect();

    // The workload in Git.
    let mut wl = Workload {
        extra_repos: Vec::new(),
        versions: vec![0; s.applications],
    };
    for j in 1..s.repo_count() {
        wl.extra_repos.push(GitServer::start(
            fleet.dir.path(),
            &format!("apps-{j}"),
            None,
        )?);
    }
    let joining = if s.application_sets > 0 {
        workload::joining_apps(s)
    } else {
        0..0
    };
    // The soak's applications-to-be are in Git from the start: an app created later then
    // finds its path at whatever commit its controller resolved `main` to.
    let churn = s.applications..s.applications + s.soak.as_ref().map_or(0, |k| k.churn_total());
    for i in (0..s.applications).chain(joining).chain(churn) {
        let repo = wl.repo(&fleet, workload::repo_of(s, i));
        repo.write(&[(
            &format!("{}/manifests.yaml", workload::path_of(s, i)),
            &workload::manifests(s, i, 0),
        )])?;
    }
    for j in 0..s.repo_count() {
        wl.repo(&fleet, j).commit("the load-test workload")?;
    }

    let obs: Shared = Arc::new(Mutex::new(Observed::default()));
    let watch = observe::spawn_watch(fleet.control().clone(), NS, obs.clone());
    let sampler = spawn_sampler(live.clone(), obs.clone(), s.applications, opts.progress);
    let poller = (s.chaos.is_some() || s.soak.is_some()).then(|| {
        membership::spawn_poller(
            live.clone(),
            servers.clone(),
            timeline.clone(),
            OWNERSHIP_POLL,
        )
    });
    let result = drive(
        &mut Ctx {
            s,
            fleet: &mut fleet,
            wl: &mut wl,
            live: &live,
            obs: &obs,
            servers: &servers,
            timeline: &timeline,
        },
        &mut report,
        phase,
    )
    .await;
    if let Some(p) = poller {
        p.abort();
    }
    if let Err(e) = &result {
        report.problems.push(format!("{e:#}"));
        // The processes' last log lines say why, before the fleet (and its logs) is gone.
        fleet.dump_logs();
    }
    sampler.abort();
    watch.abort();
    if opts.progress {
        eprintln!();
    }
    // Final resource readings.
    live.usage.lock().sample(&pids(&targets(&fleet)));
    let usage = live.usage.lock().clone();
    let mib = |b: u64| b as f64 / 1_048_576.0;
    report.resources = Resources {
        controllers_cpu_seconds: usage.cpu("controller-"),
        repo_servers_cpu_seconds: usage.cpu("repo-server-"),
        kubesim_cpu_seconds: usage.cpu("kubesim"),
        redis_cpu_seconds: usage.cpu("redis-"),
        controllers_peak_rss_mib: mib(usage.peak_rss("controller-")),
        controllers_mib_per_1k_apps: mib(usage.peak_rss("controller-")) * 1000.0
            / s.applications as f64,
        repo_servers_peak_rss_mib: mib(usage.peak_rss("repo-server-")),
        kubesim_peak_rss_mib: mib(usage.peak_rss("kubesim")),
        processes: usage.processes,
    };
    report.timeline = live.timeline.lock().clone();
    report.ok = report.problems.is_empty();
    if let Some(dir) = &opts.out_dir {
        write(&report, dir)?;
    }
    if !report.ok && std::env::var_os("FLOTILLA_FLEET_LOGS").is_some() {
        fleet.dump_logs();
    }
    Ok(report)
}

/// Write the report's files into `dir`.
pub fn write(report: &Report, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(dir.join("report.md"), report.markdown())?;
    charts::progress(report, &dir.join("progress.svg"))?;
    charts::latency(report, &dir.join("latency.svg"))?;
    if let Some(c) = &report.chaos {
        trends::rollout(&report.scenario.name, c, &dir.join("rollout.svg"))?;
    }
    if let Some(k) = &report.soak {
        trends::soak_memory(&report.scenario.name, k, &dir.join("soak-memory.svg"))?;
        trends::soak_cpu(&report.scenario.name, k, &dir.join("soak-cpu.svg"))?;
    }
    Ok(())
}

/// Name the phase the run is in (the progress line and the log).
fn set_phase(live: &Live, p: &str) {
    *live.phase.lock() = p.to_string();
    tracing::info!(phase = p, "load test");
}

/// The running fleet and what the harness knows of it, as the phases share it.
struct Ctx<'a> {
    s: &'a Scenario,
    fleet: &'a mut Fleet,
    wl: &'a mut Workload,
    live: &'a Arc<Live>,
    obs: &'a Shared,
    /// Server URL → target cluster name.
    servers: &'a BTreeMap<String, String>,
    timeline: &'a SharedTimeline,
}

impl Ctx<'_> {
    /// Take a controller replica away (SIGKILL or SIGTERM), noting it in the timeline and the
    /// sampler's targets.
    fn remove_controller(&mut self, id: &str, kill: bool) -> Result<()> {
        let lo = kubesim::audit::unix_micros();
        if kill {
            self.fleet.kill_controller(id)?;
        } else {
            self.fleet.stop_controller(id)?;
        }
        let how = if kill {
            "killed (-9)"
        } else {
            "stopped (SIGTERM)"
        };
        self.timeline
            .lock()
            .action(lo, kubesim::audit::unix_micros(), format!("{how} {id}"));
        *self.live.targets.lock() = targets(self.fleet);
        Ok(())
    }

    /// Start one more controller replica, noting it in the timeline and the sampler's targets.
    async fn add_controller(&mut self) -> Result<String> {
        let lo = kubesim::audit::unix_micros();
        let id = self.fleet.start_controller().await?;
        self.timeline
            .lock()
            .action(lo, kubesim::audit::unix_micros(), format!("started {id}"));
        *self.live.targets.lock() = targets(self.fleet);
        Ok(id)
    }
}

async fn drive(cx: &mut Ctx<'_>, report: &mut Report, phase: impl Fn(&Live, &str)) -> Result<()> {
    let s = cx.s;
    let live = cx.live;
    let obs = cx.obs;
    let fleet = &mut *cx.fleet;
    let wl = &mut *cx.wl;
    // Create the Applications.
    phase(live, "creating applications");
    let api: Api<DynamicObject> = Api::namespaced_with(
        fleet.control().clone(),
        NS,
        &observe::application_resource(),
    );
    // With ApplicationSets: the Secret of the cluster that joins after convergence.
    let joining_cluster_secret = &mut None::<k8s_openapi::api::core::v1::Secret>;
    if s.application_sets > 0 {
        // Each cluster Secret is labelled into its set; the joining cluster's Secret is
        // taken away, to be registered anew after convergence.
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(fleet.control().clone(), NS);
        futures::stream::iter(1..=s.clusters)
            .map(|k| {
                let secrets = secrets.clone();
                let patch = json!({"metadata": {"labels": {
                    workload::SET_LABEL: workload::set_of_cluster(s, k)}}});
                async move {
                    secrets
                        .patch(
                            &format!("cluster-{}", workload::cluster_name(k)),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                        .with_context(|| format!("labelling the Secret of cluster {k}"))
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?;
        let joining_secret = format!("cluster-{}", workload::joining_cluster(s));
        *joining_cluster_secret = Some(secrets.get(&joining_secret).await?);
        secrets
            .delete(&joining_secret, &Default::default())
            .await
            .context("taking the joining cluster's Secret away")?;
    }
    let before = totals(fleet).await?;
    let t0 = Instant::now();
    *live.t0.lock() = Some(t0);
    let urls: Vec<String> = (0..s.repo_count())
        .map(|j| wl.repo(fleet, j).url())
        .collect();
    if s.application_sets > 0 {
        // The controllers generate the Applications from a handful of sets.
        {
            let mut o = obs.lock();
            for i in 0..s.applications {
                o.created(&workload::app_name(i), t0);
            }
        }
        let sets: Api<DynamicObject> = Api::namespaced_with(
            fleet.control().clone(),
            NS,
            &kube::api::ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "ApplicationSet"),
                "applicationsets",
            ),
        );
        for k in 0..s.application_sets {
            let obj: DynamicObject =
                serde_yaml::from_str(&workload::application_set(k, &urls[0], NS))?;
            sets.patch(
                &format!("load-{k}"),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("creating ApplicationSet load-{k}"))?;
        }
    }
    futures::stream::iter(
        0..if s.application_sets > 0 {
            0
        } else {
            s.applications
        },
    )
    .map(|i| {
        let api = api.clone();
        let obs = obs.clone();
        let yaml = workload::application(s, i, &urls[workload::repo_of(s, i)], NS);
        async move {
            let obj: DynamicObject = serde_yaml::from_str(&yaml)?;
            let name = workload::app_name(i);
            obs.lock().created(&name, Instant::now());
            api.patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("creating {name}"))?;
            anyhow::Ok(())
        }
    })
    .buffer_unordered(s.create_concurrency.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    report.convergence.create_seconds = t0.elapsed().as_secs_f64();

    // Convergence.
    phase(live, "converging");
    let deadline = t0 + Duration::from_secs(s.converge_timeout_seconds);
    loop {
        let n = obs.lock().synced_count();
        if n >= s.applications {
            break;
        }
        if Instant::now() > deadline {
            let o = obs.lock();
            anyhow::bail!(
                "{} of {} applications Synced and Healthy after {} s; e.g. {:?}",
                n,
                s.applications,
                s.converge_timeout_seconds,
                o.stragglers(5)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = totals(fleet).await?;
    {
        let o = obs.lock();
        let per_app: Vec<f64> = o
            .apps
            .values()
            .filter_map(|a| Some(a.synced_healthy?.duration_since(a.created?).as_secs_f64()))
            .collect();
        let last = o.apps.values().filter_map(|a| a.synced_healthy).max();
        let c = &mut report.convergence;
        c.applications = s.applications;
        c.synced_healthy = o.synced_count();
        c.all_synced_seconds = last.map(|l| l.duration_since(t0).as_secs_f64());
        c.per_app = Percentiles::of(&per_app);
        c.reconciles = after.reconciles - before.reconciles;
        c.reconciles_per_second = c.reconciles / c.all_synced_seconds.unwrap_or(1.0).max(0.001);
        // The harness's own creates are not the controllers' requests.
        let creates = if s.application_sets > 0 {
            s.application_sets
        } else {
            s.applications
        };
        c.kube_requests = (after.kube_requests - before.kube_requests - creates as f64).max(0.0);
        if s.application_sets > 0 {
            c.appset_generation_seconds = o
                .apps
                .values()
                .filter_map(|a| a.seen)
                .max()
                .map(|l| l.duration_since(t0).as_secs_f64());
        }
        c.kube_requests_per_reconcile = c.kube_requests / c.reconciles.max(1.0);
        c.renders = after.renders - before.renders;
        c.git_fetches = after.fetches - before.fetches;
        c.reconcile_cpu_seconds = after
            .reconcile_cpu
            .iter()
            .map(|(p, v)| {
                (
                    p.clone(),
                    v - before.reconcile_cpu.get(p).copied().unwrap_or(0.0),
                )
            })
            .collect();
        report.per_app_seconds = per_app;
    }

    // ApplicationSets: what one new directory costs to roll out.
    if s.application_sets > 0 {
        phase(live, "a new directory");
        let i = workload::new_directory_app(s);
        let file = format!("{}/manifests.yaml", workload::path_of(s, i));
        fleet.git.write(&[(&file, &workload::manifests(s, i, 0))])?;
        let commit = fleet.git.commit("one more directory")?;
        let t = Instant::now();
        // The push webhook, as a Git server sends it: the sets reading the repository
        // regenerate at once (and the controllers drop their cached revisions of it).
        let body = github_push(&fleet.git.url(), &commit, std::slice::from_ref(&file));
        for c in &fleet.controllers {
            let addr = c
                .webhook
                .as_deref()
                .context("the controller serves no webhook")?;
            post_push(addr, &body).await?;
        }
        let name = workload::app_name(i);
        obs.lock().created(&name, t);
        loop {
            if obs
                .lock()
                .apps
                .get(&name)
                .is_some_and(|a| a.synced_healthy.is_some())
            {
                break;
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(s.converge_timeout_seconds),
                "the new directory's application {name} did not become Synced and Healthy"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        report.convergence.appset_new_directory_seconds = Some(t.elapsed().as_secs_f64());

        // A new cluster: its Secret registered, labelled into set 0.
        phase(live, "a new cluster");
        let mut secret = joining_cluster_secret
            .take()
            .context("the joining cluster's Secret was not kept")?;
        secret.metadata = kube::api::ObjectMeta {
            name: secret.metadata.name.clone(),
            namespace: secret.metadata.namespace.clone(),
            labels: secret.metadata.labels.clone().map(|mut l| {
                l.insert(workload::SET_LABEL.into(), "set-0".into());
                l
            }),
            ..Default::default()
        };
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(fleet.control().clone(), NS);
        let names: Vec<String> = workload::joining_apps(s).map(workload::app_name).collect();
        let t = Instant::now();
        {
            let mut o = obs.lock();
            for n in &names {
                o.created(n, t);
            }
        }
        secrets
            .create(&kube::api::PostParams::default(), &secret)
            .await
            .context("registering the new cluster")?;
        loop {
            let done = {
                let o = obs.lock();
                names
                    .iter()
                    .all(|n| o.apps.get(n).is_some_and(|a| a.synced_healthy.is_some()))
            };
            if done {
                break;
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(s.converge_timeout_seconds),
                "the new cluster's applications did not all become Synced and Healthy"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        report.convergence.appset_new_cluster_seconds = Some(t.elapsed().as_secs_f64());
        report.convergence.appset_new_cluster_apps = names.len();
    }

    // Idle.
    if s.idle_seconds > 0 {
        phase(live, "idle");
        live.scrape.store(false, Ordering::Relaxed);
        let controllers: Vec<Target> = targets(fleet)
            .into_iter()
            .filter(|t| t.controller_metrics.is_some())
            .collect();
        let cpu = || {
            let mut u = Usage::default();
            u.sample(&pids(&controllers));
            u.cpu("")
        };
        // Let the last status writes and watch events of convergence settle first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let a = cpu();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(s.idle_seconds)).await;
        let used = cpu() - a;
        let secs = started.elapsed().as_secs_f64();
        live.scrape.store(true, Ordering::Relaxed);
        report.idle = Idle {
            seconds: secs,
            controllers_cpu_seconds: used,
            percent_of_one_core: used / secs * 100.0,
        };
    }

    // Changes.
    let mut n = 0;
    let (mut via_webhook, mut via_poll) = (Vec::new(), Vec::new());
    for webhook in std::iter::repeat_n(true, s.changes.webhook_commits)
        .chain(std::iter::repeat_n(false, s.changes.poll_commits))
    {
        phase(
            live,
            if webhook {
                "change (webhook)"
            } else {
                "change (poll)"
            },
        );
        let (ch, latencies) = change(s, fleet, wl, obs, n, webhook).await?;
        if webhook {
            &mut via_webhook
        } else {
            &mut via_poll
        }
        .extend(latencies);
        report.changes.push(ch);
        n += 1;
        tokio::time::sleep(Duration::from_secs_f64(s.changes.interval_seconds)).await;
    }
    let end = totals(fleet).await?;
    report.cache = CacheStats {
        hits_memory: end.hits_memory,
        hits_shared: end.hits_shared,
        misses: end.misses,
        hit_ratio: (end.hits_memory + end.hits_shared)
            / (end.hits_memory + end.hits_shared + end.misses).max(1.0),
    };
    report.webhook_latency = Percentiles::of(&via_webhook);
    report.poll_latency = Percentiles::of(&via_poll);

    // The API server at this size.
    if s.api.requests > 0 {
        phase(live, "api");
        match api_latency(s, fleet).await {
            Ok(api) => {
                if let Some(e) = &api.ui_error {
                    report
                        .problems
                        .push(format!("timing the web UI's list: {e}"));
                }
                for q in api.queries.iter().filter(|q| q.errors > 0) {
                    report
                        .problems
                        .push(format!("API {}: {} errors", q.query, q.errors));
                }
                report.api = api;
            }
            Err(e) => report.problems.push(format!("API server: {e:#}")),
        }
    }

    // Faults.
    for (k, f) in s.faults.iter().enumerate() {
        phase(live, &format!("fault {}: {f:?}", k + 1));
        let r = fault(cx, f, n).await;
        n += 1;
        *live.targets.lock() = targets(cx.fleet);
        match r {
            Ok(fr) => {
                if fr.recovered_seconds.is_none() {
                    report.problems.push(format!("{}: not recovered", fr.fault));
                }
                report.faults.push(fr);
            }
            Err(e) => report.problems.push(format!("fault {f:?}: {e:#}")),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    if let Some(c) = &s.chaos {
        phase(live, "chaos");
        match chaos::run(cx, c).await {
            Ok(r) => {
                report
                    .problems
                    .extend(r.problems.iter().map(|p| format!("chaos: {p}")));
                report.chaos = Some(r);
            }
            Err(e) => report.problems.push(format!("chaos: {e:#}")),
        }
    }
    if let Some(k) = &s.soak {
        phase(live, "soak");
        match soak::run(cx, k, &mut n).await {
            Ok(r) => {
                report
                    .problems
                    .extend(r.problems.iter().map(|p| format!("soak: {p}")));
                report.soak = Some(r);
            }
            Err(e) => report.problems.push(format!("soak: {e:#}")),
        }
    }
    Ok(())
}

/// Start flotilla-server on the converged fleet and time its queries as a UI and CLI would
/// make them: list pages (all, one project, one cluster, unhealthy), a name search, one app.
async fn api_latency(s: &Scenario, fleet: &Fleet) -> Result<report::ApiReport> {
    let started = Instant::now();
    let (server, api) = fleet.start_server().await?;
    let ready_seconds = started.elapsed().as_secs_f64();
    let auth = format!("Bearer {}", crate::fleet::ADMIN_TOKEN);
    let mid = s.applications / 2;
    let queries: Vec<(&str, String)> = vec![
        (
            "first page of all (500)",
            "/api/v1/applications?limit=500".into(),
        ),
        (
            "a later page (cursor)",
            format!(
                "/api/v1/applications?limit=500&continue={NS}%2F{}",
                workload::app_name(mid)
            ),
        ),
        (
            "one cluster's apps",
            format!("/api/v1/applications?cluster={}", workload::cluster_name(0)),
        ),
        (
            "unhealthy or out of sync",
            "/api/v1/applications?sync=OutOfSync,Unknown&limit=500".into(),
        ),
        (
            "name search",
            format!("/api/v1/applications?search={}", workload::app_name(mid)),
        ),
        (
            "one application",
            format!("/api/v1/applications/{NS}/{}", workload::app_name(mid)),
        ),
        (
            "its resources and diffs (routed to the owning controller)",
            format!(
                "/api/v1/applications/{NS}/{}/resources",
                workload::app_name(mid)
            ),
        ),
    ];
    let mut out = report::ApiReport {
        ready_seconds,
        ..Default::default()
    };
    for (name, path) in queries {
        // One warm-up request, then the measured ones from `concurrency` clients.
        let _ = crate::fleet::http_get_with(&api, &path, &[("Authorization", &auth)]).await;
        let per_client = s.api.requests.div_ceil(s.api.concurrency.max(1));
        let clients = (0..s.api.concurrency.max(1)).map(|_| {
            let (api, path, auth) = (api.clone(), path.clone(), auth.clone());
            async move {
                let mut lat = Vec::with_capacity(per_client);
                let mut errors = 0;
                for _ in 0..per_client {
                    let t = Instant::now();
                    match crate::fleet::http_get_with(&api, &path, &[("Authorization", &auth)])
                        .await
                    {
                        Ok((200, _)) => lat.push(t.elapsed().as_secs_f64()),
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            }
        });
        let results = futures::future::join_all(clients).await;
        let lat: Vec<f64> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
        out.queries.push(report::ApiQuery {
            query: name.to_string(),
            path,
            latency: Percentiles::of(&lat),
            errors: results.iter().map(|r| r.1).sum(),
        });
    }
    if s.api.ui_loads > 0 {
        match ui_latency(s, &api).await {
            Ok(ui) => out.ui = Some(ui),
            Err(e) => out.ui_error = Some(format!("{e:#}")),
        }
    }
    if let Some(pid) = server.pid() {
        let mut usage = Usage::default();
        usage.sample(&[("flotilla-server".to_string(), pid)]);
        out.server_rss_mib = usage.peak_rss("flotilla-server") as f64 / 1048576.0;
    }
    drop(server);
    Ok(out)
}

/// Waits in the page until the list is ready, then answers `performance.now()` (ms since the
/// navigation started).
const LIST_READY_JS: &str = "const done = arguments[arguments.length - 1];
    const check = () => {
      const l = document.querySelector('[data-testid=app-list][data-ready=true]');
      if (l && l.querySelector('[data-testid=app-row]')) done(performance.now()); else setTimeout(check, 5);
    };
    check();";

/// Types `arguments[0]` into the search box and answers the ms until exactly one row shows.
const SEARCH_JS: &str = "const [name, done] = [arguments[0], arguments[arguments.length - 1]];
    const input = document.querySelector('[data-testid=app-search]');
    const t0 = performance.now();
    const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
    set.call(input, name);
    input.dispatchEvent(new Event('input', {bubbles: true}));
    const check = () => {
      const rows = document.querySelectorAll('[data-testid=app-row]');
      const c = document.querySelector('[data-testid=app-count]');
      if (rows.length === 1 && c && c.dataset.count === '1' && rows[0].dataset.app.endsWith('/' + name)) done(performance.now() - t0);
      else if (performance.now() - t0 > 50000) done(-1); else setTimeout(check, 5);
    };
    check();";

/// Scrolls the list to its end and answers the ms until the last app's row is rendered.
const SCROLL_END_JS: &str = "const [last, done] = [arguments[0], arguments[arguments.length - 1]];
    const list = document.querySelector('[data-testid=app-list]');
    const t0 = performance.now();
    list.scrollTop = list.scrollHeight;
    const check = () => {
      if (document.querySelector(`[data-testid=app-row][data-app$='/${last}']`)) done(performance.now() - t0);
      else if (performance.now() - t0 > 50000) done(-1); else setTimeout(check, 5);
    };
    check();";

/// Time the web UI's application list in headless Chromium against the server at `api`:
/// first and later loads, a search, a jump to the end.
async fn ui_latency(s: &Scenario, api: &str) -> Result<report::UiReport> {
    let b = crate::browser::Browser::start(1400, 900).await?;
    b.client
        .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
            Some(Duration::from_secs(60)),
            Some(Duration::from_secs(120)),
            None,
        ))
        .await?;
    let base = format!("http://{api}");
    // Sign in from a page that is not the UI (a JSON answer), so the first visit of the list
    // finds nothing cached.
    b.client
        .goto(&format!("{base}/api/v1/session/userinfo"))
        .await?;
    let signed = b
        .client
        .execute_async(
            "const [token, done] = [arguments[0], arguments[arguments.length - 1]];
             fetch('/api/v1/session', {method: 'POST', headers: {'Content-Type': 'application/json'},
                   body: JSON.stringify({username: 'admin', password: token})}).then(r => done(r.status), e => done(String(e)));",
            vec![crate::fleet::ADMIN_TOKEN.into()],
        )
        .await?;
    anyhow::ensure!(signed == 200, "signing in: {signed}");
    let ms = |v: serde_json::Value| -> Result<f64> {
        let x = v.as_f64().context("a number of milliseconds")?;
        anyhow::ensure!(x >= 0.0, "timed out in the page");
        Ok(x / 1000.0)
    };
    let mut out = report::UiReport::default();
    let last = workload::app_name(s.applications.saturating_sub(1));
    let timed = async {
    let (mut warm, mut search, mut scroll) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=s.api.ui_loads {
        b.client.goto(&format!("{base}/applications")).await?;
        let t = ms(b.client.execute_async(LIST_READY_JS, vec![]).await?)
            .with_context(|| format!("load {i}: the list's first page"))?;
        if i == 0 {
            out.cold_load = t;
            out.listed = b
                .js("return Number(document.querySelector('[data-testid=app-count]').dataset.count)")
                .await?
                .as_u64()
                .unwrap_or(0);
            out.dom_rows = b
                .js("return document.querySelectorAll('[data-testid=app-row]').length")
                .await?
                .as_u64()
                .unwrap_or(0);
        } else {
            warm.push(t);
        }
        scroll.push(
            ms(b.client
                .execute_async(SCROLL_END_JS, vec![last.clone().into()])
                .await?)
            .with_context(|| format!("load {i}: jumping to {last} at the end"))?,
        );
        let name = workload::app_name((i * 7919) % s.applications.max(1));
        search.push(
            ms(b.client
                .execute_async(SEARCH_JS, vec![name.clone().into()])
                .await?)
            .with_context(|| format!("load {i}: searching for {name}"))?,
        );
    }
    Ok::<_, anyhow::Error>((warm, search, scroll))
    }
    .await;
    let (warm, search, scroll) = match timed {
        Ok(t) => t,
        Err(e) => {
            // What the page showed, for the report.
            let shot = b.screenshot("ui-timing-failure").await.ok();
            let text = b
                .js("return document.body.innerText.slice(0, 400)")
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = b.close().await;
            return Err(e.context(format!("the page (screenshot {shot:?}) read: {text:?}")));
        }
    };
    out.warm_load = Percentiles::of(&warm);
    out.search = Percentiles::of(&search);
    out.scroll_to_end = Percentiles::of(&scroll);
    b.close().await?;
    Ok(out)
}

/// One commit changing some applications; waits until they are live.
async fn change(
    s: &Scenario,
    fleet: &Fleet,
    wl: &mut Workload,
    obs: &Shared,
    n: usize,
    webhook: bool,
) -> Result<(Change, Vec<f64>)> {
    let apps = workload::changed_apps(s, n);
    let mut by_repo: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in &apps {
        by_repo.entry(workload::repo_of(s, i)).or_default().push(i);
    }
    let before = totals(fleet).await?;
    let mut commits = BTreeMap::new();
    for (&j, idx) in &by_repo {
        for &i in idx {
            wl.versions[i] += 1;
            wl.repo(fleet, j).write(&[(
                &format!("{}/manifests.yaml", workload::path_of(s, i)),
                &workload::manifests(s, i, wl.versions[i]),
            )])?;
        }
        commits.insert(j, wl.repo(fleet, j).commit(&format!("change {n}"))?);
    }
    let pushed = Instant::now();
    if webhook {
        for (&j, commit) in &commits {
            let url = wl.repo(fleet, j).url();
            let files: Vec<String> = by_repo[&j]
                .iter()
                .map(|i| format!("{}/manifests.yaml", workload::path_of(s, *i)))
                .collect();
            let body = github_push(&url, commit, &files);
            let c = &fleet.controllers[n % fleet.controllers.len()];
            let addr = c
                .webhook
                .as_deref()
                .context("the controller serves no webhook")?;
            post_push(addr, &body).await?;
        }
    }
    let deadline = pushed + Duration::from_secs(s.changes.timeout_seconds);
    let want = |i: usize| commits[&workload::repo_of(s, i)].as_str();
    let latencies = loop {
        let latencies: Vec<f64> = {
            let o = obs.lock();
            apps.iter()
                .filter_map(|&i| {
                    let a = o.apps.get(&workload::app_name(i))?;
                    Some(a.reached.get(want(i))?.duration_since(pushed).as_secs_f64())
                })
                .collect()
        };
        if latencies.len() == apps.len() {
            break latencies;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "change {n}: only {} of {} changed applications live after {} s",
                latencies.len(),
                apps.len(),
                s.changes.timeout_seconds
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Every application of the pushed repositories at the new commit (bounded wait). With a
    // webhook, applications whose paths did not change are not refreshed (their
    // manifest-generate-paths annotation), so they move at their next periodic refresh.
    let everyone: Vec<usize> = (0..s.applications)
        .filter(|i| by_repo.contains_key(&workload::repo_of(s, *i)))
        .collect();
    let mut all_apps_seconds = None;
    while !webhook && Instant::now() < deadline {
        let last = {
            let o = obs.lock();
            everyone
                .iter()
                .map(|&i| {
                    o.apps
                        .get(&workload::app_name(i))
                        .and_then(|a| a.reached.get(want(i)).copied())
                })
                .collect::<Option<Vec<Instant>>>()
                .and_then(|v| v.into_iter().max())
        };
        if let Some(last) = last {
            all_apps_seconds = Some(last.duration_since(pushed).as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = totals(fleet).await?;
    let ch = Change {
        path: if webhook { "webhook" } else { "poll" }.into(),
        commit: commits.values().next().cloned().unwrap_or_default(),
        apps_changed: apps.len(),
        latency: Percentiles::of(&latencies),
        all_apps_seconds,
        renders: after.renders - before.renders,
        git_fetches: after.fetches - before.fetches,
    };
    Ok((ch, latencies))
}

/// SIGKILL repo-server `replica`; returns its name.
fn kill_repo_server(fleet: &mut Fleet, replica: usize) -> Result<String> {
    let name = fleet
        .repo_servers
        .get(replica)
        .context("no such repo-server")?
        .name
        .clone();
    fleet.kill_repo_server(&name)?;
    Ok(name)
}

/// SIGKILL Redis node `node`; returns its name.
fn kill_redis_node(fleet: &mut Fleet, node: usize) -> Result<String> {
    fleet
        .redis
        .as_mut()
        .context("no Redis in this scenario")?
        .kill(node);
    Ok(format!("redis-{node}"))
}

/// Inject one fault and measure the recovery.
async fn fault(cx: &mut Ctx<'_>, f: &Fault, n: usize) -> Result<FaultResult> {
    let (s, obs, servers) = (cx.s, cx.obs, cx.servers);
    let settle = settle_time(s);
    let mut out = FaultResult {
        fault: format!("{f:?}"),
        ..Default::default()
    };
    // A dependency dies: time a change pushed through what is left of the fleet.
    let dependency = match f {
        Fault::KillRepoServer { replica } => {
            kill_repo_server(cx.fleet, *replica)?;
            true
        }
        Fault::KillRedisNode { node } => {
            kill_redis_node(cx.fleet, *node)?;
            true
        }
        Fault::CutWatches { cluster } => {
            // Recovered once the owner watches the cluster again.
            let admin = cx.fleet.sim.admin().context("kubesim has no admin API")?;
            let (name, before) = chaos::watched_cluster(&admin, *cluster, s.clusters).await?;
            out.fault = format!("{f:?} → {name}");
            let at = Instant::now();
            simadmin::cut_watches(&admin, &name).await?;
            while at.elapsed() < settle {
                let now = simadmin::cluster_stats(&admin, &name).await?;
                if chaos::watching_again(&before, &now) {
                    out.recovered_seconds = Some(at.elapsed().as_secs_f64());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return Ok(out);
        }
        _ => false,
    };
    if dependency {
        let (ch, _) = change(s, cx.fleet, cx.wl, obs, n, true).await?;
        out.recovered_seconds = Some(ch.latency.max);
        return Ok(out);
    }
    let before = stable_ownership(cx.fleet, servers, s.clusters, settle).await?;
    let at = Instant::now();
    let victim = match f {
        Fault::KillController { replica } | Fault::StopController { replica } => {
            let id = cx.fleet.controllers[*replica].identity.clone();
            cx.remove_controller(&id, matches!(f, Fault::KillController { .. }))?;
            Some(id)
        }
        Fault::AddController => {
            cx.add_controller().await?;
            None
        }
        Fault::KillRepoServer { .. } | Fault::KillRedisNode { .. } | Fault::CutWatches { .. } => {
            None
        }
    };
    out.minimum_moves = match &victim {
        Some(v) => before.values().filter(|o| *o == v).count(),
        None => s.clusters / cx.fleet.controllers.len().max(1),
    };
    let after = stable_ownership(cx.fleet, servers, s.clusters, settle).await?;
    let moved: BTreeSet<&String> = after
        .iter()
        .filter(|(c, o)| before.get(*c) != Some(*o))
        .map(|(c, _)| c)
        .collect();
    out.clusters_moved = moved.len();
    let apps: Vec<usize> = (0..s.applications)
        .filter(|i| moved.contains(&workload::cluster_of(s, *i)))
        .collect();
    out.apps_on_moved_clusters = apps.len();
    let deadline = Instant::now() + settle;
    loop {
        let last = {
            let o = obs.lock();
            apps.iter()
                .map(|&i| {
                    o.apps
                        .get(&workload::app_name(i))
                        .and_then(|a| a.reconciled_seen.filter(|t| *t > at))
                })
                .collect::<Option<Vec<Instant>>>()
                .map(|v| v.into_iter().max().unwrap_or(at))
        };
        if let Some(last) = last {
            out.recovered_seconds = Some(last.duration_since(at).as_secs_f64());
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(out)
}
