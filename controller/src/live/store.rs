//! The live objects of one cluster that carry a tracking annotation, indexed by owning app.
//! Pure and synchronous: watch events (and write-through results) go in; readers get the
//! objects an app owns. Older resourceVersions never replace newer ones, and a deleted
//! object is not brought back by a write response that arrives after its DELETED event.
//! Objects are held as compact JSON and parsed when an app's reconcile reads them: a parsed
//! `Value` takes about three times the memory, for every managed object of every cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::tracking::{AppKey, FIELD_MANAGER, ResourceKey, owner};

/// Annotation that `kubectl apply` leaves and nobody here reads (large; dropped to save memory).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How many deletions are remembered (see [`LiveStore::remove_version`]).
const TOMBSTONES: usize = 4096;

/// One stored object: its resourceVersion and its (trimmed) JSON.
#[derive(Debug)]
struct Stored {
    rv: Option<u64>,
    json: Box<[u8]>,
}

impl Stored {
    fn of(obj: &Value) -> Self {
        Self {
            rv: rv(obj),
            // Serializing a Value cannot fail (string keys only).
            json: serde_json::to_vec(obj)
                .unwrap_or_default()
                .into_boxed_slice(),
        }
    }

    fn value(&self) -> Option<Value> {
        serde_json::from_slice(&self.json).ok()
    }
}

/// Objects by key, plus the app index.
#[derive(Debug, Default)]
pub struct LiveStore {
    objects: HashMap<ResourceKey, (AppKey, Stored)>,
    by_app: HashMap<AppKey, BTreeSet<ResourceKey>>,
    /// resourceVersion at deletion of recently deleted objects, oldest first in `order`: a
    /// write response (our own DELETE or apply) racing the watch must not resurrect them.
    tombstones: HashMap<ResourceKey, u64>,
    tombstone_order: VecDeque<ResourceKey>,
}

fn rv(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

/// Drop what the controller never reads: other managers' field sets and kubectl's copy of
/// the last applied object.
pub fn trim(mut obj: Value) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(Value::Array(mf)) = meta.get_mut("managedFields") {
            mf.retain(|e| {
                e.get("manager")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m == FIELD_MANAGER || crate::ignore::manager_kept(m))
            });
        }
        if let Some(Value::Object(a)) = meta.get_mut("annotations") {
            a.remove(LAST_APPLIED);
        }
    }
    obj
}

impl LiveStore {
    fn unindex(&mut self, key: &ResourceKey) -> Option<AppKey> {
        let (app, _) = self.objects.remove(key)?;
        if let Some(set) = self.by_app.get_mut(&app) {
            set.remove(key);
            if set.is_empty() {
                self.by_app.remove(&app);
            }
        }
        Some(app)
    }

    /// Insert or update `obj`; returns the apps whose view changed (old and new owner).
    pub fn upsert(&mut self, obj: Value) -> Vec<AppKey> {
        let Some(key) = ResourceKey::of(&obj) else {
            return Vec::new();
        };
        if let (Some((_, cur)), Some(new_rv)) = (self.objects.get(&key), rv(&obj))
            && cur.rv.is_some_and(|c| c > new_rv)
        {
            return Vec::new();
        }
        if let (Some(gone), Some(new_rv)) = (self.tombstones.get(&key), rv(&obj))
            && *gone >= new_rv
        {
            return Vec::new();
        }
        let mut affected = Vec::new();
        let new_owner = owner(&obj);
        if let Some(old) = self.unindex(&key) {
            affected.push(old);
        }
        if let Some(app) = new_owner {
            self.by_app
                .entry(app.clone())
                .or_default()
                .insert(key.clone());
            self.objects
                .insert(key, (app.clone(), Stored::of(&trim(obj))));
            if !affected.contains(&app) {
                affected.push(app);
            }
        }
        affected
    }

    /// Remove `key`; returns its owner if it was known.
    pub fn remove(&mut self, key: &ResourceKey) -> Option<AppKey> {
        self.unindex(key)
    }

    /// Remove `obj` as a DELETED watch event reports it, remembering its final
    /// resourceVersion so older copies arriving later are ignored.
    pub fn remove_version(&mut self, obj: &Value) -> Option<AppKey> {
        let key = ResourceKey::of(obj)?;
        if let Some(v) = rv(obj) {
            if self.tombstones.insert(key.clone(), v).is_none() {
                self.tombstone_order.push_back(key.clone());
            }
            while self.tombstone_order.len() > TOMBSTONES {
                if let Some(old) = self.tombstone_order.pop_front() {
                    self.tombstones.remove(&old);
                }
            }
        }
        self.unindex(&key)
    }

    /// Replace every object of `group`/`kind` with `objs` (a relist); returns affected apps.
    pub fn replace_kind(&mut self, group: &str, kind: &str, objs: Vec<Value>) -> Vec<AppKey> {
        self.replace_kind_in(group, kind, None, objs)
    }

    /// [`Self::replace_kind`] for the objects of one namespace only (a namespace-scoped
    /// cluster lists each of its namespaces apart); `None`: every namespace.
    pub fn replace_kind_in(
        &mut self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        objs: Vec<Value>,
    ) -> Vec<AppKey> {
        let in_scope = |k: &ResourceKey| {
            k.group == group && k.kind == kind && namespace.is_none_or(|ns| k.namespace == ns)
        };
        let mut affected = BTreeSet::new();
        let fresh: HashMap<ResourceKey, Value> = objs
            .into_iter()
            .filter_map(|o| Some((ResourceKey::of(&o)?, o)))
            .collect();
        let stale: Vec<ResourceKey> = self
            .objects
            .keys()
            .filter(|k| in_scope(k) && !fresh.contains_key(*k))
            .cloned()
            .collect();
        for k in stale {
            affected.extend(self.unindex(&k));
        }
        // A relist is the truth for this kind: its deletions need no memory.
        self.tombstones.retain(|k, _| !in_scope(k));
        self.tombstone_order.retain(|k| !in_scope(k));
        for (k, o) in fresh {
            let unchanged = self
                .objects
                .get(&k)
                .is_some_and(|(_, cur)| cur.rv.is_some() && cur.rv == rv(&o));
            if !unchanged {
                affected.extend(self.upsert(o));
            }
        }
        affected.into_iter().collect()
    }

    /// The live objects `app` owns.
    pub fn for_app(&self, app: &AppKey) -> BTreeMap<ResourceKey, Arc<Value>> {
        self.by_app
            .get(app)
            .into_iter()
            .flatten()
            .filter_map(|k| Some((k.clone(), Arc::new(self.objects.get(k)?.1.value()?))))
            .collect()
    }

    /// The cached object at `key` and its owner.
    pub fn get(&self, key: &ResourceKey) -> Option<(AppKey, Value)> {
        let (app, stored) = self.objects.get(key)?;
        Some((app.clone(), stored.value()?))
    }

    /// Forget every object of the kinds `drop` names (kinds no longer watched); returns the
    /// apps that held some.
    pub fn drop_kinds(&mut self, drop: impl Fn(&str, &str) -> bool) -> Vec<AppKey> {
        let gone: Vec<ResourceKey> = self
            .objects
            .keys()
            .filter(|k| drop(&k.group, &k.kind))
            .cloned()
            .collect();
        let apps: BTreeSet<AppKey> = gone.iter().filter_map(|k| self.unindex(k)).collect();
        apps.into_iter().collect()
    }

    /// The app that owns the object at `key`, if it is cached.
    pub fn owner_of(&self, key: &ResourceKey) -> Option<AppKey> {
        self.objects.get(key).map(|(a, _)| a.clone())
    }

    /// Apps with objects of `group`/`kind`.
    pub fn apps_with_kind(&self, group: &str, kind: &str) -> Vec<AppKey> {
        let set: BTreeSet<AppKey> = self
            .objects
            .iter()
            .filter(|(k, _)| k.group == group && k.kind == kind)
            .map(|(_, (a, _))| a.clone())
            .collect();
        set.into_iter().collect()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::stamp;
    use serde_json::json;

    fn mk_owned(app: &str, name: &str, rv: &str) -> Value {
        let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "d", "resourceVersion": rv,
                "managedFields": [{"manager": "kubectl", "operation": "Apply"},
                                  {"manager": FIELD_MANAGER, "operation": "Apply"}],
                "annotations": {LAST_APPLIED: "{...}"}}});
        stamp(&mut o, &AppKey::new("argocd", app));
        o
    }

    #[test]
    fn a_relist_of_one_namespace_leaves_the_others_alone() {
        let mut s = LiveStore::default();
        let in_ns = |ns: &str, name: &str| {
            let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"}});
            stamp(&mut o, &AppKey::new("argocd", "a"));
            o
        };
        s.upsert(in_ns("team-a", "x"));
        s.upsert(in_ns("team-b", "y"));
        // team-a's list comes back empty: only x goes.
        s.replace_kind_in("", "ConfigMap", Some("team-a"), Vec::new());
        let left: Vec<String> = s
            .for_app(&AppKey::new("argocd", "a"))
            .keys()
            .map(|k| k.name.clone())
            .collect();
        assert_eq!(left, ["y"]);
        // A cluster-wide relist is the truth for every namespace.
        s.replace_kind("", "ConfigMap", vec![in_ns("team-c", "z")]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn objects_are_indexed_by_owner_and_trimmed() {
        let mut s = LiveStore::default();
        let a = AppKey::new("argocd", "a");
        assert_eq!(s.upsert(mk_owned("a", "x", "5")), vec![a.clone()]);
        s.upsert(mk_owned("b", "y", "6"));
        let mine = s.for_app(&a);
        assert_eq!(mine.len(), 1);
        let obj = mine.values().next().expect("one");
        assert_eq!(
            obj["metadata"]["managedFields"].as_array().map(Vec::len),
            Some(1)
        );
        assert!(obj["metadata"]["annotations"].get(LAST_APPLIED).is_none());
        // Unowned objects are not kept.
        let plain = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p", "namespace": "d"}});
        assert!(s.upsert(plain).is_empty());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_late_write_response_does_not_resurrect_a_deleted_object() {
        let mut s = LiveStore::default();
        let a = AppKey::new("argocd", "a");
        s.upsert(mk_owned("a", "x", "10"));
        // The DELETE's response (terminating, rv 11) arrives after the watch's DELETED (rv 12).
        let mut gone = mk_owned("a", "x", "12");
        gone["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(s.remove_version(&gone), Some(a.clone()));
        let mut response = mk_owned("a", "x", "11");
        response["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(s.upsert(response).is_empty());
        assert!(s.for_app(&a).is_empty());
        // Created again under the same name: newer, so it is seen.
        assert_eq!(s.upsert(mk_owned("a", "x", "13")), vec![a.clone()]);
        assert_eq!(s.for_app(&a).len(), 1);
        // A relist forgets the tombstones of its kind.
        s.remove_version(&mk_owned("a", "x", "14"));
        s.replace_kind("", "ConfigMap", Vec::new());
        assert_eq!(s.upsert(mk_owned("a", "x", "5")), vec![a.clone()]);
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let mut s = LiveStore::default();
        let a = AppKey::new("argocd", "a");
        let mut newer = mk_owned("a", "x", "10");
        newer["data"] = json!({"v": "new"});
        s.upsert(newer);
        let mut older = mk_owned("a", "x", "9");
        older["data"] = json!({"v": "old"});
        assert!(s.upsert(older).is_empty());
        assert_eq!(
            s.for_app(&a)
                .values()
                .next()
                .map(|o| o["data"]["v"].clone()),
            Some(json!("new"))
        );
    }

    #[test]
    fn moving_ownership_and_removal_notify_both_apps() {
        let mut s = LiveStore::default();
        s.upsert(mk_owned("a", "x", "1"));
        let moved = s.upsert(mk_owned("b", "x", "2"));
        // The tracking id names app b now, but the key is the same object.
        assert_eq!(
            moved,
            vec![AppKey::new("argocd", "a"), AppKey::new("argocd", "b")]
        );
        let key = ResourceKey::of(&mk_owned("b", "x", "2")).expect("key");
        assert_eq!(s.remove(&key), Some(AppKey::new("argocd", "b")));
        assert!(s.is_empty());
    }

    #[test]
    fn relist_drops_what_is_gone_and_reports_only_changes() {
        let mut s = LiveStore::default();
        s.upsert(mk_owned("a", "x", "1"));
        s.upsert(mk_owned("b", "y", "1"));
        let affected = s.replace_kind("", "ConfigMap", vec![mk_owned("a", "x", "1")]);
        assert_eq!(
            affected,
            vec![AppKey::new("argocd", "b")],
            "x unchanged, y gone"
        );
        assert_eq!(
            s.apps_with_kind("", "ConfigMap"),
            vec![AppKey::new("argocd", "a")]
        );
    }
}
