//! The autoscaling pipeline the AutoscalingCheck kind will rely on: kwok serves per-pod CPU
//! usage from an annotation, metrics-server scrapes it, and the HPA really scales.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

use crate::harness::{apply, kubectl, lab, wait_for};

#[tokio::test]
async fn an_hpa_scales_a_kwok_deployment_up_when_cpu_usage_rises() {
    let ns = "e2e-hpa";
    let client = lab(ns, true, "busy", 1).await;
    apply(&format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: busy, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: busy}}\n  minReplicas: 1\n  maxReplicas: 4\n  metrics:\n  - type: Resource\n    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}\n"
    ));
    // 300m of a 100m request is 300 % utilisation: the HPA should want more replicas.
    kubectl(&[
        "-n",
        ns,
        "patch",
        "deploy",
        "busy",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"metadata":{"annotations":{"kwok.x-k8s.io/usage-cpu":"300m"}}}}}"#,
    ]);
    kubectl(&["-n", ns, "rollout", "status", "deploy/busy", "--timeout=120s"]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let replicas = wait_for("the HPA to scale busy up", Duration::from_secs(180), || async {
        let d = deployments.get("busy").await.ok()?;
        let r = d.spec?.replicas?;
        (r > 1).then_some(r)
    })
    .await;
    assert!(replicas > 1);
    let metrics = kubectl(&["-n", ns, "get", "--raw", &format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods")]);
    assert!(metrics.contains("\"cpu\""), "pod metrics are served: {metrics}");
    let hpa = kubectl(&[
        "-n",
        ns,
        "get",
        "hpa",
        "busy",
        "-o",
        "jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}",
    ]);
    assert!(hpa.trim().parse::<u32>().is_ok_and(|u| u > 50), "HPA sees utilisation {hpa}");
}
