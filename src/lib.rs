//! chaoslab: a Kubernetes resilience lab. Load tests, fault injection and verdicts that
//! chaoslab measures itself.
//!
//! Dependencies point one way: `api` (the resource types) knows nothing of the controllers;
//! `domain` (pure rules: target selection, namespace safety, planning, verdicts) knows nothing
//! of the API client; `controller` glues them to Kubernetes; `operator` runs the controllers as
//! a process. The CLI lives in the binary and only calls into these.

pub mod api;
pub mod cli;
pub mod controller;
pub mod demo;
pub mod domain;
pub mod load;
pub mod local;
pub mod metrics;
pub mod operator;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod trial;
