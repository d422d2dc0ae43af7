//! The lab topology: frontend → catalog → inventory, each service's own flags. The chart's
//! `demo.services.<name>.args` defaults are the same (tests/it/chart_demo.rs checks), so a drill's
//! stated verdict holds on loopback (`chaoslab lab`, the tests) and in a cluster alike.

/// The frontend sheds load beyond 12 requests in flight; with about 110 ms per request, that is
/// about 110 requests per second.
pub const FRONTEND: &[&str] = &[
    "--latency",
    "80ms",
    "--jitter",
    "20ms",
    "--cpu",
    "1ms",
    "--max-concurrency",
    "12",
    "--timeout",
    "2s",
    "--response-bytes",
    "1024",
];
/// Catalog calls inventory with a 500 ms timeout, one retry within a budget, a circuit
/// breaker and a last-good fallback.
pub const CATALOG: &[&str] = &[
    "--latency",
    "10ms",
    "--jitter",
    "4ms",
    "--timeout",
    "500ms",
    "--retries",
    "1",
    "--retry-budget-min-per-second",
    "1",
    "--circuit-breaker=true",
    "--fallback",
    "last-good",
    "--response-bytes",
    "512",
];
/// Inventory answers in about 5 ms.
pub const INVENTORY: &[&str] = &["--latency", "5ms", "--jitter", "2ms", "--response-bytes", "256"];

/// The HPA on a Service of the topology, as the chart's `demo.services.<name>.hpa` and
/// `resources.requests.cpu` set it (tests/it/chart_demo.rs checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Autoscaling {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// The average CPU utilization the HPA keeps, in percent of the request.
    pub target_cpu_utilization: u32,
    /// Each pod's CPU request, in millicores: what utilization is measured against.
    pub cpu_request_millicores: u32,
}

/// The frontend's HPA: one to four pods, at 60 % of a 100m CPU request.
pub const FRONTEND_HPA: Autoscaling =
    Autoscaling { min_replicas: 1, max_replicas: 4, target_cpu_utilization: 60, cpu_request_millicores: 100 };
