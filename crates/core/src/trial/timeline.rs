//! The time windows of a judged run (warmup → baseline → inject → recover → cooldown) and when
//! each fault is on, in whole seconds from the load's start: the load engine measures seconds,
//! so every window starts and ends on one.

use std::time::Duration;

use crate::api::{
    figures::{PhaseName, PhasePlan},
    trial::DrillFault,
};

/// One phase's window: seconds `[start, end)` from the load's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub name: PhaseName,
    pub start: u64,
    pub end: u64,
}

impl Window {
    pub fn seconds(&self) -> u64 {
        self.end - self.start
    }

    pub fn contains(&self, second: u64) -> bool {
        (self.start..self.end).contains(&second)
    }
}

/// Every phase of a run, in order, with the load's end (cooldown runs without load).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    pub windows: Vec<Window>,
}

/// Whole seconds, rounded up: a window of 1.5s measures two seconds, never one and a half.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Timeline {
    pub fn new(plan: &PhasePlan) -> Self {
        let phases = [
            (PhaseName::Warmup, plan.warmup.map(|d| d.as_std())),
            (PhaseName::Baseline, plan.baseline.map(|d| d.as_std())),
            (PhaseName::Inject, Some(plan.inject.as_std())),
            (PhaseName::Recover, plan.recover.map(|d| d.as_std())),
            (PhaseName::Cooldown, plan.cooldown.map(|d| d.as_std())),
        ];
        let mut start = 0;
        let mut windows = Vec::with_capacity(phases.len());
        for (name, length) in phases {
            let seconds = length.map_or(0, whole_seconds);
            // The inject phase is never empty: every judged run injects for at least a second.
            let seconds = if name == PhaseName::Inject { seconds.max(1) } else { seconds };
            if seconds > 0 {
                windows.push(Window { name, start, end: start + seconds });
                start += seconds;
            }
        }
        Self { windows }
    }

    pub fn window(&self, name: PhaseName) -> Option<Window> {
        self.windows.iter().copied().find(|w| w.name == name)
    }

    /// The inject window (always present).
    pub fn inject(&self) -> Window {
        self.window(PhaseName::Inject).unwrap_or(Window { name: PhaseName::Inject, start: 0, end: 1 })
    }

    /// Seconds of load: every phase but cooldown.
    pub fn load_seconds(&self) -> u64 {
        self.windows.iter().filter(|w| w.name != PhaseName::Cooldown).map(Window::seconds).sum()
    }

    /// The whole run, cooldown included.
    pub fn total_seconds(&self) -> u64 {
        self.windows.last().map_or(0, |w| w.end)
    }

    /// The phase a second falls in.
    pub fn phase_at(&self, second: u64) -> Option<PhaseName> {
        self.windows.iter().find(|w| w.contains(second)).map(|w| w.name)
    }
}

/// When one fault is on, in seconds from the load's start. A pod kill's `end` is where its
/// repetitions are cut (the end of inject).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSlot {
    pub name: String,
    pub start: u64,
    pub end: u64,
}

/// The faults of a drill placed on the timeline: each starts at its offset within inject, and
/// ends after its duration or at the end of inject, whichever comes first.
pub fn drill_slots(timeline: &Timeline, faults: &[DrillFault]) -> Vec<FaultSlot> {
    let inject = timeline.inject();
    faults
        .iter()
        .map(|f| {
            let offset = f.start_after.map_or(0, |d| d.as_std().as_secs());
            let start = (inject.start + offset).min(inject.end.saturating_sub(1));
            let end = match f.duration {
                Some(d) => (start + whole_seconds(d.as_std())).min(inject.end),
                None => inject.end,
            };
            FaultSlot { name: f.name.clone(), start, end: end.max(start + 1) }
        })
        .collect()
}

/// The moment the last fault ends: recovery is measured from here.
pub fn faults_end(timeline: &Timeline, slots: &[FaultSlot]) -> u64 {
    slots.iter().map(|s| s.end).max().unwrap_or_else(|| timeline.inject().end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml: &str) -> PhasePlan {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn phases_follow_each_other_in_whole_seconds() {
        let t = Timeline::new(&plan("{warmup: 10s, baseline: 1m, inject: 1.5s, recover: 30s, cooldown: 20s}"));
        let spans: Vec<(PhaseName, u64, u64)> = t.windows.iter().map(|w| (w.name, w.start, w.end)).collect();
        assert_eq!(
            spans,
            vec![
                (PhaseName::Warmup, 0, 10),
                (PhaseName::Baseline, 10, 70),
                (PhaseName::Inject, 70, 72),
                (PhaseName::Recover, 72, 102),
                (PhaseName::Cooldown, 102, 122),
            ]
        );
        assert_eq!((t.load_seconds(), t.total_seconds()), (102, 122));
        assert_eq!(t.phase_at(70), Some(PhaseName::Inject));
        assert_eq!(t.phase_at(122), None);
    }

    #[test]
    fn missing_phases_take_no_time() {
        let t = Timeline::new(&plan("{inject: 30s}"));
        assert_eq!(t.windows, vec![Window { name: PhaseName::Inject, start: 0, end: 30 }]);
        assert_eq!(t.window(PhaseName::Baseline), None);
    }

    #[test]
    fn drill_faults_start_at_their_offset_and_are_cut_at_the_end_of_inject() {
        let t = Timeline::new(&plan("{baseline: 20s, inject: 60s, recover: 20s}"));
        let faults: Vec<DrillFault> = serde_saphyr::from_str(
            "- {name: kill, podKill: {selector: {matchLabels: {app: web}}}}\n- {name: slow, startAfter: 10s, duration: 20s, serviceFault: {service: web, faults: [{type: reset}]}}\n- {name: late, startAfter: 50s, duration: 30s, serviceFault: {service: web, faults: [{type: reset}]}}\n",
        )
        .unwrap();
        let slots = drill_slots(&t, &faults);
        let spans: Vec<(&str, u64, u64)> = slots.iter().map(|s| (s.name.as_str(), s.start, s.end)).collect();
        assert_eq!(spans, vec![("kill", 20, 80), ("slow", 30, 50), ("late", 70, 80)]);
        assert_eq!(faults_end(&t, &slots), 80);
    }
}
