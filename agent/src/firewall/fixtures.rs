//! The firewalld recordings the unit tests parse, inside the repository
//! (`tests/fixtures/firewalld-1.3.3/`, recorded by `cargo xtask record-fixtures`; see
//! tests/fixtures/README.md): `nft` rulesets after each firewalld step and `nft monitor trace`
//! captures of single client SYNs, in the lab's two-host topology.
use super::nftables::Ruleset;

/// The recording's folder (one firewalld version).
pub(crate) const RECORDING: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/firewalld-1.3.3");

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
    let path = format!("{RECORDING}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("recorded fixture {name} not found at {path}: {e} (`cargo xtask record-fixtures` records it)")
    })
}

/// The ruleset `nft -j list ruleset` printed after `step`.
pub(crate) fn recorded(step: &str) -> Ruleset {
    let name = format!("rulesets/{step}.json");
    Ruleset::from_json(&fixture(&name)).unwrap_or_else(|e| panic!("{name}: {e}"))
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
    let text = fixture(&format!("nft-traces/{case}.trace.txt"));
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
