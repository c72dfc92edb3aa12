//! Health assessment of live objects, with Argo CD's rules for the common kinds, and the
//! app-level roll-up (the worst resource wins). Pure: objects in, status out.

use serde_json::Value;

/// Argo CD's health codes, ordered from best to worst for aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthCode {
    Healthy,
    Suspended,
    Progressing,
    Missing,
    Degraded,
    Unknown,
}

impl HealthCode {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthCode::Healthy => "Healthy",
            HealthCode::Suspended => "Suspended",
            HealthCode::Progressing => "Progressing",
            HealthCode::Missing => "Missing",
            HealthCode::Degraded => "Degraded",
            HealthCode::Unknown => "Unknown",
        }
    }
}

/// A health verdict with Argo CD's style of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub code: HealthCode,
    pub message: String,
}

pub(crate) fn h(code: HealthCode, message: impl Into<String>) -> Health {
    Health {
        code,
        message: message.into(),
    }
}

pub(crate) fn int(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

pub(crate) fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

pub(crate) fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

pub(crate) fn condition_true(obj: &Value, type_: &str) -> bool {
    condition(obj, type_)
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True")
}

/// `generation` not yet observed by the workload's controller.
pub(crate) fn not_observed(obj: &Value) -> bool {
    let observed = int(obj, "/status/observedGeneration").unwrap_or(0);
    observed == 0 || int(obj, "/metadata/generation").unwrap_or(0) > observed
}

/// Health of one live object of `group`/`kind`; `None` live means Missing.
/// Whether a kind has a health check (others are Healthy once they exist; a hook of such a
/// kind is done once created).
pub fn has_check(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        (
            "apps",
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
        ) | ("", "Pod" | "Service" | "PersistentVolumeClaim")
            | ("networking.k8s.io", "Ingress")
            | ("batch", "Job")
    )
}

pub fn assess(group: &str, kind: &str, live: Option<&Value>) -> Health {
    let Some(obj) = live else {
        return h(HealthCode::Missing, "");
    };
    match (group, kind) {
        ("apps", "Deployment") => deployment(obj),
        ("apps", "StatefulSet") => statefulset(obj),
        ("apps", "DaemonSet") => daemonset(obj),
        ("apps", "ReplicaSet") => replicaset(obj),
        ("", "Pod") => pod(obj),
        ("", "Service") => service(obj),
        ("networking.k8s.io", "Ingress") => ingress(obj),
        ("", "PersistentVolumeClaim") => pvc(obj),
        ("batch", "Job") => job(obj),
        _ => crate::health_kinds::check(group, kind, obj)
            .unwrap_or_else(|| h(HealthCode::Healthy, "")),
    }
}

fn deployment(obj: &Value) -> Health {
    if obj.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return h(HealthCode::Suspended, "Deployment is paused");
    }
    if not_observed(obj) {
        return h(
            HealthCode::Progressing,
            "Waiting for rollout to finish: observed deployment generation less than desired generation",
        );
    }
    let name = str_at(obj, "/metadata/name").unwrap_or("");
    if condition(obj, "Progressing")
        .and_then(|c| c.get("reason"))
        .and_then(Value::as_str)
        == Some("ProgressDeadlineExceeded")
    {
        return h(
            HealthCode::Degraded,
            format!("Deployment {name:?} exceeded its progress deadline"),
        );
    }
    let want = int(obj, "/spec/replicas").unwrap_or(1);
    let updated = int(obj, "/status/updatedReplicas").unwrap_or(0);
    let replicas = int(obj, "/status/replicas").unwrap_or(0);
    let available = int(obj, "/status/availableReplicas").unwrap_or(0);
    if updated < want {
        return h(
            HealthCode::Progressing,
            format!(
                "Waiting for rollout to finish: {updated} out of {want} new replicas have been updated..."
            ),
        );
    }
    if replicas > updated {
        return h(
            HealthCode::Progressing,
            format!(
                "Waiting for rollout to finish: {} old replicas are pending termination...",
                replicas - updated
            ),
        );
    }
    if available < updated {
        return h(
            HealthCode::Progressing,
            format!(
                "Waiting for rollout to finish: {available} of {updated} updated replicas are available..."
            ),
        );
    }
    h(HealthCode::Healthy, "")
}

fn statefulset(obj: &Value) -> Health {
    if not_observed(obj) {
        return h(
            HealthCode::Progressing,
            "Waiting for statefulset spec update to be observed...",
        );
    }
    let want = int(obj, "/spec/replicas").unwrap_or(1);
    let ready = int(obj, "/status/readyReplicas").unwrap_or(0);
    if ready < want {
        return h(
            HealthCode::Progressing,
            format!("Waiting for {} pods to be ready...", want - ready),
        );
    }
    if str_at(obj, "/spec/updateStrategy/type") == Some("RollingUpdate")
        && let Some(partition) = int(obj, "/spec/updateStrategy/rollingUpdate/partition")
        && partition > 0
    {
        let updated = int(obj, "/status/updatedReplicas").unwrap_or(0);
        if updated < want - partition {
            return h(
                HealthCode::Progressing,
                format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                    want - partition
                ),
            );
        }
        return h(
            HealthCode::Healthy,
            format!("partitioned roll out complete: {updated} new pods have been updated..."),
        );
    }
    if str_at(obj, "/status/updateRevision") != str_at(obj, "/status/currentRevision") {
        return h(
            HealthCode::Progressing,
            "waiting for statefulset rolling update to complete",
        );
    }
    h(HealthCode::Healthy, "")
}

fn daemonset(obj: &Value) -> Health {
    if not_observed(obj) {
        return h(
            HealthCode::Progressing,
            "Waiting for rollout to finish: observed daemon set generation less than desired generation",
        );
    }
    if str_at(obj, "/spec/updateStrategy/type") == Some("OnDelete") {
        return h(
            HealthCode::Healthy,
            "daemon set is using the OnDelete update strategy",
        );
    }
    let desired = int(obj, "/status/desiredNumberScheduled").unwrap_or(0);
    let updated = int(obj, "/status/updatedNumberScheduled").unwrap_or(0);
    let available = int(obj, "/status/numberAvailable").unwrap_or(0);
    if updated < desired {
        return h(
            HealthCode::Progressing,
            format!(
                "Waiting for daemon set rollout to finish: {updated} out of {desired} new pods have been updated..."
            ),
        );
    }
    if available < desired {
        return h(
            HealthCode::Progressing,
            format!(
                "Waiting for daemon set rollout to finish: {available} of {desired} updated pods are available..."
            ),
        );
    }
    h(HealthCode::Healthy, "")
}

fn replicaset(obj: &Value) -> Health {
    if not_observed(obj) {
        return h(
            HealthCode::Progressing,
            "Waiting for rollout to finish: observed replica set generation less than desired generation",
        );
    }
    if condition_true(obj, "ReplicaFailure") {
        let msg = condition(obj, "ReplicaFailure")
            .and_then(|c| c.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("");
        return h(HealthCode::Degraded, msg);
    }
    let want = int(obj, "/spec/replicas").unwrap_or(1);
    let available = int(obj, "/status/availableReplicas").unwrap_or(0);
    if available < want {
        return h(
            HealthCode::Progressing,
            format!(
                "Waiting for rollout to finish: {available} out of {want} new replicas are available..."
            ),
        );
    }
    h(HealthCode::Healthy, "")
}

const BAD_WAITING: &[&str] = &[
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "CreateContainerConfigError",
    "InvalidImageName",
    "CreateContainerError",
];

fn pod(obj: &Value) -> Health {
    let statuses: Vec<&Value> = ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|p| obj.pointer(p).and_then(Value::as_array))
        .flatten()
        .collect();
    for s in &statuses {
        if let Some(reason) = s.pointer("/state/waiting/reason").and_then(Value::as_str)
            && BAD_WAITING.contains(&reason)
        {
            let msg = s
                .pointer("/state/waiting/message")
                .and_then(Value::as_str)
                .unwrap_or(reason);
            return h(HealthCode::Degraded, msg);
        }
    }
    match str_at(obj, "/status/phase") {
        Some("Succeeded") => h(
            HealthCode::Healthy,
            str_at(obj, "/status/message").unwrap_or(""),
        ),
        Some("Failed") => h(
            HealthCode::Degraded,
            str_at(obj, "/status/message").unwrap_or(""),
        ),
        Some("Running") => {
            let always = str_at(obj, "/spec/restartPolicy").is_none_or(|p| p == "Always");
            let all_ready = !statuses.is_empty()
                && obj
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter()
                            .all(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                    });
            if always && all_ready {
                h(HealthCode::Healthy, "")
            } else {
                h(HealthCode::Progressing, "")
            }
        }
        Some("Pending") | None => h(HealthCode::Progressing, ""),
        Some(_) => h(HealthCode::Unknown, ""),
    }
}

fn has_lb_ingress(obj: &Value) -> bool {
    obj.pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|i| !i.is_empty())
}

fn service(obj: &Value) -> Health {
    if str_at(obj, "/spec/type") == Some("LoadBalancer") && !has_lb_ingress(obj) {
        return h(HealthCode::Progressing, "");
    }
    h(HealthCode::Healthy, "")
}

fn ingress(obj: &Value) -> Health {
    if has_lb_ingress(obj) {
        h(HealthCode::Healthy, "")
    } else {
        h(HealthCode::Progressing, "")
    }
}

fn pvc(obj: &Value) -> Health {
    match str_at(obj, "/status/phase") {
        Some("Bound") => h(HealthCode::Healthy, ""),
        Some("Pending") => h(HealthCode::Progressing, ""),
        Some("Lost") => h(HealthCode::Degraded, ""),
        _ => h(HealthCode::Unknown, ""),
    }
}

fn job(obj: &Value) -> Health {
    if condition_true(obj, "Failed") {
        let msg = condition(obj, "Failed")
            .and_then(|c| c.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("");
        return h(HealthCode::Degraded, msg);
    }
    if condition_true(obj, "Complete") {
        return h(HealthCode::Healthy, "");
    }
    if obj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        return h(HealthCode::Suspended, "Job is suspended");
    }
    h(HealthCode::Progressing, "")
}

/// App-level health: the worst of the resources' (Healthy when there are none).
pub fn aggregate<'a>(codes: impl IntoIterator<Item = &'a HealthCode>) -> HealthCode {
    codes
        .into_iter()
        .copied()
        .max()
        .unwrap_or(HealthCode::Healthy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(group: &str, kind: &str, obj: Value, expected: HealthCode) {
        let got = assess(group, kind, Some(&obj));
        assert_eq!(got.code, expected, "{kind} {obj}: {}", got.message);
    }

    fn mk_deploy(gen_: i64, status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": gen_}, "spec": {"replicas": 2}, "status": status})
    }

    #[test]
    fn deployment_rules() {
        check(
            "apps",
            "Deployment",
            mk_deploy(1, json!({})),
            HealthCode::Progressing,
        );
        check(
            "apps",
            "Deployment",
            mk_deploy(
                2,
                json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}),
            ),
            HealthCode::Progressing,
        );
        check(
            "apps",
            "Deployment",
            mk_deploy(
                1,
                json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1}),
            ),
            HealthCode::Progressing,
        );
        check(
            "apps",
            "Deployment",
            mk_deploy(
                1,
                json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 3, "availableReplicas": 2}),
            ),
            HealthCode::Progressing,
        );
        check(
            "apps",
            "Deployment",
            mk_deploy(
                1,
                json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}),
            ),
            HealthCode::Healthy,
        );
        check(
            "apps",
            "Deployment",
            mk_deploy(
                1,
                json!({"observedGeneration": 1, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
            ),
            HealthCode::Degraded,
        );
        let mut paused = mk_deploy(1, json!({}));
        paused["spec"]["paused"] = json!(true);
        check("apps", "Deployment", paused, HealthCode::Suspended);
    }

    #[test]
    fn statefulset_daemonset_replicaset_rules() {
        let sts = |status: Value| json!({"metadata": {"generation": 1}, "spec": {"replicas": 2}, "status": status});
        check(
            "apps",
            "StatefulSet",
            sts(json!({"observedGeneration": 1, "readyReplicas": 1})),
            HealthCode::Progressing,
        );
        check(
            "apps",
            "StatefulSet",
            sts(
                json!({"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "b"}),
            ),
            HealthCode::Progressing,
        );
        check(
            "apps",
            "StatefulSet",
            sts(
                json!({"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "a"}),
            ),
            HealthCode::Healthy,
        );
        let ds =
            |status: Value| json!({"metadata": {"generation": 1}, "spec": {}, "status": status});
        check(
            "apps",
            "DaemonSet",
            ds(
                json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}),
            ),
            HealthCode::Progressing,
        );
        check(
            "apps",
            "DaemonSet",
            ds(
                json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}),
            ),
            HealthCode::Healthy,
        );
        let rs = |status: Value| json!({"metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": status});
        check(
            "apps",
            "ReplicaSet",
            rs(json!({"observedGeneration": 1, "availableReplicas": 1})),
            HealthCode::Healthy,
        );
        check(
            "apps",
            "ReplicaSet",
            rs(
                json!({"observedGeneration": 1, "conditions": [{"type": "ReplicaFailure", "status": "True", "message": "quota"}]}),
            ),
            HealthCode::Degraded,
        );
    }

    #[test]
    fn pod_job_service_ingress_pvc_rules() {
        check(
            "",
            "Pod",
            json!({"status": {"phase": "Running", "containerStatuses": [{"ready": true}]}}),
            HealthCode::Healthy,
        );
        check(
            "",
            "Pod",
            json!({"status": {"phase": "Running", "containerStatuses": [{"ready": false, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
            HealthCode::Degraded,
        );
        check(
            "",
            "Pod",
            json!({"status": {"phase": "Pending"}}),
            HealthCode::Progressing,
        );
        check(
            "",
            "Pod",
            json!({"status": {"phase": "Failed"}}),
            HealthCode::Degraded,
        );
        check(
            "batch",
            "Job",
            json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}),
            HealthCode::Healthy,
        );
        check(
            "batch",
            "Job",
            json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}),
            HealthCode::Degraded,
        );
        check(
            "batch",
            "Job",
            json!({"status": {"active": 1}}),
            HealthCode::Progressing,
        );
        check(
            "",
            "Service",
            json!({"spec": {"type": "ClusterIP"}}),
            HealthCode::Healthy,
        );
        check(
            "",
            "Service",
            json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}}),
            HealthCode::Progressing,
        );
        check(
            "",
            "Service",
            json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}),
            HealthCode::Healthy,
        );
        check(
            "networking.k8s.io",
            "Ingress",
            json!({"status": {"loadBalancer": {}}}),
            HealthCode::Progressing,
        );
        check(
            "",
            "PersistentVolumeClaim",
            json!({"status": {"phase": "Bound"}}),
            HealthCode::Healthy,
        );
        check(
            "",
            "PersistentVolumeClaim",
            json!({"status": {"phase": "Lost"}}),
            HealthCode::Degraded,
        );
    }

    #[test]
    fn no_health_check_is_healthy_and_absent_is_missing() {
        check("", "ConfigMap", json!({"data": {}}), HealthCode::Healthy);
        assert_eq!(assess("apps", "Deployment", None).code, HealthCode::Missing);
    }

    #[test]
    fn app_health_is_the_worst_resource() {
        use HealthCode::*;
        assert_eq!(aggregate(&[Healthy, Progressing, Suspended]), Progressing);
        assert_eq!(aggregate(&[Healthy, Missing, Progressing]), Missing);
        assert_eq!(aggregate(&[Degraded, Missing]), Degraded);
        assert_eq!(aggregate(&[]), Healthy);
    }
}
