//! The firewalld recordings the unit tests parse, inside the repository
//! (`tests/fixtures/firewalld-<version>/` for every version of [`VERSIONS`], recorded by `cargo
//! xtask record-fixtures` from the real firewalld of each; see tests/fixtures/README.md): `nft`
//! rulesets after each firewalld step and `nft monitor trace` captures of single client SYNs,
//! in the lab's two-host topology. The unversioned helpers read 1.3.3's ([`DEFAULT_VERSION`]).
use super::nftables::Ruleset;

/// The version the unversioned helpers ([`fixture`], [`recorded`], [`traced_syn`], …) read.
pub(crate) const DEFAULT_VERSION: &str = "1.3.3";

/// Every recorded firewalld version: the host package of the test bench (Debian 12's 1.3.3,
/// the 1.x chain scheme) and the trixie root's (2.3.1, the 2.0–2.4 scheme), each recorded with
/// the same steps.
pub(crate) const VERSIONS: &[&str] = &["1.3.3", "2.3.1"];

/// The recorded steps after [`STEPS`]: policies (06, 07) and zone targets ACCEPT and REJECT
/// (08, 09), recorded for every version too.
pub(crate) const POLICY_STEPS: &[&str] =
    &["06-policies", "07-policy-target-DROP", "08-target-ACCEPT", "09-target-REJECT"];

/// The traces recorded for every version (`nft-traces/<case>.trace.txt`) and the port of each
/// case's SYN.
pub(crate) const TRACES: &[(&str, u16)] = &[
    ("B-default-7777-notallowed", 7777),
    ("B-default-8080-allowed-listener-on-127", 8080),
    ("B-default-9090-rich-reject-tcp-reset", 9090),
    ("B-default-9191-rich-log-drop", 9191),
    ("B-default-9292-rich-accept-listener", 9292),
    ("C-DROP-7777-notallowed", 7777),
    ("C-DROP-8080-allowed-listener-on-127", 8080),
    ("D-policies-7070-policy-port", 7070),
    ("D-policies-7171-policy-rich-reject", 7171),
    ("D-policies-7272-anyhost-rich-accept", 7272),
    ("D-policies-7777-notallowed", 7777),
    ("E-policy-DROP-7070-policy-port", 7070),
    ("E-policy-DROP-7777-notallowed", 7777),
];

/// The folder of `version`'s recording.
pub(crate) fn recording_of(version: &str) -> String {
    format!("{}/../tests/fixtures/firewalld-{version}", env!("CARGO_MANIFEST_DIR"))
}

/// The server's interface, the client and the client's network of the recording
/// (`reach_agent::lab::TwoHosts`).
pub(crate) const SERVER_IF: &str = "srv0";
pub(crate) const CLIENT: &str = "10.77.0.2";
pub(crate) const CLIENT_NET: &str = "10.77.0.0/24";

/// The recorded steps, in order.
pub(crate) const STEPS: &[&str] = &[
    "00-baseline",
    "01-add-interface",
    "02-add-port",
    "03-add-rich-rules",
    "04-target-DROP-after-reload",
    "05-log-denied-all",
];

/// A recorded file (`rulesets/…` or `nft-traces/…`); a missing one fails the test naming where
/// it looked (a silent skip would hide that the parser is untested).
pub(crate) fn fixture(name: &str) -> String {
    fixture_in(DEFAULT_VERSION, name)
}

/// A recorded file of firewalld `version`'s recording; a missing one fails like [`fixture`].
pub(crate) fn fixture_in(version: &str, name: &str) -> String {
    let path = format!("{}/{name}", recording_of(version));
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("recorded fixture {name} not found at {path}: {e} (`cargo xtask record-fixtures` records it)")
    })
}

/// The ruleset `nft -j list ruleset` printed after `step`.
pub(crate) fn recorded(step: &str) -> Ruleset {
    let name = format!("rulesets/{step}.json");
    Ruleset::from_json(&fixture(&name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The ruleset `nft -j list ruleset` printed after `step` under firewalld `version`
/// (`tests/fixtures/firewalld-<version>/`).
pub(crate) fn recorded_in(version: &str, step: &str) -> Ruleset {
    let name = format!("rulesets/{step}.json");
    Ruleset::from_json(&fixture_in(version, &name))
        .unwrap_or_else(|e| panic!("firewalld-{version}/{name}: {e}"))
}

/// `nft -a list ruleset` after `step` (nft's own text, with handles).
pub(crate) fn recorded_text(step: &str) -> String {
    fixture(&format!("rulesets/{step}.nft"))
}

/// One rule line of a trace: `trace id ID FAMILY TABLE CHAIN rule TEXT # handle N (verdict V)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TracedRule {
    pub(crate) family: String,
    pub(crate) table: String,
    pub(crate) chain: String,
    pub(crate) text: String,
    pub(crate) handle: u64,
    /// `accept`, `drop`, `continue`, `jump CHAIN`, …
    pub(crate) verdict: String,
}

/// The rules the client's SYN to `port` matched, in order, from the capture `case`
/// (`nft-traces/<case>.trace.txt`). The SYN is the packet from [`CLIENT`] to `port` with only
/// SYN set; other packets of the capture (replies, the handshake's ACK) are left out.
pub(crate) fn traced_syn(case: &str, port: u16) -> Vec<TracedRule> {
    traced_syn_in(DEFAULT_VERSION, case, port)
}

/// [`traced_syn`] of firewalld `version`'s recording.
pub(crate) fn traced_syn_in(version: &str, case: &str, port: u16) -> Vec<TracedRule> {
    let text = fixture_in(version, &format!("nft-traces/{case}.trace.txt"));
    let syn = |l: &&str| {
        l.contains(" packet: ")
            && l.contains(&format!("ip saddr {CLIENT} "))
            && l.contains(&format!("tcp dport {port} "))
            && l.contains("tcp flags == syn ")
    };
    let id = text
        .lines()
        .find(syn)
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("{case}: no SYN from {CLIENT} to port {port}"));
    let prefix = format!("trace id {id} ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let mut words = l.splitn(4, ' ');
            let (family, table, chain, rest) =
                (words.next()?, words.next()?, words.next()?, words.next()?);
            let rest = rest.strip_prefix("rule ")?;
            let (text, tail) = rest.rsplit_once(" # handle ")?;
            let (handle, verdict) = tail.split_once(" (verdict ")?;
            Some(TracedRule {
                family: family.into(),
                table: table.into(),
                chain: chain.into(),
                text: text.into(),
                handle: handle.parse().ok()?,
                verdict: verdict.strip_suffix(')')?.into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every version holds every step and trace, each parseable, and recorded with the firewalld
    /// its folder is named for.
    #[test]
    fn every_version_has_every_step_and_trace() {
        for version in VERSIONS {
            let with = fixture_in(version, "recorded-with.txt");
            assert_eq!(
                with.lines().next(),
                Some(format!("firewalld {version}").as_str()),
                "{with}"
            );
            for step in STEPS.iter().chain(POLICY_STEPS) {
                let ruleset = recorded_in(version, step);
                assert!(
                    ruleset.chains.iter().any(|c| c.table == "firewalld"),
                    "{version} {step}: no firewalld chain"
                );
                let text = fixture_in(version, &format!("rulesets/{step}.nft"));
                assert!(text.contains("table inet firewalld"), "{version} {step}");
            }
            for (case, port) in TRACES {
                let rules = traced_syn_in(version, case, *port);
                let last = rules.iter().rfind(|r| r.table == "firewalld").unwrap_or_else(|| {
                    panic!("{version} {case}: the SYN matched no firewalld rule")
                });
                assert!(
                    last.verdict == "accept" || last.verdict == "drop",
                    "{version} {case}: the last firewalld rule did not decide: {last:?}"
                );
            }
        }
    }
}
