//! The work each request of the work route does: a latency drawn from its distribution (a
//! sleep), CPU burnt on a blocking thread, an injected error, and the JSON answer padded to the
//! configured size.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rand::Rng as _;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::config::{Distribution, Work};

/// The latency of one request: `base` plus jitter drawn with `u1`, `u2` uniform in `(0, 1]`.
/// Uniform: `jitter × u1`, so `[base, base + jitter]`. Normal: around `base` with standard
/// deviation `jitter` (Box-Muller), cut at ±5 standard deviations and never below 0.
pub fn latency(work: &Work, u1: f64, u2: f64) -> Duration {
    let base = work.latency.as_std().as_secs_f64();
    let jitter = work.jitter.as_std().as_secs_f64();
    let extra = match work.distribution {
        Distribution::Uniform => jitter * u1.clamp(0.0, 1.0),
        Distribution::Normal => {
            let u1 = u1.clamp(f64::MIN_POSITIVE, 1.0);
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            jitter * z.clamp(-5.0, 5.0)
        }
    };
    // Whole nanoseconds, rounded: 0.1 + 0.01 is 0.11000000000000001 in binary.
    Duration::from_nanos(((base + extra).max(0.0) * 1e9).round() as u64)
}

/// A latency drawn with the thread's random generator.
pub fn draw_latency(work: &Work) -> Duration {
    let mut rng = rand::rng();
    let (u1, u2) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
    latency(work, u1, u2)
}

/// Whether this request gets the injected error (`errorPercent` of requests).
pub fn draw_error(work: &Work) -> bool {
    work.error_percent > 0.0 && rand::rng().random::<f64>() * 100.0 < work.error_percent
}

/// Burns `cpu` of CPU on a blocking thread, at most `cores.available_permits()` at once: a CPU
/// beyond the cores waits its turn, as on a server with that many cores, instead of every
/// request spinning at once on an oversubscribed machine. Spins on wall time, which is CPU time
/// while the thread has its core.
pub async fn burn_cpu(cpu: Duration, cores: Arc<Semaphore>) {
    if cpu.is_zero() {
        return;
    }
    let Ok(core) = cores.acquire_owned().await else { return };
    let burnt = tokio::task::spawn_blocking(move || {
        let _core = core;
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < cpu {
            // Work the optimiser cannot drop.
            for i in 0..1_000u64 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
    })
    .await;
    if let Err(e) = burnt {
        tracing::warn!(error = %e, "the CPU work's thread failed");
    }
}

/// `body` as JSON text, padded with a `"padding"` field up to `size` bytes (never cut).
pub fn padded(body: &Value, size: usize) -> Vec<u8> {
    // Serializing a Value cannot fail.
    let mut text = serde_json::to_vec(body).unwrap_or_default();
    const FIELD: &[u8] = b",\"padding\":\"\"";
    if text.len() + FIELD.len() < size && text.last() == Some(&b'}') && text.len() > 2 {
        text.pop();
        text.extend_from_slice(b",\"padding\":\"");
        let missing = size - text.len() - 2;
        text.resize(text.len() + missing, b'x');
        text.extend_from_slice(b"\"}");
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::GoDuration;

    fn work(distribution: Distribution) -> Work {
        Work {
            latency: GoDuration(Duration::from_millis(100)),
            jitter: GoDuration(Duration::from_millis(20)),
            distribution,
            ..Work::default()
        }
    }

    #[test]
    fn uniform_jitter_adds_up_to_its_amount() {
        let w = work(Distribution::Uniform);
        assert_eq!(latency(&w, 0.0, 0.3), Duration::from_millis(100));
        assert_eq!(latency(&w, 0.5, 0.3), Duration::from_millis(110));
        assert_eq!(latency(&w, 1.0, 0.3), Duration::from_millis(120));
    }

    #[test]
    fn normal_jitter_is_a_standard_deviation_around_the_base() {
        let w = work(Distribution::Normal);
        // u1 = e^-0.5, u2 = 0: z = 1 → one standard deviation above.
        let one_sd = latency(&w, (-0.5f64).exp(), 0.0);
        assert!((one_sd.as_secs_f64() - 0.120).abs() < 1e-9, "{one_sd:?}");
        // u2 = 0.5: cos(π) = -1 → one below.
        let below = latency(&w, (-0.5f64).exp(), 0.5);
        assert!((below.as_secs_f64() - 0.080).abs() < 1e-9, "{below:?}");
        // Far tails are cut at 5 standard deviations, and a latency is never negative.
        assert_eq!(latency(&w, 1e-300, 0.0), Duration::from_millis(200));
        let mut wide = w.clone();
        wide.jitter = GoDuration(Duration::from_millis(500));
        assert_eq!(latency(&wide, 1e-300, 0.5), Duration::ZERO);
    }

    #[test]
    fn a_body_is_padded_to_the_size_exactly_and_stays_json() {
        let body = json!({"service": "inventory", "ok": true});
        let plain = padded(&body, 0);
        assert_eq!(plain, serde_json::to_vec(&body).expect("json"));
        let big = padded(&body, 300);
        assert_eq!(big.len(), 300);
        let back: Value = serde_json::from_slice(&big).expect("still JSON");
        assert_eq!(back["service"], "inventory");
        assert!(back["padding"].as_str().is_some_and(|p| p.chars().all(|c| c == 'x')));
        // Too small to hold the padding field: left as it is.
        assert_eq!(padded(&body, plain.len() + 5), plain);
    }

    #[tokio::test]
    async fn cpu_work_takes_about_its_time_on_a_blocking_thread() {
        let cores = Arc::new(Semaphore::new(1));
        let start = Instant::now();
        burn_cpu(Duration::from_millis(20), cores.clone()).await;
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(cores.available_permits(), 1, "the core is given back");
    }
}
