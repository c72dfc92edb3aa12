//! `/metrics` of running processes, parsed as Prometheus text: applications are counted by
//! status, reconcile histograms grow, owned clusters sum to the total across replicas, and the
//! Argo CD-shaped series (app info, syncs, k8s requests, git, Redis) move as work happens.
//! With `--argocd-metrics also|instead` both binaries export Argo CD's own names: every entry
//! `tests/fixtures/argocd-metrics.yaml` marks exported is checked (name, type, exact label
//! names, buckets) against the scrape, their values move with syncs and fetches, and `instead`
//! drops the Flotilla series they replace while `off` exports no `argocd_` series at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::*;
use prometheus_parse::{Scrape, Value};
use serde::Deserialize;

const CLUSTERS: usize = 3;
const APPS: usize = 6;

fn parse(text: &str) -> Result<Scrape> {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).context("Prometheus text")
}

fn scalar(v: &Value) -> f64 {
    match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => *x,
        Value::Histogram(_) | Value::Summary(_) => 0.0,
    }
}

/// Sum over `scrapes` of the samples named `name` carrying every label in `labels`.
fn sum(scrapes: &[Scrape], name: &str, labels: &[(&str, &str)]) -> f64 {
    scrapes
        .iter()
        .flat_map(|s| s.samples.iter())
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| scalar(&s.value))
        .sum()
}

fn count(scrapes: &[Scrape], name: &str) -> usize {
    scrapes
        .iter()
        .flat_map(|s| s.samples.iter())
        .filter(|s| s.metric == name)
        .count()
}

async fn controllers(fleet: &Fleet) -> Result<Vec<Scrape>> {
    fleet
        .controller_metric_texts()
        .await?
        .iter()
        .map(|t| parse(t))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_work_happens() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        clusters: CLUSTERS,
        controllers: 2,
        redis_masters: 3,
        ..Default::default()
    })
    .await?;
    fleet
        .git
        .commit_files(&[("web/cm.yaml", CONFIG_MAP)], "web")?;
    for i in 0..APPS {
        let cluster = format!("cluster-{:03}", i % CLUSTERS + 1);
        fleet
            .apply(&auto_synced_app(
                &fleet,
                &format!("app-{i}"),
                "web",
                &cluster,
                &[],
            ))
            .await?;
    }
    for i in 0..APPS {
        wait_synced_healthy(&fleet, &format!("app-{i}")).await?;
    }
    // Statuses are reported as they are written; give the last writes a moment to count.
    let before = flotilla_tests::eventually("apps counted", Duration::from_secs(20), || async {
        let s = controllers(&fleet).await?;
        let healthy = [("sync_status", "Synced"), ("health_status", "Healthy")];
        // Every replica knows every cluster (ours plus the in-cluster destination).
        let total = sum(&s[..1], "flotilla_clusters", &[]);
        let got = (
            sum(&s, "flotilla_apps", &healthy),
            sum(&s, "flotilla_app_info", &healthy),
            sum(&s, "flotilla_owned_clusters", &[]),
        );
        ensure!(
            total == (CLUSTERS + 1) as f64 && got == (APPS as f64, APPS as f64, total),
            "apps, app_info, owned clusters: {got:?} of {total} clusters"
        );
        Ok(Some(s))
    })
    .await?;
    // One app_info series per app, each on exactly one replica, with Argo CD's labels.
    ensure!(count(&before, "flotilla_app_info") == APPS);
    let info = before
        .iter()
        .flat_map(|s| s.samples.iter())
        .find(|s| s.metric == "flotilla_app_info" && s.labels.get("name") == Some("app-0"))
        .context("app-0's info")?;
    ensure!(info.labels.get("project") == Some("default"));
    ensure!(info.labels.get("dest_server") == Some("cluster-001"));
    ensure!(info.labels.get("dest_namespace") == Some("app-0"));
    ensure!(
        sum(
            &before,
            "flotilla_app_sync_total",
            &[("phase", "Succeeded")]
        ) >= APPS as f64,
        "syncs counted per app"
    );
    ensure!(
        sum(
            &before,
            "flotilla_app_k8s_request_total",
            &[("verb", "Patch")]
        ) >= APPS as f64,
        "server-side applies counted as k8s requests"
    );
    ensure!(
        sum(
            &before,
            "flotilla_app_k8s_request_total",
            &[("verb", "Watch")]
        ) > 0.0
    );
    ensure!(
        sum(
            &before,
            "flotilla_redis_request_total",
            &[("initiator", "controller")]
        ) > 0.0,
        "Redis requests counted"
    );
    ensure!(count(&before, "flotilla_queue_oldest_seconds") == 2);
    ensure!(count(&before, "flotilla_shard_members") == 2);

    // A refresh of every app: each replica's reconcile histogram count grows.
    let reconciles = sum(&before, "flotilla_app_reconcile_count", &[]);
    ensure!(reconciles >= APPS as f64, "{reconciles} reconciles");
    for i in 0..APPS {
        refresh(&fleet, &format!("app-{i}")).await?;
    }
    flotilla_tests::eventually("reconciles counted", Duration::from_secs(20), || async {
        let s = controllers(&fleet).await?;
        Ok(
            (sum(&s, "flotilla_app_reconcile_count", &[]) >= reconciles + APPS as f64)
                .then_some(()),
        )
    })
    .await?;

    // The repo-server: git requests by repository, nothing pending once idle, Redis writes.
    let repo = parse(&fleet.repo_metrics().await?)?;
    let repo = [repo];
    let url = fleet.git.url();
    ensure!(
        sum(
            &repo,
            "flotilla_git_request_total",
            &[("repo", url.as_str()), ("request_type", "fetch")]
        ) >= 1.0,
        "git fetches counted for {url}"
    );
    ensure!(sum(&repo, "flotilla_repo_pending_request_total", &[]) == 0.0);
    ensure!(count(&repo, "flotilla_repo_pending_request_total") >= 1);
    ensure!(
        sum(
            &repo,
            "flotilla_redis_request_total",
            &[("initiator", "repo-server")]
        ) > 0.0
    );

    // Off (the default): none of Argo CD's names.
    for text in fleet
        .controller_metric_texts()
        .await?
        .iter()
        .chain(fleet.repo_metric_texts().await?.iter())
    {
        let expo = Exposition::parse(text);
        let argocd: BTreeSet<&String> = expo
            .types
            .keys()
            .filter(|n| n.starts_with("argocd_"))
            .collect();
        ensure!(argocd.is_empty(), "off exports {argocd:?}");
    }
    Ok(())
}

/// One entry of `tests/fixtures/argocd-metrics.yaml`.
#[derive(Debug, Deserialize)]
struct Documented {
    name: String,
    component: String,
    #[serde(rename = "type")]
    kind: String,
    labels: Vec<String>,
    #[serde(default)]
    buckets: Vec<f64>,
    exported: bool,
    #[serde(default)]
    why: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Fixture {
    metrics: Vec<Documented>,
}

fn fixture() -> Result<Vec<Documented>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/argocd-metrics.yaml");
    let f: Fixture = serde_yaml::from_str(&std::fs::read_to_string(path)?)?;
    for m in &f.metrics {
        ensure!(
            m.exported || m.why.as_deref().is_some_and(|w| !w.is_empty()),
            "{} is not exported and says not why",
            m.name
        );
        ensure!(
            ["controller", "repo-server"].contains(&m.component.as_str())
                && ["gauge", "counter", "histogram"].contains(&m.kind.as_str()),
            "{m:?}"
        );
    }
    Ok(f.metrics)
}

/// One scrape as written: each family's `# TYPE`, and every sample with its labels.
struct Exposition {
    types: HashMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut types = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    types.insert(name.to_string(), kind.trim().to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = line[..name_end].to_string();
            let mut labels = BTreeMap::new();
            let mut rest = &line[name_end..];
            if let Some(body) = rest.strip_prefix('{') {
                let mut chars = body.char_indices().peekable();
                let mut key = String::new();
                let mut end = body.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '}' => {
                            end = i + 1;
                            break;
                        }
                        ',' => {}
                        '=' => {
                            let mut value = String::new();
                            chars.next(); // opening quote
                            while let Some((_, c)) = chars.next() {
                                match c {
                                    '\\' => {
                                        if let Some((_, e)) = chars.next() {
                                            value.push(match e {
                                                'n' => '\n',
                                                other => other,
                                            });
                                        }
                                    }
                                    '"' => break,
                                    other => value.push(other),
                                }
                            }
                            labels.insert(std::mem::take(&mut key), value);
                        }
                        other => key.push(other),
                    }
                }
                rest = &body[end..];
            }
            let value = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            samples.push((name, labels, value));
        }
        Self { types, samples }
    }

    /// The samples of a family (a counter's `_total`, a histogram's `_bucket`/`_sum`/`_count`).
    fn family(&self, family: &str) -> Vec<&(String, BTreeMap<String, String>, f64)> {
        let names: Vec<String> = match self.types.get(family).map(String::as_str) {
            Some("counter") => vec![format!("{family}_total")],
            Some("histogram") => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{family}{s}"))
                .collect(),
            _ => vec![family.to_string()],
        };
        self.samples
            .iter()
            .filter(|(n, _, _)| names.contains(n))
            .collect()
    }

    /// Sum of the samples `name` carrying every label of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    fn labels_of(&self, name: &str, with: &[(&str, &str)]) -> Option<&BTreeMap<String, String>> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, l, _)| l)
    }
}

/// The family name a documented sample name is exposed under (`# TYPE` of a counter has no
/// `_total`).
fn family_name(m: &Documented) -> &str {
    if m.kind == "counter" {
        m.name.strip_suffix("_total").unwrap_or(&m.name)
    } else {
        &m.name
    }
}

/// Every documented metric of `component` marked exported is in `expo` with Argo CD's type,
/// exactly its label names and (histograms) its buckets; and no `argocd_` family is exported
/// that the fixture does not list as exported.
fn check_documented(expo: &Exposition, documented: &[Documented], component: &str) -> Result<()> {
    let ours: Vec<&Documented> = documented
        .iter()
        .filter(|m| m.component == component)
        .collect();
    for m in ours.iter().filter(|m| m.exported) {
        let family = family_name(m);
        let kind = expo
            .types
            .get(family)
            .with_context(|| format!("{component}: {} not exported", m.name))?;
        ensure!(
            *kind == m.kind,
            "{}: type {kind}, Argo CD's is {}",
            m.name,
            m.kind
        );
        let samples = expo.family(family);
        ensure!(!samples.is_empty(), "{component}: {} has no sample", m.name);
        let want: BTreeSet<&str> = m.labels.iter().map(String::as_str).collect();
        for (name, labels, _) in &samples {
            let got: BTreeSet<&str> = labels
                .keys()
                .map(String::as_str)
                .filter(|k| !(name.ends_with("_bucket") && *k == "le"))
                .collect();
            ensure!(
                got == want,
                "{name}: labels {got:?}, Argo CD's are {want:?}"
            );
        }
        if m.kind == "histogram" {
            let les: BTreeSet<String> = samples
                .iter()
                .filter(|(n, _, _)| n.ends_with("_bucket"))
                .filter_map(|(_, l, _)| l.get("le").cloned())
                .filter(|le| le != "+Inf")
                .collect();
            let got: Vec<f64> = les.iter().filter_map(|le| le.parse().ok()).collect();
            let mut got = got;
            got.sort_by(f64::total_cmp);
            ensure!(
                got == m.buckets,
                "{}: buckets {got:?}, Argo CD's are {:?}",
                m.name,
                m.buckets
            );
        }
    }
    for (family, _) in expo.types.iter().filter(|(n, _)| n.starts_with("argocd_")) {
        if !ours.iter().any(|m| m.exported && family_name(m) == family) {
            bail!("{component} exports {family}, which the fixture does not list as exported");
        }
    }
    Ok(())
}

/// The Flotilla series an Argo CD series replaces with `instead`.
const REPLACED_CONTROLLER: [&str; 10] = [
    "flotilla_app_info",
    "flotilla_app_sync",
    "flotilla_app_reconcile",
    "flotilla_app_orphaned_resources",
    "flotilla_app_k8s_request",
    "flotilla_cluster_watch_events",
    "flotilla_cluster_cache_objects",
    "flotilla_cluster_cache_watched_kinds",
    "flotilla_cluster_unreachable",
    "flotilla_redis_request",
];
const REPLACED_REPO: [&str; 4] = [
    "flotilla_git_request",
    "flotilla_git_request_duration_seconds",
    "flotilla_repo_pending_request_total",
    "flotilla_redis_request",
];

/// A fleet with `--argocd-metrics=<mode>` on both binaries, one auto-synced app `web` in a
/// project that counts orphaned resources, and one app whose repository does not exist (its
/// fetches fail).
async fn argocd_fleet(mode: &str) -> Result<Fleet> {
    let flag = format!("--argocd-metrics={mode}");
    let fleet = Fleet::start(FleetConfig {
        clusters: 1,
        controllers: 1,
        redis_masters: 3,
        controller_args: vec![flag.clone()],
        repo_server_args: vec![flag],
        ..Default::default()
    })
    .await?;
    fleet
        .git
        .commit_files(&[("web/cm.yaml", CONFIG_MAP)], "web")?;
    fleet
        .apply(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {{name: watched, namespace: {NS}}}\nspec:\n  sourceRepos: ['*']\n  destinations: [{{server: '*', namespace: '*'}}]\n  clusterResourceWhitelist: [{{group: '*', kind: '*'}}]\n  orphanedResources: {{warn: false}}\n"
        ))
        .await?;
    fleet
        .apply(
            &auto_synced_app(&fleet, "web", "web", "cluster-001", &[])
                .replace("project: default", "project: watched"),
        )
        .await?;
    fleet
        .apply(
            &auto_synced_app(&fleet, "lost", "web", "cluster-001", &[])
                .replace(&fleet.git.url(), &format!("{}-missing", fleet.git.url())),
        )
        .await?;
    wait_synced_healthy(&fleet, "web").await?;
    Ok(fleet)
}

async fn scrape_both(fleet: &Fleet) -> Result<(Exposition, Exposition)> {
    Ok((
        Exposition::parse(&fleet.controller_metrics().await?),
        Exposition::parse(&fleet.repo_metrics().await?),
    ))
}

/// Wait until every exported documented series has samples (some need a scrape after the
/// cluster's version was read, an orphan count, a failed fetch), then check them.
async fn documented_and_scraped(fleet: &Fleet) -> Result<(Exposition, Exposition)> {
    let documented = fixture()?;
    flotilla_tests::eventually("Argo CD series", Duration::from_secs(30), || async {
        // The orphaned-resources count comes with a reconcile after the cluster's orphan
        // index has listed once.
        refresh(fleet, "web").await?;
        let (c, r) = scrape_both(fleet).await?;
        check_documented(&c, &documented, "controller")?;
        check_documented(&r, &documented, "repo-server")?;
        // Real values: the cluster's version was read.
        let info = c
            .labels_of("argocd_cluster_info", &[("name", "cluster-001")])
            .context("cluster-001's info")?;
        let version = &info["k8s_version"];
        ensure!(
            version.split('.').count() == 2 && !version.starts_with('v'),
            "k8s_version {version:?}"
        );
        Ok(Some((c, r)))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argocd_metrics_also_match_argo_cds_list_and_move() -> Result<()> {
    let fleet = argocd_fleet("also").await?;
    let (c, r) = documented_and_scraped(&fleet).await?;
    let url = fleet.git.url();
    let server = c
        .labels_of("argocd_cluster_info", &[("name", "cluster-001")])
        .context("cluster-001")?["server"]
        .clone();

    // argocd_app_info: Argo CD's labels with real values, next to flotilla_app_info.
    let info = c
        .labels_of("argocd_app_info", &[("name", "web")])
        .context("web's argocd_app_info")?;
    let want = [
        ("namespace", NS),
        ("project", "watched"),
        ("autosync_enabled", "true"),
        (
            "repo",
            &flotilla_controller::metrics_argocd::normalize_git_url(&url),
        ),
        ("dest_server", &server),
        ("dest_namespace", "web"),
        ("sync_status", "Synced"),
        ("health_status", "Healthy"),
        ("operation", ""),
    ];
    for (k, v) in want {
        ensure!(
            info[k] == v,
            "argocd_app_info {k}={:?}, want {v:?}",
            info[k]
        );
    }
    ensure!(c.sum("flotilla_app_info", &[("name", "web")]) == 1.0);
    ensure!(c.sum("argocd_cluster_connection_status", &[("server", &server)]) == 1.0);
    ensure!(
        c.sum(
            "argocd_cluster_api_resource_objects",
            &[("server", &server)]
        ) >= 1.0
    );
    ensure!(
        c.sum(
            "argocd_app_k8s_request_total",
            &[("server", &server), ("verb", "Patch"), ("namespace", "")]
        ) >= 1.0,
        "server-side applies counted as Argo CD's k8s requests"
    );
    ensure!(
        c.sum(
            "argocd_redis_request_total",
            &[
                ("initiator", "argocd-application-controller"),
                ("failed", "false")
            ]
        ) > 0.0
    );
    ensure!(
        r.sum(
            "argocd_redis_request_total",
            &[("initiator", "argocd-repo-server"), ("failed", "false")]
        ) > 0.0
    );
    let lost = format!("{url}-missing");
    ensure!(
        r.sum(
            "argocd_git_fetch_fail_total",
            &[("repo", &lost), ("revision", "")]
        ) >= 1.0,
        "the missing repository's failed fetch counted"
    );
    ensure!(
        c.labels_of(
            "argocd_app_orphaned_resources_count",
            &[("name", "web"), ("project", "watched")]
        )
        .is_some(),
        "web's orphaned resources counted under its project"
    );

    // A new commit synced: the sync and the fetch count under both names, by the same events.
    let sync = [
        ("name", "web"),
        ("phase", "Succeeded"),
        ("dry_run", "false"),
    ];
    let syncs = c.sum("argocd_app_sync_total", &sync);
    ensure!(syncs >= 1.0, "the first sync counted");
    ensure!(
        syncs
            == c.sum(
                "flotilla_app_sync_total",
                &[("name", "web"), ("phase", "Succeeded")]
            )
    );
    let git = [("repo", url.as_str()), ("request_type", "fetch")];
    let fetches = r.sum("argocd_git_request_total", &git);
    ensure!(fetches >= 1.0 && fetches == r.sum("flotilla_git_request_total", &git));
    fleet.git.commit_files(
        &[("web/cm.yaml", &config_map("settings", "green"))],
        "green",
    )?;
    refresh(&fleet, "web").await?;
    flotilla_tests::eventually(
        "a sync and a fetch counted",
        Duration::from_secs(30),
        || async {
            let (c, r) = scrape_both(&fleet).await?;
            Ok((c.sum("argocd_app_sync_total", &sync) > syncs
                && r.sum("argocd_git_request_total", &git) > fetches
                && r.sum("argocd_git_request_duration_seconds_count", &git) > fetches
                && c.labels_of(
                    "argocd_app_sync_duration_seconds_total",
                    &[("name", "web"), ("dest_server", &server)],
                )
                .is_some()
                && c.sum(
                    "argocd_app_reconcile_count",
                    &[("namespace", NS), ("dest_server", &server)],
                ) >= 2.0)
                .then_some(()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argocd_metrics_instead_replace_flotillas_counterparts() -> Result<()> {
    let fleet = argocd_fleet("instead").await?;
    let (c, r) = documented_and_scraped(&fleet).await?;
    for name in REPLACED_CONTROLLER {
        ensure!(!c.types.contains_key(name), "instead still exports {name}");
    }
    for name in REPLACED_REPO {
        ensure!(!r.types.contains_key(name), "instead still exports {name}");
    }
    ensure!(
        !c.samples
            .iter()
            .chain(r.samples.iter())
            .any(|(n, _, _)| n.starts_with("flotilla_app_info")),
        "no flotilla_app_info"
    );
    // Flotilla-only series stay.
    for name in [
        "flotilla_queue_oldest_seconds",
        "flotilla_reconciles",
        "flotilla_apps",
    ] {
        ensure!(
            c.types.contains_key(name),
            "instead dropped Flotilla-only {name}"
        );
    }
    ensure!(r.types.contains_key("flotilla_repo_renders_waiting"));
    ensure!(
        c.sum(
            "argocd_app_info",
            &[("name", "web"), ("sync_status", "Synced")]
        ) == 1.0
    );
    ensure!(
        c.sum(
            "argocd_app_sync_total",
            &[("name", "web"), ("phase", "Succeeded")]
        ) >= 1.0
    );
    ensure!(r.sum("argocd_git_request_total", &[("repo", &fleet.git.url())]) >= 1.0);
    Ok(())
}
