//! Sync operations in Argo CD's shape: the `operation` a user (or auto-sync) requests, the
//! `operationState` that records its outcome, and the pure auto-sync decision (when automated
//! sync runs, when self-heal may act, when it must refuse).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::{Comparison, SyncCode};
use crate::types::application::SyncPolicy;

/// `operation.initiatedBy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitiatedBy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automated: bool,
}

/// `operation.sync.resources[]`: a selective sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResourceRef {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `operation.sync`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncOperation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The source to sync instead of the spec's (a rollback to a history entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// Multi-source: the revision of each source to sync, in `spec.sources` order (empty
    /// entries: the spec's), or, with `sourcePositions`, of the sources at those positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<Vec<String>>,
    /// Multi-source: 1-based positions in `spec.sources` that `revisions` apply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_positions: Option<Vec<i64>>,
    /// Multi-source: the sources to sync instead of the spec's (a rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<Value>>,
    /// `{apply: {force}}` (no hooks: what a rollback uses) or `{hook: {force}}` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_strategy: Option<Value>,
    #[serde(default)]
    pub prune: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_options: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<SyncResourceRef>>,
}

/// The top-level `operation` of an Application.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncOperation>,
    #[serde(default)]
    pub initiated_by: InitiatedBy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryStrategy>,
    /// Argo CD's `info` (name/value pairs kept with the operation and its state): the API
    /// server puts a request id there so a client can tell its operation from an earlier one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<OperationInfo>,
}

/// One `operation.info` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationInfo {
    pub name: String,
    pub value: String,
}

/// `retry` of an operation or of `syncPolicy`: how often and how soon a failed sync is run
/// again (Argo CD's defaults: 5s, factor 2, at most 3m; limit 0 = never, negative = always).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryStrategy {
    #[serde(default)]
    pub limit: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

/// `retry.backoff`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
}

/// A duration as Argo CD writes them: Go's `5s`, `3m`, `1h30m`, `250ms`, or bare seconds.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

impl RetryStrategy {
    /// Whether attempt `retry_count + 1` may run.
    pub fn allows(&self, retry_count: i64) -> bool {
        self.limit < 0 || retry_count < self.limit
    }

    /// How long to wait before a retry when `retry_count` retries were made:
    /// `duration * factor^retry_count`, at most `maxDuration`.
    pub fn delay(&self, retry_count: i64) -> Result<std::time::Duration, String> {
        let b = self.backoff.clone().unwrap_or_default();
        let base = match b.duration.as_deref() {
            Some(d) => {
                parse_duration(d).ok_or_else(|| format!("invalid backoff duration {d:?}"))?
            }
            None => std::time::Duration::from_secs(5),
        };
        let factor = b.factor.unwrap_or(2).max(1) as f64;
        let max = match b.max_duration.as_deref() {
            Some(d) => {
                parse_duration(d).ok_or_else(|| format!("invalid backoff maxDuration {d:?}"))?
            }
            None => std::time::Duration::from_secs(180),
        };
        let wait = base.as_secs_f64() * factor.powi(retry_count.clamp(0, 62) as i32);
        let wait = std::time::Duration::from_secs_f64(wait.min(max.as_secs_f64().max(0.0)));
        Ok(if max.is_zero() { base } else { wait })
    }
}

impl Operation {
    /// Parse the stored `operation` (tolerant: unknown fields are ignored).
    pub fn from_value(v: &Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(v.clone())
    }

    pub fn has_option(&self, name: &str) -> bool {
        self.sync
            .as_ref()
            .and_then(|s| s.sync_options.as_ref())
            .is_some_and(|o| o.iter().any(|x| x.split_once('=') == Some((name, "true"))))
    }

    /// The apply strategy (`syncStrategy.apply`): resources only, hooks are not run.
    pub fn apply_strategy(&self) -> bool {
        self.sync
            .as_ref()
            .and_then(|s| s.sync_strategy.as_ref())
            .is_some_and(|s| s.get("apply").is_some())
    }

    /// A selective sync (only some resources): hooks are not run and no history is written.
    pub fn selective(&self) -> bool {
        self.sync
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .is_some_and(|r| !r.is_empty())
    }

    pub fn dry_run(&self) -> bool {
        self.sync.as_ref().is_some_and(|s| s.dry_run)
    }
}

/// `operationState.phase`, and a task's `hookPhase`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    #[default]
    Running,
    /// Asked to stop (Argo CD's terminate): running hooks are deleted, the sync fails.
    Terminating,
    Succeeded,
    Failed,
    Error,
}

/// The phase of one task (`hookPhase`): the same values.
pub type OpPhase = Phase;

impl Phase {
    pub fn completed(self) -> bool {
        !matches!(self, Self::Running | Self::Terminating)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Terminating => "Terminating",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Error => "Error",
        }
    }
}

/// One resource's outcome in `operationState.syncResult.resources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceResult {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    pub name: String,
    /// Synced, SyncFailed, Pruned, PruneSkipped.
    pub status: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub sync_phase: String,
    /// For hooks: PreSync, Sync, PostSync, SyncFail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_type: Option<String>,
    /// The task's progress: Running until done (health, hook completion), then Succeeded or
    /// Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_phase: Option<Phase>,
}

/// `operationState.syncResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncResult {
    #[serde(default)]
    pub revision: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<String>,
    #[serde(default)]
    pub resources: Vec<ResourceResult>,
    /// The source synced (recorded so a history entry and a rollback know it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// Multi-source: every source synced, in order (with `revisions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<Value>>,
}

/// `status.operationState`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationState {
    pub operation: Operation,
    pub phase: Phase,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_result: Option<SyncResult>,
    #[serde(default)]
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Attempts made for this operation (retries included).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_count: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl OperationState {
    pub fn from_value(v: &Value) -> Option<Self> {
        serde_json::from_value(v.clone()).ok()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The revision this operation synced to.
    pub fn revision(&self) -> Option<&str> {
        self.sync_result
            .as_ref()
            .map(|r| r.revision.as_str())
            .filter(|r| !r.is_empty())
    }

    /// What this operation synced, as one string: every source's revision of a multi-source
    /// sync (`a,b`), else the revision. Compared with [`revision_key`] of the current state.
    pub fn revision_key(&self) -> Option<String> {
        match self.sync_result.as_ref() {
            Some(r) if !r.revisions.is_empty() => Some(revision_key(&r.revisions)),
            _ => self.revision().map(str::to_string),
        }
    }
}

/// The revisions of a multi-source app as one string (see [`OperationState::revision_key`]).
pub fn revision_key(revisions: &[String]) -> String {
    revisions.join(",")
}

/// Why a multi-source sync's `sourcePositions` and `revisions` cannot be honoured for an app
/// with `sources` sources (Argo CD's checks); `None` when they can.
pub fn source_positions_problem(sync: &SyncOperation, sources: usize) -> Option<String> {
    let positions = sync.source_positions.as_deref().unwrap_or_default();
    if positions.is_empty() {
        return None;
    }
    let revisions = sync.revisions.as_deref().unwrap_or_default();
    if positions.len() != revisions.len() {
        return Some(format!(
            "sourcePositions ({}) and revisions ({}) must have the same length",
            positions.len(),
            revisions.len()
        ));
    }
    positions
        .iter()
        .any(|p| *p <= 0 || *p > sources as i64)
        .then(|| "source position is out of range".to_string())
}

/// The operation that rolls `app` back to its `status.history` entry `id`, as Argo CD's API
/// builds it: a sync of that entry's source at its revision with the apply strategy (hooks do
/// not run). Refused while automated sync is on (it would sync straight back).
pub fn rollback_operation(
    app: &crate::types::Application,
    id: i64,
    prune: bool,
    dry_run: bool,
    username: Option<String>,
) -> Result<Operation, String> {
    if app
        .spec
        .sync_policy
        .as_ref()
        .is_some_and(|p| p.automated.is_some())
    {
        return Err("rollback cannot be initiated when auto-sync is enabled".into());
    }
    if app.metadata.deletion_timestamp.is_some() {
        return Err("application is deleting".into());
    }
    let entry = app
        .status
        .as_ref()
        .and_then(|s| s.history.as_ref())
        .into_iter()
        .flatten()
        .find(|h| h.get("id").and_then(Value::as_i64) == Some(id))
        .ok_or_else(|| {
            format!(
                "application {}/{} does not have deployment with id {id}",
                app.metadata.namespace.as_deref().unwrap_or_default(),
                app.metadata.name.as_deref().unwrap_or_default()
            )
        })?;
    // A multi-source entry records every source and its revision: all are restored.
    let revisions: Option<Vec<String>> = entry
        .get("revisions")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .filter(|r: &Vec<String>| !r.is_empty());
    let revision = match &revisions {
        Some(_) => None,
        None => Some(
            entry
                .get("revision")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| format!("history entry {id} records no revision"))?
                .to_string(),
        ),
    };
    let sources = entry
        .get("sources")
        .and_then(Value::as_array)
        .filter(|_| revisions.is_some())
        .cloned();
    Ok(Operation {
        sync: Some(SyncOperation {
            revision,
            revisions,
            sources,
            source: entry.get("source").cloned(),
            sync_strategy: Some(serde_json::json!({"apply": {}})),
            prune,
            dry_run,
            sync_options: app
                .spec
                .sync_policy
                .as_ref()
                .and_then(|p| p.sync_options.clone()),
            ..Default::default()
        }),
        initiated_by: InitiatedBy {
            username,
            automated: false,
        },
        retry: None,
        info: Vec::new(),
    })
}

/// What auto-sync should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoSync {
    /// Not automated, nothing to do, or an operation is already pending.
    Nothing,
    /// Start an automated sync.
    Sync { prune: bool },
    /// Self-heal must wait this many seconds after the last sync.
    WaitSeconds(u64),
    /// Refuse, with a reason that becomes a condition (or a log line when benign).
    Refuse { reason: String, condition: bool },
}

/// Seconds self-heal waits after a sync before correcting drift again (Argo CD's default).
pub const SELF_HEAL_BACKOFF_SECONDS: u64 = 5;

/// Decide auto-sync for an app whose comparison is `cmp` at `revision` (for a multi-source
/// app, the [`revision_key`] of every source's revision: a new commit of any source, a values
/// repository's included, is a new revision). `last` is the most recent operation and
/// `seconds_since_last` how long ago it finished.
pub fn decide_auto_sync(
    policy: Option<&SyncPolicy>,
    cmp: &Comparison,
    revision: &str,
    last: Option<&OperationState>,
    seconds_since_last: Option<u64>,
) -> AutoSync {
    let Some(auto) = policy.and_then(|p| p.automated.as_ref()) else {
        return AutoSync::Nothing;
    };
    if cmp.sync != SyncCode::OutOfSync {
        return AutoSync::Nothing;
    }
    let out_of_sync_besides_prune = cmp
        .resources
        .iter()
        .any(|r| r.sync == SyncCode::OutOfSync && !r.requires_pruning);
    if !out_of_sync_besides_prune && !auto.prune {
        // Only extraneous resources, and pruning is not automated: leave them, show OutOfSync.
        return AutoSync::Nothing;
    }
    if cmp.desired_count() == 0 && cmp.live_count() > 0 && !auto.allow_empty {
        return AutoSync::Refuse {
            reason: "auto-sync will not delete every resource of the application: Git renders \
                     no objects (set syncPolicy.automated.allowEmpty to allow it)"
                .into(),
            condition: true,
        };
    }
    if let Some(last) = last.filter(|l| l.operation.initiated_by.automated)
        && last.revision_key().as_deref() == Some(revision)
    {
        match last.phase {
            Phase::Running | Phase::Terminating => return AutoSync::Nothing,
            Phase::Failed | Phase::Error => {
                return AutoSync::Refuse {
                    reason: format!(
                        "auto-sync to {revision} failed before; not retrying the same revision: {}",
                        last.message
                    ),
                    condition: true,
                };
            }
            Phase::Succeeded if !auto.self_heal => {
                return AutoSync::Refuse {
                    reason: format!(
                        "most recent sync was already to {revision}; drift is left alone (selfHeal is off)"
                    ),
                    condition: false,
                };
            }
            Phase::Succeeded => {
                let since = seconds_since_last.unwrap_or(u64::MAX);
                if since < SELF_HEAL_BACKOFF_SECONDS {
                    return AutoSync::WaitSeconds(SELF_HEAL_BACKOFF_SECONDS - since);
                }
            }
        }
    }
    AutoSync::Sync { prune: auto.prune }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compare;
    use crate::tracking::{FIELD_MANAGER, ResourceKey};
    use crate::types::application::Automated;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn mk_policy(prune: bool, self_heal: bool, allow_empty: bool) -> SyncPolicy {
        SyncPolicy {
            automated: Some(Automated {
                prune,
                self_heal,
                allow_empty,
            }),
            ..Default::default()
        }
    }

    fn cm(name: &str, v: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "d"}, "data": {"k": v}})
    }

    fn live(objs: &[serde_json::Value]) -> BTreeMap<ResourceKey, Arc<serde_json::Value>> {
        objs.iter()
            .filter_map(|o| Some((ResourceKey::of(o)?, Arc::new(o.clone()))))
            .collect()
    }

    fn mk_last(rev: &str, phase: Phase, automated: bool) -> OperationState {
        OperationState {
            operation: Operation {
                initiated_by: InitiatedBy {
                    automated,
                    username: None,
                },
                ..Default::default()
            },
            phase,
            sync_result: Some(SyncResult {
                revision: rev.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn syncs_when_out_of_sync_and_not_otherwise() {
        let drift = compare(&[cm("a", "1")], &live(&[cm("a", "2")]), FIELD_MANAGER);
        let synced = compare(&[cm("a", "1")], &live(&[cm("a", "1")]), FIELD_MANAGER);
        let p = mk_policy(true, false, false);
        assert_eq!(
            decide_auto_sync(Some(&p), &drift, "r1", None, None),
            AutoSync::Sync { prune: true }
        );
        assert_eq!(
            decide_auto_sync(Some(&p), &synced, "r1", None, None),
            AutoSync::Nothing
        );
        assert_eq!(
            decide_auto_sync(None, &drift, "r1", None, None),
            AutoSync::Nothing
        );
    }

    #[test]
    fn self_heal_only_when_enabled_and_after_the_backoff() {
        let drift = compare(&[cm("a", "1")], &live(&[cm("a", "2")]), FIELD_MANAGER);
        let last = mk_last("r1", Phase::Succeeded, true);
        let no_heal = mk_policy(false, false, false);
        assert!(matches!(
            decide_auto_sync(Some(&no_heal), &drift, "r1", Some(&last), Some(60)),
            AutoSync::Refuse {
                condition: false,
                ..
            }
        ));
        let heal = mk_policy(false, true, false);
        assert_eq!(
            decide_auto_sync(Some(&heal), &drift, "r1", Some(&last), Some(2)),
            AutoSync::WaitSeconds(3)
        );
        assert_eq!(
            decide_auto_sync(Some(&heal), &drift, "r1", Some(&last), Some(60)),
            AutoSync::Sync { prune: false }
        );
        // A new revision syncs at once, whatever the last sync was.
        assert_eq!(
            decide_auto_sync(Some(&no_heal), &drift, "r2", Some(&last), Some(0)),
            AutoSync::Sync { prune: false }
        );
        // A manual sync to the same revision does not count as auto-sync's own.
        let manual = mk_last("r1", Phase::Succeeded, false);
        assert_eq!(
            decide_auto_sync(Some(&no_heal), &drift, "r1", Some(&manual), Some(0)),
            AutoSync::Sync { prune: false }
        );
    }

    #[test]
    fn a_failed_revision_is_not_retried() {
        let drift = compare(&[cm("a", "1")], &live(&[cm("a", "2")]), FIELD_MANAGER);
        let failed = mk_last("r1", Phase::Failed, true);
        assert!(matches!(
            decide_auto_sync(
                Some(&mk_policy(true, true, false)),
                &drift,
                "r1",
                Some(&failed),
                Some(60)
            ),
            AutoSync::Refuse {
                condition: true,
                ..
            }
        ));
    }

    #[test]
    fn never_wipes_everything_without_allow_empty() {
        let empty = compare(&[], &live(&[cm("a", "1")]), FIELD_MANAGER);
        assert!(matches!(
            decide_auto_sync(
                Some(&mk_policy(true, true, false)),
                &empty,
                "r1",
                None,
                None
            ),
            AutoSync::Refuse {
                condition: true,
                ..
            }
        ));
        assert_eq!(
            decide_auto_sync(Some(&mk_policy(true, true, true)), &empty, "r1", None, None),
            AutoSync::Sync { prune: true }
        );
    }

    #[test]
    fn extraneous_only_waits_for_prune_to_be_automated() {
        let extra = compare(
            &[cm("a", "1")],
            &live(&[cm("a", "1"), cm("b", "1")]),
            FIELD_MANAGER,
        );
        assert_eq!(
            decide_auto_sync(
                Some(&mk_policy(false, true, false)),
                &extra,
                "r1",
                None,
                None
            ),
            AutoSync::Nothing
        );
        assert_eq!(
            decide_auto_sync(
                Some(&mk_policy(true, true, false)),
                &extra,
                "r1",
                None,
                None
            ),
            AutoSync::Sync { prune: true }
        );
    }

    #[test]
    fn rollback_syncs_a_history_entry_with_the_apply_strategy() {
        let mut app: crate::types::Application = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "argocd"},
            "spec": {"source": {"repoURL": "https://x", "path": "k8s", "targetRevision": "main"},
                     "destination": {"name": "in-cluster"}},
            "status": {"history": [{"id": 0, "revision": "abc", "source": {"repoURL": "https://x", "path": "old"}}]}
        }))
        .expect("app");
        let op = rollback_operation(&app, 0, true, false, Some("alice".into())).expect("op");
        let sync = op.sync.clone().expect("sync");
        assert_eq!(sync.revision.as_deref(), Some("abc"));
        assert_eq!(
            sync.source.as_ref().map(|s| s["path"].clone()),
            Some(json!("old"))
        );
        assert!(op.apply_strategy());
        assert!(
            rollback_operation(&app, 7, false, false, None)
                .is_err_and(|e| e.contains("does not have deployment with id 7"))
        );
        app.spec.sync_policy = Some(SyncPolicy {
            automated: Some(Default::default()),
            ..Default::default()
        });
        assert!(
            rollback_operation(&app, 0, false, false, None)
                .is_err_and(|e| e.contains("auto-sync is enabled"))
        );
    }

    #[test]
    fn a_multi_source_rollback_restores_every_source_and_revision() {
        let app: crate::types::Application = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "argocd"},
            "spec": {"sources": [{"repoURL": "https://charts", "chart": "web", "targetRevision": "2.0.0",
                                  "helm": {"valueFiles": ["$values/prod.yaml"]}},
                                 {"repoURL": "https://git/values", "targetRevision": "main", "ref": "values"}],
                     "destination": {"name": "in-cluster"}},
            "status": {"history": [{"id": 0, "revisions": ["1.0.0", "abc"],
                                    "sources": [{"repoURL": "https://charts", "chart": "web"},
                                                {"repoURL": "https://git/values", "ref": "values"}]}]}
        }))
        .expect("app");
        let op = rollback_operation(&app, 0, false, false, None).expect("op");
        let sync = op.sync.clone().expect("sync");
        assert_eq!(sync.revision, None);
        assert_eq!(
            sync.revisions.as_deref(),
            Some(&["1.0.0".to_string(), "abc".to_string()][..])
        );
        assert_eq!(sync.sources.as_ref().map(Vec::len), Some(2));
        assert!(op.apply_strategy());
        let v = serde_json::to_value(&op).expect("json");
        assert_eq!(v["sync"]["revisions"], json!(["1.0.0", "abc"]));
        assert!(v["sync"].get("revision").is_none(), "{v}");
    }

    #[test]
    fn source_positions_are_checked_like_argo_cd() {
        let op = |positions: Vec<i64>, revisions: Vec<&str>| SyncOperation {
            source_positions: Some(positions),
            revisions: Some(revisions.into_iter().map(String::from).collect()),
            ..Default::default()
        };
        assert_eq!(source_positions_problem(&op(vec![1], vec!["v1"]), 2), None);
        assert_eq!(
            source_positions_problem(&op(vec![3], vec!["v1"]), 2).as_deref(),
            Some("source position is out of range")
        );
        assert!(source_positions_problem(&op(vec![0], vec!["v1"]), 2).is_some());
        assert!(
            source_positions_problem(&op(vec![1, 2], vec!["v1"]), 2)
                .is_some_and(|e| e.contains("same length"))
        );
        let parsed: Operation =
            serde_json::from_value(json!({"sync": {"revisions": ["abc"], "sourcePositions": [1]}}))
                .expect("Argo CD's field names");
        assert_eq!(parsed.sync.and_then(|s| s.source_positions), Some(vec![1]));
    }

    #[test]
    fn auto_sync_sees_a_new_commit_of_any_source() {
        let drift = compare(&[cm("a", "1")], &live(&[cm("a", "2")]), FIELD_MANAGER);
        let mut last = mk_last("c1", Phase::Succeeded, true);
        if let Some(r) = last.sync_result.as_mut() {
            r.revisions = vec!["c1".into(), "v1".into()];
        }
        let p = mk_policy(false, false, false);
        let same = revision_key(&["c1".into(), "v1".into()]);
        assert!(matches!(
            decide_auto_sync(Some(&p), &drift, &same, Some(&last), Some(60)),
            AutoSync::Refuse { .. }
        ));
        let values_moved = revision_key(&["c1".into(), "v2".into()]);
        assert_eq!(
            decide_auto_sync(Some(&p), &drift, &values_moved, Some(&last), Some(60)),
            AutoSync::Sync { prune: false }
        );
    }

    #[test]
    fn operation_yaml_as_argo_cd_writes_it() {
        let op: Operation = serde_json::from_value(json!({
            "sync": {"revision": "HEAD", "prune": true, "syncOptions": ["ApplyOutOfSyncOnly=true"],
                     "resources": [{"kind": "ConfigMap", "name": "x"}]},
            "initiatedBy": {"username": "admin"}}))
        .expect("parses");
        assert!(op.has_option("ApplyOutOfSyncOnly"));
        assert_eq!(op.initiated_by.username.as_deref(), Some("admin"));
        let state = OperationState {
            operation: op,
            phase: Phase::Succeeded,
            ..Default::default()
        };
        let v = state.to_value();
        assert_eq!(v["phase"], "Succeeded");
        assert_eq!(OperationState::from_value(&v), Some(state));
    }
}
