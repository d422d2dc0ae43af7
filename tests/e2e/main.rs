//! End-to-end tests against the local cluster (hack/cluster): the chart, the API server's
//! validation, and the operator as a real process acting on pods that kwok runs.
//! Run with `make e2e`; tests run one at a time (they share the cluster and two cores).

mod api;
mod demo;
mod drill;
mod harness;
mod hpa;
mod loadtest;
mod podkill;
mod realnode;
mod run;
mod servicefault;
