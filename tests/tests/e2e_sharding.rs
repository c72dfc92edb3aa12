//! The sharded fleet through real processes: controller replicas share 30 clusters and 300
//! apps by Lease membership; ownership matches the ring's prediction, scale 3→4→2 moves only
//! what the ring says, a killed replica's clusters are taken over within the Lease duration,
//! and kubesim's request log shows no cluster written by two replicas at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use flotilla_controller::types::Application;
use flotilla_loadtest::fleet::{Fleet, FleetConfig, metric_value};
use flotilla_sharding::ring::{DEFAULT_EPSILON, DEFAULT_VNODES, Ring, quantize_weight};
use flotilla_tests::e2e::{NS, codes};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

const CLUSTERS: usize = 30;
const APPS_PER_CLUSTER: usize = 10;
const LEASE_SECONDS: u64 = 6;
const CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n";

fn cluster_name(i: usize) -> String {
    format!("cluster-{:03}", i + 1)
}

fn app_yaml(fleet: &Fleet, i: usize) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: app-{i:03}, namespace: argocd}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: shard}}\n  destination: {{name: {cluster}, namespace: app-{i:03}}}\n  syncPolicy:\n    automated: {{prune: true, selfHeal: true}}\n    syncOptions: [CreateNamespace=true]\n",
        url = fleet.git.url(),
        cluster = cluster_name(i % CLUSTERS),
    )
}

async fn apps(fleet: &Fleet) -> Result<Vec<Application>> {
    let api: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    Ok(api.list(&ListParams::default()).await?.items)
}

/// Wait until every app satisfies `pred`.
async fn wait_all(
    fleet: &Fleet,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Application) -> bool,
) -> Result<Vec<Application>> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = apps(fleet).await?;
        let bad: Vec<String> = all
            .iter()
            .filter(|a| !pred(a))
            .map(|a| {
                format!(
                    "{} {:?}",
                    a.metadata.name.clone().unwrap_or_default(),
                    codes(a)
                )
            })
            .collect();
        if all.len() == CLUSTERS * APPS_PER_CLUSTER && bad.is_empty() {
            return Ok(all);
        }
        if Instant::now() > deadline {
            bail!(
                "{what}: {} of {} apps not there after {timeout:?}, e.g. {:?}",
                bad.len(),
                all.len(),
                &bad[..bad.len().min(5)]
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Ask every app for a refresh (what a webhook does), so syncs run right now.
async fn refresh_all(fleet: &Fleet) -> Result<()> {
    let api: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    for a in apps(fleet).await? {
        let name = a.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}),
            ),
        )
        .await?;
    }
    Ok(())
}

/// Commit a new color and refresh every app: 300 syncs start.
async fn roll(fleet: &Fleet, color: &str) -> Result<String> {
    let commit = fleet
        .git
        .commit_files(&[("shard/cm.yaml", &CM.replace("blue", color))], color)?;
    refresh_all(fleet).await?;
    Ok(commit)
}

async fn wait_commit(fleet: &Fleet, commit: &str) -> Result<()> {
    wait_all(
        fleet,
        "every app at the new commit",
        Duration::from_secs(120),
        |a| {
            codes(a).0 == "Synced"
                && a.status
                    .as_ref()
                    .and_then(|s| s.sync.as_ref())
                    .and_then(|s| s.revision.as_deref())
                    == Some(commit)
        },
    )
    .await?;
    Ok(())
}

/// Hold every write to every target cluster for `ms` (like a slow admission webhook) while
/// reads stay fast: a new owner is warm quickly while the old owner's writes are in flight.
fn set_write_latency(fleet: &Fleet, ms: u64) -> Result<()> {
    for i in 0..CLUSTERS {
        let c = fleet
            .sim
            .in_process()?
            .cluster(&cluster_name(i))
            .context("cluster")?;
        c.faults.set(&flotilla_loadtest::kubesim::FaultSpec {
            write_latency_ms: ms,
            ..Default::default()
        });
    }
    Ok(())
}

/// Who owns which cluster, as the replicas report it (checked disjoint).
struct Ownership {
    owner: BTreeMap<String, String>,
    clusters: BTreeSet<String>,
    settled: bool,
}

fn strings(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}

/// Read every replica's `/status` twice, in the same order. The reads are not simultaneous, so
/// a cluster reported by two replicas may just be a hand-over between the reads; it is proof
/// of two owners at once only when one replica reports it in both of its reads and another in
/// a read made between them. That is an error; anything else unsettled is just "not yet".
async fn ownership(fleet: &Fleet, members: &[String]) -> Result<Ownership> {
    let ids = fleet.controller_ids();
    let mut rounds: Vec<Vec<serde_json::Value>> = Vec::new();
    for _ in 0..2 {
        let mut round = Vec::new();
        for id in &ids {
            round.push(fleet.controller_status(id).await?);
        }
        rounds.push(round);
    }
    let owned = |round: usize, i: usize| strings(&rounds[round][i]["ownedClusters"]);
    // Read order: r0[0], r0[1], ..., r0[n-1], r1[0], ..., r1[n-1].
    for i in 0..ids.len() {
        for j in 0..ids.len() {
            if i == j {
                continue;
            }
            // j's first read falls between i's two reads when j comes after i; j's second
            // read falls between them when j comes before i.
            let between = if j > i { owned(0, j) } else { owned(1, j) };
            for c in owned(0, i).intersection(&owned(1, i)) {
                if between.contains(c) {
                    bail!(
                        "{c} is owned by {} and {} at once ({} reported it before and after {} did)",
                        ids[i],
                        ids[j],
                        ids[i],
                        ids[j]
                    );
                }
            }
        }
    }
    let mut owner = BTreeMap::new();
    let mut clusters = BTreeSet::new();
    let mut settled = true;
    for (i, id) in ids.iter().enumerate() {
        let st = &rounds[1][i];
        settled &= owned(0, i) == owned(1, i);
        for c in owned(1, i) {
            if owner.insert(c, id.clone()).is_some() {
                settled = false;
            }
        }
        clusters.extend(strings(&st["clusters"]));
        let seen: Vec<String> = strings(&st["members"]).into_iter().collect();
        settled &= seen == members
            && st["pendingClusters"].as_array().is_some_and(Vec::is_empty)
            && st["releasingClusters"]
                .as_array()
                .is_some_and(Vec::is_empty);
    }
    settled &= owner.len() == clusters.len() && !clusters.is_empty();
    Ok(Ownership {
        owner,
        clusters,
        settled,
    })
}

/// Wait until the running replicas agree on `members`, nothing is pending, every cluster has
/// an owner; returns the owners and how long it took.
async fn wait_settled(
    fleet: &Fleet,
    timeout: Duration,
) -> Result<(BTreeMap<String, String>, Duration)> {
    let started = Instant::now();
    let mut members = fleet.controller_ids();
    members.sort();
    loop {
        let o = ownership(fleet, &members).await?;
        if o.settled {
            return Ok((o.owner, started.elapsed()));
        }
        if started.elapsed() > timeout {
            bail!(
                "ownership did not settle on {members:?} within {timeout:?}: {} of {} clusters owned",
                o.owner.len(),
                o.clusters.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the ring computes for these members, with the controllers' default weights (apps per
/// cluster, quantized).
fn predicted(
    fleet: &Fleet,
    members: &[String],
    clusters: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for i in 0..CLUSTERS * APPS_PER_CLUSTER {
        *counts
            .entry(fleet.server(&cluster_name(i % CLUSTERS))?)
            .or_default() += 1;
    }
    let keys: BTreeMap<String, u64> = clusters
        .iter()
        .map(|c| {
            (
                c.clone(),
                quantize_weight(counts.get(c).copied().unwrap_or(0)),
            )
        })
        .collect();
    let p = Ring::new(members.iter().cloned(), DEFAULT_VNODES).place(&keys, DEFAULT_EPSILON);
    Ok(p.iter()
        .map(|(k, m)| (k.to_string(), m.to_string()))
        .collect())
}

/// Wait until ownership is settled exactly where the ring puts it for the running replicas
/// (the controllers recount weights at most once a second, so this can take a moment).
async fn wait_placement(
    fleet: &Fleet,
    clusters: &BTreeSet<String>,
) -> Result<(BTreeMap<String, String>, Duration)> {
    let started = Instant::now();
    let mut members = fleet.controller_ids();
    members.sort();
    let expect = predicted(fleet, &members, clusters)?;
    loop {
        let o = ownership(fleet, &members).await?;
        if o.settled && o.owner == expect {
            return Ok((o.owner, started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(LEASE_SECONDS + 30) {
            bail!(
                "ownership is not the ring's placement for {members:?}: {} clusters differ (settled: {})",
                moved(&o.owner, &expect),
                o.settled
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn moved(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> usize {
    a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).count()
}

/// The replica in a User-Agent `flotilla-controller/<v> (<identity>)`.
fn replica_of(user_agent: &str) -> Option<&str> {
    user_agent
        .strip_prefix("flotilla-controller/")?
        .split_once(" (")?
        .1
        .strip_suffix(')')
}

/// For every target cluster: writes sorted by arrival, grouped into runs of one replica; each
/// run must end before the next replica's run starts. Returns (writes, hand-overs seen).
fn check_no_overlap(fleet: &Fleet) -> Result<(usize, usize)> {
    let mut writes_total = 0;
    let mut handovers = 0;
    for i in 0..CLUSTERS {
        let name = cluster_name(i);
        let cluster = fleet.sim.in_process()?.cluster(&name).context("cluster")?;
        let mut writes: Vec<_> = cluster
            .log
            .since(0)
            .into_iter()
            .filter(|r| r.is_write())
            .filter_map(|r| Some((r.start_us, r.end_us, replica_of(&r.user_agent)?.to_string())))
            .collect();
        writes.sort();
        writes_total += writes.len();
        // Runs of consecutive writes by one replica: (replica, first start, last end).
        let mut runs: Vec<(String, u64, u64)> = Vec::new();
        for (start, end, who) in writes {
            match runs.last_mut() {
                Some(run) if run.0 == who => run.2 = run.2.max(end),
                _ => runs.push((who, start, end)),
            }
        }
        for pair in runs.windows(2) {
            handovers += 1;
            ensure!(
                pair[0].2 < pair[1].1,
                "{name}: {} wrote until {} but {} started writing at {}",
                pair[0].0,
                pair[0].2,
                pair[1].0,
                pair[1].1
            );
        }
    }
    Ok((writes_total, handovers))
}

/// Writers per cluster since request `since` (by kubesim's sequence numbers).
fn writers_since(
    fleet: &Fleet,
    since: &HashMap<String, u64>,
) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    for i in 0..CLUSTERS {
        let name = cluster_name(i);
        let cluster = fleet.sim.in_process()?.cluster(&name).context("cluster")?;
        let who: BTreeSet<String> = cluster
            .log
            .since(since.get(&name).copied().unwrap_or(0))
            .into_iter()
            .filter(|r| r.is_write())
            .filter_map(|r| replica_of(&r.user_agent).map(str::to_string))
            .collect();
        out.insert(fleet.server(&name)?, who);
    }
    Ok(out)
}

fn log_marks(fleet: &Fleet) -> Result<HashMap<String, u64>> {
    (0..CLUSTERS)
        .map(|i| {
            let name = cluster_name(i);
            let c = fleet.sim.in_process()?.cluster(&name).context("cluster")?;
            Ok((name, c.log.since(0).last().map(|r| r.seq).unwrap_or(0)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_clusters_hand_over_safely_and_take_over_after_a_crash() -> Result<()> {
    let mut fleet = Fleet::start(FleetConfig {
        clusters: CLUSTERS,
        controllers: 3,
        workers: 8,
        lease_duration_seconds: LEASE_SECONDS,
        lease_renew_seconds: 1.0,
        ready_delay: Duration::from_millis(50),
        ..Default::default()
    })
    .await?;
    fleet.git.commit_files(&[("shard/cm.yaml", CM)], "shard")?;
    let (owners, _) = wait_settled(&fleet, Duration::from_secs(30)).await?;
    let clusters: BTreeSet<String> = owners.keys().cloned().collect();
    ensure!(
        clusters.len() == CLUSTERS + 1,
        "30 clusters plus in-cluster: {clusters:?}"
    );

    // 300 apps. Creating them changes the clusters' weights (apps per cluster), so ownership
    // shifts while they are created; then it rests where the ring puts it.
    let started = Instant::now();
    for i in 0..CLUSTERS * APPS_PER_CLUSTER {
        fleet.apply(&app_yaml(&fleet, i)).await?;
    }
    wait_all(
        &fleet,
        "all Synced/Healthy",
        Duration::from_secs(180),
        |a| codes(a) == ("Synced".into(), "Healthy".into()),
    )
    .await?;
    let converged = started.elapsed();
    let (owners, _) = wait_placement(&fleet, &clusters).await?;

    // Steady state: a rollout of all 300 apps is written to each cluster by its owner alone.
    let marks = log_marks(&fleet)?;
    let commit = roll(&fleet, "teal").await?;
    wait_commit(&fleet, &commit).await?;
    for (server, who) in writers_since(&fleet, &marks)? {
        let owner = owners.get(&server).context("owner")?;
        ensure!(
            who.len() == 1 && who.contains(owner),
            "{server} was written by {who:?}, its owner is {owner}"
        );
    }
    // The per-replica gauges (recounted at most once a second) add up to the whole fleet.
    let members = fleet.controller_ids();
    let deadline = Instant::now() + Duration::from_secs(10);
    let per_replica = loop {
        let mut per_replica = Vec::new();
        for id in &members {
            let m = fleet.metrics_of(id).await?;
            per_replica.push((
                id.clone(),
                metric_value(&m, "flotilla_owned_applications", &[]),
                metric_value(&m, "flotilla_shard_owned_keys", &[]),
            ));
        }
        let apps: f64 = per_replica.iter().map(|r| r.1).sum();
        let keys: f64 = per_replica.iter().map(|r| r.2).sum();
        if apps == 300.0 && keys == clusters.len() as f64 {
            break per_replica;
        }
        ensure!(
            Instant::now() < deadline,
            "owned applications and clusters sum to 300 and 31: {per_replica:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "300 apps on 30 clusters, 3 replicas: converged in {converged:?}; per replica (apps, clusters): {per_replica:?}"
    );

    // 3 → 4 while 300 syncs are running, each write held for 1 s so that hand-overs happen
    // while writes are in flight: only the clusters the ring moves change hands, and a new
    // owner starts writing only after the old owner's last write returned.
    let before = owners;
    set_write_latency(&fleet, 1000)?;
    let commit = roll(&fleet, "red").await?;
    fleet.start_controller().await?;
    let (after, took) = wait_placement(&fleet, &clusters).await?;
    let n = moved(&before, &after);
    println!(
        "3→4: {n} of {} clusters moved (ideal ≈ {}), settled in {took:?}",
        clusters.len(),
        clusters.len() / 4
    );
    ensure!(n > 0 && n <= clusters.len() / 2, "3→4 moved {n}");

    wait_commit(&fleet, &commit).await?;
    set_write_latency(&fleet, 0)?;

    // 4 → 2 gracefully, again mid-rollout: the leaving replicas hand over at once.
    let before = after;
    let commit = roll(&fleet, "yellow").await?;
    let sigterm = Instant::now();
    for id in ["controller-0", "controller-3"] {
        fleet.stop_controller(id)?;
    }
    let (after, _) = wait_placement(&fleet, &clusters).await?;
    let took = sigterm.elapsed();
    let n = moved(&before, &after);
    let had: usize = before
        .values()
        .filter(|o| *o == "controller-0" || *o == "controller-3")
        .count();
    println!(
        "4→2 (SIGTERM): {n} clusters moved, the leavers had {had}; all owned again {took:?} after the first SIGTERM"
    );
    ensure!(
        n >= had && n <= had + clusters.len() / 4,
        "4→2 moved {n}, leavers had {had}"
    );
    ensure!(
        took < Duration::from_secs(LEASE_SECONDS),
        "graceful hand-over beats the Lease expiry: {took:?}"
    );
    wait_commit(&fleet, &commit).await?;

    // A third replica again, then kill -9 one: its clusters are taken over after the Lease
    // expires, and their apps reconciled again.
    fleet.start_controller().await?;
    let (before, _) = wait_placement(&fleet, &clusters).await?;
    let victim = "controller-1";
    let victim_clusters: BTreeSet<String> = before
        .iter()
        .filter(|(_, o)| *o == victim)
        .map(|(c, _)| c.clone())
        .collect();
    let reconciled_before: HashMap<String, String> = apps(&fleet)
        .await?
        .into_iter()
        .filter_map(|a| {
            Some((
                a.metadata.name.clone()?,
                a.status?.reconciled_at.unwrap_or_default(),
            ))
        })
        .collect();
    let killed = Instant::now();
    fleet.kill_controller(victim)?;
    let (after, took_over) = wait_placement(&fleet, &clusters).await?;
    let victim_servers: BTreeSet<String> = victim_clusters.clone();
    wait_all(
        &fleet,
        "the victim's apps reconciled again",
        Duration::from_secs(30),
        |a| {
            let dest = a.spec.destination.name.clone().unwrap_or_default();
            let server = fleet.server(&dest).unwrap_or_default();
            let name = a.metadata.name.clone().unwrap_or_default();
            !victim_servers.contains(&server)
                || a.status.as_ref().and_then(|s| s.reconciled_at.as_ref())
                    != reconciled_before.get(&name)
        },
    )
    .await?;
    let failover = killed.elapsed();
    let n = moved(&before, &after);
    println!(
        "kill -9 {victim}: its {} clusters taken over in {took_over:?}, their apps reconciled again {failover:?} after the kill ({n} clusters moved)",
        victim_clusters.len()
    );
    ensure!(
        failover < Duration::from_secs(LEASE_SECONDS + 6),
        "failover took {failover:?}"
    );

    // A change in Git reaches every app through the survivors.
    let commit = roll(&fleet, "green").await?;
    wait_commit(&fleet, &commit).await?;

    // Over the whole run: no cluster was ever written by two replicas at once.
    let (writes, handovers) = check_no_overlap(&fleet)?;
    println!(
        "request log: {writes} writes to target clusters, {handovers} changes of writer, none overlapping"
    );
    ensure!(handovers > 0, "the run did hand clusters over");
    Ok(())
}

/// A replica that cannot renew its Lease stops writing to clusters it can still reach
/// (fencing), and takes up its work again when the control plane is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_its_lease_stops_writing_then_recovers() -> Result<()> {
    use flotilla_loadtest::kubesim::FaultSpec;
    use k8s_openapi::api::core::v1::ConfigMap;
    let mut fleet = Fleet::start(FleetConfig {
        clusters: 2,
        controllers: 2,
        lease_duration_seconds: LEASE_SECONDS,
        lease_renew_seconds: 1.0,
        ..Default::default()
    })
    .await?;
    fleet.git.commit_files(&[("shard/cm.yaml", CM)], "shard")?;
    for (i, cluster) in ["cluster-001", "cluster-002"].iter().enumerate() {
        fleet
            .apply(&format!(
                "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: heal-{i}, namespace: argocd}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: shard}}\n  destination: {{name: {cluster}, namespace: heal-{i}}}\n  syncPolicy:\n    automated: {{prune: true, selfHeal: true}}\n    syncOptions: [CreateNamespace=true]\n",
                url = fleet.git.url()
            ))
            .await?;
    }
    for i in 0..2 {
        flotilla_tests::e2e::wait_synced_healthy(&fleet, &format!("heal-{i}")).await?;
    }
    let ids = fleet.controller_ids();

    // The control plane goes away: no replica can renew its Lease.
    let control = fleet.sim.in_process()?.control_plane().clone();
    control.faults.set(&FaultSpec {
        unreachable: true,
        ..Default::default()
    });
    let fence_after = Duration::from_secs(LEASE_SECONDS - 2);
    tokio::time::sleep(fence_after + Duration::from_secs(1)).await;
    for id in &ids {
        let st = fleet.controller_status(id).await?;
        ensure!(
            st["fenced"] == true && st["ownedClusters"].as_array().is_some_and(Vec::is_empty),
            "{id} fenced itself: {st}"
        );
    }
    // Drift in both clusters, which the replicas can still reach: nobody may heal it now.
    let marks = log_marks_of(&fleet, &["cluster-001", "cluster-002"])?;
    for (i, cluster) in ["cluster-001", "cluster-002"].iter().enumerate() {
        let cms: Api<ConfigMap> =
            Api::namespaced(fleet.cluster(cluster).await?, &format!("heal-{i}"));
        cms.patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"color": "red"}})),
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(7)).await;
    for (i, cluster) in ["cluster-001", "cluster-002"].iter().enumerate() {
        let c = fleet
            .sim
            .in_process()?
            .cluster(cluster)
            .context("cluster")?;
        let by_controllers = c
            .log
            .since(marks[*cluster])
            .into_iter()
            .filter(|r| r.is_write() && replica_of(&r.user_agent).is_some())
            .count();
        ensure!(
            by_controllers == 0,
            "{cluster}: {by_controllers} writes while fenced"
        );
        let cms: Api<ConfigMap> =
            Api::namespaced(fleet.cluster(cluster).await?, &format!("heal-{i}"));
        let cm = cms.get("settings").await?;
        ensure!(
            cm.data.and_then(|d| d.get("color").cloned()).as_deref() == Some("red"),
            "the drift is left alone while fenced"
        );
    }

    // Back: the replicas rejoin, take the clusters again, and heal the drift.
    control.faults.set(&FaultSpec::default());
    let deadline = Instant::now() + Duration::from_secs(LEASE_SECONDS * 3);
    for (i, cluster) in ["cluster-001", "cluster-002"].iter().enumerate() {
        let cms: Api<ConfigMap> =
            Api::namespaced(fleet.cluster(cluster).await?, &format!("heal-{i}"));
        loop {
            let color = cms
                .get("settings")
                .await?
                .data
                .and_then(|d| d.get("color").cloned());
            if color.as_deref() == Some("blue") {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{cluster}: drift not healed after recovery"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut fenced = 0.0;
    for id in &ids {
        fenced += metric_value(
            &fleet.metrics_of(id).await?,
            "flotilla_shard_fenced_total",
            &[],
        );
    }
    ensure!(fenced >= 2.0, "each replica counted its fencing: {fenced}");
    let _ = &mut fleet;
    Ok(())
}

fn log_marks_of(fleet: &Fleet, names: &[&str]) -> Result<HashMap<String, u64>> {
    names
        .iter()
        .map(|n| {
            let c = fleet.sim.in_process()?.cluster(n).context("cluster")?;
            Ok((
                n.to_string(),
                c.log.since(0).last().map(|r| r.seq).unwrap_or(0),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_secret_shard_pins_the_cluster_to_that_replica() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        clusters: 6,
        controllers: 3,
        lease_duration_seconds: LEASE_SECONDS,
        lease_renew_seconds: 1.0,
        ..Default::default()
    })
    .await?;
    let started = Instant::now();
    let (owners, _) = wait_settled(&fleet, Duration::from_secs(30)).await?;
    println!("settled after {:?}", started.elapsed());
    let server = fleet.server("cluster-001")?;
    let before = owners.get(&server).cloned().context("cluster-001 owned")?;
    // Pin it to a replica that does not own it now (replicas are controller-0..2: shard N is
    // the replica whose identity ends in -N, like a StatefulSet's ordinal).
    let target = (0..3)
        .map(|n| format!("controller-{n}"))
        .find(|id| *id != before)
        .context("another replica")?;
    let shard = target.trim_start_matches("controller-").to_string();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(fleet.control().clone(), NS);
    let pin = |name: &'static str, shard: String| {
        let secrets = secrets.clone();
        async move {
            secrets
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"stringData": {"shard": shard}})),
                )
                .await
        }
    };
    pin("cluster-cluster-001", shard).await?;
    // A pin to a shard no replica serves is ignored: the cluster stays managed.
    pin("cluster-cluster-002", "7".into()).await?;
    let deadline = Instant::now() + Duration::from_secs(LEASE_SECONDS + 30);
    loop {
        let (owners, _) = wait_settled(&fleet, Duration::from_secs(30)).await?;
        if owners.get(&server) == Some(&target) {
            println!("pinned after {:?}", started.elapsed());
            ensure!(
                owners.contains_key(&fleet.server("cluster-002")?),
                "a pin to a missing shard leaves the cluster managed: {owners:?}"
            );
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "cluster-001 did not move to {target}: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A bad shard value is a clear error for that cluster, not a silent default.
    pin("cluster-cluster-003", "one".into()).await?;
    let status = fleet.controller_status(&target).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = status.to_string();
    while !last.contains("is not a shard number") {
        ensure!(
            Instant::now() < deadline,
            "no error for shard \"one\": {last}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        last = fleet.controller_status(&target).await?.to_string();
    }
    Ok(())
}
