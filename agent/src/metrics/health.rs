//! Liveness and readiness, as the agent's kubelet probes see them (`/healthz`, `/readyz`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Shared, cheap to clone. Starts live and not ready: the agent sets ready once its probes are
/// attached and its first namespace scan is done, and not live when it cannot recover (the
/// kubelet then restarts the pod).
#[derive(Clone, Debug)]
pub struct Health(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    live: AtomicBool,
    ready: AtomicBool,
    /// What `/readyz` says while not ready.
    not_ready: Mutex<String>,
}

const STARTING: &str = "starting: probes not attached or first namespace scan not done yet";

impl Default for Health {
    fn default() -> Self {
        Health(Arc::new(Inner {
            live: AtomicBool::new(true),
            ready: AtomicBool::new(false),
            not_ready: Mutex::new(STARTING.to_owned()),
        }))
    }
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_live(&self, live: bool) {
        self.0.live.store(live, Ordering::Relaxed);
    }

    /// Ready or not; not ready keeps the last reason given (`set_not_ready`) or the start-up one.
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Relaxed);
    }

    /// Not ready, and why (shown by `/readyz`, e.g. "re-attaching after a BPF map error").
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.reason_lock() = reason.into();
        self.set_ready(false);
    }

    pub fn is_live(&self) -> bool {
        self.0.live.load(Ordering::Relaxed)
    }

    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Relaxed)
    }

    /// Why not ready (meaningful while `!is_ready()`).
    pub fn not_ready_reason(&self) -> String {
        self.reason_lock().clone()
    }

    fn reason_lock(&self) -> std::sync::MutexGuard<'_, String> {
        self.0.not_ready.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_live_not_ready_and_keeps_the_reason() {
        let h = Health::new();
        let seen_by_server = h.clone();
        assert!(seen_by_server.is_live() && !seen_by_server.is_ready());
        assert!(seen_by_server.not_ready_reason().starts_with("starting"));
        h.set_ready(true);
        assert!(seen_by_server.is_ready());
        h.set_not_ready("re-attaching");
        assert!(!seen_by_server.is_ready());
        assert_eq!(seen_by_server.not_ready_reason(), "re-attaching");
        h.set_live(false);
        assert!(!seen_by_server.is_live());
    }
}
