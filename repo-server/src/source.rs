//! What a render request asks for, as plain domain types independent of the wire format:
//! the source (path, type and its options) and the key that identifies one render.

use sha2::{Digest, Sha256};

pub use crate::render::directory::DirectoryOptions;

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

/// Which renderer a source uses. `Auto` detects it the way Argo CD does (a kustomization file
/// means Kustomize, a `Chart.yaml` means Helm, anything else is a directory of manifests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourceKind {
    #[default]
    Auto,
    Directory(DirectoryOptions),
    Kustomize(KustomizeOptions),
}

/// One application source to render at one commit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceSpec {
    pub repo_url: String,
    pub path: String,
    pub kind: SourceKind,
    /// Release name / default namespace for renderers that use them.
    pub app_name: String,
    pub namespace: String,
}

impl SourceSpec {
    /// A stable digest of everything that changes the render output besides the commit.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        field(&self.repo_url);
        field(&self.path);
        field(&self.app_name);
        field(&self.namespace);
        match &self.kind {
            SourceKind::Auto => field("auto"),
            SourceKind::Directory(d) => {
                field("directory");
                field(if d.recurse { "1" } else { "0" });
                field(&d.include);
                field(&d.exclude);
            }
            SourceKind::Kustomize(k) => {
                field("kustomize");
                field(&k.name_prefix);
                field(&k.name_suffix);
                field(&k.namespace);
                for i in &k.images {
                    field(i);
                }
                field("|");
                for (a, b) in k.common_labels.iter().chain(&k.common_annotations) {
                    field(a);
                    field(b);
                }
            }
        }
        hex::encode(h.finalize())
    }
}

/// What rendering produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub commit: String,
    pub objects: Vec<serde_json::Value>,
    /// `Directory` or `Kustomize`, as Argo CD names source types.
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
    }
}
