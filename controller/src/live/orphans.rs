//! Orphaned-resource candidates of one cluster: metadata-only watches of every namespaced kind
//! it serves, started the first time an app there asks (its project sets `orphanedResources`),
//! keeping per namespace only the objects no app tracks and no owner holds. Nothing otherwise.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use parking_lot::RwLock;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::tracking::ResourceKey;

/// How often discovery runs again (new CRDs bring new kinds to watch).
const REDISCOVER: Duration = Duration::from_secs(300);

/// Whether a group/kind is excluded by the settings (never watched).
pub type Excluded = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// The untracked, unowned objects of one cluster by namespace.
#[derive(Default)]
pub struct OrphanIndex {
    candidates: RwLock<HashMap<String, BTreeSet<ResourceKey>>>,
    /// Kinds watched, and the (kind, namespace) lists done once ("" = every namespace).
    watched: RwLock<HashSet<(String, String)>>,
    listed: RwLock<HashSet<(String, String, String)>>,
    /// The only namespaces watched (a namespace-scoped cluster); empty: the whole cluster.
    namespaces: Vec<String>,
    discovered: RwLock<bool>,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for OrphanIndex {
    fn drop(&mut self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

/// Whether `obj` (metadata) is a candidate: tracked by no app, held by no owner.
fn candidate(obj: &Value) -> bool {
    let owned = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|o| !o.is_empty());
    !owned && crate::tracking::owner(obj).is_none()
}

impl OrphanIndex {
    /// An empty index watching only `namespaces` (empty: the whole cluster).
    fn scoped(namespaces: Vec<String>) -> Self {
        Self {
            candidates: RwLock::default(),
            watched: RwLock::default(),
            listed: RwLock::default(),
            namespaces,
            discovered: RwLock::default(),
            tasks: parking_lot::Mutex::default(),
        }
    }

    /// Start discovering and watching the cluster behind `client` (kinds `excluded` names are
    /// skipped), in `namespaces` only when given (one watch per namespace and kind, never a
    /// cluster-wide list). The returned index fills in the background.
    pub fn start(
        client: Client,
        cluster: String,
        excluded: Excluded,
        namespaces: Vec<String>,
    ) -> Arc<Self> {
        let index = Arc::new(Self::scoped(namespaces));
        let weak = Arc::downgrade(&index);
        let task = tokio::spawn(async move {
            loop {
                let Some(this) = weak.upgrade() else { return };
                match Discovery::new(client.clone()).run().await {
                    Ok(d) => {
                        for (ar, caps) in d.groups().flat_map(|g| g.recommended_resources()) {
                            if caps.scope != Scope::Namespaced
                                || !caps.supports_operation(verbs::LIST)
                                || !caps.supports_operation(verbs::WATCH)
                                || excluded(&ar.group, &ar.kind)
                            {
                                continue;
                            }
                            this.watch_kind(client.clone(), &cluster, ar);
                        }
                        *this.discovered.write() = true;
                    }
                    Err(e) => {
                        tracing::warn!(cluster = %cluster, error = %e, "orphaned resources: discovery failed");
                    }
                }
                drop(this);
                tokio::time::sleep(REDISCOVER).await;
            }
        });
        index.tasks.lock().push(task);
        index
    }

    fn watch_kind(self: &Arc<Self>, client: Client, cluster: &str, ar: ApiResource) {
        let gk = (ar.group.clone(), ar.kind.clone());
        if !self.watched.write().insert(gk.clone()) {
            return;
        }
        tracing::info!(cluster = %cluster, group = %gk.0, kind = %gk.1, "watching metadata for orphaned resources");
        let scopes: Vec<Option<String>> = if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        };
        for ns in scopes {
            self.watch_list(client.clone(), &ar, gk.clone(), ns);
        }
    }

    /// One metadata watch of kind `gk`, over the cluster or in one namespace.
    fn watch_list(
        self: &Arc<Self>,
        client: Client,
        ar: &ApiResource,
        gk: (String, String),
        namespace: Option<String>,
    ) {
        let api: Api<PartialObjectMeta<DynamicObject>> = match &namespace {
            Some(ns) => Api::namespaced_with(client, ns, ar),
            None => Api::all_with(client, ar),
        };
        let list_key = (
            gk.0.clone(),
            gk.1.clone(),
            namespace.clone().unwrap_or_default(),
        );
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut fresh: Vec<Value> = Vec::new();
            while let Some(ev) = stream.next().await {
                let Some(this) = weak.upgrade() else { return };
                match ev {
                    Ok(Event::Init) => fresh.clear(),
                    Ok(Event::InitApply(o)) => fresh.extend(meta_value(&o, &gk)),
                    Ok(Event::InitDone) => {
                        this.replace_kind(&gk, namespace.as_deref(), std::mem::take(&mut fresh));
                        this.listed.write().insert(list_key.clone());
                    }
                    Ok(Event::Apply(o)) => {
                        if let Some(v) = meta_value(&o, &gk) {
                            this.upsert(&v);
                        }
                    }
                    Ok(Event::Delete(o)) => {
                        if let Some(k) = meta_value(&o, &gk).and_then(|v| ResourceKey::of(&v)) {
                            this.remove(&k);
                        }
                    }
                    Err(e) => {
                        // A kind that cannot be listed (RBAC, a CRD going away) must not keep
                        // the whole cluster's report off: it counts as settled, without objects.
                        if this.listed.write().insert(list_key.clone()) {
                            tracing::warn!(kind = %gk.1, error = %e, "orphaned resources: cannot list this kind; reporting without it");
                        }
                    }
                }
            }
        });
        self.tasks.lock().push(task);
    }

    fn upsert(&self, obj: &Value) {
        let Some(key) = ResourceKey::of(obj) else {
            return;
        };
        if candidate(obj) {
            self.candidates
                .write()
                .entry(key.namespace.clone())
                .or_default()
                .insert(key);
        } else {
            self.remove(&key);
        }
    }

    fn remove(&self, key: &ResourceKey) {
        let mut c = self.candidates.write();
        if let Some(set) = c.get_mut(&key.namespace) {
            set.remove(key);
            if set.is_empty() {
                c.remove(&key.namespace);
            }
        }
    }

    fn replace_kind(&self, gk: &(String, String), namespace: Option<&str>, objs: Vec<Value>) {
        {
            let mut c = self.candidates.write();
            for (ns, set) in c.iter_mut() {
                if namespace.is_some_and(|n| n != ns) {
                    continue;
                }
                set.retain(|k| !(k.group == gk.0 && k.kind == gk.1));
            }
            c.retain(|_, s| !s.is_empty());
        }
        for o in &objs {
            self.upsert(o);
        }
    }

    /// The candidates in `namespace`, once every watched kind has listed; `None` before.
    pub fn candidates(&self, namespace: &str) -> Option<Vec<ResourceKey>> {
        let lists_per_kind = self.namespaces.len().max(1);
        let ready = *self.discovered.read()
            && self.listed.read().len() == self.watched.read().len() * lists_per_kind;
        if !ready {
            return None;
        }
        Some(
            self.candidates
                .read()
                .get(namespace)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }

    /// How many kinds are watched (for the cost report).
    pub fn watched_kinds(&self) -> usize {
        self.watched.read().len()
    }
}

/// The metadata of a watched object as JSON with its apiVersion and kind (the metadata watch
/// carries neither reliably).
fn meta_value(o: &PartialObjectMeta<DynamicObject>, gk: &(String, String)) -> Option<Value> {
    let mut v = serde_json::to_value(o).ok()?;
    let obj = v.as_object_mut()?;
    let api_version = if gk.0.is_empty() {
        "v1".to_string()
    } else {
        format!("{}/v1", gk.0)
    };
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(gk.1.clone()));
    Some(v)
}

/// Objects Kubernetes itself puts in every namespace (never orphans, as in Argo CD).
pub fn known_exception(key: &ResourceKey) -> bool {
    matches!(
        (key.group.as_str(), key.kind.as_str(), key.name.as_str()),
        ("", "ServiceAccount", "default")
            | ("", "ConfigMap", "kube-root-ca.crt")
            | ("", "Endpoints", _)
    ) || (key.group.is_empty()
        && key.kind == "Service"
        && key.name == "kubernetes"
        && key.namespace == "default")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str, extra: Value) -> Value {
        let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "web"}});
        if let (Some(m), Some(e)) = (v["metadata"].as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        v
    }

    #[test]
    fn only_untracked_unowned_objects_are_candidates() {
        let idx = OrphanIndex::default();
        idx.watched.write().insert(("".into(), "ConfigMap".into()));
        idx.listed
            .write()
            .insert(("".into(), "ConfigMap".into(), "".into()));
        *idx.discovered.write() = true;
        idx.replace_kind(
            &("".into(), "ConfigMap".into()),
            None,
            vec![
                cm("stray", json!({})),
                cm("child", json!({"ownerReferences": [{"kind": "Deployment", "name": "x", "uid": "u", "apiVersion": "apps/v1"}]})),
                cm("managed", json!({"annotations": {"flotilla.dev/tracking-id": "argocd/web:/ConfigMap:web/managed"}})),
            ],
        );
        let names: Vec<String> = idx
            .candidates("web")
            .expect("ready")
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, ["stray"]);
        // Adopted later: no longer a candidate.
        idx.upsert(&cm(
            "stray",
            json!({"annotations": {"flotilla.dev/tracking-id": "argocd/web:/ConfigMap:web/stray"}}),
        ));
        assert_eq!(idx.candidates("web"), Some(vec![]));
    }

    #[test]
    fn nothing_is_reported_before_every_kind_listed() {
        let idx = OrphanIndex::default();
        idx.watched.write().insert(("".into(), "ConfigMap".into()));
        *idx.discovered.write() = true;
        assert_eq!(idx.candidates("web"), None);
    }

    #[test]
    fn a_namespace_scoped_index_is_ready_once_every_namespace_listed() {
        let idx = OrphanIndex::scoped(vec!["team-a".into(), "team-b".into()]);
        let gk = ("".to_string(), "ConfigMap".to_string());
        idx.watched.write().insert(gk.clone());
        *idx.discovered.write() = true;
        idx.replace_kind(&gk, Some("team-a"), vec![cm("stray", json!({}))]);
        idx.listed
            .write()
            .insert(("".into(), "ConfigMap".into(), "team-a".into()));
        assert!(idx.candidates("web").is_none(), "team-b has not listed yet");
        idx.listed
            .write()
            .insert(("".into(), "ConfigMap".into(), "team-b".into()));
        assert!(idx.candidates("web").is_some());
        // A relist of team-b keeps team-a's candidates.
        let before = idx.candidates.read().len();
        idx.replace_kind(&gk, Some("team-b"), Vec::new());
        assert_eq!(idx.candidates.read().len(), before);
    }
}
