//! The `scmProvider` and `pullRequest` generators (GitHub and GitLab), as Argo CD's
//! `SCMProviderGenerator` and `PullRequestGenerator`: the provider calls go through
//! [`Inputs`] (the controller's HTTP clients); listing order, filters and parameters are here.

use regex::Regex;
use serde_json::{Map, Value};

use super::{GeneratorError, Inputs, Options, Params, append_values, check_bound, refuse_extra};
use crate::types::{
    PullRequestGenerator, PullRequestGeneratorGithub, PullRequestGeneratorGitlab,
    ScmProviderGenerator, ScmProviderGeneratorGithub, ScmProviderGeneratorGitlab, SecretRef,
};

/// Argo CD's default requeue of both generators (30 minutes).
pub const DEFAULT_SCM_REQUEUE_AFTER_SECONDS: u64 = 30 * 60;

/// Which provider an `scmProvider` generator lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScmApi<'a> {
    Github(&'a ScmProviderGeneratorGithub),
    Gitlab(&'a ScmProviderGeneratorGitlab),
}

/// Which provider a `pullRequest` generator lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PullRequestApi<'a> {
    Github(&'a PullRequestGeneratorGithub),
    Gitlab(&'a PullRequestGeneratorGitlab),
}

/// A repository (on one branch) as Argo CD's `scm_provider.Repository`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScmRepository {
    /// GitHub: the owner's login; GitLab: the namespace's full path.
    pub organization: String,
    /// GitHub: the name; GitLab: the project's path.
    pub repository: String,
    pub url: String,
    pub branch: String,
    pub sha: String,
    /// GitHub topics; GitLab topics (or `tag_list` before 14.5).
    pub labels: Vec<String>,
    pub repository_id: i64,
}

/// A pull (merge) request as Argo CD's `pull_request.PullRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullRequest {
    /// GitHub: `number`; GitLab: `iid`.
    pub number: i64,
    pub title: String,
    /// The head (source) branch.
    pub branch: String,
    /// The base (target) branch.
    pub target_branch: String,
    pub head_sha: String,
    /// The author's login / username.
    pub author: String,
    pub labels: Vec<String>,
}

fn invalid(path: &str, reason: impl Into<String>) -> GeneratorError {
    GeneratorError::Invalid {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn input(path: &str) -> impl Fn(super::InputError) -> GeneratorError + '_ {
    move |source| GeneratorError::Input {
        path: path.to_string(),
        source,
    }
}

fn compile(re: &Option<String>, path: &str, field: &str) -> Result<Option<Regex>, GeneratorError> {
    re.as_deref()
        .map(|r| {
            Regex::new(r)
                .map_err(|e| invalid(path, format!("error compiling {field} regexp {r:?}: {e}")))
        })
        .transpose()
}

fn token_ref(r: &Option<SecretRef>, path: &str) -> Result<(), GeneratorError> {
    if let Some(r) = r {
        refuse_extra(&r.extra, &format!("{path}.tokenRef"))?;
    }
    Ok(())
}

struct ScmFilter {
    repository: Option<Regex>,
    label: Option<Regex>,
    branch: Option<Regex>,
    paths_exist: Vec<String>,
    paths_do_not_exist: Vec<String>,
}

impl ScmFilter {
    fn has_repo_conditions(&self) -> bool {
        self.repository.is_some() || self.label.is_some()
    }

    fn has_branch_conditions(&self) -> bool {
        self.branch.is_some() || !self.paths_exist.is_empty() || !self.paths_do_not_exist.is_empty()
    }

    fn matches_repo(&self, r: &ScmRepository) -> bool {
        if self
            .repository
            .as_ref()
            .is_some_and(|re| !re.is_match(&r.repository))
        {
            return false;
        }
        if let Some(re) = &self.label
            && !r.labels.iter().any(|l| re.is_match(l))
        {
            return false;
        }
        true
    }

    fn matches_branch(
        &self,
        inputs: &dyn Inputs,
        api: ScmApi<'_>,
        r: &ScmRepository,
        path: &str,
    ) -> Result<bool, GeneratorError> {
        if self
            .branch
            .as_ref()
            .is_some_and(|re| !re.is_match(&r.branch))
        {
            return Ok(false);
        }
        for p in &self.paths_exist {
            if !inputs
                .scm_repo_has_path(api, r, p.trim_end_matches('/'))
                .map_err(input(path))?
            {
                return Ok(false);
            }
        }
        for p in &self.paths_do_not_exist {
            if inputs
                .scm_repo_has_path(api, r, p.trim_end_matches('/'))
                .map_err(input(path))?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Parameters per repository and branch: `organization`, `repository`, `repository_id`,
/// `url`, `branch`, `branchNormalized`, `sha`, `short_sha` (8), `short_sha_7`, `labels`
/// (comma-joined), then `values`. Same keys in both template modes (`repository_id` a number).
pub(crate) fn generate_scm(
    g: &ScmProviderGenerator,
    opts: &Options,
    inputs: &dyn Inputs,
    path: &str,
) -> Result<Vec<Params>, GeneratorError> {
    refuse_extra(&g.extra, path)?;
    let api = match (&g.github, &g.gitlab) {
        (Some(gh), None) => {
            refuse_extra(&gh.extra, &format!("{path}.github"))?;
            token_ref(&gh.token_ref, &format!("{path}.github"))?;
            ScmApi::Github(gh)
        }
        (None, Some(gl)) => {
            refuse_extra(&gl.extra, &format!("{path}.gitlab"))?;
            token_ref(&gl.token_ref, &format!("{path}.gitlab"))?;
            ScmApi::Gitlab(gl)
        }
        (None, None) => return Err(invalid(path, "no SCM provider implementation configured")),
        (Some(_), Some(_)) => return Err(invalid(path, "more than one SCM provider configured")),
    };
    if !matches!(g.clone_protocol.as_str(), "" | "ssh" | "https") {
        return Err(invalid(
            path,
            format!("unknown clone protocol {:?}", g.clone_protocol),
        ));
    }
    let mut filters = Vec::with_capacity(g.filters.len());
    for (i, f) in g.filters.iter().enumerate() {
        let fp = format!("{path}.filters[{i}]");
        refuse_extra(&f.extra, &fp)?;
        filters.push(ScmFilter {
            repository: compile(&f.repository_match, &fp, "RepositoryMatch")?,
            label: compile(&f.label_match, &fp, "LabelMatch")?,
            branch: compile(&f.branch_match, &fp, "BranchMatch")?,
            paths_exist: f.paths_exist.clone().unwrap_or_default(),
            paths_do_not_exist: f.paths_do_not_exist.clone().unwrap_or_default(),
        });
    }
    let repo_filters: Vec<&ScmFilter> =
        filters.iter().filter(|f| f.has_repo_conditions()).collect();
    let branch_filters: Vec<&ScmFilter> = filters
        .iter()
        .filter(|f| f.has_branch_conditions())
        .collect();

    let repos = inputs
        .scm_repositories(api, &g.clone_protocol)
        .map_err(input(path))?;
    check_bound(repos.len(), path)?;
    let mut out = Vec::new();
    for repo in repos
        .iter()
        .filter(|r| repo_filters.is_empty() || repo_filters.iter().any(|f| f.matches_repo(r)))
    {
        for b in inputs.scm_branches(api, repo).map_err(input(path))? {
            let mut keep = branch_filters.is_empty();
            for f in &branch_filters {
                if f.matches_branch(inputs, api, &b, path)? {
                    keep = true;
                    break;
                }
            }
            if !keep {
                continue;
            }
            let mut p = Map::new();
            let s = |v: &str| Value::String(v.to_string());
            p.insert("organization".into(), s(&b.organization));
            p.insert("repository".into(), s(&b.repository));
            p.insert("repository_id".into(), Value::from(b.repository_id));
            p.insert("url".into(), s(&b.url));
            p.insert("branch".into(), s(&b.branch));
            p.insert("sha".into(), s(&b.sha));
            p.insert("short_sha".into(), s(prefix(&b.sha, 8)));
            p.insert("short_sha_7".into(), s(prefix(&b.sha, 7)));
            p.insert("labels".into(), s(&b.labels.join(",")));
            p.insert(
                "branchNormalized".into(),
                s(&super::sanitize_name(&b.branch)),
            );
            append_values(&g.values, &mut p, opts, path)?;
            out.push(p);
            check_bound(out.len(), path)?;
        }
    }
    Ok(out)
}

fn prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parameters per pull request: `number` (a string), `title`, `branch`, `branch_slug`,
/// `target_branch`, `target_branch_slug`, `head_sha`, `head_short_sha` (8),
/// `head_short_sha_7`, `author`, and with goTemplate only `labels` (a list); then `values`.
pub(crate) fn generate_pull_requests(
    g: &PullRequestGenerator,
    opts: &Options,
    inputs: &dyn Inputs,
    path: &str,
) -> Result<Vec<Params>, GeneratorError> {
    refuse_extra(&g.extra, path)?;
    let api = match (&g.github, &g.gitlab) {
        (Some(gh), None) => {
            refuse_extra(&gh.extra, &format!("{path}.github"))?;
            token_ref(&gh.token_ref, &format!("{path}.github"))?;
            PullRequestApi::Github(gh)
        }
        (None, Some(gl)) => {
            refuse_extra(&gl.extra, &format!("{path}.gitlab"))?;
            token_ref(&gl.token_ref, &format!("{path}.gitlab"))?;
            PullRequestApi::Gitlab(gl)
        }
        (None, None) => {
            return Err(invalid(
                path,
                "no Pull Request provider implementation configured",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                path,
                "more than one Pull Request provider configured",
            ));
        }
    };
    let mut filters = Vec::with_capacity(g.filters.len());
    for (i, f) in g.filters.iter().enumerate() {
        let fp = format!("{path}.filters[{i}]");
        refuse_extra(&f.extra, &fp)?;
        filters.push((
            compile(&f.branch_match, &fp, "BranchMatch")?,
            compile(&f.target_branch_match, &fp, "TargetBranchMatch")?,
        ));
    }
    let pulls = inputs.pull_requests(api).map_err(input(path))?;
    check_bound(pulls.len(), path)?;
    let mut out = Vec::new();
    for pr in pulls.iter().filter(|pr| {
        filters.is_empty()
            || filters.iter().any(|(b, t)| {
                b.as_ref().is_none_or(|re| re.is_match(&pr.branch))
                    && t.as_ref().is_none_or(|re| re.is_match(&pr.target_branch))
            })
    }) {
        let mut p = Map::new();
        let s = |v: &str| Value::String(v.to_string());
        p.insert("number".into(), s(&pr.number.to_string()));
        p.insert("title".into(), s(&pr.title));
        p.insert("branch".into(), s(&pr.branch));
        p.insert("branch_slug".into(), s(&slug(&pr.branch)));
        p.insert("target_branch".into(), s(&pr.target_branch));
        p.insert("target_branch_slug".into(), s(&slug(&pr.target_branch)));
        p.insert("head_sha".into(), s(&pr.head_sha));
        p.insert("head_short_sha".into(), s(prefix(&pr.head_sha, 8)));
        p.insert("head_short_sha_7".into(), s(prefix(&pr.head_sha, 7)));
        p.insert("author".into(), s(&pr.author));
        if opts.go_template {
            p.insert(
                "labels".into(),
                Value::Array(pr.labels.iter().map(|l| s(l)).collect()),
            );
        }
        append_values(&g.values, &mut p, opts, path)?;
        out.push(p);
    }
    Ok(out)
}

/// At most this many characters in a slug (Argo CD sets gosimple/slug's `MaxLength` to 50).
const SLUG_MAX: usize = 50;

/// gosimple/slug's `Make` as Argo CD's pull request generator configures it (`_` → `-`,
/// at most 50 characters, cut at a `-` when one is in reach): English substitutions
/// (`&` → `and`, `@` → `at`), quotes dropped, lower case, every character outside
/// `[a-z0-9_-]` → `-`, runs of `-` collapsed, `-`/`_` trimmed. Not done: unidecode's
/// transliteration of non-ASCII letters (they become `-` here).
pub fn slug(s: &str) -> String {
    let mut t = String::with_capacity(s.len());
    for c in s.trim().chars() {
        match c {
            '_' => t.push('-'),
            '&' => t.push_str("and"),
            '@' => t.push_str("at"),
            '"' | '\'' | '\u{2019}' => {}
            c if c.is_ascii_alphanumeric() || c == '-' => t.push(c.to_ascii_lowercase()),
            _ => t.push('-'),
        }
    }
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_matches(|c| c == '-' || c == '_').to_string();
    if out.len() <= SLUG_MAX {
        return out;
    }
    // smartTruncate: the last '-' at or before MaxLength, else a hard cut (ASCII only here).
    let bytes = out.as_bytes();
    for i in (0..=SLUG_MAX).rev() {
        if bytes[i] == b'-' {
            return out[..i].to_string();
        }
    }
    out[..SLUG_MAX].to_string()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{flat, go, obj};
    use super::super::{ClusterInfo, InputError};
    use super::*;
    use crate::types::ApplicationSetGenerator;
    use serde_json::json;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Fake {
        repos: Vec<ScmRepository>,
        branches: Vec<ScmRepository>,
        paths: Vec<(String, String, String)>,
        pulls: Vec<PullRequest>,
        calls: RefCell<Vec<String>>,
        fail: bool,
    }

    impl Inputs for Fake {
        fn clusters(&self) -> Vec<ClusterInfo> {
            Vec::new()
        }
        fn git_directories(&self, _: &str, _: &str) -> Result<Vec<String>, InputError> {
            Ok(Vec::new())
        }
        fn git_files(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Vec<(String, Vec<u8>)>, InputError> {
            Ok(Vec::new())
        }
        fn scm_repositories(
            &self,
            api: ScmApi<'_>,
            clone: &str,
        ) -> Result<Vec<ScmRepository>, InputError> {
            if self.fail {
                return Err(InputError::Unavailable("401 Bad credentials".into()));
            }
            self.calls.borrow_mut().push(format!(
                "repos {clone} {}",
                matches!(api, ScmApi::Github(_))
            ));
            Ok(self.repos.clone())
        }
        fn scm_branches(
            &self,
            _: ScmApi<'_>,
            repo: &ScmRepository,
        ) -> Result<Vec<ScmRepository>, InputError> {
            self.calls
                .borrow_mut()
                .push(format!("branches {}", repo.repository));
            Ok(self
                .branches
                .iter()
                .filter(|b| b.repository == repo.repository)
                .cloned()
                .collect())
        }
        fn scm_repo_has_path(
            &self,
            _: ScmApi<'_>,
            repo: &ScmRepository,
            path: &str,
        ) -> Result<bool, InputError> {
            Ok(self
                .paths
                .iter()
                .any(|(r, b, p)| r == &repo.repository && b == &repo.branch && p == path))
        }
        fn pull_requests(&self, _: PullRequestApi<'_>) -> Result<Vec<PullRequest>, InputError> {
            Ok(self.pulls.clone())
        }
    }

    fn repo(name: &str, branch: &str, sha: &str, labels: &[&str]) -> ScmRepository {
        ScmRepository {
            organization: "acme".into(),
            repository: name.into(),
            url: format!("git@github.com:acme/{name}.git"),
            branch: branch.into(),
            sha: sha.into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            repository_id: 7,
        }
    }

    fn gen_of(v: Value) -> ApplicationSetGenerator {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn scm_params_and_filters() -> Result<(), GeneratorError> {
        let fake = Fake {
            repos: vec![
                repo("app-a", "main", "", &["deploy"]),
                repo("lib", "main", "", &[]),
            ],
            branches: vec![
                repo("app-a", "main", "0123456789abcdef", &["deploy"]),
                repo("app-a", "Feature_X", "fedcba9876543210", &["deploy"]),
                repo("lib", "main", "1111111111", &[]),
            ],
            paths: vec![("app-a".into(), "main".into(), "k8s".into())],
            ..Default::default()
        };
        let g = gen_of(json!({"scmProvider": {
            "github": {"organization": "acme", "allBranches": true},
            "cloneProtocol": "https",
            "filters": [{"repositoryMatch": "^app", "labelMatch": "dep", "pathsExist": ["k8s/"]}],
            "values": {"name": "{{repository}}-{{branchNormalized}}"}
        }}));
        let out = super::super::generate_one(&g, &flat(), &fake, "generators[0]")?;
        assert_eq!(
            out,
            vec![obj(json!({
                "organization": "acme", "repository": "app-a", "repository_id": 7,
                "url": "git@github.com:acme/app-a.git", "branch": "main",
                "branchNormalized": "main", "sha": "0123456789abcdef", "short_sha": "01234567",
                "short_sha_7": "0123456", "labels": "deploy", "values.name": "app-a-main"
            }))]
        );
        // `lib` never had its branches listed: repository filters run first.
        assert_eq!(
            fake.calls.borrow().clone(),
            vec!["repos https true".to_string(), "branches app-a".into()]
        );

        // branchMatch alone; goTemplate values nested.
        let g = gen_of(json!({"scmProvider": {
            "gitlab": {"group": "acme"},
            "filters": [{"branchMatch": "^Feature"}],
            "values": {"b": "{{ .branch | lower }}"}
        }}));
        let out = super::super::generate_one(&g, &go(), &fake, "generators[0]")?;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["branchNormalized"], json!("feature-x"));
        assert_eq!(out[0]["values"], json!({"b": "feature_x"}));
        Ok(())
    }

    #[test]
    fn scm_refusals_and_errors() {
        let fake = Fake {
            fail: true,
            ..Default::default()
        };
        let cases = [
            (json!({"scmProvider": {"gitea": {"owner": "o"}}}), "gitea"),
            (
                json!({"scmProvider": {"github": {"organization": "o", "appSecretName": "a"}}}),
                "appSecretName",
            ),
            (
                json!({"scmProvider": {"gitlab": {"group": "g", "insecure": true}}}),
                "insecure",
            ),
            (
                json!({"scmProvider": {"github": {"organization": "o"}, "cloneProtocol": "git"}}),
                "clone protocol",
            ),
            (
                json!({"scmProvider": {"github": {"organization": "o"}, "filters": [{"repositoryMatch": "("}]}}),
                "RepositoryMatch",
            ),
            (
                json!({"scmProvider": {"github": {"organization": "o"}}}),
                "Bad credentials",
            ),
            (
                json!({"pullRequest": {"github": {"owner": "o", "repo": "r"}, "filters": [{"titleMatch": "x"}]}}),
                "titleMatch",
            ),
            (json!({"pullRequest": {"bitbucket": {}}}), "bitbucket"),
        ];
        for (v, want) in cases {
            let g = gen_of(v.clone());
            let got = super::super::generate_one(&g, &flat(), &fake, "generators[0]");
            let msg = got.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
            assert!(msg.contains(want), "{v}: {msg}");
        }
    }

    #[test]
    fn pull_request_params_filters_and_labels() -> Result<(), GeneratorError> {
        let pr = |n: i64, branch: &str, target: &str| PullRequest {
            number: n,
            title: format!("PR {n}"),
            branch: branch.into(),
            target_branch: target.into(),
            head_sha: "abcdef0123456789".into(),
            author: "octocat".into(),
            labels: vec!["preview".into()],
        };
        let fake = Fake {
            pulls: vec![
                pr(1, "feature/New_Thing", "main"),
                pr(2, "fix-1", "release"),
                pr(3, "chore", "main"),
            ],
            ..Default::default()
        };
        let g = gen_of(json!({"pullRequest": {
            "github": {"owner": "o", "repo": "r", "labels": ["preview"]},
            "filters": [{"branchMatch": "^feature"}, {"targetBranchMatch": "^release$"}],
            "requeueAfterSeconds": 1
        }}));
        assert_eq!(super::super::requeue_after_seconds(&g), Some(1));
        let out = super::super::generate_one(&g, &flat(), &fake, "generators[0]")?;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            obj(json!({
                "number": "1", "title": "PR 1", "branch": "feature/New_Thing",
                "branch_slug": "feature-new-thing", "target_branch": "main",
                "target_branch_slug": "main", "head_sha": "abcdef0123456789",
                "head_short_sha": "abcdef01", "head_short_sha_7": "abcdef0", "author": "octocat"
            }))
        );
        assert_eq!(out[1]["number"], json!("2"));
        let out = super::super::generate_one(&g, &go(), &fake, "generators[0]")?;
        assert_eq!(out[0]["labels"], json!(["preview"]));
        let g = gen_of(json!({"pullRequest": {"gitlab": {"project": "1"}}}));
        assert_eq!(
            super::super::requeue_after_seconds(&g),
            Some(DEFAULT_SCM_REQUEUE_AFTER_SECONDS)
        );
        assert_eq!(
            super::super::generate_one(&g, &flat(), &fake, "generators[0]")?.len(),
            3
        );
        Ok(())
    }

    #[test]
    fn slugs_as_gosimple() {
        assert_eq!(slug("feature/New_Thing"), "feature-new-thing");
        assert_eq!(slug("  --Fix: a & b @ c--"), "fix-a-and-b-at-c");
        assert_eq!(slug("it's"), "its");
        let long = "a".repeat(30) + "-" + &"b".repeat(30);
        assert_eq!(slug(&long), "a".repeat(30));
        assert_eq!(slug(&"c".repeat(60)), "c".repeat(50));
    }
}
