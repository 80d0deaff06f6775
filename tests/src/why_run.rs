//! What the `reach why` tests against a lab server share: starting `reach why` on the server's
//! namespace, reading its one JSON object, the leftover snapshot of the server side, and the
//! evidence/fix lines of the JSON.
use reach_agent::lab::TwoHosts;
use serde_json::Value;

use crate::{
    WatchRun,
    leftovers::{Leftovers, Scope},
};

/// `reach why TARGET --netns <server> --timeout 30 --json`, started and ready for the client.
pub fn start(hosts: &TwoHosts, target: &str) -> WatchRun {
    let args = [target, "--netns", hosts.server.name(), "--timeout", "30", "--json"];
    WatchRun::start_command("why", &args, "waiting for a SYN")
}

/// Waits for the run to end: its exit code (-1 when killed), its JSON, its stderr.
pub fn finish(run: WatchRun) -> (i32, Value, String) {
    let (code, out, stderr) = run.finish_raw();
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{out}\nstderr:\n{stderr}"));
    (code.unwrap_or(-1), v, stderr)
}

/// What reach can leave in the server namespace, on lo and the server's veth. Take it after
/// the test's own rules or filters are in place: only what reach adds counts.
pub fn leftovers(hosts: &TwoHosts) -> Leftovers<'_> {
    Leftovers::snapshot(&Scope { netns: Some(&hosts.server), ifaces: &["lo", TwoHosts::SERVER_IF] })
}

/// What reach can leave in another namespace it watched (one NAT sends the attempt to), on
/// `ifaces` there.
pub fn leftovers_in<'a>(ns: &'a reach_agent::lab::NetNs, ifaces: &'a [&'a str]) -> Leftovers<'a> {
    Leftovers::snapshot(&Scope { netns: Some(ns), ifaces })
}

/// The strings of the JSON array `key` (`evidence`, `fix`).
pub fn lines(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array in {v:#}"))
        .iter()
        .map(|l| l.as_str().expect("a string").to_string())
        .collect()
}
