//! Receiving NFNLGRP_NFTRACE messages in one network namespace, on a dedicated thread (the
//! netlink socket must be created inside the namespace; it then keeps working from any thread).
use std::{
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
    time::Duration,
};

use anyhow::Context as _;

use super::trace::{NFNLGRP_NFTRACE, TraceEvent, parse_trace, trace_messages};
use crate::{kernel::nfnetlink, netns::enter};

/// A netlink socket subscribed to nftables traces of one namespace.
pub struct TraceListener {
    fd: OwnedFd,
}

impl TraceListener {
    /// Subscribes in the namespace at `ns_path`. `timeout` bounds each `recv`.
    pub fn open(ns_path: &Path, timeout: Duration) -> anyhow::Result<Self> {
        let fd = enter::in_netns(ns_path, || -> std::io::Result<OwnedFd> {
            let fd = nfnetlink::open(1 << (NFNLGRP_NFTRACE - 1))?;
            nfnetlink::set_recv_timeout(&fd, timeout);
            // A busy trace can outrun us; a bigger buffer makes ENOBUFS (reported) rarer.
            nfnetlink::set_recv_buffer(&fd, 4 << 20);
            Ok(fd)
        })?
        .context("subscribing to nftables traces (NFNLGRP_NFTRACE)")?;
        Ok(Self { fd })
    }

    /// Receives one datagram's trace messages; `Ok(vec![])` on timeout.
    pub fn recv(&self) -> anyhow::Result<Vec<TraceEvent>> {
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(Vec::new()),
                Some(libc::ENOBUFS) => {
                    anyhow::bail!("nftables trace messages were lost (receive buffer overrun)")
                }
                _ => Err(e.into()),
            };
        }
        Ok(trace_messages(&buf[..n as usize]).into_iter().filter_map(parse_trace).collect())
    }
}
