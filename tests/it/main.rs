//! chaoslab's integration tests, one binary (kube, hyper, axum and plotters are linked once):
//! the CLI end to end, the lab on loopback, the proxy and load engine over real sockets, the
//! chart and the manifests against the CRDs' schema and CEL rules, and the operator's PodKill
//! controller against a mocked API server. `cargo test --test it MODULE::` runs one module.
//! The e2e suite against a real API server is tests/e2e (`make e2e`).

mod support;

mod architecture;
mod chart;
mod chart_demo;
mod ci_example;
mod cli_load;
mod cli_text;
mod demo;
mod drills;
mod lab;
mod load_engine;
mod podkill_mock;
mod proxy;
mod schema;
mod trials_local;
