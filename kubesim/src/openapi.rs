//! OpenAPI documents as a real API server publishes them: `/openapi/v3` (an index of one
//! document per group-version) and `/openapi/v2` (one Swagger 2.0 document), built from the
//! built-in kinds' k8s-openapi schemas (`typed.rs`) and each CRD's `openAPIV3Schema`.
//!
//! kubectl reads them for `explain` and to learn that the server validates fields itself
//! (a PATCH operation of the kind with a `fieldValidation` query parameter).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::resources::{Registry, ResourceType};
use super::typed::typed;

/// Which document family: the `$ref` prefix and parameter style differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Flavor {
    V2,
    V3,
}

impl Flavor {
    fn ref_prefix(self) -> &'static str {
        match self {
            Flavor::V2 => "#/definitions/",
            Flavor::V3 => "#/components/schemas/",
        }
    }
}

/// A CRD version's schema lookup: `(group, version, plural)` → `openAPIV3Schema`.
pub type CrdSchemas<'a> = &'a dyn Fn(&ResourceType) -> Option<Value>;

/// `/openapi/v3`: the group-versions with a link to each document (hash-versioned, as the
/// real server does, so clients may cache them).
pub fn v3_index(registry: &Registry, crd_schema: CrdSchemas<'_>) -> Value {
    let mut paths = Map::new();
    for (group, version, types) in registry.group_versions() {
        let doc = v3_group_version_doc(&types, crd_schema);
        let prefix = gv_path(&group, &version);
        paths.insert(
            prefix.trim_start_matches('/').to_string(),
            json!({"serverRelativeURL": format!("/openapi/v3{prefix}?hash={}", digest(&doc))}),
        );
    }
    json!({ "paths": paths })
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
pub fn v3_group_version(
    registry: &Registry,
    group: &str,
    version: &str,
    crd_schema: CrdSchemas<'_>,
) -> Option<Value> {
    let (_, _, types) = registry
        .group_versions()
        .into_iter()
        .find(|(g, v, _)| g == group && v == version)?;
    Some(v3_group_version_doc(&types, crd_schema))
}

fn v3_group_version_doc(types: &[Arc<ResourceType>], crd_schema: CrdSchemas<'_>) -> Value {
    let (schemas, paths) = assemble(Flavor::V3, types, crd_schema);
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": super::K8S_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// `/openapi/v2`: every kind of the cluster in one Swagger 2.0 document.
pub fn v2(registry: &Registry, crd_schema: CrdSchemas<'_>) -> Value {
    let types: Vec<Arc<ResourceType>> = registry
        .group_versions()
        .into_iter()
        .flat_map(|(_, _, t)| t)
        .collect();
    let (definitions, paths) = assemble(Flavor::V2, &types, crd_schema);
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": super::K8S_VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

/// Schemas (with their dependencies) and paths for `types`.
fn assemble(
    flavor: Flavor,
    types: &[Arc<ResourceType>],
    crd_schema: CrdSchemas<'_>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for rt in types {
        let name = if rt.custom {
            let Some(schema) = crd_schema(rt) else {
                continue;
            };
            let name = crd_definition_name(rt);
            let mut schema = schema;
            tag_gvk(&mut schema, rt);
            with_object_fields(flavor, &mut schema, &mut schemas);
            schemas.insert(name.clone(), schema);
            name
        } else {
            let Some(built) = builtin_schemas(flavor, &rt.group, &rt.kind) else {
                continue;
            };
            for (k, v) in built.definitions.iter() {
                schemas.entry(k.clone()).or_insert_with(|| v.clone());
            }
            built.name.clone()
        };
        add_paths(
            flavor,
            &mut paths,
            rt,
            &format!("{}{name}", flavor.ref_prefix()),
        );
    }
    (schemas, paths)
}

/// One built-in kind's schema: its definition name and every definition it needs.
pub(crate) struct Built {
    pub(crate) name: String,
    pub(crate) definitions: Map<String, Value>,
}

/// The OpenAPI v2 definitions of a built-in kind (`#/definitions/<name>` references).
pub(crate) fn builtin_definitions(group: &str, kind: &str) -> Option<Arc<Built>> {
    builtin_schemas(Flavor::V2, group, kind)
}

/// Built-in schemas never change: generate each kind once per flavor.
type BuiltCache = HashMap<(Flavor, String, String), Option<Arc<Built>>>;
static BUILT: LazyLock<Mutex<BuiltCache>> = LazyLock::new(Default::default);

fn builtin_schemas(flavor: Flavor, group: &str, kind: &str) -> Option<Arc<Built>> {
    let key = (flavor, group.to_string(), kind.to_string());
    if let Some(b) = BUILT.lock().get(&key) {
        return b.clone();
    }
    let built = typed(group, kind).and_then(|t| {
        let mut settings = SchemaSettings::openapi3();
        settings.meta_schema = None;
        if flavor == Flavor::V2 {
            settings.definitions_path = "/definitions".into();
        }
        let mut generator = settings.into_generator();
        let reference = (t.schema)(&mut generator);
        let name = reference
            .get("$ref")
            .and_then(Value::as_str)?
            .rsplit('/')
            .next()?
            .to_string();
        let mut definitions = generator.take_definitions(true);
        let version = super::resources::builtin_version(group, kind)?;
        if let Some(def) = definitions.get_mut(&name) {
            def["x-kubernetes-group-version-kind"] =
                json!([{"group": group, "kind": kind, "version": version}]);
        }
        Some(Arc::new(Built { name, definitions }))
    });
    BUILT.lock().insert(key, built.clone());
    built
}

/// `io.argoproj.v1alpha1.Application` for `applications.argoproj.io/v1alpha1`: the real
/// server's name (the group's DNS labels reversed).
fn crd_definition_name(rt: &ResourceType) -> String {
    let reversed: Vec<&str> = rt.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), rt.version, rt.kind)
}

/// The server publishes a custom resource with `apiVersion`, `kind` and `metadata` (an
/// `ObjectMeta` reference) even when the CRD's schema leaves them out.
fn with_object_fields(flavor: Flavor, schema: &mut Value, schemas: &mut Map<String, Value>) {
    const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";
    let Some(built) = builtin_schemas(flavor, "", "ConfigMap") else {
        return;
    };
    for (k, v) in built
        .definitions
        .iter()
        .filter(|(k, _)| k.starts_with(META))
    {
        schemas.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let Value::Object(m) = schema else {
        return;
    };
    let props = m
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(props) = props {
        for field in ["apiVersion", "kind"] {
            props
                .entry(field)
                .or_insert_with(|| json!({"type": "string"}));
        }
        props.entry("metadata").or_insert_with(|| {
            json!({"allOf": [{"$ref": format!("{}{META}ObjectMeta", flavor.ref_prefix())}],
                   "description": "Standard object's metadata."})
        });
    }
}

fn tag_gvk(schema: &mut Value, rt: &ResourceType) {
    if let Value::Object(m) = schema {
        m.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": rt.group, "kind": rt.kind, "version": rt.version}]),
        );
    }
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// The item and collection paths of `rt` with their operations (each tagged with the kind,
/// as kubectl's query-parameter check looks them up).
fn add_paths(flavor: Flavor, paths: &mut Map<String, Value>, rt: &ResourceType, schema_ref: &str) {
    let base = gv_path(&rt.group, &rt.version);
    let (collection, item) = if rt.namespaced {
        (
            format!("{base}/namespaces/{{namespace}}/{}", rt.plural),
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", rt.plural),
        )
    } else {
        (
            format!("{base}/{}", rt.plural),
            format!("{base}/{}/{{name}}", rt.plural),
        )
    };
    let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
    let op = |action: &str, verb: &str, writes: bool| {
        let mut params: Vec<Value> = Vec::new();
        if writes {
            for name in ["dryRun", "fieldManager", "fieldValidation"] {
                params.push(query_param(flavor, name));
            }
            if verb == "patch" {
                params.push(query_param(flavor, "force"));
            }
        }
        let response = match flavor {
            Flavor::V3 => {
                json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}})
            }
            Flavor::V2 => json!({"description": "OK", "schema": {"$ref": schema_ref}}),
        };
        json!({
            "operationId": format!("{verb}{}", rt.kind),
            "parameters": params,
            "responses": {"200": response},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        })
    };
    let mut item_ops = json!({
        "get": op("get", "read", false),
        "put": op("put", "replace", true),
        "patch": op("patch", "patch", true),
        "delete": op("delete", "delete", false),
    });
    let mut collection_ops = json!({
        "get": op("list", "list", false),
        "post": op("post", "create", true),
    });
    if rt.namespaced {
        let ns = path_param(flavor, "namespace");
        collection_ops["parameters"] = json!([ns.clone()]);
        item_ops["parameters"] = json!([ns, path_param(flavor, "name")]);
    } else {
        item_ops["parameters"] = json!([path_param(flavor, "name")]);
    }
    paths.insert(collection, collection_ops);
    paths.insert(item, item_ops);
}

fn query_param(flavor: Flavor, name: &str) -> Value {
    match flavor {
        Flavor::V3 => json!({"name": name, "in": "query", "schema": {"type": "string"}}),
        Flavor::V2 => json!({"name": name, "in": "query", "type": "string", "uniqueItems": true}),
    }
}

fn path_param(flavor: Flavor, name: &str) -> Value {
    match flavor {
        Flavor::V3 => {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
        }
        Flavor::V2 => json!({"name": name, "in": "path", "required": true, "type": "string"}),
    }
}

/// A stable content hash for the index's links (upper-case hex, as the server writes it).
fn digest(doc: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // serde_json's map keeps keys sorted, so equal documents serialize equally.
    serde_json::to_string(doc).unwrap_or_default().hash(&mut h);
    format!("{:016X}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_crds(_: &ResourceType) -> Option<Value> {
        None
    }

    #[test]
    fn built_in_documents_carry_kinds_schemas_and_patch_parameters() {
        let registry = Registry::default();
        let doc = v3_group_version(&registry, "apps", "v1", &no_crds).expect("apps/v1");
        let dep = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            dep["x-kubernetes-group-version-kind"][0]["kind"], "Deployment",
            "{dep}"
        );
        // Referenced definitions travel with the kind.
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"].is_object());
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == "fieldValidation"))
        );
        let index = v3_index(&registry, &no_crds);
        let link = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap_or_default();
        assert!(link.starts_with("/openapi/v3/apis/apps/v1?hash="), "{link}");
        let v2 = v2(&registry, &no_crds);
        assert!(v2["definitions"]["io.k8s.api.core.v1.ConfigMap"].is_object());
        assert!(
            serde_json::to_string(&v2)
                .unwrap_or_default()
                .contains("\"$ref\":\"#/definitions/io.k8s.api.core.v1.PodSpec\"")
        );
    }

    #[test]
    fn crd_definitions_are_named_by_reversed_group() {
        let rt = ResourceType {
            group: "argoproj.io".into(),
            api_version: "argoproj.io/v1alpha1".into(),
            version: "v1alpha1".into(),
            plural: "applications".into(),
            singular: "application".into(),
            kind: "Application".into(),
            namespaced: true,
            short_names: vec![],
            has_status: true,
            tracks_generation: true,
            custom: true,
            simulated: super::super::resources::Simulated::None,
            scale: None,
        };
        assert_eq!(crd_definition_name(&rt), "io.argoproj.v1alpha1.Application");
    }
}
