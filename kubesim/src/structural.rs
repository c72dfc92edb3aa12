//! Custom resources under their CRD's structural schema, as a real API server treats them:
//! defaults filled in, unknown fields pruned (unless `x-kubernetes-preserve-unknown-fields`),
//! wrong types, missing `required` fields and values outside an `enum` refused (422).

use serde_json::{Map, Value};

/// Why a custom resource does not fit its schema: `(field path, message)`.
pub type SchemaError = (String, String);

/// Apply `schema` (a version's `openAPIV3Schema`) to the custom resource `obj`: fill defaults,
/// prune unknown fields (returned as paths), check types, `required` and `enum`.
pub fn apply(schema: &Value, obj: &mut Value) -> Result<Vec<String>, SchemaError> {
    let mut pruned = Vec::new();
    let Some(map) = obj.as_object_mut() else {
        return Err((String::new(), "must be an object".into()));
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        // apiVersion, kind and metadata are the server's, whatever the schema says.
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(&key)) {
            Some(sub) => {
                if let Some(v) = map.get_mut(&key) {
                    walk(sub, v, &key, &mut pruned)?;
                }
            }
            None if preserves(schema) => {}
            None => {
                map.remove(&key);
                pruned.push(key);
            }
        }
    }
    fill_and_require(schema, map, "")?;
    Ok(pruned)
}

fn preserves(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(
    schema: &Value,
    v: &mut Value,
    path: &str,
    pruned: &mut Vec<String>,
) -> Result<(), SchemaError> {
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = type_name(v);
        let ok = got == want
            || (want == "number" && got == "integer")
            || (int_or_string && (got == "integer" || got == "string"))
            || (got == "null" && schema.get("nullable") == Some(&Value::Bool(true)));
        if !ok {
            return Err((
                path.to_string(),
                format!(
                    "Invalid value: \"{got}\": {path} in body must be of type {want}: \"{got}\""
                ),
            ));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        let list: Vec<String> = options.iter().map(Value::to_string).collect();
        return Err((
            path.to_string(),
            format!(
                "Unsupported value: {v}: supported values: {}",
                list.join(", ")
            ),
        ));
    }
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let here = format!("{path}.{key}");
                let sub = props
                    .and_then(|p| p.get(&key))
                    .or(additional.filter(|a| a.is_object()));
                match sub {
                    Some(sub) => {
                        if let Some(child) = map.get_mut(&key) {
                            walk(sub, child, &here, pruned)?;
                        }
                    }
                    None if preserves(schema) || additional == Some(&Value::Bool(true)) => {}
                    // An object schema with no properties at all (and no additionalProperties)
                    // only appears with preserve-unknown-fields in a structural schema; keep.
                    None if props.is_none()
                        && additional.is_none()
                        && schema.get("type").is_none() => {}
                    None => {
                        map.remove(&key);
                        pruned.push(here);
                    }
                }
            }
            fill_and_require(schema, map, path)?;
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), pruned)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Defaults for absent properties, then `required`.
fn fill_and_require(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &str,
) -> Result<(), SchemaError> {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            if !map.contains_key(k)
                && let Some(d) = sub.get("default")
            {
                map.insert(k.clone(), d.clone());
            }
        }
    }
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(r) {
            let at = if path.is_empty() {
                r.to_string()
            } else {
                format!("{path}.{r}")
            };
            return Err((at, "Required value".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer"},
                "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                "port": {"x-kubernetes-int-or-string": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}})
    }

    #[test]
    fn unknown_fields_are_pruned_defaults_filled_and_types_checked() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"size": 1, "port": "http", "bogus": true,
                     "free": {"anything": {"goes": 1}}, "labels": {"k": "v"}},
            "status": {"phase": "Ok", "extra": 1}, "top": 1});
        let pruned = apply(&schema(), &mut obj).expect("fits");
        assert_eq!(pruned, ["spec.bogus", "status.extra", "top"]);
        assert_eq!(obj["spec"]["mode"], "a", "default filled");
        assert_eq!(obj["spec"]["free"]["anything"]["goes"], 1, "preserved");
        let mut bad = json!({"spec": {"size": "three"}});
        let (path, msg) = apply(&schema(), &mut bad).expect_err("type");
        assert_eq!(path, "spec.size");
        assert!(msg.contains("must be of type integer"), "{msg}");
        let mut missing = json!({"spec": {}});
        assert_eq!(
            apply(&schema(), &mut missing).expect_err("required").0,
            "spec.size"
        );
        let mut off = json!({"spec": {"size": 1, "mode": "c"}});
        assert!(
            apply(&schema(), &mut off)
                .expect_err("enum")
                .1
                .contains("Unsupported value")
        );
    }
}
