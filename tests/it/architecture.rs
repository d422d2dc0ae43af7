//! The floors of docs/architecture.md, held by Cargo: each crate depends only on the crates below
//! it, and the lower floors link no Kubernetes client, HTTP stack or chart library. Read from
//! `cargo tree`, which resolves each crate's features as a build of that crate alone would.

use std::{collections::BTreeSet, process::Command};

/// The floors, lowest first.
const FLOORS: [&str; 6] =
    ["chaoslab-api", "chaoslab-core", "chaoslab-report", "chaoslab-dataplane", "chaoslab-operator", "chaoslab"];

/// The packages a crate's normal (non-dev) build links, by name.
fn linked(krate: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--offline", "--locked", "-e", "normal", "--prefix", "none", "-f", "{p}", "-p", krate])
        .current_dir(crate::support::repo_root())
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree -p {krate}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_crate_depends_only_on_the_floors_below_it() {
    for (i, krate) in FLOORS.iter().enumerate() {
        let links = linked(krate);
        for above in &FLOORS[i + 1..] {
            assert!(!links.contains(*above), "{krate} depends on {above}, a floor above it");
        }
        for below in &FLOORS[..i] {
            // Every floor stands on the API's types; the others are used where they are needed.
            if *below == "chaoslab-api" {
                assert!(links.contains(*below), "{krate} does not use {below}");
            }
        }
    }
}

#[test]
fn the_lower_floors_link_no_client_no_http_stack_and_no_charts() {
    let forbidden: [(&str, &[&str]); 4] = [
        ("chaoslab-api", &["kube-client", "kube-runtime", "hyper", "axum", "tower", "plotters"]),
        ("chaoslab-core", &["kube-client", "kube-runtime", "hyper", "axum", "tower", "plotters"]),
        ("chaoslab-report", &["kube-client", "kube-runtime", "hyper", "axum", "tower"]),
        ("chaoslab-dataplane", &["kube-client", "kube-runtime", "plotters", "chaoslab-report"]),
    ];
    for (krate, names) in forbidden {
        let links = linked(krate);
        let found: Vec<&&str> = names.iter().filter(|n| links.contains(**n)).collect();
        assert!(found.is_empty(), "{krate} links {found:?}");
    }
}
