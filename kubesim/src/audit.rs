//! The request log of one cluster: a bounded record of who did what and when, plus unbounded
//! counters per identity and verb and a summary of writers that outlives the log's bound.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One served request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub seq: u64,
    /// Unix microseconds when the request arrived / was answered (watches: when started).
    pub start_us: u64,
    pub end_us: u64,
    /// The authenticated user (from the bearer token), or `anonymous`.
    pub user: String,
    pub user_agent: String,
    /// get, list, watch, create, update, patch, delete, deletecollection, discovery.
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
    pub code: u16,
}

impl RequestRecord {
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// Whether `r` asks to change something: the write verbs, and the raw methods recorded for
/// subresources (`put`/`post` on `scale`).
fn mutates(r: &RequestRecord) -> bool {
    r.is_write() || matches!(r.verb.as_str(), "put" | "post")
}

/// Consecutive writes (in the order their answers were logged) by one client — one user with
/// one User-Agent. A new run starts whenever another client writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteRun {
    pub user: String,
    pub user_agent: String,
    /// Earliest arrival of the run's writes (Unix µs).
    pub first_start_us: u64,
    /// Latest answer of the run's writes (Unix µs).
    pub last_end_us: u64,
    pub writes: u64,
}

/// Who wrote, in order, kept apart from the bounded log so a long run can still be checked for
/// two writers at once: runs of writes per client and every DELETE, each under a bound that is
/// counted when hit (a summary with anything dropped is incomplete).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WriteSummary {
    /// Every write request (whatever its answer), oldest run first.
    pub runs: Vec<WriteRun>,
    /// Runs not kept because [`MAX_RUNS`] were kept already.
    pub runs_dropped: u64,
    /// Every `delete` and `deletecollection` request, oldest first.
    pub deletes: Vec<RequestRecord>,
    /// DELETEs not kept because [`MAX_DELETES`] were kept already.
    pub deletes_dropped: u64,
    /// Write requests summarised.
    pub writes: u64,
    /// Records the bounded log has let go of so far (its early history is gone when > 0).
    pub log_evicted: u64,
}

/// Bound on [`WriteSummary::runs`] per cluster: writers change hands a handful of times per
/// fault, so this is only reached when two writers alternate constantly.
pub const MAX_RUNS: usize = 100_000;
/// Bound on [`WriteSummary::deletes`] per cluster.
pub const MAX_DELETES: usize = 100_000;

/// Bounded log plus unbounded counters and the writers' summary.
#[derive(Debug)]
pub struct RequestLog {
    cap: usize,
    seq: AtomicU64,
    records: Mutex<VecDeque<RequestRecord>>,
    counters: Mutex<BTreeMap<(String, String), u64>>,
    writers: Mutex<WriteSummary>,
    evicted: AtomicU64,
}

impl RequestLog {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            seq: AtomicU64::new(0),
            records: Mutex::new(VecDeque::new()),
            counters: Mutex::new(BTreeMap::new()),
            writers: Mutex::new(WriteSummary::default()),
            evicted: AtomicU64::new(0),
        }
    }

    pub fn record(&self, mut r: RequestRecord) {
        r.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        *self
            .counters
            .lock()
            .entry((r.user.clone(), r.verb.clone()))
            .or_default() += 1;
        if mutates(&r) {
            self.summarise(&r);
        }
        if self.cap == 0 {
            self.evicted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut recs = self.records.lock();
        recs.push_back(r);
        while recs.len() > self.cap {
            recs.pop_front();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Add write `r` to the writers' summary.
    fn summarise(&self, r: &RequestRecord) {
        let mut w = self.writers.lock();
        w.writes += 1;
        let full = w.runs.len() >= MAX_RUNS;
        match w.runs.last_mut() {
            Some(run) if run.user == r.user && run.user_agent == r.user_agent => {
                run.first_start_us = run.first_start_us.min(r.start_us);
                run.last_end_us = run.last_end_us.max(r.end_us);
                run.writes += 1;
            }
            _ if full => w.runs_dropped += 1,
            _ => w.runs.push(WriteRun {
                user: r.user.clone(),
                user_agent: r.user_agent.clone(),
                first_start_us: r.start_us,
                last_end_us: r.end_us,
                writes: 1,
            }),
        }
        if matches!(r.verb.as_str(), "delete" | "deletecollection") {
            if w.deletes.len() >= MAX_DELETES {
                w.deletes_dropped += 1;
            } else {
                w.deletes.push(r.clone());
            }
        }
    }

    /// The writers' summary since start (not bounded by the log's capacity).
    pub fn writers(&self) -> WriteSummary {
        let mut w = self.writers.lock().clone();
        w.log_evicted = self.evicted.load(Ordering::Relaxed);
        w
    }

    /// Records with `seq > since`, oldest first.
    pub fn since(&self, since: u64) -> Vec<RequestRecord> {
        self.records
            .lock()
            .iter()
            .filter(|r| r.seq > since)
            .cloned()
            .collect()
    }

    /// `(user, verb) → count` since start.
    pub fn counters(&self) -> BTreeMap<(String, String), u64> {
        self.counters.lock().clone()
    }

    pub fn total(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_record(user: &str, verb: &str) -> RequestRecord {
        RequestRecord {
            seq: 0,
            start_us: 1,
            end_us: 2,
            user: user.into(),
            user_agent: "test".into(),
            verb: verb.into(),
            group: String::new(),
            resource: "configmaps".into(),
            namespace: "default".into(),
            name: "x".into(),
            subresource: String::new(),
            code: 200,
        }
    }

    #[test]
    fn log_is_bounded_but_counters_are_not() {
        let log = RequestLog::new(2);
        for _ in 0..5 {
            log.record(mk_record("alice", "patch"));
        }
        log.record(mk_record("bob", "get"));
        assert_eq!(log.since(0).len(), 2);
        assert_eq!(log.since(5).len(), 1);
        assert_eq!(log.counters()[&("alice".into(), "patch".into())], 5);
        assert!(log.since(0).iter().any(RequestRecord::is_write));
        assert_eq!(log.writers().log_evicted, 4);
    }

    fn timed(user_agent: &str, verb: &str, start_us: u64, end_us: u64) -> RequestRecord {
        RequestRecord {
            start_us,
            end_us,
            user_agent: user_agent.into(),
            ..mk_record("sa", verb)
        }
    }

    #[test]
    fn writers_summary_keeps_runs_and_deletes_past_the_log_bound() {
        let log = RequestLog::new(1);
        log.record(timed("a", "patch", 10, 20));
        log.record(timed("a", "get", 21, 22));
        log.record(timed("a", "create", 5, 30));
        log.record(timed("b", "patch", 40, 50));
        log.record(timed("b", "delete", 51, 52));
        log.record(timed("a", "patch", 60, 70));
        let w = log.writers();
        let runs: Vec<(&str, u64, u64, u64)> = w
            .runs
            .iter()
            .map(|r| {
                (
                    r.user_agent.as_str(),
                    r.first_start_us,
                    r.last_end_us,
                    r.writes,
                )
            })
            .collect();
        assert_eq!(
            runs,
            [("a", 5, 30, 2), ("b", 40, 52, 2), ("a", 60, 70, 1)],
            "reads do not split or join runs"
        );
        assert_eq!(w.writes, 5);
        assert_eq!(w.deletes.len(), 1);
        assert_eq!(w.deletes[0].user_agent, "b");
        assert_eq!((w.runs_dropped, w.deletes_dropped), (0, 0));
        assert_eq!(w.log_evicted, 5, "the log kept one record");
    }

    #[test]
    fn writers_summary_counts_what_its_bounds_drop() {
        let log = RequestLog::new(0);
        for i in 0..=MAX_RUNS as u64 {
            let who = if i % 2 == 0 { "a" } else { "b" };
            log.record(timed(who, "delete", i, i));
        }
        let w = log.writers();
        assert_eq!(w.runs.len(), MAX_RUNS);
        assert_eq!(w.runs_dropped, 1, "an incomplete summary says so");
        assert_eq!(w.deletes.len(), MAX_DELETES);
        assert_eq!(w.deletes_dropped, (MAX_RUNS + 1 - MAX_DELETES) as u64);
    }
}
