//! End to end through real processes: health and comparison shaped by `argocd-cm`. A Lua
//! health check added to the live ConfigMap gates the app (Progressing, then Healthy once the
//! object reports ready), a runaway script is stopped by its budget, excluded kinds are never
//! applied, and an HPA's scaling is no drift.

use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_controller::types::Application;
use flotilla_loadtest::fleet::{Fleet, FleetConfig, apply_yaml};
use flotilla_tests::e2e::*;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

const WIDGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const WIDGET: &str =
    "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: gizmo\nspec:\n  size: 3\n";

/// The health check as an operator writes it in `argocd-cm` (split-key format).
const WIDGET_HEALTH: &str = r#"hs = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  for i, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" and c.status == "True" then
      hs.status = "Healthy"
      hs.message = "widget is ready"
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "waiting for the widget"
return hs
"#;

fn argocd_cm(data: &[(&str, &str)]) -> String {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    serde_json::to_string(&json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm", "namespace": NS}, "data": data}))
    .unwrap_or_default()
}

/// The app's `status.resources` entry for `kind`, as JSON.
fn resource(a: &Application, kind: &str) -> Value {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.pointer("/status/resources").cloned())
        .and_then(|r| {
            r.as_array()?
                .iter()
                .find(|x| x.get("kind").and_then(Value::as_str) == Some(kind))
                .cloned()
        })
        .unwrap_or(Value::Null)
}

fn health_of(a: &Application, kind: &str) -> (String, String) {
    let r = resource(a, kind);
    let s = |p: &str| {
        r.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/health/status"), s("/health/message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_health_from_argocd_cm_edited_live_gates_the_app_and_a_runaway_script_is_stopped()
-> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.apply(&argocd_cm(&[])).await?;
    let cluster = fleet.cluster("cluster-001").await?;
    apply_yaml(&cluster, WIDGET_CRD, "flotilla-test").await?;
    fleet
        .git
        .commit_files(&[("widgets/gizmo.yaml", WIDGET)], "a widget")?;
    fleet
        .apply(&auto_synced_app(
            &fleet,
            "widgets",
            "widgets",
            "cluster-001",
            &[],
        ))
        .await?;
    // Argo CD's default: a kind without a health check has no health, and does not hold the
    // app back.
    let a = wait_synced_healthy(&fleet, "widgets").await?;
    ensure!(
        health_of(&a, "Widget").0.is_empty(),
        "no health without a check: {}",
        resource(&a, "Widget")
    );

    // The operator adds a health check: it applies without a restart.
    fleet
        .apply(&argocd_cm(&[(
            "resource.customizations.health.example.com_Widget",
            WIDGET_HEALTH,
        )]))
        .await?;
    let a = wait_app(
        &fleet,
        "widgets",
        Duration::from_secs(30),
        "Progressing by health.lua",
        |a| codes(a).1 == "Progressing",
    )
    .await?;
    ensure!(
        health_of(&a, "Widget") == ("Progressing".into(), "waiting for the widget".into()),
        "{:?}",
        health_of(&a, "Widget")
    );

    // The widget's controller reports it ready.
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(cluster.clone(), "widgets", &ar);
    widgets
        .patch_status(
            "gizmo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await?;
    let a = wait_synced_healthy(&fleet, "widgets").await?;
    ensure!(
        health_of(&a, "Widget") == ("Healthy".into(), "widget is ready".into()),
        "{:?}",
        health_of(&a, "Widget")
    );

    // A script that never ends is stopped by its budget: Unknown, with the reason.
    fleet
        .apply(&argocd_cm(&[(
            "resource.customizations.health.example.com_Widget",
            "while true do end",
        )]))
        .await?;
    let a = wait_app(
        &fleet,
        "widgets",
        Duration::from_secs(30),
        "Unknown by a runaway health.lua",
        |a| codes(a).1 == "Unknown",
    )
    .await?;
    let (code, message) = health_of(&a, "Widget");
    ensure!(
        code == "Unknown" && message.contains("did not finish"),
        "{code}: {message}"
    );
    // The worker that ran it is free again: the fixed script is in force at once.
    fleet
        .apply(&argocd_cm(&[(
            "resource.customizations.health.example.com_Widget",
            WIDGET_HEALTH,
        )]))
        .await?;
    wait_synced_healthy(&fleet, "widgets").await?;
    let metrics = fleet.controller_metrics().await?;
    ensure!(
        metrics
            .lines()
            .any(|l| l.starts_with("flotilla_settings_reloads_total ") && !l.ends_with(" 0")),
        "reloads counted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_kinds_are_never_applied_and_say_so() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet
        .apply(&argocd_cm(&[(
            "resource.exclusions",
            "- apiGroups: ['']\n  kinds: [Secret]\n",
        )]))
        .await?;
    let secret =
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\nstringData:\n  token: abc\n";
    fleet.git.commit_files(
        &[("mixed/cm.yaml", CONFIG_MAP), ("mixed/secret.yaml", secret)],
        "mixed",
    )?;
    fleet
        .apply(&auto_synced_app(
            &fleet,
            "mixed",
            "mixed",
            "cluster-001",
            &[],
        ))
        .await?;
    let a = wait_synced_healthy(&fleet, "mixed").await?;
    ensure!(
        conditions(&a)
            .iter()
            .any(|(t, m)| t == "ExcludedResourceWarning" && m.contains("Secret token")),
        "{:?}",
        conditions(&a)
    );
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "v1",
            "Secret",
            Some("mixed"),
            "token"
        )
        .await?
        .is_none(),
        "an excluded kind is never applied"
    );
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "v1",
            "ConfigMap",
            Some("mixed"),
            "settings"
        )
        .await?
        .is_some(),
        "the rest is"
    );
    // Someone edits the ConfigMap (no selfHeal): the resource view shows the drift as a diff.
    apply_yaml(
        &fleet.cluster("cluster-001").await?,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: mixed}\ndata: {color: red}\n",
        "kubectl-edit",
    )
    .await?;
    refresh(&fleet, "mixed").await?;
    wait_app(&fleet, "mixed", Duration::from_secs(60), "OutOfSync", |a| {
        codes(a).0 == "OutOfSync"
    })
    .await?;
    let (code, body) = fleet
        .controller_get(&format!("/status/applications/{NS}/mixed/resources"))
        .await?;
    ensure!(code == 200, "{code}: {body}");
    let v: Value = serde_json::from_str(&body)?;
    let cm = v["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["kind"] == "ConfigMap"))
        .cloned()
        .unwrap_or(Value::Null);
    let diff = cm["diff"].as_str().unwrap_or_default();
    ensure!(
        cm["status"] == "OutOfSync"
            && diff.contains("-  color: red")
            && diff.contains("+  color: blue"),
        "{cm}"
    );
    let (code, _) = fleet
        .controller_get(&format!("/status/applications/{NS}/nosuch/resources"))
        .await?;
    ensure!(code == 404, "unknown app: {code}");
    // Without the token: nothing.
    let c = fleet.controller_ids();
    let addr = fleet.controller_address(&c[0])?;
    let (code, body) = flotilla_loadtest::fleet::http_get(
        &addr,
        &format!("/status/applications/{NS}/mixed/resources"),
    )
    .await?;
    ensure!(code == 401 && !body.contains("color"), "{code}: {body}");
    // ConfigMaps excluded too, while the app (auto-sync with prune) has one live: it leaves
    // the comparison and is never pruned.
    fleet
        .apply(&argocd_cm(&[(
            "resource.exclusions",
            "- apiGroups: ['']\n  kinds: [Secret, ConfigMap]\n",
        )]))
        .await?;
    wait_app(
        &fleet,
        "mixed",
        Duration::from_secs(30),
        "ConfigMap excluded",
        |a| {
            conditions(a)
                .iter()
                .any(|(t, m)| t == "ExcludedResourceWarning" && m.contains("ConfigMap settings"))
        },
    )
    .await?;
    refresh(&fleet, "mixed").await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "v1",
            "ConfigMap",
            Some("mixed"),
            "settings"
        )
        .await?
        .is_some(),
        "an excluded object is never pruned"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_resources_are_counted_and_reported_when_the_project_asks() -> Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet
        .apply(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {{name: tidy, namespace: {NS}}}\nspec:\n  sourceRepos: ['*']\n  destinations: [{{server: '*', namespace: '*'}}]\n  clusterResourceWhitelist: [{{group: '*', kind: '*'}}]\n  orphanedResources:\n    warn: true\n    ignore: [{{kind: Secret}}]\n"
        ))
        .await?;
    fleet
        .git
        .commit_files(&[("tidy/cm.yaml", CONFIG_MAP)], "tidy")?;
    fleet
        .apply(
            &auto_synced_app(&fleet, "tidy", "tidy", "cluster-001", &[])
                .replace("project: default", "project: tidy"),
        )
        .await?;
    let a = wait_synced_healthy(&fleet, "tidy").await?;
    ensure!(
        !conditions(&a)
            .iter()
            .any(|(t, _)| t == "OrphanedResourceWarning"),
        "nothing stray yet: {:?}",
        conditions(&a)
    );
    // Someone creates objects by hand in the app's namespace.
    let cluster = fleet.cluster("cluster-001").await?;
    apply_yaml(
        &cluster,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stray, namespace: tidy}\ndata: {a: b}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: ignored, namespace: tidy}\nstringData: {a: b}\n",
        "kubectl",
    )
    .await?;
    refresh(&fleet, "tidy").await?;
    let warned = |a: &Application| {
        conditions(a).iter().any(|(t, m)| {
            t == "OrphanedResourceWarning" && m == "Application has 1 orphaned resources"
        })
    };
    wait_app(
        &fleet,
        "tidy",
        Duration::from_secs(60),
        "orphan warning",
        warned,
    )
    .await?;
    let metrics = fleet.controller_metrics().await?;
    ensure!(
        metrics
            .lines()
            .any(|l| l.starts_with("flotilla_app_orphaned_resources{")
                && l.contains("name=\"tidy\"")
                && l.ends_with(" 1")),
        "the count is exported"
    );
    // Gone again: so is the warning.
    let cms: Api<ConfigMap> = Api::namespaced(cluster, "tidy");
    cms.delete("stray", &Default::default()).await?;
    refresh(&fleet, "tidy").await?;
    wait_app(
        &fleet,
        "tidy",
        Duration::from_secs(60),
        "no orphan warning",
        |a| {
            !conditions(a)
                .iter()
                .any(|(t, _)| t == "OrphanedResourceWarning")
        },
    )
    .await?;
    Ok(())
}

/// An HPA (its status written as kube-controller-manager writes it; kubesim runs no
/// autoscaler) scales the Deployment through `/scale` while selfHeal is on: the app trusts
/// the autoscaler's field manager, stays Synced and never reverts `replicas`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_scaling_a_deployment_is_no_drift_for_a_trusted_manager() -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    let fleet = Fleet::start(FleetConfig::default()).await?;
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n        resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: '1', memory: 1Gi}}\n";
    let hpa = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 2\n  maxReplicas: 10\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}\n";
    fleet.git.commit_files(
        &[
            ("autoscaled/web.yaml", deploy),
            ("autoscaled/hpa.yaml", hpa),
        ],
        "autoscaled",
    )?;
    let spec = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: autoscaled, namespace: {NS}}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: autoscaled}}\n  destination: {{name: cluster-001, namespace: autoscaled}}\n  ignoreDifferences:\n  - group: apps\n    kind: Deployment\n    managedFieldsManagers: [kube-controller-manager]\n  syncPolicy:\n    automated: {{prune: true, selfHeal: true}}\n    syncOptions: [CreateNamespace=true, RespectIgnoreDifferences=true]\n",
        url = fleet.git.url()
    );
    fleet.apply(&spec).await?;
    let cluster = fleet.cluster("cluster-001").await?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.clone(), "autoscaled");
    // Until the autoscaler reports, the HPA is Progressing ("Waiting to Autoscale").
    let a = wait_app(
        &fleet,
        "autoscaled",
        Duration::from_secs(60),
        "Synced, HPA waiting",
        |a| codes(a).0 == "Synced" && health_of(a, "HorizontalPodAutoscaler").0 == "Progressing",
    )
    .await?;
    ensure!(codes(&a).1 == "Progressing", "{:?}", codes(&a));
    let controller = PatchParams {
        field_manager: Some("kube-controller-manager".into()),
        ..Default::default()
    };
    let deploys: Api<Deployment> = Api::namespaced(cluster, "autoscaled");
    deploys
        .patch_scale(
            "web",
            &controller,
            &Patch::Merge(json!({"spec": {"replicas": 6}})),
        )
        .await?;
    hpas.patch_status(
        "web",
        &controller,
        &Patch::Merge(json!({"status": {"currentReplicas": 6, "desiredReplicas": 6, "conditions": [
            {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "lastTransitionTime": "2026-11-30T00:00:00Z"},
            {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "lastTransitionTime": "2026-11-30T00:00:00Z"},
            {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange", "lastTransitionTime": "2026-11-30T00:00:00Z"}]}})),
    )
    .await?;
    refresh(&fleet, "autoscaled").await?;
    let a = wait_synced_healthy(&fleet, "autoscaled").await?;
    ensure!(
        health_of(&a, "HorizontalPodAutoscaler").0 == "Healthy",
        "{:?}",
        health_of(&a, "HorizontalPodAutoscaler")
    );
    // selfHeal had every chance to revert: it did not.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let d = deploys.get("web").await?;
    ensure!(
        d.spec.replicas == Some(6),
        "the autoscaler's replicas stand"
    );
    ensure!(
        codes(&app(&fleet, "autoscaled").await?).0 == "Synced",
        "and the app is Synced"
    );
    Ok(())
}
