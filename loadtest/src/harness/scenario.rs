//! Load-test scenarios: the YAML files in `loadtest/scenarios/` (fleet size, workload, Git
//! layout, changes, faults), parsed strictly and checked before anything starts.

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
            match f {
                Fault::KillController { replica } | Fault::StopController { replica } => {
                    if *replica >= running || running < 2 {
                        return Err(bad(format!(
                            "{f:?}: needs a replica index below {running} and a survivor"
                        )));
                    }
                    running -= 1;
                }
                Fault::AddController => running += 1,
                Fault::KillRepoServer { replica } => {
                    if *replica >= self.repo_servers || self.repo_servers < 2 {
                        return Err(bad(format!(
                            "{f:?}: needs a repo-server index below {} and a survivor",
                            self.repo_servers
                        )));
                    }
                }
                Fault::KillRedisNode { node } => {
                    if *node >= self.redis_masters {
                        return Err(bad(format!(
                            "{f:?}: only {} Redis nodes",
                            self.redis_masters
                        )));
                    }
                }
            }
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
                "10k",
                "10k-realistic",
                "1k",
                "1k-orphans",
                "50k",
                "appsets",
                "failover",
                "rebalance",
                "smoke"
            ]
        );
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
