//! The Sprig functions Argo CD's Go templates offer (`sprig.GenericFuncMap()` less `env`,
//! `expandenv`, `getHostByName`), plus Argo CD's `normalize`, `slugify`, `toYaml`, `fromYaml`
//! and `fromYamlArray`. Nondeterministic and key-generating functions are refused.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use gotmpl::{FuncMap, Value as GoValue};
use sha2::Digest as _;

use super::MAX_APPLICATION_BYTES;
use super::engine::{go_to_json, json_to_go};

/// Functions Argo CD deletes from Sprig's map.
pub(super) const REMOVED: &[&str] = &["env", "expandenv", "getHostByName"];

/// Sprig functions Argo CD offers that are not implemented here (time, randomness, crypto,
/// reflection and the rarer string helpers): refused at parse time.
pub(super) const UNSUPPORTED: &[&str] = &[
    "now",
    "date",
    "dateInZone",
    "date_in_zone",
    "dateModify",
    "date_modify",
    "mustDateModify",
    "ago",
    "duration",
    "durationRound",
    "htmlDate",
    "htmlDateInZone",
    "toDate",
    "mustToDate",
    "unixEpoch",
    "randAlpha",
    "randAlphaNum",
    "randAscii",
    "randNumeric",
    "randBytes",
    "randInt",
    "uuidv4",
    "shuffle",
    "genPrivateKey",
    "genCA",
    "genCAWithKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "buildCustomCert",
    "derivePassword",
    "encryptAES",
    "decryptAES",
    "bcrypt",
    "htpasswd",
    "sha1sum",
    "adler32sum",
    "b32enc",
    "b32dec",
    "semver",
    "typeOf",
    "typeIs",
    "typeIsLike",
    "deepEqual",
    "base",
    "dir",
    "ext",
    "clean",
    "isAbs",
    "osBase",
    "osDir",
    "osExt",
    "osClean",
    "osIsAbs",
    "urlParse",
    "urlJoin",
    "camelcase",
    "snakecase",
    "kebabcase",
    "swapcase",
    "wrap",
    "wrapWith",
    "abbrev",
    "abbrevboth",
    "initials",
    "untitle",
    "tpl",
    "toDecimal",
    "biggest",
    "seq",
    "chunk",
    "mustChunk",
    "sortAlpha",
    "getHostByName",
    "hello",
    "randChoice",
];

const MAX_LIST_LEN: usize = 100_000;

type R = gotmpl::Result<GoValue>;

fn fail(msg: impl Into<String>) -> gotmpl::TemplateError {
    gotmpl::TemplateError::Exec(msg.into())
}

fn arity(name: &str, args: &[GoValue], n: usize) -> Result<(), gotmpl::TemplateError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(gotmpl::TemplateError::ArgCount {
            name: name.to_string(),
            expected: n,
            got: args.len(),
        })
    }
}

fn arg(args: &[GoValue], i: usize) -> &GoValue {
    args.get(i).unwrap_or(&GoValue::Nil)
}

/// Sprig's `strval`: strings as they are, anything else as Go's `%v` prints it.
fn strval(v: &GoValue) -> String {
    match v {
        GoValue::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

fn string(s: String) -> R {
    if s.len() > MAX_APPLICATION_BYTES {
        return Err(fail(format!(
            "result exceeds {MAX_APPLICATION_BYTES} bytes"
        )));
    }
    Ok(GoValue::String(s.into()))
}

fn list(items: Vec<GoValue>) -> R {
    if items.len() > MAX_LIST_LEN {
        return Err(fail(format!("list exceeds {MAX_LIST_LEN} items")));
    }
    Ok(GoValue::List(items.into()))
}

fn map(m: BTreeMap<Arc<str>, GoValue>) -> R {
    Ok(GoValue::Map(Arc::new(m)))
}

/// `cast.ToInt64` as Sprig uses it: strings parsed with base prefixes, failures give 0.
fn to_i64(v: &GoValue) -> i64 {
    match v {
        GoValue::Int(i) => *i,
        GoValue::Uint(u) => *u as i64,
        GoValue::Float(f) => *f as i64,
        GoValue::Bool(b) => i64::from(*b),
        GoValue::String(s) => parse_go_int(s.trim()).unwrap_or(0),
        _ => 0,
    }
}

fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let body = body.replace('_', "");
    let (radix, digits) = if let Some(d) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, d.to_string())
    } else if let Some(d) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, d.to_string())
    } else if let Some(d) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, d.to_string())
    } else if body.len() > 1 && body.starts_with('0') {
        (8, body[1..].to_string())
    } else {
        (10, body)
    };
    let n = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { n.wrapping_neg() } else { n })
}

fn to_f64(v: &GoValue) -> f64 {
    match v {
        GoValue::Int(i) => *i as f64,
        GoValue::Uint(u) => *u as f64,
        GoValue::Float(f) => *f,
        GoValue::Bool(b) => f64::from(u8::from(*b)),
        GoValue::String(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Sprig's `empty`: Go's zero values and empty collections.
fn is_empty(v: &GoValue) -> bool {
    !v.is_truthy()
}

fn as_list(name: &str, v: &GoValue) -> Result<Vec<GoValue>, gotmpl::TemplateError> {
    match v {
        GoValue::List(l) => Ok(l.to_vec()),
        GoValue::Nil => Ok(Vec::new()),
        other => Err(fail(format!(
            "{name}: cannot find slice in type {}",
            other.type_name()
        ))),
    }
}

fn as_map(name: &str, v: &GoValue) -> Result<BTreeMap<Arc<str>, GoValue>, gotmpl::TemplateError> {
    match v {
        GoValue::Map(m) => Ok((**m).clone()),
        GoValue::Nil => Ok(BTreeMap::new()),
        other => Err(fail(format!(
            "{name}: expected a map, got {}",
            other.type_name()
        ))),
    }
}

/// Sprig's `strslice`: a list's non-nil items as strings, anything else as one string.
fn strslice(v: &GoValue) -> Vec<String> {
    match v {
        GoValue::List(l) => l
            .iter()
            .filter(|x| !matches!(x, GoValue::Nil))
            .map(strval)
            .collect(),
        GoValue::Nil => Vec::new(),
        other => vec![strval(other)],
    }
}

fn values_equal(a: &GoValue, b: &GoValue) -> bool {
    match (go_to_json(a), go_to_json(b)) {
        (Ok(x), Ok(y)) => x == y || (to_json_num(&x) == to_json_num(&y) && x.is_number()),
        _ => false,
    }
}

fn to_json_num(v: &serde_json::Value) -> Option<f64> {
    v.as_f64()
}

fn regex(pattern: &str) -> Result<regex::Regex, gotmpl::TemplateError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| fail(format!("error parsing regexp: {e}")))
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `strings.Title`.
fn title(s: &str) -> String {
    let is_sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphanumeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut prev_sep = true;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = is_sep(c);
    }
    out
}

/// Argo CD's `normalize` (`SanitizeName`): lowercase, `[^-a-z0-9.]` to `-`, at most 253 bytes,
/// no leading or trailing `-` or `.`.
pub(super) fn normalize(name: &str) -> String {
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
    // Every char is ASCII now except replaced multibyte ones, which became '-'.
    out.truncate(253);
    out.trim_matches(|c| c == '-' || c == '.').to_string()
}

/// Argo CD's `slugify [maxSize] [smartTruncate] name`: `normalize`, then gosimple/slug's `Make`
/// (only `[a-z0-9-_]`, dashes collapsed and trimmed) and truncation to `maxSize` (default 50),
/// at the last dash before the limit when smart truncation is on (the default).
pub(super) fn slugify(name: &str, max: usize, smart: bool) -> String {
    let sanitized = normalize(name);
    let mut slug = String::with_capacity(sanitized.len());
    for c in sanitized.chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            c
        } else {
            '-'
        };
        if c == '-' && slug.ends_with('-') {
            continue;
        }
        slug.push(c);
    }
    let slug = slug.trim_matches(|c| c == '-' || c == '_').to_string();
    if max == 0 || slug.len() <= max {
        return slug;
    }
    if smart {
        let bytes = slug.as_bytes();
        for i in (0..=max).rev() {
            if bytes.get(i) == Some(&b'-') {
                return slug[..i].to_string();
            }
        }
    }
    slug[..max].trim_end_matches('-').to_string()
}

/// Masterminds' `semverCompare constraint version`.
fn semver_compare(constraint: &str, version: &str) -> Result<bool, String> {
    let version = parse_version(version)?;
    for group in constraint.split("||") {
        let tokens: Vec<String> = group
            .replace(',', " ")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut comparators: Vec<String> = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let t = &tokens[i];
            if tokens.get(i + 1).map(String::as_str) == Some("-") && i + 2 < tokens.len() {
                comparators.push(format!(">={t}"));
                comparators.push(format!("<={}", tokens[i + 2]));
                i += 3;
                continue;
            }
            if t.chars().all(|c| "=!<>~^".contains(c)) && i + 1 < tokens.len() {
                comparators.push(format!("{t}{}", tokens[i + 1]));
                i += 2;
                continue;
            }
            comparators.push(t.clone());
            i += 1;
        }
        if comparators.is_empty() {
            return Err(format!("improper constraint: {constraint}"));
        }
        let mut all = true;
        for c in &comparators {
            if !comparator_matches(c, &version)? {
                all = false;
                break;
            }
        }
        if all {
            return Ok(true);
        }
    }
    Ok(false)
}

fn comparator_matches(c: &str, version: &semver::Version) -> Result<bool, String> {
    let op_len = c.find(|ch: char| !"=!<>~^".contains(ch)).unwrap_or(c.len());
    let (op, v) = c.split_at(op_len);
    let v = v.trim_start_matches(['v', 'V']).replace(['x', 'X'], "*");
    let (negate, op) = match op {
        "" | "=" | "==" => (false, "="),
        "!=" => (true, "="),
        "~>" => (false, "~"),
        o @ (">" | "<" | ">=" | "<=" | "~" | "^") => (false, o),
        o => return Err(format!("improper constraint operator {o:?}")),
    };
    if v == "*" {
        return Ok(!negate);
    }
    let req = semver::VersionReq::parse(&format!("{op}{v}"))
        .map_err(|e| format!("improper constraint {c:?}: {e}"))?;
    Ok(req.matches(version) != negate)
}

fn parse_version(v: &str) -> Result<semver::Version, String> {
    let v = v.trim().trim_start_matches(['v', 'V']);
    let split = v.find(['-', '+']).unwrap_or(v.len());
    let (core, rest) = v.split_at(split);
    let parts = core.split('.').count();
    let core = match parts {
        1 => format!("{core}.0.0"),
        2 => format!("{core}.0"),
        _ => core.to_string(),
    };
    semver::Version::parse(&format!("{core}{rest}"))
        .map_err(|e| format!("invalid semantic version {v:?}: {e}"))
}

fn yaml_to_go(s: &str, want_list: bool) -> R {
    if s.trim().is_empty() {
        return Ok(if want_list {
            GoValue::List(Vec::new().into())
        } else {
            GoValue::Map(Arc::new(BTreeMap::new()))
        });
    }
    let v: serde_json::Value =
        serde_yaml::from_str(s).map_err(|e| fail(format!("error unmarshaling YAML: {e}")))?;
    match (&v, want_list) {
        (serde_json::Value::Object(_), false) | (serde_json::Value::Array(_), true) => {
            Ok(json_to_go(&v))
        }
        (serde_json::Value::Null, _) => yaml_to_go("", want_list),
        _ => Err(fail(format!(
            "error unmarshaling YAML: cannot unmarshal {} into {}",
            v,
            if want_list {
                "[]interface {}"
            } else {
                "map[string]interface {}"
            }
        ))),
    }
}

fn to_json_string(v: &GoValue, pretty: bool, html_escape: bool) -> R {
    let j = go_to_json(v).map_err(|e| fail(format!("json: {e}")))?;
    let s = if pretty {
        serde_json::to_string_pretty(&j)
    } else {
        serde_json::to_string(&j)
    }
    .map_err(|e| fail(format!("json: {e}")))?;
    let s = if html_escape {
        s.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    } else {
        s
    };
    string(s)
}

fn merge_maps(
    dst: &mut BTreeMap<Arc<str>, GoValue>,
    src: &BTreeMap<Arc<str>, GoValue>,
    overwrite: bool,
) {
    for (k, sv) in src {
        match dst.get_mut(k) {
            None => {
                dst.insert(k.clone(), sv.clone());
            }
            Some(dv) => match (&*dv, sv) {
                (GoValue::Map(dm), GoValue::Map(sm)) => {
                    let mut merged = (**dm).clone();
                    merge_maps(&mut merged, sm, overwrite);
                    *dv = GoValue::Map(Arc::new(merged));
                }
                _ if overwrite || is_empty(dv) => *dv = sv.clone(),
                _ => {}
            },
        }
    }
}

fn reg(m: &mut FuncMap, names: &[&str], f: impl Fn(&[GoValue]) -> R + Send + Sync + 'static) {
    let f: gotmpl::ValueFunc = Arc::new(f);
    for name in names {
        m.insert((*name).to_string(), f.clone());
    }
}

/// The function map, built once.
pub(super) fn func_map() -> &'static FuncMap {
    static MAP: LazyLock<FuncMap> = LazyLock::new(build);
    &MAP
}

fn build() -> FuncMap {
    let mut m = FuncMap::new();
    strings(&mut m);
    collections(&mut m);
    conversions(&mut m);
    m
}

fn strings(m: &mut FuncMap) {
    reg(m, &["upper"], |a| {
        arity("upper", a, 1)?;
        string(strval(&a[0]).to_uppercase())
    });
    reg(m, &["lower"], |a| {
        arity("lower", a, 1)?;
        string(strval(&a[0]).to_lowercase())
    });
    reg(m, &["title"], |a| {
        arity("title", a, 1)?;
        string(title(&strval(&a[0])))
    });
    reg(m, &["trim"], |a| {
        arity("trim", a, 1)?;
        string(strval(&a[0]).trim().to_string())
    });
    reg(m, &["trimAll"], |a| {
        arity("trimAll", a, 2)?;
        let cut = strval(&a[0]);
        string(strval(&a[1]).trim_matches(|c| cut.contains(c)).to_string())
    });
    reg(m, &["trimPrefix"], |a| {
        arity("trimPrefix", a, 2)?;
        let (p, s) = (strval(&a[0]), strval(&a[1]));
        string(s.strip_prefix(p.as_str()).unwrap_or(&s).to_string())
    });
    reg(m, &["trimSuffix"], |a| {
        arity("trimSuffix", a, 2)?;
        let (p, s) = (strval(&a[0]), strval(&a[1]));
        string(s.strip_suffix(p.as_str()).unwrap_or(&s).to_string())
    });
    reg(m, &["replace"], |a| {
        arity("replace", a, 3)?;
        let (old, new, src) = (strval(&a[0]), strval(&a[1]), strval(&a[2]));
        let count = if old.is_empty() {
            src.chars().count() + 1
        } else {
            src.matches(old.as_str()).count()
        };
        if src.len().saturating_add(count.saturating_mul(new.len())) > MAX_APPLICATION_BYTES {
            return Err(fail("replace: result too large"));
        }
        string(src.replace(old.as_str(), &new))
    });
    reg(m, &["trunc"], |a| {
        arity("trunc", a, 2)?;
        let (n, s) = (to_i64(&a[0]), strval(&a[1]));
        let len = s.len() as i64;
        let out = if n < 0 && len + n > 0 {
            s.get((len + n) as usize..).unwrap_or(&s).to_string()
        } else if n >= 0 && len > n {
            s.get(..n as usize)
                .ok_or_else(|| fail("trunc: not at a character boundary"))?
                .to_string()
        } else {
            s
        };
        string(out)
    });
    reg(m, &["substr"], |a| {
        arity("substr", a, 3)?;
        let (start, end, s) = (to_i64(&a[0]), to_i64(&a[1]), strval(&a[2]));
        let len = s.len() as i64;
        let out = if start < 0 {
            s.get(..end.clamp(0, len) as usize)
        } else if end < 0 || end > len {
            s.get(start.min(len) as usize..)
        } else {
            s.get(start.min(end) as usize..end as usize)
        };
        string(
            out.ok_or_else(|| fail("substr: not at a character boundary"))?
                .to_string(),
        )
    });
    reg(m, &["contains"], |a| {
        arity("contains", a, 2)?;
        Ok(GoValue::Bool(strval(&a[1]).contains(&strval(&a[0]))))
    });
    reg(m, &["hasPrefix"], |a| {
        arity("hasPrefix", a, 2)?;
        Ok(GoValue::Bool(strval(&a[1]).starts_with(&strval(&a[0]))))
    });
    reg(m, &["hasSuffix"], |a| {
        arity("hasSuffix", a, 2)?;
        Ok(GoValue::Bool(strval(&a[1]).ends_with(&strval(&a[0]))))
    });
    reg(m, &["repeat"], |a| {
        arity("repeat", a, 2)?;
        let (n, s) = (to_i64(&a[0]).max(0) as usize, strval(&a[1]));
        if n.saturating_mul(s.len()) > MAX_APPLICATION_BYTES {
            return Err(fail("repeat: result too large"));
        }
        string(s.repeat(n))
    });
    reg(m, &["nospace"], |a| {
        arity("nospace", a, 1)?;
        string(
            strval(&a[0])
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect(),
        )
    });
    reg(m, &["quote"], |a| {
        string(
            a.iter()
                .filter(|v| !matches!(v, GoValue::Nil))
                .map(|v| go_quote(&strval(v)))
                .collect::<Vec<_>>()
                .join(" "),
        )
    });
    reg(m, &["squote"], |a| {
        string(
            a.iter()
                .filter(|v| !matches!(v, GoValue::Nil))
                .map(|v| format!("'{}'", strval(v)))
                .collect::<Vec<_>>()
                .join(" "),
        )
    });
    reg(m, &["cat"], |a| {
        string(
            a.iter()
                .filter(|v| !matches!(v, GoValue::Nil))
                .map(strval)
                .collect::<Vec<_>>()
                .join(" "),
        )
    });
    reg(m, &["indent"], |a| {
        arity("indent", a, 2)?;
        let pad = " ".repeat(to_i64(&a[0]).clamp(0, 1024) as usize);
        string(format!(
            "{pad}{}",
            strval(&a[1]).replace('\n', &format!("\n{pad}"))
        ))
    });
    reg(m, &["nindent"], |a| {
        arity("nindent", a, 2)?;
        let pad = " ".repeat(to_i64(&a[0]).clamp(0, 1024) as usize);
        string(format!(
            "\n{pad}{}",
            strval(&a[1]).replace('\n', &format!("\n{pad}"))
        ))
    });
    reg(m, &["plural"], |a| {
        arity("plural", a, 3)?;
        Ok(if to_i64(&a[2]) == 1 {
            GoValue::String(strval(&a[0]).into())
        } else {
            GoValue::String(strval(&a[1]).into())
        })
    });
    reg(m, &["split"], |a| {
        arity("split", a, 2)?;
        let parts = go_split(&strval(&a[1]), &strval(&a[0]));
        let mut out = BTreeMap::new();
        for (i, p) in parts.into_iter().enumerate() {
            out.insert(
                Arc::from(format!("_{i}").as_str()),
                GoValue::String(p.into()),
            );
        }
        map(out)
    });
    reg(m, &["splitList"], |a| {
        arity("splitList", a, 2)?;
        list(
            go_split(&strval(&a[1]), &strval(&a[0]))
                .into_iter()
                .map(|p| GoValue::String(p.into()))
                .collect(),
        )
    });
    reg(m, &["splitn"], |a| {
        arity("splitn", a, 3)?;
        let (sep, n, s) = (strval(&a[0]), to_i64(&a[1]), strval(&a[2]));
        let parts: Vec<String> = if n < 0 {
            go_split(&s, &sep)
        } else {
            s.splitn(n as usize, sep.as_str())
                .map(str::to_string)
                .collect()
        };
        let mut out = BTreeMap::new();
        for (i, p) in parts.into_iter().enumerate() {
            out.insert(
                Arc::from(format!("_{i}").as_str()),
                GoValue::String(p.into()),
            );
        }
        map(out)
    });
    reg(m, &["join"], |a| {
        arity("join", a, 2)?;
        string(strslice(&a[1]).join(&strval(&a[0])))
    });
    reg(m, &["toString"], |a| {
        arity("toString", a, 1)?;
        string(strval(&a[0]))
    });
    reg(m, &["toStrings"], |a| {
        arity("toStrings", a, 1)?;
        list(
            strslice(&a[0])
                .into_iter()
                .map(|s| GoValue::String(s.into()))
                .collect(),
        )
    });
    reg(m, &["normalize"], |a| {
        arity("normalize", a, 1)?;
        string(normalize(&strval(&a[0])))
    });
    reg(m, &["slugify"], |a| {
        let Some(name) = a.last() else {
            return string(String::new());
        };
        if a.len() > 3 {
            return Err(fail("slugify: bad arguments"));
        }
        let max = if a.len() >= 2 {
            to_i64(&a[0]).max(0) as usize
        } else {
            50
        };
        let smart = if a.len() == 3 { a[1].is_truthy() } else { true };
        string(slugify(&strval(name), max, smart))
    });
    // Regular expressions (Go RE2 syntax; the `regex` crate is RE2-compatible).
    reg(m, &["regexMatch", "mustRegexMatch"], |a| {
        arity("regexMatch", a, 2)?;
        Ok(GoValue::Bool(
            regex(&strval(&a[0]))?.is_match(&strval(&a[1])),
        ))
    });
    reg(m, &["regexFind", "mustRegexFind"], |a| {
        arity("regexFind", a, 2)?;
        let s = strval(&a[1]);
        string(
            regex(&strval(&a[0]))?
                .find(&s)
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
        )
    });
    reg(m, &["regexFindAll", "mustRegexFindAll"], |a| {
        arity("regexFindAll", a, 3)?;
        let s = strval(&a[1]);
        let n = to_i64(&a[2]);
        let re = regex(&strval(&a[0]))?;
        let it = re.find_iter(&s).map(|m| GoValue::String(m.as_str().into()));
        list(if n < 0 {
            it.collect()
        } else {
            it.take(n as usize).collect()
        })
    });
    reg(m, &["regexReplaceAll", "mustRegexReplaceAll"], |a| {
        arity("regexReplaceAll", a, 3)?;
        let s = strval(&a[1]);
        string(
            regex(&strval(&a[0]))?
                .replace_all(&s, strval(&a[2]).as_str())
                .into_owned(),
        )
    });
    reg(
        m,
        &["regexReplaceAllLiteral", "mustRegexReplaceAllLiteral"],
        |a| {
            arity("regexReplaceAllLiteral", a, 3)?;
            let s = strval(&a[1]);
            string(
                regex(&strval(&a[0]))?
                    .replace_all(&s, regex::NoExpand(&strval(&a[2])))
                    .into_owned(),
            )
        },
    );
    reg(m, &["regexSplit", "mustRegexSplit"], |a| {
        arity("regexSplit", a, 3)?;
        let s = strval(&a[1]);
        let n = to_i64(&a[2]);
        let re = regex(&strval(&a[0]))?;
        let parts: Vec<GoValue> = if n < 0 {
            re.split(&s).map(|p| GoValue::String(p.into())).collect()
        } else {
            re.splitn(&s, n as usize)
                .map(|p| GoValue::String(p.into()))
                .collect()
        };
        list(parts)
    });
    reg(m, &["regexQuoteMeta"], |a| {
        arity("regexQuoteMeta", a, 1)?;
        string(regex::escape(&strval(&a[0])))
    });
    reg(m, &["semverCompare"], |a| {
        arity("semverCompare", a, 2)?;
        semver_compare(&strval(&a[0]), &strval(&a[1]))
            .map(GoValue::Bool)
            .map_err(fail)
    });
    // Encodings and hashes.
    reg(m, &["b64enc"], |a| {
        arity("b64enc", a, 1)?;
        string(base64::engine::general_purpose::STANDARD.encode(strval(&a[0])))
    });
    reg(m, &["b64dec"], |a| {
        arity("b64dec", a, 1)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(strval(&a[0]))
            .map_err(|e| fail(format!("b64dec: {e}")))?;
        string(String::from_utf8_lossy(&bytes).into_owned())
    });
    reg(m, &["sha256sum"], |a| {
        arity("sha256sum", a, 1)?;
        string(
            sha2::Sha256::digest(strval(&a[0]).as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    });
    reg(m, &["sha512sum"], |a| {
        arity("sha512sum", a, 1)?;
        string(
            sha2::Sha512::digest(strval(&a[0]).as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    });
}

/// Go's `strings.Split` (an empty separator splits into characters).
fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        s.chars().map(String::from).collect()
    } else {
        s.split(sep).map(str::to_string).collect()
    }
}

fn collections(m: &mut FuncMap) {
    reg(m, &["list", "tuple"], |a| list(a.to_vec()));
    reg(m, &["dict"], |a| {
        let mut out = BTreeMap::new();
        for pair in a.chunks(2) {
            let v = pair
                .get(1)
                .cloned()
                .unwrap_or_else(|| GoValue::String("".into()));
            out.insert(Arc::from(strval(&pair[0]).as_str()), v);
        }
        map(out)
    });
    reg(m, &["get"], |a| {
        arity("get", a, 2)?;
        Ok(as_map("get", &a[0])?
            .get(strval(&a[1]).as_str())
            .cloned()
            .unwrap_or_else(|| GoValue::String("".into())))
    });
    reg(m, &["set"], |a| {
        arity("set", a, 3)?;
        let mut d = as_map("set", &a[0])?;
        d.insert(Arc::from(strval(&a[1]).as_str()), a[2].clone());
        map(d)
    });
    reg(m, &["unset"], |a| {
        arity("unset", a, 2)?;
        let mut d = as_map("unset", &a[0])?;
        d.remove(strval(&a[1]).as_str());
        map(d)
    });
    reg(m, &["hasKey"], |a| {
        arity("hasKey", a, 2)?;
        Ok(GoValue::Bool(
            as_map("hasKey", &a[0])?.contains_key(strval(&a[1]).as_str()),
        ))
    });
    reg(m, &["keys"], |a| {
        let mut ks = Vec::new();
        for d in a {
            ks.extend(as_map("keys", d)?.into_keys().map(GoValue::String));
        }
        list(ks)
    });
    reg(m, &["values"], |a| {
        arity("values", a, 1)?;
        list(as_map("values", &a[0])?.into_values().collect())
    });
    reg(m, &["pick"], |a| {
        let Some((d, ks)) = a.split_first() else {
            return Err(fail("pick: missing dict"));
        };
        let d = as_map("pick", d)?;
        let ks: Vec<String> = ks.iter().map(strval).collect();
        map(d
            .into_iter()
            .filter(|(k, _)| ks.iter().any(|x| x.as_str() == &**k))
            .collect())
    });
    reg(m, &["omit"], |a| {
        let Some((d, ks)) = a.split_first() else {
            return Err(fail("omit: missing dict"));
        };
        let d = as_map("omit", d)?;
        let ks: Vec<String> = ks.iter().map(strval).collect();
        map(d
            .into_iter()
            .filter(|(k, _)| !ks.iter().any(|x| x.as_str() == &**k))
            .collect())
    });
    reg(m, &["merge", "mustMerge"], |a| {
        let Some((d, srcs)) = a.split_first() else {
            return Err(fail("merge: missing dict"));
        };
        let mut d = as_map("merge", d)?;
        for s in srcs {
            merge_maps(&mut d, &as_map("merge", s)?, false);
        }
        map(d)
    });
    reg(m, &["mergeOverwrite", "mustMergeOverwrite"], |a| {
        let Some((d, srcs)) = a.split_first() else {
            return Err(fail("mergeOverwrite: missing dict"));
        };
        let mut d = as_map("mergeOverwrite", d)?;
        for s in srcs {
            merge_maps(&mut d, &as_map("mergeOverwrite", s)?, true);
        }
        map(d)
    });
    reg(m, &["dig"], |a| {
        if a.len() < 3 {
            return Err(fail("dig: needs keys, a default and a dict"));
        }
        let (d, rest) = a.split_last().ok_or_else(|| fail("dig"))?;
        let (default, ks) = rest.split_last().ok_or_else(|| fail("dig"))?;
        let mut cur = d.clone();
        for k in ks {
            match cur.field(&strval(k)) {
                Some(v) => cur = v.clone(),
                None => return Ok(default.clone()),
            }
        }
        Ok(cur)
    });
    reg(m, &["pluck"], |a| {
        let Some((k, ds)) = a.split_first() else {
            return Err(fail("pluck: missing key"));
        };
        let k = strval(k);
        let mut out = Vec::new();
        for d in ds {
            if let Some(v) = as_map("pluck", d)?.get(k.as_str()) {
                out.push(v.clone());
            }
        }
        list(out)
    });
    reg(m, &["deepCopy", "mustDeepCopy"], |a| {
        arity("deepCopy", a, 1)?;
        Ok(a[0].clone())
    });
    reg(m, &["first", "mustFirst"], |a| {
        arity("first", a, 1)?;
        Ok(as_list("first", &a[0])?
            .first()
            .cloned()
            .unwrap_or(GoValue::Nil))
    });
    reg(m, &["last", "mustLast"], |a| {
        arity("last", a, 1)?;
        Ok(as_list("last", &a[0])?
            .last()
            .cloned()
            .unwrap_or(GoValue::Nil))
    });
    reg(m, &["rest", "mustRest"], |a| {
        arity("rest", a, 1)?;
        let l = as_list("rest", &a[0])?;
        list(l.get(1..).map(<[GoValue]>::to_vec).unwrap_or_default())
    });
    reg(m, &["initial", "mustInitial"], |a| {
        arity("initial", a, 1)?;
        let l = as_list("initial", &a[0])?;
        list(
            l.get(..l.len().saturating_sub(1))
                .map(<[GoValue]>::to_vec)
                .unwrap_or_default(),
        )
    });
    reg(m, &["append", "push", "mustAppend", "mustPush"], |a| {
        arity("append", a, 2)?;
        let mut l = as_list("append", &a[0])?;
        l.push(a[1].clone());
        list(l)
    });
    reg(m, &["prepend", "mustPrepend"], |a| {
        arity("prepend", a, 2)?;
        let mut l = as_list("prepend", &a[0])?;
        l.insert(0, a[1].clone());
        list(l)
    });
    reg(m, &["concat"], |a| {
        let mut out = Vec::new();
        for l in a {
            out.extend(as_list("concat", l)?);
            if out.len() > MAX_LIST_LEN {
                return Err(fail(format!("list exceeds {MAX_LIST_LEN} items")));
            }
        }
        list(out)
    });
    reg(m, &["reverse", "mustReverse"], |a| {
        arity("reverse", a, 1)?;
        let mut l = as_list("reverse", &a[0])?;
        l.reverse();
        list(l)
    });
    reg(m, &["uniq", "mustUniq"], |a| {
        arity("uniq", a, 1)?;
        let mut out: Vec<GoValue> = Vec::new();
        for v in as_list("uniq", &a[0])? {
            if !out.iter().any(|x| values_equal(x, &v)) {
                out.push(v);
            }
        }
        list(out)
    });
    reg(m, &["compact", "mustCompact"], |a| {
        arity("compact", a, 1)?;
        list(
            as_list("compact", &a[0])?
                .into_iter()
                .filter(|v| !is_empty(v))
                .collect(),
        )
    });
    reg(m, &["without", "mustWithout"], |a| {
        let Some((l, drop)) = a.split_first() else {
            return Err(fail("without: missing list"));
        };
        list(
            as_list("without", l)?
                .into_iter()
                .filter(|v| !drop.iter().any(|d| values_equal(d, v)))
                .collect(),
        )
    });
    reg(m, &["has", "mustHas"], |a| {
        arity("has", a, 2)?;
        Ok(GoValue::Bool(
            as_list("has", &a[1])?
                .iter()
                .any(|v| values_equal(v, &a[0])),
        ))
    });
    reg(m, &["until"], |a| {
        arity("until", a, 1)?;
        let n = to_i64(&a[0]);
        if n.unsigned_abs() > MAX_LIST_LEN as u64 {
            return Err(fail(format!("until: list exceeds {MAX_LIST_LEN} items")));
        }
        list(if n >= 0 {
            (0..n).map(GoValue::Int).collect()
        } else {
            (n + 1..=0).rev().map(GoValue::Int).collect()
        })
    });
    reg(m, &["untilStep"], |a| {
        arity("untilStep", a, 3)?;
        let (start, stop, step) = (to_i64(&a[0]), to_i64(&a[1]), to_i64(&a[2]));
        let mut out = Vec::new();
        if step > 0 {
            let mut i = start;
            while i < stop {
                out.push(GoValue::Int(i));
                if out.len() > MAX_LIST_LEN {
                    return Err(fail("untilStep: list too long"));
                }
                i = i.saturating_add(step);
            }
        } else if step < 0 {
            let mut i = start;
            while i > stop {
                out.push(GoValue::Int(i));
                if out.len() > MAX_LIST_LEN {
                    return Err(fail("untilStep: list too long"));
                }
                i = i.saturating_add(step);
            }
        }
        list(out)
    });
}

fn conversions(m: &mut FuncMap) {
    reg(m, &["default"], |a| {
        let d = arg(a, 0).clone();
        match a.get(1) {
            Some(given) if !is_empty(given) => Ok(given.clone()),
            _ => Ok(d),
        }
    });
    reg(m, &["empty"], |a| {
        arity("empty", a, 1)?;
        Ok(GoValue::Bool(is_empty(&a[0])))
    });
    reg(m, &["coalesce"], |a| {
        Ok(a.iter()
            .find(|v| !is_empty(v))
            .cloned()
            .unwrap_or(GoValue::Nil))
    });
    reg(m, &["all"], |a| {
        Ok(GoValue::Bool(a.iter().all(|v| !is_empty(v))))
    });
    reg(m, &["any"], |a| {
        Ok(GoValue::Bool(a.iter().any(|v| !is_empty(v))))
    });
    reg(m, &["ternary"], |a| {
        arity("ternary", a, 3)?;
        match &a[2] {
            GoValue::Bool(true) => Ok(a[0].clone()),
            GoValue::Bool(false) => Ok(a[1].clone()),
            other => Err(fail(format!(
                "ternary: condition must be a bool, got {}",
                other.type_name()
            ))),
        }
    });
    reg(m, &["fail"], |a| {
        arity("fail", a, 1)?;
        Err(fail(strval(&a[0])))
    });
    reg(m, &["kindOf"], |a| {
        arity("kindOf", a, 1)?;
        Ok(GoValue::String(kind_of(&a[0]).into()))
    });
    reg(m, &["kindIs"], |a| {
        arity("kindIs", a, 2)?;
        Ok(GoValue::Bool(strval(&a[0]) == kind_of(&a[1])))
    });
    reg(m, &["int", "int64"], |a| {
        arity("int", a, 1)?;
        Ok(GoValue::Int(to_i64(&a[0])))
    });
    reg(m, &["atoi"], |a| {
        arity("atoi", a, 1)?;
        Ok(GoValue::Int(strval(&a[0]).parse().unwrap_or(0)))
    });
    reg(m, &["float64"], |a| {
        arity("float64", a, 1)?;
        Ok(GoValue::Float(to_f64(&a[0])))
    });
    reg(m, &["toJson", "mustToJson"], |a| {
        arity("toJson", a, 1)?;
        to_json_string(&a[0], false, true)
    });
    reg(m, &["toPrettyJson", "mustToPrettyJson"], |a| {
        arity("toPrettyJson", a, 1)?;
        to_json_string(&a[0], true, true)
    });
    reg(m, &["toRawJson", "mustToRawJson"], |a| {
        arity("toRawJson", a, 1)?;
        to_json_string(&a[0], false, false)
    });
    reg(m, &["fromJson", "mustFromJson"], |a| {
        arity("fromJson", a, 1)?;
        let v: serde_json::Value =
            serde_json::from_str(&strval(&a[0])).map_err(|e| fail(format!("fromJson: {e}")))?;
        Ok(json_to_go(&v))
    });
    reg(m, &["toYaml"], |a| {
        arity("toYaml", a, 1)?;
        let j = go_to_json(&a[0]).map_err(|e| fail(format!("toYaml: {e}")))?;
        let s = serde_yaml::to_string(&j).map_err(|e| fail(format!("toYaml: {e}")))?;
        string(s.strip_suffix('\n').unwrap_or(&s).to_string())
    });
    reg(m, &["fromYaml"], |a| {
        arity("fromYaml", a, 1)?;
        yaml_to_go(&strval(&a[0]), false)
    });
    reg(m, &["fromYamlArray"], |a| {
        arity("fromYamlArray", a, 1)?;
        yaml_to_go(&strval(&a[0]), true)
    });
    // Integer math (Sprig converts with cast.ToInt64; Go's int64 wraps).
    reg(m, &["add"], |a| {
        Ok(GoValue::Int(
            a.iter().fold(0i64, |s, v| s.wrapping_add(to_i64(v))),
        ))
    });
    reg(m, &["add1"], |a| {
        arity("add1", a, 1)?;
        Ok(GoValue::Int(to_i64(&a[0]).wrapping_add(1)))
    });
    reg(m, &["sub"], |a| {
        arity("sub", a, 2)?;
        Ok(GoValue::Int(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
    });
    reg(m, &["mul"], |a| {
        Ok(GoValue::Int(
            a.iter().fold(1i64, |s, v| s.wrapping_mul(to_i64(v))),
        ))
    });
    reg(m, &["div"], |a| {
        arity("div", a, 2)?;
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err(fail("runtime error: integer divide by zero"));
        }
        Ok(GoValue::Int(to_i64(&a[0]).wrapping_div(d)))
    });
    reg(m, &["mod"], |a| {
        arity("mod", a, 2)?;
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err(fail("runtime error: integer divide by zero"));
        }
        Ok(GoValue::Int(to_i64(&a[0]).wrapping_rem(d)))
    });
    reg(m, &["max"], |a| {
        Ok(GoValue::Int(a.iter().map(to_i64).max().unwrap_or(0)))
    });
    reg(m, &["min"], |a| {
        Ok(GoValue::Int(a.iter().map(to_i64).min().unwrap_or(0)))
    });
    reg(m, &["addf"], |a| {
        Ok(GoValue::Float(a.iter().map(to_f64).sum()))
    });
    reg(m, &["add1f"], |a| {
        arity("add1f", a, 1)?;
        Ok(GoValue::Float(to_f64(&a[0]) + 1.0))
    });
    reg(m, &["subf"], |a| {
        let Some((first, rest)) = a.split_first() else {
            return Ok(GoValue::Float(0.0));
        };
        Ok(GoValue::Float(
            rest.iter().fold(to_f64(first), |s, v| s - to_f64(v)),
        ))
    });
    reg(m, &["mulf"], |a| {
        Ok(GoValue::Float(a.iter().map(to_f64).product()))
    });
    reg(m, &["divf"], |a| {
        let Some((first, rest)) = a.split_first() else {
            return Ok(GoValue::Float(0.0));
        };
        Ok(GoValue::Float(
            rest.iter().fold(to_f64(first), |s, v| s / to_f64(v)),
        ))
    });
    reg(m, &["maxf"], |a| {
        Ok(GoValue::Float(
            a.iter().map(to_f64).fold(f64::NEG_INFINITY, f64::max),
        ))
    });
    reg(m, &["minf"], |a| {
        Ok(GoValue::Float(
            a.iter().map(to_f64).fold(f64::INFINITY, f64::min),
        ))
    });
    reg(m, &["floor"], |a| {
        arity("floor", a, 1)?;
        Ok(GoValue::Float(to_f64(&a[0]).floor()))
    });
    reg(m, &["ceil"], |a| {
        arity("ceil", a, 1)?;
        Ok(GoValue::Float(to_f64(&a[0]).ceil()))
    });
    reg(m, &["round"], |a| {
        if a.is_empty() || a.len() > 3 {
            return Err(fail("round: wrong number of arguments"));
        }
        let places = to_i64(arg(a, 1)).clamp(0, 15) as i32;
        let p = 10f64.powi(places);
        Ok(GoValue::Float((to_f64(&a[0]) * p).round() / p))
    });
}

fn kind_of(v: &GoValue) -> &'static str {
    match v {
        GoValue::Nil => "invalid",
        GoValue::Bool(_) => "bool",
        GoValue::Int(_) => "int64",
        GoValue::Uint(_) => "uint64",
        GoValue::Float(_) => "float64",
        GoValue::String(_) => "string",
        GoValue::List(_) => "slice",
        GoValue::Map(_) => "map",
        GoValue::Function(_) => "func",
    }
}
