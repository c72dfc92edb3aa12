//! OpenAPI schema helpers for fields whose shape Flotilla passes through untouched.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An object the API server must keep as is (`x-kubernetes-preserve-unknown-fields`).
pub fn preserve_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// A list of such objects.
pub fn preserve_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}})
}
