//! The operator as a process: one controller per kind (per watched namespace), leader election
//! on a Lease, the probe and metrics port, and graceful shutdown.

pub mod server;

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::api::{apps::v1::Deployment, batch::v1::Job, core::v1::Pod};
use kube::{
    Api, Client, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller,
        controller::Action,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use crate::{
    api::{CircuitBreakerTrial, Drill, Experiment, LoadTest, PodKill, ServiceFault, trial::Judged},
    controller::{self, Context},
    domain::guard::{OptInLabel, TargetGuard},
    load::protocol::RUN_LABEL,
    metrics::{Metrics, figures::ExperimentFigures},
};

/// How the operator runs; filled from flags and environment by the binary.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub leader_election: bool,
    pub lease_name: String,
    /// The operator's own namespace: holds the Lease, never a chaos target.
    pub namespace: Option<String>,
    /// This replica's identity for leader election and Events.
    pub pod_name: Option<String>,
    pub opt_in: OptInLabel,
    /// Namespaces to watch; empty means all.
    pub watch_namespaces: Vec<String>,
    /// LoadTest runner pods: their image and ClusterRole.
    pub runner: controller::loadtest::build::RunnerSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no Kubernetes configuration found (is a kubeconfig or in-cluster service account available?)")]
    Config(#[source] kube::config::InferConfigError),
    #[error("cannot create a Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("cannot listen on {addr}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("leader election is on but the operator's namespace is unknown: set --namespace or POD_NAMESPACE")]
    NoLeaseNamespace,
    #[error("leader election failed")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("lost the leadership Lease; exiting so a fresh process can compete again")]
    LostLeadership,
}

type Shutdown = futures::future::Shared<BoxFuture<'static, ()>>;

/// Run until SIGTERM/SIGINT. Returns an error when leadership is lost, so the process restarts.
pub async fn run(config: Config) -> Result<(), OperatorError> {
    let kube_config = kube::Config::infer().await.map_err(OperatorError::Config)?;
    let client = Client::try_from(kube_config.clone()).map_err(OperatorError::Client)?;
    let mut no_retry = kube_config;
    no_retry.default_retry = false;
    let no_retry_client = Client::try_from(no_retry).map_err(OperatorError::Client)?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(server::Health::default());

    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| OperatorError::Listen { addr: config.listen_addr, source })?;
    let shutdown: Shutdown = chaoslab_dataplane::serve::shutdown_signal().boxed().shared();
    let app = server::router(metrics.clone(), health.clone());
    let server = tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(shutdown.clone()).into_future());
    tracing::info!(addr = %config.listen_addr, "serving /metrics, /healthz and /readyz");

    let (lost_tx, mut lost_rx) = watch::channel(false);
    let lease = if config.leader_election {
        let namespace = config.namespace.clone().ok_or(OperatorError::NoLeaseNamespace)?;
        let identity = config.pod_name.clone().unwrap_or_else(|| format!("chaoslab-{}", std::process::id()));
        let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await?;
        let (mut leading, task) = manager.watch().await;
        // A standby is healthy and ready: it only waits for the Lease.
        health.set_ready(true);
        tracing::info!(lease = %config.lease_name, %namespace, %identity, "waiting for leadership");
        loop {
            if *leading.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leading.changed() => if changed.is_err() { return Err(OperatorError::LostLeadership) },
                () = shutdown.clone() => { drop(leading); let _ = task.await; return Ok(()); }
            }
        }
        tracing::info!(%identity, "leading");
        let watcher_task = tokio::spawn(async move {
            while leading.changed().await.is_ok() {
                if !*leading.borrow() {
                    let _ = lost_tx.send(true);
                    return leading;
                }
            }
            let _ = lost_tx.send(true);
            leading
        });
        Some((watcher_task, task))
    } else {
        None
    };

    let guard = TargetGuard { opt_in: config.opt_in.clone(), operator_namespace: config.namespace.clone() };
    let ctx = Arc::new(
        Context::new(client.clone(), metrics.clone(), guard, config.pod_name.clone())
            .with_no_retry_client(no_retry_client)
            .with_runner(config.runner.clone()),
    );
    let stop: Shutdown = {
        let shutdown = shutdown.clone();
        let trials = ctx.trials.clone();
        async move {
            tokio::select! {
                () = shutdown => {},
                _ = lost_rx.wait_for(|lost| *lost) => {},
            }
            // Runs in progress revert their faults (through the controllers, still running)
            // and record why they stopped before the controllers go: a successor then finds
            // them ended, not interrupted.
            trials.stop_all(Duration::from_secs(30)).await;
        }
        .boxed()
        .shared()
    };

    let scopes: Vec<Option<String>> = if config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        config.watch_namespaces.iter().cloned().map(Some).collect()
    };
    let mut controllers: Vec<Pin<Box<dyn Future<Output = ()> + Send>>> = Vec::new();
    for scope in &scopes {
        controllers.push(podkill_controller(&client, scope.as_deref(), &ctx, stop.clone()));
        controllers.push(loadtest_controller(&client, scope.as_deref(), &ctx, stop.clone()));
        controllers.push(servicefault_controller(&client, scope.as_deref(), &ctx, stop.clone()));
        controllers.push(judged_controller(
            &client,
            scope.as_deref(),
            &ctx,
            stop.clone(),
            controller::trial::conducted::reconcile::<CircuitBreakerTrial>,
        ));
        controllers.push(judged_controller(
            &client,
            scope.as_deref(),
            &ctx,
            stop.clone(),
            controller::autoscaling::reconcile,
        ));
        controllers.push(judged_controller(
            &client,
            scope.as_deref(),
            &ctx,
            stop.clone(),
            controller::trial::conducted::reconcile::<Drill>,
        ));
    }
    health.set_ready(true);
    tracing::info!(namespaces = ?config.watch_namespaces, opt_in = %config.opt_in, "controllers running");
    futures::future::join_all(controllers).await;

    let lost = stop.peek().is_some() && shutdown.peek().is_none();
    health.set_ready(false);
    if let Some((watcher_task, lease_task)) = lease {
        watcher_task.abort();
        // Dropping the channel makes the lease task release the Lease, so a successor starts
        // at once instead of waiting for it to expire.
        let _ = watcher_task.await;
        let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if lost { Err(OperatorError::LostLeadership) } else { Ok(()) }
}

fn api_for<K: Experiment>(client: &Client, scope: Option<&str>) -> Api<K> {
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Exports `K`'s experiments from the controller's cache: counted by phase and verdict, and
/// their figures (`figures` says what `K` measured).
fn count_phases<K: Experiment>(metrics: &Metrics, store: Store<K>, figures: fn(&K) -> ExperimentFigures) {
    let cache = store.clone();
    metrics.add_figures_source(Box::new(move || cache.state().iter().map(|o| figures(o)).collect()));
    metrics.add_experiment_source(
        K::KIND,
        Box::new(move || {
            store
                .state()
                .iter()
                .map(|o| {
                    let run = o.run_status();
                    let phase = run.and_then(|r| r.phase).unwrap_or_default().as_str().to_owned();
                    let verdict = run.and_then(|r| r.verdict).map(|v| v.as_str().to_owned()).unwrap_or_default();
                    (phase, verdict)
                })
                .collect()
        }),
    );
}

fn podkill_controller(
    client: &Client,
    scope: Option<&str>,
    ctx: &Arc<Context>,
    stop: Shutdown,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let controller = Controller::new(api_for::<PodKill>(client, scope), watcher::Config::default().any_semantic());
    let store = controller.store();
    count_phases(&ctx.metrics, store.clone(), ExperimentFigures::of);
    // Only the namespace of a changed pod matters here, so watch pod metadata, not whole pods
    // (kube asks for metadata only for PartialObjectMeta): with thousands of pods that is the
    // difference in the operator's memory.
    let pods: Api<PartialObjectMeta<Pod>> = match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    controller
        .watches(pods, watcher::Config::default(), move |pod: PartialObjectMeta<Pod>| {
            let ns = pod.namespace();
            store
                .state()
                .into_iter()
                .filter(|pk| controller::podkill::selects_running_in(pk, ns.as_deref()))
                .map(|pk| ObjectRef::from_obj(pk.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stop)
        .run(controller::podkill::reconcile, controller::error_policy::<PodKill>, ctx.clone())
        .for_each(log_result::<PodKill>)
        .boxed()
}

fn loadtest_controller(
    client: &Client,
    scope: Option<&str>,
    ctx: &Arc<Context>,
    stop: Shutdown,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let controller = Controller::new(api_for::<LoadTest>(client, scope), watcher::Config::default().any_semantic());
    count_phases(&ctx.metrics, controller.store(), ExperimentFigures::of);
    let jobs: Api<Job> = match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // A runner Job that changes (a pod failed for good, the Job failed) is looked at at once;
    // reports are polled while the run lasts.
    controller
        .owns(jobs, watcher::Config::default().labels(RUN_LABEL))
        .graceful_shutdown_on(stop)
        .run(controller::loadtest::reconcile, controller::error_policy::<LoadTest>, ctx.clone())
        .for_each(log_result::<LoadTest>)
        .boxed()
}

fn servicefault_controller(
    client: &Client,
    scope: Option<&str>,
    ctx: &Arc<Context>,
    stop: Shutdown,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let controller = Controller::new(api_for::<ServiceFault>(client, scope), watcher::Config::default().any_semantic());
    count_phases(&ctx.metrics, controller.store(), ExperimentFigures::of);
    let deployments: Api<Deployment> = match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // The proxy Deployment's readiness moves a fault to its next step at once.
    controller
        .owns(deployments, watcher::Config::default().labels(controller::servicefault::build::PROXY_LABEL))
        .graceful_shutdown_on(stop)
        .run(controller::servicefault::reconcile, controller::error_policy::<ServiceFault>, ctx.clone())
        .for_each(log_result::<ServiceFault>)
        .boxed()
}

/// A controller of `K` that watches only `K` itself: the judged kinds, whose runs are
/// conducted by tasks that write their status.
fn judged_controller<K, F, Fut>(
    client: &Client,
    scope: Option<&str>,
    ctx: &Arc<Context>,
    stop: Shutdown,
    reconcile: F,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    K: Experiment + Judged,
    F: FnMut(Arc<K>, Arc<Context>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Action, controller::Error>> + Send + 'static,
{
    let controller = Controller::new(api_for::<K>(client, scope), watcher::Config::default().any_semantic());
    count_phases(&ctx.metrics, controller.store(), ExperimentFigures::judged);
    controller
        .graceful_shutdown_on(stop)
        .run(reconcile, controller::error_policy::<K>, ctx.clone())
        .for_each(log_result::<K>)
        .boxed()
}

async fn log_result<K: Experiment>(
    result: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<controller::Error, watcher::Error>>,
) {
    match result {
        Ok((obj, _)) => {
            tracing::debug!(kind = K::KIND, name = %obj.name, namespace = ?obj.namespace, "reconciled")
        }
        Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {} // logged by error_policy
        Err(error) => tracing::warn!(kind = K::KIND, %error, "controller error"),
    }
}
