//! `reach why TARGET`: one diagnosis for one port. This module is the pure decision engine: the
//! command gathers [`Evidence`] (listeners, failed binds, the client's flow record, the firewall's
//! verdict on its SYN, overflow counters, WSL2 mode) and [`diagnose`] turns it into a
//! [`Diagnosis`]: a verdict, the evidence lines that prove it, the fix, and the path of the SYN
//! with the hop where it died. No I/O here, so every class is testable with hand-built evidence.
use std::net::IpAddr;

use serde::Serialize;

use crate::{
    firewall::{attribute::Attribution, iptables_nft::IptablesRule, predict::Prediction},
    kernel::wsl::Wsl2,
    model::{flows::FlowRecord, listener_view::ListenerView},
    netns::port_holders::PortHolder,
    probes::sock_event::{NetnsRef, SockObservation},
};

mod fix;
pub mod lookup;
mod miss;
pub mod nat;
mod reply;
pub mod return_route;
mod verdict;
mod wsl;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use lookup::SkLookupState;
pub use verdict::{Diagnosis, Hop, Verdict, diagnose};

/// Everything known about one TARGET.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub port: u16,
    /// The address the client connects to, when the user named one (the flow's server address
    /// wins when a flow was seen: that is what the SYN really carried).
    pub addr: Option<IpAddr>,
    /// The namespace the SYN arrived in (or is expected in). None: the flow's namespace, if any.
    pub netns: Option<NetnsRef>,
    /// Listeners on `port` in every namespace.
    pub listeners: Vec<ListenerView>,
    /// Recent binds/listens on `port` that failed.
    pub failed_binds: Vec<FailedBind>,
    /// Sockets in the target namespace that hold `port` without listening (what an EADDRINUSE
    /// bind collided with), looked up when the diagnosis is made.
    pub port_holders: Vec<PortHolder>,
    /// True when traffic was watched for the client's attempt. False: nothing was watched yet,
    /// so the diagnosis predicts from the firewall prediction and the listeners.
    pub watched: bool,
    /// The interfaces watched (named in a `no_syn_seen` verdict).
    pub watched_ifaces: Vec<String>,
    /// Whether any SYN to `port` was seen on the watched interfaces.
    pub syn_seen: bool,
    /// The watched namespace went away while reach waited (deleted, its last process gone).
    pub netns_gone: bool,
    /// SYN events lost (full ring) or suppressed (rate bound) while watching: a SYN may have
    /// come unseen.
    pub unseen_syns: u64,
    /// Interface the SYN arrived on (`lo`, `eth0`, …). In prediction mode: the interface the
    /// client will come in on; None there means "from outside" (why else would one ask).
    pub iface: Option<String>,
    /// The client's attempt, when one was recorded.
    pub flow: Option<FlowRecord>,
    /// firewalld's rule that decided the SYN (from an nft trace), if firewalld's.
    pub attribution: Option<Attribution>,
    /// A non-firewalld netfilter rule that decided the SYN (from an nft trace).
    pub netfilter: Option<NetfilterRule>,
    /// The netfilter rule that dropped the server's reply (SYN-ACK or RST) on its way out, from
    /// the reply's nft trace (`reply` set; firewalld's own table included, named as such).
    pub reply_netfilter: Option<NetfilterRule>,
    /// What firewalld would do with the SYN.
    pub prediction: Option<Prediction>,
    /// Listen-queue overflow seen while watching.
    pub overflow: Option<OverflowEvidence>,
    /// Set only on WSL2.
    pub wsl: Option<WslInfo>,
    /// Interfaces of the target namespace with their addresses: which interface a SYN's
    /// destination lives on (what the kernel's lookup sees for a client on this host), the
    /// ingress ifindex of a named interface, the addresses a client from outside can dial.
    pub interfaces: Vec<Interface>,
    /// sk_lookup programs attached to the target namespace; None: not asked (taken as none).
    pub sk_lookup: Option<SkLookupState>,
    /// How the answer leaves, for a namespace a NAT sent the SYN to; None elsewhere.
    pub return_route: Option<return_route::ReturnRoute>,
}

/// One interface of the target namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub ifindex: u32,
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

/// A bind or listen on the port that failed: who tried, and the errno.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FailedBind {
    pub netns: NetnsRef,
    pub pid: u32,
    pub comm: String,
    pub addr: Option<String>,
    /// `EADDRINUSE`, `EACCES`, …
    pub errno: String,
}

impl FailedBind {
    /// The failed bind/listen in `o`, if it is one on `port`.
    pub fn from_observation(o: &SockObservation, port: u16) -> Option<Self> {
        let on_port = o.port.or(o.bound_port) == Some(port);
        (on_port && o.result != "ok" && matches!(o.kind, "bind" | "listen")).then(|| Self {
            netns: o.netns.clone(),
            pid: o.pid,
            comm: o.comm.clone(),
            addr: o.addr.clone(),
            errno: o.result.clone(),
        })
    }
}

/// A netfilter rule that decided the SYN or its reply: outside firewalld's table, or inside it
/// but none of firewalld's concepts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NetfilterRule {
    /// `inet`, `ip`, `ip6`.
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: Option<u64>,
    /// The rule as `nft -a list ruleset` prints it, when known.
    pub rule: Option<String>,
    /// `accept`, `drop`, `reject …`, or `policy drop` when the chain's policy decided.
    pub action: String,
    /// True when the rule decided the server's reply (SYN-ACK/RST, on the output/postrouting
    /// path) rather than the client's SYN: a fix must then match `tcp sport PORT`.
    pub reply: bool,
    /// The client's address, when an attempt was seen: an accept rule in the fix admits just it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    /// The interface the rule matches on (`iifname`, `oifname` for a reply), when it is
    /// interface-specific: the accept rule in the fix matches it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// The rule as iptables sees it, when its table is one iptables-nft/ip6tables-nft wrote
    /// (the fix is then an iptables command; see `firewall::iptables_nft`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iptables: Option<IptablesRule>,
    /// The table carries nft's owner flag: only the program that created it can change it
    /// (firewalld ≥ 2.0 owns its table), so no `nft` edit is a fix.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub owned: bool,
}

/// A listen-queue overflow (the `{"type":"overflow"}` report of `reach watch`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OverflowEvidence {
    pub netns: NetnsRef,
    pub listen_overflows: u64,
    pub listen_drops: u64,
    pub syn_queue_full_drops: u64,
    /// Listeners whose accept queue was full.
    pub full_listeners: Vec<ListenerView>,
}

/// WSL2 mode plus the VM's eth0 address (what a LAN portproxy must forward to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WslInfo {
    pub wsl2: Wsl2,
    pub eth0_addr: Option<IpAddr>,
}
