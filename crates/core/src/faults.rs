//! The fault set the proxy applies: its JSON form (`{"faults": [...], "expiresAt": ..., "seed":
//! ...}`), read with errors that name the field, and its validation against the proxy's mode.
//!
//! The faults are [`crate::api::fault::Fault`] exactly as serde (de)serialises them, so the
//! operator hands the proxy the spec's faults as they are.

use std::{collections::BTreeMap, fmt, time::Duration};

use http::{HeaderName, HeaderValue};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::api::{
    GoDuration,
    fault::{
        AbortFault, BandwidthFault, Fault, FaultType, JitterDistribution, LatencyFault, LatencyPoint, ProxyProtocol,
        RequestMatch,
    },
    load::HttpMethod,
};

/// The most faults a set may hold (as ServiceFault's `faults`).
pub const MAX_FAULTS: usize = 8;
/// The longest `latency.delay` and `latency.jitter`.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// The longest `abort.body`, in bytes.
pub const MAX_ABORT_BODY: usize = 4096;
/// The longest `match.pathPrefix`.
pub const MAX_PATH_PREFIX: usize = 1024;
/// The most headers a `match` may name.
pub const MAX_MATCH_HEADERS: usize = 16;
/// How far ahead `expiresAt` may lie: a ServiceFault lasts at most 24h, plus an hour for a proxy
/// pod that starts late with the set the operator computed at its creation.
pub const MAX_AHEAD: Duration = Duration::from_secs(25 * 3600);

/// A fault set: the faults, when they stop (the dead-man switch) and the seed of their dice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSet {
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// The moment the proxy stops injecting on its own and becomes a plain pass-through.
    pub expires_at: Timestamp,
    /// The moment the faults begin (default: at once). Before it the proxy passes requests
    /// through and counts them: a judged run measures the calls before the fault this way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    /// The seed of the dice; the same seed and the same requests give the same faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// Why a fault set was refused: the field (`faults[1].percent`) and what is allowed there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultSetError {
    #[error("the fault set is not JSON: {0}")]
    NotJson(String),
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

impl FaultSetError {
    fn field(field: impl fmt::Display, message: impl fmt::Display) -> FaultSetError {
        FaultSetError::Field { field: field.to_string(), message: message.to_string() }
    }
}

const TOP_FIELDS: &[&str] = &["faults", "expiresAt", "startsAt", "seed"];
const FAULT_FIELDS: &[&str] = &["type", "percent", "match", "latency", "abort", "bandwidth"];
const MATCH_FIELDS: &[&str] = &["pathPrefix", "method", "headers"];
const LATENCY_FIELDS: &[&str] = &["delay", "jitter", "distribution", "applyTo"];
const ABORT_FIELDS: &[&str] = &["status", "body"];
const BANDWIDTH_FIELDS: &[&str] = &["bytesPerSecond"];

impl FaultSet {
    /// Reads a fault set from JSON and validates it for a proxy in `protocol` mode at `now`.
    /// Every error names the field it is about.
    pub fn parse(json: &[u8], protocol: ProxyProtocol, now: Timestamp) -> Result<FaultSet, FaultSetError> {
        let value: Value = serde_json::from_slice(json).map_err(|e| FaultSetError::NotJson(e.to_string()))?;
        let set = FaultSet::from_value(value)?;
        set.validate(protocol, now)?;
        Ok(set)
    }

    /// The typed set, walking the JSON so that a type error names its field (serde's own
    /// messages say what was wrong, not where).
    fn from_value(value: Value) -> Result<FaultSet, FaultSetError> {
        let top = object(&value, "the fault set")?;
        known_fields(top, TOP_FIELDS, "")?;
        let Some(faults) = top.get("faults") else {
            return Err(FaultSetError::field("faults", "required: a list of faults (it may be empty)"));
        };
        let Value::Array(list) = faults else {
            return Err(FaultSetError::field("faults", "must be a list of faults"));
        };
        for (i, fault) in list.iter().enumerate() {
            check_fault(fault, &format!("faults[{i}]"))?;
        }
        let Some(expires_at) = top.get("expiresAt") else {
            return Err(FaultSetError::field(
                "expiresAt",
                "required: the RFC 3339 moment the faults stop (every fault set is time-bounded)",
            ));
        };
        leaf::<Timestamp>(expires_at, "expiresAt", "an RFC 3339 time such as 2030-01-01T12:00:00Z")?;
        if let Some(starts_at) = top.get("startsAt").filter(|s| !s.is_null()) {
            leaf::<Timestamp>(starts_at, "startsAt", "an RFC 3339 time such as 2030-01-01T12:00:00Z")?;
        }
        if let Some(seed) = top.get("seed").filter(|s| !s.is_null()) {
            leaf::<u64>(seed, "seed", "an integer from 0 to 18446744073709551615")?;
        }
        serde_json::from_value(value).map_err(|e| FaultSetError::field("the fault set", e))
    }

    /// Checks the limits and the consistency of the set for a proxy in `protocol` mode at `now`.
    /// A set whose `expiresAt` is past is valid (and inactive).
    pub fn validate(&self, protocol: ProxyProtocol, now: Timestamp) -> Result<(), FaultSetError> {
        if self.faults.len() > MAX_FAULTS {
            return Err(FaultSetError::field(
                "faults",
                format!("at most {MAX_FAULTS} faults, got {}", self.faults.len()),
            ));
        }
        let ahead = SignedDuration::try_from(MAX_AHEAD).unwrap_or(SignedDuration::MAX);
        if let Ok(latest) = now.checked_add(ahead)
            && self.expires_at > latest
        {
            return Err(FaultSetError::field(
                "expiresAt",
                format!("at most 25h ahead (until {latest}), got {}", self.expires_at),
            ));
        }
        if let Some(starts_at) = self.starts_at
            && starts_at >= self.expires_at
        {
            return Err(FaultSetError::field(
                "startsAt",
                format!("must be before expiresAt ({}), got {starts_at}", self.expires_at),
            ));
        }
        for (i, fault) in self.faults.iter().enumerate() {
            validate_fault(fault, protocol).map_err(|(field, message)| {
                let field = if field.is_empty() { format!("faults[{i}]") } else { format!("faults[{i}].{field}") };
                FaultSetError::Field { field, message }
            })?;
        }
        Ok(())
    }
}

fn object<'v>(value: &'v Value, field: &str) -> Result<&'v Map<String, Value>, FaultSetError> {
    value.as_object().ok_or_else(|| FaultSetError::field(field, "must be a JSON object"))
}

fn known_fields(map: &Map<String, Value>, allowed: &[&str], prefix: &str) -> Result<(), FaultSetError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(FaultSetError::field(
            format!("{prefix}{key}"),
            format!("unknown field (allowed here: {})", allowed.join(", ")),
        )),
    }
}

fn leaf<T: DeserializeOwned>(value: &Value, field: &str, expected: &str) -> Result<T, FaultSetError> {
    T::deserialize(value).map_err(|e| FaultSetError::field(field, format!("must be {expected} ({e})")))
}

/// The shape of one fault: each field of the right type, so that serde cannot fail later
/// without naming the field.
fn check_fault(value: &Value, at: &str) -> Result<(), FaultSetError> {
    let fault = object(value, at)?;
    known_fields(fault, FAULT_FIELDS, &format!("{at}."))?;
    match fault.get("type") {
        None => {
            return Err(FaultSetError::field(
                format!("{at}.type"),
                "required: latency, abort, reset, blackhole or bandwidth",
            ));
        }
        Some(kind) => {
            leaf::<FaultType>(kind, &format!("{at}.type"), "one of latency, abort, reset, blackhole, bandwidth")?;
        }
    }
    if let Some(percent) = fault.get("percent") {
        leaf::<f64>(percent, &format!("{at}.percent"), "a number above 0 and up to 100")?;
    }
    let sub = |key: &str, fields: &[&str]| -> Result<Option<&Map<String, Value>>, FaultSetError> {
        match fault.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let field = format!("{at}.{key}");
                let map = object(v, &field)?;
                known_fields(map, fields, &format!("{field}."))?;
                Ok(Some(map))
            }
        }
    };
    let field = |key: &str| format!("{at}.{key}");
    if let Some(m) = sub("match", MATCH_FIELDS)? {
        if let Some(v) = m.get("pathPrefix") {
            leaf::<String>(v, &field("match.pathPrefix"), "a string starting with /")?;
        }
        if let Some(v) = m.get("method") {
            leaf::<HttpMethod>(v, &field("match.method"), "one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")?;
        }
        if let Some(v) = m.get("headers") {
            leaf::<BTreeMap<String, String>>(v, &field("match.headers"), "a map of header name to exact value")?;
        }
    }
    if let Some(l) = sub("latency", LATENCY_FIELDS)? {
        match l.get("delay") {
            None => return Err(FaultSetError::field(field("latency.delay"), "required: a duration such as 100ms")),
            Some(v) => {
                leaf::<GoDuration>(v, &field("latency.delay"), "a duration such as 100ms or 1.5s")?;
            }
        }
        if let Some(v) = l.get("jitter") {
            leaf::<GoDuration>(v, &field("latency.jitter"), "a duration such as 10ms")?;
        }
        if let Some(v) = l.get("distribution") {
            leaf::<JitterDistribution>(v, &field("latency.distribution"), "one of uniform, normal, pareto")?;
        }
        if let Some(v) = l.get("applyTo") {
            leaf::<LatencyPoint>(v, &field("latency.applyTo"), "request or response")?;
        }
    }
    if let Some(a) = sub("abort", ABORT_FIELDS)? {
        if let Some(v) = a.get("status") {
            leaf::<u16>(v, &field("abort.status"), "an HTTP status from 200 to 599")?;
        }
        if let Some(v) = a.get("body") {
            leaf::<String>(v, &field("abort.body"), "a string")?;
        }
    }
    if let Some(b) = sub("bandwidth", BANDWIDTH_FIELDS)? {
        match b.get("bytesPerSecond") {
            None => return Err(FaultSetError::field(field("bandwidth.bytesPerSecond"), "required: an integer ≥ 1")),
            Some(v) => {
                leaf::<u64>(v, &field("bandwidth.bytesPerSecond"), "an integer ≥ 1")?;
            }
        }
    }
    Ok(())
}

/// One fault's rules, as `(field below the fault, message)`; an empty field is the fault itself.
fn validate_fault(fault: &Fault, protocol: ProxyProtocol) -> Result<(), (String, String)> {
    let err = |field: &str, message: String| Err((field.to_owned(), message));
    let kind = type_name(fault.kind);
    if !(fault.percent.is_finite() && fault.percent > 0.0 && fault.percent <= 100.0) {
        return err("percent", format!("must be above 0 and at most 100, got {}", fault.percent));
    }
    for (present, param, of) in [
        (fault.latency.is_some(), "latency", FaultType::Latency),
        (fault.abort.is_some(), "abort", FaultType::Abort),
        (fault.bandwidth.is_some(), "bandwidth", FaultType::Bandwidth),
    ] {
        if present != (fault.kind == of) {
            return if present {
                err(param, format!("not allowed for a fault of type {kind} (only for type {param})"))
            } else {
                err(param, format!("required for a fault of type {kind}"))
            };
        }
    }
    if protocol == ProxyProtocol::Tcp {
        if fault.kind == FaultType::Abort {
            return err("type", "abort needs protocol http: a tcp proxy sees connections, not requests".to_owned());
        }
        if fault.matcher.is_some() {
            return err("match", "needs protocol http: a tcp proxy sees connections, not requests".to_owned());
        }
    }
    if let Some(m) = &fault.matcher {
        validate_match(m)?;
    }
    if let Some(LatencyFault { delay, jitter, .. }) = &fault.latency {
        if delay.as_std() > MAX_DELAY {
            return err("latency.delay", format!("must be at most 5m, got {delay}"));
        }
        if let Some(jitter) = jitter
            && jitter.as_std() > MAX_DELAY
        {
            return err("latency.jitter", format!("must be at most 5m, got {jitter}"));
        }
    }
    if let Some(AbortFault { status, body }) = &fault.abort {
        if !(200..=599).contains(status) {
            return err("abort.status", format!("must be an HTTP status from 200 to 599, got {status}"));
        }
        if let Some(body) = body
            && body.len() > MAX_ABORT_BODY
        {
            return err("abort.body", format!("at most {MAX_ABORT_BODY} bytes, got {}", body.len()));
        }
    }
    if let Some(BandwidthFault { bytes_per_second }) = &fault.bandwidth
        && *bytes_per_second == 0
    {
        return err("bandwidth.bytesPerSecond", "must be at least 1".to_owned());
    }
    Ok(())
}

fn validate_match(m: &RequestMatch) -> Result<(), (String, String)> {
    if let Some(prefix) = &m.path_prefix {
        if !prefix.starts_with('/') {
            return Err(("match.pathPrefix".to_owned(), format!("must start with /, got {prefix:?}")));
        }
        if prefix.len() > MAX_PATH_PREFIX {
            return Err((
                "match.pathPrefix".to_owned(),
                format!("at most {MAX_PATH_PREFIX} bytes, got {}", prefix.len()),
            ));
        }
    }
    if m.headers.len() > MAX_MATCH_HEADERS {
        return Err((
            "match.headers".to_owned(),
            format!("at most {MAX_MATCH_HEADERS} headers, got {}", m.headers.len()),
        ));
    }
    for (name, value) in &m.headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err((format!("match.headers[{name:?}]"), "is not a valid HTTP header name".to_owned()));
        }
        if HeaderValue::from_str(value).is_err() {
            return Err((format!("match.headers[{name:?}]"), format!("{value:?} is not a valid HTTP header value")));
        }
    }
    Ok(())
}

/// The name of a fault type as in JSON and in the stats.
pub fn type_name(kind: FaultType) -> &'static str {
    match kind {
        FaultType::Latency => "latency",
        FaultType::Abort => "abort",
        FaultType::Reset => "reset",
        FaultType::Blackhole => "blackhole",
        FaultType::Bandwidth => "bandwidth",
    }
}

#[cfg(test)]
#[path = "faults_tests.rs"]
mod tests;
