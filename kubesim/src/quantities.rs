//! Resource quantities as a real API server stores them: every field the kind's schema types
//! as a `Quantity` is put in canonical form (`1000m` → `1`, `1024Mi` → `1Gi`, a number → a
//! string), and a value that is not a quantity is refused, as Go's decoder refuses it.

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use super::resources::ResourceType;

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Canonicalize the quantities of a built-in object in place.
pub fn canonicalize(rt: &ResourceType, obj: &mut Value) -> ApiResult<()> {
    let Some(built) = super::openapi::builtin_definitions(&rt.group, &rt.kind) else {
        return Ok(());
    };
    let Some(root) = built.definitions.get(&built.name) else {
        return Ok(());
    };
    walk(obj, root, &built.definitions, &mut String::new(), rt)
}

fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> (&'a Value, Option<&'a str>) {
    match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
    {
        Some(name) => (defs.get(name).unwrap_or(schema), Some(name)),
        None => match schema
            .get("allOf")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            Some(inner) => resolve(inner, defs),
            None => (schema, None),
        },
    }
}

fn walk(
    v: &mut Value,
    schema: &Value,
    defs: &Map<String, Value>,
    path: &mut String,
    rt: &ResourceType,
) -> ApiResult<()> {
    let (schema, name) = resolve(schema, defs);
    if name == Some(QUANTITY) {
        return canonical(v, path, rt);
    }
    // `path` (`a.b[0]`, for errors) grows and shrinks in place as the walk goes.
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            if props.is_none() && extra.is_none() {
                return Ok(());
            }
            for (k, child) in m.iter_mut() {
                if let Some(s) = props.and_then(|p| p.get(k)).or(extra) {
                    let len = path.len();
                    if len > 0 {
                        path.push('.');
                    }
                    path.push_str(k);
                    walk(child, s, defs, path, rt)?;
                    path.truncate(len);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, s, defs, path, rt)?;
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn canonical(v: &mut Value, path: &str, rt: &ResourceType) -> ApiResult<()> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Null => return Ok(()),
        _ => String::new(),
    };
    match flotilla_core::quantity::canonical(&text) {
        Some(c) => {
            *v = Value::String(c);
            Ok(())
        }
        None => Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {path}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            kind = rt.kind,
            version = rt.version
        ))),
    }
}
