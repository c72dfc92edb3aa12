//! One stored version of an object: its JSON exactly as served (shared by the store, the watch
//! history, watchers and responses) and the few facts the store and selectors read unparsed.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::ApiError;

/// A stored JSON document that does not parse back (never expected: kubesim wrote it).
#[derive(Debug, thiserror::Error)]
#[error("stored object does not decode: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// An object version: serialized once when written, parsed again only where a verb needs the
/// whole object. A parsed `Value` costs 5–8× its JSON, so only this is kept.
#[derive(Debug)]
pub struct Obj {
    json: Bytes,
    meta: Meta,
}

/// What is read without parsing: identity, labels, owners, finalizers, selectable fields.
#[derive(Debug, Default)]
pub struct Meta {
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub uid: Box<str>,
    pub resource_version: Box<str>,
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// `ownerReferences[].uid`.
    pub owners: Box<[Box<str>]>,
    pub finalizers: Box<[Box<str>]>,
    /// `deletionTimestamp` is set.
    pub deleting: bool,
    /// The kind's extra field-selector fields (`selector::extra_fields`) as selectors compare
    /// them: strings as they are, other values as JSON text, absent ones left out.
    fields: Box<[(&'static str, Box<str>)]>,
}

fn text(v: Option<&Value>) -> Box<str> {
    v.and_then(Value::as_str).unwrap_or_default().into()
}

fn strings(v: Option<&Value>, pick: impl Fn(&Value) -> Option<&str>) -> Box<[Box<str>]> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(&pick).map(Box::from).collect())
        .unwrap_or_default()
}

impl Meta {
    fn of(obj: &Value, selectable: &[&'static str]) -> Self {
        let meta = obj.get("metadata");
        let get = |k: &str| meta.and_then(|m| m.get(k));
        let labels = get("labels")
            .and_then(Value::as_object)
            .map(|l| {
                l.iter()
                    .filter_map(|(k, v)| Some((Box::from(k.as_str()), Box::from(v.as_str()?))))
                    .collect()
            })
            .unwrap_or_default();
        let fields = selectable
            .iter()
            .filter_map(|f| {
                let v = obj.pointer(&format!("/{}", f.replace('.', "/")))?;
                let s: Box<str> = match v {
                    Value::String(s) => s.as_str().into(),
                    other => other.to_string().into(),
                };
                Some((*f, s))
            })
            .collect();
        Self {
            namespace: text(get("namespace")),
            name: text(get("name")),
            uid: text(get("uid")),
            resource_version: text(get("resourceVersion")),
            labels,
            owners: strings(get("ownerReferences"), |r| r.get("uid")?.as_str()),
            finalizers: strings(get("finalizers"), Value::as_str),
            deleting: get("deletionTimestamp").is_some(),
            fields,
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| &**x == f)
    }

    /// A field as a field selector compares it (`""` when absent).
    pub fn field(&self, path: &str) -> &str {
        match path {
            "metadata.name" => &self.name,
            "metadata.namespace" => &self.namespace,
            _ => self
                .fields
                .iter()
                .find(|(f, _)| *f == path)
                .map_or("", |(_, v)| v),
        }
    }

    /// Heap bytes this holds (for `footprint.rs`).
    pub fn heap_bytes(&self) -> usize {
        use super::footprint::alloc_size;
        let s = |b: &str| alloc_size(b.len());
        s(&self.namespace)
            + s(&self.name)
            + s(&self.uid)
            + s(&self.resource_version)
            + alloc_size(self.labels.len() * size_of::<(Box<str>, Box<str>)>())
            + self.labels.iter().map(|(k, v)| s(k) + s(v)).sum::<usize>()
            + alloc_size(self.owners.len() * size_of::<Box<str>>())
            + self.owners.iter().map(|o| s(o)).sum::<usize>()
            + alloc_size(self.finalizers.len() * size_of::<Box<str>>())
            + self.finalizers.iter().map(|o| s(o)).sum::<usize>()
            + alloc_size(self.fields.len() * size_of::<(&str, Box<str>)>())
            + self.fields.iter().map(|(_, v)| s(v)).sum::<usize>()
    }
}

/// Just enough of an object to find `metadata` (and in it `managedFields`) without parsing
/// the rest into values.
#[derive(Deserialize)]
struct Outline<'a> {
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MetaOutline<'a> {
    #[serde(borrow, default, rename = "managedFields")]
    managed_fields: Option<&'a RawValue>,
}

impl Obj {
    /// Serialize `obj` (selectable fields: the kind's `selector::extra_fields`).
    pub fn new(obj: &Value, selectable: &[&'static str]) -> Self {
        // Serializing a `Value` cannot fail: its map keys are strings.
        let mut json = serde_json::to_vec(obj).unwrap_or_default();
        // Kept for long: not the up to 2× capacity the serializer grew to.
        json.shrink_to_fit();
        let json = Bytes::from(json);
        Self {
            json,
            meta: Meta::of(obj, selectable),
        }
    }

    /// The JSON, as a response or watch event carries it.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The whole object, parsed.
    pub fn value(&self) -> Result<Value, DecodeError> {
        Ok(serde_json::from_slice(&self.json)?)
    }

    /// `metadata` as raw JSON (`{}` when absent), for `PartialObjectMetadata`.
    pub fn metadata_json(&self) -> Result<&str, DecodeError> {
        let o: Outline<'_> = serde_json::from_slice(&self.json)?;
        Ok(o.metadata.map_or("{}", RawValue::get))
    }

    /// Bytes of the JSON that are `metadata.managedFields` (for `footprint.rs`).
    pub fn managed_fields_len(&self) -> usize {
        self.metadata_json()
            .ok()
            .and_then(|m| serde_json::from_str::<MetaOutline<'_>>(m).ok())
            .and_then(|m| m.managed_fields)
            .map_or(0, |r| r.get().len())
    }

    /// Heap bytes this holds beyond its own struct (for `footprint.rs`).
    pub fn heap_bytes(&self) -> usize {
        super::footprint::alloc_size(self.json.len()) + self.meta.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_meta_is_read_once_and_the_json_parses_back() {
        let v = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                         "labels": {"app": "web"}, "finalizers": ["f"],
                         "ownerReferences": [{"uid": "o1"}], "deletionTimestamp": "t",
                         "managedFields": [{"manager": "m"}]},
            "spec": {"nodeName": "n1", "priority": 3}});
        let o = Obj::new(&v, &["spec.nodeName", "spec.priority", "status.phase"]);
        let m = o.meta();
        assert_eq!((&*m.namespace, &*m.name, &*m.uid), ("ns", "p", "u1"));
        assert_eq!(&*m.resource_version, "7");
        assert_eq!(m.label("app"), Some("web"));
        assert!(m.has_finalizer("f") && m.deleting);
        assert_eq!(&*m.owners[0], "o1");
        assert_eq!(m.field("spec.nodeName"), "n1");
        assert_eq!(m.field("spec.priority"), "3");
        assert_eq!(m.field("status.phase"), "");
        assert_eq!(m.field("metadata.name"), "p");
        assert_eq!(o.value().expect("parses"), v);
        assert_eq!(o.managed_fields_len(), r#"[{"manager":"m"}]"#.len());
        assert!(
            o.metadata_json()
                .expect("metadata")
                .starts_with("{\"name\":\"p\"")
        );
    }
}
