//! `flotilla admin import` and `flotilla admin settings validate` through the built `flotilla`
//! binary: files from tests/fixtures/admin and a temp dir (honoured, mapped, not needed and
//! refused rows; unsafe findings exit 1; a malformed file is a clear error; Secret values never
//! shown), the key table against docs/argocd-config-keys.md, and the live objects of a kubesim
//! control plane, including the restore withheld while something is unsafe.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::fleet::{apply_yaml, client_for, process};
use flotilla_loadtest::kubesim::{KubeSim, SimConfig};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

const NS: &str = "argocd";
/// The Secret values of tests/fixtures/admin/clean/secrets.yaml.
const FIXTURE_SECRETS: [&str; 4] = [
    "fixture-password-1d9a",
    "fixture-key-material-5b2f",
    "fixture-token-7c3e",
    "Zml4dHVyZS1jYS1kYXRh",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/admin")
}

/// `flotilla <args>` with no inherited settings: (exit code, stdout, stderr).
fn flotilla(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(process::binary("flotilla")?)
        .args(args)
        .env_remove("FLOTILLA_OUTPUT")
        .env_remove("FLOTILLA_NAMESPACE")
        .env_remove("FLOTILLA_KUBECONFIG")
        .env_remove("FLOTILLA_KUBE_CONTEXT")
        .output()
        .context("running flotilla")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The report's rows from `-o json` output.
fn findings(stdout: &str) -> Result<Vec<Value>> {
    let v: Value = serde_json::from_str(stdout).with_context(|| format!("JSON: {stdout}"))?;
    Ok(v["findings"].as_array().cloned().unwrap_or_default())
}

fn row<'a>(rows: &'a [Value], source: &str, key: &str) -> Result<&'a Value> {
    rows.iter()
        .find(|r| r["source"] == source && r["key"] == key)
        .with_context(|| format!("no row {source} {key} in {rows:#?}"))
}

fn treatment(rows: &[Value], source: &str, key: &str) -> Result<(String, bool)> {
    let r = row(rows, source, key)?;
    Ok((
        r["treatment"].as_str().unwrap_or_default().to_string(),
        r["unsafe"] == true,
    ))
}

fn no_secret_values(texts: &[&str], secrets: &[&str]) -> Result<()> {
    for t in texts {
        for s in secrets {
            ensure!(!t.contains(s), "a Secret value ({s}) was printed:\n{t}");
        }
    }
    Ok(())
}

#[test]
fn a_clean_config_is_honoured_mapped_or_not_needed_and_exits_0() -> Result<()> {
    let dir = fixtures().join("clean");
    let dir = dir.to_str().context("path")?;
    let (code, out, err) = flotilla(&["admin", "import", "-f", dir, "-o", "json"])?;
    ensure!(code == 0, "exit {code}:\n{out}\n{err}");
    let rows = findings(&out)?;
    for (source, key, want) in [
        ("argocd-cm", "url", "honoured"),
        (
            "argocd-cm",
            "application.resourceTrackingMethod",
            "honoured",
        ),
        ("argocd-cm", "resource.exclusions", "honoured"),
        (
            "argocd-cm",
            "resource.customizations.health.example.com_Widget",
            "honoured",
        ),
        ("argocd-cm", "timeout.reconciliation", "mapped"),
        ("argocd-cm", "accounts.alice", "mapped"),
        ("argocd-cm", "ui.bannercontent", "not needed"),
        (
            "argocd-cmd-params-cm",
            "reposerver.parallelism.limit",
            "mapped",
        ),
        (
            "argocd-cmd-params-cm",
            "controller.sharding.algorithm",
            "not needed",
        ),
        (
            "argocd-cmd-params-cm",
            "applicationsetcontroller.policy",
            "honoured",
        ),
        ("argocd-rbac-cm", "policy.csv", "honoured"),
        ("argocd-ssh-known-hosts-cm", "ssh_known_hosts", "honoured"),
        ("repository Secret", "repo-private", "honoured"),
        ("repo-creds Secret", "creds-ssh", "honoured"),
        ("cluster Secret", "cluster-prod", "honoured"),
    ] {
        ensure!(
            treatment(&rows, source, key)? == (want.to_string(), false),
            "{source} {key}: {:?}, not {want}",
            row(&rows, source, key)?
        );
    }
    let p = row(
        &rows,
        "argocd-cmd-params-cm",
        "reposerver.parallelism.limit",
    )?;
    ensure!(
        p["flotilla"] == "flotilla-repo-server --parallelism (FLOTILLA_REPO_PARALLELISM)"
            && p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("(FLOTILLA_REPO_PARALLELISM) 4.")),
        "{p}"
    );
    ensure!(
        row(&rows, "argocd-cm", "timeout.reconciliation")?["detail"]
            .as_str()
            .is_some_and(|d| d.contains("--refresh-seconds (FLOTILLA_REFRESH_SECONDS) 120.")),
        "2m → 120 s"
    );
    let summary: Value = serde_json::from_str(&out)?;
    ensure!(summary["summary"]["refused"] == 0 && summary["summary"]["unsafe"] == 0);
    // The same in the table and YAML, and offline validation agrees.
    let (code, table, terr) = flotilla(&["admin", "import", "-f", dir])?;
    ensure!(code == 0, "{table}\n{terr}");
    ensure!(
        table.starts_with("SOURCE ") && table.contains("0 refused (0 unsafe)"),
        "{table}"
    );
    let (_, yaml, yerr) = flotilla(&["admin", "import", "-f", dir, "-o", "yaml"])?;
    let (code, validated, verr) = flotilla(&["admin", "settings", "validate", dir])?;
    ensure!(code == 0, "validate: {validated}\n{verr}");
    no_secret_values(
        &[&out, &err, &table, &terr, &yaml, &yerr, &validated, &verr],
        &FIXTURE_SECRETS,
    )
}

#[test]
fn refused_features_fail_validation_but_not_import() -> Result<()> {
    let dir = fixtures().join("refused");
    let dir = dir.to_str().context("path")?;
    let (code, out, err) = flotilla(&["admin", "import", "-f", dir, "-o", "json"])?;
    ensure!(code == 0, "refused but safe: exit {code}\n{out}\n{err}");
    let rows = findings(&out)?;
    for key in ["exec.enabled", "statusbadge.enabled", "dex.config"] {
        ensure!(treatment(&rows, "argocd-cm", key)? == ("refused".into(), false));
    }
    let (code, out, err) = flotilla(&["admin", "settings", "validate", dir])?;
    ensure!(
        code == 1,
        "validate exits 1 on refused: {code}\n{out}\n{err}"
    );
    ensure!(
        out.contains("refused") && err.contains("3 refused (0 unsafe)"),
        "{out}\n{err}"
    );
    Ok(())
}

#[test]
fn unsafe_findings_exit_1_and_name_what_and_why() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("config.yaml"),
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm}
data:
  application.resourceTrackingMethod: annotation
  resource.compareoptions: "ignoreResourceStatusField: sometimes"
  frobnicate.everything: "true"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-rbac-cm}
data:
  policy.csv: |
    p, role:x, applications, get, */*, allow
    p, role:x, applications, sync
---
apiVersion: v1
kind: Secret
metadata:
  name: cluster-odd
  labels: {argocd.argoproj.io/secret-type: cluster}
stringData:
  server: https://odd.example.com
  config: '{"bearerToken": "odd-token-4f8a2c", "impersonate": {"user": "root"}}'
---
apiVersion: v1
kind: Secret
metadata:
  name: repo-gcp
  labels: {argocd.argoproj.io/secret-type: repository}
stringData:
  url: https://source.developers.google.com/p/x/r/y
  gcpServiceAccountKey: '{"private_key": "gcp-private-9e1d"}'
"#,
    )?;
    let path = dir.path().to_str().context("path")?;
    let (code, out, err) = flotilla(&["admin", "import", "-f", path, "-o", "json"])?;
    ensure!(code == 1, "unsafe exits 1: {code}\n{out}\n{err}");
    ensure!(err.contains("unsafe finding"), "{err}");
    let rows = findings(&out)?;
    let refused_unsafe = ("refused".to_string(), true);
    for (source, key) in [
        ("argocd-cm", "resource.compareoptions"),
        ("argocd-cm", "frobnicate.everything"),
        ("argocd-rbac-cm", "policy.csv"),
        ("argocd-rbac-cm", "policy.csv line 2"),
        ("cluster Secret", "cluster-odd"),
        ("repository Secret", "repo-gcp"),
    ] {
        ensure!(
            treatment(&rows, source, key)? == refused_unsafe,
            "{source} {key}: {}",
            row(&rows, source, key)?
        );
    }
    let cluster = row(&rows, "cluster Secret", "cluster-odd")?["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(
        cluster.contains("\"impersonate\"")
            && cluster.contains("not part of Argo CD's cluster config"),
        "the controller's refusal, by field: {cluster}"
    );
    // Only the cluster Secret: still exit 1 (the brief's case on its own).
    let only = tempfile::tempdir()?;
    let text = std::fs::read_to_string(dir.path().join("config.yaml"))?;
    let cluster_doc = text
        .split("\n---\n")
        .find(|d| d.contains("cluster-odd"))
        .context("doc")?;
    std::fs::write(only.path().join("cluster.yaml"), cluster_doc)?;
    let (code, table, terr) =
        flotilla(&["admin", "import", "-f", only.path().to_str().context("p")?])?;
    ensure!(code == 1, "{table}\n{terr}");
    ensure!(table.contains("refused (unsafe)"), "{table}");
    let (vcode, vout, verr) = flotilla(&["admin", "settings", "validate", path])?;
    ensure!(vcode == 1, "{vout}\n{verr}");
    no_secret_values(
        &[&out, &err, &table, &terr, &vout, &verr],
        &["odd-token-4f8a2c", "gcp-private-9e1d"],
    )
}

#[test]
fn malformed_input_is_a_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("broken.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n  url: https://x\n   timeout.reconciliation: 2m\n",
    )?;
    let (code, out, err) = flotilla(&["admin", "import", "-f", bad.to_str().context("p")?])?;
    ensure!(code == 2, "exit {code}\n{out}\n{err}");
    ensure!(
        err.contains("broken.yaml: document 1: not valid YAML") && err.contains("line 7"),
        "{err}"
    );
    ensure!(out.is_empty(), "nothing printed on stdout: {out}");
    let (code, _, err) = flotilla(&["admin", "settings", "validate", bad.to_str().context("p")?])?;
    ensure!(code == 2 && err.contains("not valid YAML"), "{err}");
    std::fs::write(&bad, "just: a map\n")?;
    let (code, _, err) = flotilla(&["admin", "settings", "validate", bad.to_str().context("p")?])?;
    ensure!(code == 2 && err.contains("no kind"), "{err}");
    let (code, _, err) = flotilla(&[
        "admin",
        "settings",
        "validate",
        dir.path().join("absent").to_str().context("p")?,
    ])?;
    ensure!(
        code == 1 && err.contains("absent"),
        "missing path: {code} {err}"
    );
    Ok(())
}

/// The doc's generated tables hold exactly the keys and treatments `--list-keys` prints.
#[test]
fn the_doc_lists_every_key_with_the_commands_treatment() -> Result<()> {
    let (code, out, err) = flotilla(&["admin", "import", "--list-keys", "-o", "json"])?;
    ensure!(code == 0, "{err}");
    let keys: Vec<Value> = serde_json::from_str(&out)?;
    let mut from_cmd = std::collections::BTreeSet::new();
    for k in &keys {
        let mut t = k["treatment"].as_str().unwrap_or_default().to_string();
        if k["unsafe"] == true {
            t.push_str(" (unsafe)");
        }
        from_cmd.insert((
            k["source"].as_str().unwrap_or_default().to_string(),
            k["key"].as_str().unwrap_or_default().to_string(),
            t,
        ));
    }
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/argocd-config-keys.md"),
    )?;
    let start = doc
        .find("<!-- BEGIN GENERATED")
        .context("the doc's generated part")?;
    let end = doc.find("<!-- END GENERATED").context("its end")?;
    let mut from_doc = std::collections::BTreeSet::new();
    let mut source = String::new();
    for line in doc[start..end].lines() {
        if let Some(s) = line.strip_prefix("### `") {
            source = s.split('`').next().unwrap_or_default().to_string();
            continue;
        }
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = rest.split(" | ").collect();
        let key = cells[0].trim_end_matches('`').to_string();
        let treatment = cells
            .get(1)
            .and_then(|t| t.split(';').next())
            .unwrap_or_default()
            .to_string();
        from_doc.insert((source.clone(), key, treatment));
    }
    ensure!(keys.len() > 200, "{} keys", keys.len());
    let missing: Vec<_> = from_cmd.difference(&from_doc).collect();
    let extra: Vec<_> = from_doc.difference(&from_cmd).collect();
    ensure!(
        missing.is_empty() && extra.is_empty(),
        "docs/argocd-config-keys.md disagrees with `--list-keys`:\nnot in the doc: {missing:#?}\nonly in the doc: {extra:#?}"
    );
    Ok(())
}

async fn create_cm(api: &Api<ConfigMap>, name: &str, data: Value) -> Result<()> {
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}, "data": data}))?;
    api.create(&PostParams::default(), &cm).await?;
    Ok(())
}

/// Without -f, the live objects of --namespace: kubesim's seeded cluster Secrets, ConfigMaps
/// and a repository Secret made here; with -f and Applications in the files, their restore
/// is withheld while something is unsafe unless --force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_objects_of_a_kubesim_control_plane() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let controller = process::binary("flotilla-controller")?;
    let bin = process::binary("flotilla")?;
    let sim = KubeSim::start(SimConfig {
        clusters: 2,
        tls: true,
        ..Default::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let ctx = sim.control_plane().name.clone();
    let client = client_for(&kubeconfig, &ctx).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    create_cm(
        &cms,
        "argocd-cm",
        json!({"url": "https://cd.example.com", "application.resourceTrackingMethod": "annotation",
               "resource.exclusions": "- apiGroups: [cilium.io]\n"}),
    )
    .await?;
    create_cm(
        &cms,
        "argocd-cmd-params-cm",
        json!({"controller.status.processors": "30"}),
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let repo: Secret = serde_json::from_value(json!({
        "metadata": {"name": "repo-live", "labels": {"argocd.argoproj.io/secret-type": "repository"}},
        "stringData": {"url": "https://git.example.com/live.git", "password": "live-password-6a2b", "username": "bot"}}))?;
    secrets.create(&PostParams::default(), &repo).await?;
    // A Secret of another type is not read.
    let other: Secret = serde_json::from_value(json!({
        "metadata": {"name": "unrelated"}, "stringData": {"token": "unrelated-token-3c1d"}}))?;
    secrets.create(&PostParams::default(), &other).await?;

    let kc = kubeconfig.to_str().context("path")?;
    let run = |args: &[&str]| -> Result<(i32, String, String)> {
        let out = Command::new(&bin)
            .args(["admin", "--kubeconfig", kc, "--context", &ctx])
            .args(args)
            .env_remove("FLOTILLA_OUTPUT")
            .env_remove("FLOTILLA_NAMESPACE")
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let (code, out, err) = run(&["import", "-o", "json"])?;
    ensure!(code == 0, "exit {code}\n{out}\n{err}");
    let rows = findings(&out)?;
    for c in sim.clusters() {
        let name = format!("cluster-{}", c.name);
        ensure!(treatment(&rows, "cluster Secret", &name)? == ("honoured".into(), false));
        ensure!(
            row(&rows, "cluster Secret", &name)?["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&c.url()) && d.contains("bearer token")),
            "{name}"
        );
    }
    ensure!(treatment(&rows, "repository Secret", "repo-live")? == ("honoured".into(), false));
    ensure!(treatment(&rows, "argocd-cm", "resource.exclusions")? == ("honoured".into(), false));
    ensure!(
        treatment(
            &rows,
            "argocd-cmd-params-cm",
            "controller.status.processors"
        )? == ("mapped".into(), false)
    );
    ensure!(
        !out.contains("unrelated"),
        "only labelled Secrets are read: {out}"
    );
    ensure!(
        err.contains("argocd-rbac-cm: not found"),
        "absent ConfigMaps are noted: {err}"
    );
    let mut secret_values: Vec<String> = sim.clusters().iter().map(|c| c.token.clone()).collect();
    secret_values.push("live-password-6a2b".into());
    secret_values.push("unrelated-token-3c1d".into());
    let refs: Vec<&str> = secret_values.iter().map(String::as_str).collect();
    let (tcode, table, terr) = run(&["import"])?;
    ensure!(tcode == 0, "{table}\n{terr}");
    no_secret_values(&[&out, &err, &table, &terr], &refs)?;

    // Something unsafe in the live config: exit 1.
    cms.patch(
        "argocd-cm",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"data": {"frobnicate": "1"}})),
    )
    .await?;
    let (code, out, err) = run(&["import", "-o", "json"])?;
    ensure!(code == 1, "{out}\n{err}");
    ensure!(treatment(&findings(&out)?, "argocd-cm", "frobnicate")? == ("refused".into(), true));

    // Files with an unsafe setting and an Application: dry run, withheld, forced.
    let crds = Command::new(&controller).arg("--print-crds").output()?;
    ensure!(crds.status.success(), "--print-crds");
    apply_yaml(&client, &String::from_utf8_lossy(&crds.stdout), "test").await?;
    let file = dir.path().join("backup.yaml");
    std::fs::write(
        &file,
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm}
data: {kustomize.buildOptions: --enable-helm, application.resourceTrackingMethod: annotation}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web, namespace: argocd}
spec:
  project: default
  source: {repoURL: "https://git.example.com/live.git", path: web, targetRevision: main}
  destination: {server: "https://kubernetes.default.svc", namespace: web}
"#,
    )?;
    let f = file.to_str().context("path")?;
    let apps = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
            "applications",
        ),
    );
    let (code, out, err) = run(&["import", "-f", f])?;
    ensure!(code == 1, "unsafe: exit 1 even for a dry run\n{out}\n{err}");
    ensure!(
        out.contains("Restore (dry run):") && out.contains("Application") && out.contains("create"),
        "{out}"
    );
    ensure!(
        apps.get_opt("web").await?.is_none(),
        "a dry run creates nothing"
    );
    let (code, out, err) = run(&["import", "-f", f, "--apply"])?;
    ensure!(code == 1 && err.contains("not restored"), "{out}\n{err}");
    ensure!(!out.contains("Restore ("), "{out}");
    ensure!(apps.get_opt("web").await?.is_none(), "withheld");
    let (code, out, err) = run(&["import", "-f", f, "--apply", "--force"])?;
    ensure!(code == 1, "still unsafe: {out}\n{err}");
    ensure!(out.contains("Restore (applied):"), "{out}");
    ensure!(apps.get_opt("web").await?.is_some(), "forced restore");
    Ok(())
}
