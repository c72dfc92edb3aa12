//! The *Kustomize* source type: run `kustomize build` or `kubectl kustomize` (whichever is on
//! PATH) on the source directory and parse what it prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::RenderError;
use crate::paths::confine;
use crate::render::directory::parse_manifests;

/// The binary that builds kustomizations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KustomizeTool {
    /// `kustomize build DIR`
    Kustomize(PathBuf),
    /// `kubectl kustomize DIR`
    Kubectl(PathBuf),
}

fn which(name: &str, path_var: &str) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl KustomizeTool {
    /// Look on `PATH` (`kustomize` first, then `kubectl`).
    pub fn find() -> Option<Self> {
        Self::find_in(&std::env::var("PATH").unwrap_or_default())
    }

    pub fn find_in(path_var: &str) -> Option<Self> {
        which("kustomize", path_var)
            .map(Self::Kustomize)
            .or_else(|| which("kubectl", path_var).map(Self::Kubectl))
    }

    fn command(&self, dir: &Path) -> Command {
        match self {
            Self::Kustomize(bin) => {
                let mut c = Command::new(bin);
                c.arg("build").arg(dir);
                c
            }
            Self::Kubectl(bin) => {
                let mut c = Command::new(bin);
                c.arg("kustomize").arg(dir);
                c
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Kustomize(_) => "kustomize build",
            Self::Kubectl(_) => "kubectl kustomize",
        }
    }
}

/// Build the kustomization at `source_path` in the checkout `root`.
pub fn render(
    root: &Path,
    source_path: &str,
    tool: Option<&KustomizeTool>,
) -> Result<Vec<serde_json::Value>, RenderError> {
    let dir = confine(root, source_path)?;
    let tool = tool.ok_or(RenderError::ToolMissing {
        wanted: "kustomize or kubectl (for `kubectl kustomize`)",
    })?;
    let out = tool
        .command(&dir)
        .current_dir(&dir)
        .output()
        .map_err(|source| RenderError::Read {
            path: dir.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(RenderError::Tool {
            tool: tool.name(),
            path: source_path.to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_manifests(
        Path::new(&format!("{source_path} (kustomize output)")),
        &text,
    )
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
    fn no_tool_on_path_is_a_clear_error() {
        assert_eq!(KustomizeTool::find_in(""), None);
        let repo = mk_repo(&[("k/kustomization.yaml", "resources: []\n")]);
        let err = render(repo.path(), "k", None).expect_err("no tool");
        assert!(err.to_string().contains("kustomize or kubectl"), "{err}");
    }

    #[test]
    fn overlay_builds_with_base_and_name_prefix() {
        let tool = KustomizeTool::find().expect("kubectl or kustomize on PATH (see README)");
        let repo = mk_repo(&[
            ("k8s/base/kustomization.yaml", "resources: [cm.yaml]\n"),
            (
                "k8s/base/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: '1'}\n",
            ),
            (
                "k8s/overlays/dev/kustomization.yaml",
                "resources: [../../base]\nnamePrefix: dev-\n",
            ),
        ]);
        let objs = render(repo.path(), "k8s/overlays/dev", Some(&tool)).expect("builds");
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0]["metadata"]["name"], "dev-settings");
    }

    #[test]
    fn broken_kustomization_reports_the_tool_error() {
        let tool = KustomizeTool::find().expect("kubectl or kustomize on PATH (see README)");
        let repo = mk_repo(&[("k/kustomization.yaml", "resources: [missing.yaml]\n")]);
        let err = render(repo.path(), "k", Some(&tool)).expect_err("missing resource");
        assert!(matches!(err, RenderError::Tool { .. }), "{err}");
        assert!(err.to_string().contains("missing.yaml"), "{err}");
    }
}
