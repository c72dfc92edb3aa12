//! The chaos and soak parts of the report: what each phase measured and checked (JSON), how
//! flat a series stayed, and their Markdown sections.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::inventory::PruneCheck;
use super::report::{Percentiles, ms, opt};
use super::writers::WriterCheck;

/// One fault of the chaos phase and how the fleet recovered from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChaosFaultResult {
    /// The fault and its victim (`KillController { replica: 1 } → controller-1`).
    pub fault: String,
    /// Push → injection.
    pub at_seconds: f64,
    /// Applications Synced and Healthy at the new commit when it was injected.
    pub apps_at_commit: usize,
    /// Applications that depended on what failed and were not at the commit yet (a
    /// controller: those on its clusters; a cluster's watches: those on it; else all of them).
    pub affected_apps: usize,
    /// Injection → the next application reaching the commit.
    pub progress_resumed_seconds: Option<f64>,
    /// What "restored" means for this fault (empty: nothing beyond the applications).
    pub restored: String,
    /// Injection → restored.
    pub restored_seconds: Option<f64>,
    /// Injection → the last affected application Synced and Healthy at the commit.
    pub recovered_seconds: Option<f64>,
}

/// The chaos phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChaosReport {
    pub passed: bool,
    pub problems: Vec<String>,
    /// The commit (of the first repository) that changed every application.
    pub commit: String,
    pub applications: usize,
    /// Push → the webhook's answer (it asks every application for a refresh first).
    pub webhook_seconds: Option<f64>,
    /// Push → every application Synced and Healthy at the commit.
    pub all_apps_seconds: Option<f64>,
    /// Per application: push → Synced and Healthy at the commit.
    pub per_app: Percentiles,
    /// Applications Synced and Healthy at the commit at the end.
    pub apps_at_commit: usize,
    pub faults: Vec<ChaosFaultResult>,
    /// (seconds since the push, applications at the commit), for `rollout.svg`.
    pub rollout: Vec<(f64, usize)>,
    pub writers: WriterCheck,
    pub prune: PruneCheck,
}

/// A replica restart of the soak.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Restart {
    /// Seconds since the soak began.
    pub at_seconds: f64,
    /// `SIGTERM` or `kill -9`.
    pub how: String,
    pub victim: String,
    pub replacement: String,
    /// The restart → every cluster owned by a running replica again, stable over two reads.
    pub owned_again_seconds: Option<f64>,
}

/// One reading of the controllers during the soak.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SoakSample {
    /// Seconds since the soak began.
    pub t: f64,
    /// Per running replica: resident memory (MiB).
    pub rss_mib: BTreeMap<String, f64>,
    /// Per running replica: CPU since its previous reading (% of one core).
    pub cpu_percent: BTreeMap<String, f64>,
    pub total_rss_mib: f64,
    pub total_cpu_percent: f64,
}

/// Whether a series stayed flat: the median over the final window against the median over the
/// baseline window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Flatness {
    /// (from, to) seconds since the soak began.
    pub baseline_window: (f64, f64),
    pub final_window: (f64, f64),
    pub baseline_median: f64,
    pub final_median: f64,
    pub baseline_samples: usize,
    pub final_samples: usize,
    /// (final − baseline) / baseline, in percent.
    pub growth_percent: f64,
    /// The largest growth allowed (none: reported only).
    pub limit_percent: Option<f64>,
    pub flat: bool,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    })
}

impl Flatness {
    /// Compare `points` (t, value) in the two windows; not flat when a window holds no point
    /// or growth exceeds `limit_percent`.
    pub fn measure(
        points: &[(f64, f64)],
        baseline_window: (f64, f64),
        final_window: (f64, f64),
        limit_percent: Option<f64>,
    ) -> Self {
        let within = |(from, to): (f64, f64)| -> Vec<f64> {
            points
                .iter()
                .filter(|(t, _)| *t >= from && *t <= to)
                .map(|(_, v)| *v)
                .collect()
        };
        let (base, last) = (within(baseline_window), within(final_window));
        let (baseline_samples, final_samples) = (base.len(), last.len());
        let (b, f) = (median(base), median(last));
        let growth_percent = match (b, f) {
            (Some(b), Some(f)) if b > 0.0 => (f - b) / b * 100.0,
            _ => 0.0,
        };
        Self {
            baseline_window,
            final_window,
            baseline_median: b.unwrap_or(0.0),
            final_median: f.unwrap_or(0.0),
            baseline_samples,
            final_samples,
            growth_percent,
            limit_percent,
            flat: b.is_some() && f.is_some() && limit_percent.is_none_or(|l| growth_percent <= l),
        }
    }
}

/// The soak phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SoakReport {
    pub passed: bool,
    pub problems: Vec<String>,
    pub duration_seconds: f64,
    /// Webhook commits, and per changed application push → live.
    pub commits: usize,
    pub commit_failures: usize,
    pub commit_latency: Percentiles,
    /// Applications created (with the resources finalizer): created → Synced and Healthy.
    pub created: usize,
    pub create_latency: Percentiles,
    /// Applications deleted: delete → the Application gone (its objects deleted first).
    pub deleted: usize,
    pub delete_latency: Percentiles,
    pub restarts: Vec<Restart>,
    /// The controllers' total RSS (MiB).
    pub memory: Flatness,
    /// The controllers' total CPU (% of one core).
    pub cpu: Flatness,
    pub samples: Vec<SoakSample>,
    pub writers: WriterCheck,
    pub prune: PruneCheck,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "passed" } else { "FAILED" }
}

/// The writers' and pruning checks' rows.
fn checks(o: &mut String, w: &WriterCheck, p: &PruneCheck) {
    let _ = writeln!(
        o,
        "| no cluster written by two replicas at once | {}: {} clusters, {} controller writes by {} replicas, {} hand-overs (closest: {}), {} moves back explained, {} violations{} |",
        verdict(w.ok()),
        w.clusters_checked,
        w.writes,
        w.replicas.len(),
        w.handovers,
        w.closest_handover_ms.map_or_else(
            || "n/a".to_string(),
            |g| format!("{g:.0} ms between writers")
        ),
        w.moved_back_count,
        w.violation_count,
        if w.incomplete.is_empty() {
            String::new()
        } else {
            format!("; incomplete: {}", w.incomplete.join(", "))
        }
    );
    let _ = writeln!(
        o,
        "| nothing pruned by mistake | {}: {}/{} application objects found, {} missing, {} left over; {} DELETEs ({} of deleted apps, {} wrong){} |",
        verdict(p.ok()),
        p.objects_found,
        p.objects_expected,
        p.missing_count,
        p.left_over_count,
        p.deletes,
        p.deletes_of_deleted_apps,
        p.wrong_delete_count,
        if p.count_changes.is_empty() {
            String::new()
        } else {
            format!("; object counts changed: {}", p.count_changes.join(", "))
        }
    );
}

/// The listed findings of both checks, as bullets.
fn findings(o: &mut String, w: &WriterCheck, p: &PruneCheck) {
    let lists: [(&str, &Vec<String>); 5] = [
        ("two writers", &w.violations),
        ("missing", &p.missing),
        ("left over", &p.left_over),
        ("wrong DELETE", &p.wrong_deletes),
        ("moved back (explained)", &w.moved_back),
    ];
    for (what, list) in lists {
        for item in list.iter().take(10) {
            let _ = writeln!(o, "- {what}: {item}");
        }
    }
}

impl ChaosReport {
    /// The `## Chaos` section.
    pub fn markdown(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "\n## Chaos: {}\n\nOne commit changed all {} applications (`{}`), announced by webhook; faults were injected while it rolled out.\n\n| measure | value |\n|---|---|",
            verdict(self.passed),
            self.applications,
            &self.commit[..self.commit.len().min(8)]
        );
        let _ = writeln!(
            o,
            "| push → every application Synced and Healthy at the commit | {} ({}/{} apps) |",
            opt(self.all_apps_seconds),
            self.apps_at_commit,
            self.applications
        );
        let _ = writeln!(
            o,
            "| per application, push → at the commit | {} |",
            ms(&self.per_app)
        );
        let _ = writeln!(
            o,
            "| push → the webhook's answer | {} |",
            opt(self.webhook_seconds)
        );
        checks(o, &self.writers, &self.prune);
        let _ = writeln!(
            o,
            "\n| fault | injected at | apps at the commit then | affected apps | progress resumed after | restored | recovered (affected apps at the commit) after |\n|---|---|---|---|---|---|---|"
        );
        for f in &self.faults {
            let _ = writeln!(
                o,
                "| {} | {:.1} s | {} | {} | {} | {} | {} |",
                f.fault,
                f.at_seconds,
                f.apps_at_commit,
                f.affected_apps,
                opt(f.progress_resumed_seconds),
                if f.restored.is_empty() {
                    "—".to_string()
                } else {
                    format!("{} after {}", f.restored, opt(f.restored_seconds))
                },
                opt(f.recovered_seconds)
            );
        }
        o.push('\n');
        for p in &self.problems {
            let _ = writeln!(o, "- **problem**: {p}");
        }
        findings(o, &self.writers, &self.prune);
    }
}

impl SoakReport {
    /// The `## Soak` section.
    pub fn markdown(&self, o: &mut String) {
        let flat = |f: &Flatness, unit: &str| {
            format!(
                "{}: median {:.1} {unit} over {:.0}–{:.0} s, {:.1} {unit} over {:.0}–{:.0} s: {:+.1} % (limit {})",
                if f.flat { "flat" } else { "NOT flat" },
                f.baseline_median,
                f.baseline_window.0,
                f.baseline_window.1,
                f.final_median,
                f.final_window.0,
                f.final_window.1,
                f.growth_percent,
                f.limit_percent
                    .map_or_else(|| "none".to_string(), |l| format!("{l:.0} %"))
            )
        };
        let _ = writeln!(
            o,
            "\n## Soak: {}\n\n{:.0} s of churn.\n\n| measure | value |\n|---|---|",
            verdict(self.passed),
            self.duration_seconds
        );
        let _ = writeln!(
            o,
            "| controllers' total memory | {} |",
            flat(&self.memory, "MiB")
        );
        let _ = writeln!(
            o,
            "| controllers' total CPU | {} |",
            flat(&self.cpu, "% of a core")
        );
        let _ = writeln!(
            o,
            "| webhook commits: push → changed apps live | {} commits, {} failed; {} |",
            self.commits,
            self.commit_failures,
            ms(&self.commit_latency)
        );
        let _ = writeln!(
            o,
            "| apps created → Synced and Healthy | {} apps; {} |",
            self.created,
            ms(&self.create_latency)
        );
        let _ = writeln!(
            o,
            "| apps deleted → gone with their objects | {} apps; {} |",
            self.deleted,
            ms(&self.delete_latency)
        );
        checks(o, &self.writers, &self.prune);
        if !self.restarts.is_empty() {
            let _ = writeln!(
                o,
                "\n| restart at | how | victim | replacement | every cluster owned again after |\n|---|---|---|---|---|"
            );
            for r in &self.restarts {
                let _ = writeln!(
                    o,
                    "| {:.0} s | {} | {} | {} | {} |",
                    r.at_seconds,
                    r.how,
                    r.victim,
                    r.replacement,
                    opt(r.owned_again_seconds)
                );
            }
        }
        o.push('\n');
        for p in &self.problems {
            let _ = writeln!(o, "- **problem**: {p}");
        }
        findings(o, &self.writers, &self.prune);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatness_compares_window_medians() {
        let points: Vec<(f64, f64)> = (0..100)
            .map(|t| (f64::from(t), if t < 50 { 100.0 } else { 110.0 }))
            .collect();
        let f = Flatness::measure(&points, (10.0, 40.0), (60.0, 99.0), Some(15.0));
        assert_eq!((f.baseline_median, f.final_median), (100.0, 110.0));
        assert!((f.growth_percent - 10.0).abs() < 1e-9);
        assert!(f.flat);
        let f = Flatness::measure(&points, (10.0, 40.0), (60.0, 99.0), Some(5.0));
        assert!(!f.flat, "10 % is over a 5 % limit");
        assert!(Flatness::measure(&points, (10.0, 40.0), (60.0, 99.0), None).flat);
        let empty = Flatness::measure(&points, (200.0, 300.0), (60.0, 99.0), None);
        assert!(!empty.flat, "a window without samples proves nothing");
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), Some(2.5));
    }

    #[test]
    fn sections_say_failed_and_why() {
        let mut c = ChaosReport {
            commit: "0123456789".into(),
            applications: 10,
            problems: vec!["cluster-003: c-0 and c-1 wrote at once".into()],
            ..Default::default()
        };
        c.writers.violation_count = 1;
        let mut o = String::new();
        c.markdown(&mut o);
        assert!(o.contains("## Chaos: FAILED"), "{o}");
        assert!(o.contains("wrote at once"), "{o}");
        let k = SoakReport {
            passed: true,
            ..Default::default()
        };
        let mut o = String::new();
        k.markdown(&mut o);
        assert!(o.contains("## Soak: passed"), "{o}");
    }
}
