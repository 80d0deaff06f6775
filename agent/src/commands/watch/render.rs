//! Rendering watch lines: one JSON object per line, or one aligned text line.
use std::io::Write;

use serde::Serialize;

use crate::probes::{packet_event::PacketObservation, sock_event::SockObservation};

/// Writes any serialisable line as JSON, or `text` for humans; flushes (output is a stream).
pub fn line(
    out: &mut impl Write,
    json: bool,
    value: &impl Serialize,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(value)?)?;
    } else {
        writeln!(out, "{}", text())?;
    }
    out.flush()?;
    Ok(())
}

pub fn observation(out: &mut impl Write, o: &SockObservation, json: bool) -> anyhow::Result<()> {
    line(out, json, o, || human_line(o))
}

pub fn human_line(o: &SockObservation) -> String {
    let endpoint = |a: &Option<String>, p: Option<u16>| match p {
        Some(p) => crate::output::endpoint::endpoint(a.as_deref(), p),
        None => "?".to_string(),
    };
    let mut line = format!(
        "{} {:<12} {:<20} pid {:<7} {:<15} {:<4} {}",
        &o.time[11..23],
        o.kind,
        o.netns.name,
        o.pid,
        o.comm,
        o.proto.unwrap_or("?"),
        endpoint(&o.addr, o.port),
    );
    if o.bound_port.is_some() && (o.bound_port != o.port || o.bound_addr != o.addr) {
        line.push_str(&format!(" → {}", endpoint(&o.bound_addr, o.bound_port)));
    }
    line.push_str(&format!(" {}", o.result));
    if let Some(b) = o.backlog {
        line.push_str(&format!(" backlog {b}"));
    }
    let opts: Vec<&str> = [
        (o.options.reuseaddr, "SO_REUSEADDR"),
        (o.options.reuseport, "SO_REUSEPORT"),
        (o.options.freebind, "IP_FREEBIND"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    if !opts.is_empty() {
        line.push_str(&format!(" [{}]", opts.join(" ")));
    }
    match (&o.options.bound_dev, o.options.bound_dev_if) {
        (Some(name), _) => line.push_str(&format!(" [SO_BINDTODEVICE {name}]")),
        (None, Some(ifindex)) => line.push_str(&format!(" [SO_BINDTODEVICE ifindex {ifindex}]")),
        _ => {}
    }
    line
}

pub fn packet_line(p: &PacketObservation) -> String {
    let ep = |a: &std::net::IpAddr, port: u16| {
        crate::output::endpoint::endpoint(Some(&a.to_string()), port)
    };
    let mut s = format!(
        "{} {:<12} {:<20} {:<8} {} → {} {}",
        &p.time[11..23],
        p.kind,
        p.netns.name,
        p.iface.as_deref().unwrap_or("-"),
        ep(&p.saddr, p.sport),
        ep(&p.daddr, p.dport),
        p.flags
    );
    if let Some(r) = &p.reason {
        s.push_str(&format!(" reason {r}"));
    }
    if let Some(l) = &p.location {
        s.push_str(&format!(" at {l}"));
    }
    s
}
