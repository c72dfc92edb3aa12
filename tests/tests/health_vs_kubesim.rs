//! kubesim's simulated workload statuses read the way the controller's health rules expect:
//! ready → Healthy, `progressing` → Progressing, `degraded`/`failed` → Degraded.

use flotilla_controller::health::{HealthCode, assess};
use flotilla_loadtest::kubesim::resources::Simulated;
use flotilla_loadtest::kubesim::simulate::target_status;
use flotilla_loadtest::kubesim::{BEHAVIOR_ANNOTATION, SimSettings};
use serde_json::{Value, json};

fn mk(kind_spec: Value, behavior: Option<&str>) -> Value {
    let mut o = json!({"metadata": {"name": "x", "generation": 1}, "spec": kind_spec});
    if let Some(b) = behavior {
        o["metadata"]["annotations"] = json!({BEHAVIOR_ANNOTATION: b});
    }
    o
}

#[test]
fn simulated_statuses_map_to_the_expected_health() {
    let cases = [
        (
            Simulated::Deployment,
            "apps",
            "Deployment",
            json!({"replicas": 2}),
        ),
        (
            Simulated::StatefulSet,
            "apps",
            "StatefulSet",
            json!({"replicas": 2}),
        ),
        (
            Simulated::ReplicaSet,
            "apps",
            "ReplicaSet",
            json!({"replicas": 2}),
        ),
        (Simulated::DaemonSet, "apps", "DaemonSet", json!({})),
        (
            Simulated::Pod,
            "",
            "Pod",
            json!({"containers": [{"name": "c", "image": "i"}]}),
        ),
        (Simulated::Job, "batch", "Job", json!({"completions": 1})),
        (Simulated::Pvc, "", "PersistentVolumeClaim", json!({})),
        (
            Simulated::Service,
            "",
            "Service",
            json!({"type": "LoadBalancer"}),
        ),
        (
            Simulated::Ingress,
            "networking.k8s.io",
            "Ingress",
            json!({}),
        ),
    ];
    let settings = SimSettings::default();
    for (sim, group, kind, spec) in cases {
        for (behavior, want) in [
            (None, HealthCode::Healthy),
            (Some("progressing"), HealthCode::Progressing),
            (Some("degraded"), HealthCode::Degraded),
        ] {
            let mut obj = mk(spec.clone(), behavior);
            obj["status"] = target_status(sim, &obj, &settings).expect("simulated");
            let got = assess(group, kind, Some(&obj)).code;
            let want = match (kind, behavior) {
                // No failure mode exists for these: they simply stay unready.
                (
                    "StatefulSet" | "ReplicaSet" | "DaemonSet" | "Service" | "Ingress",
                    Some("degraded"),
                ) => HealthCode::Progressing,
                ("PersistentVolumeClaim", Some("degraded")) => HealthCode::Progressing,
                _ => want,
            };
            assert_eq!(got, want, "{kind} with {behavior:?}: {}", obj["status"]);
        }
    }
}
