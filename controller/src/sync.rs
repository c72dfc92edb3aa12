//! The executor of sync steps on one cluster: runs one wave of tasks the engine chose (prunes
//! first, then applies and hook creations), deletes hooks, creates the destination namespace.
//! Every write asks for the cluster's permit first and is written through to the cache; what
//! a write did is recorded in the task's state, with the API server's own message on errors.

use std::sync::Arc;

use flotilla_sharding::Permit;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::{Value, json};

use crate::engine::{Task, TaskKind, TaskState};
use crate::hooks::DeletePolicy;
use crate::live::{CacheError, ClusterCache};
use crate::operation::OpPhase;
use crate::tracking::{FIELD_MANAGER, ResourceKey};

/// Annotation on every hook Flotilla creates: the operation (start time and attempt) it ran
/// for, so a resumed sync adopts its own hook instead of deleting and creating it again.
pub const HOOK_OPERATION_ANNOTATION: &str = "flotilla.dev/sync-operation";

/// How to run a step.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Server-side dry run: nothing is persisted.
    pub dry_run: bool,
    /// This operation's identity for `HOOK_OPERATION_ANNOTATION`.
    pub operation: String,
    /// In a dry run, the namespace `CreateNamespace` would create: objects in it cannot be
    /// checked by the server (it does not exist yet) and count as applied.
    pub dry_run_namespace: Option<String>,
}

/// A write could not be made because another replica owns the cluster now: stop, record
/// nothing; the new owner resumes from the persisted operation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandedOver;

type PermitFn<'a> = &'a (dyn Fn() -> Option<Permit> + Send + Sync);

/// The API server's message for a failed call (`namespaces "x" not found`), never a Debug
/// dump; transport errors keep their display text.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

fn note_connection_error(cache: &Arc<ClusterCache>, e: &kube::Error) {
    if !matches!(e, kube::Error::Api(_)) {
        cache.mark_unreachable(e.to_string());
    }
}

/// The API handle for one object, refused (403, before any request) when the cluster's
/// Secret keeps the object's namespace, or cluster-level objects, out of Flotilla's hands.
async fn api_for(
    cache: &Arc<ClusterCache>,
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<kube::Api<kube::api::DynamicObject>, kube::Error> {
    // Discovery problems reach the task's result as the API server's NotFound would.
    let not_found = |message: String| {
        kube::Error::Api(Box::new(kube::core::Status {
            message,
            code: 404,
            reason: "NotFound".into(),
            ..Default::default()
        }))
    };
    let info = match cache.api_info(api_version, kind).await {
        Ok(i) => i,
        Err(CacheError::UnknownKind { .. }) => {
            // A CRD applied earlier in this sync may have just made the kind known.
            cache.forget_kind(api_version, kind);
            cache.api_info(api_version, kind).await.map_err(|e| {
                let (group, _) = crate::tracking::group_version(api_version);
                not_found(format!(
                    "The Kubernetes API could not find {group}/{kind} for requested resource {namespace}. Make sure the \"{kind}\" CRD is installed on the destination cluster. ({e})"
                ))
            })?
        }
        Err(e) => return Err(not_found(e.to_string())),
    };
    if let Some(why) = cache
        .scope()
        .refusal(&cache.name, info.namespaced, kind, namespace, name)
    {
        return Err(kube::Error::Api(Box::new(kube::core::Status {
            message: why,
            code: 403,
            reason: "Forbidden".into(),
            ..Default::default()
        })));
    }
    Ok(cache.api(&info, namespace))
}

/// After a CRD is written, the kinds it defines are looked up afresh.
fn forget_crd_kinds(cache: &Arc<ClusterCache>, crd: &Value) {
    let (Some(group), Some(kind)) = (
        crd.pointer("/spec/group").and_then(Value::as_str),
        crd.pointer("/spec/names/kind").and_then(Value::as_str),
    ) else {
        return;
    };
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(ver) = v.get("name").and_then(Value::as_str) {
            cache.forget_kind(&format!("{group}/{ver}"), kind);
        }
    }
}

/// Write one object: server-side apply (forced, strict validation unless `Validate=false`),
/// or with `Replace=true` an update of the live object (`Force=true`: delete and create).
async fn write(
    cache: &Arc<ClusterCache>,
    t: &Task,
    object: &Value,
    dry_run: bool,
) -> Result<(Value, String), kube::Error> {
    let api = api_for(
        cache,
        &t.api_version,
        &t.key.kind,
        &t.key.namespace,
        &t.key.name,
    )
    .await?;
    let dry = if dry_run { " (dry run)" } else { "" };
    let kind = t.key.kind.to_lowercase();
    let validation = if t.options.skip_validation {
        kube::api::ValidationDirective::Ignore
    } else {
        kube::api::ValidationDirective::Strict
    };
    let written = if t.options.replace {
        let obj: kube::api::DynamicObject =
            serde_json::from_value(object.clone()).map_err(kube::Error::SerdeError)?;
        let pp = PostParams {
            dry_run,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        match t.live.as_deref() {
            Some(_) if t.options.force && !dry_run => {
                // Delete and create again; while the old object is still going (finalizers),
                // the create answers 409 and the task stays pending for the next pass.
                api.delete(&t.key.name, &DeleteParams::background()).await?;
                cache.observe_deleted(&t.key);
                let o = api.create(&pp, &obj).await?;
                (o, format!("{kind}/{} replaced{dry}", t.key.name))
            }
            Some(live) => {
                let mut obj = obj;
                obj.metadata.resource_version = live
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let o = api.replace(&t.key.name, &pp, &obj).await?;
                (o, format!("{kind}/{} replaced{dry}", t.key.name))
            }
            None => {
                let o = api.create(&pp, &obj).await?;
                (o, format!("{kind}/{} created{dry}", t.key.name))
            }
        }
    } else {
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = dry_run;
        params.field_validation = Some(validation);
        let o = api
            .patch(&t.key.name, &params, &Patch::Apply(object))
            .await?;
        (o, format!("{kind}/{} serverside-applied{dry}", t.key.name))
    };
    let (obj, message) = written;
    let v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if !dry_run {
        cache.observe(v.clone());
        if t.key.kind == "CustomResourceDefinition" {
            forget_crd_kinds(cache, object);
        }
    }
    Ok((v, message))
}

async fn delete(
    cache: &Arc<ClusterCache>,
    api_version: &str,
    key: &ResourceKey,
    propagation: &str,
    dry_run: bool,
) -> Result<Option<Value>, kube::Error> {
    let api = api_for(cache, api_version, &key.kind, &key.namespace, &key.name).await?;
    let params = DeleteParams {
        dry_run,
        propagation_policy: Some(match propagation.to_ascii_lowercase().as_str() {
            "background" => PropagationPolicy::Background,
            "orphan" => PropagationPolicy::Orphan,
            _ => PropagationPolicy::Foreground,
        }),
        ..Default::default()
    };
    match api.delete(&key.name, &params).await {
        Ok(either) => {
            let left = match either {
                either::Either::Left(obj) => serde_json::to_value(obj).ok(),
                either::Either::Right(_) => None,
            };
            if !dry_run {
                match &left {
                    Some(v) => cache.observe(v.clone()),
                    None => cache.observe_deleted(key),
                }
            }
            Ok(left)
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => {
            cache.observe_deleted(key);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn done(t: &mut Task, status: &str, phase: OpPhase, message: String) {
    t.state = TaskState {
        status: status.into(),
        hook_phase: Some(phase),
        message,
    };
}

/// Run one wave: `idx` are tasks of one (phase, wave). Prunes first, then hooks due for
/// re-creation are deleted (the wave continues once they are gone), then everything else is
/// written in order. Tasks left pending (a hook being deleted first) are run by the next pass.
pub async fn run_wave(
    cache: &Arc<ClusterCache>,
    tasks: &mut [Task],
    idx: &[usize],
    opts: &ExecOptions,
    permit: PermitFn<'_>,
) -> Result<(), HandedOver> {
    let dry = opts.dry_run;
    let after_write = if dry {
        OpPhase::Succeeded
    } else {
        OpPhase::Running
    };
    let (prunes, writes): (Vec<usize>, Vec<usize>) = idx
        .iter()
        .copied()
        .partition(|&i| tasks[i].kind == TaskKind::Prune);
    for i in prunes {
        let _permit = permit().ok_or(HandedOver)?;
        let t = &mut tasks[i];
        match delete(
            cache,
            &t.api_version,
            &t.key,
            &t.options.prune_propagation,
            dry,
        )
        .await
        {
            Ok(left) => {
                t.live = left.map(Arc::new);
                let m = if dry { "pruned (dry run)" } else { "pruned" };
                done(t, "Pruned", OpPhase::Succeeded, m.into());
            }
            Err(e) => {
                note_connection_error(cache, &e);
                tracing::warn!(resource = %t.key, error = %e, "prune failed");
                done(t, "SyncFailed", OpPhase::Failed, api_message(&e));
            }
        }
    }
    for i in writes {
        let t = &mut tasks[i];
        let Some(mut object) = t.object.clone() else {
            continue;
        };
        if t.is_hook() {
            if let Some(live) = t.live.as_deref() {
                let ours = live
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(HOOK_OPERATION_ANNOTATION))
                    .and_then(Value::as_str)
                    == Some(opts.operation.as_str());
                if ours {
                    // Created by this operation before a hand-over or restart: it runs once.
                    done(
                        t,
                        "Synced",
                        OpPhase::Running,
                        format!("{} created", t.key.name),
                    );
                    continue;
                }
                if t.delete_policies
                    .contains(&DeletePolicy::BeforeHookCreation)
                    && !dry
                {
                    let _permit = permit().ok_or(HandedOver)?;
                    if let Err(e) = delete(cache, &t.api_version, &t.key, "foreground", dry).await {
                        note_connection_error(cache, &e);
                        done(t, "SyncFailed", OpPhase::Failed, api_message(&e));
                    }
                    // Pending: created on the next pass, once the old one is gone.
                    continue;
                }
            }
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                let ann = meta.entry("annotations").or_insert_with(|| json!({}));
                if let Some(a) = ann.as_object_mut() {
                    a.insert(
                        HOOK_OPERATION_ANNOTATION.into(),
                        Value::String(opts.operation.clone()),
                    );
                }
            }
        }
        let _permit = permit().ok_or(HandedOver)?;
        match write(cache, t, &object, dry).await {
            Ok((written, message)) => {
                if !dry {
                    t.live = Some(Arc::new(written));
                }
                done(t, "Synced", after_write, message);
            }
            Err(kube::Error::Api(s))
                if s.code == 409 && t.options.replace && t.options.force && !dry =>
            {
                // Deleted, not gone yet: created on a later pass.
                tracing::debug!(resource = %t.key, "waiting for the replaced object to go");
            }
            Err(e)
                if dry
                    && opts.dry_run_namespace.as_deref() == Some(t.key.namespace.as_str())
                    && api_message(&e)
                        == format!("namespaces \"{}\" not found", t.key.namespace) =>
            {
                let m = format!(
                    "{}/{} serverside-applied (dry run; namespace {} is created by the sync)",
                    t.key.kind.to_lowercase(),
                    t.key.name,
                    t.key.namespace
                );
                done(t, "Synced", OpPhase::Succeeded, m);
            }
            Err(e) => {
                note_connection_error(cache, &e);
                tracing::warn!(resource = %t.key, error = %e, "apply failed");
                done(t, "SyncFailed", OpPhase::Failed, api_message(&e));
            }
        }
    }
    Ok(())
}

/// Delete hooks (by their delete policy, or on terminate).
pub async fn delete_hooks(
    cache: &Arc<ClusterCache>,
    tasks: &mut [Task],
    idx: &[usize],
    permit: PermitFn<'_>,
) -> Result<(), HandedOver> {
    for &i in idx {
        let _permit = permit().ok_or(HandedOver)?;
        let t = &mut tasks[i];
        match delete(cache, &t.api_version, &t.key, "background", false).await {
            Ok(_) => t.live = None,
            Err(e) => {
                note_connection_error(cache, &e);
                tracing::warn!(hook = %t.key, error = %e, "could not delete hook");
            }
        }
    }
    Ok(())
}

/// `CreateNamespace=true`: apply the destination namespace with `managedNamespaceMetadata`.
pub async fn create_namespace(
    cache: &Arc<ClusterCache>,
    ns: &str,
    metadata: Option<&Value>,
    dry_run: bool,
    permit: PermitFn<'_>,
) -> Result<Result<(), String>, HandedOver> {
    let mut obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    for field in ["labels", "annotations"] {
        if let Some(m) = metadata
            .and_then(|m| m.get(field))
            .filter(|m| m.is_object())
        {
            obj["metadata"][field] = m.clone();
        }
    }
    let key = ResourceKey {
        group: String::new(),
        kind: "Namespace".into(),
        namespace: String::new(),
        name: ns.to_string(),
    };
    let task = Task {
        key,
        api_version: "v1".into(),
        phase: crate::hooks::SyncPhase::PreSync,
        wave: i64::MIN,
        kind: TaskKind::Apply,
        object: Some(obj.clone()),
        live: None,
        hook_type: None,
        delete_policies: Default::default(),
        options: Default::default(),
        state: Default::default(),
    };
    let _permit = permit().ok_or(HandedOver)?;
    Ok(write(cache, &task, &obj, dry_run)
        .await
        .map(|_| ())
        .map_err(|e| {
            note_connection_error(cache, &e);
            format!("the namespace failed to apply: {}", api_message(&e))
        }))
}

/// Delete live resources (an application's cascade deletion); returns how many calls failed.
pub async fn delete_all(
    cache: &Arc<ClusterCache>,
    objects: &[(ResourceKey, String)],
    propagation: &str,
    permit: PermitFn<'_>,
) -> Result<usize, HandedOver> {
    let mut failed = 0;
    for (key, api_version) in objects {
        let _permit = permit().ok_or(HandedOver)?;
        if let Err(e) = delete(cache, api_version, key, propagation, false).await {
            note_connection_error(cache, &e);
            tracing::warn!(resource = %key, error = %e, "delete failed");
            failed += 1;
        }
    }
    Ok(failed)
}
