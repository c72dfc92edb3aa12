//! The comparison of desired objects (from Git) with the live objects an app owns, and the
//! plan of a sync: what to apply in which order (sync wave, then kind) and what to prune.
//! Pure: objects in, statuses and steps out; the executor lives in `sync`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use crate::diff::diff;
use crate::health::{self, Health, HealthCode};
use crate::tracking::{ResourceKey, group_version};

/// Argo CD's annotations read here.
pub const SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
pub const HOOK_ANNOTATION: &str = "argocd.argoproj.io/hook";
pub const SYNC_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/sync-options";

/// Per-resource and app-level sync status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCode {
    Synced,
    OutOfSync,
    Unknown,
}

impl SyncCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "Synced",
            Self::OutOfSync => "OutOfSync",
            Self::Unknown => "Unknown",
        }
    }
}

/// One managed resource: what Git wants, what is live, and how they compare.
#[derive(Debug, Clone)]
pub struct ResourceState {
    pub key: ResourceKey,
    /// API version (`v1`, `apps/v1`) to apply and watch it with.
    pub api_version: String,
    pub desired: Option<Value>,
    pub live: Option<Arc<Value>>,
    pub sync: SyncCode,
    pub health: Option<Health>,
    /// Live, ours, and no longer in Git.
    pub requires_pruning: bool,
    /// JSON paths that differ (for messages and logs).
    pub differences: Vec<String>,
}

/// The comparison of one app.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Sorted by key.
    pub resources: Vec<ResourceState>,
    pub sync: SyncCode,
    pub health: HealthCode,
    /// Problems with the desired set that do not stop the comparison (duplicates).
    pub warnings: Vec<String>,
}

impl Comparison {
    pub fn desired_count(&self) -> usize {
        self.resources
            .iter()
            .filter(|r| r.desired.is_some())
            .count()
    }
    pub fn live_count(&self) -> usize {
        self.resources.iter().filter(|r| r.live.is_some()).count()
    }
}

fn annotation<'a>(obj: &'a Value, name: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(name))
        .and_then(Value::as_str)
}

/// Whether an object is an Argo CD hook (run by the sync phases, not managed as a resource).
pub fn is_hook(obj: &Value) -> bool {
    annotation(obj, HOOK_ANNOTATION).is_some()
}

/// Whether `argocd.argoproj.io/sync-options` on `obj` holds `Name=value`.
pub fn has_sync_option(obj: &Value, name: &str, value: &str) -> bool {
    annotation(obj, SYNC_OPTIONS_ANNOTATION).is_some_and(|opts| {
        opts.split(',')
            .any(|o| o.trim().split_once('=') == Some((name, value)))
    })
}

/// The sync wave of an object (default 0; unparsable counts as 0).
pub fn wave(obj: &Value) -> i64 {
    annotation(obj, SYNC_WAVE_ANNOTATION)
        .and_then(|w| w.trim().parse().ok())
        .unwrap_or(0)
}

/// Argo CD's apply order of kinds within a wave; unknown kinds come after these.
const KIND_ORDER: [&str; 35] = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
];

fn kind_rank(kind: &str) -> usize {
    KIND_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KIND_ORDER.len())
}

/// Compare `desired` (normalized: final namespace, tracking stamped; hooks already removed)
/// with the `live` objects the app owns. `manager` is our field manager.
pub fn compare(
    desired: &[Value],
    live: &BTreeMap<ResourceKey, Arc<Value>>,
    manager: &str,
) -> Comparison {
    let mut warnings = Vec::new();
    let mut by_key: BTreeMap<ResourceKey, (String, Value)> = BTreeMap::new();
    for obj in desired {
        let Some(key) = ResourceKey::of(obj) else {
            continue;
        };
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if by_key.contains_key(&key) {
            warnings.push(format!("{key} appears more than once; the first is used"));
            continue;
        }
        by_key.insert(key, (api_version, obj.clone()));
    }
    // An extraneous object already being deleted is on its way out: not ours to act on again.
    let terminating = |k: &ResourceKey| {
        live.get(k)
            .is_some_and(|l| l.pointer("/metadata/deletionTimestamp").is_some())
    };
    let keys: BTreeSet<&ResourceKey> = by_key
        .keys()
        .chain(
            live.keys()
                .filter(|k| by_key.contains_key(*k) || !terminating(k)),
        )
        .collect();
    let mut resources = Vec::with_capacity(keys.len());
    for key in keys {
        let live_obj = live.get(key).cloned();
        let state = match by_key.get(key) {
            Some((api_version, d)) => {
                let differences = diff(d, live_obj.as_deref(), manager).differences;
                ResourceState {
                    key: key.clone(),
                    api_version: api_version.clone(),
                    desired: Some(d.clone()),
                    sync: if differences.is_empty() {
                        SyncCode::Synced
                    } else {
                        SyncCode::OutOfSync
                    },
                    health: Some(health::assess(&key.group, &key.kind, live_obj.as_deref())),
                    live: live_obj,
                    requires_pruning: false,
                    differences,
                }
            }
            None => {
                let api_version = live_obj
                    .as_deref()
                    .and_then(|l| l.get("apiVersion"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                ResourceState {
                    key: key.clone(),
                    api_version,
                    desired: None,
                    sync: SyncCode::OutOfSync,
                    health: None,
                    live: live_obj,
                    requires_pruning: true,
                    differences: vec!["(not in Git)".into()],
                }
            }
        };
        resources.push(state);
    }
    let sync = if resources.iter().all(|r| r.sync == SyncCode::Synced) {
        SyncCode::Synced
    } else {
        SyncCode::OutOfSync
    };
    let health = health::aggregate(
        resources
            .iter()
            .filter_map(|r| r.health.as_ref().map(|h| &h.code))
            .collect::<Vec<_>>(),
    );
    Comparison {
        resources,
        sync,
        health,
        warnings,
    }
}

/// What a sync operation asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncRequest {
    pub prune: bool,
    /// `ApplyOutOfSyncOnly=true`: skip resources already Synced.
    pub out_of_sync_only: bool,
    /// A selective sync: only these (group, kind, name); empty = all.
    pub only: Vec<(String, String, String)>,
}

/// One apply step.
#[derive(Debug, Clone)]
pub struct ApplyStep {
    pub wave: i64,
    pub key: ResourceKey,
    pub api_version: String,
    pub object: Value,
}

/// One prune step.
#[derive(Debug, Clone)]
pub struct PruneStep {
    pub wave: i64,
    pub key: ResourceKey,
    pub api_version: String,
}

/// The ordered work of a sync.
#[derive(Debug, Clone, Default)]
pub struct SyncPlan {
    pub applies: Vec<ApplyStep>,
    pub prunes: Vec<PruneStep>,
    /// Resources that need pruning but were left (prune disabled, or `Prune=false`).
    pub prune_skipped: Vec<ResourceKey>,
}

fn selected(req: &SyncRequest, key: &ResourceKey) -> bool {
    req.only.is_empty()
        || req
            .only
            .iter()
            .any(|(g, k, n)| *g == key.group && *k == key.kind && *n == key.name)
}

/// Plan a sync of `cmp`: applies by (wave, kind order, key); prunes after, in reverse order.
pub fn plan_sync(cmp: &Comparison, req: &SyncRequest) -> SyncPlan {
    let mut plan = SyncPlan::default();
    for r in cmp.resources.iter().filter(|r| selected(req, &r.key)) {
        if let Some(d) = &r.desired {
            if req.out_of_sync_only && r.sync == SyncCode::Synced {
                continue;
            }
            plan.applies.push(ApplyStep {
                wave: wave(d),
                key: r.key.clone(),
                api_version: r.api_version.clone(),
                object: d.clone(),
            });
        } else if r.requires_pruning {
            let live = r.live.as_deref();
            let keep = live.is_some_and(|l| has_sync_option(l, "Prune", "false"));
            if req.prune && !keep {
                plan.prunes.push(PruneStep {
                    wave: live.map(wave).unwrap_or(0),
                    key: r.key.clone(),
                    api_version: r.api_version.clone(),
                });
            } else {
                plan.prune_skipped.push(r.key.clone());
            }
        }
    }
    plan.applies.sort_by(|a, b| {
        (a.wave, kind_rank(&a.key.kind), &a.key).cmp(&(b.wave, kind_rank(&b.key.kind), &b.key))
    });
    plan.prunes.sort_by(|a, b| {
        (b.wave, kind_rank(&b.key.kind), &b.key).cmp(&(a.wave, kind_rank(&a.key.kind), &a.key))
    });
    plan
}

/// Group and version of a resource state's API version.
pub fn gv(api_version: &str) -> (&str, &str) {
    group_version(api_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::FIELD_MANAGER;
    use serde_json::json;

    fn mk(kind: &str, api: &str, name: &str, extra: Value) -> Value {
        let mut o = json!({"apiVersion": api, "kind": kind,
            "metadata": {"name": name, "namespace": "dev"}, "data": {"a": "1"}});
        if let (Some(m), Value::Object(e)) = (o.as_object_mut(), extra) {
            m.extend(e);
        }
        o
    }

    fn live_of(objs: &[Value]) -> BTreeMap<ResourceKey, Arc<Value>> {
        objs.iter()
            .filter_map(|o| Some((ResourceKey::of(o)?, Arc::new(o.clone()))))
            .collect()
    }

    #[test]
    fn equal_objects_are_synced_and_healthy() {
        let cm = mk("ConfigMap", "v1", "a", json!({}));
        let live = live_of(std::slice::from_ref(&cm));
        let c = compare(&[cm], &live, FIELD_MANAGER);
        assert_eq!(c.sync, SyncCode::Synced);
        assert_eq!(c.health, HealthCode::Healthy);
        assert!(!c.resources[0].requires_pruning);
    }

    #[test]
    fn missing_changed_and_extra_objects() {
        let a = mk("ConfigMap", "v1", "a", json!({}));
        let b = mk("ConfigMap", "v1", "b", json!({}));
        let mut a_live = a.clone();
        a_live["data"]["a"] = json!("2");
        let old = mk("ConfigMap", "v1", "old", json!({}));
        let c = compare(&[a, b], &live_of(&[a_live, old]), FIELD_MANAGER);
        assert_eq!(c.sync, SyncCode::OutOfSync);
        let by_name: BTreeMap<_, _> = c
            .resources
            .iter()
            .map(|r| (r.key.name.as_str(), r))
            .collect();
        assert_eq!(by_name["a"].differences, [".data.a"]);
        assert_eq!(
            by_name["b"].health.as_ref().map(|h| h.code),
            Some(HealthCode::Missing)
        );
        assert!(by_name["old"].requires_pruning && by_name["old"].health.is_none());
        assert_eq!(c.health, HealthCode::Missing);
    }

    #[test]
    fn an_extraneous_object_being_deleted_is_left_out() {
        let mut going = mk("ConfigMap", "v1", "going", json!({}));
        going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let c = compare(&[], &live_of(&[going]), FIELD_MANAGER);
        assert!(c.resources.is_empty());
        assert_eq!(c.sync, SyncCode::Synced);
    }

    #[test]
    fn duplicates_warn_and_keep_the_first() {
        let a = mk("ConfigMap", "v1", "a", json!({}));
        let mut a2 = a.clone();
        a2["data"]["a"] = json!("other");
        let c = compare(&[a, a2], &BTreeMap::new(), FIELD_MANAGER);
        assert_eq!(c.resources.len(), 1);
        assert_eq!(
            c.resources[0]
                .desired
                .as_ref()
                .map(|d| d["data"]["a"].clone()),
            Some(json!("1"))
        );
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn plan_orders_by_wave_then_kind_and_prunes_last_in_reverse() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}});
        let deploy = mk("Deployment", "apps/v1", "web", json!({}));
        let cm = mk("ConfigMap", "v1", "cfg", json!({}));
        let late = mk(
            "ConfigMap",
            "v1",
            "late",
            json!({"metadata": {"name": "late", "namespace": "dev",
                "annotations": {SYNC_WAVE_ANNOTATION: "5"}}}),
        );
        let early = mk(
            "Deployment",
            "apps/v1",
            "early",
            json!({"metadata": {"name": "early", "namespace": "dev",
                "annotations": {SYNC_WAVE_ANNOTATION: "-1"}}}),
        );
        let gone_svc = mk("Service", "v1", "gone", json!({}));
        let gone_cm = mk("ConfigMap", "v1", "gone", json!({}));
        let c = compare(
            &[deploy, cm, late, ns, early],
            &live_of(&[gone_svc, gone_cm]),
            FIELD_MANAGER,
        );
        let plan = plan_sync(
            &c,
            &SyncRequest {
                prune: true,
                ..Default::default()
            },
        );
        let order: Vec<_> = plan
            .applies
            .iter()
            .map(|s| format!("{}:{}", s.key.kind, s.key.name))
            .collect();
        assert_eq!(
            order,
            [
                "Deployment:early",
                "Namespace:dev",
                "ConfigMap:cfg",
                "Deployment:web",
                "ConfigMap:late"
            ]
        );
        let prunes: Vec<_> = plan.prunes.iter().map(|p| p.key.kind.as_str()).collect();
        assert_eq!(prunes, ["Service", "ConfigMap"]);
    }

    #[test]
    fn prune_only_when_asked_and_not_when_the_object_says_no() {
        let keep = mk(
            "ConfigMap",
            "v1",
            "keep",
            json!({"metadata": {"name": "keep", "namespace": "dev",
                "annotations": {SYNC_OPTIONS_ANNOTATION: "Prune=false"}}}),
        );
        let gone = mk("ConfigMap", "v1", "gone", json!({}));
        let c = compare(&[], &live_of(&[keep, gone]), FIELD_MANAGER);
        let no = plan_sync(&c, &SyncRequest::default());
        assert!(no.prunes.is_empty());
        assert_eq!(no.prune_skipped.len(), 2);
        let yes = plan_sync(
            &c,
            &SyncRequest {
                prune: true,
                ..Default::default()
            },
        );
        assert_eq!(yes.prunes.len(), 1);
        assert_eq!(yes.prunes[0].key.name, "gone");
        assert_eq!(yes.prune_skipped.len(), 1);
    }

    #[test]
    fn selective_and_out_of_sync_only_syncs() {
        let a = mk("ConfigMap", "v1", "a", json!({}));
        let b = mk("ConfigMap", "v1", "b", json!({}));
        let c = compare(&[a.clone(), b], &live_of(&[a]), FIELD_MANAGER);
        let oos = plan_sync(
            &c,
            &SyncRequest {
                out_of_sync_only: true,
                ..Default::default()
            },
        );
        assert_eq!(oos.applies.len(), 1);
        assert_eq!(oos.applies[0].key.name, "b");
        let only = plan_sync(
            &c,
            &SyncRequest {
                only: vec![("".into(), "ConfigMap".into(), "a".into())],
                ..Default::default()
            },
        );
        assert_eq!(only.applies.len(), 1);
        assert_eq!(only.applies[0].key.name, "a");
    }

    #[test]
    fn hooks_and_sync_options_are_recognised() {
        let hook = json!({"metadata": {"annotations": {HOOK_ANNOTATION: "PreSync"}}});
        assert!(is_hook(&hook));
        let o = json!({"metadata": {"annotations": {SYNC_OPTIONS_ANNOTATION: "Replace=true, Prune=false"}}});
        assert!(has_sync_option(&o, "Prune", "false"));
        assert!(!has_sync_option(&o, "Delete", "false"));
    }
}
