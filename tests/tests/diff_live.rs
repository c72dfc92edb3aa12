//! The controller's diff against objects as an API server really returns them: after a
//! server-side apply the object is in sync despite defaults and server metadata; a manual edit
//! or a field dropped from Git shows up as drift.

use anyhow::Result;
use flotilla_controller::diff::diff;
use flotilla_tests::Target;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_objects_are_in_sync_and_drift_is_seen() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("diff").await?;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &ns, &ar);
    let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "team": "a"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                                       "ports": [{"containerPort": 80}]}]}}}});
    api.patch(
        "web",
        &PatchParams::apply("flotilla"),
        &Patch::Apply(&desired),
    )
    .await?;
    let live = serde_json::to_value(api.get("web").await?)?;
    let d = diff(&desired, Some(&live), "flotilla");
    assert!(d.in_sync(), "fresh apply differs: {:?}", d.differences);

    // Someone scales it by hand.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await?;
    let live = serde_json::to_value(api.get("web").await?)?;
    assert_eq!(
        diff(&desired, Some(&live), "flotilla").differences,
        [".spec.replicas"]
    );

    // Git drops a label we applied.
    let mut trimmed = desired.clone();
    trimmed["metadata"]["labels"] = json!({"app": "web"});
    trimmed["spec"]["replicas"] = json!(5);
    let d = diff(&trimmed, Some(&live), "flotilla");
    assert_eq!(d.differences, [".metadata.labels.team"]);
    Ok(())
}
