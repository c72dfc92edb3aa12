//! The *Kustomize* source type: run `kustomize build` or `kubectl kustomize` (whichever is on
//! PATH) on the source directory and parse what it prints.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::RenderError;
use crate::paths::confine;
use crate::render::directory::parse_manifests;
use crate::source::KustomizeOptions;

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
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, RenderError> {
    let dir = confine(root, source_path)?;
    let tool = tool.ok_or(RenderError::ToolMissing {
        wanted: "kustomize or kubectl (for `kubectl kustomize`)",
    })?;
    build(tool, &dir, source_path, timeout)
}

/// Like [`render`], with Argo CD's `spec.source.kustomize` overrides (name prefix/suffix,
/// images, common labels/annotations, namespace) applied by a wrapping kustomization, so the
/// checkout itself is never modified (it is shared by concurrent renders).
pub fn render_with(
    root: &Path,
    source_path: &str,
    opts: &KustomizeOptions,
    tool: Option<&KustomizeTool>,
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, RenderError> {
    if opts.is_empty() {
        return render(root, source_path, tool, timeout);
    }
    let dir = confine(root, source_path)?;
    let tool = tool.ok_or(RenderError::ToolMissing {
        wanted: "kustomize or kubectl (for `kubectl kustomize`)",
    })?;
    let io_err = |source| RenderError::Read {
        path: root.to_path_buf(),
        source,
    };
    let parent = root.parent().unwrap_or(root);
    let wrap = tempfile::Builder::new()
        .prefix(".flotilla-kustomize-")
        .tempdir_in(parent)
        .map_err(io_err)?;
    let root_name = root
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let rel = dir
        .strip_prefix(root.canonicalize().map_err(io_err)?)
        .unwrap_or(&dir);
    let target = Path::new("..").join(root_name).join(rel);
    let doc = wrapper(&target.to_string_lossy(), opts);
    let text = serde_yaml::to_string(&doc).map_err(|e| RenderError::Tool {
        tool: tool.name(),
        path: source_path.to_string(),
        message: format!("writing the override kustomization: {e}"),
    })?;
    std::fs::write(wrap.path().join("kustomization.yaml"), text).map_err(io_err)?;
    build(tool, wrap.path(), source_path, timeout)
}

/// The wrapping kustomization for `opts` around `resource`.
fn wrapper(resource: &str, opts: &KustomizeOptions) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let mut k = Map::new();
    k.insert(
        "apiVersion".into(),
        json!("kustomize.config.k8s.io/v1beta1"),
    );
    k.insert("kind".into(), json!("Kustomization"));
    k.insert("resources".into(), json!([resource]));
    let mut put = |key: &str, v: &str| {
        if !v.is_empty() {
            k.insert(key.into(), Value::String(v.into()));
        }
    };
    put("namePrefix", &opts.name_prefix);
    put("nameSuffix", &opts.name_suffix);
    put("namespace", &opts.namespace);
    if !opts.images.is_empty() {
        k.insert(
            "images".into(),
            Value::Array(opts.images.iter().map(|i| image_override(i)).collect()),
        );
    }
    let map = |pairs: &[(String, String)]| {
        Value::Object(
            pairs
                .iter()
                .map(|(a, b)| (a.clone(), Value::String(b.clone())))
                .collect(),
        )
    };
    if !opts.common_labels.is_empty() {
        k.insert("commonLabels".into(), map(&opts.common_labels));
    }
    if !opts.common_annotations.is_empty() {
        k.insert("commonAnnotations".into(), map(&opts.common_annotations));
    }
    Value::Object(k)
}

/// Argo CD's image override syntax, `[old=]new[:tag|@digest]`, as a kustomize `images` entry.
fn image_override(spec: &str) -> serde_json::Value {
    use serde_json::{Map, Value};
    let (old, new) = match spec.split_once('=') {
        Some((o, n)) => (Some(o), n),
        None => (None, spec),
    };
    let (image, tag, digest) = if let Some((i, d)) = new.split_once('@') {
        (i, None, Some(d))
    } else {
        match new.rfind(':') {
            Some(pos) if !new[pos..].contains('/') => (&new[..pos], Some(&new[pos + 1..]), None),
            _ => (new, None, None),
        }
    };
    let mut m = Map::new();
    m.insert("name".into(), Value::String(old.unwrap_or(image).into()));
    if old.is_some_and(|o| o != image) {
        m.insert("newName".into(), Value::String(image.into()));
    }
    if let Some(t) = tag {
        m.insert("newTag".into(), Value::String(t.into()));
    }
    if let Some(d) = digest {
        m.insert("digest".into(), Value::String(d.into()));
    }
    Value::Object(m)
}

fn build(
    tool: &KustomizeTool,
    dir: &Path,
    source_path: &str,
    timeout: Duration,
) -> Result<Vec<serde_json::Value>, RenderError> {
    let out = super::exec::run(
        tool.command(dir).current_dir(dir),
        timeout,
        tool.name(),
        source_path,
    )?;
    if !out.success {
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

    const T: Duration = super::super::exec::DEFAULT_TIMEOUT;

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
        let err = render(repo.path(), "k", None, T).expect_err("no tool");
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
        let objs = render(repo.path(), "k8s/overlays/dev", Some(&tool), T).expect("builds");
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0]["metadata"]["name"], "dev-settings");
    }

    #[test]
    fn overrides_apply_through_a_wrapper_without_touching_the_checkout() {
        let tool = KustomizeTool::find().expect("kubectl or kustomize on PATH (see README)");
        let repo = mk_repo(&[
            ("app/kustomization.yaml", "resources: [deploy.yaml]\n"),
            (
                "app/deploy.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx:1.25}]}\n",
            ),
        ]);
        let opts = KustomizeOptions {
            name_prefix: "dev-".into(),
            images: vec!["nginx=registry.local/nginx:1.27".into()],
            common_labels: vec![("team".into(), "a".into())],
            namespace: "dev".into(),
            ..Default::default()
        };
        let objs = render_with(repo.path(), "app", &opts, Some(&tool), T).expect("builds");
        let d = &objs[0];
        assert_eq!(d["metadata"]["name"], "dev-web");
        assert_eq!(d["metadata"]["namespace"], "dev");
        assert_eq!(d["metadata"]["labels"]["team"], "a");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.local/nginx:1.27"
        );
        let left: Vec<_> = std::fs::read_dir(repo.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["app"], "checkout untouched");
    }

    #[test]
    fn image_override_syntax() {
        use serde_json::json;
        assert_eq!(
            image_override("nginx:1.27"),
            json!({"name": "nginx", "newTag": "1.27"})
        );
        assert_eq!(
            image_override("nginx=reg:5000/nginx:2"),
            json!({"name": "nginx", "newName": "reg:5000/nginx", "newTag": "2"})
        );
        assert_eq!(
            image_override("reg:5000/app@sha256:abc"),
            json!({"name": "reg:5000/app", "digest": "sha256:abc"})
        );
        assert_eq!(
            image_override("reg:5000/app"),
            json!({"name": "reg:5000/app"})
        );
    }

    #[test]
    fn broken_kustomization_reports_the_tool_error() {
        let tool = KustomizeTool::find().expect("kubectl or kustomize on PATH (see README)");
        let repo = mk_repo(&[("k/kustomization.yaml", "resources: [missing.yaml]\n")]);
        let err = render(repo.path(), "k", Some(&tool), T).expect_err("missing resource");
        assert!(matches!(err, RenderError::Tool { .. }), "{err}");
        assert!(err.to_string().contains("missing.yaml"), "{err}");
    }
}
