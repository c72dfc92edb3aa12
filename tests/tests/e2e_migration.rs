//! Moving from Argo CD without a big bang: a controller side by side with Argo CD on Argo CD's
//! own CRDs takes only the apps handed to it (`flotilla admin move`), and gives them back,
//! and the objects in the cluster keep their UIDs through both moves.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::fleet::{Fleet, FleetConfig, process};
use flotilla_tests::e2e::{NS, app, auto_synced_app, config_map, wait_app};
use flotilla_tests::eventually;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const SELECTOR: &str = "flotilla.dev/managed-by=flotilla";

/// `flotilla admin … move APP --to SIDE`: exit code and stdout.
fn admin_move(fleet: &Fleet, app: &str, to: &str) -> Result<(i32, String)> {
    let out = std::process::Command::new(process::binary("flotilla")?)
        .args(["admin", "--kubeconfig"])
        .arg(&fleet.kubeconfig)
        .args([
            "--context",
            &fleet.sim.control_plane_name(),
            "move",
            app,
            "--to",
            to,
        ])
        .output()
        .context("running flotilla admin move")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok((out.status.code().unwrap_or(-1), format!("{stdout}{stderr}")))
}

async fn live_cm(fleet: &Fleet, ns: &str, name: &str) -> Result<ConfigMap> {
    let api: Api<ConfigMap> = Api::namespaced(fleet.cluster("cluster-001").await?, ns);
    Ok(api.get(name).await?)
}

fn data_k(cm: &ConfigMap) -> String {
    cm.data
        .as_ref()
        .and_then(|d| d.get("k").cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_moves_from_argo_cd_to_flotilla_and_back_keeping_its_objects() -> Result<()> {
    let mut fleet = Fleet::start(FleetConfig {
        controllers: 0,
        argo_cd_crds: true,
        controller_args: vec![
            "--argocd-side-by-side".into(),
            "--application-selector".into(),
            SELECTOR.into(),
            "--argocd-handover-grace-seconds".into(),
            "3".into(),
        ],
        ..Default::default()
    })
    .await?;
    let control = fleet.control().clone();
    // Argo CD's settings: annotation tracking, as the installation being moved has it.
    let cms: Api<ConfigMap> = Api::namespaced(control.clone(), NS);
    cms.create(
        &Default::default(),
        &serde_json::from_value(json!({"metadata": {"name": "argocd-cm"},
            "data": {"application.resourceTrackingMethod": "annotation"}}))?,
    )
    .await?;
    let commit1 = fleet.git.commit_files(
        &[
            ("web/settings.yaml", &config_map("settings", "v1")),
            ("fresh/settings.yaml", &config_map("settings", "f1")),
            ("waiting/settings.yaml", &config_map("settings", "w1")),
            ("paused/settings.yaml", &config_map("settings", "p1")),
        ],
        "apps",
    )?;
    // What Argo CD deployed and tracks: its annotation, its field manager.
    let cluster = fleet.cluster("cluster-001").await?;
    Api::<Namespace>::all(cluster.clone())
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "web"}}))?,
        )
        .await?;
    let web_cms: Api<ConfigMap> = Api::namespaced(cluster.clone(), "web");
    let argo_owned = web_cms
        .patch(
            "settings",
            &PatchParams::apply("argocd-controller"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "web",
                    "annotations": {"argocd.argoproj.io/tracking-id": "web:/ConfigMap:web/settings"}},
                "data": {"k": "v1"}})),
        )
        .await?;
    let uid = argo_owned.metadata.uid.clone().context("uid")?;
    // The Application as Argo CD left it: no Flotilla marks, its status in Argo CD's shape.
    let mut web: serde_json::Value =
        serde_yaml::from_str(&auto_synced_app(&fleet, "web", "web", "cluster-001", &[]))?;
    web["status"] = json!({
        "sync": {"status": "Synced", "revision": commit1,
                 "comparedTo": {"source": web["spec"]["source"].clone(),
                                "destination": web["spec"]["destination"].clone()}},
        "health": {"status": "Healthy"},
        "resources": [{"version": "v1", "kind": "ConfigMap", "namespace": "web",
                       "name": "settings", "status": "Synced", "health": {"status": "Healthy"}}],
        "reconciledAt": "2026-11-30T10:00:00Z",
        "operationState": {"phase": "Succeeded", "message": "successfully synced (all tasks run)",
            "operation": {"sync": {"revision": commit1}, "initiatedBy": {"automated": true}},
            "startedAt": "2026-11-30T09:59:58Z", "finishedAt": "2026-11-30T10:00:00Z",
            "syncResult": {"revision": commit1, "resources": []}},
        "sourceType": "Directory",
        "summary": {},
        "controllerNamespace": "argocd"
    });
    fleet.apply(&serde_yaml::to_string(&web)?).await?;
    // Already handed over: Flotilla's from the start. Selected but not handed over: Argo CD's.
    let fresh = auto_synced_app(&fleet, "fresh", "fresh", "cluster-001", &[]).replace(
        "metadata: {name: fresh,",
        "metadata: {labels: {flotilla.dev/managed-by: flotilla}, annotations: {argocd.argoproj.io/skip-reconcile: \"true\"}, name: fresh,",
    );
    fleet.apply(&fresh).await?;
    let waiting = auto_synced_app(&fleet, "waiting", "waiting", "cluster-001", &[]).replace(
        "metadata: {name: waiting,",
        "metadata: {labels: {flotilla.dev/managed-by: flotilla}, name: waiting,",
    );
    fleet.apply(&waiting).await?;
    // Argo CD's switch (as a Go boolean: "True") without Flotilla's label: nobody's.
    let paused = auto_synced_app(&fleet, "paused", "paused", "cluster-001", &[]).replace(
        "metadata: {name: paused,",
        "metadata: {annotations: {argocd.argoproj.io/skip-reconcile: \"True\"}, name: paused,",
    );
    fleet.apply(&paused).await?;
    let before = app(&fleet, "web").await?;
    fleet.start_controller().await?;

    // Flotilla works (the handed-over app syncs) and leaves the others alone.
    wait_app(
        &fleet,
        "fresh",
        Duration::from_secs(60),
        "fresh synced",
        |a| {
            let (s, h) = flotilla_tests::e2e::codes(a);
            s == "Synced" && h == "Healthy"
        },
    )
    .await?;
    fleet.git.commit_files(
        &[("web/settings.yaml", &config_map("settings", "v2"))],
        "web v2",
    )?;
    let apps = kube::Api::<kube::api::DynamicObject>::namespaced_with(
        control.clone(),
        NS,
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
            "applications",
        ),
    );
    // An Argo CD refresh request Flotilla would act on (and clear) if it reconciled the app.
    apps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}),
        ),
    )
    .await?;
    eventually(
        "awaiting hand-over counted",
        Duration::from_secs(20),
        || async {
            let m = fleet.controller_metrics().await?;
            let awaiting = flotilla_loadtest::fleet::metric_value(
                &m,
                "flotilla_app_selection",
                &[("state", "awaiting_handover")],
            );
            let left = flotilla_loadtest::fleet::metric_value(
                &m,
                "flotilla_app_selection",
                &[("state", "not_selected")],
            );
            let unowned = flotilla_loadtest::fleet::metric_value(
                &m,
                "flotilla_app_selection",
                &[("state", "unowned")],
            );
            Ok((awaiting == 1.0 && left == 1.0 && unowned == 1.0).then_some(()))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let untouched = apps.get("web").await?;
    ensure!(
        untouched
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("argocd.argoproj.io/refresh")),
        "Flotilla acted on an app it was not given"
    );
    ensure!(
        untouched.data["status"] == serde_json::to_value(&before.status)?,
        "status written on an app Flotilla was not given"
    );
    ensure!(data_k(&live_cm(&fleet, "web", "settings").await?) == "v1");
    let waiting_app = app(&fleet, "waiting").await?;
    ensure!(
        waiting_app.status.is_none(),
        "selected but not handed over: untouched"
    );
    ensure!(
        kube::Api::<ConfigMap>::namespaced(cluster.clone(), "waiting")
            .get_opt("settings")
            .await?
            .is_none(),
        "nothing deployed for an app Argo CD still has"
    );

    ensure!(
        app(&fleet, "paused").await?.status.is_none(),
        "unowned: untouched"
    );
    // An empty selector would select every app: refused before anything is read.
    let out = std::process::Command::new(process::binary("flotilla")?)
        .args(["admin", "move", "--selector", " ", "--to", "flotilla"])
        .output()?;
    ensure!(
        out.status.code() == Some(2)
            && String::from_utf8_lossy(&out.stderr).contains("--selector is empty"),
        "{out:?}"
    );

    // Move web to Flotilla: it syncs the new commit onto the same objects.
    let (code, out) = admin_move(&fleet, "web", "flotilla")?;
    ensure!(
        code == 0 && out.contains("moved"),
        "move to flotilla: {code}: {out}"
    );
    // The hand-over grace: work Argo CD queued before the switch may still run, so Flotilla
    // waits before it touches the app.
    let moved_at = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if moved_at.elapsed() < Duration::from_millis(2500) {
        ensure!(
            data_k(&live_cm(&fleet, "web", "settings").await?) == "v1",
            "synced within the hand-over grace"
        );
    }
    eventually(
        "web synced by Flotilla",
        Duration::from_secs(60),
        || async {
            let cm = live_cm(&fleet, "web", "settings").await?;
            Ok((data_k(&cm) == "v2").then_some(cm))
        },
    )
    .await
    .inspect_err(|_| fleet.dump_logs())?;
    let moved = wait_app(&fleet, "web", Duration::from_secs(30), "web synced", |a| {
        let (s, h) = flotilla_tests::e2e::codes(a);
        s == "Synced" && h == "Healthy"
    })
    .await?;
    let cm = live_cm(&fleet, "web", "settings").await?;
    ensure!(
        cm.metadata.uid.as_deref() == Some(uid.as_str()),
        "adopted, not recreated"
    );
    ensure!(
        cm.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("argocd.argoproj.io/tracking-id"))
            .map(String::as_str)
            == Some("web:/ConfigMap:web/settings"),
        "Argo CD's tracking kept, so Argo CD recognises the object after a move back"
    );
    ensure!(
        moved
            .status
            .as_ref()
            .and_then(|s| s.sync.as_ref())
            .is_some_and(|s| s.revision.as_deref() != Some(commit1.as_str())),
        "status now written by Flotilla at the new commit"
    );
    // Moving again is a no-op.
    let (code, out) = admin_move(&fleet, "web", "flotilla")?;
    ensure!(code == 0 && out.contains("unchanged"), "{out}");

    // And back: Flotilla lets go; a new commit and a refresh request stay Argo CD's business.
    let (code, out) = admin_move(&fleet, "web", "argocd")?;
    ensure!(
        code == 0 && out.contains("moved"),
        "move back: {code}: {out}"
    );
    eventually(
        "web no longer selected",
        Duration::from_secs(20),
        || async {
            let m = fleet.controller_metrics().await?;
            let left = flotilla_loadtest::fleet::metric_value(
                &m,
                "flotilla_app_selection",
                &[("state", "not_selected")],
            );
            Ok((left == 1.0).then_some(()))
        },
    )
    .await?;
    fleet.git.commit_files(
        &[("web/settings.yaml", &config_map("settings", "v3"))],
        "web v3",
    )?;
    apps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}})),
    )
    .await?;
    let handed_back = apps.get("web").await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = apps.get("web").await?;
    ensure!(
        later.metadata.resource_version == handed_back.metadata.resource_version,
        "Flotilla wrote to an app it gave back"
    );
    let cm = live_cm(&fleet, "web", "settings").await?;
    ensure!(data_k(&cm) == "v2", "Flotilla synced an app it gave back");
    ensure!(cm.metadata.uid.as_deref() == Some(uid.as_str()));
    let meta = later.metadata.annotations.unwrap_or_default();
    ensure!(
        !meta.contains_key("argocd.argoproj.io/skip-reconcile"),
        "Argo CD's switch cleared: {meta:?}"
    );
    Ok(())
}
