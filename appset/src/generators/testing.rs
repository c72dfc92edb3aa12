//! Test helpers: an in-memory `Inputs` (clusters, directories, files) and option shortcuts.

use serde_json::{Map, Value};

use super::glob::{FileGlobbing, file_glob_matches};
use super::{ClusterInfo, InputError, Inputs, Options};

/// In-memory inputs; `fail` makes every Git read fail.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeInputs {
    pub clusters: Vec<ClusterInfo>,
    pub dirs: Vec<String>,
    pub files: Vec<(String, Vec<u8>)>,
    pub fail: bool,
}

impl FakeInputs {
    pub fn with_clusters(clusters: Vec<ClusterInfo>) -> Self {
        Self {
            clusters,
            ..Default::default()
        }
    }
}

impl Inputs for FakeInputs {
    fn clusters(&self) -> Vec<ClusterInfo> {
        self.clusters.clone()
    }

    fn git_directories(&self, repo: &str, _revision: &str) -> Result<Vec<String>, InputError> {
        if self.fail {
            return Err(InputError::Repository {
                repo: repo.into(),
                message: "unreachable".into(),
            });
        }
        Ok(self.dirs.clone())
    }

    fn git_files(
        &self,
        repo: &str,
        _revision: &str,
        glob: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, InputError> {
        if self.fail {
            return Err(InputError::Repository {
                repo: repo.into(),
                message: "unreachable".into(),
            });
        }
        let mut out = Vec::new();
        for (p, d) in &self.files {
            let m = file_glob_matches(glob, p, FileGlobbing::GitLsFiles).map_err(|e| {
                InputError::Glob {
                    glob: glob.into(),
                    message: e.to_string(),
                }
            })?;
            if m {
                out.push((p.clone(), d.clone()));
            }
        }
        Ok(out)
    }
}

pub(crate) fn flat() -> Options {
    Options::default()
}

pub(crate) fn go() -> Options {
    Options {
        go_template: true,
        ..Default::default()
    }
}

/// A JSON object literal as a parameter map (empty if not an object).
pub(crate) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
