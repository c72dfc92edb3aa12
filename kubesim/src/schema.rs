//! The slice of the Kubernetes OpenAPI schema that merging needs: which lists are associative
//! (merged by key), which are sets, and which are atomic, for built-in kinds.

use serde_json::{Map, Value};

/// One field of an associative list's key, with the default the server fills in.
#[derive(Debug, Clone, Copy)]
pub struct KeyField {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

/// How a list merges (`x-kubernetes-list-type`).
#[derive(Debug, Clone, Copy)]
pub enum ListKind {
    Atomic,
    Set,
    Map(&'static [KeyField]),
}

const fn key(name: &'static str) -> KeyField {
    KeyField {
        name,
        default: None,
    }
}

const BY_NAME: &[KeyField] = &[key("name")];
const BY_TYPE: &[KeyField] = &[key("type")];
const BY_MOUNT_PATH: &[KeyField] = &[key("mountPath")];
const BY_DEVICE_PATH: &[KeyField] = &[key("devicePath")];
const BY_UID: &[KeyField] = &[key("uid")];
const BY_IP: &[KeyField] = &[key("ip")];
const BY_TOPOLOGY: &[KeyField] = &[key("topologyKey"), key("whenUnsatisfiable")];
const CONTAINER_PORTS: &[KeyField] = &[
    key("containerPort"),
    KeyField {
        name: "protocol",
        default: Some("TCP"),
    },
];
const SERVICE_PORTS: &[KeyField] = &[
    key("port"),
    KeyField {
        name: "protocol",
        default: Some("TCP"),
    },
];

/// The list semantics of field `field` holding `items`. Custom resources' lists are atomic
/// (the CRD default when the schema sets no list type).
pub fn list_kind(custom: bool, field: &str, items: &[Value]) -> ListKind {
    if custom {
        return ListKind::Atomic;
    }
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => ListKind::Map(BY_NAME),
        "conditions" => ListKind::Map(BY_TYPE),
        "volumeMounts" => ListKind::Map(BY_MOUNT_PATH),
        "volumeDevices" => ListKind::Map(BY_DEVICE_PATH),
        "ownerReferences" => ListKind::Map(BY_UID),
        "hostAliases" => ListKind::Map(BY_IP),
        "topologySpreadConstraints" => ListKind::Map(BY_TOPOLOGY),
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                ListKind::Map(CONTAINER_PORTS)
            } else {
                ListKind::Map(SERVICE_PORTS)
            }
        }
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// The canonical key of an associative-list item (`{"name":"x"}`, sorted, defaults applied),
/// or `None` when the item lacks its primary key.
pub fn item_key(item: &Value, keys: &[KeyField]) -> Option<Map<String, Value>> {
    let obj = item.as_object()?;
    let mut sorted: Vec<&KeyField> = keys.iter().collect();
    sorted.sort_by_key(|k| k.name);
    let mut out = Map::new();
    for k in sorted {
        match (obj.get(k.name), k.default) {
            (Some(v), _) => {
                out.insert(k.name.into(), v.clone());
            }
            (None, Some(d)) => {
                out.insert(k.name.into(), Value::String(d.into()));
            }
            (None, None) if std::ptr::eq(k, &keys[0]) => return None,
            (None, None) => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_port_key_defaults_protocol() {
        let items = [json!({"containerPort": 80})];
        let ListKind::Map(keys) = list_kind(false, "ports", &items) else {
            panic!("ports are associative")
        };
        let k = item_key(&items[0], keys).expect("has key");
        assert_eq!(
            Value::Object(k),
            json!({"containerPort": 80, "protocol": "TCP"})
        );
    }

    #[test]
    fn custom_resource_lists_are_atomic() {
        assert!(matches!(
            list_kind(true, "containers", &[]),
            ListKind::Atomic
        ));
        assert!(matches!(list_kind(false, "args", &[]), ListKind::Atomic));
    }

    #[test]
    fn item_without_primary_key_has_no_key() {
        assert!(item_key(&json!({"image": "x"}), BY_NAME).is_none());
    }
}
