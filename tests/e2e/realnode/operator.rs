//! The chart's operator pod force-deleted (`--grace-period=0 --force`) while a Drill holds a
//! fault on inventory: the Deployment's successor pod takes the Lease, reverts the fault (the
//! Service's spec exactly as before, the proxy and shadow Service gone) and ends the run
//! honestly: a run is not judged from part of its measurements.

use std::time::{Duration, Instant};

use chaoslab::api::{Drill, LoadTest, Phase, ServiceFault, Verdict};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kube::Api;
use serde_json::json;

use super::{DEMO, node, ready};
use crate::harness::{CHART_NS, create, finished, kubectl, run, wait_for};

fn operator_pods() -> Vec<String> {
    kubectl(&[
        "-n",
        CHART_NS,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=chaoslab",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

#[tokio::test]
async fn the_operator_pod_force_deleted_mid_drill_its_successor_reverts_and_ends_the_run() {
    let client = ready().await;
    let _ =
        run("kubectl", &["-n", DEMO, "delete", "drill", "rn-crash", "--ignore-not-found", "--wait", "--timeout=90s"]);
    let services: Api<Service> = Api::namespaced(client.clone(), DEMO);
    let before = services.get("inventory").await.expect("Service inventory");
    let api = create::<Drill>(
        &client,
        DEMO,
        "rn-crash",
        json!({
            "load": {"target": {"service": {"name": "frontend", "port": "http"}}, "model": "open", "rate": 10, "timeout": "5s"},
            "phases": {"baseline": "5s", "inject": "120s", "recover": "5s"},
            "faults": [{"name": "slow", "duration": "110s",
                        "serviceFault": {"service": "inventory", "faults": [{"type": "latency", "latency": {"delay": "50ms"}}]}}],
        }),
    )
    .await;
    let faults: Api<ServiceFault> = Api::namespaced(client.clone(), DEMO);
    wait_for("the Drill's fault to inject", Duration::from_secs(120), || async {
        faults.get_opt("rn-crash-fault-slow").await.ok()??.status?.injected_at.map(|_| ())
    })
    .await;
    let proxies: Api<Deployment> = Api::namespaced(client.clone(), DEMO);
    assert!(proxies.get_opt("inventory-chaoslab-proxy").await.expect("get").is_some(), "the proxy runs");
    let during = services.get("inventory").await.expect("Service");
    assert_ne!(
        during.spec.as_ref().and_then(|s| s.selector.clone()),
        before.spec.as_ref().and_then(|s| s.selector.clone())
    );

    let old: Vec<String> = operator_pods();
    assert_eq!(old.len(), 1, "{old:?}");
    let old = old[0].split(' ').next().unwrap_or_default().to_owned();
    let t = Instant::now();
    kubectl(&["-n", CHART_NS, "delete", "pod", &old, "--grace-period=0", "--force"]);

    // The successor: a new pod of the Deployment, Ready on the real node, holding the Lease.
    let successor = wait_for("the successor pod", Duration::from_secs(90), || async {
        operator_pods().into_iter().find_map(|l| {
            let mut f = l.split(' ');
            let (name, phase) = (f.next()?.to_owned(), f.next()?);
            (name != old && phase == "Running").then_some(name)
        })
    })
    .await;
    kubectl(&["-n", CHART_NS, "wait", "--for=condition=Ready", &format!("pod/{successor}"), "--timeout=60s"]);
    let ready_after = t.elapsed().as_secs_f64();
    let on = kubectl(&["-n", CHART_NS, "get", "pod", &successor, "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(on, node());

    let drill = finished(&api, "rn-crash", Duration::from_secs(120)).await;
    let ended_after = t.elapsed().as_secs_f64();
    let st = drill.status.expect("status");
    let message = st.run.message.clone().unwrap_or_default();
    eprintln!(
        "figure: successor {successor} Ready {ready_after:.1} s after the force delete; the Drill ended {ended_after:.1} s after it: {:?} {:?} {message}",
        st.run.phase, st.run.verdict
    );
    // Honest: not judged from part of its measurements, and saying why. (Force-deleted, the old
    // pod still gets SIGTERM and kubelet's minimum grace of 2 s: it is the old operator that
    // ends the run, and asks the fault to end by its abort annotation.)
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Failed), Some(Verdict::Error)), "{message}");
    assert!(message.contains("interrupted"), "{message}");
    // The successor leads once the old Lease has expired (15 s after its last renewal).
    let acquired = wait_for("the successor to hold the Lease", Duration::from_secs(60), || async {
        let out = kubectl(&[
            "-n",
            CHART_NS,
            "get",
            "lease",
            "chaoslab-operator",
            "-o",
            "jsonpath={.spec.holderIdentity} {.spec.acquireTime}",
        ]);
        let (holder, at) = out.split_once(' ')?;
        (holder == successor).then(|| at.to_owned())
    })
    .await;
    eprintln!(
        "figure: the successor holds the Lease from {acquired} ({:.1} s after the force delete)",
        t.elapsed().as_secs_f64()
    );

    // Reverted long before the fault's own end (110 s): the Service exactly as before, the proxy
    // and the shadow Service gone, the fault and the load ended.
    let sf = wait_for("the fault to end", Duration::from_secs(60), || async {
        let sf = faults.get("rn-crash-fault-slow").await.ok()?;
        sf.status.as_ref()?.run.phase.filter(|p| p.is_terminal())?;
        Some(sf)
    })
    .await;
    let sf_status = sf.status.expect("status");
    let sf_ended = sf_status.run.finished_at.as_ref().map(|t| t.0.to_string()).expect("finishedAt");
    eprintln!(
        "fault: {:?} {:?} {:?}, ended {sf_ended}",
        sf_status.run.phase, sf_status.run.verdict, sf_status.run.message
    );
    assert_eq!(sf_status.run.phase, Some(Phase::Aborted), "the fault was ended");
    // Reverted by the successor: after it took the Lease (both kept to the second or finer).
    assert!(
        super::seconds_between(&acquired, &sf_ended) > -1.0,
        "ended {sf_ended}, the successor leads from {acquired}"
    );
    let after = services.get("inventory").await.expect("Service");
    assert_eq!(
        serde_json::to_value(&after.spec).ok(),
        serde_json::to_value(&before.spec).ok(),
        "spec restored exactly"
    );
    assert_eq!(after.metadata.annotations, before.metadata.annotations, "no claim left");
    wait_for("the proxy and the shadow Service to go", Duration::from_secs(30), || async {
        let proxy = proxies.get_opt("inventory-chaoslab-proxy").await.ok()?;
        let shadow = services.get_opt("inventory-chaoslab-upstream").await.ok()?;
        (proxy.is_none() && shadow.is_none()).then_some(())
    })
    .await;
    let loads: Api<LoadTest> = Api::namespaced(client.clone(), DEMO);
    let load = wait_for("the load to end", Duration::from_secs(30), || async {
        loads.get("rn-crash-load").await.ok()?.status?.run.phase.filter(|p| p.is_terminal())
    })
    .await;
    eprintln!("figure: reverted and ended {:.1} s after the force delete; load {load:?}", t.elapsed().as_secs_f64());
    assert!(t.elapsed() < Duration::from_secs(100), "before the fault's own expiry");
}
