//! Watches every Application on the control plane and records, per application, when it was
//! created, when it was first Synced and Healthy, when it reached each revision, and when its
//! `reconciledAt` last moved — the raw material of every latency in the report.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::TryStreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use kube::{Api, Client};
use parking_lot::Mutex;
use serde_json::Value;

/// What is known about one application.
#[derive(Debug, Clone, Default)]
pub struct AppState {
    pub created: Option<Instant>,
    /// When the watch first saw the Application (for generated ones: when it was generated).
    pub seen: Option<Instant>,
    pub synced_healthy: Option<Instant>,
    pub sync: String,
    pub health: String,
    pub revision: String,
    /// Revision → when the application was first seen Synced at it.
    pub reached: HashMap<String, Instant>,
    /// Revision → when the application was first seen Synced and Healthy at it.
    pub reached_healthy: HashMap<String, Instant>,
    pub reconciled_at: String,
    /// When `reconciledAt` last changed, as seen by the watch.
    pub reconciled_seen: Option<Instant>,
}

/// Shared record of every application, filled by the watch.
#[derive(Debug, Default)]
pub struct Observed {
    pub apps: HashMap<String, AppState>,
    pub events: u64,
}

pub type Shared = Arc<Mutex<Observed>>;

impl Observed {
    /// Applications Synced and Healthy at least once.
    pub fn synced_count(&self) -> usize {
        self.apps
            .values()
            .filter(|a| a.synced_healthy.is_some())
            .count()
    }

    /// Applications whose state is currently Synced and Healthy.
    pub fn currently_ok(&self) -> usize {
        self.apps
            .values()
            .filter(|a| a.sync == "Synced" && a.health == "Healthy")
            .count()
    }

    /// A few applications that are not Synced and Healthy, for error messages.
    pub fn stragglers(&self, n: usize) -> Vec<String> {
        let mut v: Vec<String> = self
            .apps
            .iter()
            .filter(|(_, a)| a.synced_healthy.is_none())
            .map(|(k, a)| format!("{k} ({}/{})", a.sync, a.health))
            .collect();
        v.sort();
        v.truncate(n);
        v
    }

    /// Record that `name` was created now.
    pub fn created(&mut self, name: &str, at: Instant) {
        self.apps.entry(name.to_string()).or_default().created = Some(at);
    }

    fn apply(&mut self, name: &str, status: &Value, now: Instant) {
        self.events += 1;
        let a = self.apps.entry(name.to_string()).or_default();
        a.seen.get_or_insert(now);
        let s = |p: &str| {
            status
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        a.sync = s("/sync/status");
        a.health = s("/health/status");
        a.revision = s("/sync/revision");
        if a.sync == "Synced" && !a.revision.is_empty() {
            a.reached.entry(a.revision.clone()).or_insert(now);
        }
        let ok = a.sync == "Synced" && a.health == "Healthy";
        if ok && !a.revision.is_empty() {
            a.reached_healthy.entry(a.revision.clone()).or_insert(now);
        }
        if a.synced_healthy.is_none() && ok {
            a.synced_healthy = Some(now);
        }
        let rec = s("/reconciledAt");
        if rec != a.reconciled_at {
            a.reconciled_at = rec;
            a.reconciled_seen = Some(now);
        }
    }
}

/// The Application resource, without depending on the controller's types.
pub fn application_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

/// Watch Applications in `namespace` until the task is aborted.
pub fn spawn_watch(client: Client, namespace: &str, shared: Shared) -> tokio::task::JoinHandle<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &application_resource());
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default());
        futures::pin_mut!(stream);
        loop {
            match stream.try_next().await {
                Ok(Some(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj))) => {
                    let now = Instant::now();
                    let Some(name) = obj.metadata.name.as_deref() else {
                        continue;
                    };
                    let status = obj.data.get("status").unwrap_or(&Value::Null);
                    shared.lock().apply(name, status, now);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "application watch error (retrying)");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_first_synced_healthy_revisions_and_reconciles() {
        let mut o = Observed::default();
        let t0 = Instant::now();
        o.created("a", t0);
        let t1 = t0 + std::time::Duration::from_millis(5);
        o.apply(
            "a",
            &json!({"sync": {"status": "OutOfSync", "revision": "c1"}, "health": {"status": "Missing"}, "reconciledAt": "r1"}),
            t1,
        );
        assert_eq!(o.synced_count(), 0);
        assert!(o.apps["a"].reached.is_empty());
        let t2 = t1 + std::time::Duration::from_millis(5);
        o.apply(
            "a",
            &json!({"sync": {"status": "Synced", "revision": "c1"}, "health": {"status": "Healthy"}, "reconciledAt": "r1"}),
            t2,
        );
        let a = &o.apps["a"];
        assert_eq!(a.synced_healthy, Some(t2));
        assert_eq!(a.reached.get("c1"), Some(&t2));
        assert_eq!(a.reached_healthy.get("c1"), Some(&t2));
        assert_eq!(
            a.reconciled_seen,
            Some(t1),
            "reconciledAt did not move at t2"
        );
        assert_eq!(o.synced_count(), 1);
        assert_eq!(o.currently_ok(), 1);
    }
}
