//! What the engine sends and how an answer is judged: the target URL, one prebuilt template
//! per request of the mix, the weighted mix itself and the classification of statuses.
//!
//! Everything here is built once before the run, so a request clones cheap values: `Bytes`,
//! `Uri` and `Method` are reference-counted or inline, and its `HeaderMap` is its one
//! allocation. HTTP/1.1 and HTTP/2 requests differ only in their parts: the origin form and a
//! `Host` header for the one, the absolute URI (hence `:authority`) for the other.

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version,
    uri::{Authority, PathAndQuery, Scheme},
};
use http_body_util::Full;

use super::EngineError;
use crate::{
    api::load::{HttpMethod, RequestSpec},
    load::measure::Outcome,
};

/// The body type of every request the engine sends.
pub(crate) type ReqBody = Full<Bytes>;

/// Where the requests go: the host to connect to and the authority to name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The host to connect to, without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
    pub authority: Authority,
    /// The base URL's path, without a trailing slash ("" for the root).
    base_path: String,
    /// The base URL's path and query, used as is by a request without a path.
    base_path_and_query: PathAndQuery,
}

impl Target {
    /// Parses `base_url`: only `http://` is supported (HTTP/1.1, or HTTP/2 with prior knowledge).
    pub fn parse(base_url: &str) -> Result<Target, EngineError> {
        let bad = |reason: &str| EngineError::Url { url: base_url.to_owned(), reason: reason.to_owned() };
        let uri: Uri = base_url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&format!("{e} (expected http://host[:port][/path])")))?;
        match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => {}
            Some(s) if *s == Scheme::HTTPS => {
                return Err(bad("https:// is not supported by the load engine yet; use an http:// URL"));
            }
            _ => return Err(bad("the URL must start with http://")),
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("the URL has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information in the URL is not supported"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(bad("the URL has no host"));
        }
        let port = authority.port_u16().unwrap_or(80);
        let base_path_and_query = uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let base_path = base_path_and_query.path().trim_end_matches('/').to_owned();
        Ok(Target { host, port, authority, base_path, base_path_and_query })
    }

    /// The path and query of a request with `path` (relative to the base URL's path).
    fn join(&self, path: Option<&str>) -> Result<PathAndQuery, String> {
        let Some(path) = path else { return Ok(self.base_path_and_query.clone()) };
        if !path.starts_with('/') {
            return Err(format!("path {path:?} must start with /"));
        }
        if self.base_path_and_query.query().is_some() {
            return Err("the target URL has a query, so requests cannot add a path to it".to_owned());
        }
        let joined = format!("{}{path}", self.base_path);
        joined.parse().map_err(|e: http::uri::InvalidUri| format!("path {path:?} is not valid: {e}"))
    }
}

/// Which statuses count as success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Any 2xx or 3xx.
    Success,
    /// Exactly these, as a bit set over 0..640.
    Only([u64; 10]),
}

impl Expect {
    fn of(statuses: &[u16]) -> Result<Expect, String> {
        if statuses.is_empty() {
            return Ok(Expect::Success);
        }
        let mut bits = [0u64; 10];
        for &status in statuses {
            if !(100..=599).contains(&status) {
                return Err(format!("expectStatus {status} is not an HTTP status (100 to 599)"));
            }
            bits[usize::from(status / 64)] |= 1 << (status % 64);
        }
        Ok(Expect::Only(bits))
    }

    fn accepts(&self, status: u16) -> bool {
        match self {
            Expect::Success => (200..400).contains(&status),
            Expect::Only(bits) => {
                bits.get(usize::from(status / 64)).is_some_and(|word| word & (1 << (status % 64)) != 0)
            }
        }
    }

    /// The outcome of an answer with `status` whose body was read to the end.
    pub fn classify(&self, status: u16) -> Outcome {
        if self.accepts(status) {
            Outcome::Ok
        } else {
            match status {
                400..=499 => Outcome::Status4xx,
                500..=599 => Outcome::Status5xx,
                _ => Outcome::UnexpectedStatus,
            }
        }
    }
}

/// One request of the mix: the parts of a hyper `Request` and its body, cloned per request.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    pub expect: Expect,
    /// Safe to send again when a kept-alive connection turns out closed before any answer
    /// (RFC 9110 §9.2.2: every method here but POST and PATCH).
    pub idempotent: bool,
}

impl Template {
    /// The template of `spec` (number `index` in the mix); `http2` picks the absolute URI and
    /// `:authority` that HTTP/2 needs over the origin form and `Host` header of HTTP/1.1.
    pub fn new(target: &Target, spec: &RequestSpec, index: usize, http2: bool) -> Result<Template, EngineError> {
        let bad = |reason: String| EngineError::Request { index, reason };
        let path = target.join(spec.path.as_deref()).map_err(bad)?;
        let uri = if http2 {
            Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(target.authority.clone())
                .path_and_query(path)
                .build()
                .map_err(|e| bad(format!("cannot build the request URI: {e}")))?
        } else {
            Uri::from(path)
        };
        let mut headers = HeaderMap::new();
        if !http2 {
            let host = HeaderValue::from_str(target.authority.as_str())
                .map_err(|e| bad(format!("the target's host is not a valid Host header: {e}")))?;
            headers.insert(http::header::HOST, host);
        }
        for (name, value) in &spec.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| bad(format!("header name {name:?} is not valid: {e}")))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| bad(format!("header {name} has an invalid value: {e}")))?;
            // The engine frames the body itself; a length of the spec's could only contradict it.
            if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
                continue;
            }
            // A header given in the spec replaces the engine's own (e.g. a Host override).
            headers.insert(name, value);
        }
        if spec.weight == 0 {
            return Err(bad("weight must be at least 1".to_owned()));
        }
        let method = Method::from(spec.method);
        let body = spec.body.clone().map(Bytes::from).unwrap_or_default();
        // Set here once rather than by hyper per request (which formats it anew each time).
        // Methods that carry a body get one even when it is empty, as servers expect of them;
        // HTTP/2 frames bodies by itself.
        if !http2 && (!body.is_empty() || matches!(method, Method::POST | Method::PUT | Method::PATCH)) {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        Ok(Template {
            idempotent: !matches!(method, Method::POST | Method::PATCH),
            method,
            uri,
            version: if http2 { Version::HTTP_2 } else { Version::HTTP_11 },
            headers,
            body,
            expect: Expect::of(&spec.expect_status).map_err(bad)?,
        })
    }

    /// A new request of this template.
    pub fn request(&self) -> Request<ReqBody> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        // hyper parses an HTTP/1.1 response's headers into the map its request's headers were
        // written from: with room for a typical response's, it needs no growing per request.
        let headers = request.headers_mut();
        headers.reserve(HEADER_ROOM);
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        request
    }
}

/// The headers a request's map has room for: a typical response's.
const HEADER_ROOM: usize = 16;

/// The templates of a mix; an empty mix is one `GET` on the base URL.
pub(crate) fn templates(target: &Target, specs: &[RequestSpec], http2: bool) -> Result<Vec<Template>, EngineError> {
    if specs.is_empty() {
        let get = RequestSpec {
            name: None,
            method: HttpMethod::Get,
            path: None,
            headers: Default::default(),
            body: None,
            expect_status: Vec::new(),
            weight: 1,
        };
        return Ok(vec![Template::new(target, &get, 0, http2)?]);
    }
    specs.iter().enumerate().map(|(index, spec)| Template::new(target, spec, index, http2)).collect()
}

/// The weighted mix: which request the n-th pick sends.
///
/// One period of a smooth weighted round-robin (nginx's) is computed up front, so a pick is a
/// table look-up by sequence number: deterministic, free of shared state, and spread evenly
/// (weights 3:1 give a a b a, not a a a b). Weights are divided by their gcd first, so the
/// period is at most 32 requests × weight 1000.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mix {
    table: Box<[u16]>,
}

impl Mix {
    /// The mix of `weights` (each at least 1, at most 65 536 of them).
    pub fn new(weights: &[u32]) -> Mix {
        let divisor = weights.iter().copied().fold(0, gcd).max(1);
        let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / divisor)).collect();
        let period: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut table = Vec::with_capacity(usize::try_from(period).unwrap_or(0));
        for _ in 0..period {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= period;
            table.push(u16::try_from(best).unwrap_or(u16::MAX));
        }
        if table.is_empty() {
            table.push(0);
        }
        Mix { table: table.into_boxed_slice() }
    }

    /// The index of the request the `n`-th pick sends.
    pub fn pick(&self, n: u64) -> usize {
        // The table is never empty; the length fits u64 and the remainder fits usize.
        let len = self.table.len() as u64;
        usize::from(self.table[(n % len) as usize])
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec(path: &str) -> RequestSpec {
        RequestSpec {
            name: None,
            method: HttpMethod::Get,
            path: Some(path.to_owned()),
            headers: BTreeMap::new(),
            body: None,
            expect_status: Vec::new(),
            weight: 1,
        }
    }

    #[test]
    fn targets_parse_http_only() {
        let t = Target::parse("http://example.test:8080/api/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.authority.as_str()), ("example.test", 8080, "example.test:8080"));
        assert_eq!(t.join(Some("/users?id=1")).unwrap(), "/api/users?id=1");
        assert_eq!(t.join(None).unwrap(), "/api/");
        let t = Target::parse("http://127.0.0.1").unwrap();
        assert_eq!((t.port, t.join(Some("/x")).unwrap().as_str()), (80, "/x"));
        assert_eq!(t.join(None).unwrap(), "/");
        let t = Target::parse("http://[::1]:9000/").unwrap();
        assert_eq!(t.host, "::1");
        let t = Target::parse("http://svc/search?q=1").unwrap();
        assert_eq!(t.join(None).unwrap(), "/search?q=1");
        assert!(t.join(Some("/other")).is_err(), "a path after a query is ambiguous");

        for (url, needle) in [
            ("https://example.test/", "https:// is not supported"),
            ("ftp://example.test/", "http://"),
            ("example.test/path", "http://"),
            ("http://user:pw@example.test/", "user information"),
            ("http://exa mple/", "invalid"),
        ] {
            match Target::parse(url) {
                Err(EngineError::Url { url: u, reason }) => {
                    assert_eq!(u, url);
                    assert!(reason.contains(needle), "{url}: {reason}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    /// A request's headers, in order.
    fn headers(request: &Request<ReqBody>) -> Vec<(String, String)> {
        request.headers().iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn http1_requests_have_the_origin_form_and_a_host_header() {
        let target = Target::parse("http://127.0.0.1:8080/base").unwrap();
        let mut s = spec("/orders?page=2");
        s.method = HttpMethod::Post;
        s.body = Some("{\"n\":1}".to_owned());
        s.headers.insert("content-type".to_owned(), "application/json".to_owned());
        s.headers.insert("X-Trace".to_owned(), "abc".to_owned());
        s.headers.insert("Content-Length".to_owned(), "999".to_owned());
        let template = Template::new(&target, &s, 0, false).unwrap();
        let request = template.request();
        assert_eq!((request.method(), request.version()), (&Method::POST, Version::HTTP_11));
        assert_eq!(request.uri(), "/base/orders?page=2");
        assert_eq!(
            headers(&request),
            pairs(&[
                ("host", "127.0.0.1:8080"),
                ("x-trace", "abc"),
                ("content-type", "application/json"),
                ("content-length", "7"),
            ]),
            "the spec's length is replaced by the body's"
        );
        assert_eq!(hyper::body::Body::size_hint(request.body()).exact(), Some(7));
        assert!(request.headers().capacity() >= HEADER_ROOM, "room for the response's headers");
        assert!(!template.idempotent);

        // A Host header in the spec wins over the target's; GET has no length, PUT always one.
        let mut s = spec("/");
        s.headers.insert("Host".to_owned(), "virtual.test".to_owned());
        let template = Template::new(&target, &s, 0, false).unwrap();
        let request = template.request();
        assert_eq!((request.method(), request.uri().to_string().as_str()), (&Method::GET, "/base/"));
        assert_eq!(headers(&request), pairs(&[("host", "virtual.test")]));
        assert!(template.idempotent);
        let mut s = spec("/");
        s.method = HttpMethod::Put;
        let request = Template::new(&target, &s, 0, false).unwrap().request();
        assert_eq!(headers(&request), pairs(&[("host", "127.0.0.1:8080"), ("content-length", "0")]));
        assert_eq!(hyper::body::Body::size_hint(request.body()).exact(), Some(0));
    }

    #[test]
    fn http2_requests_carry_the_absolute_uri() {
        let target = Target::parse("http://localhost:9090").unwrap();
        let mut s = spec("/a?b=c");
        s.method = HttpMethod::Post;
        s.body = Some("xyz".to_owned());
        s.headers.insert("x-test".to_owned(), "1".to_owned());
        let template = Template::new(&target, &s, 0, true).unwrap();
        let request = template.request();
        assert_eq!(request.uri(), "http://localhost:9090/a?b=c");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.version(), Version::HTTP_2);
        assert_eq!(headers(&request), pairs(&[("x-test", "1")]), "no host, and hyper frames the body");
        assert_eq!(hyper::body::Body::size_hint(request.body()).exact(), Some(3));
    }

    #[test]
    fn bad_requests_name_their_index() {
        let target = Target::parse("http://localhost").unwrap();
        let mut bad_header = spec("/");
        bad_header.headers.insert("bad header".to_owned(), "x".to_owned());
        let mut bad_value = spec("/");
        bad_value.headers.insert("x".to_owned(), "line\nbreak".to_owned());
        let mut bad_status = spec("/");
        bad_status.expect_status = vec![200, 99];
        let mut no_weight = spec("/");
        no_weight.weight = 0;
        for (bad, needle) in [
            (bad_header, "header name"),
            (bad_value, "invalid value"),
            (spec("relative"), "must start with /"),
            (spec("/a b"), "not valid"),
            (bad_status, "expectStatus 99"),
            (no_weight, "weight"),
        ] {
            match templates(&target, &[spec("/ok"), bad], false) {
                Err(EngineError::Request { index: 1, reason }) => assert!(reason.contains(needle), "{reason}"),
                other => panic!("{needle}: {other:?}"),
            }
        }
        let empty = templates(&target, &[], false).unwrap();
        assert_eq!(empty.len(), 1);
        let request = empty[0].request();
        assert_eq!((request.method(), request.uri().to_string().as_str()), (&Method::GET, "/"));
        assert_eq!(headers(&request), pairs(&[("host", "localhost")]));
    }

    #[test]
    fn statuses_are_classified_against_the_expectation() {
        let any = Expect::of(&[]).unwrap();
        for (status, outcome) in [
            (200, Outcome::Ok),
            (204, Outcome::Ok),
            (302, Outcome::Ok),
            (399, Outcome::Ok),
            (100, Outcome::UnexpectedStatus),
            (404, Outcome::Status4xx),
            (429, Outcome::Status4xx),
            (500, Outcome::Status5xx),
            (503, Outcome::Status5xx),
            (600, Outcome::UnexpectedStatus),
            (999, Outcome::UnexpectedStatus),
        ] {
            assert_eq!(any.classify(status), outcome, "{status}");
        }
        let only = Expect::of(&[201, 404, 503]).unwrap();
        for (status, outcome) in [
            (201, Outcome::Ok),
            (404, Outcome::Ok),
            (503, Outcome::Ok),
            (200, Outcome::UnexpectedStatus),
            (301, Outcome::UnexpectedStatus),
            (400, Outcome::Status4xx),
            (500, Outcome::Status5xx),
            (640, Outcome::UnexpectedStatus),
            (u16::MAX, Outcome::UnexpectedStatus),
        ] {
            assert_eq!(only.classify(status), outcome, "{status}");
        }
    }

    #[test]
    fn the_mix_follows_the_weights_evenly_and_deterministically() {
        let mix = Mix::new(&[3, 1]);
        let picks: Vec<usize> = (0..8).map(|n| mix.pick(n)).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 0, 0, 1, 0], "smooth: the light request is not bunched");
        assert_eq!(Mix::new(&[300, 100]), mix, "weights are reduced by their gcd");

        let weights = [5, 1, 3, 1000, 7];
        let mix = Mix::new(&weights);
        let period: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let mut counts = [0u64; 5];
        for n in 0..3 * period {
            counts[mix.pick(n)] += 1;
        }
        for (i, w) in weights.iter().enumerate() {
            assert_eq!(counts[i], 3 * u64::from(*w), "request {i}: exact over whole periods");
        }
        // Over any window, each request is within one pick of its share (smoothness).
        let window = 500;
        for start in [0, 17, 999] {
            let mut c = [0f64; 5];
            for n in start..start + window {
                c[mix.pick(n)] += 1.0;
            }
            for (i, w) in weights.iter().enumerate() {
                let want = window as f64 * f64::from(*w) / period as f64;
                assert!((c[i] - want).abs() <= 2.0, "request {i} from {start}: {} vs {want}", c[i]);
            }
        }
        let one = Mix::new(&[1]);
        assert!((0..10).all(|n| one.pick(n) == 0));
    }
}
