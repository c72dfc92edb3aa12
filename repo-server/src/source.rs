//! What a render request asks for, as plain domain types independent of the wire format:
//! the source (path, type and its options) and the key that identifies one render.

use sha2::{Digest, Sha256};

pub use crate::render::directory::DirectoryOptions;
pub use crate::render::jsonnet::{JsonnetOptions, JsonnetVar};

/// `spec.source.kustomize` options applied on top of the kustomization in Git.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KustomizeOptions {
    pub name_prefix: String,
    pub name_suffix: String,
    pub images: Vec<String>,
    pub common_labels: Vec<(String, String)>,
    pub common_annotations: Vec<(String, String)>,
    pub namespace: String,
}

impl KustomizeOptions {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// A Helm `--set` (or `--set-string`) parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelmParameter {
    pub name: String,
    pub value: String,
    pub force_string: bool,
}

/// `spec.source.helm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelmOptions {
    /// Relative to the chart directory; must stay inside the repository.
    pub value_files: Vec<String>,
    /// Inline values (YAML).
    pub values: String,
    pub parameters: Vec<HelmParameter>,
    /// `--set-file name=path`, path relative to the chart directory.
    pub file_parameters: Vec<(String, String)>,
    /// Defaults to the Application's name.
    pub release_name: String,
    pub skip_crds: bool,
    pub ignore_missing_value_files: bool,
    /// Send credentials to chart archives on other origins (`helm.passCredentials`).
    pub pass_credentials: bool,
    /// The destination's version and API versions (`--kube-version`, `--api-versions`).
    pub kube_version: String,
    pub api_versions: Vec<String>,
    /// In an Application with `spec.sources`: the checkouts of the ref sources this render
    /// reads (`$name/...` value files and file parameters), by name; `None` for a
    /// single-source Application, where a `$` path is an ordinary path. Filled by the backend
    /// from [`SourceSpec::refs`] once they are written out; never part of a key.
    pub ref_roots: Option<Vec<(String, std::path::PathBuf)>>,
}

/// A ref source a render reads files from (`ref: name` in a multi-source Application).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRef {
    /// The name without the `$`.
    pub name: String,
    /// The Git repository and the credentials to read it with.
    pub repo: crate::backend::RepoRef,
    /// The full commit SHA to read at.
    pub commit: String,
}

/// `spec.source.plugin`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginOptions {
    pub name: String,
    /// Sorted; passed to the command as `ARGOCD_ENV_<name>`.
    pub env: Vec<(String, String)>,
    /// `KUBE_VERSION`, `KUBE_API_VERSIONS`, `ARGOCD_APP_SOURCE_TARGET_REVISION`.
    pub kube_version: String,
    pub api_versions: Vec<String>,
    pub target_revision: String,
}

/// Which renderer a source uses. `Auto` detects it the way Argo CD does (a kustomization file
/// means Kustomize, a `Chart.yaml` means Helm, anything else is a directory of manifests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourceKind {
    #[default]
    Auto,
    Directory(DirectoryOptions),
    Kustomize(KustomizeOptions),
    Helm(HelmOptions),
    Plugin(PluginOptions),
}

impl SourceKind {
    /// Whether the output depends on the Application's name or namespace (Helm's release name
    /// and namespace; plugins get both in their environment), so renders cannot be shared
    /// between Applications.
    pub fn app_specific(&self) -> bool {
        matches!(self, Self::Helm(_) | Self::Plugin(_))
    }
}

/// One application source to render at one commit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceSpec {
    pub repo_url: String,
    pub path: String,
    /// Set when `repo_url` is a Helm chart repository: the chart to render.
    pub chart: String,
    pub kind: SourceKind,
    /// Release name / default namespace for renderers that use them.
    pub app_name: String,
    pub namespace: String,
    /// The Application has `spec.sources`: `$name/...` Helm paths read from [`Self::refs`].
    pub multiple_sources: bool,
    /// The ref sources this source reads files from.
    pub refs: Vec<SourceRef>,
}

impl SourceSpec {
    /// A stable digest of everything in the source that changes the render output besides
    /// the commit, *not* the Application: renders of one source at one commit are shared by
    /// every Application using it, unless its kind is app-specific (see [`Self::render_key`]).
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        field(&self.repo_url);
        field(&self.path);
        field(&self.chart);
        match &self.kind {
            SourceKind::Auto => field("auto"),
            SourceKind::Directory(d) => {
                field("directory");
                field(if d.recurse { "1" } else { "0" });
                field(&d.include);
                field(&d.exclude);
                for (tag, vars) in [("ext", &d.jsonnet.ext_vars), ("tla", &d.jsonnet.tlas)] {
                    for v in vars {
                        field(tag);
                        field(&v.name);
                        field(&v.value);
                        field(if v.code { "code" } else { "str" });
                    }
                }
                field("|");
                for l in &d.jsonnet.libs {
                    field(l);
                }
            }
            SourceKind::Helm(o) => {
                field("helm");
                for f in &o.value_files {
                    field("values-file");
                    field(f);
                }
                field("values");
                field(&o.values);
                for p in &o.parameters {
                    field("parameter");
                    field(&p.name);
                    field(&p.value);
                    field(if p.force_string { "s" } else { "v" });
                }
                for (n, p) in &o.file_parameters {
                    field("file-parameter");
                    field(n);
                    field(p);
                }
                field("end");
                field(&o.release_name);
                field(if o.skip_crds { "1" } else { "0" });
                field(if o.ignore_missing_value_files {
                    "1"
                } else {
                    "0"
                });
                field(if o.pass_credentials { "1" } else { "0" });
                field(&o.kube_version);
                for v in &o.api_versions {
                    field(v);
                }
            }
            SourceKind::Plugin(o) => {
                field("plugin");
                field(&o.name);
                field(&o.kube_version);
                field(&o.target_revision);
                for v in &o.api_versions {
                    field("api");
                    field(v);
                }
                for (n, v) in &o.env {
                    field(n);
                    field(v);
                }
            }
            SourceKind::Kustomize(k) => {
                field("kustomize");
                field(&k.name_prefix);
                field(&k.name_suffix);
                field(&k.namespace);
                for i in &k.images {
                    field("image");
                    field(i);
                }
                for (tag, pairs) in [
                    ("label", &k.common_labels),
                    ("annotation", &k.common_annotations),
                ] {
                    for (a, b) in pairs {
                        field(tag);
                        field(a);
                        field(b);
                    }
                }
            }
        }
        // What a multi-source render reads besides its own tree (names, repositories, commits;
        // never credentials). Nothing for a single-source render, so its digest is unchanged.
        if self.multiple_sources || !self.refs.is_empty() {
            field("multiple-sources");
            for r in &self.refs {
                field("ref");
                field(&r.name);
                field(&r.repo.url);
                field(&r.commit);
            }
        }
        hex::encode(h.finalize())
    }

    /// The key identical renders share, for a source whose kind is known: the digest, plus the
    /// Application's name and namespace when the kind's output depends on them.
    pub fn render_key(&self, kind: &SourceKind) -> String {
        if kind.app_specific() {
            format!("{}:{}:{}", self.digest(), self.app_name, self.namespace)
        } else {
            self.digest()
        }
    }
}

/// What rendering produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub commit: String,
    pub objects: Vec<serde_json::Value>,
    /// `Directory`, `Kustomize`, `Helm` or `Plugin`, as Argo CD names source types.
    pub source_type: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_every_option_and_not_otherwise() {
        let base = SourceSpec {
            repo_url: "https://git/x".into(),
            path: "apps/web".into(),
            ..Default::default()
        };
        assert_eq!(base.digest(), base.clone().digest());
        let mut other = base.clone();
        other.path = "apps/web2".into();
        assert_ne!(base.digest(), other.digest());
        let mut k = base.clone();
        k.kind = SourceKind::Kustomize(KustomizeOptions {
            name_prefix: "dev-".into(),
            ..Default::default()
        });
        assert_ne!(base.digest(), k.digest());
        let mut d = base.clone();
        d.kind = SourceKind::Directory(DirectoryOptions {
            recurse: true,
            ..Default::default()
        });
        assert_ne!(base.digest(), d.digest());
        // Field boundaries are length-prefixed: ("ab","c") is not ("a","bc").
        let a = SourceSpec {
            repo_url: "ab".into(),
            path: "c".into(),
            ..Default::default()
        };
        let b = SourceSpec {
            repo_url: "a".into(),
            path: "bc".into(),
            ..Default::default()
        };
        assert_ne!(a.digest(), b.digest());
        // Labels are not annotations; ext vars are not TLAs.
        let kz = |labels: bool| SourceSpec {
            kind: SourceKind::Kustomize(KustomizeOptions {
                common_labels: if labels {
                    vec![("x".into(), "y".into())]
                } else {
                    vec![]
                },
                common_annotations: if labels {
                    vec![]
                } else {
                    vec![("x".into(), "y".into())]
                },
                ..Default::default()
            }),
            ..base.clone()
        };
        assert_ne!(kz(true).digest(), kz(false).digest());
        let var = JsonnetVar {
            name: "n".into(),
            value: "v".into(),
            code: false,
        };
        let js = |ext: bool| SourceSpec {
            kind: SourceKind::Directory(DirectoryOptions {
                jsonnet: JsonnetOptions {
                    ext_vars: if ext { vec![var.clone()] } else { vec![] },
                    tlas: if ext { vec![] } else { vec![var.clone()] },
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..base.clone()
        };
        assert_ne!(js(true).digest(), js(false).digest());
        // A ref source's commit is part of the render.
        let with_ref = |commit: &str| SourceSpec {
            multiple_sources: true,
            refs: vec![SourceRef {
                name: "values".into(),
                repo: crate::backend::RepoRef {
                    url: "https://git/values".into(),
                    ..Default::default()
                },
                commit: commit.into(),
            }],
            ..base.clone()
        };
        assert_ne!(with_ref("a").digest(), with_ref("b").digest());
        assert_ne!(with_ref("a").digest(), base.digest());
        assert_eq!(with_ref("a").digest(), with_ref("a").digest());
    }
}
