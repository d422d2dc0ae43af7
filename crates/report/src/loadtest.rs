//! The report of a LoadTest: its thresholds as the expectations, its figures over the run, the
//! capacity knee, per-step figures and runners as its status holds them, the per-second series
//! the runners measured, and the plan's stages as labelled windows of the time axis.

use super::{LoadTestFigures, Record, Report, SecondFigures, StageWindow};
use crate::{
    api::{
        LoadTest,
        load::{LoadModel, LoadTestStatus},
    },
    load::Figures,
};

impl Report {
    /// The report of `lt` once `status` holds its verdict; `seconds` are the merged per-second
    /// figures of its runners (index = second since `loadStartsAt`).
    pub fn of_load_test(lt: &LoadTest, status: &LoadTestStatus, seconds: &[Option<Figures>]) -> Report {
        let mut record = Record::in_cluster(&lt.spec.load);
        if let Some(url) = &status.target_url {
            record.target = url.clone();
        }
        Report {
            expectations: status.thresholds.clone(),
            aborted_by: status.aborted_by.clone(),
            stages: stage_windows(status, lt.spec.load.model),
            seconds: SecondFigures::series(seconds),
            load_test: Some(LoadTestFigures {
                target_rate: status.target_rate,
                achieved_rate: status.achieved_rate,
                error_rate: status.error_rate,
                latency: status.latency.clone(),
                requests: status.requests.clone(),
                littles_law_concurrency: status.littles_law_concurrency,
                capacity: status.capacity.clone(),
                steps: status.steps.clone(),
                runners: status.runners.clone(),
            }),
            ..Report::of_run(lt, &status.run, status.load_starts_at.clone(), record)
        }
        .settled()
    }
}

/// The stages that ran, one after another from the load's second 0, each labelled with the level
/// it ramped from and to (`20→40 req/s`) or held (`40 req/s`).
fn stage_windows(status: &LoadTestStatus, model: LoadModel) -> Vec<StageWindow> {
    let unit = match model {
        LoadModel::Open => "req/s",
        LoadModel::Closed => "VUs",
    };
    let mut from = 0.0;
    let mut level = status.start_level.unwrap_or_default();
    status
        .stages
        .iter()
        .map(|stage| {
            let to = from + stage.duration.as_std().as_secs_f64();
            let label = if stage.target == level {
                format!("{level} {unit}")
            } else {
                format!("{level}→{} {unit}", stage.target)
            };
            let window = StageWindow { label, from_second: from, to_second: to };
            (from, level) = (to, stage.target);
            window
        })
        .collect()
}
