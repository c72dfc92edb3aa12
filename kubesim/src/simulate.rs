//! kwok-style status simulation: after a configurable delay, workloads report availability,
//! Pods run, Jobs complete, LoadBalancers get an address and PVCs bind. An annotation on the
//! object makes it stay Progressing or turn Degraded/Failed instead.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::objects::now_rfc3339;
use super::resources::Simulated;
use super::store::{Purpose, Store, Touch};

/// Annotation selecting a simulated outcome: `progressing` (never becomes ready), `degraded`
/// (workload fails its rollout / pod crash-loops) or `failed` (Jobs fail).
pub const BEHAVIOR_ANNOTATION: &str = "kubesim.flotilla.dev/behavior";
/// Annotation overriding the ready delay for one object, in milliseconds.
pub const DELAY_ANNOTATION: &str = "kubesim.flotilla.dev/ready-after-ms";

/// Simulation settings shared by all clusters.
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub ready_delay: Duration,
    /// Nodes a DaemonSet is scheduled on (and Pods spread over).
    pub nodes: i64,
    /// Deployments get ReplicaSets and Pods (`children.rs`), as on a real cluster; off saves
    /// memory in the big load tests.
    pub children: bool,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            ready_delay: Duration::from_millis(500),
            nodes: 3,
            children: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behavior {
    Ready,
    Progressing,
    Degraded,
}

fn behavior(obj: &Value) -> Behavior {
    match obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(BEHAVIOR_ANNOTATION))
        .and_then(Value::as_str)
    {
        Some("progressing") => Behavior::Progressing,
        Some("degraded" | "failed" | "fail") => Behavior::Degraded,
        _ => Behavior::Ready,
    }
}

fn delay_for(obj: &Value, default: Duration) -> Duration {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(DELAY_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(default, Duration::from_millis)
}

fn int_at(obj: &Value, pointer: &str, default: i64) -> i64 {
    obj.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

fn condition(t: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": t, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": now, "lastUpdateTime": now})
}

/// The status a controller would eventually write for `obj`, or `None` to leave it alone.
pub fn target_status(kind: Simulated, obj: &Value, settings: &SimSettings) -> Option<Value> {
    let b = behavior(obj);
    let gen_ = int_at(obj, "/metadata/generation", 1);
    let name = obj.pointer("/metadata/name").and_then(Value::as_str)?;
    let now = now_rfc3339();
    let keep_time = |mut s: Value| {
        // Reuse the old timestamps when nothing else changed, so re-simulation is a no-op.
        if let (Some(Value::Array(new)), Some(Value::Array(old))) =
            (s.get_mut("conditions"), obj.pointer("/status/conditions"))
        {
            for c in new.iter_mut() {
                if let Some(o) = old.iter().find(|o| {
                    o.get("type") == c.get("type")
                        && o.get("status") == c.get("status")
                        && o.get("reason") == c.get("reason")
                }) {
                    c["lastTransitionTime"] = o["lastTransitionTime"].clone();
                    c["lastUpdateTime"] = o.get("lastUpdateTime").cloned().unwrap_or(Value::Null);
                    if c["lastUpdateTime"].is_null()
                        && let Some(m) = c.as_object_mut()
                    {
                        m.remove("lastUpdateTime");
                    }
                }
            }
        }
        s
    };
    let status = match kind {
        Simulated::None | Simulated::Review => return None,
        Simulated::Deployment => {
            let r = int_at(obj, "/spec/replicas", 1);
            let rs = super::children::replica_set_name(obj);
            match b {
                Behavior::Ready => json!({
                "observedGeneration": gen_, "replicas": r, "updatedReplicas": r,
                "readyReplicas": r, "availableReplicas": r,
                "conditions": [
                    condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", &now),
                    condition("Progressing", "True", "NewReplicaSetAvailable", &format!("ReplicaSet \"{rs}\" has successfully progressed."), &now),
                ]}),
                Behavior::Progressing => json!({
                "observedGeneration": gen_, "replicas": r, "updatedReplicas": r,
                "unavailableReplicas": r,
                "conditions": [
                    condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", &now),
                    condition("Progressing", "True", "ReplicaSetUpdated", &format!("ReplicaSet \"{rs}\" is progressing."), &now),
                ]}),
                Behavior::Degraded => json!({
                "observedGeneration": gen_, "replicas": r, "updatedReplicas": r,
                "unavailableReplicas": r,
                "conditions": [
                    condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", &now),
                    condition("Progressing", "False", "ProgressDeadlineExceeded", &format!("ReplicaSet \"{rs}\" has timed out progressing."), &now),
                ]}),
            }
        }
        Simulated::StatefulSet => {
            let r = int_at(obj, "/spec/replicas", 1);
            let ready = if b == Behavior::Ready { r } else { 0 };
            let rev = format!("{name}-{gen_}");
            json!({"observedGeneration": gen_, "replicas": r, "readyReplicas": ready,
                   "currentReplicas": r, "updatedReplicas": r, "availableReplicas": ready,
                   "currentRevision": rev, "updateRevision": rev, "collisionCount": 0})
        }
        Simulated::DaemonSet => {
            let n = settings.nodes;
            let ready = if b == Behavior::Ready { n } else { 0 };
            json!({"observedGeneration": gen_, "currentNumberScheduled": n,
                   "desiredNumberScheduled": n, "numberMisscheduled": 0, "numberReady": ready,
                   "updatedNumberScheduled": n, "numberAvailable": ready})
        }
        Simulated::ReplicaSet => {
            let r = int_at(obj, "/spec/replicas", 1);
            let ready = if b == Behavior::Ready { r } else { 0 };
            json!({"observedGeneration": gen_, "replicas": r, "fullyLabeledReplicas": r,
                   "readyReplicas": ready, "availableReplicas": ready})
        }
        Simulated::Pod => {
            let containers: Vec<Value> = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            let state = match b {
                                Behavior::Ready => json!({"running": {"startedAt": now}}),
                                Behavior::Progressing => {
                                    json!({"waiting": {"reason": "ContainerCreating"}})
                                }
                                Behavior::Degraded => {
                                    json!({"waiting": {"reason": "CrashLoopBackOff",
                                    "message": "back-off 5m0s restarting failed container"}})
                                }
                            };
                            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                            let digest = super::children::template_hash(
                                &json!({"spec": {"template": image}}),
                            );
                            json!({"name": c.get("name").cloned().unwrap_or(Value::Null),
                                   "image": image,
                                   "imageID": format!("{image}@sha256:{digest}"),
                                   "containerID": format!("containerd://{digest}"),
                                   "ready": b == Behavior::Ready,
                                   "restartCount": if b == Behavior::Degraded { 5 } else { 0 },
                                   "started": b == Behavior::Ready,
                                   "state": state})
                        })
                        .collect()
                })
                .unwrap_or_default();
            // A Job's pods run to completion: Succeeded, or Failed when the Job fails.
            let job_pod = obj.pointer("/metadata/ownerReferences/0/kind") == Some(&json!("Job"));
            if job_pod && b != Behavior::Progressing {
                let (phase, code, reason) = if b == Behavior::Ready {
                    ("Succeeded", 0, "Completed")
                } else {
                    ("Failed", 1, "Error")
                };
                let finished: Vec<Value> = containers
                    .iter()
                    .map(|c| {
                        let mut c = c.clone();
                        c["ready"] = json!(false);
                        c["started"] = json!(false);
                        c["state"] = json!({"terminated": {"exitCode": code, "reason": reason,
                                                           "startedAt": now, "finishedAt": now}});
                        c
                    })
                    .collect();
                let cond = |t: &str, s: &str| json!({"type": t, "status": s, "lastProbeTime": null, "lastTransitionTime": now});
                return Some(keep_time(json!({"phase": phase, "qosClass": "BestEffort",
                    "podIP": "10.244.0.11", "hostIP": "10.0.0.1", "startTime": now,
                    "conditions": [cond("PodReadyToStartContainers", "False"),
                                   cond("Initialized", "True"), cond("Ready", "False"),
                                   cond("ContainersReady", "False"), cond("PodScheduled", "True")],
                    "containerStatuses": finished})));
            }
            let (phase, ready) = match b {
                Behavior::Ready => ("Running", "True"),
                Behavior::Progressing => ("Pending", "False"),
                Behavior::Degraded => ("Running", "False"),
            };
            let cond = |t: &str, s: &str| json!({"type": t, "status": s, "lastProbeTime": null, "lastTransitionTime": now});
            json!({"phase": phase, "qosClass": "BestEffort", "podIP": "10.244.0.10",
                   "hostIP": "10.0.0.1", "startTime": now,
                   "conditions": [cond("PodReadyToStartContainers", if b == Behavior::Progressing { "False" } else { "True" }),
                                  cond("Initialized", "True"), cond("Ready", ready),
                                  cond("ContainersReady", ready), cond("PodScheduled", "True")],
                   "containerStatuses": containers})
        }
        Simulated::Job => {
            let completions = int_at(obj, "/spec/completions", 1);
            match b {
                Behavior::Ready => json!({"startTime": now, "completionTime": now,
                    "succeeded": completions, "active": 0,
                    "conditions": [condition("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods", &now),
                                   condition("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods", &now)]}),
                Behavior::Progressing => json!({"startTime": now, "active": 1}),
                Behavior::Degraded => json!({"startTime": now, "failed": 1, "active": 0,
                    "conditions": [condition("FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", &now),
                                   condition("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", &now)]}),
            }
        }
        Simulated::Service => {
            let lb = obj.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
            if lb && b == Behavior::Ready {
                // A documentation-range address string (RFC 5737); nothing is routed to it.
                json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"}]}})
            } else {
                json!({"loadBalancer": {}})
            }
        }
        Simulated::Ingress => {
            if b == Behavior::Ready {
                json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.20"}]}})
            } else {
                json!({"loadBalancer": {}})
            }
        }
        Simulated::Pvc => {
            if b == Behavior::Ready {
                let storage = obj
                    .pointer("/spec/resources/requests/storage")
                    .cloned()
                    .unwrap_or(json!("1Gi"));
                json!({"phase": "Bound", "accessModes": obj.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
                       "capacity": {"storage": storage}})
            } else {
                json!({"phase": "Pending"})
            }
        }
    };
    Some(keep_time(status))
}

/// How long the garbage collector takes to notice an object whose owners are absent.
const GC_DELAY: Duration = Duration::from_millis(200);

/// Run one cluster's simulator until the store's sender side is dropped.
pub async fn run(store: Arc<Store>, mut rx: mpsc::UnboundedReceiver<Touch>, settings: SimSettings) {
    let mut queue: BinaryHeap<Reverse<(Instant, u64, usize)>> = BinaryHeap::new();
    let mut pending: Vec<Option<Touch>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut seq = 0u64;
    loop {
        let next = queue.peek().map(|Reverse((t, _, _))| *t);
        tokio::select! {
            touch = rx.recv() => {
                let Some(touch) = touch else { return };
                match touch.purpose {
                    Purpose::Status => {}
                    // The CRD finalizer runs at once, after the DELETE was answered.
                    Purpose::CrdCleanup => {
                        store.run_background(&touch);
                        continue;
                    }
                    Purpose::Collect => {
                        let slot = match free.pop() {
                            Some(i) => { pending[i] = Some(touch); i }
                            None => { pending.push(Some(touch)); pending.len() - 1 }
                        };
                        seq += 1;
                        queue.push(Reverse((Instant::now() + GC_DELAY, seq, slot)));
                        continue;
                    }
                }
                let delay = match store.get_value(&touch.rt, &touch.key.0, &touch.key.1) {
                    Ok(obj) => delay_for(&obj, settings.ready_delay),
                    Err(_) => continue,
                };
                let slot = match free.pop() {
                    Some(i) => { pending[i] = Some(touch); i }
                    None => { pending.push(Some(touch)); pending.len() - 1 }
                };
                seq += 1;
                queue.push(Reverse((Instant::now() + delay, seq, slot)));
            }
            _ = async { match next { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                while let Some(Reverse((t, _, slot))) = queue.peek().copied() {
                    if t > Instant::now() { break; }
                    queue.pop();
                    if let Some(touch) = pending[slot].take() {
                        free.push(slot);
                        if touch.purpose != Purpose::Status {
                            store.run_background(&touch);
                            continue;
                        }
                        let kind = touch.rt.simulated;
                        store.write_status(&touch.rt.group_resource(), &touch.key, |obj| {
                            target_status(kind, obj, &settings)
                        });
                        if settings.children {
                            match kind {
                                Simulated::Deployment => super::children::sync_deployment(&store, &touch.key.0, &touch.key.1, settings.nodes),
                                Simulated::StatefulSet | Simulated::DaemonSet | Simulated::Job => super::children::sync_pod_owner(&store, &touch.rt, &touch.key.0, &touch.key.1, settings.nodes),
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_deploy(annotation: Option<&str>) -> Value {
        let mut d = json!({"metadata": {"name": "web", "generation": 3}, "spec": {"replicas": 2}});
        if let Some(a) = annotation {
            d["metadata"]["annotations"] = json!({BEHAVIOR_ANNOTATION: a});
        }
        d
    }

    #[test]
    fn deployment_becomes_available_at_its_generation() {
        let s = target_status(
            Simulated::Deployment,
            &mk_deploy(None),
            &SimSettings::default(),
        )
        .expect("status");
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["availableReplicas"], 2);
    }

    #[test]
    fn annotation_keeps_deployment_progressing_or_degrades_it() {
        let p = target_status(
            Simulated::Deployment,
            &mk_deploy(Some("progressing")),
            &SimSettings::default(),
        )
        .expect("status");
        assert!(p.get("availableReplicas").is_none());
        let d = target_status(
            Simulated::Deployment,
            &mk_deploy(Some("degraded")),
            &SimSettings::default(),
        )
        .expect("status");
        assert_eq!(d["conditions"][1]["reason"], "ProgressDeadlineExceeded");
    }

    #[test]
    fn resimulating_an_unchanged_object_is_a_no_op() {
        let mut d = mk_deploy(None);
        let first =
            target_status(Simulated::Deployment, &d, &SimSettings::default()).expect("status");
        d["status"] = first.clone();
        std::thread::sleep(Duration::from_millis(1100));
        let second =
            target_status(Simulated::Deployment, &d, &SimSettings::default()).expect("status");
        assert_eq!(first, second);
    }

    #[test]
    fn failing_job_reports_failed_condition() {
        let job = json!({"metadata": {"name": "j", "annotations": {BEHAVIOR_ANNOTATION: "failed"}}, "spec": {}});
        let s = target_status(Simulated::Job, &job, &SimSettings::default()).expect("status");
        assert_eq!(s["conditions"][1]["type"], "Failed");
    }
}
