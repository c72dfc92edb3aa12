//! `Assignment`: the set of keys one replica may act on, as a value the controller checks before
//! every write. Pure data; the membership task that computes it lives elsewhere.

use std::collections::BTreeSet;

/// The keys (destination cluster servers) this replica owns right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// A lone replica: it owns every key.
    All,
    /// Exactly these keys.
    Keys(BTreeSet<String>),
}

impl Default for Assignment {
    /// Owns nothing until membership says otherwise (safe: no replica acts on a key it was
    /// not given).
    fn default() -> Self {
        Self::Keys(BTreeSet::new())
    }
}

impl Assignment {
    /// The assignment of a single replica.
    pub fn single_replica() -> Self {
        Self::All
    }

    pub fn owns(&self, key: &str) -> bool {
        match self {
            Self::All => true,
            Self::Keys(keys) => keys.contains(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_replica_owns_everything_and_default_owns_nothing() {
        assert!(Assignment::single_replica().owns("https://a"));
        assert!(!Assignment::default().owns("https://a"));
        let some = Assignment::Keys(["https://a".to_string()].into());
        assert!(some.owns("https://a"));
        assert!(!some.owns("https://b"));
    }
}
