//! The chart's demo app on the real API server: `demo.enabled=true` installs the lab's topology
//! (frontend → catalog → inventory) in its own opted-in namespace, and uninstalls it. kwok runs
//! the pods (no process); the services' behaviour is tested on loopback (tests/it/demo.rs).

use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{Namespace, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{Api, ResourceExt};

use crate::harness::{chart_installed, client, ok, repo, wait_for};

const RELEASE: &str = "lab";
const RELEASE_NS: &str = "e2e-lab-system";
const DEMO_NS: &str = "e2e-lab";

#[tokio::test]
async fn the_chart_installs_the_demo_topology_in_an_opted_in_namespace() {
    // The CRDs come with the suite's release; this second release adds the demo.
    chart_installed();
    let chart = repo("charts/chaoslab");
    ok(
        "helm",
        &[
            "upgrade",
            "--install",
            RELEASE,
            chart.to_str().unwrap_or_default(),
            "-n",
            RELEASE_NS,
            "--create-namespace",
            "--set",
            "demo.enabled=true",
            "--set",
            &format!("demo.namespace={DEMO_NS}"),
            "--set",
            "leaderElection.enabled=false",
            "--wait",
            "--timeout",
            "180s",
        ],
    );
    let client = client().await;
    let ns = Api::<Namespace>::all(client.clone()).get(DEMO_NS).await.expect("the demo namespace");
    assert_eq!(ns.labels().get("chaoslab.dev/chaos").map(String::as_str), Some("enabled"), "opted in to chaos");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), DEMO_NS);
    // The chart's image: `chaoslab:<appVersion>` (values.yaml leaves the tag empty).
    let chart_yaml = std::fs::read_to_string(repo("charts/chaoslab/Chart.yaml")).expect("Chart.yaml");
    let app_version = chart_yaml
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("appVersion in Chart.yaml");
    let image = format!("chaoslab:{app_version}");
    for (name, upstream) in [("frontend", Some("catalog")), ("catalog", Some("inventory")), ("inventory", None)] {
        let d = deployments.get(name).await.unwrap_or_else(|e| panic!("Deployment {name}: {e}"));
        let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        assert!(ready >= 1, "{name} has {ready} ready replicas (helm --wait waited for them)");
        let pod = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
        assert_eq!(pod.containers[0].image.as_deref(), Some(image.as_str()), "{name} runs the chaoslab image");
        let args = pod.containers[0].args.clone().unwrap_or_default().join(" ");
        assert!(args.starts_with(&format!("demo --name {name}")), "{args}");
        match upstream {
            Some(u) => assert!(args.contains(&format!("--upstream {u}=http://{u}:8080/")), "{args}"),
            None => assert!(!args.contains("--upstream"), "{args}"),
        }
        let security = pod.containers[0].security_context.as_ref().expect("container security context");
        assert_eq!(security.read_only_root_filesystem, Some(true));
        Api::<Service>::namespaced(client.clone(), DEMO_NS).get(name).await.expect("a Service per service");
        Api::<PodDisruptionBudget>::namespaced(client.clone(), DEMO_NS).get(name).await.expect("a PDB per service");
    }
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), DEMO_NS).get("frontend").await.expect("HPA");
    let spec = hpa.spec.expect("HPA spec");
    assert_eq!(spec.scale_target_ref.name, "frontend");
    let metric = spec.metrics.unwrap_or_default();
    assert_eq!(metric[0].resource.as_ref().map(|r| r.name.as_str()), Some("cpu"));

    ok("helm", &["uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout", "120s"]);
    wait_for("the demo Deployments to be gone", std::time::Duration::from_secs(60), || async {
        // A list that fails says nothing about what is left: only an answer of none counts.
        let left = deployments.list(&Default::default()).await.map(|l| l.items.len()).ok();
        (left == Some(0)).then_some(())
    })
    .await;
}
