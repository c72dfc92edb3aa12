//! Renderers turn a source in a checkout into Kubernetes objects. Each source type is one
//! `Renderer` (directory with Jsonnet, Kustomize, Helm, config-management plugins);
//! `Renderers` detects the type of a source and dispatches to the right one.

pub mod directory;
pub mod exec;
pub mod helm;
pub mod jsonnet;
pub mod kustomize;
pub mod plugin;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::RenderError;
use crate::paths::confine;
use crate::source::{HelmOptions, SourceKind, SourceSpec};
use kustomize::KustomizeTool;
use plugin::{BuildEnv, PluginConfig};

/// File names that mark a directory as a kustomization.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// What one render works on.
pub struct RenderInput<'a> {
    /// The tree: a checkout of the commit, or an unpacked Helm chart.
    pub root: &'a Path,
    pub spec: &'a SourceSpec,
    /// The source kind, already detected (never `Auto`).
    pub kind: &'a SourceKind,
    /// The commit (or chart version) being rendered.
    pub revision: &'a str,
    /// How long the render may take: tools are killed after it, walks stop.
    pub timeout: std::time::Duration,
}

/// One source type.
pub trait Renderer: Send + Sync {
    /// Argo CD's name of the source type (`status.sourceType`).
    fn source_type(&self) -> &'static str;
    /// Whether this renderer handles `kind`.
    fn handles(&self, kind: &SourceKind) -> bool;
    fn render(&self, input: &RenderInput) -> Result<Vec<Value>, RenderError>;
}

struct Directory(jsonnet::Evaluator);

impl Renderer for Directory {
    fn source_type(&self) -> &'static str {
        "Directory"
    }
    fn handles(&self, kind: &SourceKind) -> bool {
        matches!(kind, SourceKind::Directory(_))
    }
    fn render(&self, i: &RenderInput) -> Result<Vec<Value>, RenderError> {
        let SourceKind::Directory(opts) = i.kind else {
            return Err(mismatch(self));
        };
        directory::render_with(
            i.root,
            &i.spec.path,
            opts,
            std::time::Instant::now() + i.timeout,
            &self.0,
        )
    }
}

struct Kustomize(Option<KustomizeTool>);

impl Renderer for Kustomize {
    fn source_type(&self) -> &'static str {
        "Kustomize"
    }
    fn handles(&self, kind: &SourceKind) -> bool {
        matches!(kind, SourceKind::Kustomize(_))
    }
    fn render(&self, i: &RenderInput) -> Result<Vec<Value>, RenderError> {
        let SourceKind::Kustomize(opts) = i.kind else {
            return Err(mismatch(self));
        };
        kustomize::render_with(i.root, &i.spec.path, opts, self.0.as_ref(), i.timeout)
    }
}

struct Helm(Option<PathBuf>);

impl Renderer for Helm {
    fn source_type(&self) -> &'static str {
        "Helm"
    }
    fn handles(&self, kind: &SourceKind) -> bool {
        matches!(kind, SourceKind::Helm(_))
    }
    fn render(&self, i: &RenderInput) -> Result<Vec<Value>, RenderError> {
        let SourceKind::Helm(opts) = i.kind else {
            return Err(mismatch(self));
        };
        // A chart from a Helm repository is unpacked at the root; from Git it is at the path.
        let path = if i.spec.chart.is_empty() {
            i.spec.path.as_str()
        } else {
            ""
        };
        helm::render(
            self.0.as_deref(),
            i.root,
            path,
            &i.spec.app_name,
            &i.spec.namespace,
            opts,
            i.timeout,
        )
    }
}

struct Plugins(Vec<PluginConfig>);

impl Renderer for Plugins {
    fn source_type(&self) -> &'static str {
        "Plugin"
    }
    fn handles(&self, kind: &SourceKind) -> bool {
        matches!(kind, SourceKind::Plugin(_))
    }
    fn render(&self, i: &RenderInput) -> Result<Vec<Value>, RenderError> {
        let SourceKind::Plugin(opts) = i.kind else {
            return Err(mismatch(self));
        };
        // A plugin may write anything into its directory: it runs in a private copy of the
        // tree, discarded afterwards, so every other render still sees the pristine commit.
        let copy = private_copy(i.root)?;
        plugin::render(
            &self.0,
            &copy.path().join("tree"),
            opts,
            &BuildEnv {
                app_name: &i.spec.app_name,
                namespace: &i.spec.namespace,
                repo_url: &i.spec.repo_url,
                path: &i.spec.path,
                revision: i.revision,
            },
            i.timeout,
        )
    }
}

/// A copy of the tree at `root` in a new temporary directory (in the system temp dir) (symlinks copied as
/// links, never followed), at `<tempdir>/tree`.
fn private_copy(root: &Path) -> Result<tempfile::TempDir, RenderError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenderError::Read { path, source }
    };
    // Not beside the shared export: a relative path out of the copy must not reach it.
    let parent = std::env::temp_dir();
    let dir = tempfile::Builder::new()
        .prefix("flotilla-plugin-")
        .tempdir_in(&parent)
        .map_err(io(&parent))?;
    copy_dir(root, &dir.path().join("tree"))?;
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), RenderError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenderError::Read { path, source }
    };
    std::fs::create_dir(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ty = entry.file_type().map_err(io(&src))?;
        if ty.is_dir() {
            copy_dir(&src, &dst)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(&src).map_err(io(&src))?;
            std::os::unix::fs::symlink(target, &dst).map_err(io(&dst))?;
        } else if ty.is_file() {
            std::fs::copy(&src, &dst).map_err(io(&src))?;
        }
    }
    Ok(())
}

fn mismatch(r: &dyn Renderer) -> RenderError {
    RenderError::Unsupported {
        what: format!(
            "{} renderer called for another source type",
            r.source_type()
        ),
    }
}

/// Every renderer this repo-server has, and the tools they use.
pub struct Renderers {
    all: Vec<Box<dyn Renderer>>,
}

impl std::fmt::Debug for Renderers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.all.iter().map(|r| r.source_type()))
            .finish()
    }
}

impl Renderers {
    pub fn new(
        kustomize: Option<KustomizeTool>,
        helm: Option<PathBuf>,
        plugins: Vec<PluginConfig>,
    ) -> Self {
        Self {
            all: vec![
                Box::new(Directory(jsonnet::Evaluator::InProcess)),
                Box::new(Kustomize(kustomize)),
                Box::new(Helm(helm)),
                Box::new(Plugins(plugins)),
            ],
        }
    }

    /// Evaluate Jsonnet with `evaluator` (the repo-server isolates it in a child process).
    pub fn with_jsonnet(mut self, evaluator: jsonnet::Evaluator) -> Self {
        self.all[0] = Box::new(Directory(evaluator));
        self
    }

    /// With the tools found on this machine and no plugins.
    pub fn discover() -> Self {
        Self::new(KustomizeTool::find(), helm::find_helm(), Vec::new())
    }

    /// The kind of `spec` in the tree `root`: as given, or detected the way Argo CD does (a
    /// chart from a Helm repository or a `Chart.yaml` is Helm, a kustomization file is
    /// Kustomize, anything else a directory).
    pub fn detect(&self, root: &Path, spec: &SourceSpec) -> Result<SourceKind, RenderError> {
        if !spec.chart.is_empty() {
            return match &spec.kind {
                SourceKind::Auto => Ok(SourceKind::Helm(HelmOptions::default())),
                SourceKind::Helm(_) => Ok(spec.kind.clone()),
                _ => Err(RenderError::Unsupported {
                    what: format!(
                        "chart {} comes from a Helm repository: only Helm options apply",
                        spec.chart
                    ),
                }),
            };
        }
        let dir = confine(root, &spec.path)?;
        if !dir.is_dir() {
            return Err(RenderError::PathMissing {
                path: spec.path.clone(),
            });
        }
        Ok(match &spec.kind {
            SourceKind::Auto if KUSTOMIZATION_FILES.iter().any(|f| dir.join(f).is_file()) => {
                SourceKind::Kustomize(Default::default())
            }
            SourceKind::Auto if dir.join("Chart.yaml").is_file() => {
                SourceKind::Helm(HelmOptions::default())
            }
            SourceKind::Auto => SourceKind::Directory(Default::default()),
            other => other.clone(),
        })
    }

    /// Render with the renderer for `kind` (from [`Self::detect`]); returns the objects and
    /// the source type.
    pub fn render(&self, input: &RenderInput) -> Result<(Vec<Value>, &'static str), RenderError> {
        let r = self
            .all
            .iter()
            .find(|r| r.handles(input.kind))
            .ok_or_else(|| RenderError::Unsupported {
                what: "source type could not be detected".into(),
            })?;
        Ok((r.render(input)?, r.source_type()))
    }
}

/// Detect and render in one step (tests and simple callers).
pub fn render(
    root: &Path,
    spec: &SourceSpec,
    renderers: &Renderers,
) -> Result<(Vec<Value>, &'static str), RenderError> {
    let kind = renderers.detect(root, spec)?;
    renderers.render(&RenderInput {
        root,
        spec,
        kind: &kind,
        revision: "",
        timeout: exec::DEFAULT_TIMEOUT,
    })
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

    fn spec(path: &str) -> SourceSpec {
        SourceSpec {
            path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn detects_directory_kustomize_and_helm() {
        let repo = mk_repo(&[
            (
                "plain/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
            ),
            ("k/kustomization.yaml", "resources: [cm.yaml]\n"),
            (
                "k/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: k}\n",
            ),
            ("chart/Chart.yaml", "name: c\nversion: 1.0.0\n"),
        ]);
        let r = Renderers::new(KustomizeTool::find(), None, Vec::new());
        let (objs, ty) = render(repo.path(), &spec("plain"), &r).expect("dir");
        assert_eq!((objs.len(), ty), (1, "Directory"));
        let (objs, ty) = render(repo.path(), &spec("k"), &r).expect("kustomize");
        assert_eq!(
            (objs[0]["metadata"]["name"].as_str(), ty),
            (Some("k"), "Kustomize")
        );
        assert!(matches!(
            r.detect(repo.path(), &spec("chart")).expect("detect"),
            SourceKind::Helm(_)
        ));
        let err = render(repo.path(), &spec("chart"), &r).expect_err("no helm binary");
        assert!(err.to_string().contains("helm"), "{err}");
        let err = render(repo.path(), &spec("plain/cm.yaml"), &r).expect_err("file");
        assert!(matches!(err, RenderError::PathMissing { .. }), "{err}");
    }
}
