//! Kubernetes glue shared by every controller: the context, errors, status writes by
//! server-side apply, conditions and Events. Each kind's controller follows
//! dereference → validate → build (pure, in `domain`) → apply → update status.

pub mod autoscaling;
pub mod conditions;
pub mod loadtest;
pub mod podkill;
pub mod report;
pub mod runner_settings;
pub mod runs;
pub mod servicefault;
pub mod trial;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{Event as FinalizerEvent, finalizer},
    },
};
use serde::Serialize;

use crate::{
    api::{API_VERSION, Experiment},
    domain::{Note, guard::TargetGuard},
    metrics::Metrics,
};

/// The field manager of everything the operator writes.
pub const MANAGER: &str = "chaoslab-operator";
/// Finalizer of the kinds that act on the cluster.
pub const FINALIZER: &str = "chaoslab.dev/cleanup";
/// Set this annotation (any value but "false") to stop a run: faults are reverted, the verdict
/// is Aborted.
pub const ABORT_ANNOTATION: &str = "chaoslab.dev/abort";

/// What every reconcile gets.
pub struct Context {
    pub client: Client,
    /// For calls whose 429 is an answer, not congestion: an eviction refused by a
    /// PodDisruptionBudget is a 429, and kube's default retry policy would retry it for minutes.
    pub no_retry_client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub guard: TargetGuard,
    /// The image and ClusterRole of LoadTest runner pods.
    pub runner: runner_settings::RunnerSettings,
    /// The Drills this operator is conducting.
    pub trials: runs::Runs,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, guard: TargetGuard, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: MANAGER.into(), instance };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            no_retry_client: client.clone(),
            client,
            metrics,
            guard,
            runner: runner_settings::RunnerSettings {
                image: format!("chaoslab:{}", env!("CARGO_PKG_VERSION")),
                role: "chaoslab-runner".into(),
            },
            trials: runs::Runs::default(),
        }
    }

    /// Runner pods run `settings.image` under the ClusterRole `settings.role`.
    pub fn with_runner(mut self, settings: runner_settings::RunnerSettings) -> Self {
        self.runner = settings;
        self
    }

    /// Use `client` (built without kube's default retry policy) for calls whose 429 is final.
    pub fn with_no_retry_client(mut self, client: Client) -> Self {
        self.no_retry_client = client;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("{0} has no namespace")]
    NoNamespace(String),
    #[error("runner reports cannot be merged: {0}")]
    Reports(#[from] crate::load::protocol::ProtocolError),
    /// A pure build step refused what it was given: the step, and why.
    #[error("{step}: {message}")]
    Build { step: &'static str, message: String },
    #[error("ending the run's children: {0}")]
    Children(#[from] crate::trial::drive::WorldError),
}

impl Error {
    /// A bounded label for the errors metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_reason(),
                _ => "finalizer",
            },
            Error::NoNamespace(_) => "no_namespace",
            Error::Reports(_) => "report",
            Error::Children(_) => "children",
            Error::Build { .. } => "build",
        }
    }
}

/// Retry failed reconciles with a delay, and say so on the object: a Warning Event (repeats are
/// folded into one Event series by the recorder), a log line and the errors metric.
pub fn error_policy<K: Experiment>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(kind = K::KIND, name = %obj.name_any(), namespace = ?obj.namespace(), error = %err, "reconcile failed");
    ctx.metrics.reconcile_failed(K::KIND, err.metric_reason());
    let note = Note::warning("ReconcileError", format!("{err}; retrying in 5s"));
    // error_policy is synchronous; the Event is written in the background.
    tokio::spawn(async move { publish(&ctx, obj.as_ref(), &[note]).await });
    Action::requeue(std::time::Duration::from_secs(5))
}

/// Every kind's reconcile around its own work: the metrics timer, the namespace and its Api, and
/// the finalizer, which runs `apply` while the object lives and `cleanup` once it is deleted
/// (the finalizer is removed when `cleanup` succeeds).
pub async fn reconcile_with_finalizer<K, A, C>(
    obj: Arc<K>,
    ctx: &Context,
    apply: A,
    cleanup: C,
) -> Result<Action, Error>
where
    K: Experiment,
    A: AsyncFnOnce(Arc<K>, &Api<K>, &str) -> Result<Action, Error>,
    C: AsyncFnOnce(Arc<K>, &Api<K>, &str) -> Result<Action, Error>,
{
    let _timer = ctx.metrics.reconcile_started(K::KIND);
    let ns = namespace_of(obj.as_ref())?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let (on_api, in_ns) = (&api, ns.as_str());
    finalizer(&api, FINALIZER, obj, |event| async move {
        match event {
            FinalizerEvent::Apply(obj) => apply(obj, on_api, in_ns).await,
            FinalizerEvent::Cleanup(obj) => cleanup(obj, on_api, in_ns).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

pub fn namespace_of<K: Experiment>(obj: &K) -> Result<String, Error> {
    obj.namespace().ok_or_else(|| Error::NoNamespace(obj.name_any()))
}

/// Write a kind's whole status by server-side apply: the operator owns every status field, so
/// a field it leaves out is removed.
pub async fn write_status<K: Experiment>(api: &Api<K>, name: &str, status: &impl Serialize) -> Result<(), Error> {
    let body = serde_json::json!({ "apiVersion": API_VERSION, "kind": K::KIND, "status": status });
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(())
}

/// The labels of a namespace (empty when it cannot be read, so the guard refuses it).
pub async fn namespace_labels(
    client: &Client,
    name: &str,
) -> Result<std::collections::BTreeMap<String, String>, Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    Ok(api.get_opt(name).await?.map(|ns| ns.labels().clone()).unwrap_or_default())
}

/// Publish notes as Events on the object. An Event that cannot be written is logged, never
/// fatal: the status already says what happened.
pub async fn publish<K: Experiment>(ctx: &Context, obj: &K, notes: &[Note]) {
    let reference = obj.object_ref(&());
    for note in notes {
        let event = Event {
            type_: if note.warning { EventType::Warning } else { EventType::Normal },
            reason: note.reason.into(),
            note: Some(truncate(&note.message, 1000)),
            // The action keeps notes about different parts of the run (two faults, two pods) in
            // different Event series; the Events API allows 128 characters.
            action: match &note.about {
                Some(part) => truncate(&format!("{}:{part}", note.reason), 120),
                None => note.reason.into(),
            },
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(kind = K::KIND, name = %obj.name_any(), reason = note.reason, %error, "could not publish event");
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Whether the abort annotation asks to stop.
pub fn abort_requested<K: Resource>(obj: &K) -> bool {
    obj.meta().annotations.as_ref().and_then(|a| a.get(ABORT_ANNOTATION)).is_some_and(|v| v != "false")
}

/// Create `obj` unless it exists: a step retried after a crash finds its object already there.
pub async fn create_if_absent<K>(api: &Api<K>, obj: &K) -> Result<(), Error>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Delete `name` (its dependents in the background) unless it is already gone.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Time from `from` to `to`; zero when `to` is earlier.
pub fn elapsed(from: k8s_openapi::jiff::Timestamp, to: k8s_openapi::jiff::Timestamp) -> std::time::Duration {
    std::time::Duration::try_from(to.duration_since(from)).unwrap_or_default()
}
