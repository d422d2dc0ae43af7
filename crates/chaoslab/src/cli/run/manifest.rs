//! The experiments a file asks `chaoslab run` to start: every YAML document of the files, each
//! checked to be one of chaoslab's kinds with a name and a namespace before anything reaches the
//! cluster. The spec itself is the API server's to judge (its schema and CEL rules name the
//! field and what is allowed), so a document goes there as written.

use std::path::Path;

use kube::api::DynamicObject;

use crate::api::{API_VERSION, ExperimentKind};

/// One experiment to start.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub kind: ExperimentKind,
    /// The document as written, with its namespace settled.
    pub object: DynamicObject,
    /// Where it came from, for messages: `drill.yaml, document 2`.
    pub doc: String,
}

/// Why a document cannot be run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("{doc}: not YAML: {reason}")]
    NotYaml { doc: String, reason: String },
    #[error("{0}: no documents; chaoslab run needs at least one experiment")]
    Empty(String),
    #[error("{doc}: apiVersion is {found:?}; allowed: {API_VERSION}")]
    ApiVersion { doc: String, found: String },
    #[error(
        "{doc}: kind is {found:?}; chaoslab run starts LoadTest, PodKill, ServiceFault, CircuitBreakerTrial, \
         AutoscalingCheck or Drill (apply other objects with kubectl)"
    )]
    Kind { doc: String, found: String },
    #[error("{doc}: metadata.name (or metadata.generateName) is required")]
    Name { doc: String },
    #[error("{doc}: metadata.namespace is {written:?} but --namespace is {flag:?}; drop one or make them agree")]
    Namespace { doc: String, written: String, flag: String },
}

/// Every experiment of `text` (read from `file`), namespaced by the document's own namespace or
/// else `--namespace` (`flag`); one naming neither is left for the kubeconfig context's
/// ([`Manifest::settle_namespace`]), so a bad file is refused before any connection.
pub fn parse(text: &str, file: &Path, flag: Option<&str>) -> Result<Vec<Manifest>, ManifestError> {
    let file_name = file.display().to_string();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| ManifestError::NotYaml { doc: file_name.clone(), reason: e.to_string() })?;
    let documents: Vec<serde_json::Value> = documents.into_iter().filter(|d| !d.is_null()).collect();
    if documents.is_empty() {
        return Err(ManifestError::Empty(file_name));
    }
    let several = documents.len() > 1;
    documents
        .into_iter()
        .enumerate()
        .map(|(i, document)| {
            let doc = if several { format!("{file_name}, document {}", i + 1) } else { file_name.clone() };
            one(document, doc, flag)
        })
        .collect()
}

fn one(document: serde_json::Value, doc: String, flag: Option<&str>) -> Result<Manifest, ManifestError> {
    let text = |key: &str| document.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let api_version = text("apiVersion");
    if api_version != API_VERSION {
        return Err(ManifestError::ApiVersion { doc: doc.clone(), found: api_version });
    }
    let found = text("kind");
    let Some(kind) = ExperimentKind::from_kind(&found) else {
        return Err(ManifestError::Kind { doc: doc.clone(), found });
    };
    let mut object: DynamicObject = match serde_json::from_value(document) {
        Ok(object) => object,
        Err(_) => return Err(ManifestError::Name { doc: doc.clone() }),
    };
    let named = object.metadata.name.as_deref().is_some_and(|n| !n.is_empty())
        || object.metadata.generate_name.as_deref().is_some_and(|n| !n.is_empty());
    if !named {
        return Err(ManifestError::Name { doc: doc.clone() });
    }
    match (object.metadata.namespace.as_deref(), flag) {
        (Some(written), Some(flag)) if written != flag => {
            return Err(ManifestError::Namespace { doc, written: written.to_owned(), flag: flag.to_owned() });
        }
        (None, Some(flag)) => object.metadata.namespace = Some(flag.to_owned()),
        _ => {}
    }
    Ok(Manifest { kind, object, doc })
}

impl Manifest {
    /// Puts an experiment that names no namespace into `default` (the kubeconfig context's).
    pub fn settle_namespace(&mut self, default: &str) {
        self.object.metadata.namespace.get_or_insert_with(|| default.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const TWO: &str = r#"
apiVersion: chaoslab.dev/v1alpha1
kind: PodKill
metadata: {name: kill-one}
spec: {selector: {matchLabels: {app: web}}}
---
apiVersion: chaoslab.dev/v1alpha1
kind: Drill
metadata: {generateName: gameday-, namespace: shop}
spec: {load: {target: {url: "http://frontend.shop/"}, rate: 20}, phases: {inject: 10s}}
"#;

    fn parse_str(text: &str, flag: Option<&str>) -> Result<Vec<Manifest>, ManifestError> {
        let mut runs = parse(text, Path::new("gate.yaml"), flag)?;
        runs.iter_mut().for_each(|m| m.settle_namespace("default"));
        Ok(runs)
    }

    #[test]
    fn every_document_is_an_experiment_in_its_namespace() {
        let runs = parse_str(TWO, None).expect("two experiments");
        let got: Vec<_> = runs
            .iter()
            .map(|m| (m.kind, m.object.metadata.namespace.clone().unwrap_or_default(), m.doc.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (ExperimentKind::PodKill, "default".to_owned(), "gate.yaml, document 1".to_owned()),
                (ExperimentKind::Drill, "shop".to_owned(), "gate.yaml, document 2".to_owned()),
            ]
        );
        // The spec goes to the API server as written.
        assert_eq!(runs[1].object.data["spec"]["load"]["rate"], 20);
        let flagged = parse_str(&TWO[..TWO.find("---").unwrap_or(TWO.len())], Some("lab")).expect("one");
        assert_eq!(flagged[0].object.metadata.namespace.as_deref(), Some("lab"));
    }

    #[test]
    fn what_cannot_run_is_refused_naming_the_document_and_what_is_allowed() {
        let refused = |text: &str, flag: Option<&str>| parse_str(text, flag).expect_err("refused").to_string();
        assert!(refused("", None).contains("no documents"));
        assert!(refused("a: [", None).starts_with("gate.yaml: not YAML"));
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n";
        assert!(refused(deployment, None).contains("apiVersion is \"apps/v1\"; allowed: chaoslab.dev/v1alpha1"));
        let wrong_kind = "apiVersion: chaoslab.dev/v1alpha1\nkind: Chaos\nmetadata: {name: x}\n";
        assert!(refused(wrong_kind, None).contains("kind is \"Chaos\"; chaoslab run starts LoadTest"));
        let unnamed = "apiVersion: chaoslab.dev/v1alpha1\nkind: Drill\nspec: {}\n";
        assert_eq!(refused(unnamed, None), "gate.yaml: metadata.name (or metadata.generateName) is required");
        let second_bad = format!("{TWO}---\napiVersion: chaoslab.dev/v1alpha1\nkind: drill\nmetadata: {{name: x}}\n");
        assert!(refused(&second_bad, None).starts_with("gate.yaml, document 3: kind is \"drill\""));
        assert_eq!(
            refused(TWO, Some("lab")),
            "gate.yaml, document 2: metadata.namespace is \"shop\" but --namespace is \"lab\"; drop one or make them agree"
        );
    }
}
