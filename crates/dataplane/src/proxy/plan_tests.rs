use http::{HeaderMap, Method};

use super::*;
use crate::proxy::faults::FaultSet;

fn plan(faults: &str, seed: u64) -> FaultPlan {
    let json = format!(r#"{{"faults":[{faults}],"expiresAt":"2026-01-01T12:00:00Z"}}"#);
    let now = "2026-01-01T00:00:00Z".parse().unwrap();
    let set = FaultSet::parse(json.as_bytes(), crate::api::fault::ProxyProtocol::Http, now).unwrap();
    FaultPlan::compile(&set, seed)
}

fn get(path: &str) -> (Method, String, HeaderMap) {
    (Method::GET, path.to_owned(), HeaderMap::new())
}

fn decide(plan: &FaultPlan, n: u64, request: &(Method, String, HeaderMap)) -> Decision {
    let view = RequestView { method: &request.0, path: &request.1, headers: &request.2 };
    plan.decide(0, n, Some(&view))
}

/// Milliseconds of many request delays drawn from `faults`, sorted.
fn delays(plan: &FaultPlan, n: u64) -> Vec<f64> {
    let request = get("/");
    let mut out: Vec<f64> = (0..n).map(|i| decide(plan, i, &request).request_delay.as_secs_f64() * 1000.0).collect();
    out.sort_by(f64::total_cmp);
    out
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn the_first_deciding_fault_in_list_order_wins_and_what_does_not_pass_is_not_shaped() {
    let p = plan(
        r#"{"type":"latency","latency":{"delay":"50ms"}},
           {"type":"reset"},
           {"type":"abort","abort":{"status":418}},
           {"type":"bandwidth","bandwidth":{"bytesPerSecond":10}}"#,
        1,
    );
    let d = decide(&p, 0, &get("/"));
    assert_eq!(d.action, FaultAction::Reset);
    assert_eq!((d.request_delay, d.bandwidth), (Duration::ZERO, None));
    assert_eq!(d.applied, [0, 0, 1, 0, 0], "only the reset applied");

    let p = plan(r#"{"type":"abort","abort":{"status":418,"body":"no"}},{"type":"blackhole"}"#, 1);
    assert_eq!(
        decide(&p, 0, &get("/")).action,
        FaultAction::Abort { status: StatusCode::IM_A_TEAPOT, body: "no".into() }
    );
}

#[test]
fn latencies_add_up_per_point_and_the_smallest_bandwidth_wins() {
    let p = plan(
        r#"{"type":"latency","latency":{"delay":"50ms"}},
           {"type":"latency","latency":{"delay":"20ms"}},
           {"type":"latency","latency":{"delay":"7ms","applyTo":"response"}},
           {"type":"bandwidth","bandwidth":{"bytesPerSecond":1000}},
           {"type":"bandwidth","bandwidth":{"bytesPerSecond":300}}"#,
        1,
    );
    let d = decide(&p, 0, &get("/"));
    assert_eq!(d.action, FaultAction::Pass);
    assert_eq!(d.request_delay, Duration::from_millis(70));
    assert_eq!(d.response_delay, Duration::from_millis(7));
    assert_eq!(d.bandwidth, Some(300));
    assert_eq!(d.applied, [3, 0, 0, 0, 2]);
    assert!(d.faulted());
}

#[test]
fn matches_on_path_prefix_method_and_headers_all_at_once() {
    let p = plan(
        r#"{"type":"abort","abort":{},"match":{"pathPrefix":"/api","method":"POST","headers":{"X-User":"test"}}}"#,
        1,
    );
    let mut headers = HeaderMap::new();
    headers.append("x-user", "other".parse().unwrap());
    headers.append("x-user", "test".parse().unwrap());
    let hit = (Method::POST, "/api/orders".to_owned(), headers.clone());
    assert!(
        matches!(decide(&p, 0, &hit).action, FaultAction::Abort { .. }),
        "any value of a repeated header may match"
    );
    for miss in [
        (Method::GET, "/api/orders".to_owned(), headers.clone()),
        (Method::POST, "/apx".to_owned(), headers.clone()),
        (Method::POST, "/api".to_owned(), HeaderMap::new()),
    ] {
        let d = decide(&p, 0, &miss);
        assert_eq!((d.faulted(), d.action), (false, FaultAction::Pass), "{miss:?}");
    }
    // TCP has no request: a fault with a match never applies there.
    assert_eq!(p.decide(0, 0, None).action, FaultAction::Pass);
}

#[test]
fn percent_hits_that_share_within_four_sigma_and_each_fault_rolls_its_own_dice() {
    let p = plan(
        r#"{"type":"latency","percent":30,"latency":{"delay":"1ms"}},{"type":"bandwidth","percent":30,"bandwidth":{"bytesPerSecond":5}}"#,
        9,
    );
    let n = 100_000u64;
    let (mut lat, mut bw, mut both) = (0u64, 0u64, 0u64);
    for i in 0..n {
        let d = decide(&p, i, &get("/"));
        lat += u64::from(d.applied[0]);
        bw += u64::from(d.applied[4]);
        both += u64::from(d.applied[0] > 0 && d.applied[4] > 0);
    }
    let sigma = |p: f64| (n as f64 * p * (1.0 - p)).sqrt();
    for (got, p) in [(lat, 0.3), (bw, 0.3), (both, 0.09)] {
        let want = n as f64 * p;
        assert!((got as f64 - want).abs() < 4.0 * sigma(p), "{got} vs {want} ± {}", 4.0 * sigma(p));
    }
}

#[test]
fn the_same_seed_repeats_the_same_faults_and_another_does_not() {
    let faults = r#"{"type":"reset","percent":50},{"type":"latency","latency":{"delay":"1ms","jitter":"5ms"}}"#;
    let run = |seed: u64| -> Vec<Decision> {
        let p = plan(faults, seed);
        (0..3u64).flat_map(|c| (0..50u64).map(move |r| (c, r))).map(|(c, r)| p.decide(c, r, None)).collect()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
    // Connections are independent: request r of connection 1 is not request r of connection 0.
    let p = plan(faults, 1);
    let zero: Vec<_> = (0..50).map(|r| p.decide(0, r, None)).collect();
    let one: Vec<_> = (0..50).map(|r| p.decide(1, r, None)).collect();
    assert_ne!(zero, one);
}

#[test]
fn uniform_jitter_spreads_evenly_from_delay_to_delay_plus_jitter() {
    let d = delays(&plan(r#"{"type":"latency","latency":{"delay":"50ms","jitter":"20ms"}}"#, 3), 20_000);
    assert!(d[0] >= 50.0 && *d.last().unwrap() < 70.0);
    for (q, want) in [(0.1, 52.0), (0.5, 60.0), (0.9, 68.0)] {
        assert!((quantile(&d, q) - want).abs() < 0.3, "p{q}: {}", quantile(&d, q));
    }
}

#[test]
fn normal_jitter_has_jitter_as_its_standard_deviation_and_is_truncated_at_zero() {
    let d = delays(
        &plan(r#"{"type":"latency","latency":{"delay":"50ms","jitter":"10ms","distribution":"normal"}}"#, 4),
        20_000,
    );
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
    assert!((mean - 50.0).abs() < 0.3, "{mean}");
    assert!((sd - 10.0).abs() < 0.3, "{sd}");
    // p84 of a normal is one standard deviation above the mean.
    assert!((quantile(&d, 0.8413) - 60.0).abs() < 0.5, "{}", quantile(&d, 0.8413));
    let truncated = delays(
        &plan(r#"{"type":"latency","latency":{"delay":"1ms","jitter":"10ms","distribution":"normal"}}"#, 4),
        10_000,
    );
    assert_eq!(truncated[0], 0.0);
    assert!(truncated.iter().filter(|x| **x == 0.0).count() > 4000, "about 46% below zero, truncated to 0");
}

#[test]
fn pareto_jitter_follows_the_documented_lomax_quantiles() {
    let d = delays(
        &plan(r#"{"type":"latency","latency":{"delay":"50ms","jitter":"10ms","distribution":"pareto"}}"#, 5),
        100_000,
    );
    // jitter × ((1 − q)^(−1/2) − 1): p50 4.14, p90 21.6, p99 90 ms above the delay.
    for (q, want) in [(0.5, 54.14), (0.9, 71.62), (0.99, 140.0)] {
        let got = quantile(&d, q);
        assert!((got - want).abs() / (want - 50.0) < 0.05, "p{q}: {got} vs {want}");
    }
    let capped = 50.0 + 10.0 * JITTER_CAP;
    assert!(*d.last().unwrap() <= capped + 1e-9);
    let uniform = delays(&plan(r#"{"type":"latency","latency":{"delay":"50ms","jitter":"10ms"}}"#, 5), 100_000);
    assert!(quantile(&d, 0.99) - 50.0 > 5.0 * (quantile(&uniform, 0.99) - 50.0), "pareto's tail is far heavier");
}

#[test]
fn an_empty_plan_decides_nothing() {
    let d = FaultPlan::default().decide(0, 0, None);
    assert_eq!(d, Decision::default());
    assert!(!d.faulted());
}
