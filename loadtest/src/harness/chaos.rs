//! The chaos phase: a commit to every app rolls out while faults hit the fleet; then every app
//! must be at it, no cluster written by two replicas at once, and nothing pruned.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use super::inventory::{self, PruneCheck};
use super::phases_report::{ChaosFaultResult, ChaosReport};
use super::report::Percentiles;
use super::scenario::{Chaos, ChaosFault, Fault};
use super::simadmin::{self, ClusterStats};
use super::{Ctx, ownership, post_push, workload, writers};

/// Whether a cluster's watches were opened again after a cut: new ones opened since `before`
/// and at least as many open as then.
pub fn watching_again(before: &ClusterStats, now: &ClusterStats) -> bool {
    now.watches_opened > before.watches_opened && now.watches_open >= before.watches_open
}

/// Target cluster `k` (1-based) if it has a watch open, else the next one that has (its owner
/// may just have been killed): (name, its statistics). A cut of no watch would test nothing.
pub(super) async fn watched_cluster(
    admin: &str,
    k: usize,
    clusters: usize,
) -> Result<(String, ClusterStats)> {
    for j in 0..clusters {
        let name = workload::cluster_name((k - 1 + j) % clusters + 1);
        let st = simadmin::cluster_stats(admin, &name).await?;
        if st.watches_open > 0 {
            return Ok((name, st));
        }
    }
    anyhow::bail!("no target cluster has a watch open")
}

/// A GitHub push whose commit carries no file lists (as GitHub sends when they are too long):
/// receivers must treat every path as changed.
fn push_unlisted(url: &str, commit: &str) -> Vec<u8> {
    json!({
        "ref": "refs/heads/main",
        "after": commit,
        "repository": {"html_url": url, "clone_url": url, "default_branch": "main"},
        "commits": [{"id": commit, "message": "chaos: every application"}],
    })
    .to_string()
    .into_bytes()
}

/// The first replica no fault of `faults` will take away (indices are among the running
/// replicas at each fault, as the faults are injected in order).
fn survivor(mut running: Vec<String>, faults: &[ChaosFault]) -> Option<String> {
    let mut gone = BTreeSet::new();
    let mut added = 0;
    for f in faults {
        match f.fault {
            Fault::KillController { replica } | Fault::StopController { replica }
                if replica < running.len() =>
            {
                gone.insert(running.remove(replica));
            }
            Fault::AddController => {
                added += 1;
                running.push(format!("(added {added})"));
            }
            _ => {}
        }
    }
    running
        .into_iter()
        .find(|r| !r.starts_with('(') && !gone.contains(r))
}

/// What has to happen, beyond the applications, for a fault to count as repaired.
enum Restore {
    Nothing,
    /// Every cluster the victim owned is owned by another replica.
    Owned {
        victim: String,
        clusters: BTreeSet<String>,
        polled: Option<Instant>,
    },
    /// The cluster is watched again.
    Watches {
        cluster: String,
        before: ClusterStats,
    },
}

/// One injected fault while the rollout runs.
struct Tracker {
    at: Instant,
    affected: Vec<usize>,
    restore: Restore,
    result: ChaosFaultResult,
}

impl Tracker {
    fn settled(&self) -> bool {
        self.result.recovered_seconds.is_some() && matches!(self.restore, Restore::Nothing)
    }
}

/// The writers' check's failures, for the report's problems.
pub(super) fn writer_problems(w: &writers::WriterCheck) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(first) = w.violations.first() {
        v.push(format!(
            "{} double-writer violation(s), e.g. {first}",
            w.violation_count
        ));
    }
    if !w.incomplete.is_empty() {
        v.push(format!(
            "the writers' summary is incomplete (the check is unsound there): {}",
            w.incomplete.join("; ")
        ));
    }
    v
}

/// When each application was first Synced and Healthy at its commit (`commits` by repository).
fn reached(cx: &Ctx<'_>, commits: &BTreeMap<usize, String>) -> Vec<Option<Instant>> {
    let s = cx.s;
    let mut out = vec![None; s.applications];
    let o = cx.obs.lock();
    for (name, a) in &o.apps {
        let Some(i) = workload::app_index(name).filter(|i| *i < s.applications) else {
            continue;
        };
        if let Some(c) = commits.get(&workload::repo_of(s, i)) {
            out[i] = a.reached_healthy.get(c).copied();
        }
    }
    out
}

/// Inject `f`; `reached` is the rollout so far.
async fn inject(
    cx: &mut Ctx<'_>,
    f: &Fault,
    admin: &str,
    reached: &[Option<Instant>],
    pushed: Instant,
) -> Result<Tracker> {
    let s = cx.s;
    let pending = |on: Option<&BTreeSet<String>>| -> Vec<usize> {
        (0..s.applications)
            .filter(|i| reached[*i].is_none())
            .filter(|i| on.is_none_or(|c| c.contains(&workload::cluster_of(s, *i))))
            .collect()
    };
    let mut restored = String::new();
    let mut restored_seconds = None;
    let (victim, affected, restore) = match f {
        Fault::KillController { replica } | Fault::StopController { replica } => {
            let id = cx
                .fleet
                .controllers
                .get(*replica)
                .context("no such controller replica")?
                .identity
                .clone();
            let clusters: BTreeSet<String> = ownership(cx.fleet, cx.servers)
                .await?
                .into_iter()
                .filter(|(_, o)| *o == id)
                .map(|(c, _)| c)
                .collect();
            cx.remove_controller(&id, matches!(f, Fault::KillController { .. }))?;
            restored = format!("its {} clusters owned by others", clusters.len());
            let affected = pending(Some(&clusters));
            (
                id.clone(),
                affected,
                Restore::Owned {
                    victim: id,
                    clusters,
                    polled: None,
                },
            )
        }
        Fault::AddController => {
            let t = Instant::now();
            let id = cx.add_controller().await?;
            restored = "ready".into();
            restored_seconds = Some(t.elapsed().as_secs_f64());
            (id, pending(None), Restore::Nothing)
        }
        Fault::KillRepoServer { replica } => (
            super::kill_repo_server(cx.fleet, *replica)?,
            pending(None),
            Restore::Nothing,
        ),
        Fault::KillRedisNode { node } => (
            super::kill_redis_node(cx.fleet, *node)?,
            pending(None),
            Restore::Nothing,
        ),
        Fault::CutWatches { cluster } => {
            let (name, before) = watched_cluster(admin, *cluster, s.clusters).await?;
            simadmin::cut_watches(admin, &name).await?;
            restored = format!("{} watches open again", before.watches_open);
            let on = BTreeSet::from([name.clone()]);
            (
                name.clone(),
                pending(Some(&on)),
                Restore::Watches {
                    cluster: name,
                    before,
                },
            )
        }
    };
    let at = Instant::now();
    Ok(Tracker {
        at,
        result: ChaosFaultResult {
            fault: format!("{f:?} → {victim}"),
            at_seconds: at.duration_since(pushed).as_secs_f64(),
            apps_at_commit: reached.iter().filter(|r| r.is_some()).count(),
            affected_apps: affected.len(),
            restored,
            restored_seconds,
            ..Default::default()
        },
        affected,
        restore,
    })
}

/// Move `t` forward: progress after it, its affected applications, its restoration.
async fn update(cx: &Ctx<'_>, t: &mut Tracker, admin: &str, reached: &[Option<Instant>]) {
    let since = |x: Instant| x.duration_since(t.at).as_secs_f64();
    if t.result.progress_resumed_seconds.is_none() {
        t.result.progress_resumed_seconds = reached
            .iter()
            .flatten()
            .filter(|r| **r > t.at)
            .min()
            .map(|r| since(*r));
    }
    if t.result.recovered_seconds.is_none() {
        let all: Option<Vec<Instant>> = t.affected.iter().map(|i| reached[*i]).collect();
        t.result.recovered_seconds = all.map(|v| v.into_iter().max().map_or(0.0, since));
    }
    let done = match &mut t.restore {
        Restore::Nothing => return,
        Restore::Owned {
            victim,
            clusters,
            polled,
        } => {
            if polled.is_some_and(|p| p.elapsed() < Duration::from_millis(500)) {
                return;
            }
            *polled = Some(Instant::now());
            let now = ownership(cx.fleet, cx.servers).await.unwrap_or_default();
            clusters
                .iter()
                .all(|c| now.get(c).is_some_and(|o| o != victim))
        }
        Restore::Watches { cluster, before } => simadmin::cluster_stats(admin, cluster)
            .await
            .is_ok_and(|now| watching_again(before, &now)),
    };
    if done {
        t.result.restored_seconds = Some(t.at.elapsed().as_secs_f64());
        t.restore = Restore::Nothing;
    }
}

/// Run the chaos phase `c` on the converged fleet.
pub(super) async fn run(cx: &mut Ctx<'_>, c: &Chaos) -> Result<ChaosReport> {
    let s = cx.s;
    let admin = cx.fleet.sim.admin().context("kubesim has no admin API")?;
    let targets: BTreeSet<String> = (1..=s.clusters).map(workload::cluster_name).collect();
    let mut out = ChaosReport {
        applications: s.applications,
        ..Default::default()
    };
    super::stable_ownership(cx.fleet, cx.servers, s.clusters, super::settle_time(s)).await?;
    let counts_before = simadmin::stats(&admin).await?;
    let receiver = survivor(cx.fleet.controller_ids(), &c.faults)
        .context("no replica survives the chaos faults to receive the webhook")?;
    let receiver = cx
        .fleet
        .controllers
        .iter()
        .find(|r| r.identity == receiver)
        .and_then(|r| r.webhook.clone())
        .context("the receiving controller serves no webhook")?;

    // One commit per repository changing every application in it.
    let mut by_repo: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..s.applications {
        by_repo.entry(workload::repo_of(s, i)).or_default().push(i);
    }
    let mut commits = BTreeMap::new();
    for v in &mut cx.wl.versions {
        *v += 1;
    }
    for (&j, apps) in &by_repo {
        let repo = cx.wl.repo(cx.fleet, j);
        for &i in apps {
            repo.write(&[(
                &format!("{}/manifests.yaml", workload::path_of(s, i)),
                &workload::manifests(s, i, cx.wl.versions[i]),
            )])?;
        }
        commits.insert(j, repo.commit("chaos: every application")?);
    }
    out.commit = commits.values().next().cloned().unwrap_or_default();
    let pushed = Instant::now();
    let mut hooks = Vec::new();
    for (&j, commit) in &commits {
        let body = push_unlisted(&cx.wl.repo(cx.fleet, j).url(), commit);
        let addr = receiver.clone();
        hooks.push(tokio::spawn(async move {
            post_push(&addr, &body).await?;
            anyhow::Ok(pushed.elapsed().as_secs_f64())
        }));
    }

    // The rollout, with the faults.
    let deadline = pushed + Duration::from_secs(c.timeout_seconds);
    let mut trackers: Vec<Tracker> = Vec::new();
    let mut last_sample: Option<Instant> = None;
    let reached_all = loop {
        let reached = reached(cx, &commits);
        let done = reached.iter().filter(|r| r.is_some()).count();
        if last_sample.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            out.rollout.push((pushed.elapsed().as_secs_f64(), done));
            last_sample = Some(Instant::now());
        }
        while let Some(f) = c.faults.get(trackers.len())
            && done as f64 >= f.at_fraction * s.applications as f64
        {
            super::set_phase(cx.live, &format!("chaos: {:?}", f.fault));
            let t = inject(cx, &f.fault, &admin, &reached, pushed).await?;
            if t.result.apps_at_commit == s.applications {
                out.problems.push(format!(
                    "{} came after the rollout had finished: raise the rollout's size or lower atFraction",
                    t.result.fault
                ));
            }
            trackers.push(t);
        }
        for t in &mut trackers {
            update(cx, t, &admin, &reached).await;
        }
        if done == s.applications
            && trackers.len() == c.faults.len()
            && trackers.iter().all(Tracker::settled)
        {
            break reached;
        }
        if Instant::now() > deadline {
            let o = cx.obs.lock();
            let stragglers: Vec<String> = (0..s.applications)
                .filter(|i| reached[*i].is_none())
                .take(5)
                .map(|i| {
                    let name = workload::app_name(i);
                    let st = o.apps.get(&name);
                    format!(
                        "{name} ({}/{} at {})",
                        st.map_or("", |a| a.sync.as_str()),
                        st.map_or("", |a| a.health.as_str()),
                        st.map_or("", |a| a.revision.as_str())
                    )
                })
                .collect();
            out.problems.push(format!(
                "after {} s: {done} of {} applications at the commit, {} of {} faults injected, {} not restored; e.g. {stragglers:?}",
                c.timeout_seconds,
                s.applications,
                trackers.len(),
                c.faults.len(),
                trackers.iter().filter(|t| !t.settled()).count()
            ));
            break reached;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    super::set_phase(cx.live, "chaos: checking");
    out.rollout.push((
        pushed.elapsed().as_secs_f64(),
        reached_all.iter().filter(|r| r.is_some()).count(),
    ));
    let at_commit: Vec<f64> = reached_all
        .iter()
        .flatten()
        .map(|r| r.duration_since(pushed).as_secs_f64())
        .collect();
    out.per_app = Percentiles::of(&at_commit);
    if at_commit.len() == s.applications {
        out.all_apps_seconds = Some(out.per_app.max);
    }
    out.faults = trackers.into_iter().map(|t| t.result).collect();
    for f in &out.faults {
        if f.restored_seconds.is_none() && !f.restored.is_empty() {
            out.problems
                .push(format!("{}: never {}", f.fault, f.restored));
        }
    }
    for h in hooks {
        match h.await {
            Ok(Ok(secs)) => {
                out.webhook_seconds = Some(out.webhook_seconds.unwrap_or(0.0).max(secs))
            }
            Ok(Err(e)) => out.problems.push(format!("the webhook: {e:#}")),
            Err(e) => out.problems.push(format!("the webhook task: {e}")),
        }
    }

    // (a) Every application Synced and Healthy at the commit now (not only once).
    let settled_until = Instant::now() + Duration::from_secs(30);
    loop {
        out.apps_at_commit = {
            let o = cx.obs.lock();
            (0..s.applications)
                .filter(|i| {
                    o.apps.get(&workload::app_name(*i)).is_some_and(|a| {
                        a.sync == "Synced"
                            && a.health == "Healthy"
                            && commits.get(&workload::repo_of(s, *i)) == Some(&a.revision)
                    })
                })
                .count()
        };
        if out.apps_at_commit == s.applications || Instant::now() > settled_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if out.apps_at_commit < s.applications {
        out.problems.push(format!(
            "only {} of {} applications Synced and Healthy at the commit at the end",
            out.apps_at_commit, s.applications
        ));
    }

    // (b) No two writers at once, over the whole run; (c) nothing pruned.
    // Writes answered by now are in the summaries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let summaries = simadmin::writers(&admin, &targets).await?;
    out.writers = writers::check(&summaries, &targets, &cx.timeline.lock());
    out.problems.extend(writer_problems(&out.writers));
    let mut prune = PruneCheck::default();
    prune.judge_deletes(&summaries, &targets, 0, &BTreeSet::new());
    let counts_after = simadmin::stats(&admin).await?;
    for cluster in &targets {
        let (b, a) = (
            counts_before.get(cluster).map(|c| c.objects),
            counts_after.get(cluster).map(|c| c.objects),
        );
        if b != a {
            prune.count_changes.push(format!(
                "{cluster}: {} → {} objects",
                b.unwrap_or(0),
                a.unwrap_or(0)
            ));
        }
    }
    let names: Vec<String> = targets.iter().cloned().collect();
    let found = inventory::list(cx.fleet, &names).await?;
    prune.compare(
        &inventory::expected(s, 0..s.applications),
        &found,
        &inventory::Inventory::new(),
    );
    if !prune.ok() {
        out.problems.push(format!(
            "pruned by mistake: {} application objects missing, {} wrong DELETEs, {} clusters' object counts changed",
            prune.missing_count,
            prune.wrong_delete_count,
            prune.count_changes.len()
        ));
    }
    out.prune = prune;
    out.passed = out.problems.is_empty();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_goes_to_a_replica_that_survives() {
        let ids = |n: usize| (0..n).map(|i| format!("c-{i}")).collect::<Vec<_>>();
        let f = |fault| ChaosFault {
            at_fraction: 0.1,
            fault,
        };
        let faults = [
            f(Fault::KillController { replica: 0 }),
            f(Fault::StopController { replica: 0 }),
        ];
        assert_eq!(survivor(ids(3), &faults).as_deref(), Some("c-2"));
        assert_eq!(survivor(ids(2), &faults), None);
        assert_eq!(survivor(ids(1), &[]).as_deref(), Some("c-0"));
    }

    #[test]
    fn an_unlisted_push_names_no_files() {
        let body = push_unlisted("git://h/apps.git", "abc");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert!(v["commits"][0].get("modified").is_none());
        assert_eq!(v["after"], "abc");
    }

    #[test]
    fn watches_count_as_back_once_reopened() {
        let before = ClusterStats {
            objects: 1,
            watches_open: 4,
            watches_opened: 10,
        };
        let cut = ClusterStats {
            watches_open: 0,
            ..before
        };
        assert!(!watching_again(&before, &cut));
        let back = ClusterStats {
            watches_open: 4,
            watches_opened: 14,
            ..before
        };
        assert!(watching_again(&before, &back));
    }
}
