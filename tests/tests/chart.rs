//! The Helm chart, proven with Helm's own engine (`helm`, or the helm-python-sdk shim the test
//! set-up installs): it lints and renders hardened objects for the default, `ha`, bundled-Redis
//! and no-Redis values; every object is accepted by kubesim through server-side apply; the
//! binaries run with exactly the args and env the chart's Deployments give them and sync an
//! app; the RBAC rules cover every API call the controller made and nothing more; the
//! dashboard and HPAs only name metrics the binaries export; SIGTERM hands clusters over at
//! once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use flotilla_loadtest::fleet::process::{self, Proc};
use flotilla_loadtest::fleet::{Fleet, FleetConfig, http_get, metric_sum};
use flotilla_tests::e2e::*;
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
            of_kind(&objs, "CustomResourceDefinition").len() == 2,
            "{what}: CRDs"
        );
        ensure!(
            of_kind(&objs, "PodDisruptionBudget").len() == 2,
            "{what}: PDBs"
        );
        ensure!(
            of_kind(&objs, "NetworkPolicy").len() >= 2,
            "{what}: NetworkPolicies"
        );
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
        names == BTreeSet::from(["flotilla-controller-metrics", "flotilla-repo-server"]),
        "ServiceMonitor selects {names:?}"
    );
    let port = sm["spec"]["endpoints"][0]["port"].clone();
    for s in selected {
        ensure!(
            s["spec"]["ports"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == port)),
            "Service {} has the monitored port {port}",
            s["metadata"]["name"]
        );
    }
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

    // Bad values are refused by the schema with a message that names the field.
    let (ok, text) = lint(&[], &["redis.mode=bogus".into()])?;
    ensure!(!ok && text.contains("/redis/mode"), "{text}");
    let (ok, text) = lint(&[], &["controller.shardBalance=random".into()])?;
    ensure!(!ok && text.contains("shardBalance"), "{text}");
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

fn rules(objs: &[Value]) -> Vec<Rule> {
    let mut out = Vec::new();
    for o in objs {
        let namespaced = match o["kind"].as_str() {
            Some("Role") => true,
            Some("ClusterRole") => false,
            _ => continue,
        };
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

/// Application deleted with Argo CD's finalizer (exercises the finalizer patch).
async fn delete_with_finalizer(fleet: &Fleet, name: &str) -> Result<()> {
    use flotilla_controller::types::Application;
    let apps: kube::Api<Application> = kube::Api::namespaced(fleet.control().clone(), NS);
    apps.delete(name, &Default::default()).await?;
    flotilla_tests::eventually("app deleted", Duration::from_secs(30), || async {
        Ok(apps.get_opt(name).await?.is_none().then_some(()))
    })
    .await
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

/// The args and env a chart Deployment gives its container, with the downward API and Secret
/// references resolved the way the kubelet would (`pod` is the pod's name).
fn command_of(
    objs: &[Value],
    deployment: &str,
    pod: &str,
    secrets: &BTreeMap<(String, String), String>,
) -> Result<(Vec<String>, Env)> {
    let c = container(named(objs, "Deployment", deployment)?)?;
    let args = str_list(&c["args"]);
    let mut env = Vec::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().context("env name")?.to_string();
        if let Some(v) = e["value"].as_str() {
            env.push((name, v.to_string()));
        } else if e.pointer("/valueFrom/fieldRef/fieldPath") == Some(&json!("metadata.name")) {
            env.push((name, pod.to_string()));
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
    // The generated repo-server token as the chart's Secret would hold it.
    let secrets = BTreeMap::from([
        (("flotilla-redis".to_string(), "url".to_string()), redis_url),
        (
            (
                "flotilla-repo-server-token".to_string(),
                "token".to_string(),
            ),
            "chart-test-token".to_string(),
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

    // A sync end to end, then a deletion with the resources finalizer.
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
    delete_with_finalizer(&fleet, "gone").await?;

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

    // RBAC: every control-plane request the controllers made is allowed by the chart's rules,
    // and every rule was needed.
    let rbac = rules(&objs);
    let mut unmatched = BTreeSet::new();
    let mut used = BTreeSet::new();
    for r in sim.control_plane().log.since(0) {
        if !r.user_agent.starts_with("flotilla-controller") || r.verb == "discovery" {
            continue;
        }
        let resource = if r.subresource.is_empty() {
            r.resource.clone()
        } else {
            format!("{}/{}", r.resource, r.subresource)
        };
        let hit = rbac.iter().enumerate().find(|(_, rule)| {
            (!rule.namespaced || r.namespace == NS)
                && rule.groups.contains(&r.group)
                && rule.resources.contains(&resource)
                && rule.verbs.contains(&r.verb)
                && (rule.names.is_empty() || rule.names.contains(&r.name))
        });
        match hit {
            Some((i, _)) => {
                used.insert((i, resource, r.verb.clone()));
            }
            None => {
                unmatched.insert(format!(
                    "{} {}/{} in {:?}",
                    r.verb, r.group, resource, r.namespace
                ));
            }
        }
    }
    ensure!(
        unmatched.is_empty(),
        "requests the chart's RBAC does not allow: {unmatched:?}"
    );
    let mut unused = Vec::new();
    for (i, rule) in rbac.iter().enumerate() {
        for res in &rule.resources {
            for verb in &rule.verbs {
                if !used.contains(&(i, res.clone(), verb.clone())) {
                    unused.push(format!("{verb} {}/{res}", rule.groups.join(",")));
                }
            }
        }
    }
    ensure!(
        unused.is_empty(),
        "RBAC grants what the controller never used: {unused:?}"
    );
    Ok(())
}
