//! Pods on loopback: a Service of the lab as replicas (processes of this binary) behind a
//! balancer, deleted the way a PodKill deletes pods and replaced the way a ReplicaSet replaces
//! them, so the curriculum's pod-kill lessons run on a laptop too.
//!
//! The balancer stands for the Service and kube-proxy: it forwards each new connection to the
//! next Ready pod (connections are balanced, not requests, so a client's pooled keep-alive
//! connection stays with its pod). A deleted pod gets SIGTERM, then SIGKILL when its grace
//! period is over, and leaves the balancer [`ENDPOINT_PROPAGATION`] later, as its endpoint
//! leaves every node's rules in a cluster: a pod that exits at once has its new connections
//! refused until then, which is what a graceful shutdown's delay is for. Its replacement starts
//! at once and joins the balancer when its `/readyz` answers.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::Duration,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::Instant,
};

use super::{error::LabError, process::Process};
use crate::proxy::admin_client;

/// How long a replacement may take to answer `/readyz` once it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(50);
/// The pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long a deleted pod's address still gets new connections: kube-proxy applies endpoint
/// changes at most once per `--iptables-min-sync-period`, 1s by default.
pub const ENDPOINT_PROPAGATION: Duration = Duration::from_secs(1);

/// What every pod of a Service runs and how it is stopped.
#[derive(Clone, Debug)]
pub struct PodTemplate {
    /// The Service's name: pods are `<service>-1`, `<service>-2`, … in creation order.
    pub service: String,
    /// The pods' labels, which a PodKill's selector is matched against.
    pub labels: BTreeMap<String, String>,
    /// The `chaoslab demo` flags after `--name` and `--listen`.
    pub args: Vec<String>,
    pub replicas: usize,
    /// The pods' terminationGracePeriodSeconds: SIGTERM to SIGKILL when a kill gives none.
    pub termination_grace: Duration,
}

/// What one kill did, as far as it has got.
#[derive(Clone, Debug, PartialEq)]
pub struct Kill {
    pub pod: String,
    /// `SIGTERM` (a grace period) or `SIGKILL` (none).
    pub signal: &'static str,
    pub at: Instant,
    /// Set once the pod's process has exited: its code and when, after the kill.
    pub exit_code: Option<i32>,
    pub exited_after: Option<Duration>,
    /// The pod started in its place, and how long after the kill it was Ready.
    pub replacement: Option<String>,
    pub replacement_ready_after: Option<Duration>,
    /// Why the replacement never became Ready.
    pub replacement_error: Option<String>,
}

/// Why a kill was not done.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KillRefused {
    #[error("pod {0} is not running (deleted already?)")]
    NotRunning(String),
    #[error(
        "evicting {pod} is refused: the PodDisruptionBudget allows 1 pod of {service} unavailable and {unavailable} is not Ready yet"
    )]
    Budget { pod: String, service: String, unavailable: String },
}

/// A running pod (a pod joins the set only once it is Ready).
#[derive(Debug)]
struct Pod {
    name: String,
    addr: SocketAddr,
    process: Process,
}

#[derive(Debug, Default)]
struct State {
    pods: Vec<Pod>,
    created: u64,
    /// The balancer's round-robin position.
    turn: usize,
    kills: Vec<Kill>,
    /// Deleted pods being stopped and replacements being started: aborted (and so their
    /// processes killed) when the set stops.
    tasks: Vec<JoinHandle<()>>,
    /// The replacements not Ready yet, by name.
    starting: Vec<String>,
    /// Deleted pods' addresses and when they leave the balancer.
    leaving: Vec<(SocketAddr, Instant)>,
    /// The pods asked for: the template's count until the set is scaled.
    desired: usize,
}

/// One Service's pods and the balancer in front of them.
#[derive(Debug)]
pub struct ReplicaSet {
    exe: PathBuf,
    template: PodTemplate,
    addr: SocketAddr,
    state: Mutex<State>,
    balancer: JoinHandle<()>,
}

impl ReplicaSet {
    /// Starts the balancer and `template.replicas` pods, and waits until each is Ready.
    pub async fn start(exe: PathBuf, template: PodTemplate) -> Result<Arc<ReplicaSet>, LabError> {
        let listen = |source| LabError::Balancer { service: template.service.clone(), source };
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(listen)?;
        let addr = listener.local_addr().map_err(listen)?;
        let desired = template.replicas;
        let set = Arc::new_cyclic(|me: &Weak<ReplicaSet>| ReplicaSet {
            exe,
            template,
            addr,
            state: Mutex::new(State { desired, ..State::default() }),
            balancer: tokio::spawn(balance(listener, me.clone())),
        });
        for _ in 0..set.template.replicas {
            let name = set.next_name(&mut set.state());
            let pod = set.create(name).await?;
            set.state().pods.push(pod);
        }
        Ok(set)
    }

    /// Where the Service answers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn service(&self) -> &str {
        &self.template.service
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next pod's name, in creation order.
    fn next_name(&self, state: &mut State) -> String {
        state.created += 1;
        format!("{}-{}", self.template.service, state.created)
    }

    /// Starts pod `name` and waits until it is Ready.
    async fn create(&self, name: String) -> Result<Pod, LabError> {
        let mut args = vec!["--name", &self.template.service, "--listen", "127.0.0.1:0"];
        args.extend(self.template.args.iter().map(String::as_str));
        let (process, ready) = Process::spawn(&self.exe, &name, "demo", &args, "serving").await?;
        let addr: Option<SocketAddr> = ready.get("addr").and_then(|a| a.as_str()).and_then(|a| a.parse().ok());
        let Some(addr) = addr else { return Err(process.not_ready()) };
        let deadline = Instant::now() + READY_TIMEOUT;
        while admin_client::request(&addr.to_string(), http::Method::GET, "/readyz", None).await.is_err() {
            if Instant::now() > deadline {
                return Err(process.not_ready());
            }
            tokio::time::sleep(READY_POLL).await;
        }
        Ok(Pod { name, addr, process })
    }

    /// The running pods' names (a deleted pod is not running, even while it drains).
    pub fn pods(&self) -> Vec<String> {
        self.state().pods.iter().map(|p| p.name.clone()).collect()
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.template.labels
    }

    /// Deletes `pod` with `grace` (the template's when `None`; zero is SIGKILL at once) and
    /// starts its replacement. An eviction is refused, as a PodDisruptionBudget allowing one
    /// unavailable pod would, while an earlier replacement is not Ready. Returns the index of
    /// the kill's record.
    pub fn delete(self: &Arc<Self>, pod: &str, grace: Option<Duration>, evict: bool) -> Result<usize, KillRefused> {
        let mut state = self.state();
        if evict && let Some(unavailable) = state.starting.first() {
            return Err(KillRefused::Budget {
                pod: pod.into(),
                service: self.template.service.clone(),
                unavailable: unavailable.clone(),
            });
        }
        let index = state.pods.iter().position(|p| p.name == pod).ok_or_else(|| KillRefused::NotRunning(pod.into()))?;
        // No longer a running pod, but still an endpoint until the change has propagated.
        let deleted = state.pods.remove(index);
        let at = Instant::now();
        state.leaving.push((deleted.addr, at + ENDPOINT_PROPAGATION));
        let grace = grace.unwrap_or(self.template.termination_grace);
        let signal = if grace.is_zero() { "SIGKILL" } else { "SIGTERM" };
        let record = state.kills.len();
        state.kills.push(Kill {
            pod: pod.into(),
            signal,
            at,
            exit_code: None,
            exited_after: None,
            replacement: None,
            replacement_ready_after: None,
            replacement_error: None,
        });
        self.stop_pod(&mut state, deleted, grace, Some(record));
        // Unavailable from now until Ready: a second eviction in the same round is refused.
        self.start_pod(&mut state, Some(record));
        Ok(record)
    }

    /// Scales the set to `replicas` pods, as the HPA scales a Deployment, and reconciles it
    /// there when called again (the local HPA calls it every period): new pods start at once
    /// and join the balancer when Ready, and a pod that never became Ready is started anew; on
    /// the way down the newest Ready pods are deleted with the template's grace period (a
    /// graceful shutdown, nothing replaces them), never leaving fewer Ready than asked for while
    /// others are still starting: those are deleted once Ready, at the next call.
    pub fn scale(self: &Arc<Self>, replicas: usize) {
        let mut state = self.state();
        state.desired = replicas;
        let mut current = state.pods.len() + state.starting.len();
        while current < replicas {
            self.start_pod(&mut state, None);
            current += 1;
        }
        while current > replicas
            && state.pods.len() > replicas
            && let Some(newest) = state.pods.pop()
        {
            state.leaving.push((newest.addr, Instant::now() + ENDPOINT_PROPAGATION));
            self.stop_pod(&mut state, newest, self.template.termination_grace, None);
            current -= 1;
        }
    }

    /// The count asked for (the template's, or the last scale) and the Ready pods.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.state();
        (state.desired, state.pods.len())
    }

    /// The Ready pods' names and process ids, and how many pods are starting (not Ready yet).
    pub fn processes(&self) -> (Vec<(String, Option<u32>)>, usize) {
        let state = self.state();
        (state.pods.iter().map(|p| (p.name.clone(), p.process.id())).collect(), state.starting.len())
    }

    /// Stops `pod`: SIGTERM, then SIGKILL once `grace` is over (at once when it is zero),
    /// noting its exit in kill `record`.
    fn stop_pod(self: &Arc<Self>, state: &mut State, mut pod: Pod, grace: Duration, record: Option<usize>) {
        let at = Instant::now();
        let me = Arc::downgrade(self);
        let stopping = tokio::spawn(async move {
            let forced = grace.is_zero() || pod.process.terminate().is_err();
            let code = if forced {
                pod.process.kill();
                pod.process.exited().await
            } else {
                match tokio::time::timeout(grace, pod.process.exited()).await {
                    Ok(code) => code,
                    Err(_) => {
                        pod.process.kill();
                        pod.process.exited().await
                    }
                }
            };
            let (Some(set), Some(record)) = (me.upgrade(), record) else { return };
            if let Some(kill) = set.state().kills.get_mut(record) {
                kill.exit_code = code;
                kill.exited_after = Some(at.elapsed());
            }
        });
        state.tasks.retain(|t| !t.is_finished());
        state.tasks.push(stopping);
    }

    /// Starts a new pod, counted unavailable (`starting`) until it is Ready, then balanced to;
    /// as the replacement of kill `record`, noted there.
    fn start_pod(self: &Arc<Self>, state: &mut State, record: Option<usize>) {
        let name = self.next_name(state);
        state.starting.push(name.clone());
        let me = Arc::downgrade(self);
        let starting = tokio::spawn(async move {
            let Some(set) = me.upgrade() else { return };
            let created = set.create(name.clone()).await;
            let mut state = set.state();
            state.starting.retain(|n| *n != name);
            let kill = record.and_then(|r| state.kills.get(r).map(|k| (r, k.at)));
            match created {
                Ok(pod) => {
                    if let Some((r, at)) = kill {
                        state.kills[r].replacement = Some(pod.name.clone());
                        state.kills[r].replacement_ready_after = Some(at.elapsed());
                    }
                    state.pods.push(pod);
                }
                Err(e) => {
                    tracing::warn!(pod = %name, error = %e, "a new pod did not become Ready");
                    if let Some((r, _)) = kill {
                        state.kills[r].replacement_error = Some(e.to_string());
                    }
                }
            }
        });
        state.tasks.retain(|t| !t.is_finished());
        state.tasks.push(starting);
    }

    /// The record of kill `index` as it stands.
    pub fn kill(&self, index: usize) -> Option<Kill> {
        self.state().kills.get(index).cloned()
    }

    /// The next endpoint's address, round robin: the Ready pods and the deleted ones whose
    /// removal has not propagated yet.
    fn next_endpoint(&self) -> Option<SocketAddr> {
        let mut state = self.state();
        let now = Instant::now();
        state.leaving.retain(|(_, until)| *until > now);
        let endpoints: Vec<SocketAddr> =
            state.pods.iter().map(|p| p.addr).chain(state.leaving.iter().map(|(addr, _)| *addr)).collect();
        if endpoints.is_empty() {
            return None;
        }
        state.turn = state.turn.wrapping_add(1);
        Some(endpoints[state.turn % endpoints.len()])
    }

    /// The last lines of each running pod.
    pub fn logs(&self) -> String {
        let state = self.state();
        state.pods.iter().map(|p| format!("{}:\n{}", p.name, p.process.logs())).collect::<Vec<_>>().join("\n")
    }

    /// Stops the balancer, every pod and every pod still stopping or starting.
    pub async fn stop(&self) {
        self.balancer.abort();
        let (pods, tasks) = {
            let mut state = self.state();
            (std::mem::take(&mut state.pods), std::mem::take(&mut state.tasks))
        };
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        for mut pod in pods {
            pod.process.stop().await;
        }
    }
}

impl Drop for ReplicaSet {
    fn drop(&mut self) {
        self.balancer.abort();
        for task in &self.state().tasks {
            task.abort();
        }
    }
}

/// Forwards each accepted connection to the next Ready pod; with none, the connection is
/// closed at once, as a Service without endpoints refuses it.
async fn balance(listener: TcpListener, set: Weak<ReplicaSet>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            // Out of file descriptors, most likely: wait instead of spinning on the error.
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            continue;
        };
        let Some(endpoint) = set.upgrade().and_then(|s| s.next_endpoint()) else { continue };
        tokio::spawn(async move {
            if let Ok(mut pod) = TcpStream::connect(endpoint).await {
                let _ = client.set_nodelay(true);
                let _ = pod.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut pod).await;
            }
        });
    }
}

/// Which pod of which set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    pub set: usize,
    pub name: String,
}

/// Every Service's pods on loopback, for the local world's pod kills.
#[derive(Clone, Debug, Default)]
pub struct LocalPods {
    sets: Vec<Arc<ReplicaSet>>,
}

impl LocalPods {
    pub fn new(sets: Vec<Arc<ReplicaSet>>) -> LocalPods {
        LocalPods { sets }
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The pods of the Service `service`.
    pub fn set(&self, service: &str) -> Option<Arc<ReplicaSet>> {
        self.sets.iter().find(|s| s.service() == service).cloned()
    }

    /// The running pods whose labels `selector` matches, in name order.
    pub fn matching(&self, selector: &LabelSelector) -> Result<Vec<PodRef>, String> {
        let selector = Selector::try_from(selector.clone()).map_err(|e| format!("selector: {e}"))?;
        let mut pods: Vec<PodRef> = self
            .sets
            .iter()
            .enumerate()
            .filter(|(_, set)| selector.matches(set.labels()))
            .flat_map(|(i, set)| set.pods().into_iter().map(move |name| PodRef { set: i, name }))
            .collect();
        pods.sort();
        Ok(pods)
    }

    /// Deletes `pod`; the index of its record in its set.
    pub fn delete(&self, pod: &PodRef, grace: Option<Duration>, evict: bool) -> Result<usize, KillRefused> {
        let set = self.sets.get(pod.set).ok_or_else(|| KillRefused::NotRunning(pod.name.clone()))?;
        set.delete(&pod.name, grace, evict)
    }

    /// The record of a kill.
    pub fn kill(&self, set: usize, index: usize) -> Option<Kill> {
        self.sets.get(set)?.kill(index)
    }

    /// Each Service's running pods and their labels (`catalog ×2 (app=catalog)`).
    pub fn describe(&self) -> String {
        let sets: Vec<String> = self
            .sets
            .iter()
            .map(|s| {
                let labels: Vec<String> = s.labels().iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} ×{} ({})", s.service(), s.pods().len(), labels.join(","))
            })
            .collect();
        sets.join(", ")
    }
}
