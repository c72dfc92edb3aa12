//! Go template mode on `gotmpl` (a Rust port of Go's `text/template`): options, the function
//! check done at parse time as Go does, the bounded output writer, and JSON <-> template values.

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::parse::{CommandNode, Expr, ListNode, Node, Parser, PipeNode};
use gotmpl::{MissingKey, Template, Value as GoValue};
use serde_json::{Map, Value};

use super::{MAX_APPLICATION_BYTES, MAX_RANGE_ITERATIONS, TemplateError, sprig};

/// Go's own template functions (always defined).
const GO_BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];

/// Parameters as template data plus the options, shared by every string of one render.
pub(super) struct GoEngine {
    data: GoValue,
    missing_key: MissingKey,
}

impl GoEngine {
    pub(super) fn new(
        params: &Map<String, Value>,
        options: &[String],
    ) -> Result<Self, TemplateError> {
        Ok(GoEngine {
            data: json_object_to_go(params),
            missing_key: parse_options(options)?,
        })
    }

    /// Renders one string; at most `limit` bytes of output.
    pub(super) fn render(&self, src: &str, limit: usize) -> Result<String, TemplateError> {
        render_with(src, &self.data, self.missing_key, limit)
    }
}

/// Parses, checks and executes `src` against `data`.
pub(super) fn render_with(
    src: &str,
    data: &GoValue,
    missing_key: MissingKey,
    limit: usize,
) -> Result<String, TemplateError> {
    if !src.contains("{{") {
        // No action: Go's output is the text itself.
        if src.len() > limit {
            return Err(TemplateError::TooLarge {
                limit: MAX_APPLICATION_BYTES,
            });
        }
        return Ok(src.to_string());
    }
    let parse_err = |e: gotmpl::TemplateError| TemplateError::Parse {
        template: src.to_string(),
        message: e.to_string(),
    };
    let (tree, defines) = Parser::with_name(None, src, "{{", "}}")
        .and_then(Parser::parse)
        .map_err(parse_err)?;
    let funcs = sprig::func_map();
    check_list(&tree, funcs)?;
    for define in &defines {
        check_list(&define.body, funcs)?;
    }
    let template = Template::new("")
        .funcs(funcs.clone())
        .missing_key(missing_key)
        .max_range_iters(MAX_RANGE_ITERATIONS)
        .parse(src)
        .map_err(parse_err)?;
    let mut out = Bounded {
        buf: String::new(),
        limit,
        exceeded: false,
    };
    match template.execute_fmt(&mut out, data) {
        Ok(()) => Ok(out.buf),
        Err(_) if out.exceeded => Err(TemplateError::TooLarge {
            limit: MAX_APPLICATION_BYTES,
        }),
        Err(e) => Err(TemplateError::Execute {
            template: src.to_string(),
            message: e.to_string(),
        }),
    }
}

/// `goTemplateOptions`, as Go's `Template.Option` reads them.
pub(super) fn parse_options(options: &[String]) -> Result<MissingKey, TemplateError> {
    let mut missing_key = MissingKey::Invalid;
    for option in options {
        missing_key = match option.split_once('=') {
            Some(("missingkey", "default" | "invalid")) => MissingKey::Invalid,
            Some(("missingkey", "zero")) => MissingKey::ZeroValue,
            Some(("missingkey", "error")) => MissingKey::Error,
            _ => return Err(TemplateError::InvalidOption(option.clone())),
        };
    }
    Ok(missing_key)
}

/// Go rejects a template naming an undefined function when parsing it, even in a branch never
/// taken; so do we, telling removed and unsupported Sprig functions apart.
fn check_list(list: &ListNode, funcs: &gotmpl::FuncMap) -> Result<(), TemplateError> {
    list.nodes.iter().try_for_each(|n| check_node(n, funcs))
}

fn check_node(node: &Node, funcs: &gotmpl::FuncMap) -> Result<(), TemplateError> {
    match node {
        Node::List(list) => check_list(list, funcs),
        Node::Action(action) => check_pipe(&action.pipe, funcs),
        Node::If(b) | Node::Range(b) | Node::With(b) => {
            check_pipe(&b.pipe, funcs)?;
            check_list(&b.body, funcs)?;
            match &b.else_body {
                Some(e) => check_list(e, funcs),
                None => Ok(()),
            }
        }
        Node::Template(t) => match &t.pipe {
            Some(p) => check_pipe(p, funcs),
            None => Ok(()),
        },
        Node::Define(d) => check_list(&d.body, funcs),
        Node::Text(_) | Node::Break(_) | Node::Continue(_) => Ok(()),
    }
}

fn check_pipe(pipe: &PipeNode, funcs: &gotmpl::FuncMap) -> Result<(), TemplateError> {
    pipe.commands
        .iter()
        .try_for_each(|c: &CommandNode| c.args.iter().try_for_each(|e| check_expr(e, funcs)))
}

fn check_expr(expr: &Expr, funcs: &gotmpl::FuncMap) -> Result<(), TemplateError> {
    match expr {
        Expr::Identifier(_, name) => {
            let name = name.as_str();
            if GO_BUILTINS.contains(&name) || funcs.contains_key(name) {
                Ok(())
            } else if sprig::REMOVED.contains(&name) {
                Err(TemplateError::RemovedFunction { name: name.into() })
            } else if sprig::UNSUPPORTED.contains(&name) {
                Err(TemplateError::UnsupportedFunction { name: name.into() })
            } else {
                Err(TemplateError::UndefinedFunction { name: name.into() })
            }
        }
        Expr::Pipe(_, pipe) => check_pipe(pipe, funcs),
        Expr::Chain(_, inner, _) => check_expr(inner, funcs),
        _ => Ok(()),
    }
}

/// A `fmt::Write` that refuses to grow past `limit` bytes.
struct Bounded {
    buf: String,
    limit: usize,
    exceeded: bool,
}

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.buf.len().saturating_add(s.len()) > self.limit {
            self.exceeded = true;
            return Err(std::fmt::Error);
        }
        self.buf.push_str(s);
        Ok(())
    }
}

pub(super) fn json_object_to_go(map: &Map<String, Value>) -> GoValue {
    let m: BTreeMap<Arc<str>, GoValue> = map
        .iter()
        .map(|(k, v)| (Arc::from(k.as_str()), json_to_go(v)))
        .collect();
    GoValue::Map(Arc::new(m))
}

/// JSON data as template data (numbers: integers stay integers, the rest are floats).
pub(super) fn json_to_go(value: &Value) -> GoValue {
    match value {
        Value::Null => GoValue::Nil,
        Value::Bool(b) => GoValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                GoValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                GoValue::Uint(u)
            } else {
                GoValue::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => GoValue::String(Arc::from(s.as_str())),
        Value::Array(a) => GoValue::List(a.iter().map(json_to_go).collect()),
        Value::Object(m) => json_object_to_go(m),
    }
}

/// Template data as JSON (maps come out with sorted keys, as Go's encoders write them).
pub(super) fn go_to_json(value: &GoValue) -> Result<Value, String> {
    Ok(match value {
        GoValue::Nil => Value::Null,
        GoValue::Bool(b) => Value::Bool(*b),
        GoValue::Int(i) => Value::from(*i),
        GoValue::Uint(u) => Value::from(*u),
        GoValue::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("unsupported value: {f}"))?,
        GoValue::String(s) => Value::String(s.to_string()),
        GoValue::List(items) => {
            Value::Array(items.iter().map(go_to_json).collect::<Result<_, _>>()?)
        }
        GoValue::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.to_string(), go_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        GoValue::Function(_) => return Err("unsupported type: func".into()),
    })
}
