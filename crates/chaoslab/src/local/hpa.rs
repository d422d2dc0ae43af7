//! A HorizontalPodAutoscaler on loopback: every sync period it reads the CPU time each Ready
//! pod's process used (from `/proc`, as metrics-server reads the kubelet's counters), turns it
//! into utilization of the pod's CPU request, and scales the lab's ReplicaSet with the HPA's
//! own algorithm and default behavior, so an AutoscalingCheck runs on a laptop as in a cluster.
//!
//! The algorithm is Kubernetes' (pkg/controller/podautoscaler): `desired = ceil(ratio × pods)`
//! where `ratio` is the average utilization over the target, left alone within a 10 % tolerance;
//! pods without a measurement yet count as 0 % when scaling up and 100 % when scaling down,
//! pods not Ready yet as 0 % when scaling up. The default behavior: no stabilization up, at most
//! doubling (or 4 pods more) per period; down, the highest recommendation of the last 5 minutes.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use tokio::{task::JoinHandle, time::Instant};

use super::pods::ReplicaSet;
use crate::{demo::topology::Autoscaling, trial::scaling::DEFAULT_SCALE_DOWN_STABILIZATION};

/// kube-controller-manager's `--horizontal-pod-autoscaler-sync-period` (and metrics-server's
/// default resolution): how often usage is measured and replicas decided.
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// `--horizontal-pod-autoscaler-tolerance`: a ratio this close to 1 changes nothing.
const TOLERANCE: f64 = 0.1;
/// The default scale-up policies: 100 % more, or 4 pods more, per period, whichever is more.
const SCALE_UP_PODS: u32 = 4;

/// What the HPA recommends for a Deployment of `current` replicas whose Ready pods used
/// `usage` millicores each (`None`: not measured yet) while `unready` pods are starting.
pub fn recommend(current: u32, usage: &[Option<f64>], unready: usize, hpa: &Autoscaling) -> u32 {
    let request = f64::from(hpa.cpu_request_millicores.max(1));
    let target = f64::from(hpa.target_cpu_utilization.max(1));
    // Utilization in whole percent, truncated as Kubernetes computes it, over the target.
    let ratio =
        |usage: &[f64]| (usage.iter().sum::<f64>() * 100.0 / (usage.len().max(1) as f64 * request)).floor() / target;
    let measured: Vec<f64> = usage.iter().flatten().copied().collect();
    if measured.is_empty() {
        return current;
    }
    let usage_ratio = ratio(&measured);
    let missing = usage.len() - measured.len();
    let scale_up_with_unready = unready > 0 && usage_ratio > 1.0;
    if !scale_up_with_unready && missing == 0 {
        if (usage_ratio - 1.0).abs() <= TOLERANCE {
            return current;
        }
        return ceil(usage_ratio * measured.len() as f64);
    }
    // Unknown pods are assumed to work against the change, so it is not overdone: idle when
    // scaling up, and when scaling down busy at the request or the target, whichever is more.
    let mut all = measured;
    if usage_ratio < 1.0 {
        all.extend(std::iter::repeat_n(request * target.max(100.0) / 100.0, missing));
    } else if usage_ratio > 1.0 {
        all.extend(std::iter::repeat_n(0.0, missing));
    }
    if scale_up_with_unready {
        all.extend(std::iter::repeat_n(0.0, unready));
    }
    let new_ratio = ratio(&all);
    let reversed = (usage_ratio < 1.0 && new_ratio > 1.0) || (usage_ratio > 1.0 && new_ratio < 1.0);
    if (new_ratio - 1.0).abs() <= TOLERANCE || reversed {
        return current;
    }
    let desired = ceil(new_ratio * all.len() as f64);
    if (new_ratio < 1.0 && desired > current) || (new_ratio > 1.0 && desired < current) {
        return current;
    }
    desired
}

fn ceil(x: f64) -> u32 {
    // Replica counts are small; the cast saturates on anything absurd.
    x.ceil().max(0.0) as u32
}

/// The HPA's default behavior: recommendations remembered over the scale-down stabilization
/// window, and the scale-up policy.
#[derive(Debug, Default)]
pub struct Behavior {
    recommendations: VecDeque<(Instant, u32)>,
}

impl Behavior {
    /// The replicas to set now, from the raw recommendation `raw` and the `current` count.
    pub fn decide(&mut self, now: Instant, raw: u32, current: u32, hpa: &Autoscaling) -> u32 {
        self.recommendations.push_back((now, raw));
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > DEFAULT_SCALE_DOWN_STABILIZATION)
        {
            self.recommendations.pop_front();
        }
        // Down only as far as the highest recommendation of the window allows.
        let highest = self.recommendations.iter().map(|(_, r)| *r).max().unwrap_or(raw);
        let stabilized = if raw < current { highest.min(current) } else { raw };
        let up_limit = current.saturating_mul(2).max(current + SCALE_UP_PODS);
        // Never below the minimum, then never above the maximum (no panic on odd settings).
        stabilized.min(up_limit).max(hpa.min_replicas).min(hpa.max_replicas)
    }
}

/// CPU time a process has used (user + system), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start at field 3, `state`.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Some(
        Duration::from_secs(ticks / per_second)
            + Duration::from_secs_f64((ticks % per_second) as f64 / per_second as f64),
    )
}

/// The local HPA of one ReplicaSet, running until dropped.
#[derive(Debug)]
pub struct LocalHpa(JoinHandle<()>);

impl LocalHpa {
    pub fn start(set: Arc<ReplicaSet>, hpa: Autoscaling) -> LocalHpa {
        LocalHpa(tokio::spawn(async move {
            let mut behavior = Behavior::default();
            let mut last: BTreeMap<String, (Instant, Duration)> = BTreeMap::new();
            let mut sync = tokio::time::interval(SYNC_PERIOD);
            sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                sync.tick().await;
                let now = Instant::now();
                let (pods, starting) = set.processes();
                let mut seen = BTreeMap::new();
                let usage: Vec<Option<f64>> = pods
                    .iter()
                    .map(|(name, pid)| {
                        let used = pid.and_then(cpu_time)?;
                        seen.insert(name.clone(), (now, used));
                        let (then, before) = last.get(name)?;
                        let elapsed = now.duration_since(*then).as_secs_f64();
                        (elapsed > 0.0).then(|| used.saturating_sub(*before).as_secs_f64() * 1000.0 / elapsed)
                    })
                    .collect();
                last = seen;
                let current = u32::try_from(set.counts().0).unwrap_or(u32::MAX);
                let raw = recommend(current, &usage, starting, &hpa);
                let decided = behavior.decide(now, raw, current, &hpa);
                let millicores: Vec<String> =
                    usage.iter().map(|u| u.map_or_else(|| "?".to_owned(), |u| format!("{u:.0}m"))).collect();
                tracing::info!(service = %set.service(), current, raw, decided, usage = %millicores.join(" "), "local HPA");
                // Every period, changed or not: the set also reconciles its pods to the count.
                set.scale(decided as usize);
            }
        }))
    }
}

impl Drop for LocalHpa {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HPA: Autoscaling =
        Autoscaling { min_replicas: 1, max_replicas: 4, target_cpu_utilization: 60, cpu_request_millicores: 100 };

    #[test]
    fn the_ratio_of_utilization_to_target_sets_the_replicas_within_a_tolerance() {
        // One pod at 150m is 150 % of its request: 2.5 × the 60 % target, so 3 pods.
        assert_eq!(recommend(1, &[Some(150.0)], 0, &HPA), 3);
        // Within 10 % of the target: nothing changes.
        assert_eq!(recommend(2, &[Some(64.0), Some(62.0)], 0, &HPA), 2);
        // Idle: one pod is enough (the behavior clamps it to the minimum).
        assert_eq!(recommend(3, &[Some(1.0), Some(1.0), Some(2.0)], 0, &HPA), 1);
        assert_eq!(recommend(2, &[None, None], 0, &HPA), 2, "nothing measured: no decision");
    }

    #[test]
    fn unknown_pods_count_against_the_change() {
        // Scaling up with a pod starting: it counts as idle, 120 % over two pods is 1 × 60 %.
        assert_eq!(recommend(2, &[Some(120.0)], 1, &HPA), 2);
        // A pod not measured yet counts as idle when scaling up…
        assert_eq!(recommend(2, &[Some(240.0), None], 0, &HPA), 4);
        // …and as fully busy when scaling down, so the count falls less far.
        assert_eq!(recommend(3, &[Some(6.0), Some(6.0), None], 0, &HPA), 2);
    }

    #[test]
    fn the_default_behavior_scales_up_at_once_and_down_after_five_minutes() {
        let mut behavior = Behavior::default();
        let t0 = Instant::now();
        assert_eq!(behavior.decide(t0, 9, 1, &HPA), 4, "at most maxReplicas");
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(behavior.decide(at(15), 1, 4, &HPA), 4, "the 5 minutes remember 9");
        assert_eq!(behavior.decide(at(299), 1, 4, &HPA), 4);
        assert_eq!(behavior.decide(at(301), 1, 4, &HPA), 1, "the window has passed");
        let mut up = Behavior::default();
        assert_eq!(up.decide(at(0), 40, 1, &Autoscaling { max_replicas: 100, ..HPA }), 5, "1 + 4 pods per period");
        assert_eq!(up.decide(at(15), 40, 10, &Autoscaling { max_replicas: 100, ..HPA }), 20, "doubling");
    }

    #[test]
    fn this_process_has_used_cpu_time() {
        let mut spin = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            spin = spin.wrapping_add(1);
        }
        let used = cpu_time(std::process::id()).expect("/proc/self/stat is readable");
        assert!(used >= Duration::from_millis(20), "{used:?} after spinning {spin} times");
    }
}
