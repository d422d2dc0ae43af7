//! The demo service's configuration: its JSON shape (what `--config` takes and `/admin/config`
//! returns, replaces and merges), the defaults, and the validation whose errors name the field.
//!
//! Reading is serde's derive with `deny_unknown_fields` and every field defaulted, through
//! `serde_path_to_error`, so every error carries the path of the field
//! (`upstreams[1].retries.max: ...`) and an unknown field is refused by name.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::GoDuration;

/// A configuration that cannot be used, naming the field and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// The path of the field, such as `upstreams[0].timeout`; `config` for the whole document.
    pub field: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError { field: field.into(), problem: problem.into() }
    }
}

/// The whole configuration of one demo service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DemoConfig {
    /// The service's name, in its answers and as the `service` label of its metrics. Fixed at
    /// start: the admin endpoint refuses to change it.
    pub name: String,
    pub work: Work,
    /// The most requests of the work route in flight at once; one more is answered 503 at once
    /// (load shedding). 0: no limit.
    pub max_concurrent_requests: u32,
    /// How the upstreams are called: one after another, or all at once.
    pub calls: CallMode,
    pub upstreams: Vec<Upstream>,
    pub lifecycle: Lifecycle,
}

/// What the service does for each request of the work route before calling its upstreams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Work {
    /// Base latency (a sleep, no CPU).
    pub latency: GoDuration,
    /// Random extra latency: uniform on [0, jitter], or normal with this standard deviation.
    pub jitter: GoDuration,
    pub distribution: Distribution,
    /// CPU time burnt per request (a busy loop on a blocking thread).
    pub cpu: GoDuration,
    /// The answer's size: the JSON body is padded up to this many bytes.
    pub response_bytes: u32,
    /// Share of requests answered 500 (injected error), 0 to 100.
    pub error_percent: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    #[default]
    Uniform,
    Normal,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallMode {
    #[default]
    Sequence,
    Parallel,
}

/// One dependency and the resilience patterns around the calls to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Upstream {
    pub name: String,
    /// `http://host:port/path`: where a call goes (GET).
    pub url: String,
    /// A failed call (after retries, without a fallback) fails the request.
    pub required: bool,
    /// Per attempt; a queued bulkhead call waits at most this long too.
    pub timeout: GoDuration,
    pub retries: Retries,
    pub circuit_breaker: BreakerConfig,
    pub bulkhead: BulkheadConfig,
    pub fallback: FallbackConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Retries {
    /// Retries after the first attempt (0: none), on errors and timeouts only.
    pub max: u32,
    /// Exponential backoff with full jitter: the n-th retry waits a random time in
    /// [0, min(maxBackoff, backoff × 2^(n-1))].
    pub backoff: GoDuration,
    pub max_backoff: GoDuration,
    pub budget: BudgetConfig,
}

/// Retries allowed in `window`: at most `ratio` × the calls made in it, plus `minPerSecond` ×
/// its length (Finagle's RetryBudget), so retries cannot multiply an outage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BudgetConfig {
    pub enabled: bool,
    pub ratio: f64,
    pub min_per_second: f64,
    pub window: GoDuration,
}

/// A circuit breaker with resilience4j's semantics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BreakerConfig {
    pub enabled: bool,
    /// `count`: the last N calls; `time`: the calls of the last N seconds.
    pub sliding_window_type: WindowType,
    pub sliding_window_size: u32,
    /// Calls the window must hold before rates are judged (count windows: at most the size).
    pub minimum_calls: u32,
    /// Open when this percentage of the window's calls failed (1 to 100).
    pub failure_rate_threshold: f64,
    /// Open when this percentage of the window's calls were slow (1 to 100).
    pub slow_call_rate_threshold: f64,
    /// A call at least this long is slow.
    pub slow_call_duration: GoDuration,
    /// How long the breaker stays open before it lets trial calls through (half-open).
    pub open_duration: GoDuration,
    /// Trial calls let through while half-open; their rates decide closed or open again.
    pub half_open_calls: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowType {
    #[default]
    Count,
    Time,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BulkheadConfig {
    pub enabled: bool,
    /// Calls in flight to this upstream at once.
    pub max_concurrent: u32,
    /// Calls waiting for a slot; one more is rejected at once.
    pub max_queue: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FallbackConfig {
    pub mode: FallbackMode,
    /// The static answer (and `lastGood`'s until a call has succeeded).
    pub body: Value,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FallbackMode {
    #[default]
    None,
    Static,
    LastGood,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Lifecycle {
    /// Not ready for this long after the start (read once, at start).
    pub start_delay: GoDuration,
    /// After the start delay, requests get extra latency falling linearly from `warmupLatency`
    /// to nothing over this long (cold caches, a JIT warming up).
    pub warmup: GoDuration,
    pub warmup_latency: GoDuration,
    /// On SIGTERM, exit at once (false) or shut down gracefully (true).
    pub graceful: bool,
    /// Graceful: keep serving this long after SIGTERM with readiness failing, so endpoints and
    /// load balancers stop sending here first.
    pub shutdown_delay: GoDuration,
    /// Graceful: then wait at most this long for requests in flight to finish.
    pub drain_timeout: GoDuration,
}

const MAX_UPSTREAMS: usize = 16;
const MAX_DURATION: Duration = Duration::from_secs(300);
const MAX_RESPONSE_BYTES: u32 = 10 * 1024 * 1024;

impl Default for Work {
    fn default() -> Work {
        Work {
            latency: GoDuration(Duration::ZERO),
            jitter: GoDuration(Duration::ZERO),
            distribution: Distribution::Uniform,
            cpu: GoDuration(Duration::ZERO),
            response_bytes: 0,
            error_percent: 0.0,
        }
    }
}

impl Default for Retries {
    fn default() -> Retries {
        Retries {
            max: 0,
            backoff: GoDuration(Duration::from_millis(25)),
            max_backoff: GoDuration::from_secs(1),
            budget: BudgetConfig::default(),
        }
    }
}

impl Default for BudgetConfig {
    fn default() -> BudgetConfig {
        BudgetConfig { enabled: true, ratio: 0.2, min_per_second: 10.0, window: GoDuration::from_secs(10) }
    }
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            enabled: false,
            sliding_window_type: WindowType::Count,
            sliding_window_size: 20,
            minimum_calls: 10,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: GoDuration::from_secs(1),
            open_duration: GoDuration::from_secs(5),
            half_open_calls: 3,
        }
    }
}

impl Default for BulkheadConfig {
    fn default() -> BulkheadConfig {
        BulkheadConfig { enabled: false, max_concurrent: 10, max_queue: 0 }
    }
}

impl Default for FallbackConfig {
    fn default() -> FallbackConfig {
        FallbackConfig { mode: FallbackMode::None, body: serde_json::json!({"fallback": true}) }
    }
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle {
            start_delay: GoDuration(Duration::ZERO),
            warmup: GoDuration(Duration::ZERO),
            warmup_latency: GoDuration(Duration::ZERO),
            graceful: true,
            shutdown_delay: GoDuration::from_secs(5),
            drain_timeout: GoDuration::from_secs(20),
        }
    }
}

impl Default for DemoConfig {
    fn default() -> DemoConfig {
        DemoConfig {
            name: "demo".to_owned(),
            work: Work::default(),
            max_concurrent_requests: 0,
            calls: CallMode::Sequence,
            upstreams: Vec::new(),
            lifecycle: Lifecycle::default(),
        }
    }
}

/// An upstream as a document leaves it: its name and URL are required (`validate` says so).
impl Default for Upstream {
    fn default() -> Upstream {
        Upstream::new("", "")
    }
}

impl Upstream {
    /// An upstream with every pattern at its default (off, but a 1s timeout).
    pub fn new(name: &str, url: &str) -> Upstream {
        Upstream {
            name: name.to_owned(),
            url: url.to_owned(),
            required: true,
            timeout: GoDuration::from_secs(1),
            retries: Retries::default(),
            circuit_breaker: BreakerConfig::default(),
            bulkhead: BulkheadConfig::default(),
            fallback: FallbackConfig::default(),
        }
    }
}

impl DemoConfig {
    /// Parses the JSON text of a configuration: fields left out take their defaults.
    pub fn from_json_text(text: &str) -> Result<DemoConfig, ConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ConfigError::new("config", format!("not valid JSON: {e}")))?;
        DemoConfig::from_json(&value)
    }

    /// Reads a configuration from JSON over the defaults (a field left out or `null` takes its
    /// default; an upstream's too), then validates it.
    pub fn from_json(value: &Value) -> Result<DemoConfig, ConfigError> {
        // A struct also reads from a list (serde's sequence form), which no one means here.
        if !value.is_object() {
            return Err(ConfigError::new("", format!("expected an object, got {}", json_kind(value))));
        }
        let mut value = value.clone();
        drop_nulls(&mut value);
        let config: DemoConfig = serde_path_to_error::deserialize(&value).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::new(if field == "." { String::new() } else { field }, e.into_inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as JSON (the shape `from_json` reads).
    pub fn to_json(&self) -> Value {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// This configuration with `patch` merged in: a JSON merge patch (RFC 7386: objects merge
    /// key by key, `null` resets a field to its default, anything else replaces), except that
    /// `upstreams` merge by `name` like a Kubernetes strategic merge: an entry naming a known
    /// upstream merges into it, a new name is appended. `PUT` the whole document to remove one.
    pub fn merged(&self, patch: &Value) -> Result<DemoConfig, ConfigError> {
        let mut document = self.to_json();
        merge_patch(&mut document, patch, "");
        DemoConfig::from_json(&document)
    }

    /// Checks every bound; the first problem found is returned, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_name("name", &self.name)?;
        let w = &self.work;
        at_most("work.latency", w.latency, MAX_DURATION)?;
        at_most("work.jitter", w.jitter, MAX_DURATION)?;
        at_most("work.cpu", w.cpu, Duration::from_secs(10))?;
        if w.response_bytes > MAX_RESPONSE_BYTES {
            return Err(ConfigError::new("work.responseBytes", format!("must be at most {MAX_RESPONSE_BYTES}")));
        }
        percent("work.errorPercent", w.error_percent, 0.0)?;
        if self.upstreams.len() > MAX_UPSTREAMS {
            return Err(ConfigError::new("upstreams", format!("at most {MAX_UPSTREAMS} upstreams are allowed")));
        }
        for (i, u) in self.upstreams.iter().enumerate() {
            let p = |field: &str| format!("upstreams[{i}].{field}");
            if u.name.is_empty() {
                return Err(ConfigError::new(p("name"), "is required"));
            }
            if u.url.is_empty() {
                return Err(ConfigError::new(p("url"), "is required, such as http://inventory:8080/"));
            }
            check_name(&p("name"), &u.name)?;
            if self.upstreams[..i].iter().any(|other| other.name == u.name) {
                return Err(ConfigError::new(p("name"), format!("{:?} is used twice; names must be unique", u.name)));
            }
            check_url(&p("url"), &u.url)?;
            between(&p("timeout"), u.timeout, Duration::from_millis(1), MAX_DURATION)?;
            let r = &u.retries;
            if r.max > 10 {
                return Err(ConfigError::new(p("retries.max"), "must be at most 10"));
            }
            at_most(&p("retries.backoff"), r.backoff, Duration::from_secs(60))?;
            at_most(&p("retries.maxBackoff"), r.max_backoff, Duration::from_secs(60))?;
            let b = &r.budget;
            if !(0.0..=1.0).contains(&b.ratio) {
                return Err(ConfigError::new(
                    p("retries.budget.ratio"),
                    format!("must be from 0 to 1, got {}", b.ratio),
                ));
            }
            if !(0.0..=10_000.0).contains(&b.min_per_second) {
                return Err(ConfigError::new(
                    p("retries.budget.minPerSecond"),
                    format!("must be from 0 to 10000, got {}", b.min_per_second),
                ));
            }
            between(&p("retries.budget.window"), b.window, Duration::from_secs(1), Duration::from_secs(600))?;
            if b.window.as_std().subsec_nanos() != 0 {
                return Err(ConfigError::new(p("retries.budget.window"), "must be whole seconds"));
            }
            let c = &u.circuit_breaker;
            if !(1..=10_000).contains(&c.sliding_window_size) {
                return Err(ConfigError::new(p("circuitBreaker.slidingWindowSize"), "must be from 1 to 10000"));
            }
            if c.sliding_window_type == WindowType::Time && c.sliding_window_size > 3600 {
                return Err(ConfigError::new(
                    p("circuitBreaker.slidingWindowSize"),
                    "a time window is at most 3600 seconds",
                ));
            }
            if !(1..=100_000).contains(&c.minimum_calls) {
                return Err(ConfigError::new(p("circuitBreaker.minimumCalls"), "must be from 1 to 100000"));
            }
            percent(&p("circuitBreaker.failureRateThreshold"), c.failure_rate_threshold, 1.0)?;
            percent(&p("circuitBreaker.slowCallRateThreshold"), c.slow_call_rate_threshold, 1.0)?;
            between(
                &p("circuitBreaker.slowCallDuration"),
                c.slow_call_duration,
                Duration::from_millis(1),
                MAX_DURATION,
            )?;
            between(
                &p("circuitBreaker.openDuration"),
                c.open_duration,
                Duration::from_millis(1),
                Duration::from_secs(3600),
            )?;
            if !(1..=1000).contains(&c.half_open_calls) {
                return Err(ConfigError::new(p("circuitBreaker.halfOpenCalls"), "must be from 1 to 1000"));
            }
            let k = &u.bulkhead;
            if !(1..=100_000).contains(&k.max_concurrent) {
                return Err(ConfigError::new(p("bulkhead.maxConcurrent"), "must be from 1 to 100000"));
            }
            if k.max_queue > 100_000 {
                return Err(ConfigError::new(p("bulkhead.maxQueue"), "must be at most 100000"));
            }
        }
        let l = &self.lifecycle;
        at_most("lifecycle.startDelay", l.start_delay, Duration::from_secs(3600))?;
        at_most("lifecycle.warmup", l.warmup, Duration::from_secs(3600))?;
        at_most("lifecycle.warmupLatency", l.warmup_latency, MAX_DURATION)?;
        at_most("lifecycle.shutdownDelay", l.shutdown_delay, Duration::from_secs(3600))?;
        at_most("lifecycle.drainTimeout", l.drain_timeout, Duration::from_secs(3600))?;
        Ok(())
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `null` means "the default" in a configuration (and resets a field in a patch): the fields
/// that hold one leave the document, except inside a fallback body, which is a value of its own.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for (key, v) in map.iter_mut() {
                if key != "body" {
                    drop_nulls(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// RFC 7386 merge patch, with `upstreams` (at the top level) merged by name.
fn merge_patch(target: &mut Value, patch: &Value, path: &str) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else { return };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        if path.is_empty()
            && key == "upstreams"
            && let (Some(Value::Array(existing)), Value::Array(patches)) = (target_map.get_mut(key), value)
        {
            for item in patches {
                let name = item.get("name").and_then(Value::as_str);
                match existing.iter_mut().find(|e| name.is_some() && e.get("name").and_then(Value::as_str) == name) {
                    Some(known) => merge_patch(known, item, "upstreams[]"),
                    None => existing.push(item.clone()),
                }
            }
            continue;
        }
        let child = target_map.entry(key.clone()).or_insert(Value::Null);
        let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        // A fallback body is a value of its own, replaced whole rather than merged.
        if key == "body" {
            *child = value.clone();
        } else {
            merge_patch(child, value, &child_path);
        }
    }
}

/// A DNS-label-like name: it goes into metric labels and JSON answers.
fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("{name:?} is not a name: 1 to 63 lower-case letters, digits and '-', starting with a letter"),
        ))
    }
}

fn check_url(field: &str, url: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| ConfigError::new(field, format!("{url:?} {why}: give http://host:port/path"));
    let uri: http::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("does not start with http:// (the demo speaks plain HTTP/1.1)"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    Ok(())
}

fn at_most(field: &str, d: GoDuration, max: Duration) -> Result<(), ConfigError> {
    between(field, d, Duration::ZERO, max)
}

fn between(field: &str, d: GoDuration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if (min..=max).contains(&d.as_std()) {
        Ok(())
    } else {
        Err(ConfigError::new(field, format!("{d} must be from {} to {}", GoDuration(min), GoDuration(max))))
    }
}

fn percent(field: &str, p: f64, min: f64) -> Result<(), ConfigError> {
    if p.is_finite() && (min..=100.0).contains(&p) {
        Ok(())
    } else {
        Err(ConfigError::new(field, format!("must be a percentage from {min} to 100, got {p}")))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_empty_document_is_the_defaults_and_round_trips() {
        let config = DemoConfig::from_json(&json!({})).expect("defaults");
        assert_eq!(config, DemoConfig::default());
        let full = json!({
            "name": "catalog",
            "work": {"latency": "10ms", "jitter": "4ms", "distribution": "normal", "cpu": "1ms",
                     "responseBytes": 512, "errorPercent": 2.5},
            "maxConcurrentRequests": 12,
            "calls": "parallel",
            "upstreams": [{"name": "inventory", "url": "http://127.0.0.1:9/items", "timeout": "150ms",
                           "retries": {"max": 2, "budget": {"ratio": 0.1}},
                           "circuitBreaker": {"enabled": true, "slidingWindowType": "time", "slidingWindowSize": 10},
                           "bulkhead": {"enabled": true, "maxConcurrent": 4, "maxQueue": 2},
                           "fallback": {"mode": "lastGood", "body": {"items": []}}}],
            "lifecycle": {"startDelay": "2s", "graceful": false}
        });
        let config = DemoConfig::from_json(&full).expect("full");
        assert_eq!(config.work.distribution, Distribution::Normal);
        assert_eq!(config.calls, CallMode::Parallel);
        let u = &config.upstreams[0];
        assert_eq!(u.timeout, GoDuration(Duration::from_millis(150)));
        assert_eq!((u.retries.max, u.retries.budget.ratio, u.retries.budget.enabled), (2, 0.1, true));
        assert_eq!(u.retries.budget.min_per_second, 10.0, "left out: the default");
        assert_eq!(u.circuit_breaker.sliding_window_type, WindowType::Time);
        assert_eq!(u.fallback.mode, FallbackMode::LastGood);
        assert_eq!(u.fallback.body, json!({"items": []}));
        assert!(!config.lifecycle.graceful);
        let again = DemoConfig::from_json(&config.to_json()).expect("its own JSON reads back");
        assert_eq!(again, config);
    }

    #[test]
    fn errors_name_the_field() {
        let err = |doc: Value| DemoConfig::from_json(&doc).expect_err("refused").to_string();
        let e = err(json!({"work": {"latency": "soon"}}));
        assert!(e.starts_with("work.latency: ") && e.contains("not a duration"), "{e}");
        let e = err(json!({"work": {"errorPercent": 150}}));
        assert!(e.starts_with("work.errorPercent: must be a percentage"), "{e}");
        let e = err(json!({"upstreams": [{"name": "a", "url": "http://a/"}, {"name": "b", "url": "http://b/",
                       "retries": {"budget": {"ratio": 2}}}]}));
        assert!(e.starts_with("upstreams[1].retries.budget.ratio: must be from 0 to 1"), "{e}");
        let e = err(json!({"upstreams": [{"name": "a", "url": "http://a/", "circuitBreaker": {"failureRate": 50}}]}));
        assert!(e.starts_with("upstreams[0].circuitBreaker.failureRate: unknown field"), "{e}");
        assert!(e.contains("failureRateThreshold"), "lists the known fields: {e}");
        let e = err(json!({"upstreams": [{"name": "a", "url": "https://a/"}]}));
        assert!(e.starts_with("upstreams[0].url: ") && e.contains("http://"), "{e}");
        let e = err(json!({"upstreams": [{"name": "a", "url": "http://a/"}, {"name": "a", "url": "http://b/"}]}));
        assert!(e.starts_with("upstreams[1].name: \"a\" is used twice"), "{e}");
        let e = err(json!({"upstreams": [{"url": "http://a/"}]}));
        assert_eq!(e, "upstreams[0].name: is required");
        let e = err(json!({"calls": "sideways"}));
        assert!(e.starts_with("calls: unknown variant `sideways`"), "{e}");
        let e = err(json!({"maxConcurrentRequests": -1}));
        assert!(e.starts_with("maxConcurrentRequests: "), "{e}");
        let e = err(json!({"name": "Front End"}));
        assert!(e.starts_with("name: \"Front End\" is not a name"), "{e}");
        let e = err(json!([]));
        assert_eq!(e, ": expected an object, got a list");
        let e = DemoConfig::from_json_text("{").expect_err("not JSON").to_string();
        assert!(e.starts_with("config: not valid JSON"), "{e}");
    }

    #[test]
    fn a_patch_merges_objects_and_upstreams_by_name() {
        let base = DemoConfig::from_json(&json!({
            "name": "catalog",
            "work": {"latency": "10ms"},
            "upstreams": [{"name": "inventory", "url": "http://inventory:8080/", "timeout": "2s"},
                          {"name": "prices", "url": "http://prices:8080/"}]
        }))
        .expect("base");
        let patched = base
            .merged(&json!({
                "work": {"errorPercent": 100},
                "upstreams": [{"name": "inventory", "circuitBreaker": {"enabled": true, "minimumCalls": 5}},
                              {"name": "reviews", "url": "http://reviews:8080/"}]
            }))
            .expect("merged");
        assert_eq!(patched.work.latency, GoDuration(Duration::from_millis(10)), "untouched fields stay");
        assert_eq!(patched.work.error_percent, 100.0);
        let names: Vec<&str> = patched.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["inventory", "prices", "reviews"]);
        let inventory = &patched.upstreams[0];
        assert_eq!(inventory.timeout, GoDuration::from_secs(2), "merged into, not replaced");
        assert!(inventory.circuit_breaker.enabled);
        assert_eq!(inventory.circuit_breaker.minimum_calls, 5);
        assert_eq!(inventory.circuit_breaker.sliding_window_size, 20);
        // null resets a field to its default.
        let reset = patched.merged(&json!({"work": {"latency": null}})).expect("reset");
        assert_eq!(reset.work.latency, GoDuration(Duration::ZERO));
        // A patch that breaks a bound is refused whole, naming the field.
        let e = patched.merged(&json!({"upstreams": [{"name": "prices", "timeout": "0s"}]})).expect_err("bounds");
        assert_eq!(e.field, "upstreams[1].timeout");
    }
}
