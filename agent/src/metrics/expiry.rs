//! When a gone namespace's series go: a namespace (and so its pod) that disappears keeps its
//! series for `grace`, so the last increments are scraped and a namespace that comes back soon
//! (a container restart re-using the name) keeps counting without a reset; after `grace` its
//! series are removed, which frees its cardinality places and Prometheus marks them stale.
//!
//! Time is passed in (`Instant`s), never read here, so tests drive it without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct Expiry {
    grace: Duration,
    /// Gone namespaces and when they went; bounded by `cap`.
    pending: Mutex<HashMap<String, Instant>>,
    cap: usize,
}

impl Expiry {
    /// `cap` bounds the pending list (namespace churn must not grow it): it only ever needs the
    /// namespaces that hold series, of which the families hold at most a known number.
    pub fn new(grace: Duration, cap: usize) -> Self {
        Expiry { grace, pending: Mutex::new(HashMap::new()), cap }
    }

    /// Records that `netns` went at `now`. A second `gone` keeps the first time (the grace runs
    /// from when it first went). When the list is full, namespaces that hold no series are
    /// dropped from it (they have nothing to remove); returns false if `netns` still found no
    /// room, which the cap makes impossible for a namespace that holds series.
    pub fn gone(&self, netns: &str, now: Instant, has_series: impl Fn(&str) -> bool) -> bool {
        let mut pending = self.lock();
        if pending.contains_key(netns) {
            return true;
        }
        if pending.len() >= self.cap {
            pending.retain(|n, _| has_series(n));
            if pending.len() >= self.cap {
                return false;
            }
        }
        pending.insert(netns.to_owned(), now);
        true
    }

    /// `netns` came back: its series stay.
    pub fn back(&self, netns: &str) {
        self.lock().remove(netns);
    }

    /// Takes the namespaces whose grace ended by `now`.
    pub fn due(&self, now: Instant) -> Vec<String> {
        let mut pending = self.lock();
        let mut due = Vec::new();
        // saturating: an `Instant` before the gone time (a caller's clock mix-up) is not due.
        pending.retain(|netns, went| {
            let over = now.saturating_duration_since(*went) >= self.grace;
            if over {
                due.push(netns.clone());
            }
            !over
        });
        due
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    #[test]
    fn due_once_grace_ended_not_before() {
        let e = Expiry::new(GRACE, 8);
        let t0 = Instant::now();
        assert!(e.gone("a", t0, |_| true));
        assert!(e.due(t0 + GRACE - Duration::from_millis(1)).is_empty());
        assert_eq!(e.due(t0 + GRACE), vec!["a".to_owned()]);
        assert!(e.due(t0 + 2 * GRACE).is_empty(), "taken once");
    }

    #[test]
    fn second_gone_keeps_first_time_and_back_cancels() {
        let e = Expiry::new(GRACE, 8);
        let t0 = Instant::now();
        e.gone("a", t0, |_| true);
        e.gone("a", t0 + GRACE, |_| true);
        assert_eq!(e.due(t0 + GRACE), vec!["a".to_owned()]);
        e.gone("b", t0, |_| true);
        e.back("b");
        assert!(e.due(t0 + 10 * GRACE).is_empty());
    }

    #[test]
    fn full_list_drops_namespaces_without_series() {
        let e = Expiry::new(GRACE, 2);
        let t0 = Instant::now();
        e.gone("empty1", t0, |_| true);
        e.gone("empty2", t0, |_| true);
        assert!(e.gone("busy", t0, |n| n == "busy"));
        // The list is full again (busy and busy2 hold series): a third finds no room.
        assert!(e.gone("busy2", t0, |n| n.starts_with("busy")));
        assert!(!e.gone("busy3", t0, |n| n.starts_with("busy")));
        let mut due = e.due(t0 + GRACE);
        due.sort();
        assert_eq!(due, vec!["busy".to_owned(), "busy2".to_owned()]);
    }
}
