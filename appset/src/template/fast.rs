//! fasttemplate mode: Argo CD's `{{param}}` substitution over flattened string parameters.

use serde_json::{Map, Value};

use super::TemplateError;

/// Argo CD's `isTemplatedRegex` (`.*{{.*}}.*`): some line holds `{{` followed by `}}`.
fn looks_templated(s: &str) -> bool {
    s.split('\n').any(|line| {
        line.find("{{")
            .is_some_and(|i| line[i + 2..].contains("}}"))
    })
}

/// Replaces `{{tag}}` by the string parameter named by the trimmed tag; any other tag (empty,
/// unknown, or naming a non-string parameter) is written back exactly as it was.
pub(super) fn render(s: &str, params: &Map<String, Value>) -> Result<String, TemplateError> {
    if !looks_templated(s) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError::UnclosedTag {
                template: s.to_string(),
            });
        };
        let tag = &after[..end];
        let trimmed = tag.trim();
        match params.get(trimmed) {
            Some(Value::String(v)) if !trimmed.is_empty() => out.push_str(v),
            _ => {
                out.push_str("{{");
                out.push_str(tag);
                out.push_str("}}");
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}
