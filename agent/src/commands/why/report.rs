//! How `reach why` shows its answer: a short picture of the SYN's path with the failing hop
//! marked, the evidence, then the fix (colour only on a terminal); or one JSON object.
use std::{fmt::Write as _, io::IsTerminal as _};

use serde_json::json;

use super::target::Target;
use crate::{
    diagnose::{Diagnosis, Evidence},
    model::flows::FlowRecord,
    probes::sock_event::NetnsRef,
};

pub struct Report<'a> {
    pub target: Target,
    /// The TARGET name's resolution, when TARGET was a name.
    pub resolved: Option<&'a crate::resolve::Resolution>,
    pub netns: NetnsRef,
    pub diagnosis: &'a Diagnosis,
    pub attempt: Option<&'a FlowRecord>,
    pub evidence: &'a Evidence,
    /// The destination NAT the attempt went through, when one did.
    pub nat: Option<&'a crate::diagnose::nat::NatHop>,
    /// Seconds watched for the attempt; None: predicted without watching.
    pub watched_seconds: Option<f64>,
    /// What changed while watching (firewalld, interfaces, events lost, …), in order.
    pub changes: &'a [crate::observe::changes::Change],
}

pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    }
    fn good(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn bad(&self, s: &str) -> String {
        self.paint("1;31", s)
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

impl Report<'_> {
    pub fn json(&self) -> serde_json::Value {
        let d = self.diagnosis;
        let e = self.evidence;
        json!({
            "target": self.target_text(),
            "port": self.target.port,
            "netns": self.netns,
            "verdict": d.verdict,
            "exit_code": d.verdict.exit_code(),
            "headline": d.verdict.headline(),
            "evidence": d.evidence,
            "fix": d.fix,
            "path": d.path,
            "lookup": d.lookup,
            "attempt": self.attempt,
            "nat": self.nat,
            "listeners": e.listeners,
            "failed_binds": e.failed_binds,
            "port_holders": e.port_holders,
            "firewalld": e.prediction,
            "nft": e.attribution.as_ref().map(|a| json!({"firewalld": a})).or_else(|| e.netfilter.as_ref().map(|r| json!({"rule": r}))),
            "nft_reply": e.reply_netfilter.as_ref().map(|r| json!({"rule": r})),
            "overflow": e.overflow,
            "watched": self.watched_seconds.map(|s| json!({"ifaces": e.watched_ifaces, "seconds": s})),
            "wsl2": e.wsl.as_ref().map(|w| json!({"networking": w.wsl2.networking, "evidence": w.wsl2.evidence, "eth0_addr": w.eth0_addr})),
            "resolved": self.resolved.map(crate::resolve::Resolution::json),
            "changes": self.changes.iter().map(|c| &c.json).collect::<Vec<_>>(),
        })
    }

    /// TARGET as the user named it: `localhost:8080` for a name, else the address form.
    fn target_text(&self) -> String {
        match self.resolved {
            Some(r) => format!("{}:{}", r.name, self.target.port),
            None => self.target.to_string(),
        }
    }

    pub fn human(&self, colour: bool) -> String {
        let st = Style { on: colour };
        let d = self.diagnosis;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n{} {} in netns {}",
            st.bold("reach why"),
            self.target_text(),
            self.netns.name
        );
        // The picture: client ─▶ interface ─▶ firewall ─▶ socket, failing hop marked.
        let mut picture = Vec::new();
        let names = ["client", "interface", "firewall", "socket"];
        // A failing `reply` hop comes after the socket: the picture shows it then.
        for i in 0..names.len().max(d.path.len()) {
            let name = names.get(i).copied().unwrap_or("reply");
            let label = d.path.get(i).map(|h| h.name.as_str()).unwrap_or(name);
            picture.push(match d.path.get(i) {
                Some(h) if h.ok => st.good(label),
                Some(_) => st.bad(&format!("{label} ✗")),
                None => st.dim(label),
            });
        }
        let _ = writeln!(s, "\n  {}\n", picture.join(" ─▶ "));
        let width = d.path.iter().map(|h| h.name.chars().count()).max().unwrap_or(6);
        for h in &d.path {
            let mark = if h.ok { st.good("✓") } else { st.bad("✗") };
            let _ = writeln!(s, "  {mark} {:<width$}  {}", h.name, h.note);
        }
        for name in names.iter().skip(d.path.len()) {
            let _ = writeln!(s, "  {} {:<width$}  {}", st.dim("·"), name, st.dim("not reached"));
        }
        let verdict = serde_json::to_value(d.verdict)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let head = format!("{verdict}: {}", d.verdict.headline());
        let _ = writeln!(
            s,
            "\nverdict: {}",
            if d.verdict.exit_code() == 0 { st.good(&head) } else { st.bad(&head) }
        );
        if !d.evidence.is_empty() {
            let _ = writeln!(s, "\nevidence:");
            for line in &d.evidence {
                let _ = writeln!(s, "  - {line}");
            }
        }
        if !self.changes.is_empty() {
            let _ = writeln!(s, "\nwhile watching:");
            for c in self.changes {
                let _ = writeln!(s, "  - {}", c.line.trim_start_matches("!! "));
            }
        }
        if !d.fix.is_empty() {
            let _ = writeln!(s, "\n{}", st.bold("fix:"));
            for line in &d.fix {
                let _ = writeln!(s, "  → {line}");
            }
        }
        if self.watched_seconds.is_none() {
            let _ = writeln!(
                s,
                "\n{}",
                st.dim("(predicted without watching: run with --timeout to watch a real attempt)")
            );
        }
        s
    }
}
