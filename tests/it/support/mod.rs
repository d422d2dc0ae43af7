//! Shared test support: validating manifests the way the API server does (through the product's
//! `admission`), the repository's files, and the groups that keep timing tests apart.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::{Condvar, Mutex, PoisonError},
};

use serde_json::Value;

pub mod helm;
pub mod topology;

/// Tests that measure time or run the lab's processes share the machine with the tests of their
/// own module only (as many at once as the test threads allow), never with another such module's:
/// one test binary would otherwise run, say, a proxy accuracy test beside a lab of six processes,
/// which the separate binaries these modules once were never did. Hold the guard for the test.
pub fn group(name: &'static str) -> GroupGuard {
    let mut state = GROUP.lock().unwrap_or_else(PoisonError::into_inner);
    while state.0.is_some_and(|running| running != name) {
        state = GROUP_FREED.wait(state).unwrap_or_else(PoisonError::into_inner);
    }
    state.0 = Some(name);
    state.1 += 1;
    GroupGuard
}

/// The module whose tests run now, and how many of them.
static GROUP: Mutex<(Option<&'static str>, usize)> = Mutex::new((None, 0));
static GROUP_FREED: Condvar = Condvar::new();

/// A running test's place in its group; the group is free when its last test ends (or panics).
pub struct GroupGuard;

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let mut state = GROUP.lock().unwrap_or_else(PoisonError::into_inner);
        state.1 -= 1;
        if state.1 == 0 {
            state.0 = None;
            GROUP_FREED.notify_all();
        }
    }
}

/// The repository's root: tests run in the binary crate's directory (crates/chaoslab).
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

pub fn repo_path(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

/// Every YAML document of a file, as JSON values; empty documents are skipped.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// The files of a directory (recursively) with the given extension, sorted.
pub fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Validate a manifest (an update when `old` is given) like the API server: the structural
/// schema (types, enums, ranges, patterns, required and unknown fields), then the CEL rules with
/// defaults applied — the product's own gate (`chaoslab::admission`), which the CLI and the lab
/// use too. Returns every error as `path: message`.
pub fn validate(manifest: &Value, old: Option<&Value>) -> Result<(), Vec<String>> {
    chaoslab::admission::validate(manifest, old)
        .map(drop)
        .map_err(|refusal| refusal.field_errors().iter().map(ToString::to_string).collect())
}
