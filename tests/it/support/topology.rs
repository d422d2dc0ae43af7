//! Test support for tests/it/demo.rs, tests/it/drills.rs and tests/it/chart_demo.rs: the lab topology's
//! flags, `chaoslab demo` processes on loopback (ephemeral ports, killed on drop), plain HTTP/1.1
//! requests, Prometheus text read back, and `chaoslab load` runs.

#![allow(dead_code)]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_chaoslab");

/// The lab topology's own flags per service (the library's, which `chaoslab lab` runs).
pub use chaoslab::demo::topology::{CATALOG, FRONTEND, INVENTORY};

/// One `chaoslab demo` process listening on an ephemeral loopback port.
pub struct Service {
    pub name: String,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub url: String,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts `chaoslab demo --name NAME` with `args`, and waits for the address it serves on
    /// (its `serving` log line).
    pub fn start(name: &str, args: &[&str]) -> Service {
        let mut child = Command::new(BIN)
            .args(["demo", "--name", name, "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chaoslab demo");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let kept = logs.clone();
        // Drained to the end, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "serving"
                    && let Some(addr) = v["addr"].as_str().and_then(|a| a.parse().ok())
                {
                    let _ = addr_tx.send(addr);
                }
                kept.lock().expect("logs").push(line);
            }
        });
        let kept = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().expect("logs").push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("{name} did not start:\n{}", logs.lock().expect("logs").join("\n"));
            }
        };
        Service { name: name.to_owned(), addr, url: format!("http://{addr}"), child, logs }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// Sends a signal (`TERM`, `INT`, ...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]).status().expect("kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// The exit status, once the process has ended within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, None, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("GET {}{path}: {e}\n{}", self.url, self.logs()))
    }

    /// PATCH /admin/config with `patch`; panics unless it is accepted.
    pub fn patch_config(&self, patch: &str) -> Value {
        let r = request(self.addr, "PATCH", "/admin/config", Some(patch), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("PATCH {}: {e}", self.url));
        assert_eq!(r.status, 200, "PATCH {patch} on {}: {}", self.name, r.body);
        r.json()
    }

    pub fn state(&self) -> Value {
        self.get("/admin/state").json()
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics").body
    }

    /// Waits until no request of the work route is in flight (at most `timeout`).
    pub fn settle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.state()["inFlight"].as_u64() != Some(0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Requests of the work route this service has seen end, whatever their status (canceled
    /// ones included): the calls that reached it.
    pub fn work_requests(&self) -> f64 {
        metric_sum(&self.metrics(), "chaoslab_demo_requests_total", &["route=\"work\""])
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// frontend → catalog → inventory, each with its own flags.
pub struct Topology {
    pub frontend: Service,
    pub catalog: Service,
    pub inventory: Service,
}

pub fn topology(frontend: &[&str], catalog: &[&str], inventory: &[&str]) -> Topology {
    let inventory = Service::start("inventory", inventory);
    let to_inventory = format!("inventory={}/", inventory.url);
    let catalog = Service::start("catalog", &[&["--upstream", &to_inventory], catalog].concat());
    let to_catalog = format!("catalog={}/", catalog.url);
    let frontend = Service::start("frontend", &[&["--upstream", &to_catalog], frontend].concat());
    Topology { frontend, catalog, inventory }
}

/// The lab's topology with the chart's flags.
pub fn lab() -> Topology {
    topology(FRONTEND, CATALOG, INVENTORY)
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a connection of its own (`Connection: close`), read to the end.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP answer: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok(Response { status, body: body.to_owned() })
}

/// The sum of the samples of `name` whose labels contain every one of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// `chaoslab load ARGS`: its exit code and its JSON document (`-o json` must be among `args`).
pub fn load(args: &[&str]) -> (Option<i32>, Value, Output) {
    let output = Command::new(BIN).arg("load").args(args).stdin(Stdio::null()).output().expect("run chaoslab load");
    let doc = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "chaoslab load {args:?}: stdout is not JSON ({e}), status {:?}\nstdout:\n{}\nstderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), doc, output)
}

pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}
