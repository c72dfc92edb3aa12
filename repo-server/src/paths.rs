//! Confinement of source paths to their repository: no absolute paths, no `..`, and no symlink
//! that resolves outside the checkout.

use std::path::{Component, Path, PathBuf};

use crate::RenderError;

/// Resolve `rel` (an Application's `spec.source.path`) inside `root`, refusing anything that
/// would leave it. `""` and `"."` mean the repository root.
pub fn confine(root: &Path, rel: &str) -> Result<PathBuf, RenderError> {
    let escapes = || RenderError::PathEscapes {
        path: rel.to_string(),
    };
    let rel_path = Path::new(rel);
    if rel_path.is_absolute() {
        return Err(escapes());
    }
    if rel_path.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    }) {
        return Err(escapes());
    }
    let root = root.canonicalize().map_err(|source| RenderError::Read {
        path: root.to_path_buf(),
        source,
    })?;
    let joined = root.join(rel_path);
    let real = match joined.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RenderError::PathMissing {
                path: rel.to_string(),
            });
        }
        Err(source) => {
            return Err(RenderError::Read {
                path: joined,
                source,
            });
        }
    };
    if !real.starts_with(&root) {
        return Err(escapes());
    }
    Ok(real)
}

/// Whether `file` (already inside `root`) still resolves inside it (symlinks followed).
pub fn stays_inside(root: &Path, file: &Path) -> bool {
    match (root.canonicalize(), file.canonicalize()) {
        (Ok(r), Ok(f)) => f.starts_with(r),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_and_absolute_paths_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["../etc", "a/../../b", "/etc"] {
            assert!(
                matches!(
                    confine(dir.path(), bad),
                    Err(RenderError::PathEscapes { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn missing_path_is_reported_as_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            confine(dir.path(), "nope"),
            Err(RenderError::PathMissing { .. })
        ));
        assert!(confine(dir.path(), "").is_ok());
        assert!(confine(dir.path(), ".").is_ok());
    }

    #[test]
    fn symlink_leaving_the_repo_is_refused() {
        let outside = tempfile::tempdir().expect("outside");
        let repo = tempfile::tempdir().expect("repo");
        std::os::unix::fs::symlink(outside.path(), repo.path().join("escape")).expect("symlink");
        assert!(matches!(
            confine(repo.path(), "escape"),
            Err(RenderError::PathEscapes { .. })
        ));
    }
}
