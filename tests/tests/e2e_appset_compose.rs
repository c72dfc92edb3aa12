//! ApplicationSets end to end, composed: a `matrix` of the clusters generator and Git
//! directories (following Git as directories come and go), a `merge` overriding one cluster's
//! parameters by key, and `templatePatch` with a per-generator `template` (plus Sprig's
//! `normalize`, `upper`, `trunc`). Real controller and repo-server processes, real Git, kubesim
//! clusters; every assertion names the generated Applications and their fields.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, ensure};
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::{NS, config_map, live_value, wait_synced_healthy};
use flotilla_tests::eventually;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::json;

use flotilla_tests::e2e::{application_sets as sets, applications as apps};

/// The Applications owned by the ApplicationSet `set`, sorted by name.
async fn owned(fleet: &Fleet, set: &str) -> Result<Vec<DynamicObject>> {
    let mut list: Vec<DynamicObject> = apps(fleet)
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|a| {
            a.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "ApplicationSet" && o.name == set)
        })
        .collect();
    list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(list)
}

/// Waits until the set owns exactly the Applications `want`; returns them sorted by name. On
/// timeout the error names what the set owned last and its conditions.
async fn wait_owned(
    fleet: &Fleet,
    set: &str,
    want: &[String],
    timeout: Duration,
) -> Result<Vec<DynamicObject>> {
    let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
    let last = std::sync::Mutex::new(String::new());
    let res = eventually(&format!("{set} owning {want:?}"), timeout, || async {
        let list = owned(fleet, set).await?;
        let names: BTreeSet<&str> = list
            .iter()
            .filter_map(|a| a.metadata.name.as_deref())
            .collect();
        if let Ok(mut l) = last.lock() {
            *l = format!("{names:?}");
        }
        Ok((names == want).then_some(list.clone()))
    })
    .await;
    match res {
        Ok(v) => Ok(v),
        Err(e) => {
            let conditions = sets(fleet)
                .get(set)
                .await
                .map(|s| s.data["status"]["conditions"].to_string())
                .unwrap_or_default();
            let last = last.lock().map(|l| l.clone()).unwrap_or_default();
            Err(e.context(format!("set {set} owned {last}; conditions {conditions}")))
        }
    }
}

fn find<'a>(list: &'a [DynamicObject], name: &str) -> Result<&'a DynamicObject> {
    list.iter()
        .find(|a| a.metadata.name.as_deref() == Some(name))
        .ok_or_else(|| anyhow::anyhow!("no Application {name}"))
}

fn label<'a>(a: &'a DynamicObject, key: &str) -> Option<&'a str> {
    a.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

fn annotation<'a>(a: &'a DynamicObject, key: &str) -> Option<&'a str> {
    a.metadata
        .annotations
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// Waits for `data.k` of ConfigMap `ns/name` in `cluster` to be `want` (`None`: absent).
async fn wait_live(
    fleet: &Fleet,
    cluster: &str,
    ns: &str,
    name: &str,
    want: Option<&str>,
) -> Result<()> {
    eventually(
        &format!("{cluster}: {ns}/{name} = {want:?}"),
        Duration::from_secs(30),
        || async {
            Ok((live_value(fleet, cluster, ns, name).await?.as_deref() == want).then_some(()))
        },
    )
    .await
}

/// Labels the cluster Secret of kubesim cluster `cluster` (Secret `cluster-<cluster>`).
async fn label_cluster(fleet: &Fleet, cluster: &str, key: &str, value: &str) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(fleet.control().clone(), NS);
    secrets
        .patch(
            &format!("cluster-{cluster}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_of_clusters_and_git_directories() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        clusters: 3,
        ..Default::default()
    })
    .await?;
    // Two of the three clusters are selected by label.
    label_cluster(&fleet, "cluster-001", "fleet", "blue").await?;
    label_cluster(&fleet, "cluster-002", "fleet", "blue").await?;
    label_cluster(&fleet, "cluster-003", "fleet", "green").await?;
    fleet.git.commit_files(
        &[
            ("apps/a/cm.yaml", &config_map("a", "va")),
            ("apps/b/cm.yaml", &config_map("b", "vb")),
            ("apps/skip/cm.yaml", &config_map("skip", "vs")),
            ("other/x/cm.yaml", &config_map("x", "vx")),
        ],
        "layout",
    )?;
    let set = r#"apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: mx, namespace: argocd}
spec:
  generators:
  - matrix:
      generators:
      - clusters:
          selector: {matchLabels: {fleet: blue}}
      - git:
          repoURL: @URL@
          revision: main
          requeueAfterSeconds: 5
          directories:
          - path: 'apps/*'
          - path: apps/skip
            exclude: true
  template:
    metadata:
      name: '{{path.basename}}-{{name}}'
      labels: {cluster: '{{name}}', dir: '{{path.basename}}', first: '{{path[0]}}'}
    spec:
      project: default
      source: {repoURL: @URL@, targetRevision: main, path: '{{path}}'}
      destination: {server: '{{server}}', namespace: 'mx-{{path.basenameNormalized}}'}
      syncPolicy: {automated: {prune: true}, syncOptions: [CreateNamespace=true]}
"#
    .replace("@URL@", &fleet.git.url());
    fleet.apply(&set).await?;

    let names = |dirs: &[&str]| -> Vec<String> {
        dirs.iter()
            .flat_map(|d| ["cluster-001", "cluster-002"].map(|c| format!("{d}-{c}")))
            .collect()
    };
    // 2 clusters × 2 directories (apps/skip excluded, other/ not matched, cluster-003 not
    // selected).
    let list = wait_owned(&fleet, "mx", &names(&["a", "b"]), Duration::from_secs(40)).await?;
    for d in ["a", "b"] {
        for c in ["cluster-001", "cluster-002"] {
            let a = find(&list, &format!("{d}-{c}"))?;
            let spec = &a.data["spec"];
            ensure!(
                spec["destination"]["server"] == json!(fleet.server(c)?)
                    && spec["destination"]["namespace"] == json!(format!("mx-{d}"))
                    && spec["source"]["path"] == json!(format!("apps/{d}"))
                    && spec["source"]["repoURL"] == json!(fleet.git.url()),
                "{d}-{c}: {spec}"
            );
            ensure!(
                label(a, "cluster") == Some(c)
                    && label(a, "dir") == Some(d)
                    && label(a, "first") == Some("apps"),
                "{d}-{c}: {:?}",
                a.metadata.labels
            );
        }
    }
    // They sync, each to its own cluster.
    wait_synced_healthy(&fleet, "a-cluster-001").await?;
    wait_synced_healthy(&fleet, "b-cluster-002").await?;
    ensure!(
        live_value(&fleet, "cluster-001", "mx-a", "a")
            .await?
            .as_deref()
            == Some("va")
    );
    ensure!(
        live_value(&fleet, "cluster-002", "mx-b", "b")
            .await?
            .as_deref()
            == Some("vb")
    );
    wait_live(&fleet, "cluster-002", "mx-a", "a", Some("va")).await?;
    ensure!(
        live_value(&fleet, "cluster-003", "mx-a", "a")
            .await?
            .is_none(),
        "the unselected cluster gets nothing"
    );

    // A new directory in Git: a new pair, at the git generator's requeue.
    fleet
        .git
        .commit_files(&[("apps/c/cm.yaml", &config_map("c", "vc"))], "add c")?;
    wait_owned(
        &fleet,
        "mx",
        &names(&["a", "b", "c"]),
        Duration::from_secs(30),
    )
    .await?;
    // A directory removed: its pair is deleted (and, by the resources finalizer, what it
    // deployed).
    fleet.git.remove("apps/b")?;
    fleet.git.commit("remove b")?;
    wait_owned(&fleet, "mx", &names(&["a", "c"]), Duration::from_secs(30)).await?;
    ensure!(
        apps(&fleet).get_opt("b-cluster-001").await?.is_none()
            && apps(&fleet).get_opt("b-cluster-002").await?.is_none(),
        "b's apps are gone"
    );
    wait_live(&fleet, "cluster-002", "mx-b", "b", None).await?;
    // The new pair deploys: an Application generated from a commit must be able to read that
    // commit (in Argo CD the generator and the app resolve `main` through the same repo-server
    // revision cache, so they never disagree on which commit it is).
    wait_synced_healthy(&fleet, "c-cluster-002").await?;
    ensure!(
        live_value(&fleet, "cluster-002", "mx-c", "c")
            .await?
            .as_deref()
            == Some("vc")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_overrides_parameters_by_key() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet.git.commit_files(
        &[
            ("colors/blue/cm.yaml", &config_map("color", "blue")),
            ("colors/red/cm.yaml", &config_map("color", "red")),
        ],
        "colors",
    )?;
    // Base: every Secret cluster, blue at main. Override by server: cluster-002 is red. An
    // override matching no base set is discarded (were it rendered, `.name` would be missing
    // and missingkey=error would fail the set).
    let set = r#"apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: mg, namespace: argocd}
spec:
  goTemplate: true
  goTemplateOptions: ["missingkey=error"]
  generators:
  - merge:
      mergeKeys: [server]
      generators:
      - clusters:
          selector: {matchLabels: {argocd.argoproj.io/secret-type: cluster}}
          values: {color: blue, revision: main}
      - list:
          elements:
          - server: '@SERVER2@'
            values: {color: red}
          - server: https://nowhere.invalid
            values: {color: green}
  template:
    metadata:
      name: 'mg-{{ .name }}'
      labels: {color: '{{ .values.color }}', revision: '{{ .values.revision }}'}
    spec:
      project: default
      source: {repoURL: @URL@, targetRevision: '{{ .values.revision }}', path: 'colors/{{ .values.color }}'}
      destination: {server: '{{ .server }}', namespace: 'mg-{{ .name }}'}
      syncPolicy: {automated: {prune: true}, syncOptions: [CreateNamespace=true]}
"#
    .replace("@URL@", &fleet.git.url())
    .replace("@SERVER2@", &fleet.server("cluster-002")?);
    fleet.apply(&set).await?;
    let want = ["mg-cluster-001".to_string(), "mg-cluster-002".to_string()];
    let list = wait_owned(&fleet, "mg", &want, Duration::from_secs(30)).await?;
    for (name, cluster, color) in [
        ("mg-cluster-001", "cluster-001", "blue"),
        ("mg-cluster-002", "cluster-002", "red"),
    ] {
        let a = find(&list, name)?;
        let spec = &a.data["spec"];
        ensure!(
            spec["source"]["path"] == json!(format!("colors/{color}"))
                && spec["source"]["targetRevision"] == "main"
                && spec["destination"]["server"] == json!(fleet.server(cluster)?)
                && spec["destination"]["namespace"] == json!(name),
            "{name}: {spec}"
        );
        // The override replaced values.color only: values.revision is kept (deep merge).
        ensure!(
            label(a, "color") == Some(color) && label(a, "revision") == Some("main"),
            "{name}: {:?}",
            a.metadata.labels
        );
    }
    for (name, cluster, color) in [
        ("mg-cluster-001", "cluster-001", "blue"),
        ("mg-cluster-002", "cluster-002", "red"),
    ] {
        wait_synced_healthy(&fleet, name).await?;
        ensure!(
            live_value(&fleet, cluster, name, "color").await?.as_deref() == Some(color),
            "{cluster}: {name}/color"
        );
    }
    let s = sets(&fleet).get("mg").await?;
    let error = s.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "ErrorOccurred" && c["status"] == "True")
        .cloned();
    ensure!(error.is_none(), "no error: {error:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_patch_and_per_generator_templates() -> Result<()> {
    let fleet = Fleet::start(FleetConfig::default()).await?;
    fleet
        .git
        .commit_files(&[("tp/cm.yaml", &config_map("tp", "patched"))], "tp")?;
    // The patch (a Go template) adds an annotation to every app and automated sync only where
    // the element asks; the second generator brings its own template (name, a label, the
    // cluster) merged over spec.template, and the patch applies to its apps as well.
    let set = r#"apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: tp, namespace: argocd}
spec:
  goTemplate: true
  generators:
  - list:
      elements:
      - {env: dev, svc: Web_Front.V2, autoSync: true, prune: true}
      - {env: qa, svc: Web_Front.V2, autoSync: false, prune: false}
  - list:
      elements:
      - {env: ops, svc: Ops_Tools, autoSync: true, prune: false}
      template:
        metadata:
          name: 'ops-{{ .svc | normalize }}'
          labels: {team: ops}
        spec:
          project: default
          destination: {name: cluster-002}
  template:
    metadata:
      name: '{{ .svc | normalize }}-{{ .env }}'
      labels: {env: '{{ .env }}'}
    spec:
      project: default
      source: {repoURL: @URL@, targetRevision: main, path: tp}
      destination: {name: cluster-001, namespace: 'tp-{{ .env }}'}
      syncPolicy: {syncOptions: [CreateNamespace=true]}
  templatePatch: |
    metadata:
      annotations:
        short-env: '{{ .env | upper | trunc 2 }}'
    {{- if .autoSync }}
    spec:
      syncPolicy:
        automated:
          prune: {{ .prune }}
    {{- end }}
"#
    .replace("@URL@", &fleet.git.url());
    fleet.apply(&set).await?;
    let want = [
        "ops-ops-tools".to_string(),
        "web-front.v2-dev".to_string(),
        "web-front.v2-qa".to_string(),
    ];
    let list = wait_owned(&fleet, "tp", &want, Duration::from_secs(30)).await?;
    let sync_options = |a: &DynamicObject| a.data["spec"]["syncPolicy"]["syncOptions"].clone();

    let dev = find(&list, "web-front.v2-dev")?;
    ensure!(
        dev.data["spec"]["syncPolicy"]["automated"]["prune"] == true,
        "patched automated sync: {}",
        dev.data["spec"]
    );
    ensure!(
        sync_options(dev) == json!(["CreateNamespace=true"]),
        "the patch merges into syncPolicy: {}",
        dev.data["spec"]
    );
    ensure!(
        annotation(dev, "short-env") == Some("DE") && label(dev, "env") == Some("dev"),
        "{:?} {:?}",
        dev.metadata.annotations,
        dev.metadata.labels
    );
    ensure!(
        dev.data["spec"]["destination"] == json!({"name": "cluster-001", "namespace": "tp-dev"}),
        "{}",
        dev.data["spec"]
    );

    let qa = find(&list, "web-front.v2-qa")?;
    ensure!(
        qa.data["spec"]["syncPolicy"]["automated"].is_null()
            && sync_options(qa) == json!(["CreateNamespace=true"]),
        "no automated sync where the patch's condition is false: {}",
        qa.data["spec"]
    );
    ensure!(annotation(qa, "short-env") == Some("QA"));

    // The per-generator template: its name, its label and cluster, the rest from spec.template.
    let ops = find(&list, "ops-ops-tools")?;
    let automated = &ops.data["spec"]["syncPolicy"]["automated"];
    ensure!(
        automated.is_object() && automated["prune"] != true,
        "automated without prune: {}",
        ops.data["spec"]
    );
    ensure!(
        ops.data["spec"]["destination"] == json!({"name": "cluster-002", "namespace": "tp-ops"})
            && ops.data["spec"]["source"]["path"] == "tp"
            && ops.data["spec"]["source"]["repoURL"] == json!(fleet.git.url())
            && ops.data["spec"]["project"] == "default"
            && sync_options(ops) == json!(["CreateNamespace=true"]),
        "{}",
        ops.data["spec"]
    );
    ensure!(
        label(ops, "team") == Some("ops")
            && label(ops, "env") == Some("ops")
            && annotation(ops, "short-env") == Some("OP"),
        "{:?} {:?}",
        ops.metadata.labels,
        ops.metadata.annotations
    );

    // The automated ones sync to their clusters; qa, not automated, is left alone.
    wait_synced_healthy(&fleet, "web-front.v2-dev").await?;
    wait_synced_healthy(&fleet, "ops-ops-tools").await?;
    ensure!(
        live_value(&fleet, "cluster-001", "tp-dev", "tp")
            .await?
            .as_deref()
            == Some("patched")
    );
    ensure!(
        live_value(&fleet, "cluster-002", "tp-ops", "tp")
            .await?
            .as_deref()
            == Some("patched")
    );
    let qa = apps(&fleet).get("web-front.v2-qa").await?;
    ensure!(
        qa.data["status"]["operationState"].is_null()
            && live_value(&fleet, "cluster-001", "tp-qa", "tp")
                .await?
                .is_none(),
        "qa is not synced: {}",
        qa.data["status"]
    );
    Ok(())
}
