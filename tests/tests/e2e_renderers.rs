//! Every source type end to end (Git → repo-server → controller → kubesim): a Helm chart from a
//! Git path with values files, inline values and parameters (rendered by a real Helm engine), a
//! chart from a Helm repository picked by a semver constraint, Jsonnet with ext vars and TLAs,
//! and a config-management plugin.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use flotilla_loadtest::fleet::static_http::StaticHttp;
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::*;
use sha2::{Digest, Sha256};

const CHART: &str = "apiVersion: v2\nname: web\nversion: 1.0.0\n";
const VALUES: &str = "color: blue\nreplicas: 1\n";
const TEMPLATE: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\n  namespace: {{ .Release.Namespace }}\ndata:\n  color: {{ .Values.color | quote }}\n  replicas: {{ .Values.replicas | quote }}\n  extra: {{ .Values.extra | default \"none\" | quote }}\n  chart: {{ .Chart.Version | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n  deployments: {{ .Capabilities.APIVersions.Has \"apps/v1/Deployment\" | quote }}\n";

fn require_helm() -> Result<()> {
    let found = std::env::var_os("FLOTILLA_HELM").is_some()
        || std::env::split_paths(&std::env::var("PATH").unwrap_or_default())
            .any(|d| d.join("helm").is_file());
    if !found {
        bail!(
            "no helm on PATH: run ./scripts/test.sh, which installs a helm shim on Helm's own engine"
        );
    }
    Ok(())
}

fn app(name: &str, source: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: argocd}}\nspec:\n  project: default\n  source:\n{source}\n  destination: {{name: cluster-001, namespace: {name}}}\n  syncPolicy:\n    automated: {{prune: true}}\n    syncOptions: [CreateNamespace=true]\n"
    )
}

async fn data(fleet: &Fleet, ns: &str, name: &str) -> Result<serde_json::Value> {
    let cm = live(fleet, "cluster-001", "v1", "ConfigMap", Some(ns), name)
        .await?
        .with_context(|| format!("ConfigMap {ns}/{name} missing"))?;
    Ok(cm["data"].clone())
}

/// A chart archive as `helm package` makes it: `web/Chart.yaml`, ... in a .tgz.
fn package(dir: &std::path::Path, version: &str) -> Result<Vec<u8>> {
    let src = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(src.join("web/templates"))?;
    std::fs::write(src.join("web/Chart.yaml"), CHART.replace("1.0.0", version))?;
    std::fs::write(src.join("web/values.yaml"), VALUES)?;
    std::fs::write(src.join("web/templates/cm.yaml"), TEMPLATE)?;
    let out = dir.join(format!("web-{version}.tgz"));
    let st = std::process::Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg("web")
        .status()?;
    ensure!(st.success(), "tar failed");
    Ok(std::fs::read(out)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_jsonnet_and_plugin_sources_sync() -> Result<()> {
    require_helm()?;
    let fleet = Fleet::start(FleetConfig {
        repo_server_args: vec![
            "--plugin".into(),
            // A command with `;` in it; the build environment includes the destination's
            // version and API versions and the source's target revision.
            "gen=D=$(echo \"$KUBE_API_VERSIONS\" | tr , '\\n' | grep -c '^apps/v1/Deployment$'); printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: generated}\\ndata: {color: %s, app: %s, kube: \"%s\", target: %s, deploy: \"%s\"}\\n' \"$ARGOCD_ENV_COLOR\" \"$ARGOCD_APP_NAME\" \"$KUBE_VERSION\" \"$ARGOCD_APP_SOURCE_TARGET_REVISION\" \"$D\"".into(),
        ],
        ..Default::default()
    })
    .await?;
    fleet.git.commit_files(
        &[
            ("charts/web/Chart.yaml", CHART),
            ("charts/web/values.yaml", VALUES),
            ("charts/web/values-prod.yaml", "color: green\n"),
            ("charts/web/templates/cm.yaml", TEMPLATE),
            (
                "jsonnet/lib/k.libsonnet",
                "{ cm(name, data):: {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: name}, data: data} }",
            ),
            (
                "jsonnet/app/main.jsonnet",
                "local k = import 'k.libsonnet';\nfunction(tier='none') [k.cm('from-jsonnet', {env: std.extVar('env'), tier: tier})]",
            ),
            ("plugin/README.md", "rendered by a plugin\n"),
        ],
        "sources",
    )?;

    // A Helm repository with two versions of the chart.
    let repo_dir = tempfile::tempdir()?;
    let mut index = String::from("apiVersion: v1\nentries:\n  web:\n");
    for v in ["1.0.0", "1.1.0"] {
        let tgz = package(repo_dir.path(), v)?;
        let digest = hex::encode(Sha256::digest(&tgz));
        index.push_str(&format!(
            "  - name: web\n    version: {v}\n    digest: {digest}\n    urls: [web-{v}.tgz]\n"
        ));
    }
    std::fs::write(repo_dir.path().join("index.yaml"), index)?;
    let helm_repo = StaticHttp::start(repo_dir.path(), None).await?;

    let git = fleet.git.url();
    fleet.apply(&app("helm-git", &format!(
        "    repoURL: {git}\n    targetRevision: main\n    path: charts/web\n    helm:\n      valueFiles: [values-prod.yaml]\n      valuesObject: {{extra: from-values-object}}\n      parameters:\n      - {{name: replicas, value: \"3\"}}"
    ))).await?;
    fleet
        .apply(&app(
            "helm-repo",
            &format!(
                "    repoURL: {}\n    chart: web\n    targetRevision: \"~1.1\"",
                helm_repo.url()
            ),
        ))
        .await?;
    fleet.apply(&app("jsonnet", &format!(
        "    repoURL: {git}\n    targetRevision: main\n    path: jsonnet/app\n    directory:\n      jsonnet:\n        extVars: [{{name: env, value: prod}}]\n        tlas: [{{name: tier, value: web}}]\n        libs: [jsonnet/lib]"
    ))).await?;
    fleet.apply(&app("plugin", &format!(
        "    repoURL: {git}\n    targetRevision: main\n    path: plugin\n    plugin:\n      name: gen\n      env: [{{name: COLOR, value: red}}]"
    ))).await?;

    for name in ["helm-git", "helm-repo", "jsonnet", "plugin"] {
        wait_app(&fleet, name, Duration::from_secs(60), "Synced", |a| {
            codes(a).0 == "Synced"
        })
        .await?;
    }
    let d = data(&fleet, "helm-git", "helm-git-settings").await?;
    ensure!(
        d["color"] == "green" && d["replicas"] == "3" && d["extra"] == "from-values-object",
        "values file, parameter and valuesObject applied: {d}"
    );
    // Helm saw the destination cluster (--kube-version, --api-versions from its discovery).
    ensure!(
        d["kube"] == "v1.32.0" && d["deployments"] == "true",
        "capabilities: {d}"
    );
    let a = app_named(&fleet, "helm-git").await?;
    ensure!(a.status.and_then(|s| s.source_type).as_deref() == Some("Helm"));

    let d = data(&fleet, "helm-repo", "helm-repo-settings").await?;
    ensure!(d["chart"] == "1.1.0", "~1.1 picked 1.1.0: {d}");
    let a = app_named(&fleet, "helm-repo").await?;
    ensure!(
        a.status
            .as_ref()
            .and_then(|s| s.sync.as_ref())
            .and_then(|s| s.revision.as_deref())
            == Some("1.1.0"),
        "the chart version is the revision"
    );

    let d = data(&fleet, "jsonnet", "from-jsonnet").await?;
    ensure!(d["env"] == "prod" && d["tier"] == "web", "{d}");
    let d = data(&fleet, "plugin", "generated").await?;
    ensure!(d["color"] == "red" && d["app"] == "plugin", "{d}");
    ensure!(
        d["kube"] == "1.32.0" && d["target"] == "main" && d["deploy"] == "1",
        "KUBE_VERSION, ARGOCD_APP_SOURCE_TARGET_REVISION, KUBE_API_VERSIONS: {d}"
    );

    // A chart version that does not exist is a clear condition.
    fleet
        .apply(&app(
            "helm-missing",
            &format!(
                "    repoURL: {}\n    chart: web\n    targetRevision: \"9.9.9\"",
                helm_repo.url()
            ),
        ))
        .await?;
    wait_app(
        &fleet,
        "helm-missing",
        Duration::from_secs(30),
        "condition",
        |a| {
            conditions(a)
                .iter()
                .any(|(t, m)| t == "ComparisonError" && m.contains("9.9.9"))
        },
    )
    .await?;
    Ok(())
}

async fn app_named(fleet: &Fleet, name: &str) -> Result<flotilla_controller::types::Application> {
    flotilla_tests::e2e::app(fleet, name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_dependencies_are_built_local_ones_offline_and_unreachable_ones_are_an_error()
-> Result<()> {
    require_helm()?;
    let fleet = Fleet::start(FleetConfig::default()).await?;
    let umbrella = "apiVersion: v2\nname: umbrella\nversion: 0.1.0\ndependencies:\n- name: web\n  version: 1.0.0\n  repository: file://../web\n";
    let remote = "apiVersion: v2\nname: remote\nversion: 0.1.0\ndependencies:\n- name: redis\n  version: 19.0.0\n  repository: https://charts.invalid.example/\n";
    let own = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-own\ndata: {k: v}\n";
    fleet.git.commit_files(
        &[
            ("charts/web/Chart.yaml", CHART),
            ("charts/web/values.yaml", VALUES),
            ("charts/web/templates/cm.yaml", TEMPLATE),
            ("charts/umbrella/Chart.yaml", umbrella),
            ("charts/umbrella/templates/own.yaml", own),
            ("charts/remote/Chart.yaml", remote),
            ("charts/remote/templates/own.yaml", own),
        ],
        "charts with dependencies",
    )?;
    let git = fleet.git.url();
    for (name, path) in [("umbrella", "charts/umbrella"), ("remote", "charts/remote")] {
        fleet
            .apply(&app(
                name,
                &format!(
                    "    repoURL: {git}\n    targetRevision: main\n    path: {path}\n    helm: {{}}"
                ),
            ))
            .await?;
    }
    wait_app(&fleet, "umbrella", Duration::from_secs(60), "Synced", |a| {
        codes(a).0 == "Synced"
    })
    .await?;
    // The chart's own object and its dependency's.
    data(&fleet, "umbrella", "umbrella-own").await?;
    let d = data(&fleet, "umbrella", "umbrella-settings").await?;
    ensure!(d["color"] == "blue", "{d}");
    // An unreachable dependency is a ComparisonError, never an empty (green) render.
    let a = wait_app(
        &fleet,
        "remote",
        Duration::from_secs(60),
        "ComparisonError",
        |a| {
            conditions(a)
                .iter()
                .any(|(t, m)| t == "ComparisonError" && m.contains("helm dependency build"))
        },
    )
    .await?;
    ensure!(codes(&a).0 != "Synced", "{:?}", codes(&a));
    ensure!(
        live(
            &fleet,
            "cluster-001",
            "v1",
            "ConfigMap",
            Some("remote"),
            "remote-own"
        )
        .await?
        .is_none(),
        "nothing applied from a partial chart"
    );
    Ok(())
}
