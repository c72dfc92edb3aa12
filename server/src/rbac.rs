//! Authorization as Argo CD does it: `argocd-rbac-cm`'s `policy.csv` on top of the built-in
//! roles (`role:readonly`, `role:admin`), `policy.default`, a caller's subject and groups, globs;
//! evaluated by casbin with Argo CD's model. Anything not allowed is denied.

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};

/// Argo CD's casbin model: subject (or role), resource, action, object; deny wins.
const MODEL: &str = r#"
[request_definition]
r = sub, res, act, obj

[policy_definition]
p = sub, res, act, obj, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub) && globOrRegexMatch(r.res, p.res) && globOrRegexMatch(r.act, p.act) && globOrRegexMatch(r.obj, p.obj)
"#;

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
}

type Rules = (Vec<Vec<String>>, Vec<Vec<String>>);

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
            default_role: default_role
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string),
        })
    }

    fn allows(&self, sub: &str, res: &str, act: &str, obj: &str) -> bool {
        self.enforcer.enforce((sub, res, act, obj)).unwrap_or(false)
    }

    /// Whether a caller (`subject` and its `groups`) may `act` on `res`/`obj`: any of them, or
    /// the default role, allows it (a deny only outweighs allows for the same subject).
    pub fn can(&self, subject: &str, groups: &[String], res: &str, act: &str, obj: &str) -> bool {
        std::iter::once(subject)
            .chain(groups.iter().map(String::as_str))
            .chain(self.default_role.as_deref())
            .any(|s| self.allows(s, res, act, obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
