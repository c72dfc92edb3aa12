//! The *directory* source type: every `.yaml`, `.yml`, `.json` and `.jsonnet` file under the
//! source path (optionally recursive, filtered by include/exclude globs), multi-document YAML,
//! Jsonnet evaluated in process, `List` kinds expanded, in a stable order.

use std::path::{Path, PathBuf};
use std::time::Instant;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use serde_json::Value;

use crate::RenderError;
use crate::paths::{confine, stays_inside};
use crate::render::jsonnet::{self, JsonnetOptions};

/// `spec.source.directory`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryOptions {
    pub recurse: bool,
    /// Argo CD glob syntax, e.g. `*.yaml` or `{config.yaml,env/*.yaml}`; empty = everything.
    pub include: String,
    pub exclude: String,
    /// How `*.jsonnet` files are evaluated.
    pub jsonnet: JsonnetOptions,
}

fn globset(pattern: &str) -> Result<Option<GlobSet>, RenderError> {
    if pattern.trim().is_empty() {
        return Ok(None);
    }
    let err = |e: globset::Error| RenderError::Glob {
        pattern: pattern.to_string(),
        message: e.to_string(),
    };
    let mut b = GlobSetBuilder::new();
    b.add(Glob::new(pattern.trim()).map_err(err)?);
    Ok(Some(b.build().map_err(err)?))
}

fn manifest_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json" | "jsonnet")
    )
}

/// Most files one directory source may hold (a hostile tree cannot make a walk unbounded).
pub const MAX_FILES: usize = 100_000;

/// The manifest files under `dir`. Directory symlinks are never followed (a link loop cannot
/// make the walk endless; Argo CD's `filepath.Walk` does the same); file symlinks are kept and
/// checked by the caller to stay inside the repository. Stops at `deadline`.
fn collect(
    dir: &Path,
    recurse: bool,
    deadline: Instant,
    out: &mut Vec<PathBuf>,
) -> Result<(), RenderError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RenderError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| RenderError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if Instant::now() >= deadline || out.len() >= MAX_FILES {
            return Err(RenderError::Limit {
                path: dir.display().to_string(),
                why: format!("the walk took too long or found more than {MAX_FILES} files"),
            });
        }
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ty = entry.file_type().map_err(|source| RenderError::Read {
            path: path.clone(),
            source,
        })?;
        if ty.is_dir() {
            if recurse {
                collect(&path, recurse, deadline, out)?;
            }
        } else if ty.is_symlink() && path.is_dir() {
            // A link to a directory: not followed.
        } else if manifest_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Render the directory `source_path` of the checkout at `root`.
pub fn render(
    root: &Path,
    source_path: &str,
    opts: &DirectoryOptions,
) -> Result<Vec<Value>, RenderError> {
    render_until(
        root,
        source_path,
        opts,
        Instant::now() + super::exec::DEFAULT_TIMEOUT,
    )
}

/// [`render`], giving up on the walk at `deadline`, Jsonnet evaluated in this process.
pub fn render_until(
    root: &Path,
    source_path: &str,
    opts: &DirectoryOptions,
    deadline: Instant,
) -> Result<Vec<Value>, RenderError> {
    render_with(
        root,
        source_path,
        opts,
        deadline,
        &jsonnet::Evaluator::InProcess,
    )
}

/// [`render_until`] with Jsonnet evaluated by `evaluator`.
pub fn render_with(
    root: &Path,
    source_path: &str,
    opts: &DirectoryOptions,
    deadline: Instant,
    evaluator: &jsonnet::Evaluator,
) -> Result<Vec<Value>, RenderError> {
    let base = confine(root, source_path)?;
    let include = globset(&opts.include)?;
    let exclude = globset(&opts.exclude)?;
    let mut files = Vec::new();
    collect(&base, opts.recurse, deadline, &mut files)?;
    files.sort();
    let mut objects = Vec::new();
    for file in files {
        if !stays_inside(root, &file) {
            return Err(RenderError::PathEscapes {
                path: file.display().to_string(),
            });
        }
        let rel = file.strip_prefix(&base).unwrap_or(&file);
        if include.as_ref().is_some_and(|g| !g.is_match(rel)) {
            continue;
        }
        if exclude.as_ref().is_some_and(|g| g.is_match(rel)) {
            continue;
        }
        let shown = PathBuf::from(rel);
        if file.extension().and_then(|e| e.to_str()) == Some("jsonnet") {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = jsonnet::evaluate_with(evaluator, root, &file, &opts.jsonnet, left)?;
            let docs = match v {
                Value::Array(items) => items,
                other => vec![other],
            };
            objects.extend(objects_of(&shown, docs)?);
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|source| RenderError::Read {
            path: file.clone(),
            source,
        })?;
        objects.extend(parse_manifests(&shown, &text)?);
    }
    Ok(objects)
}

/// Parse one file: JSON (an object or a list of them) or multi-document YAML.
pub fn parse_manifests(path: &Path, text: &str) -> Result<Vec<Value>, RenderError> {
    let docs: Vec<Value> = if path.extension().and_then(|e| e.to_str()) == Some("json") {
        let v: Value = serde_json::from_str(text).map_err(|e| RenderError::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        match v {
            Value::Array(items) => items,
            other => vec![other],
        }
    } else {
        let mut docs = Vec::new();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let v = Value::deserialize(doc).map_err(|e| RenderError::Yaml {
                path: path.to_path_buf(),
                document: i + 1,
                message: e.to_string(),
            })?;
            docs.push(v);
        }
        docs
    };
    objects_of(path, docs)
}

/// Check parsed documents are Kubernetes objects (skipping empty ones) and expand `List`s.
pub fn objects_of(path: &Path, docs: Vec<Value>) -> Result<Vec<Value>, RenderError> {
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let not_object = |why: &str| RenderError::NotAnObject {
            path: path.to_path_buf(),
            document: i + 1,
            why: why.to_string(),
        };
        match doc {
            Value::Null => continue,
            Value::Object(ref m) => {
                let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
                if m.get("apiVersion")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(not_object("apiVersion is missing"));
                }
                if kind.is_empty() {
                    return Err(not_object("kind is missing"));
                }
                if kind.ends_with("List") && m.get("items").is_some_and(Value::is_array) {
                    for item in m["items"].as_array().into_iter().flatten() {
                        out.push(item.clone());
                    }
                } else {
                    out.push(doc);
                }
            }
            _ => return Err(not_object("a manifest must be a YAML/JSON object")),
        }
    }
    Ok(out)
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
    fn directory_links_are_not_followed() {
        // a, b, c -> . : a walk that followed them would go 3^40 deep.
        let repo = mk_repo(&[(
            "loop/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        )]);
        for l in ["a", "b", "c"] {
            std::os::unix::fs::symlink(".", repo.path().join("loop").join(l)).expect("link");
        }
        let opts = DirectoryOptions {
            recurse: true,
            ..Default::default()
        };
        let started = Instant::now();
        let objs = render(repo.path(), "loop", &opts).expect("renders");
        assert_eq!(names(&objs), ["a"]);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn yaml_bombs_and_deep_nesting_are_refused() {
        // Billion laughs: nine levels of nine aliases.
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let started = Instant::now();
        let err = parse_manifests(Path::new("bomb.yaml"), &bomb).expect_err("bomb refused");
        assert!(matches!(err, RenderError::Yaml { .. }), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse_manifests(Path::new("deep.yaml"), &deep).expect_err("deep refused");
        assert!(matches!(err, RenderError::Yaml { .. }), "{err}");
        let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse_manifests(Path::new("deep.json"), &deep_json).expect_err("deep json");
        assert!(matches!(err, RenderError::Json { .. }), "{err}");
    }

    fn names(objs: &[Value]) -> Vec<String> {
        objs.iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    const CM_A: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";

    #[test]
    fn multi_document_yaml_json_and_lists() {
        let repo = mk_repo(&[
            (
                "app/a.yaml",
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
            ),
            (
                "app/c.json",
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
            ),
            (
                "app/d.yml",
                "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: d1}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: d2}}\n",
            ),
            ("app/README.md", "not a manifest"),
        ]);
        let objs = render(repo.path(), "app", &DirectoryOptions::default()).expect("renders");
        assert_eq!(names(&objs), ["a", "b", "c", "d1", "d2"]);
    }

    #[test]
    fn recurse_and_globs() {
        let repo = mk_repo(&[
            ("app/top.yaml", CM_A),
            (
                "app/sub/deep.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\n",
            ),
            (
                "app/sub/skip.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: skip}\n",
            ),
            (
                "app/.hidden/x.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hidden}\n",
            ),
        ]);
        let flat = render(repo.path(), "app", &DirectoryOptions::default()).expect("flat");
        assert_eq!(names(&flat), ["a"]);
        let deep = DirectoryOptions {
            recurse: true,
            ..Default::default()
        };
        assert_eq!(
            names(&render(repo.path(), "app", &deep).expect("deep")),
            // Lexical walk order, like Argo CD's filepath.Walk: sub/ before top.yaml.
            ["deep", "skip", "a"]
        );
        let filtered = DirectoryOptions {
            recurse: true,
            include: "{top.yaml,sub/*.yaml}".into(),
            exclude: "sub/skip.yaml".into(),
            ..Default::default()
        };
        assert_eq!(
            names(&render(repo.path(), "app", &filtered).expect("filtered")),
            ["deep", "a"]
        );
    }

    #[test]
    fn jsonnet_files_render_next_to_yaml_and_libraries_are_not_rendered() {
        let repo = mk_repo(&[
            ("app/a.yaml", CM_A),
            (
                "app/b.jsonnet",
                "local lib = import 'lib.libsonnet'; [lib.cm('b'), lib.cm(std.extVar('extra'))]",
            ),
            (
                "app/lib.libsonnet",
                "{ cm(n):: {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: n}} }",
            ),
            (
                "app/c.jsonnet",
                "{apiVersion: 'v1', kind: 'List', items: [{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'c'}}]}",
            ),
        ]);
        let opts = DirectoryOptions {
            jsonnet: JsonnetOptions {
                ext_vars: vec![crate::render::jsonnet::JsonnetVar {
                    name: "extra".into(),
                    value: "x".into(),
                    code: false,
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            names(&render(repo.path(), "app", &opts).expect("renders")),
            ["a", "b", "x", "c"]
        );
        let bad = mk_repo(&[("app/bad.jsonnet", "{apiVersion: 'v1'}")]);
        let e = render(bad.path(), "app", &DirectoryOptions::default()).expect_err("no kind");
        assert!(e.to_string().contains("bad.jsonnet"), "{e}");
    }

    #[test]
    fn malformed_yaml_names_file_and_document() {
        let repo = mk_repo(&[(
            "app/bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\n---\nkey: [unclosed\n",
        )]);
        let err = render(repo.path(), "app", &DirectoryOptions::default()).expect_err("bad");
        let msg = err.to_string();
        assert!(
            msg.contains("bad.yaml") && msg.contains("document 2"),
            "{msg}"
        );
    }

    #[test]
    fn objects_need_api_version_and_kind() {
        let repo = mk_repo(&[("app/x.yaml", "metadata: {name: x}\n")]);
        let err = render(repo.path(), "app", &DirectoryOptions::default()).expect_err("no kind");
        assert!(matches!(err, RenderError::NotAnObject { .. }), "{err}");
    }

    #[test]
    fn empty_directory_renders_nothing_and_missing_path_is_an_error() {
        let repo = mk_repo(&[("app/README.md", "x")]);
        assert!(
            render(repo.path(), "app", &DirectoryOptions::default())
                .expect("empty ok")
                .is_empty()
        );
        assert!(matches!(
            render(repo.path(), "nope", &DirectoryOptions::default()),
            Err(RenderError::PathMissing { .. })
        ));
    }

    #[test]
    fn symlinked_file_leaving_the_repo_is_refused() {
        let outside = mk_repo(&[("secret.yaml", CM_A)]);
        let repo = mk_repo(&[("app/ok.yaml", CM_A)]);
        std::os::unix::fs::symlink(
            outside.path().join("secret.yaml"),
            repo.path().join("app/link.yaml"),
        )
        .expect("symlink");
        assert!(matches!(
            render(repo.path(), "app", &DirectoryOptions::default()),
            Err(RenderError::PathEscapes { .. })
        ));
    }
}
