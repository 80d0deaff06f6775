//! What the engine calls: one method per observation kind, the namespace lifecycle (`gone`,
//! `back`, `expire`) and the exposition (`encode`).

use std::time::Instant;

use prometheus_client::encoding::{prometheus_text, text};

use super::families::Metrics;
use super::labels::{FirewallScope, UnreachableReason, Where};

impl Metrics {
    /// A SYN arrived at a watched namespace.
    pub fn syn(&self, w: &Where) {
        self.syn.with(w, [], true, |c| {
            c.inc();
        });
    }

    /// A connection attempt ended with `outcome` (accepted, refused, dropped, unanswered,
    /// reply_dropped, ...).
    pub fn attempt(&self, w: &Where, outcome: &str) {
        self.attempts.with(w, [outcome], true, |c| {
            c.inc();
        });
    }

    /// A failed attempt's verdict class (nothing_listening, loopback_only, firewall_drop, ...).
    pub fn failed_attempt_class(&self, w: &Where, class: &str) {
        self.failed_classes.with(w, [class], true, |c| {
            c.inc();
        });
    }

    /// The kernel dropped a packet for `reason` (SKB_DROP_REASON_ without the prefix).
    pub fn drop_reason(&self, w: &Where, reason: &str) {
        self.drops.with(w, [reason], true, |c| {
            c.inc();
        });
    }

    /// A firewall decided `verdict` on an attempt, in `scope`, by a rule of `concept`.
    pub fn firewall_verdict(&self, w: &Where, scope: FirewallScope, concept: &str, verdict: &str) {
        let labels = [scope.kind(), scope.name(), concept, verdict];
        self.firewall.with(w, labels, true, |c| {
            c.inc();
        });
    }

    /// `n` more attempts overflowed a listen queue.
    pub fn listen_overflows(&self, w: &Where, n: u64) {
        if n == 0 {
            return; // no series for nothing: it would take a cardinality place
        }
        self.listen_overflows.with(w, [], true, |c| {
            c.inc_by(n);
        });
    }

    /// `n` listening sockets in `w` are unreachable for `reason` now. A 0 for a series that
    /// does not exist creates none (most namespaces have no such listener and should not take
    /// a place); a 0 for one that exists sets it, so a fixed listener reads 0, not stale.
    ///
    /// Folded (`Where::other()`) the gauge holds the last value any folded namespace set,
    /// not their sum: `reach_label_sets_folded_total` says when that happens.
    pub fn set_unreachable_listeners(&self, w: &Where, reason: UnreachableReason, n: i64) {
        self.unreachable.with(w, [reason.as_str()], n != 0, |g| {
            g.set(n);
        });
    }

    /// `all` more events were lost to full ring buffers, `syn` of them SYN events.
    pub fn events_lost(&self, all: u64, syn: u64) {
        let syn = syn.min(all);
        add(&self.events_lost, "syn", syn);
        add(&self.events_lost, "other", all - syn);
    }

    /// The in-kernel rate limit suppressed `syn` SYN events and `other` other events.
    pub fn events_suppressed(&self, syn: u64, other: u64) {
        add(&self.events_suppressed, "syn", syn);
        add(&self.events_suppressed, "other", other);
    }

    /// Namespace `w` is watched with `n` interfaces tapped (always a series, 0 included: it
    /// says the namespace is watched). Set to 0 when it is gone, removed after the grace.
    pub fn set_namespace_interfaces(&self, w: &Where, n: i64) {
        self.namespace_interfaces.with(w, [], true, |g| {
            g.set(n);
        });
    }

    /// How many namespaces and interfaces reach watches now.
    pub fn set_watched(&self, namespaces: i64, interfaces: i64) {
        self.watched_namespaces.set(namespaces);
        self.watched_interfaces.set(interfaces);
    }

    /// Namespace `netns` (and its pod) is gone as of `now`: its series are removed by the first
    /// `expire` at or after `now + grace`.
    pub fn gone(&self, netns: &str, now: Instant) {
        if !self.expiry.gone(netns, now, |n| self.has_netns(n)) {
            tracing::debug!(netns, "metrics: too many gone namespaces pending; its series stay");
        }
    }

    /// Namespace `netns` came back before its grace ended: its series stay.
    pub fn back(&self, netns: &str) {
        self.expiry.back(netns);
    }

    /// Removes the series of every namespace whose grace ended by `now` (the agent calls this
    /// every second).
    pub fn expire(&self, now: Instant) {
        for netns in self.expiry.due(now) {
            let removed = self.syn.remove_netns(&netns)
                + self.attempts.remove_netns(&netns)
                + self.failed_classes.remove_netns(&netns)
                + self.drops.remove_netns(&netns)
                + self.firewall.remove_netns(&netns)
                + self.listen_overflows.remove_netns(&netns)
                + self.unreachable.remove_netns(&netns)
                + self.namespace_interfaces.remove_netns(&netns);
            tracing::debug!(netns, removed, "metrics: gone namespace's series removed");
        }
    }

    /// The exposition in OpenMetrics 1.0.0 text (serve it as `OPENMETRICS_CONTENT_TYPE`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and no label encoder here returns an error.
        if let Err(e) = text::encode(&mut out, &self.registry) {
            tracing::warn!("metrics: encoding failed: {e}");
        }
        out
    }

    /// The exposition in Prometheus' classic text format 0.0.4 (serve it as
    /// `PROMETHEUS_TEXT_CONTENT_TYPE`), for scrapers that do not ask for OpenMetrics.
    pub fn encode_prometheus_text(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!("metrics: encoding failed: {e}");
        }
        out
    }

    fn has_netns(&self, netns: &str) -> bool {
        self.syn.has_netns(netns)
            || self.attempts.has_netns(netns)
            || self.failed_classes.has_netns(netns)
            || self.drops.has_netns(netns)
            || self.firewall.has_netns(netns)
            || self.listen_overflows.has_netns(netns)
            || self.unreachable.has_netns(netns)
            || self.namespace_interfaces.has_netns(netns)
    }
}

fn add(family: &super::families::KindFamily, kind: &'static str, n: u64) {
    if n > 0 {
        family.get_or_create(&[("kind", kind)]).inc_by(n);
    }
}
