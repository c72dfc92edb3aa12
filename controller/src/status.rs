//! Building an Application's `status` from one reconciliation's outcome (sync, health,
//! resources, conditions that keep their transition times, operation state, history) and the
//! merge patch that writes it. Pure apart from reading the clock passed in.

use serde_json::{Map, Value};

use crate::health::HealthCode;
use crate::operation::OperationState;
use crate::plan::{Comparison, SyncCode};
use crate::redact::redact_text;
use crate::types::application::{
    ApplicationCondition, ApplicationStatus, HealthStatus, ResourceStatus, SyncStatus,
};

/// Condition types, as Argo CD names them.
pub const COMPARISON_ERROR: &str = "ComparisonError";
pub const INVALID_SPEC_ERROR: &str = "InvalidSpecError";
pub const SYNC_ERROR: &str = "SyncError";
pub const REPEATED_RESOURCE_WARNING: &str = "RepeatedResourceWarning";
pub const SHARED_RESOURCE_WARNING: &str = "SharedResourceWarning";
pub const EXCLUDED_RESOURCE_WARNING: &str = "ExcludedResourceWarning";
pub const ORPHANED_RESOURCE_WARNING: &str = "OrphanedResourceWarning";

/// Timestamps as Argo CD writes them (RFC 3339, seconds).
pub fn timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Seconds from `earlier` (an RFC 3339 string) to `now`; `None` if it does not parse.
pub fn seconds_since(earlier: &str, now: jiff::Timestamp) -> Option<u64> {
    let t: jiff::Timestamp = earlier.parse().ok()?;
    u64::try_from(now.as_second() - t.as_second()).ok()
}

/// One entry of `status.history`: `revision`/`source` of a single-source app, or, as Argo CD
/// writes them for a multi-source one, `revisions`/`sources` (every source, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub revision: String,
    /// The source synced (what a rollback to this entry syncs again).
    pub source: Option<Value>,
    /// Multi-source: every source's revision (non-empty means multi-source).
    pub revisions: Vec<String>,
    /// Multi-source: every source synced.
    pub sources: Option<Vec<Value>>,
    pub deployed_at: String,
    pub deploy_started_at: String,
    pub initiated_by: Value,
}

/// Everything one reconciliation learnt.
#[derive(Debug, Clone, Default)]
pub struct Outcome<'a> {
    /// `None` when the comparison could not be made (render error, unreachable cluster, ...).
    pub comparison: Option<&'a Comparison>,
    pub revision: Option<String>,
    /// Per-source revisions for multi-source apps: one per entry of `spec.sources`, in order,
    /// ref-only sources included (empty for single-source apps).
    pub revisions: Vec<String>,
    pub source_type: Option<String>,
    /// The cluster could not be reached: health is Unknown.
    pub cluster_unreachable: bool,
    /// (type, message)
    pub conditions: Vec<(String, String)>,
    /// Replaces the stored operation state when set.
    pub operation_state: Option<OperationState>,
    pub history: Option<HistoryEntry>,
    pub history_limit: usize,
    /// A full refresh happened: `reconciledAt` moves.
    pub refreshed: bool,
}

fn resource_statuses(c: &Comparison) -> Vec<ResourceStatus> {
    c.resources
        .iter()
        .map(|r| {
            let (_, version) = crate::tracking::group_version(&r.api_version);
            ResourceStatus {
                group: r.key.group.clone(),
                version: version.to_string(),
                kind: r.key.kind.clone(),
                namespace: (!r.key.namespace.is_empty()).then(|| r.key.namespace.clone()),
                name: r.key.name.clone(),
                status: Some(r.sync.as_str().to_string()),
                health: r.health.as_ref().map(|h| HealthStatus {
                    status: h.code.as_str().to_string(),
                    message: (!h.message.is_empty()).then(|| h.message.clone()),
                }),
                requires_pruning: r.requires_pruning,
            }
        })
        .collect()
}

/// The new status given the previous one and this reconciliation's outcome, at `now`.
pub fn build(
    previous: Option<&ApplicationStatus>,
    o: &Outcome<'_>,
    now: jiff::Timestamp,
) -> ApplicationStatus {
    let now_s = timestamp(now);
    let prev = previous.cloned().unwrap_or_default();
    let mut st = prev.clone();
    match o.comparison {
        Some(c) => {
            st.sync = Some(SyncStatus {
                status: c.sync.as_str().to_string(),
                revision: o.revision.clone(),
                revisions: (!o.revisions.is_empty()).then(|| o.revisions.clone()),
            });
            st.health = Some(HealthStatus {
                status: c.health.as_str().to_string(),
                message: None,
            });
            st.resources = Some(resource_statuses(c));
        }
        None => {
            let revision = o
                .revision
                .clone()
                .or_else(|| prev.sync.as_ref().and_then(|s| s.revision.clone()));
            st.sync = Some(SyncStatus {
                status: SyncCode::Unknown.as_str().to_string(),
                revision,
                revisions: None,
            });
            if o.cluster_unreachable || st.health.is_none() {
                st.health = Some(HealthStatus {
                    status: HealthCode::Unknown.as_str().to_string(),
                    message: None,
                });
            }
        }
    }
    if o.source_type.is_some() {
        st.source_type = o.source_type.clone();
    }
    let old = prev.conditions.unwrap_or_default();
    // Messages can quote repository URLs (errors from the repo-server, Git): never with their
    // credentials.
    let conditions: Vec<ApplicationCondition> = o
        .conditions
        .iter()
        .map(|(t, m)| {
            let message = redact_text(m);
            ApplicationCondition {
                type_: t.clone(),
                last_transition_time: old
                    .iter()
                    .find(|c| c.type_ == *t && c.message == message)
                    .and_then(|c| c.last_transition_time.clone())
                    .or_else(|| Some(now_s.clone())),
                message,
            }
        })
        .collect();
    st.conditions = (!conditions.is_empty()).then_some(conditions);
    if let Some(op) = &o.operation_state {
        let op = OperationState {
            message: redact_text(&op.message),
            ..op.clone()
        };
        st.operation_state = Some(op.to_value());
    }
    if let Some(h) = &o.history {
        let mut history = st.history.take().unwrap_or_default();
        let next_id = history
            .iter()
            .filter_map(|e| e.get("id").and_then(Value::as_i64))
            .max()
            .map_or(0, |m| m + 1);
        let mut entry = serde_json::json!({
            "id": next_id,
            "deployedAt": h.deployed_at,
            "deployStartedAt": h.deploy_started_at,
            "initiatedBy": h.initiated_by,
        });
        if h.revisions.is_empty() {
            entry["revision"] = Value::from(h.revision.clone());
            if let Some(src) = &h.source {
                entry["source"] = src.clone();
            }
        } else {
            entry["revisions"] = Value::from(h.revisions.clone());
            if let Some(srcs) = &h.sources {
                entry["sources"] = Value::from(srcs.clone());
            }
        }
        history.push(entry);
        let limit = o.history_limit.max(1);
        if history.len() > limit {
            history.drain(..history.len() - limit);
        }
        st.history = Some(history);
    }
    if o.refreshed || st.reconciled_at.is_none() {
        st.reconciled_at = Some(now_s);
    }
    st
}

/// Whether writing `new` over `old` changes anything a user would see.
pub fn changed(old: Option<&ApplicationStatus>, new: &ApplicationStatus) -> bool {
    old != Some(new)
}

/// A JSON merge patch for the status subresource that replaces the whole status (fields now
/// absent are removed explicitly).
pub fn merge_patch(prev: Option<&ApplicationStatus>, st: &ApplicationStatus) -> Value {
    let mut body = match serde_json::to_value(st) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    // A merge patch keeps what it does not mention: null every field the previous status
    // had and this one lacks (a finished operation's `finishedAt` must not stick to the next).
    if let Some(Value::Object(old)) = prev.and_then(|p| serde_json::to_value(p).ok()) {
        null_removed(&old, &mut body);
    }
    for field in [
        "sync",
        "health",
        "resources",
        "operationState",
        "reconciledAt",
        "conditions",
        "history",
        "sourceType",
    ] {
        body.entry(field).or_insert(Value::Null);
    }
    serde_json::json!({ "status": Value::Object(body) })
}

fn null_removed(old: &Map<String, Value>, new: &mut Map<String, Value>) {
    for (k, ov) in old {
        match new.get_mut(k) {
            None => {
                new.insert(k.clone(), Value::Null);
            }
            Some(Value::Object(nm)) => {
                if let Value::Object(om) = ov {
                    null_removed(om, nm);
                }
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compare;
    use crate::tracking::{FIELD_MANAGER, ResourceKey};
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn now(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    fn mk_cmp(in_sync: bool) -> Comparison {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "dev"}, "spec": {"replicas": 1, "revisionHistoryLimit": 5}});
        let mut l = d.clone();
        l["status"] = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1});
        l["metadata"]["generation"] = json!(1);
        if !in_sync {
            l["spec"]["revisionHistoryLimit"] = json!(10);
        }
        let live: BTreeMap<_, _> = [(ResourceKey::of(&l).expect("key"), Arc::new(l))].into();
        compare(&[d], &live, FIELD_MANAGER)
    }

    #[test]
    fn comparison_becomes_sync_health_and_resources() {
        let c = mk_cmp(false);
        let o = Outcome {
            comparison: Some(&c),
            revision: Some("abc".into()),
            refreshed: true,
            ..Default::default()
        };
        let st = build(None, &o, now("2026-01-01T00:00:00Z"));
        assert_eq!(
            st.sync.as_ref().map(|s| s.status.as_str()),
            Some("OutOfSync")
        );
        assert_eq!(
            st.health.as_ref().map(|s| s.status.as_str()),
            Some("Healthy")
        );
        let r = &st.resources.as_ref().expect("resources")[0];
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.kind.as_str()),
            ("apps", "v1", "Deployment")
        );
        assert_eq!(st.reconciled_at.as_deref(), Some("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn failed_comparison_keeps_resources_and_goes_unknown() {
        let c = mk_cmp(true);
        let first = build(
            None,
            &Outcome {
                comparison: Some(&c),
                revision: Some("abc".into()),
                ..Default::default()
            },
            now("2026-01-01T00:00:00Z"),
        );
        let o = Outcome {
            conditions: vec![(COMPARISON_ERROR.into(), "cluster unreachable".into())],
            cluster_unreachable: true,
            ..Default::default()
        };
        let st = build(Some(&first), &o, now("2026-01-01T00:01:00Z"));
        assert_eq!(st.sync.as_ref().map(|s| s.status.as_str()), Some("Unknown"));
        assert_eq!(
            st.sync.as_ref().and_then(|s| s.revision.as_deref()),
            Some("abc")
        );
        assert_eq!(
            st.health.as_ref().map(|s| s.status.as_str()),
            Some("Unknown")
        );
        assert_eq!(st.resources, first.resources);
        assert_eq!(st.conditions.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn conditions_keep_their_transition_time_and_clear() {
        let o = Outcome {
            conditions: vec![(SYNC_ERROR.into(), "boom".into())],
            ..Default::default()
        };
        let a = build(None, &o, now("2026-01-01T00:00:00Z"));
        let b = build(Some(&a), &o, now("2026-01-01T00:05:00Z"));
        assert_eq!(
            b.conditions
                .as_ref()
                .and_then(|c| c[0].last_transition_time.as_deref()),
            Some("2026-01-01T00:00:00Z")
        );
        let cleared = build(Some(&b), &Outcome::default(), now("2026-01-01T00:06:00Z"));
        assert!(cleared.conditions.is_none());
        assert_eq!(
            merge_patch(None, &cleared)["status"]["conditions"],
            Value::Null
        );
        assert!(
            merge_patch(None, &cleared)["status"]
                .as_object()
                .is_some_and(|m| m.contains_key("conditions"))
        );
    }

    #[test]
    fn condition_and_operation_messages_never_carry_url_credentials() {
        let leak = "failed to load target state: fetching https://alice:TOKEN@git.example/x.git";
        let o = Outcome {
            conditions: vec![(COMPARISON_ERROR.into(), leak.into())],
            operation_state: Some(OperationState {
                message: format!("ComparisonError: {leak}"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let st = build(None, &o, now("2026-01-01T00:00:00Z"));
        let text = serde_json::to_string(&st).expect("json");
        assert!(!text.contains("TOKEN") && !text.contains("alice"), "{text}");
        assert!(text.contains("https://***@git.example/x.git"), "{text}");
        // The redacted message is what keeps its transition time.
        let again = build(Some(&st), &o, now("2026-01-01T00:05:00Z"));
        assert_eq!(
            again
                .conditions
                .as_ref()
                .and_then(|c| c[0].last_transition_time.as_deref()),
            Some("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn fields_the_new_status_lacks_are_nulled_in_the_patch() {
        let old: ApplicationStatus = serde_json::from_value(json!({
            "operationState": {"phase": "Failed", "finishedAt": "t", "retryCount": 2,
                               "operation": {"sync": {}}, "startedAt": "s"}}))
        .expect("old");
        let new: ApplicationStatus = serde_json::from_value(json!({
            "operationState": {"phase": "Running", "operation": {"sync": {}}, "startedAt": "u"}}))
        .expect("new");
        let p = merge_patch(Some(&old), &new);
        let op = &p["status"]["operationState"];
        assert_eq!(op["finishedAt"], Value::Null);
        assert!(op.as_object().is_some_and(|m| m.contains_key("finishedAt")));
        assert!(op.as_object().is_some_and(|m| m.contains_key("retryCount")));
        assert_eq!(op["phase"], "Running");
    }

    #[test]
    fn history_is_appended_and_bounded() {
        let mut st = ApplicationStatus::default();
        for i in 0..12 {
            let o = Outcome {
                history: Some(HistoryEntry {
                    revision: format!("r{i}"),
                    source: None,
                    revisions: Vec::new(),
                    sources: None,
                    deployed_at: "t".into(),
                    deploy_started_at: "t".into(),
                    initiated_by: json!({"automated": true}),
                }),
                history_limit: 10,
                ..Default::default()
            };
            st = build(Some(&st), &o, now("2026-01-01T00:00:00Z"));
        }
        let h = st.history.expect("history");
        assert_eq!(h.len(), 10);
        assert_eq!(h[9]["revision"], "r11");
        assert_eq!(h[9]["id"], 11);
    }

    #[test]
    fn multi_source_status_and_history_carry_every_source() {
        let c = mk_cmp(true);
        let o = Outcome {
            comparison: Some(&c),
            revision: Some("c1".into()),
            revisions: vec!["c1".into(), "v1".into()],
            history: Some(HistoryEntry {
                revision: String::new(),
                source: None,
                revisions: vec!["c1".into(), "v1".into()],
                sources: Some(vec![
                    json!({"repoURL": "a"}),
                    json!({"repoURL": "b", "ref": "values"}),
                ]),
                deployed_at: "t".into(),
                deploy_started_at: "t".into(),
                initiated_by: json!({"automated": true}),
            }),
            history_limit: 10,
            ..Default::default()
        };
        let st = build(None, &o, now("2026-01-01T00:00:00Z"));
        assert_eq!(
            st.sync.as_ref().and_then(|s| s.revisions.clone()),
            Some(vec!["c1".to_string(), "v1".to_string()])
        );
        let h = &st.history.expect("history")[0];
        assert_eq!(h["revisions"], json!(["c1", "v1"]));
        assert_eq!(h["sources"][1]["ref"], "values");
        assert!(
            h.get("revision").is_none() && h.get("source").is_none(),
            "{h}"
        );
        // A single-source app has no `revisions`.
        let single = build(
            None,
            &Outcome {
                comparison: Some(&c),
                revision: Some("c1".into()),
                ..Default::default()
            },
            now("2026-01-01T00:00:00Z"),
        );
        assert_eq!(single.sync.and_then(|s| s.revisions), None);
    }

    #[test]
    fn seconds_since_parses_argo_timestamps() {
        assert_eq!(
            seconds_since("2026-01-01T00:00:00Z", now("2026-01-01T00:00:42Z")),
            Some(42)
        );
        assert_eq!(seconds_since("nope", now("2026-01-01T00:00:42Z")), None);
    }
}
