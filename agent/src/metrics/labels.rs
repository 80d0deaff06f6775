//! The label vocabulary: where an observation happened (`Where`), the firewall scope and
//! unreachable-listener reason enums, and `Series`, the label set every `Where`-keyed family uses.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

/// Where an observation happened. `netns` is reach's namespace name (e.g. "host", "cni-1234…",
/// "container:abc", "pid:42(nginx)"); `namespace`/`pod` are the Kubernetes namespace and pod name
/// when known.
///
/// Exported as labels `netns`, `namespace`, `pod`; an unknown namespace or pod is left out of the
/// label set rather than exported as `""` (the two are the same series to Prometheus, and leaving
/// it out keeps the exposition free of empty labels).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Where {
    pub netns: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
}

impl Where {
    /// A namespace outside Kubernetes (no pod known), e.g. the host's.
    pub fn netns(netns: impl Into<String>) -> Self {
        Where { netns: netns.into(), namespace: None, pod: None }
    }

    /// The series observations fold into once a family holds `max_label_sets` places.
    pub fn other() -> Self {
        let other = || Some(super::bounded::OTHER.to_owned());
        Where { netns: super::bounded::OTHER.to_owned(), namespace: other(), pod: other() }
    }
}

/// What a firewall verdict was scoped to: a firewalld zone or policy, or an nftables table.
///
/// Exported as two labels, `scope_kind` (`zone`, `policy` or `table`) and `scope` (its name),
/// in one family `reach_firewall_verdicts_total`. Rejected alternatives: three label keys with
/// two always empty (`zone="" policy="public"`) reads as if a verdict had a zone and a policy,
/// and a family whose series carry different label keys breaks `sum by (...)` across scopes;
/// three families would make "all firewall verdicts on this pod" a three-metric query.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum FirewallScope {
    Zone(String),
    Policy(String),
    Table(String),
}

impl FirewallScope {
    pub fn kind(&self) -> &'static str {
        match self {
            FirewallScope::Zone(_) => "zone",
            FirewallScope::Policy(_) => "policy",
            FirewallScope::Table(_) => "table",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            FirewallScope::Zone(n) | FirewallScope::Policy(n) | FirewallScope::Table(n) => n,
        }
    }
}

/// Why a listening socket cannot be reached from outside its namespace.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum UnreachableReason {
    /// Bound to 127.0.0.1 or ::1 only.
    LoopbackOnly,
    /// An IPv6-only socket (IPV6_V6ONLY), so IPv4 clients find nothing.
    V6Only,
    /// Bound to one device (SO_BINDTODEVICE), so traffic on others finds nothing.
    DeviceBound,
}

impl UnreachableReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnreachableReason::LoopbackOnly => "loopback_only",
            UnreachableReason::V6Only => "v6only",
            UnreachableReason::DeviceBound => "device_bound",
        }
    }
}

/// One series' labels: the `Where` plus `N` family-specific labels (`keys` are the family's,
/// the same in every series). Shared pieces are `Arc`s so the hot path clones no string.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Series<const N: usize> {
    pub w: Arc<Where>,
    pub keys: [&'static str; N],
    pub values: [Arc<str>; N],
}

impl<const N: usize> EncodeLabelSet for Series<N> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        ("netns", self.w.netns.as_str()).encode(encoder.encode_label())?;
        // None is skipped (see `Where`): prometheus-client's derive would write `label=""`.
        if let Some(namespace) = &self.w.namespace {
            ("namespace", namespace.as_str()).encode(encoder.encode_label())?;
        }
        if let Some(pod) = &self.w.pod {
            ("pod", pod.as_str()).encode(encoder.encode_label())?;
        }
        for (key, value) in self.keys.iter().zip(&self.values) {
            (*key, &**value).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}
