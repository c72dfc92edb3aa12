//! The load-test report: what was measured (JSON, stable field names for comparing runs) and
//! its Markdown summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::phases_report::{ChaosReport, SoakReport};
use super::procstat::Reading;
use super::scenario::Scenario;

/// Distribution summary of latencies, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (seconds).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v[i.clamp(1, v.len()) - 1]
        };
        Self {
            count: v.len(),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: v[v.len() - 1],
        }
    }
}

/// The machine the run was on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu_model: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (mem_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
                .unwrap_or_default(),
        }
    }
}

/// From creation of the applications to all Synced and Healthy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Convergence {
    pub applications: usize,
    pub synced_healthy: usize,
    /// Seconds from the first creation until the last application was Synced and Healthy.
    pub all_synced_seconds: Option<f64>,
    /// Seconds to create every Application object.
    pub create_seconds: f64,
    /// Per application: creation → first Synced and Healthy.
    pub per_app: Percentiles,
    pub reconciles: f64,
    pub reconciles_per_second: f64,
    /// Requests the controllers made to kubesim (every cluster, the control plane included).
    pub kube_requests: f64,
    pub kube_requests_per_reconcile: f64,
    pub renders: f64,
    pub git_fetches: f64,
    /// With ApplicationSets: seconds from the sets' creation until every Application existed.
    #[serde(default)]
    pub appset_generation_seconds: Option<f64>,
    /// With ApplicationSets: one new app directory committed and pushed (webhook) → its
    /// Application Synced and Healthy.
    #[serde(default)]
    pub appset_new_directory_seconds: Option<f64>,
    /// With ApplicationSets: a new cluster Secret (labelled into a set) → every Application
    /// generated for it Synced and Healthy.
    #[serde(default)]
    pub appset_new_cluster_seconds: Option<f64>,
    /// With ApplicationSets: how many Applications the new cluster got.
    #[serde(default)]
    pub appset_new_cluster_apps: usize,
    /// The controllers' CPU seconds inside reconciles during convergence, by phase
    /// (`reconcile` is the whole; render, live, diff, sync and status are parts of it).
    #[serde(default)]
    pub reconcile_cpu_seconds: BTreeMap<String, f64>,
}

impl Convergence {
    /// "render 0.41 · live 0.12 · … = 1.50 ms": CPU per reconcile by phase, the rest of the
    /// reconcile as `other`; `None` when the controllers exported no phases.
    pub fn cpu_per_reconcile(&self) -> Option<String> {
        let whole = *self.reconcile_cpu_seconds.get("reconcile")?;
        if whole <= 0.0 || self.reconciles <= 0.0 {
            return None;
        }
        let per = |v: f64| v * 1000.0 / self.reconciles;
        let mut parts = Vec::new();
        let mut counted = 0.0;
        for p in ["render", "live", "diff", "sync", "status"] {
            let v = self.reconcile_cpu_seconds.get(p).copied().unwrap_or(0.0);
            counted += v;
            parts.push(format!("{p} {:.3}", per(v)));
        }
        parts.push(format!("other {:.3}", per((whole - counted).max(0.0))));
        Some(format!("{} = {:.3} ms", parts.join(" · "), per(whole)))
    }
}

/// Commit-to-live of one commit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Change {
    /// `webhook` or `poll`.
    pub path: String,
    pub commit: String,
    pub apps_changed: usize,
    /// Per changed application: push → Synced at the new commit.
    pub latency: Percentiles,
    /// Push → every application of the pushed repository Synced at the new commit (poll path
    /// only: a webhook refreshes only the applications whose paths changed).
    pub all_apps_seconds: Option<f64>,
    pub renders: f64,
    pub git_fetches: f64,
}

/// What a fault did and how long the fleet took to recover.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FaultResult {
    pub fault: String,
    /// Clusters whose owner changed.
    pub clusters_moved: usize,
    /// The fewest clusters that had to move: the victim's, or a new replica's fair share.
    pub minimum_moves: usize,
    /// Applications on moved clusters (all must be reconciled again).
    pub apps_on_moved_clusters: usize,
    /// Fault → the last of those applications reconciled by its new owner (or, for
    /// repo-server and Redis faults, push → live for a change made after the fault).
    pub recovered_seconds: Option<f64>,
}

/// Controllers' CPU with nothing changing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Idle {
    pub seconds: f64,
    pub controllers_cpu_seconds: f64,
    /// Percent of one core used by all controllers together.
    pub percent_of_one_core: f64,
}

/// Cache lookups of the controllers over the whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheStats {
    pub hits_memory: f64,
    pub hits_shared: f64,
    pub misses: f64,
    pub hit_ratio: f64,
}

/// Resource use per part.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    pub processes: BTreeMap<String, Reading>,
    pub controllers_cpu_seconds: f64,
    pub repo_servers_cpu_seconds: f64,
    pub kubesim_cpu_seconds: f64,
    pub redis_cpu_seconds: f64,
    /// Sum of the controllers' peak RSS, MiB.
    pub controllers_peak_rss_mib: f64,
    /// Controllers' peak RSS per 1,000 applications, MiB.
    pub controllers_mib_per_1k_apps: f64,
    pub repo_servers_peak_rss_mib: f64,
    pub kubesim_peak_rss_mib: f64,
}

/// One point of the progress timeline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the applications began to be created.
    pub t: f64,
    pub synced_healthy: usize,
    /// Successful syncs so far, per controller replica.
    pub syncs_by_replica: BTreeMap<String, f64>,
    pub controllers_cpu_seconds: f64,
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenario: Scenario,
    pub machine: Machine,
    pub started: String,
    pub flotilla_version: String,
    /// Everything converged, every change went live and every fault was recovered from.
    pub ok: bool,
    pub problems: Vec<String>,
    pub convergence: Convergence,
    pub changes: Vec<Change>,
    /// All webhook changes together, per changed application.
    pub webhook_latency: Percentiles,
    pub poll_latency: Percentiles,
    pub idle: Idle,
    pub cache: CacheStats,
    pub faults: Vec<FaultResult>,
    pub resources: Resources,
    pub timeline: Vec<Sample>,
    /// Creation → Synced and Healthy of every application (seconds), for the histogram.
    pub per_app_seconds: Vec<f64>,
    /// The API server on the converged fleet (empty unless the scenario asks).
    #[serde(default)]
    pub api: ApiReport,
    /// The chaos phase, when the scenario has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosReport>,
    /// The soak phase, when the scenario has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakReport>,
}

/// What the API's latency was at this size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiReport {
    /// Start to ready (its watches listed every Application).
    pub ready_seconds: f64,
    /// Per query kind: its latency distribution.
    pub queries: Vec<ApiQuery>,
    /// Peak resident memory of the server (MiB).
    pub server_rss_mib: f64,
    /// The web UI's application list in a real browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<UiReport>,
    /// Why the web UI could not be timed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_error: Option<String>,
}

/// The web UI's list view at this size, in headless Chromium (seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UiReport {
    /// Applications the list counted (must be all of them).
    pub listed: u64,
    /// Navigation start to the first page of rows rendered, nothing cached (first visit).
    pub cold_load: f64,
    /// The same with the assets cached (every later visit).
    pub warm_load: Percentiles,
    /// Typing a name in the search box to the one matching row shown (includes the 200 ms
    /// debounce).
    pub search: Percentiles,
    /// Jumping to the end of the list to its last rows rendered (a page fetched by offset).
    pub scroll_to_end: Percentiles,
    /// DOM rows in the list (virtualised: a screenful, not every app).
    pub dom_rows: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiQuery {
    pub query: String,
    pub path: String,
    pub latency: Percentiles,
    /// Responses other than 200.
    pub errors: usize,
}

pub(super) fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "not reached".into(), |s| format!("{s:.1} s"))
}

pub(super) fn ms(p: &Percentiles) -> String {
    if p.count == 0 {
        return "n/a".into();
    }
    format!(
        "p50 {:.0} ms · p90 {:.0} ms · p99 {:.0} ms · max {:.0} ms (n={})",
        p.p50 * 1e3,
        p.p90 * 1e3,
        p.p99 * 1e3,
        p.max * 1e3,
        p.count
    )
}

impl Report {
    /// The Markdown summary.
    pub fn markdown(&self) -> String {
        let s = &self.scenario;
        let c = &self.convergence;
        let r = &self.resources;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# Load test `{}`: {}\n",
            s.name,
            if self.ok { "passed" } else { "FAILED" }
        );
        let _ = writeln!(o, "{}\n", s.description.trim());
        let _ = writeln!(
            o,
            "{} applications × {} objects on {} clusters (kubesim latency profile `{}`); {} controller(s), {} repo-server(s), {}; Git: {} repositor{}. Machine: {} cores, {} GiB ({}). Flotilla {}, {}.\n",
            s.applications,
            s.objects_per_app,
            s.clusters,
            s.latency_profile,
            s.controllers,
            s.repo_servers,
            if s.redis_masters > 0 {
                format!("Redis Cluster of {} masters", s.redis_masters)
            } else {
                "in-memory caches".into()
            },
            s.repo_count(),
            if s.repo_count() == 1 { "y" } else { "ies" },
            self.machine.cores,
            self.machine.memory_gib,
            self.machine.cpu_model,
            self.flotilla_version,
            self.started,
        );
        for p in &self.problems {
            let _ = writeln!(o, "- **problem**: {p}");
        }
        if !self.problems.is_empty() {
            o.push('\n');
        }
        let _ = writeln!(o, "| measure | value |\n|---|---|");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(o, "| {k} | {v} |");
        };
        row(
            "all applications Synced and Healthy",
            format!(
                "{} ({}/{} apps)",
                opt(c.all_synced_seconds),
                c.synced_healthy,
                c.applications
            ),
        );
        row(
            "creating the Application objects",
            format!("{:.1} s", c.create_seconds),
        );
        row(
            "per application, created → Synced and Healthy",
            ms(&c.per_app),
        );
        row(
            "reconciliations per second (during convergence)",
            format!(
                "{:.0} ({:.0} in all)",
                c.reconciles_per_second, c.reconciles
            ),
        );
        row(
            "kube API requests per reconciliation",
            format!(
                "{:.2} ({:.0} in all)",
                c.kube_requests_per_reconcile, c.kube_requests
            ),
        );
        if let Some(split) = c.cpu_per_reconcile() {
            row("controllers' CPU per reconciliation, by phase", split);
        }
        row(
            "renders / git fetches to converge",
            format!("{:.0} / {:.0}", c.renders, c.git_fetches),
        );
        if let Some(g) = c.appset_generation_seconds {
            row(
                "ApplicationSets: created → every Application generated",
                format!("{g:.1} s"),
            );
        }
        if let Some(d) = c.appset_new_directory_seconds {
            row(
                "ApplicationSets: new directory committed → its app Synced and Healthy",
                format!("{d:.1} s"),
            );
        }
        if let Some(d) = c.appset_new_cluster_seconds {
            row(
                "ApplicationSets: new cluster Secret → its apps Synced and Healthy",
                format!("{d:.1} s ({} apps)", c.appset_new_cluster_apps),
            );
        }
        row(
            "commit-to-live, webhook (per changed app)",
            ms(&self.webhook_latency),
        );
        row(
            "commit-to-live, poll (per changed app)",
            ms(&self.poll_latency),
        );
        row(
            "manifest cache hit ratio (controllers)",
            format!(
                "{:.1} % (memory {:.0}, shared {:.0}, miss {:.0})",
                self.cache.hit_ratio * 100.0,
                self.cache.hits_memory,
                self.cache.hits_shared,
                self.cache.misses
            ),
        );
        row(
            "idle controllers' CPU",
            format!(
                "{:.2} % of one core over {:.0} s",
                self.idle.percent_of_one_core, self.idle.seconds
            ),
        );
        row(
            "controllers' peak memory",
            format!(
                "{:.0} MiB in all, {:.1} MiB per 1,000 apps",
                r.controllers_peak_rss_mib, r.controllers_mib_per_1k_apps
            ),
        );
        row(
            "CPU seconds: controllers / repo-servers / kubesim / redis",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1}",
                r.controllers_cpu_seconds,
                r.repo_servers_cpu_seconds,
                r.kubesim_cpu_seconds,
                r.redis_cpu_seconds
            ),
        );
        row(
            "peak memory: repo-servers / kubesim",
            format!(
                "{:.0} MiB / {:.0} MiB",
                r.repo_servers_peak_rss_mib, r.kubesim_peak_rss_mib
            ),
        );
        if !self.changes.is_empty() {
            let _ = writeln!(
                o,
                "\n## Changes\n\n| path | commit | apps | push → changed apps live | push → every app at the commit | renders | git fetches |\n|---|---|---|---|---|---|---|"
            );
            for ch in &self.changes {
                let _ = writeln!(
                    o,
                    "| {} | `{}` | {} | {} | {} | {:.0} | {:.0} |",
                    ch.path,
                    &ch.commit[..ch.commit.len().min(8)],
                    ch.apps_changed,
                    ms(&ch.latency),
                    opt(ch.all_apps_seconds),
                    ch.renders,
                    ch.git_fetches
                );
            }
        }
        if !self.api.queries.is_empty() {
            let _ = writeln!(
                o,
                "\n## API server\n\nReady (every Application listed) {:.1} s after start; peak memory {:.0} MiB.\n\n| query | path | latency | errors |\n|---|---|---|---|",
                self.api.ready_seconds, self.api.server_rss_mib
            );
            for q in &self.api.queries {
                let _ = writeln!(
                    o,
                    "| {} | `{}` | {} | {} |",
                    q.query,
                    q.path,
                    ms(&q.latency),
                    q.errors
                );
            }
            if let Some(ui) = &self.api.ui {
                let _ = writeln!(
                    o,
                    "\n### Web UI (headless Chromium)\n\n{} applications counted; {} rows in the DOM.\n\n| step | time |\n|---|---|\n| list, first visit (nothing cached) | {:.0} ms |\n| list, later visits | {} |\n| search to the one match (with 200 ms debounce) | {} |\n| jump to the end of the list | {} |",
                    ui.listed,
                    ui.dom_rows,
                    ui.cold_load * 1000.0,
                    ms(&ui.warm_load),
                    ms(&ui.search),
                    ms(&ui.scroll_to_end)
                );
            }
        }
        if !self.faults.is_empty() {
            let _ = writeln!(
                o,
                "\n## Faults\n\n| fault | clusters moved | minimum that had to move | apps to reconcile again | recovered in |\n|---|---|---|---|---|"
            );
            for f in &self.faults {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} |",
                    f.fault,
                    f.clusters_moved,
                    f.minimum_moves,
                    f.apps_on_moved_clusters,
                    opt(f.recovered_seconds)
                );
            }
        }
        if let Some(c) = &self.chaos {
            c.markdown(&mut o);
        }
        if let Some(k) = &self.soak {
            k.markdown(&mut o);
        }
        let _ = writeln!(
            o,
            "\n## Processes\n\n| process | CPU s | peak RSS MiB |\n|---|---|---|"
        );
        for (name, p) in &r.processes {
            let _ = writeln!(
                o,
                "| {name} | {:.1} | {:.0} |",
                p.cpu_seconds,
                p.peak_rss_bytes as f64 / 1048576.0
            );
        }
        let _ = writeln!(
            o,
            "\nCharts: `progress.svg` (applications Synced and Healthy, and syncs per replica, over time), `latency.svg` (distribution of created → Synced and Healthy){}{}.",
            if self.chaos.is_some() {
                ", `rollout.svg` (the chaos commit's rollout, with the faults)"
            } else {
                ""
            },
            if self.soak.is_some() {
                ", `soak-memory.svg` and `soak-cpu.svg` (the controllers' memory and CPU over the soak)"
            } else {
                ""
            }
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_reconcile_splits_by_phase_with_the_rest_as_other() {
        let mut c = Convergence {
            reconciles: 1000.0,
            ..Default::default()
        };
        assert_eq!(c.cpu_per_reconcile(), None, "no phases exported");
        for (p, v) in [
            ("reconcile", 2.0),
            ("render", 0.5),
            ("sync", 1.0),
            ("status", 0.25),
        ] {
            c.reconcile_cpu_seconds.insert(p.into(), v);
        }
        assert_eq!(
            c.cpu_per_reconcile().as_deref(),
            Some(
                "render 0.500 · live 0.000 · diff 0.000 · sync 1.000 · status 0.250 · other 0.250 = 2.000 ms"
            )
        );
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max, p.count),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        let one = Percentiles::of(&[3.0]);
        assert_eq!((one.p50, one.p99), (3.0, 3.0));
        assert_eq!(Percentiles::of(&[]).count, 0);
    }

    #[test]
    fn markdown_names_failures_and_the_headline_numbers() {
        let r = Report {
            scenario: Scenario {
                name: "x".into(),
                applications: 10,
                ..Scenario::default()
            },
            ok: false,
            problems: vec!["3 applications never synced".into()],
            convergence: Convergence {
                all_synced_seconds: Some(12.34),
                applications: 10,
                synced_healthy: 7,
                ..Default::default()
            },
            ..Default::default()
        };
        let md = r.markdown();
        assert!(md.contains("FAILED"), "{md}");
        assert!(md.contains("3 applications never synced"));
        assert!(md.contains("12.3 s (7/10 apps)"), "{md}");
        assert!(md.contains("latency profile `none`"), "{md}");
    }
}
