//! The soak phase: steady churn (webhook commits, app creates and deletes, replica restarts)
//! for a set time while every controller's memory and CPU are sampled and must stay flat.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use parking_lot::Mutex;

use super::inventory::{self, PruneCheck};
use super::phases_report::{Flatness, Restart, SoakReport, SoakSample};
use super::report::Percentiles;
use super::scenario::Soak;
use super::{
    Ctx, Live, MANAGER, NS, change, chaos, observe, procstat, simadmin, workload, writers,
};

/// Every `every`, read each running controller's RSS and CPU into `samples`.
fn spawn_sampler(
    live: Arc<Live>,
    samples: Arc<Mutex<Vec<SoakSample>>>,
    every: Duration,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Replica → (when, its CPU seconds then).
        let mut last: HashMap<String, (Instant, f64)> = HashMap::new();
        loop {
            let targets = live.targets.lock().clone();
            let now = Instant::now();
            let mut s = SoakSample {
                t: now.duration_since(started).as_secs_f64(),
                ..Default::default()
            };
            for t in targets.iter().filter(|t| t.controller_metrics.is_some()) {
                let Some(r) = procstat::read(t.pid) else {
                    continue;
                };
                s.rss_mib
                    .insert(t.name.clone(), r.rss_bytes as f64 / 1_048_576.0);
                if let Some((then, cpu)) = last.get(&t.name) {
                    let secs = now.duration_since(*then).as_secs_f64().max(1e-3);
                    s.cpu_percent.insert(
                        t.name.clone(),
                        ((r.cpu_seconds - cpu) / secs * 100.0).max(0.0),
                    );
                }
                last.insert(t.name.clone(), (now, r.cpu_seconds));
            }
            s.total_rss_mib = s.rss_mib.values().sum();
            s.total_cpu_percent = s.cpu_percent.values().sum();
            samples.lock().push(s);
            tokio::time::sleep(every).await;
        }
    })
}

/// The applications the soak created and deleted, and what is still to be seen of them.
#[derive(Default)]
struct Churn {
    next: usize,
    live: VecDeque<usize>,
    deleted: BTreeSet<usize>,
    /// Created, not yet Synced and Healthy: (app, when created).
    creating: Vec<(usize, Instant)>,
    /// Deleted, not yet gone: (app, when deleted).
    deleting: Vec<(usize, Instant)>,
    create_latency: Vec<f64>,
    delete_latency: Vec<f64>,
}

/// One churn step: `k.churnApps` new applications, and the oldest beyond `k.churnLiveApps`
/// deleted.
async fn churn_step(
    cx: &Ctx<'_>,
    k: &Soak,
    api: &Api<DynamicObject>,
    urls: &[String],
    c: &mut Churn,
) -> Result<()> {
    let s = cx.s;
    let last = s.applications + k.churn_total();
    for _ in 0..k.churn_apps {
        if c.next >= last {
            break;
        }
        let i = c.next;
        c.next += 1;
        let name = workload::app_name(i);
        let yaml = workload::application_with_finalizer(s, i, &urls[workload::repo_of(s, i)], NS);
        let obj: DynamicObject = serde_yaml::from_str(&yaml)?;
        let now = Instant::now();
        cx.obs.lock().created(&name, now);
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await
        .with_context(|| format!("creating {name}"))?;
        c.creating.push((i, now));
        c.live.push_back(i);
    }
    while c.live.len() > k.churn_live_apps {
        let Some(i) = c.live.pop_front() else { break };
        let name = workload::app_name(i);
        api.delete(&name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting {name}"))?;
        c.deleted.insert(i);
        c.deleting.push((i, Instant::now()));
    }
    Ok(())
}

/// Settle what can be settled of the pending creates and deletes; the ones past `timeout`
/// become problems.
async fn follow_churn(
    cx: &Ctx<'_>,
    api: &Api<DynamicObject>,
    c: &mut Churn,
    timeout: Duration,
    problems: &mut Vec<String>,
) {
    let mut still = Vec::new();
    for (i, at) in std::mem::take(&mut c.creating) {
        let name = workload::app_name(i);
        let ok = cx.obs.lock().apps.get(&name).and_then(|a| a.synced_healthy);
        match ok {
            Some(t) => c.create_latency.push(t.duration_since(at).as_secs_f64()),
            None if at.elapsed() > timeout => problems.push(format!(
                "{name} was not Synced and Healthy {} s after its creation",
                timeout.as_secs()
            )),
            None => still.push((i, at)),
        }
    }
    c.creating = still;
    let mut still = Vec::new();
    for (i, at) in std::mem::take(&mut c.deleting) {
        let name = workload::app_name(i);
        match api.get_opt(&name).await {
            Ok(None) => c.delete_latency.push(at.elapsed().as_secs_f64()),
            _ if at.elapsed() > timeout => problems.push(format!(
                "{name} was still there {} s after its deletion",
                timeout.as_secs()
            )),
            _ => still.push((i, at)),
        }
    }
    c.deleting = still;
}

/// Stop the oldest replica (`kill` -9 or SIGTERM), start a replacement, and time until every
/// cluster is owned again.
async fn restart(cx: &mut Ctx<'_>, kill: bool, started: Instant) -> Result<Restart> {
    let victim = cx
        .fleet
        .controllers
        .first()
        .context("no controller running")?
        .identity
        .clone();
    let at = Instant::now();
    cx.remove_controller(&victim, kill)?;
    let replacement = cx.add_controller().await?;
    let s = cx.s;
    let owned = super::stable_ownership(cx.fleet, cx.servers, s.clusters, super::settle_time(s))
        .await
        .ok()
        .map(|_| at.elapsed().as_secs_f64());
    Ok(Restart {
        at_seconds: at.duration_since(started).as_secs_f64(),
        how: if kill { "kill -9" } else { "SIGTERM" }.into(),
        victim,
        replacement,
        owned_again_seconds: owned,
    })
}

/// When something is due next (`every` 0: never).
fn first_due(started: Instant, every: f64, first_at_start: bool) -> Option<Instant> {
    (every > 0.0).then(|| {
        if first_at_start {
            started
        } else {
            started + Duration::from_secs_f64(every)
        }
    })
}

fn due(at: Option<Instant>, now: Instant) -> bool {
    at.is_some_and(|a| a <= now)
}

/// The next time after `at`, not in the past.
fn advance(at: &mut Option<Instant>, every: f64) {
    if let Some(a) = at {
        *a = (*a + Duration::from_secs_f64(every)).max(Instant::now());
    }
}

/// Run the soak phase `k` on the converged fleet; `n` numbers the commits (see `change`).
pub(super) async fn run(cx: &mut Ctx<'_>, k: &Soak, n: &mut usize) -> Result<SoakReport> {
    let s = cx.s;
    let admin = cx.fleet.sim.admin().context("kubesim has no admin API")?;
    let targets: BTreeSet<String> = (1..=s.clusters).map(workload::cluster_name).collect();
    let api: Api<DynamicObject> = Api::namespaced_with(
        cx.fleet.control().clone(),
        NS,
        &observe::application_resource(),
    );
    let urls: Vec<String> = (0..s.repo_count())
        .map(|j| cx.wl.repo(cx.fleet, j).url())
        .collect();
    let mut out = SoakReport::default();
    let started = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = spawn_sampler(
        cx.live.clone(),
        samples.clone(),
        Duration::from_secs_f64(k.sample_seconds),
        started,
    );
    let end = started + Duration::from_secs(k.duration_seconds);
    let mut next_commit = first_due(started, k.commit_every_seconds, false);
    let mut next_churn = first_due(started, k.churn_every_seconds, true);
    let mut next_restart = first_due(started, k.restart_every_seconds, false);
    let mut churn = Churn {
        next: s.applications,
        ..Default::default()
    };
    let churn_timeout = Duration::from_secs(k.churn_timeout_seconds);
    let mut commit_latency = Vec::new();
    let mut kill = false;
    let mut last_follow = started;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        super::set_phase(
            cx.live,
            &format!(
                "soak {:.0}/{} s",
                now.duration_since(started).as_secs_f64(),
                k.duration_seconds
            ),
        );
        if last_follow.elapsed() >= Duration::from_secs(1) {
            follow_churn(cx, &api, &mut churn, churn_timeout, &mut out.problems).await;
            last_follow = Instant::now();
        }
        if due(next_commit, now) {
            match change(s, cx.fleet, cx.wl, cx.obs, *n, true).await {
                Ok((_, latencies)) => {
                    out.commits += 1;
                    commit_latency.extend(latencies);
                }
                Err(e) => {
                    out.commit_failures += 1;
                    out.problems.push(format!("commit {n}: {e:#}"));
                }
            }
            *n += 1;
            advance(&mut next_commit, k.commit_every_seconds);
        } else if due(next_churn, now) {
            if let Err(e) = churn_step(cx, k, &api, &urls, &mut churn).await {
                out.problems.push(format!("churn: {e:#}"));
            }
            advance(&mut next_churn, k.churn_every_seconds);
        } else if due(next_restart, now) {
            match restart(cx, kill, started).await {
                Ok(r) => {
                    if r.owned_again_seconds.is_none() {
                        out.problems.push(format!(
                            "after restarting {} ({}), ownership did not settle",
                            r.victim, r.how
                        ));
                    }
                    out.restarts.push(r);
                }
                Err(e) => out.problems.push(format!("restart: {e:#}")),
            }
            kill = !kill;
            advance(&mut next_restart, k.restart_every_seconds);
        } else {
            let next = [next_commit, next_churn, next_restart, Some(end)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end);
            let wait = next
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            tokio::time::sleep(wait).await;
        }
    }
    sampler.abort();
    out.duration_seconds = started.elapsed().as_secs_f64();
    out.samples = std::mem::take(&mut *samples.lock());
    super::set_phase(cx.live, "soak: checking");

    // The last creates and deletes settle (or time out).
    while !(churn.creating.is_empty() && churn.deleting.is_empty()) {
        follow_churn(cx, &api, &mut churn, churn_timeout, &mut out.problems).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    out.created = churn.next - s.applications;
    out.deleted = churn.deleted.len();
    out.create_latency = Percentiles::of(&churn.create_latency);
    out.delete_latency = Percentiles::of(&churn.delete_latency);
    out.commit_latency = Percentiles::of(&commit_latency);

    // Flat memory and CPU.
    let d = k.duration_seconds as f64;
    let baseline = (
        k.warmup_seconds as f64,
        (k.warmup_seconds + k.window_seconds) as f64,
    );
    let last = (d - k.window_seconds as f64, d);
    let series = |f: fn(&SoakSample) -> f64| -> Vec<(f64, f64)> {
        out.samples.iter().map(|x| (x.t, f(x))).collect()
    };
    out.memory = Flatness::measure(
        &series(|x| x.total_rss_mib),
        baseline,
        last,
        Some(k.max_memory_growth_percent),
    );
    // CPU rates need two readings of a replica; the first sample has none.
    let cpu: Vec<(f64, f64)> = out
        .samples
        .iter()
        .filter(|x| !x.cpu_percent.is_empty())
        .map(|x| (x.t, x.total_cpu_percent))
        .collect();
    out.cpu = Flatness::measure(&cpu, baseline, last, k.max_cpu_growth_percent);
    if !out.memory.flat {
        out.problems.push(format!(
            "the controllers' memory grew {:+.1} % (median {:.0} → {:.0} MiB; limit {:.0} %)",
            out.memory.growth_percent,
            out.memory.baseline_median,
            out.memory.final_median,
            k.max_memory_growth_percent
        ));
    }
    if !out.cpu.flat {
        out.problems.push(format!(
            "the controllers' CPU grew {:+.1} % (median {:.1} → {:.1} % of a core)",
            out.cpu.growth_percent, out.cpu.baseline_median, out.cpu.final_median
        ));
    }

    // No two writers at once; deleted apps' objects gone, nobody else's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let summaries = simadmin::writers(&admin, &targets).await?;
    out.writers = writers::check(&summaries, &targets, &cx.timeline.lock());
    out.problems.extend(chaos::writer_problems(&out.writers));
    let mut prune = PruneCheck::default();
    prune.judge_deletes(&summaries, &targets, 0, &churn.deleted);
    let names: Vec<String> = targets.iter().cloned().collect();
    let found = inventory::list(cx.fleet, &names).await?;
    let live: Vec<usize> = (0..s.applications)
        .chain(churn.live.iter().copied())
        .collect();
    prune.compare(
        &inventory::expected(s, live),
        &found,
        &inventory::expected(s, churn.deleted.iter().copied()),
    );
    if !prune.ok() {
        out.problems.push(format!(
            "objects: {} of live apps missing, {} of deleted apps left over, {} wrong DELETEs",
            prune.missing_count, prune.left_over_count, prune.wrong_delete_count
        ));
    }
    if churn.deleted.is_empty() && k.churn_every_seconds > 0.0 {
        out.problems.push(
            "no application was deleted: raise durationSeconds or lower churnLiveApps".into(),
        );
    }
    out.prune = prune;
    out.passed = out.problems.is_empty();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_start_advance_and_never_fall_behind() {
        let t0 = Instant::now();
        assert_eq!(first_due(t0, 0.0, true), None, "0: switched off");
        assert_eq!(first_due(t0, 5.0, true), Some(t0));
        let mut at = first_due(t0, 5.0, false);
        assert_eq!(at, Some(t0 + Duration::from_secs(5)));
        assert!(!due(at, t0));
        advance(&mut at, 5.0);
        assert_eq!(at, Some(t0 + Duration::from_secs(10)));
        let mut late = Some(t0 - Duration::from_secs(100));
        advance(&mut late, 1.0);
        assert!(late.is_some_and(|l| l >= t0), "no burst of catch-up runs");
    }
}
