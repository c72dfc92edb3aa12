//! Ring tests: determinism across replicas, the balance bound, and movement on membership
//! changes close to the minimum (about K/N keys).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn mk_members(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("controller-{i}")).collect()
}

fn mk_keys(k: usize) -> BTreeMap<String, u64> {
    (0..k)
        .map(|i| (format!("https://cluster-{i}.example:6443"), 1))
        .collect()
}

fn place(members: &[String], keys: &BTreeMap<String, u64>) -> Placement {
    Ring::new(members.iter().cloned(), DEFAULT_VNODES).place(keys, DEFAULT_EPSILON)
}

#[test]
fn every_key_gets_exactly_one_member_and_capacity_is_the_bound() {
    let keys = mk_keys(100);
    let p = place(&mk_members(3), &keys);
    assert_eq!(p.len(), 100);
    assert_eq!(p.capacity(), 42, "⌈1.25·100/3⌉");
    assert_eq!(p.loads().values().sum::<u64>(), 100);
    assert!(p.loads().values().all(|l| *l <= 42), "{:?}", p.loads());
    let owned: usize = mk_members(3).iter().map(|m| p.keys_of(m).len()).sum();
    assert_eq!(owned, 100);
}

#[test]
fn no_members_or_no_keys_place_nothing() {
    assert!(place(&[], &mk_keys(5)).is_empty());
    assert!(place(&mk_members(2), &BTreeMap::new()).is_empty());
    assert_eq!(Ring::new(Vec::<String>::new(), 8).primary("k"), None);
}

#[test]
fn the_bound_binds_when_the_ring_is_lopsided() {
    // One virtual node each: the raw ring is far from even, bounded loads even it out.
    let keys = mk_keys(200);
    let unbounded = Ring::new(mk_members(4), 1).place(&keys, 1e9);
    let bounded = Ring::new(mk_members(4), 1).place(&keys, 0.25);
    let max = |p: &Placement| p.loads().values().copied().max().unwrap_or(0);
    assert!(max(&unbounded) > 63, "{:?}", unbounded.loads());
    assert!(max(&bounded) <= 63, "{:?}", bounded.loads());
}

#[test]
fn a_heavy_key_raises_the_capacity_and_is_placed_whole() {
    let mut keys = mk_keys(10);
    keys.insert("https://big".into(), 100);
    let p = place(&mk_members(3), &keys);
    assert!(p.capacity() >= 100);
    assert_eq!(p.loads().values().sum::<u64>(), 110);
}

#[test]
fn quantized_weights_step_by_about_one_and_a_half() {
    let q: Vec<u64> = (0..=17).map(quantize_weight).collect();
    assert_eq!(
        q,
        [
            1, 1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16, 24
        ]
    );
    for n in 1..10_000u64 {
        let w = quantize_weight(n);
        assert!(w >= n && (w as f64) < 1.5 * n as f64 + 1.0, "{n} -> {w}");
    }
}

#[test]
fn primary_is_the_unbounded_owner_and_stable() {
    let r = Ring::new(mk_members(5), DEFAULT_VNODES);
    let again = Ring::new(mk_members(5).into_iter().rev(), DEFAULT_VNODES);
    for i in 0..50 {
        let k = format!("argocd/app-{i}");
        assert_eq!(r.primary(&k), again.primary(&k));
        assert!(r.primary(&k).is_some());
    }
}

#[test]
fn candidates_start_with_the_primary_list_every_member_once_and_are_stable() {
    let r = Ring::new(mk_members(4), DEFAULT_VNODES);
    for i in 0..50 {
        let k = format!("https://git.example/org/repo-{i}.git");
        let c = r.candidates(&k);
        assert_eq!(c.len(), 4);
        assert_eq!(Some(c[0]), r.primary(&k));
        let unique: BTreeSet<&str> = c.iter().copied().collect();
        assert_eq!(unique.len(), 4);
        // Losing a member that is not first keeps the order of the rest.
        let fewer: Vec<String> = mk_members(4).into_iter().filter(|m| m != c[3]).collect();
        assert_eq!(
            &Ring::new(fewer, DEFAULT_VNODES).candidates(&k)[..],
            &c[..3]
        );
    }
}

fn arb_keys() -> impl Strategy<Value = BTreeMap<String, u64>> {
    prop::collection::btree_map("[a-z0-9.:/-]{4,30}", 1u64..=1, 1..400)
}

fn arb_weighted_keys() -> impl Strategy<Value = BTreeMap<String, u64>> {
    prop::collection::btree_map("[a-z0-9.:/-]{4,30}", 1u64..=8, 1..300)
}

fn arb_members() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set("[a-z][a-z0-9-]{2,20}", 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Replicas list members in whatever order their watches delivered them: same placement.
    #[test]
    fn every_replica_computes_the_same_placement(
        members in arb_members(), keys in arb_weighted_keys(), seed in any::<u64>()
    ) {
        let mut shuffled: Vec<String> = members.iter().cloned().collect();
        let len = shuffled.len();
        shuffled.rotate_left((seed as usize) % len);
        if seed % 2 == 0 { shuffled.reverse(); }
        let a = Ring::new(members.iter().cloned(), DEFAULT_VNODES).place(&keys, 0.25);
        let b = Ring::new(shuffled, DEFAULT_VNODES).place(&keys, 0.25);
        prop_assert_eq!(a, b);
    }

    /// No member holds more than ⌈(1+ε)·average⌉ keys.
    #[test]
    fn balance_bound_holds(members in arb_members(), keys in arb_keys(), eps in 0.05f64..1.0) {
        let p = Ring::new(members.iter().cloned(), DEFAULT_VNODES).place(&keys, eps);
        let bound = ((1.0 + eps) * keys.len() as f64 / members.len() as f64).ceil() as u64;
        prop_assert_eq!(p.len(), keys.len());
        for (m, l) in p.loads() {
            prop_assert!(*l <= bound.max(1), "{} holds {} > {}", m, l, bound);
        }
    }

    /// With weights, the bound holds for weight (a key heavier than the bound raises it).
    #[test]
    fn weighted_balance_bound_holds(members in arb_members(), keys in arb_weighted_keys()) {
        let p = Ring::new(members.iter().cloned(), DEFAULT_VNODES).place(&keys, 0.25);
        let total: u64 = keys.values().sum();
        let heaviest = keys.values().copied().max().unwrap_or(1);
        let bound = ((1.25 * total as f64 / members.len() as f64).ceil() as u64).max(heaviest);
        prop_assert_eq!(p.loads().values().sum::<u64>(), total);
        for (m, l) in p.loads() {
            // The least-loaded fallback may overshoot by at most one key's weight.
            prop_assert!(*l <= bound + heaviest, "{} holds {} > {}", m, l, bound);
        }
    }

    /// Adding one member moves about K/(N+1) keys, not a reshuffle: at most twice the
    /// minimum plus a small constant (hash-mod sharding moves about N/(N+1) of all keys).
    #[test]
    fn adding_a_member_moves_close_to_the_minimum(n in 1usize..12, k in 50usize..600) {
        let keys = mk_keys(k);
        let before = place(&mk_members(n), &keys);
        let after = place(&mk_members(n + 1), &keys);
        let moved = before.moved(&after);
        let ideal = k / (n + 1);
        prop_assert!(moved.len() <= 2 * ideal + 5, "moved {} of {} (ideal {})", moved.len(), k, ideal);
        // Most moved keys go to the newcomer.
        let newcomer = format!("controller-{n}");
        let to_new = moved.iter().filter(|key| after.owner(key) == Some(newcomer.as_str())).count();
        prop_assert!(to_new * 2 + 5 >= moved.len(), "{} of {} moved to the new member", to_new, moved.len());
    }

    /// Removing one member moves its keys and few others.
    #[test]
    fn removing_a_member_moves_close_to_the_minimum(n in 2usize..12, k in 50usize..600, gone in 0usize..12) {
        let keys = mk_keys(k);
        let members = mk_members(n);
        let gone = &members[gone % n];
        let before = place(&members, &keys);
        let rest: Vec<String> = members.iter().filter(|m| *m != gone).cloned().collect();
        let after = place(&rest, &keys);
        let moved = before.moved(&after);
        let had = before.keys_of(gone);
        prop_assert!(had.is_subset(&moved), "all of the departed member's keys move");
        prop_assert!(moved.len() <= 2 * had.len().max(k / n) + 5, "moved {} (it had {})", moved.len(), had.len());
    }
}

#[test]
fn pinned_keys_go_to_their_shard_and_the_rest_fill_around_them() {
    let ring = Ring::new(["ctl-0", "ctl-1", "ctl-2"], DEFAULT_VNODES);
    let keys: BTreeMap<String, u64> = (0..60).map(|i| (format!("c{i:02}"), 1)).collect();
    // Ten clusters pinned to shard 1.
    let pins: BTreeMap<String, u32> = (0..10).map(|i| (format!("c{i:02}"), 1)).collect();
    let p = ring.place_pinned(&keys, &pins, DEFAULT_EPSILON);
    for k in pins.keys() {
        assert_eq!(p.owner(k), Some("ctl-1"), "{k}");
    }
    assert_eq!(p.len(), 60, "every key placed");
    // The bound still holds for everyone: pins count toward ctl-1's load.
    assert!(
        p.loads().values().all(|l| *l <= p.capacity()),
        "{:?}",
        p.loads()
    );
    // Unpinned placement is deterministic and the same in every process.
    assert_eq!(p, ring.place_pinned(&keys, &pins, DEFAULT_EPSILON));
    // A pin to a shard nobody serves is ignored: the key is placed as usual.
    let far: BTreeMap<String, u32> = [("c00".to_string(), 7)].into();
    let q = ring.place_pinned(&keys, &far, DEFAULT_EPSILON);
    assert_eq!(
        q.owner("c00"),
        ring.place(&keys, DEFAULT_EPSILON).owner("c00")
    );
    // Pins outweighing the bound win: all sixty on shard 2.
    let all: BTreeMap<String, u32> = keys.keys().map(|k| (k.clone(), 2)).collect();
    let r = ring.place_pinned(&keys, &all, DEFAULT_EPSILON);
    assert!(r.iter().all(|(_, m)| m == "ctl-2"));
}

#[test]
fn shards_are_statefulset_ordinals_else_positions_by_name() {
    let ring = Ring::new(
        ["flotilla-controller-2", "flotilla-controller-0"],
        DEFAULT_VNODES,
    );
    assert_eq!(ring.member_for_shard(2), Some("flotilla-controller-2"));
    assert_eq!(ring.member_for_shard(1), None, "replica 1 is not live");
    let named = Ring::new(["beta", "alpha"], DEFAULT_VNODES);
    assert_eq!(named.member_for_shard(0), Some("alpha"));
    assert_eq!(named.member_for_shard(1), Some("beta"));
    assert_eq!(named.member_for_shard(2), None);
}
