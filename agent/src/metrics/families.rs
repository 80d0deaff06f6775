//! `Metrics`: every family the agent exports, registered once, and the recording methods the
//! engine calls per observation. Names follow Prometheus' conventions (snake_case, `reach_`
//! prefix, `_total` on counters, which the encoder appends: registering a counter as `x_total`
//! would export `x_total_total`).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::bounded::{Bounded, FoldedLabels};
use super::expiry::Expiry;

/// The `Content-Type` of `Metrics::encode`'s output (OpenMetrics 1.0.0 text). Served as
/// `text/plain`, Prometheus would parse it with its classic parser, which reads
/// `# TYPE reach_syn counter` followed by `reach_syn_total` as an untyped sample.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of `Metrics::encode_prometheus_text`'s output (classic text 0.0.4).
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The families keyed by `Where` (each has its own `max_label_sets` places).
pub(super) const WHERE_FAMILIES: usize = 8;

#[derive(Clone, Debug)]
pub struct MetricsConfig {
    /// Distinct `Where` per family before observations fold into `Where::other()`.
    pub max_label_sets: usize,
    /// How long a gone namespace's (and pod's) series stay before they are removed.
    pub grace: Duration,
}

impl Default for MetricsConfig {
    /// 1000 namespaces per node is well above kubelet's default 110 pods; 5 minutes outlasts
    /// the default 1-minute scrape interval several times, so the last increments are scraped.
    fn default() -> Self {
        MetricsConfig { max_label_sets: 1000, grace: Duration::from_secs(300) }
    }
}

/// Every metric the agent exports. `Send + Sync`: share it as `Arc<Metrics>`.
pub struct Metrics {
    pub(super) registry: Registry,
    pub(super) syn: Bounded<Counter, 0>,
    pub(super) attempts: Bounded<Counter, 1>,
    pub(super) failed_classes: Bounded<Counter, 1>,
    pub(super) drops: Bounded<Counter, 1>,
    pub(super) firewall: Bounded<Counter, 4>,
    pub(super) listen_overflows: Bounded<Counter, 0>,
    pub(super) unreachable: Bounded<Gauge, 1>,
    pub(super) namespace_interfaces: Bounded<Gauge, 0>,
    pub(super) events_lost: KindFamily,
    pub(super) events_suppressed: KindFamily,
    pub(super) watched_namespaces: Gauge,
    pub(super) watched_interfaces: Gauge,
    pub(super) expiry: Expiry,
}

// The engine records from its reader tasks and the server encodes from its own: both hold an
// `Arc<Metrics>`, so it must stay `Send + Sync` (checked here, at compile time).
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Metrics>();
};

/// `reach_events_{lost,suppressed}_total`'s one label, `kind` (`syn` or `other`).
pub(super) type KindFamily = Family<[(&'static str, &'static str); 1], Counter>;

/// One family as a scrape shows it: name (counters with the `_total` the encoder appends) and
/// every label its series can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exported {
    pub name: &'static str,
    pub kind: &'static str,
    pub labels: &'static [&'static str],
}

/// Every family the agent exports, for what reads its metrics (the Grafana dashboard's test
/// checks each query against it). `register` refuses a family missing here, and a unit test
/// refuses an entry nothing registers: the catalog cannot drift from the registry.
pub const CATALOG: &[Exported] = &[
    Exported { name: "reach_syn_total", kind: "counter", labels: &["netns", "namespace", "pod"] },
    Exported {
        name: "reach_connection_attempts_total",
        kind: "counter",
        labels: &["netns", "namespace", "pod", "outcome"],
    },
    Exported {
        name: "reach_failed_connection_attempts_total",
        kind: "counter",
        labels: &["netns", "namespace", "pod", "class"],
    },
    Exported {
        name: "reach_drops_total",
        kind: "counter",
        labels: &["netns", "namespace", "pod", "reason"],
    },
    Exported {
        name: "reach_firewall_verdicts_total",
        kind: "counter",
        labels: &["netns", "namespace", "pod", "scope_kind", "scope", "concept", "verdict"],
    },
    Exported {
        name: "reach_listen_overflows_total",
        kind: "counter",
        labels: &["netns", "namespace", "pod"],
    },
    Exported {
        name: "reach_unreachable_listeners",
        kind: "gauge",
        labels: &["netns", "namespace", "pod", "reason"],
    },
    Exported { name: "reach_events_lost_total", kind: "counter", labels: &["kind"] },
    Exported { name: "reach_events_suppressed_total", kind: "counter", labels: &["kind"] },
    Exported {
        name: "reach_namespace_interfaces",
        kind: "gauge",
        labels: &["netns", "namespace", "pod"],
    },
    Exported { name: "reach_watched_namespaces", kind: "gauge", labels: &[] },
    Exported { name: "reach_watched_interfaces", kind: "gauge", labels: &[] },
    Exported {
        name: "reach_label_sets_folded_total",
        kind: "counter",
        labels: &["metric", "bound"],
    },
];

/// Registers `metric` as `name`, which [`CATALOG`] must list (with `_total` for counters).
fn register_listed<M: prometheus_client::registry::Metric>(
    r: &mut Registry,
    name: &'static str,
    help: &'static str,
    metric: M,
) {
    let counter = matches!(
        prometheus_client::encoding::EncodeMetric::metric_type(&metric),
        prometheus_client::metrics::MetricType::Counter
    );
    let scraped = if counter { format!("{name}_total") } else { name.to_string() };
    assert!(
        CATALOG.iter().any(|e| e.name == scraped),
        "metric family {scraped} is registered but missing from metrics::CATALOG"
    );
    r.register(name, help, metric);
}

impl Metrics {
    pub fn new(cfg: MetricsConfig) -> Self {
        let max = cfg.max_label_sets;
        let folded = Family::<FoldedLabels, Counter>::default();
        let m = Metrics {
            registry: Registry::default(),
            syn: Bounded::new("reach_syn", [], max, folded.clone()),
            attempts: Bounded::new("reach_connection_attempts", ["outcome"], max, folded.clone()),
            failed_classes: Bounded::new(
                "reach_failed_connection_attempts",
                ["class"],
                max,
                folded.clone(),
            ),
            drops: Bounded::new("reach_drops", ["reason"], max, folded.clone()),
            firewall: Bounded::new(
                "reach_firewall_verdicts",
                ["scope_kind", "scope", "concept", "verdict"],
                max,
                folded.clone(),
            ),
            listen_overflows: Bounded::new("reach_listen_overflows", [], max, folded.clone()),
            unreachable: Bounded::new(
                "reach_unreachable_listeners",
                ["reason"],
                max,
                folded.clone(),
            ),
            namespace_interfaces: Bounded::new(
                "reach_namespace_interfaces",
                [],
                max,
                folded.clone(),
            ),
            events_lost: Family::default(),
            events_suppressed: Family::default(),
            watched_namespaces: Gauge::default(),
            watched_interfaces: Gauge::default(),
            // Only namespaces holding series need a pending entry: at most max per family.
            expiry: Expiry::new(cfg.grace, max.saturating_mul(WHERE_FAMILIES).saturating_add(64)),
        };
        m.register(folded)
    }

    fn register(mut self, folded: Family<FoldedLabels, Counter>) -> Self {
        // Both kinds exist from the start at 0, so `rate()` sees the first loss.
        for kind in ["syn", "other"] {
            self.events_lost.get_or_create_owned(&[("kind", kind)]);
            self.events_suppressed.get_or_create_owned(&[("kind", kind)]);
        }
        let r = &mut self.registry;
        register_listed(
            r,
            "reach_syn",
            "TCP SYNs seen arriving at a watched namespace (connection attempts, retransmissions included)",
            self.syn.family(),
        );
        register_listed(
            r,
            "reach_connection_attempts",
            "Connection attempts to a watched namespace by how they ended (accepted, refused, dropped, unanswered, ...)",
            self.attempts.family(),
        );
        register_listed(
            r,
            "reach_failed_connection_attempts",
            "Failed connection attempts by why they failed (nothing_listening, loopback_only, firewall_drop, kernel_drop, ...)",
            self.failed_classes.family(),
        );
        register_listed(
            r,
            "reach_drops",
            "Packets to or from a watched namespace the kernel dropped, by kernel drop reason (SKB_DROP_REASON_ without its prefix)",
            self.drops.family(),
        );
        register_listed(
            r,
            "reach_firewall_verdicts",
            "Firewall verdicts on connection attempts, by where they were decided (scope_kind zone, policy or table, and scope its name), the rule concept and the verdict",
            self.firewall.family(),
        );
        register_listed(
            r,
            "reach_listen_overflows",
            "Connection attempts dropped because a listening socket's accept queue was full (the server accepts too slowly)",
            self.listen_overflows.family(),
        );
        register_listed(
            r,
            "reach_unreachable_listeners",
            "Listening sockets that clients outside their namespace cannot reach, by reason (loopback_only, v6only, device_bound)",
            self.unreachable.family(),
        );
        register_listed(
            r,
            "reach_events_lost",
            "Kernel events reach lost because its ring buffers were full (kind syn, or other): reach's other counts are low by up to this much",
            self.events_lost.clone(),
        );
        register_listed(
            r,
            "reach_events_suppressed",
            "Kernel events the in-kernel rate limit dropped on purpose (kind syn, or other): reach's other counts are low by up to this much",
            self.events_suppressed.clone(),
        );
        register_listed(
            r,
            "reach_namespace_interfaces",
            "Interfaces reach taps in each watched namespace, one series per namespace with its pod: which namespaces are watched, and the join from netns to pod",
            self.namespace_interfaces.family(),
        );
        register_listed(
            r,
            "reach_watched_namespaces",
            "Network namespaces reach currently watches on this node",
            self.watched_namespaces.clone(),
        );
        register_listed(
            r,
            "reach_watched_interfaces",
            "Network interfaces reach currently has classifiers attached to on this node",
            self.watched_interfaces.clone(),
        );
        register_listed(
            r,
            "reach_label_sets_folded",
            "Observations recorded under \"other\" labels because a family reached its bound (bound namespaces: max label sets per family; values: distinct label values), so per-namespace series are incomplete",
            folded,
        );
        self
    }
}
