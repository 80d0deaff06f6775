//! `reach watch`'s sink: every observation of the session becomes one line, JSON or text.
use std::io::Write;

use super::render;
use crate::{
    model::flows::FlowRecord,
    netns::names::Names,
    observe::{
        changes,
        session::{Event, Overflow, Sink, VerdictRecord},
    },
};

pub struct Printer<W: Write> {
    pub out: W,
    pub json: bool,
}

impl<W: Write> Sink for Printer<W> {
    fn event(&mut self, names: &mut Names, e: Event<'_>) -> anyhow::Result<()> {
        let (out, json) = (&mut self.out, self.json);
        match e {
            Event::Existing(view) => render::line(out, json, view, || {
                format!(
                    "{:<12} {:<12} {:<20}{}",
                    "(before)",
                    "listener",
                    view.netns.name,
                    view.human()
                )
            }),
            Event::Sock(obs) => render::observation(out, obs, json),
            Event::Packet(p) => render::line(out, json, p, || render::packet_line(p)),
            Event::Verdict(v) => render::line(out, json, &v.json, || verdict_line(&v.json)),
            Event::Flow(rec, fw) => print_flow(out, rec, names, json, fw),
            Event::Overflow(o) => render::line(out, json, o, || overflow_line(o)),
            Event::Lost { .. }
            | Event::Suppressed(..)
            | Event::Firewalld(_)
            | Event::Tap(_)
            | Event::TraceRestored(_)
            | Event::NetnsGone(_) => {
                let c = changes::of(&e).expect("every one of these is a change");
                render::line(out, json, &c.json, || c.line)
            }
        }
    }
}

fn overflow_line(o: &Overflow) -> String {
    let who: Vec<String> = o
        .full_listeners
        .iter()
        .map(|l| format!("{} ({})", l.endpoint(), l.comm.as_deref().unwrap_or("?")))
        .collect();
    format!(
        "!! {}: listen queue overflow — {} SYNs refused silently (ListenOverflows +{}, ListenDrops +{}); full: {}",
        o.netns.name,
        o.listen_drops.max(o.listen_overflows),
        o.listen_overflows,
        o.listen_drops,
        if who.is_empty() { "no listener full right now".into() } else { who.join(", ") }
    )
}

fn verdict_line(v: &serde_json::Value) -> String {
    let tuple = &v["tuple"];
    let ep = |addr: &serde_json::Value, port: &serde_json::Value| {
        crate::output::endpoint::endpoint(addr.as_str(), port)
    };
    let mut line = format!(
        "{:<12} {:<12} {:<20} {} → {} {} in {} {}{}",
        "",
        "nft_verdict",
        v["netns"]["name"].as_str().unwrap_or("?"),
        ep(&tuple["saddr"], &tuple["sport"]),
        ep(&tuple["daddr"], &tuple["dport"]),
        v["verdict"].as_str().unwrap_or("undecided"),
        v["table"].as_str().unwrap_or("-"),
        v["chain"].as_str().unwrap_or("-"),
        v["rule_handle"].as_u64().map(|h| format!(" rule handle {h}")).unwrap_or_else(|| {
            if v["by_policy"] == true { " (chain policy)".into() } else { String::new() }
        }),
    );
    if let Some(summary) = v["firewalld"]["summary"].as_str() {
        line.push_str(&format!("\n{:<12} {:<12} firewalld: {summary}", "", ""));
        for cmd in v["firewalld"]["fix"].as_array().into_iter().flatten().filter_map(|c| c.as_str())
        {
            line.push_str(&format!("\n{:<12} {:<12} fix: {cmd}", "", ""));
        }
    }
    line
}

fn print_flow(
    out: &mut impl Write,
    rec: &FlowRecord,
    names: &mut Names,
    json: bool,
    firewall: Option<&VerdictRecord>,
) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(rec)?;
    if let Some(fw) = firewall.map(|f| &f.json) {
        v["firewall"] = serde_json::json!({
            "verdict": fw["verdict"], "table": fw["table"], "chain": fw["chain"], "rule_handle": fw["rule_handle"],
            "firewalld": fw["firewalld"],
        });
    }
    // The table keys namespaces by inode; the output names them like every other line.
    v["netns"] = serde_json::json!({"inode": rec.netns, "name": names.name(rec.netns)});
    render::line(out, json, &v, || {
        let evidence = rec
            .drop
            .as_ref()
            .map(|d| {
                format!(
                    " reason {}{}",
                    d.reason,
                    d.location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default()
                )
            })
            .unwrap_or_default();
        // The server's answer that died on its way out (the attempt's outcome cannot say it).
        let reply = rec
            .reply_drop
            .as_ref()
            .map(|d| {
                format!(
                    "; its {} was dropped: reason {}{}",
                    d.segment.name(),
                    d.reason,
                    d.location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default()
                )
            })
            .unwrap_or_default();
        format!(
            "{:<12} {:<12} {:<20} {} → {} {} ({} SYN{}){}{reply}",
            "",
            "flow",
            names.name(rec.netns),
            rec.client,
            rec.server,
            serde_json::to_value(rec.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            rec.syn_count,
            if rec.syn_count == 1 { "" } else { "s" },
            evidence
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::firewalld_cache::{Change, ChangeReport};

    fn report(change: Change, version: Option<&str>, error: Option<&str>) -> ChangeReport {
        ChangeReport {
            change,
            signal: if change == Change::Changed { "RichRuleAdded" } else { "Reloaded" }.into(),
            version: version.map(str::to_string),
            view: version.is_some(),
            error: error.map(str::to_string),
            reads: 2,
        }
    }

    fn printed(json: bool, c: &ChangeReport) -> String {
        let mut p = Printer { out: Vec::new(), json };
        p.event(&mut Names::new(), Event::Firewalld(c)).unwrap();
        String::from_utf8(p.out).unwrap()
    }

    /// One line per change, in text and in JSON (`type` firewalld, the README's contract).
    #[test]
    fn a_firewalld_change_is_one_line() {
        let reloaded = report(Change::Reloaded, Some("1.3.3"), None);
        assert_eq!(
            printed(false, &reloaded),
            "!! firewalld reloaded its configuration: attribution uses firewalld 1.3.3's new configuration\n"
        );
        let v: serde_json::Value = serde_json::from_str(printed(true, &reloaded).trim()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "firewalld", "change": "reloaded", "signal": "Reloaded",
                "version": "1.3.3", "view": true, "error": null, "reads": 2})
        );
        let stopped = report(Change::Stopped, None, Some("no owner"));
        assert_eq!(
            printed(false, &stopped),
            "!! firewalld stopped: naming rules from nftables only until it starts again\n"
        );
        let failed = report(Change::Started, None, Some("timed out"));
        assert!(printed(false, &failed).contains("could not be read (timed out)"));
        let changed = report(Change::Changed, Some("2.3.1"), None);
        assert!(printed(false, &changed).starts_with(
            "!! firewalld changed its runtime configuration (RichRuleAdded): attribution uses firewalld 2.3.1's"
        ));
        assert_eq!(printed(false, &stopped).lines().count(), 1);
    }
}
