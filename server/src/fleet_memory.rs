//! What the fleet view remembers between requests: clusters handed over between controller
//! replicas (sampled from the shard Leases every second) and each replica's reconcile rate.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::Server;

/// Hand-overs kept (newest first).
const KEPT: usize = 100;
/// How often the Leases are sampled.
const EVERY: Duration = Duration::from_secs(1);

/// One cluster changing owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub cluster: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub at: jiff::Timestamp,
}

#[derive(Default)]
struct State {
    /// Cluster → its sole live claimant (kept through an overlap, when two claim it).
    owners: Option<BTreeMap<String, Option<String>>>,
    recent: VecDeque<Handover>,
    /// Replica → (when, reconciles then, rate).
    samples: HashMap<String, (Instant, u64, f64)>,
}

/// The fleet's memory; cheap to share.
#[derive(Default)]
pub struct FleetMemory {
    state: Mutex<State>,
}

impl FleetMemory {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take one sample of who claims each cluster (`claimants`: the live replicas claiming
    /// it). The first sample only sets the baseline.
    pub fn observe(&self, claimants: BTreeMap<String, Vec<String>>, at: jiff::Timestamp) {
        let mut st = self.lock();
        let first = st.owners.is_none();
        let before = st.owners.take().unwrap_or_default();
        let mut now = BTreeMap::new();
        let mut moved = Vec::new();
        for (cluster, mut who) in claimants {
            who.sort();
            let previous = before.get(&cluster).cloned().flatten();
            let owner = match who.len() {
                0 => None,
                1 => who.pop(),
                // A hand-over in progress: the owner is the one that held it.
                _ => previous.clone().filter(|p| who.contains(p)).or(who.pop()),
            };
            if !first && owner != previous {
                moved.push(Handover {
                    cluster: cluster.clone(),
                    from: previous,
                    to: owner.clone(),
                    at,
                });
            }
            now.insert(cluster, owner);
        }
        for h in moved {
            st.recent.push_front(h);
        }
        st.recent.truncate(KEPT);
        st.owners = Some(now);
    }

    /// The recent hand-overs, newest first, as the API shows them.
    pub fn handovers(&self) -> Vec<Value> {
        self.lock()
            .recent
            .iter()
            .map(|h| json!({"cluster": h.cluster, "from": h.from, "to": h.to, "at": h.at.to_string()}))
            .collect()
    }

    /// Reconciles per second of `replica`, from its running total `total` and the previous
    /// answer (`None` until two answers are at least a second apart).
    pub fn rate(&self, replica: &str, total: u64, now: Instant) -> Option<f64> {
        let mut st = self.lock();
        match st.samples.get(replica).copied() {
            Some((t, _, rate)) if now.duration_since(t) < EVERY => (rate >= 0.0).then_some(rate),
            Some((t, n0, _)) if total >= n0 => {
                let rate = (total - n0) as f64 / now.duration_since(t).as_secs_f64();
                st.samples.insert(replica.to_string(), (now, total, rate));
                Some(rate)
            }
            _ => {
                // First answer, or the replica restarted (its total went back).
                st.samples.insert(replica.to_string(), (now, total, -1.0));
                None
            }
        }
    }
}

/// Sample the Leases every second for hand-overs, until the server stops.
pub async fn run(server: Arc<Server>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let reg = crate::fleet_api::registry(&server);
        let replicas = server.controllers.replicas();
        let claimants = reg
            .clusters()
            .map(|c| {
                let id = flotilla_sharding::claims::key_id(&c.server);
                let who = replicas
                    .iter()
                    .filter(|r| r.live && r.claims(&id))
                    .map(|r| r.identity.clone())
                    .collect();
                (c.server.clone(), who)
            })
            .collect();
        server.memory.observe(claimants, jiff::Timestamp::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).expect("ts")
    }

    fn claims(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(c, w)| (c.to_string(), w.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn hand_overs_are_recorded_once_the_new_owner_alone_holds_the_cluster() {
        let m = FleetMemory::default();
        m.observe(
            claims(&[("https://a", &["c-0"]), ("https://b", &["c-1"])]),
            at(1),
        );
        assert!(m.handovers().is_empty(), "the first sample is the baseline");
        // Overlap: c-0 still holds it while c-1 takes it.
        m.observe(
            claims(&[("https://a", &["c-0", "c-1"]), ("https://b", &["c-1"])]),
            at(2),
        );
        assert!(m.handovers().is_empty());
        m.observe(
            claims(&[("https://a", &["c-1"]), ("https://b", &["c-1"])]),
            at(3),
        );
        let h = m.handovers();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0]["cluster"], "https://a");
        assert_eq!(
            (h[0]["from"].as_str(), h[0]["to"].as_str()),
            (Some("c-0"), Some("c-1"))
        );
        // c-1 dies: both clusters are unowned, newest first.
        m.observe(claims(&[("https://a", &[]), ("https://b", &[])]), at(4));
        let h = m.handovers();
        assert_eq!(h.len(), 3);
        assert!(h[0]["to"].is_null() && h[0]["from"] == "c-1");
    }

    #[test]
    fn rates_need_two_answers_and_survive_a_restart() {
        let m = FleetMemory::default();
        let t0 = Instant::now();
        assert_eq!(m.rate("c-0", 100, t0), None);
        assert_eq!(m.rate("c-0", 150, t0 + Duration::from_secs(2)), Some(25.0));
        // Asked again within a second: the last rate.
        assert_eq!(
            m.rate("c-0", 999, t0 + Duration::from_millis(2500)),
            Some(25.0)
        );
        // Restarted: its total went back.
        assert_eq!(m.rate("c-0", 3, t0 + Duration::from_secs(5)), None);
    }
}
