//! What each start-up phase of a long-running command costs: wall time and the process's
//! resident memory after it, reported as one `--log info` line (and kept for tests and
//! benchmarks that ask for them).
use std::time::{Duration, Instant};

/// Start-up phases in the order they ran.
pub struct Phases {
    start: Instant,
    last: Instant,
    done: Vec<Phase>,
}

#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub took: Duration,
    /// VmRSS after the phase, KiB (0 where /proc/self/status cannot be read).
    pub rss_kib: u64,
}

impl Default for Phases {
    fn default() -> Self {
        Self::new()
    }
}

impl Phases {
    pub fn new() -> Self {
        let now = Instant::now();
        Self { start: now, last: now, done: Vec::new() }
    }

    /// Ends the phase running since the previous mark (or the start).
    pub fn mark(&mut self, name: impl Into<String>) {
        let now = Instant::now();
        self.done.push(Phase { name: name.into(), took: now - self.last, rss_kib: rss_kib() });
        self.last = now;
    }

    pub fn total(&self) -> Duration {
        self.last - self.start
    }

    pub fn phases(&self) -> &[Phase] {
        &self.done
    }

    /// `start-up 212 ms: probe 40 ms (9 MiB), binds 60 ms (14 MiB), ...`
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|p| {
                format!(
                    "{} {} ms ({:.1} MiB)",
                    p.name,
                    p.took.as_millis(),
                    p.rss_kib as f64 / 1024.0
                )
            })
            .collect();
        format!("start-up {} ms: {}", self.total().as_millis(), parts.join(", "))
    }
}

/// This process's resident set (VmRSS), KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_and_read_the_resident_set() {
        let mut p = Phases::new();
        std::thread::sleep(Duration::from_millis(5));
        p.mark("first");
        p.mark("second");
        assert_eq!(p.phases().len(), 2);
        assert!(p.phases()[0].took >= Duration::from_millis(5));
        assert_eq!(p.total(), p.phases().iter().map(|x| x.took).sum::<Duration>());
        assert!(p.phases()[1].rss_kib > 0, "VmRSS of a running test process");
        let s = p.summary();
        assert!(
            s.starts_with("start-up ") && s.contains("first ") && s.contains(", second "),
            "{s}"
        );
    }
}
