//! Evidence never contradicts itself: properties of [`diagnose`] over generated [`Evidence`].
//!
//! The hand-written tests (`tests.rs`) rehearse the stories someone thought of; these generate
//! the ones nobody did — listeners in several namespaces, of both protocols and families, bound
//! to wildcards, loopback, addresses of the namespace and others, v4-mapped, v6only, to devices,
//! sharing a binding through SO_REUSEPORT, beside every flow outcome, drop reason, firewall
//! decision, overflow, failed bind and port holder — and check that the one diagnosis told
//! agrees with the evidence it was given:
//!
//! - `listeners_are_never_denied`: no `no_listener`, "nothing listens" or "start the server"
//!   while a TCP socket of the SYN's namespace listens on the port, no
//!   `listener_in_other_netns` then either;
//! - `reachable_only_when_served`: `reachable` only for an accepted attempt, or, predicting,
//!   when the lookup model gives the SYN to a listener and no firewall decision refuses it;
//! - `fixes_name_what_exists`: a failure always has a fix, and every address, port, pid,
//!   namespace, interface and rule a fix names is in the evidence;
//! - `one_story`: the evidence lines, the path's failing hop and the fix tell the verdict's
//!   story, not another one;
//! - `tense_matches_the_attempt`: a prediction speaks in the conditional, an observed attempt
//!   in the past.
//!
//! `generate.rs` builds the evidence, `checks.rs` holds one checker per property (each reads the
//! evidence itself, not through the engine, and returns what it found wrong), `catches.rs`
//! feeds each checker a broken diagnosis to see it fail (`each_property_catches_*`) and checks
//! that the generator reaches every verdict. A shrunk failure becomes a plain regression test
//! in `tests.rs`. Generation is kept to what the kernel could report
//! (a v6only flag for every AF_INET6 socket, IPV6_V6ONLY set by binding one IPv6 address, a
//! `dropped` attempt has a SYN drop, ...), awkward corners included (`::ffff:0.0.0.0`, a
//! destination no interface has, a device that does not exist, a pending attempt with a drop).
use proptest::{prelude::*, test_runner::TestCaseError};

use super::{Evidence, diagnose};

mod catches;
mod checks;
mod generate;

use checks::*;
use generate::evidence;

/// Cases per property: enough to reach the rare combinations on almost every run (the first
/// bug found, a `::ffff:127.0.0.1` listener predicted reachable, shows in ~1 case in 1500), few
/// enough that the whole `diagnose::` suite stays within seconds. `PROPTEST_CASES` overrides it
/// for a longer hunt (60 000 per property pass in ~90 s).
const CASES: u32 = 4000;

/// Runs one checker on the diagnosis of `e`, printing both whole on a violation.
fn holds(name: &str, check: Check, e: &Evidence) -> Result<(), TestCaseError> {
    let d = diagnose(e);
    check(e, &d).map_err(|why| {
        TestCaseError::fail(format!("{name}: {why}\n\nevidence: {e:#?}\n\ndiagnosis: {d:#?}"))
    })
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(CASES);
    // Shrunk failures become plain regression tests in tests.rs, not files next to the source.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn prop_listeners_are_never_denied(e in evidence()) {
        holds("listeners_are_never_denied", listeners_are_never_denied, &e)?;
    }

    #[test]
    fn prop_reachable_only_when_served(e in evidence()) {
        holds("reachable_only_when_served", reachable_only_when_served, &e)?;
    }

    #[test]
    fn prop_fixes_name_what_exists(e in evidence()) {
        holds("fixes_name_what_exists", fixes_name_what_exists, &e)?;
    }

    #[test]
    fn prop_one_story(e in evidence()) {
        holds("one_story", one_story, &e)?;
    }

    #[test]
    fn prop_tense_matches_the_attempt(e in evidence()) {
        holds("tense_matches_the_attempt", tense_matches_the_attempt, &e)?;
    }
}
