//! One virtual cluster's state: objects by kind, the resourceVersion clock, the bounded event
//! history that watches resume from, owner/uid indexes for garbage collection, and every verb's
//! write semantics (create, update, patch, apply, delete with finalizers and propagation).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::RwLock;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::error::{ApiError, ApiResult};
use super::fields::{self, Scope, Writer};
use super::objects::{
    apply_defaults, generated_name, initial_status, meta_mut, name_of, now_rfc3339, spec_changed,
    validate,
};
use super::patch::{self, PatchError};
use super::resources::{GroupResource, Registry, ResourceType};
use super::selector::extra_fields;
use super::stored::Obj;

/// The first resourceVersion of a fresh cluster; older ones answer 410 Gone, as on a real
/// cluster whose history was compacted long ago.
pub const INITIAL_RV: u64 = 1000;

/// `(namespace, name)`; namespace is empty for cluster-scoped objects.
pub type ObjKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it. Versions are shared with the store (`Arc<Obj>`), so the
/// history costs one serialized copy per version it still reaches.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub gr: GroupResource,
    pub kind: EventType,
    pub object: Arc<Obj>,
    /// The object before the change (for selector transitions and list snapshots).
    pub prev: Option<Arc<Obj>>,
}

impl Event {
    fn new(
        rv: u64,
        gr: GroupResource,
        kind: EventType,
        object: Arc<Obj>,
        prev: Option<Arc<Obj>>,
    ) -> Self {
        Self {
            rv,
            gr,
            kind,
            object,
            prev,
        }
    }

    /// The object's JSON, serialized once when written and shared by every watcher.
    pub fn object_json(&self) -> &Bytes {
        self.object.json()
    }

    pub fn namespace(&self) -> &str {
        &self.object.meta().namespace
    }
}

/// How a write was requested.
#[derive(Debug, Clone, Default)]
pub struct WriteCtx {
    pub manager: String,
    pub dry_run: bool,
    /// `fieldValidation`: what unknown fields of built-in kinds do (dropped or refused).
    pub field_validation: super::typed::FieldValidation,
    /// Warnings for the response (`Warning: 299` headers): unknown fields dropped under
    /// `fieldValidation=Warn`.
    pub warnings: Arc<parking_lot::Mutex<Vec<String>>>,
}

impl WriteCtx {
    /// Note dropped unknown fields as warnings when the request asked for them (Warn).
    pub fn warn_unknown(&self, unknown: &[String]) {
        if self.field_validation == super::typed::FieldValidation::Warn {
            self.warnings
                .lock()
                .extend(unknown.iter().map(|p| format!("unknown field \"{p}\"")));
        }
    }
}

/// The patch content types the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply { force: bool },
}

/// `DeleteOptions` that matter.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// A page of a list.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Arc<Obj>>,
    pub rv: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

impl ListPage {
    /// The items, parsed.
    pub fn values(&self) -> ApiResult<Vec<Value>> {
        self.items
            .iter()
            .map(|o| o.value().map_err(ApiError::from))
            .collect()
    }
}

/// Where a watch begins.
pub struct WatchStart {
    pub backlog: Vec<Arc<Event>>,
    pub rx: broadcast::Receiver<Arc<Event>>,
    pub start_rv: u64,
}

/// A write kubesim's status simulation should look at.
#[derive(Debug, Clone)]
pub struct Touch {
    pub rt: Arc<ResourceType>,
    pub key: ObjKey,
    pub purpose: Purpose,
}

/// What the background task should do with a touched object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Simulate the kind's status (kwok-style).
    Status,
    /// A terminating CRD: delete its custom resources, then drop the cleanup finalizer.
    CrdCleanup,
    /// Every owner of the object is absent: the garbage collector deletes it.
    Collect,
}

/// The finalizer a CRD carries while its custom resources are deleted.
pub const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

enum Work {
    Delete(GroupResource, ObjKey),
    CheckForeground(String),
    CheckNamespace(String),
    /// A custom resource went: its terminating CRD may now be finished.
    FinishCrd(String),
}

struct Inner {
    rv: u64,
    /// Every event with `rv > floor` is still in `history`.
    floor: u64,
    registry: Registry,
    objects: HashMap<GroupResource, BTreeMap<ObjKey, Arc<Obj>>>,
    /// CRDs parsed (by name), kept in step with their stored JSON: custom resource writes read
    /// their schema on every write.
    crds: HashMap<String, Arc<Value>>,
    /// owner uid → dependents.
    owners: HashMap<String, BTreeSet<(GroupResource, ObjKey)>>,
    /// uid → where the object lives.
    uids: HashMap<String, (GroupResource, ObjKey)>,
    history: VecDeque<Arc<Event>>,
    history_cap: usize,
    /// JSON bytes of the objects `history` holds, and the most it may (0: no bound).
    history_bytes: usize,
    history_max_bytes: usize,
}

/// A virtual cluster's object store.
pub struct Store {
    inner: RwLock<Inner>,
    events: broadcast::Sender<Arc<Event>>,
    sim: OnceLock<mpsc::UnboundedSender<Touch>>,
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
}

fn rv_of(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn namespace_gr() -> GroupResource {
    GroupResource {
        group: String::new(),
        resource: "namespaces".into(),
    }
}

fn crd_gr() -> GroupResource {
    GroupResource {
        group: "apiextensions.k8s.io".into(),
        resource: "customresourcedefinitions".into(),
    }
}

fn patch_error(e: PatchError) -> ApiError {
    match e {
        PatchError::Decode(e) => ApiError::bad_request(format!("error decoding patch: {e}")),
        other => {
            let mut err = ApiError::bad_request(other.to_string());
            err.code = 422;
            err.reason = "Invalid";
            err
        }
    }
}

/// Check the body's apiVersion/kind against the endpoint.
fn check_type(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the object provided is unrecognized (must be of type object)",
        ));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the kind served by this endpoint ({})",
            rt.kind
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        let group = av.rsplit_once('/').map_or("", |(g, _)| g);
        if group != rt.group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
    }
    Ok(())
}

/// Reconcile the body's namespace with the URL's.
fn check_namespace(rt: &ResourceType, ns: &str, obj: &mut Value) -> ApiResult<()> {
    let meta = meta_mut(obj);
    if rt.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

impl Store {
    pub fn new(history_cap: usize, broadcast_cap: usize) -> Self {
        let (events, _) = broadcast::channel(broadcast_cap.max(16));
        Self {
            inner: RwLock::new(Inner {
                // Like a long-running cluster: resourceVersions below this are compacted.
                rv: INITIAL_RV,
                floor: INITIAL_RV,
                registry: Registry::default(),
                objects: HashMap::new(),
                crds: HashMap::new(),
                owners: HashMap::new(),
                uids: HashMap::new(),
                history: VecDeque::new(),
                history_cap: history_cap.max(16),
                history_bytes: 0,
                history_max_bytes: 0,
            }),
            events,
            sim: OnceLock::new(),
        }
    }

    /// Bound the history by the JSON bytes of its objects too (0: by count only), as a real
    /// watch cache is bounded by memory: the oldest events go first, with 410 Gone for
    /// resourceVersions before them.
    pub fn with_history_bytes(self, max: usize) -> Self {
        self.inner.write().history_max_bytes = max;
        self
    }

    /// Register an APIService per served group-version (see `Inner::sync_api_services`).
    pub fn sync_api_services(&self) {
        self.inner.write().sync_api_services(&self.events);
    }

    /// Route writes of simulated kinds to the status simulator.
    pub fn set_simulator(&self, tx: mpsc::UnboundedSender<Touch>) {
        let _ = self.sim.set(tx);
    }

    pub fn registry(&self) -> Registry {
        self.inner.read().registry.clone()
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.inner.read().registry.lookup(group, version, plural)
    }

    pub fn resource_version(&self) -> u64 {
        self.inner.read().rv
    }

    pub fn object_count(&self) -> usize {
        self.inner.read().objects.values().map(BTreeMap::len).sum()
    }

    /// Estimated heap bytes held, by part (see `footprint.rs`).
    pub fn footprint(&self) -> super::footprint::Footprint {
        use super::footprint::{Footprint, alloc_size, string_heap, table_heap};
        let inner = self.inner.read();
        let mut f = Footprint::default();
        let key_heap = |k: &ObjKey| string_heap(k.0.capacity()) + string_heap(k.1.capacity());
        let gr_heap = |g: &GroupResource| {
            string_heap(g.group.capacity()) + string_heap(g.resource.capacity())
        };
        let arc_obj = alloc_size(16 + size_of::<Obj>());
        let mut current = std::collections::HashSet::new();
        for objs in inner.objects.values() {
            for (k, v) in objs {
                current.insert(Arc::as_ptr(v) as usize);
                // A B-tree node holds up to 11 entries; count them about 3/4 full.
                f.keys += key_heap(k) + (size_of::<ObjKey>() + 8) * 4 / 3;
                let mf = v.managed_fields_len();
                f.managed_fields += mf;
                f.objects += alloc_size(v.json().len()) - mf;
                f.meta += arc_obj + v.meta().heap_bytes();
            }
        }
        let entry = size_of::<String>() + size_of::<(GroupResource, ObjKey)>();
        f.indexes += table_heap(inner.uids.len(), entry);
        for (uid, (g, k)) in &inner.uids {
            f.indexes += string_heap(uid.capacity()) + gr_heap(g) + key_heap(k);
        }
        f.indexes += table_heap(inner.owners.len(), size_of::<String>() + 24);
        for (uid, deps) in &inner.owners {
            f.indexes += string_heap(uid.capacity());
            for (g, k) in deps {
                f.indexes +=
                    gr_heap(g) + key_heap(k) + size_of::<(GroupResource, ObjKey)>() * 4 / 3;
            }
        }
        let mut seen = std::collections::HashSet::new();
        f.history_events = inner.history.len();
        f.history_events_bytes = alloc_size(inner.history.capacity() * 8);
        for e in &inner.history {
            f.history_events_bytes += alloc_size(16 + size_of::<Event>()) + gr_heap(&e.gr);
            for v in std::iter::once(&e.object).chain(e.prev.as_ref()) {
                let p = Arc::as_ptr(v) as usize;
                if !current.contains(&p) && seen.insert(p) {
                    f.history_versions += arc_obj + v.heap_bytes();
                }
            }
        }
        f
    }

    /// After a main-endpoint write, the simulator looks at the object again (a status write
    /// is the simulator's own answer, or a controller's).
    fn touched_unless_status(&self, rt: &Arc<ResourceType>, key: &ObjKey, scope: Scope) {
        if scope != Scope::Status {
            self.touch(rt, key);
            self.check_owners(rt, key);
        }
    }

    /// An object whose every owner is absent is the garbage collector's (in the background).
    fn check_owners(&self, rt: &Arc<ResourceType>, key: &ObjKey) {
        let orphaned = {
            let inner = self.inner.read();
            inner.get(&rt.group_resource(), key).is_some_and(|o| {
                let owners = &o.meta().owners;
                !owners.is_empty() && owners.iter().all(|u| !inner.uids.contains_key(&**u))
            })
        };
        if orphaned {
            self.background(rt, key, Purpose::Collect);
        }
    }

    fn touch(&self, rt: &Arc<ResourceType>, key: &ObjKey) {
        if rt.simulated != super::resources::Simulated::None
            && let Some(tx) = self.sim.get()
        {
            let _ = tx.send(Touch {
                rt: rt.clone(),
                key: key.clone(),
                purpose: Purpose::Status,
            });
        }
    }

    /// Hand background work (CRD cleanup, garbage collection) to the cluster's task, which
    /// runs it after the request that caused it has been answered, as a real server's
    /// controllers do. Without a task (a bare store), it runs now.
    fn background(&self, rt: &Arc<ResourceType>, key: &ObjKey, purpose: Purpose) {
        let touch = Touch {
            rt: rt.clone(),
            key: key.clone(),
            purpose,
        };
        match self.sim.get() {
            Some(tx) => {
                let _ = tx.send(touch);
            }
            None => self.run_background(&touch),
        }
    }

    /// Do what a `background` touch asks (called by the cluster's task).
    pub fn run_background(&self, touch: &Touch) {
        match touch.purpose {
            Purpose::Status => {}
            Purpose::CrdCleanup => self.finalize_crd(&touch.key.1),
            Purpose::Collect => self.collect_if_orphaned(&touch.rt, &touch.key),
        }
    }

    /// The CRD finalizer controller: delete every custom resource of a terminating CRD;
    /// once none is left (those with finalizers may hold it), drop `CRD_CLEANUP`.
    fn finalize_crd(&self, name: &str) {
        let mut inner = self.inner.write();
        let Some(crd) = inner.get(&crd_gr(), &(String::new(), name.to_string())) else {
            return;
        };
        if !crd.meta().deleting || !crd.meta().has_finalizer(CRD_CLEANUP) {
            return;
        }
        let Some(cr_gr) = inner.crds.get(name).and_then(|c| crd_group_resource(c)) else {
            return;
        };
        let keys: Vec<ObjKey> = inner
            .objects
            .get(&cr_gr)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let mut work = Vec::new();
        for k in keys {
            if inner.get(&cr_gr, &k).is_some_and(|o| !o.meta().deleting) {
                inner.mark_or_remove(&self.events, &cr_gr, &k, false, &mut work);
            }
        }
        work.insert(0, Work::FinishCrd(name.to_string()));
        inner.run(&self.events, work);
    }

    /// The garbage collector's check of one object: when no owner it names exists (by uid),
    /// it is deleted in the background.
    fn collect_if_orphaned(&self, rt: &Arc<ResourceType>, key: &ObjKey) {
        let mut inner = self.inner.write();
        let gr = rt.group_resource();
        let Some(obj) = inner.get(&gr, key) else {
            return;
        };
        let owners = &obj.meta().owners;
        if owners.is_empty()
            || obj.meta().deleting
            || owners.iter().any(|o| inner.uids.contains_key(&**o))
        {
            return;
        }
        let mut work = Vec::new();
        inner.mark_or_remove(&self.events, &gr, key, false, &mut work);
        inner.run(&self.events, work);
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Arc<Obj>> {
        let inner = self.inner.read();
        inner
            .get(&rt.group_resource(), &(ns.to_string(), name.to_string()))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// The object, parsed (for callers that read or edit the whole of it).
    pub fn get_value(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Value> {
        Ok(self.get(rt, ns, name)?.value()?)
    }

    /// A custom resource version's `openAPIV3Schema` (for the OpenAPI documents).
    pub fn crd_schema(&self, rt: &ResourceType) -> Option<Value> {
        let crd = crd_of(&self.inner.read(), rt)?;
        crd_version(&crd, rt)?
            .pointer("/schema/openAPIV3Schema")
            .cloned()
    }

    /// A custom resource version's `additionalPrinterColumns` (for `Table` output).
    pub fn printer_columns(&self, rt: &ResourceType) -> Vec<Value> {
        let crd = crd_of(&self.inner.read(), rt);
        crd.as_deref()
            .and_then(|c| crd_version(c, rt))
            .and_then(|v| v.get("additionalPrinterColumns")?.as_array().cloned())
            .unwrap_or_default()
    }

    /// List `rt` (in `ns`, or everywhere when `None`) with a filter and optional paging.
    /// A continue token serves the rest of the snapshot its first page came from, and
    /// `exact` the snapshot at that resourceVersion: both rebuilt from the event history, or
    /// 410 Gone once it no longer reaches back that far.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        filter: impl Fn(&Obj) -> bool,
        limit: Option<usize>,
        continue_token: Option<&str>,
        exact: Option<u64>,
    ) -> ApiResult<ListPage> {
        let (start, token_rv) = match continue_token {
            Some(t) if !t.is_empty() => {
                let (rv, key) = decode_continue(t)?;
                (Some(key), Some(rv))
            }
            _ => (None, None),
        };
        let inner = self.inner.read();
        let gr = rt.group_resource();
        let snapshot = token_rv.or(exact);
        if let Some(s) = snapshot
            && s > inner.rv
        {
            return Err(ApiError::too_large_rv(s, inner.rv));
        }
        // Objects changed after the snapshot, as they were at it (None: did not exist).
        let mut undo: BTreeMap<ObjKey, Option<Arc<Obj>>> = BTreeMap::new();
        if let Some(s) = snapshot.filter(|s| *s < inner.rv) {
            let Some(after) = inner.since(s) else {
                return Err(if token_rv.is_some() {
                    ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    )
                } else {
                    ApiError::gone(format!("too old resource version: {s} ({})", inner.floor))
                });
            };
            for e in after.iter().rev().filter(|e| e.gr == gr) {
                let m = e.object.meta();
                let key = (m.namespace.to_string(), m.name.to_string());
                undo.insert(key, e.prev.clone());
            }
        }
        let rv = snapshot.unwrap_or(inner.rv);
        let empty = BTreeMap::new();
        let current = inner.objects.get(&gr).unwrap_or(&empty);
        let objs: std::borrow::Cow<'_, BTreeMap<ObjKey, Arc<Obj>>> = if undo.is_empty() {
            std::borrow::Cow::Borrowed(current)
        } else {
            let mut m = current.clone();
            for (k, v) in undo {
                match v {
                    Some(v) => {
                        m.insert(k, v);
                    }
                    None => {
                        m.remove(&k);
                    }
                }
            }
            std::borrow::Cow::Owned(m)
        };
        use std::ops::Bound;
        let lower = match &start {
            Some(k) => Bound::Excluded(k.clone()),
            None => match ns {
                Some(n) => Bound::Included((n.to_string(), String::new())),
                None => Bound::Unbounded,
            },
        };
        let iter = objs
            .range((lower, Bound::Unbounded))
            .take_while(|((n, _), _)| ns.is_none_or(|want| n == want))
            .filter(|(_, v)| filter(v));
        let mut items = Vec::new();
        let mut last_key = None;
        let mut remaining = 0usize;
        for (k, v) in iter {
            if limit.is_some_and(|l| items.len() >= l) {
                remaining += 1;
                continue;
            }
            items.push(v.clone());
            last_key = Some(k.clone());
        }
        let continue_token = if remaining > 0 {
            last_key.map(|k| encode_continue(rv, &k))
        } else {
            None
        };
        Ok(ListPage {
            items,
            rv,
            remaining: continue_token.as_ref().map(|_| remaining),
            continue_token,
        })
    }

    pub fn create(
        &self,
        rt: &Arc<ResourceType>,
        ns: &str,
        obj: Value,
        ctx: &WriteCtx,
    ) -> ApiResult<Arc<Obj>> {
        self.create_owned(rt, ns, obj, None, ctx)
    }

    /// Create; `managed` replaces the recorded ownership (an apply that creates keeps the
    /// apply's `managedFields` rather than an Update entry).
    fn create_owned(
        &self,
        rt: &Arc<ResourceType>,
        ns: &str,
        mut obj: Value,
        managed: Option<Value>,
        ctx: &WriteCtx,
    ) -> ApiResult<Arc<Obj>> {
        check_type(rt, &obj)?;
        check_namespace(rt, ns, &mut obj)?;
        {
            let meta = meta_mut(&mut obj);
            let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                match meta.get("generateName").and_then(Value::as_str) {
                    Some(prefix) if !prefix.is_empty() => {
                        let generated = generated_name(prefix);
                        meta.insert("name".into(), json!(generated));
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            &rt.kind,
                            rt,
                            "",
                            "metadata.name",
                            "Required value: name or generateName is required",
                        ));
                    }
                }
            }
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let unknown = super::typed::check(rt, &mut obj, ctx.field_validation)?;
        ctx.warn_unknown(&unknown);
        let crd = crd_of(&self.inner.read(), rt);
        let schema = crd
            .as_deref()
            .and_then(|c| crd_version(c, rt))
            .and_then(|v| v.pointer("/schema/openAPIV3Schema"));
        check_custom(rt, schema, &mut obj, ctx)?;
        validate(rt, &obj)?;
        let now = now_rfc3339();
        {
            let meta = meta_mut(&mut obj);
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
            ] {
                meta.remove(k);
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now));
            if rt.tracks_generation {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        if rt.has_status
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        if let Some(s) = initial_status(rt) {
            obj["status"] = s;
        }
        apply_defaults(rt, &mut obj);
        let crd_types = if rt.is_crd() {
            let types = Registry::crd_types(&obj).map_err(|e| {
                ApiError::invalid(&rt.kind, rt, name_of(&obj), "spec", &e.to_string())
            })?;
            obj["status"] = crd_status(&obj);
            Some(types)
        } else {
            None
        };
        fields::record_update(
            None,
            &mut obj,
            &Writer {
                manager: &ctx.manager,
                api_version: rt.api_version(),
                time: &now,
                subresource: None,
                custom: rt.custom,
                scope: if rt.has_status {
                    Scope::Main
                } else {
                    Scope::All
                },
            },
        );
        if let Some(m) = managed {
            meta_mut(&mut obj).insert("managedFields".into(), m);
        }
        let key = (ns_of(rt, ns), name_of(&obj).to_string());
        let gr = rt.group_resource();
        let mut inner = self.inner.write();
        if rt.namespaced {
            match inner.get(&namespace_gr(), &(String::new(), ns.to_string())) {
                None => return Err(ApiError::namespace_not_found(ns)),
                Some(n) if n.meta().deleting => {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        rt.qualified(),
                        key.1
                    )));
                }
                Some(_) => {}
            }
        }
        if inner.get(&gr, &key).is_some() {
            return Err(ApiError::already_exists(rt, &key.1));
        }
        if rt.custom
            && inner
                .get(
                    &crd_gr(),
                    &(String::new(), format!("{}.{}", rt.plural, rt.group)),
                )
                .is_some_and(|c| c.meta().deleting)
        {
            return Err(ApiError::method_not_allowed_message(
                "create not allowed while custom resource definition is terminating",
            ));
        }
        if ctx.dry_run {
            return Ok(Arc::new(Obj::new(
                &obj,
                extra_fields(&gr.group, &gr.resource),
            )));
        }
        let is_crd = crd_types.is_some();
        if let Some(types) = crd_types {
            inner.registry.register_crd(&key.1, types);
        }
        let stored = inner.commit(&self.events, &gr, key.clone(), Some(obj), EventType::Added);
        if is_crd {
            inner.sync_api_services(&self.events);
        }
        drop(inner);
        self.touch(rt, &key);
        self.check_owners(rt, &key);
        stored.ok_or_else(|| ApiError::internal("object vanished during create"))
    }

    /// PUT: replace the object (or its status, for `Scope::Status`).
    pub fn update(
        &self,
        rt: &Arc<ResourceType>,
        ns: &str,
        name: &str,
        mut obj: Value,
        scope: Scope,
        ctx: &WriteCtx,
    ) -> ApiResult<Arc<Obj>> {
        check_type(rt, &obj)?;
        check_namespace(rt, ns, &mut obj)?;
        match obj.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {
                meta_mut(&mut obj).insert("name".into(), json!(name));
            }
        }
        let key = (ns_of(rt, ns), name.to_string());
        let gr = rt.group_resource();
        let mut inner = self.inner.write();
        let old = inner
            .get(&gr, &key)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let want_rv = rv_of(&obj);
        if !want_rv.is_empty() && want_rv != &*old.meta().resource_version {
            return Err(ApiError::stale(rt, name));
        }
        let old_value = old.value()?;
        let requested = obj.pointer("/metadata/managedFields").cloned();
        let mut new = merge_update(rt, &old_value, obj, scope);
        let now = now_rfc3339();
        record_with_requested(
            rt,
            &old_value,
            &mut new,
            requested,
            &writer(rt, &ctx.manager, &now, scope),
        )?;
        let out =
            inner.finish_write(&self.events, rt, key.clone(), (&old, &old_value), new, ctx)?;
        drop(inner);
        self.touched_unless_status(rt, &key, scope);
        Ok(out)
    }

    /// PATCH with any of the four patch types; apply creates a missing object.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &Arc<ResourceType>,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        scope: Scope,
        ctx: &WriteCtx,
    ) -> ApiResult<(Arc<Obj>, bool)> {
        if kind == PatchKind::Strategic && rt.custom {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json (not supported for custom resources)",
            ));
        }
        let applied = match kind {
            PatchKind::Apply { .. } => {
                let v = parse_body(body, true)?;
                check_type(rt, &v)?;
                if v.get("apiVersion").is_none() || v.get("kind").is_none() {
                    return Err(ApiError::bad_request(
                        "apiVersion and kind must be set in an apply patch",
                    ));
                }
                if let Some(n) = v.pointer("/metadata/name").and_then(Value::as_str)
                    && n != name
                {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )));
                }
                let mut v = v;
                check_namespace(rt, ns, &mut v)?;
                Some(v)
            }
            _ => None,
        };
        let key = (ns_of(rt, ns), name.to_string());
        let gr = rt.group_resource();
        let now = now_rfc3339();
        let mut inner = self.inner.write();
        let Some(old) = inner.get(&gr, &key) else {
            return match (kind, applied) {
                (PatchKind::Apply { force }, Some(v)) if scope != Scope::Status => {
                    drop(inner);
                    let w = writer(rt, &ctx.manager, &now, scope);
                    let mut created = fields::apply(None, &v, &w, force)
                        .map_err(|c| ApiError::apply_conflicts(rt, name, &c))?;
                    meta_mut(&mut created).insert("name".into(), json!(name));
                    // Keep the apply ownership through the create path.
                    let managed = created.pointer("/metadata/managedFields").cloned();
                    let obj = self.create_owned(rt, ns, created, managed, ctx)?;
                    Ok((obj, true))
                }
                _ => Err(ApiError::not_found(rt, name)),
            };
        };
        let old_value = old.value()?;
        let mut new = match kind {
            PatchKind::Apply { force } => {
                let v = applied.ok_or_else(|| ApiError::internal("apply body missing"))?;
                let w = writer(rt, &ctx.manager, &now, scope);
                fields::apply(Some(&old_value), &v, &w, force)
                    .map_err(|c| ApiError::apply_conflicts(rt, name, &c))?
            }
            PatchKind::Json | PatchKind::Merge | PatchKind::Strategic => {
                let mut target = old_value.clone();
                match kind {
                    PatchKind::Json => patch::json_patch(&mut target, body),
                    PatchKind::Merge => patch::merge_patch(&mut target, body),
                    _ => patch::strategic_merge_patch(&mut target, body),
                }
                .map_err(patch_error)?;
                if name_of(&target) != name {
                    return Err(ApiError::bad_request(
                        "metadata.name cannot be changed by a patch",
                    ));
                }
                let want_rv = rv_of(&target);
                if !want_rv.is_empty() && want_rv != &*old.meta().resource_version {
                    return Err(ApiError::stale(rt, name));
                }
                target
            }
        };
        check_type(rt, &new)?;
        let applied_managed = new.pointer("/metadata/managedFields").cloned();
        new = merge_update(rt, &old_value, new, scope);
        if matches!(kind, PatchKind::Apply { .. }) {
            // Apply computed ownership itself; keep it over the stored copy.
            match applied_managed {
                Some(m) => {
                    meta_mut(&mut new).insert("managedFields".into(), m);
                }
                None => {
                    meta_mut(&mut new).remove("managedFields");
                }
            }
        } else {
            record_with_requested(
                rt,
                &old_value,
                &mut new,
                applied_managed,
                &writer(rt, &ctx.manager, &now, scope),
            )?;
        }
        let out =
            inner.finish_write(&self.events, rt, key.clone(), (&old, &old_value), new, ctx)?;
        drop(inner);
        self.touched_unless_status(rt, &key, scope);
        Ok((out, false))
    }

    /// DELETE one object. The answer is the object when it stays (finalizers, foreground
    /// deletion, a namespace terminating) and `gone` when it was removed at once, for which a
    /// real server answers with a `Status` (see `api.rs`).
    pub fn delete(
        &self,
        rt: &Arc<ResourceType>,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Deleted> {
        let key = (ns_of(rt, ns), name.to_string());
        let gr = rt.group_resource();
        let mut inner = self.inner.write();
        let old = inner
            .get(&gr, &key)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let meta = old.meta();
        if let Some(uid) = &opts.precondition_uid
            && uid.as_str() != &*meta.uid
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta.uid
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && rv.as_str() != &*meta.resource_version
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta.resource_version
                ),
            ));
        }
        let propagation = opts.propagation.as_deref().unwrap_or("Background");
        if opts.dry_run {
            let stays =
                gr == namespace_gr() || !meta.finalizers.is_empty() || propagation == "Foreground";
            return Ok(Deleted {
                object: old,
                gone: !stays,
            });
        }
        if propagation == "Orphan" {
            inner.orphan_dependents(&self.events, &old.meta().uid);
        }
        let mut work = Vec::new();
        let out = inner
            .mark_or_remove(
                &self.events,
                &gr,
                &key,
                propagation == "Foreground",
                &mut work,
            )
            .unwrap_or(old);
        let gone = inner.get(&gr, &key).is_none();
        inner.run(&self.events, work);
        let cleanup = rt.is_crd()
            && inner
                .get(&gr, &key)
                .is_some_and(|c| c.meta().has_finalizer(CRD_CLEANUP));
        drop(inner);
        if cleanup {
            self.background(rt, &key, Purpose::CrdCleanup);
        }
        Ok(Deleted { object: out, gone })
    }

    /// DELETE on a collection: every matching object, one by one.
    pub fn delete_collection(
        &self,
        rt: &Arc<ResourceType>,
        ns: Option<&str>,
        filter: impl Fn(&Obj) -> bool,
        opts: &DeleteOpts,
    ) -> ApiResult<Vec<Arc<Obj>>> {
        let page = self.list(rt, ns, filter, None, None, None)?;
        let mut out = Vec::new();
        for item in page.items {
            let m = item.meta();
            match self.delete(rt, &m.namespace, &m.name, opts) {
                Ok(v) => out.push(v.object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Begin a watch: `from = None` replays the current state as ADDED events; `Some(rv)` resumes
    /// after `rv`, or fails with 410 Gone when history no longer reaches back that far.
    pub fn watch_start(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
        from: Option<u64>,
    ) -> ApiResult<WatchStart> {
        let inner = self.inner.read();
        let rx = self.events.subscribe();
        match from {
            None => {
                let backlog = inner
                    .objects
                    .get(gr)
                    .map(|objs| {
                        objs.iter()
                            .filter(|((n, _), _)| ns.is_none_or(|want| n == want))
                            .map(|(_, v)| {
                                Arc::new(Event::new(
                                    inner.rv,
                                    gr.clone(),
                                    EventType::Added,
                                    v.clone(),
                                    None,
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(WatchStart {
                    backlog,
                    rx,
                    start_rv: inner.rv,
                })
            }
            Some(rv) => {
                let backlog = inner.since(rv).ok_or_else(|| {
                    ApiError::gone(format!("too old resource version: {rv} ({})", inner.floor))
                })?;
                Ok(WatchStart {
                    backlog: backlog.into_iter().filter(|e| &e.gr == gr).collect(),
                    rx,
                    start_rv: rv,
                })
            }
        }
    }

    /// After a watcher lagged: the events after `rv` and a fresh receiver, or `None` if gone.
    pub fn resume(&self, rv: u64) -> Option<WatchStart> {
        let inner = self.inner.read();
        let rx = self.events.subscribe();
        inner.since(rv).map(|backlog| WatchStart {
            backlog,
            rx,
            start_rv: rv,
        })
    }

    /// A controller-style status write (kwok simulation): `f` maps the object to its new
    /// status, or `None` to leave it. Skipped when the object is gone or was replaced.
    pub fn write_status(
        &self,
        gr: &GroupResource,
        key: &ObjKey,
        f: impl FnOnce(&Value) -> Option<Value>,
    ) -> bool {
        let mut inner = self.inner.write();
        let Some(old) = inner.get(gr, key).and_then(|o| o.value().ok()) else {
            return false;
        };
        let Some(status) = f(&old) else {
            return false;
        };
        if old.get("status") == Some(&status) {
            return false;
        }
        let mut new = old.clone();
        new["status"] = status;
        let now = now_rfc3339();
        let api_version = old
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("v1")
            .to_string();
        fields::record_update(
            Some(&old),
            &mut new,
            &Writer {
                manager: "kube-controller-manager",
                api_version: &api_version,
                time: &now,
                subresource: Some("status"),
                custom: false,
                scope: Scope::Status,
            },
        );
        inner.commit(
            &self.events,
            gr,
            key.clone(),
            Some(new),
            EventType::Modified,
        );
        true
    }
}

fn writer<'a>(rt: &'a ResourceType, manager: &'a str, now: &'a str, scope: Scope) -> Writer<'a> {
    Writer {
        manager,
        api_version: rt.api_version(),
        time: now,
        subresource: (scope == Scope::Status).then_some("status"),
        custom: rt.custom,
        scope: match scope {
            Scope::Status => Scope::Status,
            _ if rt.has_status => Scope::Main,
            _ => Scope::All,
        },
    }
}

fn ns_of(rt: &ResourceType, ns: &str) -> String {
    if rt.namespaced {
        ns.to_string()
    } else {
        String::new()
    }
}

/// Combine an incoming object with the stored one: immutable metadata kept, status taken from
/// the right side for the endpoint used, generation bumped on spec changes.
fn merge_update(rt: &ResourceType, old: &Value, new: Value, scope: Scope) -> Value {
    let mut out = if scope == Scope::Status {
        // The old object with the new status (in the old one's place, or last); the old
        // status is not copied only to be replaced.
        let mut new = new;
        let mut status = new
            .as_object_mut()
            .and_then(|m| m.remove("status"))
            .filter(|s| !s.is_null());
        match old {
            Value::Object(m) => {
                let mut o = serde_json::Map::with_capacity(m.len() + 1);
                for (k, v) in m {
                    if k == "status" {
                        if let Some(s) = status.take() {
                            o.insert(k.clone(), s);
                        }
                    } else {
                        o.insert(k.clone(), v.clone());
                    }
                }
                if let Some(s) = status {
                    o.insert("status".into(), s);
                }
                Value::Object(o)
            }
            other => other.clone(),
        }
    } else {
        let mut n = new;
        if rt.has_status {
            match old.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    if let Some(m) = n.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        n
    };
    out["apiVersion"] = json!(rt.api_version());
    out["kind"] = json!(rt.kind);
    let old_meta = old.get("metadata");
    let meta = meta_mut(&mut out);
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "name",
        "namespace",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        match old_meta.and_then(|m| m.get(k)) {
            Some(v) => {
                if meta.get(k) != Some(v) {
                    meta.insert(k.into(), v.clone());
                }
            }
            None => {
                meta.remove(k);
            }
        }
    }
    out
}

/// The storage identity of a CRD's custom resources.
fn crd_group_resource(crd: &Value) -> Option<GroupResource> {
    Some(GroupResource {
        group: crd.pointer("/spec/group")?.as_str()?.to_string(),
        resource: crd.pointer("/spec/names/plural")?.as_str()?.to_string(),
    })
}

/// The CRD finalizer controller's condition while instances are deleted.
fn set_terminating_condition(crd: &mut Value, now: &str) {
    let cond = json!({"type": "Terminating", "status": "True",
                      "reason": "InstanceDeletionInProgress",
                      "message": "CustomResource deletion is in progress",
                      "lastTransitionTime": now});
    match crd.pointer_mut("/status/conditions") {
        Some(Value::Array(cs)) => {
            cs.retain(|c| c["type"] != "Terminating");
            cs.push(cond);
        }
        _ => crd["status"]["conditions"] = json!([cond]),
    }
}

fn crd_status(crd: &Value) -> Value {
    let now = now_rfc3339();
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({})),
        "storedVersions": storage,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
    })
}

/// Parse a request body as JSON, or YAML when allowed.
pub fn parse_body(body: &[u8], yaml: bool) -> ApiResult<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) if yaml => serde_yaml::from_slice::<Value>(body).map_err(|e| {
            ApiError::bad_request(format!("error decoding YAML: {e} (as JSON: {json_err})"))
        }),
        Err(e) => Err(ApiError::bad_request(format!(
            "the object provided is unrecognized: couldn't get version/kind; json parse error: {e}"
        ))),
    }
}

fn encode_continue(rv: u64, key: &ObjKey) -> String {
    use base64::Engine;
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "ns": key.0, "name": key.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(u64, ObjKey)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let ns = v.get("ns").and_then(Value::as_str).ok_or_else(bad)?;
    let name = v.get("name").and_then(Value::as_str).ok_or_else(bad)?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

impl Inner {
    fn get(&self, gr: &GroupResource, key: &ObjKey) -> Option<Arc<Obj>> {
        self.objects.get(gr).and_then(|m| m.get(key)).cloned()
    }

    /// Events after `rv`, or `None` when history no longer reaches back to it.
    fn since(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.floor {
            return None;
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Some(self.history.range(start..).cloned().collect())
    }

    /// Store (or remove, when `new` is `None`) an object, bump the clock, record and publish.
    fn commit(
        &mut self,
        events: &broadcast::Sender<Arc<Event>>,
        gr: &GroupResource,
        key: ObjKey,
        new: Option<Value>,
        kind: EventType,
    ) -> Option<Arc<Obj>> {
        self.rv += 1;
        let rv = self.rv;
        let prev = self.get(gr, &key);
        if let Some(p) = &prev {
            for owner in p.meta().owners.iter() {
                if let Some(deps) = self.owners.get_mut(&**owner) {
                    deps.remove(&(gr.clone(), key.clone()));
                    if deps.is_empty() {
                        self.owners.remove(&**owner);
                    }
                }
            }
        }
        let selectable = extra_fields(&gr.group, &gr.resource);
        let is_crd = *gr == crd_gr();
        let stored = match new {
            Some(mut v) => {
                meta_mut(&mut v).insert("resourceVersion".into(), json!(rv.to_string()));
                let obj = Arc::new(Obj::new(&v, selectable));
                for owner in obj.meta().owners.iter() {
                    self.owners
                        .entry(owner.to_string())
                        .or_default()
                        .insert((gr.clone(), key.clone()));
                }
                if !obj.meta().uid.is_empty() {
                    self.uids
                        .insert(obj.meta().uid.to_string(), (gr.clone(), key.clone()));
                }
                if is_crd {
                    self.crds.insert(key.1.clone(), Arc::new(v));
                }
                self.objects
                    .entry(gr.clone())
                    .or_default()
                    .insert(key, obj.clone());
                obj
            }
            None => {
                let removed = self
                    .objects
                    .get_mut(gr)
                    .and_then(|m| m.remove(&key))
                    .or(prev.clone())?;
                self.uids.remove(&*removed.meta().uid);
                if is_crd {
                    self.crds.remove(&key.1);
                }
                match removed.value() {
                    Ok(mut last) => {
                        meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
                        Arc::new(Obj::new(&last, selectable))
                    }
                    Err(_) => removed,
                }
            }
        };
        let ev = Arc::new(Event::new(rv, gr.clone(), kind, stored.clone(), prev));
        self.history_bytes += ev.object.json().len();
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_cap
            || (self.history_max_bytes > 0
                && self.history_bytes > self.history_max_bytes
                && self.history.len() > 1)
        {
            if let Some(old) = self.history.pop_front() {
                self.history_bytes -= old.object.json().len();
                self.floor = old.rv;
            }
        }
        let _ = events.send(ev);
        Some(stored)
    }

    /// The shared tail of update and patch.
    fn finish_write(
        &mut self,
        events: &broadcast::Sender<Arc<Event>>,
        rt: &ResourceType,
        key: ObjKey,
        (stored, old): (&Arc<Obj>, &Value),
        mut new: Value,
        ctx: &WriteCtx,
    ) -> ApiResult<Arc<Obj>> {
        apply_defaults(rt, &mut new);
        if rt.tracks_generation && spec_changed(old, &new) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        let unknown = super::typed::check(rt, &mut new, ctx.field_validation)?;
        ctx.warn_unknown(&unknown);
        let crd = crd_of(self, rt);
        let schema = crd
            .as_deref()
            .and_then(|c| crd_version(c, rt))
            .and_then(|v| v.pointer("/schema/openAPIV3Schema"));
        check_custom(rt, schema, &mut new, ctx)?;
        validate(rt, &new)?;
        if stored.meta().deleting {
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !stored.meta().has_finalizer(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    &rt.kind,
                    rt,
                    &key.1,
                    "metadata.finalizers",
                    &format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                ));
            }
        }
        if rt.is_crd() {
            let types = Registry::crd_types(&new)
                .map_err(|e| ApiError::invalid(&rt.kind, rt, &key.1, "spec", &e.to_string()))?;
            if !ctx.dry_run {
                self.registry.register_crd(&key.1, types);
                self.sync_api_services(events);
            }
        }
        let gr = rt.group_resource();
        if new == *old {
            return Ok(stored.clone());
        }
        if ctx.dry_run {
            return Ok(Arc::new(Obj::new(
                &new,
                extra_fields(&gr.group, &gr.resource),
            )));
        }
        if is_deleting(&new) && finalizers(&new).is_empty() {
            let mut work = Vec::new();
            self.commit(events, &gr, key.clone(), Some(new), EventType::Modified);
            let out = self.remove(events, &gr, &key, &mut work);
            self.run(events, work);
            return out.ok_or_else(|| ApiError::internal("object vanished during update"));
        }
        self.commit(events, &gr, key, Some(new), EventType::Modified)
            .ok_or_else(|| ApiError::internal("object vanished during update"))
    }

    /// Keep one `apiregistration.k8s.io/v1` APIService per served group-version, as the
    /// aggregator's autoregistration does: built-ins from the start (`Local`, always
    /// available), CRD groups while a CRD serves them. Only automanaged ones are touched.
    fn sync_api_services(&mut self, events: &broadcast::Sender<Arc<Event>>) {
        const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";
        let gr = GroupResource {
            group: "apiregistration.k8s.io".into(),
            resource: "apiservices".into(),
        };
        let mut wanted: BTreeMap<String, Value> = BTreeMap::new();
        for (group, version, types) in self.registry.group_versions() {
            let custom = types.iter().all(|t| t.custom);
            let (group_min, version_prio) = if custom { (1000, 100) } else { (18000, 15) };
            let name = format!("{version}.{group}");
            wanted.insert(
                name.clone(),
                json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                       "metadata": {"name": name,
                                    "labels": {AUTOMANAGED: if custom { "true" } else { "onstart" }}},
                       "spec": {"group": group, "version": version,
                                "groupPriorityMinimum": group_min, "versionPriority": version_prio},
                       "status": {"conditions": [{"type": "Available", "status": "True",
                                                  "reason": "Local",
                                                  "message": "Local APIServices are always available"}]}}),
            );
        }
        let present: Vec<(ObjKey, bool)> = self
            .objects
            .get(&gr)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.meta().label(AUTOMANAGED).is_some()))
                    .collect()
            })
            .unwrap_or_default();
        for (key, managed) in &present {
            if *managed && !wanted.contains_key(&key.1) {
                self.commit(events, &gr, key.clone(), None, EventType::Deleted);
            }
        }
        let now = now_rfc3339();
        for (name, mut obj) in wanted {
            let key = (String::new(), name);
            if present.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let meta = meta_mut(&mut obj);
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now));
            self.commit(events, &gr, key, Some(obj), EventType::Added);
        }
    }

    /// A terminating CRD whose custom resources are all gone loses its cleanup finalizer
    /// (and goes, unless other finalizers hold it).
    fn finish_crd(
        &mut self,
        events: &broadcast::Sender<Arc<Event>>,
        name: &str,
        work: &mut Vec<Work>,
    ) {
        let key = (String::new(), name.to_string());
        let Some(crd) = self.get(&crd_gr(), &key) else {
            return;
        };
        if !crd.meta().deleting || !crd.meta().has_finalizer(CRD_CLEANUP) {
            return;
        }
        let Some(parsed) = self.crds.get(name).cloned() else {
            return;
        };
        let Some(cr_gr) = crd_group_resource(&parsed) else {
            return;
        };
        if self.objects.get(&cr_gr).is_some_and(|o| !o.is_empty()) {
            return;
        }
        let mut v = (*parsed).clone();
        if let Some(Value::Array(f)) = v.pointer_mut("/metadata/finalizers") {
            f.retain(|x| x != CRD_CLEANUP);
        }
        let done = finalizers(&v).is_empty();
        self.commit(events, &crd_gr(), key.clone(), Some(v), EventType::Modified);
        if done {
            self.remove(events, &crd_gr(), &key, work);
        }
    }

    fn orphan_dependents(&mut self, events: &broadcast::Sender<Arc<Event>>, uid: &str) {
        let deps: Vec<_> = self
            .owners
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        for (gr, key) in deps {
            if let Some(mut v) = self.get(&gr, &key).and_then(|o| o.value().ok()) {
                if let Some(Value::Array(refs)) = v.pointer_mut("/metadata/ownerReferences") {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                }
                self.commit(events, &gr, key, Some(v), EventType::Modified);
            }
        }
    }

    /// Start deleting one object: mark it (finalizers, foreground, namespaces) or remove it.
    fn mark_or_remove(
        &mut self,
        events: &broadcast::Sender<Arc<Event>>,
        gr: &GroupResource,
        key: &ObjKey,
        foreground: bool,
        work: &mut Vec<Work>,
    ) -> Option<Arc<Obj>> {
        let obj = self.get(gr, key)?;
        let now = now_rfc3339();
        if *gr == namespace_gr() {
            let orig = obj.value().ok()?;
            let mut v = orig.clone();
            meta_mut(&mut v)
                .entry("deletionTimestamp")
                .or_insert(json!(now));
            meta_mut(&mut v).insert("deletionGracePeriodSeconds".into(), json!(0));
            v["status"] = json!({"phase": "Terminating"});
            let out = if v != orig {
                self.commit(events, gr, key.clone(), Some(v), EventType::Modified)
            } else {
                Some(obj)
            };
            let ns = &key.1;
            for (other_gr, objs) in &self.objects {
                for k in objs.keys().filter(|(n, _)| n == ns) {
                    work.push(Work::Delete(other_gr.clone(), k.clone()));
                }
            }
            work.insert(0, Work::CheckNamespace(ns.clone()));
            return out;
        }
        let m = obj.meta();
        // A CRD is deleted through its cleanup finalizer (`Store::finalize_crd`).
        let crd_cleanup = *gr == crd_gr() && !m.deleting;
        if !m.finalizers.is_empty() || foreground || crd_cleanup {
            if m.deleting && !foreground {
                return Some(obj.clone());
            }
            let mut v = obj.value().ok()?;
            if crd_cleanup {
                set_terminating_condition(&mut v, &now);
            }
            let meta = meta_mut(&mut v);
            meta.entry("deletionTimestamp").or_insert(json!(now));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            if crd_cleanup && !m.has_finalizer(CRD_CLEANUP) {
                let list = meta.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(CRD_CLEANUP));
                }
            }
            if foreground && !m.has_finalizer("foregroundDeletion") {
                let list = meta.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!("foregroundDeletion"));
                }
            }
            let out = self.commit(events, gr, key.clone(), Some(v), EventType::Modified);
            let uid = &*obj.meta().uid;
            if foreground && !uid.is_empty() {
                work.insert(0, Work::CheckForeground(uid.to_string()));
                if let Some(deps) = self.owners.get(uid) {
                    for (dgr, dkey) in deps {
                        work.push(Work::Delete(dgr.clone(), dkey.clone()));
                    }
                }
            }
            return out;
        }
        self.remove(events, gr, key, work)
    }

    /// Remove an object for good and queue the consequences.
    fn remove(
        &mut self,
        events: &broadcast::Sender<Arc<Event>>,
        gr: &GroupResource,
        key: &ObjKey,
        work: &mut Vec<Work>,
    ) -> Option<Arc<Obj>> {
        let removed = self.commit(events, gr, key.clone(), None, EventType::Deleted)?;
        if let Some(deps) = self.owners.get(&*removed.meta().uid) {
            for (dgr, dkey) in deps.clone() {
                let orphaned = self.get(&dgr, &dkey).is_some_and(|d| {
                    d.meta()
                        .owners
                        .iter()
                        .all(|o| !self.uids.contains_key(&**o))
                });
                if orphaned {
                    work.push(Work::Delete(dgr, dkey));
                }
            }
        }
        for owner in removed.meta().owners.iter() {
            work.insert(0, Work::CheckForeground(owner.to_string()));
        }
        if let Some(rt) = self.registry.by_group_resource(gr)
            && rt.custom
        {
            work.insert(0, Work::FinishCrd(format!("{}.{}", gr.resource, gr.group)));
        }
        if !key.0.is_empty() {
            work.insert(0, Work::CheckNamespace(key.0.clone()));
        }
        if *gr == crd_gr()
            && let Some(cr_gr) = self.registry.unregister_crd(&key.1)
        {
            if let Some(objs) = self.objects.get(&cr_gr) {
                for k in objs.keys() {
                    work.push(Work::Delete(cr_gr.clone(), k.clone()));
                }
            }
            self.sync_api_services(events);
        }
        Some(removed)
    }

    fn run(&mut self, events: &broadcast::Sender<Arc<Event>>, mut work: Vec<Work>) {
        while let Some(w) = work.pop() {
            match w {
                Work::Delete(gr, key) => {
                    if self.get(&gr, &key).is_some_and(|o| !o.meta().deleting) {
                        self.mark_or_remove(events, &gr, &key, false, &mut work);
                    }
                }
                Work::CheckForeground(uid) => {
                    let Some((gr, key)) = self.uids.get(&uid).cloned() else {
                        continue;
                    };
                    let Some(owner) = self.get(&gr, &key) else {
                        continue;
                    };
                    let waiting = owner.meta().has_finalizer("foregroundDeletion");
                    let has_deps = self.owners.get(&uid).is_some_and(|d| !d.is_empty());
                    if waiting
                        && !has_deps
                        && let Ok(mut v) = owner.value()
                    {
                        if let Some(Value::Array(f)) = v.pointer_mut("/metadata/finalizers") {
                            f.retain(|x| x != "foregroundDeletion");
                        }
                        if finalizers(&v).is_empty() {
                            self.commit(events, &gr, key.clone(), Some(v), EventType::Modified);
                            self.remove(events, &gr, &key, &mut work);
                        } else {
                            self.commit(events, &gr, key, Some(v), EventType::Modified);
                        }
                    }
                }
                Work::FinishCrd(name) => self.finish_crd(events, &name, &mut work),
                Work::CheckNamespace(ns) => {
                    let nkey = (String::new(), ns.clone());
                    let Some(n) = self.get(&namespace_gr(), &nkey) else {
                        continue;
                    };
                    if !n.meta().deleting {
                        continue;
                    }
                    let empty = self.objects.iter().all(|(gr, objs)| {
                        *gr == namespace_gr()
                            || objs
                                .range((ns.clone(), String::new())..)
                                .next()
                                .is_none_or(|((n, _), _)| *n != ns)
                    });
                    if empty {
                        self.remove(events, &namespace_gr(), &nkey, &mut work);
                    }
                }
            }
        }
    }
}

/// Record a non-apply write, honouring `metadata.managedFields` the request itself set (as a
/// real server does): `[{}]` strips them all; another valid list replaces the stored one (the
/// write is then recorded on top of it); absent, empty or unchanged keeps the stored one.
fn record_with_requested(
    rt: &ResourceType,
    old: &Value,
    new: &mut Value,
    requested: Option<Value>,
    w: &fields::Writer<'_>,
) -> ApiResult<()> {
    let stored = old.pointer("/metadata/managedFields");
    match requested {
        Some(Value::Array(items))
            if items.len() == 1 && items[0].as_object().is_some_and(|m| m.is_empty()) =>
        {
            meta_mut(new).remove("managedFields");
            Ok(())
        }
        Some(Value::Array(items))
            if !items.is_empty() && stored != Some(&Value::Array(items.clone())) =>
        {
            for (i, e) in items.iter().enumerate() {
                let ok = e.get("manager").is_some_and(Value::is_string)
                    && e.get("operation")
                        .and_then(Value::as_str)
                        .is_some_and(|o| o == "Apply" || o == "Update");
                if !ok {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        rt,
                        name_of(new),
                        &format!("metadata.managedFields[{i}]"),
                        "each entry needs a manager and an operation (Apply or Update)",
                    ));
                }
            }
            let mut base = old.clone();
            meta_mut(&mut base).insert("managedFields".into(), Value::Array(items));
            fields::record_update(Some(&base), new, w);
            Ok(())
        }
        _ => {
            fields::record_update(Some(old), new, w);
            Ok(())
        }
    }
}

/// What a DELETE did: the object as last stored, and whether it is gone already.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub object: Arc<Obj>,
    pub gone: bool,
}

/// The CRD (parsed) defining custom resource type `rt`.
fn crd_of(inner: &Inner, rt: &ResourceType) -> Option<Arc<Value>> {
    if !rt.custom {
        return None;
    }
    inner
        .crds
        .get(&format!("{}.{}", rt.plural, rt.group))
        .cloned()
}

/// The CRD version entry (`spec.versions[]`) serving custom resource type `rt`.
fn crd_version<'a>(crd: &'a Value, rt: &ResourceType) -> Option<&'a Value> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v["name"] == rt.version.as_str())
}

/// A custom resource under its CRD's structural schema (`structural.rs`): unknown fields
/// pruned (400 with `fieldValidation=Strict`), defaults filled, types/required/enum checked.
fn check_custom(
    rt: &ResourceType,
    schema: Option<&Value>,
    obj: &mut Value,
    ctx: &WriteCtx,
) -> ApiResult<()> {
    let Some(schema) = schema else {
        return Ok(());
    };
    let name = name_of(obj).to_string();
    let pruned = super::structural::apply(schema, obj)
        .map_err(|(path, msg)| ApiError::invalid(&rt.kind, rt, &name, &path, &msg))?;
    super::typed::refuse_unknown(ctx.field_validation, &pruned)?;
    ctx.warn_unknown(&pruned);
    Ok(())
}
