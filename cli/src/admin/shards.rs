//! `flotilla admin shards`: the controller replicas from their shard Leases and what each owns.
//!
//! Everything is read from the control plane: the group's Leases (claims published by the
//! claim protocol, see `flotilla-sharding`), the Argo CD cluster Secrets (destinations, `shard`
//! pins) and the Applications (counted per destination). Liveness here is judged from each
//! Lease's own `renewTime` and `leaseDurationSeconds` against this machine's clock — a one-shot
//! command cannot watch resourceVersions the way the replicas do, so a large clock skew between
//! this machine and the controllers shows up as a wrong LIVE column.

use std::collections::{BTreeMap, BTreeSet};

use clap::Args;
use flotilla_controller::clusters::{Cluster, IN_CLUSTER_SERVER, Registry};
use flotilla_sharding::claims::{decode_claims, key_id};
use flotilla_sharding::membership::{CLAIMS_ANNOTATION, GROUP_LABEL, STATUS_ADDRESS_ANNOTATION};
use flotilla_sharding::ring::Ring;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DynamicObject, ListParams};
use serde::Serialize;
use serde_json::Value;

use super::backup::{list_all, resource};
use super::{AdminError, KubeArgs};
use crate::output::{Format, render_value, table};

/// Label of Argo CD's cluster Secrets.
const CLUSTER_SECRET_SELECTOR: &str = "argocd.argoproj.io/secret-type=cluster";
/// A Lease without `leaseDurationSeconds` (never written so by Flotilla): the default.
const DEFAULT_LEASE_SECONDS: i64 = 10;

/// The long help of `shards` (the subcommand's one-line summary lives in `mod.rs`).
const SHARDS_HELP: &str = "\
One row per replica (one shard Lease of the group):
  LIVE    its Lease was renewed within its leaseDurationSeconds (by the Lease's renewTime
          and this machine's clock)
  HELD    clusters it alone claims; a replica that is not live holds nothing
  APPS    Applications whose destination is one of those clusters
  PINNED  of those, clusters a cluster Secret's `shard` pins to it
-o wide adds when each Lease was renewed and the clusters; -o json|yaml prints everything
(per-cluster applications, pins, stale claims) for scripts.

Extra rows:
  UNOWNED   clusters no live replica claims (just after a replica died, before a survivor
            took over; or nobody runs). Claims of expired Leases are listed as claimedBy.
  HANDOVER  clusters two live replicas claim: the new owner waits until the old owner's
            writes drained. The Leases cannot tell this from two owners, so a HANDOVER row
            that persists is a bug.

The in-cluster destination (https://kubernetes.default.svc) is listed when a Lease claims it
(the controllers offer it unless run with --no-in-cluster) or a cluster Secret names it.

Exit status: 0 every cluster is held by exactly one live replica; 1 a cluster is unowned or
claimed by two live replicas (re-run a few seconds later to tell a hand-over from a stuck
fleet), or the control plane could not be read; 2 bad usage.";

#[derive(Debug, Args)]
#[command(after_help = SHARDS_HELP)]
pub struct ShardsArgs {
    /// The replica group (the controllers' `--shard-group`).
    #[arg(long, default_value = "flotilla-controller")]
    pub group: String,
    /// Count Applications in every namespace (controllers run with --application-namespaces),
    /// not only in --namespace.
    #[arg(long)]
    pub all_namespaces: bool,
}

/// A destination cluster as the survey shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    pub name: String,
    pub server: String,
    pub applications: usize,
    /// The cluster Secret's `shard`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// The live replica the pin resolves to (the ring's rule: the identity ending in `-<shard>`,
    /// else the n-th live member by name); `None` when no live replica serves that shard (the
    /// pin is then ignored by the controllers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_to: Option<String>,
    /// Live replicas claiming it (HANDOVER rows), or replicas whose expired Leases still claim
    /// it (UNOWNED rows).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub claimed_by: Vec<String>,
}

/// One replica (one Lease of the group).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaInfo {
    pub identity: String,
    pub lease: String,
    pub live: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    /// Seconds since `renewTime` on this machine's clock (negative: in the future).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewed_seconds_ago: Option<f64>,
    pub lease_duration_seconds: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_address: Option<String>,
    /// Clusters this live replica alone claims.
    pub clusters: Vec<ClusterInfo>,
    pub held: usize,
    pub applications: usize,
    /// Held clusters pinned to this replica by their Secret's `shard`.
    pub pinned: usize,
    /// Everything its Lease claims (clusters held, pending or draining), by id.
    pub claims: usize,
    /// Claimed ids that match no registered cluster (a cluster Secret deleted since).
    pub unknown_claims: usize,
}

/// What `shards` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Survey {
    pub namespace: String,
    pub group: String,
    pub replicas: Vec<ReplicaInfo>,
    pub unowned: Vec<ClusterInfo>,
    pub handover: Vec<ClusterInfo>,
    /// Registered destination clusters.
    pub clusters: usize,
    pub applications: usize,
    /// Applications whose destination is no registered cluster.
    pub unresolved_applications: usize,
    /// Cluster Secrets that could not be used (why).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_cluster_secrets: Vec<String>,
    /// Every cluster held by exactly one live replica.
    pub ok: bool,
}

fn lease_identity(l: &Lease) -> Option<(String, String)> {
    let name = l.metadata.name.clone()?;
    let identity = l
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| name.clone());
    Some((name, identity))
}

fn lease_claims(l: &Lease) -> BTreeSet<String> {
    l.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLAIMS_ANNOTATION))
        .map(|v| decode_claims(v))
        .unwrap_or_default()
}

/// Survey the group from what was read: its Leases, the cluster Secrets and the Applications,
/// at `now`. Pure.
pub fn survey(
    namespace: &str,
    group: &str,
    leases: &[Lease],
    secrets: &[Secret],
    apps: &[Value],
    now: jiff::Timestamp,
) -> Survey {
    let leases: Vec<&Lease> = leases
        .iter()
        .filter(|l| {
            l.metadata
                .labels
                .as_ref()
                .and_then(|m| m.get(GROUP_LABEL))
                .is_some_and(|g| g == group)
        })
        .collect();
    // The implicit in-cluster destination exists when the controllers offer it: then they
    // share it out like any other, so some Lease claims it.
    let in_cluster_id = key_id(IN_CLUSTER_SERVER);
    let in_cluster = leases
        .iter()
        .any(|l| lease_claims(l).contains(&in_cluster_id))
        .then(Cluster::in_cluster);
    let registry = Registry::from_secrets(secrets, in_cluster);

    // Applications per cluster server.
    let mut per_cluster: BTreeMap<String, usize> = BTreeMap::new();
    let mut unresolved = 0;
    for a in apps {
        let dest = &a["spec"]["destination"];
        match registry.resolve(dest["server"].as_str(), dest["name"].as_str()) {
            Some(c) => *per_cluster.entry(c.server.clone()).or_default() += 1,
            None => unresolved += 1,
        }
    }

    struct Seen {
        name: String,
        identity: String,
        live: bool,
        renewed: Option<jiff::Timestamp>,
        duration: i64,
        address: Option<String>,
        claims: BTreeSet<String>,
    }
    let mut seen: Vec<Seen> = leases
        .iter()
        .filter_map(|l| {
            let (name, identity) = lease_identity(l)?;
            let spec = l.spec.as_ref();
            let renewed = spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0);
            let duration = spec
                .and_then(|s| s.lease_duration_seconds)
                .map(i64::from)
                .unwrap_or(DEFAULT_LEASE_SECONDS);
            // Renewed within its duration; a renewal in the future (clock skew) counts as live.
            let live =
                renewed.is_some_and(|t| now.duration_since(t).as_secs_f64() < duration as f64);
            Some(Seen {
                name,
                identity,
                live,
                renewed,
                duration,
                address: l
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(STATUS_ADDRESS_ANNOTATION))
                    .filter(|a| !a.is_empty())
                    .cloned(),
                claims: lease_claims(l),
            })
        })
        .collect();
    seen.sort_by(|a, b| a.identity.cmp(&b.identity).then(a.name.cmp(&b.name)));

    // Pins resolve over the live members exactly as the controllers' ring does.
    let live_ids: BTreeSet<String> = seen
        .iter()
        .filter(|s| s.live)
        .map(|s| s.identity.clone())
        .collect();
    let ring = Ring::new(live_ids.iter().cloned(), 1);

    let info = |c: &Cluster, claimed_by: Vec<String>| ClusterInfo {
        name: c.name.clone(),
        server: c.server.clone(),
        applications: per_cluster.get(&c.server).copied().unwrap_or(0),
        shard: c.shard,
        pinned_to: c
            .shard
            .and_then(|n| ring.member_for_shard(n))
            .map(str::to_string),
        claimed_by,
    };

    let mut held_by: BTreeMap<String, Vec<ClusterInfo>> = BTreeMap::new();
    let mut unowned = Vec::new();
    let mut handover = Vec::new();
    let mut known_ids = BTreeSet::new();
    for c in registry.clusters() {
        let id = key_id(&c.server);
        known_ids.insert(id.clone());
        let live: Vec<String> = seen
            .iter()
            .filter(|s| s.live && s.claims.contains(&id))
            .map(|s| s.identity.clone())
            .collect();
        match live.len() {
            0 => {
                let stale = seen
                    .iter()
                    .filter(|s| !s.live && s.claims.contains(&id))
                    .map(|s| s.identity.clone())
                    .collect();
                unowned.push(info(c, stale));
            }
            1 => held_by
                .entry(live[0].clone())
                .or_default()
                .push(info(c, Vec::new())),
            _ => handover.push(info(c, live)),
        }
    }

    let replicas: Vec<ReplicaInfo> = seen
        .iter()
        .map(|s| {
            let clusters = if s.live {
                held_by.get(&s.identity).cloned().unwrap_or_default()
            } else {
                Vec::new()
            };
            ReplicaInfo {
                identity: s.identity.clone(),
                lease: s.name.clone(),
                live: s.live,
                renew_time: s.renewed.map(|t| t.to_string()),
                renewed_seconds_ago: s
                    .renewed
                    .map(|t| (now.duration_since(t).as_secs_f64() * 10.0).round() / 10.0),
                lease_duration_seconds: s.duration,
                status_address: s.address.clone(),
                held: clusters.len(),
                applications: clusters.iter().map(|c| c.applications).sum(),
                pinned: clusters
                    .iter()
                    .filter(|c| c.pinned_to.as_deref() == Some(s.identity.as_str()))
                    .count(),
                claims: s.claims.len(),
                unknown_claims: s.claims.difference(&known_ids).count(),
                clusters,
            }
        })
        .collect();

    Survey {
        namespace: namespace.to_string(),
        group: group.to_string(),
        ok: unowned.is_empty() && handover.is_empty(),
        clusters: registry.len(),
        applications: apps.len(),
        unresolved_applications: unresolved,
        invalid_cluster_secrets: registry.errors.iter().map(|e| e.to_string()).collect(),
        replicas,
        unowned,
        handover,
    }
}

fn names(cs: &[ClusterInfo], with_claimants: bool) -> String {
    cs.iter()
        .map(|c| {
            if with_claimants && !c.claimed_by.is_empty() {
                format!("{} ({})", c.name, c.claimed_by.join(","))
            } else {
                c.name.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The survey as a table (`wide`: renewal age and cluster names).
pub fn render_table(s: &Survey, wide: bool) -> String {
    let mut header = vec!["REPLICA", "LIVE", "HELD", "APPS", "PINNED"];
    if wide {
        header.extend(["RENEWED", "CLUSTERS"]);
    }
    let mut rows: Vec<Vec<String>> = s
        .replicas
        .iter()
        .map(|r| {
            let mut row = vec![
                r.identity.clone(),
                if r.live { "yes" } else { "no" }.to_string(),
                r.held.to_string(),
                r.applications.to_string(),
                r.pinned.to_string(),
            ];
            if wide {
                row.push(
                    r.renewed_seconds_ago
                        .map(|a| format!("{}s ago", a.round() as i64))
                        .unwrap_or_else(|| "never".into()),
                );
                row.push(names(&r.clusters, false));
            }
            row
        })
        .collect();
    for (label, cs) in [("UNOWNED", &s.unowned), ("HANDOVER", &s.handover)] {
        if cs.is_empty() {
            continue;
        }
        let mut row = vec![
            label.to_string(),
            "-".into(),
            cs.len().to_string(),
            cs.iter().map(|c| c.applications).sum::<usize>().to_string(),
            cs.iter().filter(|c| c.shard.is_some()).count().to_string(),
        ];
        if wide {
            row.push("-".into());
            row.push(names(cs, true));
        }
        rows.push(row);
    }
    table(&header, &rows)
}

/// Read the group's Leases, the cluster Secrets and the Applications, print the survey; exit 1
/// when a cluster is unowned or claimed twice.
pub async fn run(args: ShardsArgs, kube: &KubeArgs, format: Format) -> Result<u8, AdminError> {
    let client = kube.client().await?;
    let ns = kube.namespace.as_str();
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let leases = leases
        .list(&ListParams::default().labels(&format!("{GROUP_LABEL}={}", args.group)))
        .await?
        .items;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secrets = secrets
        .list(&ListParams::default().labels(CLUSTER_SECRET_SELECTOR))
        .await?
        .items;
    let ar = resource("Application").ok_or_else(|| AdminError::Invalid("no kind".into()))?;
    let apps: Api<DynamicObject> = if args.all_namespaces {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), ns, &ar)
    };
    let apps = list_all(&apps, &ListParams::default())
        .await
        .map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 404 => AdminError::Kube(format!(
                "listing Applications: {e} (is the Application CRD installed?)"
            )),
            _ => AdminError::from(e),
        })?;
    let apps: Vec<Value> = apps.into_iter().map(|a| a.data).collect();
    let s = survey(
        ns,
        &args.group,
        &leases,
        &secrets,
        &apps,
        jiff::Timestamp::now(),
    );
    match format {
        Format::Json | Format::Yaml => {
            let v = serde_json::to_value(&s).map_err(|e| AdminError::Io(e.to_string()))?;
            println!("{}", render_value(&v, format).trim_end());
        }
        Format::Table | Format::Wide => {
            if s.replicas.is_empty() {
                eprintln!(
                    "no Leases of group {:?} in namespace {ns:?} (is --group or --namespace right?)",
                    args.group
                );
            }
            println!("{}", render_table(&s, format == Format::Wide));
        }
    }
    for e in &s.invalid_cluster_secrets {
        eprintln!("warning: ignoring cluster Secret: {e}");
    }
    if s.unresolved_applications > 0 {
        eprintln!(
            "note: {} application(s) name a destination that is no registered cluster",
            s.unresolved_applications
        );
    }
    if s.ok {
        Ok(0)
    } else {
        eprintln!(
            "{} of {} cluster(s) unowned, {} claimed by two live replicas",
            s.unowned.len(),
            s.clusters,
            s.handover.len()
        );
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use serde_json::json;

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).expect("ts")
    }

    fn lease(identity: &str, renewed: i64, claims: &[&str]) -> Lease {
        let mut l = Lease::default();
        l.metadata.name = Some(format!("flotilla-controller-{identity}"));
        l.metadata.labels = Some([(GROUP_LABEL.to_string(), "flotilla-controller".into())].into());
        l.metadata.annotations = Some(
            [(
                CLAIMS_ANNOTATION.to_string(),
                flotilla_sharding::claims::encode_claims(
                    &claims.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                ),
            )]
            .into(),
        );
        l.spec = Some(LeaseSpec {
            holder_identity: Some(identity.into()),
            lease_duration_seconds: Some(10),
            renew_time: Some(MicroTime(ts(renewed))),
            ..Default::default()
        });
        l
    }

    fn secret(name: &str, server: &str, shard: Option<&str>) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(format!("cluster-{name}"));
        let mut data: BTreeMap<String, ByteString> = [
            ("name".to_string(), ByteString(name.as_bytes().to_vec())),
            ("server".to_string(), ByteString(server.as_bytes().to_vec())),
        ]
        .into();
        if let Some(n) = shard {
            data.insert("shard".into(), ByteString(n.as_bytes().to_vec()));
        }
        s.data = Some(data);
        s
    }

    fn app(dest: Value) -> Value {
        json!({"spec": {"destination": dest}})
    }

    #[test]
    fn replicas_hold_what_they_alone_claim_and_the_rest_is_reported() {
        let secrets = vec![
            secret("a", "https://a", None),
            secret("b", "https://b", Some("1")),
            secret("c", "https://c", None),
            secret("d", "https://d", None),
            secret("e", "https://e", None),
        ];
        let leases = vec![
            lease("c-0", 100, &["https://a", "https://c", IN_CLUSTER_SERVER]),
            lease("c-1", 105, &["https://b", "https://c"]),
            // Expired: its claim on d is stale.
            lease("c-2", 90, &["https://d", "https://gone"]),
        ];
        let apps = vec![
            app(json!({"server": "https://a"})),
            app(json!({"name": "a"})),
            app(json!({"name": "b"})),
            app(json!({"server": "https://d/"})),
            app(json!({"name": "in-cluster"})),
            app(json!({"name": "nowhere"})),
        ];
        let s = survey(
            "argocd",
            "flotilla-controller",
            &leases,
            &secrets,
            &apps,
            ts(108),
        );
        assert_eq!(s.clusters, 6, "five Secrets and the claimed in-cluster");
        assert_eq!(
            s.replicas
                .iter()
                .map(|r| (r.identity.as_str(), r.live))
                .collect::<Vec<_>>(),
            vec![("c-0", true), ("c-1", true), ("c-2", false)]
        );
        let r0 = &s.replicas[0];
        assert_eq!((r0.held, r0.applications, r0.pinned), (2, 3, 0));
        assert_eq!(
            r0.clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            vec!["a", "in-cluster"]
        );
        let r1 = &s.replicas[1];
        assert_eq!(
            (r1.held, r1.applications, r1.pinned),
            (1, 1, 1),
            "b is pinned to shard 1"
        );
        assert_eq!(r1.clusters[0].pinned_to.as_deref(), Some("c-1"));
        let r2 = &s.replicas[2];
        assert_eq!((r2.held, r2.claims, r2.unknown_claims), (0, 2, 1));
        assert_eq!(
            s.unowned
                .iter()
                .map(|c| (c.name.as_str(), c.claimed_by.clone()))
                .collect::<Vec<_>>(),
            vec![("d", vec!["c-2".to_string()]), ("e", vec![])]
        );
        assert_eq!(s.unowned[0].applications, 1);
        assert_eq!(s.handover.len(), 1);
        assert_eq!(s.handover[0].claimed_by, vec!["c-0", "c-1"]);
        assert_eq!(s.unresolved_applications, 1);
        assert!(!s.ok);
        let held: usize = s.replicas.iter().map(|r| r.held).sum();
        assert_eq!(held + s.unowned.len() + s.handover.len(), s.clusters);

        let t = render_table(&s, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "REPLICA   LIVE  HELD  APPS  PINNED");
        assert_eq!(lines[1], "c-0       yes   2     3     0");
        assert_eq!(lines[3], "c-2       no    0     0     0");
        assert_eq!(lines[4], "UNOWNED   -     2     1     0");
        assert_eq!(lines[5], "HANDOVER  -     1     0     0");
        let w = render_table(&s, true);
        assert!(
            w.lines()
                .nth(1)
                .is_some_and(|l| l.ends_with("8s ago   a,in-cluster")),
            "{w}"
        );
        assert!(
            w.lines().nth(4).is_some_and(|l| l.ends_with("d (c-2),e")),
            "{w}"
        );
        assert!(
            w.lines().nth(5).is_some_and(|l| l.ends_with("c (c-0,c-1)")),
            "{w}"
        );
    }

    #[test]
    fn a_settled_fleet_is_ok_and_other_groups_and_unclaimed_in_cluster_are_left_out() {
        let secrets = vec![
            secret("a", "https://a", None),
            secret("b", "https://b", None),
        ];
        let mut other = lease("x-0", 100, &["https://a"]);
        other.metadata.labels = Some([(GROUP_LABEL.to_string(), "other".into())].into());
        let leases = vec![
            lease("c-0", 100, &["https://a"]),
            lease("c-1", 100, &["https://b"]),
            other,
        ];
        let s = survey(
            "argocd",
            "flotilla-controller",
            &leases,
            &secrets,
            &[],
            ts(109),
        );
        assert!(s.ok, "{s:?}");
        assert_eq!(s.clusters, 2);
        assert_eq!(s.replicas.len(), 2);
        // Exactly its duration later the Leases have expired.
        let s = survey(
            "argocd",
            "flotilla-controller",
            &leases,
            &secrets,
            &[],
            ts(110),
        );
        assert!(s.replicas.iter().all(|r| !r.live && r.held == 0));
        assert_eq!(s.unowned.len(), 2);
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["unowned"][0]["claimedBy"], json!(["c-0"]));
        assert_eq!(v["replicas"][0]["leaseDurationSeconds"], 10);
        assert_eq!(v["ok"], false);
    }
}
