//! Argo CD's resource hooks: which rendered objects are hooks (`argocd.argoproj.io/hook`, or
//! Helm's `helm.sh/hook` mapped as Argo CD maps it), their phases, delete policies and waves,
//! and the deterministic names of `generateName` hooks. Pure.

use std::collections::BTreeSet;

use serde_json::Value;

pub const HOOK_ANNOTATION: &str = "argocd.argoproj.io/hook";
pub const HOOK_DELETE_POLICY_ANNOTATION: &str = "argocd.argoproj.io/hook-delete-policy";
pub const SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
pub const HELM_HOOK_ANNOTATION: &str = "helm.sh/hook";
pub const HELM_HOOK_WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";
pub const HELM_DELETE_POLICY_ANNOTATION: &str = "helm.sh/hook-delete-policy";

/// `argocd.argoproj.io/hook` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookType {
    PreSync,
    Sync,
    PostSync,
    SyncFail,
    PostDelete,
    Skip,
}

impl HookType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PreSync" => Self::PreSync,
            "Sync" => Self::Sync,
            "PostSync" => Self::PostSync,
            "SyncFail" => Self::SyncFail,
            "PostDelete" => Self::PostDelete,
            "Skip" => Self::Skip,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreSync => "PreSync",
            Self::Sync => "Sync",
            Self::PostSync => "PostSync",
            Self::SyncFail => "SyncFail",
            Self::PostDelete => "PostDelete",
            Self::Skip => "Skip",
        }
    }
}

/// The phases of a sync, in Argo CD's order (`SyncFail` runs only when the sync fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SyncPhase {
    PreSync,
    Sync,
    PostSync,
    SyncFail,
}

impl SyncPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreSync => "PreSync",
            Self::Sync => "Sync",
            Self::PostSync => "PostSync",
            Self::SyncFail => "SyncFail",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PreSync" => Self::PreSync,
            "Sync" | "" => Self::Sync,
            "PostSync" => Self::PostSync,
            "SyncFail" => Self::SyncFail,
            _ => return None,
        })
    }

    /// The sync phase a hook type runs in (PostDelete and Skip run in none).
    pub fn of_hook(t: HookType) -> Option<Self> {
        match t {
            HookType::PreSync => Some(Self::PreSync),
            HookType::Sync => Some(Self::Sync),
            HookType::PostSync => Some(Self::PostSync),
            HookType::SyncFail => Some(Self::SyncFail),
            HookType::PostDelete | HookType::Skip => None,
        }
    }
}

/// When a hook object is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeletePolicy {
    /// After the sync succeeds.
    HookSucceeded,
    /// When the sync fails (or is terminated).
    HookFailed,
    /// Before the hook is created again (the default).
    BeforeHookCreation,
}

/// What a rendered object is to a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A managed resource: compared, applied, pruned.
    Resource,
    /// A hook: run in these phases (never compared or pruned). Not empty.
    Hook(BTreeSet<HookType>),
    /// `hook: Skip`: not applied at all.
    Skipped,
    /// A hook annotation with no type Argo CD runs (`helm.sh/hook: test`, `pre-rollback`):
    /// dropped, as Argo CD drops it.
    Ignored,
}

fn annotation<'a>(obj: &'a Value, name: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(name))
        .and_then(Value::as_str)
}

fn csv(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Helm's hook types as Argo CD maps them: pre-install/pre-upgrade → PreSync, post-install/
/// post-upgrade → PostSync, post-delete → PostDelete; tests, rollback and pre-delete hooks
/// have no Argo CD phase (Argo CD cannot tell install from upgrade, so both run every sync).
fn helm_types(value: &str) -> BTreeSet<HookType> {
    csv(value)
        .filter_map(|t| match t {
            "pre-install" | "pre-upgrade" => Some(HookType::PreSync),
            "post-install" | "post-upgrade" => Some(HookType::PostSync),
            "post-delete" => Some(HookType::PostDelete),
            _ => None,
        })
        .collect()
}

/// The role of a rendered object. Argo CD's types win over Helm's when both are present;
/// `Skip` combined with other types is ignored; `helm.sh/hook: crd-install` is a plain resource.
pub fn role(obj: &Value) -> Role {
    let argo = annotation(obj, HOOK_ANNOTATION);
    let helm = annotation(obj, HELM_HOOK_ANNOTATION).filter(|h| h.trim() != "crd-install");
    if argo.is_none() && helm.is_none() {
        return Role::Resource;
    }
    let argo_types: BTreeSet<HookType> = argo
        .map(|a| csv(a).filter_map(HookType::parse).collect())
        .unwrap_or_default();
    if argo_types.len() == 1 && argo_types.contains(&HookType::Skip) {
        return Role::Skipped;
    }
    let mut types: BTreeSet<HookType> = argo_types
        .into_iter()
        .filter(|t| *t != HookType::Skip)
        .collect();
    if types.is_empty() {
        types = helm.map(helm_types).unwrap_or_default();
    }
    if types.is_empty() {
        Role::Ignored
    } else {
        Role::Hook(types)
    }
}

/// Whether `obj` is not a managed resource (a hook, skipped or ignored).
pub fn is_hook(obj: &Value) -> bool {
    role(obj) != Role::Resource
}

/// A hook's delete policies: Argo CD's and Helm's together; `BeforeHookCreation` when none.
pub fn delete_policies(obj: &Value) -> BTreeSet<DeletePolicy> {
    let mut out = BTreeSet::new();
    for p in annotation(obj, HOOK_DELETE_POLICY_ANNOTATION)
        .map(csv)
        .into_iter()
        .flatten()
    {
        match p {
            "HookSucceeded" => out.insert(DeletePolicy::HookSucceeded),
            "HookFailed" => out.insert(DeletePolicy::HookFailed),
            "BeforeHookCreation" => out.insert(DeletePolicy::BeforeHookCreation),
            _ => false,
        };
    }
    for p in annotation(obj, HELM_DELETE_POLICY_ANNOTATION)
        .map(csv)
        .into_iter()
        .flatten()
    {
        match p {
            "hook-succeeded" => out.insert(DeletePolicy::HookSucceeded),
            "hook-failed" => out.insert(DeletePolicy::HookFailed),
            "before-hook-creation" => out.insert(DeletePolicy::BeforeHookCreation),
            _ => false,
        };
    }
    if out.is_empty() {
        out.insert(DeletePolicy::BeforeHookCreation);
    }
    out
}

/// The sync wave: `argocd.argoproj.io/sync-wave`, else Helm's `hook-weight`, else 0
/// (an unparsable value counts as absent, as in Argo CD).
pub fn wave(obj: &Value) -> i64 {
    annotation(obj, SYNC_WAVE_ANNOTATION)
        .and_then(|w| w.trim().parse().ok())
        .or_else(|| {
            annotation(obj, HELM_HOOK_WEIGHT_ANNOTATION).and_then(|w| w.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The name a `generateName` hook gets, the same on every pass of one operation (so a resumed
/// sync, on this replica or another, finds the hook it created instead of creating another):
/// Argo CD's `generateName + lower("<revision[:7]>-<phase>-<operation start, unix seconds>")`.
pub fn generated_name(
    generate_name: &str,
    revision: &str,
    phase: SyncPhase,
    started_unix: i64,
) -> String {
    let rev = if revision.len() >= 8 {
        &revision[..7]
    } else {
        revision
    };
    format!(
        "{generate_name}{}",
        format!("{rev}-{}-{started_unix}", phase.as_str()).to_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(annotations: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "j", "annotations": annotations}})
    }

    #[test]
    fn argo_and_helm_hook_annotations_map_to_phases() {
        let types = |a: Value| match role(&obj(a)) {
            Role::Hook(t) => t.into_iter().collect::<Vec<_>>(),
            other => panic!("not a hook: {other:?}"),
        };
        assert_eq!(
            types(json!({HOOK_ANNOTATION: "PreSync, PostSync"})),
            [HookType::PreSync, HookType::PostSync]
        );
        assert_eq!(
            types(json!({HELM_HOOK_ANNOTATION: "pre-install,pre-upgrade"})),
            [HookType::PreSync]
        );
        assert_eq!(
            types(json!({HELM_HOOK_ANNOTATION: "post-upgrade"})),
            [HookType::PostSync]
        );
        // Argo CD's annotation wins over Helm's.
        assert_eq!(
            types(json!({HOOK_ANNOTATION: "Sync", HELM_HOOK_ANNOTATION: "pre-install"})),
            [HookType::Sync]
        );
        // Skip with another type: the other type.
        assert_eq!(
            types(json!({HOOK_ANNOTATION: "Skip,PostSync"})),
            [HookType::PostSync]
        );
        assert_eq!(role(&obj(json!({HOOK_ANNOTATION: "Skip"}))), Role::Skipped);
        assert_eq!(
            role(&obj(json!({HELM_HOOK_ANNOTATION: "test"}))),
            Role::Ignored
        );
        assert_eq!(
            role(&obj(json!({HELM_HOOK_ANNOTATION: "crd-install"}))),
            Role::Resource
        );
        assert_eq!(role(&obj(json!({}))), Role::Resource);
    }

    #[test]
    fn delete_policies_default_to_before_hook_creation_and_merge_helm() {
        assert_eq!(
            delete_policies(&obj(json!({HOOK_ANNOTATION: "PreSync"}))),
            [DeletePolicy::BeforeHookCreation].into()
        );
        assert_eq!(
            delete_policies(&obj(json!({
                HOOK_DELETE_POLICY_ANNOTATION: "HookSucceeded",
                HELM_DELETE_POLICY_ANNOTATION: "hook-failed"}))),
            [DeletePolicy::HookSucceeded, DeletePolicy::HookFailed].into()
        );
    }

    #[test]
    fn waves_fall_back_to_helm_weight() {
        assert_eq!(wave(&obj(json!({SYNC_WAVE_ANNOTATION: "-2"}))), -2);
        assert_eq!(wave(&obj(json!({HELM_HOOK_WEIGHT_ANNOTATION: "5"}))), 5);
        assert_eq!(
            wave(&obj(
                json!({SYNC_WAVE_ANNOTATION: "x", HELM_HOOK_WEIGHT_ANNOTATION: "3"})
            )),
            3
        );
        assert_eq!(wave(&obj(json!({}))), 0);
    }

    #[test]
    fn generated_names_are_stable_per_operation() {
        let a = generated_name(
            "migrate-",
            "0123456789abcdef",
            SyncPhase::PreSync,
            1700000000,
        );
        assert_eq!(a, "migrate-0123456-presync-1700000000");
        assert_eq!(
            a,
            generated_name(
                "migrate-",
                "0123456789abcdef",
                SyncPhase::PreSync,
                1700000000
            )
        );
        assert_ne!(
            a,
            generated_name(
                "migrate-",
                "0123456789abcdef",
                SyncPhase::PreSync,
                1700000001
            )
        );
    }
}
