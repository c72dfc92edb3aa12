//! What users ask of an Application: a sync (written as Argo CD does, into the top-level
//! `operation`, which the owning controller runs), a refresh (the refresh annotation), its
//! creation and the update of its spec. Every action is audited: an Event on the Application
//! and a log line naming the caller.

use std::sync::Arc;

use flotilla_controller::events::AppEvents;
use flotilla_controller::operation::{
    InitiatedBy, Operation, OperationInfo, SyncOperation, SyncResourceRef,
};
use flotilla_controller::types::Application;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Principal;

/// Body of `POST .../sync` (every field optional: a plain sync of the spec's revision).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncRequest {
    pub revision: Option<String>,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub dry_run: bool,
    pub sync_options: Option<Vec<String>>,
    pub resources: Option<Vec<SyncResourceRef>>,
    /// Argo CD's `strategy`: `{"apply": {"force": bool}}` (resources only, no hooks) or
    /// `{"hook": {"force": bool}}` (the default); written as `operation.sync.syncStrategy`.
    #[serde(alias = "syncStrategy")]
    pub strategy: Option<SyncStrategy>,
    /// Multi-source: the revisions to sync, for the sources at `sourcePositions` (1-based), or
    /// for every source in order when no positions are given.
    pub revisions: Option<Vec<String>>,
    pub source_positions: Option<Vec<i64>>,
}

/// How a sync applies: `apply` (no hooks) or `hook`; `force` replaces objects that cannot be
/// patched.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum SyncStrategy {
    Apply(StrategyForce),
    Hook(StrategyForce),
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StrategyForce {
    #[serde(default)]
    pub force: bool,
}

/// Body of `POST .../rollback`: the `status.history` entry to go back to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackRequest {
    pub id: i64,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// How `DELETE` treats the app's resources (Argo CD's `cascade` and `propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    #[default]
    Foreground,
    Background,
}

/// Why an action was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("another operation is already in progress")]
    InProgress,
    #[error("no operation is in progress")]
    NotRunning,
    /// The request cannot be honoured for this app (e.g. a rollback with auto-sync on).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Kube(#[from] kube::Error),
}

/// A JSON merge patch (RFC 7386) that turns `old` into `new`: keys `new` lacks become null,
/// objects are patched key by key, anything else is replaced whole.
pub fn merge_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, ov) in o {
                match n.get(k) {
                    None => {
                        out.insert(k.clone(), Value::Null);
                    }
                    Some(nv) if nv != ov => {
                        out.insert(k.clone(), merge_patch(ov, nv));
                    }
                    Some(_) => {}
                }
            }
            for (k, nv) in n {
                if !o.contains_key(k) {
                    out.insert(k.clone(), nv.clone());
                }
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

/// Applications as untyped objects: what a client sends is written as sent (fields Flotilla
/// does not model kept, so the controller can refuse them by name instead of never seeing them).
fn raw_api(client: &Client, ns: &str) -> Api<kube::api::DynamicObject> {
    let ar = kube::api::ApiResource::erase::<flotilla_controller::types::application::ApplicationCrd>(
        &(),
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Whether `app` has an operation requested or running.
pub fn operation_in_progress(app: &Application) -> bool {
    app.operation.is_some()
        || app
            .status
            .as_ref()
            .and_then(|s| s.operation_state.as_ref())
            .and_then(|o| o.get("phase"))
            .and_then(serde_json::Value::as_str)
            .is_some_and(|p| p == "Running" || p == "Terminating")
}

/// The `operation` a sync request becomes.
pub fn sync_operation(req: &SyncRequest, by: &Principal) -> Operation {
    Operation {
        sync: Some(SyncOperation {
            revision: req.revision.clone().filter(|r| !r.is_empty()),
            prune: req.prune,
            dry_run: req.dry_run,
            sync_options: req.sync_options.clone().filter(|o| !o.is_empty()),
            resources: req.resources.clone().filter(|r| !r.is_empty()),
            sync_strategy: req
                .strategy
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok()),
            revisions: req.revisions.clone().filter(|r| !r.is_empty()),
            source_positions: req.source_positions.clone().filter(|p| !p.is_empty()),
            ..Default::default()
        }),
        initiated_by: InitiatedBy {
            username: Some(by.subject.clone()),
            automated: false,
        },
        retry: None,
        info: vec![request_info()],
    }
}

/// The `operation.info` name under which the server marks each operation it writes.
pub const REQUEST_INFO: &str = "flotilla.dev/request";

/// A fresh request id for an operation: the owning controller carries it into
/// `status.operationState.operation`, so a client waits for *its* operation (not an earlier
/// one a lagging cache still shows).
fn request_info() -> OperationInfo {
    OperationInfo {
        name: REQUEST_INFO.into(),
        value: uuid::Uuid::new_v4().to_string(),
    }
}

/// The request id of `op` (see [`REQUEST_INFO`]).
pub fn request_of(op: &Operation) -> String {
    op.info
        .iter()
        .find(|i| i.name == REQUEST_INFO)
        .map(|i| i.value.clone())
        .unwrap_or_default()
}

/// Writes actions as the server's field manager.
pub struct Actions {
    pub client: Client,
    pub events: Arc<AppEvents>,
}

const MANAGER: &str = "flotilla-server";

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

fn names(app: &Application) -> (String, String) {
    (
        app.metadata.namespace.clone().unwrap_or_default(),
        app.metadata.name.clone().unwrap_or_default(),
    )
}

impl Actions {
    fn api(&self, ns: &str) -> Api<Application> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Stop the running operation (`argocd app terminate-op`): its state goes to Terminating
    /// and the owning controller ends it as Failed, "Operation terminated". The write is
    /// conditional on the app's resourceVersion so it cannot undo a newer state.
    pub async fn terminate(&self, app: &Application, by: &Principal) -> Result<(), ActionError> {
        let running = app
            .status
            .as_ref()
            .and_then(|s| s.operation_state.as_ref())
            .and_then(|o| o.get("phase"))
            .and_then(serde_json::Value::as_str)
            .is_some_and(|p| p == "Running");
        if !running {
            return Err(ActionError::NotRunning);
        }
        let (ns, name) = names(app);
        let patch = Patch::Merge(json!({
            "metadata": {"resourceVersion": app.metadata.resource_version},
            "status": {"operationState": {"phase": "Terminating"}}}));
        // Flotilla's CRD has a /status subresource; Argo CD's (kept side by side) does not, and
        // there status is written through the main resource.
        match self.api(&ns).patch_status(&name, &params(), &patch).await {
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.api(&ns).patch(&name, &params(), &patch).await?;
            }
            other => {
                other?;
            }
        }
        tracing::info!(user = %by.subject, app = %format!("{ns}/{name}"), "operation termination requested");
        self.events.emit(
            app,
            false,
            "OperationTerminating",
            format!("{} terminated the running operation", by.subject),
        );
        Ok(())
    }

    /// Roll `app` back to history entry `req.id` (a sync of that entry's source and revision
    /// with the apply strategy, as Argo CD does; refused with auto-sync on).
    pub async fn rollback(
        &self,
        app: &Application,
        req: &RollbackRequest,
        by: &Principal,
    ) -> Result<(Operation, String), ActionError> {
        if operation_in_progress(app) {
            return Err(ActionError::InProgress);
        }
        let mut op = flotilla_controller::operation::rollback_operation(
            app,
            req.id,
            req.prune,
            req.dry_run,
            Some(by.subject.clone()),
        )
        .map_err(ActionError::Refused)?;
        op.info.push(request_info());
        let (ns, name) = names(app);
        let written = self
            .api(&ns)
            .patch(
                &name,
                &params(),
                &Patch::Merge(json!({"operation": op,
                    "metadata": {"resourceVersion": app.metadata.resource_version}})),
            )
            .await?;
        tracing::info!(user = %by.subject, app = %format!("{ns}/{name}"), id = req.id, "rollback requested");
        self.events.emit(
            app,
            false,
            "OperationStarted",
            format!("{} initiated rollback to {}", by.subject, req.id),
        );
        Ok((op, written.metadata.resource_version.unwrap_or_default()))
    }

    /// Delete `app`. With `cascade`, its resources go too (the resources finalizer, foreground
    /// or background, makes the owning controller delete them first); without, the finalizer
    /// is removed and they stay on the cluster.
    pub async fn delete(
        &self,
        app: &Application,
        cascade: bool,
        propagation: Propagation,
        by: &Principal,
    ) -> Result<(), ActionError> {
        use flotilla_controller::reconcile::{
            RESOURCES_FINALIZER, RESOURCES_FINALIZER_BACKGROUND, RESOURCES_FINALIZER_FOREGROUND,
        };
        let (ns, name) = names(app);
        let ours = [
            RESOURCES_FINALIZER,
            RESOURCES_FINALIZER_FOREGROUND,
            RESOURCES_FINALIZER_BACKGROUND,
        ];
        let api = self.api(&ns);
        // The finalizers are written conditioned on the version they were computed from; a
        // status write by the controller in between is no reason to fail the user's delete,
        // so a conflict reads the app again and recomputes (a few times).
        let mut current = app.clone();
        for attempt in 1..=4 {
            let mut finalizers: Vec<String> = current
                .metadata
                .finalizers
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| !ours.contains(&f.as_str()))
                .collect();
            if cascade {
                finalizers.push(
                    match propagation {
                        Propagation::Foreground => RESOURCES_FINALIZER,
                        Propagation::Background => RESOURCES_FINALIZER_BACKGROUND,
                    }
                    .to_string(),
                );
            }
            let written = api
                .patch(
                    &name,
                    &params(),
                    &Patch::Merge(json!({
                        "metadata": {"resourceVersion": current.metadata.resource_version,
                                     "finalizers": finalizers}})),
                )
                .await;
            match written {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 409 && attempt < 4 => {
                    current = api.get(&name).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        api.delete(&name, &Default::default()).await?;
        tracing::info!(user = %by.subject, app = %format!("{ns}/{name}"), cascade, ?propagation, "application deleted");
        self.events.emit(
            app,
            false,
            "ResourceDeleted",
            format!("{} deleted application (cascade {cascade})", by.subject),
        );
        Ok(())
    }

    /// The Events about `app` (`events.k8s.io/v1`, as the controllers and this server write
    /// them), oldest first.
    pub async fn events(&self, app: &Application) -> Result<Vec<serde_json::Value>, ActionError> {
        use k8s_openapi::api::events::v1::Event;
        let (ns, name) = names(app);
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let mut selector = format!("regarding.kind=Application,regarding.name={name}");
        if let Some(uid) = &app.metadata.uid {
            selector.push_str(&format!(",regarding.uid={uid}"));
        }
        let list = api
            .list(&kube::api::ListParams::default().fields(&selector))
            .await?;
        let mut events: Vec<(Option<jiff::Timestamp>, &Event)> = list
            .items
            .iter()
            .map(|e| {
                let when = e
                    .event_time
                    .as_ref()
                    .map(|t| t.0)
                    .or_else(|| e.deprecated_last_timestamp.as_ref().map(|t| t.0))
                    .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
                (when, e)
            })
            .collect();
        events.sort_by_key(|(when, _)| *when);
        Ok(events
            .into_iter()
            .map(|(when, e)| {
                json!({
                    "type": e.type_,
                    "reason": e.reason,
                    "message": e.note,
                    "count": e.deprecated_count,
                    "time": when.map(|t| t.to_string()),
                    "source": e.reporting_controller,
                })
            })
            .collect())
    }

    /// Request a sync of `app` (refused while another operation is in progress).
    pub async fn sync(
        &self,
        app: &Application,
        req: &SyncRequest,
        by: &Principal,
    ) -> Result<(Operation, String), ActionError> {
        if operation_in_progress(app) {
            return Err(ActionError::InProgress);
        }
        let op = sync_operation(req, by);
        if let Some(sync) = &op.sync {
            let sources = flotilla_controller::reconcile::all_sources(app).len();
            if let Some(why) =
                flotilla_controller::operation::source_positions_problem(sync, sources)
            {
                return Err(ActionError::Refused(why));
            }
        }
        let ns = app.metadata.namespace.clone().unwrap_or_default();
        let name = app.metadata.name.clone().unwrap_or_default();
        let api: Api<Application> = Api::namespaced(self.client.clone(), &ns);
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        // Conditional on the version whose state said "no operation": two concurrent requests
        // cannot both start one (the second gets a conflict, 409).
        let written = api
            .patch(
                &name,
                &params,
                &Patch::Merge(json!({"operation": op,
                    "metadata": {"resourceVersion": app.metadata.resource_version}})),
            )
            .await?;
        let what = req
            .revision
            .as_deref()
            .map(|r| format!(" to {r}"))
            .unwrap_or_default();
        tracing::info!(user = %by.subject, app = %format!("{ns}/{name}"), revision = ?req.revision, prune = req.prune, dry_run = req.dry_run, "sync requested");
        self.events.emit(
            app,
            false,
            "OperationStarted",
            format!("{} initiated sync{what}", by.subject),
        );
        Ok((op, written.metadata.resource_version.unwrap_or_default()))
    }

    /// Create the Application `obj` (apiVersion, kind, metadata and spec as the client sent
    /// them) in `ns`; the created object.
    pub async fn create(
        &self,
        ns: &str,
        obj: serde_json::Value,
        by: &Principal,
    ) -> Result<serde_json::Value, ActionError> {
        let obj: kube::api::DynamicObject = serde_json::from_value(obj)
            .map_err(|e| ActionError::Refused(format!("application: {e}")))?;
        let pp = kube::api::PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let created = raw_api(&self.client, ns).create(&pp, &obj).await?;
        let created = serde_json::to_value(&created).unwrap_or_default();
        let name = created["metadata"]["name"].as_str().unwrap_or_default();
        tracing::info!(user = %by.subject, app = %format!("{ns}/{name}"), "application created");
        if let Ok(app) = serde_json::from_value::<Application>(created.clone()) {
            self.events.emit(
                &app,
                false,
                "ResourceCreated",
                format!("{} created application", by.subject),
            );
        }
        Ok(created)
    }

    /// Replace `app`'s spec with `new`'s (and its labels and annotations, when `new` has them):
    /// one merge patch from the object as it is now, conditional on `resource_version` (the
    /// client's, when it sent one) so nobody's newer change is overwritten unseen.
    pub async fn update(
        &self,
        app: &Application,
        new: &serde_json::Value,
        resource_version: Option<&str>,
        by: &Principal,
    ) -> Result<serde_json::Value, ActionError> {
        let (ns, name) = names(app);
        let api = raw_api(&self.client, &ns);
        let current = serde_json::to_value(api.get(&name).await?).unwrap_or_default();
        let rv = resource_version.map(str::to_string).or_else(|| {
            current["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string)
        });
        let mut patch = json!({
            "metadata": {"resourceVersion": rv},
            "spec": merge_patch(&current["spec"], &new["spec"]),
        });
        for key in ["labels", "annotations"] {
            let wanted = &new["metadata"][key];
            if !wanted.is_null() {
                patch["metadata"][key] = merge_patch(&current["metadata"][key], wanted);
            }
        }
        let written = api.patch(&name, &params(), &Patch::Merge(&patch)).await?;
        tracing::info!(user = %by.subject, app = %format!("{ns}/{name}"), "application updated");
        self.events.emit(
            app,
            false,
            flotilla_controller::events::RESOURCE_UPDATED,
            format!("{} updated application", by.subject),
        );
        Ok(serde_json::to_value(&written).unwrap_or_default())
    }

    /// Ask the owning controller to refresh `app` (`hard`: render again, skipping caches).
    pub async fn refresh(
        &self,
        app: &Application,
        hard: bool,
        by: &Principal,
    ) -> Result<(), ActionError> {
        let ns = app.metadata.namespace.clone().unwrap_or_default();
        let name = app.metadata.name.clone().unwrap_or_default();
        let api: Api<Application> = Api::namespaced(self.client.clone(), &ns);
        let kind = if hard { "hard" } else { "normal" };
        // One pending request is enough: asking again (a reader hammering refresh) writes
        // nothing and records nothing until the controller has taken the first.
        let pending = app
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("argocd.argoproj.io/refresh"))
            .map(String::as_str);
        if pending == Some("hard") || pending == Some(kind) {
            return Ok(());
        }
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        api.patch(
            &name,
            &params,
            &Patch::Merge(
                json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": kind}}}),
            ),
        )
        .await?;
        tracing::info!(user = %by.subject, app = %format!("{ns}/{name}"), kind, "refresh requested");
        self.events.emit(
            app,
            false,
            "RefreshRequested",
            format!("{} requested a {kind} refresh", by.subject),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            subject: "alice".into(),
            groups: Vec::new(),
        }
    }

    #[test]
    fn an_update_patch_turns_the_old_spec_into_the_new_one() {
        let old = json!({"project": "a", "source": {"repoURL": "r", "path": "p", "helm": {"x": 1}},
                         "syncPolicy": {"automated": {}}, "destination": {"name": "c"}});
        let new = json!({"project": "b", "source": {"repoURL": "r", "path": "p"},
                         "destination": {"name": "c", "namespace": "n"}, "info": [{"name": "k"}]});
        let patch = merge_patch(&old, &new);
        assert_eq!(
            patch,
            json!({"project": "b", "source": {"helm": null}, "syncPolicy": null,
                   "destination": {"namespace": "n"}, "info": [{"name": "k"}]})
        );
        // Applied as RFC 7386 says, the patch gives exactly the new spec.
        fn apply(target: &mut serde_json::Value, patch: &serde_json::Value) {
            match (target.as_object_mut(), patch.as_object()) {
                (Some(t), Some(p)) => {
                    for (k, v) in p {
                        if v.is_null() {
                            t.remove(k);
                        } else {
                            apply(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                        }
                    }
                }
                _ => *target = patch.clone(),
            }
        }
        let mut patched = old.clone();
        apply(&mut patched, &patch);
        assert_eq!(patched, new);
        assert_eq!(merge_patch(&new, &new), json!({}));
    }

    #[test]
    fn a_sync_request_becomes_argo_cds_operation() {
        let req: SyncRequest = serde_json::from_value(json!({"revision": "v2", "prune": true,
            "resources": [{"group": "apps", "kind": "Deployment", "name": "web"}]}))
        .expect("parses");
        let op = sync_operation(&req, &alice());
        let id = request_of(&op);
        assert_eq!(id.len(), 36, "a request id marks the operation");
        assert_ne!(id, request_of(&sync_operation(&req, &alice())));
        let mut v = serde_json::to_value(&op).expect("json");
        assert_eq!(v["info"], json!([{"name": REQUEST_INFO, "value": id}]));
        v.as_object_mut().map(|o| o.remove("info"));
        assert_eq!(
            v,
            json!({"sync": {"revision": "v2", "prune": true,
                            "resources": [{"group": "apps", "kind": "Deployment", "name": "web"}]},
                   "initiatedBy": {"username": "alice"}})
        );
        assert!(serde_json::from_value::<SyncRequest>(json!({"purne": true})).is_err());
        // Multi-source: Argo CD's revisions and sourcePositions are carried into the operation.
        let req: SyncRequest =
            serde_json::from_value(json!({"revisions": ["v1"], "sourcePositions": [2]}))
                .expect("parses");
        let v = serde_json::to_value(sync_operation(&req, &alice())).expect("json");
        assert_eq!(v["sync"]["revisions"], json!(["v1"]));
        assert_eq!(v["sync"]["sourcePositions"], json!([2]));
        // Apply only (no hooks), forced: Argo CD's `strategy`, written as `syncStrategy`.
        let req: SyncRequest =
            serde_json::from_value(json!({"strategy": {"apply": {"force": true}}}))
                .expect("parses");
        let op = sync_operation(&req, &alice());
        assert!(op.apply_strategy());
        assert_eq!(
            serde_json::to_value(&op).expect("json")["sync"]["syncStrategy"],
            json!({"apply": {"force": true}})
        );
        assert!(
            serde_json::from_value::<SyncRequest>(json!({"strategy": {"replace": {}}})).is_err(),
            "an unknown strategy is refused, not ignored"
        );
    }

    #[test]
    fn operations_in_progress_are_seen() {
        let app = |v: serde_json::Value| -> Application { serde_json::from_value(v).expect("app") };
        let base = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "a", "namespace": "argocd"},
            "spec": {"destination": {}, "project": "default"}});
        assert!(!operation_in_progress(&app(base.clone())));
        let mut running = base.clone();
        running["status"] = json!({"operationState": {"phase": "Running"}});
        assert!(operation_in_progress(&app(running)));
        let mut done = base.clone();
        done["status"] = json!({"operationState": {"phase": "Succeeded"}});
        assert!(!operation_in_progress(&app(done)));
        let mut requested = base;
        requested["operation"] = json!({"sync": {}});
        assert!(operation_in_progress(&app(requested)));
    }

    /// A client for kubesim's control plane, with Argo CD's Application CRD installed.
    async fn control_plane() -> (kubesim::KubeSim, kube::Client) {
        let sim = kubesim::KubeSim::start(kubesim::SimConfig {
            clusters: 0,
            ..Default::default()
        })
        .await
        .expect("kubesim");
        let kc = kube::config::Kubeconfig::from_yaml(&sim.kubeconfig_yaml()).expect("kubeconfig");
        let opts = kube::config::KubeConfigOptions {
            context: Some(sim.control_plane().name.clone()),
            ..Default::default()
        };
        let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .expect("config");
        let client = kube::Client::try_from(cfg).expect("client");
        let crds: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            kube::Api::all(client.clone());
        crds.create(
            &Default::default(),
            &flotilla_controller::types::application::application_crd(),
        )
        .await
        .expect("CRD");
        (sim, client)
    }

    #[tokio::test]
    async fn a_delete_survives_a_status_write_in_between() {
        let (_sim, client) = control_plane().await;
        let apps: kube::Api<Application> = kube::Api::namespaced(client.clone(), "argocd");
        let app: Application = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "argocd", "finalizers": ["example.com/keep"]},
            "spec": {"project": "default", "source": {"repoURL": "https://example.com/r.git", "path": "web"},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"}}}))
        .expect("app");
        let mut seen = None;
        for _ in 0..50 {
            match apps.create(&Default::default(), &app).await {
                Ok(a) => {
                    seen = Some(a);
                    break;
                }
                // The CRD is served a moment after it is created.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        let stale = seen.expect("created");
        // The controller writes status after the user's page read the app.
        apps.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .expect("a write in between");
        let mut registry = prometheus_client::registry::Registry::default();
        let actions = Actions {
            client: client.clone(),
            events: Arc::new(flotilla_controller::events::AppEvents::new(
                client.clone(),
                "test",
                &mut registry,
            )),
        };
        let who = alice();
        actions
            .delete(&stale, true, Propagation::Foreground, &who)
            .await
            .expect("the delete is not refused for a status write");
        let after = apps.get("web").await.expect("still there (finalizers)");
        let finalizers = after.metadata.finalizers.unwrap_or_default();
        assert!(
            finalizers.contains(&"example.com/keep".to_string())
                && finalizers
                    .contains(&flotilla_controller::reconcile::RESOURCES_FINALIZER.to_string()),
            "others' finalizers kept, ours added: {finalizers:?}"
        );
        assert!(after.metadata.deletion_timestamp.is_some(), "deleting");
    }
}
