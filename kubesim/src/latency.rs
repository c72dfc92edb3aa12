//! Realistic API behaviour per cluster: latency profiles (a log-normal delay per verb class,
//! LIST cost per item, delayed watch events) and APF-like per-client token buckets (429s).
//!
//! A profile is data ([`LatencyProfile`]: `none`, the built-in `realistic`, or a YAML file);
//! [`Latency`] is one cluster's live state: the seeded draw counter, the buckets and the
//! counters `stats()` reports. The sampling and the bucket are pure and tested here; `api.rs`
//! sleeps (asynchronously) where they say. With the `none` profile a cluster has no `Latency`
//! at all, so requests pay nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// z-score of the 99th percentile of a standard normal distribution.
const Z99: f64 = 2.326_347_874;
/// No single injected delay exceeds this (a guard against absurd profile values).
const MAX_DELAY: Duration = Duration::from_secs(60);

/// Errors reading a `--latency-profile`.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("reading latency profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("latency profile {path}: field `{field}`: {problem}")]
    Invalid {
        path: String,
        field: String,
        problem: String,
    },
}

/// One verb class's delay: log-normal with median `p50Ms` and 99th percentile
/// `p50Ms × tail` (`tail: 1` = always exactly `p50Ms`), plus `perItemUs` per returned item
/// (LIST only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Dist {
    pub p50_ms: f64,
    pub tail: f64,
    pub per_item_us: f64,
}

impl Default for Dist {
    fn default() -> Self {
        Self {
            p50_ms: 0.0,
            tail: 1.0,
            per_item_us: 0.0,
        }
    }
}

impl Dist {
    fn new(p50_ms: f64, tail: f64) -> Self {
        Self {
            p50_ms,
            tail,
            per_item_us: 0.0,
        }
    }

    fn is_zero(&self) -> bool {
        self.p50_ms <= 0.0 && self.per_item_us <= 0.0
    }

    /// The log-normal's σ: p99 / p50 = e^(σ·z99).
    fn sigma(&self) -> f64 {
        self.tail.max(1.0).ln() / Z99
    }

    /// The delay at standard-normal quantile `z` for `items` returned items.
    pub fn at(&self, z: f64, items: usize) -> Duration {
        let base = self.p50_ms * (self.sigma() * z).exp();
        let ms = base + self.per_item_us * items as f64 / 1000.0;
        if !ms.is_finite() || ms <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(ms / 1000.0).min(MAX_DELAY)
    }

    fn check(&self, field: &str, items_allowed: bool) -> Result<(), (String, String)> {
        let bad = |f: &str, p: &str| Err((format!("{field}.{f}"), p.to_string()));
        if !self.p50_ms.is_finite() || self.p50_ms < 0.0 {
            return bad("p50Ms", "must be a number ≥ 0 (milliseconds)");
        }
        if !self.tail.is_finite() || self.tail < 1.0 {
            return bad("tail", "must be ≥ 1 (p99 = p50 × tail; 1 = no tail)");
        }
        if !self.per_item_us.is_finite() || self.per_item_us < 0.0 {
            return bad("perItemUs", "must be a number ≥ 0 (microseconds per item)");
        }
        if self.per_item_us > 0.0 && !items_allowed {
            return bad("perItemUs", "only `list` returns items");
        }
        Ok(())
    }
}

/// APF-like limit: a token bucket of `qps` requests per second holding at most `burst`,
/// one per client identity per cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub qps: f64,
    pub burst: u32,
}

/// Verb classes with their own delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// GET of one object, and discovery.
    Get,
    List,
    /// Delivery of each watch event (establishing a watch is not delayed).
    Watch,
    /// create, update, patch (server-side apply included).
    Write,
    Delete,
}

/// A latency profile: what a cluster's API costs. All fields are optional in YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LatencyProfile {
    /// `none`, `realistic` or the file it came from (reports show it).
    #[serde(skip)]
    pub name: String,
    pub get: Dist,
    pub list: Dist,
    pub watch: Dist,
    pub write: Dist,
    pub delete: Dist,
    pub rate_limit: Option<RateLimit>,
    /// Seeds the delay draws (each cluster mixes in its index): the same request sequence
    /// gets the same delays.
    pub seed: u64,
}

impl Default for LatencyProfile {
    fn default() -> Self {
        Self::none()
    }
}

impl LatencyProfile {
    /// Today's behaviour: no delays, no limits.
    pub fn none() -> Self {
        Self {
            name: "none".into(),
            get: Dist::default(),
            list: Dist::default(),
            watch: Dist::default(),
            write: Dist::default(),
            delete: Dist::default(),
            rate_limit: None,
            seed: 0,
        }
    }

    /// A busy production API server: reads p50 5 ms, writes p50 15 ms, p99 = 5 × p50, LIST
    /// +20 µs per item, watch events p50 2 ms, 100 qps (burst 200) per client.
    pub fn realistic() -> Self {
        Self {
            name: "realistic".into(),
            get: Dist::new(5.0, 5.0),
            list: Dist {
                per_item_us: 20.0,
                ..Dist::new(5.0, 5.0)
            },
            watch: Dist::new(2.0, 5.0),
            write: Dist::new(15.0, 5.0),
            delete: Dist::new(15.0, 5.0),
            rate_limit: Some(RateLimit {
                qps: 100.0,
                burst: 200,
            }),
            seed: 0,
        }
    }

    /// `none`, `realistic`, or the path of a YAML profile.
    pub fn from_arg(arg: &str) -> Result<Self, ProfileError> {
        match arg {
            "" | "none" => Ok(Self::none()),
            "realistic" => Ok(Self::realistic()),
            path => {
                let text = std::fs::read_to_string(Path::new(path)).map_err(|source| {
                    ProfileError::Read {
                        path: path.into(),
                        source,
                    }
                })?;
                Self::parse(&text, path)
            }
        }
    }

    /// Parse and check a YAML profile (`origin` names it in errors and reports).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ProfileError> {
        let invalid = |field: String, problem: String| ProfileError::Invalid {
            path: origin.into(),
            field,
            problem,
        };
        let de = serde_yaml::Deserializer::from_str(text);
        let mut p: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            invalid(field, e.into_inner().to_string())
        })?;
        p.name = origin.into();
        p.check().map_err(|(f, problem)| invalid(f, problem))?;
        Ok(p)
    }

    fn check(&self) -> Result<(), (String, String)> {
        self.get.check("get", false)?;
        self.list.check("list", true)?;
        self.watch.check("watch", false)?;
        self.write.check("write", false)?;
        self.delete.check("delete", false)?;
        if let Some(r) = &self.rate_limit {
            if !r.qps.is_finite() || r.qps <= 0.0 {
                return Err(("rateLimit.qps".into(), "must be > 0".into()));
            }
            if r.burst == 0 {
                return Err(("rateLimit.burst".into(), "must be ≥ 1".into()));
            }
        }
        Ok(())
    }

    /// Delays nothing and limits nobody.
    pub fn is_none(&self) -> bool {
        self.rate_limit.is_none()
            && [
                &self.get,
                &self.list,
                &self.watch,
                &self.write,
                &self.delete,
            ]
            .iter()
            .all(|d| d.is_zero())
    }

    fn dist(&self, class: Class) -> &Dist {
        match class {
            Class::Get => &self.get,
            Class::List => &self.list,
            Class::Watch => &self.watch,
            Class::Write => &self.write,
            Class::Delete => &self.delete,
        }
    }
}

/// One client's token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn full(limit: &RateLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            last: now,
        }
    }

    /// Take one token at `now`, or say in how many whole seconds (≥ 1) one will be there.
    pub fn take(&mut self, limit: &RateLimit, now: Instant) -> Result<(), u32> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.qps).min(f64::from(limit.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - self.tokens) / limit.qps).ceil() as u32).max(1))
        }
    }
}

/// SplitMix64: a well-mixed 64-bit value for `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform value in (0, 1].
fn unit(x: u64) -> f64 {
    ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

/// One cluster's live latency and rate-limit state.
#[derive(Debug)]
pub struct Latency {
    profile: LatencyProfile,
    salt: u64,
    draws: AtomicU64,
    buckets: Mutex<HashMap<String, Bucket>>,
    requests_delayed: AtomicU64,
    request_delay_us: AtomicU64,
    events_delayed: AtomicU64,
    event_delay_us: AtomicU64,
    rate_limited: AtomicU64,
}

impl Latency {
    /// The state for the cluster with index `cluster` (`None` for a profile that does nothing).
    pub fn new(profile: &LatencyProfile, cluster: usize) -> Option<Self> {
        if profile.is_none() {
            return None;
        }
        Some(Self {
            profile: profile.clone(),
            salt: mix(profile.seed ^ mix(cluster as u64)),
            draws: AtomicU64::new(0),
            buckets: Mutex::new(HashMap::new()),
            requests_delayed: AtomicU64::new(0),
            request_delay_us: AtomicU64::new(0),
            events_delayed: AtomicU64::new(0),
            event_delay_us: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        })
    }

    pub fn profile(&self) -> &LatencyProfile {
        &self.profile
    }

    /// A standard-normal draw (Box–Muller over the seeded sequence).
    fn normal(&self) -> f64 {
        let k = self.draws.fetch_add(1, Ordering::Relaxed);
        let u1 = unit(mix(self.salt ^ k.wrapping_mul(2)));
        let u2 = unit(mix(self.salt ^ k.wrapping_mul(2).wrapping_add(1)));
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// The delay for one request (or watch event) of `class` returning `items` items, counted
    /// in the stats; `None` when the class costs nothing.
    pub fn delay(&self, class: Class, items: usize) -> Option<Duration> {
        let dist = self.profile.dist(class);
        if dist.is_zero() {
            return None;
        }
        let z = if dist.tail > 1.0 { self.normal() } else { 0.0 };
        let d = dist.at(z, items);
        let us = d.as_micros() as u64;
        if class == Class::Watch {
            self.events_delayed.fetch_add(1, Ordering::Relaxed);
            self.event_delay_us.fetch_add(us, Ordering::Relaxed);
        } else {
            self.requests_delayed.fetch_add(1, Ordering::Relaxed);
            self.request_delay_us.fetch_add(us, Ordering::Relaxed);
        }
        Some(d)
    }

    /// Whether watch events are delayed at all.
    pub fn delays_watch_events(&self) -> bool {
        !self.profile.watch.is_zero()
    }

    /// Admit one request of `client`, or answer the seconds to wait (the 429's Retry-After).
    pub fn admit(&self, client: &str) -> Result<(), u32> {
        let Some(limit) = &self.profile.rate_limit else {
            return Ok(());
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let bucket = match buckets.get_mut(client) {
            Some(b) => b,
            None => buckets
                .entry(client.to_string())
                .or_insert_with(|| Bucket::full(limit, now)),
        };
        let r = bucket.take(limit, now);
        if r.is_err() {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Counters for `Cluster::stats`.
    pub fn stats(&self) -> Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({"profile": self.profile.name,
               "requestsDelayed": n(&self.requests_delayed),
               "requestDelayMs": n(&self.request_delay_us) / 1000,
               "watchEventsDelayed": n(&self.events_delayed),
               "watchEventDelayMs": n(&self.event_delay_us) / 1000,
               "rateLimited": n(&self.rate_limited)})
    }

    /// What `stats` reports for a cluster without a profile.
    pub fn none_stats() -> Value {
        json!({"profile": "none", "requestsDelayed": 0, "requestDelayMs": 0,
               "watchEventsDelayed": 0, "watchEventDelayMs": 0, "rateLimited": 0})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_profile(yaml: &str) -> Result<LatencyProfile, ProfileError> {
        LatencyProfile::parse(yaml, "test.yaml")
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[test]
    fn median_is_p50_and_p99_is_p50_times_tail() {
        let d = Dist::new(5.0, 5.0);
        assert!((ms(d.at(0.0, 0)) - 5.0).abs() < 1e-6);
        assert!((ms(d.at(Z99, 0)) - 25.0).abs() < 1e-3);
        let fixed = Dist::new(20.0, 1.0);
        assert!((ms(fixed.at(3.0, 0)) - 20.0).abs() < 1e-6);
    }

    #[test]
    fn list_cost_grows_with_items() {
        let d = Dist {
            per_item_us: 20.0,
            ..Dist::new(5.0, 1.0)
        };
        assert!((ms(d.at(0.0, 1000)) - 25.0).abs() < 1e-6);
    }

    #[test]
    fn draws_are_deterministic_per_seed_and_follow_the_distribution() {
        let p = LatencyProfile::realistic();
        let a = Latency::new(&p, 1).expect("active");
        let b = Latency::new(&p, 1).expect("active");
        let xs: Vec<Duration> = (0..2000).filter_map(|_| a.delay(Class::Get, 0)).collect();
        let ys: Vec<Duration> = (0..2000).filter_map(|_| b.delay(Class::Get, 0)).collect();
        assert_eq!(xs, ys);
        let mut sorted = xs.clone();
        sorted.sort();
        let p50 = ms(sorted[1000]);
        let p99 = ms(sorted[1980]);
        assert!((4.0..6.5).contains(&p50), "p50 {p50}");
        assert!((15.0..40.0).contains(&p99), "p99 {p99}");
        let other = Latency::new(&p, 2).expect("active");
        let zs: Vec<Duration> = (0..20).filter_map(|_| other.delay(Class::Get, 0)).collect();
        assert_ne!(zs, xs[..20].to_vec(), "clusters draw differently");
    }

    #[test]
    fn none_profile_has_no_state() {
        assert!(Latency::new(&LatencyProfile::none(), 0).is_none());
        assert!(LatencyProfile::from_arg("none").expect("none").is_none());
    }

    #[test]
    fn bucket_allows_burst_then_says_when() {
        let limit = RateLimit { qps: 1.0, burst: 5 };
        let t0 = Instant::now();
        let mut b = Bucket::full(&limit, t0);
        for _ in 0..5 {
            assert_eq!(b.take(&limit, t0), Ok(()));
        }
        assert_eq!(b.take(&limit, t0), Err(1));
        assert_eq!(b.take(&limit, t0 + Duration::from_millis(1000)), Ok(()));
        let slow = RateLimit {
            qps: 0.25,
            burst: 1,
        };
        let mut b = Bucket::full(&slow, t0);
        assert_eq!(b.take(&slow, t0), Ok(()));
        assert_eq!(b.take(&slow, t0), Err(4));
    }

    #[test]
    fn clients_have_their_own_buckets() {
        let p = LatencyProfile {
            rate_limit: Some(RateLimit { qps: 1.0, burst: 1 }),
            ..LatencyProfile::none()
        };
        let l = Latency::new(&p, 0).expect("active");
        assert!(l.admit("alice").is_ok());
        assert!(l.admit("alice").is_err());
        assert!(l.admit("bob").is_ok());
        assert_eq!(l.stats()["rateLimited"], 1);
    }

    #[test]
    fn file_profile_parses_with_defaults() {
        let p = mk_profile("get: {p50Ms: 20}\nrateLimit: {qps: 1, burst: 5}\nseed: 7\n")
            .expect("valid");
        assert_eq!(p.get, Dist::new(20.0, 1.0));
        assert_eq!(p.write, Dist::default());
        assert_eq!(p.rate_limit, Some(RateLimit { qps: 1.0, burst: 5 }));
        assert_eq!(p.name, "test.yaml");
        assert!(!p.is_none());
    }

    #[test]
    fn bad_profile_errors_name_the_field() {
        for (yaml, field) in [
            ("get: {p50Ms: fast}\n", "get.p50Ms"),
            ("get: {p50: 5}\n", "get"),
            ("gett: {p50Ms: 5}\n", "gett"),
            ("write: {p50Ms: 5, tail: 0.5}\n", "write.tail"),
            ("get: {p50Ms: -1}\n", "get.p50Ms"),
            ("get: {perItemUs: 3}\n", "get.perItemUs"),
            ("rateLimit: {qps: 0, burst: 1}\n", "rateLimit.qps"),
            ("rateLimit: {qps: 1}\n", "rateLimit"),
        ] {
            let e = mk_profile(yaml).expect_err(yaml).to_string();
            assert!(e.contains(field), "{yaml:?}: {e}");
            assert!(e.contains("test.yaml"), "{e}");
        }
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let e = LatencyProfile::from_arg("/nonexistent/profile.yaml").expect_err("missing");
        assert!(matches!(e, ProfileError::Read { .. }), "{e}");
    }
}
