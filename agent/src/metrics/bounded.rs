//! A `Where`-keyed metric family whose size is bounded whatever reach observes: the agent runs
//! through SYN floods and namespace churn, and every series costs memory here and in Prometheus.
//!
//! Three bounds, each folding into an `"other"` series rather than dropping the observation
//! (so the totals stay right) and each counted in `reach_label_sets_folded_total`:
//! - at most `max_label_sets` distinct `Where` per family, first come, first served; a place
//!   frees when that namespace's series expire (`remove_netns`). Beyond, observations go to
//!   `Where::other()` (`bound="namespaces"`);
//! - at most `MAX_VALUES_PER_KEY` distinct values per family-specific label key (outcome,
//!   reason, …), which callers already bound; this only catches a caller's bug. Values are
//!   never forgotten: the vocabularies are closed (kernel drop reasons, verdict classes, zone
//!   names), so a value that stops appearing does not need its place back (`bound="values"`);
//! - at most `MAX_SERIES_PER_WHERE` series per `Where`, so several keys' values multiplied
//!   cannot blow up one namespace (`bound="values"` too).
//!
//! So a family holds at most (max_label_sets + 1) × (MAX_SERIES_PER_WHERE + 1) series.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::labels::{Series, Where};

/// The value every folded label takes.
pub(crate) const OTHER: &str = "other";
/// Distinct values per label key per family before folding into `"other"`.
pub(crate) const MAX_VALUES_PER_KEY: usize = 256;
/// Distinct label-value combinations per `Where` per family before folding into all-`"other"`.
pub(crate) const MAX_SERIES_PER_WHERE: usize = 1024;

/// `reach_label_sets_folded_total`'s labels: which family, which bound.
pub(crate) type FoldedLabels = [(&'static str, &'static str); 2];

pub(crate) struct Bounded<M, const N: usize> {
    /// The exported family (registered under `name`); `state` holds a handle to each series.
    family: Family<Series<N>, M>,
    name: &'static str,
    keys: [&'static str; N],
    max_label_sets: usize,
    folded: Family<FoldedLabels, Counter>,
    state: Mutex<State<M, N>>,
}

struct State<M, const N: usize> {
    /// The admitted `Where`s (at most `max_label_sets`) and the handles of their series: the
    /// index `Family` does not offer, needed to remove a namespace's series, and it makes the
    /// hot path a lookup without the family's lock or any allocation.
    wheres: HashMap<Arc<Where>, Place<M, N>>,
    /// The fold target's series; never expires (it is no namespace's).
    other: Place<M, N>,
    /// Values seen per label key (interned: series share them).
    seen: [HashSet<Arc<str>>; N],
    other_value: Arc<str>,
}

/// One `Where`'s series.
struct Place<M, const N: usize> {
    w: Arc<Where>,
    series: HashMap<[Arc<str>; N], M>,
}

impl<M, const N: usize> Place<M, N> {
    fn new(w: Arc<Where>) -> Self {
        Place { w, series: HashMap::new() }
    }
}

impl<M: Clone + Default, const N: usize> Bounded<M, N>
where
    Series<N>: Clone + std::hash::Hash + Eq,
{
    pub fn new(
        name: &'static str,
        keys: [&'static str; N],
        max_label_sets: usize,
        folded: Family<FoldedLabels, Counter>,
    ) -> Self {
        Bounded {
            family: Family::default(),
            name,
            keys,
            max_label_sets,
            folded,
            state: Mutex::new(State {
                wheres: HashMap::new(),
                other: Place::new(Arc::new(Where::other())),
                seen: std::array::from_fn(|_| HashSet::new()),
                other_value: Arc::from(OTHER),
            }),
        }
    }

    /// The family, to register it.
    pub fn family(&self) -> Family<Series<N>, M> {
        self.family.clone()
    }

    /// Applies `f` to the series of `w` and `values`, creating it (within the bounds) when
    /// `create`; without `create` a missing series is left missing (a gauge set to 0 need not
    /// take a place).
    pub fn with(&self, w: &Where, values: [&str; N], create: bool, f: impl FnOnce(&M)) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut folded_values = false;
        let mut interned: [Arc<str>; N] = std::array::from_fn(|_| state.other_value.clone());
        for (i, value) in values.iter().enumerate() {
            let seen = &mut state.seen[i];
            if let Some(known) = seen.get(*value) {
                interned[i] = known.clone();
            } else if !create {
                return;
            } else if seen.len() < MAX_VALUES_PER_KEY {
                let new: Arc<str> = Arc::from(*value);
                seen.insert(new.clone());
                interned[i] = new;
            } else {
                folded_values = true;
            }
        }

        let place = if *w == *state.other.w {
            // A caller's own "other" is the fold target: one series, never a place of its own.
            &mut state.other
        } else if state.wheres.contains_key(w) {
            match state.wheres.get_mut(w) {
                Some(place) => place,
                None => return,
            }
        } else if !create {
            return;
        } else if state.wheres.len() < self.max_label_sets {
            let admitted = Arc::new(w.clone());
            state.wheres.entry(admitted.clone()).or_insert_with(|| Place::new(admitted))
        } else {
            self.fold("namespaces");
            &mut state.other
        };

        if !place.series.contains_key(&interned) {
            if !create {
                return;
            }
            if place.series.len() >= MAX_SERIES_PER_WHERE {
                interned = std::array::from_fn(|_| state.other_value.clone());
                folded_values = true;
            }
        }
        if folded_values {
            self.fold("values");
        }
        let family = &self.family;
        let keys = self.keys;
        let series_where = &place.w;
        let metric = place.series.entry(interned).or_insert_with_key(|values| {
            let w = series_where.clone();
            family.get_or_create_owned(&Series { w, keys, values: values.clone() })
        });
        f(metric);
    }

    /// Removes every series of namespace `netns` and frees its places; returns how many series.
    pub fn remove_netns(&self, netns: &str) -> usize {
        let mut state = self.lock();
        let mut removed = 0;
        state.wheres.retain(|w, place| {
            if w.netns != netns {
                return true;
            }
            for values in place.series.keys() {
                let key = Series { w: w.clone(), keys: self.keys, values: values.clone() };
                removed += usize::from(self.family.remove(&key));
            }
            false
        });
        removed
    }

    /// Whether any series of namespace `netns` exists.
    pub fn has_netns(&self, netns: &str) -> bool {
        self.lock().wheres.keys().any(|w| w.netns == netns)
    }

    /// How many `Where` places are taken (for tests and the bound's documentation).
    #[cfg(test)]
    pub fn places(&self) -> usize {
        self.lock().wheres.len()
    }

    fn fold(&self, bound: &'static str) {
        self.folded.get_or_create(&[("metric", self.name), ("bound", bound)]).inc();
    }

    fn lock(&self) -> MutexGuard<'_, State<M, N>> {
        // A panic while holding the lock leaves the maps consistent (each update is one insert
        // or remove), so a poisoned lock is still usable: metrics must not take the agent down.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
