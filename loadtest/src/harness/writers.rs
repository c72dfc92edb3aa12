//! The double-writer check over kubesim's writers' summaries: per target cluster, no two replicas
//! writing at once, and none writing again after a takeover unless the cluster moved back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::membership::Timeline;
use crate::kubesim::audit::{WriteRun, WriteSummary};

/// Violations listed in full; the rest are only counted.
const LISTED: usize = 50;
/// How far back (µs) runs are compared for overlap: far longer than any write takes.
const SCAN_BACK_US: u64 = 60_000_000;

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WriterCheck {
    pub clusters_checked: usize,
    /// Controller writes to the target clusters (every write request, whatever its answer).
    pub writes: u64,
    /// Replicas seen writing to a target cluster.
    pub replicas: BTreeSet<String>,
    /// Changes of writer on a cluster.
    pub handovers: usize,
    /// The narrowest hand-over: from the previous writer's last answer to the next writer's
    /// first arrival (ms; negative when they overlapped).
    pub closest_handover_ms: Option<f64>,
    /// Clusters a replica wrote to again after another had, with the evidence that the
    /// cluster had moved back to it (the first few).
    pub moved_back: Vec<String>,
    pub moved_back_count: usize,
    /// Writes to target clusters by clients that are not controller replicas, by User-Agent.
    pub other_writers: BTreeMap<String, u64>,
    /// Clusters whose summary dropped runs or DELETEs at its bound: the check is incomplete
    /// there, so it fails.
    pub incomplete: Vec<String>,
    pub violations: Vec<String>,
    pub violation_count: usize,
}

impl WriterCheck {
    pub fn ok(&self) -> bool {
        self.violation_count == 0 && self.incomplete.is_empty()
    }

    fn violation(&mut self, v: String) {
        self.violation_count += 1;
        if self.violations.len() < LISTED {
            self.violations.push(v);
        }
    }
}

/// The replica in a User-Agent `flotilla-controller/<version> (<identity>)`.
pub fn replica_of(user_agent: &str) -> Option<&str> {
    user_agent
        .strip_prefix("flotilla-controller/")?
        .split_once(" (")?
        .1
        .strip_suffix(')')
}

/// A run of one replica's writes (after other clients' runs are taken out and neighbours of
/// one replica joined).
#[derive(Debug, Clone)]
struct Run {
    replica: String,
    first_start_us: u64,
    last_end_us: u64,
    writes: u64,
}

fn replica_runs(runs: &[WriteRun], out: &mut WriterCheck) -> Vec<Run> {
    let mut v: Vec<Run> = Vec::new();
    for r in runs {
        let Some(replica) = replica_of(&r.user_agent) else {
            *out.other_writers.entry(r.user_agent.clone()).or_default() += r.writes;
            continue;
        };
        match v.last_mut() {
            Some(last) if last.replica == replica => {
                last.first_start_us = last.first_start_us.min(r.first_start_us);
                last.last_end_us = last.last_end_us.max(r.last_end_us);
                last.writes += r.writes;
            }
            _ => v.push(Run {
                replica: replica.to_string(),
                first_start_us: r.first_start_us,
                last_end_us: r.last_end_us,
                writes: r.writes,
            }),
        }
    }
    v
}

/// Check every cluster of `clusters` in `summaries` against the ownership `timeline`.
///
/// * At once: two runs of different replicas whose spans (first arrival → last answer)
///   intersect. A run's span covers every write in it, so two writes in flight together are
///   always caught (the span may also cover gaps, which errs towards a violation).
/// * Again: replica A writes after replica B wrote after A's previous run. Allowed only if,
///   between B's first write of that stretch and A's return, A was seen acquiring the cluster
///   or the fleet's membership changed; otherwise a violation.
pub fn check(
    summaries: &BTreeMap<String, WriteSummary>,
    clusters: &BTreeSet<String>,
    timeline: &Timeline,
) -> WriterCheck {
    let mut out = WriterCheck::default();
    for name in clusters {
        let Some(summary) = summaries.get(name) else {
            out.incomplete.push(format!("{name}: no summary"));
            continue;
        };
        out.clusters_checked += 1;
        if summary.runs_dropped > 0 || summary.deletes_dropped > 0 {
            out.incomplete.push(format!(
                "{name}: {} runs and {} DELETEs beyond the summary's bounds",
                summary.runs_dropped, summary.deletes_dropped
            ));
        }
        let runs = replica_runs(&summary.runs, &mut out);
        out.writes += runs.iter().map(|r| r.writes).sum::<u64>();
        out.replicas.extend(runs.iter().map(|r| r.replica.clone()));
        out.handovers += runs.len().saturating_sub(1);
        for pair in runs.windows(2) {
            let gap = (pair[1].first_start_us as f64 - pair[0].last_end_us as f64) / 1000.0;
            out.closest_handover_ms = Some(out.closest_handover_ms.map_or(gap, |g| g.min(gap)));
        }
        for (j, b) in runs.iter().enumerate() {
            for a in runs[..j].iter().rev() {
                // Runs come in answer order: one that ended a minute before b began is
                // older than any write still in flight then, and so are the ones before it.
                if a.last_end_us.saturating_add(SCAN_BACK_US) < b.first_start_us {
                    break;
                }
                if a.replica != b.replica
                    && a.first_start_us < b.last_end_us
                    && b.first_start_us < a.last_end_us
                {
                    out.violation(format!(
                        "{name}: {} and {} wrote at once ({} wrote {}–{} µs, {} wrote {}–{} µs)",
                        a.replica,
                        b.replica,
                        a.replica,
                        a.first_start_us,
                        a.last_end_us,
                        b.replica,
                        b.first_start_us,
                        b.last_end_us
                    ));
                }
            }
            // Write-back: b's replica wrote before, and someone else since.
            let Some(prev) = runs[..j].iter().rposition(|r| r.replica == b.replica) else {
                continue;
            };
            let other = &runs[prev + 1];
            match timeline.explains(name, &b.replica, other.first_start_us, b.first_start_us) {
                Some(why) => {
                    out.moved_back_count += 1;
                    if out.moved_back.len() < LISTED {
                        out.moved_back.push(format!(
                            "{name}: back to {} at {} µs after {} from {} µs: {why}",
                            b.replica, b.first_start_us, other.replica, other.first_start_us
                        ));
                    }
                }
                None => out.violation(format!(
                    "{name}: {} wrote again at {} µs after {} had taken over at {} µs, with no ownership change seen in between",
                    b.replica, b.first_start_us, other.replica, other.first_start_us
                )),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(replica: &str, first: u64, last: u64) -> WriteRun {
        WriteRun {
            user: "sa".into(),
            user_agent: format!("flotilla-controller/0.1.0 ({replica})"),
            first_start_us: first,
            last_end_us: last,
            writes: 1,
        }
    }

    fn checked(runs: Vec<WriteRun>, timeline: &Timeline) -> WriterCheck {
        let summaries = [(
            "cluster-001".to_string(),
            WriteSummary {
                runs,
                ..WriteSummary::default()
            },
        )]
        .into();
        check(&summaries, &["cluster-001".to_string()].into(), timeline)
    }

    #[test]
    fn parses_the_controllers_user_agent() {
        assert_eq!(
            replica_of("flotilla-controller/0.1.0 (controller-3)"),
            Some("controller-3")
        );
        assert_eq!(replica_of("kubectl/v1.31"), None);
    }

    #[test]
    fn a_clean_handover_passes() {
        let c = checked(
            vec![run("c-0", 10, 20), run("c-0", 21, 30), run("c-1", 40, 50)],
            &Timeline::default(),
        );
        assert!(c.ok(), "{c:?}");
        assert_eq!((c.handovers, c.writes), (1, 3));
        assert_eq!(c.closest_handover_ms, Some(0.01), "30 µs → 40 µs");
    }

    #[test]
    fn overlapping_writers_fail_even_when_logged_in_order() {
        // c-1's write arrived before c-0's finished.
        let c = checked(
            vec![run("c-0", 10, 45), run("c-1", 40, 50)],
            &Timeline::default(),
        );
        assert!(!c.ok());
        assert!(c.violations[0].contains("wrote at once"), "{c:?}");
        // Other clients between two runs of one replica neither split nor hide them.
        let mut other = run("x", 0, 100);
        other.user_agent = "kubectl".into();
        let c = checked(
            vec![run("c-0", 10, 20), other, run("c-0", 30, 40)],
            &Timeline::default(),
        );
        assert!(c.ok(), "{c:?}");
        assert_eq!(c.other_writers["kubectl"], 1);
    }

    #[test]
    fn writing_again_after_a_takeover_needs_evidence() {
        let runs = || vec![run("c-0", 10, 20), run("c-1", 40, 50), run("c-0", 60, 70)];
        let c = checked(runs(), &Timeline::default());
        assert_eq!(c.violation_count, 1, "{c:?}");
        assert!(c.violations[0].contains("wrote again"), "{c:?}");
        let mut t = Timeline::default();
        t.action(45, 55, "stopped c-1".into());
        let c = checked(runs(), &t);
        assert!(c.ok(), "{c:?}");
        assert_eq!(c.moved_back_count, 1);
        let mut t = Timeline::default();
        t.action(5, 8, "long before".into());
        assert!(
            !checked(runs(), &t).ok(),
            "evidence must fall in the window"
        );
    }

    #[test]
    fn an_incomplete_summary_fails() {
        let summaries = [(
            "cluster-001".to_string(),
            WriteSummary {
                runs_dropped: 3,
                ..WriteSummary::default()
            },
        )]
        .into();
        let clusters = ["cluster-001".to_string(), "cluster-002".to_string()].into();
        let c = check(&summaries, &clusters, &Timeline::default());
        assert!(!c.ok());
        assert_eq!(c.incomplete.len(), 2, "{c:?}");
    }
}
