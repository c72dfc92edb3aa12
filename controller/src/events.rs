//! Kubernetes Events on Applications and ApplicationSets, as Argo CD emits them: operation start
//! and finish, sync and health status transitions, Applications a set created, updated, deleted. Each is its own `events.k8s.io/v1` Event named
//! `<app>.<hex nanoseconds>` as Argo CD names them, written in the background under a rate limit.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, PostParams};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::types::Application;

/// Argo CD's event reasons.
pub const OPERATION_STARTED: &str = "OperationStarted";
pub const OPERATION_COMPLETED: &str = "OperationCompleted";
pub const RESOURCE_UPDATED: &str = "ResourceUpdated";

/// Events per second allowed on average, and the burst.
const RATE: f64 = 20.0;
const BURST: f64 = 100.0;

/// `flotilla_events`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub reason: &'static str,
    /// published, failed, or dropped (rate limit).
    pub result: &'static str,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The controller's event publisher.
pub struct AppEvents {
    client: Client,
    identity: String,
    bucket: Mutex<Bucket>,
    metrics: Family<EventLabels, Counter>,
}

impl AppEvents {
    pub fn new(client: Client, identity: &str, registry: &mut Registry) -> Self {
        let metrics = Family::<EventLabels, Counter>::default();
        registry.register(
            "flotilla_events",
            "Kubernetes Events on Applications and ApplicationSets, by reason and result (published, failed, dropped by the rate limit)",
            metrics.clone(),
        );
        Self {
            client,
            identity: identity.to_string(),
            bucket: Mutex::new(Bucket {
                tokens: BURST,
                at: Instant::now(),
            }),
            metrics,
        }
    }

    fn take(&self) -> bool {
        let Ok(mut b) = self.bucket.lock() else {
            return false;
        };
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * RATE).min(BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Publish an event about `app` in the background; failures are logged and counted.
    pub fn emit(
        self: &Arc<Self>,
        app: &Application,
        warning: bool,
        reason: &'static str,
        note: String,
    ) {
        let reference = ObjectReference {
            api_version: Some("argoproj.io/v1alpha1".into()),
            kind: Some("Application".into()),
            name: app.metadata.name.clone(),
            namespace: app.metadata.namespace.clone(),
            uid: app.metadata.uid.clone(),
            ..Default::default()
        };
        self.emit_about(reference, warning, reason, note);
    }

    /// Publish an event about the object `reference` names (in its namespace), in the
    /// background, under the same rate limit.
    pub fn emit_about(
        self: &Arc<Self>,
        reference: ObjectReference,
        warning: bool,
        reason: &'static str,
        note: String,
    ) {
        if !self.take() {
            self.metrics
                .get_or_create(&EventLabels {
                    reason,
                    result: "dropped",
                })
                .inc();
            return;
        }
        let now = jiff::Timestamp::now();
        let name = format!(
            "{}.{:x}",
            reference.name.as_deref().unwrap_or("object"),
            now.as_nanosecond()
        );
        let namespace = reference.namespace.clone().unwrap_or_default();
        let ev = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            reason: Some(reason.into()),
            action: Some(reason.into()),
            note: Some(note.chars().take(1024).collect()),
            regarding: Some(reference),
            reporting_controller: Some("flotilla.dev/controller".into()),
            reporting_instance: Some(self.identity.clone()),
            ..Default::default()
        };
        let this = self.clone();
        tokio::spawn(async move {
            let api: Api<Event> = Api::namespaced(this.client.clone(), &namespace);
            let result = match api.create(&PostParams::default(), &ev).await {
                Ok(_) => "published",
                Err(e) => {
                    tracing::debug!(reason, error = %e, "could not publish event");
                    "failed"
                }
            };
            this.metrics
                .get_or_create(&EventLabels { reason, result })
                .inc();
        });
    }
}
