//! Authorization as Argo CD does it: `argocd-rbac-cm`'s `policy.csv` on top of the built-in
//! roles (`role:readonly`, `role:admin`), `policy.default`, a caller's subject and groups, globs,
//! and the AppProjects' roles (`spec.roles[].policies` for `proj:<project>:<role>`, and
//! `spec.roles[].groups` bound to it), each confined to its own project as Argo CD confines
//! them; evaluated by casbin with Argo CD's model. Anything not allowed is denied. An
//! application's object is Argo CD's `RBACName` ([`AppObject`]): `<project>/<name>` in the
//! control-plane namespace, `<project>/<namespace>/<name>` elsewhere.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use flotilla_controller::types::AppProject;
use futures::StreamExt;

use crate::api::Server;

/// Argo CD's casbin model: subject (or role), resource, action, object; deny wins. `alt` is a
/// second name of the same object (a control-plane application's `<project>/<namespace>/<name>`,
/// see [`AppObject`]; the object itself otherwise): a rule naming either form matches, so an
/// allow of either grants and a deny of either refuses.
const MODEL: &str = r#"
[request_definition]
r = sub, res, act, obj, alt

[policy_definition]
p = sub, res, act, obj, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub) && globOrRegexMatch(r.res, p.res) && globOrRegexMatch(r.act, p.act) && (globOrRegexMatch(r.obj, p.obj) || globOrRegexMatch(r.alt, p.obj))
"#;

/// Argo CD's RBAC object of an application (its `security.RBACName`): `<project>/<name>` for
/// an app in the control-plane namespace, `<project>/<namespace>/<name>` for one elsewhere
/// (apps in any namespace). A control-plane app also answers to rules written with its
/// namespace, `<project>/<control-plane namespace>/<name>`. Globs do not tell the forms apart:
/// `proj/*` reaches every app of `proj` in every namespace, as in Argo CD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppObject {
    /// The object the policy is asked about.
    pub object: String,
    /// The control-plane app's namespaced form.
    pub alias: Option<String>,
}

impl AppObject {
    /// The object of app `name` of `project` (`default` when empty) in `namespace`, where the
    /// control plane is `control` (empty: no namespaced forms at all, as before apps in any
    /// namespace).
    pub fn new(control: &str, project: &str, namespace: &str, name: &str) -> Self {
        let project = if project.is_empty() {
            "default"
        } else {
            project
        };
        if control.is_empty() || namespace.is_empty() || namespace == control {
            Self {
                object: format!("{project}/{name}"),
                alias: (!control.is_empty()).then(|| format!("{project}/{control}/{name}")),
            }
        } else {
            Self {
                object: format!("{project}/{namespace}/{name}"),
                alias: None,
            }
        }
    }

    /// The object of `app`.
    pub fn of(control: &str, app: &flotilla_controller::types::Application) -> Self {
        Self::new(
            control,
            &app.spec.project,
            app.metadata.namespace.as_deref().unwrap_or_default(),
            app.metadata.name.as_deref().unwrap_or_default(),
        )
    }

    /// An object as a client writes it (`can-i`): `<project>/<namespace>/<name>` or
    /// `<project>/<name>` (the control plane's); anything else is taken as it is.
    pub fn parse(control: &str, object: &str) -> Self {
        match object.split('/').collect::<Vec<_>>()[..] {
            [project, name] if !project.is_empty() => Self::new(control, project, control, name),
            [project, namespace, name] if !project.is_empty() && !namespace.is_empty() => {
                Self::new(control, project, namespace, name)
            }
            _ => Self {
                object: object.to_string(),
                alias: None,
            },
        }
    }
}

/// Argo CD's built-in policy: read-only and admin roles, and the local admin.
const BUILTIN: &str = "\
p, role:readonly, applications, get, */*, allow
p, role:readonly, clusters, get, *, allow
p, role:readonly, repositories, get, *, allow
p, role:readonly, projects, get, *, allow
p, role:readonly, logs, get, */*, allow
p, role:admin, applications, *, */*, allow
p, role:admin, clusters, *, *, allow
p, role:admin, repositories, *, *, allow
p, role:admin, projects, *, *, allow
p, role:admin, logs, get, */*, allow
p, role:admin, exec, create, */*, allow
g, role:admin, role:readonly
g, admin, role:admin
";

/// Why a policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("policy.csv line {0}: {1}")]
    Line(usize, String),
    #[error("policy engine: {0}")]
    Engine(String),
}

/// A policy ready to answer.
pub struct Policy {
    enforcer: Enforcer,
    default_role: Option<String>,
    /// Every `p` rule's (resource, action, object) patterns, for [`Self::name_independent`].
    patterns: Vec<(String, String, String)>,
}

/// How one object pattern relates to the apps of one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Matches `<project>/<name>` for every name.
    All,
    /// Matches no `<project>/<name>`.
    None,
    /// Matches some names only (or this analysis cannot tell).
    Depends,
}

/// What `pattern` (a glob) matches among `<project>/<name>`. Conservative: `All` and `None`
/// only when certain.
fn reach(pattern: &str, project: &str) -> Reach {
    let target = format!("{project}/");
    // `X*` where X matches a prefix of "<project>/": the star takes the rest, whatever it is.
    if let Some(head) = pattern.strip_suffix('*')
        && (0..=target.len())
            .filter(|k| target.is_char_boundary(*k))
            .any(|k| {
                flotilla_controller::settings::wildcard(head, &target[..k]) || (head.is_empty())
            })
    {
        return Reach::All;
    }
    // The literal start must agree with "<project>/" as far as both go.
    let literal = pattern.find(['*', '?']).map_or(pattern, |i| &pattern[..i]);
    if !(literal.starts_with(&target) || target.starts_with(literal)) {
        return Reach::None;
    }
    Reach::Depends
}

pub type Rules = (Vec<Vec<String>>, Vec<Vec<String>>);

/// Parse CSV policy lines into (`p` rules, `g` rules).
fn parse(csv: &str, offset: usize) -> Result<Rules, RbacError> {
    let (mut p, mut g) = (Vec::new(), Vec::new());
    for (i, line) in csv.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<String> = line.split(',').map(|x| x.trim().to_string()).collect();
        let at = i + 1 - offset.min(i + 1);
        match f.first().map(String::as_str) {
            Some("p") if f.len() == 5 || f.len() == 6 => {
                let eft = f.get(5).cloned().unwrap_or_else(|| "allow".into());
                if eft != "allow" && eft != "deny" {
                    return Err(RbacError::Line(
                        at,
                        format!("effect {eft:?} is not allow or deny"),
                    ));
                }
                p.push(vec![
                    f[1].clone(),
                    f[2].clone(),
                    f[3].clone(),
                    f[4].clone(),
                    eft,
                ]);
            }
            Some("g") if f.len() == 3 => g.push(vec![f[1].clone(), f[2].clone()]),
            _ => {
                return Err(RbacError::Line(
                    at,
                    format!(
                        "{line:?} is not `p, subject, resource, action, object[, effect]` or `g, subject, role`"
                    ),
                ));
            }
        }
    }
    Ok((p, g))
}

/// Glob match (`*` anything, `?` one character), never failing on a bad pattern.
fn glob(d1: casbin::rhai::Dynamic, d2: casbin::rhai::Dynamic) -> casbin::rhai::Dynamic {
    let (v, pattern) = (d1.to_string(), d2.to_string());
    flotilla_controller::settings::wildcard(&pattern, &v).into()
}

impl Policy {
    /// The built-in roles plus `policy_csv`; callers nothing matches get `default_role`.
    pub async fn new(policy_csv: &str, default_role: Option<&str>) -> Result<Self, RbacError> {
        Self::with_projects(policy_csv, default_role, (Vec::new(), Vec::new())).await
    }

    /// [`Self::new`] plus the AppProject roles' rules (from [`project_rules`]).
    pub async fn with_projects(
        policy_csv: &str,
        default_role: Option<&str>,
        projects: Rules,
    ) -> Result<Self, RbacError> {
        let model = DefaultModel::from_str(MODEL)
            .await
            .map_err(|e| RbacError::Engine(e.to_string()))?;
        let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
            .await
            .map_err(|e| RbacError::Engine(e.to_string()))?;
        enforcer.add_function(
            "globOrRegexMatch",
            casbin::function_map::OperatorFunction::Arg2(glob),
        );
        let (mut p, mut g) = parse(BUILTIN, 0)?;
        let (up, ug) = parse(policy_csv, 0)?;
        p.extend(up);
        g.extend(ug);
        p.extend(projects.0);
        g.extend(projects.1);
        // casbin adds a batch only when none of it exists yet: no duplicates.
        let dedup = |v: &mut Vec<Vec<String>>| {
            let mut seen = std::collections::HashSet::new();
            v.retain(|r| seen.insert(r.clone()));
        };
        dedup(&mut p);
        dedup(&mut g);
        let patterns = p
            .iter()
            .map(|r| (r[1].clone(), r[2].clone(), r[3].clone()))
            .collect();
        enforcer
            .add_policies(p)
            .await
            .map_err(|e| RbacError::Engine(e.to_string()))?;
        if !g.is_empty() {
            enforcer
                .add_grouping_policies(g)
                .await
                .map_err(|e| RbacError::Engine(e.to_string()))?;
        }
        Ok(Self {
            enforcer,
            patterns,
            default_role: default_role
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string),
        })
    }

    /// Whether every caller's answer for `act` on `res` object `<project>/<name>` is the same
    /// for all names of `project`: no rule's object pattern singles out some names (nor
    /// namespaces: the patterns that reach all or none of `<project>/...` do so for every form
    /// of [`AppObject`]). Then one
    /// check answers for the whole project (a list of 50,000 apps asks casbin once per project
    /// instead of once per app).
    pub fn name_independent(&self, res: &str, act: &str, project: &str) -> bool {
        use flotilla_controller::settings::wildcard;
        self.patterns
            .iter()
            .filter(|(r, a, _)| wildcard(r, res) && wildcard(a, act))
            .all(|(_, _, obj)| reach(obj, project) != Reach::Depends)
    }

    fn allows(&self, sub: &str, res: &str, act: &str, obj: &str, alt: &str) -> bool {
        self.enforcer
            .enforce((sub, res, act, obj, alt))
            .unwrap_or(false)
    }

    fn can_as(
        &self,
        subject: &str,
        groups: &[String],
        res: &str,
        act: &str,
        obj: &str,
        alt: &str,
    ) -> bool {
        std::iter::once(subject)
            .chain(groups.iter().map(String::as_str))
            .chain(self.default_role.as_deref())
            .any(|s| self.allows(s, res, act, obj, alt))
    }

    /// Whether a caller (`subject` and its `groups`) may `act` on `res`/`obj`: any of them, or
    /// the default role, allows it (a deny only outweighs allows for the same subject).
    pub fn can(&self, subject: &str, groups: &[String], res: &str, act: &str, obj: &str) -> bool {
        self.can_as(subject, groups, res, act, obj, obj)
    }

    /// [`Self::can`] for an application's object (either of its forms).
    pub fn can_object(
        &self,
        subject: &str,
        groups: &[String],
        res: &str,
        act: &str,
        obj: &AppObject,
    ) -> bool {
        let alt = obj.alias.as_deref().unwrap_or(&obj.object);
        self.can_as(subject, groups, res, act, &obj.object, alt)
    }
}

/// Whether the caller (`subject`, `groups`) may `get` each listed app, answering once per
/// project when [`Policy::name_independent`] says the name cannot matter (memoized for the
/// life of the value: one request).
pub struct AppVisibility<'a> {
    policy: &'a Policy,
    subject: &'a str,
    groups: &'a [String],
    /// The control-plane namespace (see [`AppObject::new`]).
    control: &'a str,
    per_project: std::cell::RefCell<std::collections::HashMap<String, Option<bool>>>,
}

impl<'a> AppVisibility<'a> {
    pub fn new(policy: &'a Policy, subject: &'a str, groups: &'a [String]) -> Self {
        Self {
            policy,
            subject,
            groups,
            control: "",
            per_project: Default::default(),
        }
    }

    /// Apps outside `control` (the control-plane namespace) are asked about as
    /// `<project>/<namespace>/<name>`.
    pub fn control_namespace(mut self, control: &'a str) -> Self {
        self.control = control;
        self
    }

    fn ask(&self, project: &str, namespace: &str, name: &str) -> bool {
        self.policy.can_object(
            self.subject,
            self.groups,
            "applications",
            "get",
            &AppObject::new(self.control, project, namespace, name),
        )
    }
}

impl crate::query::Visibility for AppVisibility<'_> {
    fn whole_project(&self, project: &str) -> Option<bool> {
        if let Some(answer) = self.per_project.borrow().get(project) {
            return *answer;
        }
        // Any name answers for all of them when none is singled out (in any namespace: every
        // form of the object starts with "<project>/").
        let answer = self
            .policy
            .name_independent("applications", "get", project)
            .then(|| self.ask(project, self.control, "any"));
        self.per_project
            .borrow_mut()
            .insert(project.to_string(), answer);
        answer
    }

    fn app(&self, a: &crate::query::AppSummary) -> bool {
        self.whole_project(&a.project)
            .unwrap_or_else(|| self.ask(&a.project, &a.namespace, &a.name))
    }
}

/// [`AppVisibility`] as a closure.
pub fn app_visibility<'a>(
    policy: &'a Policy,
    control: &'a str,
    subject: &'a str,
    groups: &'a [String],
) -> impl Fn(&crate::query::AppSummary) -> bool + 'a {
    let v = AppVisibility::new(policy, subject, groups).control_namespace(control);
    move |a| crate::query::Visibility::app(&v, a)
}

/// The resources a project role's policy may name (Argo CD's list).
const PROJECT_RESOURCES: &[&str] = &[
    "applications",
    "applicationsets",
    "logs",
    "exec",
    "clusters",
    "repositories",
    "write-repositories",
    "projects",
    "certificates",
    "accounts",
    "gpgkeys",
    "extensions",
];

/// Whether `object` lies inside `project`: `<project>/<app>` or `<project>/<namespace>/<app>`,
/// each segment of `[A-Za-z0-9_.*-]` (Argo CD's rule) and not a dot segment, so no glob can
/// reach another project.
fn inside(project: &str, object: &str) -> bool {
    let seg = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*'))
    };
    match object
        .strip_prefix(project)
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(rest) => {
            let parts: Vec<&str> = rest.split('/').collect();
            (1..=2).contains(&parts.len()) && parts.iter().all(|p| seg(p))
        }
        None => false,
    }
}

/// One line of a project role's `policies`, checked as Argo CD checks it: `p, <subject>,
/// <resource>, <action>, <object>, <allow|deny>` whose subject is the role and whose object is
/// inside the project.
fn project_policy(project: &str, role: &str, line: &str) -> Result<Vec<String>, String> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    if f.len() != 6 || f[0] != "p" {
        return Err("must be of the form 'p, sub, res, act, obj, eft'".into());
    }
    let subject = format!("proj:{project}:{role}");
    if f[1] != subject {
        return Err(format!("the subject must be {subject}"));
    }
    if !PROJECT_RESOURCES.contains(&f[2]) {
        return Err(format!("unknown resource {:?}", f[2]));
    }
    if f[3].is_empty() {
        return Err("no action".into());
    }
    if !inside(project, f[4]) {
        return Err(format!(
            "the object must be {project}/<app> or {project}/<namespace>/<app> (globs allowed), not {:?}",
            f[4]
        ));
    }
    if f[5] != "allow" && f[5] != "deny" {
        return Err(format!("effect {:?} is not allow or deny", f[5]));
    }
    Ok(f[1..].iter().map(|x| x.to_string()).collect())
}

/// The `p` and `g` rules of the projects' roles. A policy line that is malformed, names another
/// subject or reaches outside its project is dropped (and logged), as Argo CD refuses it.
pub fn project_rules(projects: &[Arc<AppProject>]) -> Rules {
    let (mut p, mut g) = (Vec::new(), Vec::new());
    for proj in projects {
        let name = proj.metadata.name.as_deref().unwrap_or_default();
        for role in crate::project_tokens::roles(proj) {
            if role.name.is_empty() || role.name.contains(':') {
                continue;
            }
            let subject = format!("proj:{name}:{}", role.name);
            for (i, line) in role.policies.iter().enumerate() {
                match project_policy(name, &role.name, line) {
                    Ok(rule) => p.push(rule),
                    Err(why) => tracing::warn!(
                        project = %name, role = %role.name, policy = i, line = %line,
                        "project role policy dropped: {why}"
                    ),
                }
            }
            for group in role
                .groups
                .iter()
                .map(|x| x.trim())
                .filter(|x| !x.is_empty())
            {
                g.push(vec![group.to_string(), subject.clone()]);
            }
        }
    }
    (p, g)
}

/// A cheap fingerprint of the projects (names and resourceVersions).
fn fingerprint(projects: &[Arc<AppProject>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut keys: Vec<(&str, &str)> = projects
        .iter()
        .map(|p| {
            (
                p.metadata.name.as_deref().unwrap_or_default(),
                p.metadata.resource_version.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    keys.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    keys.hash(&mut h);
    h.finish()
}

/// The policy lines of `argocd-rbac-cm` as Argo CD reads them: `policy.csv`, then every
/// `policy.<name>.csv` overlay in key order (so a team's deny lines in its own key count).
pub fn combined_policy(data: &BTreeMap<String, String>) -> String {
    let mut out = data.get("policy.csv").cloned().unwrap_or_default();
    for (k, v) in data {
        if k != "policy.csv" && k.starts_with("policy.") && k.ends_with(".csv") {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(v);
        }
    }
    out
}

/// Keep the policy in force: `argocd-rbac-cm` (`policy.csv` and `policy.*.csv` overlays,
/// `policy.default`, `scopes`) and
/// the AppProjects' roles. A change of the ConfigMap applies at once, project changes within
/// about a second (checked each second, rebuilt only when a project changed); a policy that
/// does not parse is refused (logged) and the previous one stays; without the ConfigMap only
/// the built-in roles and the project roles apply.
pub async fn watch(control: kube::Client, namespace: String, server: Arc<Server>) {
    let mut stream =
        flotilla_controller::config_map::data_stream(control, &namespace, "argocd-rbac-cm").boxed();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut data: Option<BTreeMap<String, String>> = None;
    let mut seen: Option<u64> = None;
    loop {
        let cm_changed = tokio::select! {
            Some(d) = stream.next() => { data = Some(d); true }
            _ = tick.tick() => false,
        };
        let Some(d) = &data else {
            continue;
        };
        let projects = server.projects.state();
        let fp = fingerprint(&projects);
        if !cm_changed && seen == Some(fp) {
            continue;
        }
        seen = Some(fp);
        server.auth.set_scopes(crate::auth::parse_scopes(
            d.get("scopes").map(String::as_str),
        ));
        let csv = combined_policy(d);
        let default = d.get("policy.default").map(String::as_str);
        match Policy::with_projects(&csv, default, project_rules(&projects)).await {
            Ok(p) => {
                if let Ok(mut slot) = server.rbac.write() {
                    *slot = Arc::new(p);
                }
                if cm_changed {
                    tracing::info!("argocd-rbac-cm policy in force");
                } else {
                    tracing::debug!(projects = projects.len(), "project roles in force");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "argocd-rbac-cm refused; the previous policy stays")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overlay_keys_are_part_of_the_policy() {
        let data: BTreeMap<String, String> = [
            ("policy.csv", "p, role:dev, applications, *, */*, allow"),
            (
                "policy.team-a.csv",
                "p, role:dev, applications, delete, team-a/*, deny",
            ),
            ("policy.default", "role:readonly"),
            ("policy.matchMode", "glob"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let csv = combined_policy(&data);
        assert!(csv.contains("deny") && !csv.contains("readonly"), "{csv}");
        let p = Policy::new(&format!("{csv}\ng, alice, role:dev"), None)
            .await
            .expect("parses");
        assert!(p.can("alice", &[], "applications", "sync", "team-a/web"));
        assert!(
            !p.can("alice", &[], "applications", "delete", "team-a/web"),
            "the overlay's deny is in force"
        );
    }

    #[test]
    fn app_objects_are_argo_cds_rbac_names() {
        let obj = |o: &str, a: Option<&str>| AppObject {
            object: o.into(),
            alias: a.map(str::to_string),
        };
        assert_eq!(
            AppObject::new("argocd", "p", "argocd", "web"),
            obj("p/web", Some("p/argocd/web"))
        );
        assert_eq!(
            AppObject::new("argocd", "", "team-a", "web"),
            obj("default/team-a/web", None)
        );
        assert_eq!(
            AppObject::new("argocd", "p", "", "web"),
            obj("p/web", Some("p/argocd/web"))
        );
        // No control plane known: the plain form only (as before apps in any namespace).
        assert_eq!(AppObject::new("", "p", "team-a", "web"), obj("p/web", None));
        // As a client writes them (can-i).
        assert_eq!(
            AppObject::parse("argocd", "p/web"),
            obj("p/web", Some("p/argocd/web"))
        );
        assert_eq!(
            AppObject::parse("argocd", "p/argocd/web"),
            obj("p/web", Some("p/argocd/web"))
        );
        assert_eq!(
            AppObject::parse("argocd", "p/team-a/web"),
            obj("p/team-a/web", None)
        );
        assert_eq!(AppObject::parse("argocd", "*"), obj("*", None));
    }

    #[tokio::test]
    async fn rules_reach_apps_in_other_namespaces_by_their_namespaced_object() {
        let p = Policy::new(
            "p, role:a, applications, get, teams/team-a/*, allow\n\
             p, role:any, applications, get, teams/*, allow\n\
             p, role:cp, applications, get, teams/argocd/*, allow\n\
             p, role:cp, applications, sync, teams/*, allow\n\
             p, role:cp, applications, sync, teams/argocd/frozen, deny\n\
             p, role:legacy, applications, get, teams/web, allow\n\
             g, alice, role:a\ng, bob, role:any\ng, carol, role:cp\ng, dave, role:legacy\n",
            None,
        )
        .await
        .expect("policy");
        let can = |who: &str, act: &str, ns: &str, name: &str| {
            p.can_object(
                who,
                &[],
                "applications",
                act,
                &AppObject::new("argocd", "teams", ns, name),
            )
        };
        // A namespace's rule reaches that namespace only.
        assert!(can("alice", "get", "team-a", "web"));
        assert!(!can("alice", "get", "team-b", "web"));
        assert!(!can("alice", "get", "argocd", "web"));
        // `<project>/*` reaches the project's apps in every namespace (as in Argo CD).
        for ns in ["argocd", "team-a", "team-b"] {
            assert!(can("bob", "get", ns, "web"), "{ns}");
        }
        // The control plane's apps answer to rules naming its namespace too, denies included.
        assert!(can("carol", "get", "argocd", "web"));
        assert!(!can("carol", "get", "team-a", "web"));
        assert!(can("carol", "sync", "argocd", "web"));
        assert!(
            !can("carol", "sync", "argocd", "frozen"),
            "deny by its namespaced form"
        );
        assert!(can("carol", "sync", "team-a", "frozen"));
        // And still to `<project>/<name>`, which does not reach another namespace's app.
        assert!(can("dave", "get", "argocd", "web"));
        assert!(!can("dave", "get", "team-a", "web"));
        // Plain objects keep their meaning.
        assert!(p.can("carol", &[], "applications", "get", "teams/argocd/x"));
        assert!(!p.can("carol", &[], "applications", "get", "teams/x"));
    }

    #[tokio::test]
    async fn a_list_in_any_namespace_equals_the_list_app_by_app() {
        use crate::query::{AppIndex, ByApp, ListQuery, Page};
        let policy = Policy::new(
            "p, role:a, applications, get, teams/team-a/*, allow\n\
             p, role:a, applications, get, ops/*, allow\n\
             p, role:a, applications, get, ops/team-b/*, deny\n\
             g, devs, role:a\n",
            None,
        )
        .await
        .expect("policy");
        let index = AppIndex::default();
        for ns in ["argocd", "team-a", "team-b"] {
            for project in ["teams", "ops", "other"] {
                let app: flotilla_controller::types::Application =
                    serde_json::from_value(serde_json::json!({
                    "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                    "metadata": {"name": format!("{project}-app"), "namespace": ns},
                    "spec": {"project": project, "destination": {"name": "c", "namespace": "x"}}}))
                    .expect("app");
                index.upsert(&app);
            }
        }
        let groups = vec!["devs".to_string()];
        let names = |p: &Page| {
            p.items
                .iter()
                .map(|s| format!("{}/{}", s.namespace, s.name))
                .collect::<Vec<_>>()
        };
        let q = ListQuery::default();
        let fast = index
            .page(
                &q,
                &AppVisibility::new(&policy, "alice", &groups).control_namespace("argocd"),
            )
            .expect("page");
        let slow = index
            .page(
                &q,
                &ByApp(|s: &crate::query::AppSummary| {
                    policy.can_object(
                        "alice",
                        &groups,
                        "applications",
                        "get",
                        &AppObject::new("argocd", &s.project, &s.namespace, &s.name),
                    )
                }),
            )
            .expect("page");
        assert_eq!(names(&fast), names(&slow));
        assert_eq!(
            names(&fast),
            ["argocd/ops-app", "team-a/ops-app", "team-a/teams-app"]
        );
    }

    const CSV: &str = "\
# team a runs its own apps, reads the rest
p, role:team-a, applications, *, team-a/*, allow
p, role:team-a, applications, get, */*, allow
p, role:team-a, applications, sync, team-a/prod-*, deny
g, team-a-devs, role:team-a
p, bob, applications, sync, team-b/web, allow
";

    #[tokio::test]
    async fn argo_cds_model_with_groups_globs_denies_and_the_default_role() {
        let p = Policy::new(CSV, None).await.expect("policy");
        let alice = |act: &str, obj: &str| {
            p.can("alice", &["team-a-devs".into()], "applications", act, obj)
        };
        assert!(alice("sync", "team-a/web"));
        assert!(alice("get", "team-b/web"));
        assert!(!alice("sync", "team-b/web"), "only get outside team-a");
        assert!(!alice("sync", "team-a/prod-api"), "an explicit deny wins");
        assert!(!alice("delete", "team-b/web"));
        assert!(p.can("bob", &[], "applications", "sync", "team-b/web"));
        assert!(
            !p.can("bob", &[], "applications", "get", "team-b/other"),
            "deny by default"
        );
        assert!(p.can("admin", &[], "applications", "delete", "any/thing"));
        assert!(!p.can("carol", &[], "projects", "get", "default"));
        let readonly = Policy::new("", Some("role:readonly"))
            .await
            .expect("policy");
        assert!(readonly.can("carol", &[], "projects", "get", "default"));
        assert!(!readonly.can("carol", &[], "applications", "sync", "x/y"));
    }

    #[tokio::test]
    async fn bad_lines_are_named() {
        for bad in [
            "p, a, b, c",
            "x, a, b",
            "p, a, applications, get, */*, maybe",
        ] {
            let e = Policy::new(bad, None).await.err().expect("refused");
            assert!(e.to_string().starts_with("policy.csv line 1"), "{e}");
        }
    }

    fn project(name: &str, roles: serde_json::Value) -> Arc<AppProject> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                "metadata": {"name": name, "namespace": "argocd"},
                "spec": {"roles": roles}
            }))
            .expect("project"),
        )
    }

    #[tokio::test]
    async fn project_roles_stay_inside_their_project() {
        let a = project(
            "team-a",
            serde_json::json!([{"name": "ci", "groups": ["ci-bots"], "policies": [
                "p, proj:team-a:ci, applications, sync, team-a/*, allow",
                "p, proj:team-a:ci, applications, get, team-a/ns/*, allow",
                "p, proj:team-a:ci, applications, sync, team-a/frozen, deny",
                // Reaching out: all dropped.
                "p, proj:team-a:ci, applications, get, */*, allow",
                "p, proj:team-a:ci, applications, get, team-b/*, allow",
                "p, proj:team-a:ci, applications, get, team-a*/*, allow",
                "p, proj:team-a:ci, applications, get, team-a/../team-b, allow",
                "p, proj:team-b:ci, applications, delete, team-b/*, allow",
                "p, role:admin, applications, delete, team-a/*, allow",
                "p, proj:team-a:ci, applications, delete, team-a/*",
            ]}]),
        );
        let b = project(
            "team-b",
            serde_json::json!([{"name": "ci", "policies": ["p, proj:team-b:ci, applications, get, team-b/*, allow"]}]),
        );
        let rules = project_rules(&[a, b]);
        assert_eq!(rules.0.len(), 4, "{:?}", rules.0);
        assert_eq!(
            rules.1,
            [vec!["ci-bots".to_string(), "proj:team-a:ci".to_string()]]
        );
        let p = Policy::with_projects("", None, rules)
            .await
            .expect("policy");
        let tok = |act: &str, obj: &str| p.can("proj:team-a:ci", &[], "applications", act, obj);
        assert!(tok("sync", "team-a/web"));
        assert!(!tok("sync", "team-a/frozen"), "deny wins");
        assert!(!tok("get", "team-b/web"), "another project");
        assert!(!tok("delete", "team-b/web"));
        assert!(!tok("delete", "team-a/web"));
        // A member of the role's group gets it too; nobody else does.
        assert!(p.can(
            "alice",
            &["ci-bots".into()],
            "applications",
            "sync",
            "team-a/web"
        ));
        assert!(!p.can("alice", &[], "applications", "sync", "team-a/web"));
        assert!(p.can("proj:team-b:ci", &[], "applications", "get", "team-b/x"));
        assert!(!p.can("proj:team-b:ci", &[], "applications", "get", "team-a/x"));
    }

    #[tokio::test]
    async fn duplicate_lines_do_not_drop_the_policy() {
        let p = Policy::new(
            "p, role:readonly, applications, get, */*, allow\np, bob, applications, sync, x/y, allow\np, bob, applications, sync, x/y, allow",
            None,
        )
        .await
        .expect("policy");
        assert!(p.can("bob", &[], "applications", "sync", "x/y"));
    }

    #[test]
    fn object_patterns_reach_all_none_or_some_of_a_project() {
        assert_eq!(reach("*", "p"), Reach::All);
        assert_eq!(reach("*/*", "p"), Reach::All);
        assert_eq!(reach("p/*", "p"), Reach::All);
        assert_eq!(reach("p*", "p"), Reach::All);
        assert_eq!(reach("p?/*", "p1"), Reach::All);
        assert_eq!(reach("proj-1*/*", "proj-12"), Reach::All);
        assert_eq!(reach("q/*", "p"), Reach::None);
        assert_eq!(reach("proj-1*/*", "proj-3"), Reach::None);
        assert_eq!(reach("pp/*", "p"), Reach::None);
        assert_eq!(reach("p/web-*", "p"), Reach::Depends);
        assert_eq!(reach("p/web", "p"), Reach::Depends);
        assert_eq!(reach("*/web", "p"), Reach::Depends);
        assert_eq!(reach("*web*", "p"), Reach::Depends);
    }

    #[tokio::test]
    async fn a_project_wide_answer_is_the_per_app_answer() {
        let policy = Policy::new(
            "p, role:team, applications, get, proj-1*/*, allow\n\
             p, role:team, applications, get, proj-12/app-0001*, deny\n\
             p, bob, applications, *, proj-3/web, allow\n\
             g, team-a, role:team\n",
            None,
        )
        .await
        .expect("policy");
        let names = ["app-00010", "app-00020", "web", "x"];
        let callers: [(&str, Vec<String>); 3] = [
            ("alice", vec!["team-a".to_string()]),
            ("bob", vec![]),
            ("admin", vec![]),
        ];
        let mut independent = Vec::new();
        for project in ["proj-1", "proj-12", "proj-3", "proj-4"] {
            if !policy.name_independent("applications", "get", project) {
                continue;
            }
            independent.push(project);
            for (who, groups) in &callers {
                let first = policy.can(
                    who,
                    groups,
                    "applications",
                    "get",
                    &format!("{project}/{}", names[0]),
                );
                for n in names {
                    assert_eq!(
                        policy.can(
                            who,
                            groups,
                            "applications",
                            "get",
                            &format!("{project}/{n}")
                        ),
                        first,
                        "{who} {project}/{n}"
                    );
                }
            }
        }
        // proj-12 (a deny on some names) and proj-3 (one named app) need per-app answers.
        assert_eq!(independent, ["proj-1", "proj-4"]);
    }

    #[tokio::test]
    async fn a_list_by_whole_projects_equals_the_list_app_by_app() {
        use crate::query::{AppIndex, ByApp, ListQuery, Page};
        let policy = Policy::new(
            "p, role:team, applications, get, team-a/*, allow\n\
             p, role:team, applications, get, team-c/web*, allow\n\
             g, devs, role:team\n",
            None,
        )
        .await
        .expect("policy");
        let index = AppIndex::default();
        for (i, project) in ["team-a", "team-b", "team-c", "team-a", "team-c", "team-b"]
            .iter()
            .cycle()
            .take(30)
            .enumerate()
        {
            let name = if i % 4 == 0 {
                format!("web-{i:02}")
            } else {
                format!("app-{i:02}")
            };
            let app: flotilla_controller::types::Application =
                serde_json::from_value(serde_json::json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": name, "namespace": "argocd"},
                "spec": {"project": project, "destination": {"name": "c", "namespace": "x"}}}))
                .expect("app");
            index.upsert(&app);
        }
        let groups = vec!["devs".to_string()];
        let names = |p: &Page| p.items.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        for q in [
            ListQuery::default(),
            ListQuery {
                limit: Some(3),
                ..Default::default()
            },
            ListQuery {
                limit: Some(3),
                cont: Some("argocd/app-07".into()),
                ..Default::default()
            },
            // These two take the whole-project path (team-c has a per-app rule; these do not).
            ListQuery {
                project: Some("team-a,team-b".into()),
                limit: Some(4),
                ..Default::default()
            },
            ListQuery {
                project: Some("team-a,team-b".into()),
                limit: Some(2),
                cont: Some("argocd/app-05".into()),
                ..Default::default()
            },
        ] {
            let fast = index
                .page(&q, &AppVisibility::new(&policy, "alice", &groups))
                .expect("page");
            let slow = index
                .page(
                    &q,
                    &ByApp(|s: &crate::query::AppSummary| {
                        policy.can(
                            "alice",
                            &groups,
                            "applications",
                            "get",
                            &format!("{}/{}", s.project, s.name),
                        )
                    }),
                )
                .expect("page");
            assert_eq!(names(&fast), names(&slow), "{q:?}");
            assert_eq!(fast.metadata.total, slow.metadata.total, "{q:?}");
            assert_eq!(fast.metadata.cont, slow.metadata.cont, "{q:?}");
        }
    }
}
