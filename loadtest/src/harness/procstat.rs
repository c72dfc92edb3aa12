//! CPU time and memory of the fleet's processes, read from `/proc/<pid>/stat` and
//! `/proc/<pid>/status` (Linux), sampled so killed processes keep their last numbers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc` CPU times (USER_HZ: 100 on every Linux architecture
/// that matters; it is part of the kernel's user-space ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// User + system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// Resident memory now, bytes.
    pub rss_bytes: u64,
    /// Peak resident memory (VmHWM), bytes.
    pub peak_rss_bytes: u64,
}

/// Read one process; `None` when it is gone.
pub fn read(pid: u32) -> Option<Reading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the state.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Some(Reading {
        cpu_seconds: (utime + stime) / TICKS_PER_SECOND,
        rss_bytes: kib("VmRSS:"),
        peak_rss_bytes: kib("VmHWM:"),
    })
}

/// Last readings of named processes (a process that exits keeps its last reading).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Usage {
    pub processes: BTreeMap<String, Reading>,
}

impl Usage {
    /// Take a reading of each (name, pid).
    pub fn sample(&mut self, procs: &[(String, u32)]) {
        for (name, pid) in procs {
            if let Some(r) = read(*pid) {
                let e = self.processes.entry(name.clone()).or_default();
                e.cpu_seconds = r.cpu_seconds;
                e.rss_bytes = r.rss_bytes;
                e.peak_rss_bytes = e.peak_rss_bytes.max(r.peak_rss_bytes);
            }
        }
    }

    /// Readings of the processes whose name starts with `prefix`.
    fn matching<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Reading> + 'a {
        self.processes
            .iter()
            .filter(move |(n, _)| n.starts_with(prefix))
            .map(|(_, r)| r)
    }

    /// Sum of CPU seconds over processes whose name starts with `prefix`.
    pub fn cpu(&self, prefix: &str) -> f64 {
        self.matching(prefix)
            .map(|r| r.cpu_seconds)
            // fold from +0.0: an empty f64 sum is -0.0, printed as "-0.0".
            .fold(0.0, |a, b| a + b)
    }

    /// Sum of peak RSS over processes whose name starts with `prefix`.
    pub fn peak_rss(&self, prefix: &str) -> u64 {
        self.matching(prefix).map(|r| r.peak_rss_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_cpu_moves_with_work() {
        let me = std::process::id();
        let a = read(me).expect("own /proc entry");
        assert!(a.rss_bytes > 0 && a.peak_rss_bytes >= a.rss_bytes);
        // Burn about 0.3 s of CPU.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = read(me).expect("own /proc entry");
        assert!(
            b.cpu_seconds - a.cpu_seconds >= 0.1,
            "{} -> {}",
            a.cpu_seconds,
            b.cpu_seconds
        );
        assert!(read(u32::MAX).is_none(), "no such process");
    }
}
