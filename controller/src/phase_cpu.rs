//! CPU time per reconcile phase (render fetch, live state, diff, sync, status write), read
//! from the thread's CPU clock around every poll, for `flotilla_reconcile_cpu_seconds_total`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// A part of a reconcile whose CPU is counted apart.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Phase {
    /// The whole reconcile, the phases below included.
    Reconcile,
    /// Resolving the revision and fetching the render (cache or repo-server).
    Render,
    /// Normalizing the desired objects and reading the live ones from the cluster cache.
    Live,
    /// Comparing desired with live.
    Diff,
    /// Running a sync operation (server-side applies, hooks, prunes).
    Sync,
    /// Writing the Application's status.
    Status,
}

impl Phase {
    /// The `phase` label.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Reconcile => "reconcile",
            Phase::Render => "render",
            Phase::Live => "live",
            Phase::Diff => "diff",
            Phase::Sync => "sync",
            Phase::Status => "status",
        }
    }
}

const PHASES: [Phase; 6] = [
    Phase::Reconcile,
    Phase::Render,
    Phase::Live,
    Phase::Diff,
    Phase::Sync,
    Phase::Status,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

type Seconds = Counter<f64, AtomicU64>;

/// The per-phase counters, looked up once.
#[derive(Clone, Default)]
pub struct PhaseCpu {
    family: Family<PhaseLabels, Seconds>,
    series: Vec<Seconds>,
}

impl PhaseCpu {
    pub fn new() -> Self {
        let family = Family::<PhaseLabels, Seconds>::default();
        let series = PHASES
            .iter()
            .map(|p| {
                family
                    .get_or_create(&PhaseLabels { phase: p.name() })
                    .clone()
            })
            .collect();
        Self { family, series }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "flotilla_reconcile_cpu_seconds",
            "CPU seconds spent in reconciles by phase (reconcile: the whole, phases included; \
             what the process spends outside reconciles, e.g. watches and HTTP I/O, is not here)",
            self.family.clone(),
        );
    }

    fn series(&self, phase: Phase) -> Option<&Seconds> {
        self.series.get(PHASES.iter().position(|p| *p == phase)?)
    }

    /// CPU seconds counted for `phase` so far.
    pub fn seconds(&self, phase: Phase) -> f64 {
        self.series(phase).map_or(0.0, Counter::get)
    }

    fn add(&self, phase: Phase, seconds: f64) {
        if let Some(s) = self.series(phase)
            && seconds > 0.0
        {
            s.inc_by(seconds);
        }
    }

    /// Run the synchronous `f`, counting its CPU to `phase`.
    pub fn scope<T>(&self, phase: Phase, f: impl FnOnce() -> T) -> T {
        let t0 = thread_cpu_seconds();
        let out = f();
        self.add(phase, thread_cpu_seconds() - t0);
        out
    }

    /// `fut`, counting the CPU of each of its polls to `phase`.
    pub fn timed<F: Future>(&self, phase: Phase, fut: F) -> Timed<F> {
        Timed {
            fut: Box::pin(fut),
            phase,
            cpu: self.clone(),
        }
    }
}

/// A future whose polls' CPU time is counted to a phase.
pub struct Timed<F> {
    fut: Pin<Box<F>>,
    phase: Phase,
    cpu: PhaseCpu,
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let t0 = thread_cpu_seconds();
        let out = self.fut.as_mut().poll(cx);
        let spent = thread_cpu_seconds() - t0;
        self.cpu.add(self.phase, spent);
        out
    }
}

/// This thread's CPU time (a poll runs on one thread from start to end).
fn thread_cpu_seconds() -> f64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spin until this thread has used `ms` of CPU (wall time would vary with the load).
    fn burn(ms: u64) -> u64 {
        let until = thread_cpu_seconds() + ms as f64 / 1000.0;
        let mut x = 0u64;
        while thread_cpu_seconds() < until {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        x
    }

    #[test]
    fn a_scope_counts_its_cpu_and_sleeping_costs_none() {
        let cpu = PhaseCpu::new();
        cpu.scope(Phase::Diff, || burn(30));
        cpu.scope(Phase::Status, || {
            std::thread::sleep(std::time::Duration::from_millis(30))
        });
        assert!(
            cpu.seconds(Phase::Diff) >= 0.03,
            "{}",
            cpu.seconds(Phase::Diff)
        );
        assert!(
            cpu.seconds(Phase::Status) < 0.01,
            "{}",
            cpu.seconds(Phase::Status)
        );
        assert_eq!(cpu.seconds(Phase::Render), 0.0);
    }

    #[tokio::test]
    async fn a_timed_future_counts_its_polls_but_not_its_waits() {
        let cpu = PhaseCpu::new();
        cpu.timed(Phase::Sync, async {
            burn(20);
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
            burn(20);
        })
        .await;
        let s = cpu.seconds(Phase::Sync);
        // 40 ms burnt; the 40 ms asleep cost (next to) nothing.
        assert!((0.04..0.07).contains(&s), "{s}");
        // Nested: the outer phase includes the inner one.
        cpu.timed(
            Phase::Reconcile,
            cpu.timed(Phase::Render, async { burn(20) }),
        )
        .await;
        assert!(cpu.seconds(Phase::Reconcile) >= cpu.seconds(Phase::Render));
        assert!(cpu.seconds(Phase::Render) >= 0.02);
    }
}
