//! The `argoproj.io/v1alpha1` kinds Flotilla reads and writes, field for field as Argo CD
//! documents them, and their CRDs (derived with kube-derive).

pub mod application;
pub mod appset;
pub mod fields;
pub mod project;
mod schema;

pub use application::{Application, ApplicationSpec, ApplicationStatus, application_crd};
pub use project::{AppProject, AppProjectSpec};

/// The API group and version of every Argo CD kind.
pub const GROUP: &str = "argoproj.io";
pub const VERSION: &str = "v1alpha1";
