//! What users ask of an Application: a sync (written as Argo CD does, into the top-level
//! `operation`, which the owning controller runs) and a refresh (the refresh annotation).
//! Every action is audited: an Event on the Application and a log line naming the caller.

use std::sync::Arc;

use flotilla_controller::events::AppEvents;
use flotilla_controller::operation::{InitiatedBy, Operation, SyncOperation, SyncResourceRef};
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
}

/// Why an action was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("another operation is already in progress")]
    InProgress,
    #[error("{0}")]
    Kube(#[from] kube::Error),
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
            ..Default::default()
        }),
        initiated_by: InitiatedBy {
            username: Some(by.subject.clone()),
            automated: false,
        },
        retry: None,
    }
}

/// Writes actions as the server's field manager.
pub struct Actions {
    pub client: Client,
    pub events: Arc<AppEvents>,
}

const MANAGER: &str = "flotilla-server";

impl Actions {
    /// Request a sync of `app` (refused while another operation is in progress).
    pub async fn sync(
        &self,
        app: &Application,
        req: &SyncRequest,
        by: &Principal,
    ) -> Result<Operation, ActionError> {
        if operation_in_progress(app) {
            return Err(ActionError::InProgress);
        }
        let op = sync_operation(req, by);
        let ns = app.metadata.namespace.clone().unwrap_or_default();
        let name = app.metadata.name.clone().unwrap_or_default();
        let api: Api<Application> = Api::namespaced(self.client.clone(), &ns);
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        api.patch(&name, &params, &Patch::Merge(json!({"operation": op})))
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
        Ok(op)
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

    #[test]
    fn a_sync_request_becomes_argo_cds_operation() {
        let req: SyncRequest = serde_json::from_value(json!({"revision": "v2", "prune": true,
            "resources": [{"group": "apps", "kind": "Deployment", "name": "web"}]}))
        .expect("parses");
        let op = sync_operation(
            &req,
            &Principal {
                subject: "alice".into(),
                groups: Vec::new(),
            },
        );
        assert_eq!(
            serde_json::to_value(&op).expect("json"),
            json!({"sync": {"revision": "v2", "prune": true,
                            "resources": [{"group": "apps", "kind": "Deployment", "name": "web"}]},
                   "initiatedBy": {"username": "alice"}})
        );
        assert!(serde_json::from_value::<SyncRequest>(json!({"purne": true})).is_err());
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
}
