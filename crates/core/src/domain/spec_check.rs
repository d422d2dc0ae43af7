//! Checks of each kind's spec that the API server's schema and CEL rules cannot express: the
//! expression language, and timings that relate fields of different objects. Each error names
//! the field and what is allowed.

use std::time::Duration;

use crate::{
    api::{
        AutoscalingCheck, CircuitBreakerTrial, Drill, GoDuration, LoadTest, PodKill, ServiceFault,
        figures::{AbortRule, PhasePlan},
        load::LoadProfile,
    },
    domain::expression::check_all,
};

pub trait SpecCheck {
    fn check_spec(&self) -> Result<(), String>;
}

fn abort_rules(rules: &[AbortRule], baseline: bool) -> Result<(), String> {
    for (i, rule) in rules.iter().enumerate() {
        check_all(&format!("spec.abortWhen[{i}].when"), [&rule.when], baseline).map_err(|e| {
            e.replacen(&format!("spec.abortWhen[{i}].when[0]"), &format!("spec.abortWhen[{i}].when"), 1)
        })?;
    }
    Ok(())
}

/// In a phased run the phases set the load's length: a duration or stages, when given, must
/// cover exactly warmup + baseline + inject + recover (cooldown runs without load).
fn load_fits_phases(load: &LoadProfile, phases: &PhasePlan) -> Result<(), String> {
    let total: Duration = [phases.warmup, phases.baseline, Some(phases.inject), phases.recover]
        .into_iter()
        .flatten()
        .map(GoDuration::as_std)
        .sum();
    let given = match (&load.duration, &load.stages) {
        (Some(d), _) => Some(("spec.load.duration", d.as_std())),
        (None, Some(stages)) => Some(("spec.load.stages", stages.iter().map(|s| s.duration.as_std()).sum())),
        (None, None) => None,
    };
    match given {
        Some((field, length)) if length != total => Err(format!(
            "{field} lasts {}, but the load runs through warmup + baseline + inject + recover = {}: make them equal, or leave {field} out",
            GoDuration(length),
            GoDuration(total)
        )),
        _ => Ok(()),
    }
}

impl SpecCheck for LoadTest {
    fn check_spec(&self) -> Result<(), String> {
        crate::load::stages::expand(&self.spec.load, None).map_err(|e| {
            let message = e.to_string();
            if message.starts_with("load.") { format!("spec.{message}") } else { format!("spec.load: {message}") }
        })?;
        check_all("spec.thresholds", &self.spec.thresholds, false)?;
        let closed = self.spec.load.model == crate::api::load::LoadModel::Closed;
        for (i, text) in self.spec.thresholds.iter().enumerate() {
            // check_all parsed every threshold above.
            let Ok(e) = text.parse::<crate::domain::expression::Expression>() else { continue };
            let share_of_target = e.metric == crate::domain::expression::Metric::AchievedRate
                && matches!(e.value, crate::domain::expression::Value::Ratio(_));
            if closed && share_of_target {
                return Err(format!(
                    "spec.thresholds[{i}]: {text:?}: the closed model schedules no rate, so a percentage of it cannot be judged: compare with requests per second instead, such as achievedRate >= 450"
                ));
            }
        }
        if self.spec.load.preset == Some(crate::api::load::Preset::Capacity) && self.spec.thresholds.is_empty() {
            return Err(
                "spec.thresholds: the capacity preset needs at least one threshold: it climbs until a level breaks one, such as 'p99 < 250ms'"
                    .into(),
            );
        }
        abort_rules(&self.spec.abort_when, false)
    }
}

impl SpecCheck for PodKill {
    fn check_spec(&self) -> Result<(), String> {
        crate::domain::podkill::label_selector(&self.spec).map(drop)
    }
}

impl SpecCheck for ServiceFault {
    fn check_spec(&self) -> Result<(), String> {
        fault_set("spec.", &self.spec.injection)
    }
}

/// The rules the proxy applies to a fault set it is given, named from the spec's root: a fault
/// the proxy would refuse is refused before anything is changed.
fn fault_set(prefix: &str, injection: &crate::api::fault::FaultInjection) -> Result<(), String> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let set =
        crate::faults::FaultSet { faults: injection.faults.clone(), expires_at: now, starts_at: None, seed: None };
    set.validate(injection.protocol, now).map_err(|e| format!("{prefix}{e}"))
}

impl SpecCheck for CircuitBreakerTrial {
    fn check_spec(&self) -> Result<(), String> {
        let baseline = self.spec.phases.baseline.is_some();
        load_fits_phases(&self.spec.load, &self.spec.phases)?;
        fault_set("spec.dependency.", &self.spec.dependency)?;
        check_all("spec.expectations", &self.spec.expectations, baseline)?;
        recovery_slo(self.spec.recovery.as_ref(), baseline)?;
        abort_rules(&self.spec.abort_when, baseline)
    }
}

fn recovery_slo(recovery: Option<&crate::api::trial::RecoverySpec>, baseline: bool) -> Result<(), String> {
    recovery.map_or(Ok(()), |r| check_all("spec.recovery.slo", &r.slo, baseline))
}

impl SpecCheck for AutoscalingCheck {
    fn check_spec(&self) -> Result<(), String> {
        check_all("spec.expect.slo", &self.spec.expect.slo, false)?;
        abort_rules(&self.spec.abort_when, false)
    }
}

impl SpecCheck for Drill {
    fn check_spec(&self) -> Result<(), String> {
        let baseline = self.spec.phases.baseline.is_some();
        load_fits_phases(&self.spec.load, &self.spec.phases)?;
        check_all("spec.expectations", &self.spec.expectations, baseline)?;
        recovery_slo(self.spec.recovery.as_ref(), baseline)?;
        abort_rules(&self.spec.abort_when, baseline)?;
        let inject = self.spec.phases.inject;
        let mut names = std::collections::BTreeSet::new();
        for (i, fault) in self.spec.faults.iter().enumerate() {
            if !names.insert(fault.name.as_str()) {
                return Err(format!("spec.faults[{i}].name: {:?} is used twice; names must be unique", fault.name));
            }
            if let Some(injection) = &fault.service_fault {
                fault_set(&format!("spec.faults[{i}].serviceFault."), injection)?;
            }
            if let Some(start) = fault.start_after
                && start >= inject
            {
                return Err(format!(
                    "spec.faults[{i}].startAfter ({start}) must be less than phases.inject ({inject}): a fault starts within the inject phase"
                ));
            }
        }
        service_faults_apart(&self.spec.faults)
    }
}

/// Faults on one Service must not overlap in time: its proxy holds one fault set, and a second
/// ServiceFault on a Service is refused. Two kinds of trouble at once go in one fault's list.
fn service_faults_apart(faults: &[crate::api::trial::DrillFault]) -> Result<(), String> {
    let window = |f: &crate::api::trial::DrillFault| {
        let start = f.start_after.map_or(std::time::Duration::ZERO, |d| d.as_std());
        (start, start + f.duration.map_or(std::time::Duration::ZERO, |d| d.as_std()))
    };
    for (j, later) in faults.iter().enumerate() {
        let Some(service) = later.service_fault.as_ref().map(|s| &s.service) else { continue };
        for earlier in &faults[..j] {
            if earlier.service_fault.as_ref().map(|s| &s.service) != Some(service) {
                continue;
            }
            let ((a0, a1), (b0, b1)) = (window(earlier), window(later));
            if a0 < b1 && b0 < a1 {
                return Err(format!(
                    "spec.faults[{j}] ({:?}) overlaps {:?} on the Service {service:?}: faults on one Service must not overlap in time (its proxy holds one fault set); put both in one fault's list",
                    later.name, earlier.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(faults: &str, expectations: &str, baseline: bool) -> Drill {
        let baseline = if baseline { "    baseline: 30s\n" } else { "" };
        let yaml = format!(
            "apiVersion: chaoslab.dev/v1alpha1\nkind: Drill\nmetadata: {{name: d, namespace: lab}}\nspec:\n  load: {{target: {{url: 'http://x/'}}, rate: 10}}\n  phases:\n    inject: 60s\n{baseline}  faults:\n{faults}  expectations: {expectations}\n"
        );
        serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    #[test]
    fn a_given_load_length_must_match_the_phases() {
        let mut d = drill(ONE_KILL, "[]", true);
        assert_eq!(d.check_spec(), Ok(()), "left out, the phases decide");
        // inject 60s + baseline 30s = 90s, but the load says 2m.
        d.spec.load.duration = Some("2m".parse().unwrap());
        let err = d.check_spec().unwrap_err();
        assert!(err.starts_with("spec.load.duration lasts 120s") && err.contains("= 90s"), "{err}");
        d.spec.load.duration = Some("90s".parse().unwrap());
        assert_eq!(d.check_spec(), Ok(()));
    }

    const ONE_KILL: &str = "    - {name: kill, startAfter: 10s, podKill: {selector: {matchLabels: {app: web}}}}\n";

    #[test]
    fn a_good_drill_passes() {
        assert_eq!(drill(ONE_KILL, "['p99 <= 2x baseline', 'errorRate < 1%']", true).check_spec(), Ok(()));
    }

    #[test]
    fn relative_expectations_need_a_baseline_phase() {
        let err = drill(ONE_KILL, "['p99 <= 2x baseline']", false).check_spec().unwrap_err();
        assert!(err.starts_with("spec.expectations[0]") && err.contains("set phases.baseline"), "{err}");
    }

    #[test]
    fn faults_start_within_inject_and_have_unique_names() {
        let late = "    - {name: kill, startAfter: 60s, podKill: {selector: {matchLabels: {app: web}}}}\n";
        let err = drill(late, "[]", false).check_spec().unwrap_err();
        assert!(err.contains("spec.faults[0].startAfter") && err.contains("phases.inject"), "{err}");
        let twice = format!("{ONE_KILL}{ONE_KILL}");
        assert!(drill(&twice, "[]", false).check_spec().unwrap_err().contains("used twice"));
    }

    #[test]
    fn faults_on_one_service_do_not_overlap() {
        let fault = |name: &str, service: &str, start: &str, duration: &str| {
            format!(
                "    - {{name: {name}, startAfter: {start}, duration: {duration}, serviceFault: {{service: {service}, faults: [{{type: reset}}]}}}}\n"
            )
        };
        let overlapping = format!("{}{}", fault("a", "web", "0s", "20s"), fault("b", "web", "10s", "20s"));
        let err = drill(&overlapping, "[]", false).check_spec().unwrap_err();
        assert!(err.starts_with("spec.faults[1] (\"b\") overlaps \"a\" on the Service \"web\""), "{err}");
        // One after the other on one Service, or at once on two Services: fine.
        let after = format!("{}{}", fault("a", "web", "0s", "10s"), fault("b", "web", "10s", "20s"));
        assert_eq!(drill(&after, "[]", false).check_spec(), Ok(()));
        let apart = format!("{}{}", fault("a", "web", "0s", "20s"), fault("b", "db", "10s", "20s"));
        assert_eq!(drill(&apart, "[]", false).check_spec(), Ok(()));
    }

    #[test]
    fn loadtest_thresholds_are_parsed() {
        let yaml = "apiVersion: chaoslab.dev/v1alpha1\nkind: LoadTest\nmetadata: {name: l, namespace: lab}\nspec:\n  load: {target: {url: 'http://x/'}, rate: 10, duration: 1m}\n  thresholds: ['p99 < 250ms', 'p95 < quick']\n";
        let lt: LoadTest = serde_saphyr::from_str(yaml).unwrap();
        let err = lt.check_spec().unwrap_err();
        assert!(err.starts_with("spec.thresholds[1]") && err.contains("a duration such as 250ms"), "{err}");
    }
}
