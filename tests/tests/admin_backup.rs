//! `flotilla admin export`, the restore of `flotilla admin import -f FILE --apply`, and
//! `flotilla admin shards`, through the built `flotilla` binary against kubesim: a backup keeps
//! specs, labels, annotations and finalizers and drops status, operation and server metadata;
//! a restore recreates the objects by server-side apply (a dry run writes nothing, a second
//! restore nothing either); `shards` lists a real fleet's replicas and their clusters, sees a
//! killed replica's Lease expire, and exits 1 once clusters are unowned.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use flotilla_loadtest::fleet::{Fleet, FleetConfig, apply_yaml, client_for, process};
use flotilla_loadtest::kubesim::{KubeSim, SimConfig};
use flotilla_tests::eventually;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{Value, json};

const NS: &str = "argocd";

/// `flotilla admin --kubeconfig K --context C <args>`: (exit code, stdout, stderr).
async fn admin(kubeconfig: &Path, context: &str, args: &[&str]) -> Result<(i32, String, String)> {
    let out = tokio::process::Command::new(process::binary("flotilla")?)
        .arg("admin")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--context")
        .arg(context)
        .args(args)
        .env_remove("FLOTILLA_OUTPUT")
        .env_remove("FLOTILLA_NAMESPACE")
        .env_remove("FLOTILLA_KUBECONFIG")
        .env_remove("FLOTILLA_KUBE_CONTEXT")
        .output()
        .await
        .context("running flotilla")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn docs(yaml: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for d in serde_yaml::Deserializer::from_str(yaml) {
        let v = Value::deserialize(d).context("parsing the export")?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn key(v: &Value) -> (String, String, String) {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

fn argo(client: &Client, kind: &str, ns: &str) -> Api<DynamicObject> {
    let plural = if kind == "AppProject" {
        "appprojects"
    } else {
        "applications"
    };
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind),
        plural,
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn get(client: &Client, kind: &str, ns: &str, name: &str) -> Result<Option<Value>> {
    Ok(argo(client, kind, ns)
        .get_opt(name)
        .await?
        .map(serde_json::to_value)
        .transpose()?)
}

/// kubesim with the CRDs the controller prints, and a kubeconfig for it.
async fn sim_with_crds(dir: &Path) -> Result<(KubeSim, Client, std::path::PathBuf)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Build (once) before anything runs in this runtime.
    let controller = process::binary("flotilla-controller")?;
    process::binary("flotilla")?;
    let sim = KubeSim::start(SimConfig {
        clusters: 1,
        tls: true,
        ..Default::default()
    })
    .await?;
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let client = client_for(&kubeconfig, &sim.control_plane().name).await?;
    let out = tokio::process::Command::new(controller)
        .arg("--print-crds")
        .output()
        .await?;
    ensure!(out.status.success(), "--print-crds failed");
    apply_yaml(&client, &String::from_utf8_lossy(&out.stdout), "test").await?;
    Ok((sim, client, kubeconfig))
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-apps}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: team
  namespace: argocd
  labels: {owner: team-a}
  annotations: {flotilla.dev/note: "backed up"}
spec:
  description: Team A
  sourceRepos: ["https://git.example/team/*"]
  destinations: [{server: "*", namespace: "team-*"}]
  clusterResourceWhitelist: [{group: "", kind: Namespace}]
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: web
  namespace: argocd
  labels: {team: a, tier: front}
  annotations: {flotilla.dev/note: keep me, notifications.argoproj.io/subscribe.on-sync.slack: team-a}
  finalizers: [resources-finalizer.argocd.argoproj.io]
spec:
  project: team
  source: {repoURL: "https://git.example/team/web", targetRevision: main, path: deploy}
  destination: {server: "https://kubernetes.default.svc", namespace: team-web}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true]
operation:
  sync: {revision: main}
  initiatedBy: {username: admin}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: api, namespace: argocd}
spec:
  project: default
  source: {repoURL: "https://git.example/api", targetRevision: v1.2.0, path: "."}
  destination: {name: in-cluster, namespace: api}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: elsewhere, namespace: team-apps}
spec:
  project: default
  source: {repoURL: "https://git.example/other", targetRevision: HEAD, path: app}
  destination: {server: "https://kubernetes.default.svc", namespace: other}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm, namespace: argocd}
data: {url: "https://argocd.example", timeout.reconciliation: 180s}
---
apiVersion: v1
kind: Secret
metadata:
  name: repo-web
  namespace: argocd
  labels: {argocd.argoproj.io/secret-type: repository}
stringData: {url: "https://git.example/team/web", password: s3cret, username: git}
"#;

/// `import -o json`'s restore actions: every object in its output carrying `kind`, `name` and
/// `action` (wherever import puts them), as `kind/name action`, sorted.
async fn restore_actions(kubeconfig: &Path, ctx: &str, args: &[&str]) -> Result<Vec<String>> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let (Some(k), Some(n), Some(a)) = (
                    m.get("kind").and_then(Value::as_str),
                    m.get("name").and_then(Value::as_str),
                    m.get("action").and_then(Value::as_str),
                ) {
                    out.push(format!("{k}/{n} {a}"));
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut all = vec!["import"];
    all.extend(args);
    all.extend(["-o", "json"]);
    let (code, out, err) = admin(kubeconfig, ctx, &all).await?;
    ensure!(code == 0, "import {args:?} failed ({code}):\n{out}\n{err}");
    let v: Value = serde_json::from_str(&out).with_context(|| format!("import -o json: {out}"))?;
    let mut actions = Vec::new();
    walk(&v, &mut actions);
    actions.sort();
    Ok(actions)
}

fn actions(list: &[(&str, &str)]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|(o, a)| format!("{o} {a}")).collect();
    v.sort();
    v
}

/// Writes (create, update, patch, delete) in the control plane's request log after `since`.
fn writes_since(sim: &KubeSim, since: u64) -> Vec<String> {
    sim.control_plane()
        .log
        .since(since)
        .into_iter()
        .filter(|r| r.is_write())
        .map(|r| format!("{} {} {}/{}", r.verb, r.resource, r.namespace, r.name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_round_trips_through_import_and_drops_status_and_operation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (sim, client, kubeconfig) = sim_with_crds(dir.path()).await?;
    let ctx = sim.control_plane().name.clone();
    apply_yaml(&client, OBJECTS, "test").await?;
    argo(&client, "Application", NS)
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}}),
            ),
        )
        .await?;
    let original = get(&client, "Application", NS, "web")
        .await?
        .context("web")?;
    ensure!(
        original["status"]["sync"]["status"] == "Synced",
        "status set: {original}"
    );
    ensure!(
        !original["operation"].is_null(),
        "operation set: {original}"
    );
    let original_project = get(&client, "AppProject", NS, "team")
        .await?
        .context("team")?;
    let original_api = get(&client, "Application", NS, "api")
        .await?
        .context("api")?;

    // Export to a file, and again to stdout: the same bytes.
    let file = dir.path().join("backup.yaml");
    let file_arg = file.display().to_string();
    let (code, _, err) = admin(&kubeconfig, &ctx, &["export", "--out", &file_arg]).await?;
    ensure!(code == 0, "export failed ({code}): {err}");
    ensure!(
        err.contains("1 AppProject, 2 Applications"),
        "summary: {err}"
    );
    let text = std::fs::read_to_string(&file)?;
    let (code, stdout, err) = admin(&kubeconfig, &ctx, &["export"]).await?;
    ensure!(code == 0, "export to stdout failed: {err}");
    ensure!(stdout == text, "two exports of the same state differ");

    let exported = docs(&text)?;
    let keys: Vec<_> = exported.iter().map(key).collect();
    let k = |kind: &str, ns: &str, name: &str| (kind.to_string(), ns.to_string(), name.to_string());
    ensure!(
        keys == vec![
            k("AppProject", NS, "team"),
            k("Application", NS, "api"),
            k("Application", NS, "web"),
        ],
        "kinds, namespaces, names in order: {keys:?}"
    );
    for d in &exported {
        ensure!(
            d.get("status").is_none() && d.get("operation").is_none(),
            "{d}"
        );
        let meta: BTreeSet<&str> = d["metadata"]
            .as_object()
            .context("metadata")?
            .keys()
            .map(String::as_str)
            .collect();
        let allowed: BTreeSet<&str> =
            ["name", "namespace", "labels", "annotations", "finalizers"].into();
        ensure!(
            meta.is_subset(&allowed),
            "server metadata exported: {meta:?}"
        );
    }
    let web = &exported[2];
    ensure!(web["spec"] == original["spec"], "spec kept: {web}");
    ensure!(web["metadata"]["labels"] == original["metadata"]["labels"]);
    ensure!(web["metadata"]["annotations"] == original["metadata"]["annotations"]);
    ensure!(web["metadata"]["finalizers"] == json!(["resources-finalizer.argocd.argoproj.io"]));
    ensure!(
        !text.contains("uid:") && !text.contains("resourceVersion"),
        "{text}"
    );

    // Every namespace.
    let (code, all_ns, err) = admin(&kubeconfig, &ctx, &["export", "--all-namespaces"]).await?;
    ensure!(code == 0, "{err}");
    let all_keys: Vec<_> = docs(&all_ns)?.iter().map(key).collect();
    ensure!(
        all_keys.contains(&k("Application", "team-apps", "elsewhere")) && all_keys.len() == 4,
        "{all_keys:?}"
    );

    // Delete everything (the finalizer first: no controller runs here).
    let apps = argo(&client, "Application", NS);
    apps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    for name in ["web", "api"] {
        apps.delete(name, &DeleteParams::default()).await?;
    }
    argo(&client, "AppProject", NS)
        .delete("team", &DeleteParams::default())
        .await?;
    eventually("the objects gone", Duration::from_secs(10), || async {
        let gone = get(&client, "Application", NS, "web").await?.is_none()
            && get(&client, "Application", NS, "api").await?.is_none()
            && get(&client, "AppProject", NS, "team").await?.is_none();
        Ok(gone.then_some(()))
    })
    .await?;

    // A dry run reads and writes nothing.
    let mark = sim.control_plane().log.total();
    let got = restore_actions(&kubeconfig, &ctx, &["-f", &file_arg]).await?;
    let want = actions(&[
        ("AppProject/team", "create"),
        ("Application/api", "create"),
        ("Application/web", "create"),
    ]);
    ensure!(got == want, "dry run: {got:?}");
    let writes = writes_since(&sim, mark);
    ensure!(writes.is_empty(), "the dry run wrote: {writes:?}");
    ensure!(
        get(&client, "Application", NS, "web").await?.is_none(),
        "dry run created web"
    );

    // Restore (the table output, as an operator runs it).
    let (code, out, err) =
        admin(&kubeconfig, &ctx, &["import", "-f", &file_arg, "--apply"]).await?;
    ensure!(code == 0, "import --apply failed ({code}):\n{out}\n{err}");
    ensure!(
        out.lines()
            .any(|l| l.contains("Application") && l.contains("web") && l.contains("created")),
        "{out}"
    );
    let restored = get(&client, "Application", NS, "web")
        .await?
        .context("web restored")?;
    ensure!(restored["spec"] == original["spec"], "spec: {restored}");
    for f in ["labels", "annotations", "finalizers"] {
        ensure!(
            restored["metadata"][f] == original["metadata"][f],
            "{f}: {} vs {}",
            restored["metadata"][f],
            original["metadata"][f]
        );
    }
    ensure!(
        restored["operation"].is_null(),
        "operation restored: {restored}"
    );
    ensure!(
        restored["status"].is_null() || restored["status"]["sync"].is_null(),
        "status restored: {restored}"
    );
    ensure!(
        restored["metadata"]["uid"] != original["metadata"]["uid"],
        "a new object"
    );
    let managers: Vec<&str> = restored["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["operation"] == "Apply")
        .filter_map(|m| m["manager"].as_str())
        .collect();
    ensure!(
        managers == ["flotilla-admin"],
        "applied by flotilla-admin: {managers:?}"
    );
    let project = get(&client, "AppProject", NS, "team")
        .await?
        .context("team")?;
    ensure!(project["spec"] == original_project["spec"], "{project}");
    ensure!(project["metadata"]["labels"] == original_project["metadata"]["labels"]);
    let api = get(&client, "Application", NS, "api")
        .await?
        .context("api")?;
    ensure!(api["spec"] == original_api["spec"], "{api}");
    // Not in the file, not touched.
    ensure!(
        get(&client, "Application", "team-apps", "elsewhere")
            .await?
            .is_some()
    );

    // Restoring again changes nothing.
    let mark = sim.control_plane().log.total();
    let got = restore_actions(&kubeconfig, &ctx, &["-f", &file_arg, "--apply"]).await?;
    let want = actions(&[
        ("AppProject/team", "unchanged"),
        ("Application/api", "unchanged"),
        ("Application/web", "unchanged"),
    ]);
    ensure!(got == want, "second restore: {got:?}");
    let writes = writes_since(&sim, mark);
    ensure!(writes.is_empty(), "an unchanged restore wrote: {writes:?}");

    // A changed spec and a dropped label: a dry run says update (and writes nothing), the
    // restore puts both back.
    apps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": null}},
                             "spec": {"source": {"targetRevision": "v2"}}})),
    )
    .await?;
    let mark = sim.control_plane().log.total();
    let got = restore_actions(&kubeconfig, &ctx, &["-f", &file_arg]).await?;
    let want = actions(&[
        ("AppProject/team", "unchanged"),
        ("Application/api", "unchanged"),
        ("Application/web", "update"),
    ]);
    ensure!(got == want, "dry run after a change: {got:?}");
    ensure!(writes_since(&sim, mark).is_empty(), "the dry run wrote");
    let got = restore_actions(&kubeconfig, &ctx, &["-f", &file_arg, "--apply"]).await?;
    ensure!(
        got.contains(&"Application/web updated".to_string()),
        "{got:?}"
    );
    let writes = writes_since(&sim, mark);
    ensure!(
        writes == ["patch applications argocd/web"],
        "one write: {writes:?}"
    );
    let web = get(&client, "Application", NS, "web")
        .await?
        .context("web")?;
    ensure!(
        web["spec"] == original["spec"]
            && web["metadata"]["labels"] == original["metadata"]["labels"],
        "restored again: {web}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_all_adds_config_and_secrets_only_when_asked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (sim, client, kubeconfig) = sim_with_crds(dir.path()).await?;
    let ctx = sim.control_plane().name.clone();
    apply_yaml(&client, OBJECTS, "test").await?;

    let (code, out, err) = admin(&kubeconfig, &ctx, &["export", "--all"]).await?;
    ensure!(code == 0, "{err}");
    let keys: Vec<_> = docs(&out)?.iter().map(key).collect();
    let kinds: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    ensure!(
        kinds == ["AppProject", "Application", "Application", "ConfigMap"],
        "{keys:?}"
    );
    ensure!(keys[3].2 == "argocd-cm");
    ensure!(
        !out.contains("s3cret") && err.contains("--include-secrets"),
        "{err}"
    );

    // The help says what is left out and when shards exits 1.
    let (_, help, _) = admin(&kubeconfig, &ctx, &["export", "--help"]).await?;
    ensure!(
        help.contains("`operation`") && help.contains("NOT exported"),
        "{help}"
    );
    let (_, help, _) = admin(&kubeconfig, &ctx, &["shards", "--help"]).await?;
    ensure!(
        help.contains("Exit status: 0") && help.contains("unowned"),
        "{help}"
    );

    // Secrets only with --all.
    let (code, _, _) = admin(&kubeconfig, &ctx, &["export", "--include-secrets"]).await?;
    ensure!(
        code == 2,
        "--include-secrets without --all is a usage error ({code})"
    );

    let file = dir.path().join("full.yaml");
    let file_arg = file.display().to_string();
    let (code, _, err) = admin(
        &kubeconfig,
        &ctx,
        &["export", "--all", "--include-secrets", "--out", &file_arg],
    )
    .await?;
    ensure!(code == 0, "{err}");
    ensure!(
        err.contains("warning") && err.contains("credentials"),
        "{err}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "credentials file mode {mode:o}");
    }
    let full = docs(&std::fs::read_to_string(&file)?)?;
    let secrets: Vec<&Value> = full.iter().filter(|d| d["kind"] == "Secret").collect();
    let names: Vec<&str> = secrets
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    ensure!(names == ["cluster-cluster-001", "repo-web"], "{names:?}");
    let repo = secrets[1];
    ensure!(repo["data"]["password"] == "czNjcmV0", "{repo}");
    ensure!(repo["metadata"].get("uid").is_none());
    Ok(())
}

async fn shards_json(fleet: &Fleet) -> Result<(i32, Value, String)> {
    let (code, out, err) = admin(
        &fleet.kubeconfig,
        &fleet.sim.control_plane_name(),
        &["shards", "-o", "json"],
    )
    .await?;
    let v: Value = serde_json::from_str(&out)
        .with_context(|| format!("shards -o json ({code}): {out}\n{err}"))?;
    Ok((code, v, err))
}

fn servers(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["server"].as_str().or(c.as_str()).map(str::to_string))
        .collect()
}

fn replica<'a>(v: &'a Value, id: &str) -> Result<&'a Value> {
    v["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["identity"] == id)
        .with_context(|| format!("{id} not listed: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_lists_replicas_their_clusters_and_expired_leases() -> Result<()> {
    let mut fleet = Fleet::start(FleetConfig {
        controllers: 2,
        clusters: 4,
        lease_duration_seconds: 4,
        lease_renew_seconds: 1.0,
        ..Default::default()
    })
    .await?;
    let ctx = fleet.sim.control_plane_name();
    // Pin cluster-001 to shard 1 (controller-1).
    let secrets: Api<Secret> = Api::namespaced(fleet.control().clone(), NS);
    secrets
        .patch(
            "cluster-cluster-001",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"shard": "MQ=="}})),
        )
        .await?;
    let pinned = fleet.server("cluster-001")?;
    // Six apps over the four clusters, one to a cluster that does not exist.
    let mut yaml = String::new();
    for i in 0..7 {
        let dest = if i == 6 {
            "nowhere".to_string()
        } else {
            format!("cluster-00{}", i % 4 + 1)
        };
        yaml.push_str(&format!(
            "---\napiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: app-{i}, namespace: argocd}}\nspec:\n  project: default\n  source: {{repoURL: {url}, targetRevision: main, path: none}}\n  destination: {{name: {dest}, namespace: app-{i}}}\n",
            url = fleet.git.url()
        ));
    }
    fleet.apply(&yaml).await?;

    // Settled: each replica's list is what its /status says it owns, nothing pending.
    let started = Instant::now();
    let survey = eventually("the shards to settle", Duration::from_secs(60), || async {
        let before: Vec<Value> = futures::future::try_join_all(
            ["controller-0", "controller-1"].map(|id| fleet.controller_status(id)),
        )
        .await?;
        let (code, v, _) = shards_json(&fleet).await?;
        for (i, st) in before.iter().enumerate() {
            let id = format!("controller-{i}");
            let now = fleet.controller_status(&id).await?;
            let listed = servers(&replica(&v, &id)?["clusters"]);
            let settled = st["ownedClusters"] == now["ownedClusters"]
                && servers(&now["ownedClusters"]) == listed
                && now["pendingClusters"].as_array().is_some_and(Vec::is_empty)
                && now["releasingClusters"]
                    .as_array()
                    .is_some_and(Vec::is_empty);
            if !settled {
                return Ok(None);
            }
        }
        let pin_held = servers(&replica(&v, "controller-1")?["clusters"]).contains(&pinned);
        Ok((code == 0 && v["ok"] == true && pin_held).then_some(v))
    })
    .await?;
    eprintln!("settled in {:?}", started.elapsed());
    let status = fleet.controller_status("controller-0").await?;
    let all_clusters = servers(&status["clusters"]);
    ensure!(
        survey["clusters"] == all_clusters.len(),
        "the survey's clusters are the controllers': {survey} vs {all_clusters:?}"
    );
    let mut held = BTreeSet::new();
    let mut held_count = 0;
    let mut apps = 0;
    for id in ["controller-0", "controller-1"] {
        let r = replica(&survey, id)?;
        ensure!(r["live"] == true, "{r}");
        held_count += r["held"].as_u64().unwrap_or(0);
        apps += r["applications"].as_u64().unwrap_or(0);
        held.extend(servers(&r["clusters"]));
    }
    ensure!(
        held == all_clusters && held_count as usize == all_clusters.len(),
        "held {held:?}"
    );
    ensure!(
        apps == 6 && survey["unresolvedApplications"] == 1,
        "{survey}"
    );
    ensure!(survey["unowned"] == json!([]) && survey["handover"] == json!([]));
    let r1 = replica(&survey, "controller-1")?;
    ensure!(r1["pinned"] == 1, "{r1}");
    let c1 = r1["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["server"] == pinned.as_str())
        .context("cluster-001")?;
    ensure!(c1["shard"] == 1 && c1["pinnedTo"] == "controller-1", "{c1}");

    // Tables and YAML.
    let (code, table, err) = admin(&fleet.kubeconfig, &ctx, &["shards"]).await?;
    ensure!(code == 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    ensure!(
        lines.len() == 3
            && lines[0].split_whitespace().collect::<Vec<_>>()
                == ["REPLICA", "LIVE", "HELD", "APPS", "PINNED"]
            && lines[1].starts_with("controller-0")
            && lines[2].starts_with("controller-1"),
        "{table}"
    );
    let (code, wide, _) = admin(&fleet.kubeconfig, &ctx, &["shards", "-o", "wide"]).await?;
    ensure!(
        code == 0
            && wide
                .lines()
                .next()
                .is_some_and(|l| l.ends_with("RENEWED  CLUSTERS"))
    );
    ensure!(
        wide.lines()
            .nth(2)
            .is_some_and(|l| l.contains("cluster-001")),
        "{wide}"
    );
    let (code, yaml, _) = admin(&fleet.kubeconfig, &ctx, &["shards", "-o", "yaml"]).await?;
    let y: Value = serde_yaml::from_str(&yaml)?;
    ensure!(
        code == 0
            && y["replicas"].as_array().map(Vec::len) == Some(2)
            && y["clusters"] == survey["clusters"],
        "{yaml}"
    );

    // Kill controller-1: live until its Lease expires by its renewTime, then not.
    fleet.kill_controller("controller-1")?;
    let killed = Instant::now();
    let (_, v, _) = shards_json(&fleet).await?;
    ensure!(
        replica(&v, "controller-1")?["live"] == true,
        "still live right after: {v}"
    );
    eventually("controller-1 not live", Duration::from_secs(15), || async {
        let (_, v, _) = shards_json(&fleet).await?;
        let r = replica(&v, "controller-1")?;
        Ok((r["live"] == false).then_some(()))
    })
    .await?;
    let expired = killed.elapsed();
    ensure!(
        expired >= Duration::from_millis(2500) && expired < Duration::from_secs(8),
        "a 4 s Lease renewed every second expired {expired:?} after the kill"
    );
    eprintln!("controller-1 not live {expired:?} after SIGKILL");
    // controller-0 takes everything over (the pin to shard 1 no longer applies).
    let v = eventually(
        "controller-0 to hold every cluster",
        Duration::from_secs(30),
        || async {
            let (code, v, _) = shards_json(&fleet).await?;
            let r0 = replica(&v, "controller-0")?;
            Ok((code == 0 && servers(&r0["clusters"]) == all_clusters).then_some(v))
        },
    )
    .await?;
    let r1 = replica(&v, "controller-1")?;
    ensure!(
        r1["held"] == 0 && r1["claims"].as_u64().unwrap_or(0) > 0,
        "stale claims kept: {r1}"
    );

    // Kill the last one: every cluster unowned, exit 1.
    fleet.kill_controller("controller-0")?;
    let (v, err) = eventually("every cluster unowned", Duration::from_secs(15), || async {
        let (code, v, err) = shards_json(&fleet).await?;
        Ok(
            (code == 1 && v["unowned"].as_array().map(Vec::len) == Some(all_clusters.len()))
                .then_some((v, err)),
        )
    })
    .await?;
    ensure!(v["ok"] == false && err.contains("unowned"), "{err}");
    ensure!(
        v["unowned"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|c| c["claimedBy"]
                .as_array()
                .is_some_and(|by| by.contains(&json!("controller-0")))),
        "the stale claims name the dead owner: {v}"
    );
    let (code, table, _) = admin(&fleet.kubeconfig, &ctx, &["shards"]).await?;
    ensure!(code == 1, "exit 1 with unowned clusters");
    let unowned = table
        .lines()
        .find(|l| l.starts_with("UNOWNED"))
        .with_context(|| format!("no UNOWNED row:\n{table}"))?;
    let cols: Vec<&str> = unowned.split_whitespace().collect();
    if cols.get(2) != Some(&all_clusters.len().to_string().as_str()) {
        bail!("UNOWNED row counts every cluster: {unowned}");
    }
    Ok(())
}
