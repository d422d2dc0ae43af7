//! AutoscalingCheck on the real node: lesson 13 from its file against the frontend's HPA,
//! which acts on real CPU (metrics-server reading the real kubelet). The suite sets the HPA's
//! scale-down stabilization to 15 s (`demo.services.frontend.hpa.scaleDownStabilizationSeconds`)
//! so "and back" takes seconds, not Kubernetes' default 5 minutes.

use std::time::Duration;

use chaoslab::api::{AutoscalingCheck, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

use super::{DEMO, chaoslab_run, expected_verdict, ready};
use crate::harness::{kubectl, wait_for};

const LESSON: &str = "examples/drills/13-autoscaling.yaml";

#[tokio::test]
async fn lesson_13_scales_the_frontend_up_on_real_cpu_and_back() {
    let client = ready().await;
    assert_eq!(expected_verdict(LESSON), "Pass");
    let window = kubectl(&[
        "-n",
        DEMO,
        "get",
        "hpa",
        "frontend",
        "-o",
        "jsonpath={.spec.behavior.scaleDown.stabilizationWindowSeconds}",
    ]);
    assert_eq!(window, "15", "the suite's scale-down stabilization");
    // From one replica (an earlier check may have scaled it up).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), DEMO);
    wait_for("the frontend at 1 ready replica", Duration::from_secs(120), || async {
        let d = deployments.get("frontend").await.ok()?;
        let (want, ready) = (d.spec?.replicas?, d.status?.ready_replicas.unwrap_or(0));
        (want == 1 && ready == 1).then_some(())
    })
    .await;

    let (code, report) = chaoslab_run(LESSON, "12m");
    let api: Api<AutoscalingCheck> = Api::namespaced(client, DEMO);
    let st = api.get("drill-13-autoscaling").await.expect("the check").status.expect("status");
    for e in &st.judgement.expectations {
        eprintln!("  {} observed {:?} threshold {:?} passed {}", e.expression, e.observed, e.threshold, e.passed);
    }
    let timeline: Vec<(i32, i32)> = st.timeline.iter().map(|s| (s.desired, s.ready)).collect();
    eprintln!(
        "figure: lesson 13 peak {:?} replicas, first scale-up {:?}, peak {:?}, back to 1 {:?} after the load, flaps {:?}; timeline {timeline:?}",
        st.peak_replicas, st.time_to_first_scale_up, st.time_to_peak, st.time_to_scale_down, st.flaps
    );
    assert_eq!(report["verdict"], "Pass", "{:?}", st.run.message);
    assert_eq!((code, st.run.phase), (0, Some(Phase::Succeeded)));
    // 1 → at least 2 on real CPU, and back to 1.
    assert_eq!(timeline.first().map(|t| t.0), Some(1), "from one replica");
    let peak = st.peak_replicas.expect("peak");
    assert!(peak >= 2, "peak {peak}");
    assert!(st.time_to_first_scale_up.is_some() && st.time_to_scale_down.is_some(), "up and back");
    // The check ends once the HPA wants the minimum again (the pods then take their graceful
    // shutdown to go).
    assert_eq!(timeline.last().map(|t| t.0), Some(1), "back to one replica: {timeline:?}");
    assert!(st.judgement.expectations.iter().all(|e| e.passed), "{:?}", st.judgement.expectations);
}
