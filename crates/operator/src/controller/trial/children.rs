//! The children of a judged run in the cluster: creating them (idempotently), waiting for them,
//! and ending them early with their abort annotation. Every child carries the run's UID label
//! and owner reference, so it can be found after a restart and goes with the run.

use std::time::Duration;

use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use tokio::time::{Instant, sleep};

use super::build::{Owner, TRIAL_LABEL};
use crate::{
    api::{Experiment, LoadTest, PodKill, ServiceFault},
    controller::{ABORT_ANNOTATION, abort_requested},
    trial::drive::WorldError,
};

/// How often a child's status is looked at while waiting for it.
const POLL: Duration = Duration::from_millis(500);

pub fn kube_error(what: &str) -> impl Fn(kube::Error) -> WorldError + '_ {
    move |e| WorldError(format!("{what}: {e}"))
}

/// Whether a child has ended.
pub fn ended<K: Experiment>(child: &K) -> bool {
    child.run_status().and_then(|r| r.phase).is_some_and(|p| p.is_terminal())
}

/// A child's status message, for the run's own.
pub fn message_of<K: Experiment>(child: &K) -> String {
    child.run_status().and_then(|r| r.message.clone()).unwrap_or_else(|| "no message".into())
}

/// The children of one run.
#[derive(Clone)]
pub struct Children {
    client: Client,
    pub owner: Owner,
}

impl Children {
    pub fn new(client: Client, owner: Owner) -> Children {
        Children { client, owner }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn api<K: Experiment>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.owner.namespace)
    }

    /// Creates `child`, or finds it already there from this run (an answer lost on the way back).
    pub async fn create<K: Experiment>(&self, child: &K) -> Result<K, WorldError> {
        let api = self.api::<K>();
        let name = child.name_any();
        match api.create(&PostParams::default(), child).await {
            Ok(created) => Ok(created),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let found = api.get(&name).await.map_err(kube_error(&name))?;
                if found.labels().get(TRIAL_LABEL) == Some(&self.owner.uid) {
                    Ok(found)
                } else {
                    Err(WorldError(format!("a {} named {name} already exists and is not this run's", K::KIND)))
                }
            }
            Err(e) => Err(WorldError(format!("cannot create the {} {name}: {e}", K::KIND))),
        }
    }

    /// Asks a child to end now (its abort annotation) unless it has ended or is gone.
    pub async fn abort<K: Experiment>(&self, name: &str) -> Result<(), WorldError> {
        let api = self.api::<K>();
        let Some(child) = api.get_opt(name).await.map_err(kube_error(name))? else { return Ok(()) };
        if ended(&child) || abort_requested(&child) {
            return Ok(());
        }
        let patch = serde_json::json!({ "metadata": { "annotations": { ABORT_ANNOTATION: "true" } } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(kube_error(name))?;
        Ok(())
    }

    /// Waits until `done` holds for the child `name` (or it is gone: `None`), at most `limit`.
    pub async fn wait_for<K: Experiment>(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        done: impl Fn(&K) -> bool,
    ) -> Result<Option<K>, WorldError> {
        let api = self.api::<K>();
        let deadline = Instant::now() + limit;
        loop {
            match api.get_opt(name).await.map_err(kube_error(name))? {
                None => return Ok(None),
                Some(c) if done(&c) => return Ok(Some(c)),
                Some(_) if Instant::now() >= deadline => {
                    return Err(WorldError(format!(
                        "the {} {name} did not {what} within {}s",
                        K::KIND,
                        limit.as_secs()
                    )));
                }
                Some(_) => sleep(POLL).await,
            }
        }
    }

    /// Ends every child of this run that is still going: what a run that stops without its
    /// conductor (an error, a deletion, an operator restart) does. Faults first, the load last.
    pub async fn end_all(&self) -> Result<(), WorldError> {
        let params = ListParams::default().labels(&self.owner.children());
        let faults = self.api::<ServiceFault>().list(&params).await.map_err(kube_error("ServiceFaults"))?;
        for name in faults.items.iter().map(ResourceExt::name_any) {
            self.abort::<ServiceFault>(&name).await?;
        }
        let kills = self.api::<PodKill>().list(&params).await.map_err(kube_error("PodKills"))?;
        for name in kills.items.iter().map(ResourceExt::name_any) {
            self.abort::<PodKill>(&name).await?;
        }
        let loads = self.api::<LoadTest>().list(&params).await.map_err(kube_error("LoadTests"))?;
        for name in loads.items.iter().map(ResourceExt::name_any) {
            self.abort::<LoadTest>(&name).await?;
        }
        Ok(())
    }
}
