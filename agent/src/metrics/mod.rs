//! Prometheus metrics for the fleet agent (`reach agent`, a DaemonSet on every node): what reach
//! observes per namespace and pod, exported at `/metrics` beside the kubelet's `/healthz` and
//! `/readyz` probes.
//!
//! - `labels.rs`: `Where` an observation happened, and the other label vocabularies;
//! - `bounded.rs`: a family whose cardinality and memory are bounded whatever the input;
//! - `expiry.rs`: a gone namespace's series stay for a grace period, then go;
//! - `families.rs`: the families, their names and HELP texts;
//! - `record.rs`: the recording methods the engine calls, and the exposition;
//! - `health.rs`, `http.rs`: the probes' state and the HTTP server;
//! - `addr.rs`: parsing `--metrics ADDR`.
mod addr;
mod bounded;
mod expiry;
mod families;
mod health;
mod http;
#[cfg(test)]
mod http_tests;
mod labels;
mod record;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod textparse;

pub use addr::parse_addr;
pub use families::{
    CATALOG, Exported, Metrics, MetricsConfig, OPENMETRICS_CONTENT_TYPE,
    PROMETHEUS_TEXT_CONTENT_TYPE,
};
pub use health::Health;
pub use http::{BindError, Server};
pub use labels::{FirewallScope, UnreachableReason, Where};
