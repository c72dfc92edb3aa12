//! Compares Flotilla's ring with Argo CD's sharding algorithms on the same cluster set: keys moved
//! per membership change and balance (max/avg). `cargo run --release -p flotilla-sharding --example compare`

use std::collections::BTreeMap;

use flotilla_sharding::ring::{DEFAULT_EPSILON, DEFAULT_VNODES, Ring};

/// FNV-1a, 32 bit: what Argo CD's legacy sharding hashes the cluster id with.
fn fnv32a(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

type Assign = BTreeMap<String, usize>;

/// Argo CD `legacy`: shard = fnv32a(id) mod replicas.
fn legacy(keys: &[String], n: usize) -> Assign {
    keys.iter()
        .map(|k| (k.clone(), fnv32a(k) as usize % n))
        .collect()
}

/// Argo CD `round-robin`: clusters sorted by id, the i-th goes to replica i mod replicas.
fn round_robin(keys: &[String], n: usize) -> Assign {
    let mut sorted = keys.to_vec();
    sorted.sort();
    sorted
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, i % n))
        .collect()
}

fn members(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("flotilla-controller-{i:02}"))
        .collect()
}

fn ring(keys: &[String], n: usize, eps: f64) -> BTreeMap<String, String> {
    let weights: BTreeMap<String, u64> = keys.iter().map(|k| (k.clone(), 1)).collect();
    let p = Ring::new(members(n), DEFAULT_VNODES).place(&weights, eps);
    p.iter()
        .map(|(k, m)| (k.to_string(), m.to_string()))
        .collect()
}

fn moved<V: PartialEq>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> usize {
    a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).count()
}

fn balance<V: Ord + Clone>(a: &BTreeMap<String, V>, n: usize) -> f64 {
    let mut counts: BTreeMap<V, usize> = BTreeMap::new();
    for v in a.values() {
        *counts.entry(v.clone()).or_default() += 1;
    }
    let max = counts.values().copied().max().unwrap_or(0);
    max as f64 / (a.len() as f64 / n as f64)
}

fn main() {
    let clusters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let keys: Vec<String> = (0..clusters)
        .map(|i| format!("https://cluster-{i:05}.example.internal:6443"))
        .collect();
    println!(
        "{clusters} clusters; keys moved by a membership change (ideal = the share that must move)\n"
    );
    println!(
        "| change | ideal | Flotilla ring (ε={DEFAULT_EPSILON}) | plain consistent hash | Argo CD legacy (hash mod N) | Argo CD round-robin |"
    );
    println!("|---|---|---|---|---|---|");
    for (from, to) in [
        (3usize, 4usize),
        (4, 2),
        (2, 3),
        (10, 11),
        (11, 10),
        (50, 51),
    ] {
        let ideal = clusters * from.abs_diff(to) / from.max(to);
        let r = moved(
            &ring(&keys, from, DEFAULT_EPSILON),
            &ring(&keys, to, DEFAULT_EPSILON),
        );
        let plain = moved(&ring(&keys, from, 1e9), &ring(&keys, to, 1e9));
        let l = moved(&legacy(&keys, from), &legacy(&keys, to));
        let rr = moved(&round_robin(&keys, from), &round_robin(&keys, to));
        println!("| {from}→{to} | {ideal} | {r} | {plain} | {l} | {rr} |");
    }
    println!("\nbalance: the busiest replica's clusters / the average\n");
    println!(
        "| replicas | Flotilla ring (ε={DEFAULT_EPSILON}) | plain consistent hash | legacy | round-robin |"
    );
    println!("|---|---|---|---|---|");
    for n in [3usize, 10, 50] {
        println!(
            "| {n} | {:.2} | {:.2} | {:.2} | {:.2} |",
            balance(&ring(&keys, n, DEFAULT_EPSILON), n),
            balance(&ring(&keys, n, 1e9), n),
            balance(&legacy(&keys, n), n),
            balance(&round_robin(&keys, n), n)
        );
    }
}
