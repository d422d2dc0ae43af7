//! A fault set compiled for the request path, and the decision it makes for one request (http)
//! or connection (tcp).
//!
//! Order: the faults are walked in list order. `abort`, `reset` and `blackhole` decide the
//! request's fate: the first of them that hits wins and the rest of them are not rolled. If one
//! hit, the request does not pass, so no `latency` or `bandwidth` applies to it. Otherwise every
//! `latency` that hits adds its delay (at its point, request or response) and the smallest
//! `bandwidth` that hits limits the request's bodies (http) or the connection (tcp). Each fault
//! rolls its own dice for its `percent`, independently, after its `match` (a fault whose match
//! fails is not rolled and does not apply).
//!
//! Dice: each request gets its own generator, seeded from the set's seed, the connection's
//! number (in accept order, from 0) and the request's number on its connection (from 0). The
//! same seed and the same requests on the same connections give the same faults, whatever the
//! interleaving of connections; and no lock is shared between requests.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::faults::FaultSet;
use crate::api::fault::{Fault, FaultType, JitterDistribution, LatencyPoint};

/// The cap on one jitter draw, as a multiple of `jitter` (pareto only reaches it, once in about
/// 10 000 draws).
pub const JITTER_CAP: f64 = 100.0;

/// The faults of a set, ready for the request path (nothing is allocated per request).
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    faults: Vec<Compiled>,
    seed: u64,
}

#[derive(Clone, Debug)]
struct Compiled {
    kind: FaultType,
    /// A draw below this hits; `None` always hits (100 %).
    threshold: Option<u64>,
    matcher: Option<Matcher>,
    latency: Option<Latency>,
    abort: Option<(StatusCode, Bytes)>,
    bandwidth: Option<u64>,
}

#[derive(Clone, Debug)]
struct Matcher {
    path_prefix: Option<String>,
    method: Option<Method>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Clone, Copy, Debug)]
struct Latency {
    delay: Duration,
    jitter: Duration,
    distribution: JitterDistribution,
    point: LatencyPoint,
}

/// What a request (or connection) is: the parts a `match` looks at. TCP has none.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

/// The fate of one request or connection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub action: FaultAction,
    /// Waited before forwarding (http) or before connecting upstream (tcp).
    pub request_delay: Duration,
    /// Waited before returning the response head (http) or the first upstream bytes (tcp).
    pub response_delay: Duration,
    /// Bytes per second, each direction.
    pub bandwidth: Option<u64>,
    /// How many faults of each type applied, indexed by [`type_index`].
    pub applied: [u8; 5],
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum FaultAction {
    #[default]
    Pass,
    Abort {
        status: StatusCode,
        body: Bytes,
    },
    Reset,
    Blackhole,
}

impl Decision {
    /// Whether any fault applied.
    pub fn faulted(&self) -> bool {
        self.applied.iter().any(|n| *n > 0)
    }
}

/// The fault types in the order of [`Decision::applied`] and the stats.
pub const TYPES: [FaultType; 5] =
    [FaultType::Latency, FaultType::Abort, FaultType::Reset, FaultType::Blackhole, FaultType::Bandwidth];

pub fn type_index(kind: FaultType) -> usize {
    match kind {
        FaultType::Latency => 0,
        FaultType::Abort => 1,
        FaultType::Reset => 2,
        FaultType::Blackhole => 3,
        FaultType::Bandwidth => 4,
    }
}

impl FaultPlan {
    /// Compiles a validated set with the seed its dice use.
    pub fn compile(set: &FaultSet, seed: u64) -> FaultPlan {
        FaultPlan { faults: set.faults.iter().map(compile).collect(), seed }
    }

    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// The decision for request `request` (from 0) of connection `connection` (from 0), with
    /// `view` in http mode and `None` in tcp mode.
    pub fn decide(&self, connection: u64, request: u64, view: Option<&RequestView<'_>>) -> Decision {
        let mut decision = Decision::default();
        if self.faults.is_empty() {
            return decision;
        }
        let mut rng = SplitMix64::for_request(self.seed, connection, request);
        let mut decided = false;
        for fault in &self.faults {
            let terminal = matches!(fault.kind, FaultType::Abort | FaultType::Reset | FaultType::Blackhole);
            if terminal && decided {
                continue;
            }
            if let Some(m) = &fault.matcher
                && !view.is_some_and(|v| m.matches(v))
            {
                continue;
            }
            if fault.threshold.is_some_and(|t| rng.next_u64() >= t) {
                continue;
            }
            match fault.kind {
                FaultType::Abort => {
                    if let Some((status, body)) = &fault.abort {
                        decision.action = FaultAction::Abort { status: *status, body: body.clone() };
                    }
                }
                FaultType::Reset => decision.action = FaultAction::Reset,
                FaultType::Blackhole => decision.action = FaultAction::Blackhole,
                FaultType::Latency => {
                    if let Some(l) = &fault.latency {
                        let delay = total_delay(l.delay, l.jitter, l.distribution, &mut rng);
                        match l.point {
                            LatencyPoint::Request => decision.request_delay += delay,
                            LatencyPoint::Response => decision.response_delay += delay,
                        }
                    }
                }
                FaultType::Bandwidth => {
                    if let Some(rate) = fault.bandwidth {
                        decision.bandwidth = Some(decision.bandwidth.map_or(rate, |r| r.min(rate)));
                    }
                }
            }
            decided |= terminal;
            let n = &mut decision.applied[type_index(fault.kind)];
            *n = n.saturating_add(1);
        }
        if decided {
            // What does not pass is not shaped.
            decision.request_delay = Duration::ZERO;
            decision.response_delay = Duration::ZERO;
            decision.bandwidth = None;
            decision.applied[type_index(FaultType::Latency)] = 0;
            decision.applied[type_index(FaultType::Bandwidth)] = 0;
        }
        decision
    }
}

fn compile(fault: &Fault) -> Compiled {
    // `percent` is validated to (0, 100]; 100 always hits, anything else compares a 64-bit draw.
    let threshold =
        if fault.percent >= 100.0 { None } else { Some((fault.percent / 100.0 * 18_446_744_073_709_551_616.0) as u64) };
    let matcher = fault.matcher.as_ref().map(|m| Matcher {
        path_prefix: m.path_prefix.clone(),
        method: m.method.map(Method::from),
        headers: m
            .headers
            .iter()
            .filter_map(|(name, value)| {
                // Validated before: names and values that do not parse never reach here.
                Some((HeaderName::from_bytes(name.as_bytes()).ok()?, HeaderValue::from_str(value).ok()?))
            })
            .collect(),
    });
    Compiled {
        kind: fault.kind,
        threshold,
        matcher,
        latency: fault.latency.as_ref().map(|l| Latency {
            delay: l.delay.as_std(),
            jitter: l.jitter.map(|j| j.as_std()).unwrap_or_default(),
            distribution: l.distribution,
            point: l.apply_to,
        }),
        abort: fault.abort.as_ref().map(|a| {
            (
                StatusCode::from_u16(a.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                Bytes::from(a.body.clone().unwrap_or_default()),
            )
        }),
        bandwidth: fault.bandwidth.as_ref().map(|b| b.bytes_per_second),
    }
}

impl Matcher {
    fn matches(&self, view: &RequestView<'_>) -> bool {
        self.method.as_ref().is_none_or(|m| m == view.method)
            && self.path_prefix.as_deref().is_none_or(|p| view.path.starts_with(p))
            && self.headers.iter().all(|(name, value)| view.headers.get_all(name).iter().any(|v| v == value))
    }
}

/// The whole delay of one latency fault: `delay` plus a jitter draw from `distribution` scaled
/// by `jitter`, never below zero, the draw capped at [`JITTER_CAP`] × `jitter`:
///
/// - uniform: `delay + jitter × U`, U uniform in [0, 1);
/// - normal: `max(0, delay + jitter × Z)`, Z standard normal (Box–Muller): `jitter` is the
///   standard deviation around `delay`, truncated at a total of 0;
/// - pareto: `delay + jitter × (U^(-1/2) − 1)`, U uniform in (0, 1]: a Lomax (Pareto II) draw of
///   shape 2 and scale `jitter`, so the extra delay's mean is `jitter`, its median 0.41 ×
///   `jitter`, its p90 2.16 ×, its p99 9 × and its p99.9 30.6 ×.
pub fn total_delay(
    delay: Duration,
    jitter: Duration,
    distribution: JitterDistribution,
    rng: &mut SplitMix64,
) -> Duration {
    if jitter.is_zero() {
        return delay;
    }
    let scale = jitter.as_secs_f64();
    let draw = match distribution {
        JitterDistribution::Uniform => rng.next_f64(),
        JitterDistribution::Normal => rng.next_normal(),
        JitterDistribution::Pareto => rng.next_open_f64().powf(-0.5) - 1.0,
    };
    let draw = draw.clamp(-JITTER_CAP, JITTER_CAP);
    Duration::from_secs_f64((delay.as_secs_f64() + scale * draw).max(0.0))
}

/// SplitMix64 (Steele, Lea and Flood): a tiny, fast generator whose outputs are a strong hash of
/// a counter, so generators seeded from neighbouring counters are independent enough for dice.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The generator of one request: the set's seed, the connection and the request, mixed.
    pub fn for_request(seed: u64, connection: u64, request: u64) -> SplitMix64 {
        let mut mixer = SplitMix64::new(seed ^ mix(connection.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03)));
        let state = mixer.next_u64() ^ mix(request.wrapping_add(1).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7));
        SplitMix64::new(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1].
    pub fn next_open_f64(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal, by Box–Muller.
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_open_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn mix(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
