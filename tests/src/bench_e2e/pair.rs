//! The benchmarks' two hosts: a server and a client namespace joined by one veth link, IPv4
//! only, with static neighbour entries, so that nothing but the benchmark's own load crosses
//! the link (no ARP, no IPv6 router solicitations, MLD or neighbour discovery): the server
//! veth's received-packet counter then counts the load exactly.
use std::{net::Ipv4Addr, process::Command, time::Duration};

use anyhow::Context as _;
use reach_agent::lab::{NetNs, Tool, Veth, VethEnd, output_within};
use serde_json::Value;

/// Fields drop in declaration order: the link first, then the namespaces (which kill whatever
/// still runs inside them).
#[derive(Debug)]
pub struct Pair {
    pub link: Veth,
    pub server: NetNs,
    pub client: NetNs,
}

impl Pair {
    pub const SERVER_IF: &'static str = "srv0";
    pub const CLIENT_IF: &'static str = "cli0";
    pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);
    pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);

    /// Creates namespaces `<label>-srv` and `<label>-cli` (IPv6 off in both) and the link.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let server = NetNs::new(&format!("{label}-srv"))?;
        let client = NetNs::new(&format!("{label}-cli"))?;
        for ns in [&server, &client] {
            ns.run_in(disable_ipv6)?.with_context(|| format!("disabling IPv6 in {}", ns.name()))?;
        }
        let link = Veth::create(
            VethEnd::new(&server, Self::SERVER_IF).addr(&format!("{}/24", Self::SERVER_V4)),
            VethEnd::new(&client, Self::CLIENT_IF).addr(&format!("{}/24", Self::CLIENT_V4)),
        )?;
        let pair = Pair { link, server, client };
        let (srv_mac, cli_mac) =
            (mac(&pair.server, Self::SERVER_IF)?, mac(&pair.client, Self::CLIENT_IF)?);
        for (ns, ifname, peer, lladdr) in [
            (&pair.server, Self::SERVER_IF, Self::CLIENT_V4, &cli_mac),
            (&pair.client, Self::CLIENT_IF, Self::SERVER_V4, &srv_mac),
        ] {
            let peer = peer.to_string();
            ns.ip(&[
                "neigh",
                "replace",
                &peer,
                "lladdr",
                lladdr,
                "dev",
                ifname,
                "nud",
                "permanent",
            ])?;
        }
        Ok(pair)
    }

    /// The packets the server's veth has received so far (`ip -s -j link`, inside its namespace).
    pub fn server_rx_packets(&self) -> anyhow::Result<u64> {
        let out = self.server.ip(&["-s", "-j", "link", "show", "dev", Self::SERVER_IF])?;
        let v: Value = serde_json::from_str(&out).context("ip -s -j link printed no JSON")?;
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .with_context(|| format!("no stats64.rx.packets in ip -s -j link: {out}"))
    }

    /// The server namespace's TCP `InSegs` (/proc/net/snmp): every segment TCP received there.
    pub fn server_tcp_in_segs(&self) -> anyhow::Result<u64> {
        let snmp =
            self.server.run_in(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
        tcp_in_segs(&snmp).context("no Tcp InSegs in /proc/net/snmp")
    }

    /// `program` (iperf3, hping3, tcpdump: each in the Debian package of its name) as a
    /// command that runs inside `ns`.
    pub fn command_in(ns: &NetNs, program: &'static str) -> anyhow::Result<Command> {
        Ok(ns.command(Tool { name: program, package: program }.path()?))
    }

    /// Tears down now, reporting errors that Drop can only log.
    pub fn remove(self) -> anyhow::Result<()> {
        let Pair { link, server, client } = self;
        link.remove()?;
        server.remove()?;
        client.remove()?;
        Ok(())
    }
}

/// On a thread inside a fresh namespace (/proc/sys/net is the calling thread's namespace's):
/// IPv6 off for every interface made from now on. A kernel without IPv6 has nothing to turn off.
fn disable_ipv6() -> anyhow::Result<()> {
    for which in ["all", "default"] {
        let path = format!("/proc/sys/net/ipv6/conf/{which}/disable_ipv6");
        if !std::path::Path::new(&path).exists() {
            continue;
        }
        std::fs::write(&path, "1").with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

fn mac(ns: &NetNs, ifname: &str) -> anyhow::Result<String> {
    let out = ns.ip(&["-j", "link", "show", "dev", ifname])?;
    let v: Value = serde_json::from_str(&out).context("ip -j link printed no JSON")?;
    v[0]["address"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no address of {ifname} in ip -j link: {out}"))
}

/// `InSegs` of the `Tcp:` lines of /proc/net/snmp (a header line, then a value line).
pub fn tcp_in_segs(snmp: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let i = names.split_whitespace().position(|n| n == "InSegs")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Runs `cmd` within `timeout` and returns its output whatever the exit status.
pub fn output(cmd: &mut Command, timeout: Duration) -> anyhow::Result<std::process::Output> {
    Ok(output_within(cmd, timeout)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn in_segs_from_snmp() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin InSegs OutSegs\n\
                    Tcp: 1 200 77920 5\nUdp: InDatagrams\nUdp: 0\n";
        assert_eq!(super::tcp_in_segs(snmp), Some(77920));
    }
}
