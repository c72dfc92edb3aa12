//! Sharding metrics: ring membership, keys owned and pending, hand-overs and their duration,
//! claim conflicts, Lease renewals and fencing.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `acquired` or `released`.
    pub direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: String,
}

/// Handles to the sharding metrics (cheap to clone).
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    pub members: Gauge,
    pub owned: Gauge,
    pub pending: Gauge,
    pub handovers: Family<DirectionLabels, Counter>,
    pub handover_seconds: Histogram,
    pub release_seconds: Histogram,
    pub conflicts: Counter,
    pub renewals: Family<ResultLabels, Counter>,
    pub fenced: Counter,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        Self {
            members: Gauge::default(),
            owned: Gauge::default(),
            pending: Gauge::default(),
            handovers: Family::default(),
            handover_seconds: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0,
            ]),
            release_seconds: Histogram::new([0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
            conflicts: Counter::default(),
            renewals: Family::default(),
            fenced: Counter::default(),
        }
    }
}

impl ShardMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("flotilla_shard");
        r.register(
            "members",
            "Live members of the ring as this replica sees them",
            m.members.clone(),
        );
        r.register(
            "owned_keys",
            "Keys (destination clusters) this replica holds and acts on",
            m.owned.clone(),
        );
        r.register(
            "pending_keys",
            "Keys this replica claimed and waits for (their previous owner has not released them)",
            m.pending.clone(),
        );
        r.register(
            "handovers",
            "Keys acquired or released by this replica",
            m.handovers.clone(),
        );
        r.register(
            "handover_duration_seconds",
            "From claiming a key to holding it (includes waiting for the previous owner)",
            m.handover_seconds.clone(),
        );
        r.register(
            "release_duration_seconds",
            "From deciding to release a key to its writes having drained",
            m.release_seconds.clone(),
        );
        r.register(
            "claim_conflicts",
            "Checks that found a wanted key still claimed by another live member",
            m.conflicts.clone(),
        );
        r.register(
            "lease_renewals",
            "Lease writes (renewals and claim updates) by result",
            m.renewals.clone(),
        );
        r.register(
            "fenced",
            "Times this replica stopped acting on all keys because it could not renew its Lease",
            m.fenced.clone(),
        );
        m
    }
}
