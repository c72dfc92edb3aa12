//! The `argocd-cm` settings that shape comparison and health — resource customizations
//! (health.lua, ignoreDifferences, ignoreResourceUpdates, knownTypeFields), resource
//! exclusions/inclusions, compare options — parsed into a snapshot swapped whole on every
//! change of the ConfigMap, so they take effect without a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::Value;

use crate::health::{Health, HealthCode};
use crate::ignore::IgnoreRule;
use crate::tracking::ResourceKey;

/// Keys of `argocd-cm` this module reads.
pub const CUSTOMIZATIONS: &str = "resource.customizations";
pub const EXCLUSIONS: &str = "resource.exclusions";
pub const INCLUSIONS: &str = "resource.inclusions";
pub const COMPARE_OPTIONS: &str = "resource.compareoptions";
pub const IGNORE_UPDATES_ENABLED: &str = "resource.ignoreResourceUpdatesEnabled";
/// Flotilla's own key: the kstatus-style generic health for kinds without a check.
pub const GENERIC_HEALTH: &str = "flotilla.health.genericConditions";

/// One `resource.customizations` entry, for the group/kind pattern it was given under.
#[derive(Debug, Clone, Default)]
pub struct Override {
    /// `group/Kind`, `Kind` (core group), `*/*`, or a wildcard such as `*.crossplane.io/*`.
    pub pattern: String,
    pub health_lua: Option<Arc<str>>,
    /// Hash of `health_lua` and `use_open_libs` (the verdict cache's key).
    pub script_id: u64,
    pub use_open_libs: bool,
    pub ignore_differences: Vec<IgnoreRule>,
    pub ignore_updates: Vec<IgnoreRule>,
    /// `knownTypeFields`: (field path, Kubernetes type) pairs.
    pub known_type_fields: Vec<(String, String)>,
}

/// `resource.exclusions` / `resource.inclusions` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFilter {
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub clusters: Vec<String>,
}

impl ResourceFilter {
    fn matches(&self, group: &str, kind: &str, cluster: &str) -> bool {
        let any = |ps: &[String], s: &str| ps.is_empty() || ps.iter().any(|p| wildcard(p, s));
        any(&self.api_groups, group) && any(&self.kinds, kind) && any(&self.clusters, cluster)
    }
}

/// `resource.compareoptions.ignoreResourceStatusField`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusField {
    /// `crd` (the default): CRDs' status (and `spec.preserveUnknownFields`) never compared.
    #[default]
    Crd,
    /// `all`: no object's status is compared.
    All,
    /// `off`/`false`: status is compared where Git sets it.
    Off,
}

/// `resource.compareoptions`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompareOptions {
    pub ignore_aggregated_roles: bool,
    pub status_field: StatusField,
    /// `ignoreDifferencesOnResourceUpdates`: ignoreDifferences also count as
    /// ignoreResourceUpdates.
    pub ignore_differences_on_updates: bool,
}

/// The parsed settings. `problems` names each key that was refused (the rest apply).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub overrides: Vec<Override>,
    pub exclusions: Vec<ResourceFilter>,
    pub inclusions: Vec<ResourceFilter>,
    pub compare: CompareOptions,
    pub ignore_updates_enabled: bool,
    pub generic_health: bool,
    pub problems: Vec<String>,
    /// The ConfigMap's data this was parsed from (to skip re-parsing an unchanged map).
    pub source: BTreeMap<String, String>,
    /// `ignore_rules()` and `update_rules()`, built once per snapshot (they are read on every
    /// reconcile and every watch event).
    system_rules: std::sync::OnceLock<Vec<IgnoreRule>>,
    updates: std::sync::OnceLock<Vec<IgnoreRule>>,
}

/// `argocd-cm` keys Argo CD's application controller reads that Flotilla does not honour, with
/// what to do instead: each present one is named as a problem, never silently dropped.
const NOT_HONOURED: &[(&str, &str)] = &[
    (
        "timeout.reconciliation",
        "set the controller's --refresh-seconds",
    ),
    (
        "timeout.reconciliation.jitter",
        "the refresh jitter is fixed at 20 %",
    ),
    (
        "timeout.hard.reconciliation",
        "hard refreshes are requested per app (annotation refresh: hard)",
    ),
    (
        "resource.respectRBAC",
        "the controller watches only the kinds its apps use",
    ),
    (
        "application.sync.impersonation.enabled",
        "syncs use the cluster Secret's credentials",
    ),
    (
        "resource.includeEventLabelKeys",
        "Events carry no Application labels",
    ),
    (
        "resource.excludeEventLabelKeys",
        "Events carry no Application labels",
    ),
];

/// Kinds never watched, whatever the settings say (Argo CD's core exclusions).
fn core_excluded(group: &str, kind: &str) -> bool {
    matches!(group, "events.k8s.io" | "metrics.k8s.io")
        || (group.is_empty() && kind == "Event")
        || (group == "coordination.k8s.io" && kind == "Lease")
}

/// `*` (any run) and `?` (one character) glob match, in linear time (one backtrack point).
pub fn wildcard(pattern: &str, s: &str) -> bool {
    if pattern == "*" || pattern == s {
        return true;
    }
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(c) if *c == b'?' || *c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// The override key of a group/kind: `group/Kind`, or `Kind` for the core group.
pub fn override_key(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{group}/{kind}")
    }
}

/// One customization as written in the single-key format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    #[serde(rename = "health.lua")]
    health_lua: Option<String>,
    #[serde(rename = "health.lua.useOpenLibs", default)]
    use_open_libs: bool,
    actions: Option<String>,
    #[serde(rename = "ignoreDifferences")]
    ignore_differences: Option<String>,
    #[serde(rename = "ignoreResourceUpdates")]
    ignore_updates: Option<String>,
    #[serde(rename = "knownTypeFields", default)]
    known_type_fields: Vec<KnownTypeField>,
}

#[derive(Debug, Clone, Deserialize)]
struct KnownTypeField {
    field: String,
    #[serde(rename = "type")]
    type_: String,
}

/// The Kubernetes types `knownTypeFields` may name: each is normalized by the rules of the
/// field names it holds (quantities, int-or-string), which apply at any depth.
const KNOWN_TYPES: &[&str] = &[
    "core/v1/PodSpec",
    "core/v1/PodTemplateSpec",
    "core/v1/Container",
    "core/v1/ResourceRequirements",
    "core/v1/ServiceSpec",
    "core/v1/PersistentVolumeClaimSpec",
    "apps/v1/DeploymentSpec",
    "apps/v1/StatefulSetSpec",
    "apps/v1/DaemonSetSpec",
    "batch/v1/JobSpec",
    "batch/v1/CronJobSpec",
    "meta/v1/Duration",
];

/// `ignoreDifferences`/`ignoreResourceUpdates` of a customization: a YAML document.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIgnore {
    #[serde(default)]
    json_pointers: Vec<String>,
    #[serde(default)]
    jq_path_expressions: Vec<String>,
    #[serde(default)]
    managed_fields_managers: Vec<String>,
}

fn split_pattern(pattern: &str) -> (String, String) {
    match pattern.split_once('/') {
        Some((g, k)) => (g.to_string(), k.to_string()),
        None if pattern == "*" => ("*".into(), "*".into()),
        None => (String::new(), pattern.to_string()),
    }
}

fn ignore_rules(pattern: &str, yaml: &str, what: &str) -> Result<Vec<IgnoreRule>, String> {
    let raw: RawIgnore = serde_yaml::from_str(yaml)
        .map_err(|e| format!("{what} for {pattern}: not valid YAML: {e}"))?;
    let (group, kind) = split_pattern(pattern);
    let mut rule = serde_json::json!({
        "group": group, "kind": kind,
        "jsonPointers": raw.json_pointers,
        "jqPathExpressions": raw.jq_path_expressions,
    });
    if !raw.managed_fields_managers.is_empty() {
        rule["managedFieldsManagers"] = raw.managed_fields_managers.into();
    }
    crate::ignore::parse(&[rule]).map_err(|errs| {
        format!(
            "{what} for {pattern}: {}",
            errs.join("; ").replace("spec.ignoreDifferences[0].", "")
        )
    })
}

impl Settings {
    /// Parse the settings from `argocd-cm`'s data. Never fails: a key that cannot be honoured
    /// is left out and named in `problems`.
    pub fn parse(data: &BTreeMap<String, String>) -> Settings {
        let mut s = Settings {
            source: data.clone(),
            ..Default::default()
        };
        let mut raw: BTreeMap<String, RawOverride> = BTreeMap::new();
        if let Some(text) = data.get(CUSTOMIZATIONS).filter(|t| !t.trim().is_empty()) {
            match serde_yaml::from_str::<BTreeMap<String, RawOverride>>(text) {
                Ok(m) => raw = m,
                Err(e) => s.problems.push(format!("{CUSTOMIZATIONS}: {e}")),
            }
        }
        for (k, v) in data {
            let Some(rest) = k.strip_prefix("resource.customizations.") else {
                continue;
            };
            if let Err(e) = split_key(rest, v, &mut raw) {
                s.problems.push(format!("{k}: {e}"));
            }
        }
        for (pattern, r) in raw {
            let pattern = if pattern == "all" {
                "*/*".to_string()
            } else {
                pattern
            };
            if let Some(o) = s.customization(&pattern, r) {
                s.overrides.push(o);
            }
        }
        for (key, slot) in [
            (EXCLUSIONS, &mut s.exclusions),
            (INCLUSIONS, &mut s.inclusions),
        ] {
            if let Some(text) = data.get(key).filter(|t| !t.trim().is_empty()) {
                match serde_yaml::from_str::<Vec<ResourceFilter>>(text) {
                    Ok(f) => *slot = f,
                    Err(e) => s.problems.push(format!("{key}: {e}")),
                }
            }
        }
        if let Some(text) = data.get(COMPARE_OPTIONS) {
            match compare_options(text) {
                Ok(c) => s.compare = c,
                Err(e) => s.problems.push(format!("{COMPARE_OPTIONS}: {e}")),
            }
        }
        for (key, instead) in NOT_HONOURED {
            // A value that asks for what Flotilla does anyway is no problem.
            let as_flotilla =
                |v: &str| *key == "application.sync.impersonation.enabled" && v.trim() == "false";
            if data
                .get(*key)
                .is_some_and(|v| !v.trim().is_empty() && !as_flotilla(v))
            {
                s.problems
                    .push(format!("{key} is not honoured by Flotilla: {instead}"));
            }
        }
        s.ignore_updates_enabled = flag(data, IGNORE_UPDATES_ENABLED, &mut s.problems);
        s.generic_health = flag(data, GENERIC_HEALTH, &mut s.problems);
        s
    }

    fn customization(&mut self, pattern: &str, r: RawOverride) -> Option<Override> {
        let at = format!("{CUSTOMIZATIONS} {pattern}");
        if r.actions.is_some() {
            self.problems.push(format!(
                "{at}: resource actions are not supported yet; the rest of this customization applies"
            ));
        }
        let script_id = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&r.health_lua, r.use_open_libs).hash(&mut h);
            h.finish()
        };
        let mut o = Override {
            pattern: pattern.to_string(),
            health_lua: r.health_lua.map(Arc::from),
            script_id,
            use_open_libs: r.use_open_libs,
            ..Default::default()
        };
        for (yaml, slot, what) in [
            (
                &r.ignore_differences,
                &mut o.ignore_differences,
                "ignoreDifferences",
            ),
            (
                &r.ignore_updates,
                &mut o.ignore_updates,
                "ignoreResourceUpdates",
            ),
        ] {
            if let Some(y) = yaml {
                match ignore_rules(pattern, y, what) {
                    Ok(rules) => *slot = rules,
                    Err(e) => self.problems.push(format!("{CUSTOMIZATIONS}: {e}")),
                }
            }
        }
        for f in r.known_type_fields {
            if KNOWN_TYPES.contains(&f.type_.as_str()) {
                o.known_type_fields.push((f.field, f.type_));
            } else {
                self.problems.push(format!(
                    "{at}: knownTypeFields type {:?} (field {:?}) is not one Flotilla knows: {}",
                    f.type_,
                    f.field,
                    KNOWN_TYPES.join(", ")
                ));
            }
        }
        Some(o)
    }

    /// Whether `group`/`kind` is excluded on the cluster at `server` (never watched,
    /// compared or pruned).
    pub fn excluded(&self, group: &str, kind: &str, server: &str) -> bool {
        core_excluded(group, kind)
            || self
                .exclusions
                .iter()
                .any(|f| f.matches(group, kind, server))
            || (!self.inclusions.is_empty()
                && !self
                    .inclusions
                    .iter()
                    .any(|f| f.matches(group, kind, server)))
    }

    /// The customizations that apply to `group`/`kind`: the exact key first, then wildcards.
    fn matching(&self, group: &str, kind: &str) -> impl Iterator<Item = &Override> {
        // The usual case (no customizations) allocates nothing.
        let none = self.overrides.is_empty();
        let key = if none {
            String::new()
        } else {
            override_key(group, kind)
        };
        let slashed = if none {
            String::new()
        } else {
            format!("{group}/{kind}")
        };
        let key2 = key.clone();
        let exact = self.overrides.iter().filter(move |o| o.pattern == key);
        let wild = self.overrides.iter().filter(move |o| {
            o.pattern != key2
                && (o.pattern == "*/*"
                    || wildcard(&o.pattern, &key2)
                    || wildcard(&o.pattern, &slashed))
        });
        exact.chain(wild)
    }

    /// The system-level ignoreDifferences rules (argocd-cm), including those compare options
    /// imply; the caller adds the app's own.
    pub fn ignore_rules(&self) -> &[IgnoreRule] {
        self.system_rules.get_or_init(|| self.build_ignore_rules())
    }

    fn build_ignore_rules(&self) -> Vec<IgnoreRule> {
        let mut out: Vec<IgnoreRule> = self
            .overrides
            .iter()
            .flat_map(|o| o.ignore_differences.iter().cloned())
            .collect();
        if self.compare.status_field == StatusField::Crd {
            out.push(IgnoreRule {
                group: "apiextensions.k8s.io".into(),
                kind: "CustomResourceDefinition".into(),
                json_pointers: vec!["/status".into(), "/spec/preserveUnknownFields".into()],
                ..Default::default()
            });
        }
        out
    }

    /// Rules whose fields changing alone does not trigger a reconcile.
    pub fn update_rules(&self) -> &[IgnoreRule] {
        self.updates.get_or_init(|| self.build_update_rules())
    }

    fn build_update_rules(&self) -> Vec<IgnoreRule> {
        let mut out: Vec<IgnoreRule> = vec![IgnoreRule {
            group: "*".into(),
            kind: "*".into(),
            json_pointers: vec![
                "/metadata/resourceVersion".into(),
                "/metadata/generation".into(),
                "/metadata/managedFields".into(),
            ],
            ..Default::default()
        }];
        for o in &self.overrides {
            out.extend(o.ignore_updates.iter().cloned());
            if self.compare.ignore_differences_on_updates {
                out.extend(o.ignore_differences.iter().cloned());
            }
        }
        out
    }

    /// How the diff compares objects of `group`/`kind` under these settings.
    pub fn diff_options(&self, group: &str, kind: &str) -> crate::diff::DiffOptions {
        let builtin = crate::normalize::is_builtin_group(group);
        crate::diff::DiffOptions {
            builtin_group: builtin,
            ignore_aggregated_roles: self.compare.ignore_aggregated_roles,
            compare_status: self.compares_status(),
            typed_fields: builtin
                || self
                    .matching(group, kind)
                    .any(|o| !o.known_type_fields.is_empty()),
        }
    }

    /// Whether the diff compares `status` for this kind.
    pub fn compares_status(&self) -> bool {
        self.compare.status_field == StatusField::Off
    }

    /// Health of a live object: a `health.lua` customization first, then Flotilla's built-in
    /// checks, then (when enabled) the generic conditions check. `None`: the kind has no
    /// health (it does not affect the app's).
    pub fn health(&self, group: &str, kind: &str, live: &Value) -> Option<Health> {
        if let Some(o) = self.matching(group, kind).find(|o| o.health_lua.is_some())
            && let Some(script) = &o.health_lua
        {
            return Some(lua_verdict(o, script, live));
        }
        if crate::health::has_check(group, kind) {
            return Some(crate::health::assess(group, kind, Some(live)));
        }
        if let Some(h) = crate::health_kinds::check(group, kind, live) {
            return Some(h);
        }
        if self.generic_health {
            return crate::health_kinds::generic_conditions(live);
        }
        None
    }

    /// Whether an update from `old` to `new` of the object at `key` only touched fields the
    /// ignoreResourceUpdates rules name (and left its health alone): no reconcile needed.
    pub fn update_ignorable(&self, key: &ResourceKey, old: &Value, new: &Value) -> bool {
        if !self.ignore_updates_enabled {
            return false;
        }
        let rules = self.update_rules();
        let empty = Value::Object(Default::default());
        let strip = |v: &Value| crate::ignore::overlay(v, Some(&empty), key, rules);
        strip(old) == strip(new)
            && self.health(&key.group, &key.kind, old) == self.health(&key.group, &key.kind, new)
    }
}

/// Verdicts of Lua checks by (script, object uid, resourceVersion): an object that has not
/// changed is not assessed again (a script that runs into its time budget costs that budget
/// once per object version, not once per reconcile).
type VerdictKey = (u64, String, String);
static VERDICTS: LazyLock<parking_lot::Mutex<lru::LruCache<VerdictKey, Health>>> =
    LazyLock::new(|| {
        parking_lot::Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(65_536).unwrap_or(std::num::NonZeroUsize::MIN),
        ))
    });

fn lua_verdict(o: &Override, script: &str, live: &Value) -> Health {
    let meta = |p: &str| live.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let key = (
        o.script_id,
        meta("/metadata/uid").to_string(),
        meta("/metadata/resourceVersion").to_string(),
    );
    let cacheable = !key.1.is_empty() && !key.2.is_empty();
    if cacheable && let Some(h) = VERDICTS.lock().get(&key) {
        return h.clone();
    }
    let h = crate::lua_health::run(
        script,
        live,
        o.use_open_libs,
        crate::lua_health::DEFAULT_BUDGET,
    )
    .map(|mut h| {
        // Messages often quote cluster-supplied text: bounded, like every status field.
        if h.message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !h.message.is_char_boundary(end) {
                end -= 1;
            }
            h.message.truncate(end);
            h.message.push('…');
        }
        h
    });
    // A timeout may be the machine's fault, not the object's: assessed again next time.
    let cacheable = cacheable && !matches!(h, Err(crate::lua_health::LuaError::Timeout(_)));
    let h = h.unwrap_or_else(|e| {
        tracing::warn!(customization = %o.pattern, error = %e, "health.lua gave no verdict");
        Health {
            code: HealthCode::Unknown,
            message: format!("{e} ({CUSTOMIZATIONS} {})", o.pattern),
        }
    });
    if cacheable {
        VERDICTS.lock().put(key, h.clone());
    }
    h
}

/// Longest health message a script may set.
const MAX_MESSAGE: usize = 4 << 10;

fn flag(data: &BTreeMap<String, String>, key: &str, problems: &mut Vec<String>) -> bool {
    match data.get(key).map(|v| v.trim()) {
        None | Some("") => false,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            problems.push(format!("{key}: {other:?} is not true or false"));
            false
        }
    }
}

/// `resource.customizations.<type>.<group_kind>`: merged into `raw` under `group/kind`.
fn split_key(
    rest: &str,
    value: &str,
    raw: &mut BTreeMap<String, RawOverride>,
) -> Result<(), String> {
    let (kind_of, group_kind) = rest
        .split_once('.')
        .ok_or("expected resource.customizations.<type>.<group_kind>")?;
    let pattern = match group_kind.split('_').collect::<Vec<_>>()[..] {
        [g, k] => format!("{g}/{k}"),
        [k] if !k.is_empty() => k.to_string(),
        _ => return Err(format!("{group_kind:?} is not <group_kind> or <kind>")),
    };
    let slot = raw.entry(pattern).or_default();
    match kind_of {
        "health" => slot.health_lua = Some(value.to_string()),
        "useOpenLibs" => {
            slot.use_open_libs = value
                .trim()
                .parse()
                .map_err(|_| format!("{value:?} is not true or false"))?
        }
        "actions" => slot.actions = Some(value.to_string()),
        "ignoreDifferences" => slot.ignore_differences = Some(value.to_string()),
        "ignoreResourceUpdates" => slot.ignore_updates = Some(value.to_string()),
        "knownTypeFields" => {
            slot.known_type_fields =
                serde_yaml::from_str(value).map_err(|e| format!("not valid YAML: {e}"))?
        }
        other => return Err(format!("customization type {other:?} is not supported")),
    }
    Ok(())
}

fn compare_options(text: &str) -> Result<CompareOptions, String> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Raw {
        #[serde(default)]
        ignore_aggregated_roles: bool,
        #[serde(default)]
        ignore_resource_status_field: Option<String>,
        #[serde(default)]
        ignore_differences_on_resource_updates: bool,
    }
    let raw: Raw = if text.trim().is_empty() {
        Raw::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| e.to_string())?
    };
    let status_field = match raw.ignore_resource_status_field.as_deref() {
        None | Some("" | "crd") => StatusField::Crd,
        Some("all") => StatusField::All,
        Some("off" | "false" | "none") => StatusField::Off,
        Some(other) => {
            return Err(format!(
                "ignoreResourceStatusField {other:?} is not one of crd, all, off"
            ));
        }
    };
    Ok(CompareOptions {
        ignore_aggregated_roles: raw.ignore_aggregated_roles,
        status_field,
        ignore_differences_on_updates: raw.ignore_differences_on_resource_updates,
    })
}

static CURRENT: LazyLock<RwLock<Arc<Settings>>> = LazyLock::new(Default::default);

/// The settings in force.
pub fn current() -> Arc<Settings> {
    CURRENT.read().clone()
}

/// Put `s` in force; returns whether anything changed.
pub fn install(s: Settings) -> bool {
    let mut cur = CURRENT.write();
    if cur.source == s.source {
        return false;
    }
    *cur = Arc::new(s);
    true
}

/// Health of a live object under the settings in force.
pub fn health(group: &str, kind: &str, live: &Value) -> Option<Health> {
    current().health(group, kind, live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn key(group: &str, kind: &str) -> ResourceKey {
        ResourceKey {
            group: group.into(),
            kind: kind.into(),
            namespace: "ns".into(),
            name: "x".into(),
        }
    }

    const PROGRESSING: &str = "return {status = 'Progressing', message = 'custom'}";

    #[test]
    fn single_key_and_split_key_customizations_merge() {
        let s = Settings::parse(&data(&[
            (
                CUSTOMIZATIONS,
                "cert-manager.io/Certificate:\n  health.lua: |\n    return {status = 'Healthy'}\n  ignoreDifferences: |\n    jsonPointers: [/spec/duration]\n",
            ),
            (
                "resource.customizations.health.example.com_Widget",
                PROGRESSING,
            ),
            (
                "resource.customizations.useOpenLibs.example.com_Widget",
                "true",
            ),
            (
                "resource.customizations.ignoreDifferences.all",
                "jqPathExpressions: ['.metadata.annotations.\"x\"']",
            ),
            (
                "resource.customizations.ignoreDifferences.ConfigMap",
                "jsonPointers: [/data/a]",
            ),
        ]));
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let widget = json!({"kind": "Widget"});
        let h = s.health("example.com", "Widget", &widget).expect("checked");
        assert_eq!(
            (h.code, h.message.as_str()),
            (HealthCode::Progressing, "custom")
        );
        assert!(
            s.overrides
                .iter()
                .any(|o| o.pattern == "example.com/Widget" && o.use_open_libs)
        );
        let rules = s.ignore_rules();
        assert!(
            rules
                .iter()
                .any(|r| r.matches(&key("cert-manager.io", "Certificate"))
                    && r.json_pointers == ["/spec/duration"])
        );
        assert!(
            rules
                .iter()
                .any(|r| r.matches(&key("", "ConfigMap")) && r.json_pointers == ["/data/a"])
        );
        assert!(
            !rules
                .iter()
                .any(|r| r.matches(&key("apps", "ConfigMap")) && r.json_pointers == ["/data/a"])
        );
        // `all` applies to every kind.
        assert!(
            rules
                .iter()
                .any(|r| r.matches(&key("apps", "Deployment")) && !r.jq.is_empty())
        );
    }

    #[test]
    fn lua_overrides_built_in_health_and_unknown_kinds_have_none() {
        let s = Settings::parse(&data(&[(
            "resource.customizations.health.apps_Deployment",
            PROGRESSING,
        )]));
        let d = json!({"metadata": {"generation": 1}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}});
        assert_eq!(
            s.health("apps", "Deployment", &d).map(|h| h.code),
            Some(HealthCode::Progressing)
        );
        let plain = Settings::default();
        assert_eq!(
            plain.health("apps", "Deployment", &d).map(|h| h.code),
            Some(HealthCode::Healthy)
        );
        assert_eq!(plain.health("example.com", "Widget", &json!({})), None);
    }

    /// Argo CD's documented snippet for app-of-apps health works as written.
    #[test]
    fn argo_cds_application_health_snippet_reports_the_child_apps_health() {
        let snippet = r#"hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status ~= nil then
  if obj.status.health ~= nil then
    hs.status = obj.status.health.status
    if obj.status.health.message ~= nil then
      hs.message = obj.status.health.message
    end
  end
end
return hs
"#;
        let s = Settings::parse(&data(&[(
            "resource.customizations.health.argoproj.io_Application",
            snippet,
        )]));
        let child = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "status": {"health": {"status": "Degraded", "message": "Deployment web exceeded its progress deadline"}}});
        let h = s
            .health("argoproj.io", "Application", &child)
            .expect("checked");
        assert_eq!(h.code, HealthCode::Degraded);
        assert_eq!(h.message, "Deployment web exceeded its progress deadline");
        let new = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application"});
        assert_eq!(
            s.health("argoproj.io", "Application", &new).map(|h| h.code),
            Some(HealthCode::Progressing)
        );
        // Without the snippet a child Application has no health (Argo CD since 1.8).
        assert_eq!(
            Settings::default().health("argoproj.io", "Application", &child),
            None
        );
    }

    #[test]
    fn wildcard_patterns_match_groups() {
        let s = Settings::parse(&data(&[(
            CUSTOMIZATIONS,
            "\"*.crossplane.io/*\":\n  health.lua: return {status = 'Degraded', message = 'wild'}\n",
        )]));
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let h = s
            .health("ec2.aws.crossplane.io", "Instance", &json!({}))
            .expect("matched");
        assert_eq!(h.code, HealthCode::Degraded);
        assert_eq!(s.health("example.com", "Widget", &json!({})), None);
        assert!(wildcard(
            "*.crossplane.io/*",
            "ec2.aws.crossplane.io/Instance"
        ));
        assert!(!wildcard(
            "*.crossplane.io/*",
            "crossplane.io.evil/Instance"
        ));
        assert!(wildcard("prod-?", "prod-1") && !wildcard("prod-?", "prod-12"));
        assert!(wildcard("a*b*c", "aXbYc") && !wildcard("a*b*c", "aXbY") && wildcard("a**", "a"));
        // Many stars against a near miss: linear, not exponential.
        let t = std::time::Instant::now();
        assert!(!wildcard(
            &format!("{}Z", "*".repeat(40)),
            &"monitoring.coreos.com".repeat(50)
        ));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn a_failing_script_is_unknown_with_its_error_and_the_pattern() {
        let s = Settings::parse(&data(&[(
            "resource.customizations.health.example.com_Widget",
            "error('bad widget')",
        )]));
        let h = s
            .health("example.com", "Widget", &json!({}))
            .expect("checked");
        assert_eq!(h.code, HealthCode::Unknown);
        assert!(
            h.message.contains("bad widget") && h.message.contains("example.com/Widget"),
            "{}",
            h.message
        );
    }

    #[test]
    fn exclusions_and_inclusions() {
        let s = Settings::parse(&data(&[(
            EXCLUSIONS,
            "- apiGroups: ['*.example.com']\n  kinds: ['*']\n  clusters: ['https://prod-*']\n",
        )]));
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert!(s.excluded("a.example.com", "Widget", "https://prod-1"));
        assert!(!s.excluded("a.example.com", "Widget", "https://dev-1"));
        assert!(
            s.excluded("", "Event", "https://dev-1"),
            "core exclusions always apply"
        );
        assert!(!s.excluded("apps", "Deployment", "https://dev-1"));
        let s = Settings::parse(&data(&[(INCLUSIONS, "- apiGroups: ['apps']\n")]));
        assert!(!s.excluded("apps", "Deployment", "https://dev-1"));
        assert!(s.excluded("", "ConfigMap", "https://dev-1"));
    }

    #[test]
    fn compare_options_and_bad_keys_are_named() {
        let s = Settings::parse(&data(&[(
            COMPARE_OPTIONS,
            "ignoreAggregatedRoles: true\nignoreResourceStatusField: off\n",
        )]));
        assert!(s.compare.ignore_aggregated_roles && s.compares_status());
        assert!(!Settings::default().compares_status());
        let s = Settings::parse(&data(&[
            (COMPARE_OPTIONS, "ignoreResourceStatusField: sometimes"),
            (CUSTOMIZATIONS, "apps/Deployment:\n  healthlua: x\n"),
            ("resource.customizations.frobnicate.apps_Deployment", "x"),
            (
                "resource.customizations.ignoreDifferences.apps_Deployment",
                "jsonPointers: [spec]",
            ),
            (
                "resource.customizations.actions.apps_Deployment",
                "discovery.lua: x",
            ),
            (
                "resource.customizations.knownTypeFields.example.com_W",
                "- field: spec.x\n  type: core/v1/Nope",
            ),
            (EXCLUSIONS, "not: [a list"),
            (IGNORE_UPDATES_ENABLED, "yes"),
            ("timeout.reconciliation", "180s"),
            // What Flotilla does anyway: no problem; asking for impersonation is one.
            ("application.sync.impersonation.enabled", "false"),
        ]));
        assert_eq!(s.problems.len(), 9, "{:#?}", s.problems);
        let on = Settings::parse(&data(&[("application.sync.impersonation.enabled", "true")]));
        assert_eq!(on.problems.len(), 1, "{:#?}", on.problems);
        assert!(s.problems.iter().any(|p| p.contains("--refresh-seconds")));
        assert_eq!(s.compare, CompareOptions::default());
    }

    #[test]
    fn updates_to_ignored_fields_alone_do_not_reconcile() {
        let s = Settings::parse(&data(&[
            (IGNORE_UPDATES_ENABLED, "true"),
            (
                "resource.customizations.ignoreResourceUpdates.ConfigMap",
                "jsonPointers: [/data/stamp]",
            ),
        ]));
        let k = key("", "ConfigMap");
        let old = json!({"metadata": {"resourceVersion": "1"}, "data": {"stamp": "1", "a": "x"}});
        let stamp = json!({"metadata": {"resourceVersion": "2"}, "data": {"stamp": "2", "a": "x"}});
        let real = json!({"metadata": {"resourceVersion": "3"}, "data": {"stamp": "2", "a": "y"}});
        assert!(s.update_ignorable(&k, &old, &stamp));
        assert!(!s.update_ignorable(&k, &stamp, &real));
        // Off unless enabled, as in Argo CD.
        let off = Settings::parse(&data(&[(
            "resource.customizations.ignoreResourceUpdates.ConfigMap",
            "jsonPointers: [/data/stamp]",
        )]));
        assert!(!off.update_ignorable(&k, &old, &stamp));
    }
}
