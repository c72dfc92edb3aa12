//! Executes a sync plan against one cluster: `CreateNamespace`, server-side apply with our
//! field manager wave by wave (a failed wave stops the sync before the next wave and before
//! any prune), then prunes. Every write re-checks ownership and is written through to the cache.

use std::sync::Arc;

use flotilla_sharding::Permit;

use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use serde_json::{Value, json};

use crate::live::{CacheError, ClusterCache};
use crate::operation::{Phase, ResourceResult};
use crate::plan::{ApplyStep, PruneStep, SyncPlan};
use crate::tracking::{FIELD_MANAGER, ResourceKey, group_version};

/// How to run a plan.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Create this namespace first (`CreateNamespace=true`).
    pub create_namespace: Option<String>,
    /// Server-side dry run: nothing is persisted.
    pub dry_run: bool,
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub phase: Phase,
    pub message: String,
    pub results: Vec<ResourceResult>,
    /// Stopped because another replica owns the cluster now: not an outcome to record; the
    /// new owner runs the sync again.
    pub handed_over: bool,
}

fn result(key: &ResourceKey, api_version: &str, status: &str, message: String) -> ResourceResult {
    let (_, version) = group_version(api_version);
    ResourceResult {
        group: key.group.clone(),
        version: version.to_string(),
        kind: key.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        status: status.to_string(),
        message,
        sync_phase: "Sync".into(),
    }
}

fn note_connection_error(cache: &Arc<ClusterCache>, e: &kube::Error) {
    if !matches!(e, kube::Error::Api(_)) {
        cache.mark_unreachable(e.to_string());
    }
}

async fn apply_one(
    cache: &Arc<ClusterCache>,
    step: &ApplyStep,
    dry_run: bool,
) -> Result<String, String> {
    let info = match cache.api_info(&step.api_version, &step.key.kind).await {
        Ok(i) => i,
        Err(CacheError::UnknownKind { .. }) => {
            // A CRD applied earlier in this sync may have just made the kind known.
            cache.forget_kind(&step.api_version, &step.key.kind);
            cache
                .api_info(&step.api_version, &step.key.kind)
                .await
                .map_err(|e| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    let api = cache.api(&info, &step.key.namespace);
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    params.dry_run = dry_run;
    match api
        .patch(&step.key.name, &params, &Patch::Apply(&step.object))
        .await
    {
        Ok(obj) => {
            if !dry_run && let Ok(v) = serde_json::to_value(obj) {
                cache.observe(v);
            }
            if step.key.kind == "CustomResourceDefinition" {
                // Kinds it defines are looked up afresh by later steps.
                if let Some(group) = step.object.pointer("/spec/group").and_then(Value::as_str) {
                    for v in step
                        .object
                        .pointer("/spec/versions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let (Some(ver), Some(kind)) = (
                            v.get("name").and_then(Value::as_str),
                            step.object
                                .pointer("/spec/names/kind")
                                .and_then(Value::as_str),
                        ) {
                            cache.forget_kind(&format!("{group}/{ver}"), kind);
                        }
                    }
                }
            }
            Ok(format!(
                "{}/{} serverside-applied{}",
                step.key.kind.to_lowercase(),
                step.key.name,
                if dry_run { " (dry run)" } else { "" }
            ))
        }
        Err(e) => {
            note_connection_error(cache, &e);
            Err(e.to_string())
        }
    }
}

async fn prune_one(
    cache: &Arc<ClusterCache>,
    step: &PruneStep,
    dry_run: bool,
) -> Result<String, String> {
    let info = cache
        .api_info(&step.api_version, &step.key.kind)
        .await
        .map_err(|e| e.to_string())?;
    let api = cache.api(&info, &step.key.namespace);
    let params = DeleteParams {
        dry_run,
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..Default::default()
    };
    match api.delete(&step.key.name, &params).await {
        Ok(either) => {
            if !dry_run {
                match either {
                    either::Either::Left(obj) => {
                        if let Ok(v) = serde_json::to_value(obj) {
                            cache.observe(v);
                        }
                    }
                    either::Either::Right(_) => cache.observe_deleted(&step.key),
                }
            }
            Ok(if dry_run {
                "pruned (dry run)"
            } else {
                "pruned"
            }
            .to_string())
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => {
            cache.observe_deleted(&step.key);
            Ok("already gone".into())
        }
        Err(e) => {
            note_connection_error(cache, &e);
            Err(e.to_string())
        }
    }
}

/// Run `plan` on the cluster behind `cache`. `permit` is asked before every write and its
/// permit held until the write returns; when there is none, the sync stops at once (another
/// replica owns the cluster now, and it waits for our write in flight before it starts).
pub async fn execute(
    cache: &Arc<ClusterCache>,
    plan: &SyncPlan,
    opts: &ExecOptions,
    permit: &(dyn Fn() -> Option<Permit> + Send + Sync),
) -> SyncOutcome {
    let mut results = Vec::new();
    let stop = |results: Vec<ResourceResult>, phase, message: String| SyncOutcome {
        phase,
        message,
        results,
        handed_over: false,
    };
    let handed_over = |results: Vec<ResourceResult>| SyncOutcome {
        phase: Phase::Error,
        message: "ownership of the cluster moved to another replica".into(),
        results,
        handed_over: true,
    };
    if let Some(ns) = &opts.create_namespace {
        let Some(_permit) = permit() else {
            return handed_over(results);
        };
        let step = ApplyStep {
            wave: i64::MIN,
            key: ResourceKey {
                group: String::new(),
                kind: "Namespace".into(),
                namespace: String::new(),
                name: ns.clone(),
            },
            api_version: "v1".into(),
            object: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        };
        if let Err(e) = apply_one(cache, &step, opts.dry_run).await {
            return stop(
                results,
                Phase::Failed,
                format!("creating namespace {ns}: {e}"),
            );
        }
    }
    let mut failed = 0usize;
    let mut i = 0;
    while i < plan.applies.len() {
        let wave = plan.applies[i].wave;
        while i < plan.applies.len() && plan.applies[i].wave == wave {
            let step = &plan.applies[i];
            i += 1;
            let Some(_permit) = permit() else {
                return handed_over(results);
            };
            match apply_one(cache, step, opts.dry_run).await {
                Ok(m) => results.push(result(&step.key, &step.api_version, "Synced", m)),
                Err(e) => {
                    failed += 1;
                    tracing::warn!(resource = %step.key, error = %e, "apply failed");
                    results.push(result(&step.key, &step.api_version, "SyncFailed", e));
                }
            }
        }
        if failed > 0 {
            return stop(
                results,
                Phase::Failed,
                format!(
                    "one or more objects failed to apply (wave {wave}); later waves and prunes were not run"
                ),
            );
        }
    }
    for step in &plan.prunes {
        let Some(_permit) = permit() else {
            return handed_over(results);
        };
        match prune_one(cache, step, opts.dry_run).await {
            Ok(m) => results.push(result(&step.key, &step.api_version, "Pruned", m)),
            Err(e) => {
                failed += 1;
                results.push(result(&step.key, &step.api_version, "SyncFailed", e));
            }
        }
    }
    for key in &plan.prune_skipped {
        results.push(result(
            key,
            "",
            "PruneSkipped",
            "ignored (requires pruning)".into(),
        ));
    }
    if failed > 0 {
        stop(
            results,
            Phase::Failed,
            "one or more objects failed to prune".into(),
        )
    } else {
        stop(
            results,
            Phase::Succeeded,
            "successfully synced (all tasks run)".into(),
        )
    }
}
