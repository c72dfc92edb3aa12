//! How entries are stored: a magic and version byte, then zstd-compressed JSON. Rendered
//! manifests compress about 5–10× (repetitive keys), which keeps Redis memory and network small.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Magic + format version. A reader that sees another version treats the entry as a miss.
const MAGIC: &[u8; 4] = b"FLC1";
/// zstd level: 3 is zstd's default, fast in both directions.
const LEVEL: i32 = 3;
/// Largest decompressed entry accepted (a corrupt or hostile entry cannot exhaust memory).
pub const MAX_DECODED_BYTES: usize = 256 * 1024 * 1024;

/// Rendered manifests of one source at one commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifests {
    /// What the entry was rendered from: the commit (or chart version) ...
    pub commit: String,
    /// ... the source's digest ([`crate::keys::source_digest`]) ...
    #[serde(default)]
    pub source_digest: String,
    /// ... and, for an app-specific render, the app part of its key (empty when shared).
    /// A reader checks all three against the key it read (see `ManifestStore::get`).
    #[serde(default)]
    pub app: String,
    /// `Directory`, `Kustomize`, `Helm`, `Jsonnet`, `Plugin`.
    pub source_type: String,
    pub objects: Vec<Value>,
}

/// A cache entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Manifests(Manifests),
    /// The render depends on the Application (name, namespace): look under its app key.
    AppSpecific,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    app_specific: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifests: Option<Manifests>,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not a Flotilla cache entry (or another format version)")]
    Format,
    #[error("decompressing: {0}")]
    Compression(std::io::Error),
    #[error("entry JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn encode(entry: &Entry) -> Result<Vec<u8>, CodecError> {
    let wire = match entry {
        Entry::Manifests(m) => Wire {
            app_specific: false,
            manifests: Some(m.clone()),
        },
        Entry::AppSpecific => Wire {
            app_specific: true,
            manifests: None,
        },
    };
    let json = serde_json::to_vec(&wire)?;
    let mut out = MAGIC.to_vec();
    out.extend(zstd::bulk::compress(&json, LEVEL).map_err(CodecError::Compression)?);
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<Entry, CodecError> {
    let body = bytes.strip_prefix(MAGIC).ok_or(CodecError::Format)?;
    let json = zstd::bulk::decompress(body, MAX_DECODED_BYTES).map_err(CodecError::Compression)?;
    let wire: Wire = serde_json::from_slice(&json)?;
    match (wire.app_specific, wire.manifests) {
        (true, _) => Ok(Entry::AppSpecific),
        (false, Some(m)) => Ok(Entry::Manifests(m)),
        (false, None) => Err(CodecError::Format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_manifests(n: usize) -> Manifests {
        Manifests {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            source_digest: "d".into(),
            app: String::new(),
            source_type: "Directory".into(),
            objects: (0..n)
                .map(|i| {
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("cm-{i}"), "labels": {"app": "web"}},
                    "data": {"key": "value"}})
                })
                .collect(),
        }
    }

    #[test]
    fn entries_round_trip_and_compress() {
        let m = Entry::Manifests(mk_manifests(100));
        let bytes = encode(&m).expect("encode");
        assert_eq!(decode(&bytes).expect("decode"), m);
        let json_len = serde_json::to_vec(&mk_manifests(100)).expect("json").len();
        assert!(bytes.len() * 5 < json_len, "{} vs {json_len}", bytes.len());
        let marker = encode(&Entry::AppSpecific).expect("encode");
        assert_eq!(decode(&marker).expect("decode"), Entry::AppSpecific);
    }

    #[test]
    fn foreign_or_corrupt_bytes_are_errors_not_panics() {
        assert!(matches!(decode(b"hello"), Err(CodecError::Format)));
        assert!(decode(b"FLC1garbage").is_err());
        let mut bytes = encode(&Entry::Manifests(mk_manifests(3))).expect("encode");
        let n = bytes.len();
        bytes.truncate(n - 5);
        assert!(decode(&bytes).is_err());
    }
}
