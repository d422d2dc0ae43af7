//! Children of the local environment: this binary run in one of its roles (`demo`, `proxy`),
//! its last log lines kept for an error message, its readiness awaited, its signals sent.

use std::{
    collections::VecDeque,
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

use super::error::LabError;

/// How long a process may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The log lines kept per process, for an error message.
const KEPT_LINES: usize = 40;

/// One child process and the last lines it wrote. It is killed when dropped, so nothing
/// outlives the command that started it.
#[derive(Debug)]
pub struct Process {
    pub name: String,
    child: Child,
    logs: Arc<Mutex<VecDeque<String>>>,
}

impl Process {
    /// Spawns `exe role args…` with JSON logs and waits for its `ready` message; returns the
    /// process and that message.
    pub async fn spawn(
        exe: &Path,
        name: &str,
        role: &str,
        args: &[&str],
        ready: &'static str,
    ) -> Result<(Process, serde_json::Value), LabError> {
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
        let process = Process { name: name.into(), child, logs };
        match tokio::time::timeout(START_TIMEOUT, readiness.recv()).await {
            Ok(Some(line)) => Ok((process, line)),
            _ => Err(process.not_ready()),
        }
    }

    /// The error of a process that never said it was ready, with what it wrote.
    pub fn not_ready(&self) -> LabError {
        LabError::NotReady { name: self.name.clone(), logs: self.logs() }
    }

    /// The last lines it wrote.
    pub fn logs(&self) -> String {
        let kept = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        kept.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }

    /// The process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM, as the kubelet does to a deleted pod's container.
    pub fn terminate(&self) -> std::io::Result<()> {
        let pid = self.child.id().and_then(|id| i32::try_from(id).ok()).and_then(rustix::process::Pid::from_raw);
        match pid {
            Some(pid) => rustix::process::kill_process(pid, rustix::process::Signal::TERM).map_err(Into::into),
            None => Ok(()), // already reaped: nothing to stop
        }
    }

    /// Sends SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }

    /// Waits for the exit; its code (143 for a process killed by SIGTERM, 137 by SIGKILL).
    pub async fn exited(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.child.wait().await.ok()?;
        status.code().or_else(|| status.signal().map(|s| 128 + s))
    }

    /// Kills it and waits for it.
    pub async fn stop(&mut self) {
        self.kill();
        let _ = self.child.wait().await;
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
