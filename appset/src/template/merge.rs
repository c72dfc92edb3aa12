//! Template merging: a generator's `template` over the set's (Argo CD's `mergo.Merge` without
//! override) and the rendered `templatePatch` over a rendered Application.

use serde_json::{Map, Value};

use super::TemplateError;

/// A generator's `template` (`over`) overriding the set's (`base`), as Argo CD's
/// `mergeGeneratorTemplate` does with `mergo.Merge(generatorTemplate, setTemplate)`: objects
/// merge key by key, recursively; any other value set in the generator's template wins unless it
/// is Go's zero value (`null`, `""`, `false`, `0`, an empty list), in which case the set's value
/// fills it. Lists are never merged element by element.
pub fn merge_template(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            let mut out = o.clone();
            for (k, bv) in b {
                let merged = match out.get(k) {
                    None => bv.clone(),
                    Some(ov) => merge_template(bv, ov),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (_, o) if is_zero(o) => base.clone(),
        (_, o) => o.clone(),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
    }
}

/// Applies a rendered `templatePatch` to `app`: YAML or JSON; an object is a strategic merge
/// patch, a list an RFC 6902 JSON patch, blank text no patch. `spec.project` is restored after.
pub(super) fn apply_template_patch(app: &mut Value, patch: &str) -> Result<(), TemplateError> {
    if patch.trim().is_empty() {
        return Ok(());
    }
    let parsed: Value = if patch.trim_start().starts_with('{') {
        serde_json::from_str(patch).map_err(|e| TemplateError::InvalidPatch(e.to_string()))?
    } else {
        serde_yaml::from_str(patch).map_err(|e| TemplateError::InvalidPatch(e.to_string()))?
    };
    let project = app.pointer("/spec/project").cloned();
    match parsed {
        Value::Object(p) => strategic_merge(app, &p)?,
        Value::Array(_) => {
            let ops: json_patch::Patch = serde_json::from_value(parsed)
                .map_err(|e| TemplateError::InvalidPatch(e.to_string()))?;
            json_patch::patch(app, &ops).map_err(|e| TemplateError::InvalidPatch(e.to_string()))?;
        }
        Value::Null => {}
        other => {
            return Err(TemplateError::InvalidPatch(format!(
                "expected an object or a list of operations, got {other}"
            )));
        }
    }
    if !app.is_object() {
        return Err(TemplateError::InvalidPatch(
            "the patched Application is not an object".into(),
        ));
    }
    // Argo CD: "Prevent changes to the `project` field".
    if let Some(Value::Object(spec)) = app.get_mut("spec") {
        match project {
            Some(p) => {
                spec.insert("project".into(), p);
            }
            None => {
                spec.remove("project");
            }
        }
    }
    Ok(())
}

/// Strategic merge patch for a type without list merge keys (Argo CD's Application): maps
/// merge, `null` deletes, lists and scalars replace; `$patch: replace` replaces a map,
/// `$patch: delete` removes it.
fn strategic_merge(target: &mut Value, patch: &Map<String, Value>) -> Result<(), TemplateError> {
    match patch.get("$patch") {
        None | Some(Value::Null) => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "replace" => {
            let mut fresh = Value::Object(Map::new());
            let mut rest = patch.clone();
            rest.remove("$patch");
            strategic_merge(&mut fresh, &rest)?;
            *target = fresh;
            return Ok(());
        }
        Some(other) => {
            return Err(TemplateError::InvalidPatch(format!(
                "unsupported $patch directive {other}"
            )));
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(obj) = target else {
        return Ok(());
    };
    for (k, v) in patch {
        if k == "$patch" {
            continue;
        }
        if k.starts_with('$') {
            return Err(TemplateError::InvalidPatch(format!(
                "unsupported strategic merge directive {k:?}"
            )));
        }
        match v {
            Value::Null => {
                obj.remove(k);
            }
            Value::Object(p) => {
                if p.get("$patch").and_then(Value::as_str) == Some("delete") {
                    obj.remove(k);
                    continue;
                }
                let entry = obj
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                strategic_merge(entry, p)?;
            }
            other => {
                obj.insert(k.clone(), other.clone());
            }
        }
    }
    Ok(())
}
