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

/// Destination cluster of application `i`. With ApplicationSets, the applications just past
/// the workload ([`joining_apps`]) belong to the cluster that joins later.
pub fn cluster_of(s: &Scenario, i: usize) -> String {
    if s.application_sets > 0 && joining_apps(s).contains(&i) {
        return joining_cluster(s);
    }
    cluster_name(i % s.clusters + 1)
}

/// With ApplicationSets: the extra cluster (one past `clusters`) whose Secret is registered
/// only after convergence, to measure what a new cluster costs to roll out.
pub fn joining_cluster(s: &Scenario) -> String {
    cluster_name(s.clusters + 1)
}

/// The applications of [`joining_cluster`]: as many as any other cluster has.
pub fn joining_apps(s: &Scenario) -> std::ops::Range<usize> {
    s.applications..s.applications + (s.applications / s.clusters.max(1)).max(1)
}

/// With ApplicationSets: the application whose directory is added after convergence.
pub fn new_directory_app(s: &Scenario) -> usize {
    joining_apps(s).end
}

/// The label on cluster Secrets that puts a cluster in ApplicationSet `set-K`.
pub const SET_LABEL: &str = "flotilla.dev/load-set";

/// The set (`set-K`) of target cluster `k` (1-based).
pub fn set_of_cluster(s: &Scenario, k: usize) -> String {
    format!("set-{}", (k.saturating_sub(1)) % s.application_sets.max(1))
}

/// Repository index of application `i`.
pub fn repo_of(s: &Scenario, i: usize) -> usize {
    match s.git.layout {
        Layout::Monorepo => 0,
        Layout::Repos => i % s.git.repos,
    }
}

/// Path of application `i` inside its repository: `apps/app-XXXXX`, or with ApplicationSets
/// `clusters/<cluster>/app-XXXXX` (a directory per app under its cluster's directory).
pub fn path_of(s: &Scenario, i: usize) -> String {
    if s.application_sets > 0 {
        format!("clusters/{}/{}", cluster_of(s, i), app_name(i))
    } else {
        format!("apps/{}", app_name(i))
    }
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
        path = path_of(s, i),
        cluster = cluster_of(s, i),
        ns = namespace_of(i),
    )
}

/// Argo CD's finalizer: deleting the Application deletes its objects first.
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

/// [`application`] with the [`RESOURCES_FINALIZER`] (the soak's created-then-deleted apps).
pub fn application_with_finalizer(
    s: &Scenario,
    i: usize,
    repo_url: &str,
    namespace: &str,
) -> String {
    application(s, i, repo_url, namespace).replacen(
        "\n  annotations:\n",
        &format!("\n  finalizers: [{RESOURCES_FINALIZER}]\n  annotations:\n"),
        1,
    )
}

/// ApplicationSet `k`: a matrix of the clusters labelled `set-K` and, for each, the
/// directories under `clusters/<cluster>/` (Argo CD's "cluster × git directories" pattern, the
/// second generator reading the first's parameters), producing the same Applications as
/// [`application`] with [`path_of`]. No `requeueAfterSeconds`: Argo CD's default (3 minutes),
/// pushes arrive by webhook.
pub fn application_set(k: usize, repo_url: &str, namespace: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata:\n  name: load-{k}\n  namespace: {namespace}\nspec:\n  generators:\n  - matrix:\n      generators:\n      - clusters:\n          selector:\n            matchLabels: {{{SET_LABEL}: set-{k}}}\n      - git:\n          repoURL: {repo_url}\n          revision: main\n          directories:\n          - path: 'clusters/{{{{name}}}}/*'\n  template:\n    metadata:\n      name: '{{{{path.basename}}}}'\n      annotations:\n        argocd.argoproj.io/manifest-generate-paths: .\n    spec:\n      project: default\n      source:\n        repoURL: {repo_url}\n        targetRevision: main\n        path: '{{{{path}}}}'\n      destination:\n        name: '{{{{name}}}}'\n        namespace: apps\n      syncPolicy:\n        automated: {{prune: true, selfHeal: true}}\n        syncOptions: [CreateNamespace=true]\n  syncPolicy:\n    preserveResourcesOnDeletion: true\n"
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

    /// The generator's view of the fleet: every cluster Secret labelled into its set, and
    /// the monorepo's directories as the harness writes them.
    struct Fleet {
        clusters: Vec<flotilla_appset::generators::ClusterInfo>,
        dirs: Vec<String>,
    }

    impl flotilla_appset::generators::Inputs for Fleet {
        fn clusters(&self) -> Vec<flotilla_appset::generators::ClusterInfo> {
            self.clusters.clone()
        }
        fn git_directories(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Vec<String>, flotilla_appset::generators::InputError> {
            Ok(self.dirs.clone())
        }
        fn git_files(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Vec<(String, Vec<u8>)>, flotilla_appset::generators::InputError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn the_sets_generate_exactly_the_workloads_applications() {
        let s = Scenario {
            name: "t".into(),
            clusters: 6,
            applications: 30,
            application_sets: 3,
            ..Scenario::default()
        };
        let mut dirs = vec!["clusters".to_string()];
        for k in 1..=s.clusters + 1 {
            dirs.push(format!("clusters/{}", cluster_name(k)));
        }
        for i in (0..s.applications).chain(joining_apps(&s)) {
            dirs.push(path_of(&s, i));
        }
        let clusters = |joined: bool| {
            (1..=s.clusters + usize::from(joined))
                .map(|k| flotilla_appset::generators::ClusterInfo {
                    name: cluster_name(k),
                    server: format!("https://{k}"),
                    labels: [(
                        SET_LABEL.to_string(),
                        if k > s.clusters {
                            "set-0".into()
                        } else {
                            set_of_cluster(&s, k)
                        },
                    )]
                    .into(),
                    ..Default::default()
                })
                .collect()
        };
        let generated = |joined: bool| {
            let inputs = Fleet {
                clusters: clusters(joined),
                dirs: dirs.clone(),
            };
            let mut out = std::collections::BTreeMap::new();
            for k in 0..s.application_sets {
                let yaml = application_set(k, "git://repo", "argocd");
                let set: serde_json::Value = serde_yaml::from_str(&yaml).expect("yaml");
                let spec: flotilla_appset::types::ApplicationSetSpec =
                    serde_json::from_value(set["spec"].clone()).expect("spec");
                for o in flotilla_appset::generators::generate(&spec, &inputs).expect("generated") {
                    for p in &o.params {
                        let app = flotilla_appset::template::render_application(
                            &o.template,
                            None,
                            p,
                            false,
                            &[],
                        )
                        .expect("rendered");
                        out.insert(
                            app["metadata"]["name"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            (
                                app["spec"]["source"]["path"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string(),
                                app["spec"]["destination"]["name"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string(),
                            ),
                        );
                    }
                }
            }
            out
        };
        let want = |range: std::ops::Range<usize>| {
            range
                .map(|i| (app_name(i), (path_of(&s, i), cluster_of(&s, i))))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert_eq!(generated(false), want(0..s.applications));
        let mut all = want(0..s.applications);
        all.extend(want(joining_apps(&s)));
        assert_eq!(
            generated(true),
            all,
            "the joining cluster adds exactly its apps"
        );
        assert_eq!(joining_apps(&s).len(), 5);
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
    fn the_finalizer_variant_only_adds_the_finalizer() {
        let s = Scenario {
            name: "t".into(),
            ..Scenario::default()
        };
        let plain: serde_yaml::Value =
            serde_yaml::from_str(&application(&s, 3, "git://r", "argocd")).expect("yaml");
        let mut with: serde_yaml::Value =
            serde_yaml::from_str(&application_with_finalizer(&s, 3, "git://r", "argocd"))
                .expect("yaml");
        assert_eq!(
            with["metadata"]["finalizers"][0].as_str(),
            Some(RESOURCES_FINALIZER)
        );
        if let Some(m) = with["metadata"].as_mapping_mut() {
            m.remove("finalizers");
        }
        assert_eq!(with, plain);
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
