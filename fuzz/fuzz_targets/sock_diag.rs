//! NETLINK_SOCK_DIAG replies: one received datagram of a listener dump (inet_diag_msg and its
//! attributes, framed by netlink-packet-core, parsed by netlink-packet-sock-diag) read as
//! `reach listeners` reads it, for TCP listeners and for bound UDP sockets.
#![no_main]
use libfuzzer_sys::fuzz_target;
use reach_agent::netns::sock_diag::{Proto, parse_listener_replies};

fuzz_target!(|data: &[u8]| {
    // The dump's sequence number comes from the first byte, so replies to other requests (which
    // are skipped) and to ours (which are parsed) are both reached.
    let Some((&seq, datagram)) = data.split_first() else { return };
    for proto in [Proto::Tcp, Proto::Udp] {
        let mut out = Vec::new();
        if parse_listener_replies(datagram, u32::from(seq), proto, &mut out).is_ok() {
            for e in &out {
                let _ = format!("{e:?}");
            }
        }
    }
});
