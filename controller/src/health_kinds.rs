//! Built-in health checks beyond the workload kinds of `health`: autoscaling, policy, batch,
//! API registration and the CRDs platform teams meet most. Pure: a live object in, a verdict out.

use serde_json::Value;

use crate::health::{Health, HealthCode, condition, condition_true, h, int, str_at};

/// The built-in verdict for `group`/`kind`, or `None` when Flotilla has no check for it.
/// Follows Argo CD's built-in checks (gitops-engine) and its bundled `resource_customizations`.
pub fn check(group: &str, kind: &str, obj: &Value) -> Option<Health> {
    let assess: fn(&Value) -> Health = match (group, kind) {
        ("autoscaling", "HorizontalPodAutoscaler") => hpa,
        ("policy", "PodDisruptionBudget") => pdb,
        ("batch", "CronJob") => cronjob,
        ("apiregistration.k8s.io", "APIService") => apiservice,
        // Its own deletion message ("CRD is terminating"), as Argo CD's script.
        ("apiextensions.k8s.io", "CustomResourceDefinition") => return Some(crd(obj)),
        ("", "Namespace") => namespace,
        ("argoproj.io", "Rollout") => rollout,
        ("cert-manager.io", "Certificate") => certificate,
        ("cert-manager.io", "Issuer") => |o| ready_condition(o, "Initializing issuer"),
        ("cert-manager.io", "ClusterIssuer") => {
            |o| ready_condition(o, "Initializing ClusterIssuer")
        }
        ("external-secrets.io", "ExternalSecret") => external_secret,
        ("external-secrets.io", "ClusterExternalSecret") => cluster_external_secret,
        ("external-secrets.io", "SecretStore") => |o| ready_condition(o, "Waiting for SecretStore"),
        ("external-secrets.io", "ClusterSecretStore") => {
            |o| ready_condition(o, "Waiting for ClusterSecretStore")
        }
        ("keda.sh", "ScaledObject") => scaled_object,
        (g, _) if is_crossplane(g) => {
            return Some(pending_deletion(obj).unwrap_or_else(|| crossplane(g, kind, obj)));
        }
        _ => return None,
    };
    Some(pending_deletion(obj).unwrap_or_else(|| assess(obj)))
}

/// The opt-in generic check for kinds without one, after kstatus (sigs.k8s.io/cli-utils, as Flux
/// uses it), first rule that applies wins:
/// - `metadata.deletionTimestamp` set → Progressing ("Pending deletion");
/// - `metadata.generation` > `status.observedGeneration` → Progressing (spec not yet observed);
/// - a condition `Stalled` True → Degraded, `Reconciling` True → Progressing (the first of the
///   two in list order);
/// - `Ready` True → Healthy; `Ready` False → Degraded, unless its reason says work is under way
///   (`Progressing`, `ProgressingWithRetry`, `Reconciling`, as Flux's controllers set it), then
///   Progressing; `Ready` Unknown → Progressing;
/// - otherwise (no conditions, or none of these) → `None`: the object has no health.
pub fn generic_conditions(obj: &Value) -> Option<Health> {
    if let Some(deleting) = pending_deletion(obj) {
        return Some(deleting);
    }
    if let (Some(generation), Some(observed)) = (
        int(obj, "/metadata/generation"),
        int(obj, "/status/observedGeneration"),
    ) && generation > observed
    {
        return Some(h(
            HealthCode::Progressing,
            format!("generation is {generation}, but latest observed generation is {observed}"),
        ));
    }
    let abnormal =
        conditions(obj)
            .iter()
            .find_map(|c| match (field(c, "type"), field(c, "status")) {
                ("Stalled", "True") => Some(h(HealthCode::Degraded, field(c, "message"))),
                ("Reconciling", "True") => Some(h(HealthCode::Progressing, field(c, "message"))),
                _ => None,
            });
    abnormal.or_else(|| {
        let ready = condition(obj, "Ready")?;
        let code = match field(ready, "status") {
            "True" => HealthCode::Healthy,
            "False" if !PROGRESSING_REASONS.contains(&field(ready, "reason")) => {
                HealthCode::Degraded
            }
            _ => HealthCode::Progressing,
        };
        Some(h(code, field(ready, "message")))
    })
}

/// `Ready` False reasons that mean "still working on it" in the kstatus/Flux convention.
const PROGRESSING_REASONS: &[&str] = &["Progressing", "ProgressingWithRetry", "Reconciling"];

fn conditions(obj: &Value) -> &[Value] {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A string field of a condition (`type`, `status`, `reason`, `message`), "" when absent.
fn field<'a>(c: &'a Value, name: &str) -> &'a str {
    c.get(name).and_then(Value::as_str).unwrap_or("")
}

fn has_status(obj: &Value) -> bool {
    obj.get("status").is_some_and(|s| !s.is_null())
}

/// Argo CD reports an object being deleted as Progressing, naming the finalizers that hold it.
fn pending_deletion(obj: &Value) -> Option<Health> {
    obj.pointer("/metadata/deletionTimestamp")?;
    let finalizers: Vec<&str> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let message = if finalizers.is_empty() {
        "Pending deletion".to_string()
    } else {
        format!(
            "Pending deletion; blocked by finalizers: {}",
            finalizers.join(", ")
        )
    };
    Some(h(HealthCode::Progressing, message))
}

/// HPA (gitops-engine `health_hpa.go`): the first condition whose type and reason (its status is
/// not looked at) are known bad or good decides; otherwise "Waiting to Autoscale".
fn hpa(obj: &Value) -> Health {
    const DEGRADED: &[(&str, &str)] = &[
        ("AbleToScale", "FailedGetScale"),
        ("AbleToScale", "FailedUpdateScale"),
        ("ScalingActive", "FailedGetResourceMetric"),
        ("ScalingActive", "InvalidSelector"),
    ];
    const HEALTHY: &[(&str, &str)] = &[
        ("AbleToScale", "SucceededRescale"),
        ("ScalingLimited", "DesiredWithinRange"),
        ("ScalingLimited", "TooFewReplicas"),
        ("ScalingLimited", "TooManyReplicas"),
    ];
    // autoscaling/v1 carries the conditions as JSON in an annotation.
    let annotated: Option<Value> = str_at(
        obj,
        "/metadata/annotations/autoscaling.alpha.kubernetes.io~1conditions",
    )
    .and_then(|s| serde_json::from_str(s).ok());
    let conds = match conditions(obj) {
        [] => annotated
            .as_ref()
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice),
        some => some,
    };
    for c in conds {
        let key = (field(c, "type"), field(c, "reason"));
        if DEGRADED.contains(&key) {
            return h(HealthCode::Degraded, field(c, "message"));
        }
        if HEALTHY.contains(&key) {
            return h(HealthCode::Healthy, field(c, "message"));
        }
    }
    h(HealthCode::Progressing, "Waiting to Autoscale")
}

/// PDB (Argo CD's script): a False condition is Degraded unless its reason is `InsufficientPods`
/// (a PDB may legitimately block all disruptions); any other condition is Healthy.
fn pdb(obj: &Value) -> Health {
    let mut verdict = h(HealthCode::Progressing, "Waiting for status");
    for c in conditions(obj) {
        let message = format!("PodDisruptionBudget has {}", field(c, "reason"));
        if field(c, "status") == "False" && field(c, "reason") != "InsufficientPods" {
            return h(HealthCode::Degraded, message);
        }
        verdict = h(HealthCode::Healthy, message);
    }
    verdict
}

/// CronJob (Argo CD's script): suspended, or judged by its last schedule and last success.
fn cronjob(obj: &Value) -> Health {
    if obj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        return h(HealthCode::Suspended, "CronJob is Suspended");
    }
    if !has_status(obj) {
        return h(HealthCode::Progressing, "Waiting for CronJob");
    }
    let Some(scheduled) = str_at(obj, "/status/lastScheduleTime") else {
        return h(HealthCode::Healthy, "CronJob has not been scheduled yet");
    };
    let Some(succeeded) = str_at(obj, "/status/lastSuccessfulTime") else {
        return h(
            HealthCode::Healthy,
            "The Cronjob never completed succesfully. It may not be healthy",
        );
    };
    let active = obj
        .pointer("/status/active")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if active {
        return h(
            HealthCode::Healthy,
            "The job is running. Its last execution may not have been successful",
        );
    }
    if earlier(succeeded, scheduled) {
        return h(
            HealthCode::Degraded,
            "CronJob has not completed its last execution successfully",
        );
    }
    h(
        HealthCode::Healthy,
        "CronJob has completed its last execution successfully",
    )
}

/// Whether timestamp `a` is before `b` (RFC 3339; as text when either does not parse).
fn earlier(a: &str, b: &str) -> bool {
    match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
        (Ok(a), Ok(b)) => a < b,
        _ => a < b,
    }
}

/// APIService (gitops-engine `health_apiservice.go`): the `Available` condition.
fn apiservice(obj: &Value) -> Health {
    match condition(obj, "Available") {
        Some(c) => {
            let code = if field(c, "status") == "True" {
                HealthCode::Healthy
            } else {
                HealthCode::Progressing
            };
            h(
                code,
                format!("{}: {}", field(c, "reason"), field(c, "message")),
            )
        }
        None => h(HealthCode::Progressing, "Waiting to be processed"),
    }
}

/// CRD (Argo CD's script): terminating, names not accepted, not established, non-structural.
fn crd(obj: &Value) -> Health {
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        return h(HealthCode::Progressing, "CRD is terminating");
    }
    if conditions(obj).is_empty() {
        return h(HealthCode::Progressing, "Status conditions not found");
    }
    let is =
        |type_: &str, status: &str| condition(obj, type_).filter(|c| field(c, "status") == status);
    let message = |c: &Value| field(c, "message").to_string();
    if let Some(c) = is("Terminating", "True") {
        return h(
            HealthCode::Progressing,
            format!("CRD is terminating: {}", message(c)),
        );
    }
    if let Some(c) = is("NamesAccepted", "False") {
        return h(
            HealthCode::Degraded,
            format!("CRD names have not been accepted: {}", message(c)),
        );
    }
    if is("Established", "True").is_none() {
        return h(HealthCode::Degraded, "CRD is not established");
    }
    if let Some(c) = is("NonStructuralSchema", "True") {
        return h(
            HealthCode::Degraded,
            format!("Schema violations found: {}", message(c)),
        );
    }
    h(HealthCode::Healthy, "CRD is healthy")
}

/// Namespace: Argo CD has no check for it (no health); this one is ours, so that a namespace
/// stuck terminating is visible. The API server sets `Active` on creation.
fn namespace(obj: &Value) -> Health {
    match str_at(obj, "/status/phase") {
        Some("Terminating") => h(HealthCode::Progressing, "Namespace is terminating"),
        _ => h(HealthCode::Healthy, ""),
    }
}

/// A number that Argo Rollouts may publish as a JSON number or a string (`observedGeneration`).
fn number_at(obj: &Value, pointer: &str) -> Option<i64> {
    match obj.pointer(pointer)? {
        Value::String(s) => s.parse().ok(),
        v => v.as_i64(),
    }
}

/// Whether the Rollout controller has seen the current spec (and referenced workload). Before
/// v0.10 `observedGeneration` was a hash: not a number, or larger, counts as observed.
fn rollout_observed(obj: &Value) -> bool {
    if !has_status(obj) {
        return false;
    }
    let generation = int(obj, "/metadata/generation").unwrap_or(0);
    let spec_seen = match number_at(obj, "/status/observedGeneration") {
        Some(observed) => observed >= generation,
        None => true,
    };
    let workload_seen = obj.pointer("/spec/workloadRef").is_none()
        || obj.pointer("/metadata/annotations").is_none()
        || number_at(
            obj,
            "/metadata/annotations/rollout.argoproj.io~1workload-generation",
        ) == number_at(obj, "/status/workloadObservedGeneration");
    spec_seen && workload_seen
}

/// Argo Rollouts' `status.phase` (v1.0+), surfaced as is; `Paused` is Suspended.
fn rollout_phase(obj: &Value) -> Option<Health> {
    let code = match str_at(obj, "/status/phase")? {
        "Healthy" => HealthCode::Healthy,
        "Paused" => HealthCode::Suspended,
        "Progressing" => HealthCode::Progressing,
        "Degraded" => HealthCode::Degraded,
        _ => HealthCode::Unknown,
    };
    Some(h(code, str_at(obj, "/status/message").unwrap_or("")))
}

/// Rollout (Argo CD's script): observed generation, phase (v1.0+), else the pre-v1.0 rules from
/// conditions, pause, replica counts and the strategy's selectors.
fn rollout(obj: &Value) -> Health {
    if !rollout_observed(obj) {
        return h(
            HealthCode::Progressing,
            "Waiting for rollout spec update to be observed",
        );
    }
    if let Some(phase) = rollout_phase(obj) {
        return phase;
    }
    for c in conditions(obj) {
        let failed = match field(c, "type") {
            "InvalidSpec" => true,
            "Progressing" => matches!(
                field(c, "reason"),
                "RolloutAborted" | "ProgressDeadlineExceeded"
            ),
            _ => false,
        };
        if failed {
            return h(HealthCode::Degraded, field(c, "message"));
        }
    }
    let pause_conditions = obj
        .pointer("/status/pauseConditions")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    if pause_conditions || obj.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return h(HealthCode::Suspended, "Rollout is paused");
    }
    let Some(pod_hash) = str_at(obj, "/status/currentPodHash") else {
        return h(
            HealthCode::Progressing,
            "Waiting for rollout to finish: status has not been reconciled.",
        );
    };
    rollout_replicas(obj).unwrap_or_else(|| rollout_strategy(obj, pod_hash))
}

fn rollout_replicas(obj: &Value) -> Option<Health> {
    let desired = int(obj, "/spec/replicas").unwrap_or(1);
    let updated = int(obj, "/status/updatedReplicas").unwrap_or(0);
    let available = int(obj, "/status/availableReplicas").unwrap_or(0);
    let message = if updated < desired {
        "Waiting for roll out to finish: More replicas need to be updated"
    } else if available < updated {
        "Waiting for roll out to finish: updated replicas are still becoming available"
    } else {
        return None;
    };
    Some(h(HealthCode::Progressing, message))
}

fn rollout_strategy(obj: &Value, pod_hash: &str) -> Health {
    // Argo Rollouts v0.8 moved `status.canary.stableRS` to `status.stableRS`.
    let stable = str_at(obj, "/status/stableRS")
        .or_else(|| str_at(obj, "/status/canary/stableRS"))
        .unwrap_or("");
    let progressing = |m: &str| h(HealthCode::Progressing, m);
    if obj.pointer("/spec/strategy/blueGreen").is_some() {
        if str_at(obj, "/status/blueGreen/activeSelector") != Some(pod_hash) {
            return progressing("active service cutover pending");
        }
        if !stable.is_empty() && stable != pod_hash {
            return progressing("waiting for analysis to complete");
        }
    } else if obj.pointer("/spec/strategy/canary").is_some() {
        let replicas = int(obj, "/status/replicas").unwrap_or(0);
        if replicas > int(obj, "/status/updatedReplicas").unwrap_or(0) {
            return progressing(
                "Waiting for roll out to finish: old replicas are pending termination",
            );
        }
        if stable != pod_hash {
            return progressing("Waiting for rollout to finish steps");
        }
    }
    h(HealthCode::Healthy, "")
}

/// The common shape of Argo CD's scripts for cert-manager and External Secrets: the first
/// `Ready` condition decides (False → Degraded, True → Healthy), else Progressing `waiting`.
fn ready_condition(obj: &Value, waiting: &str) -> Health {
    ready_verdict(conditions(obj).iter().find(|c| field(c, "type") == "Ready"))
        .unwrap_or_else(|| h(HealthCode::Progressing, waiting))
}

fn ready_verdict(ready: Option<&Value>) -> Option<Health> {
    let c = ready?;
    let code = match field(c, "status") {
        "True" => HealthCode::Healthy,
        "False" => HealthCode::Degraded,
        _ => return None,
    };
    Some(h(code, field(c, "message")))
}

/// Certificate (Argo CD's script): `Issuing` True wins over `Ready`, so a renewal in flight is
/// Progressing even while the old certificate is still Ready.
fn certificate(obj: &Value) -> Health {
    if let Some(issuing) = condition(obj, "Issuing").filter(|c| field(c, "status") == "True") {
        return h(HealthCode::Progressing, field(issuing, "message"));
    }
    ready_condition(obj, "Waiting for certificate")
}

/// ExternalSecret (Argo CD's script): `Ready`; with `refreshPolicy: OnChange` only once the
/// condition is at least as recent as the last refresh.
fn external_secret(obj: &Value) -> Health {
    let on_change = str_at(obj, "/spec/refreshPolicy") == Some("OnChange");
    let refreshed = str_at(obj, "/status/refreshTime").unwrap_or("");
    let ready = conditions(obj).iter().find(|c| {
        field(c, "type") == "Ready"
            && (!on_change || !earlier(field(c, "lastTransitionTime"), refreshed))
    });
    ready_verdict(ready).unwrap_or_else(|| h(HealthCode::Progressing, "Waiting for ExternalSecret"))
}

/// ClusterExternalSecret (Argo CD's script): the last condition is the current one.
fn cluster_external_secret(obj: &Value) -> Health {
    if let Some(last) = conditions(obj).last()
        && field(last, "status") == "True"
    {
        match field(last, "type") {
            "Ready" => return h(HealthCode::Healthy, field(last, "message")),
            "PartiallyReady" | "NotReady" => {
                return h(HealthCode::Degraded, field(last, "message"));
            }
            _ => {}
        }
    }
    h(HealthCode::Progressing, "Waiting for ClusterExternalSecret")
}

/// KEDA ScaledObject (Argo CD's script): `Ready` False → Degraded, True → Healthy, or Suspended
/// when paused. Also Degraded while a fallback is active; Progressing while KEDA reports its
/// HPA's metrics unavailable (`HPAMetricsUnavailable`) as in Argo CD's newer test data.
fn scaled_object(obj: &Value) -> Health {
    if let Some(fallback) = condition(obj, "Fallback").filter(|c| field(c, "status") == "True") {
        return h(HealthCode::Degraded, field(fallback, "message"));
    }
    let Some(ready) = condition(obj, "Ready") else {
        return h(
            HealthCode::Progressing,
            "Creating HorizontalPodAutoscaler Object",
        );
    };
    let message = field(ready, "message");
    match field(ready, "status") {
        "False" if field(ready, "reason") == "HPAMetricsUnavailable" => {
            h(HealthCode::Progressing, message)
        }
        "False" => h(HealthCode::Degraded, message),
        "True" if keda_paused(obj) => {
            let paused =
                condition(obj, "Paused").map_or("ScaledObject is paused", |c| field(c, "message"));
            h(HealthCode::Suspended, paused)
        }
        "True" => h(HealthCode::Healthy, message),
        _ => h(
            HealthCode::Progressing,
            "Creating HorizontalPodAutoscaler Object",
        ),
    }
}

fn keda_paused(obj: &Value) -> bool {
    let annotated = str_at(obj, "/metadata/annotations/autoscaling.keda.sh~1paused")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || str_at(
            obj,
            "/metadata/annotations/autoscaling.keda.sh~1paused-replicas",
        )
        .is_some();
    annotated || condition_true(obj, "Paused")
}

fn is_crossplane(group: &str) -> bool {
    group.ends_with("crossplane.io") || group.ends_with("upbound.io")
}

/// Crossplane kinds that never publish a status, Healthy as they are (Argo CD's list).
const CROSSPLANE_STATUSLESS: &[&str] = &[
    "Composition",
    "CompositionRevision",
    "DeploymentRuntimeConfig",
    "ClusterProviderConfig",
    "ProviderConfig",
    "ProviderConfigUsage",
    "ControllerConfig",
];

/// The conditions that mean "ready" across Crossplane's kinds (managed resources and claims:
/// Ready; packages: Healthy; XRDs: Established/Offered; compositions: ValidPipeline).
const CROSSPLANE_READY: &[&str] = &[
    "Ready",
    "Healthy",
    "Offered",
    "Established",
    "ValidPipeline",
    "RevisionHealthy",
];

/// Crossplane and Upbound (Argo CD's `*.crossplane.io` / `*.upbound.io` scripts): a failed sync
/// or async operation is Degraded; a ready condition with `Synced` not pending is Healthy.
/// Unlike Argo CD (whose script, by operator precedence, calls any object without status
/// Healthy), an object of a kind that publishes status but has none yet is Progressing.
fn crossplane(group: &str, kind: &str, obj: &Value) -> Health {
    let provisioning = h(HealthCode::Progressing, "Provisioning ...");
    let status_empty = obj
        .get("status")
        .is_none_or(|s| s.as_object().is_none_or(|m| m.is_empty()));
    if status_empty {
        return if CROSSPLANE_STATUSLESS.contains(&kind) {
            h(HealthCode::Healthy, "Resource is up-to-date.")
        } else {
            provisioning
        };
    }
    let conds = conditions(obj);
    if conds.is_empty() {
        let in_use = matches!(kind, "ProviderConfig" | "ClusterProviderConfig")
            && obj.pointer("/status/users").is_some();
        return if in_use {
            h(HealthCode::Healthy, "Resource is in use.")
        } else {
            provisioning
        };
    }
    let failed = conds.iter().find(|c| {
        matches!(field(c, "type"), "Synced" | "LastAsyncOperation") && field(c, "status") == "False"
    });
    if let Some(c) = failed {
        return h(HealthCode::Degraded, field(c, "message"));
    }
    let ready_types: &[&str] = if group.ends_with("upbound.io") {
        &["Ready"]
    } else {
        CROSSPLANE_READY
    };
    let ready = conds
        .iter()
        .any(|c| ready_types.contains(&field(c, "type")) && field(c, "status") == "True");
    let sync_pending = condition(obj, "Synced").is_some_and(|c| field(c, "status") != "True");
    if ready && !sync_pending {
        h(HealthCode::Healthy, "Resource is up-to-date.")
    } else {
        provisioning
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[track_caller]
    fn verdict(group: &str, kind: &str, obj: Value) -> (HealthCode, String) {
        let got = check(group, kind, &obj).expect("a built-in check");
        (got.code, got.message)
    }

    #[track_caller]
    fn code(group: &str, kind: &str, obj: Value) -> HealthCode {
        verdict(group, kind, obj).0
    }

    fn with_conditions(mut obj: Value, conditions: Value) -> Value {
        obj["status"]["conditions"] = conditions;
        obj
    }

    #[test]
    fn unknown_kinds_have_no_check() {
        assert_eq!(check("", "ConfigMap", &json!({})), None);
        assert_eq!(check("example.com", "Widget", &json!({})), None);
    }

    #[test]
    fn hpa_follows_its_conditions_in_order() {
        let hpa = |conds: Value| {
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                   "metadata": {"name": "web"}, "spec": {"minReplicas": 1, "maxReplicas": 5},
                   "status": {"currentReplicas": 1, "desiredReplicas": 1, "conditions": conds}})
        };
        let steady = hpa(json!([
            {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "message": "recommended size matches current size"},
            {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "message": "the HPA was able to successfully calculate a replica count from cpu resource utilization"},
            {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange", "message": "the desired count is within the acceptable range"}]));
        assert_eq!(
            verdict("autoscaling", "HorizontalPodAutoscaler", steady),
            (
                HealthCode::Healthy,
                "the desired count is within the acceptable range".into()
            )
        );
        let no_metrics = hpa(json!([
            {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale", "message": "the HPA controller was able to get the target's current scale"},
            {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric", "message": "the HPA was unable to compute the replica count: failed to get cpu utilization"}]));
        assert_eq!(
            code("autoscaling", "HorizontalPodAutoscaler", no_metrics),
            HealthCode::Degraded
        );
        let fresh =
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "spec": {}});
        assert_eq!(
            verdict("autoscaling", "HorizontalPodAutoscaler", fresh),
            (HealthCode::Progressing, "Waiting to Autoscale".into())
        );
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"annotations": {"autoscaling.alpha.kubernetes.io/conditions":
                "[{\"type\":\"AbleToScale\",\"status\":\"False\",\"lastTransitionTime\":\"2024-01-01T00:00:00Z\",\"reason\":\"FailedGetScale\",\"message\":\"deployments/scale.apps \\\"web\\\" not found\"}]"}},
            "status": {"currentReplicas": 0, "desiredReplicas": 0}});
        assert_eq!(
            verdict("autoscaling", "HorizontalPodAutoscaler", v1),
            (
                HealthCode::Degraded,
                "deployments/scale.apps \"web\" not found".into()
            )
        );
    }

    #[test]
    fn pdb_is_degraded_only_on_unexpected_false_conditions() {
        let pdb = |status: Value| {
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "generation": 1},
                   "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}, "status": status})
        };
        let allowed = pdb(
            json!({"currentHealthy": 2, "desiredHealthy": 1, "disruptionsAllowed": 1, "expectedPods": 2, "observedGeneration": 1,
            "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": ""}]}),
        );
        assert_eq!(
            verdict("policy", "PodDisruptionBudget", allowed),
            (
                HealthCode::Healthy,
                "PodDisruptionBudget has SufficientPods".into()
            )
        );
        let blocking = pdb(
            json!({"currentHealthy": 1, "desiredHealthy": 1, "disruptionsAllowed": 0, "expectedPods": 1,
            "conditions": [{"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": ""}]}),
        );
        assert_eq!(
            code("policy", "PodDisruptionBudget", blocking),
            HealthCode::Healthy
        );
        let failing = pdb(
            json!({"conditions": [{"type": "DisruptionAllowed", "status": "False", "reason": "SyncFailed", "message": "found no controllers for pod"}]}),
        );
        assert_eq!(
            verdict("policy", "PodDisruptionBudget", failing),
            (
                HealthCode::Degraded,
                "PodDisruptionBudget has SyncFailed".into()
            )
        );
        assert_eq!(
            code("policy", "PodDisruptionBudget", pdb(json!({}))),
            HealthCode::Progressing
        );
    }

    #[test]
    fn cronjob_judges_its_last_run() {
        let cron = |suspend: bool, status: Value| {
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup"},
                   "spec": {"schedule": "*/5 * * * *", "suspend": suspend}, "status": status})
        };
        let cases = [
            (cron(true, json!({})), HealthCode::Suspended),
            (cron(false, json!({})), HealthCode::Healthy),
            (
                cron(false, json!({"lastScheduleTime": "2024-05-01T10:05:00Z"})),
                HealthCode::Healthy,
            ),
            (
                cron(
                    false,
                    json!({"lastScheduleTime": "2024-05-01T10:05:00Z", "lastSuccessfulTime": "2024-05-01T10:05:09Z"}),
                ),
                HealthCode::Healthy,
            ),
            (
                cron(
                    false,
                    json!({"lastScheduleTime": "2024-05-01T10:05:00Z", "lastSuccessfulTime": "2024-05-01T10:00:07Z"}),
                ),
                HealthCode::Degraded,
            ),
            (
                cron(
                    false,
                    json!({"active": [{"kind": "Job", "name": "backup-28581205"}],
                                   "lastScheduleTime": "2024-05-01T10:05:00Z", "lastSuccessfulTime": "2024-05-01T10:00:07Z"}),
                ),
                HealthCode::Healthy,
            ),
        ];
        for (obj, want) in cases {
            assert_eq!(code("batch", "CronJob", obj.clone()), want, "{obj}");
        }
        let mut fresh = cron(false, json!(null));
        fresh.as_object_mut().expect("object").remove("status");
        assert_eq!(
            verdict("batch", "CronJob", fresh),
            (HealthCode::Progressing, "Waiting for CronJob".into())
        );
    }

    #[test]
    fn apiservice_follows_available() {
        let svc = |conds: Value| {
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1beta1.metrics.k8s.io"},
                   "spec": {"group": "metrics.k8s.io", "service": {"name": "metrics-server", "namespace": "kube-system"}},
                   "status": {"conditions": conds}})
        };
        let up = svc(
            json!([{"type": "Available", "status": "True", "reason": "Passed", "message": "all checks passed"}]),
        );
        assert_eq!(
            verdict("apiregistration.k8s.io", "APIService", up),
            (HealthCode::Healthy, "Passed: all checks passed".into())
        );
        let down = svc(
            json!([{"type": "Available", "status": "False", "reason": "MissingEndpoints", "message": "endpoints for service/metrics-server in \"kube-system\" have no addresses"}]),
        );
        assert_eq!(
            code("apiregistration.k8s.io", "APIService", down),
            HealthCode::Progressing
        );
        assert_eq!(
            verdict("apiregistration.k8s.io", "APIService", svc(json!([]))),
            (HealthCode::Progressing, "Waiting to be processed".into())
        );
    }

    #[test]
    fn crd_needs_accepted_names_and_establishment() {
        let crd = |conds: Value| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
                   "status": {"acceptedNames": {"kind": "Widget", "plural": "widgets"}, "conditions": conds}})
        };
        let established = crd(json!([
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}]));
        assert_eq!(
            verdict(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                established.clone()
            ),
            (HealthCode::Healthy, "CRD is healthy".into())
        );
        let conflict = crd(json!([
            {"type": "NamesAccepted", "status": "False", "reason": "PluralConflict", "message": "\"widgets\" is already in use"},
            {"type": "Established", "status": "False", "reason": "NotAccepted", "message": "not all names are accepted"}]));
        assert_eq!(
            verdict("apiextensions.k8s.io", "CustomResourceDefinition", conflict),
            (
                HealthCode::Degraded,
                "CRD names have not been accepted: \"widgets\" is already in use".into()
            )
        );
        let pending = crd(
            json!([{"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"}]),
        );
        assert_eq!(
            code("apiextensions.k8s.io", "CustomResourceDefinition", pending),
            HealthCode::Degraded
        );
        let mut non_structural = established.clone();
        non_structural["status"]["conditions"]
            .as_array_mut()
            .expect("conditions")
            .push(json!({"type": "NonStructuralSchema", "status": "True", "reason": "Violations", "message": "spec.versions[0].schema.openAPIV3Schema.type: Required value"}));
        assert_eq!(
            code(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                non_structural
            ),
            HealthCode::Degraded
        );
        let mut deleting = established;
        deleting["metadata"]["deletionTimestamp"] = json!("2024-05-01T10:00:00Z");
        assert_eq!(
            verdict("apiextensions.k8s.io", "CustomResourceDefinition", deleting),
            (HealthCode::Progressing, "CRD is terminating".into())
        );
        let new = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "spec": {}});
        assert_eq!(
            code("apiextensions.k8s.io", "CustomResourceDefinition", new),
            HealthCode::Progressing
        );
    }

    #[test]
    fn namespace_is_progressing_while_terminating() {
        let ns = |phase: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": phase}});
        assert_eq!(code("", "Namespace", ns("Active")), HealthCode::Healthy);
        assert_eq!(
            code("", "Namespace", ns("Terminating")),
            HealthCode::Progressing
        );
        let mut deleting = ns("Terminating");
        deleting["metadata"]["deletionTimestamp"] = json!("2024-05-01T10:00:00Z");
        deleting["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
        assert_eq!(
            verdict("", "Namespace", deleting),
            (
                HealthCode::Progressing,
                "Pending deletion; blocked by finalizers: example.com/cleanup".into()
            )
        );
    }

    fn rollout(strategy: Value, status: Value) -> Value {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "guestbook", "generation": 3},
               "spec": {"replicas": 3, "strategy": strategy}, "status": status})
    }

    #[test]
    fn rollout_without_status_is_progressing() {
        let mut bare = rollout(json!({"canary": {}}), json!(null));
        bare.as_object_mut().expect("object").remove("status");
        assert_eq!(
            verdict("argoproj.io", "Rollout", bare),
            (
                HealthCode::Progressing,
                "Waiting for rollout spec update to be observed".into()
            )
        );
        assert_eq!(
            code(
                "argoproj.io",
                "Rollout",
                rollout(json!({"canary": {}}), json!({}))
            ),
            HealthCode::Progressing
        );
        let stale = rollout(
            json!({"canary": {}}),
            json!({"observedGeneration": "2", "phase": "Healthy"}),
        );
        assert_eq!(
            code("argoproj.io", "Rollout", stale),
            HealthCode::Progressing
        );
    }

    #[test]
    fn rollout_surfaces_its_phase() {
        let phase = |p: &str, m: &str| {
            rollout(
                json!({"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}),
                json!({"observedGeneration": "3", "phase": p, "message": m, "currentPodHash": "6b8cf6f7db"}),
            )
        };
        assert_eq!(
            code("argoproj.io", "Rollout", phase("Healthy", "")),
            HealthCode::Healthy
        );
        assert_eq!(
            verdict("argoproj.io", "Rollout", phase("Paused", "CanaryPauseStep")),
            (HealthCode::Suspended, "CanaryPauseStep".into())
        );
        assert_eq!(
            verdict(
                "argoproj.io",
                "Rollout",
                phase(
                    "Degraded",
                    "RolloutAborted: Rollout aborted update to revision 2"
                )
            ),
            (
                HealthCode::Degraded,
                "RolloutAborted: Rollout aborted update to revision 2".into()
            )
        );
        assert_eq!(
            code(
                "argoproj.io",
                "Rollout",
                phase("Progressing", "more replicas need to be updated")
            ),
            HealthCode::Progressing
        );
    }

    #[test]
    fn legacy_rollout_rules() {
        let canary = json!({"canary": {"steps": [{"setWeight": 50}]}});
        let done = json!({"observedGeneration": 3, "currentPodHash": "abc", "stableRS": "abc",
                          "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "readyReplicas": 3});
        assert_eq!(
            code(
                "argoproj.io",
                "Rollout",
                rollout(canary.clone(), done.clone())
            ),
            HealthCode::Healthy
        );
        let mut stepping = done.clone();
        stepping["stableRS"] = json!("old");
        assert_eq!(
            verdict("argoproj.io", "Rollout", rollout(canary.clone(), stepping)),
            (
                HealthCode::Progressing,
                "Waiting for rollout to finish steps".into()
            )
        );
        let mut updating = done.clone();
        updating["updatedReplicas"] = json!(1);
        assert_eq!(
            code("argoproj.io", "Rollout", rollout(canary.clone(), updating)),
            HealthCode::Progressing
        );
        let mut paused = done.clone();
        paused["pauseConditions"] =
            json!([{"reason": "CanaryPauseStep", "startTime": "2024-05-01T10:00:00Z"}]);
        assert_eq!(
            code("argoproj.io", "Rollout", rollout(canary.clone(), paused)),
            HealthCode::Suspended
        );
        let mut timed_out = done.clone();
        timed_out["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                           "message": "ReplicaSet \"guestbook-6b8cf6f7db\" has timed out progressing."}]);
        assert_eq!(
            verdict("argoproj.io", "Rollout", rollout(canary, timed_out)),
            (
                HealthCode::Degraded,
                "ReplicaSet \"guestbook-6b8cf6f7db\" has timed out progressing.".into()
            )
        );
        let blue_green =
            json!({"blueGreen": {"activeService": "active", "previewService": "preview"}});
        let mut cutover = done.clone();
        cutover["blueGreen"] = json!({"activeSelector": "old", "previewSelector": "abc"});
        assert_eq!(
            verdict(
                "argoproj.io",
                "Rollout",
                rollout(blue_green.clone(), cutover)
            ),
            (
                HealthCode::Progressing,
                "active service cutover pending".into()
            )
        );
        let mut served = done;
        served["blueGreen"] = json!({"activeSelector": "abc"});
        assert_eq!(
            code("argoproj.io", "Rollout", rollout(blue_green, served)),
            HealthCode::Healthy
        );
    }

    #[test]
    fn cert_manager_follows_ready_and_issuing() {
        let cert = |conds: Value| {
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "web-tls", "generation": 1},
                   "spec": {"secretName": "web-tls", "dnsNames": ["example.com"], "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
                   "status": {"conditions": conds}})
        };
        let issued = cert(
            json!([{"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired", "observedGeneration": 1}]),
        );
        assert_eq!(
            verdict("cert-manager.io", "Certificate", issued),
            (
                HealthCode::Healthy,
                "Certificate is up to date and has not expired".into()
            )
        );
        let renewing = cert(json!([
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired"},
            {"type": "Issuing", "status": "True", "reason": "Renewing", "message": "Renewing certificate as renewal was scheduled at 2024-05-01 10:00:00 +0000 UTC"}]));
        assert_eq!(
            code("cert-manager.io", "Certificate", renewing),
            HealthCode::Progressing
        );
        let failed = cert(
            json!([{"type": "Ready", "status": "False", "reason": "DoesNotExist", "message": "Issuing certificate as Secret does not exist"}]),
        );
        assert_eq!(
            code("cert-manager.io", "Certificate", failed),
            HealthCode::Degraded
        );
        let new = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "spec": {}});
        assert_eq!(
            verdict("cert-manager.io", "Certificate", new),
            (HealthCode::Progressing, "Waiting for certificate".into())
        );
        let issuer = |kind: &str, conds: Value| {
            with_conditions(
                json!({"apiVersion": "cert-manager.io/v1", "kind": kind, "spec": {"acme": {}}, "status": {"acme": {}}}),
                conds,
            )
        };
        let registered = json!([{"type": "Ready", "status": "True", "reason": "ACMEAccountRegistered", "message": "The ACME account was registered with the ACME server"}]);
        let acme_failed = json!([{"type": "Ready", "status": "False", "reason": "ErrRegisterACMEAccount", "message": "Failed to register ACME account: 429"}]);
        for kind in ["Issuer", "ClusterIssuer"] {
            assert_eq!(
                code("cert-manager.io", kind, issuer(kind, registered.clone())),
                HealthCode::Healthy
            );
            assert_eq!(
                code("cert-manager.io", kind, issuer(kind, acme_failed.clone())),
                HealthCode::Degraded
            );
            assert_eq!(
                code("cert-manager.io", kind, issuer(kind, json!([]))),
                HealthCode::Progressing
            );
        }
        assert_eq!(
            verdict("cert-manager.io", "ClusterIssuer", json!({"spec": {}})).1,
            "Initializing ClusterIssuer"
        );
    }

    #[test]
    fn external_secrets_follow_ready() {
        let es = |policy: &str, transition: &str, status: &str, message: &str| {
            json!({"apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret", "metadata": {"name": "db", "generation": 1},
                   "spec": {"refreshInterval": "1h", "refreshPolicy": policy, "secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault"},
                            "data": [{"secretKey": "password", "remoteRef": {"key": "secret/db", "property": "password"}}]},
                   "status": {"conditions": [{"type": "Ready", "status": status, "reason": "SecretSynced", "message": message, "lastTransitionTime": transition}],
                              "refreshTime": "2024-05-01T10:00:00Z", "syncedResourceVersion": "1-519a61da0dc68b2575b4f8efada70e42"}})
        };
        let synced = es(
            "Periodic",
            "2024-05-01T10:00:00Z",
            "True",
            "Secret was synced",
        );
        assert_eq!(
            verdict("external-secrets.io", "ExternalSecret", synced),
            (HealthCode::Healthy, "Secret was synced".into())
        );
        let error = es(
            "Periodic",
            "2024-05-01T10:00:00Z",
            "False",
            "could not get secret data from provider",
        );
        assert_eq!(
            code("external-secrets.io", "ExternalSecret", error),
            HealthCode::Degraded
        );
        let old_ready = es(
            "OnChange",
            "2024-05-01T09:00:00Z",
            "True",
            "Secret was synced",
        );
        assert_eq!(
            code("external-secrets.io", "ExternalSecret", old_ready),
            HealthCode::Progressing
        );
        let fresh_ready = es(
            "OnChange",
            "2024-05-01T11:00:00Z",
            "True",
            "Secret was synced",
        );
        assert_eq!(
            code("external-secrets.io", "ExternalSecret", fresh_ready),
            HealthCode::Healthy
        );
        let new = json!({"apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret", "spec": {}});
        assert_eq!(
            verdict("external-secrets.io", "ExternalSecret", new),
            (HealthCode::Progressing, "Waiting for ExternalSecret".into())
        );

        let ces = |conds: Value| {
            with_conditions(
                json!({"apiVersion": "external-secrets.io/v1beta1", "kind": "ClusterExternalSecret", "spec": {}}),
                conds,
            )
        };
        let partial = ces(json!([
            {"type": "Ready", "status": "True", "message": ""},
            {"type": "PartiallyReady", "status": "True", "message": "one or more namespaces failed"}]));
        assert_eq!(
            code("external-secrets.io", "ClusterExternalSecret", partial),
            HealthCode::Degraded
        );
        let ready = ces(json!([{"type": "Ready", "status": "True", "message": ""}]));
        assert_eq!(
            code("external-secrets.io", "ClusterExternalSecret", ready),
            HealthCode::Healthy
        );
        assert_eq!(
            code(
                "external-secrets.io",
                "ClusterExternalSecret",
                ces(json!([]))
            ),
            HealthCode::Progressing
        );

        let store = |kind: &str, status: &str| {
            with_conditions(
                json!({"apiVersion": "external-secrets.io/v1beta1", "kind": kind, "spec": {"provider": {"vault": {}}}}),
                json!([{"type": "Ready", "status": status, "reason": "Valid", "message": "store validated"}]),
            )
        };
        for kind in ["SecretStore", "ClusterSecretStore"] {
            assert_eq!(
                code("external-secrets.io", kind, store(kind, "True")),
                HealthCode::Healthy
            );
            assert_eq!(
                code("external-secrets.io", kind, store(kind, "False")),
                HealthCode::Degraded
            );
        }
    }

    #[test]
    fn keda_scaled_object_rules() {
        let so = |annotations: Value, conds: Value| {
            json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                   "metadata": {"name": "worker", "annotations": annotations, "finalizers": ["finalizer.keda.sh"]},
                   "spec": {"scaleTargetRef": {"name": "worker"}, "minReplicaCount": 1, "maxReplicaCount": 10,
                            "triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}]},
                   "status": {"conditions": conds, "hpaName": "keda-hpa-worker", "originalReplicaCount": 1}})
        };
        let ready = json!({"type": "Ready", "status": "True", "reason": "ScaledObjectReady", "message": "ScaledObject is defined correctly and is ready for scaling"});
        let active = json!({"type": "Active", "status": "True", "reason": "ScalerActive", "message": "Scaling is performed because triggers are active"});
        let no_fallback = json!({"type": "Fallback", "status": "False", "reason": "NoFallbackFound", "message": "No fallbacks are active on this scaled object"});
        let not_paused = json!({"type": "Paused", "status": "False", "reason": "ScaledObjectUnpaused", "message": "ScaledObject is not paused"});
        assert_eq!(
            verdict(
                "keda.sh",
                "ScaledObject",
                so(json!({}), json!([ready, active, no_fallback, not_paused]))
            ),
            (
                HealthCode::Healthy,
                "ScaledObject is defined correctly and is ready for scaling".into()
            )
        );
        let paused = json!({"type": "Paused", "status": "True", "reason": "ScaledObjectPaused", "message": "ScaledObject is paused"});
        assert_eq!(
            verdict(
                "keda.sh",
                "ScaledObject",
                so(json!({}), json!([ready, active, no_fallback, paused]))
            ),
            (HealthCode::Suspended, "ScaledObject is paused".into())
        );
        assert_eq!(
            code(
                "keda.sh",
                "ScaledObject",
                so(
                    json!({"autoscaling.keda.sh/paused": "true"}),
                    json!([ready])
                )
            ),
            HealthCode::Suspended
        );
        let falling_back = json!({"type": "Fallback", "status": "True", "reason": "FallbackExists", "message": "At least one trigger is falling back on this scaled object"});
        assert_eq!(
            code(
                "keda.sh",
                "ScaledObject",
                so(json!({}), json!([ready, active, falling_back]))
            ),
            HealthCode::Degraded
        );
        let invalid = json!({"type": "Ready", "status": "False", "reason": "ScaledObjectCheckFailed", "message": "ScaledObject doesn't have correct triggers specification"});
        assert_eq!(
            code("keda.sh", "ScaledObject", so(json!({}), json!([invalid]))),
            HealthCode::Degraded
        );
        let metrics = json!({"type": "Ready", "status": "False", "reason": "HPAMetricsUnavailable", "message": "ScaledObject is configured correctly but HPA is not healthy: FailedGetResourceMetric"});
        assert_eq!(
            code("keda.sh", "ScaledObject", so(json!({}), json!([metrics]))),
            HealthCode::Progressing
        );
        assert_eq!(
            verdict("keda.sh", "ScaledObject", so(json!({}), json!([]))),
            (
                HealthCode::Progressing,
                "Creating HorizontalPodAutoscaler Object".into()
            )
        );
    }

    #[test]
    fn crossplane_and_upbound_rules() {
        let managed = |group: &str, conds: Value| {
            with_conditions(
                json!({"apiVersion": format!("{group}/v1beta1"), "kind": "Bucket", "metadata": {"name": "logs"},
                                   "spec": {"forProvider": {"region": "eu-west-1"}}, "status": {"atProvider": {}}}),
                conds,
            )
        };
        let synced = json!({"type": "Synced", "status": "True", "reason": "ReconcileSuccess"});
        let ready = json!({"type": "Ready", "status": "True", "reason": "Available"});
        let creating = json!({"type": "Ready", "status": "False", "reason": "Creating"});
        let sync_error = json!({"type": "Synced", "status": "False", "reason": "ReconcileError", "message": "cannot create Bucket: AccessDenied"});
        for group in ["s3.aws.upbound.io", "s3.aws.crossplane.io"] {
            assert_eq!(
                verdict(group, "Bucket", managed(group, json!([ready, synced]))),
                (HealthCode::Healthy, "Resource is up-to-date.".into())
            );
            assert_eq!(
                code(group, "Bucket", managed(group, json!([creating, synced]))),
                HealthCode::Progressing
            );
            assert_eq!(
                verdict(group, "Bucket", managed(group, json!([ready, sync_error]))),
                (
                    HealthCode::Degraded,
                    "cannot create Bucket: AccessDenied".into()
                )
            );
            let mut fresh = managed(group, json!(null));
            fresh.as_object_mut().expect("object").remove("status");
            assert_eq!(code(group, "Bucket", fresh), HealthCode::Progressing);
        }
        let provider = with_conditions(
            json!({"apiVersion": "pkg.crossplane.io/v1", "kind": "Provider", "spec": {"package": "xpkg.upbound.io/upbound/provider-aws-s3:v1"}}),
            json!([{"type": "Installed", "status": "True", "reason": "ActivePackageRevision"},
                   {"type": "Healthy", "status": "True", "reason": "HealthyPackageRevision"}]),
        );
        assert_eq!(
            code("pkg.crossplane.io", "Provider", provider),
            HealthCode::Healthy
        );
        let composition = json!({"apiVersion": "apiextensions.crossplane.io/v1", "kind": "Composition", "spec": {"mode": "Pipeline"}});
        assert_eq!(
            code("apiextensions.crossplane.io", "Composition", composition),
            HealthCode::Healthy
        );
        let config = json!({"apiVersion": "aws.upbound.io/v1beta1", "kind": "ProviderConfig", "spec": {}, "status": {"users": 3}});
        assert_eq!(
            verdict("aws.upbound.io", "ProviderConfig", config),
            (HealthCode::Healthy, "Resource is in use.".into())
        );
    }

    #[test]
    fn generic_conditions_follow_kstatus() {
        let obj = |generation: i64, observed: i64, conds: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "generation": generation},
                   "status": {"observedGeneration": observed, "conditions": conds}})
        };
        let ready = |status: &str, reason: &str| json!([{"type": "Ready", "status": status, "reason": reason, "message": "m"}]);
        let code_of = |v: Value| generic_conditions(&v).map(|h| h.code);
        assert_eq!(
            code_of(obj(2, 1, ready("True", "Succeeded"))),
            Some(HealthCode::Progressing)
        );
        assert_eq!(
            code_of(obj(1, 1, ready("True", "Succeeded"))),
            Some(HealthCode::Healthy)
        );
        assert_eq!(
            code_of(obj(1, 1, ready("False", "BuildFailed"))),
            Some(HealthCode::Degraded)
        );
        assert_eq!(
            code_of(obj(1, 1, ready("False", "Progressing"))),
            Some(HealthCode::Progressing)
        );
        assert_eq!(
            code_of(obj(1, 1, ready("Unknown", "Progressing"))),
            Some(HealthCode::Progressing)
        );
        let stalled = json!([{"type": "Ready", "status": "False", "reason": "Progressing"},
                             {"type": "Stalled", "status": "True", "reason": "InvalidPath", "message": "path not found"}]);
        assert_eq!(
            generic_conditions(&obj(1, 1, stalled)),
            Some(h(HealthCode::Degraded, "path not found"))
        );
        let reconciling = json!([{"type": "Ready", "status": "True"}, {"type": "Reconciling", "status": "True", "message": "fetching"}]);
        assert_eq!(
            code_of(obj(1, 1, reconciling)),
            Some(HealthCode::Progressing)
        );
        assert_eq!(code_of(obj(1, 1, json!([]))), None);
        assert_eq!(code_of(json!({"metadata": {"name": "plain"}})), None);
    }
}
