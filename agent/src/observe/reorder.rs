//! Events of one connection arrive through different ring buffers (the SYN through a TC tap,
//! the handshake completion through the socket probes, the drop through the drop tracer), and
//! rings are read in whatever order the scheduler picks. The flow table needs kernel order, so
//! its inputs wait here and leave sorted by their kernel timestamp.
//!
//! An observation leaves only once *every* ring has been drained after its timestamp (each
//! reader reports the instant it started a drain, after the events of that drain): from then
//! on no ring can still hold an earlier event. A fixed delay would not do: when the session is
//! busy (the listener snapshot walking /proc, a slow firewalld query) the channel backs up, and
//! a handshake completion read early would be judged before the SYN-ACK still queued behind it.
use std::{cmp::Reverse, collections::BinaryHeap};

use crate::model::flows::Observation;

/// Covers the gap between a probe taking its timestamp and submitting the record (a drain that
/// starts inside it cannot see the record yet). Microseconds on bare metal; a VM's vCPU can be
/// descheduled there by its host for tens of milliseconds.
pub const SUBMIT_SLACK_NS: u64 = 100_000_000;

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

pub struct Reorder {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// Per ring: when its latest reported drain started (boot-time ns; 0 = not yet drained);
    /// None once the ring was removed (its namespace is gone). Ids are never reused, so a late
    /// report from a removed ring cannot move another ring's horizon.
    drained: Vec<Option<u64>>,
}

impl Reorder {
    /// A buffer for observations from `rings` ring buffers, numbered `0..rings`.
    pub fn new(rings: usize) -> Self {
        Self { heap: BinaryHeap::new(), seq: 0, drained: vec![Some(0); rings] }
    }

    /// A ring added while running (a namespace that appeared): its id. Until its first drain
    /// it holds the horizon back (at most one reader poll), as the first rings do at start.
    pub fn add_ring(&mut self) -> usize {
        self.drained.push(Some(0));
        self.drained.len() - 1
    }

    /// Ring `ring` is gone (its reader drained it for the last time and ended): it no longer
    /// holds the horizon back.
    pub fn remove_ring(&mut self, ring: usize) {
        if let Some(d) = self.drained.get_mut(ring) {
            *d = None;
        }
    }

    pub fn push(&mut self, ts: u64, obs: Observation) {
        self.seq += 1;
        self.heap.push(Reverse(Entry { ts, seq: self.seq, obs }));
    }

    /// Ring `ring` was drained from `at_ns` on: every event it holds from before that has
    /// been pushed.
    pub fn drained(&mut self, ring: usize, at_ns: u64) {
        if let Some(Some(d)) = self.drained.get_mut(ring) {
            *d = (*d).max(at_ns);
        }
    }

    /// The instant up to which every ring's events have been pushed: observations up to it
    /// are final, and silence up to it is real silence.
    pub fn horizon(&self) -> u64 {
        self.drained.iter().flatten().copied().min().unwrap_or(0).saturating_sub(SUBMIT_SLACK_NS)
    }

    /// Observations up to [`Self::horizon`], oldest first.
    pub fn ready(&mut self) -> Vec<Observation> {
        self.pop_while(self.horizon())
    }

    /// Every observation, oldest first: at stop, after every ring was drained for the last time.
    pub fn flush(&mut self) -> Vec<Observation> {
        self.pop_while(u64::MAX)
    }

    fn pop_while(&mut self, horizon: u64) -> Vec<Observation> {
        let mut out = Vec::new();
        while self.heap.peek().is_some_and(|Reverse(e)| e.ts <= horizon) {
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

    const MS: u64 = 1_000_000;

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

    fn est(ts: u64) -> Observation {
        Observation::Established(Established {
            netns: 1,
            family: Family::V4,
            saddr: [10, 0, 0, 2].into(),
            sport: 5,
            daddr: [10, 0, 0, 1].into(),
            dport: 80,
            at_ns: ts,
        })
    }

    #[test]
    fn releases_in_timestamp_order_once_every_ring_is_drained_past_it() {
        let (sock, packets) = (0, 1);
        let mut r = Reorder::new(2);
        r.push(1_000 * MS + 300, est(1_000 * MS + 300)); // read first, happened second
        r.drained(sock, 5_000 * MS);
        assert!(r.ready().is_empty(), "the packet ring may still hold earlier events");
        r.push(1_000 * MS + 100, syn(1_000 * MS + 100));
        r.drained(packets, 1_050 * MS);
        assert!(r.ready().is_empty(), "inside the submit slack nothing leaves");
        r.drained(packets, 1_000 * MS + 300 + SUBMIT_SLACK_NS);
        let out = r.ready();
        assert!(matches!(out.as_slice(), [Observation::Syn(_), Observation::Established(_)]));
    }

    #[test]
    fn a_stalled_ring_holds_everything_back_however_late_it_gets() {
        // The session was busy for seconds: the established event was read long before the
        // packet ring's SYN. A wall-clock window would have released it alone.
        let mut r = Reorder::new(2);
        r.push(10 * MS, est(10 * MS));
        for t in 1..100 {
            r.drained(0, t * 100 * MS);
            assert!(r.ready().is_empty());
        }
        r.push(9 * MS, syn(9 * MS));
        r.drained(1, 10_000 * MS);
        assert!(matches!(r.ready().as_slice(), [Observation::Syn(_), Observation::Established(_)]));
    }

    #[test]
    fn drains_reported_out_of_order_never_move_the_horizon_back() {
        let mut r = Reorder::new(1);
        r.drained(0, 900 * MS);
        r.drained(0, 400 * MS);
        assert_eq!(r.horizon(), 900 * MS - SUBMIT_SLACK_NS);
        r.drained(7, u64::MAX); // not a ring of this session: ignored
        assert_eq!(r.horizon(), 900 * MS - SUBMIT_SLACK_NS);
    }

    #[test]
    fn a_ring_added_later_holds_back_until_drained_and_a_removed_one_no_longer_does() {
        let mut r = Reorder::new(1);
        r.drained(0, 5_000 * MS);
        r.push(1_000 * MS, syn(1_000 * MS));
        let late = r.add_ring();
        assert_eq!(late, 1);
        assert!(r.ready().is_empty(), "the new ring may hold earlier events until drained");
        r.drained(late, 5_000 * MS);
        assert_eq!(r.ready().len(), 1);
        r.push(4_000 * MS, syn(4_000 * MS));
        let gone = r.add_ring();
        assert!(r.ready().is_empty());
        r.remove_ring(gone);
        assert_eq!(r.ready().len(), 1, "a removed ring must not stall the others");
        // A straggling report from the removed ring changes nothing.
        r.drained(gone, 1);
        assert_eq!(r.horizon(), 5_000 * MS - SUBMIT_SLACK_NS);
    }

    #[test]
    fn flush_releases_everything() {
        let mut r = Reorder::new(3);
        r.push(5, syn(5));
        r.push(3, est(3));
        assert_eq!(r.horizon(), 0);
        assert!(matches!(r.flush().as_slice(), [Observation::Established(_), Observation::Syn(_)]));
    }
}
