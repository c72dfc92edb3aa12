//! PostDelete hooks, as Argo CD runs them: an app whose manifests hold
//! `argocd.argoproj.io/hook: PostDelete` (or `helm.sh/hook: post-delete`) hooks carries two
//! finalizers; once its resources are deleted, the hooks are created and awaited, then the
//! ones their delete policy names are removed, and the app goes.

use std::sync::Arc;
use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::clusters::Cluster;
use crate::context::{Context, Level};
use crate::engine::{Task, TaskKind, TaskState};
use crate::health::HealthCode;
use crate::hooks::{self, DeletePolicy, HookType, Role, SyncPhase};
use crate::reconcile::{Next, ReconcileError};
use crate::sync::{self, ExecOptions};
use crate::tracking::{AppKey, ResourceKey, stamp};
use crate::types::Application;

pub const POST_DELETE_FINALIZER: &str = "post-delete-finalizer.argocd.argoproj.io";
pub const POST_DELETE_CLEANUP_FINALIZER: &str = "post-delete-finalizer.argocd.argoproj.io/cleanup";

/// The PostDelete hooks among normalized hook objects.
pub fn post_delete_hooks(hooks: &[Value]) -> Vec<Value> {
    hooks
        .iter()
        .filter(|h| matches!(hooks::role(h), Role::Hook(t) if t.contains(&HookType::PostDelete)))
        .cloned()
        .collect()
}

fn has(app: &Application, finalizer: &str) -> bool {
    app.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == finalizer)
}

/// The app's finalizers but `finalizer`.
fn without(app: &Application, finalizer: &str) -> Vec<String> {
    app.metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect()
}

async fn set_finalizers(
    ctx: &Context,
    app: &Application,
    key: &AppKey,
    finalizers: Vec<String>,
) -> Result<(), ReconcileError> {
    let api: Api<Application> = Api::namespaced(ctx.control.clone(), &key.namespace);
    api.patch(
        &key.name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": finalizers,
                                          "resourceVersion": app.metadata.resource_version}})),
    )
    .await
    .map_err(|source| ReconcileError::Patch {
        app: key.to_string(),
        source,
    })?;
    Ok(())
}

/// Keep the two finalizers on a live app exactly while its manifests hold PostDelete hooks.
pub async fn keep_finalizers(
    ctx: &Context,
    app: &Application,
    key: &AppKey,
    wanted: bool,
) -> Result<(), ReconcileError> {
    let both = [POST_DELETE_FINALIZER, POST_DELETE_CLEANUP_FINALIZER];
    let present = both.iter().all(|f| has(app, f));
    let any = both.iter().any(|f| has(app, f));
    if wanted == present && (wanted || !any) {
        return Ok(());
    }
    let mut finalizers: Vec<String> = app
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| !both.contains(&f.as_str()))
        .cloned()
        .collect();
    if wanted {
        finalizers.extend(both.iter().map(|f| f.to_string()));
    }
    set_finalizers(ctx, app, key, finalizers).await
}

fn hook_task(obj: Value, live: Option<Arc<Value>>) -> Option<Task> {
    let key = ResourceKey::of(&obj)?;
    Some(Task {
        api_version: obj.get("apiVersion")?.as_str()?.to_string(),
        live,
        key,
        phase: SyncPhase::Sync,
        wave: hooks::wave(&obj),
        kind: TaskKind::Hook,
        hook_type: Some(HookType::PostDelete),
        delete_policies: hooks::delete_policies(&obj),
        options: Default::default(),
        object: Some(obj),
        state: TaskState::default(),
    })
}

/// The deletion stages after the resources are gone: create and await the PostDelete hooks,
/// then clean up after them. `None` when the app has neither finalizer.
pub async fn finalize(
    ctx: &Arc<Context>,
    app: &Application,
    key: &AppKey,
    cluster: &Cluster,
    cache: &Arc<crate::live::ClusterCache>,
    hook_objects: Result<Vec<Value>, String>,
) -> Result<Option<Next>, ReconcileError> {
    let run_stage = has(app, POST_DELETE_FINALIZER);
    let cleanup_stage = has(app, POST_DELETE_CLEANUP_FINALIZER);
    if !run_stage && !cleanup_stage {
        return Ok(None);
    }
    let hook_objects = match hook_objects {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(app = %key, error = %e, "PostDelete hooks could not be rendered");
            return Ok(Some(Next::Backoff));
        }
    };
    let live = cache.live_for(key);
    let mut tasks: Vec<Task> = hook_objects
        .into_iter()
        .map(|mut h| {
            if h.pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                let generate = h
                    .pointer("/metadata/generateName")
                    .and_then(Value::as_str)
                    .unwrap_or("post-delete-")
                    .to_string();
                h["metadata"]["name"] = json!(format!("{generate}postdelete"));
            }
            stamp(&mut h, key);
            h
        })
        .filter_map(|h| {
            let k = ResourceKey::of(&h)?;
            let l = live.get(&k).cloned();
            hook_task(h, l)
        })
        .collect();
    let server = cluster.server.clone();
    let ctx2 = ctx.clone();
    let permit = move || ctx2.permit(&server);
    let progress = |t: &Task| {
        t.live.as_deref().map(|l| {
            crate::settings::health(&t.key.group, &t.key.kind, l)
                .map_or(HealthCode::Healthy, |h| h.code)
        })
    };
    if run_stage {
        let missing: Vec<usize> = (0..tasks.len())
            .filter(|&i| tasks[i].live.is_none())
            .collect();
        if !missing.is_empty() {
            let exec = ExecOptions {
                operation: "post-delete".into(),
                ..Default::default()
            };
            if sync::run_wave(cache, &mut tasks, &missing, &exec, &permit)
                .await
                .is_err()
            {
                return Ok(Some(Next::Skipped));
            }
            tracing::info!(app = %key, created = missing.len(), "PostDelete hooks created");
            return Ok(Some(Next::After(Duration::from_secs(1))));
        }
        // A Degraded hook does not block (Argo CD); a running one does.
        if tasks.iter().any(|t| {
            matches!(
                progress(t),
                Some(HealthCode::Progressing | HealthCode::Suspended)
            )
        }) {
            return Ok(Some(Next::After(Duration::from_secs(1))));
        }
        set_finalizers(ctx, app, key, without(app, POST_DELETE_FINALIZER)).await?;
        return Ok(Some(Next::After(Duration::ZERO)));
    }
    // Cleanup: by the worst hook health, delete the hooks whose policy asks for it.
    let worst = tasks
        .iter()
        .filter_map(progress)
        .max()
        .unwrap_or(HealthCode::Healthy);
    let policy = if worst == HealthCode::Degraded {
        DeletePolicy::HookFailed
    } else {
        DeletePolicy::HookSucceeded
    };
    let doomed: Vec<usize> = (0..tasks.len())
        .filter(|&i| tasks[i].live.is_some() && tasks[i].delete_policies.contains(&policy))
        .collect();
    if !doomed.is_empty() {
        if sync::delete_hooks(cache, &mut tasks, &doomed, &permit)
            .await
            .is_err()
        {
            return Ok(Some(Next::Skipped));
        }
        return Ok(Some(Next::After(Duration::from_secs(1))));
    }
    set_finalizers(ctx, app, key, without(app, POST_DELETE_CLEANUP_FINALIZER)).await?;
    Ok(Some(Next::After(Duration::ZERO)))
}

/// Render the app's PostDelete hooks again (at its spec's revision) for its deletion.
pub async fn render_hooks(
    ctx: &Arc<Context>,
    app: &Application,
    key: &AppKey,
    cluster: &Cluster,
    cache: &Arc<crate::live::ClusterCache>,
) -> Result<Vec<Value>, String> {
    let project = ctx
        .project(&ctx.cfg.namespace, crate::reconcile::project_of(app))
        .ok_or("the project is gone")?;
    let desired = crate::reconcile::desired_for(ctx, app, key, Level::Compare)
        .await
        .map_err(|e| e.to_string())?;
    let n = crate::reconcile::normalize_for(cache, &project, app, key, cluster, &desired.objects)
        .await
        .map_err(|e| e.to_string())?;
    Ok(post_delete_hooks(&n))
}
