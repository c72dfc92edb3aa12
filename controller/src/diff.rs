//! Desired-vs-live comparison for server-side apply: every field Git sets must hold the same
//! value live (server-populated and defaulted fields are ignored), and fields our field manager
//! applied before but Git no longer sets count as drift. Pure: two objects in, differences out.

use serde_json::{Map, Value};

use crate::normalize;

/// Where desired and live disagree (`.spec.replicas`, `.metadata.labels.app`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub differences: Vec<String>,
}

impl Diff {
    pub fn in_sync(&self) -> bool {
        self.differences.is_empty()
    }
}

/// How to compare one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiffOptions {
    /// The object's API group is kube-apiserver's own (`normalize::is_builtin_group`): zero
    /// values Git sets and the server dropped (`omitempty`) are not drift.
    pub builtin_group: bool,
    /// A ClusterRole with an `aggregationRule` has its `rules` filled by the aggregation
    /// controller: do not compare them (Argo CD's `resource.compareoptions.ignoreAggregatedRoles`).
    pub ignore_aggregated_roles: bool,
    /// Compare top-level `status` too (Argo CD's `ignoreResourceStatusField: none`).
    pub compare_status: bool,
    /// Quantities and int-or-strings are compared by value where a field is one: built-in
    /// kinds, and custom kinds `knownTypeFields` says embed Kubernetes types.
    pub typed_fields: bool,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            builtin_group: true,
            ignore_aggregated_roles: false,
            compare_status: false,
            typed_fields: true,
        }
    }
}

/// Keys of `metadata` that Git may set and we therefore compare.
const COMPARED_METADATA: &[&str] = &["labels", "annotations"];

/// Compare `desired` (from Git) with `live`; `None` live is one difference (missing).
/// `manager` is our server-side-apply field manager.
pub fn diff(desired: &Value, live: Option<&Value>, manager: &str) -> Diff {
    diff_with(desired, live, manager, &DiffOptions::default())
}

/// [`diff`] with explicit [`DiffOptions`].
pub fn diff_with(desired: &Value, live: Option<&Value>, manager: &str, opts: &DiffOptions) -> Diff {
    let Some(live) = live else {
        return Diff {
            differences: vec!["(missing)".into()],
        };
    };
    // The server keeps a Secret's `stringData` only as `data`.
    let merged = normalize::secret_string_data(desired);
    let compared = merged.as_ref().unwrap_or(desired);
    let skip_rules = opts.ignore_aggregated_roles && is_aggregated_role(desired);
    let mut cmp = Comparer {
        builtin_group: opts.builtin_group,
        typed: opts.typed_fields,
        out: Vec::new(),
    };
    if let (Some(d), Some(l)) = (compared.as_object(), live.as_object()) {
        for (k, dv) in d {
            let path = Path::root(k);
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "status" if !opts.compare_status => {}
                "rules" if skip_rules => {}
                "metadata" => {
                    for mk in COMPARED_METADATA {
                        if let Some(dm) = dv.get(*mk) {
                            let live_meta = l.get("metadata").and_then(|m| m.get(*mk));
                            cmp.subset(dm, live_meta, &path.child(Seg::Key(mk)));
                        }
                    }
                }
                _ => cmp.subset(dv, l.get(k), &path),
            }
        }
    }
    let mut out = cmp.out;
    let skipped: &[&str] = if skip_rules { &["rules"] } else { &[] };
    let ownership = merged.as_ref().map(|m| with_string_data(m, desired));
    stale_owned(
        ownership.as_ref().unwrap_or(desired),
        live,
        manager,
        skipped,
        &mut out,
    );
    Diff { differences: out }
}

/// `live` seen through `desired`'s shape: the fields Git sets, holding live's values where they
/// differ and desired's where they are equal once normalized (`1000m` against `1` keeps
/// `1000m`), so a text diff of `desired` against it shows exactly the drift, nothing else.
pub fn project_live(desired: &Value, live: &Value, opts: &DiffOptions) -> Value {
    let merged = normalize::secret_string_data(desired);
    let compared = merged.as_ref().unwrap_or(desired);
    let skip_rules = opts.ignore_aggregated_roles && is_aggregated_role(desired);
    let mut out = Map::new();
    if let (Some(d), Some(l)) = (compared.as_object(), live.as_object()) {
        for (k, dv) in d {
            let path = Path::root(k);
            let projected = match k.as_str() {
                "apiVersion" | "kind" => Some(dv.clone()),
                "status" if !opts.compare_status => Some(dv.clone()),
                "rules" if skip_rules => Some(dv.clone()),
                "metadata" => {
                    let mut meta = dv.as_object().cloned().unwrap_or_default();
                    for mk in COMPARED_METADATA {
                        if let Some(dm) = dv.get(*mk) {
                            let lm = l.get("metadata").and_then(|m| m.get(*mk));
                            match project(dm, lm, &path.child(Seg::Key(mk)), opts) {
                                Some(v) => meta.insert(mk.to_string(), v),
                                None => meta.remove(*mk),
                            };
                        }
                    }
                    Some(Value::Object(meta))
                }
                _ => project(dv, l.get(k), &path, opts),
            };
            if let Some(v) = projected {
                out.insert(k.clone(), v);
            }
        }
    }
    Value::Object(out)
}

fn project(
    desired: &Value,
    live: Option<&Value>,
    path: &Path,
    opts: &DiffOptions,
) -> Option<Value> {
    let Some(live) = live.filter(|l| !l.is_null()) else {
        return normalize::absent_equivalent(desired, path.key(), opts.builtin_group)
            .then(|| desired.clone());
    };
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => Some(Value::Object(
            d.iter()
                .filter_map(|(k, dv)| {
                    project(dv, l.get(k), &path.child(Seg::Key(k)), opts).map(|v| (k.clone(), v))
                })
                .collect(),
        )),
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => Some(Value::Array(
            d.iter()
                .zip(l)
                .enumerate()
                .map(|(i, (dv, lv))| {
                    project(dv, Some(lv), &path.child(Seg::Index(i)), opts).unwrap_or(Value::Null)
                })
                .collect(),
        )),
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
            Some(live.clone())
        }
        (d, l) if scalars_equal(d, l, path, opts.typed_fields) => Some(d.clone()),
        _ => Some(live.clone()),
    }
}

/// The merged Secret with Git's `stringData` kept too: our manager may own either form.
fn with_string_data(merged: &Value, desired: &Value) -> Value {
    let mut view = merged.clone();
    if let (Some(o), Some(strings)) = (view.as_object_mut(), desired.get("stringData")) {
        o.insert("stringData".into(), strings.clone());
    }
    view
}

/// A ClusterRole whose `rules` the aggregation controller owns.
fn is_aggregated_role(obj: &Value) -> bool {
    obj.get("kind").and_then(Value::as_str) == Some("ClusterRole")
        && obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("rbac.authorization.k8s.io/"))
        && obj.get("aggregationRule").is_some_and(Value::is_object)
}

/// One step of a field path.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A field path kept on the stack while walking and rendered (`.spec.ports[0].port`) only for
/// a difference, so that walking equal objects allocates nothing.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

impl<'a> Path<'a> {
    fn root(key: &'a str) -> Self {
        Path {
            parent: None,
            seg: Seg::Key(key),
        }
    }

    fn child(&'a self, seg: Seg<'a>) -> Path<'a> {
        Path {
            parent: Some(self),
            seg,
        }
    }

    fn key(&self) -> Option<&'a str> {
        match self.seg {
            Seg::Key(k) => Some(k),
            Seg::Index(_) => None,
        }
    }

    fn parent_key(&self) -> Option<&'a str> {
        self.parent.and_then(Path::key)
    }

    fn render(&self) -> String {
        let mut s = self.parent.map(Path::render).unwrap_or_default();
        match self.seg {
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
        s
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Scalars equal as the API server would store them: quantities and int-or-strings by value
/// where the field is one, numbers by value everywhere.
fn scalars_equal(d: &Value, l: &Value, path: &Path, typed: bool) -> bool {
    if d == l {
        return true;
    }
    if !typed {
        return numbers_equal(d, l);
    }
    let key = path.key();
    (normalize::is_quantity_field(key, path.parent_key()) && normalize::quantity_eq(d, l))
        || (key.is_some_and(normalize::is_int_or_string_field) && normalize::int_or_string_eq(d, l))
        || numbers_equal(d, l)
}

struct Comparer {
    builtin_group: bool,
    typed: bool,
    out: Vec<String>,
}

impl Comparer {
    /// `desired` must be contained in `live`: maps by key, lists element by element (same
    /// length), scalars equal; a desired value equivalent to absence matches a missing one.
    fn subset(&mut self, desired: &Value, live: Option<&Value>, path: &Path) {
        let Some(live) = live.filter(|l| !l.is_null()) else {
            if !normalize::absent_equivalent(desired, path.key(), self.builtin_group) {
                self.out.push(path.render());
            }
            return;
        };
        match (desired, live) {
            (Value::Object(d), Value::Object(l)) => {
                for (k, dv) in d {
                    self.subset(dv, l.get(k), &path.child(Seg::Key(k)));
                }
            }
            (Value::Array(d), Value::Array(l)) => {
                if d.len() != l.len() {
                    self.out.push(path.render());
                    return;
                }
                for (i, (dv, lv)) in d.iter().zip(l).enumerate() {
                    self.subset(dv, Some(lv), &path.child(Seg::Index(i)));
                }
            }
            (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
                self.out.push(path.render());
            }
            (d, l) if scalars_equal(d, l, path, self.typed) => {}
            _ => self.out.push(path.render()),
        }
    }
}

/// Fields our manager owns (by `managedFields`, operation Apply) that `desired` no longer sets;
/// top-level fields in `skipped` are not ours to judge.
fn stale_owned(
    desired: &Value,
    live: &Value,
    manager: &str,
    skipped: &[&str],
    out: &mut Vec<String>,
) {
    let Some(entries) = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return;
    };
    for e in entries {
        if e.get("manager").and_then(Value::as_str) != Some(manager)
            || e.get("operation").and_then(Value::as_str) != Some("Apply")
            || e.get("subresource").is_some()
        {
            continue;
        }
        if let Some(Value::Object(fields)) = e.get("fieldsV1") {
            for (name, child, dv) in owned_fields(fields, desired) {
                if !skipped.contains(&name) {
                    walk_owned(child, dv, &Path::root(name), out);
                }
            }
        }
    }
}

/// The named fields (`f:name`) of a `fieldsV1` map, with their desired values. List items
/// (`k:`/`v:`) and markers (`.`) are compared through their parent list.
fn owned_fields<'a>(
    fields: &'a Map<String, Value>,
    desired: &'a Value,
) -> impl Iterator<Item = (&'a str, &'a Value, Option<&'a Value>)> {
    fields.iter().filter_map(move |(k, child)| {
        let name = k.strip_prefix("f:")?;
        Some((name, child, desired.get(name)))
    })
}

fn walk_owned(child: &Value, desired: Option<&Value>, path: &Path, out: &mut Vec<String>) {
    let Some(dv) = desired else {
        out.push(path.render());
        return;
    };
    if let (Value::Object(sub), true) = (child, dv.is_object()) {
        for (name, grandchild, d) in owned_fields(sub, dv) {
            walk_owned(grandchild, d, &path.child(Seg::Key(name)), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_desired() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}})
    }

    fn mk_live() -> Value {
        // What the server returns: defaults, server metadata, status, ownership.
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "uid": "u", "resourceVersion": "7", "generation": 1,
                            "labels": {"app": "web"},
                            "managedFields": [{"manager": "flotilla", "operation": "Apply",
                                "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}},
                                             "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}}}}]},
               "spec": {"replicas": 2, "revisionHistoryLimit": 10,
                        "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1", "imagePullPolicy": "IfNotPresent"}],
                                              "restartPolicy": "Always"}}},
               "status": {"availableReplicas": 2}})
    }

    #[test]
    fn live_projected_on_desired_shows_only_the_drift() {
        let mut desired = mk_desired();
        desired["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"limits": {"cpu": "1000m"}});
        let mut live = mk_live();
        live["spec"]["replicas"] = json!(5);
        live["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"limits": {"cpu": "1"}});
        let p = project_live(&desired, &live, &DiffOptions::default());
        let mut expect = desired.clone();
        expect["spec"]["replicas"] = json!(5);
        assert_eq!(p, expect, "defaults and equal quantities are not shown");
        let text = normalize::unified_diff(&desired, &p);
        assert!(
            text.contains("-  replicas: 5") && text.contains("+  replicas: 2"),
            "{text}"
        );
        assert!(!text.contains("cpu"), "{text}");
    }

    #[test]
    fn server_populated_fields_are_ignored() {
        assert!(diff(&mk_desired(), Some(&mk_live()), "flotilla").in_sync());
    }

    #[test]
    fn changed_values_and_list_lengths_differ() {
        let mut live = mk_live();
        live["spec"]["replicas"] = json!(5);
        assert_eq!(
            diff(&mk_desired(), Some(&live), "flotilla").differences,
            [".spec.replicas"]
        );
        let mut desired = mk_desired();
        desired["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert_eq!(
            diff(&desired, Some(&mk_live()), "flotilla").differences,
            [".spec.template.spec.containers[0].image"]
        );
        desired["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
        assert!(!diff(&desired, Some(&mk_live()), "flotilla").in_sync());
    }

    #[test]
    fn field_removed_from_git_but_still_owned_is_drift() {
        let mut desired = mk_desired();
        desired["metadata"]["labels"] = json!({});
        let d = diff(&desired, Some(&mk_live()), "flotilla");
        assert_eq!(d.differences, [".metadata.labels.app"]);
        // Another manager's field is not ours to remove.
        assert!(
            diff(&desired, Some(&mk_live()), "someone-else")
                .differences
                .is_empty()
        );
    }

    #[test]
    fn missing_live_object_is_a_difference_and_numbers_compare_by_value() {
        assert!(!diff(&mk_desired(), None, "flotilla").in_sync());
        let mut live = mk_live();
        live["spec"]["replicas"] = json!(2.0);
        assert!(diff(&mk_desired(), Some(&live), "flotilla").in_sync());
    }

    fn deployment_with(resources: Value, extra: Value) -> Value {
        let mut d = mk_desired();
        d["spec"]["template"]["spec"]["containers"][0]["resources"] = resources;
        if let (Some(spec), Some(extra)) = (
            d["spec"]["template"]["spec"].as_object_mut(),
            extra.as_object(),
        ) {
            spec.extend(extra.clone());
        }
        d
    }

    #[test]
    fn canonical_quantities_are_not_drift() {
        let desired = deployment_with(
            json!({"limits": {"cpu": "1000m", "memory": "1024Mi"}, "requests": {"cpu": 0.5, "memory": "1e9"}}),
            json!({"volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1024Mi"}}]}),
        );
        let live = deployment_with(
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1G"}}),
            json!({"volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]}),
        );
        assert!(diff(&desired, Some(&live), "flotilla").in_sync());
        let mut bigger = live.clone();
        bigger["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
            json!("2");
        assert_eq!(
            diff(&desired, Some(&bigger), "flotilla").differences,
            [".spec.template.spec.containers[0].resources.limits.cpu"]
        );
        // Quantity equality only applies to quantity fields.
        let mut image = mk_desired();
        image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("1000m");
        let mut live_image = mk_live();
        live_image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("1");
        assert!(!diff(&image, Some(&live_image), "flotilla").in_sync());
    }

    #[test]
    fn int_or_string_ports_compare_by_value() {
        let desired = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                             "spec": {"ports": [{"port": "80", "targetPort": 8080}]}});
        let live = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                          "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "targetPort": "8080"}]}});
        assert!(diff(&desired, Some(&live), "flotilla").in_sync());
        let mut named = live;
        named["spec"]["ports"][0]["targetPort"] = json!("http");
        assert_eq!(
            diff(&desired, Some(&named), "flotilla").differences,
            [".spec.ports[0].targetPort"]
        );
    }

    #[test]
    fn empty_and_zero_values_the_server_drops() {
        let desired = deployment_with(
            json!({}),
            json!({"hostNetwork": false, "nodeSelector": {}, "tolerations": [], "priorityClassName": "", "affinity": null}),
        );
        let mut d = desired.clone();
        d["metadata"]["annotations"] = json!({});
        assert!(diff(&d, Some(&mk_live()), "flotilla").in_sync());
        // Custom resources keep zero values: a missing one is drift.
        let crd_opts = DiffOptions {
            builtin_group: false,
            ..DiffOptions::default()
        };
        assert_eq!(
            diff_with(&desired, Some(&mk_live()), "flotilla", &crd_opts).differences,
            [
                ".spec.template.spec.hostNetwork",
                ".spec.template.spec.priorityClassName"
            ]
        );
    }

    #[test]
    fn secret_string_data_compares_as_data() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "type": "Opaque",
                             "stringData": {"password": "s3cret"}});
        let live = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                          "metadata": {"name": "db", "managedFields": [{"manager": "flotilla", "operation": "Apply",
                              "fieldsV1": {"f:stringData": {"f:password": {}}, "f:type": {}}}]},
                          "data": {"password": "czNjcmV0"}});
        assert!(diff(&desired, Some(&live), "flotilla").in_sync());
        let mut rotated = live;
        rotated["data"]["password"] = json!("b2xk");
        assert_eq!(
            diff(&desired, Some(&rotated), "flotilla").differences,
            [".data.password"]
        );
    }

    #[test]
    fn aggregated_cluster_role_rules_are_optional() {
        let desired = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "monitoring"},
                             "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]},
                             "rules": []});
        let live = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "monitoring"},
                          "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]},
                          "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}]});
        assert_eq!(
            diff(&desired, Some(&live), "flotilla").differences,
            [".rules"]
        );
        let opts = DiffOptions {
            ignore_aggregated_roles: true,
            ..DiffOptions::default()
        };
        assert!(diff_with(&desired, Some(&live), "flotilla", &opts).in_sync());
    }

    #[test]
    fn status_is_compared_only_on_request() {
        let mut desired = mk_desired();
        desired["status"] = json!({"availableReplicas": 3});
        assert!(diff(&desired, Some(&mk_live()), "flotilla").in_sync());
        let opts = DiffOptions {
            compare_status: true,
            ..DiffOptions::default()
        };
        assert_eq!(
            diff_with(&desired, Some(&mk_live()), "flotilla", &opts).differences,
            [".status.availableReplicas"]
        );
    }
}
