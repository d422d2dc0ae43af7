//! Admission without a cluster: a manifest is checked as `kubectl apply --validate=strict` has it
//! checked — by the API server (its kind's CRD: the structural schema's types, enums, ranges,
//! patterns and required fields, unknown fields refused, then the CEL rules with the schema's
//! defaults applied) and by the operator (each kind's `SpecCheck`). The CLI, the lab and the
//! tests all go through this one gate, so every bound and rule is written once: in crates/api,
//! where the CRDs come from.

use std::{fmt, sync::OnceLock};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    api::{
        self, API_VERSION, AutoscalingCheck, CircuitBreakerTrial, Drill, ExperimentKind, LoadTest, PodKill,
        ServiceFault,
    },
    domain::spec_check::SpecCheck,
};

/// One thing wrong with a manifest: the field (`spec.load.rate`, empty for the whole object)
/// and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.field, self.message) }
    }
}

/// Why a manifest is refused; its text names the field and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("apiVersion is {0:?}; allowed: {API_VERSION}")]
    ApiVersion(String),
    #[error("kind is {0:?}; allowed: {allowed}", allowed = kinds())]
    Kind(String),
    /// What the API server refuses: the schema, unknown fields, the CEL rules.
    #[error("{}", join(.0))]
    Invalid(Vec<FieldError>),
    /// What the operator refuses (the `InvalidSpec` condition in the cluster).
    #[error("{0}")]
    Spec(String),
}

impl Refusal {
    /// Each field error on its own, for callers that name fields in their own words (the CLI's
    /// flags); a refusal by the operator's checks is one error naming its field in its text.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Refusal::Invalid(errors) => errors.clone(),
            other => vec![FieldError { field: String::new(), message: other.to_string() }],
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn kinds() -> String {
    ExperimentKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

/// A manifest that passed admission, as its kind's type.
#[derive(Clone, Debug)]
pub enum Admitted {
    LoadTest(Box<LoadTest>),
    PodKill(Box<PodKill>),
    ServiceFault(Box<ServiceFault>),
    CircuitBreakerTrial(Box<CircuitBreakerTrial>),
    AutoscalingCheck(Box<AutoscalingCheck>),
    Drill(Box<Drill>),
}

impl Admitted {
    pub fn kind(&self) -> ExperimentKind {
        match self {
            Admitted::LoadTest(_) => ExperimentKind::LoadTest,
            Admitted::PodKill(_) => ExperimentKind::PodKill,
            Admitted::ServiceFault(_) => ExperimentKind::ServiceFault,
            Admitted::CircuitBreakerTrial(_) => ExperimentKind::CircuitBreakerTrial,
            Admitted::AutoscalingCheck(_) => ExperimentKind::AutoscalingCheck,
            Admitted::Drill(_) => ExperimentKind::Drill,
        }
    }
}

/// Admit a new object: what the API server checks (see [`validate`]), then the operator's spec
/// checks on the typed object.
pub fn admit(manifest: &Value) -> Result<Admitted, Refusal> {
    let kind = validate(manifest, None)?;
    Ok(match kind {
        ExperimentKind::LoadTest => Admitted::LoadTest(Box::new(typed(manifest, kind)?)),
        ExperimentKind::PodKill => Admitted::PodKill(Box::new(typed(manifest, kind)?)),
        ExperimentKind::ServiceFault => Admitted::ServiceFault(Box::new(typed(manifest, kind)?)),
        ExperimentKind::CircuitBreakerTrial => Admitted::CircuitBreakerTrial(Box::new(typed(manifest, kind)?)),
        ExperimentKind::AutoscalingCheck => Admitted::AutoscalingCheck(Box::new(typed(manifest, kind)?)),
        ExperimentKind::Drill => Admitted::Drill(Box::new(typed(manifest, kind)?)),
    })
}

fn typed<K: DeserializeOwned + SpecCheck>(manifest: &Value, kind: ExperimentKind) -> Result<K, Refusal> {
    // The schema passed, so a decode error is a shape the schema lets through and the type does
    // not (it should not happen; it is refused like the schema's errors, never unwrapped).
    let object: K = serde_json::from_value(manifest.clone()).map_err(|e| {
        Refusal::Invalid(vec![FieldError {
            field: String::new(),
            message: format!("not a valid {}: {e}", kind.as_str()),
        }])
    })?;
    object.check_spec().map_err(Refusal::Spec)?;
    Ok(object)
}

/// What the API server checks of a chaoslab object (a create, or an update of `old`) before it
/// is stored: apiVersion and kind; the structural schema; no unknown fields (as with kubectl's
/// `--validate=strict`); then, once the structure holds, the CEL rules with defaults applied.
/// Returns the kind; every error at once, each naming its field.
pub fn validate(manifest: &Value, old: Option<&Value>) -> Result<ExperimentKind, Refusal> {
    let api_version = manifest.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if api_version != API_VERSION {
        return Err(Refusal::ApiVersion(api_version.to_owned()));
    }
    let kind_name = manifest.get("kind").and_then(Value::as_str).unwrap_or_default();
    let kind = ExperimentKind::from_kind(kind_name).ok_or_else(|| Refusal::Kind(kind_name.to_owned()))?;
    let Some(schema) = schema_of(kind) else {
        // The CRDs are generated from our own types: this is a build defect, said, never a panic.
        return Err(Refusal::Invalid(vec![FieldError {
            field: String::new(),
            message: format!("the {} CRD built into this chaoslab has no usable schema", kind.as_str()),
        }]));
    };
    // The schema declares spec and status; the API server checks metadata, apiVersion and kind
    // itself, so they leave the body the schema sees.
    let mut body = manifest.clone();
    if let Some(object) = body.as_object_mut() {
        for key in ["metadata", "apiVersion", "kind"] {
            object.remove(key);
        }
    }
    let mut errors: Vec<FieldError> = schema
        .validator
        .iter_errors(&body)
        .map(|e| FieldError { field: field_path(&e.instance_path.to_string()), message: describe(&e, &schema.json) })
        .collect();
    unknown_fields(&schema.json, &body, "", &mut errors);
    if errors.is_empty()
        && let Err(cel) = kube::core::cel::Validator::new().validate(&schema.json, manifest, old)
    {
        errors
            .extend(cel.into_vec().into_iter().map(|e| FieldError { field: e.field_path.clone(), message: e.message }));
    }
    if errors.is_empty() { Ok(kind) } else { Err(Refusal::Invalid(errors)) }
}

/// A schema error in the API server's manner: what is wrong and what is allowed, without the
/// whole offending value (a 64 KiB body or a list of 101 stages) in the message.
fn describe(e: &jsonschema::ValidationError<'_>, schema: &Value) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    let value = &*e.instance;
    let shown = |v: &Value| {
        let text = v.to_string();
        if text.chars().count() > 60 { format!("{}…", text.chars().take(60).collect::<String>()) } else { text }
    };
    let number = |v: &Value| match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    };
    let chars = value.as_str().map_or(0, |s| s.chars().count());
    let items = value.as_array().map_or(0, Vec::len);
    match &e.kind {
        Kind::Minimum { limit } => format!("{} is less than the minimum, {}", shown(value), number(limit)),
        Kind::Maximum { limit } => format!("{} is more than the maximum, {}", shown(value), number(limit)),
        Kind::MaxLength { limit } => format!("{chars} characters; at most {limit} are allowed"),
        Kind::MinLength { limit } => format!("{chars} characters; at least {limit} are needed"),
        Kind::MaxItems { limit } => format!("{items} items; at most {limit} are allowed"),
        Kind::MinItems { limit } => format!("{items} items; at least {limit} are needed"),
        Kind::Pattern { pattern } => {
            // The schema's own pattern, as written in the CRD (the validator's is rewritten).
            let written = schema.pointer(&e.schema_path.to_string()).and_then(Value::as_str).unwrap_or(pattern);
            format!("{} does not match {written}", shown(value))
        }
        Kind::Enum { options } => {
            let allowed = options.as_array().map_or_else(
                || options.to_string(),
                |o| {
                    o.iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            );
            format!("{} is not allowed; allowed: {allowed}", shown(value))
        }
        Kind::Required { property } => format!("{} is required", property.as_str().unwrap_or_default()),
        _ => {
            let text = e.to_string();
            if text.chars().count() > 200 { format!("{}…", text.chars().take(200).collect::<String>()) } else { text }
        }
    }
}

/// A kind's openAPI schema, as JSON and compiled, built once from the Rust types.
struct Schema {
    json: Value,
    validator: jsonschema::Validator,
}

fn schema_of(kind: ExperimentKind) -> Option<&'static Schema> {
    static SCHEMAS: OnceLock<Vec<(ExperimentKind, Schema)>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        api::crds()
            .into_iter()
            .filter_map(|crd| {
                let kind = ExperimentKind::from_kind(&crd.spec.names.kind)?;
                let json = crd
                    .spec
                    .versions
                    .first()
                    .and_then(|v| v.schema.as_ref())
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .and_then(|s| serde_json::to_value(s).ok())?;
                // The CRDs are generated from our own types and checked in CI; a schema that
                // does not compile is a build defect, which `validate` reports.
                let validator = jsonschema::draft4::new(&json).ok()?;
                Some((kind, Schema { json, validator }))
            })
            .collect()
    });
    schemas.iter().find(|(k, _)| *k == kind).map(|(_, schema)| schema)
}

/// `/spec/load/stages/0/target` → `spec.load.stages[0].target`.
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// Fields the schema does not declare: the API server drops them (and kubectl's strict
/// validation refuses them); a misspelled `abortwhen:` would otherwise vanish with its rule.
fn unknown_fields(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, v) in map {
                    let field = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    match properties.get(key) {
                        Some(sub) => unknown_fields(sub, v, &field, errors),
                        None => errors.push(FieldError {
                            field,
                            message: format!(
                                "unknown field; allowed here: {}",
                                properties.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                            ),
                        }),
                    }
                }
            } else if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for (key, v) in map {
                    unknown_fields(sub, v, &format!("{path}[{key}]"), errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    unknown_fields(sub, v, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn load_test(load: Value) -> Value {
        json!({"apiVersion": API_VERSION, "kind": "LoadTest", "metadata": {"name": "t"},
               "spec": {"load": load}})
    }

    #[test]
    fn a_valid_manifest_is_admitted_as_its_type() {
        let lt = load_test(json!({"target": {"url": "http://a/"}, "rate": 5, "duration": "10s"}));
        match admit(&lt) {
            Ok(Admitted::LoadTest(lt)) => assert_eq!(lt.spec.load.rate, Some(5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_schema_the_unknown_fields_and_cel_each_refuse_naming_the_field() {
        let bound = load_test(json!({"target": {"url": "http://a/"}, "rate": 0, "duration": "10s"}));
        let e = admit(&bound).expect_err("rate 0").to_string();
        assert_eq!(e, "spec.load.rate: 0 is less than the minimum, 1");

        let unknown = load_test(json!({"target": {"url": "http://a/"}, "rate": 5, "duration": "10s", "rtae": 1}));
        let e = admit(&unknown).expect_err("unknown").to_string();
        assert!(e.starts_with("spec.load.rtae: unknown field; allowed here: ") && e.contains("rate"), "{e}");

        let cel = load_test(json!({"target": {"url": "http://a/"}, "rate": 5}));
        let e = admit(&cel).expect_err("no length").to_string();
        assert!(e.contains(crate::api::load::LOAD_LENGTH_MESSAGE), "{e}");

        let index = load_test(json!({"target": {"url": "http://a/"}, "stages": [{"duration": "1s", "target": -1}]}));
        let e = admit(&index).expect_err("negative target").to_string();
        assert!(e.starts_with("spec.load.stages[0].target: "), "{e}");
    }

    #[test]
    fn the_operators_checks_run_after_the_api_servers() {
        let lt = json!({"apiVersion": API_VERSION, "kind": "LoadTest", "metadata": {"name": "t"},
            "spec": {"load": {"target": {"url": "http://a/"}, "rate": 5, "duration": "10s"},
                     "thresholds": ["p99 < soon"]}});
        assert!(matches!(admit(&lt), Err(Refusal::Spec(m)) if m.starts_with("spec.thresholds[0]")));
        let pk = json!({"apiVersion": API_VERSION, "kind": "PodKill", "metadata": {"name": "k"},
            "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Near", "values": ["a"]}]}}});
        let e = admit(&pk).expect_err("selector").to_string();
        assert!(e.contains("spec.selector"), "{e}");
    }

    #[test]
    fn not_a_chaoslab_object_is_refused_by_apiversion_or_kind() {
        let e = admit(&json!({"apiVersion": "v1", "kind": "Pod"})).expect_err("pod");
        assert_eq!(e, Refusal::ApiVersion("v1".into()));
        let e = admit(&json!({"apiVersion": API_VERSION, "kind": "Drills"})).expect_err("kind").to_string();
        assert!(e.contains("\"Drills\"") && e.contains("Drill"), "{e}");
    }

    #[test]
    fn every_kind_has_a_compiled_schema() {
        for kind in ExperimentKind::ALL {
            assert!(schema_of(kind).is_some(), "{}", kind.as_str());
        }
    }

    #[test]
    fn paths_read_as_the_api_server_writes_them() {
        assert_eq!(field_path("/spec/load/stages/0/target"), "spec.load.stages[0].target");
        assert_eq!(field_path(""), "");
    }
}
