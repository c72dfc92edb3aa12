//! ApplicationSets end to end: Applications generated (list and cluster generators, both
//! template modes), owned by the set, synced by the controller, deleted when no longer
//! generated as the policy allows; a generator error or an unsupported field deletes nothing
//! and says so in the set's conditions; an Application the set does not own is left alone.

use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::{NS, app, config_map, wait_synced_healthy};
use flotilla_tests::eventually;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;

fn sets(fleet: &Fleet) -> Api<DynamicObject> {
    Api::namespaced_with(
        fleet.control().clone(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "ApplicationSet"),
            "applicationsets",
        ),
    )
}

fn apps(fleet: &Fleet) -> Api<DynamicObject> {
    Api::namespaced_with(
        fleet.control().clone(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
            "applications",
        ),
    )
}

/// The set's condition `kind`: (status, message).
async fn condition(fleet: &Fleet, set: &str, kind: &str) -> Result<Option<(String, String)>> {
    let s = sets(fleet).get(set).await?;
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
        "  generators:\n  - pullRequest:\n      github: {owner: o, repo: r}\n",
    );
    fleet.apply(&broken).await?;
    eventually("pullRequest refused", Duration::from_secs(20), || async {
        Ok(condition(&fleet, "web", "ErrorOccurred")
            .await?
            .filter(|(s, m)| s == "True" && m.contains("pullRequest"))
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
    let fleet = Fleet::start(FleetConfig::default()).await?;
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
