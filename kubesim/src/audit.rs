//! The request log of one cluster: a bounded record of who did what and when, plus counters
//! per client identity and verb, so tests can assert who wrote what and when.

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

/// Bounded log plus unbounded counters.
#[derive(Debug)]
pub struct RequestLog {
    cap: usize,
    seq: AtomicU64,
    records: Mutex<VecDeque<RequestRecord>>,
    counters: Mutex<BTreeMap<(String, String), u64>>,
}

impl RequestLog {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            seq: AtomicU64::new(0),
            records: Mutex::new(VecDeque::new()),
            counters: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn record(&self, mut r: RequestRecord) {
        r.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        *self
            .counters
            .lock()
            .entry((r.user.clone(), r.verb.clone()))
            .or_default() += 1;
        if self.cap == 0 {
            return;
        }
        let mut recs = self.records.lock();
        recs.push_back(r);
        while recs.len() > self.cap {
            recs.pop_front();
        }
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
    }
}
