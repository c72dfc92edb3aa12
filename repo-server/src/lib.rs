//! flotilla-repo-server: fetches and caches Git repositories, resolves revisions and renders
//! application sources into Kubernetes objects. Must not talk to target clusters.
#![forbid(unsafe_code)]

pub mod error;
pub mod paths;
pub mod render;

pub use error::RenderError;
