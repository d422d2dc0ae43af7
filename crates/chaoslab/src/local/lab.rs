//! The lab app's topology as processes on loopback, for `chaoslab lab` and the tests: inventory,
//! a `chaoslab proxy` in front of it (where faults go and calls are counted), catalog calling
//! inventory through the proxy, and the frontend calling catalog. Each Service is its pods
//! (this same binary run as child processes on ephemeral ports) behind a balancer, as many as
//! the chart runs, so pods can be killed as in a cluster; the children are killed when the
//! topology is dropped, so nothing outlives the command.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, sync::Arc, time::Duration};

pub use super::error::LabError;
use super::{
    LocalTargets,
    pods::{LocalPods, PodTemplate, ReplicaSet},
    process::Process,
};
use crate::demo::topology::{Autoscaling, CATALOG, FRONTEND, FRONTEND_HPA, INVENTORY};

/// The pods' grace period, as the chart sets it: the demo's shutdown delay (5s) and drain
/// timeout (20s), and 10s to spare.
const TERMINATION_GRACE: Duration = Duration::from_secs(35);

/// The HPAs of the topology, by the Deployment (the Service) they scale: the chart's.
pub fn autoscaling() -> BTreeMap<String, Autoscaling> {
    BTreeMap::from([("frontend".to_owned(), FRONTEND_HPA)])
}

/// How to run the topology.
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    /// The seed of the proxies' dice and of the pod kills' choices.
    pub seed: u64,
    /// A Service's flags in place of the chart's defaults (`demo.services.<name>.args`).
    pub args: BTreeMap<String, Vec<String>>,
    /// `demo.gracefulShutdown=false`: every pod exits at once on SIGTERM.
    pub abrupt_shutdown: bool,
}

/// The running topology.
#[derive(Debug)]
pub struct LabTopology {
    proxy: Process,
    sets: Vec<Arc<ReplicaSet>>,
    targets: LocalTargets,
}

impl LabTopology {
    /// Starts inventory, its proxy, catalog and the frontend from `exe` (this binary), with the
    /// chart's replica counts and labels (`app: <name>`), and waits until each is Ready.
    pub async fn start(exe: &Path, options: &LabOptions) -> Result<LabTopology, LabError> {
        let set = |name: &str, replicas: usize, defaults: &[&str], upstream: Option<String>| {
            let mut args: Vec<String> = upstream.into_iter().flat_map(|u| ["--upstream".to_owned(), u]).collect();
            match options.args.get(name) {
                Some(own) => args.extend(own.iter().cloned()),
                None => args.extend(defaults.iter().map(|a| a.to_string())),
            }
            if options.abrupt_shutdown {
                args.push("--graceful-shutdown=false".into());
            }
            let labels = BTreeMap::from([("app".to_owned(), name.to_owned())]);
            let template =
                PodTemplate { service: name.into(), labels, args, replicas, termination_grace: TERMINATION_GRACE };
            ReplicaSet::start(exe.to_path_buf(), template)
        };
        let inventory = set("inventory", 2, INVENTORY, None).await?;
        let route = format!("127.0.0.1:0={}", inventory.addr());
        let (proxy, ready) =
            Process::spawn(exe, "proxy", "proxy", &["--admin-addr", "127.0.0.1:0", "--route", &route], "proxy ready")
                .await?;
        let proxied = addrs(ready.get("routes").and_then(|r| r.as_str()).unwrap_or_default());
        let admin = ready.get("admin").and_then(|a| a.as_str()).unwrap_or_default().to_owned();
        let Some(route) = proxied.first() else {
            return Err(proxy.not_ready());
        };
        let catalog = set("catalog", 2, CATALOG, Some(format!("inventory=http://{route}/"))).await?;
        let frontend = set("frontend", 1, FRONTEND, Some(format!("catalog=http://{}/", catalog.addr()))).await?;
        let sets = vec![inventory, catalog, frontend];
        let mut targets = LocalTargets { seed: options.seed, ..LocalTargets::default() };
        for set in &sets {
            targets.services.insert(set.service().into(), format!("http://{}", set.addr()));
        }
        targets.proxies.insert("inventory".into(), admin);
        targets.autoscaling = autoscaling();
        targets.pods = LocalPods::new(sets.clone());
        Ok(LabTopology { proxy, sets, targets })
    }

    /// Where the plan's names are.
    pub fn targets(&self) -> &LocalTargets {
        &self.targets
    }

    /// Every process's last lines, for a failure's message.
    pub fn logs(&self) -> String {
        let mut logs: Vec<String> = self.sets.iter().map(|s| s.logs()).collect();
        logs.push(format!("proxy:\n{}", self.proxy.logs()));
        logs.join("\n")
    }

    /// Stops every process (they are killed on drop too; this waits for them).
    pub async fn stop(mut self) {
        for set in &self.sets {
            set.stop().await;
        }
        self.proxy.stop().await;
    }
}

/// The socket addresses in a logged list (`[127.0.0.1:40123]`).
fn addrs(text: &str) -> Vec<SocketAddr> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':')).filter_map(|a| a.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_addresses_of_a_logged_list() {
        assert_eq!(
            super::addrs("[127.0.0.1:40123, 127.0.0.1:40124]"),
            ["127.0.0.1:40123".parse().unwrap(), "127.0.0.1:40124".parse().unwrap()]
        );
        assert!(super::addrs("[]").is_empty());
    }
}
