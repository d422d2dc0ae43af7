//! `helm template` of charts/chaoslab for the chart tests (tests/it/chart.rs, tests/it/chart_demo.rs):
//! the pinned helm found the way hack/tools.sh leaves it, the output parsed into JSON documents
//! and typed objects. Without helm the tests fail, never skip.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde::de::DeserializeOwned;
use serde_json::Value;

pub const RELEASE: &str = "chaoslab";
pub const NAMESPACE: &str = "chaoslab-system";
/// helm built by `go install` assumes Kubernetes v1.20 offline, below the chart's kubeVersion.
/// 1.33 is the API version the crate's k8s-openapi types describe.
pub const KUBE_VERSION: &str = "1.33.0";

pub use super::repo_path;

fn runs(helm: &Path) -> bool {
    Command::new(helm).arg("version").output().is_ok_and(|o| o.status.success())
}

/// `$HELM`, else the pinned helm in hack/tools.sh's cache, else `helm` on PATH.
pub fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("HELM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(runs(&path), "HELM={} does not run; unset it or run `bash hack/tools.sh`", path.display());
        return path;
    }
    let cache = std::env::var_os("CHAOSLAB_CACHE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/chaoslab")));
    if let Some(cached) = cache.map(|c| c.join("bin/helm"))
        && runs(&cached)
    {
        return cached;
    }
    let on_path = PathBuf::from("helm");
    if runs(&on_path) {
        return on_path;
    }
    panic!(
        "helm not found: set HELM, or run `bash hack/tools.sh` to build the pinned helm into \
         ~/.cache/chaoslab/bin (the chart tests never skip)"
    );
}

/// `helm template` of the chart with these extra arguments, as JSON documents.
pub fn try_render(args: &[&str]) -> Result<Vec<Value>, String> {
    let chart = repo_path("charts/chaoslab");
    let output = Command::new(helm())
        .arg("template")
        .arg(RELEASE)
        .arg(&chart)
        .args(["--namespace", NAMESPACE, "--kube-version", KUBE_VERSION])
        .args(args)
        .output()
        .expect("running helm template");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8(output.stdout).expect("helm output is UTF-8");
    let docs = serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("helm template {args:?} is not valid YAML: {e}\n{text}"));
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

pub fn render(args: &[&str]) -> Vec<Value> {
    try_render(args).unwrap_or_else(|e| panic!("helm template {args:?} failed:\n{e}"))
}

/// Every rendered object of this kind, parsed into its Rust type.
pub fn all<T: DeserializeOwned>(docs: &[Value], kind: &str) -> Vec<T> {
    docs.iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| {
            serde_json::from_value(d.clone())
                .unwrap_or_else(|e| panic!("rendered {kind} {} does not parse: {e}", d["metadata"]["name"]))
        })
        .collect()
}
