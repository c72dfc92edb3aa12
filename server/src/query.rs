//! Listing Applications: the filters the API takes (project, cluster, namespace, labels, sync,
//! health, name search), a stable order and cursor paging. Pure: apps in, a page out.

use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_controller::types::Application;
use serde::{Deserialize, Serialize};

/// Query parameters of `GET /api/v1/applications`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated project names.
    pub project: Option<String>,
    /// Destination cluster: its server URL or its name.
    pub cluster: Option<String>,
    /// Destination namespace.
    pub namespace: Option<String>,
    /// Label selector: `k=v`, `k!=v`, `k` (exists), comma-separated, all must hold.
    pub selector: Option<String>,
    /// Sync status (`Synced`, `OutOfSync`, `Unknown`), comma-separated.
    pub sync: Option<String>,
    /// Health status (`Healthy`, `Progressing`, ...), comma-separated.
    pub health: Option<String>,
    /// Substring of the name.
    pub search: Option<String>,
    /// Page size (default 500, at most 5000).
    pub limit: Option<usize>,
    /// Cursor from the previous page's `metadata.continue`.
    #[serde(rename = "continue")]
    pub cont: Option<String>,
    /// Skip this many matching apps (after the cursor, if any): random access for a
    /// virtualised list.
    pub offset: Option<usize>,
}

/// Default and largest page sizes.
pub const DEFAULT_LIMIT: usize = 500;
pub const MAX_LIMIT: usize = 5000;

/// What the list shows of one app.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppSummary {
    pub namespace: String,
    pub name: String,
    pub project: String,
    pub repo_url: String,
    pub path: String,
    pub target_revision: String,
    pub dest_server: String,
    pub dest_name: String,
    pub dest_namespace: String,
    pub sync: String,
    pub health: String,
    pub revision: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub operation_phase: String,
    pub labels: BTreeMap<String, String>,
}

/// One page of the list.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub items: Vec<AppSummary>,
    pub metadata: PageMeta,
}

#[derive(Debug, Clone, Serialize)]
pub struct PageMeta {
    /// How many apps match the filters in all.
    pub total: usize,
    /// Pass as `continue` for the next page; absent on the last one.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub cont: Option<String>,
}

/// Why a query was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("selector {0:?} is not k=v, k!=v or k")]
    Selector(String),
    #[error("continue {0:?} is not a cursor this server issued")]
    Cursor(String),
}

fn list(v: &Option<String>) -> Vec<&str> {
    v.as_deref()
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

enum Requirement<'a> {
    Eq(&'a str, &'a str),
    Ne(&'a str, &'a str),
    Exists(&'a str),
}

fn selector(s: &str) -> Result<Vec<Requirement<'_>>, QueryError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let valid = |k: &str| !k.is_empty() && !k.contains(['=', '!', ' ']);
            if let Some((k, v)) = p.split_once("!=") {
                valid(k.trim()).then_some(Requirement::Ne(k.trim(), v.trim()))
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                valid(k.trim()).then_some(Requirement::Eq(k.trim(), v.trim()))
            } else {
                valid(p).then_some(Requirement::Exists(p))
            }
            .ok_or_else(|| QueryError::Selector(s.to_string()))
        })
        .collect()
}

/// The summary of `app`.
pub fn summary(app: &Application) -> AppSummary {
    let src = app
        .spec
        .source
        .clone()
        .or_else(|| app.spec.sources.as_ref().and_then(|s| s.first().cloned()))
        .unwrap_or_default();
    let st = app.status.clone().unwrap_or_default();
    let op_phase = st
        .operation_state
        .as_ref()
        .and_then(|o| o.get("phase"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    AppSummary {
        namespace: app.metadata.namespace.clone().unwrap_or_default(),
        name: app.metadata.name.clone().unwrap_or_default(),
        project: if app.spec.project.is_empty() {
            "default".into()
        } else {
            app.spec.project.clone()
        },
        repo_url: src.repo_url.clone(),
        path: src.path.clone().unwrap_or_default(),
        target_revision: src.target_revision.clone().unwrap_or_default(),
        dest_server: app.spec.destination.server.clone().unwrap_or_default(),
        dest_name: app.spec.destination.name.clone().unwrap_or_default(),
        dest_namespace: app.spec.destination.namespace.clone().unwrap_or_default(),
        sync: st
            .sync
            .as_ref()
            .map(|s| s.status.clone())
            .unwrap_or_default(),
        health: st
            .health
            .as_ref()
            .map(|h| h.status.clone())
            .unwrap_or_default(),
        revision: st.sync.and_then(|s| s.revision).unwrap_or_default(),
        operation_phase: op_phase,
        labels: app.metadata.labels.clone().unwrap_or_default(),
    }
}

/// A query's filters, parsed once per request.
pub struct Filter<'a> {
    projects: Vec<&'a str>,
    cluster: Option<&'a str>,
    namespace: Option<&'a str>,
    sync: Vec<&'a str>,
    health: Vec<&'a str>,
    search: Option<&'a str>,
    selector: Vec<Requirement<'a>>,
}

impl<'a> Filter<'a> {
    pub fn new(q: &'a ListQuery) -> Result<Self, QueryError> {
        Ok(Self {
            projects: list(&q.project),
            cluster: q.cluster.as_deref(),
            namespace: q.namespace.as_deref(),
            sync: list(&q.sync),
            health: list(&q.health),
            search: q.search.as_deref(),
            selector: selector(q.selector.as_deref().unwrap_or_default())?,
        })
    }

    /// Whether `s` passes every filter.
    pub fn passes(&self, s: &AppSummary) -> bool {
        let any = |allowed: &[&str], v: &str| allowed.is_empty() || allowed.contains(&v);
        any(&self.projects, &s.project)
            && self
                .cluster
                .is_none_or(|c| c == s.dest_server || c == s.dest_name)
            && self.namespace.is_none_or(|n| n == s.dest_namespace)
            && any(&self.sync, &s.sync)
            && any(&self.health, &s.health)
            && self.search.is_none_or(|t| s.name.contains(t))
            && self.selector.iter().all(|r| match r {
                Requirement::Eq(k, v) => s.labels.get(*k).is_some_and(|x| x == v),
                Requirement::Ne(k, v) => s.labels.get(*k).is_none_or(|x| x != v),
                Requirement::Exists(k) => s.labels.contains_key(*k),
            })
    }
}

/// Refuse a query whose filters do not parse.
pub fn validate(q: &ListQuery) -> Result<(), QueryError> {
    Filter::new(q).map(|_| ())
}

/// Whether `s` passes `q`'s filters (paging aside), for the streaming endpoint.
pub fn passes(s: &AppSummary, q: &ListQuery) -> Result<bool, QueryError> {
    Ok(Filter::new(q)?.passes(s))
}

/// The cursor of `q`: the (namespace, name) the page starts after.
fn cursor(q: &ListQuery) -> Result<Option<(&str, &str)>, QueryError> {
    q.cont
        .as_deref()
        .map(|c| {
            c.split_once('/')
                .ok_or_else(|| QueryError::Cursor(c.to_string()))
        })
        .transpose()
}

/// The page `q` asks for from `sorted` (by namespace and name). `visible` says which apps the
/// caller may see: authorization filters every returned object and the count.
pub fn page_of<'s>(
    sorted: impl Iterator<Item = &'s AppSummary>,
    q: &ListQuery,
    visible: impl Fn(&AppSummary) -> bool,
) -> Result<Page, QueryError> {
    let filter = Filter::new(q)?;
    let after = cursor(q)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let mut skip = q.offset.unwrap_or(0);
    let (mut total, mut items, mut more) = (0, Vec::new(), false);
    for s in sorted {
        if !filter.passes(s) || !visible(s) {
            continue;
        }
        total += 1;
        let past_cursor =
            after.is_none_or(|(ns, name)| (s.namespace.as_str(), s.name.as_str()) > (ns, name));
        if past_cursor && skip > 0 {
            skip -= 1;
        } else if past_cursor {
            if items.len() < limit {
                items.push(s.clone());
            } else {
                more = true;
            }
        }
    }
    let cont = more
        .then(|| items.last().map(|s| format!("{}/{}", s.namespace, s.name)))
        .flatten();
    Ok(Page {
        items,
        metadata: PageMeta { total, cont },
    })
}

/// The page of `apps` that `q` asks for, sorted by namespace and name (summaries made on the
/// spot; the server keeps an [`AppIndex`] instead).
pub fn page(
    apps: &[Arc<Application>],
    q: &ListQuery,
    visible: impl Fn(&AppSummary) -> bool,
) -> Result<Page, QueryError> {
    let mut all: Vec<AppSummary> = apps.iter().map(|a| summary(a)).collect();
    all.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    page_of(all.iter(), q, visible)
}

type Key = (String, String);

/// Who may see which app, for a list: per app, and when it can tell, per whole project (then a
/// list of the projects' apps needs no per-app check, and its count no scan).
pub trait Visibility {
    fn app(&self, s: &AppSummary) -> bool;
    /// `Some(answer)` when the answer is the same for every app of `project`.
    fn whole_project(&self, _project: &str) -> Option<bool> {
        None
    }
}

/// A per-app rule from a closure (tests, benches).
pub struct ByApp<F>(pub F);

impl<F: Fn(&AppSummary) -> bool> Visibility for ByApp<F> {
    fn app(&self, s: &AppSummary) -> bool {
        (self.0)(s)
    }
}

#[derive(Default)]
struct Entries {
    by_key: BTreeMap<Key, Arc<AppSummary>>,
    /// Apps per project.
    per_project: std::collections::HashMap<String, usize>,
}

impl Entries {
    fn insert(&mut self, key: Key, s: Arc<AppSummary>) {
        *self.per_project.entry(s.project.clone()).or_default() += 1;
        if let Some(old) = self.by_key.insert(key, s) {
            self.forget(&old.project);
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.by_key.remove(key) {
            self.forget(&old.project);
        }
    }

    fn forget(&mut self, project: &str) {
        if let Some(n) = self.per_project.get_mut(project) {
            *n -= 1;
            if *n == 0 {
                self.per_project.remove(project);
            }
        }
    }
}

/// Every application's summary in list order, kept current from the server's watch, so a list
/// neither rebuilds nor sorts 50,000 summaries per request.
#[derive(Default)]
pub struct AppIndex {
    entries: std::sync::RwLock<Entries>,
    /// Keys seen since a relist began (the rest are dropped when it ends).
    relisting: std::sync::Mutex<Option<std::collections::HashSet<Key>>>,
}

fn key_of(s: &AppSummary) -> Key {
    (s.namespace.clone(), s.name.clone())
}

impl AppIndex {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// An app was created or changed.
    pub fn upsert(&self, app: &Application) {
        let s = summary(app);
        let key = key_of(&s);
        if let Some(seen) = self
            .relisting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            seen.insert(key.clone());
        }
        self.write().insert(key, Arc::new(s));
    }

    /// An app was deleted.
    pub fn remove(&self, app: &Application) {
        let s = summary(app);
        self.write().remove(&key_of(&s));
    }

    /// The watch lists everything again: what it does not list by [`Self::relist_done`] is gone.
    pub fn relist_start(&self) {
        *self.relisting.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::collections::HashSet::new());
    }

    pub fn relist_done(&self) {
        let seen = self
            .relisting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(seen) = seen {
            let mut e = self.write();
            let gone: Vec<Key> = e
                .by_key
                .keys()
                .filter(|k| !seen.contains(*k))
                .cloned()
                .collect();
            for k in gone {
                e.remove(&k);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.read().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Call `f` on every summary, in list order.
    pub fn each(&self, mut f: impl FnMut(&AppSummary)) {
        self.read().by_key.values().for_each(|s| f(s));
    }

    /// The page `q` asks for (see [`page_of`]). When the query filters by project at most and
    /// every project's visibility is whole, the count comes from the per-project tallies and
    /// only the page itself is walked: the first page of 50,000 apps reads about 500.
    pub fn page(&self, q: &ListQuery, vis: &dyn Visibility) -> Result<Page, QueryError> {
        let filter = Filter::new(q)?;
        let e = self.read();
        let only_projects = filter.cluster.is_none()
            && filter.namespace.is_none()
            && filter.sync.is_empty()
            && filter.health.is_empty()
            && filter.search.is_none()
            && filter.selector.is_empty();
        if only_projects {
            let mut visible: std::collections::HashSet<&str> = Default::default();
            let mut total = 0;
            let mut whole = true;
            for (project, n) in &e.per_project {
                if !filter.projects.is_empty() && !filter.projects.contains(&project.as_str()) {
                    continue;
                }
                match vis.whole_project(project) {
                    Some(true) => {
                        visible.insert(project.as_str());
                        total += n;
                    }
                    Some(false) => {}
                    None => {
                        whole = false;
                        break;
                    }
                }
            }
            if whole {
                // A handful of projects: a list beats hashing every app's project.
                let few: Vec<&str> = if visible.len() <= 16 {
                    visible.iter().copied().collect()
                } else {
                    Vec::new()
                };
                let shown = |p: &str| {
                    if visible.len() <= 16 {
                        few.contains(&p)
                    } else {
                        visible.contains(p)
                    }
                };
                let after = cursor(q)?;
                let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
                let start = match after {
                    Some((ns, name)) => {
                        std::ops::Bound::Excluded((ns.to_string(), name.to_string()))
                    }
                    None => std::ops::Bound::Unbounded,
                };
                let (mut items, mut more) = (Vec::new(), false);
                for s in e
                    .by_key
                    .range((start, std::ops::Bound::Unbounded))
                    .map(|(_, s)| s)
                    .filter(|s| shown(s.project.as_str()))
                    .skip(q.offset.unwrap_or(0))
                {
                    if items.len() == limit {
                        more = true;
                        break;
                    }
                    items.push(AppSummary::clone(s));
                }
                let cont = more
                    .then(|| items.last().map(|s| format!("{}/{}", s.namespace, s.name)))
                    .flatten();
                return Ok(Page {
                    items,
                    metadata: PageMeta { total, cont },
                });
            }
        }
        page_of(e.by_key.values().map(|s| s.as_ref()), q, |s| vis.app(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(
        name: &str,
        project: &str,
        cluster: &str,
        sync: &str,
        labels: &[(&str, &str)],
    ) -> Arc<Application> {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": name, "namespace": "argocd", "labels": labels},
                "spec": {"project": project, "source": {"repoURL": "https://git/x", "path": name, "targetRevision": "main"},
                         "destination": {"name": cluster, "namespace": name}},
                "status": {"sync": {"status": sync, "revision": "abc"}, "health": {"status": "Healthy"}}}))
            .expect("an app"),
        )
    }

    fn fleet() -> Vec<Arc<Application>> {
        vec![
            app("web", "team-a", "prod", "Synced", &[("tier", "front")]),
            app("api", "team-a", "prod", "OutOfSync", &[("tier", "back")]),
            app("db", "team-b", "dev", "Synced", &[("tier", "back")]),
            app("cache", "team-b", "prod", "Synced", &[]),
        ]
    }

    fn names(p: &Page) -> Vec<&str> {
        p.items.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn filters_combine() {
        let all = |_: &AppSummary| true;
        let q = |f: fn(&mut ListQuery)| {
            let mut q = ListQuery::default();
            f(&mut q);
            q
        };
        let p = page(&fleet(), &q(|q| q.project = Some("team-a".into())), all).expect("ok");
        assert_eq!(names(&p), ["api", "web"]);
        let p = page(&fleet(), &q(|q| q.cluster = Some("prod".into())), all).expect("ok");
        assert_eq!(names(&p), ["api", "cache", "web"]);
        let p = page(&fleet(), &q(|q| q.sync = Some("OutOfSync".into())), all).expect("ok");
        assert_eq!(names(&p), ["api"]);
        let p = page(&fleet(), &q(|q| q.selector = Some("tier=back".into())), all).expect("ok");
        assert_eq!(names(&p), ["api", "db"]);
        let p = page(
            &fleet(),
            &q(|q| q.selector = Some("tier!=back".into())),
            all,
        )
        .expect("ok");
        assert_eq!(names(&p), ["cache", "web"]);
        let p = page(&fleet(), &q(|q| q.selector = Some("tier".into())), all).expect("ok");
        assert_eq!(p.metadata.total, 3);
        let p = page(&fleet(), &q(|q| q.search = Some("a".into())), all).expect("ok");
        assert_eq!(names(&p), ["api", "cache"]);
        assert!(page(&fleet(), &q(|q| q.selector = Some("=x".into())), all).is_err());
    }

    #[test]
    fn pages_follow_the_cursor_and_visibility_filters() {
        let mut q = ListQuery {
            limit: Some(3),
            ..Default::default()
        };
        let first = page(&fleet(), &q, |_| true).expect("ok");
        assert_eq!(names(&first), ["api", "cache", "db"]);
        assert_eq!(first.metadata.total, 4);
        q.cont = first.metadata.cont.clone();
        let second = page(&fleet(), &q, |_| true).expect("ok");
        assert_eq!(names(&second), ["web"]);
        assert!(second.metadata.cont.is_none());
        q.cont = Some("nonsense".into());
        assert!(page(&fleet(), &q, |_| true).is_err());
        let only_b = page(&fleet(), &ListQuery::default(), |s| s.project == "team-b").expect("ok");
        assert_eq!(names(&only_b), ["cache", "db"]);
    }

    #[test]
    fn offsets_skip_matching_apps_on_both_paths() {
        struct All;
        impl Visibility for All {
            fn app(&self, _: &AppSummary) -> bool {
                true
            }
            fn whole_project(&self, _: &str) -> Option<bool> {
                Some(true)
            }
        }
        let idx = AppIndex::default();
        for a in &fleet() {
            idx.upsert(a);
        }
        let q = ListQuery {
            limit: Some(2),
            offset: Some(1),
            ..Default::default()
        };
        let fast = idx.page(&q, &All).expect("fast");
        let slow = idx.page(&q, &ByApp(|_: &AppSummary| true)).expect("slow");
        assert_eq!(names(&fast), ["cache", "db"]);
        assert_eq!(names(&slow), ["cache", "db"]);
        assert_eq!((fast.metadata.total, slow.metadata.total), (4, 4));
        let past = ListQuery {
            offset: Some(10),
            ..Default::default()
        };
        assert!(idx.page(&past, &All).expect("ok").items.is_empty());
        let filtered = ListQuery {
            offset: Some(1),
            project: Some("team-b".into()),
            search: Some("".into()),
            ..Default::default()
        };
        assert_eq!(
            names(&page(&fleet(), &filtered, |_| true).expect("ok")),
            ["db"]
        );
    }

    #[test]
    fn the_index_follows_the_watch_and_a_relist_drops_the_gone() {
        let idx = AppIndex::default();
        let apps = fleet();
        for a in &apps {
            idx.upsert(a);
        }
        let all = |idx: &AppIndex| {
            idx.page(&ListQuery::default(), &ByApp(|_: &AppSummary| true))
                .expect("page")
                .items
                .into_iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
        };
        let before = all(&idx);
        let mut sorted = before.clone();
        sorted.sort();
        assert_eq!(before, sorted, "list order");
        idx.remove(&apps[0]);
        assert_eq!(idx.len(), apps.len() - 1);
        // A relist that no longer lists apps[1]: it is dropped when the relist ends.
        idx.relist_start();
        for a in &apps[2..] {
            idx.upsert(a);
        }
        assert_eq!(idx.len(), apps.len() - 1, "nothing dropped mid-relist");
        idx.relist_done();
        let after = all(&idx);
        assert_eq!(after.len(), apps.len() - 2);
        let gone = apps[1].metadata.name.clone().unwrap_or_default();
        assert!(before.contains(&gone) && !after.contains(&gone));
    }
}
