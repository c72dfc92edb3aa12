//! Helpers for the end-to-end tests that run a real fleet (kubesim, `git daemon`, the
//! repo-server and controller binaries): reading Applications and waiting on their status.

use std::time::Duration;

use anyhow::{Context, Result};
use flotilla_controller::types::Application;
use flotilla_loadtest::fleet::Fleet;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use crate::eventually;

/// The control-plane namespace of Applications.
pub const NS: &str = "argocd";

/// A ConfigMap manifest, the smallest workload a test app can deploy.
pub const CONFIG_MAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n";

/// An Application `name` deploying `path` of the fleet's repository (at `main`) to `cluster`,
/// in namespace `name` (created), automatically synced with prune, with `finalizers`.
pub fn auto_synced_app(
    fleet: &Fleet,
    name: &str,
    path: &str,
    cluster: &str,
    finalizers: &[&str],
) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: {NS}, finalizers: {finalizers:?}}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: {path}}}\n  destination: {{name: {cluster}, namespace: {name}}}\n  syncPolicy:\n    automated: {{prune: true}}\n    syncOptions: [CreateNamespace=true]\n",
        url = fleet.git.url()
    )
}

/// A ConfigMap `name` whose `data.k` is `value`.
pub fn config_map(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: {value}\n")
}

/// A manually synced Application `name` deploying `path` to `cluster` (namespace = the app's
/// name, created), labelled `labels`.
pub fn manual_app(
    fleet: &Fleet,
    name: &str,
    path: &str,
    cluster: &str,
    labels: &[(&str, &str)],
) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: {NS}, labels: {{{}}}}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: {path}}}\n  destination: {{name: {cluster}, namespace: {name}}}\n  syncPolicy:\n    syncOptions: [CreateNamespace=true]\n",
        labels.join(", "),
        url = fleet.git.url()
    )
}

/// `data.k` of ConfigMap `ns/name` live in `cluster`, if it exists.
pub async fn live_value(
    fleet: &Fleet,
    cluster: &str,
    ns: &str,
    name: &str,
) -> Result<Option<String>> {
    Ok(live(fleet, cluster, "v1", "ConfigMap", Some(ns), name)
        .await?
        .and_then(|o| o["data"]["k"].as_str().map(str::to_string)))
}

/// Read the Application `name`.
pub async fn app(fleet: &Fleet, name: &str) -> Result<Application> {
    let api: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    Ok(api.get(name).await?)
}

/// `status.sync.status`, `status.health.status` of an app.
pub fn codes(app: &Application) -> (String, String) {
    let st = app.status.clone().unwrap_or_default();
    (
        st.sync.map(|s| s.status).unwrap_or_default(),
        st.health.map(|h| h.status).unwrap_or_default(),
    )
}

/// The conditions of an app as (type, message).
pub fn conditions(app: &Application) -> Vec<(String, String)> {
    app.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.message))
        .collect()
}

/// Wait until the app satisfies `pred`; on timeout the error names its last status.
pub async fn wait_app(
    fleet: &Fleet,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Application) -> bool,
) -> Result<Application> {
    let last = std::sync::Mutex::new(String::new());
    let res = eventually(what, timeout, || {
        let fut = app(fleet, name);
        let last = &last;
        let pred = &pred;
        async move {
            let a = fut.await?;
            if let Ok(mut l) = last.lock() {
                *l = serde_json::to_string(&a.status).unwrap_or_default();
            }
            Ok(pred(&a).then_some(a))
        }
    })
    .await;
    let last = last.lock().map(|l| l.clone()).unwrap_or_default();
    res.with_context(|| format!("app {name}: last status {last}"))
}

/// Wait for Synced and Healthy.
pub async fn wait_synced_healthy(fleet: &Fleet, name: &str) -> Result<Application> {
    wait_app(
        fleet,
        name,
        Duration::from_secs(60),
        "Synced/Healthy",
        |a| codes(a) == ("Synced".into(), "Healthy".into()),
    )
    .await
}

/// Ask for a refresh the way `argocd app get --refresh` (and a webhook) does.
pub async fn refresh(fleet: &Fleet, name: &str) -> Result<()> {
    let api: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}),
        ),
    )
    .await?;
    Ok(())
}

/// A live object in a cluster (by kubeconfig context), or `None`.
pub async fn live(
    fleet: &Fleet,
    cluster: &str,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>> {
    let client = fleet.cluster(cluster).await?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let (ar, _) =
        kube::discovery::pinned_kind(&client, &GroupVersionKind::gvk(group, version, kind)).await?;
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    };
    Ok(api
        .get_opt(name)
        .await?
        .map(|o| serde_json::to_value(o).unwrap_or(Value::Null)))
}

/// Replace `REPO_URL` in example YAML with the fleet's Git URL.
pub fn with_repo(yaml: &str, fleet: &Fleet) -> String {
    yaml.replace("REPO_URL", &fleet.git.url())
}

/// Argo CD's `kind` (`Application`, `ApplicationSet`) in the control-plane namespace, untyped.
pub fn argo_api(fleet: &Fleet, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        fleet.control().clone(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind),
            plural,
        ),
    )
}

/// The control plane's ApplicationSets, untyped.
pub fn application_sets(fleet: &Fleet) -> Api<DynamicObject> {
    argo_api(fleet, "ApplicationSet", "applicationsets")
}

/// The control plane's Applications, untyped.
pub fn applications(fleet: &Fleet) -> Api<DynamicObject> {
    argo_api(fleet, "Application", "applications")
}

/// The ApplicationSet `set`'s condition `kind`: (status, message).
pub async fn set_condition(
    fleet: &Fleet,
    set: &str,
    kind: &str,
) -> Result<Option<(String, String)>> {
    let s = application_sets(fleet).get(set).await?;
    Ok(s.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        }))
}
