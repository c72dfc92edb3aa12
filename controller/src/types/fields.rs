//! The Application fields Flotilla understands, as a tree, and the check that finds every
//! other field a spec carries: Argo CD fields Flotilla does not (yet) honour are refused with
//! a condition naming them, never silently dropped.

use serde_json::Value;

/// One level of the tree: a field name and what is below it.
enum Node {
    /// A value Flotilla takes whole (strings, numbers, maps of user keys).
    Leaf,
    /// An object whose keys must be among these.
    Object(&'static [(&'static str, Node)]),
    /// A list of such objects.
    List(&'static [(&'static str, Node)]),
}

use Node::{Leaf, List, Object};

const NAME_VALUE: &[(&str, Node)] = &[("name", Leaf), ("value", Leaf)];
const JSONNET_VAR: &[(&str, Node)] = &[("name", Leaf), ("value", Leaf), ("code", Leaf)];

const HELM: &[(&str, Node)] = &[
    ("valueFiles", Leaf),
    ("values", Leaf),
    ("valuesObject", Leaf),
    (
        "parameters",
        List(&[("name", Leaf), ("value", Leaf), ("forceString", Leaf)]),
    ),
    ("fileParameters", List(&[("name", Leaf), ("path", Leaf)])),
    ("releaseName", Leaf),
    ("skipCrds", Leaf),
    ("ignoreMissingValueFiles", Leaf),
    ("passCredentials", Leaf),
];

const KUSTOMIZE: &[(&str, Node)] = &[
    ("namePrefix", Leaf),
    ("nameSuffix", Leaf),
    ("images", Leaf),
    ("commonLabels", Leaf),
    ("commonAnnotations", Leaf),
    ("namespace", Leaf),
];

const DIRECTORY: &[(&str, Node)] = &[
    ("recurse", Leaf),
    ("include", Leaf),
    ("exclude", Leaf),
    (
        "jsonnet",
        Object(&[
            ("extVars", List(JSONNET_VAR)),
            ("tlas", List(JSONNET_VAR)),
            ("libs", Leaf),
        ]),
    ),
];

const SOURCE: &[(&str, Node)] = &[
    ("repoURL", Leaf),
    ("targetRevision", Leaf),
    ("path", Leaf),
    ("chart", Leaf),
    ("ref", Leaf),
    ("helm", Object(HELM)),
    ("kustomize", Object(KUSTOMIZE)),
    ("directory", Object(DIRECTORY)),
    (
        "plugin",
        Object(&[("name", Leaf), ("env", List(NAME_VALUE))]),
    ),
];

const SPEC: &[(&str, Node)] = &[
    ("source", Object(SOURCE)),
    ("sources", List(SOURCE)),
    (
        "destination",
        Object(&[("server", Leaf), ("name", Leaf), ("namespace", Leaf)]),
    ),
    ("project", Leaf),
    (
        "syncPolicy",
        Object(&[
            (
                "automated",
                Object(&[("prune", Leaf), ("selfHeal", Leaf), ("allowEmpty", Leaf)]),
            ),
            ("syncOptions", Leaf),
            (
                "retry",
                Object(&[
                    ("limit", Leaf),
                    (
                        "backoff",
                        Object(&[("duration", Leaf), ("factor", Leaf), ("maxDuration", Leaf)]),
                    ),
                ]),
            ),
            (
                "managedNamespaceMetadata",
                Object(&[("labels", Leaf), ("annotations", Leaf)]),
            ),
        ]),
    ),
    ("revisionHistoryLimit", Leaf),
    (
        "ignoreDifferences",
        List(&[
            ("group", Leaf),
            ("kind", Leaf),
            ("name", Leaf),
            ("namespace", Leaf),
            ("jsonPointers", Leaf),
            ("jqPathExpressions", Leaf),
            ("managedFieldsManagers", Leaf),
        ]),
    ),
    ("info", List(NAME_VALUE)),
];

fn walk(v: &Value, fields: &[(&str, Node)], path: &str, out: &mut Vec<String>) {
    let Some(m) = v.as_object() else {
        return;
    };
    for (k, child) in m {
        if child.is_null() {
            continue;
        }
        let here = format!("{path}.{k}");
        match fields.iter().find(|(name, _)| name == k) {
            None => out.push(here),
            Some((_, Leaf)) => {}
            Some((_, Object(inner))) => walk(child, inner, &here, out),
            Some((_, List(inner))) => {
                for (i, item) in child.as_array().into_iter().flatten().enumerate() {
                    walk(item, inner, &format!("{here}[{i}]"), out);
                }
            }
        }
    }
}

/// The fields of an Application's `spec` Flotilla does not honour (`spec.x.y` paths).
pub fn unsupported(spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(spec, SPEC, "spec", &mut out);
    out.sort();
    out
}

/// Why a field is refused, for the condition.
pub fn refusal(path: &str) -> String {
    format!(
        "{path} is an Argo CD field Flotilla does not support; remove it or the app is not synced"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_fields_pass_and_others_are_named() {
        let spec = json!({
            "project": "default",
            "destination": {"server": "https://x", "namespace": "n"},
            "source": {"repoURL": "r", "path": "p", "helm": {"valueFiles": ["a"], "parameters": [{"name": "a", "value": "b"}]},
                       "kustomize": {"patches": [], "namePrefix": "x-"}},
            "syncPolicy": {"automated": {"prune": true}, "retry": {"limit": 2, "backoff": {"duration": "5s"}}},
            "ignoreDifferences": [{"kind": "Deployment", "jsonPointers": ["/spec/replicas"], "jqPathExpression": ".x"}],
            "sources": [{"repoURL": "r", "helm": {"kubeVersion": "1.30"}}],
        });
        assert_eq!(
            unsupported(&spec),
            [
                "spec.ignoreDifferences[0].jqPathExpression",
                "spec.source.kustomize.patches",
                "spec.sources[0].helm.kubeVersion"
            ]
        );
    }
}
