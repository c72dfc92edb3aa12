//! The applications' objects on the target clusters: what the workload says should be there,
//! what is there (ConfigMaps and Deployments listed per cluster), and the DELETEs that hit them.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::ListParams;
use serde::{Deserialize, Serialize};

use super::scenario::Scenario;
use super::workload;
use crate::fleet::Fleet;
use crate::kubesim::audit::WriteSummary;

/// Findings listed in full; the rest are only counted.
const LISTED: usize = 30;

#[derive(Debug, thiserror::Error)]
#[error("listing the objects of {cluster}: {message}")]
pub struct InventoryError {
    cluster: String,
    message: String,
}

/// One object: kind, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Cluster name → the application objects on it.
pub type Inventory = BTreeMap<String, BTreeSet<ObjectKey>>;

/// The objects application `i` renders (see [`workload::manifests`]).
pub fn app_objects(s: &Scenario, i: usize) -> Vec<ObjectKey> {
    let (namespace, name) = (workload::namespace_of(i), workload::app_name(i));
    let key = |kind, name: String| ObjectKey {
        kind,
        namespace: namespace.clone(),
        name,
    };
    let mut v = vec![key("ConfigMap", name.clone())];
    if s.objects_per_app >= 2 {
        v.push(key("Deployment", name.clone()));
    }
    v.extend((2..s.objects_per_app).map(|k| key("ConfigMap", format!("{name}-{k}"))));
    v
}

/// What the target clusters should hold with applications `apps` in place.
pub fn expected(s: &Scenario, apps: impl IntoIterator<Item = usize>) -> Inventory {
    let mut out = Inventory::new();
    for i in apps {
        out.entry(workload::cluster_of(s, i))
            .or_default()
            .extend(app_objects(s, i));
    }
    out
}

/// The application an object named `name` belongs to (`app-00012`, `app-00012-2`).
pub fn app_of(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("app-")?;
    let digits = rest.split('-').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// List the application objects (ConfigMaps and Deployments named after an app) of `clusters`.
pub async fn list(fleet: &Fleet, clusters: &[String]) -> Result<Inventory, InventoryError> {
    let lists = futures::stream::iter(clusters.iter().cloned())
        .map(|cluster| async move {
            let fail = |message: String| InventoryError {
                cluster: cluster.clone(),
                message,
            };
            let client = fleet
                .cluster(&cluster)
                .await
                .map_err(|e| fail(format!("{e:#}")))?;
            let lp = ListParams::default();
            let cms = Api::<ConfigMap>::all(client.clone())
                .list(&lp)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let deps = Api::<Deployment>::all(client)
                .list(&lp)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let key = |kind, m: &kube::api::ObjectMeta| {
                let name = m.name.clone().unwrap_or_default();
                app_of(&name).map(|_| ObjectKey {
                    kind,
                    namespace: m.namespace.clone().unwrap_or_default(),
                    name,
                })
            };
            let objects: BTreeSet<ObjectKey> = cms
                .items
                .iter()
                .filter_map(|o| key("ConfigMap", &o.metadata))
                .chain(
                    deps.items
                        .iter()
                        .filter_map(|o| key("Deployment", &o.metadata)),
                )
                .collect();
            Ok::<_, InventoryError>((cluster, objects))
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(lists.into_iter().collect())
}

/// Whether the applications' objects survived: none missing, none left over, none deleted
/// that should not have been, and (chaos) every cluster's object count unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PruneCheck {
    pub objects_expected: usize,
    pub objects_found: usize,
    /// Objects of live applications that are not there (the first few, then counted).
    pub missing: Vec<String>,
    pub missing_count: usize,
    /// Objects of deleted applications still there.
    pub left_over: Vec<String>,
    pub left_over_count: usize,
    /// DELETEs on target clusters over the checked stretch, by anyone.
    pub deletes: usize,
    /// Of those, the ones of deleted applications' objects (the resources finalizer at work).
    pub deletes_of_deleted_apps: usize,
    /// DELETEs of live applications' objects, of namespaces, or of everything of a kind.
    pub wrong_deletes: Vec<String>,
    pub wrong_delete_count: usize,
    /// Clusters whose kubesim object count changed when it should not have.
    pub count_changes: Vec<String>,
}

impl PruneCheck {
    pub fn ok(&self) -> bool {
        self.missing_count == 0
            && self.left_over_count == 0
            && self.wrong_delete_count == 0
            && self.count_changes.is_empty()
    }

    /// Compare what should be there with what is (`deleted`: applications removed on purpose,
    /// whose objects must be gone).
    pub fn compare(&mut self, expected: &Inventory, found: &Inventory, deleted: &Inventory) {
        let none = BTreeSet::new();
        self.objects_expected = expected.values().map(BTreeSet::len).sum();
        self.objects_found = found.values().map(BTreeSet::len).sum();
        for (cluster, want) in expected {
            let have = found.get(cluster).unwrap_or(&none);
            for o in want.difference(have) {
                self.missing_count += 1;
                if self.missing.len() < LISTED {
                    self.missing.push(format!("{cluster}: {o}"));
                }
            }
        }
        for (cluster, gone) in deleted {
            let have = found.get(cluster).unwrap_or(&none);
            for o in gone.intersection(have) {
                self.left_over_count += 1;
                if self.left_over.len() < LISTED {
                    self.left_over.push(format!("{cluster}: {o}"));
                }
            }
        }
    }

    /// Judge the DELETEs on `clusters` since `since_us` (Unix µs): only objects of the
    /// applications in `deleted` may have been deleted.
    pub fn judge_deletes(
        &mut self,
        summaries: &BTreeMap<String, WriteSummary>,
        clusters: &BTreeSet<String>,
        since_us: u64,
        deleted: &BTreeSet<usize>,
    ) {
        for cluster in clusters {
            let Some(w) = summaries.get(cluster) else {
                continue;
            };
            for d in w.deletes.iter().filter(|d| d.start_us >= since_us) {
                self.deletes += 1;
                let app_object = matches!(d.resource.as_str(), "configmaps" | "deployments");
                let allowed = d.verb == "delete"
                    && app_object
                    && app_of(&d.name).is_some_and(|i| deleted.contains(&i));
                if allowed {
                    self.deletes_of_deleted_apps += 1;
                } else if d.verb == "deletecollection"
                    || d.resource == "namespaces"
                    || (app_object && app_of(&d.name).is_some())
                {
                    self.wrong_delete_count += 1;
                    if self.wrong_deletes.len() < LISTED {
                        self.wrong_deletes.push(format!(
                            "{cluster}: {} {} {}/{} by {} at {} µs (answered {})",
                            d.verb,
                            d.resource,
                            d.namespace,
                            d.name,
                            d.user_agent,
                            d.start_us,
                            d.code
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubesim::RequestRecord;

    fn scenario() -> Scenario {
        Scenario {
            name: "t".into(),
            clusters: 2,
            applications: 4,
            objects_per_app: 3,
            ..Scenario::default()
        }
    }

    #[test]
    fn objects_are_named_after_their_app() {
        let s = scenario();
        let objs = app_objects(&s, 3);
        assert_eq!(objs.len(), 3);
        assert!(objs.iter().all(|o| app_of(&o.name) == Some(3)), "{objs:?}");
        assert_eq!(app_of("kube-root-ca.crt"), None);
        assert_eq!(app_of("app-x"), None);
        let inv = expected(&s, 0..4);
        assert_eq!(inv["cluster-001"].len(), 6, "apps 0 and 2");
    }

    #[test]
    fn missing_and_left_over_objects_are_found() {
        let s = scenario();
        let want = expected(&s, [0, 1]);
        let mut found = want.clone();
        let lost = app_objects(&s, 0).remove(0);
        found.get_mut("cluster-001").map(|v| v.remove(&lost));
        found
            .entry("cluster-002".into())
            .or_default()
            .extend(app_objects(&s, 3));
        let mut c = PruneCheck::default();
        c.compare(&want, &found, &expected(&s, [3]));
        assert_eq!((c.missing_count, c.left_over_count), (1, 3), "{c:?}");
        assert!(!c.ok());
    }

    #[test]
    fn only_deleted_apps_objects_may_be_deleted() {
        let rec = |resource: &str, name: &str, start_us: u64| RequestRecord {
            seq: 0,
            start_us,
            end_us: start_us + 1,
            user: "sa".into(),
            user_agent: "flotilla-controller/0 (c-0)".into(),
            verb: "delete".into(),
            group: String::new(),
            resource: resource.into(),
            namespace: "team-01".into(),
            name: name.into(),
            subresource: String::new(),
            code: 200,
        };
        let summaries = [(
            "cluster-001".to_string(),
            WriteSummary {
                deletes: vec![
                    rec("configmaps", "app-00007", 10),
                    rec("configmaps", "app-00001-2", 5),
                    rec("configmaps", "app-00001-2", 20),
                    rec("namespaces", "team-01", 30),
                    rec("events", "x", 40),
                ],
                ..WriteSummary::default()
            },
        )]
        .into();
        let mut c = PruneCheck::default();
        c.judge_deletes(
            &summaries,
            &["cluster-001".to_string()].into(),
            10,
            &[7].into(),
        );
        assert_eq!(c.deletes, 4, "the one before the window is not counted");
        assert_eq!(c.deletes_of_deleted_apps, 1);
        assert_eq!(c.wrong_delete_count, 2, "{c:?}");
    }
}
