//! The consistent-hash ring with bounded loads: members placed on a `hashring` ring with virtual
//! nodes, keys (with weights) assigned so no member exceeds ⌈(1+ε)·average⌉. Pure and deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use hashring::HashRing;

/// Default number of virtual nodes per member: enough for an even ring (the spread of ring
/// share between members is about 1/√vnodes), small enough to build in microseconds.
pub const DEFAULT_VNODES: u32 = 128;
/// Default ε of the bounded loads: no member holds more than ⌈1.25·average⌉.
pub const DEFAULT_EPSILON: f64 = 0.25;
/// Re-hash probes tried for a key whose first choices are full, before the least-loaded
/// member takes it.
const MAX_PROBES: u32 = 256;

/// One point of a member on the ring. Hashes by member name and replica number only, so the
/// same member lands on the same points in every process.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VNode {
    member: u32,
    name_hash: u64,
    replica: u32,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.name_hash);
        state.write_u32(self.replica);
    }
}

/// A key's `probe`-th position on the ring (probe 0 is its plain consistent-hash position).
struct Probe<'a> {
    key: &'a str,
    probe: u32,
}

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.key.as_bytes());
        state.write_u32(self.probe);
    }
}

/// SipHash-2-4 with zero keys (what `hashring` uses): stable across processes and builds.
fn stable_hash(s: &str) -> u64 {
    let mut h = siphasher::sip::SipHasher::new();
    h.write(s.as_bytes());
    h.finish()
}

/// Weights that change only at steps of about 1.5× (1, 2, 3, 4, 6, 8, 12, 16, ...): weighting a
/// cluster by its application count then balances work without moving a cluster every time one
/// application is added.
pub fn quantize_weight(n: u64) -> u64 {
    if n <= 2 {
        return n.max(1);
    }
    let p = 1u64 << (63 - n.leading_zeros()); // largest power of two <= n
    if n == p {
        p
    } else if n <= p + p / 2 {
        p + p / 2
    } else {
        p.saturating_mul(2)
    }
}

/// The ring of a set of members.
#[derive(Debug, Clone)]
pub struct Ring {
    members: Vec<String>,
    ring: HashRing<VNode>,
}

impl Ring {
    /// Build the ring of `members` (order and duplicates do not matter) with `vnodes` points each.
    pub fn new<I, S>(members: I, vnodes: u32) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let members: Vec<String> = members
            .into_iter()
            .map(Into::into)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut ring = HashRing::new();
        let points = members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                let name_hash = stable_hash(m);
                (0..vnodes.max(1)).map(move |replica| VNode {
                    member: i as u32,
                    name_hash,
                    replica,
                })
            })
            .collect();
        ring.batch_add(points);
        Self { members, ring }
    }

    /// The members, sorted.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn probe(&self, key: &str, probe: u32) -> Option<u32> {
        self.ring.get(&Probe { key, probe }).map(|v| v.member)
    }

    /// The plain consistent-hash owner of `key`, without load bounds: for things that need a
    /// single deterministic owner but carry no load (e.g. an Application whose cluster is unknown).
    pub fn primary(&self, key: &str) -> Option<&str> {
        self.probe(key, 0)
            .map(|i| self.members[i as usize].as_str())
    }

    /// Every member in the order `key` should try them: its probe sequence first (the plain
    /// owner, then the next distinct members its probes hit), then any left, by name. Used for
    /// affinity with failover (e.g. a repository to a repo-server).
    pub fn candidates(&self, key: &str) -> Vec<&str> {
        let n = self.members.len();
        let mut seen = vec![false; n];
        let mut out = Vec::with_capacity(n);
        for p in 0..MAX_PROBES {
            if out.len() == n {
                break;
            }
            if let Some(m) = self.probe(key, p)
                && !seen[m as usize]
            {
                seen[m as usize] = true;
                out.push(self.members[m as usize].as_str());
            }
        }
        for (i, m) in self.members.iter().enumerate() {
            if !seen[i] {
                out.push(m.as_str());
            }
        }
        out
    }

    /// Assign every key to a member. Keys are placed in a fixed order (by hash, then name); each
    /// goes to the first member on its probe sequence with room under the capacity
    /// ⌈(1+ε)·total/N⌉ (never below the heaviest key). Every process computes the same
    /// placement from the same members, keys and weights.
    pub fn place(&self, keys: &BTreeMap<String, u64>, epsilon: f64) -> Placement {
        self.place_pinned(keys, &BTreeMap::new(), epsilon)
    }

    /// The member serving shard `n` (a cluster Secret's `shard`): the live member whose
    /// identity ends in `-<n>` (a StatefulSet's ordinal, as Argo CD numbers its replicas),
    /// else the `n`-th member by name when no identity carries an ordinal; `None` when no live
    /// member is that shard (the key is then placed like any other).
    pub fn member_for_shard(&self, n: u32) -> Option<&str> {
        let ordinal = |m: &str| m.rsplit_once('-').and_then(|(_, d)| d.parse::<u32>().ok());
        if self.members.iter().any(|m| ordinal(m).is_some()) {
            self.members
                .iter()
                .find(|m| ordinal(m) == Some(n))
                .map(String::as_str)
        } else {
            self.members.get(n as usize).map(String::as_str)
        }
    }

    /// [`Self::place`] with pinned keys: a key pinned to shard `n` goes to
    /// [`Self::member_for_shard`] whatever its load — a pin is a constraint, the load bound
    /// only steers the unpinned keys, which fill the room the pins leave (capacity is computed
    /// over all keys, so a member heavy with pins takes fewer unpinned keys). A pin to a shard
    /// no live member serves is ignored and the key placed as usual.
    pub fn place_pinned(
        &self,
        keys: &BTreeMap<String, u64>,
        pins: &BTreeMap<String, u32>,
        epsilon: f64,
    ) -> Placement {
        let n = self.members.len();
        if n == 0 {
            return Placement::default();
        }
        let total: u64 = keys.values().map(|w| (*w).max(1)).sum();
        let heaviest = keys.values().map(|w| (*w).max(1)).max().unwrap_or(1);
        let eps = if epsilon.is_finite() && epsilon >= 0.0 {
            epsilon
        } else {
            DEFAULT_EPSILON
        };
        let capacity = (((1.0 + eps) * total as f64) / n as f64).ceil() as u64;
        let capacity = capacity.max(heaviest).max(1);
        let mut order: Vec<(u64, &str, u64)> = keys
            .iter()
            .map(|(k, w)| (stable_hash(k), k.as_str(), (*w).max(1)))
            .collect();
        order.sort_unstable();
        let mut load = vec![0u64; n];
        let mut owner = BTreeMap::new();
        let index = |m: &str| self.members.iter().position(|x| x == m);
        let mut pinned = std::collections::BTreeSet::new();
        for (key, shard) in pins {
            let (Some(w), Some(m)) = (keys.get(key), self.member_for_shard(*shard).and_then(index))
            else {
                continue;
            };
            load[m] += (*w).max(1);
            owner.insert(key.clone(), self.members[m].clone());
            pinned.insert(key.as_str());
        }
        for (_, key, w) in order {
            if pinned.contains(key) {
                continue;
            }
            let mut chosen = None;
            for p in 0..MAX_PROBES {
                if let Some(m) = self.probe(key, p)
                    && load[m as usize] + w <= capacity
                {
                    chosen = Some(m as usize);
                    break;
                }
            }
            // Every probe hit a full member (only possible with very uneven weights): the
            // least-loaded member, lowest name first, takes the key.
            let m =
                chosen.unwrap_or_else(|| (0..n).min_by_key(|&i| (load[i], i)).unwrap_or_default());
            load[m] += w;
            owner.insert(key.to_string(), self.members[m].clone());
        }
        Placement {
            owner,
            load: self
                .members
                .iter()
                .cloned()
                .zip(load)
                .collect::<BTreeMap<_, _>>(),
            capacity,
        }
    }
}

/// Where every key goes under one ring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    owner: BTreeMap<String, String>,
    load: BTreeMap<String, u64>,
    capacity: u64,
}

impl Placement {
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.owner.get(key).map(String::as_str)
    }

    /// The keys `member` owns.
    pub fn keys_of(&self, member: &str) -> BTreeSet<String> {
        self.owner
            .iter()
            .filter(|(_, m)| m.as_str() == member)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Total weight per member (members that got nothing included).
    pub fn loads(&self) -> &BTreeMap<String, u64> {
        &self.load
    }

    /// The per-member bound this placement respected.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Keys whose owner differs between `self` and `other` (keys in only one count too).
    pub fn moved(&self, other: &Placement) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .owner
            .iter()
            .filter(|(k, m)| other.owner.get(*k) != Some(*m))
            .map(|(k, _)| k.clone())
            .collect();
        out.extend(
            other
                .owner
                .keys()
                .filter(|k| !self.owner.contains_key(*k))
                .cloned(),
        );
        out
    }

    pub fn len(&self) -> usize {
        self.owner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.owner.iter().map(|(k, m)| (k.as_str(), m.as_str()))
    }
}

#[cfg(test)]
mod tests;
