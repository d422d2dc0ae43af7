//! The API contract without an API server: checked-in CRDs match the Rust types, every example
//! is valid and parses into its type, and every invalid fixture is refused with its message.

use crate::support;

use serde_json::Value;
use support::{files_under, repo_path, validate, yaml_documents};

#[test]
fn checked_in_crds_match_the_rust_types() {
    for dir in ["crds", "charts/chaoslab/crds"] {
        let dir_path = repo_path(dir);
        let mut expected_files = Vec::new();
        for crd in chaoslab::api::crds() {
            let file = chaoslab::api::crd_file_name(&crd);
            let path = dir_path.join(&file);
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            let generated = chaoslab::api::crd_yaml(&crd).expect("CRD serializes");
            assert!(
                on_disk == generated,
                "{dir}/{file} differs from the Rust types: run `make crds` and commit the result"
            );
            expected_files.push(path);
        }
        let mut present = files_under(&dir_path, "yaml");
        present.retain(|p| !expected_files.contains(p));
        assert!(present.is_empty(), "{dir} has files no kind generates: {present:?}");
    }
}

/// Parse a chaoslab manifest into its Rust type, so examples cannot drift from the types either,
/// and pass the operator's own checks (what the schema and CEL cannot express): admission whole.
fn parse_typed(doc: &Value) -> Result<(), String> {
    chaoslab::admission::admit(doc).map(drop).map_err(|e| e.to_string())
}

#[test]
fn every_example_is_valid_and_parses_into_its_type() {
    let files = files_under(&repo_path("examples"), "yaml");
    let mut kinds_seen = std::collections::BTreeSet::new();
    for file in &files {
        for doc in yaml_documents(file) {
            let name = format!("{} ({})", file.display(), doc["kind"]);
            if doc["apiVersion"] != chaoslab::api::API_VERSION {
                assert!(
                    doc["kind"].is_string() && doc["metadata"]["name"].is_string(),
                    "{name}: not a Kubernetes object"
                );
                continue;
            }
            kinds_seen.insert(doc["kind"].as_str().unwrap_or_default().to_owned());
            if let Err(errors) = validate(&doc, None) {
                panic!("{name} is refused: {errors:#?}");
            }
            if let Err(e) = parse_typed(&doc) {
                panic!("{name} does not parse into its type: {e}");
            }
        }
    }
    let all: std::collections::BTreeSet<String> =
        chaoslab::api::crds().into_iter().map(|c| c.spec.names.kind).collect();
    assert_eq!(kinds_seen, all, "examples/ must have at least one example of every kind");
}

/// A fixture is one manifest (a create) or two (the stored object, then the update), with one
/// or more `# expect: <text>` lines, each of which must appear in the errors.
#[test]
fn every_invalid_fixture_is_refused_with_its_message() {
    let files = files_under(&repo_path("tests/fixtures/invalid"), "yaml");
    assert!(files.len() >= 15, "expected at least 15 invalid fixtures, found {}", files.len());
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable fixture");
        let expects: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expects.is_empty(), "{} has no `# expect:` line", file.display());
        let docs = yaml_documents(file);
        let (old, new) = match docs.as_slice() {
            [new] => (None, new),
            [old, new] => (Some(old), new),
            _ => panic!("{} must hold one or two documents", file.display()),
        };
        let errors = match validate(new, old) {
            Ok(()) => panic!("{} was accepted, expected: {expects:?}", file.display()),
            Err(errors) => errors.join("\n"),
        };
        for expect in expects {
            assert!(errors.contains(expect), "{}: expected {expect:?} in:\n{errors}", file.display());
        }
    }
}

#[test]
fn spec_may_change_while_pending_but_not_once_running() {
    let pending: Value = serde_json::json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "PodKill",
        "metadata": {"name": "p", "namespace": "lab"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
        "status": {"phase": "Pending"}
    });
    let mut changed = pending.clone();
    changed["spec"]["mode"] = "all".into();
    assert!(validate(&changed, Some(&pending)).is_ok(), "a Pending spec may change");

    let mut running = pending.clone();
    running["status"]["phase"] = "Running".into();
    let mut changed_running = running.clone();
    changed_running["spec"]["mode"] = "all".into();
    let errors = validate(&changed_running, Some(&running)).expect_err("a Running spec is immutable");
    assert!(errors.join("\n").contains("spec cannot change once the run has started"), "{errors:?}");
    assert!(validate(&running, Some(&running)).is_ok(), "an unchanged spec is fine");
}
