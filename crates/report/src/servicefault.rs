//! The report of a ServiceFault: the fault's window (injected → reverted) with the proxy's
//! evidence, the steps the operator took, the routes, and the proxy's figures.

use super::{Record, Report, ServiceFaultFigures};
use crate::api::{ServiceFault, fault::ServiceFaultStatus, trial::FaultWindow};
use chaoslab_core::faults::type_name;

impl Report {
    /// The report of `sf` once `status` holds its verdict. The time axis starts when the run
    /// left Pending; the fault is on from the switch to the proxy to the switch back.
    pub fn of_service_fault(sf: &ServiceFault, status: &ServiceFaultStatus) -> Report {
        let injection = &sf.spec.injection;
        let record = Record {
            environment: "cluster".into(),
            target: format!("Service {}", injection.service),
            load: String::new(),
            concurrency_limit: None,
            seed: None,
            chaoslab_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let kinds: Vec<&str> = injection.faults.iter().map(|f| type_name(f.kind)).collect();
        let name = format!("{} on {}", kinds.join("+"), injection.service);
        let proxy = status.proxy.as_ref();
        let applied: u64 = proxy.map_or(0, |p| p.faults_applied.values().sum());
        let fault = status.injected_at.as_ref().map(|injected| FaultWindow {
            name,
            started_at: Some(injected.clone()),
            reverted_at: status.reverted_at.clone(),
            observed: proxy.map(|_| applied > 0),
            effect: proxy.map(|p| {
                format!(
                    "{} request(s) crossed the proxy in front of {}, {applied} faulted",
                    p.requests, injection.service
                )
            }),
        });
        Report {
            faults: fault.into_iter().collect(),
            service_fault: Some(ServiceFaultFigures {
                steps: status.steps.clone(),
                routes: status.routes.clone(),
                proxy: status.proxy.clone(),
            }),
            ..Report::of_run(sf, &status.run, status.run.started_at.clone(), record)
        }
        .settled()
    }
}
