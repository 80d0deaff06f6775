//! Receiving NFNLGRP_NFTRACE messages in one network namespace, on a dedicated thread (the
//! netlink socket must be created inside the namespace; it then keeps working from any thread).
//!
//! The same socket is subscribed to NFNLGRP_NFTABLES, whose NFT_MSG_NEWGEN ends every
//! committed ruleset change: the session re-reads a namespace's ruleset only after one (or
//! after notifications were lost), never per traced packet. One socket keeps the two in the
//! kernel's order: a trace received before a NEWGEN was walked through the ruleset before it.
use std::{
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
    time::Duration,
};

use anyhow::Context as _;

use super::trace::{NFNLGRP_NFTRACE, TraceEvent, parse_trace, trace_messages};

/// nfnetlink multicast group of nftables' ruleset notifications (linux/netfilter/nfnetlink.h).
const NFNLGRP_NFTABLES: u32 = 7;
/// (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN: a ruleset change was committed.
const NEWGEN: u16 = (10 << 8) | 15;

/// One datagram's worth of what the socket received.
#[derive(Debug, Default)]
pub struct Received {
    pub traces: Vec<TraceEvent>,
    /// The ruleset changed (NFT_MSG_NEWGEN), or notifications were lost so it may have: the
    /// cached ruleset is stale either way.
    pub ruleset_changed: bool,
    /// Messages were lost (receive buffer overrun): traces are missing.
    pub overrun: bool,
}
use crate::{kernel::nfnetlink, netns::enter};

/// A netlink socket subscribed to nftables traces of one namespace.
pub struct TraceListener {
    fd: OwnedFd,
}

impl TraceListener {
    /// Subscribes in the namespace at `ns_path`. `timeout` bounds each `recv`.
    pub fn open(ns_path: &Path, timeout: Duration) -> anyhow::Result<Self> {
        let fd = enter::in_netns(ns_path, || -> std::io::Result<OwnedFd> {
            let fd = nfnetlink::open(1 << (NFNLGRP_NFTRACE - 1) | 1 << (NFNLGRP_NFTABLES - 1))?;
            nfnetlink::set_recv_timeout(&fd, timeout);
            // A busy trace can outrun us; a bigger buffer makes ENOBUFS (reported) rarer.
            nfnetlink::set_recv_buffer(&fd, 4 << 20);
            Ok(fd)
        })?
        .context("subscribing to nftables traces and ruleset changes (NFNLGRP_NFTRACE, NFNLGRP_NFTABLES)")?;
        Ok(Self { fd })
    }

    /// Receives one datagram: its traces, and whether the ruleset changed. Empty on timeout.
    pub fn recv(&self) -> anyhow::Result<Received> {
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(Received::default()),
                // A reload of a big ruleset floods the group: the traces lost are reported by
                // the caller, and the ruleset is re-read; listening goes on.
                Some(libc::ENOBUFS) => {
                    Ok(Received { ruleset_changed: true, overrun: true, ..Default::default() })
                }
                _ => Err(e.into()),
            };
        }
        let data = &buf[..n as usize];
        Ok(Received {
            traces: trace_messages(data).into_iter().filter_map(parse_trace).collect(),
            ruleset_changed: nfnetlink::messages(data).any(|(ty, _)| ty == NEWGEN),
            overrun: false,
        })
    }
}
