//! The `clusters` generator: one parameter set per Argo CD cluster (Secret) matching
//! `selector`, as Argo CD's `ClusterGenerator` does.

use serde_json::{Map, Value};

use super::selector::Selector;
use super::{
    ClusterInfo, GeneratorError, Inputs, Options, Params, append_values, check_bound, refuse_extra,
    sanitize_name,
};
use crate::types::ClusterGenerator;

/// Parameters: `name`, `nameNormalized`, `server`, and for Secret clusters
/// `metadata.labels.<k>` / `metadata.annotations.<k>` (fasttemplate) or
/// `metadata: {labels, annotations}` (goTemplate, each only when non-empty); then `values`.
/// The implicit in-cluster destination (no Secret) is only included when the selector is
/// empty, with `nameNormalized` = `name` and no metadata. Implicit clusters come first.
pub(crate) fn generate(
    g: &ClusterGenerator,
    opts: &Options,
    inputs: &dyn Inputs,
    path: &str,
) -> Result<Vec<Params>, GeneratorError> {
    refuse_extra(&g.extra, path)?;
    let sel = Selector::parse(&g.selector, true).map_err(|reason| GeneratorError::Selector {
        path: format!("{path}.selector"),
        reason,
    })?;
    let ignore_local =
        !g.selector.match_labels.is_empty() || !g.selector.match_expressions.is_empty();
    let clusters = inputs.clusters();
    let (implicit, secrets): (Vec<&ClusterInfo>, Vec<&ClusterInfo>) =
        clusters.iter().partition(|c| c.implicit);
    let mut out = Vec::new();
    if !ignore_local {
        for c in implicit {
            let mut p = Map::new();
            p.insert("name".into(), Value::String(c.name.clone()));
            p.insert("nameNormalized".into(), Value::String(c.name.clone()));
            p.insert("server".into(), Value::String(c.server.clone()));
            append_values(&g.values, &mut p, opts, path)?;
            out.push(p);
        }
    }
    for c in secrets
        .into_iter()
        .filter(|c| sel.matches_labels(&c.labels))
    {
        let mut p = Map::new();
        p.insert("name".into(), Value::String(c.name.clone()));
        p.insert(
            "nameNormalized".into(),
            Value::String(sanitize_name(&c.name)),
        );
        p.insert("server".into(), Value::String(c.server.clone()));
        if opts.go_template {
            let mut meta = Map::new();
            let strs = |m: &std::collections::BTreeMap<String, String>| {
                Value::Object(
                    m.iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                )
            };
            if !c.annotations.is_empty() {
                meta.insert("annotations".into(), strs(&c.annotations));
            }
            if !c.labels.is_empty() {
                meta.insert("labels".into(), strs(&c.labels));
            }
            p.insert("metadata".into(), Value::Object(meta));
        } else {
            for (k, v) in &c.annotations {
                p.insert(
                    format!("metadata.annotations.{k}"),
                    Value::String(v.clone()),
                );
            }
            for (k, v) in &c.labels {
                p.insert(format!("metadata.labels.{k}"), Value::String(v.clone()));
            }
        }
        append_values(&g.values, &mut p, opts, path)?;
        out.push(p);
        check_bound(out.len(), path)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generators::testing::{FakeInputs, flat, go, obj};
    use serde_json::json;

    fn clusters() -> FakeInputs {
        FakeInputs::with_clusters(vec![
            ClusterInfo {
                name: "in-cluster".into(),
                server: "https://kubernetes.default.svc".into(),
                implicit: true,
                ..Default::default()
            },
            ClusterInfo {
                name: "Staging_EU".into(),
                server: "https://staging.example.com".into(),
                labels: [
                    ("argocd.argoproj.io/secret-type", "cluster"),
                    ("environment", "staging"),
                ]
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .into(),
                annotations: [("team", "blue")]
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .into(),
                implicit: false,
            },
            ClusterInfo {
                name: "prod".into(),
                server: "https://prod.example.com".into(),
                labels: [
                    ("argocd.argoproj.io/secret-type", "cluster"),
                    ("environment", "production"),
                ]
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .into(),
                ..Default::default()
            },
        ])
    }

    fn gen_(v: Value) -> ClusterGenerator {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn all_clusters_fasttemplate() -> Result<(), GeneratorError> {
        let out = generate(&gen_(json!({})), &flat(), &clusters(), "clusters")?;
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[0],
            obj(json!({"name": "in-cluster", "nameNormalized": "in-cluster",
                                      "server": "https://kubernetes.default.svc"}))
        );
        assert_eq!(
            out[1],
            obj(json!({
                "name": "Staging_EU", "nameNormalized": "staging-eu", "server": "https://staging.example.com",
                "metadata.annotations.team": "blue",
                "metadata.labels.argocd.argoproj.io/secret-type": "cluster",
                "metadata.labels.environment": "staging"
            }))
        );
        Ok(())
    }

    #[test]
    fn selector_excludes_in_cluster_and_values_interpolate() -> Result<(), GeneratorError> {
        // Generators-Cluster: values with {{name}}-style substitution.
        let g = gen_(json!({
            "selector": {"matchLabels": {"environment": "staging"}},
            "values": {"revision": "HEAD", "clusterName": "{{name}}-{{metadata.labels.environment}}",
                       "kept": "{{values.revision}}"}
        }));
        let out = generate(&g, &flat(), &clusters(), "clusters")?;
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].get("values.clusterName"),
            Some(&json!("Staging_EU-staging"))
        );
        assert_eq!(out[0].get("values.revision"), Some(&json!("HEAD")));
        // Values do not see each other (Argo CD renders them against the cluster params only).
        assert_eq!(
            out[0].get("values.kept"),
            Some(&json!("{{values.revision}}"))
        );
        Ok(())
    }

    #[test]
    fn go_template_shape() -> Result<(), GeneratorError> {
        let g = gen_(json!({
            "selector": {"matchExpressions": [{"key": "environment", "operator": "In",
                                                "values": ["staging", "production"]}]},
            "values": {"env": "{{ .metadata.labels.environment }}"}
        }));
        let out = generate(&g, &go(), &clusters(), "clusters")?;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1],
            obj(json!({
                "name": "prod", "nameNormalized": "prod", "server": "https://prod.example.com",
                "metadata": {"labels": {"argocd.argoproj.io/secret-type": "cluster", "environment": "production"}},
                "values": {"env": "production"}
            }))
        );
        let all = generate(&gen_(json!({})), &go(), &clusters(), "clusters")?;
        assert_eq!(all[0].get("metadata"), None);
        Ok(())
    }

    #[test]
    fn bad_selector_is_an_error() {
        let g = gen_(json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Foo"}]}}));
        assert!(matches!(
            generate(&g, &flat(), &clusters(), "clusters"),
            Err(GeneratorError::Selector { .. })
        ));
        let g = gen_(json!({"flatList": true}));
        assert!(generate(&g, &flat(), &clusters(), "clusters").is_err());
    }
}
