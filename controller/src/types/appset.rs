//! The `ApplicationSet` CRD, as Argo CD's YAML applies to it verbatim: spec and status are kept
//! whole (the controller parses them with `flotilla_appset::types` and refuses what it does not
//! honour by name), with a `/status` subresource.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::json;

/// The ApplicationSet CRD.
pub fn applicationset_crd() -> Result<CustomResourceDefinition, serde_json::Error> {
    let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "applicationsets.argoproj.io",
                     "labels": {"app.kubernetes.io/part-of": "flotilla"}},
        "spec": {
            "group": super::GROUP,
            "names": {"kind": "ApplicationSet", "listKind": "ApplicationSetList",
                      "plural": "applicationsets", "singular": "applicationset",
                      "shortNames": ["appset", "appsets"]},
            "scope": "Namespaced",
            "versions": [{
                "name": super::VERSION,
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["metadata", "spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": open.clone(),
                        "status": open,
                    }
                }}
            }]
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crd_is_argo_cds_kind_with_status() {
        let crd = applicationset_crd().expect("crd");
        assert_eq!(crd.spec.names.kind, "ApplicationSet");
        assert_eq!(crd.spec.versions[0].name, "v1alpha1");
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        );
    }
}
