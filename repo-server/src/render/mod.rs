//! Renderers turn a source directory in a checkout into Kubernetes objects; each source type
//! (directory, Kustomize; Helm and Jsonnet later) is one module, and `render` picks one.

pub mod directory;
pub mod kustomize;

use std::path::Path;

use serde_json::Value;

use crate::RenderError;
use crate::paths::confine;
use crate::source::{SourceKind, SourceSpec};
use kustomize::KustomizeTool;

/// File names that mark a directory as a kustomization.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Render `spec` from the checkout at `root`; returns the objects and the source type.
pub fn render(
    root: &Path,
    spec: &SourceSpec,
    tool: Option<&KustomizeTool>,
) -> Result<(Vec<Value>, &'static str), RenderError> {
    let dir = confine(root, &spec.path)?;
    if !dir.is_dir() {
        return Err(RenderError::PathMissing {
            path: spec.path.clone(),
        });
    }
    let kind = match &spec.kind {
        SourceKind::Auto if KUSTOMIZATION_FILES.iter().any(|f| dir.join(f).is_file()) => {
            SourceKind::Kustomize(Default::default())
        }
        SourceKind::Auto if dir.join("Chart.yaml").is_file() => {
            return Err(RenderError::Unsupported {
                what: format!(
                    "{} is a Helm chart; the Helm renderer is not available yet",
                    spec.path
                ),
            });
        }
        SourceKind::Auto => SourceKind::Directory(Default::default()),
        other => other.clone(),
    };
    match kind {
        SourceKind::Directory(opts) => {
            Ok((directory::render(root, &spec.path, &opts)?, "Directory"))
        }
        SourceKind::Kustomize(opts) => Ok((
            kustomize::render_with(root, &spec.path, &opts, tool)?,
            "Kustomize",
        )),
        SourceKind::Auto => Err(RenderError::Unsupported {
            what: "source type could not be detected".into(),
        }),
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

    fn spec(path: &str) -> SourceSpec {
        SourceSpec {
            path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn detects_directory_kustomize_and_refuses_helm_clearly() {
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
        let tool = KustomizeTool::find();
        let (objs, ty) = render(repo.path(), &spec("plain"), tool.as_ref()).expect("dir");
        assert_eq!((objs.len(), ty), (1, "Directory"));
        let (objs, ty) = render(repo.path(), &spec("k"), tool.as_ref()).expect("kustomize");
        assert_eq!(
            (objs[0]["metadata"]["name"].as_str(), ty),
            (Some("k"), "Kustomize")
        );
        let err = render(repo.path(), &spec("chart"), tool.as_ref()).expect_err("helm");
        assert!(err.to_string().contains("Helm"), "{err}");
        let err = render(repo.path(), &spec("plain/cm.yaml"), tool.as_ref()).expect_err("file");
        assert!(matches!(err, RenderError::PathMissing { .. }), "{err}");
    }
}
