//! Per-cluster fault injection, changeable at run time: added latency, a rate of 500 and 429
//! answers, cutting every open watch, and making the whole cluster unreachable.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A snapshot of the faults in force, as the admin API reads and writes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultSpec {
    /// Added to every request before it is served.
    pub latency_ms: u64,
    /// Added to writes only (POST, PUT, PATCH, DELETE) before they take effect, like a slow
    /// admission webhook: reads stay fast while a write is held up.
    pub write_latency_ms: u64,
    /// Fraction (0.0–1.0) of requests answered 500 InternalError.
    pub error_rate: f64,
    /// Fraction (0.0–1.0) of requests answered 429 TooManyRequests.
    pub throttle_rate: f64,
    /// Connections are dropped on accept and open ones are closed.
    pub unreachable: bool,
}

/// The live fault switches of one cluster.
#[derive(Debug)]
pub struct Faults {
    latency_ms: AtomicU64,
    write_latency_ms: AtomicU64,
    error_per_million: AtomicU32,
    throttle_per_million: AtomicU32,
    unreachable: AtomicBool,
    /// Bumped to end every open watch (and, when unreachable, every connection).
    epoch: watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: AtomicU64::new(0),
            write_latency_ms: AtomicU64::new(0),
            error_per_million: AtomicU32::new(0),
            throttle_per_million: AtomicU32::new(0),
            unreachable: AtomicBool::new(false),
            epoch: watch::channel(0).0,
        }
    }
}

/// What a request should suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    None,
    Error,
    Throttle,
}

fn per_million(rate: f64) -> u32 {
    (rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u32
}

impl Faults {
    pub fn set(&self, spec: &FaultSpec) {
        self.latency_ms.store(spec.latency_ms, Ordering::Relaxed);
        self.write_latency_ms
            .store(spec.write_latency_ms, Ordering::Relaxed);
        self.error_per_million
            .store(per_million(spec.error_rate), Ordering::Relaxed);
        self.throttle_per_million
            .store(per_million(spec.throttle_rate), Ordering::Relaxed);
        let was = self.unreachable.swap(spec.unreachable, Ordering::SeqCst);
        if spec.unreachable && !was {
            self.cut();
        }
    }

    pub fn get(&self) -> FaultSpec {
        FaultSpec {
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
            write_latency_ms: self.write_latency_ms.load(Ordering::Relaxed),
            error_rate: f64::from(self.error_per_million.load(Ordering::Relaxed)) / 1e6,
            throttle_rate: f64::from(self.throttle_per_million.load(Ordering::Relaxed)) / 1e6,
            unreachable: self.unreachable.load(Ordering::Relaxed),
        }
    }

    pub fn is_unreachable(&self) -> bool {
        self.unreachable.load(Ordering::SeqCst)
    }

    /// End every open watch stream (and connection, while unreachable).
    pub fn cut(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    pub fn latency(&self) -> Option<Duration> {
        match self.latency_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub fn write_latency(&self) -> Option<Duration> {
        match self.write_latency_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Roll the dice for one request.
    pub fn roll(&self) -> Injected {
        let err = self.error_per_million.load(Ordering::Relaxed);
        let thr = self.throttle_per_million.load(Ordering::Relaxed);
        if err == 0 && thr == 0 {
            return Injected::None;
        }
        let x = rand::rng().random_range(0..1_000_000u32);
        if x < err {
            Injected::Error
        } else if x < err.saturating_add(thr) {
            Injected::Throttle
        } else {
            Injected::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_round_trip_and_full_rate_always_fires() {
        let f = Faults::default();
        f.set(&FaultSpec {
            error_rate: 1.0,
            ..Default::default()
        });
        assert_eq!(f.get().error_rate, 1.0);
        assert!((0..100).all(|_| f.roll() == Injected::Error));
        f.set(&FaultSpec::default());
        assert!((0..100).all(|_| f.roll() == Injected::None));
    }

    #[test]
    fn going_unreachable_cuts_open_streams() {
        let f = Faults::default();
        let rx = f.subscribe();
        f.set(&FaultSpec {
            unreachable: true,
            ..Default::default()
        });
        assert!(rx.has_changed().expect("sender alive"));
        assert!(f.is_unreachable());
    }
}
