//! End to end through real processes: sync operations as Argo CD runs them. Hooks of each
//! phase in order, waves that wait for health (read from kubesim's request log), SyncFail
//! hooks, retries, terminate and the sync timeout, a hand-over in the middle of a multi-wave
//! sync, and the deletion finalizers.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_controller::types::Application;
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::*;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

fn job(name: &str, annotations: &[(&str, &str)]) -> String {
    let (key, value) = if name.ends_with('-') {
        ("generateName", name)
    } else {
        ("name", name)
    };
    let ann: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  {key}: {value}\n  annotations: {ann}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: run\n          image: busybox:1.36\n          command: [\"true\"]\n",
        ann = serde_json::to_string(&ann).unwrap_or_default()
    )
}

fn cm(name: &str, annotations: &[(&str, &str)]) -> String {
    let ann: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations: {ann}\ndata:\n  k: v\n",
        ann = serde_json::to_string(&ann).unwrap_or_default()
    )
}

fn deployment(name: &str, annotations: &[(&str, &str)]) -> String {
    let ann: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  annotations: {ann}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n",
        ann = serde_json::to_string(&ann).unwrap_or_default()
    )
}

const WAVE: &str = "argocd.argoproj.io/sync-wave";
const HOOK: &str = "argocd.argoproj.io/hook";
const DELETE_POLICY: &str = "argocd.argoproj.io/hook-delete-policy";
const BEHAVIOR: &str = "kubesim.flotilla.dev/behavior";
const READY_AFTER: &str = "kubesim.flotilla.dev/ready-after-ms";
/// A manual app's sync policy that creates its namespace.
const CREATE_NS: &str = "  syncPolicy:\n    syncOptions: [CreateNamespace=true]\n";

/// A manual app (no auto-sync) deploying `path` to `cluster`, namespace `ns`.
fn manual_app(
    fleet: &Fleet,
    name: &str,
    path: &str,
    cluster: &str,
    ns: &str,
    extra: &str,
) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: {path}}}\n  destination: {{name: {cluster}, namespace: {ns}}}\n{extra}",
        url = fleet.git.url()
    )
}

async fn request_sync(fleet: &Fleet, name: &str, operation: Value) -> Result<()> {
    let apps: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    apps.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "operation": operation })),
    )
    .await?;
    Ok(())
}

fn op_state(a: &Application) -> Value {
    a.status
        .as_ref()
        .and_then(|s| s.operation_state.clone())
        .unwrap_or(Value::Null)
}

async fn wait_op(
    fleet: &Fleet,
    name: &str,
    secs: u64,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let a = wait_app(fleet, name, Duration::from_secs(secs), what, |a| {
        pred(&op_state(a))
    })
    .await?;
    Ok(op_state(&a))
}

/// One write of the controller: (ms since the first, verb, resource, name, replica).
type Write = (u64, String, String, String, String);

/// The controller's writes to `cluster` in arrival order.
fn writes(fleet: &Fleet, cluster: &str) -> Result<Vec<Write>> {
    let c = fleet
        .sim
        .in_process()?
        .cluster(cluster)
        .context("cluster")?;
    let mut w: Vec<_> = c
        .log
        .since(0)
        .into_iter()
        .filter(|r| r.is_write() && r.user_agent.starts_with("flotilla-controller/"))
        .map(|r| {
            let replica = r
                .user_agent
                .split_once(" (")
                .map(|(_, x)| x.trim_end_matches(')').to_string())
                .unwrap_or_default();
            (
                r.start_us,
                r.verb.clone(),
                r.resource.clone(),
                r.name.clone(),
                replica,
            )
        })
        .collect();
    w.sort();
    let t0 = w.first().map(|x| x.0).unwrap_or(0);
    Ok(w.into_iter()
        .map(|(t, v, res, n, rep)| ((t - t0) / 1000, v, res, n, rep))
        .collect())
}

fn first_write(w: &[Write], resource: &str, name_prefix: &str) -> Option<u64> {
    w.iter()
        .find(|x| x.2 == resource && x.3.starts_with(name_prefix) && x.1 != "delete")
        .map(|x| x.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_and_waves_run_in_order_and_waves_wait_for_health() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        controller_args: vec!["--sync-wave-delay-ms".into(), "100".into()],
        ..Default::default()
    })
    .await?;
    fleet.git.commit_files(
        &[
            ("waves/presync.yaml", &job("migrate-", &[(HOOK, "PreSync")])),
            ("waves/first.yaml", &cm("first", &[(WAVE, "0")])),
            (
                "waves/web.yaml",
                &deployment("web", &[(WAVE, "1"), (READY_AFTER, "3000")]),
            ),
            ("waves/after.yaml", &cm("after-web", &[(WAVE, "2")])),
            (
                "waves/postsync.yaml",
                &job(
                    "smoke",
                    &[(HOOK, "PostSync"), (DELETE_POLICY, "HookSucceeded")],
                ),
            ),
            ("waves/skipped.yaml", &cm("skipped", &[(HOOK, "Skip")])),
            (
                "waves/during.yaml",
                &job("during-", &[(HOOK, "Sync"), (WAVE, "1")]),
            ),
        ],
        "waves and hooks",
    )?;
    fleet
        .apply(&manual_app(
            &fleet,
            "waves",
            "waves",
            "cluster-001",
            "waves",
            CREATE_NS,
        ))
        .await?;
    wait_app(&fleet, "waves", Duration::from_secs(30), "compared", |a| {
        codes(a).0 == "OutOfSync"
    })
    .await?;
    request_sync(
        &fleet,
        "waves",
        json!({"sync": {"revision": "main"}, "initiatedBy": {"username": "alice"}}),
    )
    .await?;
    let op = wait_op(&fleet, "waves", 90, "sync done", |o| {
        o["phase"] == "Succeeded" || o["phase"] == "Failed" || o["phase"] == "Error"
    })
    .await?;
    ensure!(op["phase"] == "Succeeded", "{op}");
    ensure!(
        op["message"] == "successfully synced (all tasks run)",
        "{op}"
    );

    // The timeline, from kubesim's request log.
    let w = writes(&fleet, "cluster-001")?;
    println!("timeline of the controller's writes to cluster-001 (ms, verb, resource, name):");
    for (t, verb, res, name, _) in &w {
        println!("  {t:>6}  {verb:<6} {res:<12} {name}");
    }
    let at = |res: &str, name: &str| {
        first_write(&w, res, name).with_context(|| format!("no write of {res} {name}: {w:?}"))
    };
    let (migrate, first, web, after, smoke) = (
        at("jobs", "migrate-")?,
        at("configmaps", "first")?,
        at("deployments", "web")?,
        at("configmaps", "after-web")?,
        at("jobs", "smoke")?,
    );
    let during = at("jobs", "during-")?;
    ensure!(
        migrate <= first && first <= web && web <= during && during <= after && after <= smoke,
        "{w:?}"
    );
    // The pause between waves (100 ms here) separates wave 0 from wave 1 ...
    ensure!(
        web - first >= 90,
        "wave 1 started {} ms after wave 0: {w:?}",
        web - first
    );
    // ... and wave 2 waited for the Deployment of wave 1 to become healthy (3 s).
    ensure!(
        after - web >= 2500,
        "wave 2 started {} ms after wave 1: {w:?}",
        after - web
    );
    ensure!(
        first_write(&w, "configmaps", "skipped").is_none(),
        "Skip hooks are not applied"
    );

    // Results: hooks with their type and phase; the PostSync hook deleted (HookSucceeded), the
    // PreSync one kept (BeforeHookCreation), neither among the app's resources.
    let results = op["syncResult"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let hook_types: Vec<(String, String)> = results
        .iter()
        .filter(|r| r.get("hookType").is_some())
        .map(|r| {
            (
                r["hookType"].as_str().unwrap_or("").to_string(),
                r["hookPhase"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    ensure!(
        hook_types
            == [
                ("PreSync".to_string(), "Succeeded".to_string()),
                ("Sync".into(), "Succeeded".into()),
                ("PostSync".into(), "Succeeded".into())
            ],
        "{results:?}"
    );
    let a = wait_synced_healthy(&fleet, "waves").await?;
    let names: Vec<String> = a
        .status
        .as_ref()
        .and_then(|s| s.resources.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect();
    ensure!(
        !names
            .iter()
            .any(|n| n.starts_with("migrate") || n.starts_with("during") || n == "smoke"),
        "{names:?}"
    );
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "batch/v1",
            "Job",
            Some("waves"),
            "smoke"
        )
        .await?
        .is_none()
    );
    let history = a.status.and_then(|s| s.history).unwrap_or_default();
    ensure!(
        history.len() == 1 && history[0]["source"]["path"] == "waves",
        "{history:?}"
    );
    // Argo CD's Events on the Application.
    let gvk = kube::api::GroupVersionKind::gvk("events.k8s.io", "v1", "Event");
    let events: Api<kube::api::DynamicObject> = Api::namespaced_with(
        fleet.control().clone(),
        NS,
        &kube::api::ApiResource::from_gvk_with_plural(&gvk, "events"),
    );
    let notes = flotilla_tests::eventually("events", Duration::from_secs(30), || async {
        let notes: Vec<(String, String)> = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.data["regarding"]["name"] == "waves")
            .map(|e| {
                let s = |k: &str| e.data[k].as_str().unwrap_or_default().to_string();
                (s("reason"), s("note"))
            })
            .collect();
        let has =
            |reason: &str, text: &str| notes.iter().any(|(r, n)| r == reason && n.contains(text));
        Ok((has("OperationStarted", "initiated sync to ")
            && has("OperationCompleted", "succeeded")
            && has(
                "ResourceUpdated",
                "Updated sync status: OutOfSync -> Synced",
            ))
        .then_some(notes))
    })
    .await?;
    println!("events: {notes:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_hook_fails_the_sync_and_runs_the_sync_fail_hooks() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.git.commit_files(
        &[
            (
                "fail/migrate.yaml",
                &job("migrate", &[(HOOK, "PreSync"), (BEHAVIOR, "failed")]),
            ),
            ("fail/settings.yaml", &cm("settings", &[])),
            ("fail/notify.yaml", &job("notify-", &[(HOOK, "SyncFail")])),
        ],
        "a failing migration",
    )?;
    fleet
        .apply(&manual_app(
            &fleet,
            "fail",
            "fail",
            "cluster-002",
            "fail",
            CREATE_NS,
        ))
        .await?;
    request_sync(&fleet, "fail", json!({"sync": {"revision": "main"}})).await?;
    let op = wait_op(&fleet, "fail", 60, "sync failed", |o| {
        o["phase"] == "Failed"
    })
    .await?;
    ensure!(
        op["message"] == "one or more synchronization tasks completed unsuccessfully",
        "{op}"
    );
    let results = op["syncResult"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let phase_of = |name: &str| {
        results
            .iter()
            .find(|r| r["name"].as_str().is_some_and(|n| n.starts_with(name)))
            .map(|r| (r["hookType"].clone(), r["hookPhase"].clone()))
    };
    ensure!(
        phase_of("migrate") == Some((json!("PreSync"), json!("Failed"))),
        "{results:?}"
    );
    ensure!(
        phase_of("notify-") == Some((json!("SyncFail"), json!("Succeeded"))),
        "{results:?}"
    );
    // The Sync phase never ran.
    ensure!(
        live(
            &fleet,
            "cluster-002",
            "v1",
            "ConfigMap",
            Some("fail"),
            "settings"
        )
        .await?
        .is_none()
    );
    let a = app(&fleet, "fail").await?;
    ensure!(a.operation.is_none(), "a finished operation is cleared");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_sync_succeeds_on_its_third_attempt() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet
        .git
        .commit_files(&[("retry/settings.yaml", &cm("settings", &[]))], "retry")?;
    // No CreateNamespace: the namespace is missing until the test creates it.
    fleet
        .apply(&manual_app(
            &fleet,
            "retry",
            "retry",
            "cluster-001",
            "late",
            "",
        ))
        .await?;
    request_sync(
        &fleet,
        "retry",
        json!({"sync": {"revision": "main"},
               "retry": {"limit": 5, "backoff": {"duration": "2s", "factor": 1}}}),
    )
    .await?;
    let op = wait_op(&fleet, "retry", 60, "second retry scheduled", |o| {
        o["retryCount"].as_i64() == Some(2)
    })
    .await?;
    let message = op["message"].as_str().unwrap_or_default();
    // The API server's words, not a Debug dump of a client error.
    ensure!(
        message.contains("namespaces \"late\" not found"),
        "{message}"
    );
    ensure!(message.contains("Retrying attempt #2 at"), "{message}");
    ensure!(
        !message.contains("ErrorResponse") && !message.contains("Api("),
        "{message}"
    );
    let client = fleet.cluster("cluster-001").await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "late"}}))?,
        )
        .await?;
    let op = wait_op(&fleet, "retry", 60, "succeeded", |o| {
        o["phase"] == "Succeeded"
    })
    .await?;
    ensure!(op["retryCount"] == 2, "third attempt: {op}");
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "v1",
            "ConfigMap",
            Some("late"),
            "settings"
        )
        .await?
        .is_some()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_and_the_sync_timeout_stop_a_sync_stuck_in_a_wave() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        controller_args: vec![
            "--sync-wave-delay-ms".into(),
            "100".into(),
            "--sync-timeout-seconds".into(),
            "12".into(),
        ],
        ..Default::default()
    })
    .await?;
    for dir in ["stuck", "slow"] {
        fleet.git.commit_files(
            &[
                (
                    &format!("{dir}/web.yaml"),
                    &deployment("web", &[(WAVE, "0"), (BEHAVIOR, "progressing")]),
                ),
                (&format!("{dir}/after.yaml"), &cm("after", &[(WAVE, "1")])),
            ],
            dir,
        )?;
        fleet
            .apply(&manual_app(&fleet, dir, dir, "cluster-002", dir, CREATE_NS))
            .await?;
        request_sync(&fleet, dir, json!({"sync": {"revision": "main"}})).await?;
    }
    for dir in ["stuck", "slow"] {
        let op = wait_op(&fleet, dir, 30, "waiting on the Deployment", |o| {
            o["phase"] == "Running"
                && o["message"] == "waiting for healthy state of apps/Deployment/web"
        })
        .await?;
        ensure!(op["phase"] == "Running");
    }
    // `argocd app terminate-op stuck`: the operation state goes to Terminating.
    let apps: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    apps.patch_status(
        "stuck",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"operationState": {"phase": "Terminating"}}})),
    )
    .await?;
    let op = wait_op(&fleet, "stuck", 30, "terminated", |o| {
        o["phase"] == "Failed"
    })
    .await?;
    ensure!(op["message"] == "Operation terminated", "{op}");
    // The other one ends at the controller's sync timeout.
    let op = wait_op(&fleet, "slow", 40, "timed out", |o| o["phase"] == "Failed").await?;
    ensure!(
        op["message"] == "Operation terminated, triggered by controller sync timeout",
        "{op}"
    );
    for dir in ["stuck", "slow"] {
        ensure!(
            live(&fleet, "cluster-002", "v1", "ConfigMap", Some(dir), "after")
                .await?
                .is_none(),
            "{dir}: the next wave never ran"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_in_the_middle_of_a_multi_wave_sync_resumes_on_the_new_owner() -> Result<()> {
    let mut fleet = Fleet::start(FleetConfig {
        clusters: 2,
        controllers: 2,
        lease_duration_seconds: 3,
        lease_renew_seconds: 1.0,
        controller_args: vec!["--sync-wave-delay-ms".into(), "100".into()],
        ..Default::default()
    })
    .await?;
    fleet.git.commit_files(
        &[
            (
                "handover/migrate.yaml",
                &job("migrate-", &[(HOOK, "PreSync")]),
            ),
            (
                "handover/slow.yaml",
                &deployment("slow", &[(WAVE, "0"), (READY_AFTER, "8000")]),
            ),
            ("handover/after.yaml", &cm("after", &[(WAVE, "1")])),
        ],
        "handover",
    )?;
    fleet
        .apply(&manual_app(
            &fleet,
            "handover",
            "handover",
            "cluster-001",
            "handover",
            CREATE_NS,
        ))
        .await?;
    request_sync(&fleet, "handover", json!({"sync": {"revision": "main"}})).await?;
    wait_op(&fleet, "handover", 30, "waiting in wave 0", |o| {
        o["message"] == "waiting for healthy state of apps/Deployment/slow"
    })
    .await?;
    // The replica writing to cluster-001 crashes in the middle of wave 0.
    let w = writes(&fleet, "cluster-001")?;
    let owner = w
        .iter()
        .find(|x| x.2 == "deployments")
        .map(|x| x.4.clone())
        .context("who applied wave 0")?;
    fleet.kill_controller(&owner)?;
    let op = wait_op(&fleet, "handover", 90, "done on the new owner", |o| {
        o["phase"] == "Succeeded"
    })
    .await?;
    ensure!(
        op["message"] == "successfully synced (all tasks run)",
        "{op}"
    );
    let w = writes(&fleet, "cluster-001")?;
    let count = |res: &str, prefix: &str| {
        w.iter()
            .filter(|x| x.2 == res && x.3.starts_with(prefix))
            .count()
    };
    // Nothing was applied twice, no hook ran twice; the last wave came from the new owner.
    ensure!(count("deployments", "slow") == 1, "{w:?}");
    ensure!(count("jobs", "migrate-") == 1, "{w:?}");
    let after = w
        .iter()
        .find(|x| x.2 == "configmaps" && x.3 == "after")
        .context("wave 1")?;
    ensure!(
        after.4 != owner,
        "wave 1 by {} (the crashed owner was {owner})",
        after.4
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_finalizers_cascade_in_the_background_or_foreground_and_keep_delete_false()
-> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.git.commit_files(
        &[
            ("del/plain.yaml", &cm("plain", &[])),
            (
                "del/kept.yaml",
                &cm(
                    "kept",
                    &[("argocd.argoproj.io/sync-options", "Delete=false")],
                ),
            ),
            (
                "del/noprune.yaml",
                &cm(
                    "noprune",
                    &[("argocd.argoproj.io/sync-options", "Prune=false")],
                ),
            ),
        ],
        "deletion",
    )?;
    let apps: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    for (name, finalizer) in [
        ("bg", "resources-finalizer.argocd.argoproj.io/background"),
        ("fg", "resources-finalizer.argocd.argoproj.io/foreground"),
    ] {
        fleet
            .apply(&auto_synced_app(
                &fleet,
                name,
                "del",
                "cluster-001",
                &[finalizer],
            ))
            .await?;
        wait_synced_healthy(&fleet, name).await?;
        apps.delete(name, &DeleteParams::default()).await?;
        flotilla_tests::eventually("app gone", Duration::from_secs(60), || async {
            Ok(apps.get_opt(name).await?.is_none().then_some(()))
        })
        .await?;
        let exists =
            |n: &'static str| live(&fleet, "cluster-001", "v1", "ConfigMap", Some(name), n);
        ensure!(exists("plain").await?.is_none(), "{name}: plain deleted");
        // Argo CD: Prune=false does not protect from the app's deletion; Delete=false does.
        ensure!(
            exists("noprune").await?.is_none(),
            "{name}: noprune deleted"
        );
        ensure!(exists("kept").await?.is_some(), "{name}: Delete=false kept");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_name_outside_hooks_is_refused_with_a_condition() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.git.commit_files(
        &[
            ("gen/ok.yaml", &cm("ok", &[])),
            ("gen/nameless.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: nameless-\ndata: {k: v}\n"),
        ],
        "generateName",
    )?;
    fleet
        .apply(&auto_synced_app(&fleet, "gen", "gen", "cluster-002", &[]))
        .await?;
    let a = wait_app(&fleet, "gen", Duration::from_secs(30), "refused", |a| {
        conditions(a)
            .iter()
            .any(|(t, m)| t == "InvalidSpecError" && m.contains("generateName"))
    })
    .await?;
    ensure!(codes(&a).0 != "Synced", "not green: {:?}", codes(&a));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_argo_cd_tracked_are_adopted_and_its_stale_ones_pruned() -> Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let mut fleet = Fleet::start(FleetConfig {
        controllers: 0,
        ..Default::default()
    })
    .await?;
    // Argo CD's settings, as the installation being replaced has them.
    let cms: Api<ConfigMap> = Api::namespaced(fleet.control().clone(), NS);
    cms.create(
        &Default::default(),
        &serde_json::from_value(json!({"metadata": {"name": "argocd-cm"},
            "data": {"application.resourceTrackingMethod": "annotation+label"}}))?,
    )
    .await?;
    // What Argo CD left in the cluster: its tracking marks, no Flotilla ones.
    let client = fleet.cluster("cluster-001").await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "legacy"}}))?,
        )
        .await?;
    let target: Api<ConfigMap> = Api::namespaced(client, "legacy");
    let argo_cm = |name: &str, app: &str| -> Result<ConfigMap> {
        Ok(serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"app.kubernetes.io/instance": app},
            "annotations": {"argocd.argoproj.io/tracking-id": format!("{app}:/ConfigMap:legacy/{name}")}},
            "data": {"k": "old"}}))?)
    };
    let mut uids = BTreeMap::new();
    for (name, owner) in [
        ("settings", "legacy"),
        ("stale", "legacy"),
        ("foreign", "other"),
    ] {
        let c = target
            .create(&Default::default(), &argo_cm(name, owner)?)
            .await?;
        uids.insert(name, c.metadata.uid.unwrap_or_default());
    }
    fleet.start_controller().await?;
    fleet
        .git
        .commit_files(&[("legacy/settings.yaml", &cm("settings", &[]))], "legacy")?;
    fleet
        .apply(&auto_synced_app(
            &fleet,
            "legacy",
            "legacy",
            "cluster-001",
            &[],
        ))
        .await?;
    wait_synced_healthy(&fleet, "legacy").await?;
    flotilla_tests::eventually("stale pruned", Duration::from_secs(30), || async {
        Ok(target.get_opt("stale").await?.is_none().then_some(()))
    })
    .await?;
    let settings = target.get("settings").await?;
    ensure!(
        settings.metadata.uid.as_deref() == Some(uids["settings"].as_str()),
        "adopted, not recreated"
    );
    ensure!(settings.data.and_then(|d| d.get("k").cloned()).as_deref() == Some("v"));
    let ann = settings.metadata.annotations.unwrap_or_default();
    ensure!(
        ann.get("argocd.argoproj.io/tracking-id")
            .map(String::as_str)
            == Some("legacy:/ConfigMap:legacy/settings"),
        "{ann:?}"
    );
    let foreign = target.get("foreign").await?;
    ensure!(
        foreign.metadata.uid.as_deref() == Some(uids["foreign"].as_str()),
        "another app's object is left alone"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_syncs_a_history_entry_without_hooks() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    let settings = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  version: {v}\n"
        )
    };
    let hook = job("announce", &[(HOOK, "PostSync")]);
    fleet.git.commit_files(
        &[
            ("roll/settings.yaml", &settings("one")),
            ("roll/announce.yaml", &hook),
        ],
        "v1",
    )?;
    fleet
        .apply(&manual_app(
            &fleet,
            "roll",
            "roll",
            "cluster-002",
            "roll",
            CREATE_NS,
        ))
        .await?;
    let sync_and_wait = |n: usize| {
        let fleet = &fleet;
        async move {
            request_sync(fleet, "roll", json!({"sync": {"revision": "main"}})).await?;
            wait_app(fleet, "roll", Duration::from_secs(60), "synced", |a| {
                a.operation.is_none()
                    && a.status
                        .as_ref()
                        .and_then(|s| s.history.as_ref())
                        .map(Vec::len)
                        == Some(n)
            })
            .await
        }
    };
    sync_and_wait(1).await?;
    fleet
        .git
        .commit_files(&[("roll/settings.yaml", &settings("two"))], "v2")?;
    let a = sync_and_wait(2).await?;
    let version = || async {
        Ok::<_, anyhow::Error>(
            live(
                &fleet,
                "cluster-002",
                "v1",
                "ConfigMap",
                Some("roll"),
                "settings",
            )
            .await?
            .map(|c| c["data"]["version"].clone()),
        )
    };
    ensure!(version().await? == Some(json!("two")));
    let hooks_before = writes(&fleet, "cluster-002")?
        .iter()
        .filter(|w| w.2 == "jobs")
        .count();
    // What `argocd app rollback roll 0` asks for.
    let op = flotilla_controller::operation::rollback_operation(
        &a,
        0,
        false,
        false,
        Some("alice".into()),
    )
    .map_err(anyhow::Error::msg)?;
    request_sync(&fleet, "roll", serde_json::to_value(&op)?).await?;
    let a = wait_app(
        &fleet,
        "roll",
        Duration::from_secs(60),
        "rolled back",
        |a| {
            a.operation.is_none()
                && a.status
                    .as_ref()
                    .and_then(|s| s.history.as_ref())
                    .map(Vec::len)
                    == Some(3)
        },
    )
    .await?;
    ensure!(
        version().await? == Some(json!("one")),
        "the first revision is live again"
    );
    let history = a.status.clone().and_then(|s| s.history).unwrap_or_default();
    ensure!(
        history[2]["revision"] == history[0]["revision"],
        "{history:?}"
    );
    let hooks_after = writes(&fleet, "cluster-002")?
        .iter()
        .filter(|w| w.2 == "jobs")
        .count();
    ensure!(
        hooks_after == hooks_before,
        "the apply strategy runs no hooks"
    );
    // The spec still points at main: the app shows OutOfSync until synced again.
    let a = wait_app(&fleet, "roll", Duration::from_secs(30), "OutOfSync", |a| {
        codes(a).0 == "OutOfSync"
    })
    .await?;
    ensure!(codes(&a).0 == "OutOfSync");
    // Refused while auto-sync is on.
    let mut auto = a.clone();
    auto.spec.sync_policy = Some(serde_json::from_value(json!({"automated": {}}))?);
    ensure!(
        flotilla_controller::operation::rollback_operation(&auto, 0, false, false, None).is_err()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_delete_hooks_run_after_the_resources_are_gone() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.git.commit_files(
        &[
            ("bye/settings.yaml", &cm("settings", &[])),
            (
                "bye/farewell.yaml",
                &job(
                    "farewell",
                    &[(HOOK, "PostDelete"), (DELETE_POLICY, "HookSucceeded")],
                ),
            ),
        ],
        "post-delete",
    )?;
    fleet
        .apply(&auto_synced_app(
            &fleet,
            "bye",
            "bye",
            "cluster-001",
            &["resources-finalizer.argocd.argoproj.io"],
        ))
        .await?;
    let a = wait_synced_healthy(&fleet, "bye").await?;
    let finalizers = a.metadata.finalizers.clone().unwrap_or_default();
    ensure!(
        finalizers
            .iter()
            .any(|f| f == "post-delete-finalizer.argocd.argoproj.io")
            && finalizers
                .iter()
                .any(|f| f == "post-delete-finalizer.argocd.argoproj.io/cleanup"),
        "{finalizers:?}"
    );
    // The PostDelete hook is not part of the sync.
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "batch/v1",
            "Job",
            Some("bye"),
            "farewell"
        )
        .await?
        .is_none()
    );
    let apps: Api<Application> = Api::namespaced(fleet.control().clone(), NS);
    apps.delete("bye", &DeleteParams::default()).await?;
    flotilla_tests::eventually("app gone", Duration::from_secs(60), || async {
        Ok(apps.get_opt("bye").await?.is_none().then_some(()))
    })
    .await?;
    let w = writes(&fleet, "cluster-001")?;
    let at = |verb: &str, res: &str, name: &str| {
        w.iter()
            .position(|x| x.1 == verb && x.2 == res && x.3 == name)
    };
    let cm_deleted = at("delete", "configmaps", "settings").context("settings deleted")?;
    let hook_created = at("patch", "jobs", "farewell").context("farewell created")?;
    let hook_deleted =
        at("delete", "jobs", "farewell").context("farewell deleted (HookSucceeded)")?;
    ensure!(
        cm_deleted < hook_created && hook_created < hook_deleted,
        "{w:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_reconcile_leaves_an_application_alone() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet
        .git
        .commit_files(&[("skip/settings.yaml", &cm("settings", &[]))], "skip")?;
    let yaml = auto_synced_app(&fleet, "skip", "skip", "cluster-002", &[]).replace(
        "metadata: {name: skip,",
        "metadata: {annotations: {argocd.argoproj.io/skip-reconcile: \"true\"}, name: skip,",
    );
    fleet.apply(&yaml).await?;
    // A sibling without the annotation syncs, so the controller is demonstrably at work.
    fleet
        .apply(&auto_synced_app(
            &fleet,
            "sibling",
            "skip",
            "cluster-002",
            &[],
        ))
        .await?;
    wait_synced_healthy(&fleet, "sibling").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = app(&fleet, "skip").await?;
    ensure!(a.status.is_none(), "no status written: {:?}", a.status);
    ensure!(
        live(
            &fleet,
            "cluster-002",
            "v1",
            "ConfigMap",
            Some("skip"),
            "settings"
        )
        .await?
        .is_none()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_dry_run_replace_namespace_metadata_and_shared_resources() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.git.commit_files(
        &[
            ("opts/a.yaml", &cm("a", &[])),
            (
                "opts/b.yaml",
                &cm("b", &[("argocd.argoproj.io/sync-options", "Replace=true")]),
            ),
        ],
        "options",
    )?;
    let policy = "  syncPolicy:\n    syncOptions: [CreateNamespace=true]\n    managedNamespaceMetadata:\n      labels: {team: blue}\n      annotations: {owner: platform}\n";
    fleet
        .apply(&manual_app(
            &fleet,
            "opts",
            "opts",
            "cluster-002",
            "opts",
            policy,
        ))
        .await?;
    // A dry run changes nothing and says so.
    request_sync(
        &fleet,
        "opts",
        json!({"sync": {"revision": "main", "dryRun": true}}),
    )
    .await?;
    let op = wait_op(&fleet, "opts", 60, "dry run done", |o| {
        o["phase"] == "Succeeded"
    })
    .await?;
    let msgs: Vec<String> = op["syncResult"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["message"].as_str().unwrap_or_default().to_string())
        .collect();
    ensure!(
        msgs.len() == 2 && msgs.iter().all(|m| m.contains("(dry run")),
        "{msgs:?}"
    );
    ensure!(
        live(&fleet, "cluster-002", "v1", "ConfigMap", Some("opts"), "a")
            .await?
            .is_none()
    );
    let a = app(&fleet, "opts").await?;
    ensure!(
        a.status
            .and_then(|s| s.history)
            .unwrap_or_default()
            .is_empty(),
        "no history for a dry run"
    );
    // A selective sync applies only what it names.
    request_sync(
        &fleet,
        "opts",
        json!({"sync": {"revision": "main", "resources": [{"kind": "ConfigMap", "name": "a"}]}}),
    )
    .await?;
    wait_op(&fleet, "opts", 60, "selective done", |o| {
        o["phase"] == "Succeeded" && o["operation"]["sync"]["resources"].is_array()
    })
    .await?;
    ensure!(
        live(&fleet, "cluster-002", "v1", "ConfigMap", Some("opts"), "a")
            .await?
            .is_some()
    );
    ensure!(
        live(&fleet, "cluster-002", "v1", "ConfigMap", Some("opts"), "b")
            .await?
            .is_none()
    );
    let ns = live(&fleet, "cluster-002", "v1", "Namespace", None, "opts")
        .await?
        .context("namespace")?;
    ensure!(
        ns["metadata"]["labels"]["team"] == "blue"
            && ns["metadata"]["annotations"]["owner"] == "platform",
        "managedNamespaceMetadata: {ns}"
    );
    // A full sync; then b is written again with Replace=true (an update, not an apply).
    request_sync(&fleet, "opts", json!({"sync": {"revision": "main"}})).await?;
    wait_app(&fleet, "opts", Duration::from_secs(60), "synced", |a| {
        a.operation.is_none() && codes(a).0 == "Synced"
    })
    .await?;
    let w = writes(&fleet, "cluster-002")?;
    ensure!(
        w.iter().any(|x| x.1 == "create" && x.3 == "b"),
        "Replace=true creates: {w:?}"
    );
    // Another app with FailOnSharedResource that would take over `a`: refused.
    fleet
        .apply(&manual_app(
            &fleet,
            "thief",
            "opts",
            "cluster-002",
            "opts",
            "  syncPolicy:\n    syncOptions: [FailOnSharedResource=true]\n",
        ))
        .await?;
    let a = wait_app(&fleet, "thief", Duration::from_secs(30), "shared", |a| {
        conditions(a)
            .iter()
            .any(|(t, _)| t == "SharedResourceWarning")
    })
    .await?;
    ensure!(
        conditions(&a)
            .iter()
            .any(|(_, m)| m
                .contains("ConfigMap/a is part of applications argocd/thief and argocd/opts")),
        "{:?}",
        conditions(&a)
    );
    request_sync(&fleet, "thief", json!({"sync": {"revision": "main"}})).await?;
    let op = wait_op(&fleet, "thief", 30, "refused", |o| o["phase"] == "Failed").await?;
    ensure!(
        op["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Shared resource found"),
        "{op}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_differences_do_not_fight_an_autoscaler_or_a_mutating_webhook() -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    let fleet = Fleet::start(FleetConfig::default()).await?;
    let dep = |label: &str| {
        deployment("web", &[]).replace(
            "  name: web\n",
            &format!("  name: web\n  labels: {{rev: {label}}}\n"),
        )
    };
    fleet
        .git
        .commit_files(&[("scaled/web.yaml", &dep("one"))], "scaled")?;
    let spec = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: scaled, namespace: {NS}}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: scaled}}\n  destination: {{name: cluster-001, namespace: scaled}}\n  ignoreDifferences:\n  - group: apps\n    kind: Deployment\n    jsonPointers: [/spec/replicas]\n    jqPathExpressions: ['.spec.template.spec.containers[] | select(.name == \"web\").image']\n  syncPolicy:\n    automated: {{prune: true, selfHeal: true}}\n    syncOptions: [CreateNamespace=true, RespectIgnoreDifferences=true]\n",
        url = fleet.git.url()
    );
    fleet.apply(&spec).await?;
    wait_synced_healthy(&fleet, "scaled").await?;
    let deploys: Api<Deployment> = Api::namespaced(fleet.cluster("cluster-001").await?, "scaled");
    // An autoscaler scales through /scale; a webhook rewrites the image.
    deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    deploys
        .patch(
            "web",
            &PatchParams::apply("mutator").force(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}})),
        )
        .await?;
    refresh(&fleet, "scaled").await?;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let a = app(&fleet, "scaled").await?;
    ensure!(
        codes(&a).0 == "Synced",
        "ignored fields are no drift: {:?}",
        codes(&a)
    );
    let d = deploys.get("web").await?;
    let image = |d: &Deployment| {
        d.spec
            .template
            .spec
            .as_ref()
            .map(|p| p.containers[0].image.clone().unwrap_or_default())
    };
    ensure!(d.spec.replicas == Some(5), "selfHeal left replicas alone");
    ensure!(image(&d).as_deref() == Some("nginx:1.28"), "and the image");
    // A new commit is synced; with RespectIgnoreDifferences the ignored fields are not written.
    fleet
        .git
        .commit_files(&[("scaled/web.yaml", &dep("two"))], "label")?;
    refresh(&fleet, "scaled").await?;
    flotilla_tests::eventually("new label live", Duration::from_secs(60), || async {
        let d = deploys.get("web").await?;
        Ok((d
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("rev"))
            .map(String::as_str)
            == Some("two"))
        .then_some(d))
    })
    .await?;
    let d = deploys.get("web").await?;
    ensure!(
        d.spec.replicas == Some(5),
        "the sync kept the autoscaler's replicas"
    );
    ensure!(
        image(&d).as_deref() == Some("nginx:1.28"),
        "and the webhook's image"
    );
    Ok(())
}
