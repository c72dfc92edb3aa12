//! kubesim's own behaviour beyond the Kubernetes API: many clusters in one process, the
//! Argo CD-format cluster Secrets, kwok-style status simulation, fault injection, the request
//! log, and the `kube-runtime` watcher surviving cut streams.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use flotilla_loadtest::kubesim::{
    BEHAVIOR_ANNOTATION, FaultSpec, KubeSim, SECRET_TYPE_LABEL, SimConfig, SimSettings,
};
use flotilla_tests::{
    api_status, client_from_kubeconfig, client_with_retry, client_with_token, eventually,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};

async fn start(clusters: usize) -> Result<KubeSim> {
    Ok(KubeSim::start(SimConfig {
        clusters,
        sim: SimSettings {
            ready_delay: Duration::from_millis(200),
            ..SimSettings::default()
        },
        bookmark_interval: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await?)
}

async fn client_for(sim: &KubeSim, cluster: &str) -> Result<Client> {
    client_from_kubeconfig(&sim.kubeconfig_yaml(), Some(cluster)).await
}

fn mk_deploy(name: &str, behavior: Option<&str>) -> Value {
    let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}});
    if let Some(b) = behavior {
        d["metadata"]["annotations"] = json!({BEHAVIOR_ANNOTATION: b});
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clusters_each_with_own_url_and_isolated_state() -> Result<()> {
    let sim = start(20).await?;
    ensure!(sim.clusters().len() == 20);
    let mut urls: Vec<String> = sim.clusters().iter().map(|c| c.url()).collect();
    urls.push(sim.control_plane().url());
    urls.sort();
    urls.dedup();
    ensure!(urls.len() == 21, "every cluster has its own URL");
    let a = client_for(&sim, "cluster-001").await?;
    let b = client_for(&sim, "cluster-002").await?;
    Api::<ConfigMap>::namespaced(a.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "only-in-a"}}))?,
        )
        .await?;
    ensure!(
        Api::<ConfigMap>::namespaced(b, "default")
            .get_opt("only-in-a")
            .await?
            .is_none()
    );
    // Another cluster's token is refused.
    let c2 = sim.cluster("cluster-002").context("cluster-002")?;
    let wrong = client_with_token(&c2.url(), &sim.clusters()[0].token)?;
    let err = Api::<ConfigMap>::namespaced(wrong, "default")
        .list(&ListParams::default())
        .await
        .expect_err("wrong token");
    ensure!(api_status(&err).map(|s| s.code) == Some(401));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_holds_argocd_cluster_secrets_that_work() -> Result<()> {
    let sim = start(3).await?;
    let cp = client_for(&sim, "control-plane").await?;
    let secrets = Api::<Secret>::namespaced(cp, "argocd")
        .list(&ListParams::default().labels(&format!("{SECRET_TYPE_LABEL}=cluster")))
        .await?;
    ensure!(secrets.items.len() == 3, "{}", secrets.items.len());
    for s in secrets.items {
        let data = s.data.context("data")?;
        let field = |k: &str| -> Result<String> {
            Ok(String::from_utf8(
                data.get(k)
                    .with_context(|| format!("{k} missing"))?
                    .0
                    .clone(),
            )?)
        };
        let name = field("name")?;
        let server = field("server")?;
        let config: Value = serde_json::from_str(&field("config")?)?;
        let token = config["bearerToken"].as_str().context("bearerToken")?;
        // The Secret alone is enough to reach the cluster.
        let client = client_with_token(&server, token)?;
        Api::<ConfigMap>::namespaced(client, "default")
            .list(&ListParams::default())
            .await
            .with_context(|| format!("reaching {name} at {server}"))?;
        ensure!(sim.cluster(&name).is_some());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_become_ready_or_stay_progressing_or_degrade() -> Result<()> {
    let sim = start(1).await?;
    let client = client_for(&sim, "cluster-001").await?;
    let deploys = Api::<Deployment>::namespaced(client.clone(), "default");
    for (name, behavior) in [
        ("ok", None),
        ("slow", Some("progressing")),
        ("bad", Some("degraded")),
    ] {
        deploys
            .patch(
                name,
                &PatchParams::apply("test"),
                &Patch::Apply(mk_deploy(name, behavior)),
            )
            .await?;
    }
    eventually("ok available", Duration::from_secs(10), || async {
        let d = deploys.get("ok").await?;
        let s = d.status.unwrap_or_default();
        Ok((s.available_replicas == Some(2) && s.observed_generation == Some(1)).then_some(()))
    })
    .await?;
    eventually("bad degraded", Duration::from_secs(10), || async {
        let d = deploys.get("bad").await?;
        let conds = d.status.and_then(|s| s.conditions).unwrap_or_default();
        Ok(conds
            .iter()
            .any(|c| {
                c.type_.as_deref() == Some("Progressing")
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
            .then_some(()))
    })
    .await?;
    let slow = deploys.get("slow").await?;
    ensure!(
        slow.status.and_then(|s| s.available_replicas).is_none(),
        "progressing stays unavailable"
    );

    // A spec change goes back through the rollout: observedGeneration follows generation.
    deploys
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    eventually("ok rolled out", Duration::from_secs(10), || async {
        let d = deploys.get("ok").await?;
        let s = d.status.unwrap_or_default();
        Ok((s.observed_generation == Some(2) && s.available_replicas == Some(3)).then_some(()))
    })
    .await?;

    // Jobs complete or fail; LoadBalancers get an address; PVCs bind.
    let jobs = Api::<Job>::namespaced(client.clone(), "default");
    for (name, behavior) in [("done", None), ("broken", Some("failed"))] {
        let mut j = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox:1"}]}}}});
        if let Some(b) = behavior {
            j["metadata"]["annotations"] = json!({BEHAVIOR_ANNOTATION: b});
        }
        jobs.patch(name, &PatchParams::apply("test"), &Patch::Apply(j))
            .await?;
    }
    for (name, want) in [("done", "Complete"), ("broken", "Failed")] {
        eventually(want, Duration::from_secs(10), || async {
            let j = jobs.get(name).await?;
            let conds = j.status.and_then(|s| s.conditions).unwrap_or_default();
            Ok(conds
                .iter()
                .any(|c| c.type_ == want && c.status == "True")
                .then_some(()))
        })
        .await?;
    }
    let svcs = Api::<Service>::namespaced(client.clone(), "default");
    svcs.patch(
        "lb",
        &PatchParams::apply("test"),
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        ),
    )
    .await?;
    eventually("lb address", Duration::from_secs(10), || async {
        let s = svcs.get("lb").await?;
        Ok(s.status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .filter(|i| !i.is_empty())
            .map(|_| ()))
    })
    .await?;
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client, "default");
    pvcs.patch(
        "data",
        &PatchParams::apply("test"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})),
    )
    .await?;
    eventually("pvc bound", Duration::from_secs(10), || async {
        let p = pvcs.get("data").await?;
        Ok((p.status.and_then(|s| s.phase).as_deref() == Some("Bound")).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_errors_throttling_and_unreachable_then_recovery() -> Result<()> {
    let sim = start(2).await?;
    let target = sim.cluster("cluster-001").context("cluster")?;
    // kube retries 429s with backoff by default; look at the raw answers here.
    let client = client_with_retry(&sim.kubeconfig_yaml(), Some("cluster-001"), false).await?;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), "default");

    target.faults.set(&FaultSpec {
        error_rate: 1.0,
        ..Default::default()
    });
    let err = cms.list(&ListParams::default()).await.expect_err("500");
    ensure!(api_status(&err).map(|s| s.code) == Some(500));

    target.faults.set(&FaultSpec {
        throttle_rate: 1.0,
        ..Default::default()
    });
    let err = cms.list(&ListParams::default()).await.expect_err("429");
    ensure!(api_status(&err).map(|s| s.code) == Some(429));

    target.faults.set(&FaultSpec {
        latency_ms: 300,
        ..Default::default()
    });
    let t0 = std::time::Instant::now();
    cms.list(&ListParams::default()).await?;
    ensure!(t0.elapsed() >= Duration::from_millis(300), "latency added");

    // Write latency (a slow admission webhook): writes wait, reads do not, and the write
    // takes effect only at the end of its wait.
    target.faults.set(&FaultSpec {
        write_latency_ms: 1500,
        ..Default::default()
    });
    let t0 = std::time::Instant::now();
    cms.list(&ListParams::default()).await?;
    ensure!(
        t0.elapsed() < Duration::from_millis(1500),
        "reads are not delayed"
    );
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("slow-write".into());
    let writer = {
        let cms = cms.clone();
        tokio::spawn(async move { cms.create(&PostParams::default(), &cm).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        cms.get_opt("slow-write").await?.is_none(),
        "not visible while its write is held"
    );
    writer.await??;
    ensure!(
        t0.elapsed() >= Duration::from_millis(1500),
        "write latency added"
    );
    ensure!(cms.get_opt("slow-write").await?.is_some());

    target.faults.set(&FaultSpec {
        unreachable: true,
        ..Default::default()
    });
    let err = cms.list(&ListParams::default()).await.expect_err("down");
    ensure!(
        api_status(&err).is_none(),
        "unreachable is a transport error, not an API answer: {err}"
    );
    // The other cluster is unaffected.
    let other = client_for(&sim, "cluster-002").await?;
    Api::<ConfigMap>::namespaced(other, "default")
        .list(&ListParams::default())
        .await?;

    target.faults.set(&FaultSpec::default());
    eventually("cluster back", Duration::from_secs(10), || async {
        Ok(cms.list(&ListParams::default()).await.ok().map(|_| ()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_resyncs_after_watches_are_cut() -> Result<()> {
    let sim = start(1).await?;
    let target = sim.cluster("cluster-001").context("cluster")?;
    let client = client_for(&sim, "cluster-001").await?;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default()))
        .applied_objects()
        .boxed();
    let task = tokio::spawn(async move {
        let mut s = stream;
        while s.next().await.is_some() {}
    });
    reader.wait_until_ready().await?;
    let mk = |n: &str| -> Result<ConfigMap> {
        Ok(serde_json::from_value(json!({"metadata": {"name": n}}))?)
    };
    cms.create(&PostParams::default(), &mk("before")?).await?;
    eventually("before seen", Duration::from_secs(10), || async {
        Ok(reader
            .state()
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some("before"))
            .then_some(()))
    })
    .await?;
    let opened = target
        .watches_opened
        .load(std::sync::atomic::Ordering::Relaxed);
    target.faults.cut();
    cms.create(&PostParams::default(), &mk("after")?).await?;
    eventually(
        "after seen through a new watch",
        Duration::from_secs(20),
        || async {
            Ok(reader
                .state()
                .iter()
                .any(|c| c.metadata.name.as_deref() == Some("after"))
                .then_some(()))
        },
    )
    .await?;
    ensure!(
        target
            .watches_opened
            .load(std::sync::atomic::Ordering::Relaxed)
            > opened,
        "the watcher re-watched"
    );
    task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_tells_who_wrote_what() -> Result<()> {
    let sim = start(1).await?;
    let target = sim.cluster("cluster-001").context("cluster")?;
    sim.add_token("token-replica-a", "replica-a");
    sim.add_token("token-replica-b", "replica-b");
    let as_user = |token: &str| -> Result<Client> { client_with_token(&target.url(), token) };
    let before = target.log.total();
    for (token, name) in [("token-replica-a", "from-a"), ("token-replica-b", "from-b")] {
        Api::<ConfigMap>::namespaced(as_user(token)?, "default")
            .patch(
                name,
                &PatchParams::apply("flotilla"),
                &Patch::Apply(
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}),
                ),
            )
            .await?;
    }
    let writes: Vec<_> = target
        .log
        .since(before)
        .into_iter()
        .filter(|r| r.is_write())
        .collect();
    let who = |name: &str| {
        writes
            .iter()
            .find(|r| r.name == name)
            .map(|r| (r.user.clone(), r.verb.clone(), r.resource.clone(), r.code))
    };
    ensure!(
        who("from-a") == Some(("replica-a".into(), "patch".into(), "configmaps".into(), 201)),
        "{writes:?}"
    );
    ensure!(who("from-b").map(|w| w.0) == Some("replica-b".into()));
    ensure!(writes.iter().all(|r| r.end_us >= r.start_us));
    let counters = target.log.counters();
    ensure!(counters.get(&("replica-a".into(), "patch".into())) == Some(&1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_sets_faults_and_reads_logs() -> Result<()> {
    let sim = KubeSim::start(SimConfig {
        clusters: 1,
        admin_port: Some(0),
        ..SimConfig::default()
    })
    .await?;
    let admin = sim.admin_addr().context("admin addr")?;
    let body = json!({"errorRate": 1.0}).to_string();
    let out = http_call(admin, "PUT", "/clusters/cluster-001/faults", &body).await?;
    ensure!(out.contains("\"errorRate\":1.0"), "{out}");
    let target = sim.cluster("cluster-001").context("cluster")?;
    ensure!(target.faults.get().error_rate == 1.0);
    let clusters: Value = serde_json::from_str(&http_call(admin, "GET", "/clusters", "").await?)?;
    ensure!(clusters.as_array().map(Vec::len) == Some(2));
    let missing = http_call(admin, "GET", "/clusters/nope/requests", "").await?;
    ensure!(missing.contains("no cluster"), "{missing}");
    Ok(())
}

/// A minimal HTTP/1.1 call over a raw socket (the admin API is plain JSON over HTTP).
async fn http_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .ok_or_else(|| anyhow!("no HTTP body in {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clusters_verify_against_the_published_ca() -> Result<()> {
    let sim = KubeSim::start(SimConfig {
        clusters: 1,
        tls: true,
        ..SimConfig::default()
    })
    .await?;
    let target = sim.cluster("cluster-001").context("cluster")?;
    ensure!(target.url().starts_with("https://"), "{}", target.url());
    let yaml = sim.kubeconfig_yaml();
    ensure!(yaml.contains("certificate-authority-data"));
    let client = client_for(&sim, "cluster-001").await?;
    Api::<ConfigMap>::namespaced(client, "default")
        .list(&ListParams::default())
        .await?;
    // Without the CA the certificate is not trusted.
    let untrusted = client_with_token(&target.url(), &target.token)?;
    let err = Api::<ConfigMap>::namespaced(untrusted, "default")
        .list(&ListParams::default())
        .await
        .expect_err("self-signed certificate refused without its CA");
    ensure!(api_status(&err).is_none(), "{err}");
    // The Argo CD Secret carries the CA too.
    let cp = client_for(&sim, "control-plane").await?;
    let secret = Api::<Secret>::namespaced(cp, "argocd")
        .get("cluster-cluster-001")
        .await?;
    let config = secret
        .data
        .and_then(|d| d.get("config").cloned())
        .context("config")?;
    let config: Value = serde_json::from_slice(&config.0)?;
    ensure!(config["tlsClientConfig"]["caData"].is_string(), "{config}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_own_replica_sets_that_own_pods_and_roll_over() -> Result<()> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;
    let sim = start(1).await?;
    let name = sim.clusters()[0].name.clone();
    let client = client_for(&sim, &name).await?;
    let deploys = Api::<Deployment>::namespaced(client.clone(), "default");
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), "default");
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let d = deploys
        .patch(
            "tree",
            &PatchParams::apply("t"),
            &Patch::Apply(mk_deploy("tree", None)),
        )
        .await?;
    let uid = d.metadata.uid.clone().context("uid")?;
    let owned_by =
        |refs: &Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
         uid: &str| {
            refs.iter()
                .flatten()
                .any(|r| r.uid == uid && r.controller == Some(true))
        };
    // One ReplicaSet named in the Deployment's Progressing message, with two running Pods.
    let rs = eventually(
        "a ReplicaSet with 2 ready pods",
        Duration::from_secs(20),
        || async {
            let list = sets.list(&ListParams::default()).await?;
            let rs = list
                .items
                .into_iter()
                .find(|r| owned_by(&r.metadata.owner_references, &uid));
            Ok(rs.filter(|r| r.status.as_ref().and_then(|s| s.ready_replicas) == Some(2)))
        },
    )
    .await?;
    let rs_name = rs.metadata.name.clone().context("name")?;
    let rs_uid = rs.metadata.uid.clone().context("uid")?;
    let d = deploys.get("tree").await?;
    let progressing = d
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .and_then(|c| c.message)
        .unwrap_or_default();
    ensure!(
        progressing.contains(&rs_name),
        "{progressing} names {rs_name}"
    );
    let running = eventually("2 running pods", Duration::from_secs(20), || async {
        let list = pods.list(&ListParams::default()).await?;
        let mine: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| owned_by(&p.metadata.owner_references, &rs_uid))
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect();
        Ok((mine.len() == 2).then_some(mine))
    })
    .await?;
    let pod = &running[0];
    ensure!(
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .is_some()
    );
    let status = pod.status.clone().context("status")?;
    let types: Vec<String> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.clone())
        .collect();
    for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        ensure!(types.iter().any(|x| x == t), "{t} in {types:?}");
    }
    ensure!(
        status
            .container_statuses
            .iter()
            .flatten()
            .all(|c| !c.image_id.is_empty())
    );
    // A new template: a new ReplicaSet takes the pods, the old one scales to zero.
    let mut next = mk_deploy("tree", None);
    next["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    deploys
        .patch("tree", &PatchParams::apply("t"), &Patch::Apply(next))
        .await?;
    eventually("rolled over", Duration::from_secs(20), || async {
        let list = sets.list(&ListParams::default()).await?;
        let mine: Vec<ReplicaSet> = list
            .items
            .into_iter()
            .filter(|r| owned_by(&r.metadata.owner_references, &uid))
            .collect();
        let old = mine
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(rs_name.as_str()));
        let new = mine
            .iter()
            .find(|r| r.metadata.name.as_deref() != Some(rs_name.as_str()));
        let old_pods = pods
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|p| owned_by(&p.metadata.owner_references, &rs_uid))
            .count();
        Ok((old.and_then(|r| r.spec.replicas) == Some(0)
            && new.and_then(|r| r.spec.replicas) == Some(2)
            && old_pods == 0)
            .then_some(()))
    })
    .await?;
    // Deleting the Deployment collects its ReplicaSets and Pods.
    deploys.delete("tree", &Default::default()).await?;
    eventually("children collected", Duration::from_secs(20), || async {
        let left = sets.list(&ListParams::default()).await?.items.len()
            + pods.list(&ListParams::default()).await?.items.len();
        Ok((left == 0).then_some(()))
    })
    .await?;
    Ok(())
}
