//! The comparison of desired objects (from Git) with the live objects an app owns, and the
//! tasks of a sync in Argo CD's order (phase, wave, kind, name): applies, prunes and hooks.
//! Pure: objects in, statuses and tasks out; `engine` steps through them, `sync` executes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use crate::diff::diff_with;
use crate::engine::{Task, TaskKind, TaskOptions, TaskState};
use crate::health::{self, Health, HealthCode};
use crate::hooks::SyncPhase;
use crate::operation::OpPhase;
use crate::tracking::{ResourceKey, group_version};

pub use crate::hooks::{HOOK_ANNOTATION, SYNC_WAVE_ANNOTATION, is_hook, wave};

/// Per-resource compare options (`IgnoreExtraneous`, `ServerSideDiff=true|false`).
pub const COMPARE_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/compare-options";

/// Whether `argocd.argoproj.io/compare-options` on `obj` holds `option`.
pub fn has_compare_option(obj: &Value, option: &str) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(COMPARE_OPTIONS_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|opts| opts.split(',').any(|o| o.trim() == option))
}

/// Compare options Flotilla does not know (refused by name).
pub fn compare_option_errors(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .filter(|o| {
            !matches!(
                *o,
                "IgnoreExtraneous" | "ServerSideDiff=true" | "ServerSideDiff=false"
            )
        })
        .map(|o| {
            format!("compare option {o:?} is not supported (IgnoreExtraneous, ServerSideDiff)")
        })
        .collect()
}

/// Per-resource sync options (`Name=value`, comma-separated).
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

/// Whether `argocd.argoproj.io/sync-options` on `obj` holds `Name=value`.
pub fn has_sync_option(obj: &Value, name: &str, value: &str) -> bool {
    annotation(obj, SYNC_OPTIONS_ANNOTATION).is_some_and(|opts| {
        opts.split(',')
            .any(|o| o.trim().split_once('=') == Some((name, value)))
    })
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

pub fn kind_rank(kind: &str) -> usize {
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
    compare_with(desired, live, manager, &[])
}

/// `compare`, leaving out the fields `ignoreDifferences` names.
pub fn compare_with(
    desired: &[Value],
    live: &BTreeMap<ResourceKey, Arc<Value>>,
    manager: &str,
    ignore: &[crate::ignore::IgnoreRule],
) -> Comparison {
    let settings = crate::settings::current();
    let opts = |key: &ResourceKey| settings.diff_options(&key.group, &key.kind);
    let mut warnings = Vec::new();
    let mut by_key: BTreeMap<ResourceKey, (String, Value)> = BTreeMap::new();
    let mut seen: BTreeMap<ResourceKey, usize> = BTreeMap::new();
    for obj in desired {
        let Some(key) = ResourceKey::of(obj) else {
            continue;
        };
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // As in Argo CD, the last of repeated objects wins, with a warning.
        *seen.entry(key.clone()).or_insert(0usize) += 1;
        by_key.insert(key, (api_version, obj.clone()));
    }
    for (key, n) in seen.iter().filter(|(_, n)| **n > 1) {
        warnings.push(format!(
            "Resource {}/{}/{}/{} appeared {n} times among application resources.",
            key.group, key.kind, key.namespace, key.name
        ));
    }
    // An extraneous object already being deleted is on its way out: not ours to act on again.
    let terminating = |k: &ResourceKey| {
        live.get(k)
            .is_some_and(|l| l.pointer("/metadata/deletionTimestamp").is_some())
    };
    // Live hooks are the sync's, never compared or pruned.
    let live_hook = |k: &ResourceKey| live.get(k).is_some_and(|l| is_hook(l));
    let keys: BTreeSet<&ResourceKey> = by_key
        .keys()
        .chain(
            live.keys()
                .filter(|k| by_key.contains_key(*k) || (!terminating(k) && !live_hook(k))),
        )
        .collect();
    let mut resources = Vec::with_capacity(keys.len());
    for key in keys {
        let live_obj = live.get(key).cloned();
        let state = match by_key.get(key) {
            Some((api_version, d)) => {
                let o = opts(key);
                let differences = if crate::ignore::applies(key, ignore) {
                    let d = crate::ignore::overlay(d, live_obj.as_deref(), key, ignore);
                    diff_with(&d, live_obj.as_deref(), manager, &o).differences
                } else {
                    diff_with(d, live_obj.as_deref(), manager, &o).differences
                };
                ResourceState {
                    key: key.clone(),
                    api_version: api_version.clone(),
                    desired: Some(d.clone()),
                    sync: if differences.is_empty() {
                        SyncCode::Synced
                    } else {
                        SyncCode::OutOfSync
                    },
                    health: match live_obj.as_deref() {
                        // Argo CD: an object on its way out is Progressing, whatever its kind.
                        Some(l) if l.pointer("/metadata/deletionTimestamp").is_some() => {
                            Some(Health {
                                code: HealthCode::Progressing,
                                message: "Pending deletion".into(),
                            })
                        }
                        Some(l) => settings.health(&key.group, &key.kind, l),
                        None => Some(health::assess(&key.group, &key.kind, None)),
                    },
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
    // `compare-options: IgnoreExtraneous` on an object only needing pruning: still shown
    // OutOfSync itself, but it does not make the app OutOfSync (Argo CD).
    let counts = |r: &ResourceState| {
        !(r.requires_pruning
            && r.live
                .as_deref()
                .is_some_and(|l| has_compare_option(l, "IgnoreExtraneous")))
    };
    let sync = if resources
        .iter()
        .filter(|r| counts(r))
        .all(|r| r.sync == SyncCode::Synced)
    {
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

/// Sync options Argo CD defines, with the values each takes (`None`: true/false).
const SYNC_OPTIONS: &[(&str, Option<&[&str]>)] = &[
    ("CreateNamespace", None),
    ("PruneLast", None),
    ("ApplyOutOfSyncOnly", None),
    ("ServerSideApply", None),
    ("Replace", None),
    ("Force", None),
    ("Validate", None),
    ("RespectIgnoreDifferences", None),
    ("FailOnSharedResource", None),
    ("SkipDryRunOnMissingResource", None),
    ("ClientSideApplyMigration", None),
    ("Prune", None),
    ("Delete", None),
    (
        "PrunePropagationPolicy",
        Some(&["foreground", "background", "orphan"]),
    ),
];

/// Options that make sense only on the Application, not on a resource.
const APP_ONLY: &[&str] = &[
    "CreateNamespace",
    "ApplyOutOfSyncOnly",
    "RespectIgnoreDifferences",
    "FailOnSharedResource",
    "PrunePropagationPolicy",
];

/// What is wrong with `options` (`Name=value` strings; `on_resource` for the per-resource
/// annotation): unknown names, unknown values, and `Prune=confirm` / `Delete=confirm`, which
/// need an approval flow Flotilla does not have yet. Each message names the option.
pub fn sync_option_errors(options: &[&str], on_resource: bool) -> Vec<String> {
    let mut errs = Vec::new();
    for raw in options.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
        let Some((name, value)) = raw.split_once('=') else {
            errs.push(format!("sync option {raw:?} is not of the form Name=value"));
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        let Some((_, values)) = SYNC_OPTIONS.iter().find(|(n, _)| *n == name) else {
            errs.push(format!(
                "sync option {name:?} is not an Argo CD sync option (known: {})",
                SYNC_OPTIONS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        };
        if on_resource && APP_ONLY.contains(&name) {
            errs.push(format!(
                "sync option {name} applies to the Application (spec.syncPolicy.syncOptions), not to a resource"
            ));
            continue;
        }
        let ok = match values {
            Some(vs) => vs.iter().any(|v| v.eq_ignore_ascii_case(value)),
            None => matches!(value, "true" | "false"),
        };
        if value == "confirm" && matches!(name, "Prune" | "Delete") {
            errs.push(format!(
                "sync option {name}=confirm (manual approval) is not supported by Flotilla; use {name}=false"
            ));
        } else if !ok {
            errs.push(format!("sync option {name} has an invalid value {value:?}"));
        }
    }
    errs
}

/// What a sync operation asks for (the operation and the app's `syncOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncRequest {
    pub prune: bool,
    /// `ApplyOutOfSyncOnly=true`: skip resources already Synced.
    pub out_of_sync_only: bool,
    /// A selective sync: only these (group, kind, name, namespace when given); empty = all.
    pub only: Vec<(String, String, String, Option<String>)>,
    /// Selective syncs and the apply strategy (rollback) run no hooks.
    pub skip_hooks: bool,
    /// `PruneLast=true`: prunes after every other task of the Sync phase.
    pub prune_last: bool,
    /// `Prune=false` on the Application: no resource is pruned.
    pub no_prune: bool,
    /// `Replace=true`, `Force=true` (or `syncStrategy.*.force`), `Validate=false`.
    pub replace: bool,
    pub force: bool,
    pub skip_validation: bool,
    /// `PrunePropagationPolicy`: foreground (default), background or orphan.
    pub prune_propagation: String,
    /// `ignoreDifferences`, and `RespectIgnoreDifferences=true`: the fields it names are
    /// applied with their live values once the resource exists (an HPA keeps `replicas`).
    pub ignore: Vec<crate::ignore::IgnoreRule>,
    pub respect_ignore_differences: bool,
    /// Resources this operation already recorded results for (status by key): they stay
    /// tasks whatever the comparison says now (an applied resource is Synced, a pruned one
    /// terminating), so their progress is kept.
    pub recorded: BTreeMap<ResourceKey, String>,
    /// The revision and start (unix seconds) of the operation, for `generateName` hooks.
    pub revision: String,
    pub started_unix: i64,
}

fn selected(req: &SyncRequest, key: &ResourceKey) -> bool {
    req.only.is_empty()
        || req.only.iter().any(|(g, k, n, ns)| {
            *g == key.group
                && *k == key.kind
                && *n == key.name
                && ns
                    .as_ref()
                    .is_none_or(|ns| ns.is_empty() || *ns == key.namespace)
        })
}

/// A resource's sync options from its annotation, over the request's.
fn task_options(obj: Option<&Value>, req: &SyncRequest) -> TaskOptions {
    let has = |name: &str, value: &str| obj.is_some_and(|o| has_sync_option(o, name, value));
    TaskOptions {
        replace: req.replace || has("Replace", "true"),
        force: req.force || has("Force", "true"),
        skip_validation: req.skip_validation || has("Validate", "false"),
        prune_propagation: if req.prune_propagation.is_empty() {
            "foreground".into()
        } else {
            req.prune_propagation.clone()
        },
    }
}

/// The tasks of a sync of `cmp` plus `hooks` (normalized hook objects: namespace final),
/// sorted as Argo CD sorts them: phase, wave, kind order, name. Prunes run their waves in
/// reverse (or after everything with `PruneLast`). `live` holds the app's live objects (hooks
/// included) so hook tasks know what already exists. Hook objects get their final name (for
/// `generateName`) but no tracking stamp: the caller stamps them.
pub fn build_tasks(
    cmp: &Comparison,
    hooks: &[Value],
    live: &BTreeMap<ResourceKey, Arc<Value>>,
    req: &SyncRequest,
) -> Vec<Task> {
    let mut tasks = Vec::new();
    for r in cmp.resources.iter().filter(|r| selected(req, &r.key)) {
        if let Some(d) = &r.desired {
            if req.out_of_sync_only
                && r.sync == SyncCode::Synced
                && !req.recorded.contains_key(&r.key)
            {
                continue;
            }
            let object = if req.respect_ignore_differences {
                crate::ignore::overlay(d, r.live.as_deref(), &r.key, &req.ignore)
            } else {
                d.clone()
            };
            tasks.push(Task {
                key: r.key.clone(),
                api_version: r.api_version.clone(),
                phase: SyncPhase::Sync,
                wave: wave(d),
                kind: TaskKind::Apply,
                object: Some(object),
                live: r.live.clone(),
                hook_type: None,
                delete_policies: Default::default(),
                options: task_options(Some(d), req),
                state: TaskState::default(),
            });
        } else if r.requires_pruning {
            let live_obj = r.live.as_deref();
            let mut t = Task {
                key: r.key.clone(),
                api_version: r.api_version.clone(),
                phase: SyncPhase::Sync,
                wave: live_obj.map(wave).unwrap_or(0),
                kind: TaskKind::Prune,
                object: None,
                live: r.live.clone(),
                hook_type: None,
                delete_policies: Default::default(),
                options: task_options(live_obj, req),
                state: TaskState::default(),
            };
            let skipped =
                if req.no_prune || live_obj.is_some_and(|l| has_sync_option(l, "Prune", "false")) {
                    Some("ignored (no prune)")
                } else if !req.prune {
                    Some("ignored (requires pruning)")
                } else {
                    None
                };
            if let Some(message) = skipped {
                t.state = TaskState {
                    status: "PruneSkipped".into(),
                    hook_phase: Some(OpPhase::Succeeded),
                    message: message.into(),
                };
            }
            tasks.push(t);
        }
    }
    // Objects this operation pruned that are still terminating (left out of the comparison):
    // their prune task stays, so the sync waits for their deletion.
    for (k, status) in &req.recorded {
        if status == "Pruned" && !tasks.iter().any(|t| t.key == *k) {
            let live_obj = live.get(k).cloned();
            tasks.push(Task {
                key: k.clone(),
                api_version: live_obj
                    .as_deref()
                    .and_then(|l| l.get("apiVersion"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                phase: SyncPhase::Sync,
                wave: live_obj.as_deref().map(wave).unwrap_or(0),
                kind: TaskKind::Prune,
                object: None,
                options: task_options(live_obj.as_deref(), req),
                live: live_obj,
                hook_type: None,
                delete_policies: Default::default(),
                state: TaskState::default(),
            });
        }
    }
    if !req.skip_hooks {
        for h in hooks {
            let crate::hooks::Role::Hook(types) = crate::hooks::role(h) else {
                continue;
            };
            for t in types {
                let Some(phase) = SyncPhase::of_hook(t) else {
                    continue;
                };
                let mut obj = h.clone();
                let named = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty());
                if !named {
                    let generate = obj
                        .pointer("/metadata/generateName")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let name = crate::hooks::generated_name(
                        &generate,
                        &req.revision,
                        phase,
                        req.started_unix,
                    );
                    obj["metadata"]["name"] = Value::String(name);
                }
                let Some(key) = ResourceKey::of(&obj) else {
                    continue;
                };
                tasks.push(Task {
                    api_version: obj
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    live: live.get(&key).cloned(),
                    key,
                    phase,
                    wave: wave(h),
                    kind: TaskKind::Hook,
                    hook_type: Some(t),
                    delete_policies: crate::hooks::delete_policies(h),
                    options: task_options(Some(h), req),
                    object: Some(obj),
                    state: TaskState::default(),
                });
            }
        }
    }
    // Prunes: waves reversed among themselves; `PruneLast` after every Sync-phase wave.
    let mut prune_waves: Vec<i64> = tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Prune)
        .map(|t| t.wave)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let reversed: BTreeMap<i64, i64> = prune_waves
        .iter()
        .copied()
        .zip(prune_waves.iter().rev().copied())
        .collect();
    prune_waves.clear();
    let last_sync_wave = tasks
        .iter()
        .filter(|t| t.phase == SyncPhase::Sync)
        .map(|t| t.wave)
        .max()
        .unwrap_or(0)
        .max(0);
    for t in tasks.iter_mut().filter(|t| t.kind == TaskKind::Prune) {
        let prune_last = req.prune_last
            || t.live
                .as_deref()
                .is_some_and(|l| has_sync_option(l, "PruneLast", "true"));
        t.wave = if prune_last {
            last_sync_wave + 1
        } else {
            reversed.get(&t.wave).copied().unwrap_or(t.wave)
        };
    }
    tasks.sort_by(|a, b| {
        (a.phase, a.wave, kind_rank(&a.key.kind), &a.key.name, &a.key).cmp(&(
            b.phase,
            b.wave,
            kind_rank(&b.key.kind),
            &b.key.name,
            &b.key,
        ))
    });
    tasks
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
    fn duplicates_warn_and_keep_the_last() {
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
            Some(json!("other"))
        );
        assert_eq!(
            c.warnings,
            ["Resource /ConfigMap/dev/a appeared 2 times among application resources."]
        );
    }

    fn order(tasks: &[Task]) -> Vec<String> {
        tasks
            .iter()
            .map(|t| format!("{}:{}:{}", t.phase.as_str(), t.key.kind, t.key.name))
            .collect()
    }

    fn prune() -> SyncRequest {
        SyncRequest {
            prune: true,
            ..Default::default()
        }
    }

    #[test]
    fn tasks_order_by_phase_wave_kind_and_prunes_reverse_their_waves() {
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
        let gone_low = mk(
            "Service",
            "v1",
            "gone-low",
            json!({"metadata": {"name": "gone-low", "namespace": "dev",
                "annotations": {SYNC_WAVE_ANNOTATION: "1"}}}),
        );
        let gone_high = mk(
            "ConfigMap",
            "v1",
            "gone-high",
            json!({"metadata": {"name": "gone-high", "namespace": "dev",
                "annotations": {SYNC_WAVE_ANNOTATION: "3"}}}),
        );
        let migrate = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"generateName": "migrate-", "namespace": "dev",
                         "annotations": {HOOK_ANNOTATION: "PreSync"}}});
        let c = compare(
            &[deploy, cm, late, ns, early],
            &live_of(&[gone_low, gone_high]),
            FIELD_MANAGER,
        );
        let req = SyncRequest {
            revision: "0123456789".into(),
            started_unix: 17,
            ..prune()
        };
        let tasks = build_tasks(&c, &[migrate], &BTreeMap::new(), &req);
        assert_eq!(
            order(&tasks),
            [
                "PreSync:Job:migrate-0123456-presync-17",
                "Sync:Deployment:early",
                "Sync:Namespace:dev",
                "Sync:ConfigMap:cfg",
                "Sync:Deployment:web",
                "Sync:ConfigMap:gone-high",
                "Sync:Service:gone-low",
                "Sync:ConfigMap:late"
            ]
        );
        // Reversed: the wave-3 prune runs in wave 1's slot and the wave-1 prune in wave 3's.
        let wave_of = |n: &str| tasks.iter().find(|t| t.key.name == n).map(|t| t.wave);
        assert_eq!(wave_of("gone-high"), Some(1));
        assert_eq!(wave_of("gone-low"), Some(3));
        let last = build_tasks(
            &c,
            &[],
            &BTreeMap::new(),
            &SyncRequest {
                prune_last: true,
                ..prune()
            },
        );
        assert_eq!(
            last.iter()
                .find(|t| t.key.name == "gone-low")
                .map(|t| t.wave),
            Some(6)
        );
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
        let skipped = |tasks: &[Task]| -> Vec<String> {
            tasks
                .iter()
                .filter(|t| t.state.status == "PruneSkipped")
                .map(|t| format!("{}={}", t.key.name, t.state.message))
                .collect()
        };
        let no = build_tasks(&c, &[], &BTreeMap::new(), &SyncRequest::default());
        assert_eq!(
            skipped(&no),
            ["gone=ignored (requires pruning)", "keep=ignored (no prune)"]
        );
        let yes = build_tasks(&c, &[], &BTreeMap::new(), &prune());
        assert_eq!(skipped(&yes), ["keep=ignored (no prune)"]);
        assert!(yes.iter().any(|t| t.key.name == "gone" && t.pending()));
    }

    #[test]
    fn selective_out_of_sync_only_and_hookless_syncs() {
        let a = mk("ConfigMap", "v1", "a", json!({}));
        let b = mk("ConfigMap", "v1", "b", json!({}));
        let hook = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "smoke", "namespace": "dev",
                         "annotations": {HOOK_ANNOTATION: "PostSync"}}});
        let c = compare(&[a.clone(), b], &live_of(&[a]), FIELD_MANAGER);
        let oos = build_tasks(
            &c,
            std::slice::from_ref(&hook),
            &BTreeMap::new(),
            &SyncRequest {
                out_of_sync_only: true,
                ..Default::default()
            },
        );
        assert_eq!(order(&oos), ["Sync:ConfigMap:b", "PostSync:Job:smoke"]);
        let only = build_tasks(
            &c,
            &[hook],
            &BTreeMap::new(),
            &SyncRequest {
                only: vec![("".into(), "ConfigMap".into(), "a".into(), None)],
                skip_hooks: true,
                ..Default::default()
            },
        );
        assert_eq!(order(&only), ["Sync:ConfigMap:a"]);
    }

    #[test]
    fn sync_options_are_checked_by_name_value_and_place() {
        assert!(
            sync_option_errors(
                &["CreateNamespace=true", "PrunePropagationPolicy=orphan"],
                false
            )
            .is_empty()
        );
        let errs = sync_option_errors(
            &["Prun=false", "Replace=yes", "Prune=confirm", "NoEquals"],
            false,
        );
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(
            errs[0].contains("\"Prun\" is not an Argo CD sync option"),
            "{errs:?}"
        );
        assert!(errs[2].contains("Prune=confirm"), "{errs:?}");
        let on_resource = sync_option_errors(&["CreateNamespace=true", "Prune=false"], true);
        assert_eq!(on_resource.len(), 1, "{on_resource:?}");
    }

    #[test]
    fn ignore_extraneous_keeps_the_app_in_sync() {
        let extra = mk(
            "ConfigMap",
            "v1",
            "extra",
            json!({"metadata": {"name": "extra", "namespace": "dev",
                "annotations": {COMPARE_OPTIONS_ANNOTATION: "IgnoreExtraneous"}}}),
        );
        let c = compare(&[], &live_of(&[extra]), FIELD_MANAGER);
        assert_eq!(c.resources[0].sync, SyncCode::OutOfSync);
        assert_eq!(c.sync, SyncCode::Synced);
        assert_eq!(compare_option_errors("IgnoreExtraneous, Bogus").len(), 1);
    }

    #[test]
    fn recorded_tasks_survive_the_comparison_moving_on() {
        let a = mk("ConfigMap", "v1", "a", json!({}));
        let mut going = mk("ConfigMap", "v1", "going", json!({}));
        going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let live = live_of(&[a.clone(), going]);
        // `a` is Synced now (applied by this operation) and `going` terminating (pruned by it).
        let c = compare(std::slice::from_ref(&a), &live, FIELD_MANAGER);
        let key = |n: &str| ResourceKey {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: "dev".into(),
            name: n.into(),
        };
        let req = SyncRequest {
            out_of_sync_only: true,
            prune: true,
            recorded: [
                (key("a"), "Synced".to_string()),
                (key("going"), "Pruned".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let tasks = build_tasks(&c, &[], &live, &req);
        assert_eq!(order(&tasks), ["Sync:ConfigMap:a", "Sync:ConfigMap:going"]);
        assert!(tasks[1].live.is_some() && tasks[1].kind == TaskKind::Prune);
        // Selective syncs match the namespace when one is given.
        let other_ns = SyncRequest {
            only: vec![(
                "".into(),
                "ConfigMap".into(),
                "a".into(),
                Some("prod".into()),
            )],
            ..Default::default()
        };
        assert!(build_tasks(&c, &[], &live, &other_ns).is_empty());
    }

    #[test]
    fn live_hooks_are_not_resources() {
        let hook = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "smoke", "namespace": "dev",
                         "annotations": {HOOK_ANNOTATION: "PostSync"}}});
        let c = compare(&[], &live_of(&[hook]), FIELD_MANAGER);
        assert!(c.resources.is_empty());
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
