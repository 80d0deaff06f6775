//! Events of one connection arrive through different ring buffers (the SYN through a TC tap,
//! the handshake completion through the socket probes, the drop through the drop tracer), and
//! rings are read in whatever order the scheduler picks. The flow table needs kernel order, so
//! its inputs wait here for a short window and leave sorted by their kernel timestamp.
use std::{cmp::Reverse, collections::BinaryHeap};

use crate::model::flows::Observation;

/// How long an observation waits for earlier ones still sitting in another ring. Rings are
/// drained continuously (packet rings at least every 50 ms), so this covers several scheduling
/// rounds even on a loaded machine; flow lines appear this much later.
pub const WINDOW_NS: u64 = 500_000_000;

struct Entry {
    ts: u64,
    seq: u64,
    obs: Observation,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.seq) == (o.ts, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(o.ts, o.seq))
    }
}

#[derive(Default)]
pub struct Reorder {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl Reorder {
    pub fn push(&mut self, ts: u64, obs: Observation) {
        self.seq += 1;
        self.heap.push(Reverse(Entry { ts, seq: self.seq, obs }));
    }

    /// Observations older than `now - WINDOW_NS`, oldest first (`now == u64::MAX`: all).
    pub fn ready(&mut self, now: u64) -> Vec<Observation> {
        let horizon = now.saturating_sub(WINDOW_NS);
        let mut out = Vec::new();
        while self.heap.peek().is_some_and(|Reverse(e)| now == u64::MAX || e.ts <= horizon) {
            if let Some(Reverse(e)) = self.heap.pop() {
                out.push(e.obs);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::flows::{Established, Family, SynSeen};

    fn syn(ts: u64) -> Observation {
        Observation::Syn(SynSeen {
            netns: 1,
            ifindex: 2,
            family: Family::V4,
            saddr: [10, 0, 0, 2].into(),
            sport: 5,
            daddr: [10, 0, 0, 1].into(),
            dport: 80,
            seq: 9,
            at_ns: ts,
        })
    }

    #[test]
    fn releases_in_timestamp_order_after_the_window() {
        let mut r = Reorder::default();
        let est = Observation::Established(Established {
            netns: 1,
            family: Family::V4,
            saddr: [10, 0, 0, 2].into(),
            sport: 5,
            daddr: [10, 0, 0, 1].into(),
            dport: 80,
            at_ns: 1_000_000_300,
        });
        r.push(1_000_000_300, est); // read first, happened second
        r.push(1_000_000_100, syn(1_000_000_100));
        assert!(r.ready(1_000_000_300).is_empty(), "inside the window nothing leaves");
        let out = r.ready(1_000_000_300 + WINDOW_NS);
        assert!(matches!(out.as_slice(), [Observation::Syn(_), Observation::Established(_)]));
        r.push(5, syn(5));
        assert_eq!(r.ready(u64::MAX).len(), 1, "flush at stop");
    }
}
