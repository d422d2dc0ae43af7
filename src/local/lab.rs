//! The lab app's topology as processes on loopback, for `chaoslab lab`: inventory, a
//! `chaoslab proxy` in front of it (where faults go and calls are counted), catalog calling
//! inventory through the proxy, and the frontend calling catalog. Each is this same binary run
//! as a child process on an ephemeral port; the children are killed when the topology is
//! dropped, so nothing outlives the command.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

use super::LocalTargets;
use crate::demo::topology::{CATALOG, FRONTEND, INVENTORY};

/// How long a process may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The log lines kept per process, for an error message.
const KEPT_LINES: usize = 40;

/// Why the topology could not start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("cannot start `{exe} {role}`: {source}")]
    Spawn { exe: String, role: String, source: std::io::Error },
    #[error("{name} did not say where it listens within {}s; its last output:\n{logs}", START_TIMEOUT.as_secs())]
    NotReady { name: String, logs: String },
}

/// One child process and the last lines it wrote.
#[derive(Debug)]
struct Process {
    name: String,
    child: Child,
    logs: Arc<Mutex<VecDeque<String>>>,
}

/// The running topology.
#[derive(Debug)]
pub struct LabTopology {
    processes: Vec<Process>,
    targets: LocalTargets,
}

impl LabTopology {
    /// Starts the four processes from `exe` (this binary) and waits until each listens.
    pub async fn start(exe: &Path, seed: u64) -> Result<LabTopology, LabError> {
        let mut lab = LabTopology { processes: Vec::new(), targets: LocalTargets { seed, ..LocalTargets::default() } };
        let inventory = lab.demo(exe, "inventory", &[], INVENTORY).await?;
        let route = format!("127.0.0.1:0={inventory}");
        let ready = lab
            .spawn(exe, "proxy", "proxy", &["--admin-addr", "127.0.0.1:0", "--route", &route], "proxy ready")
            .await?;
        let proxied = addrs(ready.get("routes").and_then(|r| r.as_str()).unwrap_or_default());
        let admin = ready.get("admin").and_then(|a| a.as_str()).unwrap_or_default().to_owned();
        let Some(route) = proxied.first() else {
            return Err(lab.not_ready("proxy"));
        };
        let to_inventory = format!("inventory=http://{route}/");
        let catalog = lab.demo(exe, "catalog", &["--upstream", &to_inventory], CATALOG).await?;
        let to_catalog = format!("catalog=http://{catalog}/");
        let frontend = lab.demo(exe, "frontend", &["--upstream", &to_catalog], FRONTEND).await?;
        for (name, addr) in [("inventory", inventory), ("catalog", catalog), ("frontend", frontend)] {
            lab.targets.services.insert(name.into(), format!("http://{addr}"));
        }
        lab.targets.proxies.insert("inventory".into(), admin);
        Ok(lab)
    }

    /// Where the plan's names are.
    pub fn targets(&self) -> &LocalTargets {
        &self.targets
    }

    /// Every process's last lines, for a failure's message.
    pub fn logs(&self) -> String {
        self.processes.iter().map(|p| format!("{}:\n{}", p.name, lines(&p.logs))).collect::<Vec<_>>().join("\n")
    }

    async fn demo(&mut self, exe: &Path, name: &str, wiring: &[&str], flags: &[&str]) -> Result<SocketAddr, LabError> {
        let args = [&["--name", name, "--listen", "127.0.0.1:0"], wiring, flags].concat();
        let ready = self.spawn(exe, name, "demo", &args, "serving").await?;
        ready.get("addr").and_then(|a| a.as_str()).and_then(|a| a.parse().ok()).ok_or_else(|| self.not_ready(name))
    }

    /// Spawns `exe role args…` with JSON logs and waits for its `ready` message; returns it.
    async fn spawn(
        &mut self,
        exe: &Path,
        name: &str,
        role: &str,
        args: &[&str],
        ready: &'static str,
    ) -> Result<serde_json::Value, LabError> {
        let mut child = Command::new(exe)
            .arg(role)
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| LabError::Spawn { exe: exe.display().to_string(), role: role.into(), source })?;
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let (found, mut readiness) = mpsc::channel(1);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(keep_lines(out, logs.clone(), Some((ready, found))));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(keep_lines(err, logs.clone(), None));
        }
        self.processes.push(Process { name: name.into(), child, logs });
        match tokio::time::timeout(START_TIMEOUT, readiness.recv()).await {
            Ok(Some(line)) => Ok(line),
            _ => Err(self.not_ready(name)),
        }
    }

    fn not_ready(&self, name: &str) -> LabError {
        let logs = self.processes.iter().find(|p| p.name == name).map(|p| lines(&p.logs)).unwrap_or_default();
        LabError::NotReady { name: name.into(), logs }
    }

    /// Stops every process (they are killed on drop too; this waits for them).
    pub async fn stop(mut self) {
        for p in &mut self.processes {
            let _ = p.child.start_kill();
            let _ = p.child.wait().await;
        }
    }
}

/// Reads `stream` line by line to its end (so the child never blocks on a full pipe), keeping
/// the last lines, and sends the first JSON line whose message is the awaited one.
async fn keep_lines(
    stream: impl AsyncRead + Unpin,
    logs: Arc<Mutex<VecDeque<String>>>,
    mut awaited: Option<(&'static str, mpsc::Sender<serde_json::Value>)>,
) {
    let mut reader = BufReader::new(stream).lines();
    while let Ok(Some(line)) = reader.next_line().await {
        if let Some((message, found)) = &awaited
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
            && value.get("message").and_then(|m| m.as_str()) == Some(*message)
        {
            let _ = found.send(value).await;
            awaited = None;
        }
        let mut kept = logs.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() == KEPT_LINES {
            kept.pop_front();
        }
        kept.push_back(line);
    }
}

fn lines(logs: &Mutex<VecDeque<String>>) -> String {
    let kept = logs.lock().unwrap_or_else(PoisonError::into_inner);
    kept.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
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
