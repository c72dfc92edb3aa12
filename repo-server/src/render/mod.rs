//! Renderers turn a source directory in a checkout into Kubernetes objects; each source type
//! (directory, Kustomize, later Helm and Jsonnet) is one module.

pub mod directory;
pub mod kustomize;
