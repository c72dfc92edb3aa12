//! Typed render failures: each names the step that failed and the file or path involved, so
//! they can become clear Application conditions.

use std::path::PathBuf;

/// Why a source could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("path {path:?} leaves the repository")]
    PathEscapes { path: String },
    #[error("path {path:?} does not exist in the repository")]
    PathMissing { path: String },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid YAML in document {document}: {message}")]
    Yaml {
        path: PathBuf,
        document: usize,
        message: String,
    },
    #[error("{path}: invalid JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{path}: document {document} is not a Kubernetes object: {why}")]
    NotAnObject {
        path: PathBuf,
        document: usize,
        why: String,
    },
    #[error("no renderer binary on PATH: need {wanted}")]
    ToolMissing { wanted: &'static str },
    #[error("{tool} failed for {path}: {message}")]
    Tool {
        tool: &'static str,
        path: String,
        message: String,
    },
    #[error("{path}: Jsonnet: {message}")]
    Jsonnet { path: PathBuf, message: String },
    #[error("{tool} for {path} timed out after {after:?} (killed)")]
    Timeout {
        tool: &'static str,
        path: String,
        after: std::time::Duration,
    },
    #[error("render of {path} stopped: {why}")]
    Limit { path: String, why: String },
    #[error("unsupported source: {what}")]
    Unsupported { what: String },
    #[error("invalid glob {pattern:?}: {message}")]
    Glob { pattern: String, message: String },
}
