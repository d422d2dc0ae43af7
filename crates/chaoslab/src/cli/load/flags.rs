//! `chaoslab load`'s command line: the flags, and the LoadTest they make — or the manifest of
//! `-f` — admitted as the cluster admits one (`admission`), each error in the words of the flags.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::{ValueEnum, builder::TypedValueParser as _};

use crate::{
    admission::{self, Admitted, Refusal},
    api::{
        GoDuration, LoadTest,
        load::{HttpMethod, LoadModel, LoadProfile, LoadTarget, LoadTestSpec, Preset, RequestSpec, RunnerSpec, Stage},
    },
    domain::expression::Expression,
    load::{
        Plan, expand,
        stages::{MAX_STAGE, MAX_TARGET, MIN_STAGE},
        summary::{DEFAULT_ABORT_GRACE, SummarySpec},
    },
};

const EXAMPLES: &str = "\
Examples:
  # 200 requests per second for 30s; fail (exit 1) if p99 reaches 250ms or 1% of requests fail
  chaoslab load http://localhost:8080/ --rate 200 --duration 30s \\
      --threshold 'p99 < 250ms' --threshold 'errorRate < 1%'

  # 50 virtual users, each pausing 100ms between an answer and its next request
  chaoslab load http://localhost:8080/api --vus 50 --duration 1m --think-time 100ms

  # Find the knee: steps from 10% to 200% of 500/s, stopping at the first level that breaks
  chaoslab load http://localhost:8080/ --preset capacity --rate 500 --duration 100s \\
      --threshold 'p99 < 100ms' --threshold 'errorRate < 0.5%'

  # A ramp: 0 to 300/s in 30s, hold 1m, back to 0 in 10s; stop early once a threshold cannot hold
  chaoslab load http://localhost:8080/ --stage 30s:300 --stage 1m:300 --stage 10s:0 \\
      --threshold 'achievedRate >= 99%' --abort-on-fail --abort-grace 20s

  # A POST with headers, a body from a file, and 201 as the only success; JSON for a script
  chaoslab load http://localhost:8080/orders --rate 20 --duration 10s --method POST \\
      -H 'Content-Type: application/json' --body-file order.json --expect-status 201 -o json

  # A LoadTest manifest, run from here and judged as the operator would; its Service target
  # (frontend, path /) is reached at the base URL given
  chaoslab load -f examples/drills/01-baseline.yaml http://127.0.0.1:18080

Thresholds are `<metric> <op> <value>` with op one of <, <=, >, >=. Metrics: p50 p90 p95 p99 p999
max mean (durations such as 250ms), errorRate (a percentage), achievedRate (a percentage of the
target rate, or requests per second), rps (answers per second), dropped (a count, or a
percentage of the requests scheduled).

Open model: latency counts from each request's intended start, so a slow server or a late
generator shows in the percentiles (no coordinated omission). Closed model: a virtual user sends
when its previous answer came, so a slow server shows as a lower rate. Exit status: 0 Pass (every threshold held, or none was
given, and some request succeeded), 1 when one fails or the run was aborted by --abort-on-fail,
2 Inconclusive (a threshold could not be judged, or no request succeeded: no Pass without a
success) and for a bad flag or manifest, 130 when interrupted with Ctrl-C (the summary of what ran
is still printed).

With -f, the manifest sets the load, the thresholds and the abort rules (abortOnFail,
abortGracePeriod, abortWhen); only the URL and the Output flags may be given with it. A LoadTest
whose target is a url runs against it; one whose target is a Service needs the URL argument: the
base URL the Service is reached at from here (its path is kept, its port ignored).";

/// What the manifest of `-f` sets, so the flags that would set it too are refused.
const FILE_CONFLICTS: [&str; 18] = [
    "rate",
    "vus",
    "model",
    "duration",
    "preset",
    "stages",
    "thresholds",
    "abort_on_fail",
    "abort_grace",
    "method",
    "headers",
    "body",
    "body_file",
    "expect_status",
    "timeout",
    "max_in_flight",
    "think_time",
    "http2",
];

/// Flags of `chaoslab load`.
#[derive(Clone, Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct LoadArgs {
    /// The URL to send requests to: http://host[:port][/path]. With -f and a LoadTest whose
    /// target is a Service: the base URL the Service is reached at from here.
    #[arg(value_name = "URL", required_unless_present = "file")]
    pub url: Option<String>,

    /// Run the LoadTest in this YAML file (apiVersion chaoslab.dev/v1alpha1, kind LoadTest) with
    /// the rules the operator applies; only the URL and the Output flags may be given with it.
    #[arg(short = 'f', long = "file", value_name = "PATH", conflicts_with_all = FILE_CONFLICTS)]
    pub file: Option<PathBuf>,

    /// Open model: requests per second (1 to 1000000). Requests start on schedule whatever the
    /// server does. With --preset, the nominal level L the preset is built around.
    #[arg(long, value_name = "PER_SECOND", help_heading = "Load", conflicts_with = "vus")]
    pub rate: Option<u32>,
    /// Closed model: virtual users (1 to 100000), each waiting for its answer before sending
    /// again. With --preset, the nominal level L.
    #[arg(long, value_name = "USERS", help_heading = "Load")]
    pub vus: Option<u32>,
    /// The model of a --stage ramp: open (stage targets are requests per second, the default) or
    /// closed (virtual users). --rate and --vus imply it.
    #[arg(long, value_name = "MODEL", help_heading = "Load", value_parser = api_enum::<LoadModel>)]
    pub model: Option<LoadModel>,
    /// How long a constant load lasts, 1s to 24h (Go duration: 30s, 5m, 1h30m). With --preset,
    /// the preset's D (default: the preset's own).
    #[arg(long, value_name = "DURATION", help_heading = "Load")]
    pub duration: Option<GoDuration>,
    /// A test type that expands into stages around --rate or --vus: baseline (10% of L),
    /// load (ramp, hold L, ramp down), stress (L, 1.5L, 2L), spike (L, 5L, L), soak (L for
    /// long), capacity (10% to 200% of L in steps, stopping at the first that breaks a threshold).
    #[arg(long, value_name = "PRESET", help_heading = "Load", value_parser = api_enum::<Preset>)]
    pub preset: Option<Preset>,
    /// A ramp stage, repeatable (1 to 100): move linearly to TARGET (rate or VUs) over DURATION,
    /// from where the previous stage left off (the first from 0). Replaces --rate, --vus,
    /// --duration and --preset.
    #[arg(long = "stage", value_name = "DURATION:TARGET", help_heading = "Load",
          conflicts_with_all = ["rate", "vus", "duration", "preset"], value_parser = parse_stage)]
    pub stages: Vec<Stage>,

    /// A threshold that decides the exit status, repeatable (at most 32), such as 'p99 < 250ms',
    /// 'errorRate < 1%', 'achievedRate >= 99%' (see below).
    #[arg(long = "threshold", value_name = "EXPR", help_heading = "Verdict", value_parser = parse_threshold)]
    pub thresholds: Vec<String>,
    /// Stop the run as soon as a threshold can no longer hold (after --abort-grace), and exit 1.
    #[arg(long, help_heading = "Verdict")]
    pub abort_on_fail: bool,
    /// How long after the start nothing aborts the run (at most 1h; default 10s).
    #[arg(long, value_name = "DURATION", help_heading = "Verdict", requires = "abort_on_fail")]
    pub abort_grace: Option<GoDuration>,

    /// The HTTP method: GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
    #[arg(long, value_name = "METHOD", default_value = "GET", help_heading = "Request",
          value_parser = |m: &str| api_enum::<HttpMethod>(&m.to_ascii_uppercase()))]
    pub method: HttpMethod,
    /// A request header, repeatable: -H 'Content-Type: application/json'.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", help_heading = "Request", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// The request body, sent as is (at most 65536 bytes).
    #[arg(long, value_name = "TEXT", help_heading = "Request", conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the request body from this file (UTF-8 text, at most 65536 bytes).
    #[arg(long, value_name = "PATH", help_heading = "Request")]
    pub body_file: Option<PathBuf>,
    /// A status that counts as success, repeatable (at most 16); default: any 2xx or 3xx.
    #[arg(long = "expect-status", value_name = "STATUS", help_heading = "Request")]
    pub expect_status: Vec<u16>,
    /// Per-request timeout, 1ms to 5m.
    #[arg(long, value_name = "DURATION", default_value = "10s", help_heading = "Request")]
    pub timeout: GoDuration,
    /// Open model: the most requests in flight at once (1 to 1000000, default 10000). A request
    /// due while the bound is reached is counted as dropped, never delayed.
    #[arg(long, value_name = "N", help_heading = "Request", conflicts_with = "vus")]
    pub max_in_flight: Option<u32>,
    /// Closed model: each virtual user's pause between an answer and its next request (at most 1m).
    #[arg(long, value_name = "DURATION", help_heading = "Request", conflicts_with = "rate")]
    pub think_time: Option<GoDuration>,
    /// Speak HTTP/2 with prior knowledge instead of HTTP/1.1 with keep-alive.
    #[arg(long, help_heading = "Request")]
    pub http2: bool,

    /// The summary's format: text (a table) or json (one document, "version": 1).
    #[arg(short = 'o', long, value_enum, default_value = "text", help_heading = "Output")]
    pub output: OutputFormat,
    /// Worker threads of the load generator (default: one per CPU core).
    #[arg(long, value_name = "N", help_heading = "Output",
          value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    pub threads: Option<usize>,
    /// No progress line and no notices while running; only the summary.
    #[arg(short = 'q', long, help_heading = "Output")]
    pub quiet: bool,
}

/// A value of one of the API's enums by the name the manifest uses (`open`, `capacity`, `GET`):
/// the flags take what the CRD takes, and serde's error lists what is allowed.
fn api_enum<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// A flag that clap accepted but the LoadTest rules refuse; printed like a usage error (exit 2).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(pub String);

fn flag_error(message: impl Into<String>) -> FlagError {
    FlagError(message.into())
}

/// What the flags ask for, checked: the spec the cluster would run, and its plan.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub url: String,
    /// The manifest of `-f`, as `PATH (LoadTest NAMESPACE/NAME)`.
    pub source: Option<String>,
    pub spec: LoadTestSpec,
    pub plan: Plan,
    pub output: OutputFormat,
    pub quiet: bool,
}

impl Invocation {
    /// The nominal level L: the rate (open) or VUs (closed) a preset is built around.
    pub fn nominal(&self) -> Option<u32> {
        self.spec.load.rate.or(self.spec.load.vus)
    }

    /// What the run summary needs: the plan, thresholds, capacity search and abort rule.
    pub fn summary_spec(&self) -> SummarySpec {
        let capacity = (self.spec.load.preset == Some(Preset::Capacity)).then(|| self.nominal()).flatten();
        let abort_grace = self
            .spec
            .abort_on_fail
            .then(|| self.spec.abort_grace_period.map_or(DEFAULT_ABORT_GRACE, GoDuration::as_std));
        SummarySpec {
            plan: self.plan.clone(),
            model: self.spec.load.model,
            thresholds: self.spec.thresholds.clone(),
            capacity,
            abort_grace,
        }
    }
}

/// Turns the flags into a LoadTest and its plan, admitted as the cluster admits one (the CRD's
/// schema and CEL rules, then the operator's checks: `admission`, the one source of every bound
/// and rule), each error in the words of the flags.
pub fn invocation(args: &LoadArgs) -> Result<Invocation, FlagError> {
    if let Some(path) = &args.file {
        return from_file(path, args);
    }
    let url = args.url.clone().ok_or_else(|| {
        flag_error("give the URL to send requests to, such as http://localhost:8080/, or a LoadTest manifest with -f")
    })?;
    // The schema's pattern refuses it too; this says what to write instead.
    check_url(&url)?;
    if args.stages.is_empty() && args.rate.is_none() && args.vus.is_none() {
        return Err(flag_error(
            "give --rate (requests per second, open model) or --vus (virtual users, closed model), or a ramp with --stage",
        ));
    }
    // --vus implies the closed model; --model says it for a ramp of --stage.
    let model = args.model.unwrap_or(if args.vus.is_some() { LoadModel::Closed } else { LoadModel::Open });
    let load = LoadProfile {
        target: LoadTarget { url: Some(url.clone()), service: None },
        requests: requests(args)?,
        model,
        preset: args.preset,
        rate: args.rate,
        vus: args.vus,
        duration: args.duration,
        stages: (!args.stages.is_empty()).then(|| args.stages.clone()),
        max_in_flight: args.max_in_flight,
        think_time: args.think_time,
        timeout: args.timeout,
        http2: args.http2,
        runners: RunnerSpec::default(),
    };
    let spec = LoadTestSpec {
        load,
        thresholds: args.thresholds.clone(),
        abort_on_fail: args.abort_on_fail,
        abort_grace_period: args.abort_grace,
        abort_when: Vec::new(),
    };
    let manifest = serde_json::to_value(LoadTest::new("chaoslab-load", spec))
        .map_err(|e| flag_error(format!("the flags make no LoadTest: {e}")))?;
    let spec = match admission::admit(&manifest) {
        Ok(Admitted::LoadTest(lt)) => lt.spec,
        Ok(other) => return Err(flag_error(format!("the flags made a {}, not a LoadTest", other.kind().as_str()))),
        Err(refusal) => return Err(flag_error(in_flags(&refusal, &manifest))),
    };
    let plan = expand(&spec.load, None).map_err(|e| flag_error(in_flag_words(&e.to_string())))?;
    Ok(Invocation { url, source: None, spec, plan, output: args.output, quiet: args.quiet })
}

/// The spec's fields as the flags that set them; longest first, so that `load.stages[0]` is
/// found before `load.stages`.
const FLAGS: [(&str, &str); 18] = [
    ("load.requests[0].expectStatus", "--expect-status"),
    ("load.requests[0].headers", "-H/--header"),
    ("load.requests[0].method", "--method"),
    ("load.requests[0].body", "--body"),
    ("load.target.url", "URL"),
    ("load.maxInFlight", "--max-in-flight"),
    ("load.thinkTime", "--think-time"),
    ("abortGracePeriod", "--abort-grace"),
    ("load.duration", "--duration"),
    ("load.timeout", "--timeout"),
    ("load.preset", "--preset"),
    ("load.stages", "--stage"),
    ("load.model", "--model"),
    ("load.http2", "--http2"),
    ("abortOnFail", "--abort-on-fail"),
    ("thresholds", "--threshold"),
    ("load.rate", "--rate"),
    ("load.vus", "--vus"),
];

/// A refusal of the LoadTest the flags built, one line naming the flags and the values given.
fn in_flags(refusal: &Refusal, manifest: &serde_json::Value) -> String {
    refusal
        .field_errors()
        .iter()
        .map(|e| {
            let message = in_flag_words(&e.message);
            let flag = in_flag_words(e.field.strip_prefix("spec.").unwrap_or(&e.field));
            if flag.is_empty() || flag == "load" {
                return message.strip_prefix("load: ").map_or(message.clone(), str::to_owned);
            }
            let message = message.strip_prefix(&flag).map_or(message.as_str(), str::trim_start);
            // A duration or a URL reads best with the value given: `--duration 25h: must be ...`.
            let pointer = format!("/{}", e.field.replace(['.', '['], "/").replace(']', ""));
            let given = manifest
                .pointer(&pointer)
                .and_then(serde_json::Value::as_str)
                .map(|v| v.parse::<GoDuration>().map_or_else(|_| v.to_owned(), |d| duration_text(d.as_std())));
            match given.as_deref() {
                Some(value) if value.len() <= 64 && !message.contains(value) => format!("{flag} {value}: {message}"),
                _ => format!("{flag}: {message}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The spec's field names in a message (`load.rate`, `spec.thresholds[1]`, `stages[].duration`)
/// replaced by the flags that set them.
fn in_flag_words(text: &str) -> String {
    let mut out = text.replace("spec.load.", "load.").replace("spec.", "").replace("stages[].", "load.stages ");
    for (field, flag) in FLAGS {
        out = out.replace(field, flag);
    }
    // `--stage[3]` / `--threshold[0]`: the flag given in that place, counted from 1.
    let mut text = String::new();
    let mut rest = out.as_str();
    while let Some(open) = rest.find('[') {
        let (before, after) = rest.split_at(open);
        text.push_str(before);
        match after[1..].split_once(']') {
            Some((index, tail))
                if index.parse::<usize>().is_ok()
                    && ["--stage", "--threshold", "--expect-status"].iter().any(|f| before.ends_with(f)) =>
            {
                let n = index.parse::<usize>().unwrap_or_default() + 1;
                text.push_str(&format!(" number {n}"));
                rest = tail.strip_prefix(".target").or_else(|| tail.strip_prefix(".duration")).unwrap_or(tail);
            }
            _ => {
                text.push('[');
                rest = &after[1..];
            }
        }
    }
    text.push_str(rest);
    text
}

/// The LoadTest of `-f`: read, admitted as the API server and the operator would admit it, and
/// its target resolved to a URL reachable from here.
fn from_file(path: &std::path::Path, args: &LoadArgs) -> Result<Invocation, FlagError> {
    let shown = path.display();
    let bad = |why: String| flag_error(format!("-f {shown}: {why}"));
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| bad(format!("not valid YAML: {e}")))?
        .into_iter()
        .filter(|d: &serde_json::Value| !d.is_null())
        .collect();
    let doc = match docs.as_slice() {
        [doc] => doc,
        [] => return Err(bad("holds no document: give a file with one LoadTest".into())),
        more => return Err(bad(format!("holds {} documents: give a file with one LoadTest", more.len()))),
    };
    if doc["apiVersion"] != crate::api::API_VERSION || doc["kind"] != "LoadTest" {
        return Err(bad(format!(
            "is apiVersion {} kind {}, not apiVersion {} kind LoadTest",
            doc["apiVersion"],
            doc["kind"],
            crate::api::API_VERSION
        )));
    }
    let lt = match admission::admit(doc) {
        Ok(Admitted::LoadTest(lt)) => *lt,
        Ok(other) => return Err(bad(format!("is a {}, not a LoadTest", other.kind().as_str()))),
        Err(refusal) => return Err(bad(refusal.to_string())),
    };
    let plan = expand(&lt.spec.load, None).map_err(|e| bad(format!("spec.{e}")))?;
    let target = &lt.spec.load.target;
    let url = match (&target.url, &target.service, &args.url) {
        (Some(url), _, None) => url.clone(),
        (Some(url), _, Some(_)) => {
            return Err(bad(format!(
                "the LoadTest's target is the URL {url}: leave the URL argument out (it is for a Service target)"
            )));
        }
        (None, Some(service), Some(base)) => {
            check_url(base)?;
            crate::load::service_url(base, service.path.as_deref())
        }
        (None, Some(service), None) => {
            return Err(bad(format!(
                "the LoadTest's target is the Service {:?}: give the base URL it is reached at from here, such as `chaoslab load -f {shown} http://127.0.0.1:8080` (run chaoslab demo locally, or kubectl port-forward svc/{})",
                service.name, service.name
            )));
        }
        (None, None, _) => return Err(bad("spec.load.target needs one of url and service".into())),
    };
    let name = lt.metadata.name.clone().unwrap_or_default();
    let namespace = lt.metadata.namespace.clone().map(|ns| format!("{ns}/")).unwrap_or_default();
    Ok(Invocation {
        url,
        source: Some(format!("{shown} (LoadTest {namespace}{name})")),
        spec: lt.spec,
        plan,
        output: args.output,
        quiet: args.quiet,
    })
}

/// The schema's pattern for `load.target.url`, `^https?://[^\s/]+(/\S*)?$`, at most 2048 chars.
fn check_url(url: &str) -> Result<(), FlagError> {
    let bad = |why: &str| {
        flag_error(format!("URL {url:?} {why}: give http://host[:port][/path], such as http://localhost:8080/"))
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("does not start with http://"))?;
    if url.len() > 2048 {
        return Err(bad("is longer than 2048 characters"));
    }
    if url.chars().any(char::is_whitespace) {
        return Err(bad("contains whitespace"));
    }
    if rest.split('/').next().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    Ok(())
}

/// A duration as a person writes it on the command line: `500ms`, `1.5s`, `6m`, `1h30m`, `25h`.
pub(crate) fn duration_text(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let millis = d.subsec_millis();
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 || millis > 0 {
        if millis > 0 {
            text.push_str(&format!("{}s", format!("{s}.{millis:03}").trim_end_matches('0')));
        } else {
            text.push_str(&format!("{s}s"));
        }
    }
    text
}

fn requests(args: &LoadArgs) -> Result<Vec<RequestSpec>, FlagError> {
    let body = match (&args.body, &args.body_file) {
        (Some(body), _) => Some(body.clone()),
        (None, Some(path)) => {
            let bytes = std::fs::read(path)
                .map_err(|e| flag_error(format!("--body-file {}: cannot read it: {e}", path.display())))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| flag_error(format!("--body-file {}: is not UTF-8 text", path.display())))?;
            Some(text)
        }
        (None, None) => None,
    };
    let mut headers = BTreeMap::new();
    for (name, value) in &args.headers {
        if headers.keys().any(|n: &String| n.eq_ignore_ascii_case(name)) {
            return Err(flag_error(format!("-H/--header {name:?} is given twice: give each header once")));
        }
        headers.insert(name.clone(), value.clone());
    }
    let method = args.method;
    if method == HttpMethod::Get && headers.is_empty() && body.is_none() && args.expect_status.is_empty() {
        // The spec's default: GET on the target.
        return Ok(Vec::new());
    }
    Ok(vec![RequestSpec {
        name: None,
        method,
        path: None,
        headers,
        body,
        expect_status: args.expect_status.clone(),
        weight: 1,
    }])
}

/// `DURATION:TARGET`, such as `30s:100`.
fn parse_stage(text: &str) -> Result<Stage, String> {
    let (duration, target) = text
        .split_once(':')
        .ok_or_else(|| "expected DURATION:TARGET, such as 30s:100 (ramp to 100 over 30s)".to_owned())?;
    let duration: GoDuration = duration.trim().parse().map_err(|e| format!("{e}"))?;
    if !(MIN_STAGE..=MAX_STAGE).contains(&duration.as_std()) {
        return Err(format!("the duration {duration} must be from 1s to 24h"));
    }
    let target: u32 = target
        .trim()
        .parse()
        .map_err(|_| format!("the target {:?} is not a whole number from 0 to 1000000", target.trim()))?;
    if target > MAX_TARGET {
        return Err(format!("the target {target} is above the highest allowed, 1000000"));
    }
    Ok(Stage { duration, target })
}

/// A threshold that parses and compares with no baseline (a local run measures none); its length
/// is the schema's to check.
fn parse_threshold(text: &str) -> Result<String, String> {
    let expression: Expression = text.parse().map_err(|e: crate::domain::expression::ExpressionError| e.problem)?;
    if expression.value.is_relative() {
        return Err(
            "compares with a baseline, but `chaoslab load` measures none: use an absolute value, such as p99 < 250ms"
                .to_owned(),
        );
    }
    Ok(text.to_owned())
}

/// `Name: value`, with a valid header name and value.
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) =
        text.split_once(':').ok_or_else(|| "expected 'Name: value', such as 'Authorization: Bearer abc'".to_owned())?;
    let (name, value) = (name.trim(), value.trim());
    http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a valid header name"))?;
    http::HeaderValue::from_str(value).map_err(|_| format!("the value of {name} is not a valid header value"))?;
    Ok((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadArgs,
    }

    fn parse(flags: &[&str]) -> Result<LoadArgs, String> {
        Cli::try_parse_from(["load"].iter().chain(flags)).map(|c| c.args).map_err(|e| e.to_string())
    }

    fn convert(flags: &[&str]) -> Result<Invocation, String> {
        invocation(&parse(flags)?).map_err(|e| e.0)
    }

    #[track_caller]
    fn refused(flags: &[&str], says: &[&str]) {
        let message = match convert(flags) {
            Ok(i) => panic!("{flags:?} was accepted: {:?}", i.spec),
            Err(message) => message,
        };
        for needle in says {
            assert!(message.contains(needle), "{flags:?}: {message:?} should say {needle:?}");
        }
    }

    const URL: &str = "http://127.0.0.1:8080/";

    #[test]
    fn a_constant_rate_becomes_an_open_profile_of_one_hold() {
        let i = convert(&[URL, "--rate", "200", "--duration", "30s", "--threshold", "p99 < 250ms"]).expect("ok");
        let load = &i.spec.load;
        assert_eq!(load.model, LoadModel::Open);
        assert_eq!((load.rate, load.vus, load.duration), (Some(200), None, Some(GoDuration::from_secs(30))));
        assert_eq!(load.target.url.as_deref(), Some(URL));
        assert!(load.requests.is_empty(), "a plain GET is the spec's default");
        assert_eq!(load.timeout, GoDuration::from_secs(10));
        assert_eq!(i.plan.total_duration(), Duration::from_secs(30));
        assert_eq!(i.plan.mean_level(), 200.0);
        assert_eq!(i.spec.thresholds, vec!["p99 < 250ms"]);
        let s = i.summary_spec();
        assert_eq!((s.capacity, s.abort_grace), (None, None));
    }

    #[test]
    fn vus_make_a_closed_profile_and_stages_a_ramp() {
        let i = convert(&[URL, "--vus", "20", "--duration", "1m", "--think-time", "100ms"]).expect("ok");
        assert_eq!(i.spec.load.model, LoadModel::Closed);
        assert_eq!(i.spec.load.think_time, Some("100ms".parse().expect("duration")));
        let i = convert(&[URL, "--stage", "10s:100", "--stage", "20s:100", "--stage", "5s:0"]).expect("ok");
        assert_eq!(i.spec.load.model, LoadModel::Open);
        assert_eq!(i.plan.start, 0);
        assert_eq!(i.plan.stages.len(), 3);
        assert_eq!(i.plan.total_duration(), Duration::from_secs(35));
        let i = convert(&[URL, "--model", "closed", "--stage", "10s:5"]).expect("ok");
        assert_eq!(i.spec.load.model, LoadModel::Closed);
    }

    #[test]
    fn presets_abort_and_request_flags_reach_the_spec() {
        let i = convert(&[
            URL,
            "--rate",
            "100",
            "--preset",
            "capacity",
            "--duration",
            "100s",
            "--threshold",
            "errorRate < 1%",
            "--abort-on-fail",
            "--abort-grace",
            "20s",
            "--method",
            "post",
            "-H",
            "Content-Type: application/json",
            "--header",
            "X-Trace:  on ",
            "--body",
            "{}",
            "--expect-status",
            "201",
            "--expect-status",
            "202",
            "--timeout",
            "2s",
            "--max-in-flight",
            "50",
            "--http2",
        ])
        .expect("ok");
        assert_eq!(i.spec.load.preset, Some(Preset::Capacity));
        assert_eq!(i.plan.steps().len(), 20);
        let s = i.summary_spec();
        assert_eq!(s.capacity, Some(100));
        assert_eq!(s.abort_grace, Some(Duration::from_secs(20)));
        let r = &i.spec.load.requests[0];
        assert_eq!(r.method, HttpMethod::Post);
        assert_eq!(r.headers.get("X-Trace").map(String::as_str), Some("on"));
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.body.as_deref(), Some("{}"));
        assert_eq!(r.expect_status, vec![201, 202]);
        assert_eq!(i.spec.load.max_in_flight, Some(50));
        assert!(i.spec.load.http2);
        assert_eq!(i.spec.load.timeout, GoDuration::from_secs(2));
        let plain = convert(&[URL, "--rate", "1", "--duration", "1s", "--abort-on-fail"]).expect("ok");
        assert_eq!(plain.summary_spec().abort_grace, Some(DEFAULT_ABORT_GRACE));
    }

    #[test]
    fn clap_refuses_what_it_can_naming_the_flag() {
        let err = |flags: &[&str]| parse(flags).map(|_| ()).unwrap_err();
        let e = err(&[URL, "--rate", "10", "--vus", "5", "--duration", "1s"]);
        assert!(e.contains("'--rate <PER_SECOND>' cannot be used with '--vus <USERS>'"), "{e}");
        let e = err(&[URL, "--rate", "many", "--duration", "1s"]);
        assert!(e.contains("'--rate <PER_SECOND>'") && e.contains("invalid digit"), "{e}");
        let e = err(&[URL, "--preset", "hammer", "--rate", "1"]);
        assert!(e.contains("unknown variant `hammer`, expected one of `baseline`"), "{e}");
        let e = err(&[URL, "--rate", "1", "--duration", "soon"]);
        assert!(e.contains("'--duration <DURATION>'") && e.contains("such as 30s"), "{e}");
        let e = err(&[URL, "--threshold", "p99 <"]);
        assert!(e.contains("'p99 <' for '--threshold <EXPR>'") && e.contains("missing value"), "{e}");
        let e = err(&[URL, "--threshold", "p98 < 1s"]);
        assert!(e.contains("metrics are p50"), "{e}");
        let e = err(&[URL, "--threshold", "p99 <= 2x baseline"]);
        assert!(e.contains("measures none"), "{e}");
        let e = err(&[URL, "--stage", "30s"]);
        assert!(e.contains("'--stage <DURATION:TARGET>'") && e.contains("expected DURATION:TARGET"), "{e}");
        let e = err(&[URL, "--stage", "500ms:10"]);
        assert!(e.contains("must be from 1s to 24h"), "{e}");
        let e = err(&[URL, "--stage", "5s:many"]);
        assert!(e.contains("not a whole number"), "{e}");
        let e = err(&[URL, "--stage", "5s:10", "--rate", "5"]);
        assert!(e.contains("cannot be used with"), "{e}");
        let e = err(&[URL, "--rate", "1", "--preset", "hammer"]);
        assert!(e.contains("'--preset <PRESET>'") && e.contains("capacity"), "{e}");
        let e = err(&[URL, "-H", "no colon"]);
        assert!(e.contains("'-H, --header <NAME: VALUE>'") || e.contains("--header"), "{e}");
        let e = err(&[URL, "-H", "Bad Name: x"]);
        assert!(e.contains("not a valid header name"), "{e}");
        let e = err(&[URL, "--expect-status", "ok"]);
        assert!(e.contains("--expect-status"), "{e}");
        let e = err(&[URL, "--abort-grace", "5s"]);
        assert!(e.contains("--abort-on-fail"), "{e}");
        let e = err(&[URL, "--body", "x", "--body-file", "f"]);
        assert!(e.contains("cannot be used with"), "{e}");
        let e = err(&[URL, "--rate", "10", "--duration", "1s", "--think-time", "1s"]);
        assert!(e.contains("'--rate <PER_SECOND>' cannot be used with '--think-time <DURATION>'"), "{e}");
        let e = err(&[URL, "--max-in-flight", "5", "--vus", "3"]);
        assert!(e.contains("cannot be used with"), "{e}");
        let e = err(&[URL, "--threads", "0"]);
        assert!(e.contains("--threads"), "{e}");
        let e = err(&[URL, "-o", "yaml"]);
        assert!(e.contains("--output"), "{e}");
    }

    #[test]
    fn the_loadtest_rules_refuse_the_rest_naming_the_flag() {
        refused(&[URL, "--duration", "10s"], &["give --rate", "--vus", "--stage"]);
        refused(&[URL, "--rate", "0", "--duration", "1s"], &["--rate: 0 is less than the minimum, 1"]);
        refused(&[URL, "--vus", "100001", "--duration", "1s"], &["--vus: 100001 is more than the maximum, 100000"]);
        refused(&[URL, "--rate", "1", "--duration", "1s", "--expect-status", "99"], &["--expect-status number 1"]);
        refused(&[URL, "--rate", "10"], &["--duration is required"]);
        refused(&[URL, "--rate", "10", "--duration", "25h"], &["--duration 25h: must be from 1s to 24h"]);
        refused(&[URL, "--rate", "10", "--duration", "500ms"], &["--duration 500ms"]);
        refused(&["localhost:8080", "--rate", "1", "--duration", "1s"], &["URL \"localhost:8080\"", "http://"]);
        refused(&["http:///x", "--rate", "1", "--duration", "1s"], &["has no host"]);
        refused(&[URL, "--rate", "300000", "--preset", "spike"], &["the spike preset at 300000", "at most 200000"]);
        refused(
            &[URL, "--rate", "10", "--preset", "capacity"],
            &["--threshold: the capacity preset needs at least one threshold"],
        );
        refused(
            &[URL, "--stage", "5s:5", "--think-time", "1s"],
            &["--vus and --think-time belong to the closed model"],
        );
        refused(&[URL, "--model", "closed", "--stage", "5s:5", "--max-in-flight", "3"], &["--max-in-flight"]);
        refused(
            &[URL, "--model", "closed", "--rate", "5", "--duration", "1s"],
            &["--rate and --max-in-flight belong to the open model"],
        );
        refused(
            &[URL, "--model", "open", "--vus", "5", "--duration", "1s"],
            &["--vus and --think-time belong to the closed model"],
        );
        refused(
            &[URL, "--rate", "1", "--duration", "1s", "--timeout", "6m"],
            &["--timeout 6m: must be from 1ms to 5m"],
        );
        refused(
            &[URL, "--vus", "1", "--duration", "1s", "--think-time", "2m"],
            &["--think-time 2m: must be at most 1m"],
        );
        refused(
            &[URL, "--rate", "1", "--duration", "1s", "--abort-on-fail", "--abort-grace", "2h"],
            &["--abort-grace 2h"],
        );
        refused(
            &[URL, "--vus", "5", "--duration", "1s", "--threshold", "achievedRate >= 99%"],
            &["--threshold number 1: \"achievedRate >= 99%\"", "closed model", "achievedRate >= 450"],
        );
        refused(
            &[URL, "--rate", "1", "--duration", "1s", "-H", "A: 1", "-H", "a: 2"],
            &["-H/--header \"a\" is given twice"],
        );
        let big = "x".repeat(65_537);
        refused(
            &[URL, "--rate", "1", "--duration", "1s", "--body", &big],
            &["--body: 65537 characters; at most 65536 are allowed"],
        );
        refused(
            &[URL, "--rate", "1", "--duration", "1s", "--body-file", "/nonexistent/body"],
            &["--body-file /nonexistent/body: cannot read it"],
        );
        let many: Vec<String> = (0..101).map(|_| "1s:1".to_owned()).collect();
        let mut flags = vec![URL];
        for stage in &many {
            flags.extend(["--stage", stage]);
        }
        refused(&flags, &["--stage: 101 items; at most 100 are allowed"]);
    }

    /// A manifest in a file of its own under the target directory; removed when dropped.
    struct Manifest(PathBuf);

    impl Manifest {
        fn new(name: &str, text: &str) -> Manifest {
            let dir = std::env::temp_dir().join(format!("chaoslab-load-f-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write manifest");
            Manifest(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().expect("UTF-8 path")
        }
    }

    impl Drop for Manifest {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const SERVICE_LT: &str = "apiVersion: chaoslab.dev/v1alpha1
kind: LoadTest
metadata: {name: baseline, namespace: chaoslab-demo}
spec:
  load:
    target: {service: {name: frontend, port: http, path: /shop/}}
    requests: [{path: /items, expectStatus: [200]}]
    preset: baseline
    rate: 100
    duration: 10s
    runners: {parallelism: 2}
  thresholds: ['p99 < 300ms', 'errorRate < 1%']
  abortWhen: [{when: 'errorRate > 50%', for: 3s}]
";

    #[test]
    fn a_manifest_runs_its_spec_against_the_base_url_given_for_its_service() {
        let m = Manifest::new("service.yaml", SERVICE_LT);
        let i = convert(&["-f", m.path(), "http://127.0.0.1:18080/", "-o", "json", "-q"]).expect("ok");
        assert_eq!(i.url, "http://127.0.0.1:18080/shop", "the base URL with the spec's path");
        assert_eq!(i.spec.load.preset, Some(Preset::Baseline));
        assert_eq!(i.spec.load.requests[0].path.as_deref(), Some("/items"));
        assert_eq!(i.spec.thresholds, vec!["p99 < 300ms", "errorRate < 1%"]);
        assert_eq!(i.spec.abort_when.len(), 1);
        assert_eq!(i.plan.mean_level(), 10.0, "baseline: 10% of 100/s");
        assert_eq!(i.plan.total_duration(), Duration::from_secs(10));
        assert_eq!((i.output, i.quiet), (OutputFormat::Json, true));
        assert!(
            i.source.as_deref().is_some_and(|s| s.ends_with("(LoadTest chaoslab-demo/baseline)")),
            "{:?}",
            i.source
        );

        let url_lt = SERVICE_LT
            .replace("{service: {name: frontend, port: http, path: /shop/}}", "{url: 'http://127.0.0.1:9/x'}");
        let u = Manifest::new("url.yaml", &url_lt);
        assert_eq!(convert(&["-f", u.path()]).expect("ok").url, "http://127.0.0.1:9/x");
    }

    #[test]
    fn a_manifest_is_refused_with_what_is_wrong() {
        let m = Manifest::new("refused.yaml", SERVICE_LT);
        let e = convert(&["-f", m.path()]).expect_err("no base URL");
        assert!(e.contains("Service \"frontend\"") && e.contains("give the base URL"), "{e}");
        let url_lt =
            SERVICE_LT.replace("{service: {name: frontend, port: http, path: /shop/}}", "{url: 'http://x:1/'}");
        let u = Manifest::new("url-and-arg.yaml", &url_lt);
        let e = convert(&["-f", u.path(), "http://127.0.0.1:1/"]).expect_err("URL twice");
        assert!(e.contains("leave the URL argument out"), "{e}");
        for (name, from, to, says) in [
            ("rate.yaml", "rate: 100", "rate: 0", "spec.load.rate: 0 is less than the minimum, 1"),
            ("cel.yaml", "rate: 100", "vus: 100", "load.rate (requests per second) is required for the open model"),
            ("threshold.yaml", "'p99 < 300ms'", "'p99 < soon'", "spec.thresholds[0]"),
            ("abort.yaml", "for: 3s", "for: 20m", "abortWhen[].for must be from 1s to 10m"),
            ("kind.yaml", "kind: LoadTest", "kind: Drill", "not apiVersion chaoslab.dev/v1alpha1 kind LoadTest"),
            (
                "field.yaml",
                "preset: baseline",
                "preset: hammer",
                "spec.load.preset: \"hammer\" is not allowed; allowed: baseline",
            ),
            ("unknown.yaml", "abortWhen:", "abortwhen:", "spec.abortwhen: unknown field; allowed here: "),
        ] {
            let bad = Manifest::new(name, &SERVICE_LT.replace(from, to));
            let e = convert(&["-f", bad.path(), "http://127.0.0.1:1"]).expect_err(name);
            assert!(e.starts_with(&format!("-f {}: ", bad.path())) && e.contains(says), "{name}: {e}");
        }
        let two = Manifest::new("two.yaml", &format!("{SERVICE_LT}---\n{SERVICE_LT}"));
        assert!(convert(&["-f", two.path(), "http://a/"]).expect_err("two").contains("holds 2 documents"));
        let e = convert(&["-f", "/nonexistent/lt.yaml"]).expect_err("missing");
        assert!(e.contains("-f /nonexistent/lt.yaml: cannot read it"), "{e}");
    }

    #[test]
    fn with_a_manifest_only_the_url_and_output_flags_are_allowed() {
        let err = |flags: &[&str]| parse(flags).map(|_| ()).unwrap_err();
        for flag in [&["--rate", "5"][..], &["--threshold", "p99 < 1s"], &["--timeout", "1s"], &["--method", "POST"]] {
            let mut flags = vec!["-f", "lt.yaml"];
            flags.extend(flag);
            let e = err(&flags);
            assert!(e.contains("'--file <PATH>' cannot be used with"), "{flags:?}: {e}");
        }
        assert!(parse(&["-f", "lt.yaml", "http://a/", "-o", "json", "--threads", "2", "-q"]).is_ok());
        let e = err(&[]);
        assert!(e.contains("<URL>"), "the URL is required without -f: {e}");
    }

    #[test]
    fn durations_read_as_written() {
        let text = |ms: u64| duration_text(Duration::from_millis(ms));
        assert_eq!(text(500), "500ms");
        assert_eq!(text(1_500), "1.5s");
        assert_eq!(text(360_000), "6m");
        assert_eq!(text(5_400_000), "1h30m");
        assert_eq!(text(90_000_000), "25h");
        assert_eq!(text(3_723_250), "1h2m3.25s");
    }

    /// The flags hold no bounds of their own: at each bound the CRD declares, they accept and
    /// refuse exactly as the API server would (this fails when the two part).
    #[test]
    fn the_flags_bounds_are_the_crds() {
        use kube::CustomResourceExt as _;
        let crd = serde_json::to_value(LoadTest::crd()).expect("CRD as JSON");
        let fields = crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/load/properties")
            .expect("spec.load's properties")
            .clone();
        for (field, flag, rest) in [
            ("rate", "--rate", &["--duration", "1s"][..]),
            ("vus", "--vus", &["--duration", "1s"]),
            ("maxInFlight", "--max-in-flight", &["--rate", "1", "--duration", "1s"]),
        ] {
            let bound =
                |key: &str| fields[field][key].as_f64().unwrap_or_else(|| panic!("{field} has no {key}")) as u64;
            let (min, max) = (bound("minimum"), bound("maximum"));
            let run = |n: u64| {
                let n = n.to_string();
                let mut flags = vec![URL, flag, n.as_str()];
                flags.extend(rest);
                convert(&flags)
            };
            for ok in [min, max] {
                assert!(run(ok).is_ok(), "{flag} {ok} is within the CRD's {min}..={max}: {:?}", run(ok).err());
            }
            for out in [min.checked_sub(1), Some(max + 1)].into_iter().flatten() {
                assert!(
                    run(out).expect_err("out of bounds").starts_with(&format!("{flag}: {out} is ")),
                    "{flag} {out}"
                );
            }
        }
    }

    #[test]
    fn the_specs_field_names_read_as_the_flags() {
        assert_eq!(
            in_flag_words("spec.thresholds[2]: \"p99 <\": missing value"),
            "--threshold number 3: \"p99 <\": missing value"
        );
        assert_eq!(in_flag_words("spec.load.stages[3].duration"), "--stage number 4");
        assert_eq!(
            in_flag_words("load.rate and load.maxInFlight belong to the open model"),
            "--rate and --max-in-flight belong to the open model"
        );
        assert_eq!(in_flag_words("a[0] stays"), "a[0] stays");
    }

    #[test]
    fn help_documents_every_flag_with_examples() {
        use clap::CommandFactory as _;
        let help = Cli::command().render_long_help().to_string();
        for flag in [
            "--rate",
            "--vus",
            "--model",
            "--duration",
            "--preset",
            "--stage",
            "--threshold",
            "--abort-on-fail",
            "--abort-grace",
            "--method",
            "--header",
            "--body",
            "--body-file",
            "--expect-status",
            "--timeout",
            "--max-in-flight",
            "--think-time",
            "--http2",
            "--output",
            "--threads",
            "--quiet",
        ] {
            assert!(help.contains(flag), "--help lacks {flag}");
        }
        assert!(help.contains("Examples:") && help.contains("--preset capacity"));
        assert!(help.contains("coordinated omission"));
        for arg in Cli::command().get_arguments() {
            assert!(arg.get_help().is_some() || arg.get_long_help().is_some(), "{} has no help", arg.get_id());
        }
    }
}
