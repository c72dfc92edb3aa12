//! Jsonnet, in process (rsjsonnet-lang): `*.jsonnet` files of a directory source evaluated with
//! Argo CD's `directory.jsonnet` options (ext vars, TLAs, library paths); imports stay inside
//! the repository.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rsjsonnet_lang::arena::Arena;
use rsjsonnet_lang::interner::InternedStr;
use rsjsonnet_lang::program::{
    Callbacks, EvalStackTraceItem, ImportError, NativeError, Program, Thunk, Value,
};
use rsjsonnet_lang::span::{SpanContextId, SpanId};

use crate::RenderError;
use crate::paths::{confine, stays_inside};

/// A Jsonnet external variable or top-level argument.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JsonnetVar {
    pub name: String,
    pub value: String,
    /// `value` is Jsonnet code rather than a string.
    pub code: bool,
}

/// `spec.source.directory.jsonnet`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JsonnetOptions {
    pub ext_vars: Vec<JsonnetVar>,
    pub tlas: Vec<JsonnetVar>,
    /// Library search paths, relative to the repository root.
    pub libs: Vec<String>,
}

/// Deepest evaluation stack allowed (runaway recursion becomes an error, not a crash).
const MAX_STACK: usize = 500;

struct Imports<'p> {
    root: PathBuf,
    libs: Vec<PathBuf>,
    /// Which file each loaded source came from (imports resolve relative to it).
    files: HashMap<SpanContextId, PathBuf>,
    loaded: HashMap<PathBuf, Thunk<'p>>,
    error: Option<String>,
}

impl<'p> Imports<'p> {
    fn dir_of(&self, program: &Program<'p>, from: SpanId) -> PathBuf {
        let (ctx, _, _) = program.span_manager().get_span(from);
        self.files
            .get(&ctx)
            .and_then(|f| f.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| self.root.clone())
    }

    /// The file `path` names, relative to the importing file, then to each library path.
    fn find(&mut self, program: &Program<'p>, from: SpanId, path: &str) -> Option<PathBuf> {
        let here = self.dir_of(program, from);
        let candidates = std::iter::once(here.join(path))
            .chain(self.libs.iter().map(|l| l.join(path)))
            .collect::<Vec<_>>();
        for c in candidates {
            if c.is_file() {
                if stays_inside(&self.root, &c) {
                    return Some(c);
                }
                self.error = Some(format!("import {path:?} leaves the repository"));
                return None;
            }
        }
        self.error = Some(format!("import {path:?} not found"));
        None
    }

    fn read(&mut self, file: &Path) -> Option<Vec<u8>> {
        match std::fs::read(file) {
            Ok(b) => Some(b),
            Err(e) => {
                self.error = Some(format!("reading {}: {e}", file.display()));
                None
            }
        }
    }
}

fn load<'p>(
    program: &mut Program<'p>,
    imports: &mut Imports<'p>,
    file: &Path,
    bytes: &[u8],
) -> Result<Thunk<'p>, String> {
    let (ctx, _) = program
        .span_manager_mut()
        .insert_source_context(bytes.len());
    imports.files.insert(ctx, file.to_path_buf());
    let shown = file
        .strip_prefix(&imports.root)
        .unwrap_or(file)
        .display()
        .to_string();
    program
        .load_source(ctx, bytes, true, &shown)
        .map_err(|e| format!("{shown}: {e:?}"))
}

impl<'p> Callbacks<'p> for Imports<'p> {
    fn import(
        &mut self,
        program: &mut Program<'p>,
        from: SpanId,
        path: &str,
    ) -> Result<Thunk<'p>, ImportError> {
        let file = self.find(program, from, path).ok_or(ImportError)?;
        if let Some(t) = self.loaded.get(&file) {
            return Ok(t.clone());
        }
        let bytes = self.read(&file).ok_or(ImportError)?;
        match load(program, self, &file, &bytes) {
            Ok(t) => {
                self.loaded.insert(file, t.clone());
                Ok(t)
            }
            Err(e) => {
                self.error = Some(e);
                Err(ImportError)
            }
        }
    }

    fn import_str(
        &mut self,
        program: &mut Program<'p>,
        from: SpanId,
        path: &str,
    ) -> Result<String, ImportError> {
        let file = self.find(program, from, path).ok_or(ImportError)?;
        let bytes = self.read(&file).ok_or(ImportError)?;
        String::from_utf8(bytes).map_err(|_| {
            self.error = Some(format!("importstr {path:?}: not UTF-8"));
            ImportError
        })
    }

    fn import_bin(
        &mut self,
        program: &mut Program<'p>,
        from: SpanId,
        path: &str,
    ) -> Result<Vec<u8>, ImportError> {
        let file = self.find(program, from, path).ok_or(ImportError)?;
        self.read(&file).ok_or(ImportError)
    }

    fn trace(&mut self, _: &mut Program<'p>, message: &str, _: &[EvalStackTraceItem]) {
        tracing::debug!(message, "jsonnet trace");
    }

    fn native_call(
        &mut self,
        _: &mut Program<'p>,
        _: InternedStr<'p>,
        _: &[Value<'p>],
    ) -> Result<Value<'p>, NativeError> {
        Err(NativeError)
    }
}

fn var_thunk<'p>(
    program: &mut Program<'p>,
    imports: &mut Imports<'p>,
    v: &JsonnetVar,
    what: &str,
) -> Result<Thunk<'p>, String> {
    if v.code {
        let pseudo = imports.root.join(format!("<{what} {}>", v.name));
        load(program, imports, &pseudo, v.value.as_bytes())
    } else {
        Ok(program.value_to_thunk(&Value::string(&v.value)))
    }
}

/// Evaluate the Jsonnet file `file` (inside the checkout `root`) to JSON.
pub fn evaluate(
    root: &Path,
    file: &Path,
    opts: &JsonnetOptions,
) -> Result<serde_json::Value, RenderError> {
    let shown = file.strip_prefix(root).unwrap_or(file).to_path_buf();
    let fail = |message: String| RenderError::Jsonnet {
        path: shown.clone(),
        message,
    };
    let root = root
        .canonicalize()
        .map_err(|e| fail(format!("repository root: {e}")))?;
    let file = file
        .canonicalize()
        .map_err(|e| fail(format!("reading: {e}")))?;
    let libs = opts
        .libs
        .iter()
        .map(|l| confine(&root, l))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = std::fs::read(&file).map_err(|e| fail(format!("reading: {e}")))?;
    let arena = Arena::new();
    let mut program = Program::new(&arena);
    program.set_max_stack(MAX_STACK);
    let mut imports = Imports {
        root: root.clone(),
        libs,
        files: HashMap::new(),
        loaded: HashMap::new(),
        error: None,
    };
    let mut names = std::collections::HashSet::new();
    for v in &opts.ext_vars {
        if !names.insert(v.name.clone()) {
            return Err(fail(format!("ext var {:?} given twice", v.name)));
        }
        let t = var_thunk(&mut program, &mut imports, v, "extVar").map_err(fail)?;
        let name = program.intern_str(&v.name);
        program.add_ext_var(name, &t);
    }
    let main = load(&mut program, &mut imports, &file, &bytes).map_err(fail)?;
    let explain = |imports: &Imports, e: &dyn std::fmt::Debug| match &imports.error {
        Some(why) => why.clone(),
        None => format!("{e:?}"),
    };
    let mut value = program
        .eval_value(&main, &mut imports)
        .map_err(|e| fail(explain(&imports, &e.kind)))?;
    if value.is_function() {
        let mut named = Vec::new();
        for v in &opts.tlas {
            let t = var_thunk(&mut program, &mut imports, v, "tla").map_err(fail)?;
            named.push((program.intern_str(&v.name), t));
        }
        let func = program.value_to_thunk(&value);
        value = program
            .eval_call(&func, &[], &named, &mut imports)
            .map_err(|e| fail(explain(&imports, &e.kind)))?;
    }
    let json = program
        .manifest_json(&value, false)
        .map_err(|e| fail(explain(&imports, &e.kind)))?;
    serde_json::from_str(&json).map_err(|e| fail(format!("output is not JSON: {e}")))
}

/// Where Jsonnet is evaluated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Evaluator {
    /// In this process (tests, library callers): bounded in stack depth only.
    #[default]
    InProcess,
    /// In a child process of `exe` (the repo-server binary, argument [`CHILD_ARG`]) whose
    /// address space is capped at `memory_bytes` and which is killed at the render timeout:
    /// a hostile program can neither exhaust the repo-server's memory nor run on forever.
    Isolated { exe: PathBuf, memory_bytes: u64 },
}

/// The first argument that makes the repo-server binary evaluate one Jsonnet file.
pub const CHILD_ARG: &str = "__flotilla-jsonnet";

/// Evaluate `file` with `evaluator`, within `timeout`.
pub fn evaluate_with(
    evaluator: &Evaluator,
    root: &Path,
    file: &Path,
    opts: &JsonnetOptions,
    timeout: std::time::Duration,
) -> Result<serde_json::Value, RenderError> {
    let Evaluator::Isolated { exe, memory_bytes } = evaluator else {
        return evaluate(root, file, opts);
    };
    let shown = file.strip_prefix(root).unwrap_or(file).to_path_buf();
    let fail = |message: String| RenderError::Jsonnet {
        path: shown.clone(),
        message,
    };
    let opts_json = serde_json::to_string(opts).map_err(|e| fail(e.to_string()))?;
    let out = super::exec::run(
        std::process::Command::new(exe)
            .arg(CHILD_ARG)
            .arg(root)
            .arg(file)
            .arg(memory_bytes.to_string())
            .env("FLOTILLA_JSONNET_OPTIONS", opts_json),
        timeout,
        "jsonnet",
        &shown.display().to_string(),
    )?;
    if !out.success {
        let err = String::from_utf8_lossy(&out.stderr);
        let why = err.trim();
        return Err(fail(
            if why.is_empty() || why.contains("memory allocation") {
                format!(
                    "evaluation failed (killed, or over its memory limit of {memory_bytes} bytes)"
                )
            } else {
                why.lines().last().unwrap_or(why).to_string()
            },
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("output is not JSON: {e}")))
}

/// The child's side of [`Evaluator::Isolated`]: `args` = root, file, memory limit in bytes;
/// the options in `FLOTILLA_JSONNET_OPTIONS`. Prints the value as JSON; returns the exit code.
pub fn child_main(args: &[String]) -> i32 {
    let [root, file, limit] = args else {
        eprintln!("usage: {CHILD_ARG} ROOT FILE MEMORY_BYTES");
        return 2;
    };
    if let Ok(bytes) = limit.parse::<u64>() {
        let cap = rustix::process::Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        };
        if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::As, cap) {
            eprintln!("cannot limit memory: {e}");
            return 2;
        }
    }
    let opts: JsonnetOptions = match std::env::var("FLOTILLA_JSONNET_OPTIONS")
        .ok()
        .map(|s| serde_json::from_str(&s))
    {
        Some(Ok(o)) => o,
        _ => JsonnetOptions::default(),
    };
    match evaluate(Path::new(root), Path::new(file), &opts) {
        Ok(v) => {
            println!("{v}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_repo(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, body) in files {
            let p = dir.path().join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(p, body).expect("write");
        }
        dir
    }

    #[test]
    fn ext_vars_tlas_imports_and_library_paths() {
        let repo = mk_repo(&[
            (
                "lib/k.libsonnet",
                "{ cm(name, data):: {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: name}, data: data} }",
            ),
            ("app/local.libsonnet", "{ color: 'blue' }"),
            (
                "app/main.jsonnet",
                "local k = import 'k.libsonnet'; local l = import 'local.libsonnet';\n\
                 function(replicas=1) [k.cm(std.extVar('env') + '-cm', {color: l.color, replicas: std.toString(replicas), tier: std.extVar('tier').name})]",
            ),
        ]);
        let opts = JsonnetOptions {
            ext_vars: vec![
                JsonnetVar {
                    name: "env".into(),
                    value: "prod".into(),
                    code: false,
                },
                JsonnetVar {
                    name: "tier".into(),
                    value: "{name: 'web'}".into(),
                    code: true,
                },
            ],
            tlas: vec![JsonnetVar {
                name: "replicas".into(),
                value: "3".into(),
                code: true,
            }],
            libs: vec!["lib".into()],
        };
        let out =
            evaluate(repo.path(), &repo.path().join("app/main.jsonnet"), &opts).expect("evaluates");
        assert_eq!(out[0]["metadata"]["name"], "prod-cm");
        assert_eq!(out[0]["data"]["color"], "blue");
        assert_eq!(out[0]["data"]["replicas"], "3");
        assert_eq!(out[0]["data"]["tier"], "web");
    }

    #[test]
    fn errors_name_the_file_and_imports_stay_in_the_repository() {
        let outside = mk_repo(&[("secret.libsonnet", "{s: 1}")]);
        let escape = format!(
            "import '{}'",
            outside.path().join("secret.libsonnet").display()
        );
        let repo = mk_repo(&[
            ("bad.jsonnet", "{ a: error 'boom' }"),
            ("syntax.jsonnet", "{ a: "),
            ("missing.jsonnet", "import 'nope.libsonnet'"),
            ("escape.jsonnet", &escape),
        ]);
        let opts = JsonnetOptions::default();
        let run = |f: &str| {
            evaluate(repo.path(), &repo.path().join(f), &opts)
                .expect_err(f)
                .to_string()
        };
        let e = run("bad.jsonnet");
        assert!(e.contains("bad.jsonnet") && e.contains("boom"), "{e}");
        assert!(run("syntax.jsonnet").contains("syntax.jsonnet"));
        assert!(run("missing.jsonnet").contains("not found"));
        assert!(run("escape.jsonnet").contains("leaves the repository"));
    }
}
