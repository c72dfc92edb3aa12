//! ApplicationSet `scmProvider` and `pullRequest` generators end to end, GitHub and GitLab,
//! against a loopback fake of both APIs (`fleet::scm_api`) whose listings span two pages:
//! Applications appear with the parameters Argo CD gives (both template modes), tokens come
//! from a Secret, `pathsExist`/`repositoryMatch`/`branchMatch`/label filters apply, a pull
//! request closed upstream deletes its Application at the next requeue, and a wrong token is
//! an `ErrorOccurred` condition that names the failure (never the token) and deletes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use flotilla_loadtest::fleet::scm_api::{
    ScmApi, ScmState, github_branch, github_pull, github_repo, gitlab_branch, gitlab_merge_request,
    gitlab_project,
};
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::NS;
use flotilla_tests::eventually;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const GITHUB_TOKEN: &str = "ghp_e2eGoodToken0123456789";
const GITLAB_TOKEN: &str = "glpat-e2eGoodToken0123";
const WRONG_TOKEN: &str = "ghp_e2eWrongTokenZYXWVU";

use flotilla_tests::e2e::{argo_api as api, set_condition as condition};

/// The Applications owned by set `set`, by name.
async fn owned(fleet: &Fleet, set: &str) -> Result<BTreeMap<String, DynamicObject>> {
    let uid = api(fleet, "ApplicationSet", "applicationsets")
        .get(set)
        .await?
        .metadata
        .uid
        .unwrap_or_default();
    Ok(api(fleet, "Application", "applications")
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|a| {
            a.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| r.uid == uid))
        })
        .filter_map(|a| Some((a.metadata.name.clone()?, a)))
        .collect())
}

async fn wait_names(
    fleet: &Fleet,
    set: &str,
    want: &[&str],
) -> Result<BTreeMap<String, DynamicObject>> {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(
        &format!("{set} generates {want:?}"),
        Duration::from_secs(40),
        || async {
            let got = owned(fleet, set).await?;
            let names: Vec<String> = got.keys().cloned().collect();
            if names == want {
                return Ok(Some(got));
            }
            let cond = condition(fleet, set, "ErrorOccurred").await?;
            bail!("generated {names:?}; ErrorOccurred {cond:?}")
        },
    )
    .await
}

fn label(a: &DynamicObject, k: &str) -> String {
    a.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(k).cloned())
        .unwrap_or_default()
}

fn annotation(a: &DynamicObject, k: &str) -> String {
    a.metadata
        .annotations
        .as_ref()
        .and_then(|l| l.get(k).cloned())
        .unwrap_or_default()
}

fn set(name: &str, go_template: bool, generator: Value, metadata: Value) -> Result<String> {
    Ok(serde_json::to_string(&json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "goTemplate": go_template,
            "generators": [generator],
            "template": {
                "metadata": metadata,
                "spec": {
                    "project": "default",
                    "source": {"repoURL": "https://example.invalid/repo.git", "targetRevision": "main", "path": "deploy"},
                    "destination": {"name": "cluster-001", "namespace": name}
                }
            }
        }
    }))?)
}

async fn token_secret(fleet: &Fleet) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(fleet.control().clone(), NS);
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "scm-token", "namespace": NS,
                     "labels": {"argocd.argoproj.io/secret-type": "scm-creds"}},
        "stringData": {"github": GITHUB_TOKEN, "gitlab": GITLAB_TOKEN}
    }))?;
    let mut s = s;
    // kubesim may not fold stringData: give data directly.
    s.data = Some(
        [("github", GITHUB_TOKEN), ("gitlab", GITLAB_TOKEN)]
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    k8s_openapi::ByteString(v.as_bytes().to_vec()),
                )
            })
            .collect(),
    );
    s.string_data = None;
    secrets.create(&PostParams::default(), &s).await?;
    Ok(())
}

fn fake_state() -> ScmState {
    let mut st = ScmState {
        github_token: GITHUB_TOKEN.into(),
        gitlab_token: GITLAB_TOKEN.into(),
        page_size: 2,
        ..Default::default()
    };
    // GitHub: three repositories (two pages), svc-b has three branches (two pages).
    st.github_repos = vec![
        github_repo("acme", "svc-a", 101, "main", &["deploy", "team-a"]),
        github_repo("acme", "svc-b", 102, "main", &[]),
        github_repo("acme", "lib-c", 103, "main", &[]),
        github_repo("other", "svc-z", 104, "main", &[]),
    ];
    let sha = |c: char| c.to_string().repeat(40);
    st.github_branches.insert(
        "acme/svc-a".into(),
        vec![
            github_branch("main", &sha('a')),
            github_branch("Feature_X", &sha('b')),
        ],
    );
    st.github_branches.insert(
        "acme/svc-b".into(),
        vec![
            github_branch("main", &sha('c')),
            github_branch("dev", &sha('d')),
            github_branch("release", &sha('e')),
        ],
    );
    st.github_branches
        .insert("acme/lib-c".into(), vec![github_branch("main", &sha('f'))]);
    for (r, b) in [
        ("svc-a", "main"),
        ("svc-a", "Feature_X"),
        ("svc-b", "main"),
        ("lib-c", "main"),
    ] {
        st.github_paths
            .insert((format!("acme/{r}"), b.into(), "deploy".into()));
    }
    st.github_pulls.insert(
        "acme/web".into(),
        vec![
            github_pull(
                "acme",
                "web",
                1,
                "Login page",
                "feature/Login_Page",
                &"1234567890abcdef".repeat(2),
                "main",
                "octocat",
                &["preview"],
            ),
            github_pull(
                "acme",
                "web",
                2,
                "Fix",
                "fix",
                &sha('2'),
                "main",
                "octocat",
                &[],
            ),
            github_pull(
                "acme",
                "web",
                3,
                "Hotfix",
                "hotfix",
                &sha('3'),
                "release",
                "octocat",
                &["preview"],
            ),
            github_pull(
                "acme",
                "web",
                4,
                "Docs",
                "docs",
                &sha('4'),
                "main",
                "hubot",
                &["preview", "docs"],
            ),
        ],
    );
    // GitLab: group platform (with a subgroup) has three projects (two pages).
    st.gitlab_projects = vec![
        gitlab_project("platform", "api", 201, "main", &["web"]),
        gitlab_project("platform/tools", "cli", 202, "master", &[]),
        gitlab_project("platform", "worker", 203, "main", &[]),
        gitlab_project("elsewhere", "x", 204, "main", &[]),
    ];
    st.gitlab_branches.insert(
        201,
        vec![
            gitlab_branch("main", &sha('7'), true),
            gitlab_branch("next", &sha('8'), false),
        ],
    );
    st.gitlab_branches
        .insert(202, vec![gitlab_branch("master", &sha('9'), true)]);
    st.gitlab_branches
        .insert(203, vec![gitlab_branch("main", &sha('a'), true)]);
    st.gitlab_trees.insert(
        (201, "main".into()),
        vec![
            "README.md".into(),
            "charts".into(),
            "charts/app".into(),
            "charts/x".into(),
        ],
    );
    st.gitlab_trees.insert(
        (202, "master".into()),
        vec!["charts".into(), "charts/app".into()],
    );
    st.gitlab_trees
        .insert((203, "main".into()), vec!["README.md".into(), "src".into()]);
    let mut merged = gitlab_merge_request(
        201,
        12,
        "Merged",
        "feat-b",
        &sha('c'),
        "main",
        "bob",
        &["preview"],
    );
    merged["state"] = json!("merged");
    st.gitlab_merge_requests.insert(
        201,
        vec![
            gitlab_merge_request(
                201,
                11,
                "Feature A",
                "feat_A",
                &sha('b'),
                "main",
                "alice",
                &["preview", "team-a"],
            ),
            merged,
            gitlab_merge_request(
                201,
                13,
                "Feature C",
                "feat-c",
                &sha('d'),
                "main",
                "carol",
                &["preview"],
            ),
            gitlab_merge_request(
                201,
                14,
                "No label",
                "feat-d",
                &sha('e'),
                "main",
                "dave",
                &[],
            ),
        ],
    );
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scm_provider_sets_list_github_and_gitlab_repositories() -> Result<()> {
    let fake = ScmApi::start(fake_state()).await?;
    let fleet = Fleet::start(FleetConfig::default()).await?;
    token_secret(&fleet).await?;

    // GitHub, fasttemplate, all branches, https clone URLs, repository + path filters.
    fleet
        .apply(&set(
            "gh-repos",
            false,
            json!({"scmProvider": {
                "cloneProtocol": "https",
                "github": {"organization": "acme", "api": fake.url(), "allBranches": true,
                           "tokenRef": {"secretName": "scm-token", "key": "github"}},
                "filters": [{"repositoryMatch": "^svc-", "pathsExist": ["deploy/"]}],
                "values": {"env": "{{branch}}-env"}
            }}),
            json!({"name": "gh-{{repository}}-{{branchNormalized}}",
                   "labels": {"sha": "{{short_sha}}", "sha7": "{{short_sha_7}}", "org": "{{organization}}",
                              "env": "{{values.env}}"},
                   "annotations": {"url": "{{url}}", "topics": "{{labels}}", "branch": "{{branch}}",
                                   "id": "{{repository_id}}",
                                   "sha": "{{sha}}"}}),
        )?)
        .await?;
    let apps = wait_names(
        &fleet,
        "gh-repos",
        &["gh-svc-a-feature-x", "gh-svc-a-main", "gh-svc-b-main"],
    )
    .await?;
    let a = &apps["gh-svc-a-main"];
    ensure!(
        label(a, "sha") == "aaaaaaaa" && label(a, "sha7") == "aaaaaaa",
        "{:?}",
        a.metadata.labels
    );
    ensure!(label(a, "org") == "acme" && label(a, "env") == "main-env");
    // `repository_id` is a number: Argo CD's fasttemplate only replaces string parameters,
    // so it stays as written (goTemplate renders it, below).
    ensure!(annotation(a, "id") == "{{repository_id}}");
    ensure!(annotation(a, "url") == "https://github.com/acme/svc-a.git");
    ensure!(annotation(a, "topics") == "deploy,team-a");
    ensure!(annotation(&apps["gh-svc-a-feature-x"], "branch") == "Feature_X");
    ensure!(annotation(&apps["gh-svc-b-main"], "sha") == "c".repeat(40));
    // Both pages of the repository and branch listings were read; lib-c's branches never
    // (its repository is filtered out first).
    ensure!(
        fake.requests_matching("/orgs/acme/repos")
            .iter()
            .any(|r| r.contains("page=2"))
    );
    ensure!(
        fake.requests_matching("/repos/acme/svc-b/branches")
            .iter()
            .any(|r| r.contains("page=2"))
    );
    ensure!(fake.requests_matching("/repos/acme/lib-c/").is_empty());

    // GitLab, goTemplate, subgroups, default branches, ssh URLs, pathsExist via the tree API.
    fleet
        .apply(&set(
            "gl-repos",
            true,
            json!({"scmProvider": {
                "gitlab": {"group": "platform", "api": fake.url(), "includeSubgroups": true,
                           "tokenRef": {"secretName": "scm-token", "key": "gitlab"}},
                "filters": [{"pathsExist": ["charts/app"]}]
            }}),
            json!({"name": "gl-{{ .repository }}-{{ .branchNormalized }}",
                   "labels": {"sha7": "{{ .short_sha_7 }}", "org": "{{ .organization | replace \"/\" \"-\" }}",
                              "id": "{{ .repository_id }}"},
                   "annotations": {"url": "{{ .url }}", "topics": "{{ .labels }}"}}),
        )?)
        .await?;
    let apps = wait_names(&fleet, "gl-repos", &["gl-api-main", "gl-cli-master"]).await?;
    let a = &apps["gl-api-main"];
    ensure!(
        label(a, "sha7") == "7777777" && label(a, "org") == "platform" && label(a, "id") == "201"
    );
    ensure!(
        annotation(a, "url") == "git@gitlab.com:platform/api.git"
            && annotation(a, "topics") == "web"
    );
    ensure!(label(&apps["gl-cli-master"], "org") == "platform-tools");
    ensure!(
        fake.requests_matching("/groups/platform/projects")
            .iter()
            .any(|r| r.contains("page=2"))
    );

    // A repository appears upstream: it is picked up at the next requeue (30 min default):
    // not tested here; a wrong GitLab token instead: an error naming it, nothing deleted.
    let secrets: Api<Secret> = Api::namespaced(fleet.control().clone(), NS);
    secrets
        .patch(
            "scm-token",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"gitlab": k8s_openapi::ByteString(WRONG_TOKEN.as_bytes().to_vec())}})),
        )
        .await?;
    // The spec changes (a value), so the set is regenerated now.
    fleet
        .apply(&set(
            "gl-repos",
            true,
            json!({"scmProvider": {
                "gitlab": {"group": "platform", "api": fake.url(), "includeSubgroups": true,
                           "tokenRef": {"secretName": "scm-token", "key": "gitlab"}},
                "filters": [{"pathsExist": ["charts/app"]}],
                "values": {"again": "1"}
            }}),
            json!({"name": "gl-{{ .repository }}-{{ .branchNormalized }}"}),
        )?)
        .await?;
    let msg = eventually("wrong token reported", Duration::from_secs(30), || async {
        Ok(condition(&fleet, "gl-repos", "ErrorOccurred")
            .await?
            .filter(|(s, m)| s == "True" && m.contains("401"))
            .map(|(_, m)| m))
    })
    .await?;
    ensure!(
        msg.contains("scmProvider") && msg.contains("GitLab"),
        "{msg}"
    );
    ensure!(
        !msg.contains(WRONG_TOKEN) && !msg.contains(GITLAB_TOKEN),
        "token in {msg}"
    );
    ensure!(
        owned(&fleet, "gl-repos").await?.len() == 2,
        "nothing deleted"
    );

    // A tokenRef naming a Secret not labelled for SCM tokens (here a cluster Secret, the most
    // tempting one to exfiltrate through an `api` of one's choosing) is refused unread.
    let cluster_secret = secrets
        .list(&kube::api::ListParams::default().labels("argocd.argoproj.io/secret-type=cluster"))
        .await?
        .items
        .into_iter()
        .find_map(|s| s.metadata.name)
        .context("a cluster Secret")?;
    fleet
        .apply(&set(
            "gl-repos",
            true,
            json!({"scmProvider": {
                "gitlab": {"group": "platform", "api": fake.url(), "includeSubgroups": true,
                           "tokenRef": {"secretName": cluster_secret, "key": "config"}},
                "values": {"again": "2"}
            }}),
            json!({"name": "gl-{{ .repository }}-{{ .branchNormalized }}"}),
        )?)
        .await?;
    eventually(
        "unlabelled token Secret refused",
        Duration::from_secs(30),
        || async {
            Ok(condition(&fleet, "gl-repos", "ErrorOccurred")
                .await?
                .filter(|(s, m)| s == "True" && m.contains("scm-creds"))
                .map(|_| ()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_sets_follow_open_pull_requests() -> Result<()> {
    let fake = ScmApi::start(fake_state()).await?;
    let fleet = Fleet::start(FleetConfig::default()).await?;
    token_secret(&fleet).await?;

    // GitHub, fasttemplate, labels + targetBranchMatch, requeue every second.
    fleet
        .apply(&set(
            "gh-prs",
            false,
            json!({"pullRequest": {
                "github": {"owner": "acme", "repo": "web", "api": fake.url(), "labels": ["preview"],
                           "tokenRef": {"secretName": "scm-token", "key": "github"}},
                "filters": [{"targetBranchMatch": "^main$"}],
                "requeueAfterSeconds": 1
            }}),
            json!({"name": "gh-pr-{{number}}",
                   "labels": {"branch": "{{branch_slug}}", "sha": "{{head_short_sha}}",
                              "sha7": "{{head_short_sha_7}}", "target": "{{target_branch_slug}}"},
                   "annotations": {"title": "{{title}}", "author": "{{author}}", "branch": "{{branch}}",
                                   "head": "{{head_sha}}", "target": "{{target_branch}}"}}),
        )?)
        .await?;
    let apps = wait_names(&fleet, "gh-prs", &["gh-pr-1", "gh-pr-4"]).await?;
    let a = &apps["gh-pr-1"];
    ensure!(
        label(a, "branch") == "feature-login-page",
        "{:?}",
        a.metadata.labels
    );
    ensure!(
        label(a, "sha") == "12345678"
            && label(a, "sha7") == "1234567"
            && label(a, "target") == "main"
    );
    ensure!(annotation(a, "title") == "Login page" && annotation(a, "author") == "octocat");
    ensure!(annotation(a, "branch") == "feature/Login_Page" && annotation(a, "target") == "main");
    ensure!(annotation(a, "head") == "1234567890abcdef".repeat(2));
    ensure!(annotation(&apps["gh-pr-4"], "author") == "hubot");
    ensure!(
        fake.requests_matching("/repos/acme/web/pulls")
            .iter()
            .any(|r| r.contains("page=2"))
    );

    // GitLab, goTemplate, opened merge requests with a label (the project by its path).
    fleet
        .apply(&set(
            "gl-mrs",
            true,
            json!({"pullRequest": {
                "gitlab": {"project": "platform/api", "api": fake.url(), "labels": ["preview"],
                           "pullRequestState": "opened",
                           "tokenRef": {"secretName": "scm-token", "key": "gitlab"}},
                "requeueAfterSeconds": 1
            }}),
            json!({"name": "gl-mr-{{ .number }}",
                   "labels": {"branch": "{{ .branch_slug }}", "sha7": "{{ .head_short_sha_7 }}"},
                   "annotations": {"labels": "{{ join \",\" .labels }}", "author": "{{ .author }}",
                                   "title": "{{ .title }}"}}),
        )?)
        .await?;
    let apps = wait_names(&fleet, "gl-mrs", &["gl-mr-11", "gl-mr-13"]).await?;
    let a = &apps["gl-mr-11"];
    ensure!(
        label(a, "branch") == "feat-a" && label(a, "sha7") == "bbbbbbb",
        "{:?}",
        a.metadata.labels
    );
    ensure!(annotation(a, "labels") == "preview,team-a" && annotation(a, "author") == "alice");
    ensure!(annotation(a, "title") == "Feature A");
    let mr_requests = fake.requests_matching("/projects/platform%2Fapi/merge_requests");
    ensure!(
        mr_requests
            .iter()
            .any(|r| r.contains("state=opened") && r.contains("labels=preview")),
        "{mr_requests:?}"
    );

    // A pull request closed upstream: its Application goes at the next requeue.
    fake.update(|st| {
        if let Some(p) = st.github_pulls.get_mut("acme/web") {
            for pr in p.iter_mut().filter(|pr| pr["number"] == 4) {
                pr["state"] = json!("closed");
            }
        }
    });
    wait_names(&fleet, "gh-prs", &["gh-pr-1"]).await?;

    // A wrong token: ErrorOccurred naming the failure, never the token; nothing deleted.
    let secrets: Api<Secret> = Api::namespaced(fleet.control().clone(), NS);
    secrets
        .patch(
            "scm-token",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"github": k8s_openapi::ByteString(WRONG_TOKEN.as_bytes().to_vec())}})),
        )
        .await?;
    fake.update(|st| {
        if let Some(p) = st.github_pulls.get_mut("acme/web") {
            p.retain(|pr| pr["number"] != 1);
        }
    });
    let msg = eventually("wrong token reported", Duration::from_secs(30), || async {
        Ok(condition(&fleet, "gh-prs", "ErrorOccurred")
            .await?
            .filter(|(s, m)| s == "True" && m.contains("Bad credentials"))
            .map(|(_, m)| m))
    })
    .await?;
    ensure!(msg.contains("pullRequest") && msg.contains("401"), "{msg}");
    ensure!(
        !msg.contains(WRONG_TOKEN) && !msg.contains(GITHUB_TOKEN),
        "token in {msg}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        owned(&fleet, "gh-prs").await?.contains_key("gh-pr-1"),
        "a failing generator deletes nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_scm_api_outside_the_allow_list_is_never_called() -> Result<()> {
    let fake = ScmApi::start(fake_state()).await?;
    let fleet = Fleet::start(FleetConfig {
        controller_args: vec![
            "--allowed-scm-providers".into(),
            "https://ghe.example.com/".into(),
        ],
        ..Default::default()
    })
    .await?;
    token_secret(&fleet).await?;
    fleet
        .apply(&set(
            "elsewhere",
            false,
            json!({"pullRequest": {
                "github": {"owner": "acme", "repo": "svc-a", "api": fake.url(),
                           "tokenRef": {"secretName": "scm-token", "key": "github"}}}}),
            json!({"name": "pr-{{number}}"}),
        )?)
        .await?;
    eventually(
        "refused by the allow-list",
        Duration::from_secs(30),
        || async {
            Ok(condition(&fleet, "elsewhere", "ErrorOccurred")
                .await?
                .filter(|(s, m)| s == "True" && m.contains("not allowed"))
                .map(|_| ()))
        },
    )
    .await?;
    ensure!(
        fake.requests_matching("/").is_empty(),
        "no request reached the API: {:?}",
        fake.requests_matching("/")
    );
    Ok(())
}
