//! The synthetic workload: which repository, path and cluster each application uses, the
//! manifests written to Git for it, its Application YAML, and the edits that changes make.

use super::scenario::{Layout, Scenario};

/// Name of application `i` (0-based).
pub fn app_name(i: usize) -> String {
    format!("app-{i:05}")
}

/// Application index from its name.
pub fn app_index(name: &str) -> Option<usize> {
    name.strip_prefix("app-")?.parse().ok()
}

/// Name of target cluster `k` (1-based, as kubesim names them: `cluster-001`).
pub fn cluster_name(k: usize) -> String {
    format!("cluster-{k:03}")
}

/// Destination cluster of application `i`.
pub fn cluster_of(s: &Scenario, i: usize) -> String {
    cluster_name(i % s.clusters + 1)
}

/// Repository index of application `i`.
pub fn repo_of(s: &Scenario, i: usize) -> usize {
    match s.git.layout {
        Layout::Monorepo => 0,
        Layout::Repos => i % s.git.repos,
    }
}

/// Path of application `i` inside its repository.
pub fn path_of(i: usize) -> String {
    format!("apps/{}", app_name(i))
}

/// Destination namespace of application `i` (a few dozen shared namespaces, as teams do).
pub fn namespace_of(i: usize) -> String {
    format!("team-{:02}", i % 32)
}

/// The manifests of application `i` at `version`: a ConfigMap carrying the version, then a
/// Deployment (when `objectsPerApp` ≥ 2), then more ConfigMaps.
pub fn manifests(s: &Scenario, i: usize, version: u64) -> String {
    let name = app_name(i);
    let mut docs = vec![format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  version: \"{version}\"\n"
    )];
    if s.objects_per_app >= 2 {
        docs.push(format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: web\n        image: registry.example/web:1.0\n        ports: [{{containerPort: 8080}}]\n"
        ));
    }
    for k in 2..s.objects_per_app {
        docs.push(format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-{k}\ndata:\n  key: value-{k}\n"
        ));
    }
    docs.join("---\n")
}

/// The Application of application `i`, with its repository's URL.
pub fn application(s: &Scenario, i: usize, repo_url: &str, namespace: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  annotations:\n    argocd.argoproj.io/manifest-generate-paths: .\nspec:\n  project: default\n  source:\n    repoURL: {repo_url}\n    targetRevision: main\n    path: {path}\n  destination:\n    name: {cluster}\n    namespace: {ns}\n  syncPolicy:\n    automated: {{prune: true, selfHeal: true}}\n    syncOptions: [CreateNamespace=true]\n",
        name = app_name(i),
        path = path_of(i),
        cluster = cluster_of(s, i),
        ns = namespace_of(i),
    )
}

/// The ApplicationSet file of application `i`: `sets/set-K/app-XXXXX.json` (K = i mod sets)
/// holding the parameters its set's git files generator reads (outside the app's directory,
/// which is rendered whole).
pub fn set_file(s: &Scenario, i: usize) -> (String, String) {
    let k = i % s.application_sets.max(1);
    (
        format!("sets/set-{k}/{}.json", app_name(i)),
        format!(
            "{{\"name\": \"{}\", \"cluster\": \"{}\", \"namespace\": \"{}\"}}\n",
            app_name(i),
            cluster_of(s, i),
            namespace_of(i)
        ),
    )
}

/// ApplicationSet `k`: one Application per file of `sets/set-K/`, the same Applications
/// [`application`] writes.
pub fn application_set(k: usize, repo_url: &str, namespace: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata:\n  name: load-{k}\n  namespace: {namespace}\nspec:\n  generators:\n  - git:\n      repoURL: {repo_url}\n      revision: main\n      requeueAfterSeconds: 20\n      files:\n      - path: 'sets/set-{k}/*.json'\n  template:\n    metadata:\n      name: '{{{{name}}}}'\n      annotations:\n        argocd.argoproj.io/manifest-generate-paths: .\n    spec:\n      project: default\n      source:\n        repoURL: {repo_url}\n        targetRevision: main\n        path: 'apps/{{{{name}}}}'\n      destination:\n        name: '{{{{cluster}}}}'\n        namespace: '{{{{namespace}}}}'\n      syncPolicy:\n        automated: {{prune: true, selfHeal: true}}\n        syncOptions: [CreateNamespace=true]\n  syncPolicy:\n    preserveResourcesOnDeletion: true\n"
    )
}

/// The applications commit number `n` changes: spread over the fleet, different each time.
pub fn changed_apps(s: &Scenario, n: usize) -> Vec<usize> {
    let k = s.changes.apps_per_commit.max(1);
    // A stride co-prime-ish with the cluster count spreads changes over clusters and repos.
    let stride = (s.applications / k).max(1);
    (0..k)
        .map(|j| (n * 7919 + j * stride) % s.applications)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_spread_over_clusters_and_repos_and_names_round_trip() {
        let mut s = Scenario {
            name: "t".into(),
            clusters: 3,
            applications: 10,
            ..Scenario::default()
        };
        s.git.layout = Layout::Repos;
        s.git.repos = 2;
        assert_eq!(cluster_of(&s, 0), "cluster-001");
        assert_eq!(cluster_of(&s, 4), "cluster-002");
        assert_eq!(repo_of(&s, 3), 1);
        assert_eq!(app_index(&app_name(42)), Some(42));
    }

    #[test]
    fn manifests_hold_the_requested_objects_and_the_version() {
        let s = Scenario {
            name: "t".into(),
            objects_per_app: 4,
            ..Scenario::default()
        };
        let m = manifests(&s, 7, 3);
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&m)
            .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
            .collect();
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[1]["kind"].as_str(), Some("Deployment"));
        assert_eq!(docs[0]["data"]["version"].as_str(), Some("3"));
    }

    #[test]
    fn each_commit_changes_distinct_apps() {
        let s = Scenario {
            name: "t".into(),
            applications: 1000,
            ..Scenario::default()
        };
        let a = changed_apps(&s, 0);
        let b = changed_apps(&s, 1);
        assert_eq!(a.len(), s.changes.apps_per_commit);
        assert_ne!(a, b);
        let uniq: std::collections::BTreeSet<_> = a.iter().collect();
        assert_eq!(uniq.len(), a.len());
    }
}
