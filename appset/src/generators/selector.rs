//! Kubernetes label selectors (`matchLabels`, `matchExpressions` with `In`, `NotIn`, `Exists`,
//! `DoesNotExist`) over cluster Secret labels and over flattened parameter sets.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::types::LabelSelector;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; an empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Req>,
}

impl Selector {
    /// Parses `s`. `validate_values` applies Kubernetes' label-value syntax to `matchLabels`
    /// and `In`/`NotIn` values (the cluster generator does; the generator-level post-filter,
    /// Argo CD's own copy of `LabelSelectorAsSelector`, does not, so URLs can be matched).
    pub fn parse(s: &LabelSelector, validate_values: bool) -> Result<Self, String> {
        if let Some(k) = s.extra.keys().next() {
            return Err(format!("unknown selector field {k:?}"));
        }
        let mut reqs = Vec::new();
        for (k, v) in &s.match_labels {
            check_key(k)?;
            if validate_values {
                check_value(v)?;
            }
            reqs.push(Req::In(k.clone(), vec![v.clone()]));
        }
        for e in &s.match_expressions {
            check_key(&e.key)?;
            let r = match e.operator.as_str() {
                "In" | "NotIn" => {
                    if e.values.is_empty() {
                        return Err(format!(
                            "for 'in', 'notin' operators, values set can't be empty (key {:?})",
                            e.key
                        ));
                    }
                    if validate_values {
                        for v in &e.values {
                            check_value(v)?;
                        }
                    }
                    if e.operator == "In" {
                        Req::In(e.key.clone(), e.values.clone())
                    } else {
                        Req::NotIn(e.key.clone(), e.values.clone())
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !e.values.is_empty() {
                        return Err(format!(
                            "values set must be empty for exists and does not exist (key {:?})",
                            e.key
                        ));
                    }
                    if e.operator == "Exists" {
                        Req::Exists(e.key.clone())
                    } else {
                        Req::DoesNotExist(e.key.clone())
                    }
                }
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            reqs.push(r);
        }
        Ok(Self { reqs })
    }

    /// True when there is no requirement.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Matches a label lookup.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.reqs.iter().all(|r| match r {
            Req::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Req::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
            Req::Exists(k) => get(k).is_some(),
            Req::DoesNotExist(k) => get(k).is_none(),
        })
    }

    /// Matches a flattened parameter set (only string values count as labels).
    pub fn matches(&self, flat: &Map<String, Value>) -> bool {
        self.matches_with(|k| flat.get(k).and_then(Value::as_str))
    }

    /// Matches a label map.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }
}

fn check_key(k: &str) -> Result<(), String> {
    let name = k.rsplit_once('/').map_or(k, |(_, n)| n);
    if name.is_empty() || name.len() > 63 || k.len() > 316 {
        return Err(format!("invalid label key {k:?}"));
    }
    Ok(())
}

fn check_value(v: &str) -> Result<(), String> {
    let ok = v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid label value {v:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LabelSelectorRequirement;
    use serde_json::json;

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn operators() -> Result<(), String> {
        let s = LabelSelector {
            match_labels: [("env".to_string(), "prod".to_string())].into(),
            match_expressions: vec![
                req("tier", "In", &["a", "b"]),
                req("skip", "NotIn", &["yes"]),
                req("owner", "Exists", &[]),
                req("legacy", "DoesNotExist", &[]),
            ],
            ..Default::default()
        };
        let sel = Selector::parse(&s, true)?;
        let mut l: BTreeMap<String, String> = [("env", "prod"), ("tier", "b"), ("owner", "x")]
            .map(|(a, b)| (a.into(), b.into()))
            .into();
        assert!(sel.matches_labels(&l));
        l.insert("skip".into(), "yes".into());
        assert!(!sel.matches_labels(&l));
        l.remove("skip");
        l.insert("legacy".into(), "1".into());
        assert!(!sel.matches_labels(&l));
        Ok(())
    }

    #[test]
    fn errors_and_unvalidated_values() {
        let bad_op = LabelSelector {
            match_expressions: vec![req("a", "Gt", &["1"])],
            ..Default::default()
        };
        assert!(Selector::parse(&bad_op, false).is_err());
        let empty_in = LabelSelector {
            match_expressions: vec![req("a", "In", &[])],
            ..Default::default()
        };
        assert!(Selector::parse(&empty_in, false).is_err());
        let url = LabelSelector {
            match_labels: [(
                "server".to_string(),
                "https://kubernetes.default.svc".to_string(),
            )]
            .into(),
            ..Default::default()
        };
        assert!(Selector::parse(&url, true).is_err());
        let Ok(sel) = Selector::parse(&url, false) else {
            panic!("url selector")
        };
        let Value::Object(p) = json!({"server": "https://kubernetes.default.svc"}) else {
            return;
        };
        assert!(sel.matches(&p));
    }
}
