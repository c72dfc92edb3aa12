//! Value helpers shared by the generators: Go's `%v` formatting, Argo CD's `SanitizeName`,
//! dot-style flattening (jeremywohl/flatten) and mergo-like merges of parameter maps.

use serde_json::{Map, Value};

/// Go's `fmt.Sprintf("%v", v)` for a value decoded from JSON/YAML by Go (numbers are
/// `float64`, so `1000000` prints as `1e+06`), used where Argo CD stringifies parameters.
pub fn go_fmt_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), go_float),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_fmt_value).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_fmt_value(&m[k.as_str()])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)` (what `%v` prints for a float64).
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, like Go's shortest mode.
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat(usize::try_from(-exp - 1).unwrap_or(0));
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = usize::try_from(exp + 1).unwrap_or(1);
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        let (i, fr) = digits.split_at(int_len);
        format!("{sign}{i}.{fr}")
    }
}

/// Argo CD's `utils.SanitizeName`: lowercase, every character outside `[-a-z0-9.]` becomes
/// `-`, at most 253 bytes, leading/trailing `-` and `.` trimmed.
pub fn sanitize_name(name: &str) -> String {
    let lowered = name.to_lowercase();
    let mut out: String = lowered
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(253);
    out.trim_matches(|c| c == '-' || c == '.').to_string()
}

/// jeremywohl/flatten's `DotStyle` followed by `%v` on the leaves: how Argo CD turns nested
/// parameters into labels for a generator `selector`, and Git file content into flat params.
pub fn flatten_params(p: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in p {
        flatten_into(&mut out, k, v);
    }
    out
}

fn flatten_into(out: &mut Map<String, Value>, key: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten_into(out, &format!("{key}.{k}"), v);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_into(out, &format!("{key}.{i}"), v);
            }
        }
        leaf => {
            out.insert(key.to_string(), Value::String(go_fmt_value(leaf)));
        }
    }
}

/// Go's notion of an empty value for mergo (zero value of its type).
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !*b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// `mergo.Merge(&dst, src)`: keys missing or empty in `dst` are taken from `src`; nested
/// objects merge recursively; non-empty `dst` values win.
pub(crate) fn fill_missing(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, sv) in s {
                match d.get_mut(k) {
                    Some(dv) if dv.is_object() && sv.is_object() => fill_missing(dv, sv),
                    Some(dv) if !is_empty(dv) => {}
                    _ => {
                        d.insert(k.clone(), sv.clone());
                    }
                }
            }
        }
        (d, s) => {
            if is_empty(d) {
                *d = s.clone();
            }
        }
    }
}

/// `mergo.Merge(&dst, src, mergo.WithOverride)`: non-empty `src` values replace `dst`'s;
/// nested objects merge recursively.
pub(crate) fn override_with(dst: &mut Map<String, Value>, src: &Map<String, Value>) {
    for (k, sv) in src {
        match (dst.get_mut(k), sv) {
            (Some(Value::Object(d)), Value::Object(s)) => override_with(d, s),
            (Some(_), sv) if is_empty(sv) => {}
            _ => {
                dst.insert(k.clone(), sv.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_float_matches_go() {
        for (f, s) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (123456.0, "123456"),
            (1_000_000.0, "1e+06"),
            (1_234_567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (100.0, "100"),
        ] {
            assert_eq!(go_float(f), s, "{f}");
        }
        assert_eq!(go_fmt_value(&json!(null)), "<nil>");
        assert_eq!(go_fmt_value(&json!(true)), "true");
        assert_eq!(go_fmt_value(&json!(3)), "3");
    }

    #[test]
    fn sanitize_like_argo() {
        assert_eq!(sanitize_name("My_Cluster.Prod--"), "my-cluster.prod");
        assert_eq!(sanitize_name("in-cluster"), "in-cluster");
        assert_eq!(sanitize_name("-a b-"), "a-b");
        assert_eq!(sanitize_name(&"x".repeat(300)).len(), 253);
    }

    #[test]
    fn flatten_dot_style() {
        let p = json!({"a": {"b": 1, "c": [true, "x"]}, "d": "e"});
        let Value::Object(p) = p else { return };
        let f = flatten_params(&p);
        assert_eq!(
            Value::Object(f),
            json!({"a.b": "1", "a.c.0": "true", "a.c.1": "x", "d": "e"})
        );
    }

    #[test]
    fn merges() {
        let mut d = json!({"a": "", "b": "keep", "m": {"x": 1}});
        fill_missing(
            &mut d,
            &json!({"a": "fill", "b": "no", "m": {"y": 2}, "n": 3}),
        );
        assert_eq!(
            d,
            json!({"a": "fill", "b": "keep", "m": {"x": 1, "y": 2}, "n": 3})
        );
        let Value::Object(mut d) = json!({"a": "1", "m": {"x": 1, "y": 1}}) else {
            return;
        };
        let Value::Object(s) = json!({"a": "2", "m": {"y": 2}, "z": ""}) else {
            return;
        };
        override_with(&mut d, &s);
        assert_eq!(
            Value::Object(d),
            json!({"a": "2", "m": {"x": 1, "y": 2}, "z": ""})
        );
    }
}
