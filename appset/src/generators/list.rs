//! The `list` generator: `elements` (and `elementsYaml`) as parameter sets, as Argo CD's
//! `ListGenerator` does.

use serde_json::{Map, Value};

use super::{GeneratorError, Options, Params, check_bound, refuse_extra};
use crate::types::ListGenerator;

/// fasttemplate: each element must be an object of strings, with `values: {k: string}` turned
/// into `values.k`; goTemplate: each element as is. `elementsYaml` (a YAML list of objects) is
/// appended unchanged in both modes, as Argo CD does.
pub(crate) fn generate(
    g: &ListGenerator,
    opts: &Options,
    path: &str,
) -> Result<Vec<Params>, GeneratorError> {
    refuse_extra(&g.extra, path)?;
    let invalid = |i: usize, reason: String| GeneratorError::Invalid {
        path: format!("{path}.elements[{i}]"),
        reason,
    };
    check_bound(g.elements.len(), path)?;
    let mut out = Vec::with_capacity(g.elements.len());
    for (i, el) in g.elements.iter().enumerate() {
        let Value::Object(el) = el else {
            return Err(invalid(
                i,
                "error unmarshling list element: not an object".into(),
            ));
        };
        if opts.go_template {
            out.push(el.clone());
            continue;
        }
        let mut params = Map::new();
        for (k, v) in el {
            if k == "values" {
                let Value::Object(values) = v else {
                    return Err(invalid(i, "error parsing values map".into()));
                };
                for (vk, vv) in values {
                    let Value::String(s) = vv else {
                        return Err(invalid(
                            i,
                            format!("error parsing value as string: values.{vk}"),
                        ));
                    };
                    params.insert(format!("values.{vk}"), Value::String(s.clone()));
                }
            } else {
                let Value::String(s) = v else {
                    return Err(invalid(i, format!("error parsing value as string: {k}")));
                };
                params.insert(k.clone(), Value::String(s.clone()));
            }
        }
        out.push(params);
    }
    if let Some(yaml) = g.elements_yaml.as_deref().filter(|y| !y.is_empty()) {
        let items: Vec<Map<String, Value>> =
            serde_yaml::from_str(yaml).map_err(|e| GeneratorError::Invalid {
                path: format!("{path}.elementsYaml"),
                reason: format!("error unmarshling decoded ElementsYaml: {e}"),
            })?;
        out.extend(items);
    }
    check_bound(out.len(), path)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generators::testing::{flat, go, obj};
    use serde_json::json;

    fn list(v: Value) -> ListGenerator {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn documented_example_fasttemplate() -> Result<(), GeneratorError> {
        // Generators-List: engineering-dev / engineering-prod with a values map.
        let g = list(json!({"elements": [
            {"cluster": "engineering-dev", "url": "https://kubernetes.default.svc"},
            {"cluster": "engineering-prod", "url": "https://kubernetes.default.svc",
             "values": {"additional": "value"}}
        ]}));
        let out = generate(&g, &flat(), "list")?;
        assert_eq!(
            out,
            vec![
                obj(json!({"cluster": "engineering-dev", "url": "https://kubernetes.default.svc"})),
                obj(
                    json!({"cluster": "engineering-prod", "url": "https://kubernetes.default.svc",
                        "values.additional": "value"})
                ),
            ]
        );
        Ok(())
    }

    #[test]
    fn go_template_keeps_shape_and_elements_yaml_appends() -> Result<(), GeneratorError> {
        let g = list(json!({
            "elements": [{"cluster": "a", "replicas": 2, "values": {"x": {"y": 1}}}],
            "elementsYaml": "- cluster: b\n  nested:\n    k: v\n"
        }));
        let out = generate(&g, &go(), "list")?;
        assert_eq!(
            out,
            vec![
                obj(json!({"cluster": "a", "replicas": 2, "values": {"x": {"y": 1}}})),
                obj(json!({"cluster": "b", "nested": {"k": "v"}})),
            ]
        );
        Ok(())
    }

    #[test]
    fn fasttemplate_refuses_non_strings() {
        let g = list(json!({"elements": [{"replicas": 2}]}));
        assert!(matches!(
            generate(&g, &flat(), "list"),
            Err(GeneratorError::Invalid { .. })
        ));
        let g = list(json!({"elements": [{"values": "x"}]}));
        assert!(generate(&g, &flat(), "list").is_err());
        let g = list(json!({"elements": ["scalar"]}));
        assert!(generate(&g, &go(), "list").is_err());
        let g = list(json!({"elements": [], "elementsYaml": "a: b"}));
        assert!(generate(&g, &go(), "list").is_err());
    }

    #[test]
    fn bounded() {
        let g = ListGenerator {
            elements: vec![json!({"a": "b"}); super::super::MAX_PARAM_SETS + 1],
            ..Default::default()
        };
        assert!(matches!(
            generate(&g, &flat(), "list"),
            Err(GeneratorError::TooManyParamSets { .. })
        ));
    }
}
