//! Which namespaces' Applications this server serves (apps in any namespace): the control
//! plane's and those matching `--application-namespaces`, with the controllers' glob matcher;
//! and Argo CD's rule that an Application outside the control plane may use only a project
//! whose `sourceNamespaces` lists its namespace. Pure.

use flotilla_controller::project::{glob_match, source_namespace_allowed};
use flotilla_controller::types::AppProjectSpec;

/// The namespaces whose Applications are listed, watched, read and written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppScope {
    control: String,
    globs: Vec<String>,
}

impl AppScope {
    /// The control-plane namespace `control` plus the namespaces matching `globs` (each
    /// trimmed; empty ones dropped). No globs: the control plane only.
    pub fn new<S: AsRef<str>>(control: &str, globs: impl IntoIterator<Item = S>) -> Self {
        Self {
            control: control.to_string(),
            globs: globs
                .into_iter()
                .map(|g| g.as_ref().trim().to_string())
                .filter(|g| !g.is_empty())
                .collect(),
        }
    }

    /// The control-plane namespace.
    pub fn control(&self) -> &str {
        &self.control
    }

    /// Whether namespaces beyond the control plane are served (a cluster-wide watch).
    pub fn any_namespace(&self) -> bool {
        !self.globs.is_empty()
    }

    /// Whether Applications in `namespace` are served.
    pub fn serves(&self, namespace: &str) -> bool {
        namespace == self.control || self.globs.iter().any(|g| glob_match(g, namespace))
    }

    /// Why Application `name` in `namespace` may not use project `project_name` (`project`: its
    /// spec, `None` when it does not exist), if it may not. In the control plane any existing
    /// project will do; elsewhere only one whose `sourceNamespaces` lists the namespace.
    pub fn project_refusal(
        &self,
        name: &str,
        namespace: &str,
        project_name: &str,
        project: Option<&AppProjectSpec>,
    ) -> Option<String> {
        let Some(p) = project else {
            return Some(format!(
                "application references project {project_name} which does not exist"
            ));
        };
        (namespace != self.control && !source_namespace_allowed(p, namespace)).then(|| {
            format!(
                "application '{name}' in namespace '{namespace}' is not allowed to use project '{project_name}': the project's sourceNamespaces do not include it"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_project(source_namespaces: &[&str]) -> AppProjectSpec {
        serde_json::from_value(serde_json::json!({"sourceNamespaces": source_namespaces}))
            .expect("project")
    }

    #[test]
    fn serves_the_control_plane_and_the_namespaces_its_globs_match() {
        let only = AppScope::new("argocd", Vec::<String>::new());
        assert!(only.serves("argocd") && !only.serves("team-a") && !only.any_namespace());
        let scope = AppScope::new("argocd", [" team-* ", "", "apps"]);
        assert!(scope.any_namespace());
        for (ns, served) in [
            ("argocd", true),
            ("team-a", true),
            ("team-b", true),
            ("apps", true),
            ("apps2", false),
            ("other", false),
            ("team", false),
        ] {
            assert_eq!(scope.serves(ns), served, "{ns}");
        }
    }

    #[test]
    fn outside_the_control_plane_only_projects_listing_the_namespace() {
        let scope = AppScope::new("argocd", ["team-*"]);
        let teams = mk_project(&["team-*"]);
        let default = mk_project(&[]);
        assert_eq!(
            scope.project_refusal("web", "team-a", "teams", Some(&teams)),
            None
        );
        let why = scope
            .project_refusal("web", "team-a", "default", Some(&default))
            .expect("refused");
        assert!(
            why.contains("'team-a'")
                && why.contains("'default'")
                && why.contains("sourceNamespaces"),
            "{why}"
        );
        // The control plane may use any project, listed or not.
        assert_eq!(
            scope.project_refusal("web", "argocd", "default", Some(&default)),
            None
        );
        assert!(
            scope
                .project_refusal("web", "argocd", "nope", None)
                .is_some_and(|w| w.contains("does not exist"))
        );
    }
}
