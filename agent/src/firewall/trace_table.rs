//! reach's own nftables table, `inet reach_trace`: a prerouting chain at priority -350 (before
//! conntrack, raw and every firewalld chain) that sets `meta nftrace set 1` on TCP SYNs to the
//! ports being diagnosed, and an output chain at the same priority that sets it on a local
//! client's SYNs to those ports (a NAT in output can send them on) and on the server's
//! replies from those ports (SYN-ACK and RST only: what a handshake's answer is, never the
//! connection's data), so the kernel reports their walks through every other table — a reply
//! on through output and postrouting, where a rule can kill the answer. It never
//! touches another table (firewalld's included) and never changes a verdict; it is removed on
//! drop, and a stale one from a killed run is replaced when installing.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::netns::enter;

/// The table's name; reach never creates or deletes any other.
pub const TABLE: &str = "reach_trace";

/// The installed table, in one namespace. Drop removes it.
pub struct TraceTable {
    ns_path: PathBuf,
}

/// nft script that (re)creates the table for `ports`.
pub fn script(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    // `add` then `delete` makes the delete succeed whether or not a stale table exists, in one
    // atomic transaction with the new definition.
    format!(
        "add table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  chain prerouting {{\n    type filter hook prerouting priority -350; policy accept;\n    tcp flags & (syn | ack) == syn tcp dport {{ {ports} }} meta nftrace set 1\n  }}\n  chain output {{\n    type filter hook output priority -350; policy accept;\n    tcp flags & (syn | ack) == syn tcp dport {{ {ports} }} meta nftrace set 1\n    tcp flags & (syn | ack) == syn | ack tcp sport {{ {ports} }} meta nftrace set 1\n    tcp flags & rst == rst tcp sport {{ {ports} }} meta nftrace set 1\n  }}\n}}\n",
        ports = ports.join(", ")
    )
}

fn nft(ns_path: &Path, script: &str) -> anyhow::Result<()> {
    let script = script.to_string();
    let out = enter::in_netns(ns_path, move || -> anyhow::Result<std::process::Output> {
        // Forked from this thread, so nft runs in the target namespace.
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nft (install Debian package nftables)")?;
        child.stdin.take().context("nft stdin")?.write_all(script.as_bytes())?;
        Ok(child.wait_with_output()?)
    })??;
    if !out.status.success() {
        bail!("nft failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl TraceTable {
    /// Installs (or replaces) the table in the namespace at `ns_path`, tracing SYNs to `ports`.
    pub fn install(ns_path: &Path, ports: &[u16]) -> anyhow::Result<Self> {
        if ports.is_empty() {
            bail!("tracing needs at least one port");
        }
        nft(ns_path, &script(ports)).with_context(|| format!("installing table inet {TABLE}"))?;
        Ok(Self { ns_path: ns_path.to_path_buf() })
    }
}

impl Drop for TraceTable {
    fn drop(&mut self) {
        if let Err(e) = nft(&self.ns_path, &format!("delete table inet {TABLE}\n")) {
            tracing::warn!("removing table inet {TABLE} in {}: {e:#}", self.ns_path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn script_replaces_and_traces_only_syns_to_the_ports_and_their_replies() {
        let s = super::script(&[8080, 9090]);
        assert!(s.starts_with("add table inet reach_trace\ndelete table inet reach_trace\n"));
        assert!(s.contains("priority -350"));
        // In prerouting (a remote client's SYN) and in output (a local client's).
        let syn = "tcp flags & (syn | ack) == syn tcp dport { 8080, 9090 } meta nftrace set 1";
        assert_eq!(s.matches(syn).count(), 2, "{s}");
        assert!(s.contains("type filter hook output priority -350; policy accept;"));
        assert!(s.contains(
            "tcp flags & (syn | ack) == syn | ack tcp sport { 8080, 9090 } meta nftrace set 1"
        ));
        assert!(s.contains("tcp flags & rst == rst tcp sport { 8080, 9090 } meta nftrace set 1"));
        // Nothing else is traced: two chains, four marking rules.
        assert_eq!(s.matches("meta nftrace set 1").count(), 4);
        assert_eq!(s.matches("chain ").count(), 2);
    }
}
