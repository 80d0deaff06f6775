//! The way back from a namespace a NAT sent the SYN to. Its answer (SYN-ACK or RST) must leave
//! by the interface the SYN came in on, towards the NAT, to be translated back: the client
//! only accepts an answer from the address it dialed. The kernel's own route lookup in that
//! namespace (`netns::route`, from the translated destination to the client) says which way
//! the answer goes; two failures follow from it that no drop reason names:
//!
//! - **no route back**: the SYN-ACK cannot be routed, so the kernel drops the SYN in
//!   `tcp_conn_request` (a listen drop, consumed with no drop reason) → `kernel_drop`;
//! - **the answer leaves by another interface** (a default route elsewhere): the SYN-ACK is
//!   sent but bypasses the NAT, and dies or is refused wherever it goes → `reply_dropped`.
use std::net::IpAddr;

use serde::Serialize;

use super::{Evidence, verdict::Verdict};

/// How the answer to the client leaves the namespace the NAT sent the SYN to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReturnRoute {
    /// The client as this namespace sees it (after any masquerade).
    pub client: IpAddr,
    /// The translated destination: the address answering.
    pub from: IpAddr,
    /// The interface the SYN came in on, from the NAT.
    pub arrived: String,
    pub leaves: Leaves,
    /// The NAT side's address on that link (the first namespace's source towards `from`): the
    /// gateway an answer must take to pass back through the NAT.
    pub nat_side: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Leaves {
    Via { iface: String, gateway: Option<IpAddr> },
    Nowhere { why: String },
}

impl ReturnRoute {
    fn ns(e: &Evidence) -> String {
        e.netns.as_ref().map(|n| format!("netns {}", n.name)).unwrap_or_else(|| "it".into())
    }

    /// The route that sends answers to the client back through the NAT, in the owner.
    fn fix(&self, e: &Evidence) -> String {
        let ns = Self::ns(e);
        match self.nat_side {
            Some(gw) => format!(
                "ip route add {} via {gw} dev {}   # in {ns} (nsenter --net=… or docker/kubectl \
                 exec): answers to the client go back through the NAT",
                self.client, self.arrived
            ),
            None => format!(
                "route {} back by {} in {ns}, the interface the SYN came in on from the NAT",
                self.client, self.arrived
            ),
        }
    }

    /// Where the answer goes instead of back through `arrived`, in words; None: it goes back.
    fn elsewhere(&self) -> Option<String> {
        match &self.leaves {
            Leaves::Via { iface, .. } if *iface == self.arrived => None,
            Leaves::Via { iface, gateway } => Some(format!(
                "by {iface}{}",
                gateway.map(|g| format!(" via {g}")).unwrap_or_default()
            )),
            Leaves::Nowhere { why } => Some(format!("nowhere ({why})")),
        }
    }
}

/// The verdict an attempt the owner's listener takes but never completes gets from the way
/// back, when that is what failed. What was seen of the answer does not matter: a SYN-ACK
/// routed out of another interface is not seen on the watched one, and the client's
/// retransmitted SYNs then die at the pending request (`NOT_SPECIFIED` in tcp_v4_rcv).
pub(super) fn decided(e: &Evidence) -> Option<(Verdict, Vec<String>, Vec<String>)> {
    let r = e.return_route.as_ref()?;
    let ns = ReturnRoute::ns(e);
    match &r.leaves {
        Leaves::Nowhere { why } => Some((
            Verdict::KernelDrop,
            vec![format!(
                "{ns} has no route back to the client {} from {} ({why}): the kernel cannot \
                 send the SYN-ACK and drops the SYN (a listen drop, no drop reason)",
                r.client, r.from
            )],
            vec![r.fix(e)],
        )),
        Leaves::Via { .. } => {
            let elsewhere = r.elsewhere()?;
            Some((
                Verdict::ReplyDropped,
                vec![format!(
                    "the SYN-ACK to {} leaves {ns} {elsewhere}, not by {} where the SYN came in \
                     from the NAT: it never passes back through the NAT, so the client never gets \
                     an answer from the address it dialed",
                    r.client, r.arrived
                )],
                vec![r.fix(e)],
            ))
        }
    }
}

/// For a reverse-path drop: where the route back to the client leads instead, and the route
/// that passes the check (answers back through the NAT).
pub(super) fn rp_filter(e: &Evidence) -> Option<(String, String)> {
    let r = e.return_route.as_ref()?;
    let elsewhere = r.elsewhere()?;
    let line = format!(
        "the route back to {} from {} leaves {} {elsewhere}, not by {} where the SYN came in",
        r.client,
        r.from,
        ReturnRoute::ns(e),
        r.arrived
    );
    Some((line, r.fix(e)))
}
