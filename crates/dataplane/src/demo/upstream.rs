//! Calls to the dependencies: hyper's client, a new connection per call, and for each upstream the
//! patterns around every call, in resilience4j's order — retry (with its budget) around the
//! circuit breaker, around the bulkhead, around the per-attempt timeout — and the fallback once
//! the call as a whole failed.
//!
//! Retried: timeouts, connection failures and 5xx answers; not 4xx (the request itself is wrong).
//! A bulkhead rejection is not recorded by the breaker (the permit is given back): the breaker
//! judges the dependency, and a full bulkhead says nothing about it. Short-circuited and
//! rejected attempts are not retried: retrying into an open breaker or a full bulkhead only adds
//! load where the service already decided to shed it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rand::Rng as _;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    breaker::{Breaker, BreakerSettings, CallOutcome as BreakerOutcome, Permit, State},
    bulkhead::{Bulkhead, Rejected},
    config::{FallbackMode, Upstream},
    metrics::{CallOutcome, Metrics},
    retry::{RetryBudget, backoff},
};

/// The HTTP client every upstream call goes through: HTTP/1.1, a new connection per call.
///
/// No connection is kept for the next call: a Service (kube-proxy) balances connections, not
/// requests, so a kept-alive connection stays on the pod it was opened to. A fault proxy put in
/// front of a dependency (the Service's selector switched to it) would then see only the calls
/// of connections opened after the switch, and a pod added by a scale-out none of the existing
/// ones. On the real node a breaker trial's proxy saw 6 of catalog's 20 calls a second with a
/// pool (0 when catalog had connected before the proxy was Ready). A connection on the pod
/// network costs well under a millisecond.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// The most of an upstream's answer that is read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(connector)
}

/// One upstream's configuration and the state of its patterns, kept across configuration
/// changes that leave a pattern's settings as they were.
#[derive(Debug)]
pub struct UpstreamRuntime {
    pub config: Upstream,
    uri: http::Uri,
    pub breaker: Option<Arc<Mutex<Breaker>>>,
    pub bulkhead: Option<Arc<Bulkhead>>,
    pub budget: Option<Arc<Mutex<RetryBudget>>>,
    last_good: Arc<Mutex<Option<Value>>>,
}

/// How one call to an upstream went, as the answer shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyResult {
    pub name: String,
    /// The call succeeded, or its fallback answered.
    pub ok: bool,
    pub required: bool,
    /// How the last attempt ended.
    pub outcome: CallOutcome,
    /// The fallback answered in place of the upstream.
    pub fallback: bool,
    pub attempts: u32,
    /// The upstream's HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Time of the whole call, retries and backoff included.
    pub ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The upstream's answer (its `service`, `ok`, `status`, `error` and `dependencies`), or
    /// the fallback's body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
}

impl DependencyResult {
    /// The status a request fails with when this required call failed: 504 for a timeout,
    /// 503 when the service refused the call itself (breaker open, bulkhead full), else 502.
    pub fn failure_status(&self) -> u16 {
        match self.outcome {
            CallOutcome::Timeout => 504,
            CallOutcome::ShortCircuited | CallOutcome::RejectedBulkhead => 503,
            _ => 502,
        }
    }
}

/// One attempt's result.
struct Attempt {
    outcome: CallOutcome,
    status: Option<u16>,
    answer: Option<Value>,
    reason: Option<String>,
}

impl Attempt {
    fn refused(outcome: CallOutcome, reason: String) -> Attempt {
        Attempt { outcome, status: None, answer: None, reason: Some(reason) }
    }
}

/// A breaker permit that is given back if the call never reports.
struct BreakerCall<'a> {
    breaker: &'a Mutex<Breaker>,
    permit: Option<Permit>,
}

impl BreakerCall<'_> {
    fn record(mut self, outcome: BreakerOutcome) -> Option<super::breaker::Transition> {
        let permit = self.permit.take()?;
        let mut breaker = self.breaker.lock().ok()?;
        breaker.record(permit, outcome, Instant::now())
    }
}

impl Drop for BreakerCall<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take()
            && let Ok(mut breaker) = self.breaker.lock()
        {
            breaker.release(permit);
        }
    }
}

impl UpstreamRuntime {
    /// The runtime of `config`, keeping from `previous` (the same upstream before a change)
    /// every pattern whose settings did not change, so a breaker stays open across an
    /// unrelated change.
    pub fn new(config: &Upstream, previous: Option<&UpstreamRuntime>, now: Instant) -> UpstreamRuntime {
        // The URL was validated with the configuration; a default URI only if that was skipped.
        let uri = config.url.parse().unwrap_or_default();
        let same = |f: &dyn Fn(&Upstream) -> Value| previous.is_some_and(|p| f(&p.config) == f(config));
        let breaker = config.circuit_breaker.enabled.then(|| match previous.and_then(|p| p.breaker.clone()) {
            Some(b) if same(&|u| json!(u.circuit_breaker)) => b,
            _ => Arc::new(Mutex::new(Breaker::new(BreakerSettings::from(&config.circuit_breaker), now))),
        });
        let bulkhead = config.bulkhead.enabled.then(|| match previous.and_then(|p| p.bulkhead.clone()) {
            Some(b) if same(&|u| json!(u.bulkhead)) => b,
            _ => Arc::new(Bulkhead::new(&config.bulkhead)),
        });
        let budget = (config.retries.max > 0 && config.retries.budget.enabled).then(|| {
            match previous.and_then(|p| p.budget.clone()) {
                Some(b) if same(&|u| json!(u.retries.budget)) => b,
                _ => Arc::new(Mutex::new(RetryBudget::new(&config.retries.budget, now))),
            }
        });
        let last_good = previous.map_or_else(|| Arc::new(Mutex::new(None)), |p| p.last_good.clone());
        UpstreamRuntime { config: config.clone(), uri, breaker, bulkhead, budget, last_good }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The breaker's state as of now, when there is a breaker.
    pub fn breaker_state(&self) -> Option<State> {
        let breaker = self.breaker.as_ref()?;
        breaker.lock().ok().map(|b| b.state(Instant::now()))
    }

    /// Calls the upstream with its patterns; never fails, the result says how it went.
    pub async fn call(&self, client: &HttpClient, metrics: &Metrics) -> DependencyResult {
        let start = Instant::now();
        let name = self.name();
        if let Some(budget) = &self.budget
            && let Ok(mut budget) = budget.lock()
        {
            budget.record_call(start);
        }
        let retries = &self.config.retries;
        let mut attempts = 0;
        let last = loop {
            attempts += 1;
            let attempt = self.attempt(client, metrics).await;
            metrics.call(name, attempt.outcome);
            // A 4xx says the request is wrong, and it will be as wrong the next time.
            let retryable = matches!(attempt.outcome, CallOutcome::Error | CallOutcome::Timeout)
                && attempt.status.is_none_or(|s| s >= 500);
            if !retryable || attempts > retries.max {
                break attempt;
            }
            let granted = match &self.budget {
                None => true,
                Some(budget) => budget.lock().map(|mut b| b.try_retry(Instant::now())).unwrap_or(false),
            };
            if !granted {
                metrics.retry(name, "budget_exhausted");
                tracing::debug!(upstream = %name, attempts, "retry refused: the retry budget is spent");
                break attempt;
            }
            metrics.retry(name, "attempted");
            let random = rand::rng().random::<f64>();
            tokio::time::sleep(backoff(attempts, retries.backoff.as_std(), retries.max_backoff.as_std(), random)).await;
        };
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let mut result = DependencyResult {
            name: name.to_owned(),
            ok: last.outcome == CallOutcome::Success,
            required: self.config.required,
            outcome: last.outcome,
            fallback: false,
            attempts,
            status: last.status,
            ms,
            reason: last.reason,
            answer: last.answer,
        };
        let fallback = &self.config.fallback;
        if result.ok {
            if fallback.mode == FallbackMode::LastGood
                && let (Some(answer), Ok(mut last_good)) = (&result.answer, self.last_good.lock())
            {
                *last_good = Some(answer.clone());
            }
        } else if fallback.mode != FallbackMode::None {
            let remembered = match fallback.mode {
                FallbackMode::LastGood => self.last_good.lock().ok().and_then(|g| g.clone()),
                _ => None,
            };
            result.answer = Some(remembered.unwrap_or_else(|| fallback.body.clone()));
            result.ok = true;
            result.fallback = true;
            metrics.call(name, CallOutcome::Fallback);
        }
        result
    }

    /// One attempt through the breaker, the bulkhead and the timeout.
    async fn attempt(&self, client: &HttpClient, metrics: &Metrics) -> Attempt {
        let name = self.name();
        let breaker_call = match &self.breaker {
            None => None,
            Some(breaker) => {
                let acquired = match breaker.lock() {
                    Ok(mut b) => b.try_acquire(Instant::now()),
                    Err(_) => {
                        return Attempt::refused(CallOutcome::Error, "the circuit breaker's lock is poisoned".into());
                    }
                };
                if let Some(t) = acquired.transition {
                    metrics.transition(name, t);
                    tracing::info!(upstream = %name, from = %t.from, to = %t.to, "circuit breaker");
                }
                match acquired.permit {
                    None => {
                        return Attempt::refused(
                            CallOutcome::ShortCircuited,
                            format!("the circuit breaker to {name} is open: the call was not made"),
                        );
                    }
                    Some(permit) => Some(BreakerCall { breaker, permit: Some(permit) }),
                }
            }
        };
        let timeout = self.config.timeout.as_std();
        let _slot = match &self.bulkhead {
            None => None,
            Some(bulkhead) => match bulkhead.enter(timeout).await {
                Ok(slot) => Some(slot),
                Err(rejected) => {
                    metrics.bulkhead_rejected(name);
                    // Dropping `breaker_call` gives its permit back.
                    let why = match rejected {
                        Rejected::Full => format!(
                            "the bulkhead to {name} is full ({} calls in flight, {} queued)",
                            self.config.bulkhead.max_concurrent, self.config.bulkhead.max_queue
                        ),
                        Rejected::Waited => {
                            format!("no bulkhead slot to {name} freed up within {}", self.config.timeout)
                        }
                    };
                    return Attempt::refused(CallOutcome::RejectedBulkhead, why);
                }
            },
        };
        let sent = Instant::now();
        let answer = tokio::time::timeout(timeout, send(client, self.uri.clone())).await;
        let took = sent.elapsed();
        metrics.call_duration(name, took.as_secs_f64());
        let attempt = match answer {
            Err(_) => {
                Attempt::refused(CallOutcome::Timeout, format!("{name} did not answer within {}", self.config.timeout))
            }
            Ok(Err(reason)) => Attempt::refused(CallOutcome::Error, format!("{name}: {reason}")),
            Ok(Ok((status, body))) => {
                let answer = summary(&body);
                if (200..300).contains(&status) {
                    Attempt { outcome: CallOutcome::Success, status: Some(status), answer, reason: None }
                } else {
                    let theirs = answer
                        .as_ref()
                        .and_then(|a| a["error"]["reason"].as_str())
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    let reason = format!("{name} answered {status}{theirs}");
                    Attempt { outcome: CallOutcome::Error, status: Some(status), answer, reason: Some(reason) }
                }
            }
        };
        if let Some(call) = breaker_call {
            let failed = attempt.outcome != CallOutcome::Success;
            if let Some(t) = call.record(BreakerOutcome { failed, duration: took }) {
                metrics.transition(name, t);
                tracing::info!(upstream = %name, from = %t.from, to = %t.to, "circuit breaker");
            }
        }
        attempt
    }
}

/// A GET to `uri`, read to the end (at most 1 MiB): the status and the body.
async fn send(client: &HttpClient, uri: http::Uri) -> Result<(u16, Bytes), String> {
    let request = http::Request::get(uri)
        .header(http::header::USER_AGENT, "chaoslab-demo")
        .body(Empty::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = client.request(request).await.map_err(|e| chain(&e))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("the answer broke off: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// An error and its causes, `outer: inner: innermost`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// What of an upstream's JSON answer is worth showing: everything but its padding.
fn summary(body: &[u8]) -> Option<Value> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    if let Some(map) = value.as_object_mut() {
        map.remove("padding");
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_keeps_the_patterns_whose_settings_did_not_change() {
        let now = Instant::now();
        let mut config = Upstream::new("inventory", "http://127.0.0.1:9/");
        config.circuit_breaker.enabled = true;
        config.bulkhead.enabled = true;
        config.retries.max = 2;
        let first = UpstreamRuntime::new(&config, None, now);
        let (breaker, bulkhead, budget) = (
            first.breaker.clone().expect("breaker"),
            first.bulkhead.clone().expect("bulkhead"),
            first.budget.clone().expect("budget"),
        );
        // A new timeout keeps all three.
        config.timeout = crate::api::GoDuration::from_secs(3);
        let second = UpstreamRuntime::new(&config, Some(&first), now);
        assert!(Arc::ptr_eq(second.breaker.as_ref().expect("breaker"), &breaker));
        assert!(Arc::ptr_eq(second.bulkhead.as_ref().expect("bulkhead"), &bulkhead));
        assert!(Arc::ptr_eq(second.budget.as_ref().expect("budget"), &budget));
        // New breaker settings start a new breaker; switching it off drops it.
        config.circuit_breaker.minimum_calls = 3;
        let third = UpstreamRuntime::new(&config, Some(&second), now);
        assert!(!Arc::ptr_eq(third.breaker.as_ref().expect("breaker"), &breaker));
        config.circuit_breaker.enabled = false;
        config.retries.budget.enabled = false;
        let fourth = UpstreamRuntime::new(&config, Some(&third), now);
        assert!(fourth.breaker.is_none() && fourth.budget.is_none());
        assert!(Arc::ptr_eq(fourth.bulkhead.as_ref().expect("bulkhead"), &bulkhead));
    }

    #[test]
    fn a_failed_call_maps_to_the_status_that_says_why() {
        let result = |outcome| DependencyResult {
            name: "x".into(),
            ok: false,
            required: true,
            outcome,
            fallback: false,
            attempts: 1,
            status: None,
            ms: 1.0,
            reason: None,
            answer: None,
        };
        assert_eq!(result(CallOutcome::Timeout).failure_status(), 504);
        assert_eq!(result(CallOutcome::ShortCircuited).failure_status(), 503);
        assert_eq!(result(CallOutcome::RejectedBulkhead).failure_status(), 503);
        assert_eq!(result(CallOutcome::Error).failure_status(), 502);
    }

    #[test]
    fn an_answer_is_summarised_without_its_padding() {
        let body = br#"{"service":"inventory","ok":true,"padding":"xxxx"}"#;
        assert_eq!(summary(body), Some(json!({"service": "inventory", "ok": true})));
        assert_eq!(summary(b"not json"), None);
    }
}
