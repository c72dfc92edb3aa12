//! The `matrix` generator: the cartesian product of exactly two children, the second one's spec
//! interpolated with each parameter set of the first (through `template::render_value`, Argo
//! CD's `RenderGeneratorParams`).

use serde_json::{Map, Value};

use super::value::{fill_missing, go_fmt_value};
use super::{GeneratorError, Inputs, Options, Params, check_bound, refuse_extra, run};
use crate::template::render_value;
use crate::types::{ApplicationSetGenerator, MatrixGenerator};

/// Matrix: children `[a, b]`; every set of `a` is combined with every set `b` generates once
/// `b`'s spec was interpolated with that set of `a` (Argo CD's `InterpolateGenerator`).
/// Combining: goTemplate deep-merges (`a` wins); fasttemplate stringifies both and refuses a
/// key with two different values.
pub(crate) fn generate(
    m: &MatrixGenerator,
    opts: &Options,
    inputs: &dyn Inputs,
    path: &str,
    depth: usize,
) -> Result<Vec<Params>, GeneratorError> {
    refuse_extra(&m.extra, path)?;
    match m.generators.len() {
        0 | 1 => {
            return Err(GeneratorError::Invalid {
                path: path.to_string(),
                reason: "found less than two generators, Matrix support only two".into(),
            });
        }
        2 => {}
        _ => {
            return Err(GeneratorError::Invalid {
                path: path.to_string(),
                reason: "found more than the max allowed of child generators (2)".into(),
            });
        }
    }
    let children = children(&m.generators, opts, path, depth, "matrix")?;
    let first = run(
        &children[0],
        opts,
        inputs,
        &format!("{path}.generators[0]"),
        depth + 1,
        None,
    )?;
    let mut out = Vec::new();
    let second_path = format!("{path}.generators[1]");
    for prev in &first {
        let second = run(
            &children[1],
            opts,
            inputs,
            &second_path,
            depth + 1,
            Some(prev),
        )?;
        for curr in second {
            out.push(combine(prev, &curr, opts.go_template, path)?);
            check_bound(out.len(), path)?;
        }
    }
    Ok(out)
}

/// Checks the nesting limit (a matrix/merge child of a nested matrix/merge is refused) and
/// drops the children's selectors of a nested matrix/merge unless `applyNestedSelectors`.
pub(crate) fn children(
    gens: &[ApplicationSetGenerator],
    opts: &Options,
    path: &str,
    depth: usize,
    kind: &str,
) -> Result<Vec<ApplicationSetGenerator>, GeneratorError> {
    let mut out = Vec::with_capacity(gens.len());
    for (i, c) in gens.iter().enumerate() {
        if depth >= 1 {
            if c.matrix.is_some() || c.merge.is_some() {
                return Err(GeneratorError::TooDeep {
                    path: format!("{path}.generators[{i}]"),
                    kind: kind.to_string(),
                });
            }
            if !opts.apply_nested_selectors && c.selector.is_some() {
                let mut c = c.clone();
                c.selector = None;
                out.push(c);
                continue;
            }
        }
        out.push(c.clone());
    }
    Ok(out)
}

fn combine(a: &Params, b: &Params, go: bool, path: &str) -> Result<Params, GeneratorError> {
    if go {
        let mut tmp = Value::Object(a.clone());
        fill_missing(&mut tmp, &Value::Object(b.clone()));
        return Ok(match tmp {
            Value::Object(m) => m,
            _ => Map::new(),
        });
    }
    let mut res: Params = a
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(go_fmt_value(v))))
        .collect();
    for (k, v) in b {
        let v = go_fmt_value(v);
        if let Some(cur) = res.get(k).and_then(Value::as_str)
            && cur != v
        {
            return Err(GeneratorError::Invalid {
                path: path.to_string(),
                reason: format!("found duplicate key {k} with different value, a: {cur} ,b: {v}"),
            });
        }
        res.insert(k.clone(), Value::String(v));
    }
    Ok(res)
}

/// Argo CD's `RenderGeneratorParams`: a generator's spec with every string (and object key)
/// rendered against `params`.
pub(crate) fn interpolate_generator(
    g: &ApplicationSetGenerator,
    params: &Params,
    opts: &Options,
    path: &str,
) -> Result<ApplicationSetGenerator, GeneratorError> {
    let err = |reason: String| GeneratorError::Interpolation {
        path: path.to_string(),
        reason,
    };
    let v = serde_json::to_value(g).map_err(|e| err(e.to_string()))?;
    let v = render_value(&v, params, opts.go_template, &opts.go_template_options)
        .map_err(|e| err(e.to_string()))?;
    serde_json::from_value(v).map_err(|e| err(format!("interpolated generator is invalid: {e}")))
}

/// Argo CD's `Render.Replace` for one string (generator `values`), by the template engine.
pub(crate) fn render_string(
    s: &str,
    params: &Params,
    go_template: bool,
    options: &[String],
) -> Result<String, String> {
    match render_value(&Value::String(s.to_string()), params, go_template, options) {
        Ok(Value::String(r)) => Ok(r),
        Ok(other) => Ok(go_fmt_value(&other)),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generators::testing::{FakeInputs, flat, go, obj};
    use crate::generators::{ClusterInfo, generate_one};
    use serde_json::json;

    fn gen_(v: Value) -> ApplicationSetGenerator {
        serde_json::from_value(v).unwrap_or_default()
    }

    fn inputs() -> FakeInputs {
        let mut i = FakeInputs::with_clusters(vec![
            ClusterInfo {
                name: "staging".into(),
                server: "https://staging".into(),
                labels: [("env".to_string(), "staging".to_string())].into(),
                ..Default::default()
            },
            ClusterInfo {
                name: "prod".into(),
                server: "https://prod".into(),
                labels: [("env".to_string(), "prod".to_string())].into(),
                ..Default::default()
            },
        ]);
        i.dirs = vec![
            "apps".into(),
            "apps/guestbook".into(),
            "apps/helm-guestbook".into(),
        ];
        i.files = vec![
            (
                "config/staging/config.json".into(),
                br#"{"replicas": "1"}"#.to_vec(),
            ),
            (
                "config/prod/config.json".into(),
                br#"{"replicas": "3"}"#.to_vec(),
            ),
        ];
        i
    }

    #[test]
    fn documented_git_times_clusters_fasttemplate() -> Result<(), GeneratorError> {
        // Generators-Matrix: git directories × clusters.
        let g = gen_(json!({"matrix": {"generators": [
            {"git": {"repoURL": "r", "revision": "HEAD", "directories": [{"path": "apps/*"}]}},
            {"clusters": {"selector": {"matchLabels": {"env": "staging"}}}}
        ]}}));
        let out = generate_one(&g, &flat(), &inputs(), "g")?;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            obj(json!({
                "path": "apps/guestbook", "path.basename": "guestbook", "path.basenameNormalized": "guestbook",
                "path[0]": "apps", "path[1]": "guestbook",
                "name": "staging", "nameNormalized": "staging", "server": "https://staging",
                "metadata.labels.env": "staging"
            }))
        );
        Ok(())
    }

    #[test]
    fn second_child_uses_first_params_both_modes() -> Result<(), GeneratorError> {
        // Generators-Matrix: "Using Parameters from one child generator in another".
        let g = gen_(json!({"matrix": {"generators": [
            {"clusters": {}},
            {"git": {"repoURL": "r", "revision": "HEAD", "files": [{"path": "config/{{name}}/config.json"}]}}
        ]}}));
        let out = generate_one(&g, &flat(), &inputs(), "g")?;
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].get("replicas"), Some(&json!("1")));
        assert_eq!(out[1].get("replicas"), Some(&json!("3")));
        assert_eq!(out[1].get("path"), Some(&json!("config/prod")));

        let g = gen_(json!({"matrix": {"generators": [
            {"clusters": {}},
            {"list": {"elements": [{"ns": "{{ .name }}-ns", "seg": "{{ index .metadata.labels \"env\" }}"}]}}
        ]}}));
        let out = generate_one(&g, &go(), &inputs(), "g")?;
        assert_eq!(out[1].get("ns"), Some(&json!("prod-ns")));
        assert_eq!(out[1].get("seg"), Some(&json!("prod")));
        assert_eq!(
            out[1].get("metadata"),
            Some(&json!({"labels": {"env": "prod"}}))
        );
        Ok(())
    }

    #[test]
    fn nesting_and_selectors() -> Result<(), GeneratorError> {
        let nested = |apply: bool| -> Result<usize, GeneratorError> {
            let g = gen_(json!({"matrix": {"generators": [
                {"list": {"elements": [{"a": "1"}, {"a": "2"}]}},
                {"matrix": {"generators": [
                    {"list": {"elements": [{"b": "x"}, {"b": "y"}]}, "selector": {"matchLabels": {"b": "x"}}},
                    {"list": {"elements": [{"c": "z"}]}}
                ]}}
            ]}}));
            let opts = Options {
                apply_nested_selectors: apply,
                ..flat()
            };
            Ok(generate_one(&g, &opts, &inputs(), "g")?.len())
        };
        assert_eq!(nested(false)?, 4);
        assert_eq!(nested(true)?, 2);

        let too_deep = gen_(json!({"matrix": {"generators": [
            {"list": {"elements": [{"a": "1"}]}},
            {"merge": {"mergeKeys": ["a"], "generators": [
                {"matrix": {"generators": [{"list": {"elements": []}}, {"list": {"elements": []}}]}},
                {"list": {"elements": []}}
            ]}}
        ]}}));
        assert!(matches!(
            generate_one(&too_deep, &flat(), &inputs(), "g"),
            Err(GeneratorError::TooDeep { .. })
        ));
        // A top-level selector on the matrix filters the product.
        let g = gen_(json!({"matrix": {"generators": [
            {"list": {"elements": [{"a": "1"}, {"a": "2"}]}},
            {"list": {"elements": [{"b": "x"}]}}
        ]}, "selector": {"matchLabels": {"a": "2"}}}));
        assert_eq!(
            generate_one(&g, &flat(), &inputs(), "g")?,
            vec![obj(json!({"a": "2", "b": "x"}))]
        );
        Ok(())
    }

    #[test]
    fn errors() {
        let one = gen_(json!({"matrix": {"generators": [{"list": {"elements": []}}]}}));
        assert!(generate_one(&one, &flat(), &inputs(), "g").is_err());
        let three = gen_(json!({"matrix": {"generators": [
            {"list": {"elements": []}}, {"list": {"elements": []}}, {"list": {"elements": []}}]}}));
        assert!(generate_one(&three, &flat(), &inputs(), "g").is_err());
        let conflict = gen_(json!({"matrix": {"generators": [
            {"list": {"elements": [{"a": "1"}]}}, {"list": {"elements": [{"a": "2"}]}}]}}));
        assert!(generate_one(&conflict, &flat(), &inputs(), "g").is_err());
        let same = gen_(json!({"matrix": {"generators": [
            {"list": {"elements": [{"a": "1"}]}}, {"list": {"elements": [{"a": "1"}]}}]}}));
        assert!(generate_one(&same, &flat(), &inputs(), "g").is_ok());
        let unsupported = gen_(json!({"matrix": {"generators": [
            {"list": {"elements": [{"a": "1"}]}}, {"plugin": {"configMapRef": {"name": "p"}}}]}}));
        assert!(matches!(
            generate_one(&unsupported, &flat(), &inputs(), "g"),
            Err(GeneratorError::Unsupported { .. })
        ));
    }

    #[test]
    fn interpolation_renders_strings_and_keys() -> Result<(), GeneratorError> {
        let p = obj(json!({"name": "a", "n": 1, "path": {"segments": ["x", "y"]}}));
        let g = gen_(json!({"list": {"elements": [{"{{name}}": "{{name}}-{{n}}-{{missing}}"}]}}));
        let i = interpolate_generator(&g, &p, &flat(), "g")?;
        let el = i.list.map(|l| l.elements).unwrap_or_default();
        assert_eq!(el, vec![json!({"a": "a-{{n}}-{{missing}}"})]);
        let g =
            gen_(json!({"list": {"elements": [{"s": "{{ index .path.segments 1 | upper }}"}]}}));
        let i = interpolate_generator(&g, &p, &go(), "g")?;
        let el = i.list.map(|l| l.elements).unwrap_or_default();
        assert_eq!(el, vec![json!({"s": "Y"})]);
        let bad = gen_(json!({"list": {"elements": [{"s": "{{ .name"}]}}));
        assert!(matches!(
            interpolate_generator(&bad, &p, &go(), "g"),
            Err(GeneratorError::Interpolation { .. })
        ));
        Ok(())
    }
}
