//! Estimates of the heap a store holds, split by what holds it (current objects, their
//! `managedFields`, keys, indexes, watch history), sized as jemalloc would round allocations.

use serde_json::Value;

/// Bytes a store holds, by part (estimates; `examples/footprint.rs` checks them against
/// jemalloc's own count).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Current objects' JSON without their `managedFields`.
    pub objects: usize,
    /// The `managedFields` of current objects (their share of the JSON).
    pub managed_fields: usize,
    /// What is kept parsed beside each current object's JSON (`stored::Meta`).
    pub meta: usize,
    /// Object keys and the maps holding them.
    pub keys: usize,
    /// Owner and uid indexes.
    pub indexes: usize,
    /// Versions that only the watch history still holds.
    pub history_versions: usize,
    /// The history's events themselves (and their queue).
    pub history_events_bytes: usize,
    /// How many events the history holds.
    pub history_events: usize,
}

impl Footprint {
    /// `(part, bytes)` in a fixed order, for reports.
    pub fn parts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("objects (w/o managedFields)", self.objects),
            ("managedFields", self.managed_fields),
            ("parsed meta", self.meta),
            ("keys + maps", self.keys),
            ("owner/uid indexes", self.indexes),
            ("history: old versions", self.history_versions),
            ("history: events", self.history_events_bytes),
        ]
    }

    pub fn total(&self) -> usize {
        self.parts().iter().map(|(_, b)| b).sum()
    }

    /// What current objects cost, history aside.
    pub fn current(&self) -> usize {
        self.objects + self.managed_fields + self.meta + self.keys + self.indexes
    }

    pub fn add(&mut self, o: &Footprint) {
        self.objects += o.objects;
        self.managed_fields += o.managed_fields;
        self.meta += o.meta;
        self.keys += o.keys;
        self.indexes += o.indexes;
        self.history_versions += o.history_versions;
        self.history_events_bytes += o.history_events_bytes;
        self.history_events += o.history_events;
    }
}

/// jemalloc's size class for a request of `n` bytes (0 for none).
pub fn alloc_size(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    if n <= 8 {
        return 8;
    }
    if n <= 16 {
        return 16;
    }
    if n <= 128 {
        return n.div_ceil(16) * 16;
    }
    // Four classes per doubling above 128.
    let pow = usize::BITS - (n - 1).leading_zeros() - 1;
    let step = 1usize << (pow - 2);
    n.div_ceil(step) * step
}

/// Heap of a string of capacity `cap`.
pub fn string_heap(cap: usize) -> usize {
    alloc_size(cap)
}

/// Heap of a hash table (hashbrown) of `len` entries of `slot` bytes each.
pub fn table_heap(len: usize, slot: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let buckets = if len < 4 {
        4
    } else if len < 8 {
        8
    } else {
        (len * 8 / 7).next_power_of_two()
    };
    alloc_size(buckets * slot + buckets + 16)
}

/// Heap a JSON value owns below itself (the value's own inline size not included).
pub fn value_heap(v: &Value) -> usize {
    match v {
        Value::String(s) => string_heap(s.capacity()),
        Value::Array(a) => {
            alloc_size(a.capacity() * size_of::<Value>()) + a.iter().map(value_heap).sum::<usize>()
        }
        Value::Object(m) => {
            // indexmap: a Vec of (hash, key, value) buckets plus a table of indices.
            let bucket = size_of::<usize>() + size_of::<String>() + size_of::<Value>();
            alloc_size(m.len() * bucket)
                + table_heap(m.len(), size_of::<usize>())
                + m.iter()
                    .map(|(k, v)| string_heap(k.capacity()) + value_heap(v))
                    .sum::<usize>()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_round_up_like_jemalloc() {
        assert_eq!(alloc_size(0), 0);
        assert_eq!(alloc_size(5), 8);
        assert_eq!(alloc_size(17), 32);
        assert_eq!(alloc_size(129), 160);
        assert_eq!(alloc_size(1000), 1024);
        assert_eq!(alloc_size(1025), 1280);
    }

    #[test]
    fn a_value_owns_its_strings_and_containers() {
        let v = serde_json::json!({"a": "x".repeat(40), "b": [1, 2]});
        assert!(value_heap(&v) > 48 + 2 * size_of::<Value>());
    }
}
