//! The ServiceFault controller: puts chaoslab's proxy in front of a Service for a bounded time
//! and always gives the Service back exactly.
//!
//! Lifecycle (each step is written to status before the next is taken, and the target Service
//! carries the claim and its original selector, so a restarted operator finishes the job):
//! Pending → Claimed (annotations on the Service; a second fault is refused) → ProxyCreated
//! (shadow Service with the original selector, proxy Deployment) → ProxyReady → Switched (the
//! Service selects the proxy pods) → Injecting (its endpoints are the proxy's only) → at the end
//! of `duration`, on abort or on deletion: Reverted (original selector, claim removed) → Cleaned
//! (proxy and shadow Service deleted) → Succeeded with Pass (injected and reverted) or
//! Inconclusive (no traffic crossed the proxy).

pub mod admin;
pub mod build;

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Pod, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::controller::Action,
};

use self::build::{Claim, READY_BUDGET};
use super::{
    Context, Error, MANAGER, abort_requested, conditions, create_if_absent, delete_if_present, elapsed,
    namespace_labels, publish, reconcile_with_finalizer, report, write_status,
};
use crate::{
    api::{
        Phase, ServiceFault, Verdict,
        common::human_duration,
        fault::{FaultStep, ServiceFaultStatus},
    },
    domain::{Note, spec_check::SpecCheck},
    report::Report,
};

/// How often a running fault is looked at: the proxy's figures are refreshed this often.
const POLL: Duration = Duration::from_secs(5);
/// While steps follow each other quickly (proxy start, endpoint switch).
const STEP_POLL: Duration = Duration::from_secs(1);
/// At the switch-off, how long the Service's endpoints may take to leave the proxy pods before
/// the proxy is deleted anyway.
const LEAVE_BUDGET: Duration = Duration::from_secs(10);
/// Then how long the proxy keeps serving, so kube-proxy on every node has followed the
/// endpoints (its rules are rewritten at most once a second) before the proxy stops accepting.
const LINGER: Duration = Duration::from_secs(2);

pub const CLAIMED: &str = "Claimed";
pub const PROXY_CREATED: &str = "ProxyCreated";
pub const PROXY_READY: &str = "ProxyReady";
pub const SWITCHED: &str = "Switched";
pub const INJECTING: &str = "Injecting";
pub const REVERTED: &str = "Reverted";
pub const CLEANED: &str = "Cleaned";
pub const DRY_RUN: &str = "DryRun";

pub async fn reconcile(sf: Arc<ServiceFault>, ctx: Arc<Context>) -> Result<Action, Error> {
    reconcile_with_finalizer(
        sf,
        &ctx,
        async |sf: Arc<ServiceFault>, api: &Api<ServiceFault>, ns: &str| apply(&sf, &ctx, api, ns).await,
        async |sf: Arc<ServiceFault>, _api: &Api<ServiceFault>, ns: &str| cleanup(&sf, &ctx, ns).await,
    )
    .await
}

/// A deleted ServiceFault gives the Service back and removes the proxy, whatever its phase. A
/// Service deleted meanwhile never blocks this.
async fn cleanup(sf: &ServiceFault, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let service = services(ctx, ns).get_opt(&sf.spec.injection.service).await?;
    if let Some(service) = service {
        release(ctx, ns, sf, &service).await?;
    }
    remove_proxy(ctx, ns, sf).await?;
    Ok(Action::await_change())
}

fn services(ctx: &Context, ns: &str) -> Api<Service> {
    Api::namespaced(ctx.client.clone(), ns)
}

async fn apply(sf: &ServiceFault, ctx: &Context, api: &Api<ServiceFault>, ns: &str) -> Result<Action, Error> {
    let now = Timestamp::now();
    let st = sf.status.clone().unwrap_or_default();
    let phase = st.run.phase.unwrap_or_default();
    if phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let labels = namespace_labels(&ctx.client, ns).await?;
    let checked = ctx
        .guard
        .check(ns, &labels)
        .map_err(|r| (r.reason(), r.to_string()))
        .and_then(|()| sf.check_spec().map_err(|m| ("InvalidSpec", m)));
    if let Err((reason, message)) = checked {
        if phase == Phase::Running {
            return finish(sf, ctx, api, ns, st, Ending::Refused(reason, message), now).await;
        }
        return refuse(sf, ctx, api, st, reason, message, now).await;
    }
    if phase == Phase::Pending {
        return start(sf, ctx, api, ns, st, now).await;
    }
    follow(sf, ctx, api, ns, st, now).await
}

/// Pending → Running: check the Service, claim it, create the shadow Service and the proxy.
async fn start(
    sf: &ServiceFault,
    ctx: &Context,
    api: &Api<ServiceFault>,
    ns: &str,
    mut st: ServiceFaultStatus,
    now: Timestamp,
) -> Result<Action, Error> {
    let name = &sf.spec.injection.service;
    let Some(service) = services(ctx, ns).get_opt(name).await? else {
        let message = format!("spec.service: Service {name:?} does not exist in namespace {ns}");
        return refuse(sf, ctx, api, st, "TargetNotFound", message, now).await;
    };
    let routes = match build::plan_routes(&service, &sf.spec.injection.ports) {
        Ok(routes) => routes,
        Err(message) => return refuse(sf, ctx, api, st, "InvalidTarget", message, now).await,
    };
    let uid = sf.uid().unwrap_or_default();
    let claim = build::claim_state(&service, &uid);
    if let Claim::Other(holder) = &claim {
        let message = format!(
            "Service {name:?} already has a fault in front of it ({holder}); one fault per Service at a time: wait for it to end or delete it"
        );
        return refuse(sf, ctx, api, st, "FaultConflict", message, now).await;
    }
    let original = match build::original_selector(&service) {
        Ok(selector) => selector,
        Err(message) => return refuse(sf, ctx, api, st, "InvalidTarget", message, now).await,
    };
    st.routes = build::route_records(&routes, ns, name);
    st.original_selector = original.clone();
    let generation = sf.meta().generation;
    let accepted = "spec valid, namespace opted in, Service free";
    conditions::set(&mut st.run.conditions, conditions::ACCEPTED, true, "Accepted", accepted, generation, now);
    st.run.started_at = Some(Time(now));

    if sf.spec.dry_run {
        let faulted: Vec<&str> = st.routes.iter().filter(|r| r.faulted).map(|r| r.port.as_str()).collect();
        let message = format!(
            "dry run: would put {} proxy pod(s) in front of Service {name:?} (faults on port(s) {}) for {}; nothing was changed, so nothing was proven",
            sf.spec.injection.proxy.replicas,
            faulted.join(", "),
            sf.spec.duration
        );
        step(&mut st, DRY_RUN, &message, now);
        st.run.phase = Some(Phase::Succeeded);
        st.run.verdict = Some(Verdict::Inconclusive);
        st.run.message = Some(message.clone());
        st.run.finished_at = Some(Time(now));
        conditions::refresh(&mut st.run, generation, now);
        st.run.report_ref = report::file(ctx, sf, &Report::of_service_fault(sf, &st)).await;
        write_status(api, &sf.name_any(), &st).await?;
        publish(ctx, sf, &[Note::normal("DryRun", message)]).await;
        return Ok(Action::await_change());
    }

    if claim == Claim::Free {
        let patch = build::claim_patch(sf, &service)
            .map_err(|message| Error::Build { step: "claiming the Service", message })?;
        match services(ctx, ns).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            // Someone changed the Service between our read and the claim: look again.
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::requeue(STEP_POLL)),
            Err(e) => return Err(e.into()),
        }
    }
    let expires = now + signed(sf.spec.duration.as_std() + READY_BUDGET);
    st.proxy_expires_at = Some(Time(expires));
    st.run.phase = Some(Phase::Running);
    let message = format!(
        "claimed Service {name:?}: its selector {} is kept in annotation {}",
        show(&original),
        build::SELECTOR_ANNOTATION
    );
    step(&mut st, CLAIMED, &message, now);
    st.run.message = Some("starting the proxy".into());
    conditions::refresh(&mut st.run, generation, now);
    write_status(api, &sf.name_any(), &st).await?;
    create_proxy(sf, ctx, api, ns, st, &service, Timestamp::now()).await
}

/// Create the shadow Service and the proxy Deployment (idempotent: a retry finds them).
async fn create_proxy(
    sf: &ServiceFault,
    ctx: &Context,
    api: &Api<ServiceFault>,
    ns: &str,
    mut st: ServiceFaultStatus,
    service: &Service,
    now: Timestamp,
) -> Result<Action, Error> {
    let expires = st.proxy_expires_at.as_ref().map_or(now, |t| t.0);
    let name = &sf.spec.injection.service;
    let built = build::plan_routes(service, &sf.spec.injection.ports).and_then(|routes| {
        let shadow = build::shadow_service(sf, service, &st.original_selector)?;
        let proxy = build::proxy_deployment(sf, &routes, &ctx.runner.image, expires)?;
        Ok((shadow, proxy))
    });
    let (shadow, proxy) = match built {
        Ok(objects) => objects,
        Err(message) => return finish(sf, ctx, api, ns, st, Ending::Refused("InvalidTarget", message), now).await,
    };
    create_if_absent(&services(ctx, ns), &shadow).await?;
    create_if_absent(&Api::<Deployment>::namespaced(ctx.client.clone(), ns), &proxy).await?;
    let message = format!(
        "created shadow Service {} (the original selector) and proxy Deployment {} ({} replica(s)); the proxy stops injecting on its own at {expires:.0}",
        build::shadow_name(name),
        build::proxy_name(name),
        sf.spec.injection.proxy.replicas
    );
    step(&mut st, PROXY_CREATED, &message, now);
    st.run.message = Some("waiting for the proxy to be Ready".into());
    write_status(api, &sf.name_any(), &st).await?;
    publish(ctx, sf, &[Note::normal("ProxyCreated", message)]).await;
    Ok(Action::requeue(STEP_POLL))
}

/// Running: wait for the proxy, switch the Service, wait for its endpoints, follow the proxy's
/// figures, and revert at the end.
async fn follow(
    sf: &ServiceFault,
    ctx: &Context,
    api: &Api<ServiceFault>,
    ns: &str,
    mut st: ServiceFaultStatus,
    now: Timestamp,
) -> Result<Action, Error> {
    let name = &sf.spec.injection.service;
    if abort_requested(sf) {
        return finish(sf, ctx, api, ns, st, Ending::Aborted, now).await;
    }
    let Some(service) = services(ctx, ns).get_opt(name).await? else {
        return finish(sf, ctx, api, ns, st, Ending::ServiceGone, now).await;
    };
    let uid = sf.uid().unwrap_or_default();
    if build::claim_state(&service, &uid) != Claim::Ours {
        return finish(sf, ctx, api, ns, st, Ending::ServiceGone, now).await;
    }
    if step_at(&st, PROXY_CREATED).is_none() {
        return create_proxy(sf, ctx, api, ns, st, &service, now).await;
    }
    let Some(switched_at) = step_at(&st, SWITCHED) else {
        let deployment =
            Api::<Deployment>::namespaced(ctx.client.clone(), ns).get_opt(&build::proxy_name(name)).await?;
        if deployment.as_ref().is_some_and(build::proxy_ready) {
            if step_at(&st, PROXY_READY).is_none() {
                step(&mut st, PROXY_READY, "every proxy pod is Ready", now);
            }
            return switch(sf, ctx, api, ns, st, &service, now).await;
        }
        let created = step_at(&st, PROXY_CREATED).unwrap_or(now);
        if elapsed(created, now) > READY_BUDGET {
            let pods = proxy_pods(ctx, ns, &uid).await?;
            return finish(sf, ctx, api, ns, st, Ending::ProxyNotReady(describe_pods(&pods)), now).await;
        }
        return Ok(Action::requeue(STEP_POLL));
    };

    if st.injected_at.is_none() {
        let pods = proxy_pods(ctx, ns, &uid).await?;
        let slices = Api::<EndpointSlice>::namespaced(ctx.client.clone(), ns)
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
            .await?;
        if build::endpoints_switched(&slices.items, &pods) {
            st.injected_at = Some(Time(now));
            let lag = elapsed(switched_at, now);
            let message = format!(
                "Service {name:?}'s endpoints are the proxy's {} pod(s) only ({} after the switch): injection began",
                pods.len(),
                human_duration(lag)
            );
            step(&mut st, INJECTING, &message, now);
            st.run.message = Some(format!("injecting for {}", sf.spec.duration));
            write_status(api, &sf.name_any(), &st).await?;
            publish(ctx, sf, &[Note::normal("Injecting", message)]).await;
        }
    }
    let end = fault_end(sf, &st, switched_at);
    if now >= end {
        return finish(sf, ctx, api, ns, st, Ending::Expired, now).await;
    }
    let stats = admin::read_stats(ctx, ns, &uid).await?;
    if let Some(stats) = stats.summed {
        st.proxy = Some(build::latest(st.proxy.as_ref(), stats));
    }
    if sf.status.as_ref() != Some(&st) {
        write_status(api, &sf.name_any(), &st).await?;
    }
    let left = elapsed(now, end);
    Ok(Action::requeue(if st.injected_at.is_none() { STEP_POLL } else { POLL.min(left) }))
}

/// When the fault ends: `duration` after injection began (or after the switch, while the
/// endpoints have not been seen to follow), and never after the proxy's own expiry.
fn fault_end(sf: &ServiceFault, st: &ServiceFaultStatus, switched_at: Timestamp) -> Timestamp {
    let began = st.injected_at.as_ref().map_or(switched_at, |t| t.0);
    let planned = began + signed(sf.spec.duration.as_std());
    match st.proxy_expires_at.as_ref() {
        Some(expiry) if expiry.0 < planned => expiry.0,
        _ => planned,
    }
}

/// Point the Service at the proxy pods.
async fn switch(
    sf: &ServiceFault,
    ctx: &Context,
    api: &Api<ServiceFault>,
    ns: &str,
    mut st: ServiceFaultStatus,
    service: &Service,
    now: Timestamp,
) -> Result<Action, Error> {
    let name = &sf.spec.injection.service;
    let uid = sf.uid().unwrap_or_default();
    let mut patch = build::selector_patch(&build::selector_of(service), &build::proxy_selector(&uid));
    // On the version read: a change made meanwhile is looked at again, not overwritten.
    patch["metadata"] = serde_json::json!({ "resourceVersion": service.metadata.resource_version });
    match services(ctx, ns).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::requeue(STEP_POLL)),
        Err(e) => return Err(e.into()),
    }
    let message = format!("Service {name:?} now selects the proxy pods ({}={uid})", build::PROXY_LABEL);
    step(&mut st, SWITCHED, &message, now);
    st.run.message = Some("waiting for the Service's endpoints to follow the switch".into());
    write_status(api, &sf.name_any(), &st).await?;
    publish(ctx, sf, &[Note::normal("Switched", message)]).await;
    Ok(Action::requeue(STEP_POLL))
}

/// How a fault ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ending {
    /// Its duration passed.
    Expired,
    /// The abort annotation asked for it.
    Aborted,
    /// The target Service was deleted (or re-created without our claim) during the fault.
    ServiceGone,
    /// The proxy was not Ready within the budget; what its pods said.
    ProxyNotReady(String),
    /// The namespace or spec no longer allows it.
    Refused(&'static str, String),
}

/// Give the Service back, read what the proxy saw, remove the proxy, and judge.
async fn finish(
    sf: &ServiceFault,
    ctx: &Context,
    api: &Api<ServiceFault>,
    ns: &str,
    mut st: ServiceFaultStatus,
    ending: Ending,
    now: Timestamp,
) -> Result<Action, Error> {
    let name = &sf.spec.injection.service;
    let uid = sf.uid().unwrap_or_default();
    let switched = step_at(&st, SWITCHED).is_some();
    if let Some(service) = services(ctx, ns).get_opt(name).await? {
        let released = release(ctx, ns, sf, &service).await?;
        if switched && released {
            st.reverted_at = Some(Time(Timestamp::now()));
            let message =
                format!("Service {name:?} selects {} again; the claim is removed", show(&st.original_selector));
            step(&mut st, REVERTED, &message, now);
            // Hitless: connections opened after the switch-back still reach the proxy until
            // the endpoints and kube-proxy's rules have followed; deleting it at once refuses them.
            proxy_left(ctx, ns, name, &uid).await?;
        }
    }
    // Read after the switch back: requests on connections opened before it still count.
    let stats = admin::read_stats(ctx, ns, &uid).await?;
    if let Some(summed) = stats.summed {
        st.proxy = Some(build::latest(st.proxy.as_ref(), summed));
    }
    remove_proxy(ctx, ns, sf).await?;
    if step_at(&st, PROXY_CREATED).is_some() {
        let message = format!(
            "deleted proxy Deployment {} and shadow Service {}",
            build::proxy_name(name),
            build::shadow_name(name)
        );
        step(&mut st, CLEANED, &message, now);
    }
    let injected = st.injected_at.as_ref().map(|t| t.0).or_else(|| step_at(&st, SWITCHED));
    let ran = injected.map(|t| human_duration(elapsed(t, now))).unwrap_or_else(|| "0s".into());
    let (phase, verdict, reason, message) = match ending {
        Ending::Expired => judge(&st, &ran, stats.error.as_deref()),
        Ending::Aborted => (
            Phase::Aborted,
            Verdict::Aborted,
            "Aborted",
            format!(
                "aborted by the {} annotation after {ran} of injection; Service {name:?} reverted",
                super::ABORT_ANNOTATION
            ),
        ),
        Ending::ServiceGone => (
            Phase::Failed,
            Verdict::Error,
            "ServiceGone",
            format!(
                "Service {name:?} was deleted (or replaced) during the fault; the proxy and shadow Service are removed"
            ),
        ),
        Ending::ProxyNotReady(pods) => (
            Phase::Failed,
            Verdict::Error,
            "ProxyNotReady",
            format!(
                "the proxy was not Ready within {}s, so nothing was injected and Service {name:?} was never switched: {pods}",
                READY_BUDGET.as_secs()
            ),
        ),
        Ending::Refused(reason, message) => (Phase::Aborted, Verdict::Aborted, reason, message),
    };
    st.run.phase = Some(phase);
    st.run.verdict = Some(verdict);
    st.run.message = Some(message.clone());
    st.run.finished_at = Some(Time(now));
    conditions::refresh(&mut st.run, sf.meta().generation, now);
    // The report is written before the status that refers to it.
    st.run.report_ref = report::file(ctx, sf, &Report::of_service_fault(sf, &st)).await;
    write_status(api, &sf.name_any(), &st).await?;
    let note = if verdict == Verdict::Pass { Note::normal(reason, message) } else { Note::warning(reason, message) };
    publish(ctx, sf, &[note]).await;
    Ok(Action::await_change())
}

/// Pass when traffic crossed the proxy; Inconclusive when none did (the fault had no observable
/// effect) or the proxy's figures could not be read.
fn judge(st: &ServiceFaultStatus, ran: &str, read_error: Option<&str>) -> (Phase, Verdict, &'static str, String) {
    let requests = st.proxy.as_ref().map_or(0, |p| p.requests);
    if requests > 0 {
        let applied: u64 = st.proxy.as_ref().map_or(0, |p| p.faults_applied.values().sum());
        let message = format!(
            "injected for {ran} and reverted: {requests} request(s) crossed the proxy, {applied} fault(s) applied"
        );
        return (Phase::Succeeded, Verdict::Pass, "Reverted", message);
    }
    let why = match (st.proxy.as_ref(), read_error) {
        (Some(_), _) => "the proxy saw no request".to_owned(),
        (None, Some(e)) => format!("the proxy's figures could not be read ({e})"),
        (None, None) => "the proxy's figures could not be read".to_owned(),
    };
    let message = format!(
        "injected for {ran} and reverted, but no traffic was seen crossing the proxy: {why}; nothing was proven"
    );
    (Phase::Succeeded, Verdict::Inconclusive, "NoTraffic", message)
}

/// Give the Service back if this fault holds it. Returns whether it did.
async fn release(ctx: &Context, ns: &str, sf: &ServiceFault, service: &Service) -> Result<bool, Error> {
    let uid = sf.uid().unwrap_or_default();
    if build::claim_state(service, &uid) != Claim::Ours {
        return Ok(false);
    }
    let original = build::original_selector(service)
        .map_err(|message| Error::Build { step: "reading the Service's original selector", message })?;
    let patch = build::release_patch(service, &original, &uid);
    let params = PatchParams::default();
    match services(ctx, ns).patch(&service.name_any(), &params, &Patch::Merge(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(service = %service.name_any(), namespace = ns, manager = MANAGER, "service released");
    Ok(true)
}

async fn remove_proxy(ctx: &Context, ns: &str, sf: &ServiceFault) -> Result<(), Error> {
    let name = &sf.spec.injection.service;
    delete_if_present(&Api::<Deployment>::namespaced(ctx.client.clone(), ns), &build::proxy_name(name)).await?;
    delete_if_present(&services(ctx, ns), &build::shadow_name(name)).await
}

/// Waits until the Service's endpoints have left the proxy pods (at most [`LEAVE_BUDGET`]), then
/// [`LINGER`] for kube-proxy to follow.
async fn proxy_left(ctx: &Context, ns: &str, name: &str, uid: &str) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let slices = Api::<EndpointSlice>::namespaced(ctx.client.clone(), ns);
    let by_service = ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
    loop {
        let pods = proxy_pods(ctx, ns, uid).await?;
        if build::endpoints_left_proxy(&slices.list(&by_service).await?.items, &pods) {
            break;
        }
        if started.elapsed() > LEAVE_BUDGET {
            tracing::warn!(service = name, "the endpoints still hold proxy pods; deleting the proxy anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(LINGER).await;
    tracing::debug!(service = name, waited = ?started.elapsed(), "the endpoints left the proxy");
    Ok(())
}

async fn proxy_pods(ctx: &Context, ns: &str, uid: &str) -> Result<Vec<Pod>, Error> {
    let selector = format!("{}={uid}", build::PROXY_LABEL);
    Ok(Api::<Pod>::namespaced(ctx.client.clone(), ns).list(&ListParams::default().labels(&selector)).await?.items)
}

fn describe_pods(pods: &[Pod]) -> String {
    if pods.is_empty() {
        return "no proxy pod exists (see the Deployment's events)".into();
    }
    pods.iter()
        .map(|p| {
            let status = p.status.as_ref();
            let waiting = status
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()));
            let phase = status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into());
            format!("{} {}", p.name_any(), waiting.unwrap_or(phase))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A fault that may not start: Failed, with the reason, and nothing changed.
async fn refuse(
    sf: &ServiceFault,
    ctx: &Context,
    api: &Api<ServiceFault>,
    mut st: ServiceFaultStatus,
    reason: &'static str,
    message: String,
    now: Timestamp,
) -> Result<Action, Error> {
    conditions::refuse(&mut st.run, Verdict::Error, reason, &message, sf.meta().generation, now);
    write_status(api, &sf.name_any(), &st).await?;
    publish(ctx, sf, &[Note::warning(reason, message)]).await;
    Ok(Action::await_change())
}

fn step(st: &mut ServiceFaultStatus, name: &str, message: &str, at: Timestamp) {
    st.steps.push(FaultStep { step: name.into(), at: Time(at), message: message.into() });
}

/// When a step was taken, if it was.
pub fn step_at(st: &ServiceFaultStatus, name: &str) -> Option<Timestamp> {
    st.steps.iter().find(|s| s.step == name).map(|s| s.at.0)
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

fn show(selector: &std::collections::BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(","))
}
