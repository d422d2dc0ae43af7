//! PodKill reconciles against a mocked API server (tower-test): the exact calls, in order, with
//! their bodies — finalizer patch, namespace and pod reads, the plan written by server-side
//! apply before the kill, the delete or eviction, the result, and the Events.

use std::sync::Arc;

use chaoslab::{
    api::PodKill,
    controller::{Context, podkill::reconcile},
    domain::guard::{OptInLabel, TargetGuard},
    metrics::Metrics,
};
use http::{Method, Request, Response};
use kube::{Client, client::Body};
use serde_json::{Value, json};

/// An assertion on a request's JSON body.
type BodyCheck = Box<dyn Fn(&Value) + Send>;

/// One expected request and the answer to give.
struct Call {
    method: Method,
    /// The path must start with this (query strings vary).
    path: &'static str,
    /// Checks on the request body (JSON), if any.
    check: Option<BodyCheck>,
    status: u16,
    answer: Value,
}

fn call(method: Method, path: &'static str, status: u16, answer: Value) -> Call {
    Call { method, path, check: None, status, answer }
}

impl Call {
    fn expect(mut self, check: impl Fn(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(check));
        self
    }
}

/// Serve `calls` in order and fail on anything else; returns the bodies seen, for inspection.
async fn serve(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    calls: Vec<Call>,
) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    for (i, c) in calls.into_iter().enumerate() {
        let (request, send) =
            handle.next_request().await.unwrap_or_else(|| panic!("call {i} ({} {}) never came", c.method, c.path));
        let path = request.uri().to_string();
        assert_eq!(request.method(), c.method, "call {i}: {path}");
        assert!(path.starts_with(c.path), "call {i}: expected {} {}, got {path}", c.method, c.path);
        let bytes = request.into_body().collect_bytes().await.expect("request body");
        let body: Value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        if let Some(check) = &c.check {
            check(&body);
        }
        seen.push((path, body));
        let response =
            Response::builder().status(c.status).body(Body::from(serde_json::to_vec(&c.answer).unwrap())).unwrap();
        send.send_response(response);
    }
    seen
}

fn context(client: Client) -> Arc<Context> {
    let guard = TargetGuard { opt_in: OptInLabel::default(), operator_namespace: Some("chaoslab-system".into()) };
    Arc::new(Context::new(client, Arc::new(Metrics::default()), guard, Some("chaoslab-0".into())))
}

fn podkill(spec: Value, finalizer: bool) -> PodKill {
    let mut metadata =
        json!({"name": "pk", "namespace": "lab", "uid": "pk-uid", "generation": 1, "resourceVersion": "1"});
    if finalizer {
        metadata["finalizers"] = json!(["chaoslab.dev/cleanup"]);
    }
    serde_json::from_value(
        json!({"apiVersion": "chaoslab.dev/v1alpha1", "kind": "PodKill", "metadata": metadata, "spec": spec}),
    )
    .unwrap()
}

fn namespace(opted_in: bool) -> Value {
    let labels = if opted_in { json!({"chaoslab.dev/chaos": "enabled"}) } else { json!({}) };
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab", "labels": labels}})
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "lab", "uid": format!("uid-{name}"), "creationTimestamp": "2026-11-25T00:00:00Z",
            "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "rs", "controller": true}]},
        "spec": {"nodeName": "kwok-0", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-25T00:00:01Z"}]}
    })
}

fn pod_list(names: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "5"}, "items": names.iter().map(|n| pod(n)).collect::<Vec<_>>()})
}

fn event_answer() -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "lab"}, "eventTime": "2026-11-25T00:00:00.000000Z"})
}

fn status_of(body: &Value) -> &Value {
    assert_eq!(body["apiVersion"], "chaoslab.dev/v1alpha1", "status is written by apply with the full type");
    assert_eq!(body["kind"], "PodKill");
    &body["status"]
}

const PK: &str = "/apis/chaoslab.dev/v1alpha1/namespaces/lab/podkills/pk";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/lab/events";

#[tokio::test]
async fn first_reconcile_adds_the_finalizer_and_nothing_else() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let pk = podkill(json!({"selector": {"matchLabels": {"app": "web"}}}), false);
    let answer = serde_json::to_value(podkill(json!({"selector": {"matchLabels": {"app": "web"}}}), true)).unwrap();
    let server = tokio::spawn(serve(
        handle,
        vec![call(Method::PATCH, PK, 200, answer).expect(|body| {
            let ops = body.as_array().expect("a JSON patch");
            assert!(ops.iter().any(|op| op["op"] == "add" && op["value"] == json!(["chaoslab.dev/cleanup"])), "{body}");
        })],
    ));
    reconcile(Arc::new(pk), context(client)).await.expect("reconcile");
    server.await.unwrap();
}

#[tokio::test]
async fn a_one_shot_delete_writes_the_plan_deletes_by_uid_records_the_kill_and_tells() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let pk = podkill(
        json!({"selector": {"matchLabels": {"app": "web"}}, "seed": 3, "mode": "one", "method": "delete", "recoveryDeadline": "30s"}),
        true,
    );
    let stored = serde_json::to_value(&pk).unwrap();
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, "/api/v1/namespaces/lab", 200, namespace(true)),
            call(Method::GET, "/api/v1/namespaces/lab/pods?&labelSelector=app%3Dweb", 200, pod_list(&["web-a", "web-b", "web-c"])),
            call(Method::PATCH, "/apis/chaoslab.dev/v1alpha1/namespaces/lab/podkills/pk/status?&force=true&fieldManager=chaoslab-operator", 200, stored.clone())
                .expect(|body| {
                    let st = status_of(body);
                    assert_eq!(st["phase"], "Running");
                    assert_eq!(st["seed"], 3);
                    assert_eq!(st["targets"].as_array().unwrap().len(), 1, "mode one plans one target");
                    assert_eq!(st["targets"][0]["action"], "Planned", "the plan is written before the kill");
                }),
            call(Method::DELETE, "/api/v1/namespaces/lab/pods/web-", 200, pod("web-x")).expect(|body| {
                assert!(body["preconditions"]["uid"].as_str().unwrap().starts_with("uid-web-"), "delete is bound to the planned pod's UID: {body}");
            }),
            call(Method::PATCH, "/apis/chaoslab.dev/v1alpha1/namespaces/lab/podkills/pk/status", 200, stored).expect(|body| {
                let st = status_of(body);
                let target = &st["targets"][0];
                assert_eq!(target["action"], "Killed");
                assert_eq!(target["recovery"], "Waiting");
                assert!(target["killedAt"].as_str().unwrap().contains('.'), "kill time has sub-second precision");
                assert_eq!(st["killed"], 1);
                assert!(st.get("verdict").is_none(), "no verdict while waiting for recovery");
                let accepted = st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Accepted").unwrap();
                assert_eq!(accepted["status"], "True");
            }),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| assert_eq!(e["reason"], "Started")),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| assert_eq!(e["reason"], "RoundStarted")),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| {
                assert_eq!(e["reason"], "Killed");
                assert_eq!(e["type"], "Normal");
                assert_eq!(e["regarding"]["name"], "pk");
            }),
        ],
    ));
    let action = reconcile(Arc::new(pk), context(client)).await.expect("reconcile");
    assert!(format!("{action:?}").contains("requeue_after: Some"), "waits for recovery with a requeue: {action:?}");
    let seen = server.await.unwrap();
    // The pod deleted is the one the plan named.
    let planned = seen[2].1["status"]["targets"][0]["pod"].as_str().unwrap().to_owned();
    assert!(seen[3].0.trim_end_matches('?').ends_with(&planned), "{} vs {planned}", seen[3].0);
}

#[tokio::test]
async fn an_eviction_refused_by_a_disruption_budget_is_recorded_not_retried() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let pk = podkill(json!({"selector": {"matchLabels": {"app": "web"}}, "seed": 1, "method": "evict"}), true);
    let stored = serde_json::to_value(&pk).unwrap();
    let refused = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 429, "reason": "TooManyRequests",
        "message": "Cannot evict pod as it would violate the pod's disruption budget."});
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, "/api/v1/namespaces/lab", 200, namespace(true)),
            call(Method::GET, "/api/v1/namespaces/lab/pods", 200, pod_list(&["web-a"])),
            call(Method::PATCH, "/apis/chaoslab.dev/v1alpha1/namespaces/lab/podkills/pk/status", 200, stored.clone()),
            call(Method::POST, "/api/v1/namespaces/lab/pods/web-a/eviction", 429, refused).expect(|body| {
                assert_eq!(body["apiVersion"], "policy/v1");
                assert_eq!(body["kind"], "Eviction");
                assert_eq!(body["deleteOptions"]["preconditions"]["uid"], "uid-web-a");
            }),
            // The run has its verdict: its report is written (server-side apply, owned by the
            // run) before the status that refers to it.
            call(Method::PATCH, "/api/v1/namespaces/lab/configmaps/pk-report", 200, json!({})).expect(|body| {
                assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "pk-uid");
                assert_eq!(body["metadata"]["labels"]["chaoslab.dev/report-of"], "PodKill");
                let report: Value = serde_json::from_str(body["data"]["report.json"].as_str().unwrap()).unwrap();
                assert_eq!(report["verdict"], "Inconclusive");
                assert_eq!(report["podKill"]["targets"][0]["action"], "Refused");
                assert!(body["data"].get("kills.svg").is_none(), "nothing killed, no bar to draw");
            }),
            call(Method::PATCH, "/apis/chaoslab.dev/v1alpha1/namespaces/lab/podkills/pk/status", 200, stored).expect(
                |body| {
                    let st = status_of(body);
                    assert_eq!(st["reportRef"]["name"], "pk-report");
                    assert_eq!(st["targets"][0]["action"], "Refused");
                    assert!(st["targets"][0]["reason"].as_str().unwrap().contains("disruption budget"));
                    assert_eq!(st["phase"], "Succeeded");
                    assert_eq!(st["verdict"], "Inconclusive", "nothing killed, nothing proven");
                    let finished =
                        st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Finished").unwrap();
                    assert_eq!(
                        (finished["status"].as_str(), finished["reason"].as_str()),
                        (Some("True"), Some("Inconclusive"))
                    );
                },
            ),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| assert_eq!(e["reason"], "Started")),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| assert_eq!(e["reason"], "RoundStarted")),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| {
                assert_eq!(e["reason"], "KillRefused");
                assert_eq!(e["type"], "Warning");
            }),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| assert_eq!(e["reason"], "Finished")),
        ],
    ));
    let action = reconcile(Arc::new(pk), context(client)).await.expect("reconcile");
    assert!(format!("{action:?}").contains("requeue_after: None"), "a finished run is not requeued: {action:?}");
    server.await.unwrap();
}

#[tokio::test]
async fn a_namespace_that_did_not_opt_in_is_refused_before_any_pod_is_touched() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let pk = podkill(json!({"selector": {"matchLabels": {"app": "web"}}}), true);
    let stored = serde_json::to_value(&pk).unwrap();
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, "/api/v1/namespaces/lab", 200, namespace(false)),
            call(Method::PATCH, "/apis/chaoslab.dev/v1alpha1/namespaces/lab/podkills/pk/status", 200, stored).expect(
                |body| {
                    let st = status_of(body);
                    assert_eq!(st["phase"], "Failed");
                    assert_eq!(st["verdict"], "Error");
                    assert!(
                        st["message"]
                            .as_str()
                            .unwrap()
                            .contains("kubectl label namespace lab chaoslab.dev/chaos=enabled")
                    );
                    let accepted =
                        st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Accepted").unwrap();
                    assert_eq!(
                        (accepted["status"].as_str(), accepted["reason"].as_str()),
                        (Some("False"), Some("NamespaceNotOptedIn"))
                    );
                    assert!(st.get("targets").is_none());
                },
            ),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| {
                assert_eq!(e["reason"], "NamespaceNotOptedIn");
                assert_eq!(e["type"], "Warning");
            }),
        ],
    ));
    reconcile(Arc::new(pk), context(client)).await.expect("reconcile");
    server.await.unwrap();
}

#[tokio::test]
async fn deleting_a_running_podkill_releases_the_finalizer_even_if_the_status_write_fails() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let mut pk = podkill(json!({"selector": {"matchLabels": {"app": "web"}}}), true);
    pk.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    pk.status = Some(serde_json::from_value(json!({"phase": "Running", "rounds": 1})).unwrap());
    let gone = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound", "message": "gone"});
    let stored = serde_json::to_value(&pk).unwrap();
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::PATCH, "/apis/chaoslab.dev/v1alpha1/namespaces/lab/podkills/pk/status", 404, gone)
                .expect(|body| assert_eq!(status_of(body)["phase"], "Aborted")),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| assert_eq!(e["reason"], "Aborted")),
            call(Method::PATCH, PK, 200, stored).expect(|body| {
                let ops = body.as_array().expect("a JSON patch");
                assert!(ops.iter().any(|op| op["op"] == "remove" && op["path"] == "/metadata/finalizers/0"), "{body}");
            }),
        ],
    ));
    reconcile(Arc::new(pk), context(client)).await.expect("cleanup never fails");
    server.await.unwrap();
}

#[tokio::test]
async fn a_kill_that_fails_midway_keeps_the_kills_already_done() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let pk = podkill(json!({"selector": {"matchLabels": {"app": "web"}}, "seed": 5, "mode": "all"}), true);
    let stored = serde_json::to_value(&pk).unwrap();
    let broken = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 500, "reason": "InternalError", "message": "etcd hiccup"});
    let server = tokio::spawn(serve(
        handle,
        vec![
            call(Method::GET, "/api/v1/namespaces/lab", 200, namespace(true)),
            call(Method::GET, "/api/v1/namespaces/lab/pods", 200, pod_list(&["web-a", "web-b"])),
            call(Method::PATCH, "/apis/chaoslab.dev/v1alpha1/namespaces/lab/podkills/pk/status", 200, stored.clone()),
            call(Method::DELETE, "/api/v1/namespaces/lab/pods/web-a", 200, pod("web-a")),
            call(Method::DELETE, "/api/v1/namespaces/lab/pods/web-b", 500, broken),
            call(Method::PATCH, "/apis/chaoslab.dev/v1alpha1/namespaces/lab/podkills/pk/status", 200, stored).expect(
                |body| {
                    let st = status_of(body);
                    assert_eq!(st["targets"][0]["action"], "Killed", "the done kill is recorded");
                    assert_eq!(st["targets"][1]["action"], "Planned", "the failed one stays planned for the retry");
                    assert_eq!(st["killed"], 1);
                },
            ),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| assert_eq!(e["reason"], "Started")),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| assert_eq!(e["reason"], "RoundStarted")),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| assert_eq!(e["reason"], "Killed")),
            call(Method::POST, EVENTS, 201, event_answer()).expect(|e| {
                assert_eq!(e["reason"], "ReconcileError");
                assert_eq!(e["type"], "Warning");
                assert!(e["note"].as_str().unwrap().contains("etcd hiccup"), "{e}");
            }),
        ],
    ));
    let ctx = context(client);
    let pk = Arc::new(pk);
    let err = reconcile(pk.clone(), ctx.clone()).await.expect_err("the 500 is returned for a retry");
    assert!(format!("{err:?}").contains("etcd hiccup"), "{err:?}");
    // The controller's error policy tells the object's readers too.
    let action = chaoslab::controller::error_policy(pk, &err, ctx);
    assert!(format!("{action:?}").contains("5s"), "{action:?}");
    server.await.unwrap();
}
