//! What the harness knows of cluster ownership over time: the fleet changes it made (replicas
//! started, stopped, killed) and the changes it saw polling every replica's `/status`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use super::Live;
use crate::fleet::http_get;
use crate::kubesim::audit::unix_micros;

/// Something that may move clusters between replicas, known to have happened between `lo_us`
/// and `hi_us` (Unix µs, the clock kubesim's request log uses).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub lo_us: u64,
    pub hi_us: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// The harness changed the fleet, or a replica's view of the members (or its fencing)
    /// changed.
    Membership(String),
    /// `replica` newly listed `cluster` among its owned clusters.
    Acquired { cluster: String, replica: String },
}

/// Every event seen, oldest first.
#[derive(Debug, Default)]
pub struct Timeline {
    pub events: Vec<Event>,
}

pub type SharedTimeline = Arc<Mutex<Timeline>>;

impl Timeline {
    /// A fleet change the harness made between `lo_us` and `hi_us`.
    pub fn action(&mut self, lo_us: u64, hi_us: u64, what: String) {
        self.events.push(Event {
            lo_us,
            hi_us,
            kind: EventKind::Membership(what),
        });
    }

    /// Why `cluster` could have moved (back) to `replica` within `lo_us..=hi_us`: the replica
    /// was seen acquiring it then, or else the fleet's membership changed then.
    pub fn explains(&self, cluster: &str, replica: &str, lo_us: u64, hi_us: u64) -> Option<String> {
        let within = |e: &&Event| e.hi_us >= lo_us && e.lo_us <= hi_us;
        let acquired = self.events.iter().filter(within).find(|e| {
            matches!(&e.kind, EventKind::Acquired { cluster: c, replica: r } if c == cluster && r == replica)
        });
        let event = acquired.or_else(|| {
            self.events
                .iter()
                .filter(within)
                .find(|e| matches!(e.kind, EventKind::Membership(_)))
        })?;
        Some(match &event.kind {
            EventKind::Acquired { .. } => format!(
                "{replica} was seen acquiring {cluster} between {} and {} µs",
                event.lo_us, event.hi_us
            ),
            EventKind::Membership(what) => format!(
                "membership changed between {} and {} µs ({what})",
                event.lo_us, event.hi_us
            ),
        })
    }
}

/// What one replica's `/status` said last.
#[derive(Debug, Default)]
struct Seen {
    at_us: u64,
    members: Vec<String>,
    fenced: bool,
    owned: BTreeSet<String>,
}

/// Record what changed between two readings of `replica`'s `/status`.
fn compare(
    t: &mut Timeline,
    replica: &str,
    before: &Seen,
    now: &Seen,
    servers: &BTreeMap<String, String>,
) {
    if before.members != now.members || before.fenced != now.fenced {
        t.events.push(Event {
            lo_us: before.at_us,
            hi_us: now.at_us,
            kind: EventKind::Membership(format!(
                "{replica} saw members {:?}{}",
                now.members,
                if now.fenced { " (fenced)" } else { "" }
            )),
        });
    }
    for server in now.owned.difference(&before.owned) {
        if let Some(cluster) = servers.get(server) {
            t.events.push(Event {
                lo_us: before.at_us,
                hi_us: now.at_us,
                kind: EventKind::Acquired {
                    cluster: cluster.clone(),
                    replica: replica.to_string(),
                },
            });
        }
    }
}

fn strings(v: &Value) -> impl Iterator<Item = String> + '_ {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
}

/// Poll every running replica's `/status` every `every` until aborted, recording membership
/// and ownership changes (`servers`: server URL → cluster name) into `timeline`.
pub(super) fn spawn_poller(
    live: Arc<Live>,
    servers: BTreeMap<String, String>,
    timeline: SharedTimeline,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut round_us = unix_micros();
        loop {
            let targets = live.targets.lock().clone();
            for t in targets {
                let Some(addr) = &t.controller_metrics else {
                    continue;
                };
                let Ok((200, body)) = http_get(addr, "/status").await else {
                    continue;
                };
                let Ok(doc) = serde_json::from_str::<Value>(&body) else {
                    continue;
                };
                let now = Seen {
                    at_us: unix_micros(),
                    members: strings(&doc["members"]).collect(),
                    fenced: doc["fenced"].as_bool().unwrap_or(false),
                    owned: strings(&doc["ownedClusters"]).collect(),
                };
                // A replica seen for the first time: compared with an empty view as of the
                // previous round (it was started after that, or its first answer was lost).
                let before = seen.remove(&t.name).unwrap_or(Seen {
                    at_us: round_us,
                    ..Seen::default()
                });
                compare(&mut timeline.lock(), &t.name, &before, &now, &servers);
                seen.insert(t.name.clone(), now);
            }
            round_us = unix_micros();
            tokio::time::sleep(every).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquisitions_and_membership_changes_explain_a_move_back() {
        let servers: BTreeMap<String, String> = [
            ("https://a".to_string(), "cluster-001".to_string()),
            ("https://b".to_string(), "cluster-002".to_string()),
        ]
        .into();
        let mut t = Timeline::default();
        let before = Seen {
            at_us: 100,
            members: vec!["c-0".into(), "c-1".into()],
            owned: ["https://a".to_string()].into(),
            ..Seen::default()
        };
        let now = Seen {
            at_us: 200,
            members: vec!["c-0".into(), "c-1".into()],
            owned: ["https://a".to_string(), "https://b".to_string()].into(),
            ..Seen::default()
        };
        compare(&mut t, "c-0", &before, &now, &servers);
        assert_eq!(t.events.len(), 1, "members unchanged: one acquisition");
        let why = t
            .explains("cluster-002", "c-0", 150, 300)
            .expect("explained");
        assert!(why.contains("acquiring cluster-002"), "{why}");
        assert_eq!(t.explains("cluster-002", "c-0", 201, 300), None, "after it");
        assert_eq!(
            t.explains("cluster-001", "c-0", 0, 300),
            None,
            "held all along"
        );
        t.action(400, 450, "killed c-1".into());
        let why = t
            .explains("cluster-001", "c-0", 420, 500)
            .expect("explained");
        assert!(why.contains("killed c-1"), "{why}");
    }
}
