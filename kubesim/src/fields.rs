//! Field ownership for server-side apply: field sets of objects, `managedFields` in the
//! `FieldsV1` wire format, conflict detection, removal of dropped fields and the apply merge.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::schema::{ListKind, item_key, list_kind};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// `f:name` — a map field.
    Field(String),
    /// `k:{...}` — an associative-list item, by its canonical key JSON.
    Key(String),
    /// `v:...` — a set-list item, by its JSON value.
    Value(String),
}

pub type Path = Vec<Element>;

/// A set of owned paths (leaves and list-item markers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(pub BTreeSet<Path>);

/// Which part of an object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything but `status` (kinds with a status subresource, main endpoint).
    Main,
    /// Only `status` (the `/status` subresource).
    Status,
    /// Everything (kinds without a status subresource).
    All,
}

/// `metadata` fields the server owns; never part of a field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

impl FieldSet {
    /// All owned-able paths of `obj` within `scope`.
    pub fn of(obj: &Value, custom: bool, scope: Scope) -> Self {
        let mut out = BTreeSet::new();
        let Some(map) = obj.as_object() else {
            return Self(out);
        };
        let mut path = Vec::new();
        for (k, v) in map {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            let in_scope = match scope {
                Scope::Main => k != "status",
                Scope::Status => k == "status",
                Scope::All => true,
            };
            if !in_scope {
                continue;
            }
            path.push(Element::Field(k.clone()));
            if k == "metadata" {
                if let Some(meta) = v.as_object() {
                    for (mk, mv) in meta {
                        if SERVER_METADATA.contains(&mk.as_str()) {
                            continue;
                        }
                        path.push(Element::Field(mk.clone()));
                        walk(mv, mk, &mut path, custom, &mut out);
                        path.pop();
                    }
                }
            } else {
                walk(v, k, &mut path, custom, &mut out);
            }
            path.pop();
        }
        Self(out)
    }

    pub fn contains(&self, p: &Path) -> bool {
        self.0.contains(p)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Serialize as a `FieldsV1` tree.
    pub fn to_fields_v1(&self) -> Value {
        #[derive(Default)]
        struct Node {
            member: bool,
            children: BTreeMap<String, Node>,
        }
        fn emit(n: &Node) -> Value {
            let mut m = Map::new();
            if n.member && !n.children.is_empty() {
                m.insert(".".into(), json!({}));
            }
            for (k, c) in &n.children {
                m.insert(k.clone(), emit(c));
            }
            Value::Object(m)
        }
        let mut root = Node::default();
        for p in &self.0 {
            let mut node = &mut root;
            for el in p {
                node = node.children.entry(encode(el)).or_default();
            }
            node.member = true;
        }
        emit(&root)
    }

    /// Parse a `FieldsV1` tree (unknown prefixes are skipped).
    pub fn from_fields_v1(v: &Value) -> Self {
        fn walk_tree(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
            let Some(m) = v.as_object() else { return };
            if m.is_empty() && !path.is_empty() {
                out.insert(path.clone());
                return;
            }
            for (k, child) in m {
                if k == "." {
                    out.insert(path.clone());
                    continue;
                }
                if let Some(el) = decode(k) {
                    path.push(el);
                    walk_tree(child, path, out);
                    path.pop();
                }
            }
        }
        let mut out = BTreeSet::new();
        walk_tree(v, &mut Vec::new(), &mut out);
        Self(out)
    }
}

fn encode(el: &Element) -> String {
    match el {
        Element::Field(f) => format!("f:{f}"),
        Element::Key(k) => format!("k:{k}"),
        Element::Value(v) => format!("v:{v}"),
    }
}

fn decode(s: &str) -> Option<Element> {
    let (prefix, rest) = s.split_at_checked(2)?;
    match prefix {
        "f:" => Some(Element::Field(rest.into())),
        "k:" => Some(Element::Key(rest.into())),
        "v:" => Some(Element::Value(rest.into())),
        _ => None,
    }
}

fn walk(v: &Value, field: &str, path: &mut Path, custom: bool, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(Element::Field(k.clone()));
                walk(child, k, path, custom, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_kind(custom, field, items) {
            ListKind::Map(keys) => {
                let keyed: Option<Vec<_>> = items.iter().map(|i| item_key(i, keys)).collect();
                let Some(keyed) = keyed else {
                    out.insert(path.clone());
                    return;
                };
                for (item, k) in items.iter().zip(keyed) {
                    path.push(Element::Key(Value::Object(k).to_string()));
                    out.insert(path.clone());
                    if let Some(m) = item.as_object() {
                        for (ik, iv) in m {
                            path.push(Element::Field(ik.clone()));
                            walk(iv, ik, path, custom, out);
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(Element::Value(item.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Atomic => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

fn key_matches(item: &Value, key_json: &str) -> bool {
    let Ok(Value::Object(want)) = serde_json::from_str::<Value>(key_json) else {
        return false;
    };
    let Some(obj) = item.as_object() else {
        return false;
    };
    want.iter().all(|(k, v)| match obj.get(k) {
        Some(actual) => actual == v,
        // A defaulted key field (protocol) the item leaves out.
        None => k == "protocol" && v == "TCP",
    })
}

fn value_is(item: &Value, encoded: &str) -> bool {
    serde_json::from_str::<Value>(encoded).is_ok_and(|v| v == *item)
}

/// The value at `path`, if present.
pub fn get<'a>(obj: &'a Value, path: &[Element]) -> Option<&'a Value> {
    let mut cur = obj;
    for el in path {
        cur = match el {
            Element::Field(f) => cur.as_object()?.get(f)?,
            Element::Key(k) => cur.as_array()?.iter().find(|i| key_matches(i, k))?,
            Element::Value(v) => cur.as_array()?.iter().find(|i| value_is(i, v))?,
        };
    }
    Some(cur)
}

/// Remove the value at `path` (a no-op when absent).
pub fn remove(obj: &mut Value, path: &[Element]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for el in parent_path {
        let next = match el {
            Element::Field(f) => cur.as_object_mut().and_then(|m| m.get_mut(f)),
            Element::Key(k) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| key_matches(i, k))),
            Element::Value(v) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| value_is(i, v))),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        Element::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        Element::Key(k) => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| !key_matches(i, k));
            }
        }
        Element::Value(v) => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| !value_is(i, v));
            }
        }
    }
}

/// `.spec.containers[name="web"].image`, as conflict messages print paths.
pub fn display(path: &[Element]) -> String {
    let mut s = String::new();
    for el in path {
        match el {
            Element::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Element::Key(k) => {
                let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            Element::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

/// Merge an applied configuration into the live object: maps recursively, associative lists
/// by key, set lists by union, everything else replaced. `null` removes a field.
pub fn merge_applied(live: &mut Value, applied: &Value, field: &str, custom: bool) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                if av.is_null() {
                    l.remove(k);
                    continue;
                }
                match l.get_mut(k) {
                    Some(lv) => merge_applied(lv, av, k, custom),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => match list_kind(custom, field, a) {
            ListKind::Map(keys) => {
                let mut merged = Vec::with_capacity(a.len().max(l.len()));
                let mut rest: Vec<Value> = std::mem::take(l);
                for item in a {
                    let k = item_key(item, keys);
                    let pos = k.as_ref().and_then(|k| {
                        rest.iter()
                            .position(|li| item_key(li, keys).as_ref() == Some(k))
                    });
                    match pos {
                        Some(p) => {
                            let mut li = rest.remove(p);
                            merge_applied(&mut li, item, field, custom);
                            merged.push(li);
                        }
                        None => merged.push(item.clone()),
                    }
                }
                merged.extend(rest);
                *l = merged;
            }
            ListKind::Set => {
                for item in a {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            ListKind::Atomic => *l = a.clone(),
        },
        (live, applied) => *live = applied.clone(),
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn same_owner(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

/// Read `metadata.managedFields`.
pub fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    let Some(entries) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            Some(ManagedEntry {
                manager: e.get("manager")?.as_str()?.to_string(),
                operation: e.get("operation")?.as_str()?.to_string(),
                api_version: e
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                time: e
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                fields: e
                    .get("fieldsV1")
                    .map(FieldSet::from_fields_v1)
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Write `metadata.managedFields` (entries with no fields are dropped, like the real server).
pub fn write_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": e.fields.to_fields_v1(),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            // A client-written entry may carry no time; a real server then has none either.
            if e.time.is_empty()
                && let Some(m) = v.as_object_mut()
            {
                m.remove("time");
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Who is writing, for ownership bookkeeping.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub time: &'a str,
    pub subresource: Option<&'a str>,
    pub custom: bool,
    pub scope: Scope,
}

/// Remove what manager `idx` no longer applies (`dropped`) and nobody else owns, the way
/// structured-merge-diff does: a list item whose marker was dropped goes whole (key fields and
/// all) unless another manager owns something inside it; a kept item keeps its key fields.
fn remove_dropped(
    obj: &mut Value,
    dropped: &[Path],
    managed: &[ManagedEntry],
    idx: usize,
    applied: &FieldSet,
) {
    let others_own_under = |p: &Path| {
        managed
            .iter()
            .enumerate()
            .any(|(j, e)| j != idx && e.fields.0.iter().any(|q| q.starts_with(p)))
            || applied
                .0
                .iter()
                .any(|q| q.len() > p.len() && q.starts_with(p))
    };
    let mut gone: Vec<Path> = Vec::new();
    // Items first, shallowest first: removing an item takes its fields (and nested items).
    for p in dropped {
        if !matches!(p.last(), Some(Element::Key(_) | Element::Value(_))) {
            continue;
        }
        if gone.iter().any(|g| p.starts_with(g)) || others_own_under(p) {
            continue;
        }
        remove(obj, p);
        gone.push(p.clone());
    }
    // Then leaf fields, deepest first, except under removed items and the key fields of items
    // that stay (an item is identified by them).
    for p in dropped.iter().rev() {
        if matches!(p.last(), Some(Element::Key(_) | Element::Value(_))) {
            continue;
        }
        if gone.iter().any(|g| p.starts_with(g)) {
            continue;
        }
        if let (Some(Element::Field(f)), Some(Element::Key(k))) =
            (p.last(), p.len().checked_sub(2).and_then(|i| p.get(i)))
            && serde_json::from_str::<Map<String, Value>>(k).is_ok_and(|m| m.contains_key(f))
        {
            continue;
        }
        let owned_elsewhere = managed
            .iter()
            .enumerate()
            .any(|(j, e)| j != idx && e.fields.contains(p));
        if !owned_elsewhere {
            remove(obj, p);
        }
    }
}

/// An apply refused for conflicts: `(manager, apiVersion, path)`.
pub type Conflicts = Vec<(String, String, String)>;

/// Server-side apply of `applied` onto `live` (`None` = create). Returns the merged object with
/// updated `managedFields`, or the conflicts when `force` is off.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    w: &Writer<'_>,
    force: bool,
) -> Result<Value, Conflicts> {
    let new_set = FieldSet::of(applied, w.custom, w.scope);
    let mut obj = live.cloned().unwrap_or_else(|| json!({}));
    let mut managed = read_managed(&obj);

    // Conflicts: fields someone else owns that this apply would change.
    let mut conflicts: Vec<(usize, Path)> = Vec::new();
    for (i, e) in managed.iter().enumerate() {
        if e.same_owner(w.manager, "Apply", w.subresource) {
            continue;
        }
        for p in new_set.0.intersection(&e.fields.0) {
            if matches!(p.last(), Some(Element::Key(_) | Element::Value(_))) {
                continue;
            }
            if get(&obj, p) != get(applied, p) {
                conflicts.push((i, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflicts
                .into_iter()
                .map(|(i, p)| {
                    (
                        managed[i].manager.clone(),
                        managed[i].api_version.clone(),
                        display(&p),
                    )
                })
                .collect());
        }
        for (i, p) in &conflicts {
            managed[*i].fields.0.remove(p);
        }
    }

    // Fields this manager applied before but no longer does, and nobody else owns: remove.
    let previous = managed
        .iter()
        .position(|e| e.same_owner(w.manager, "Apply", w.subresource));
    if let Some(idx) = previous {
        let dropped: Vec<Path> = managed[idx]
            .fields
            .0
            .difference(&new_set.0)
            .cloned()
            .collect();
        remove_dropped(&mut obj, &dropped, &managed, idx, &new_set);
    }

    let mut applied_scoped = applied.clone();
    if let Some(m) = applied_scoped.as_object_mut() {
        match w.scope {
            Scope::Main => {
                m.remove("status");
            }
            Scope::Status => m.retain(|k, _| k == "status" || k == "metadata"),
            Scope::All => {}
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            meta.remove("resourceVersion");
            if w.scope == Scope::Status {
                meta.retain(|k, _| k == "name" || k == "namespace");
            }
        }
    }
    merge_applied(&mut obj, &applied_scoped, "", w.custom);

    match previous {
        Some(idx) => {
            managed[idx].fields = new_set;
            managed[idx].time = w.time.to_string();
            managed[idx].api_version = w.api_version.to_string();
        }
        None => managed.push(ManagedEntry {
            manager: w.manager.to_string(),
            operation: "Apply".into(),
            api_version: w.api_version.to_string(),
            time: w.time.to_string(),
            subresource: w.subresource.map(str::to_string),
            fields: new_set,
        }),
    }
    prune_missing(&obj, &mut managed);
    write_managed(&mut obj, &managed);
    Ok(obj)
}

/// Record a non-apply write (create, update, patch): the writer takes the fields it changed,
/// others lose them, and paths that no longer exist are dropped. `old` is `None` on create.
pub fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer<'_>) {
    let mut managed = old.map(read_managed).unwrap_or_default();
    let new_set = FieldSet::of(new, w.custom, w.scope);
    let changed: BTreeSet<Path> = new_set
        .0
        .iter()
        .filter(|p| match old {
            None => true,
            Some(o) => get(o, p) != get(new, p),
        })
        .filter(|p| {
            // A list item marker changes only when the item is new.
            !matches!(p.last(), Some(Element::Key(_) | Element::Value(_)))
                || old.is_none_or(|o| get(o, p).is_none())
        })
        .cloned()
        .collect();
    if !changed.is_empty() {
        for e in managed.iter_mut() {
            if !e.same_owner(w.manager, "Update", w.subresource) {
                e.fields.0.retain(|p| !changed.contains(p));
            }
        }
        match managed
            .iter_mut()
            .find(|e| e.same_owner(w.manager, "Update", w.subresource))
        {
            Some(e) => {
                e.fields.0.extend(changed);
                e.time = w.time.to_string();
                e.api_version = w.api_version.to_string();
            }
            None => managed.push(ManagedEntry {
                manager: w.manager.to_string(),
                operation: "Update".into(),
                api_version: w.api_version.to_string(),
                time: w.time.to_string(),
                subresource: w.subresource.map(str::to_string),
                fields: FieldSet(changed),
            }),
        }
    }
    prune_missing(new, &mut managed);
    write_managed(new, &managed);
}

fn prune_missing(obj: &Value, managed: &mut [ManagedEntry]) {
    for e in managed.iter_mut() {
        e.fields.0.retain(|p| get(obj, p).is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                   {"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}}})
    }

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "apps/v1",
            time: "2026-01-01T00:00:00Z",
            subresource: None,
            custom: false,
            scope: Scope::Main,
        }
    }

    #[test]
    fn fields_v1_round_trips() {
        let set = FieldSet::of(&mk_deploy(1, "nginx"), false, Scope::Main);
        let wire = set.to_fields_v1();
        assert!(
            wire.pointer("/f:spec/f:template/f:spec/f:containers/k:{\"name\":\"web\"}/.")
                .is_some(),
            "{wire}"
        );
        assert_eq!(FieldSet::from_fields_v1(&wire), set);
    }

    #[test]
    fn apply_creates_and_records_owner() {
        let obj = apply(None, &mk_deploy(2, "nginx"), &writer("a"), false).expect("applies");
        let managed = read_managed(&obj);
        assert_eq!(managed.len(), 1);
        assert_eq!(managed[0].operation, "Apply");
        assert!(managed[0].fields.contains(&vec![
            Element::Field("spec".into()),
            Element::Field("replicas".into())
        ]));
    }

    #[test]
    fn apply_conflicts_with_other_manager_unless_forced() {
        let obj = apply(None, &mk_deploy(2, "nginx"), &writer("a"), false).expect("applies");
        let err = apply(Some(&obj), &mk_deploy(3, "nginx"), &writer("b"), false)
            .expect_err("conflict on replicas");
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].0, "a");
        assert_eq!(err[0].2, ".spec.replicas");
        let forced = apply(Some(&obj), &mk_deploy(3, "nginx"), &writer("b"), true).expect("force");
        assert_eq!(forced["spec"]["replicas"], 3);
        let a = read_managed(&forced)
            .into_iter()
            .find(|e| e.manager == "a")
            .expect("a keeps other fields");
        assert!(!a.fields.contains(&vec![
            Element::Field("spec".into()),
            Element::Field("replicas".into())
        ]));
    }

    #[test]
    fn same_value_is_shared_not_conflicting() {
        let obj = apply(None, &mk_deploy(2, "nginx"), &writer("a"), false).expect("applies");
        let shared =
            apply(Some(&obj), &mk_deploy(2, "nginx"), &writer("b"), false).expect("no conflict");
        assert_eq!(read_managed(&shared).len(), 2);
    }

    #[test]
    fn dropped_fields_are_removed_unless_owned_elsewhere() {
        let obj = apply(None, &mk_deploy(2, "nginx"), &writer("a"), false).expect("applies");
        let mut without_labels = mk_deploy(2, "nginx");
        without_labels["metadata"]
            .as_object_mut()
            .expect("meta")
            .remove("labels");
        let after = apply(Some(&obj), &without_labels, &writer("a"), false).expect("applies");
        assert!(after.pointer("/metadata/labels/app").is_none(), "{after}");

        // Co-owned by b: survives a's removal.
        let shared = apply(Some(&obj), &mk_deploy(2, "nginx"), &writer("b"), false).expect("b");
        let after = apply(Some(&shared), &without_labels, &writer("a"), false).expect("a");
        assert_eq!(after.pointer("/metadata/labels/app"), Some(&json!("web")));
    }

    #[test]
    fn update_takes_ownership_of_changed_fields() {
        let obj = apply(None, &mk_deploy(2, "nginx"), &writer("a"), false).expect("applies");
        let mut new = obj.clone();
        new["spec"]["replicas"] = json!(5);
        let w = Writer {
            manager: "kubectl-edit",
            ..writer("x")
        };
        record_update(Some(&obj), &mut new, &w);
        let managed = read_managed(&new);
        let editor = managed
            .iter()
            .find(|e| e.manager == "kubectl-edit")
            .expect("editor");
        assert_eq!(editor.operation, "Update");
        assert_eq!(editor.fields.0.len(), 1);
        // Now an apply by a that changes replicas conflicts with the editor.
        let err = apply(Some(&new), &mk_deploy(2, "nginx"), &writer("a"), false).expect_err("c");
        assert_eq!(err[0].0, "kubectl-edit");
    }

    #[test]
    fn apply_merges_containers_by_name() {
        let mut live = mk_deploy(1, "nginx");
        merge_applied(
            &mut live,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "b"}]}}}}),
            "",
            false,
        );
        let cs = live
            .pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .expect("containers");
        assert_eq!(cs.len(), 2);
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn forced_field_survives_previous_owner_dropping_it() {
        let w = |m| Writer {
            manager: m,
            api_version: "apps/v1",
            time: "t",
            subresource: None,
            custom: false,
            scope: Scope::Main,
        };
        let a1 = json!({"metadata": {"name": "x", "labels": {"extra": "yes"}}, "spec": {"replicas": 2, "paused": false}});
        let obj = apply(None, &a1, &w("a"), false).expect("a");
        let b = json!({"metadata": {"name": "x"}, "spec": {"replicas": 5}});
        let obj = apply(Some(&obj), &b, &w("b"), true).expect("b");
        eprintln!("{}", obj["metadata"]["managedFields"]);
        let a2 = json!({"metadata": {"name": "x"}, "spec": {"paused": false}});
        let obj = apply(Some(&obj), &a2, &w("a"), false).expect("a2");
        assert_eq!(obj["spec"]["replicas"], 5, "{obj}");
        assert!(obj.pointer("/metadata/labels/extra").is_none(), "{obj}");
    }
}
