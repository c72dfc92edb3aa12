//! Load-test scenarios: the YAML files in `loadtest/scenarios/` (fleet size, workload, Git
//! layout, changes, faults, chaos and soak phases), parsed strictly and checked before anything
//! starts.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One scenario. Every field but `name` has a default, so a file says only what it varies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Target clusters (the control plane comes on top).
    pub clusters: usize,
    pub applications: usize,
    /// Objects each application renders: one Deployment and `objectsPerApp - 1` ConfigMaps.
    pub objects_per_app: usize,
    pub git: GitLayout,
    pub controllers: usize,
    pub repo_servers: usize,
    /// Redis Cluster masters (0 = in-memory caches; Redis Cluster needs at least 3).
    pub redis_masters: usize,
    /// Reconcile workers per controller.
    pub workers: usize,
    /// The controllers' periodic refresh.
    pub refresh_seconds: u64,
    /// Delay before kubesim reports a Deployment ready.
    pub ready_delay_ms: u64,
    pub lease_duration_seconds: u64,
    pub lease_renew_seconds: f64,
    /// Applications created at once.
    pub create_concurrency: usize,
    /// Give up when the fleet has not converged in this time.
    pub converge_timeout_seconds: u64,
    /// Commits made after convergence, to measure commit-to-live.
    pub changes: Changes,
    /// Seconds of an idle fleet (no changes) over which the controllers' CPU is measured.
    pub idle_seconds: u64,
    /// Faults injected after the changes, one after another.
    pub faults: Vec<Fault>,
    /// Extra controller and repo-server arguments.
    pub controller_args: Vec<String>,
    pub repo_server_args: Vec<String>,
    /// The apps' project (`default`) asks for orphaned-resource reports (`warn: true`): the
    /// controllers watch every namespaced kind's metadata on every cluster.
    pub orphaned_resources: bool,
    /// After the changes: start flotilla-server and time its API.
    pub api: ApiLoad,
    /// 0: the harness creates every Application. N > 0: it creates N ApplicationSets (git
    /// files generators over the monorepo, each selecting its share of the apps' directories)
    /// and the controllers generate the Applications; the report adds the generation time and
    /// what one new directory costs to roll out.
    pub application_sets: usize,
    /// kubesim's latency profile for the target clusters: `none` (answers at once),
    /// `realistic` (see kubesim's `--latency-profile`) or a YAML profile file.
    pub latency_profile: String,
    /// After the faults: one commit changing every application rolls out while faults hit the
    /// fleet; then every app must be at it, no cluster written by two replicas at once, nothing
    /// pruned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chaos: Option<Chaos>,
    /// After the faults: steady churn (commits, app creates and deletes, replica restarts) for
    /// a while, the controllers' memory and CPU sampled and required to stay flat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<Soak>,
}

/// The chaos phase: after convergence, one commit changes every application's manifests and is
/// announced by webhook; while it rolls out, `faults` are injected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Chaos {
    /// The faults, in order; each waits for its share of the rollout.
    pub faults: Vec<ChaosFault>,
    /// Give up when not every application is Synced and Healthy at the new commit after this
    /// long (from the push).
    pub timeout_seconds: u64,
}

impl Default for Chaos {
    fn default() -> Self {
        Self {
            faults: Vec::new(),
            timeout_seconds: 900,
        }
    }
}

/// One fault of the chaos phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChaosFault {
    /// Injected once this fraction (0 ≤ f < 1) of the applications is Synced and Healthy at
    /// the new commit, so it lands mid-rollout whatever the fleet's speed.
    pub at_fraction: f64,
    pub fault: Fault,
}

/// The soak phase: steady churn for `durationSeconds`, the controllers' memory and CPU sampled.
/// Every `*EverySeconds` of 0 switches that kind of churn off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Soak {
    pub duration_seconds: u64,
    /// Every controller's RSS and CPU are read this often.
    pub sample_seconds: f64,
    /// A webhook commit changing `changes.appsPerCommit` applications this often (each must go
    /// live within `changes.timeoutSeconds`).
    pub commit_every_seconds: f64,
    /// This often, `churnApps` new applications (with the resources finalizer) are created
    /// and, beyond `churnLiveApps` of them, the oldest are deleted.
    pub churn_every_seconds: f64,
    pub churn_apps: usize,
    pub churn_live_apps: usize,
    /// This often, the oldest controller replica is stopped — SIGTERM and kill -9 in turn — and
    /// a replacement (a new identity) started.
    pub restart_every_seconds: f64,
    /// The baseline window starts this long after the soak began (caches warm, first restart
    /// absorbed).
    pub warmup_seconds: u64,
    /// Length of the baseline window and of the final window (the soak's last seconds).
    pub window_seconds: u64,
    /// Fail when the controllers' total RSS (median over the final window) exceeds the
    /// baseline median by more than this.
    pub max_memory_growth_percent: f64,
    /// The same for CPU (none: reported, never failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cpu_growth_percent: Option<f64>,
    /// A created application must be Synced and Healthy, and a deleted one gone with its
    /// objects, within this long.
    pub churn_timeout_seconds: u64,
}

impl Default for Soak {
    fn default() -> Self {
        Self {
            duration_seconds: 3600,
            sample_seconds: 5.0,
            commit_every_seconds: 30.0,
            churn_every_seconds: 20.0,
            churn_apps: 2,
            churn_live_apps: 40,
            restart_every_seconds: 300.0,
            warmup_seconds: 300,
            window_seconds: 600,
            max_memory_growth_percent: 15.0,
            max_cpu_growth_percent: None,
            churn_timeout_seconds: 180,
        }
    }
}

impl Soak {
    /// Churn steps over the whole soak (the first at its start).
    pub fn churn_steps(&self) -> usize {
        if self.churn_every_seconds > 0.0 {
            (self.duration_seconds as f64 / self.churn_every_seconds).ceil() as usize + 1
        } else {
            0
        }
    }

    /// Applications the soak creates at most (their directories are written to Git up front).
    pub fn churn_total(&self) -> usize {
        self.churn_steps() * self.churn_apps
    }
}

/// Timing the API server on the converged fleet: each query kind `requests` times, from
/// `concurrency` clients at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiLoad {
    /// Requests per query kind (0: the API is not measured).
    pub requests: usize,
    pub concurrency: usize,
    /// Loads of the web UI's application list in headless Chromium (0: not measured; needs
    /// chromium and chromedriver).
    pub ui_loads: usize,
}

impl Default for ApiLoad {
    fn default() -> Self {
        Self {
            requests: 0,
            concurrency: 4,
            ui_loads: 0,
        }
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: String::new(),
            description: String::new(),
            clusters: 4,
            applications: 40,
            objects_per_app: 3,
            git: GitLayout::default(),
            controllers: 1,
            repo_servers: 1,
            redis_masters: 0,
            workers: 16,
            refresh_seconds: 600,
            ready_delay_ms: 200,
            lease_duration_seconds: 10,
            lease_renew_seconds: 2.0,
            create_concurrency: 32,
            converge_timeout_seconds: 300,
            changes: Changes::default(),
            idle_seconds: 10,
            faults: Vec::new(),
            controller_args: Vec::new(),
            repo_server_args: Vec::new(),
            orphaned_resources: false,
            api: ApiLoad::default(),
            application_sets: 0,
            latency_profile: "none".into(),
            chaos: None,
            soak: None,
        }
    }
}

/// How the applications' manifests are laid out in Git.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GitLayout {
    pub layout: Layout,
    /// Repositories for `layout: repos` (applications spread round-robin).
    pub repos: usize,
}

impl Default for GitLayout {
    fn default() -> Self {
        Self {
            layout: Layout::Monorepo,
            repos: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Layout {
    /// One repository, one directory per application (`apps/app-00001`).
    Monorepo,
    /// `repos` repositories, each with its share of the applications.
    Repos,
}

/// Commits that change some applications, to measure commit-to-live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Changes {
    /// Commits announced by a (GitHub-format, signed) webhook.
    pub webhook_commits: usize,
    /// Commits left for the periodic refresh to find (each waits up to `refreshSeconds`
    /// plus jitter, so keep the refresh short in scenarios that use them).
    pub poll_commits: usize,
    /// Applications changed by each commit.
    pub apps_per_commit: usize,
    /// Pause between commits.
    pub interval_seconds: f64,
    /// Give up on one commit after this long.
    pub timeout_seconds: u64,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            webhook_commits: 0,
            poll_commits: 0,
            apps_per_commit: 5,
            interval_seconds: 1.0,
            timeout_seconds: 120,
        }
    }
}

/// A fault, injected once the fleet is converged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", deny_unknown_fields)]
pub enum Fault {
    /// SIGKILL controller replica `replica` (index among the running ones): its Lease must
    /// expire before its clusters move.
    KillController { replica: usize },
    /// SIGTERM controller replica `replica`: it hands its clusters over.
    StopController { replica: usize },
    /// Start one more controller replica (a scale-up rebalance).
    AddController,
    /// SIGKILL repo-server `replica`.
    KillRepoServer { replica: usize },
    /// SIGKILL Redis node `node`.
    KillRedisNode { node: usize },
    /// End every open watch on target cluster `cluster` (1-based, as `cluster-001`; if it has
    /// none open — its owner just died — the next cluster that has); the owner must notice and
    /// watch again.
    CutWatches { cluster: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml::Error,
    },
    #[error("scenario {name}: {problem}")]
    Invalid { name: String, problem: String },
}

impl Scenario {
    /// Read and check a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse and check scenario YAML (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = serde_yaml::from_str(text).map_err(|source| ScenarioError::Parse {
            path: origin.to_string(),
            source,
        })?;
        s.validate()?;
        Ok(s)
    }

    /// The checks a typo would otherwise turn into a confusing run.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |problem: String| ScenarioError::Invalid {
            name: self.name.clone(),
            problem,
        };
        if self.name.is_empty() {
            return Err(bad("needs a name".into()));
        }
        if self.clusters == 0 || self.applications == 0 {
            return Err(bad("needs at least one cluster and one application".into()));
        }
        if self.objects_per_app == 0 {
            return Err(bad("objectsPerApp must be at least 1".into()));
        }
        if self.controllers == 0 || self.repo_servers == 0 {
            return Err(bad(
                "needs at least one controller and one repo-server".into()
            ));
        }
        if self.redis_masters != 0 && self.redis_masters < 3 {
            return Err(bad(format!(
                "redisMasters is {}: a Redis Cluster needs at least 3 masters (or 0 for none)",
                self.redis_masters
            )));
        }
        if self.git.layout == Layout::Repos
            && (self.git.repos == 0 || self.git.repos > self.applications)
        {
            return Err(bad(format!(
                "git.repos must be between 1 and applications ({})",
                self.applications
            )));
        }
        if self.application_sets > 0
            && (self.git.layout != Layout::Monorepo || self.application_sets > self.applications)
        {
            return Err(bad(
                "applicationSets needs the monorepo layout and at most one set per application"
                    .into(),
            ));
        }
        if let Err(e) = crate::kubesim::LatencyProfile::from_arg(&self.latency_profile) {
            return Err(bad(format!("latencyProfile: {e}")));
        }
        if self.changes.apps_per_commit > self.applications {
            return Err(bad("changes.appsPerCommit exceeds applications".into()));
        }
        let mut running = self.controllers;
        for f in &self.faults {
            self.check_fault(f, &mut running).map_err(&bad)?;
        }
        if self.chaos.is_some() && self.soak.is_some() {
            return Err(bad("chaos and soak are separate scenarios".into()));
        }
        if (self.chaos.is_some() || self.soak.is_some()) && self.application_sets > 0 {
            return Err(bad(
                "chaos and soak work on Applications the harness creates (applicationSets: 0)"
                    .into(),
            ));
        }
        if let Some(c) = &self.chaos {
            if c.faults.is_empty() || c.timeout_seconds == 0 {
                return Err(bad(
                    "chaos needs at least one fault and a timeoutSeconds".into()
                ));
            }
            for cf in &c.faults {
                if !(0.0..1.0).contains(&cf.at_fraction) {
                    return Err(bad(format!(
                        "chaos fault {:?}: atFraction must be at least 0 and below 1",
                        cf.fault
                    )));
                }
                self.check_fault(&cf.fault, &mut running).map_err(&bad)?;
            }
        }
        if let Some(k) = &self.soak {
            self.check_soak(k).map_err(&bad)?;
        }
        Ok(())
    }

    /// Whether `f` can be injected into a fleet of `running` controllers (updated for the next).
    fn check_fault(&self, f: &Fault, running: &mut usize) -> Result<(), String> {
        match f {
            Fault::KillController { replica } | Fault::StopController { replica } => {
                if *replica >= *running || *running < 2 {
                    return Err(format!(
                        "{f:?}: needs a replica index below {running} and a survivor"
                    ));
                }
                *running -= 1;
            }
            Fault::AddController => *running += 1,
            Fault::KillRepoServer { replica } => {
                if *replica >= self.repo_servers || self.repo_servers < 2 {
                    return Err(format!(
                        "{f:?}: needs a repo-server index below {} and a survivor",
                        self.repo_servers
                    ));
                }
            }
            Fault::KillRedisNode { node } => {
                if *node >= self.redis_masters {
                    return Err(format!("{f:?}: only {} Redis nodes", self.redis_masters));
                }
            }
            Fault::CutWatches { cluster } => {
                if *cluster == 0 || *cluster > self.clusters {
                    return Err(format!(
                        "{f:?}: clusters are numbered 1 to {}",
                        self.clusters
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_soak(&self, k: &Soak) -> Result<(), String> {
        let rates = [
            k.sample_seconds,
            k.commit_every_seconds,
            k.churn_every_seconds,
            k.restart_every_seconds,
        ];
        if k.duration_seconds == 0 || k.sample_seconds <= 0.0 || k.window_seconds == 0 {
            return Err("soak needs durationSeconds, sampleSeconds and windowSeconds".into());
        }
        if rates.iter().any(|r| !r.is_finite() || *r < 0.0) {
            return Err("soak intervals must be finite and not negative".into());
        }
        if k.warmup_seconds + 2 * k.window_seconds > k.duration_seconds {
            return Err(format!(
                "soak: warmupSeconds + 2 × windowSeconds ({} s) must fit in durationSeconds ({} s): the baseline window must end before the final one starts",
                k.warmup_seconds + 2 * k.window_seconds,
                k.duration_seconds
            ));
        }
        if k.churn_every_seconds > 0.0 && (k.churn_apps == 0 || k.churn_live_apps < k.churn_apps) {
            return Err("soak churn needs churnApps ≥ 1 and churnLiveApps ≥ churnApps".into());
        }
        if k.restart_every_seconds > 0.0 && self.controllers < 2 {
            return Err("soak restarts need at least 2 controllers (a survivor)".into());
        }
        if !k.max_memory_growth_percent.is_finite()
            || k.max_memory_growth_percent < 0.0
            || k.max_cpu_growth_percent
                .is_some_and(|c| !c.is_finite() || c < 0.0)
        {
            return Err("soak growth limits must be finite percentages".into());
        }
        if k.churn_timeout_seconds == 0 {
            return Err("soak needs a churnTimeoutSeconds".into());
        }
        Ok(())
    }

    /// Repositories the workload uses.
    pub fn repo_count(&self) -> usize {
        match self.git.layout {
            Layout::Monorepo => 1,
            Layout::Repos => self.git.repos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_parse_and_validate() {
        let dir = crate::fleet::process::package_dir().join("scenarios");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("scenarios dir") {
            let path = entry.expect("entry").path();
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                path.file_stem().and_then(|s| s.to_str()),
                Some(s.name.as_str()),
                "file name matches scenario name"
            );
            names.push(s.name);
        }
        names.sort();
        assert_eq!(
            names,
            [
                "100k",
                "100k-instant",
                "10k",
                "10k-realistic",
                "1k",
                "1k-orphans",
                "50k",
                "50k-realistic",
                "appsets",
                "chaos",
                "chaos-smoke",
                "failover",
                "rebalance",
                "smoke",
                "soak",
                "soak-smoke"
            ]
        );
        // The chaos and soak scenarios are what issue 19 asks for.
        let load = |n: &str| Scenario::load(&dir.join(format!("{n}.yaml"))).expect("loads");
        let chaos = load("chaos");
        assert_eq!(
            (chaos.applications, chaos.clusters, chaos.controllers),
            (50_000, 500, 5)
        );
        assert_eq!((chaos.repo_servers, chaos.redis_masters), (2, 3));
        let kinds: Vec<String> = chaos
            .chaos
            .iter()
            .flat_map(|c| &c.faults)
            .map(|f| format!("{:?}", f.fault))
            .collect();
        for k in [
            "KillController",
            "KillRepoServer",
            "KillRedisNode",
            "CutWatches",
        ] {
            assert!(kinds.iter().any(|f| f.starts_with(k)), "{k} in {kinds:?}");
        }
        let soak = load("soak");
        assert_eq!(soak.soak.as_ref().map(|k| k.duration_seconds), Some(3600));
        let smoke = load("soak-smoke");
        assert!(
            smoke
                .soak
                .as_ref()
                .is_some_and(|k| k.duration_seconds <= 300)
        );
    }

    #[test]
    fn chaos_faults_are_checked_like_the_others() {
        let ok = Scenario::parse(
            "name: x\ncontrollers: 2\nrepoServers: 2\nredisMasters: 3\nchaos:\n  faults:\n  - {atFraction: 0.1, fault: {kind: killController, replica: 1}}\n  - {atFraction: 0.2, fault: {kind: cutWatches, cluster: 4}}\n",
            "t",
        )
        .expect("valid");
        let c = ok.chaos.expect("chaos");
        assert_eq!(c.faults.len(), 2);
        assert_eq!(c.timeout_seconds, 900, "defaults fill the rest");
        for (yaml, says) in [
            ("chaos: {faults: []}", "at least one fault"),
            (
                "chaos: {faults: [{atFraction: 1.0, fault: {kind: addController}}]}",
                "atFraction",
            ),
            (
                "chaos: {faults: [{atFraction: 0.1, fault: {kind: cutWatches, cluster: 5}}]}",
                "numbered 1 to 4",
            ),
            (
                "controllers: 1\nchaos: {faults: [{atFraction: 0.1, fault: {kind: killController, replica: 0}}]}",
                "survivor",
            ),
            (
                "chaos: {faults: [{atFraction: 0.1, fault: {kind: addController}}], timeout: 5}",
                "timeout",
            ),
            (
                "chaos: {faults: [{atFraction: 0.1, fault: {kind: addController}}]}\nsoak: {}",
                "separate scenarios",
            ),
        ] {
            let e = Scenario::parse(&format!("name: x\n{yaml}\n"), "t").expect_err(yaml);
            assert!(e.to_string().contains(says), "{yaml}: {e}");
        }
    }

    #[test]
    fn soak_windows_and_churn_are_checked() {
        let s = Scenario::parse(
            "name: x\ncontrollers: 2\nsoak: {durationSeconds: 100, warmupSeconds: 10, windowSeconds: 40, churnEverySeconds: 10}\n",
            "t",
        )
        .expect("valid");
        let k = s.soak.expect("soak");
        assert_eq!(k.churn_steps(), 11, "one at the start, then every 10 s");
        assert_eq!(k.churn_total(), 22);
        assert_eq!(k.max_memory_growth_percent, 15.0);
        for (yaml, says) in [
            (
                "soak: {durationSeconds: 100, warmupSeconds: 30, windowSeconds: 40}",
                "must fit",
            ),
            (
                "soak: {durationSeconds: 100, warmupSeconds: 0, windowSeconds: 10, churnApps: 3, churnLiveApps: 2}",
                "churnLiveApps",
            ),
            (
                "controllers: 1\nsoak: {durationSeconds: 100, warmupSeconds: 0, windowSeconds: 10}",
                "restarts need",
            ),
            (
                "soak: {durationSeconds: 100, warmupSeconds: 0, windowSeconds: 10, sampleSeconds: 0}",
                "sampleSeconds",
            ),
            (
                "soak: {durationSeconds: 100, warmupSeconds: 0, windowSeconds: 10, commitEverySeconds: -1}",
                "not negative",
            ),
        ] {
            let fleet = if yaml.contains("controllers") {
                ""
            } else {
                "controllers: 2\n"
            };
            let e = Scenario::parse(&format!("name: x\n{fleet}{yaml}\n"), "t").expect_err(yaml);
            assert!(e.to_string().contains(says), "{yaml}: {e}");
        }
        let off = Scenario::parse(
            "name: x\ncontrollers: 1\nsoak: {durationSeconds: 100, warmupSeconds: 0, windowSeconds: 10, restartEverySeconds: 0, churnEverySeconds: 0}\n",
            "t",
        )
        .expect("switched-off churn needs nothing");
        assert_eq!(off.soak.map(|k| k.churn_total()), Some(0));
    }

    #[test]
    fn latency_profile_defaults_to_none_and_is_checked() {
        let s = Scenario::parse("name: x\n", "t").expect("valid");
        assert_eq!(s.latency_profile, "none");
        let s = Scenario::parse("name: x\nlatencyProfile: realistic\n", "t").expect("valid");
        assert_eq!(s.latency_profile, "realistic");
        let e = Scenario::parse("name: x\nlatencyProfile: /no/such/profile.yaml\n", "t")
            .expect_err("refused");
        assert!(e.to_string().contains("latencyProfile"), "{e}");
    }

    #[test]
    fn unknown_fields_and_impossible_fleets_are_refused() {
        let e = Scenario::parse("name: x\napplicatons: 5\n", "t").expect_err("refused");
        assert!(e.to_string().contains("applicatons"), "{e}");
        let e = Scenario::parse("name: x\nredisMasters: 2\n", "t").expect_err("refused");
        assert!(e.to_string().contains("at least 3 masters"), "{e}");
        let e = Scenario::parse(
            "name: x\ncontrollers: 1\nfaults: [{kind: killController, replica: 0}]\n",
            "t",
        )
        .expect_err("refused");
        assert!(e.to_string().contains("survivor"), "{e}");
        let ok = Scenario::parse(
            "name: x\ncontrollers: 2\nfaults: [{kind: killController, replica: 1}, {kind: addController}]\n",
            "t",
        )
        .expect("valid");
        assert_eq!(ok.faults.len(), 2);
        assert_eq!(ok.applications, 40, "defaults fill the rest");
    }
}
