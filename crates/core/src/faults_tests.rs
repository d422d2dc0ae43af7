use super::*;

const FUTURE: &str = "2026-01-01T12:00:00Z";

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn parse(json: &str) -> Result<FaultSet, FaultSetError> {
    FaultSet::parse(json.as_bytes(), ProxyProtocol::Http, now())
}

fn with_faults(faults: &str) -> String {
    format!(r#"{{"faults":[{faults}],"expiresAt":"{FUTURE}"}}"#)
}

fn error(json: &str) -> String {
    parse(json).unwrap_err().to_string()
}

#[test]
fn a_full_set_parses_with_its_defaults_and_round_trips() {
    let json = format!(
        r#"{{"expiresAt":"{FUTURE}","seed":42,"faults":[
            {{"type":"abort","percent":30,"abort":{{"status":418,"body":"teapot"}},
              "match":{{"pathPrefix":"/api","method":"POST","headers":{{"x-user":"test"}}}}}},
            {{"type":"latency","latency":{{"delay":"50ms","jitter":"10ms","distribution":"pareto","applyTo":"response"}}}},
            {{"type":"reset","percent":0.5}},
            {{"type":"blackhole","percent":1}},
            {{"type":"bandwidth","bandwidth":{{"bytesPerSecond":1024}}}},
            {{"type":"abort","abort":{{}}}}]}}"#
    );
    let set = parse(&json).unwrap();
    assert_eq!(set.seed, Some(42));
    assert_eq!(set.faults.len(), 6);
    assert_eq!(set.faults[1].percent, 100.0, "percent defaults to 100");
    assert_eq!(set.faults[1].latency.as_ref().unwrap().delay.as_std(), Duration::from_millis(50));
    assert_eq!(set.faults[5].abort, Some(AbortFault { status: 503, body: None }), "status defaults to 503");
    let again: FaultSet = serde_json::from_value(serde_json::to_value(&set).unwrap()).unwrap();
    assert_eq!(again, set);
}

#[test]
fn an_empty_list_is_a_valid_pass_through_set_and_a_past_one_is_accepted() {
    assert!(parse(&with_faults("")).unwrap().faults.is_empty());
    let past = r#"{"faults":[{"type":"reset"}],"expiresAt":"2020-01-01T00:00:00Z"}"#;
    assert_eq!(parse(past).unwrap().faults.len(), 1);
}

#[test]
fn every_error_names_its_field_and_what_is_allowed() {
    let cases: &[(String, &str)] = &[
        ("[1]".to_owned(), "the fault set: must be a JSON object"),
        ("{".to_owned(), "the fault set is not JSON: EOF while parsing an object at line 1 column 1"),
        (format!(r#"{{"expiresAt":"{FUTURE}"}}"#), "faults: required: a list of faults (it may be empty)"),
        (
            r#"{"faults":[]}"#.to_owned(),
            "expiresAt: required: the RFC 3339 moment the faults stop (every fault set is time-bounded)",
        ),
        (
            r#"{"faults":[],"expiresAt":"tomorrow"}"#.to_owned(),
            "expiresAt: must be an RFC 3339 time such as 2030-01-01T12:00:00Z",
        ),
        (
            format!(r#"{{"faults":[],"expiresAt":"{FUTURE}","expires_at":"x"}}"#),
            "expires_at: unknown field (allowed here: faults, expiresAt, startsAt, seed)",
        ),
        (
            format!(r#"{{"faults":[],"expiresAt":"{FUTURE}","seed":-1}}"#),
            "seed: must be an integer from 0 to 18446744073709551615",
        ),
        (format!(r#"{{"faults":{{}},"expiresAt":"{FUTURE}"}}"#), "faults: must be a list of faults"),
        (with_faults(r#"{"percent":5}"#), "faults[0].type: required: latency, abort, reset, blackhole or bandwidth"),
        (
            with_faults(r#"{"type":"latenc"}"#),
            "faults[0].type: must be one of latency, abort, reset, blackhole, bandwidth",
        ),
        (
            with_faults(r#"{"type":"reset","latncy":{}}"#),
            "faults[0].latncy: unknown field (allowed here: type, percent, match, latency, abort, bandwidth)",
        ),
        (
            with_faults(r#"{"type":"reset","percent":"5%"}"#),
            "faults[0].percent: must be a number above 0 and up to 100",
        ),
        (
            with_faults(r#"{"type":"reset"},{"type":"reset","percent":0}"#),
            "faults[1].percent: must be above 0 and at most 100, got 0",
        ),
        (
            with_faults(r#"{"type":"reset","percent":100.5}"#),
            "faults[0].percent: must be above 0 and at most 100, got 100.5",
        ),
        (with_faults(r#"{"type":"latency"}"#), "faults[0].latency: required for a fault of type latency"),
        (
            with_faults(r#"{"type":"reset","abort":{}}"#),
            "faults[0].abort: not allowed for a fault of type reset (only for type abort)",
        ),
        (
            with_faults(r#"{"type":"latency","latency":{}}"#),
            "faults[0].latency.delay: required: a duration such as 100ms",
        ),
        (
            with_faults(r#"{"type":"latency","latency":{"delay":"5x"}}"#),
            "faults[0].latency.delay: must be a duration such as 100ms or 1.5s",
        ),
        (
            with_faults(r#"{"type":"latency","latency":{"delay":"6m"}}"#),
            "faults[0].latency.delay: must be at most 5m, got 360s",
        ),
        (
            with_faults(r#"{"type":"latency","latency":{"delay":"1s","jitter":"301s"}}"#),
            "faults[0].latency.jitter: must be at most 5m, got 301s",
        ),
        (
            with_faults(r#"{"type":"latency","latency":{"delay":"1s","distribution":"cauchy"}}"#),
            "faults[0].latency.distribution: must be one of uniform, normal, pareto",
        ),
        (
            with_faults(r#"{"type":"latency","latency":{"delay":"1s","on":"request"}}"#),
            "faults[0].latency.on: unknown field (allowed here: delay, jitter, distribution, applyTo)",
        ),
        (
            with_faults(r#"{"type":"abort","abort":{"status":700}}"#),
            "faults[0].abort.status: must be an HTTP status from 200 to 599, got 700",
        ),
        (
            with_faults(r#"{"type":"abort","abort":{"status":"503"}}"#),
            "faults[0].abort.status: must be an HTTP status from 200 to 599",
        ),
        (
            with_faults(r#"{"type":"abort","abort":{"status":199}}"#),
            "faults[0].abort.status: must be an HTTP status from 200 to 599, got 199",
        ),
        (
            with_faults(r#"{"type":"bandwidth","bandwidth":{}}"#),
            "faults[0].bandwidth.bytesPerSecond: required: an integer ≥ 1",
        ),
        (
            with_faults(r#"{"type":"bandwidth","bandwidth":{"bytesPerSecond":0}}"#),
            "faults[0].bandwidth.bytesPerSecond: must be at least 1",
        ),
        (
            with_faults(r#"{"type":"reset","match":{"pathPrefix":"api"}}"#),
            "faults[0].match.pathPrefix: must start with /, got \"api\"",
        ),
        (
            with_faults(r#"{"type":"reset","match":{"method":"BREW"}}"#),
            "faults[0].match.method: must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        ),
        (
            with_faults(r#"{"type":"reset","match":{"headers":{"bad name":"x"}}}"#),
            "faults[0].match.headers[\"bad name\"]: is not a valid HTTP header name",
        ),
        (
            with_faults(r#"{"type":"reset","match":{"headers":{"x":"a\nb"}}}"#),
            "faults[0].match.headers[\"x\"]: \"a\\nb\" is not a valid HTTP header value",
        ),
        (
            with_faults(r#"{"type":"reset","match":{"path":"/"}}"#),
            "faults[0].match.path: unknown field (allowed here: pathPrefix, method, headers)",
        ),
        (
            r#"{"faults":[],"expiresAt":"2026-01-02T01:00:01Z"}"#.to_owned(),
            "expiresAt: at most 25h ahead (until 2026-01-02T01:00:00Z), got 2026-01-02T01:00:01Z",
        ),
    ];
    for (json, want) in cases {
        let got = error(json);
        assert!(got.starts_with(want), "for {json}\n got: {got}\nwant: {want}");
    }
    let body = "x".repeat(MAX_ABORT_BODY + 1);
    assert_eq!(
        error(&with_faults(&format!(r#"{{"type":"abort","abort":{{"body":"{body}"}}}}"#))),
        "faults[0].abort.body: at most 4096 bytes, got 4097"
    );
    let nine = [r#"{"type":"reset"}"#; 9].join(",");
    assert_eq!(error(&with_faults(&nine)), "faults: at most 8 faults, got 9");
}

#[test]
fn abort_and_match_need_http_mode() {
    let tcp = |json: &str| FaultSet::parse(json.as_bytes(), ProxyProtocol::Tcp, now()).map_err(|e| e.to_string());
    assert_eq!(
        tcp(&with_faults(r#"{"type":"abort","abort":{}}"#)).unwrap_err(),
        "faults[0].type: abort needs protocol http: a tcp proxy sees connections, not requests"
    );
    assert_eq!(
        tcp(&with_faults(r#"{"type":"reset","match":{"pathPrefix":"/"}}"#)).unwrap_err(),
        "faults[0].match: needs protocol http: a tcp proxy sees connections, not requests"
    );
    let ok = r#"{"type":"reset"},{"type":"blackhole"},{"type":"latency","latency":{"delay":"1ms"}},{"type":"bandwidth","bandwidth":{"bytesPerSecond":1}}"#;
    assert_eq!(tcp(&with_faults(ok)).unwrap().faults.len(), 4);
}
