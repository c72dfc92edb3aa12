//! `app diff --local DIR`: render a local directory with the repo-server's renderers and the
//! application's own source settings (Helm values, Kustomize options, Jsonnet variables), so a
//! pull request can be previewed against live before it merges.

use std::path::Path;

use flotilla_controller::types::Application;
use serde_json::Value;

use crate::client::ApiError;

/// The objects `dir` renders to for `app` (its first source's settings; `dir` plays the
/// source's path).
pub fn render(app: &Value, dir: &Path) -> Result<Vec<Value>, ApiError> {
    let app: Application = serde_json::from_value(app.clone())
        .map_err(|e| ApiError::Config(format!("the application cannot be read: {e}")))?;
    if !dir.is_dir() {
        return Err(ApiError::Config(format!(
            "--local {}: not a directory",
            dir.display()
        )));
    }
    let sources = flotilla_controller::reconcile::sources(&app);
    let Some(src) = sources.first() else {
        return Err(ApiError::Config("the application has no source".into()));
    };
    if sources.len() > 1 {
        return Err(ApiError::Config(
            "--local diffs single-source applications only".into(),
        ));
    }
    let mut wire = flotilla_controller::manifests::wire_source(src);
    // The directory is the source: render its root, not the path inside the repository.
    wire.path = ".".into();
    wire.chart.clear();
    let name = app.metadata.name.clone().unwrap_or_default();
    let ns = app.spec.destination.namespace.clone().unwrap_or_default();
    let spec = flotilla_repo_server::grpc::source_spec(&wire, &name, &ns);
    let renderers = flotilla_repo_server::render::Renderers::discover();
    let (objects, _) = flotilla_repo_server::render::render(dir, &spec, &renderers)
        .map_err(|e| ApiError::Config(format!("rendering {}: {e}", dir.display())))?;
    Ok(objects)
}
