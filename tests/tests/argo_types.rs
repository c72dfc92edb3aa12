//! The Argo CD dialect against an API server: Flotilla's derived CRDs are accepted, and the
//! Application and AppProject YAML people keep in Git applies unchanged and reads back typed.

use anyhow::{Context, Result, ensure};
use flotilla_controller::types::{AppProject, Application, application_crd};
use flotilla_tests::{Target, eventually};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::Value;

const MY_APP: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: my-app}
spec:
  project: default
  source: {repoURL: https://github.com/my-org/my-app.git, targetRevision: main, path: k8s/overlays/dev}
  destination: {server: https://kubernetes.default.svc, namespace: my-app-dev}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true]
operation:
  sync: {revision: HEAD}
"#;

const PROJECTS: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default}
spec:
  sourceRepos: ["*"]
  destinations: [{server: "*", namespace: "*"}]
  clusterResourceWhitelist: [{group: "*", kind: "*"}]
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: restricted}
spec:
  sourceRepos: ["https://github.com/my-org/*"]
  destinations: [{server: https://kubernetes.default.svc, namespace: "team-a-*"}]
  namespaceResourceWhitelist: [{group: apps, kind: Deployment}, {group: "", kind: ConfigMap}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_yaml_applies_unchanged_with_our_crds() -> Result<()> {
    let t = Target::new().await?;
    if !t.is_kubesim() {
        // On a real cluster the Argo CD CRDs may already be installed; leave them alone.
        return Ok(());
    }
    let crds = Api::<CustomResourceDefinition>::all(t.client.clone());
    for crd in [
        application_crd(),
        flotilla_controller::types::project::project_crd(),
    ] {
        let name = crd.metadata.name.clone().context("crd name")?;
        crds.patch(
            &name,
            &PatchParams::apply("flotilla").force(),
            &Patch::Apply(&crd),
        )
        .await?;
    }
    let ns = t.namespace("argo").await?;
    let apps: Api<Application> = Api::namespaced(t.client.clone(), &ns);
    eventually(
        "applications served",
        std::time::Duration::from_secs(30),
        || async { Ok(apps.list(&ListParams::default()).await.ok().map(|_| ())) },
    )
    .await?;
    let app: Value = serde_yaml::from_str(MY_APP)?;
    let created = apps
        .patch("my-app", &PatchParams::apply("user"), &Patch::Apply(&app))
        .await?;
    ensure!(
        created.operation.is_some(),
        "operation kept at the top level"
    );
    ensure!(
        created
            .spec
            .sync_policy
            .as_ref()
            .is_some_and(|p| p.option("CreateNamespace")),
        "{created:?}"
    );
    let projects: Api<AppProject> = Api::namespaced(t.client.clone(), &ns);
    for doc in serde_yaml::Deserializer::from_str(PROJECTS) {
        let v = serde::Deserialize::deserialize(doc).map(|v: Value| v)?;
        let name = v["metadata"]["name"].as_str().context("name")?.to_string();
        projects
            .patch(&name, &PatchParams::apply("user"), &Patch::Apply(&v))
            .await?;
    }
    let restricted = projects.get("restricted").await?;
    ensure!(
        restricted
            .spec
            .namespace_resource_whitelist
            .is_some_and(|w| w.len() == 2)
    );
    Ok(())
}
