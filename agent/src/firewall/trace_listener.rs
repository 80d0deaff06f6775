//! Receiving NFNLGRP_NFTRACE messages in one network namespace, on a dedicated thread (the
//! netlink socket must be created inside the namespace; it then keeps working from any thread).
use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    time::Duration,
};

use anyhow::Context as _;

use super::trace::{NFNLGRP_NFTRACE, TraceEvent, parse_trace, trace_messages};
use crate::netns::enter;

/// A netlink socket subscribed to nftables traces of one namespace.
pub struct TraceListener {
    fd: OwnedFd,
}

impl TraceListener {
    /// Subscribes in the namespace at `ns_path`. `timeout` bounds each `recv`.
    pub fn open(ns_path: &Path, timeout: Duration) -> anyhow::Result<Self> {
        let fd = enter::in_netns(ns_path, || -> std::io::Result<OwnedFd> {
            // SAFETY: socket(2) with constant arguments, owned immediately.
            let raw = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_NETFILTER,
                )
            };
            if raw < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: raw is a fresh fd.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: sockaddr_nl is plain data; bind with the trace group's bit.
            let r = unsafe {
                let mut sa: libc::sockaddr_nl = std::mem::zeroed();
                sa.nl_family = libc::AF_NETLINK as u16;
                sa.nl_groups = 1 << (NFNLGRP_NFTRACE - 1);
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const sa).cast(),
                    size_of::<libc::sockaddr_nl>() as u32,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let tv = libc::timeval {
                tv_sec: timeout.as_secs() as i64,
                tv_usec: timeout.subsec_micros() as i64,
            };
            // SAFETY: valid timeval for SO_RCVTIMEO.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&raw const tv).cast(),
                    size_of::<libc::timeval>() as u32,
                )
            };
            // A busy trace can outrun us; a bigger buffer makes ENOBUFS (reported) rarer.
            let size: libc::c_int = 4 << 20;
            // SAFETY: valid int option.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&raw const size).cast(),
                    4,
                )
            };
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
