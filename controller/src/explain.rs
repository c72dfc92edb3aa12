//! What the API and CLI show of one app's resources: each one's sync and health with a
//! readable, normalized desired-vs-live diff (Secret values masked), computed on request from
//! the desired state and cluster cache a reconcile uses. Nothing is stored for it.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::context::{Context, Level};
use crate::diff::project_live;
use crate::normalize::{mask_secrets, unified_diff};
use crate::plan::{ResourceState, SyncCode, compare_with};
use crate::reconcile::{capabilities_for, desired, ignore_rules, live_state, project_name};
use crate::tracking::{AppKey, FIELD_MANAGER};

/// Why no view could be made.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("no application {0}")]
    NotFound(String),
    #[error("application {0} is reconciled by another controller replica")]
    NotOwned(String),
    #[error("{0}")]
    Unavailable(String),
    /// The request itself is wrong (e.g. local objects without a kind).
    #[error("{0}")]
    Invalid(String),
}

/// One managed resource as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceView {
    pub group: String,
    pub version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    /// The live object's uid (children name it as their parent).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthView>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub requires_pruning: bool,
    /// Its sync wave (`argocd.argoproj.io/sync-wave`, else Helm's hook weight; 0).
    pub sync_wave: i64,
    /// Paths that differ (`.spec.replicas`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    /// Unified diff, live (`-`) to desired (`+`), of the fields Git sets; for OutOfSync only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HealthView {
    pub status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The resources of `key`, compared now (desired from the memo unless the spec changed).
pub async fn resources(ctx: &Arc<Context>, key: &AppKey) -> Result<Explained, ExplainError> {
    resources_against(ctx, key, None).await
}

/// An app's resources as the API shows them: the managed ones compared, and (for a view of
/// Git's state, not a local diff) the objects the cluster made for its workloads.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub resources: Vec<ResourceView>,
    pub children: Vec<crate::tree::ChildNode>,
    /// The children are incomplete (a limit was reached or a list failed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub children_truncated: bool,
    /// Local objects left out of a local diff, each with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_compared: Vec<String>,
}

/// Which local objects a local diff compares. Secrets are not (a caller who may only read the
/// app must not learn whether a guessed value matches the live one), nor kinds the app neither
/// renders from Git nor has live (comparing them would start new watches on the cluster at a
/// reader's request).
fn local_comparable(
    ctx: &Context,
    app: &crate::types::Application,
    key: &AppKey,
    objects: Vec<Value>,
) -> (Vec<Value>, Vec<String>) {
    let kind_of = |o: &Value| {
        let av = o["apiVersion"].as_str().unwrap_or_default();
        let group = av.split_once('/').map_or("", |(g, _)| g).to_string();
        (group, o["kind"].as_str().unwrap_or_default().to_string())
    };
    let mut known: std::collections::BTreeSet<(String, String)> = ctx
        .memo(key)
        .desired
        .map(|d| d.objects.iter().map(kind_of).collect())
        .unwrap_or_default();
    for r in app
        .status
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .into_iter()
        .flatten()
    {
        known.insert((r.group.clone(), r.kind.clone()));
    }
    let mut skipped = Vec::new();
    let compared = objects
        .into_iter()
        .filter(|o| {
            let (group, kind) = kind_of(o);
            let name = o
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let id = format!("{kind} {name}");
            if group.is_empty() && kind == "Secret" {
                skipped.push(format!(
                    "{id}: Secrets are not compared with local manifests"
                ));
                false
            } else if !known.contains(&(group, kind.clone())) {
                skipped.push(format!(
                    "{id}: the application has no {kind} from Git or live; not compared"
                ));
                false
            } else {
                true
            }
        })
        .collect();
    (compared, skipped)
}

/// The most objects a local diff may carry.
pub const MAX_LOCAL_OBJECTS: usize = 10_000;

/// The resources of `key` compared with `local` objects (rendered elsewhere, e.g. by
/// `flotilla app diff --local`) instead of its source's render. They are normalized and
/// checked against the project exactly as a render would be, and never applied.
pub async fn resources_against(
    ctx: &Arc<Context>,
    key: &AppKey,
    local: Option<Vec<serde_json::Value>>,
) -> Result<Explained, ExplainError> {
    let with_children = local.is_none();
    let mut not_compared = Vec::new();
    let app = ctx
        .app(key)
        .ok_or_else(|| ExplainError::NotFound(key.to_string()))?;
    let registry = ctx.registry.borrow().clone();
    let cluster = registry
        .resolve(
            app.spec.destination.server.as_deref(),
            app.spec.destination.name.as_deref(),
        )
        .cloned()
        .ok_or_else(|| ExplainError::Unavailable("unknown destination cluster".into()))?;
    if !ctx.owns(&cluster.server) {
        return Err(ExplainError::NotOwned(key.to_string()));
    }
    let project = ctx
        .project(&ctx.cfg.namespace, project_name(&app))
        .ok_or_else(|| ExplainError::Unavailable("unknown project".into()))?;
    let want = match local {
        Some(objects) => {
            if objects.len() > MAX_LOCAL_OBJECTS {
                return Err(ExplainError::Invalid(format!(
                    "{} objects: at most {MAX_LOCAL_OBJECTS}",
                    objects.len()
                )));
            }
            if let Some(bad) = objects.iter().position(|o| {
                !o.is_object()
                    || o.get("kind")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    || o.get("apiVersion")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
            }) {
                return Err(ExplainError::Invalid(format!(
                    "object {bad} has no apiVersion or kind"
                )));
            }
            let (compared, skipped) = local_comparable(ctx, &app, key, objects);
            not_compared = skipped;
            crate::context::DesiredMemo {
                fingerprint: "local".into(),
                revisions: Vec::new(),
                objects: Arc::new(compared),
                source_type: "Local".into(),
            }
        }
        None => {
            let caps = capabilities_for(ctx, &app, &cluster).await;
            desired(ctx, &app, key, Level::Compare, None, None, caps.as_deref())
                .await
                .map_err(|e| {
                    ExplainError::Unavailable(format!("failed to load target state: {e}"))
                })?
        }
    };
    let settings = crate::settings::current();
    let ignore = ignore_rules(&app, &settings);
    let (cache, normalized) = live_state(
        ctx, &app, key, &project, &cluster, &want, &settings, &ignore,
    )
    .await
    .map_err(|e| ExplainError::Unavailable(e.to_string()))?
    .map_err(|e| ExplainError::Unavailable(e.to_string()))?;
    let cmp = compare_with(
        &normalized.resources,
        &cache.live_for(key),
        FIELD_MANAGER,
        &ignore,
    );
    let (children, children_truncated) = if with_children {
        let roots: Vec<Value> = cmp
            .resources
            .iter()
            .filter_map(|r| r.live.as_deref().cloned())
            .collect();
        let c = crate::tree::children(cache.client(), &roots).await;
        (c.nodes, c.truncated)
    } else {
        (Vec::new(), false)
    };
    let resources = cmp
        .resources
        .iter()
        .map(|r| view(r, &ignore, &settings))
        .collect();
    Ok(Explained {
        resources,
        children,
        children_truncated,
        not_compared,
    })
}

/// One resource's view; the diff compares what the comparison compared (ignored fields taken
/// from live) against live seen through the desired object's shape.
pub fn view(
    r: &ResourceState,
    ignore: &[crate::ignore::IgnoreRule],
    settings: &crate::settings::Settings,
) -> ResourceView {
    let (_, version) = crate::tracking::group_version(&r.api_version);
    let diff = (r.sync != SyncCode::Synced).then(|| {
        let opts = settings.diff_options(&r.key.group, &r.key.kind);
        let mut want = r
            .desired
            .as_ref()
            .map(|d| crate::ignore::overlay(d, r.live.as_deref(), &r.key, ignore));
        let mut have = match (&want, r.live.as_deref()) {
            (Some(d), Some(l)) => Some(project_live(d, l, &opts)),
            (None, Some(l)) => Some(without_server_fields(l)),
            (_, None) => None,
        };
        mask_secrets(want.as_mut(), have.as_mut());
        unified_diff(
            want.as_ref().unwrap_or(&Value::Null),
            have.as_ref().unwrap_or(&Value::Null),
        )
    });
    ResourceView {
        group: r.key.group.clone(),
        version: version.to_string(),
        kind: r.key.kind.clone(),
        namespace: r.key.namespace.clone(),
        name: r.key.name.clone(),
        status: r.sync.as_str(),
        sync_wave: r
            .desired
            .as_ref()
            .or(r.live.as_deref())
            .map(crate::hooks::wave)
            .unwrap_or(0),
        health: r.health.as_ref().map(|h| HealthView {
            status: h.code.as_str(),
            message: h.message.clone(),
        }),
        uid: r
            .live
            .as_deref()
            .and_then(|l| l.pointer("/metadata/uid"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        requires_pruning: r.requires_pruning,
        differences: r.differences.clone(),
        diff,
    }
}

/// A live object to prune, as shown: without what the server keeps for itself.
fn without_server_fields(live: &Value) -> Value {
    let mut v = live.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
        ] {
            m.remove(k);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::ResourceKey;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn an_out_of_sync_secret_shows_its_drift_masked() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "token", "namespace": "web"},
            "stringData": {"token": "new-value"}, "data": {"user": "YWRtaW4="}});
        let live = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "token", "namespace": "web", "uid": "u", "resourceVersion": "3"},
            "data": {"token": "b2xkLXZhbHVl", "user": "YWRtaW4="}, "type": "Opaque"});
        let key = ResourceKey::of(&desired).expect("key");
        let mut lives = BTreeMap::new();
        lives.insert(key, Arc::new(live));
        let cmp = compare_with(&[desired], &lives, FIELD_MANAGER, &[]);
        let v = view(&cmp.resources[0], &[], &Default::default());
        assert_eq!(v.status, "OutOfSync");
        let text = v.diff.expect("a diff");
        assert!(
            !text.contains("new-value") && !text.contains("b2xk") && !text.contains("YWRtaW4"),
            "{text}"
        );
        assert!(
            text.contains("token: ++++++++") && text.contains("token: ++++++++++++"),
            "{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| (l.starts_with('-') || l.starts_with('+')) && l.contains("user")),
            "equal values are no drift: {text}"
        );
    }
}
