//! Load plans: the concrete stages a `LoadProfile` runs (what `status.stages` shows), the level
//! at any moment of them, and the steps (levels held) the engine reports figures for.
//!
//! The stage model is linear: each stage moves the level from where the previous one left it
//! to its `target` over its `duration`. A *hold* is a stage whose target equals the level it
//! starts from, and a *jump* is a 1s ramp, because the CRD allows no stage shorter than 1s.
//!
//! Where a plan starts: explicit `stages` start from 0 (like k6's ramping executors), so a
//! first stage of `{30s, 100}` is a ramp from 0 to 100. A constant level and the `baseline`
//! and `spike` presets start *at* their first level, so their first stage is a hold. Every
//! other preset starts from 0. [`Plan::start`] carries this, since a stage list alone cannot.

use std::time::Duration;

use crate::api::{
    GoDuration,
    load::{LoadModel, LoadProfile, Preset, Stage},
};

/// The shortest stage the CRD allows (`stages[].duration must be from 1s to 24h`).
pub const MIN_STAGE: Duration = Duration::from_secs(1);
/// The longest stage the CRD allows.
pub const MAX_STAGE: Duration = Duration::from_secs(24 * 3600);
/// The highest `stages[].target` the schema allows. The API server validates status updates
/// against the schema too, so an expansion above it could not even be reported.
pub const MAX_TARGET: u32 = 1_000_000;
/// The most stages the CRD allows in `load.stages` (and so in `status.stages`).
pub const MAX_STAGES: usize = 100;

/// What a profile runs: the level at the start and the stages that move it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The level at t = 0, before the first stage moves it: rate (open) or VUs (closed).
    pub start: u32,
    /// The stages, in order; what `status.stages` shows.
    pub stages: Vec<Stage>,
}

/// A level held for a while, with the ramp that led to it: what the capacity search judges one
/// level by, and what per-level figures are keyed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The level held.
    pub level: u32,
    /// Where the step begins: the start of the ramp into it, or of the hold if there was none.
    pub start: Duration,
    /// Where the level is reached and held. Seconds in `[start, settled)` are still ramping,
    /// so a judgement of this level should use only `[settled, end)`.
    pub settled: Duration,
    /// Where the hold ends (exclusive).
    pub end: Duration,
}

/// Why a profile cannot be turned into a plan. The CRD's rules prevent most of these; the
/// checks are repeated because a plan is also built from values no API server has seen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("load.{field} is required for the {model} model unless load.stages are given (at least 1)")]
    MissingLevel { field: &'static str, model: &'static str },
    #[error("load.duration is required for a constant load (or give load.stages or load.preset)")]
    MissingDuration,
    #[error("load.duration lasts {0}, but it must be from 1s to 24h")]
    DurationOutOfBounds(GoDuration),
    #[error(
        "load.stages replaces load.duration and load.preset: give stages, or a constant level with a duration, or a preset"
    )]
    StagesWithPresetOrDuration,
    #[error("load.stages has {0} items, but it must have 1 to 100")]
    StageCount(usize),
    #[error("load.stages[{index}].duration lasts {duration}, but it must be from 1s to 24h")]
    StageDurationOutOfBounds { index: usize, duration: GoDuration },
    #[error("load.stages[{index}].target is {target}, above the highest allowed, 1000000")]
    StageTargetTooHigh { index: usize, target: u32 },
    /// `preset` is `None` for a constant level.
    #[error(
        "{} at {level} reaches {peak}, above the 1000000 a stage can hold: lower the level to at most {max_level}",
        preset.map_or_else(|| "a constant load".to_owned(), |p| format!("the {p} preset"))
    )]
    LevelTooHigh { preset: Option<&'static str>, level: u32, peak: u64, max_level: u32 },
}

/// The preset's name as written in the spec.
pub fn preset_name(preset: Preset) -> &'static str {
    match preset {
        Preset::Baseline => "baseline",
        Preset::Load => "load",
        Preset::Stress => "stress",
        Preset::Spike => "spike",
        Preset::Soak => "soak",
        Preset::Capacity => "capacity",
    }
}

/// The `duration` a preset runs for when the spec gives none.
pub fn default_preset_duration(preset: Preset) -> Duration {
    Duration::from_secs(match preset {
        Preset::Baseline => 60,
        Preset::Load => 5 * 60,
        Preset::Stress => 6 * 60,
        Preset::Spike => 4 * 60,
        Preset::Soak => 3600,
        Preset::Capacity => 10 * 60,
    })
}

/// Expand a profile into its plan.
///
/// `run_length` is the length the kind imposes when `load.duration` is absent: warmup +
/// baseline + inject + recover for CircuitBreakerTrial and Drill, `None` for LoadTest and
/// AutoscalingCheck. It stands in for `load.duration` for a constant level and a preset;
/// explicit stages ignore it (the spec check has already made them add up to it).
pub fn expand(profile: &LoadProfile, run_length: Option<Duration>) -> Result<Plan, PlanError> {
    if let Some(stages) = &profile.stages {
        if profile.duration.is_some() || profile.preset.is_some() {
            return Err(PlanError::StagesWithPresetOrDuration);
        }
        check_stages(stages)?;
        return Ok(Plan { start: 0, stages: stages.clone() });
    }
    let (level, field, model) = match profile.model {
        LoadModel::Open => (profile.rate, "rate", "open"),
        LoadModel::Closed => (profile.vus, "vus", "closed"),
    };
    let level = level.filter(|l| *l > 0).ok_or(PlanError::MissingLevel { field, model })?;
    let duration = profile.duration.map(GoDuration::as_std).or(run_length);
    match profile.preset {
        Some(preset) => expand_preset(preset, level, duration),
        None => constant(level, duration.ok_or(PlanError::MissingDuration)?),
    }
}

/// A constant level L for D: one hold, starting at L (there is no ramp up from 0).
pub fn constant(level: u32, duration: Duration) -> Result<Plan, PlanError> {
    check_duration(duration)?;
    let plan = Plan { start: level, stages: vec![stage(millis(duration), u64::from(level))] };
    check_peak(plan, None, level, 1)
}

/// Expand a preset around the nominal level L (`level`) and the duration D (`duration`, or the
/// preset's default). `docs/api.md` (LoadProfile) lists the same shapes for users.
///
/// Durations are whole milliseconds; rounding remainders go to the last hold, so a plan lasts
/// exactly D whenever D is long enough for every stage to last its 1s minimum.
pub fn expand_preset(preset: Preset, level: u32, duration: Option<Duration>) -> Result<Plan, PlanError> {
    if let Some(d) = duration {
        check_duration(d)?;
    }
    let d = millis(duration.unwrap_or_else(|| default_preset_duration(preset)));
    let l = u64::from(level);
    let (start, stages, factor) = match preset {
        // A low constant load to record reference figures: 10% of L held for D.
        Preset::Baseline => {
            let b = tenths(l, 1).max(1);
            (b, vec![stage(d, b)], 1)
        }
        // Ramp up over 10% of D, hold, ramp down over 10% of D.
        Preset::Load => {
            let ramp = at_least_1s(d / 10);
            let hold = at_least_1s(d.saturating_sub(2 * ramp));
            (0, vec![stage(ramp, l), stage(hold, l), stage(ramp, 0)], 1)
        }
        // Three steps, L, 1.5L and 2L, each a third of D: a ramp over 10% of the step, then a
        // hold. The last hold takes the rounding remainder.
        Preset::Stress => {
            let step = d / 3;
            let ramp = at_least_1s(step / 10);
            let hold = at_least_1s(step.saturating_sub(ramp));
            let last = at_least_1s(d.saturating_sub(2 * step + ramp));
            let levels = [l, (3 * l).div_ceil(2), 2 * l];
            let stages = vec![
                stage(ramp, levels[0]),
                stage(hold, levels[0]),
                stage(ramp, levels[1]),
                stage(hold, levels[1]),
                stage(ramp, levels[2]),
                stage(last, levels[2]),
            ];
            (0, stages, 2)
        }
        // L for D/4, a 1s jump to 5L held D/4, a 1s jump back to L held for the rest.
        Preset::Spike => {
            let quarter = at_least_1s(d / 4);
            let rest = at_least_1s(d.saturating_sub(2 * quarter + 2 * 1000));
            let stages =
                vec![stage(quarter, l), stage(1000, 5 * l), stage(quarter, 5 * l), stage(1000, l), stage(rest, l)];
            (l, stages, 5)
        }
        // A 1m ramp, then L held for all of D: D is the soak, the ramp comes on top.
        Preset::Soak => (0, vec![stage(60_000, l), stage(d, l)], 1),
        // Steps of 10% of L from 10% up to 2L, each a 1s jump and a hold of max(D/10, 10s):
        // D is the time to climb to L, the whole climb to 2L takes twice that.
        Preset::Capacity => {
            let hold = (d / 10).max(10_000);
            let mut stages = Vec::new();
            let mut previous = 0;
            for k in 1..=20 {
                // Small L rounds several steps to the same level; a repeated level would only
                // hold longer, so it is left out.
                let level = tenths(l, k).max(1);
                if level != previous {
                    stages.push(stage(1000, level));
                    stages.push(stage(hold, level));
                    previous = level;
                }
            }
            (0, stages, 2)
        }
    };
    let start = u32::try_from(start).unwrap_or(u32::MAX);
    check_peak(Plan { start, stages }, Some(preset_name(preset)), level, factor)
}

/// The whole length of the stages.
pub fn total_duration(stages: &[Stage]) -> Duration {
    stages.iter().fold(Duration::ZERO, |sum, s| sum.saturating_add(s.duration.as_std()))
}

/// The level at `t`, moving linearly within each stage from where the previous one left it.
/// A plan covers `[0, total)`: from its end on the load has stopped and the level is 0.
pub fn level_at(stages: &[Stage], start_level: f64, t: Duration) -> f64 {
    let mut from = start_level;
    let mut begin = Duration::ZERO;
    for s in stages {
        let length = s.duration.as_std();
        let end = begin.saturating_add(length);
        let to = f64::from(s.target);
        if t < end {
            // `t < end` and `t >= begin` make `length` non-zero here.
            let fraction = (t - begin).as_nanos() as f64 / length.as_nanos() as f64;
            return from + (to - from) * fraction;
        }
        from = to;
        begin = end;
    }
    0.0
}

/// The levels held, each with the ramp that led to it. Consecutive holds at one level make one
/// step; a hold that follows another level's hold without a ramp (a plan starting with a hold)
/// has no ramp part (`start == settled`). Ramps that lead to no hold (a final ramp down) belong
/// to no step.
pub fn steps(stages: &[Stage], start_level: u32) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut level = start_level;
    let mut at = Duration::ZERO;
    let mut ramp_start = None;
    for s in stages {
        let end = at.saturating_add(s.duration.as_std());
        if s.target == level {
            match steps.last_mut() {
                Some(step) if step.end == at && step.level == level && ramp_start.is_none() => step.end = end,
                _ => steps.push(Step { level, start: ramp_start.unwrap_or(at), settled: at, end }),
            }
            ramp_start = None;
        } else {
            ramp_start = Some(at);
        }
        level = s.target;
        at = end;
    }
    steps
}

/// The index of the step `t` falls in (ramp part included), if any.
pub fn step_at(steps: &[Step], t: Duration) -> Option<usize> {
    steps.iter().position(|s| s.start <= t && t < s.end)
}

/// A closed-model runner's share of `level` VUs: the N shares add up to the level exactly and
/// differ by at most one. (The open model splits its rate in [`super::schedule`].)
pub fn runner_share(level: u32, runner: u32, runners: u32) -> u32 {
    if runners == 0 {
        return 0;
    }
    level / runners + u32::from(runner < level % runners)
}

impl Plan {
    pub fn total_duration(&self) -> Duration {
        total_duration(&self.stages)
    }

    pub fn level_at(&self, t: Duration) -> f64 {
        level_at(&self.stages, f64::from(self.start), t)
    }

    /// The rate this plan asks for over the seconds `[from, to)` of the load (its level at their
    /// middle), what the figures' achieved rate is measured against; `None` for the closed
    /// model, whose level is VUs.
    pub fn target_rate(&self, model: LoadModel, from: u64, to: u64) -> Option<f64> {
        (model == LoadModel::Open).then(|| self.level_at(Duration::from_secs_f64((from + to) as f64 / 2.0)))
    }

    pub fn steps(&self) -> Vec<Step> {
        steps(&self.stages, self.start)
    }

    /// The integral of the level over the plan: requests the open model schedules in all.
    pub fn area(&self) -> f64 {
        let mut from = f64::from(self.start);
        let mut area = 0.0;
        for s in &self.stages {
            let to = f64::from(s.target);
            area += (from + to) / 2.0 * s.duration.as_std().as_secs_f64();
            from = to;
        }
        area
    }

    /// The average level over the plan (`status.targetRate` for the open model).
    pub fn mean_level(&self) -> f64 {
        let total = self.total_duration().as_secs_f64();
        if total > 0.0 { self.area() / total } else { 0.0 }
    }
}

fn check_duration(d: Duration) -> Result<(), PlanError> {
    if (MIN_STAGE..=MAX_STAGE).contains(&d) { Ok(()) } else { Err(PlanError::DurationOutOfBounds(GoDuration(d))) }
}

fn check_stages(stages: &[Stage]) -> Result<(), PlanError> {
    if stages.is_empty() || stages.len() > MAX_STAGES {
        return Err(PlanError::StageCount(stages.len()));
    }
    for (index, s) in stages.iter().enumerate() {
        if !(MIN_STAGE..=MAX_STAGE).contains(&s.duration.as_std()) {
            return Err(PlanError::StageDurationOutOfBounds { index, duration: s.duration });
        }
        if s.target > MAX_TARGET {
            return Err(PlanError::StageTargetTooHigh { index, target: s.target });
        }
    }
    Ok(())
}

/// Refuse a plan whose peak cannot be a stage target, rather than clamp it: a spike clamped to
/// 2×L is not the spike that was asked for. `factor` is the preset's peak as a multiple of L.
fn check_peak(plan: Plan, preset: Option<&'static str>, level: u32, factor: u32) -> Result<Plan, PlanError> {
    let peak = plan.stages.iter().map(|s| u64::from(s.target)).max().unwrap_or(0).max(u64::from(plan.start));
    if peak > u64::from(MAX_TARGET) {
        return Err(PlanError::LevelTooHigh { preset, level, peak, max_level: MAX_TARGET / factor });
    }
    Ok(plan)
}

/// `k` tenths of `level`, rounded half up.
fn tenths(level: u64, k: u64) -> u64 {
    (level * k + 5) / 10
}

fn at_least_1s(ms: u64) -> u64 {
    ms.max(1000)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A stage of `ms` milliseconds to `target`. Targets above `u32::MAX` saturate; `check_peak`
/// refuses anything above [`MAX_TARGET`] anyway.
fn stage(ms: u64, target: u64) -> Stage {
    Stage { duration: GoDuration(Duration::from_millis(ms)), target: u32::try_from(target).unwrap_or(u32::MAX) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::load::{LoadTarget, RunnerSpec};

    const ALL: [Preset; 6] =
        [Preset::Baseline, Preset::Load, Preset::Stress, Preset::Spike, Preset::Soak, Preset::Capacity];

    fn s(secs: f64, target: u32) -> Stage {
        Stage { duration: GoDuration(Duration::from_secs_f64(secs)), target }
    }

    fn secs(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    fn shape(plan: &Plan) -> Vec<(String, u32)> {
        plan.stages.iter().map(|s| (s.duration.to_string(), s.target)).collect()
    }

    fn profile(model: LoadModel) -> LoadProfile {
        LoadProfile {
            target: LoadTarget { url: Some("http://web/".into()), service: None },
            requests: vec![],
            model,
            preset: None,
            rate: None,
            vus: None,
            duration: None,
            stages: None,
            max_in_flight: None,
            think_time: None,
            timeout: GoDuration::from_secs(10),
            http2: false,
            runners: RunnerSpec::default(),
        }
    }

    fn preset(p: Preset, level: u32, d: Option<u64>) -> Plan {
        expand_preset(p, level, d.map(Duration::from_secs)).unwrap_or_else(|e| panic!("{p:?} {level} {d:?}: {e}"))
    }

    #[test]
    fn explicit_stages_run_as_given_from_zero() {
        let mut p = profile(LoadModel::Open);
        p.stages = Some(vec![s(30.0, 100), s(60.0, 100), s(10.0, 0)]);
        let plan = expand(&p, None).unwrap();
        assert_eq!(plan, Plan { start: 0, stages: p.stages.clone().unwrap() });
        assert_eq!(plan.level_at(secs(15.0)), 50.0);
        assert_eq!(plan.total_duration(), secs(100.0));
    }

    #[test]
    fn a_constant_level_is_one_hold_starting_at_the_level() {
        let mut p = profile(LoadModel::Open);
        p.rate = Some(200);
        p.duration = Some(GoDuration::from_secs(300));
        let plan = expand(&p, None).unwrap();
        assert_eq!(plan, Plan { start: 200, stages: vec![s(300.0, 200)] });
        assert_eq!(plan.level_at(Duration::ZERO), 200.0);
        assert_eq!(plan.level_at(secs(299.999)), 200.0);
        assert_eq!(plan.mean_level(), 200.0);

        let mut c = profile(LoadModel::Closed);
        c.vus = Some(20);
        assert_eq!(expand(&c, None), Err(PlanError::MissingDuration));
        // CircuitBreakerTrial and Drill: the phases set the length.
        assert_eq!(expand(&c, Some(secs(90.0))).unwrap(), Plan { start: 20, stages: vec![s(90.0, 20)] });
    }

    #[test]
    fn the_model_picks_the_level() {
        let mut p = profile(LoadModel::Closed);
        p.rate = Some(100);
        p.duration = Some(GoDuration::from_secs(10));
        assert_eq!(expand(&p, None), Err(PlanError::MissingLevel { field: "vus", model: "closed" }));
        p.vus = Some(0);
        assert!(expand(&p, None).unwrap_err().to_string().starts_with("load.vus is required for the closed model"));
        let mut o = profile(LoadModel::Open);
        o.preset = Some(Preset::Load);
        assert_eq!(expand(&o, None), Err(PlanError::MissingLevel { field: "rate", model: "open" }));
        o.rate = Some(100);
        assert_eq!(expand(&o, None).unwrap(), preset(Preset::Load, 100, None));
        o.duration = Some(GoDuration::from_secs(60));
        assert_eq!(expand(&o, Some(secs(999.0))).unwrap(), preset(Preset::Load, 100, Some(60)));
    }

    #[test]
    fn bad_profiles_are_refused_with_the_crd_message() {
        let mut p = profile(LoadModel::Open);
        p.stages = Some(vec![s(10.0, 5)]);
        p.preset = Some(Preset::Soak);
        assert_eq!(expand(&p, None), Err(PlanError::StagesWithPresetOrDuration));
        p.preset = None;
        p.stages = Some(vec![]);
        assert_eq!(expand(&p, None), Err(PlanError::StageCount(0)));
        p.stages = Some(vec![s(1.0, 1); 101]);
        assert_eq!(expand(&p, None), Err(PlanError::StageCount(101)));
        p.stages = Some(vec![s(10.0, 5), s(0.5, 5)]);
        assert_eq!(
            expand(&p, None).unwrap_err().to_string(),
            "load.stages[1].duration lasts 500ms, but it must be from 1s to 24h"
        );
        p.stages = Some(vec![s(10.0, 1_000_001)]);
        assert_eq!(expand(&p, None), Err(PlanError::StageTargetTooHigh { index: 0, target: 1_000_001 }));
        p.stages = None;
        p.rate = Some(10);
        p.duration = Some(GoDuration(secs(86_401.0)));
        assert_eq!(
            expand(&p, None).unwrap_err().to_string(),
            "load.duration lasts 86401s, but it must be from 1s to 24h"
        );
        assert!(matches!(expand_preset(Preset::Load, 10, Some(secs(0.5))), Err(PlanError::DurationOutOfBounds(_))));
    }

    #[test]
    fn presets_expand_to_the_documented_shapes() {
        let ms = |plan: Plan| (plan.start, shape(&plan));
        let v = |xs: &[(&str, u32)]| xs.iter().map(|(d, t)| (d.to_string(), *t)).collect::<Vec<_>>();

        assert_eq!(ms(preset(Preset::Baseline, 200, None)), (20, v(&[("60s", 20)])));
        assert_eq!(ms(preset(Preset::Baseline, 4, Some(30))), (1, v(&[("30s", 1)])));

        assert_eq!(ms(preset(Preset::Load, 200, None)), (0, v(&[("30s", 200), ("240s", 200), ("30s", 0)])));

        assert_eq!(
            ms(preset(Preset::Stress, 200, None)),
            (0, v(&[("12s", 200), ("108s", 200), ("12s", 300), ("108s", 300), ("12s", 400), ("108s", 400)]))
        );
        assert_eq!(ms(preset(Preset::Stress, 3, Some(60))).1[2], ("2s".to_string(), 5), "1.5 × 3 rounds up");

        assert_eq!(
            ms(preset(Preset::Spike, 200, None)),
            (200, v(&[("60s", 200), ("1s", 1000), ("60s", 1000), ("1s", 200), ("118s", 200)]))
        );

        assert_eq!(ms(preset(Preset::Soak, 200, None)), (0, v(&[("60s", 200), ("3600s", 200)])));

        let cap = preset(Preset::Capacity, 200, None);
        assert_eq!(cap.start, 0);
        assert_eq!(cap.stages.len(), 40);
        for (k, pair) in cap.stages.chunks(2).enumerate() {
            let level = 20 * (k as u32 + 1);
            assert_eq!(pair, [s(1.0, level), s(60.0, level)]);
        }
        assert_eq!(cap.total_duration(), secs(20.0 * 61.0));
        // Short D: holds never go under 10s.
        assert!(preset(Preset::Capacity, 200, Some(30)).stages.chunks(2).all(|p| p[1].duration.as_std() == secs(10.0)));
    }

    #[test]
    fn capacity_leaves_out_levels_that_round_to_the_previous_one() {
        let targets =
            |l| preset(Preset::Capacity, l, None).stages.iter().step_by(2).map(|s| s.target).collect::<Vec<_>>();
        assert_eq!(targets(1), vec![1, 2]);
        assert_eq!(targets(5), (1..=10).collect::<Vec<_>>());
        assert_eq!(targets(15), vec![2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24, 26, 27, 29, 30]);
    }

    #[test]
    fn presets_refuse_peaks_a_stage_cannot_hold() {
        assert_eq!(
            expand_preset(Preset::Spike, 200_001, None),
            Err(PlanError::LevelTooHigh { preset: Some("spike"), level: 200_001, peak: 1_000_005, max_level: 200_000 })
        );
        assert!(expand_preset(Preset::Spike, 200_000, None).is_ok());
        assert!(expand_preset(Preset::Stress, 500_001, None).is_err());
        assert!(expand_preset(Preset::Capacity, 500_000, None).is_ok());
        assert!(expand_preset(Preset::Load, 1_000_000, None).is_ok());
        assert!(constant(1_000_000, secs(1.0)).is_ok());
        assert_eq!(
            constant(1_000_001, secs(1.0)).unwrap_err().to_string(),
            "a constant load at 1000001 reaches 1000001, above the 1000000 a stage can hold: lower the level to at most 1000000"
        );
        let msg = expand_preset(Preset::Stress, 600_000, None).unwrap_err().to_string();
        assert_eq!(
            msg,
            "the stress preset at 600000 reaches 1200000, above the 1000000 a stage can hold: lower the level to at most 500000"
        );
    }

    /// Durations that probe every rounding edge, from the CRD's 1s to its 24h.
    fn durations() -> Vec<Option<Duration>> {
        let mut ds = vec![None];
        for ms in [
            1000, 1001, 1499, 1500, 1999, 2000, 2500, 3000, 3999, 4000, 5000, 5999, 6000, 6001, 7000, 7777, 8000, 9000,
            9999, 10_000, 10_001, 11_000, 19_999, 29_999, 30_000, 59_999, 60_000, 99_999, 100_000, 299_999, 300_000,
            433_700, 3_600_000, 86_399_999, 86_400_000,
        ] {
            ds.push(Some(Duration::from_millis(ms)));
        }
        for i in 0..200u64 {
            // A deterministic spread over the whole range.
            ds.push(Some(Duration::from_millis(1000 + (i * i * 2_171_537 + i * 7919) % 86_399_000)));
        }
        ds
    }

    const LEVELS: [u32; 16] = [1, 2, 3, 4, 5, 7, 9, 10, 11, 15, 99, 101, 999, 12_345, 100_000, 200_000];

    #[test]
    fn every_preset_stage_satisfies_the_crd_bounds_for_many_levels_and_durations() {
        for p in ALL {
            for level in LEVELS {
                for d in durations() {
                    let plan = expand_preset(p, level, d).unwrap_or_else(|e| panic!("{p:?} {level} {d:?}: {e}"));
                    let ctx = format!("{p:?} L={level} D={d:?}");
                    assert!(!plan.stages.is_empty() && plan.stages.len() <= MAX_STAGES, "{ctx}");
                    for st in &plan.stages {
                        let len = st.duration.as_std();
                        assert!((MIN_STAGE..=MAX_STAGE).contains(&len), "{ctx}: {len:?}");
                        assert_eq!(len.subsec_nanos() % 1_000_000, 0, "{ctx}: whole milliseconds");
                        assert!(st.target <= MAX_TARGET, "{ctx}");
                        // status.stages must round-trip through the Go duration format.
                        assert_eq!(st.duration.to_string().parse::<GoDuration>().unwrap(), st.duration, "{ctx}");
                    }
                    assert!(plan.start <= MAX_TARGET, "{ctx}");
                    // Re-checking through the explicit-stages path must accept every expansion.
                    check_stages(&plan.stages).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                }
            }
        }
    }

    #[test]
    fn every_preset_lasts_d_once_d_leaves_room_for_its_minimums() {
        for level in LEVELS {
            for d in durations() {
                let dd = d.map(|d| Duration::from_millis(millis(d)));
                for (p, minimum, extra) in [
                    (Preset::Baseline, 1.0, 0.0),
                    (Preset::Load, 3.0, 0.0),
                    (Preset::Stress, 6.0, 0.0),
                    (Preset::Spike, 6.0, 0.0),
                    (Preset::Soak, 1.0, 60.0),
                ] {
                    let plan = expand_preset(p, level, d).unwrap();
                    let want = dd.unwrap_or_else(|| default_preset_duration(p));
                    if want >= secs(minimum) {
                        assert_eq!(plan.total_duration(), want + secs(extra), "{p:?} L={level} D={d:?}");
                    }
                    assert!(plan.total_duration() >= want, "{p:?} never runs shorter than D");
                }
                let cap = expand_preset(Preset::Capacity, level, d).unwrap();
                let hold = (dd.unwrap_or(secs(600.0)) / 10).max(secs(10.0));
                assert!(cap.steps().iter().all(|s| s.end - s.settled == Duration::from_millis(millis(hold))));
            }
        }
    }

    #[test]
    fn every_preset_reaches_its_documented_levels() {
        for level in LEVELS {
            let l = f64::from(level);
            let held = |p| preset(p, level, None).steps().iter().map(|s| s.level).collect::<Vec<_>>();
            assert_eq!(held(Preset::Baseline), vec![((level + 5) / 10).max(1)]);
            assert_eq!(held(Preset::Load), vec![level]);
            let mut stress = vec![level, (3 * level).div_ceil(2), 2 * level];
            // At L = 1, 1.5L rounds to 2L: the last two steps are one level held longer.
            stress.dedup();
            assert_eq!(held(Preset::Stress), stress);
            assert_eq!(held(Preset::Spike), vec![level, 5 * level, level]);
            assert_eq!(held(Preset::Soak), vec![level]);
            let cap = held(Preset::Capacity);
            assert_eq!(cap.last(), Some(&(2 * level)));
            assert!(cap.windows(2).all(|w| w[0] < w[1]), "capacity climbs");
            assert!(cap.len() <= 20);
            // The load preset ends where it began.
            let load = preset(Preset::Load, level, None);
            assert_eq!(load.level_at(Duration::ZERO), 0.0);
            assert_eq!(load.level_at(secs(150.0)), l);
            assert_eq!(load.level_at(secs(15.0)), l / 2.0);
            assert!((load.level_at(secs(285.0)) - l / 2.0).abs() < 1e-9);
        }
    }

    #[test]
    fn level_at_interpolates_and_stops_at_the_end() {
        let stages = [s(10.0, 100), s(10.0, 100), s(5.0, 0), s(4.0, 40)];
        let at = |t| level_at(&stages, 0.0, secs(t));
        assert_eq!(at(0.0), 0.0);
        assert_eq!(at(2.5), 25.0);
        assert_eq!(at(10.0), 100.0);
        assert_eq!(at(19.999), 100.0);
        assert_eq!(at(22.5), 50.0);
        assert_eq!(at(25.0), 0.0);
        assert_eq!(at(27.0), 20.0);
        assert_eq!(at(29.0), 0.0, "the plan is [0, total): the load has stopped");
        assert_eq!(level_at(&stages, 50.0, secs(5.0)), 75.0, "from the start level");
        assert_eq!(level_at(&[], 10.0, Duration::ZERO), 0.0);
        assert_eq!(total_duration(&stages), secs(29.0));
        assert_eq!(total_duration(&[]), Duration::ZERO);
    }

    #[test]
    fn steps_mark_where_each_level_ramps_in_settles_and_ends() {
        let spike = preset(Preset::Spike, 100, None);
        assert_eq!(
            spike.steps(),
            vec![
                Step { level: 100, start: secs(0.0), settled: secs(0.0), end: secs(60.0) },
                Step { level: 500, start: secs(60.0), settled: secs(61.0), end: secs(121.0) },
                Step { level: 100, start: secs(121.0), settled: secs(122.0), end: secs(240.0) },
            ]
        );
        let cap = preset(Preset::Capacity, 100, Some(100));
        let steps = cap.steps();
        assert_eq!(steps.len(), 20);
        assert_eq!(steps[0], Step { level: 10, start: secs(0.0), settled: secs(1.0), end: secs(11.0) });
        assert_eq!(steps[19], Step { level: 200, start: secs(209.0), settled: secs(210.0), end: secs(220.0) });
        // Steps tile the capacity plan: every second belongs to exactly one level.
        assert!(steps.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(step_at(&steps, secs(0.0)), Some(0));
        assert_eq!(step_at(&steps, secs(10.999)), Some(0));
        assert_eq!(step_at(&steps, secs(11.0)), Some(1));
        assert_eq!(step_at(&steps, secs(219.0)), Some(19));
        assert_eq!(step_at(&steps, secs(220.0)), None);
        for t in 0..220 {
            let i = step_at(&steps, secs(f64::from(t))).unwrap();
            assert!(cap.level_at(secs(f64::from(t))) <= f64::from(steps[i].level));
        }
        // A final ramp down belongs to no step; consecutive holds at one level make one step.
        let load = preset(Preset::Load, 100, None);
        assert_eq!(load.steps(), vec![Step { level: 100, start: secs(0.0), settled: secs(30.0), end: secs(270.0) }]);
        assert_eq!(step_at(&load.steps(), secs(280.0)), None);
        let holds = super::steps(&[s(5.0, 7), s(5.0, 7)], 7);
        assert_eq!(holds, vec![Step { level: 7, start: secs(0.0), settled: secs(0.0), end: secs(10.0) }]);
    }

    #[test]
    fn mean_level_integrates_the_ramps() {
        assert_eq!(preset(Preset::Load, 100, Some(100)).area(), 100.0 * 80.0 + 2.0 * 50.0 * 10.0);
        assert_eq!(Plan { start: 0, stages: vec![s(10.0, 100)] }.mean_level(), 50.0);
        assert_eq!(Plan { start: 0, stages: vec![] }.mean_level(), 0.0);
    }

    #[test]
    fn runner_shares_add_up_and_differ_by_at_most_one() {
        for level in [0, 1, 7, 64, 100, 1001] {
            for n in 1..=64 {
                let shares: Vec<u32> = (0..n).map(|i| runner_share(level, i, n)).collect();
                assert_eq!(shares.iter().sum::<u32>(), level);
                assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
            }
        }
        assert_eq!(runner_share(5, 0, 0), 0);
    }
}
