//! `chaoslab demo` as processes on loopback, the topology frontend → catalog → inventory, measured
//! with `chaoslab load` and the services' own /metrics: what a circuit breaker, a graceful
//! shutdown and a retry budget change, with the figures and the bounds they are held to.
//!
//! The bounds leave room for a loaded 2-core machine and a debug build: each compares the
//! pattern on with the pattern off at a gap far wider than scheduling noise (a 400 ms timeout
//! against a sub-200 ms p99, calls counted exactly).

use crate::support::topology;

use std::{
    thread,
    time::{Duration, Instant},
};

use topology::{Service, f, load, metric_sum, request, topology};

/// The frontend's figures under `rate` requests per second for `seconds`, and the calls that
/// reached inventory meanwhile (every request in flight in the chain settled before and after).
fn measure(lab: &topology::Topology, rate: u32, seconds: u32) -> (f64, f64, f64) {
    lab.catalog.settle(Duration::from_secs(5));
    lab.inventory.settle(Duration::from_secs(5));
    let before = lab.inventory.work_requests();
    let url = format!("{}/", lab.frontend.url);
    let (_, doc, _) =
        load(&[&url, "--rate", &rate.to_string(), "--duration", &format!("{seconds}s"), "-o", "json", "-q"]);
    lab.catalog.settle(Duration::from_secs(5));
    lab.inventory.settle(Duration::from_secs(5));
    let reached = lab.inventory.work_requests() - before;
    let sent = f(&doc["requests"]["total"]);
    (sent, f(&doc["latency"]["p99Ms"]), reached)
}

#[test]
fn a_breaker_in_catalog_spares_a_slow_inventory_and_keeps_the_frontend_fast() {
    let _group = crate::support::group("demo");
    // Catalog gives inventory 400 ms; its breaker opens once 5 of the last 10 calls failed and
    // stays open for a minute, longer than the test.
    let lab = topology(
        &["--latency", "2ms", "--timeout", "3s"],
        &[
            "--latency",
            "2ms",
            "--timeout",
            "400ms",
            "--circuit-breaker",
            "--breaker-window-size",
            "10",
            "--breaker-minimum-calls",
            "5",
            "--breaker-open-duration",
            "60s",
        ],
        &["--latency", "2ms"],
    );
    let healthy = lab.frontend.get("/");
    assert_eq!(healthy.status, 200, "{}", healthy.body);
    assert_eq!(healthy.json()["dependencies"][0]["answer"]["dependencies"][0]["name"], "inventory");

    // Inventory turns slow: 1 s per request, beyond catalog's timeout.
    lab.inventory.patch_config(r#"{"work": {"latency": "1s"}}"#);
    // Six requests at once trip the breaker: six timeouts ≥ 5 calls at 100 % failures.
    let frontend = lab.frontend.addr;
    let trips: Vec<_> = (0..6)
        .map(|_| thread::spawn(move || request(frontend, "GET", "/", None, Duration::from_secs(10)).map(|r| r.status)))
        .collect();
    for trip in trips {
        assert_eq!(trip.join().expect("thread").expect("answer"), 502, "catalog timed out: frontend says 502");
    }
    let state = lab.catalog.state();
    assert_eq!(state["upstreams"][0]["circuitBreaker"]["state"], "open", "{state}");
    let transitions = lab.catalog.metrics();
    let opened = metric_sum(&transitions, "chaoslab_demo_circuit_breaker_transitions_total", &["to=\"open\""]);
    assert_eq!(opened, 1.0, "{transitions}");

    // Breaker open: catalog fails fast, inventory is spared.
    let (sent_on, p99_on, reached_on) = measure(&lab, 50, 3);
    let catalog = lab.catalog.metrics();
    let short = metric_sum(&catalog, "chaoslab_demo_dependency_calls_total", &["outcome=\"short_circuited\""]);

    // Breaker off: every call waits out the 400 ms timeout, and reaches inventory.
    lab.catalog.patch_config(r#"{"upstreams": [{"name": "inventory", "circuitBreaker": {"enabled": false}}]}"#);
    let (sent_off, p99_off, reached_off) = measure(&lab, 50, 3);

    eprintln!(
        "breaker open: {sent_on} sent, frontend p99 {p99_on:.1}ms, {reached_on} reached inventory ({short} short-circuited); \
         breaker off: {sent_off} sent, p99 {p99_off:.1}ms, {reached_off} reached inventory"
    );
    assert!(sent_on >= 140.0 && sent_off >= 140.0, "50/s for 3s: {sent_on}, {sent_off}");
    assert!(p99_on < 200.0, "with the breaker open the frontend's p99 is {p99_on}ms, expected below 200ms");
    assert!(p99_off >= 400.0, "with the breaker off every request waits the 400ms timeout: p99 {p99_off}ms");
    assert!(short >= sent_on, "every call while open was short-circuited: {short} of {sent_on}");
    assert!(reached_on <= 0.05 * sent_on, "{reached_on} calls reached inventory with the breaker open");
    assert!(reached_off >= 0.95 * sent_off, "{reached_off} of {sent_off} reached inventory with the breaker off");
    let reduction = 1.0 - reached_on / reached_off;
    assert!(reduction >= 0.95, "the breaker cut the calls to inventory by {:.0}%", reduction * 100.0);
}

/// Eight requests of 1 s each in flight, then SIGTERM: how many were answered, how the process
/// exited, and (graceful) what /readyz and a new request said during the shutdown delay.
fn sigterm_under_load(graceful: bool) -> (usize, Option<i32>, Option<(u16, u16)>, Duration) {
    let mut flags = vec!["--latency", "1s", "--shutdown-delay", "500ms", "--drain-timeout", "5s"];
    if !graceful {
        flags.push("--graceful-shutdown=false");
    }
    let mut service = Service::start("slow", &flags);
    let addr = service.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| thread::spawn(move || request(addr, "GET", "/", None, Duration::from_secs(10)).map(|r| r.status)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while service.state()["inFlight"].as_u64() != Some(8) {
        assert!(Instant::now() < deadline, "the 8 requests never were in flight together");
        thread::sleep(Duration::from_millis(20));
    }
    let signalled = Instant::now();
    service.signal("TERM");
    let during = graceful.then(|| {
        thread::sleep(Duration::from_millis(100));
        let ready = service.get("/readyz").status;
        let late = thread::spawn(move || request(addr, "GET", "/", None, Duration::from_secs(10)).map(|r| r.status));
        let late = late.join().expect("thread").expect("a request during the shutdown delay is answered");
        (ready, late)
    });
    let answered = clients.into_iter().map(|c| c.join().expect("thread")).filter(|r| matches!(r, Ok(200))).count();
    let status = service.wait_exit(Duration::from_secs(10)).expect("the service exits");
    (answered, status.code(), during, signalled.elapsed())
}

#[test]
fn a_graceful_shutdown_answers_every_request_in_flight() {
    let _group = crate::support::group("demo");
    let (answered, code, during, took) = sigterm_under_load(true);
    eprintln!("graceful: {answered} of 8 answered, exit {code:?} after {took:?}, during the delay {during:?}");
    assert_eq!(answered, 8, "no request in flight is lost");
    assert_eq!(code, Some(0));
    assert_eq!(during, Some((503, 200)), "readiness fails while a new request is still served");
    assert!(took >= Duration::from_millis(500), "the shutdown delay is served: {took:?}");
}

#[test]
fn an_abrupt_shutdown_drops_every_request_in_flight() {
    let _group = crate::support::group("demo");
    let (answered, code, _, took) = sigterm_under_load(false);
    eprintln!("ungraceful: {answered} of 8 answered, exit {code:?} after {took:?}");
    assert_eq!(answered, 0, "every request in flight is lost");
    assert_eq!(code, Some(143), "exits as a process killed by SIGTERM would");
    assert!(took < Duration::from_millis(900), "at once, before the 1s requests could end: {took:?}");
}

#[test]
fn retries_without_a_budget_multiply_the_calls_and_a_budget_caps_them() {
    let _group = crate::support::group("demo");
    // Inventory fails every request; catalog retries 3 times, with no budget.
    let lab = topology(
        &["--latency", "1ms"],
        &[
            "--latency",
            "1ms",
            "--retries",
            "3",
            "--retry-backoff",
            "1ms",
            "--retry-max-backoff",
            "2ms",
            "--retry-budget=false",
        ],
        &["--error-rate", "100"],
    );
    let (sent_free, _, reached_free) = measure(&lab, 50, 2);
    // The budget: retries at most 10 % of the calls over a 10 s window, no floor.
    lab.catalog.patch_config(
        r#"{"upstreams": [{"name": "inventory", "retries": {"budget": {"enabled": true, "ratio": 0.1, "minPerSecond": 0, "window": "10s"}}}]}"#,
    );
    let (sent_budget, _, reached_budget) = measure(&lab, 50, 2);
    let metrics = lab.catalog.metrics();
    let exhausted = metric_sum(&metrics, "chaoslab_demo_retries_total", &["result=\"budget_exhausted\""]);
    let free = reached_free / sent_free;
    let capped = reached_budget / sent_budget;
    eprintln!(
        "no budget: {sent_free} requests, {reached_free} calls reached inventory ({free:.2}x); \
         budget 10%: {sent_budget} requests, {reached_budget} calls ({capped:.2}x), {exhausted} retries refused"
    );
    assert!(sent_free >= 95.0 && sent_budget >= 95.0, "50/s for 2s: {sent_free}, {sent_budget}");
    assert!((3.9..=4.0).contains(&free), "1 + 3 retries per request without a budget: {free:.2}x");
    assert!(capped <= 1.0 + 0.1 + 2.0 / sent_budget, "within the budget of 10%: {capped:.2}x");
    assert!(exhausted >= 0.8 * sent_budget, "most retries were refused by the budget: {exhausted}");
}
