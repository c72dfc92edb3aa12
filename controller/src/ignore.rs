//! `spec.ignoreDifferences`: fields the comparison takes from the live object for the resources
//! a rule names (group, kind, optionally name and namespace), by RFC 6901 `jsonPointers` and
//! `jqPathExpressions` (paths found with jaq, jq's language in Rust). Pure.

use serde_json::Value;

use crate::tracking::ResourceKey;

/// One rule of `ignoreDifferences`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreRule {
    pub group: String,
    pub kind: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub json_pointers: Vec<String>,
    pub jq: Vec<String>,
    /// `managedFieldsManagers`: every field these field managers own live is taken from live.
    pub managers: Vec<String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// Parse `spec.ignoreDifferences`; errors name each bad rule (a missing kind, a pointer that
/// is not RFC 6901, a jq expression that does not compile, `managedFieldsManagers`).
pub fn parse(list: &[Value]) -> Result<Vec<IgnoreRule>, Vec<String>> {
    let mut rules = Vec::new();
    let mut errs = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let at = format!("spec.ignoreDifferences[{i}]");
        let Some(kind) = v
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
        else {
            errs.push(format!("{at}.kind is required"));
            continue;
        };
        let rule = IgnoreRule {
            group: v
                .get("group")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            kind: kind.to_string(),
            name: v.get("name").and_then(Value::as_str).map(str::to_string),
            namespace: v
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string),
            json_pointers: strings(v, "jsonPointers"),
            jq: strings(v, "jqPathExpressions"),
            managers: strings(v, "managedFieldsManagers"),
        };
        if rule.managers.iter().any(|m| m.is_empty()) {
            errs.push(format!(
                "{at}.managedFieldsManagers: a manager name is empty"
            ));
        }
        for p in &rule.json_pointers {
            if !p.is_empty() && !p.starts_with('/') {
                errs.push(format!(
                    "{at}.jsonPointers: {p:?} is not a JSON pointer (RFC 6901)"
                ));
            }
        }
        // Only a syntax error is the rule's fault; a path missing from one object is not.
        for e in &rule.jq {
            if let Err(m) = delete_jq(&Value::Object(Default::default()), e)
                && m.ends_with(INVALID)
            {
                errs.push(format!("{at}.jqPathExpressions: {m}"));
            }
        }
        rules.push(rule);
    }
    if errs.is_empty() {
        Ok(rules)
    } else {
        Err(errs)
    }
}

impl IgnoreRule {
    /// Whether the rule names `key` (group and kind may be `*`/`?` wildcards).
    pub fn matches(&self, key: &ResourceKey) -> bool {
        crate::settings::wildcard(&self.group, &key.group)
            && crate::settings::wildcard(&self.kind, &key.kind)
            && self
                .name
                .as_ref()
                .is_none_or(|n| n.is_empty() || *n == key.name)
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| n.is_empty() || *n == key.namespace)
    }
}

const INVALID: &str = "is not a valid jq path expression";

/// `del(<expression>)` on `obj`, with jaq (jq's language and standard library).
fn delete_jq(obj: &Value, expression: &str) -> Result<Value, String> {
    run_jq(obj, expression, &format!("del({expression})"))
}

/// The paths `expression` selects in `obj` (`[path(<expression>)]`).
fn jq_paths(obj: &Value, expression: &str) -> Result<Vec<Vec<Value>>, String> {
    let v = run_jq(obj, expression, &format!("[path({expression})]"))?;
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// A compiled jq program.
type JqFilter = jaq_core::Filter<jaq_core::data::JustLut<jaq_json::Val>>;

/// Compiled programs by source, per worker thread (jaq's values are not `Send`): a rule is
/// compiled once, not on every comparison. Bounded: cleared when it grows past 512.
const COMPILED_MAX: usize = 512;
thread_local! {
    static COMPILED: std::cell::RefCell<std::collections::HashMap<String, std::rc::Rc<JqFilter>>> =
        Default::default();
}

fn compile_jq(expression: &str, code: &str) -> Result<std::rc::Rc<JqFilter>, String> {
    use jaq_core::Compiler;
    use jaq_core::load::{Arena, File, Loader};
    if let Some(f) = COMPILED.with(|c| c.borrow().get(code).cloned()) {
        return Ok(f);
    }
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(&arena, File { code, path: () })
        .map_err(|_| format!("{expression:?} {INVALID}"))?;
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|_| format!("{expression:?} {INVALID}"))?;
    let filter = std::rc::Rc::new(filter);
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= COMPILED_MAX {
            c.clear();
        }
        c.insert(code.to_string(), filter.clone());
    });
    Ok(filter)
}

fn run_jq(obj: &Value, expression: &str, code: &str) -> Result<Value, String> {
    use jaq_core::{Ctx, Vars, data, unwrap_valr};
    use jaq_json::Val;
    let filter = compile_jq(expression, code)?;
    let bytes = serde_json::to_vec(obj).map_err(|e| e.to_string())?;
    let input = jaq_json::read::parse_single(&bytes).map_err(|e| format!("{e:?}"))?;
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
    let out = filter
        .id
        .run((ctx, input))
        .map(unwrap_valr)
        .next()
        .ok_or_else(|| format!("{expression:?} produced no value"))?
        .map_err(|e| format!("{expression:?}: {e:?}"))?;
    serde_json::from_str(&out.to_string()).map_err(|e| e.to_string())
}

/// The value at a jq path (keys and indices), if any.
fn get_path<'a>(v: &'a Value, path: &[Value]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, p| match p {
        Value::String(k) => cur.get(k),
        Value::Number(n) => cur.get(n.as_u64()? as usize),
        _ => None,
    })
}

/// Set (or, with `None`, remove) the value at a jq path that exists up to its parent.
fn set_path(v: &mut Value, path: &[Value], value: Option<Value>) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parent {
        let next = match p {
            Value::String(k) => cur.get_mut(k.as_str()),
            Value::Number(n) => n.as_u64().and_then(|i| cur.get_mut(i as usize)),
            _ => None,
        };
        let Some(next) = next else {
            return;
        };
        cur = next;
    }
    match (cur, last, value) {
        (Value::Object(m), Value::String(k), Some(x)) => {
            m.insert(k.clone(), x);
        }
        (Value::Object(m), Value::String(k), None) => {
            m.remove(k);
        }
        (Value::Array(a), Value::Number(n), Some(x)) => {
            if let Some(slot) = n.as_u64().and_then(|i| a.get_mut(i as usize)) {
                *slot = x;
            }
        }
        _ => {}
    }
}

fn pointer_path(pointer: &str) -> Vec<Value> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| {
            let t = t.replace("~1", "/").replace("~0", "~");
            match t.parse::<u64>() {
                Ok(i) => Value::from(i),
                Err(_) => Value::String(t),
            }
        })
        .collect()
}

/// `desired` with the fields the rules naming `key` ignore taken from `live` (removed where
/// live has none): what Argo CD compares, and with `RespectIgnoreDifferences` applies, so
/// those fields are never drift and never reverted.
pub fn overlay(
    desired: &Value,
    live: Option<&Value>,
    key: &ResourceKey,
    rules: &[IgnoreRule],
) -> Value {
    let mut out = desired.clone();
    let Some(live) = live else {
        return out;
    };
    for r in rules.iter().filter(|r| r.matches(key)) {
        let mut paths: Vec<Vec<Value>> = r.json_pointers.iter().map(|p| pointer_path(p)).collect();
        for e in &r.jq {
            for source in [&out, live] {
                if let Ok(ps) = jq_paths(source, e) {
                    paths.extend(ps);
                }
            }
        }
        for p in paths {
            set_path(&mut out, &p, get_path(live, &p).cloned());
        }
        if !r.managers.is_empty() {
            for entry in live
                .pointer("/metadata/managedFields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|e| {
                    // `status` is not compared; `scale` (an autoscaler) is the main object's.
                    e.get("subresource").and_then(Value::as_str) != Some("status")
                        && e.get("manager")
                            .and_then(Value::as_str)
                            .is_some_and(|m| r.managers.iter().any(|x| x == m))
                })
            {
                if let Some(Value::Object(fields)) = entry.get("fieldsV1") {
                    take_owned(fields, &mut out, live);
                }
            }
        }
    }
    out
}

/// Copy into `desired` the live value of every field `fields` (a managedFields `fieldsV1`
/// set) names: `f:` keys of maps, `k:` list items by their key fields; `v:` set members and
/// `i:` indices are left alone (sets merge, and indices say nothing stable).
fn take_owned(fields: &serde_json::Map<String, Value>, desired: &mut Value, live: &Value) {
    let leaf = |c: &Value| c.as_object().is_none_or(|m| m.keys().all(|k| k == "."));
    for (k, child) in fields {
        if let Some(name) = k.strip_prefix("f:") {
            let Some(lv) = live.get(name) else { continue };
            let Some(d) = desired.as_object_mut() else {
                continue;
            };
            let sub = child.as_object().filter(|_| !leaf(child));
            match (sub, d.get_mut(name)) {
                // Only the fields the manager owns below: descend (creating the parent), so
                // siblings it does not own stay as Git has them.
                (Some(sub), Some(dv)) if same_shape(dv, lv) => take_owned(sub, dv, lv),
                (Some(sub), None) if lv.is_object() || lv.is_array() => {
                    let mut fresh = if lv.is_object() {
                        Value::Object(Default::default())
                    } else {
                        Value::Array(Vec::new())
                    };
                    take_owned(sub, &mut fresh, lv);
                    d.insert(name.to_string(), fresh);
                }
                _ => {
                    d.insert(name.to_string(), lv.clone());
                }
            }
        } else if let Some(item) = k.strip_prefix("k:") {
            let Ok(Value::Object(item_key)) = serde_json::from_str::<Value>(item) else {
                continue;
            };
            let exact = |e: &&Value| item_key.iter().all(|(f, v)| e.get(f) == Some(v));
            // Git may leave out a key field the server defaults (a port's `protocol`).
            let loose = |e: &&mut Value| {
                item_key
                    .iter()
                    .all(|(f, v)| e.get(f).is_none_or(|x| x == v))
            };
            let Some(lv) = live.as_array().and_then(|a| a.iter().find(exact)) else {
                continue;
            };
            let Some(list) = desired.as_array_mut() else {
                continue;
            };
            match (
                list.iter_mut().find(loose),
                child.as_object().filter(|_| !leaf(child)),
            ) {
                (Some(dv), Some(sub)) => take_owned(sub, dv, lv),
                (Some(dv), None) => *dv = lv.clone(),
                (None, _) => list.push(lv.clone()),
            }
        }
    }
}

fn same_shape(a: &Value, b: &Value) -> bool {
    (a.is_object() && b.is_object()) || (a.is_array() && b.is_array())
}

/// Field managers some rule names: the cluster caches keep these managers' `managedFields`
/// (every other manager's but ours are dropped to save memory).
static KEPT_MANAGERS: std::sync::LazyLock<parking_lot::RwLock<std::collections::BTreeSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// Whether the managedFields entry of `manager` is kept in the caches.
pub fn manager_kept(manager: &str) -> bool {
    KEPT_MANAGERS.read().contains(manager)
}

/// Keep the managers `rules` name from now on (watches started later keep their
/// `managedFields`; `ClusterCache::relist_for_managers` renews older ones).
pub fn keep_managers(rules: &[IgnoreRule]) {
    let missing = {
        let kept = KEPT_MANAGERS.read();
        rules
            .iter()
            .flat_map(|r| &r.managers)
            .any(|m| !kept.contains(m))
    };
    if missing {
        KEPT_MANAGERS
            .write()
            .extend(rules.iter().flat_map(|r| r.managers.iter().cloned()));
    }
}

/// The managers kept now.
pub fn kept_managers() -> std::collections::BTreeSet<String> {
    KEPT_MANAGERS.read().clone()
}

/// Whether any rule names `key`.
pub fn applies(key: &ResourceKey, rules: &[IgnoreRule]) -> bool {
    rules.iter().any(|r| r.matches(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ResourceKey {
        ResourceKey {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: "web".into(),
            name: "web".into(),
        }
    }

    #[test]
    fn ignored_fields_missing_live_are_removed_for_the_named_resources_only() {
        let rules = parse(&[json!({"group": "apps", "kind": "Deployment",
            "jsonPointers": ["/spec/replicas", "/metadata/annotations/a~1b"],
            "jqPathExpressions": [".spec.template.spec.containers[] | select(.name == \"web\").image"]})])
        .expect("parses");
        let obj = json!({"metadata": {"annotations": {"a/b": "x", "keep": "y"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1"}, {"name": "side", "image": "envoy"}]}}}});
        let s = overlay(&obj, Some(&json!({})), &key(), &rules);
        assert_eq!(
            s,
            json!({"metadata": {"annotations": {"keep": "y"}},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "web"}, {"name": "side", "image": "envoy"}]}}}})
        );
        // Another kind is untouched.
        let mut other = key();
        other.kind = "StatefulSet".into();
        assert_eq!(overlay(&obj, Some(&json!({})), &other, &rules), obj);
    }

    #[test]
    fn overlay_takes_the_ignored_fields_from_live() {
        let rules = parse(&[json!({"group": "apps", "kind": "Deployment",
            "jsonPointers": ["/spec/replicas"],
            "jqPathExpressions": [".spec.template.spec.containers[] | select(.name == \"web\").image"]})])
        .expect("parses");
        let desired = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1"}]}}}});
        let live = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:2", "imagePullPolicy": "IfNotPresent"}]}}}});
        assert_eq!(
            overlay(&desired, Some(&live), &key(), &rules),
            json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:2"}]}}}})
        );
    }

    #[test]
    fn bad_rules_are_named() {
        let errs = parse(&[
            json!({"group": "apps"}),
            json!({"kind": "Deployment", "jsonPointers": ["spec.replicas"]}),
            json!({"kind": "Deployment", "jqPathExpressions": [".spec.["]}),
            json!({"kind": "Deployment", "managedFieldsManagers": [""]}),
        ])
        .expect_err("refused");
        assert_eq!(errs.len(), 4, "{errs:?}");
    }

    fn rules_for(manager: &str) -> Vec<IgnoreRule> {
        parse(&[json!({"group": "apps", "kind": "Deployment", "managedFieldsManagers": [manager]})])
            .expect("parses")
    }

    #[test]
    fn fields_a_trusted_manager_owns_are_taken_from_live() {
        let rules = parse(&[json!({"group": "apps", "kind": "Deployment",
            "managedFieldsManagers": ["kube-controller-manager", "sidecar-injector"]})])
        .expect("parses");
        let desired = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1"}]}}}});
        // What a real API server returns: each manager's fields as a fieldsV1 set.
        let live = json!({
            "metadata": {"managedFields": [
                {"manager": "flotilla-controller", "operation": "Apply", "fieldsV1": {"f:spec": {
                    "f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"manager": "sidecar-injector", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {
                    "f:containers": {"k:{\"name\":\"envoy\"}": {".": {}, "f:image": {}, "f:name": {}},
                                     "k:{\"name\":\"web\"}": {"f:env": {}}}}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:replicas": {}}}}]},
            "spec": {"replicas": 7, "template": {"spec": {"containers": [
                {"name": "envoy", "image": "envoy:1"},
                {"name": "web", "image": "nginx:1", "env": [{"name": "MESH", "value": "on"}]}]}}},
            "status": {"replicas": 7}});
        let out = overlay(&desired, Some(&live), &key(), &rules);
        assert_eq!(
            out,
            json!({"spec": {"replicas": 7, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1", "env": [{"name": "MESH", "value": "on"}]},
                {"name": "envoy", "image": "envoy:1"}]}}}})
        );
        // A port Git writes without its defaulted protocol is the same item, not a second one;
        // a parent Git lacks gets only the owned field, not its siblings.
        let desired = json!({"spec": {"ports": [{"port": 80}]}});
        let live = json!({"metadata": {"managedFields": [{"manager": "kube-controller-manager",
                "operation": "Update", "fieldsV1": {"f:spec": {
                    "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {"f:nodePort": {}}},
                    "f:template": {"f:metadata": {"f:annotations": {"f:stamp": {}}}}}}}]},
            "spec": {"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}],
                     "template": {"metadata": {"annotations": {"stamp": "1", "other": "x"}}}}});
        let out = overlay(
            &desired,
            Some(&live),
            &key(),
            &rules_for("kube-controller-manager"),
        );
        assert_eq!(
            out,
            json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}],
                "template": {"metadata": {"annotations": {"stamp": "1"}}}}})
        );
        // Not a trusted manager: nothing taken.
        let plain = parse(&[json!({"kind": "Deployment", "managedFieldsManagers": ["someone"]})])
            .expect("parses");
        assert_eq!(overlay(&desired, Some(&live), &key(), &plain), desired);
        keep_managers(&rules);
        assert!(
            manager_kept("sidecar-injector") && kept_managers().contains("kube-controller-manager")
        );
    }
}
