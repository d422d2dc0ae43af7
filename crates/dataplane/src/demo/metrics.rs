//! The demo service's Prometheus metrics (`/metrics`), every one prefixed `chaoslab_demo_` and
//! labelled `service="<name>"`: RED metrics per route, dependency calls by upstream and outcome,
//! circuit-breaker state and transitions, bulkhead rejections and retries.

use std::{borrow::Cow, fmt};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::breaker::{State, Transition};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    /// `2xx`, `4xx`, `5xx`, or `canceled` (the client went away before the answer).
    pub status_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub upstream: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub upstream: String,
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub upstream: String,
    /// `attempted` or `budget_exhausted`.
    pub result: String,
}

/// How one attempt of a dependency call ended, or that a fallback answered for the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    Success,
    /// An answer that is not 2xx, or no answer (connection refused or reset, a broken body).
    Error,
    Timeout,
    RejectedBulkhead,
    ShortCircuited,
    /// The call failed and its fallback answered in its place (counted once per call, on top
    /// of the failed attempts).
    Fallback,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Error => "error",
            CallOutcome::Timeout => "timeout",
            CallOutcome::RejectedBulkhead => "rejected_bulkhead",
            CallOutcome::ShortCircuited => "short_circuited",
            CallOutcome::Fallback => "fallback",
        }
    }
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every metric of the service, registered once.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    in_flight: Gauge,
    ready: Gauge,
    calls: Family<CallLabels, Counter>,
    call_duration: Family<UpstreamLabels, Histogram>,
    breaker_state: Family<UpstreamLabels, Gauge>,
    transitions: Family<TransitionLabels, Counter>,
    bulkhead_rejections: Family<UpstreamLabels, Counter>,
    retries: Family<RetryLabels, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_buckets() -> Histogram {
    // 1ms to about 16s, doubling: the demo's latencies span sub-millisecond to timeouts.
    Histogram::new([
        0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384,
    ])
}

impl Metrics {
    pub fn new(service: &str) -> Metrics {
        let labels = [(Cow::Borrowed("service"), Cow::Owned(service.to_owned()))];
        let mut registry = Registry::with_prefix_and_labels("chaoslab_demo", labels.into_iter());
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(latency_buckets);
        let in_flight = Gauge::default();
        let ready = Gauge::default();
        let calls = Family::<CallLabels, Counter>::default();
        let call_duration = Family::<UpstreamLabels, Histogram>::new_with_constructor(latency_buckets);
        let breaker_state = Family::<UpstreamLabels, Gauge>::default();
        let transitions = Family::<TransitionLabels, Counter>::default();
        let bulkhead_rejections = Family::<UpstreamLabels, Counter>::default();
        let retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by route and status class (canceled: the client left)",
            requests.clone(),
        );
        registry.register("request_duration_seconds", "Time to answer a request, by route", duration.clone());
        registry.register("in_flight_requests", "Requests of the work route being served", in_flight.clone());
        registry.register("ready", "1 when /readyz answers 200", ready.clone());
        registry.register(
            "dependency_calls",
            "Dependency call attempts by upstream and outcome (success, error, timeout, rejected_bulkhead, short_circuited), and calls answered by a fallback (fallback)",
            calls.clone(),
        );
        registry.register(
            "dependency_call_duration_seconds",
            "Time of each dependency call attempt that was sent",
            call_duration.clone(),
        );
        registry.register(
            "circuit_breaker_state",
            "Circuit breaker state by upstream: 0 closed, 1 open, 2 half-open (changes when a call is attempted)",
            breaker_state.clone(),
        );
        registry.register("circuit_breaker_transitions", "Circuit breaker state changes", transitions.clone());
        registry.register(
            "bulkhead_rejections",
            "Calls the bulkhead rejected (queue full or wait over)",
            bulkhead_rejections.clone(),
        );
        registry.register(
            "retries",
            "Retries by upstream: attempted, or refused because the retry budget was spent (budget_exhausted)",
            retries.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            in_flight,
            ready,
            calls,
            call_duration,
            breaker_state,
            transitions,
            bulkhead_rejections,
            retries,
        }
    }

    pub fn request(&self, route: &str, status_class: &str, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { route: route.into(), status_class: status_class.into() }).inc();
        self.duration.get_or_create(&RouteLabels { route: route.into() }).observe(seconds);
    }

    pub fn set_in_flight(&self, n: u64) {
        self.in_flight.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    pub fn call(&self, upstream: &str, outcome: CallOutcome) {
        self.calls.get_or_create(&CallLabels { upstream: upstream.into(), outcome: outcome.as_str().into() }).inc();
    }

    pub fn call_duration(&self, upstream: &str, seconds: f64) {
        self.call_duration.get_or_create(&UpstreamLabels { upstream: upstream.into() }).observe(seconds);
    }

    pub fn breaker_state(&self, upstream: &str, state: Option<State>) {
        let labels = UpstreamLabels { upstream: upstream.into() };
        match state {
            Some(state) => {
                self.breaker_state.get_or_create(&labels).set(state.gauge());
            }
            // No breaker (any more): no series, rather than a state it does not have.
            None => {
                self.breaker_state.remove(&labels);
            }
        }
    }

    pub fn transition(&self, upstream: &str, t: Transition) {
        self.transitions
            .get_or_create(&TransitionLabels {
                upstream: upstream.into(),
                from: t.from.as_str().into(),
                to: t.to.as_str().into(),
            })
            .inc();
        self.breaker_state(upstream, Some(t.to));
    }

    pub fn bulkhead_rejected(&self, upstream: &str) {
        self.bulkhead_rejections.get_or_create(&UpstreamLabels { upstream: upstream.into() }).inc();
    }

    pub fn retry(&self, upstream: &str, result: &str) {
        self.retries.get_or_create(&RetryLabels { upstream: upstream.into(), result: result.into() }).inc();
    }

    /// The registry in Prometheus' text format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        crate::serve::encode_registry(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exported_with_the_service_label() {
        let m = Metrics::new("catalog");
        m.request("work", "2xx", 0.012);
        m.call("inventory", CallOutcome::ShortCircuited);
        m.call_duration("inventory", 0.003);
        m.transition("inventory", Transition { from: State::Closed, to: State::Open });
        m.bulkhead_rejected("inventory");
        m.retry("inventory", "budget_exhausted");
        m.set_in_flight(3);
        m.set_ready(true);
        let text = m.encode().expect("encodes");
        for line in [
            r#"chaoslab_demo_requests_total{service="catalog",route="work",status_class="2xx"} 1"#,
            r#"chaoslab_demo_request_duration_seconds_count{service="catalog",route="work"} 1"#,
            r#"chaoslab_demo_dependency_calls_total{service="catalog",upstream="inventory",outcome="short_circuited"} 1"#,
            r#"chaoslab_demo_circuit_breaker_state{service="catalog",upstream="inventory"} 1"#,
            r#"chaoslab_demo_circuit_breaker_transitions_total{service="catalog",upstream="inventory",from="closed",to="open"} 1"#,
            r#"chaoslab_demo_bulkhead_rejections_total{service="catalog",upstream="inventory"} 1"#,
            r#"chaoslab_demo_retries_total{service="catalog",upstream="inventory",result="budget_exhausted"} 1"#,
            r#"chaoslab_demo_in_flight_requests{service="catalog"} 3"#,
            r#"chaoslab_demo_ready{service="catalog"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
        m.breaker_state("inventory", None);
        assert!(!m.encode().expect("encodes").contains("chaoslab_demo_circuit_breaker_state{"));
    }
}
