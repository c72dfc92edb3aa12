//! The `merge` generator: the first (base) child's parameter sets, each overridden by the sets
//! of later children that have the same values for every `mergeKeys` entry, as Argo CD's
//! `MergeGenerator` does.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::matrix::children;
use super::value::{go_fmt_value, override_with};
use super::{GeneratorError, Inputs, Options, Params, refuse_extra, run};
use crate::types::MergeGenerator;

/// At least two children and one merge key. Sets of later children must be unique by their
/// merge-key values (else an error); base sets may repeat and are all overridden. goTemplate:
/// deep merge with the later value winning (mergo `WithOverride`); fasttemplate: string maps,
/// later value wins. Base sets without a match pass through. Output keeps the base order
/// (Argo CD's is a Go map iteration order, i.e. unspecified).
pub(crate) fn generate(
    m: &MergeGenerator,
    opts: &Options,
    inputs: &dyn Inputs,
    path: &str,
    depth: usize,
) -> Result<Vec<Params>, GeneratorError> {
    refuse_extra(&m.extra, path)?;
    if m.generators.len() < 2 {
        return Err(GeneratorError::Invalid {
            path: path.to_string(),
            reason: "found less than two generators, Merge requires two or more".into(),
        });
    }
    if m.merge_keys.is_empty() {
        return Err(GeneratorError::Invalid {
            path: path.to_string(),
            reason: "no merge keys were specified, Merge requires at least one".into(),
        });
    }
    let keys: BTreeSet<&str> = m.merge_keys.iter().map(String::as_str).collect();
    let children = children(&m.generators, opts, path, depth, "merge")?;
    let mut sets = Vec::with_capacity(children.len());
    for (i, c) in children.iter().enumerate() {
        sets.push(run(
            c,
            opts,
            inputs,
            &format!("{path}.generators[{i}]"),
            depth + 1,
            None,
        )?);
    }
    let mut base: Vec<Params> = sets.remove(0);
    let base_keys: Vec<String> = base.iter().map(|p| merge_key(&keys, p)).collect();
    for (ci, other) in sets.iter().enumerate() {
        let mut by_key: BTreeMap<String, &Params> = BTreeMap::new();
        for p in other {
            let k = merge_key(&keys, p);
            if by_key.insert(k.clone(), p).is_some() {
                return Err(GeneratorError::Invalid {
                    path: format!("{path}.generators[{}]", ci + 1),
                    reason: format!(
                        "the parameters from a generator were not unique by the given mergeKeys, \
                         Merge requires all param sets to be unique. Duplicate key was {k}"
                    ),
                });
            }
        }
        for (b, k) in base.iter_mut().zip(&base_keys) {
            let Some(o) = by_key.get(k) else { continue };
            if opts.go_template {
                override_with(b, o);
            } else {
                let mut res: Map<String, Value> = b
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(go_fmt_value(v))))
                    .collect();
                for (k, v) in o.iter() {
                    res.insert(k.clone(), Value::String(go_fmt_value(v)));
                }
                *b = res;
            }
        }
    }
    Ok(base)
}

/// Go's `json.Marshal(map[mergeKey]paramSet[mergeKey])`: keys sorted, missing → `null`.
fn merge_key(keys: &BTreeSet<&str>, p: &Params) -> String {
    let m: Map<String, Value> = keys
        .iter()
        .map(|k| (k.to_string(), p.get(*k).cloned().unwrap_or(Value::Null)))
        .collect();
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use crate::generators::testing::{FakeInputs, flat, go, obj};
    use crate::generators::{ClusterInfo, GeneratorError, generate_one};
    use crate::types::ApplicationSetGenerator;
    use serde_json::{Value, json};

    fn gen_(v: Value) -> ApplicationSetGenerator {
        serde_json::from_value(v).unwrap_or_default()
    }

    fn inputs() -> FakeInputs {
        let c = |name: &str, env: &str| ClusterInfo {
            name: name.into(),
            server: format!("https://{name}"),
            labels: [("env".to_string(), env.to_string())].into(),
            ..Default::default()
        };
        FakeInputs::with_clusters(vec![
            c("staging", "staging"),
            c("prod", "prod"),
            c("dev", "dev"),
        ])
    }

    #[test]
    fn documented_example_fasttemplate() -> Result<(), GeneratorError> {
        // Generators-Merge: clusters with kafka defaults, overridden by selector and by list.
        let g = gen_(json!({"merge": {"mergeKeys": ["server"], "generators": [
            {"clusters": {"values": {"kafka": "true", "redis": "false"}}},
            {"clusters": {"selector": {"matchLabels": {"env": "dev"}}, "values": {"redis": "true"}}},
            {"list": {"elements": [{"server": "https://prod", "values.redis": "true"}]}}
        ]}}));
        let out = generate_one(&g, &flat(), &inputs(), "g")?;
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].get("values.redis"), Some(&json!("false")));
        assert_eq!(out[1].get("values.redis"), Some(&json!("true")));
        assert_eq!(out[1].get("values.kafka"), Some(&json!("true")));
        assert_eq!(out[2].get("values.redis"), Some(&json!("true")));
        assert_eq!(out[2].get("name"), Some(&json!("dev")));
        Ok(())
    }

    #[test]
    fn go_template_deep_override() -> Result<(), GeneratorError> {
        let g = gen_(json!({"merge": {"mergeKeys": ["name"], "generators": [
            {"list": {"elements": [{"name": "a", "cfg": {"x": 1, "y": 1}}, {"name": "b", "cfg": {"x": 1}}]}},
            {"list": {"elements": [{"name": "a", "cfg": {"y": 2}}, {"name": "zz", "cfg": {"y": 9}}]}}
        ]}}));
        let out = generate_one(&g, &go(), &inputs(), "g")?;
        assert_eq!(
            out,
            vec![
                obj(json!({"name": "a", "cfg": {"x": 1, "y": 2}})),
                obj(json!({"name": "b", "cfg": {"x": 1}})),
            ]
        );
        Ok(())
    }

    #[test]
    fn nested_matrix_in_merge() -> Result<(), GeneratorError> {
        let g = gen_(json!({"merge": {"mergeKeys": ["a", "b"], "generators": [
            {"matrix": {"generators": [
                {"list": {"elements": [{"a": "1"}, {"a": "2"}]}},
                {"list": {"elements": [{"b": "x"}]}}
            ]}},
            {"list": {"elements": [{"a": "2", "b": "x", "c": "over"}]}}
        ]}}));
        let out = generate_one(&g, &flat(), &inputs(), "g")?;
        assert_eq!(
            out,
            vec![
                obj(json!({"a": "1", "b": "x"})),
                obj(json!({"a": "2", "b": "x", "c": "over"})),
            ]
        );
        Ok(())
    }

    #[test]
    fn errors() {
        let one = gen_(
            json!({"merge": {"mergeKeys": ["a"], "generators": [{"list": {"elements": []}}]}}),
        );
        assert!(generate_one(&one, &flat(), &inputs(), "g").is_err());
        let no_keys = gen_(json!({"merge": {"mergeKeys": [], "generators": [
            {"list": {"elements": []}}, {"list": {"elements": []}}]}}));
        assert!(generate_one(&no_keys, &flat(), &inputs(), "g").is_err());
        let dup = gen_(json!({"merge": {"mergeKeys": ["a"], "generators": [
            {"list": {"elements": [{"a": "1"}]}},
            {"list": {"elements": [{"a": "1", "b": "x"}, {"a": "1", "b": "y"}]}}]}}));
        assert!(matches!(
            generate_one(&dup, &flat(), &inputs(), "g"),
            Err(GeneratorError::Invalid { .. })
        ));
        let dup_base = gen_(json!({"merge": {"mergeKeys": ["a"], "generators": [
            {"list": {"elements": [{"a": "1", "n": "p"}, {"a": "1", "n": "q"}]}},
            {"list": {"elements": [{"a": "1", "b": "x"}]}}]}}));
        assert_eq!(
            generate_one(&dup_base, &flat(), &inputs(), "g").map(|v| v.len()),
            Ok(2)
        );
    }
}
