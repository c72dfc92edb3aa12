//! AppProject enforcement with Argo CD's rules: which source repositories, destinations
//! (cluster and namespace) and resource kinds an Application may use. Pure: spec in, verdict out.

use crate::types::project::{AppProjectSpec, GroupKind, ProjectDestination};

/// Argo CD-style glob match (`*` matches anything, `/` included).
pub fn glob_match(pattern: &str, value: &str) -> bool {
    if pattern == "*" || pattern == value {
        return true;
    }
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher().is_match(value))
        .unwrap_or(false)
}

/// Allowed when some plain pattern matches and no `!pattern` does.
fn allowed_by(patterns: &[String], value: &str) -> bool {
    let denied = patterns
        .iter()
        .filter_map(|p| p.strip_prefix('!'))
        .any(|p| glob_match(p, value));
    !denied
        && patterns
            .iter()
            .filter(|p| !p.starts_with('!'))
            .any(|p| glob_match(p, value))
}

fn repo_normal(url: &str) -> String {
    url.trim_end_matches('/')
        .trim_end_matches(".git")
        .to_lowercase()
}

/// Dot-segment URLs are refused by the controller and the repo-server alike (one check).
pub use flotilla_core::redact::has_dot_segments;

/// Whether `repo_url` is an allowed source (`sourceRepos`, `*` for any). A URL with dot-segments
/// ([`has_dot_segments`]) never is.
pub fn source_allowed(p: &AppProjectSpec, repo_url: &str) -> bool {
    if has_dot_segments(repo_url) {
        return false;
    }
    let patterns: Vec<String> = p
        .source_repos
        .iter()
        .flatten()
        .map(|s| match s.strip_prefix('!') {
            Some(rest) => format!("!{}", repo_normal(rest)),
            None => repo_normal(s),
        })
        .collect();
    allowed_by(&patterns, &repo_normal(repo_url))
}

fn dest_matches(d: &ProjectDestination, server: &str, name: &str, namespace: &str) -> bool {
    let cluster = match (&d.server, &d.name) {
        (Some(s), _) if !s.is_empty() => glob_match(s.trim_start_matches('!'), server),
        (_, Some(n)) if !n.is_empty() => glob_match(n.trim_start_matches('!'), name),
        _ => false,
    };
    let ns = d
        .namespace
        .as_deref()
        .map(|n| glob_match(n.trim_start_matches('!'), namespace))
        .unwrap_or(false);
    cluster && ns
}

fn is_deny(d: &ProjectDestination) -> bool {
    [&d.server, &d.name, &d.namespace]
        .iter()
        .any(|f| f.as_deref().is_some_and(|v| v.starts_with('!')))
}

/// Whether namespace `namespace` on the cluster (`server`, `name`) is an allowed destination.
/// Whether an Application in `namespace` (outside the control plane) may use `p`: one of
/// its `sourceNamespaces` globs matches.
pub fn source_namespace_allowed(p: &AppProjectSpec, namespace: &str) -> bool {
    p.source_namespaces
        .iter()
        .flatten()
        .any(|g| glob_match(g, namespace))
}

pub fn destination_allowed(p: &AppProjectSpec, server: &str, name: &str, namespace: &str) -> bool {
    let dests = p.destinations.iter().flatten();
    let denied = dests
        .clone()
        .filter(|d| is_deny(d))
        .any(|d| dest_matches(d, server, name, namespace));
    !denied
        && dests
            .filter(|d| !is_deny(d))
            .any(|d| dest_matches(d, server, name, namespace))
}

fn gk_matches(list: &[GroupKind], group: &str, kind: &str) -> bool {
    list.iter()
        .any(|gk| glob_match(&gk.group, group) && glob_match(&gk.kind, kind))
}

/// Whether a resource of `group`/`kind` may be managed: cluster-scoped kinds must be
/// whitelisted (`clusterResourceWhitelist`, empty = none); namespaced kinds must match
/// `namespaceResourceWhitelist` when one is given; blacklists always exclude.
pub fn kind_allowed(p: &AppProjectSpec, group: &str, kind: &str, namespaced: bool) -> bool {
    if namespaced {
        let white_ok = match &p.namespace_resource_whitelist {
            Some(w) if !w.is_empty() => gk_matches(w, group, kind),
            _ => true,
        };
        white_ok
            && !gk_matches(
                p.namespace_resource_blacklist.as_deref().unwrap_or(&[]),
                group,
                kind,
            )
    } else {
        gk_matches(
            p.cluster_resource_whitelist.as_deref().unwrap_or(&[]),
            group,
            kind,
        ) && !gk_matches(
            p.cluster_resource_blacklist.as_deref().unwrap_or(&[]),
            group,
            kind,
        )
    }
}

/// The project Argo CD creates when none named `default` exists: everything allowed.
pub fn default_project() -> AppProjectSpec {
    AppProjectSpec {
        description: Some("Created by Flotilla: allows every source, destination and kind".into()),
        source_repos: Some(vec!["*".into()]),
        destinations: Some(vec![ProjectDestination {
            server: Some("*".into()),
            name: None,
            namespace: Some("*".into()),
        }]),
        cluster_resource_whitelist: Some(vec![GroupKind {
            group: "*".into(),
            kind: "*".into(),
        }]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_restricted() -> AppProjectSpec {
        serde_yaml::from_str(
            r#"
sourceRepos: ["https://github.com/my-org/*", "!https://github.com/my-org/secret*"]
destinations:
- {server: https://kubernetes.default.svc, namespace: "team-a-*"}
- {name: "edge-*", namespace: "team-a"}
namespaceResourceWhitelist: [{group: apps, kind: Deployment}, {group: "", kind: ConfigMap}]
"#,
        )
        .expect("spec")
    }

    #[test]
    fn source_repos_globs_and_negation() {
        let p = mk_restricted();
        assert!(source_allowed(&p, "https://github.com/my-org/web.git"));
        assert!(source_allowed(&p, "https://GitHub.com/my-org/web/"));
        assert!(!source_allowed(&p, "https://github.com/other/web"));
        assert!(!source_allowed(&p, "https://github.com/my-org/secrets"));
        assert!(source_allowed(&default_project(), "file:///anything"));
        assert!(!source_allowed(&AppProjectSpec::default(), "https://x"));
    }

    #[test]
    fn dot_segments_never_match_source_repos() {
        let p = mk_restricted();
        let any = default_project();
        for url in [
            "https://github.com/my-org/../evil/repo",
            "https://github.com/my-org/x/../../other-org/private",
            "https://github.com/my-org/./web",
            "https://github.com/my-org/web/..",
            "https://github.com/my-org/web/.",
            "https://github.com/my-org/%2e%2e/evil/repo",
            "https://github.com/my-org/%2E%2E/evil/repo",
            "https://github.com/my-org/.%2E/evil/repo",
            "https://github.com/my-org/..%2fevil/repo",
            "https://github.com/my-org\\..\\evil\\repo",
            "file:///srv/git/team-a/../team-b/secret.git",
            "git@github.com:../evil/repo",
        ] {
            assert!(has_dot_segments(url), "{url}");
            assert!(!source_allowed(&p, url), "{url} against my-org/*");
            assert!(!source_allowed(&any, url), "{url} against *");
        }
        // Dots inside names are fine.
        for url in [
            "https://github.com/my-org/web.git",
            "https://github.com/my-org/.github",
            "https://github.com/my-org/a..b",
        ] {
            assert!(!has_dot_segments(url), "{url}");
            assert!(source_allowed(&p, url), "{url}");
        }
        assert!(source_allowed(&any, "git@github.com:my-org/web.git"));
    }

    #[test]
    fn destinations_by_server_or_name_and_namespace() {
        let p = mk_restricted();
        let ic = "https://kubernetes.default.svc";
        assert!(destination_allowed(&p, ic, "in-cluster", "team-a-dev"));
        assert!(!destination_allowed(&p, ic, "in-cluster", "team-b"));
        assert!(!destination_allowed(
            &p,
            "https://other",
            "other",
            "team-a-dev"
        ));
        assert!(destination_allowed(&p, "https://edge1", "edge-1", "team-a"));
        let mut deny = default_project();
        deny.destinations
            .get_or_insert_with(Vec::new)
            .push(ProjectDestination {
                server: Some("*".into()),
                name: None,
                namespace: Some("!kube-system".into()),
            });
        assert!(destination_allowed(&deny, ic, "", "apps"));
        assert!(!destination_allowed(&deny, ic, "", "kube-system"));
    }

    #[test]
    fn kinds_follow_white_and_black_lists() {
        let p = mk_restricted();
        assert!(kind_allowed(&p, "apps", "Deployment", true));
        assert!(kind_allowed(&p, "", "ConfigMap", true));
        assert!(!kind_allowed(&p, "", "Secret", true));
        // Cluster-scoped kinds need an explicit whitelist entry.
        assert!(!kind_allowed(&p, "", "Namespace", false));
        let d = default_project();
        assert!(kind_allowed(&d, "", "Namespace", false));
        assert!(kind_allowed(&d, "", "Secret", true));
        let mut black = default_project();
        black.namespace_resource_blacklist = Some(vec![GroupKind {
            group: "".into(),
            kind: "Secret".into(),
        }]);
        assert!(!kind_allowed(&black, "", "Secret", true));
        assert!(kind_allowed(&black, "", "ConfigMap", true));
    }
}
