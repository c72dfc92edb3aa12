//! flotilla-controller: the Argo CD-dialect types (Application, AppProject) and, as the slice
//! grows, the cluster registry, live caches, diff, health and sync. Must not render manifests
//! itself: rendering belongs to the repo-server.
#![forbid(unsafe_code)]

pub mod clusters;
pub mod diff;
pub mod health;
pub mod types;
