//! The Helm chart, proven with Helm's own engine (`helm`, or the helm-python-sdk shim the test
//! set-up installs): it lints and renders hardened objects for the default, `ha`, bundled-Redis
//! and no-Redis values, the API server with them (HPA, Ingress with TLS when enabled); every
//! object is accepted by kubesim through server-side apply; the binaries run with exactly the
//! args and env the chart's Deployments give them, sync an app and serve the API (the
//! controllers advertise their status address, the server signs in as its ServiceAccount);
//! the RBAC rules cover every API call the controller and the API server made and nothing
//! more; the dashboard and HPAs only name metrics the binaries export; SIGTERM hands clusters
//! over at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use flotilla_loadtest::fleet::process::{self, Proc};
use flotilla_loadtest::fleet::{
    Fleet, FleetConfig, http_get, http_get_with, http_post, metric_sum,
};
use flotilla_loadtest::kubesim;
use flotilla_sharding::membership::{GROUP_LABEL, STATUS_ADDRESS_ANNOTATION};
use flotilla_tests::e2e::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use serde_json::{Value, json};

fn chart_dir() -> PathBuf {
    process::workspace_dir().join("charts/flotilla")
}

fn example(name: &str) -> PathBuf {
    chart_dir().join("examples").join(name)
}

/// Run `helm` (the real binary or the shim) and return (success, stdout + stderr).
fn helm(args: &[String]) -> Result<(bool, String)> {
    let out = Command::new("helm")
        .args(args)
        .output()
        .context("running helm (scripts/test.sh installs Helm's engine when it is missing)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn args_for(values: &[PathBuf], sets: &[String]) -> Vec<String> {
    let mut a = Vec::new();
    for v in values {
        a.push("--values".into());
        a.push(v.display().to_string());
    }
    for s in sets {
        a.push("--set".into());
        a.push(s.clone());
    }
    a
}

/// `helm template RELEASE chart -n NS` as JSON objects.
fn render(release: &str, values: &[PathBuf], sets: &[String]) -> Result<Vec<Value>> {
    let mut args: Vec<String> = vec![
        "template".into(),
        release.into(),
        chart_dir().display().to_string(),
        "--namespace".into(),
        NS.into(),
    ];
    args.extend(args_for(values, sets));
    let (ok, text) = helm(&args)?;
    ensure!(ok, "helm template failed:\n{text}");
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).context("rendered YAML")?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn lint(values: &[PathBuf], sets: &[String]) -> Result<(bool, String)> {
    let mut args: Vec<String> = vec![
        "lint".into(),
        chart_dir().display().to_string(),
        "--strict".into(),
    ];
    args.extend(args_for(values, sets));
    helm(&args)
}

/// NOTES.txt as `helm install` prints it: rendered as an ordinary template of a copy of the
/// chart (`helm template` skips NOTES.txt).
fn notes(values: &[PathBuf], sets: &[String]) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("flotilla");
    let ok = Command::new("cp")
        .arg("-r")
        .arg(chart_dir())
        .arg(&copy)
        .status()?
        .success();
    ensure!(ok, "copying the chart");
    std::fs::copy(
        copy.join("templates/NOTES.txt"),
        copy.join("templates/zz-notes.yaml"),
    )?;
    let mut args: Vec<String> = vec![
        "template".into(),
        "flotilla".into(),
        copy.display().to_string(),
        "--namespace".into(),
        NS.into(),
    ];
    args.extend(args_for(values, sets));
    let (ok, text) = helm(&args)?;
    ensure!(ok, "rendering NOTES.txt failed:\n{text}");
    let (_, notes) = text
        .split_once("# Source: flotilla/templates/zz-notes.yaml")
        .context("NOTES.txt rendered")?;
    let end = ["\n---", "\n# Source:"]
        .iter()
        .filter_map(|m| notes.find(m))
        .min()
        .unwrap_or(notes.len());
    Ok(notes[..end].to_string())
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(objs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .with_context(|| format!("{kind} {name} not rendered"))
}

fn container(workload: &Value) -> Result<&Value> {
    workload
        .pointer("/spec/template/spec/containers/0")
        .context("a container")
}

fn env_of(c: &Value, name: &str) -> Option<Value> {
    c["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every pod the chart runs is hardened, has resources and (for our binaries) probes.
fn check_pods(objs: &[Value]) -> Result<()> {
    let workloads: Vec<&Value> = objs
        .iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("Deployment" | "StatefulSet" | "Job")
            )
        })
        .collect();
    ensure!(!workloads.is_empty());
    for w in workloads {
        let name = w["metadata"]["name"].as_str().unwrap_or_default();
        let pod = w.pointer("/spec/template/spec").context("pod spec")?;
        ensure!(
            pod["securityContext"]["runAsNonRoot"] == true,
            "{name}: runAsNonRoot"
        );
        ensure!(
            pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault",
            "{name}: seccomp"
        );
        for c in pod["containers"].as_array().context("containers")? {
            let sc = &c["securityContext"];
            ensure!(
                sc["readOnlyRootFilesystem"] == true,
                "{name}: read-only root"
            );
            ensure!(
                sc["allowPrivilegeEscalation"] == false,
                "{name}: no escalation"
            );
            ensure!(
                str_list(&sc["capabilities"]["drop"]) == vec!["ALL".to_string()],
                "{name}: drop ALL"
            );
            ensure!(
                c["resources"]["requests"]["cpu"].is_string()
                    && c["resources"]["requests"]["memory"].is_string(),
                "{name}: resource requests"
            );
            if w["kind"] == "Deployment" {
                ensure!(
                    c["readinessProbe"]["httpGet"]["path"] == "/readyz"
                        && c["livenessProbe"]["httpGet"]["path"] == "/healthz",
                    "{name}: probes"
                );
                let port = &c["readinessProbe"]["httpGet"]["port"];
                ensure!(
                    c["ports"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|p| p["name"] == *port)),
                    "{name}: probe port {port} is a container port"
                );
            }
        }
    }
    Ok(())
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn has_arg(c: &Value, arg: &str) -> bool {
    str_list(&c["args"]).iter().any(|a| a == arg)
}

/// The Secret a container's env var `name` is read from (`secretKeyRef` name, key).
fn secret_ref(c: &Value, name: &str) -> Option<(String, String)> {
    let r = env_of(c, name)?.pointer("/valueFrom/secretKeyRef")?.clone();
    Some((
        r["name"].as_str()?.to_string(),
        r["key"].as_str()?.to_string(),
    ))
}

/// The API server as every values set with `server.enabled` renders it: its Deployment, run
/// by its own ServiceAccount, behind a Service whose port its NetworkPolicy admits; the
/// controllers advertise `$(POD_IP):<metrics port>` from the downward API and share the
/// server's status token (one Secret the chart renders) and shard group.
fn check_server(objs: &[Value]) -> Result<()> {
    let d = named(objs, "Deployment", "flotilla-server")?;
    let pod = &d["spec"]["template"]["spec"];
    ensure!(pod["serviceAccountName"] == "flotilla-server", "{pod}");
    ensure!(pod["automountServiceAccountToken"] == true);
    named(objs, "ServiceAccount", "flotilla-server")?;
    let c = container(d)?;
    ensure!(
        c["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("ghcr.io/flotilla/flotilla-server:")),
        "{}",
        c["image"]
    );
    let port = c["ports"][0]["containerPort"].clone();
    ensure!(c["ports"][0]["name"] == "http");
    ensure!(
        has_arg(c, &format!("--listen=0.0.0.0:{port}")) && has_arg(c, "--namespace=argocd"),
        "{:?}",
        c["args"]
    );
    let svc = named(objs, "Service", "flotilla-server")?;
    ensure!(labels_match(
        &svc["spec"]["selector"],
        &d["spec"]["template"]["metadata"]["labels"]
    ));
    ensure!(labels_match(
        &d["spec"]["selector"]["matchLabels"],
        &d["spec"]["template"]["metadata"]["labels"]
    ));
    ensure!(svc["spec"]["ports"][0]["targetPort"] == "http", "{svc}");
    let np = named(objs, "NetworkPolicy", "flotilla-server")?;
    ensure!(labels_match(
        &np["spec"]["podSelector"]["matchLabels"],
        &d["spec"]["template"]["metadata"]["labels"]
    ));
    ensure!(
        np["spec"]["ingress"] == json!([{"ports": [{"port": port, "protocol": "TCP"}]}]),
        "the API server admits its port from anywhere, nothing else: {np}"
    );
    let pdb = named(objs, "PodDisruptionBudget", "flotilla-server")?;
    ensure!(labels_match(
        &pdb["spec"]["selector"]["matchLabels"],
        &d["spec"]["template"]["metadata"]["labels"]
    ));

    let ctrl = named(objs, "Deployment", "flotilla-controller")?;
    let cc = container(ctrl)?;
    let token = secret_ref(c, "FLOTILLA_STATUS_TOKEN").context("server status token")?;
    ensure!(
        secret_ref(cc, "FLOTILLA_STATUS_TOKEN").as_ref() == Some(&token),
        "the controllers get the server's status token"
    );
    let secret = named(objs, "Secret", &token.0)?;
    ensure!(
        secret["data"][&token.1]
            .as_str()
            .is_some_and(|t| t.len() >= 60),
        "a generated status token"
    );
    let group = |c: &Value| {
        str_list(&c["args"])
            .into_iter()
            .find_map(|a| a.strip_prefix("--shard-group=").map(str::to_string))
    };
    ensure!(
        group(c).is_some() && group(c) == group(cc),
        "one shard group: {:?} {:?}",
        c["args"],
        cc["args"]
    );
    let metrics = cc["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "metrics"))
        .context("controller metrics port")?["containerPort"]
        .clone();
    ensure!(
        has_arg(cc, &format!("--advertise-address=$(POD_IP):{metrics}")),
        "{:?}",
        cc["args"]
    );
    let pod_ip = env_of(cc, "POD_IP").context("POD_IP")?;
    ensure!(pod_ip.pointer("/valueFrom/fieldRef/fieldPath") == Some(&json!("status.podIP")));
    Ok(())
}

#[test]
fn the_chart_lints_and_renders_hardened_objects_for_every_values_set() -> Result<()> {
    let sets: [(&str, Vec<PathBuf>); 4] = [
        ("default", vec![]),
        ("ha", vec![example("values-ha.yaml")]),
        ("bundled", vec![example("values-bundled-redis.yaml")]),
        ("no-redis", vec![example("values-no-redis.yaml")]),
    ];
    for (what, values) in &sets {
        let (ok, text) = lint(values, &[])?;
        ensure!(ok, "{what}: helm lint --strict failed:\n{text}");
        let objs = render("flotilla", values, &[])?;
        check_pods(&objs).with_context(|| format!("{what} values"))?;
        ensure!(
            of_kind(&objs, "CustomResourceDefinition").len() == 3,
            "{what}: CRDs"
        );
        ensure!(
            of_kind(&objs, "PodDisruptionBudget").len() == 3,
            "{what}: PDBs"
        );
        ensure!(
            of_kind(&objs, "NetworkPolicy").len() >= 3,
            "{what}: NetworkPolicies"
        );
        check_server(&objs).with_context(|| format!("{what}: the API server"))?;
        ensure!(
            of_kind(&objs, "ConfigMap")
                .iter()
                .any(|c| c["data"]["flotilla.json"]
                    .as_str()
                    .is_some_and(|d| serde_json::from_str::<Value>(d).is_ok())),
            "{what}: the Grafana dashboard ships as JSON"
        );
        let repo = named(&objs, "Service", "flotilla-repo-server")?;
        ensure!(
            repo["spec"]["clusterIP"] == "None",
            "headless repo-server Service"
        );
        let ctrl = container(named(&objs, "Deployment", "flotilla-controller")?)?;
        ensure!(
            str_list(&ctrl["args"]).contains(
                &"--repo-server=dns:///flotilla-repo-server.argocd.svc.cluster.local:8081"
                    .to_string()
            ),
            "{what}: the controller dials the headless Service: {:?}",
            ctrl["args"]
        );
        let repo_pod = named(&objs, "Deployment", "flotilla-repo-server")?;
        ensure!(repo_pod["spec"]["template"]["spec"]["automountServiceAccountToken"] == false);
    }

    // Defaults: one replica each, in-memory cache, scrape annotations, no HPA or monitor.
    let objs = render("flotilla", &[], &[])?;
    let ctrl = named(&objs, "Deployment", "flotilla-controller")?;
    ensure!(ctrl["spec"]["replicas"] == 1);
    ensure!(env_of(container(ctrl)?, "FLOTILLA_REDIS_URL").is_none());
    ensure!(ctrl["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true");
    ensure!(of_kind(&objs, "HorizontalPodAutoscaler").is_empty());
    ensure!(of_kind(&objs, "ServiceMonitor").is_empty());
    // Argo CD's SSH known hosts and TLS CA ConfigMaps are mounted where the repo-server's
    // --ssh-known-hosts and --tls-certs-dir look by default (and where Argo CD has them).
    let repo_spec =
        &named(&objs, "Deployment", "flotilla-repo-server")?["spec"]["template"]["spec"];
    for (volume, cm, path) in [
        (
            "ssh-known-hosts",
            "argocd-ssh-known-hosts-cm",
            "/app/config/ssh",
        ),
        ("tls-certs", "argocd-tls-certs-cm", "/app/config/tls"),
    ] {
        let vols = repo_spec["volumes"].as_array().cloned().unwrap_or_default();
        ensure!(
            vols.iter().any(|v| v["name"] == volume
                && v["configMap"]["name"] == cm
                && v["configMap"]["optional"] == true),
            "{volume}: {vols:?}"
        );
        let mounts = repo_spec["containers"][0]["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ensure!(
            mounts
                .iter()
                .any(|m| m["name"] == volume && m["mountPath"] == path),
            "{volume} mounted at {path}: {mounts:?}"
        );
    }
    // The API server: one replica with the local admin, reachable in the cluster only.
    let server = named(&objs, "Deployment", "flotilla-server")?;
    ensure!(server["spec"]["replicas"] == 1);
    ensure!(!has_arg(container(server)?, "--no-local-admin"));
    ensure!(server["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "8080");
    ensure!(named(&objs, "Service", "flotilla-server")?["spec"]["type"] == "ClusterIP");
    ensure!(
        of_kind(&objs, "Ingress").is_empty(),
        "no Ingress unless enabled"
    );
    ensure!(!has_arg(
        container(server)?,
        "--service-account-tokens=false"
    ));
    named(&objs, "ClusterRoleBinding", "flotilla-server-tokenreview")?;
    let objs = render(
        "flotilla",
        &[],
        &[
            "server.localAdmin.enabled=false".into(),
            "server.service.type=LoadBalancer".into(),
            "server.serviceAccountTokens=false".into(),
        ],
    )?;
    let c = container(named(&objs, "Deployment", "flotilla-server")?)?;
    ensure!(has_arg(c, "--no-local-admin"));
    // Without ServiceAccount sign-in the server has no cluster-wide grant at all.
    ensure!(has_arg(c, "--service-account-tokens=false"));
    ensure!(
        !objs.iter().any(|o| o["kind"] == "ClusterRole"
            && o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("flotilla-server"))),
        "a ClusterRole for the server without ServiceAccount tokens"
    );
    ensure!(named(&objs, "Service", "flotilla-server")?["spec"]["type"] == "LoadBalancer");
    // Without the API server nothing of it renders, and the controllers neither advertise
    // status addresses nor serve the status routes.
    let objs = render("flotilla", &[], &["server.enabled=false".into()])?;
    let leftovers: Vec<String> = objs
        .iter()
        .filter(|o| {
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("flotilla-server") || n.contains("status-token"))
        })
        .map(|o| format!("{} {}", o["kind"], o["metadata"]["name"]))
        .collect();
    ensure!(
        leftovers.is_empty(),
        "server.enabled=false renders {leftovers:?}"
    );
    ensure!(of_kind(&objs, "PodDisruptionBudget").len() == 2);
    let ctrl = container(named(&objs, "Deployment", "flotilla-controller")?)?;
    ensure!(env_of(ctrl, "FLOTILLA_STATUS_TOKEN").is_none() && env_of(ctrl, "POD_IP").is_none());
    ensure!(
        !str_list(&ctrl["args"])
            .iter()
            .any(|a| a.starts_with("--advertise-address")),
        "{:?}",
        ctrl["args"]
    );
    // An existing Secret for the status token replaces the generated one, for both sides.
    let objs = render(
        "flotilla",
        &[],
        &["server.statusToken.existingSecret=my-status".into()],
    )?;
    ensure!(
        of_kind(&objs, "Secret")
            .iter()
            .all(|s| { s["metadata"]["name"] != "flotilla-status-token" })
    );
    for d in ["flotilla-server", "flotilla-controller"] {
        ensure!(
            secret_ref(
                container(named(&objs, "Deployment", d)?)?,
                "FLOTILLA_STATUS_TOKEN"
            ) == Some(("my-status".into(), "token".into())),
            "{d}"
        );
    }
    // The CRDs are the controller's own (so chart and code cannot drift).
    let printed = Command::new(process::binary("flotilla-controller")?)
        .arg("--print-crds")
        .output()?;
    let printed: Vec<Value> = serde_yaml::Deserializer::from_slice(&printed.stdout)
        .map(Value::deserialize)
        .collect::<Result<_, _>>()?;
    let rendered: Vec<Value> = of_kind(&objs, "CustomResourceDefinition")
        .into_iter()
        .cloned()
        .collect();
    ensure!(rendered == printed, "chart CRDs differ from --print-crds");
    // ApplicationSets: the SCM allow-list flag, and read access for a clusterDecisionResource
    // generator (its ConfigMap by name, its resources) only when asked for.
    let dir = tempfile::tempdir()?;
    let values = dir.path().join("appsets.yaml");
    std::fs::write(
        &values,
        "controller:\n  allowedScmProviders: [https://ghe.example.com]\n  clusterDecisionResources:\n  - {configMap: ocm, apiGroup: cluster.open-cluster-management.io, resource: placementdecisions}\n",
    )?;
    let appsets = render("flotilla", &[values], &[])?;
    ensure!(has_arg(
        container(named(&appsets, "Deployment", "flotilla-controller")?)?,
        "--allowed-scm-providers=https://ghe.example.com"
    ));
    let role = named(&appsets, "Role", "flotilla-controller")?;
    let rules = role["rules"].as_array().context("rules")?;
    ensure!(
        rules.iter().any(|r| r["resources"] == json!(["configmaps"])
            && r["resourceNames"] == json!(["ocm"])
            && r["verbs"] == json!(["get"]))
            && rules.iter().any(|r| r["apiGroups"]
                == json!(["cluster.open-cluster-management.io"])
                && r["resources"] == json!(["placementdecisions"])
                && r["verbs"] == json!(["list"])),
        "{role}"
    );
    ensure!(
        !named(&objs, "Role", "flotilla-controller")?
            .to_string()
            .contains("placementdecisions")
    );
    // Apps in any namespace: the flag, and a ClusterRole to watch Applications everywhere
    // (none by default).
    ensure!(
        !of_kind(&objs, "ClusterRole")
            .iter()
            .any(|r| r["metadata"]["name"] == "flotilla-controller-applications")
    );
    let anyns = render(
        "flotilla",
        &[],
        &["controller.applicationNamespaces={team-*,apps}".into()],
    )?;
    ensure!(has_arg(
        container(named(&anyns, "Deployment", "flotilla-controller")?)?,
        "--application-namespaces=team-*,apps"
    ));
    let role = named(&anyns, "ClusterRole", "flotilla-controller-applications")?;
    ensure!(
        role["rules"][0]["resources"] == json!(["applications"])
            && role["rules"][0]["verbs"] == json!(["list", "watch", "patch"]),
        "{role}"
    );
    named(
        &anyns,
        "ClusterRoleBinding",
        "flotilla-controller-applications",
    )?;
    // The API server serves the same namespaces, with its own ClusterRole for them (none
    // without the value).
    ensure!(has_arg(
        container(named(&anyns, "Deployment", "flotilla-server")?)?,
        "--application-namespaces=team-*,apps"
    ));
    ensure!(
        !container(named(&objs, "Deployment", "flotilla-server")?)?["args"]
            .to_string()
            .contains("--application-namespaces")
            && !of_kind(&objs, "ClusterRole")
                .iter()
                .any(|r| r["metadata"]["name"] == "flotilla-server-applications")
    );
    let role = named(&anyns, "ClusterRole", "flotilla-server-applications")?;
    ensure!(
        role["rules"][0]["resources"] == json!(["applications"])
            && role["rules"][0]["verbs"]
                == json!(["get", "list", "watch", "create", "patch", "delete"])
            && role["rules"][2]["resources"] == json!(["events"]),
        "{role}"
    );
    let binding = named(&anyns, "ClusterRoleBinding", "flotilla-server-applications")?;
    ensure!(
        binding["subjects"][0]["name"] == "flotilla-server",
        "{binding}"
    );
    // Side by side with Argo CD: the selection flags.
    let side = render(
        "flotilla",
        &[],
        &[
            "controller.argocdSideBySide=true".into(),
            "controller.applicationSelector=flotilla.dev/managed-by=flotilla".into(),
            "controller.applicationProjects={team-a,team-b}".into(),
        ],
    )?;
    let c = container(named(&side, "Deployment", "flotilla-controller")?)?;
    ensure!(has_arg(c, "--argocd-side-by-side"));
    ensure!(has_arg(
        c,
        "--application-selector=flotilla.dev/managed-by=flotilla"
    ));
    ensure!(has_arg(c, "--application-projects=team-a,team-b"));
    ensure!(!has_arg(
        container(named(&objs, "Deployment", "flotilla-controller")?)?,
        "--argocd-side-by-side"
    ));
    let no_crds = render("flotilla", &[], &["crds.install=false".into()])?;
    ensure!(of_kind(&no_crds, "CustomResourceDefinition").is_empty());

    // ha: three controllers, repo-servers under an HPA on CPU and queue depth, Redis from a
    // Secret, a ServiceMonitor that selects both metrics Services.
    let objs = render("flotilla", &[example("values-ha.yaml")], &[])?;
    ensure!(named(&objs, "Deployment", "flotilla-controller")?["spec"]["replicas"] == 3);
    let repo = named(&objs, "Deployment", "flotilla-repo-server")?;
    ensure!(
        repo["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );
    let hpa = named(&objs, "HorizontalPodAutoscaler", "flotilla-repo-server")?;
    ensure!(
        hpa["spec"]["scaleTargetRef"]
            == json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "flotilla-repo-server"})
    );
    ensure!(hpa["spec"]["minReplicas"] == 2 && hpa["spec"]["maxReplicas"] == 10);
    let metrics = hpa["spec"]["metrics"].as_array().context("HPA metrics")?;
    ensure!(metrics.iter().any(|m| m["resource"]["name"] == "cpu"));
    ensure!(
        metrics
            .iter()
            .any(|m| m["pods"]["metric"]["name"] == "flotilla_repo_renders_waiting")
    );
    let redis = env_of(container(repo)?, "FLOTILLA_REDIS_URL").context("redis env")?;
    ensure!(redis["valueFrom"]["secretKeyRef"] == json!({"name": "flotilla-redis", "key": "url"}));
    let sm = named(&objs, "ServiceMonitor", "flotilla")?;
    let selector = &sm["spec"]["selector"]["matchLabels"];
    let selected: Vec<&Value> = of_kind(&objs, "Service")
        .into_iter()
        .filter(|s| labels_match(selector, &s["metadata"]["labels"]))
        .collect();
    let names: BTreeSet<&str> = selected
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    ensure!(
        names
            == BTreeSet::from([
                "flotilla-controller-metrics",
                "flotilla-repo-server",
                "flotilla-server"
            ]),
        "ServiceMonitor selects {names:?}"
    );
    let endpoints = sm["spec"]["endpoints"].as_array().context("endpoints")?;
    ensure!(endpoints.iter().all(|e| e["path"] == "/metrics"));
    for s in selected {
        ensure!(
            s["spec"]["ports"].as_array().is_some_and(|ps| ps
                .iter()
                .any(|p| endpoints.iter().any(|e| e["port"] == p["name"]))),
            "Service {} has a monitored port",
            s["metadata"]["name"]
        );
    }
    // The API server: 2-5 replicas under an HPA on CPU, behind an Ingress with TLS that routes
    // only the API's paths to the server's Service.
    let server = named(&objs, "Deployment", "flotilla-server")?;
    ensure!(
        server["spec"].get("replicas").is_none(),
        "the HPA owns the API server's replicas"
    );
    ensure!(
        server["spec"]["template"]["metadata"]["annotations"]
            .get("prometheus.io/scrape")
            .is_none()
    );
    let hpa = named(&objs, "HorizontalPodAutoscaler", "flotilla-server")?;
    ensure!(
        hpa["spec"]["scaleTargetRef"]
            == json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "flotilla-server"})
    );
    ensure!(hpa["spec"]["minReplicas"] == 2 && hpa["spec"]["maxReplicas"] == 5);
    ensure!(
        hpa["spec"]["metrics"]
            == json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70}}}])
    );
    let ing = named(&objs, "Ingress", "flotilla-server")?;
    ensure!(ing["apiVersion"] == "networking.k8s.io/v1");
    ensure!(ing["spec"]["ingressClassName"] == "nginx");
    ensure!(
        ing["spec"]["tls"]
            == json!([{"secretName": "flotilla-tls", "hosts": ["flotilla.example.com"]}]),
        "the Ingress carries TLS: {}",
        ing["spec"]["tls"]
    );
    let rules = ing["spec"]["rules"].as_array().context("rules")?;
    ensure!(rules.len() == 1 && rules[0]["host"] == "flotilla.example.com");
    let svc = named(&objs, "Service", "flotilla-server")?;
    let mut paths = Vec::new();
    for p in rules[0]["http"]["paths"].as_array().context("paths")? {
        let backend = &p["backend"]["service"];
        ensure!(backend["name"] == "flotilla-server", "{p}");
        ensure!(
            svc["spec"]["ports"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|sp| sp["name"] == backend["port"]["name"])),
            "the Ingress names a port of the Service: {p}"
        );
        ensure!(p["pathType"] == "Prefix");
        paths.push(p["path"].as_str().unwrap_or_default().to_string());
    }
    ensure!(
        paths == ["/api", "/auth"],
        "only the API is exposed (no /metrics): {paths:?}"
    );
    // An Ingress without TLS entries has none.
    let objs = render(
        "flotilla",
        &[],
        &[
            "server.ingress.enabled=true".into(),
            "server.ingress.hosts={a.example.com}".into(),
        ],
    )?;
    let ing = named(&objs, "Ingress", "flotilla-server")?;
    ensure!(ing["spec"].get("tls").is_none(), "{ing}");
    ensure!(ing["spec"].get("ingressClassName").is_none(), "{ing}");
    ensure!(ing["spec"]["rules"][0]["host"] == "a.example.com");
    // With autoscaling on, the controller HPA scales the controller Deployment on CPU and
    // owned applications.
    let objs = render(
        "flotilla",
        &[],
        &[
            "controller.autoscaling.enabled=true".into(),
            "controller.autoscaling.targetOwnedApplications=2000".into(),
        ],
    )?;
    let hpa = named(&objs, "HorizontalPodAutoscaler", "flotilla-controller")?;
    ensure!(hpa["spec"]["scaleTargetRef"]["name"] == "flotilla-controller");
    ensure!(hpa["spec"]["metrics"].as_array().is_some_and(|ms| {
        ms.iter()
            .any(|m| m["pods"]["metric"]["name"] == "flotilla_owned_applications")
    }));

    // bundled: a Redis Cluster StatefulSet and the URL pointing at it.
    let objs = render("flotilla", &[example("values-bundled-redis.yaml")], &[])?;
    ensure!(named(&objs, "StatefulSet", "flotilla-redis")?["spec"]["replicas"] == 3);
    let url = env_of(
        container(named(&objs, "Deployment", "flotilla-controller")?)?,
        "FLOTILLA_REDIS_URL",
    )
    .context("bundled Redis URL")?;
    ensure!(url["value"].as_str().is_some_and(|u| u.starts_with(
        "redis-cluster://:$(FLOTILLA_REDIS_PASSWORD)@flotilla-redis-0.flotilla-redis."
    )));
    // The bundled Redis requires the generated password, and the clients carry it; both
    // components carry the generated repo-server token.
    let redis_args = container(named(&objs, "StatefulSet", "flotilla-redis")?)?["args"].clone();
    ensure!(
        redis_args.as_array().is_some_and(|a| a
            .windows(2)
            .any(|w| w[0] == "--requirepass" && w[1] == "$(REDISCLI_AUTH)")),
        "{redis_args}"
    );
    let secret = named(&objs, "Secret", "flotilla-redis-auth")?;
    ensure!(
        secret["data"]["password"]
            .as_str()
            .is_some_and(|p| p.len() >= 40)
    );
    // gRPC is TLS by default: the repo-server serves the generated certificate and the
    // controller verifies it against the generated CA.
    let tls = named(&objs, "Secret", "flotilla-repo-server-tls")?;
    ensure!(tls["type"] == "kubernetes.io/tls");
    let rs_args =
        str_list(&container(named(&objs, "Deployment", "flotilla-repo-server")?)?["args"]);
    ensure!(
        rs_args.iter().any(|a| a.starts_with("--tls-cert=")),
        "{rs_args:?}"
    );
    ensure!(!rs_args.iter().any(|a| a == "--plaintext"), "{rs_args:?}");
    let c_args = str_list(&container(named(&objs, "Deployment", "flotilla-controller")?)?["args"]);
    ensure!(
        c_args.iter().any(|a| a.starts_with("--repo-server-ca=")),
        "{c_args:?}"
    );
    let token = named(&objs, "Secret", "flotilla-repo-server-token")?;
    ensure!(
        token["data"]["token"]
            .as_str()
            .is_some_and(|t| t.len() >= 60)
    );
    for d in ["flotilla-controller", "flotilla-repo-server"] {
        let c = container(named(&objs, "Deployment", d)?)?;
        let e = env_of(c, "FLOTILLA_REPO_SERVER_TOKEN").context("token env")?;
        ensure!(
            e.pointer("/valueFrom/secretKeyRef/name")
                == Some(&serde_json::json!("flotilla-repo-server-token")),
            "{d}: {e}"
        );
    }

    // NOTES.txt tells how to reach the API and sign in as the local admin.
    let text = notes(&[], &[])?;
    for want in [
        "kubectl -n argocd port-forward svc/flotilla-server 8080:80",
        "kubectl -n argocd get secret flotilla-initial-admin-secret -o jsonpath='{.data.token}' | base64 -d",
        "flotilla login http://localhost:8080",
    ] {
        ensure!(text.contains(want), "NOTES.txt lacks {want:?}:\n{text}");
    }
    let text = notes(&[example("values-ha.yaml")], &[])?;
    ensure!(
        text.contains("flotilla login https://flotilla.example.com"),
        "{text}"
    );
    let text = notes(&[], &["server.enabled=false".into()])?;
    ensure!(!text.contains("flotilla login"), "{text}");

    // Bad values are refused by the schema with a message that names the field.
    let (ok, text) = lint(&[], &["redis.mode=bogus".into()])?;
    ensure!(!ok && text.contains("/redis/mode"), "{text}");
    let (ok, text) = lint(&[], &["controller.shardBalance=random".into()])?;
    ensure!(!ok && text.contains("shardBalance"), "{text}");
    let (ok, text) = lint(&[], &["server.ingress.host=a.example.com".into()])?;
    ensure!(!ok && text.contains("/server/ingress"), "{text}");
    let (ok, text) = lint(&[], &["server.service.type=External".into()])?;
    ensure!(!ok && text.contains("/server/service/type"), "{text}");
    Ok(())
}

/// A RBAC rule of a Role or ClusterRole.
#[derive(Debug, Clone)]
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    names: Vec<String>,
    namespaced: bool,
}

/// The rules of the Roles and ClusterRoles named `roles`.
fn rules(objs: &[Value], roles: &[&str]) -> Vec<Rule> {
    let mut out = Vec::new();
    for o in objs {
        let namespaced = match o["kind"].as_str() {
            Some("Role") => true,
            Some("ClusterRole") => false,
            _ => continue,
        };
        if !roles.iter().any(|r| o["metadata"]["name"] == *r) {
            continue;
        }
        for r in o["rules"].as_array().into_iter().flatten() {
            if r.get("nonResourceURLs").is_some() {
                continue;
            }
            out.push(Rule {
                groups: str_list(&r["apiGroups"]),
                resources: str_list(&r["resources"]),
                verbs: str_list(&r["verbs"]),
                names: str_list(&r["resourceNames"]),
                namespaced,
            });
        }
    }
    out
}

/// One control-plane request as RBAC sees it.
#[derive(Debug)]
struct Request {
    verb: String,
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    namespace: String,
    name: String,
}

/// Every request of `who` is allowed by `rbac`, and every (resource, verb) a rule grants was
/// used, except the `not_exercised` ones ("verb resource").
fn check_rbac(
    who: &str,
    requests: &[Request],
    rbac: &[Rule],
    not_exercised: &[&str],
) -> Result<()> {
    ensure!(!requests.is_empty(), "{who} made no requests");
    let mut unmatched = BTreeSet::new();
    let mut used = BTreeSet::new();
    for r in requests {
        let hit = rbac.iter().enumerate().find(|(_, rule)| {
            (!rule.namespaced || r.namespace == NS)
                && rule.groups.contains(&r.group)
                && rule.resources.contains(&r.resource)
                && rule.verbs.contains(&r.verb)
                && (rule.names.is_empty() || rule.names.contains(&r.name))
        });
        match hit {
            Some((i, _)) => {
                used.insert((i, r.resource.clone(), r.verb.clone()));
            }
            None => {
                unmatched.insert(format!(
                    "{} {}/{} {:?} in {:?}",
                    r.verb, r.group, r.resource, r.name, r.namespace
                ));
            }
        }
    }
    ensure!(
        unmatched.is_empty(),
        "requests the chart's RBAC does not allow {who}: {unmatched:?}"
    );
    let mut unused = Vec::new();
    for (i, rule) in rbac.iter().enumerate() {
        for res in &rule.resources {
            for verb in &rule.verbs {
                let what = format!("{verb} {res}");
                if !used.contains(&(i, res.clone(), verb.clone()))
                    && !not_exercised.contains(&what.as_str())
                {
                    unused.push(format!("{verb} {}/{res}", rule.groups.join(",")));
                }
            }
        }
    }
    ensure!(
        unused.is_empty(),
        "RBAC grants what {who} never used: {unused:?}"
    );
    Ok(())
}

/// Exactly what the API server's Role and ClusterRole grant (see templates/rbac.yaml).
const SERVER_GRANTS: &[&str] = &[
    // Stores, and the actions: sync, refresh, rollback and the finalizers before a delete
    // are merge patches, terminate patches status.operationState.
    "get argoproj.io/applications",
    "list argoproj.io/applications",
    "watch argoproj.io/applications",
    "patch argoproj.io/applications",
    "delete argoproj.io/applications",
    // Applications created through the API.
    "create argoproj.io/applications",
    "patch argoproj.io/applications/status",
    // Stores, and project role tokens (recorded in spec.roles[].jwtTokens).
    "get argoproj.io/appprojects",
    "list argoproj.io/appprojects",
    "watch argoproj.io/appprojects",
    "create argoproj.io/appprojects",
    "update argoproj.io/appprojects",
    "delete argoproj.io/appprojects",
    // The controllers' shard Leases: which replica owns a cluster, and where it listens.
    "get coordination.k8s.io/leases",
    "list coordination.k8s.io/leases",
    "watch coordination.k8s.io/leases",
    "get /configmaps [\"argocd-cm\", \"argocd-rbac-cm\"]",
    "list /configmaps [\"argocd-cm\", \"argocd-rbac-cm\"]",
    "watch /configmaps [\"argocd-cm\", \"argocd-rbac-cm\"]",
    // Cluster and repository Secrets (listing; never returned), the admin's Secret,
    // argocd-secret's server.secretkey (created, or added to one that lacks it).
    "get /secrets",
    "list /secrets",
    "watch /secrets",
    "create /secrets",
    "update /secrets",
    "patch /secrets",
    "delete /secrets",
    // The audit trail; an app's events.
    "create events.k8s.io/events",
    "list events.k8s.io/events",
    "cluster-wide create authentication.k8s.io/tokenreviews",
];

/// The API server's grants for actions and sign-in methods this test does not drive.
const SERVER_GRANTS_NOT_EXERCISED: &[&str] = &[
    "get applications",
    "patch applications/status",
    "get appprojects",
    "get leases",
    "get configmaps",
    "create appprojects",
    "delete appprojects",
    "delete secrets",
    // A sign-out recording its session as revoked in argocd-secret (api_session.rs).
    "patch secrets",
];

/// The token kubesim maps to the API server's ServiceAccount in the apply test.
const SERVER_SA_TOKEN: &str = "chart-server-sa-token";

/// The status token the chart's generated Secret holds in the apply test.
const STATUS_TOKEN: &str = "chart-status-token";

/// Wait until the Application `name` is gone (its finalizers done).
async fn wait_deleted(fleet: &Fleet, name: &str) -> Result<()> {
    use flotilla_controller::types::Application;
    let apps: kube::Api<Application> = kube::Api::namespaced(fleet.control().clone(), NS);
    flotilla_tests::eventually("app deleted", Duration::from_secs(30), || async {
        Ok(apps.get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

/// A plain HTTP/1.0 DELETE (status, body) to `addr` (host:port) with extra headers.
async fn http_delete(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("DELETE {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Standard base64 (the encoding of Secret data).
fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let out = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = out?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(s.as_bytes())?;
    let o = child.wait_with_output()?;
    ensure!(o.status.success(), "base64 -d");
    Ok(o.stdout)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `$(NAME)` references to `env` expanded as the kubelet does (unknown ones stay as they are,
/// `$$` is a literal `$`).
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some((name, t)) = tail
            .strip_prefix("$(")
            .and_then(|t| t.split_once(')'))
            .filter(|(n, _)| env.iter().any(|(k, _)| k == n))
        {
            let value = env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
            out.push_str(value.map(String::as_str).unwrap_or_default());
            rest = t;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The pod IP the downward API gives a pod run on this host.
const POD_IP: &str = "127.0.0.1";

/// The args and env a chart Deployment gives its container, with the downward API, Secret
/// references and `$(VAR)` references resolved the way the kubelet would (`pod` is the pod's
/// name; its IP is [`POD_IP`]).
fn command_of(
    objs: &[Value],
    deployment: &str,
    pod: &str,
    secrets: &BTreeMap<(String, String), String>,
) -> Result<(Vec<String>, Env)> {
    let c = container(named(objs, "Deployment", deployment)?)?;
    let mut env: Env = Vec::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().context("env name")?.to_string();
        if let Some(v) = e["value"].as_str() {
            // An env value sees the variables defined before it.
            let v = expand(v, &env);
            env.push((name, v));
        } else if e.pointer("/valueFrom/fieldRef/fieldPath") == Some(&json!("metadata.name")) {
            env.push((name, pod.to_string()));
        } else if e.pointer("/valueFrom/fieldRef/fieldPath") == Some(&json!("status.podIP")) {
            env.push((name, POD_IP.to_string()));
        } else if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
            let key = (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["key"].as_str().unwrap_or_default().to_string(),
            );
            match secrets.get(&key) {
                Some(v) => env.push((name, v.clone())),
                None if r["optional"] == true => {}
                None => bail!("{deployment}: Secret {key:?} is missing"),
            }
        } else {
            bail!("{deployment}: env {name} has a source this test cannot resolve: {e}");
        }
    }
    // Args see every env var of the container.
    let args = str_list(&c["args"])
        .iter()
        .map(|a| expand(a, &env))
        .collect();
    Ok((args, env))
}

/// Environment variables as (name, value).
type Env = Vec<(String, String)>;

async fn wait_ready(metrics: &str) -> Result<()> {
    flotilla_tests::eventually("/readyz", Duration::from_secs(60), || async {
        Ok(matches!(http_get(metrics, "/readyz").await, Ok((200, _))).then_some(()))
    })
    .await
}

/// Prometheus Operator's ServiceMonitor CRD, as far as SSA needs it (the operator ships it).
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_objects_apply_and_the_binaries_run_with_the_charts_args() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        controllers: 0,
        redis_masters: 3,
        ..Default::default()
    })
    .await?;
    let sim = fleet.sim.in_process()?;
    fleet.apply(SERVICE_MONITOR_CRD).await?;

    // Every values set's objects are accepted by server-side apply (one release each).
    for (release, values) in [
        ("flotilla", vec![]),
        ("ha", vec![example("values-ha.yaml")]),
        ("trial", vec![example("values-bundled-redis.yaml")]),
    ] {
        let objs = render(release, &values, &["crds.install=false".into()])?;
        for o in &objs {
            fleet
                .apply(&serde_json::to_string(o)?)
                .await
                .with_context(|| format!("{release}: {} {}", o["kind"], o["metadata"]["name"]))?;
        }
    }
    // The chart's CRDs replace the fleet's (they are the same; SSA takes them over).
    for crd in of_kind(&render("flotilla", &[], &[])?, "CustomResourceDefinition") {
        fleet.apply(&serde_json::to_string(crd)?).await?;
    }

    // The ha release as it would run, on this machine's free ports, without the in-cluster
    // destination (so its RBAC is the whole story), Redis from the Secret it names.
    let redis_url = fleet.redis.as_ref().context("redis")?.url();
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: flotilla-redis, namespace: {NS}}}\nstringData: {{url: {redis_url:?}}}\n"
        ))
        .await?;
    // The generated repo-server and status tokens as the chart's Secrets would hold them.
    let secrets = BTreeMap::from([
        (("flotilla-redis".to_string(), "url".to_string()), redis_url),
        (
            (
                "flotilla-repo-server-token".to_string(),
                "token".to_string(),
            ),
            "chart-test-token".to_string(),
        ),
        (
            ("flotilla-status-token".to_string(), "token".to_string()),
            STATUS_TOKEN.to_string(),
        ),
    ]);
    let (grpc, repo_metrics) = (free_port()?, free_port()?);
    let base = vec![
        format!("repoServer.port={grpc}"),
        format!("repoServer.metricsPort={repo_metrics}"),
        format!("controller.repoServerAddress=https://127.0.0.1:{grpc}"),
        // On this host the repo-server is reached by its address, not its Service name.
        "repoServer.tls.extraIPs={127.0.0.1}".to_string(),
        "controller.inClusterDestination=false".to_string(),
        "controller.webhook.enabled=false".to_string(),
    ];
    let ha = vec![example("values-ha.yaml")];
    let objs = render("flotilla", &ha, &base)?;
    let dir = tempfile::tempdir()?;
    // The one thing a cluster gives a pod that a process here lacks: API credentials.
    let platform = [
        (
            "FLOTILLA_KUBECONFIG".to_string(),
            fleet.kubeconfig.display().to_string(),
        ),
        (
            "FLOTILLA_CONTEXT".to_string(),
            fleet.sim.control_plane_name(),
        ),
    ];
    let spawn = |name: &str, bin: &str, args: &[String], env: &[(String, String)]| {
        let env: Vec<(&str, &str)> = env
            .iter()
            .chain(platform.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Proc::spawn(
            name,
            &process::binary(bin)?,
            args,
            dir.path().join(format!("{name}.log")),
            &env,
        )
    };
    // The generated TLS Secret, mounted as the kubelet would: files under a directory the
    // args point at. Every later render generates another CA, so this one serves them all.
    let tls_secret = named(&objs, "Secret", "flotilla-repo-server-tls")?;
    let tls_dir = dir.path().join("repo-server-tls");
    std::fs::create_dir_all(&tls_dir)?;
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        let b64 = tls_secret["data"][key].as_str().context("tls secret key")?;
        std::fs::write(tls_dir.join(key), base64_decode(b64)?)?;
    }
    let mounted = |args: Vec<String>| -> Vec<String> {
        args.into_iter()
            .map(|a| {
                a.replace(
                    "/etc/flotilla/repo-server-tls",
                    &tls_dir.display().to_string(),
                )
                .replace(
                    "/etc/flotilla/repo-server-ca",
                    &tls_dir.display().to_string(),
                )
            })
            .collect()
    };
    let (args, env) = command_of(
        &objs,
        "flotilla-repo-server",
        "flotilla-repo-server-0",
        &secrets,
    )?;
    let args = mounted(args);
    let _repo = spawn("repo-server", "flotilla-repo-server", &args, &env)?;
    wait_ready(&format!("127.0.0.1:{repo_metrics}")).await?;
    // Two controller pods; on one host their metrics ports must differ.
    let mut controllers = Vec::new();
    for pod in ["flotilla-controller-a", "flotilla-controller-b"] {
        let port = free_port()?;
        let mut sets = base.clone();
        sets.push(format!("controller.metricsPort={port}"));
        let objs = render("flotilla", &ha, &sets)?;
        let (args, env) = command_of(&objs, "flotilla-controller", pod, &secrets)?;
        let args = mounted(args);
        let p = spawn(pod, "flotilla-controller", &args, &env)?;
        controllers.push((pod, format!("127.0.0.1:{port}"), p));
    }
    for (_, m, _) in &controllers {
        wait_ready(m).await?;
    }
    // Each replica publishes $(POD_IP):<metrics port> on its Lease, in the chart's shard group,
    // and serves its status routes to the chart's status token only.
    let leases: kube::Api<Lease> = kube::Api::namespaced(fleet.control().clone(), NS);
    for (pod, m, _) in &controllers {
        let published = flotilla_tests::eventually(
            "a Lease with the status address",
            Duration::from_secs(30),
            || async {
                Ok(leases
                    .list(&Default::default())
                    .await?
                    .items
                    .into_iter()
                    .find(|l| {
                        l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(pod)
                    })
                    .filter(|l| {
                        l.metadata
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key(STATUS_ADDRESS_ANNOTATION))
                    }))
            },
        )
        .await?;
        ensure!(
            published
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(STATUS_ADDRESS_ANNOTATION))
                == Some(m),
            "{pod} advertises {:?}, not {POD_IP}:<metrics port>",
            published.metadata.annotations
        );
        ensure!(
            published
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(GROUP_LABEL))
                == Some(&"flotilla-controller".to_string()),
            "{pod}: shard group {:?}",
            published.metadata.labels
        );
        // Requests signed with the chart's status token for this address are answered; the
        // token itself (as a bearer) is not a credential there, nor a signature for another
        // address.
        use flotilla_core::status_auth::{SIGNATURE_HEADER, TIME_HEADER, now, sign_request};
        let t = now();
        let signed_for =
            |addr: &str| sign_request(STATUS_TOKEN, t, "GET", addr, "/status/replica", b"");
        let (code, _) = http_get_with(
            m,
            "/status/replica",
            &[
                (TIME_HEADER, &t.to_string()),
                (SIGNATURE_HEADER, &signed_for(m)),
            ],
        )
        .await?;
        ensure!(
            code == 200,
            "{pod}: /status/replica signed with the status token: {code}"
        );
        let bearer = format!("Bearer {STATUS_TOKEN}");
        for (what, headers) in [
            ("no signature", vec![]),
            (
                "the token as a bearer",
                vec![("Authorization".to_string(), bearer.clone())],
            ),
            (
                "a signature for another address",
                vec![
                    (TIME_HEADER.to_string(), t.to_string()),
                    (SIGNATURE_HEADER.to_string(), signed_for("10.0.0.1:8082")),
                ],
            ),
        ] {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let (code, _) = http_get_with(m, "/status/replica", &h).await?;
            ensure!(code == 401, "{pod}: /status/replica with {what}: {code}");
        }
    }

    // A sync end to end (a deletion with the resources finalizer follows, through the API).
    fleet
        .git
        .commit_files(&[("web/cm.yaml", CONFIG_MAP)], "web")?;
    fleet
        .apply(&auto_synced_app(&fleet, "web", "web", "cluster-001", &[]))
        .await?;
    fleet
        .apply(&auto_synced_app(
            &fleet,
            "gone",
            "web",
            "cluster-002",
            &["resources-finalizer.argocd.argoproj.io"],
        ))
        .await?;
    wait_synced_healthy(&fleet, "web").await?;
    wait_synced_healthy(&fleet, "gone").await?;
    // An ApplicationSet creates its Applications, then deletes the one it no longer generates.
    let set = |elements: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata: {{name: gen, namespace: {NS}}}\nspec:\n  generators:\n  - list:\n      elements: [{elements}]\n  template:\n    metadata: {{name: 'gen-{{{{env}}}}'}}\n    spec:\n      project: default\n      source: {{repoURL: {url}, targetRevision: main, path: web}}\n      destination: {{name: cluster-001, namespace: 'gen-{{{{env}}}}'}}\n      syncPolicy: {{automated: {{}}, syncOptions: [CreateNamespace=true]}}\n",
            url = fleet.git.url()
        )
    };
    fleet.apply(&set("{env: a}, {env: b}")).await?;
    wait_synced_healthy(&fleet, "gen-a").await?;
    wait_synced_healthy(&fleet, "gen-b").await?;
    fleet.apply(&set("{env: a}")).await?;
    wait_deleted(&fleet, "gen-b").await?;
    // A refresh asked by annotation (what a Git push does) is honoured and cleared by the
    // set's owner.
    let appsets: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        fleet.control().clone(),
        NS,
        &flotilla_controller::appset_controller::appset_resource(),
    );
    appsets
        .patch(
            "gen",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {
                flotilla_controller::appset_controller::REFRESH_ANNOTATION: "true"}}})),
        )
        .await?;
    flotilla_tests::eventually("refresh cleared", Duration::from_secs(30), || async {
        let s = appsets.get("gen").await?;
        Ok((!s
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(flotilla_controller::appset_controller::REFRESH_ANNOTATION))
        .then_some(()))
    })
    .await?;

    // The API server as the chart runs it, on a free port, signed in to the control plane as
    // its own ServiceAccount (so the request log shows exactly what its RBAC must allow), with
    // the local admin bootstrapped into flotilla-initial-admin-secret (no --admin-token).
    let server_user = format!("system:serviceaccount:{NS}:flotilla-server");
    sim.add_token(SERVER_SA_TOKEN, &server_user);
    let mut kubeconfig: Value = serde_yaml::from_str(&std::fs::read_to_string(&fleet.kubeconfig)?)?;
    for u in kubeconfig["users"]
        .as_array_mut()
        .context("kubeconfig users")?
    {
        u["user"] = json!({"token": SERVER_SA_TOKEN});
    }
    // An argocd-secret without a signing key, as an Argo CD install may leave it: the server
    // adds server.secretkey to it.
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: argocd-secret, namespace: {NS}}}\nstringData: {{admin.passwordMtime: \"2024-01-01T00:00:00Z\"}}\n"
        ))
        .await?;
    let server_kubeconfig = dir.path().join("server-kubeconfig.yaml");
    std::fs::write(&server_kubeconfig, serde_yaml::to_string(&kubeconfig)?)?;
    let api_port = free_port()?;
    let mut sets = base.clone();
    sets.push(format!("server.port={api_port}"));
    let (args, env) = command_of(
        &render("flotilla", &ha, &sets)?,
        "flotilla-server",
        "flotilla-server-a",
        &secrets,
    )?;
    ensure!(
        !args.iter().any(|a| a.starts_with("--admin-token")),
        "{args:?}"
    );
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server_kubeconfig = server_kubeconfig.display().to_string();
    let context = fleet.sim.control_plane_name();
    env.push(("FLOTILLA_KUBECONFIG", &server_kubeconfig));
    env.push(("FLOTILLA_CONTEXT", &context));
    let _server = Proc::spawn(
        "flotilla-server",
        &process::binary("flotilla-server")?,
        &args,
        dir.path().join("flotilla-server.log"),
        &env,
    )?;
    let api = format!("127.0.0.1:{api_port}");
    wait_ready(&api)
        .await
        .with_context(|| format!("flotilla-server:\n{}", _server.tail(40)))?;
    let admin: kube::Api<Secret> = kube::Api::namespaced(fleet.control().clone(), NS);
    let admin = admin.get("flotilla-initial-admin-secret").await?;
    let token = admin
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|t| String::from_utf8_lossy(&t.0).to_string())
        .context("the admin token")?;
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let (code, body) = http_get_with(&api, "/api/v1/applications", &auth).await?;
    ensure!(code == 200 && body.contains("\"web\""), "{code} {body}");
    let (code, _) = http_get(&api, "/api/v1/applications").await?;
    ensure!(code == 401, "no token: {code}");
    // A token nobody issued (JWT-shaped, as ServiceAccount tokens are) is refused after the
    // control plane's TokenReview said so.
    let (code, _) = http_get_with(
        &api,
        "/api/v1/applications",
        &[(
            "Authorization",
            "Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIiwic3ViIjoibm9ib2R5In0.c2ln",
        )],
    )
    .await?;
    ensure!(code == 401, "an unknown token: {code}");
    let (code, body) = http_post(
        &api,
        &format!("/api/v1/applications/{NS}/web/sync"),
        &auth,
        b"{}",
    )
    .await?;
    ensure!(code == 200, "sync through the API: {code} {body}");
    let (code, body) = http_post(
        &api,
        &format!("/api/v1/applications/{NS}/web/refresh"),
        &auth,
        b"",
    )
    .await?;
    ensure!(code == 200, "refresh through the API: {code} {body}");
    wait_synced_healthy(&fleet, "web").await?;
    // What only the owning controller has, asked of it at the address its Lease advertises
    // with the status token both got from the chart's Secret.
    let path = format!("/api/v1/applications/{NS}/web/resources");
    let body = flotilla_tests::eventually(
        "the web app's resources through the API",
        Duration::from_secs(30),
        || async {
            let (code, body) = http_get_with(&api, &path, &auth).await?;
            Ok((code == 200).then_some(body))
        },
    )
    .await?;
    ensure!(body.contains("\"settings\""), "{body}");
    let (code, body) = http_get_with(
        &api,
        &format!("/api/v1/applications/{NS}/web/events"),
        &auth,
    )
    .await?;
    ensure!(code == 200, "events: {code} {body}");
    let (code, body) = http_get_with(&api, "/api/v1/fleet", &auth).await?;
    ensure!(
        code == 200 && controllers.iter().all(|(pod, _, _)| body.contains(pod)),
        "the fleet view names both replicas: {code} {body}"
    );
    // A project role token: issued by the server (signed with argocd-secret's key, recorded
    // in the role's jwtTokens) and accepted by it.
    let projects: kube::Api<flotilla_controller::types::AppProject> =
        kube::Api::namespaced(fleet.control().clone(), NS);
    projects
        .patch(
            "default",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"roles": [{"name": "ci"}]}})),
        )
        .await?;
    let path = "/api/v1/projects/default/roles/ci/token";
    let body =
        flotilla_tests::eventually("a project role token", Duration::from_secs(30), || async {
            let (code, body) = http_post(&api, path, &auth, b"{}").await?;
            Ok((code == 200).then_some(body))
        })
        .await?;
    let project_token: Value = serde_json::from_str(&body).with_context(|| body.clone())?;
    let project_token = project_token["token"]
        .as_str()
        .with_context(|| format!("no token in {body}"))?
        .to_string();
    let project_bearer = format!("Bearer {project_token}");
    flotilla_tests::eventually(
        "the project token accepted",
        Duration::from_secs(30),
        || async {
            let (code, _) = http_get_with(
                &api,
                "/api/v1/applications",
                &[("Authorization", project_bearer.as_str())],
            )
            .await?;
            Ok((code == 200).then_some(()))
        },
    )
    .await?;
    let settings: kube::Api<Secret> = kube::Api::namespaced(fleet.control().clone(), NS);
    let settings = settings.get("argocd-secret").await?;
    ensure!(
        settings.data.as_ref().is_some_and(
            |d| d.contains_key("server.secretkey") && d.contains_key("admin.passwordMtime")
        ),
        "argocd-secret keeps its keys and gains server.secretkey"
    );
    // A deletion with the resources finalizer, through the API.
    let (code, body) = http_delete(
        &api,
        &format!("/api/v1/applications/{NS}/gone?cascade=true"),
        &auth,
    )
    .await?;
    ensure!(code == 200, "delete through the API: {code} {body}");
    wait_deleted(&fleet, "gone").await?;
    // An Application created through the API.
    let made = json!({"metadata": {"name": "made", "namespace": NS},
        "spec": {"project": "default",
                 "source": {"repoURL": fleet.git.url(), "targetRevision": "main", "path": "web"},
                 "destination": {"name": "cluster-002", "namespace": "made"}}});
    let (code, body) = http_post(
        &api,
        "/api/v1/applications",
        &auth,
        made.to_string().as_bytes(),
    )
    .await?;
    ensure!(code == 200, "create through the API: {code} {body}");

    // The dashboard and the HPAs only name metrics the binaries export.
    let mut texts = Vec::new();
    for (_, m, _) in &controllers {
        texts.push(http_get(m, "/metrics").await?.1);
    }
    texts.push(
        http_get(&format!("127.0.0.1:{repo_metrics}"), "/metrics")
            .await?
            .1,
    );
    let exported: BTreeSet<String> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let dashboard = std::fs::read_to_string(chart_dir().join("files/dashboard.json"))?;
    let mut referenced = BTreeSet::new();
    for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("flotilla_") {
            referenced.insert(word.to_string());
        }
    }
    referenced.insert("flotilla_owned_applications".into());
    referenced.insert("flotilla_repo_renders_waiting".into());
    let missing: Vec<&String> = referenced
        .iter()
        .filter(|w| {
            let base = ["_bucket", "_total", "_count", "_sum"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w);
            !exported.contains(*w) && !exported.contains(base)
        })
        .collect();
    ensure!(missing.is_empty(), "not exported: {missing:?}");
    let total = metric_sum(&texts[..1], "flotilla_clusters", &[]);
    ensure!(
        metric_sum(&texts[..2], "flotilla_owned_clusters", &[]) == total,
        "owned clusters sum to {total}"
    );

    // SIGTERM one replica: the other owns every cluster long before the Lease (10 s) expires.
    let (_, survivor, _) = &controllers[1];
    let survivor = survivor.clone();
    let (pod, _, mut first) = controllers.remove(0);
    let started = Instant::now();
    tokio::task::block_in_place(|| first.stop(Duration::from_secs(20)));
    flotilla_tests::eventually("hand-over", Duration::from_secs(30), || async {
        let text = http_get(&survivor, "/metrics").await?.1;
        Ok((metric_sum(&[text], "flotilla_owned_clusters", &[]) == total).then_some(()))
    })
    .await?;
    let handover = started.elapsed();
    ensure!(
        handover < Duration::from_secs(5),
        "{pod} stopped; clusters taken over after {handover:?}"
    );
    eprintln!("SIGTERM hand-over: {handover:?}");

    // RBAC: every control-plane request the controllers and the API server made is allowed by
    // their own chart rules, and every rule was needed (the API server's grants for features
    // this run does not exercise are named).
    let log = sim.control_plane().log.since(0);
    let requests = |who: &dyn Fn(&kubesim::audit::RequestRecord) -> bool| -> Vec<Request> {
        log.iter()
            .filter(|r| who(r) && r.verb != "discovery")
            .flat_map(|r| {
                let req = |verb: &str| Request {
                    verb: verb.to_string(),
                    group: r.group.clone(),
                    resource: if r.subresource.is_empty() {
                        r.resource.clone()
                    } else {
                        format!("{}/{}", r.resource, r.subresource)
                    },
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                };
                // A server-side apply that creates the object is authorized as create too.
                let mut out = vec![req(&r.verb)];
                if r.verb == "patch" && r.code == 201 {
                    out.push(req("create"));
                }
                out
            })
            .collect()
    };
    check_rbac(
        "the controller",
        &requests(&|r| r.user_agent.starts_with("flotilla-controller")),
        &rules(&objs, &["flotilla-controller"]),
        &[],
    )?;
    let server_rules = rules(&objs, &["flotilla-server", "flotilla-server-tokenreview"]);
    let granted: BTreeSet<String> = server_rules
        .iter()
        .flat_map(|r| {
            r.verbs.iter().flat_map(move |v| {
                r.resources.iter().map(move |res| {
                    format!(
                        "{}{v} {}/{res}{}",
                        if r.namespaced { "" } else { "cluster-wide " },
                        r.groups.join(","),
                        if r.names.is_empty() {
                            String::new()
                        } else {
                            format!(" {:?}", r.names)
                        }
                    )
                })
            })
        })
        .collect();
    let expected: BTreeSet<String> = SERVER_GRANTS.iter().map(|g| g.to_string()).collect();
    ensure!(
        granted == expected,
        "the API server's RBAC: {granted:#?}, expected exactly {expected:#?}"
    );
    check_rbac(
        "the API server",
        &requests(&|r| r.user == server_user),
        &server_rules,
        SERVER_GRANTS_NOT_EXERCISED,
    )?;
    Ok(())
}
