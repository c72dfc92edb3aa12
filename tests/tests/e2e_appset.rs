//! ApplicationSets end to end: Applications generated (list and cluster generators, both
//! template modes), owned by the set, synced by the controller, deleted when no longer
//! generated as the policy allows; a generator error or an unsupported field deletes nothing
//! and says so in the set's conditions; an Application the set does not own is left alone;
//! clusterDecisionResource, ignoreApplicationDifferences, preservedFields and Events.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::{NS, app, config_map, wait_synced_healthy};
use flotilla_tests::eventually;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;

use flotilla_tests::e2e::{
    application_sets as sets, applications as apps, set_condition as condition,
};

async fn exists(fleet: &Fleet, name: &str) -> Result<bool> {
    Ok(apps(fleet).get_opt(name).await?.is_some())
}

fn list_set(fleet: &Fleet, name: &str, elements: &str, policy: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  generators:\n  - list:\n      elements: [{elements}]\n  template:\n    metadata: {{name: '{name}-{{{{env}}}}'}}\n    spec:\n      project: default\n      source: {{repoURL: {url}, targetRevision: main, path: '{{{{path}}}}'}}\n      destination: {{name: cluster-001, namespace: '{name}-{{{{env}}}}'}}\n      syncPolicy: {{automated: {{}}, syncOptions: [CreateNamespace=true]}}\n{policy}",
        url = fleet.git.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_sets_create_sync_update_and_delete_what_they_own() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.git.commit_files(
        &[
            ("dev/cm.yaml", &config_map("settings", "dev")),
            ("prod/cm.yaml", &config_map("settings", "prod")),
        ],
        "envs",
    )?;
    fleet
        .apply(&list_set(
            &fleet,
            "web",
            "{env: dev, path: dev}, {env: prod, path: prod}",
            "",
        ))
        .await?;
    wait_synced_healthy(&fleet, "web-dev").await?;
    wait_synced_healthy(&fleet, "web-prod").await?;
    let dev = apps(&fleet).get("web-dev").await?;
    let set = sets(&fleet).get("web").await?;
    let owner = dev.metadata.owner_references.clone().unwrap_or_default();
    ensure!(
        owner.len() == 1
            && owner[0].kind == "ApplicationSet"
            && Some(&owner[0].uid) == set.metadata.uid.as_ref(),
        "owned by the set: {owner:?}"
    );
    ensure!(
        dev.metadata.finalizers.as_ref().is_some_and(|f| f
            .iter()
            .any(|x| x == "resources-finalizer.argocd.argoproj.io")),
        "Argo CD's default finalizer"
    );
    eventually("up to date", Duration::from_secs(20), || async {
        Ok(condition(&fleet, "web", "ResourcesUpToDate")
            .await?
            .filter(|(s, _)| s == "True")
            .map(|_| ()))
    })
    .await?;
    ensure!(
        sets(&fleet).get("web").await?.data["status"]["resources"]
            .as_array()
            .map(Vec::len)
            == Some(2)
    );

    // An Application of the same name the set does not own is left alone, and said.
    fleet
        .apply(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: web-stage, namespace: {NS}}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: dev}}\n  destination: {{name: cluster-002, namespace: hand-made}}\n",
            url = fleet.git.url()
        ))
        .await?;
    fleet
        .apply(&list_set(
            &fleet,
            "web",
            "{env: dev, path: dev}, {env: prod, path: prod}, {env: stage, path: dev}",
            "",
        ))
        .await?;
    eventually("refusal said", Duration::from_secs(20), || async {
        Ok(condition(&fleet, "web", "ErrorOccurred")
            .await?
            .filter(|(s, m)| s == "True" && m.contains("web-stage") && m.contains("not owned"))
            .map(|_| ()))
    })
    .await?;
    let hand_made = app(&fleet, "web-stage").await?;
    ensure!(
        hand_made.spec.destination.name.as_deref() == Some("cluster-002"),
        "the hand-made app kept its spec"
    );

    // An unsupported generator: an error condition, and nothing deleted.
    let broken = list_set(&fleet, "web", "{env: dev, path: dev}", "").replace(
        "  generators:\n",
        "  generators:\n  - plugin:\n      configMapRef: {name: my-plugin}\n",
    );
    fleet.apply(&broken).await?;
    eventually("plugin refused", Duration::from_secs(20), || async {
        Ok(condition(&fleet, "web", "ErrorOccurred")
            .await?
            .filter(|(s, m)| s == "True" && m.contains("plugin"))
            .map(|_| ()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        exists(&fleet, "web-prod").await?,
        "a refused spec deletes nothing"
    );

    // create-only: a dropped element stays; the default policy (sync) deletes it.
    fleet
        .apply(&list_set(
            &fleet,
            "web",
            "{env: dev, path: dev}",
            "  syncPolicy: {applicationsSync: create-only}\n",
        ))
        .await?;
    eventually(
        "create-only reconciled",
        Duration::from_secs(20),
        || async {
            Ok(condition(&fleet, "web", "ResourcesUpToDate")
                .await?
                .filter(|(s, _)| s == "True")
                .map(|_| ()))
        },
    )
    .await?;
    ensure!(exists(&fleet, "web-prod").await?, "create-only keeps it");
    fleet
        .apply(&list_set(&fleet, "web", "{env: dev, path: dev}", ""))
        .await?;
    eventually("web-prod deleted", Duration::from_secs(30), || async {
        Ok((!exists(&fleet, "web-prod").await?).then_some(()))
    })
    .await?;
    ensure!(exists(&fleet, "web-dev").await?);
    ensure!(
        exists(&fleet, "web-stage").await?,
        "never delete what the set did not create"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_generator_with_go_templates_follows_cluster_labels() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        clusters: 3,
        ..Default::default()
    })
    .await?;
    fleet
        .git
        .commit_files(&[("addon/cm.yaml", &config_map("addon", "on"))], "addon")?;
    let secrets: Api<Secret> = Api::namespaced(fleet.control().clone(), NS);
    let mut cluster_secrets: Vec<String> = secrets
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("argocd.argoproj.io/secret-type"))
                .is_some_and(|t| t == "cluster")
        })
        .filter_map(|s| s.metadata.name)
        .collect();
    cluster_secrets.sort();
    ensure!(cluster_secrets.len() == 3, "{cluster_secrets:?}");
    let label = |name: &str, env: Option<&str>| {
        let secrets = secrets.clone();
        let name = name.to_string();
        let env = env.map(str::to_string);
        async move {
            secrets
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"env": env}}})),
                )
                .await
        }
    };
    label(&cluster_secrets[0], Some("prod")).await?;
    label(&cluster_secrets[1], Some("prod")).await?;
    let set = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {{name: addons, namespace: {NS}}}\nspec:\n  goTemplate: true\n  goTemplateOptions: [missingkey=error]\n  generators:\n  - clusters:\n      selector: {{matchLabels: {{env: prod}}}}\n  template:\n    metadata: {{name: 'addon-{{{{.name | normalize}}}}', labels: {{env: '{{{{index .metadata.labels \"env\"}}}}'}}}}\n    spec:\n      project: default\n      source: {{repoURL: {url}, targetRevision: main, path: addon}}\n      destination: {{server: '{{{{.server}}}}', namespace: addons}}\n      syncPolicy: {{automated: {{}}, syncOptions: [CreateNamespace=true]}}\n",
        url = fleet.git.url()
    );
    fleet.apply(&set).await?;
    let names = |secrets: &[String]| -> Result<Vec<String>> {
        secrets
            .iter()
            .map(|s| Ok(format!("addon-{}", s.strip_prefix("cluster-").unwrap_or(s))))
            .collect()
    };
    // The cluster generator's `name` is the Secret's data.name: kubesim's Secret
    // `cluster-cluster-001` holds the cluster `cluster-001`.
    let wanted = names(&cluster_secrets[..2])?;
    for w in &wanted {
        eventually(
            &format!("{w} generated"),
            Duration::from_secs(30),
            || async { Ok(exists(&fleet, w).await?.then_some(())) },
        )
        .await?;
        wait_synced_healthy(&fleet, w).await?;
    }
    let a = apps(&fleet).get(&wanted[0]).await?;
    ensure!(
        a.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("env"))
            .map(String::as_str)
            == Some("prod"),
        "{:?}",
        a.metadata.labels
    );
    // A label moved: the set follows the clusters.
    label(&cluster_secrets[1], None).await?;
    label(&cluster_secrets[2], Some("prod")).await?;
    let third = names(&cluster_secrets[2..])?.remove(0);
    eventually(
        "the third cluster's app",
        Duration::from_secs(30),
        || async { Ok(exists(&fleet, &third).await?.then_some(())) },
    )
    .await?;
    eventually(
        "the second cluster's app deleted",
        Duration::from_secs(30),
        || async { Ok((!exists(&fleet, &wanted[1]).await?).then_some(())) },
    )
    .await?;
    // missingkey=error: a template naming a missing key generates nothing and deletes nothing.
    fleet
        .apply(&set.replace("index .metadata.labels \"env\"", ".nosuchkey"))
        .await?;
    eventually("missing key refused", Duration::from_secs(20), || async {
        Ok(condition(&fleet, "addons", "ErrorOccurred")
            .await?
            .filter(|(s, _)| s == "True")
            .map(|_| ()))
    })
    .await?;
    ensure!(exists(&fleet, &third).await? && exists(&fleet, &wanted[0]).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_generators_follow_directories_and_files_through_the_repo_server() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        webhook_github_secret: Some("s3cret".into()),
        ..Default::default()
    })
    .await?;
    fleet.git.commit_files(
        &[
            ("apps/a/cm.yaml", &config_map("a", "v")),
            ("apps/b/cm.yaml", &config_map("b", "v")),
            ("apps/skip/cm.yaml", &config_map("skip", "v")),
            (
                "envs/dev.json",
                r#"{"env": "dev", "team": {"name": "blue"}}"#,
            ),
            (
                "envs/prod.json",
                r#"{"env": "prod", "team": {"name": "red"}}"#,
            ),
        ],
        "layout",
    )?;
    let url = fleet.git.url();
    fleet
        .apply(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {{name: dirs, namespace: {NS}}}\nspec:\n  generators:\n  - git:\n      repoURL: {url}\n      revision: main\n      requeueAfterSeconds: 1\n      directories:\n      - path: 'apps/*'\n      - path: apps/skip\n        exclude: true\n  template:\n    metadata: {{name: 'dir-{{{{path.basename}}}}'}}\n    spec:\n      project: default\n      source: {{repoURL: {url}, targetRevision: main, path: '{{{{path}}}}'}}\n      destination: {{name: cluster-001, namespace: 'dir-{{{{path.basename}}}}'}}\n      syncPolicy: {{automated: {{}}, syncOptions: [CreateNamespace=true]}}\n"
        ))
        .await?;
    fleet
        .apply(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {{name: files, namespace: {NS}}}\nspec:\n  goTemplate: true\n  generators:\n  - git:\n      repoURL: {url}\n      revision: main\n      files:\n      - path: 'envs/*.json'\n  template:\n    metadata: {{name: 'file-{{{{.env}}}}', labels: {{team: '{{{{.team.name}}}}', from: '{{{{.path.filename}}}}'}}}}\n    spec:\n      project: default\n      source: {{repoURL: {url}, targetRevision: main, path: apps/a}}\n      destination: {{name: cluster-002, namespace: 'file-{{{{.env}}}}'}}\n"
        ))
        .await?;
    for name in ["dir-a", "dir-b"] {
        eventually(
            &format!("{name} generated"),
            Duration::from_secs(30),
            || async { Ok(exists(&fleet, name).await?.then_some(())) },
        )
        .await?;
    }
    wait_synced_healthy(&fleet, "dir-a").await?;
    ensure!(!exists(&fleet, "dir-skip").await?, "excluded directory");
    for (name, team) in [("file-dev", "blue"), ("file-prod", "red")] {
        let a = eventually(
            &format!("{name} generated"),
            Duration::from_secs(30),
            || async { Ok(apps(&fleet).get_opt(name).await?) },
        )
        .await?;
        let labels = a.metadata.labels.unwrap_or_default();
        ensure!(
            labels.get("team").map(String::as_str) == Some(team)
                && labels.get("from").map(String::as_str) == Some(&format!("{}.json", &name[5..])),
            "{labels:?}"
        );
    }
    // A new directory in Git: picked up at the generator's requeue.
    fleet
        .git
        .commit_files(&[("apps/c/cm.yaml", &config_map("c", "v"))], "c")?;
    eventually("dir-c generated", Duration::from_secs(30), || async {
        Ok(exists(&fleet, "dir-c").await?.then_some(()))
    })
    .await?;
    // A push announced by webhook regenerates the sets reading that repository at once: the
    // files set's own requeue (3 minutes) is not waited for. The set's owner clears the ask.
    let commit = fleet.git.commit_files(
        &[(
            "envs/stage.json",
            r#"{"env": "stage", "team": {"name": "green"}}"#,
        )],
        "stage",
    )?;
    let body = json!({"ref": "refs/heads/main", "after": commit,
                      "repository": {"html_url": url, "clone_url": url, "default_branch": "main"},
                      "commits": [{"id": commit, "added": ["envs/stage.json"], "modified": [], "removed": []}]})
    .to_string();
    let webhook = fleet.controllers[0]
        .webhook
        .clone()
        .context("webhook address")?;
    let (code, reply) = flotilla_loadtest::fleet::http_post(
        &webhook,
        "/api/webhook",
        &[
            ("X-GitHub-Event", "push"),
            (
                "X-Hub-Signature-256",
                &flotilla_loadtest::fleet::github_signature("s3cret", body.as_bytes()),
            ),
        ],
        body.as_bytes(),
    )
    .await?;
    ensure!(code == 200, "{code}: {reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply)?;
    ensure!(
        reply["applicationSets"] == 2,
        "both sets read the repository: {reply}"
    );
    eventually("file-stage generated", Duration::from_secs(20), || async {
        Ok(exists(&fleet, "file-stage").await?.then_some(()))
    })
    .await?;
    eventually("refresh ask cleared", Duration::from_secs(20), || async {
        let s = sets(&fleet).get("files").await?;
        Ok((!s
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("argocd.argoproj.io/application-set-refresh"))
        .then_some(()))
    })
    .await?;

    // An unreachable repository: an error, and nothing deleted.
    let broken = sets(&fleet).get("dirs").await?;
    let mut spec = broken.data["spec"].clone();
    spec["generators"][0]["git"]["repoURL"] = json!("git://127.0.0.1:1/nowhere");
    sets(&fleet)
        .patch(
            "dirs",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await?;
    eventually(
        "unreachable repository said",
        Duration::from_secs(60),
        || async {
            Ok(condition(&fleet, "dirs", "ErrorOccurred")
                .await?
                .filter(|(s, m)| s == "True" && m.contains("nowhere"))
                .map(|_| ()))
        },
    )
    .await?;
    ensure!(
        exists(&fleet, "dir-a").await? && exists(&fleet, "dir-c").await?,
        "a generator error deletes nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_sync_goes_step_by_step_gated_on_health() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    // dev's Deployment takes 3 s to become ready; prod is two ConfigMaps, ready at once.
    let slow = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations: {kubesim.flotilla.dev/ready-after-ms: '3000'}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n";
    fleet.git.commit_files(
        &[
            ("roll/dev/web.yaml", slow),
            ("roll/prod/cm.yaml", &config_map("settings", "prod")),
        ],
        "rollout",
    )?;
    let url = fleet.git.url();
    fleet
        .apply(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {{name: roll, namespace: {NS}}}\nspec:\n  generators:\n  - list:\n      elements:\n      - {{name: dev, env: dev}}\n      - {{name: prod-1, env: prod}}\n      - {{name: prod-2, env: prod}}\n  strategy:\n    type: RollingSync\n    rollingSync:\n      steps:\n      - matchExpressions: [{{key: env, operator: In, values: [dev]}}]\n      - matchExpressions: [{{key: env, operator: In, values: [prod]}}]\n        maxUpdate: 1\n  template:\n    metadata: {{name: 'roll-{{{{name}}}}', labels: {{env: '{{{{env}}}}'}}}}\n    spec:\n      project: default\n      source: {{repoURL: {url}, targetRevision: main, path: 'roll/{{{{env}}}}'}}\n      destination: {{name: cluster-001, namespace: 'roll-{{{{name}}}}'}}\n      syncPolicy: {{automated: {{prune: true}}, syncOptions: [CreateNamespace=true]}}\n"
        ))
        .await?;
    // Until dev is Healthy, prod is never synced; prod's apps never sync at the same time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut saw_dev_progressing = false;
    loop {
        let list = apps(&fleet).list(&Default::default()).await?.items;
        let get = |n: &str| list.iter().find(|a| a.metadata.name.as_deref() == Some(n));
        let health = |a: Option<&DynamicObject>| {
            a.and_then(|a| {
                a.data["status"]["health"]["status"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_default()
        };
        let started = |a: Option<&DynamicObject>| {
            a.is_some_and(|a| {
                !a.data["status"]["operationState"].is_null() || !a.data["operation"].is_null()
            })
        };
        let running = |a: Option<&DynamicObject>| {
            a.is_some_and(|a| {
                a.data["status"]["operationState"]["phase"] == "Running"
                    || !a.data["operation"].is_null()
            })
        };
        let dev = get("roll-dev");
        if let Some(d) = dev {
            ensure!(
                d.data["spec"]["syncPolicy"]["automated"].is_null(),
                "the rollout turns the generated apps' auto-sync off"
            );
        }
        if health(dev) != "Healthy" {
            if started(dev) {
                saw_dev_progressing = true;
            }
            ensure!(
                !started(get("roll-prod-1")) && !started(get("roll-prod-2")),
                "prod synced before dev was healthy"
            );
        }
        ensure!(
            !(running(get("roll-prod-1")) && running(get("roll-prod-2"))),
            "maxUpdate 1: both prod apps synced at once"
        );
        if ["roll-dev", "roll-prod-1", "roll-prod-2"]
            .iter()
            .all(|n| health(get(n)) == "Healthy")
        {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "rollout did not finish"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    ensure!(
        saw_dev_progressing,
        "dev was synced and watched while not yet healthy"
    );
    let status = eventually("every step Healthy", Duration::from_secs(20), || async {
        let s = sets(&fleet).get("roll").await?;
        let st = s.data["status"]["applicationStatus"].clone();
        let all = st
            .as_array()
            .is_some_and(|l| l.len() == 3 && l.iter().all(|e| e["status"] == "Healthy"));
        Ok(all.then_some(st))
    })
    .await?;
    ensure!(
        status.as_array().is_some_and(|l| l
            .iter()
            .any(|e| e["application"] == "roll-dev" && e["step"] == "1")),
        "{status}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_is_handed_over_when_its_owner_dies() -> Result<()> {
    let mut fleet = Fleet::start(FleetConfig {
        controllers: 2,
        lease_duration_seconds: 3,
        lease_renew_seconds: 1.0,
        ..Default::default()
    })
    .await?;
    let slow = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations: {kubesim.flotilla.dev/ready-after-ms: '6000'}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n";
    fleet.git.commit_files(
        &[
            ("ho/dev/web.yaml", slow),
            ("ho/prod/cm.yaml", &config_map("settings", "prod")),
        ],
        "rollout",
    )?;
    let url = fleet.git.url();
    fleet
        .apply(&format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {{name: ho, namespace: {NS}}}\nspec:\n  generators:\n  - list:\n      elements: [{{env: dev}}, {{env: prod}}]\n  strategy:\n    type: RollingSync\n    rollingSync:\n      steps:\n      - matchExpressions: [{{key: env, operator: In, values: [dev]}}]\n      - matchExpressions: [{{key: env, operator: In, values: [prod]}}]\n  template:\n    metadata: {{name: 'ho-{{{{env}}}}', labels: {{env: '{{{{env}}}}'}}}}\n    spec:\n      project: default\n      source: {{repoURL: {url}, targetRevision: main, path: 'ho/{{{{env}}}}'}}\n      destination: {{name: cluster-001, namespace: 'ho-{{{{env}}}}'}}\n      syncPolicy: {{syncOptions: [CreateNamespace=true]}}\n"
        ))
        .await?;
    // The rollout has begun: dev is being synced (and is slow to become healthy).
    eventually("dev syncing", Duration::from_secs(30), || async {
        Ok(apps(&fleet)
            .get_opt("ho-dev")
            .await?
            .filter(|a| !a.data["status"]["operationState"].is_null())
            .map(|_| ()))
    })
    .await?;
    // Kill the set's owner (the replica reporting it in flotilla_appset_owned).
    let mut owner = None;
    for id in fleet.controller_ids() {
        let m = fleet.metrics_of(&id).await?;
        if flotilla_loadtest::fleet::metric_value(&m, "flotilla_appset_owned", &[]) == 1.0 {
            owner = Some(id);
        }
    }
    let owner = owner.context("one replica owns the set")?;
    ensure!(
        !started_prod(&fleet).await?,
        "prod must wait for dev, which needs 6 s"
    );
    fleet.kill_controller(&owner)?;
    // The survivor takes the set (and the clusters) over and finishes the rollout in order.
    let survivor = fleet.controller_ids().remove(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let dev = apps(&fleet).get("ho-dev").await?;
        let dev_healthy = dev.data["status"]["health"]["status"] == "Healthy";
        if !dev_healthy {
            ensure!(
                !started_prod(&fleet).await?,
                "prod synced before dev was healthy"
            );
        }
        let prod = apps(&fleet).get_opt("ho-prod").await?;
        if dev_healthy
            && prod.is_some_and(|p| {
                p.data["status"]["health"]["status"] == "Healthy"
                    && p.data["status"]["sync"]["status"] == "Synced"
            })
        {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "rollout not finished after the hand-over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = fleet.metrics_of(&survivor).await?;
    ensure!(
        flotilla_loadtest::fleet::metric_value(&m, "flotilla_appset_owned", &[]) == 1.0,
        "the survivor owns the set"
    );
    Ok(())
}

async fn started_prod(fleet: &Fleet) -> Result<bool> {
    Ok(apps(fleet).get_opt("ho-prod").await?.is_some_and(|a| {
        !a.data["status"]["operationState"].is_null() || !a.data["operation"].is_null()
    }))
}

/// The set's Events (events.k8s.io) by reason.
async fn set_events(fleet: &Fleet, set: &str) -> Result<Vec<(String, String, String)>> {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(fleet.control().clone(), NS);
    Ok(events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("ApplicationSet") && r.name.as_deref() == Some(set)
            })
        })
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_decision_resources_ignored_differences_and_events() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        clusters: 3,
        ..Default::default()
    })
    .await?;
    fleet
        .git
        .commit_files(&[("duck/cm.yaml", &config_map("duck", "on"))], "duck")?;
    // A placement API of the Open Cluster Management kind: decisions in status.
    fleet
        .apply(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: placementdecisions.cluster.open-cluster-management.io}\nspec:\n  group: cluster.open-cluster-management.io\n  scope: Namespaced\n  names: {plural: placementdecisions, singular: placementdecision, kind: PlacementDecision, listKind: PlacementDecisionList}\n  versions:\n  - name: v1beta1\n    served: true\n    storage: true\n    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n",
        )
        .await?;
    let decisions = Api::<DynamicObject>::namespaced_with(
        fleet.control().clone(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(
                "cluster.open-cluster-management.io",
                "v1beta1",
                "PlacementDecision",
            ),
            "placementdecisions",
        ),
    );
    let decide = |clusters: &[&str]| {
        let list: Vec<_> = clusters
            .iter()
            .map(|c| json!({"clusterName": c, "reason": "placed"}))
            .collect();
        json!({"apiVersion": "cluster.open-cluster-management.io/v1beta1",
               "kind": "PlacementDecision",
               "metadata": {"name": "placement", "labels": {"placement": "web"}},
               "status": {"decisions": list}})
    };
    let apply_decision = |clusters: &'static [&'static str]| {
        let decisions = decisions.clone();
        let body = decide(clusters);
        async move {
            eventually("decision written", Duration::from_secs(30), || async {
                Ok(decisions
                    .patch(
                        "placement",
                        &PatchParams::apply("test").force(),
                        &Patch::Apply(&body),
                    )
                    .await
                    .ok()
                    .map(|_| ()))
            })
            .await
        }
    };
    apply_decision(&["cluster-001", "not-a-cluster"]).await?;
    let cm = |match_key: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ocm-placement, namespace: {NS}}}\ndata:\n  apiVersion: cluster.open-cluster-management.io/v1beta1\n  kind: placementdecisions\n  statusListKey: decisions\n  matchKey: '{match_key}'\n"
        )
    };
    fleet.apply(&cm("clusterName")).await?;
    let set = |annotation: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {{name: placed, namespace: {NS}}}\nspec:\n  goTemplate: true\n  goTemplateOptions: [missingkey=error]\n  preservedFields: {{labels: [team]}}\n  ignoreApplicationDifferences:\n  - jsonPointers: [/spec/source/targetRevision]\n  generators:\n  - clusterDecisionResource:\n      configMapRef: ocm-placement\n      labelSelector: {{matchLabels: {{placement: web}}}}\n      requeueAfterSeconds: 2\n      values: {{tier: gold}}\n  template:\n    metadata: {{name: 'duck-{{{{.clusterName}}}}', labels: {{team: red, tier: '{{{{.values.tier}}}}'}}, annotations: {{note: '{annotation}', reason: '{{{{.reason}}}}'}}}}\n    spec:\n      project: default\n      source: {{repoURL: {url}, targetRevision: main, path: duck}}\n      destination: {{server: '{{{{.server}}}}', namespace: duck}}\n      syncPolicy: {{automated: {{}}, syncOptions: [CreateNamespace=true]}}\n",
            url = fleet.git.url()
        )
    };
    fleet.apply(&set("one")).await?;
    let first = wait_synced_healthy(&fleet, "duck-cluster-001").await?;
    ensure!(
        first
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("reason"))
            .map(String::as_str)
            == Some("placed"),
        "the decision's own fields are parameters: {:?}",
        first.metadata.annotations
    );
    ensure!(
        !exists(&fleet, "duck-not-a-cluster").await?,
        "a decision naming no known cluster generates nothing"
    );
    // A new decision rolls out; a dropped one is deleted.
    apply_decision(&["cluster-001", "cluster-002"]).await?;
    wait_synced_healthy(&fleet, "duck-cluster-002").await?;

    // Someone pins the revision and relabels the team on the live Application: both are kept
    // through the next update of the set (ignoreApplicationDifferences, preservedFields).
    apps(&fleet)
        .patch(
            "duck-cluster-001",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "blue"}},
                                 "spec": {"source": {"targetRevision": "HEAD"}}})),
        )
        .await?;
    fleet.apply(&set("two")).await?;
    eventually(
        "the set's update applied",
        Duration::from_secs(30),
        || async {
            let a = apps(&fleet).get("duck-cluster-001").await?;
            Ok((a
                .metadata
                .annotations
                .as_ref()
                .and_then(|x| x.get("note"))
                .map(String::as_str)
                == Some("two"))
            .then_some(a))
        },
    )
    .await
    .and_then(|a| {
        ensure!(
            a.data["spec"]["source"]["targetRevision"] == "HEAD",
            "an ignored difference is not reverted: {}",
            a.data["spec"]["source"]
        );
        let labels = a.metadata.labels.unwrap_or_default();
        ensure!(
            labels.get("team").map(String::as_str) == Some("blue")
                && labels.get("tier").map(String::as_str) == Some("gold"),
            "preserved label kept, values rendered: {labels:?}"
        );
        Ok(())
    })?;
    let other = apps(&fleet).get("duck-cluster-002").await?;
    ensure!(
        other.data["spec"]["source"]["targetRevision"] == "main",
        "only the edited app keeps its own revision"
    );

    apply_decision(&["cluster-001"]).await?;
    eventually(
        "dropped decision deleted",
        Duration::from_secs(30),
        || async { Ok((!exists(&fleet, "duck-cluster-002").await?).then_some(())) },
    )
    .await?;
    // A ConfigMap without matchKey would make Argo CD generate nothing (and delete every
    // Application); here it is an error that deletes nothing.
    fleet.apply(&cm("")).await?;
    eventually("matchKey refused", Duration::from_secs(30), || async {
        Ok(condition(&fleet, "placed", "ErrorOccurred")
            .await?
            .filter(|(s, m)| s == "True" && m.contains("matchKey"))
            .map(|_| ()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        exists(&fleet, "duck-cluster-001").await?,
        "nothing deleted on error"
    );

    // Events on the set, as Argo CD records them.
    eventually("events recorded", Duration::from_secs(20), || async {
        let ev = set_events(&fleet, "placed").await?;
        let has = |t: &str, r: &str, note: &str| {
            ev.iter()
                .any(|(ty, re, no)| ty == t && re == r && no.contains(note))
        };
        Ok((has("Normal", "created", "duck-cluster-002")
            && has("Normal", "updated", "duck-cluster-001")
            && has("Normal", "Deleted", "duck-cluster-002")
            && has("Warning", "ErrorOccurred", "matchKey"))
        .then_some(()))
    })
    .await?;
    let warnings = set_events(&fleet, "placed")
        .await?
        .into_iter()
        .filter(|(t, _, _)| t == "Warning")
        .count();
    ensure!(
        warnings == 1,
        "one Warning per new error, not per retry: {warnings}"
    );
    Ok(())
}
