//! Label and field selectors: parsing the query-string syntax the API server accepts and
//! matching objects against it (`=`, `==`, `!=`, `in`, `notin`, exists, `!exists`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::stored::Meta;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (all requirements must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

/// A parsed field selector: `(path, equals?, value)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

/// A selector the server refuses (answered with 400 BadRequest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        self.matches_with(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }

    /// Match labels looked up by `get`.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.contains(x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.is_empty() || self.matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }

    /// Match a stored object by its parsed labels.
    pub fn matches_meta(&self, meta: &Meta) -> bool {
        self.is_empty() || self.matches_with(|k| meta.label(k))
    }
}

/// Split on commas that are not inside `( )`.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        validate_key(key)?;
        return Ok(Requirement::NotExists(key.into()));
    }
    for (op, neg) in [("!=", true), ("==", false), ("=", false)] {
        if let Some(i) = part.find(op) {
            let key = part[..i].trim();
            let value = part[i + op.len()..].trim();
            validate_key(key)?;
            validate_value(value)?;
            return Ok(if neg {
                Requirement::NotEq(key.into(), value.into())
            } else {
                Requirement::Eq(key.into(), value.into())
            });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words.as_slice() {
        let rest = rest.trim_start();
        let (set_op, tail) = if let Some(t) = rest.strip_prefix("notin") {
            ("notin", t)
        } else if let Some(t) = rest.strip_prefix("in") {
            ("in", t)
        } else {
            return Err(SelectorError(format!(
                "unable to parse requirement: found '{rest}', expected: in, notin, =, ==, !=, gt, lt"
            )));
        };
        let tail = tail.trim();
        let inner = tail
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .ok_or_else(|| {
                SelectorError(format!(
                    "unable to parse requirement: found '{tail}', expected: '('"
                ))
            })?;
        validate_key(key)?;
        let mut values = BTreeSet::new();
        for v in inner.split(',').filter(|_| !inner.trim().is_empty()) {
            let v = v.trim();
            validate_value(v)?;
            values.insert(v.to_string());
        }
        if values.is_empty() {
            return Err(SelectorError(
                "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty".into(),
            ));
        }
        return Ok(if set_op == "in" {
            Requirement::In((*key).into(), values)
        } else {
            Requirement::NotIn((*key).into(), values)
        });
    }
    validate_key(part)?;
    Ok(Requirement::Exists(part.into()))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A qualified name: `[prefix/]name`, name ≤ 63 chars, alphanumeric at both ends.
fn validate_key(key: &str) -> Result<(), SelectorError> {
    let name = key.rsplit_once('/').map_or(
        key,
        |(prefix, name)| {
            if prefix.is_empty() { "" } else { name }
        },
    );
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(is_name_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(SelectorError(format!(
            "unable to parse requirement: key: Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )))
    }
}

fn validate_value(v: &str) -> Result<(), SelectorError> {
    let ok = v.is_empty()
        || (v.len() <= 63
            && v.chars().all(is_name_char)
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(SelectorError(format!(
            "unable to parse requirement: values[0]: Invalid value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )))
    }
}

impl FieldSelector {
    /// Parse, accepting only the fields the kind supports (`metadata.name`, `metadata.namespace`
    /// for every kind, plus `extra`).
    pub fn parse(s: &str, extra: &[&str]) -> Result<Self, SelectorError> {
        let mut out = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if field != "metadata.name" && field != "metadata.namespace" && !extra.contains(&field)
            {
                return Err(SelectorError(format!("field label not supported: {field}")));
            }
            out.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(Self(out))
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = obj.pointer(&pointer).map_or(String::new(), |v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            (actual == *value) == *eq
        })
    }

    /// Match a stored object by the fields parsed when it was written.
    pub fn matches_meta(&self, meta: &Meta) -> bool {
        self.0
            .iter()
            .all(|(field, eq, value)| (meta.field(field) == value) == *eq)
    }
}

/// Extra field-selector fields a kind supports, as the real server registers them.
pub fn extra_fields(group: &str, plural: &str) -> &'static [&'static str] {
    match (group, plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        // events.k8s.io/v1 names them after its own fields (the real server converts them to
        // the core ones over the shared storage).
        ("events.k8s.io", "events") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("batch", "jobs") => &["status.successful"],
        ("", "nodes") => &["spec.unschedulable"],
        _ => &[],
    }
}

/// Whether a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`) selects
/// `labels`. An empty selector selects everything; a malformed one nothing.
pub fn object_selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(m) = selector.get("matchLabels").and_then(Value::as_object)
        && !m
            .iter()
            .all(|(k, v)| v.as_str().is_some() && label(k) == v.as_str())
    {
        return false;
    }
    let Some(exprs) = selector.get("matchExpressions") else {
        return true;
    };
    let Some(exprs) = exprs.as_array() else {
        return false;
    };
    exprs.iter().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => label(key).is_some_and(|v| values.contains(&v)),
            Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
            Some("Exists") => label(key).is_some(),
            Some("DoesNotExist") => label(key).is_none(),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(selector: &str, labels: Value, expected: bool) {
        let sel = LabelSelector::parse(selector).expect("parses");
        assert_eq!(
            sel.matches(labels.as_object()),
            expected,
            "{selector} on {labels}"
        );
    }

    #[test]
    fn label_selector_operators() {
        let l = json!({"app": "web", "tier": "front"});
        check("app=web", l.clone(), true);
        check("app==web", l.clone(), true);
        check("app!=web", l.clone(), false);
        check("app!=db", l.clone(), true);
        check("missing!=x", l.clone(), true);
        check("app in (web, db)", l.clone(), true);
        check("app notin (web)", l.clone(), false);
        check("missing notin (web)", l.clone(), true);
        check("tier", l.clone(), true);
        check("!tier", l.clone(), false);
        check("!gone", l.clone(), true);
        check("app=web,tier in (front,back),!gone", l.clone(), true);
        check("app=web,tier=back", l, false);
    }

    #[test]
    fn bad_label_selectors_are_refused() {
        for bad in ["app in web", "a b c", "app=we b", "-bad=x", "app in ()"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn field_selector_matches_metadata_and_refuses_unknown_fields() {
        let obj =
            json!({"metadata": {"name": "a", "namespace": "ns1"}, "status": {"phase": "Running"}});
        let sel =
            FieldSelector::parse("metadata.name=a,metadata.namespace!=ns2", &[]).expect("parses");
        assert!(sel.matches_object(&obj));
        let sel = FieldSelector::parse("status.phase=Running", extra_fields("", "pods"))
            .expect("pods support status.phase");
        assert!(sel.matches_object(&obj));
        assert!(FieldSelector::parse("status.phase=Running", &[]).is_err());
    }

    #[test]
    fn stored_objects_match_as_their_values_do() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns1", "labels": {"app": "web"}},
                         "status": {"phase": "Running"}, "spec": {"priority": 2}});
        let stored = super::super::stored::Obj::new(&obj, extra_fields("", "pods"));
        for (labels, fields) in [
            ("app=web", "metadata.name=a,status.phase=Running"),
            ("app in (db)", "metadata.namespace!=ns1"),
            ("!app", "spec.nodeName="),
            ("", "status.podIP!=x,status.phase!=Running"),
        ] {
            let l = LabelSelector::parse(labels).expect("labels");
            let f = FieldSelector::parse(fields, extra_fields("", "pods")).expect("fields");
            assert_eq!(
                l.matches_meta(stored.meta()),
                l.matches_object(&obj),
                "{labels}"
            );
            assert_eq!(
                f.matches_meta(stored.meta()),
                f.matches_object(&obj),
                "{fields}"
            );
        }
    }
}
