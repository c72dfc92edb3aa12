//! The `clusterDecisionResource` generator (Argo CD's duck type generator): one parameter set
//! per entry of the `status.<statusListKey>` lists of resources a ConfigMap names, matched to
//! an Argo CD cluster by name.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::selector::Selector;
use super::{GeneratorError, Inputs, Options, Params, check_bound, refuse_extra};
use crate::types::DuckTypeGenerator;

/// Argo CD's default `statusListKey`.
const DEFAULT_STATUS_LIST_KEY: &str = "clusters";

/// Parameters: `name` and `server` of the matched cluster, then every field of the decision
/// (strings only, as Argo CD requires), then `values` (not templated, as in Argo CD).
///
/// Where Argo CD would quietly generate nothing, this refuses instead, so that a misconfigured
/// generator never deletes the set's Applications: a ConfigMap without `matchKey`, and
/// resources none of which has the `status` list at all. Resources without any status yet are
/// skipped (Argo CD's behaviour); an existing but empty list generates nothing.
pub(crate) fn generate(
    g: &DuckTypeGenerator,
    opts: &Options,
    inputs: &dyn Inputs,
    path: &str,
) -> Result<Vec<Params>, GeneratorError> {
    refuse_extra(&g.extra, path)?;
    let invalid = |reason: String| GeneratorError::Invalid {
        path: path.to_string(),
        reason,
    };
    let input = |source| GeneratorError::Input {
        path: path.to_string(),
        source,
    };
    if g.config_map_ref.is_empty() {
        return Err(invalid("configMapRef is required".into()));
    }
    let by_selector = !g.label_selector.is_empty();
    if g.name.is_empty() != by_selector {
        return Err(invalid(
            "choose either name or labelSelector (exactly one of them)".into(),
        ));
    }
    let sel =
        Selector::parse(&g.label_selector, true).map_err(|reason| GeneratorError::Selector {
            path: format!("{path}.labelSelector"),
            reason,
        })?;
    let cm = inputs.config_map(&g.config_map_ref).map_err(input)?;
    let field = |k: &str| cm.get(k).map(String::as_str).unwrap_or_default();
    let (group, version) = match field("apiVersion").split_once('/') {
        Some((g, v)) if !g.is_empty() && !v.is_empty() => (g, v),
        _ => {
            return Err(invalid(format!(
                "ConfigMap {} must name apiVersion as group/version (core resources cannot be decision resources)",
                g.config_map_ref
            )));
        }
    };
    // They become a URL path: only the characters Kubernetes allows in them.
    let dns = |v: &str, dots: bool| {
        !v.is_empty()
            && v.len() <= 253
            && v.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
            })
    };
    if !dns(group, true) || !dns(version, false) {
        return Err(invalid(format!(
            "ConfigMap {}: apiVersion {:?} is not a valid group/version",
            g.config_map_ref,
            field("apiVersion")
        )));
    }
    let resource = field("kind");
    if !resource.is_empty() && !dns(resource, false) {
        return Err(invalid(format!(
            "ConfigMap {}: kind {resource:?} is not a resource name (lowercase plural)",
            g.config_map_ref
        )));
    }
    if resource.is_empty() {
        return Err(invalid(format!(
            "ConfigMap {} must name the resource in kind (its plural, e.g. placementdecisions)",
            g.config_map_ref
        )));
    }
    let match_key = field("matchKey");
    if match_key.is_empty() {
        return Err(invalid(format!(
            "ConfigMap {} has no matchKey: nothing can be matched to a cluster",
            g.config_map_ref
        )));
    }
    let list_key = match field("statusListKey") {
        "" => DEFAULT_STATUS_LIST_KEY,
        k => k,
    };

    let found: Vec<Value> = inputs
        .resources(group, version, resource)
        .map_err(input)?
        .into_iter()
        .filter(|o| {
            let meta = &o["metadata"];
            if by_selector {
                let labels: BTreeMap<String, String> = meta["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                sel.matches_labels(&labels)
            } else {
                meta["name"].as_str() == Some(g.name.as_str())
            }
        })
        .collect();
    if found.is_empty() {
        return Err(invalid(format!(
            "no {resource}.{group} resources found (by {})",
            if by_selector { "labelSelector" } else { "name" }
        )));
    }
    let mut decisions = Vec::new();
    let mut any_list = false;
    for o in &found {
        let status = &o["status"];
        if status.as_object().is_none_or(Map::is_empty) {
            continue; // Not decided yet (Argo CD skips it too).
        }
        match &status[list_key] {
            Value::Array(items) => {
                any_list = true;
                decisions.extend(items.iter());
            }
            Value::Null => {}
            _ => {
                return Err(invalid(format!(
                    "status.{list_key} of {} is not a list",
                    o["metadata"]["name"].as_str().unwrap_or_default()
                )));
            }
        }
    }
    if !any_list {
        return Err(invalid(format!(
            "status.{list_key} missing in every {resource}.{group} resource found"
        )));
    }
    let clusters = inputs.clusters();
    let mut out = Vec::new();
    for d in decisions {
        let Some(fields) = d.as_object() else {
            return Err(invalid(format!(
                "an entry of status.{list_key} is not an object"
            )));
        };
        let Some(wanted) = fields
            .get(match_key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        else {
            continue; // No match value: Argo CD skips the entry.
        };
        let Some(cluster) = clusters.iter().find(|c| c.name == wanted) else {
            continue; // Not a cluster Argo CD knows.
        };
        let mut p = Map::new();
        p.insert("name".into(), Value::String(cluster.name.clone()));
        p.insert("server".into(), Value::String(cluster.server.clone()));
        for (k, v) in fields {
            let Value::String(v) = v else {
                return Err(invalid(format!(
                    "status.{list_key}[].{k} is not a string (Argo CD reads only strings)"
                )));
            };
            p.insert(k.clone(), Value::String(v.clone()));
        }
        if !g.values.is_empty() {
            if opts.go_template {
                let vals = g
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                p.insert("values".into(), Value::Object(vals));
            } else {
                for (k, v) in &g.values {
                    p.insert(format!("values.{k}"), Value::String(v.clone()));
                }
            }
        }
        out.push(p);
    }
    check_bound(out.len(), path)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generators::ClusterInfo;
    use crate::generators::InputError;
    use crate::generators::testing::{flat, go};
    use serde_json::json;

    struct Duck {
        cm: BTreeMap<String, String>,
        objects: Vec<Value>,
    }

    impl Inputs for Duck {
        fn clusters(&self) -> Vec<ClusterInfo> {
            ["c1", "c2"]
                .iter()
                .map(|n| ClusterInfo {
                    name: n.to_string(),
                    server: format!("https://{n}"),
                    ..Default::default()
                })
                .collect()
        }
        fn git_directories(&self, _: &str, _: &str) -> Result<Vec<String>, InputError> {
            Ok(Vec::new())
        }
        fn git_files(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Vec<(String, Vec<u8>)>, InputError> {
            Ok(Vec::new())
        }
        fn config_map(&self, name: &str) -> Result<BTreeMap<String, String>, InputError> {
            if name == "duck" {
                Ok(self.cm.clone())
            } else {
                Err(InputError::Unavailable(format!(
                    "configmaps {name:?} not found"
                )))
            }
        }
        fn resources(&self, g: &str, v: &str, r: &str) -> Result<Vec<Value>, InputError> {
            assert_eq!(
                (g, v, r),
                (
                    "cluster.open-cluster-management.io",
                    "v1beta1",
                    "placementdecisions"
                )
            );
            Ok(self.objects.clone())
        }
    }

    fn duck(objects: Vec<Value>) -> Duck {
        let cm = [
            ("apiVersion", "cluster.open-cluster-management.io/v1beta1"),
            ("kind", "placementdecisions"),
            ("statusListKey", "decisions"),
            ("matchKey", "clusterName"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Duck { cm, objects }
    }

    fn obj(name: &str, labels: Value, status: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "status": status})
    }

    fn spec(v: Value) -> DuckTypeGenerator {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn decisions_become_clusters_with_their_fields_and_values() {
        let inputs = duck(vec![
            obj(
                "a",
                json!({"duck": "spotted"}),
                json!({"decisions": [
                {"clusterName": "c1", "reason": "fits"},
                {"clusterName": "unknown"},
                {"clusterName": ""},
                {"clusterName": "c2", "reason": "also"}]}),
            ),
            obj(
                "b",
                json!({}),
                json!({"decisions": [{"clusterName": "c1"}]}),
            ),
        ]);
        let g = spec(
            json!({"configMapRef": "duck", "labelSelector": {"matchLabels": {"duck": "spotted"}},
                            "values": {"tier": "gold"}}),
        );
        let out = generate(&g, &flat(), &inputs, "p").expect("generated");
        let names: Vec<&str> = out
            .iter()
            .map(|p| p["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            ["c1", "c2"],
            "unknown and empty names skipped, b not selected"
        );
        assert_eq!(out[0]["server"], "https://c1");
        assert_eq!(out[0]["reason"], "fits");
        assert_eq!(out[0]["clusterName"], "c1");
        assert_eq!(out[0]["values.tier"], "gold");
        let out = generate(&g, &go(), &inputs, "p").expect("generated");
        assert_eq!(out[1]["values"], json!({"tier": "gold"}));
        // By name.
        let g = spec(json!({"configMapRef": "duck", "name": "b"}));
        let out = generate(&g, &flat(), &inputs, "p").expect("generated");
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn what_argo_cd_would_turn_into_nothing_is_refused() {
        let ok = || {
            duck(vec![obj(
                "a",
                json!({}),
                json!({"decisions": [{"clusterName": "c1"}]}),
            )])
        };
        let named = spec(json!({"configMapRef": "duck", "name": "a"}));
        let refused = |g: &DuckTypeGenerator, i: &Duck| generate(g, &flat(), i, "p").is_err();
        // Both or neither of name and labelSelector.
        assert!(refused(&spec(json!({"configMapRef": "duck"})), &ok()));
        assert!(refused(
            &spec(
                json!({"configMapRef": "duck", "name": "a", "labelSelector": {"matchLabels": {"x": "y"}}})
            ),
            &ok()
        ));
        // A missing ConfigMap, a core apiVersion, no matchKey.
        assert!(refused(
            &spec(json!({"configMapRef": "nope", "name": "a"})),
            &ok()
        ));
        let mut core = ok();
        core.cm.insert("apiVersion".into(), "v1".into());
        assert!(refused(&named, &core));
        // Nothing that would change the request's URL.
        for (k, v) in [
            ("kind", "leases?watch=true&x="),
            ("kind", "../secrets"),
            ("apiVersion", "a/b/../v1"),
            ("apiVersion", "x.io/V1"),
        ] {
            let mut bad = ok();
            bad.cm.insert(k.into(), v.into());
            assert!(refused(&named, &bad), "{k}: {v}");
        }
        let mut nokey = ok();
        nokey.cm.remove("matchKey");
        assert!(refused(&named, &nokey));
        // No such resource; a resource without the list; a non-string field.
        assert!(refused(
            &spec(json!({"configMapRef": "duck", "name": "zz"})),
            &ok()
        ));
        let nolist = duck(vec![obj("a", json!({}), json!({"other": []}))]);
        assert!(refused(&named, &nolist));
        let number = duck(vec![obj(
            "a",
            json!({}),
            json!({"decisions": [{"clusterName": "c1", "n": 1}]}),
        )]);
        assert!(refused(&named, &number));
        // An empty list is a decision: nothing generated, no error.
        let empty = duck(vec![obj("a", json!({}), json!({"decisions": []}))]);
        assert_eq!(generate(&named, &flat(), &empty, "p"), Ok(Vec::new()));
        assert!(!refused(&named, &ok()));
    }
}
