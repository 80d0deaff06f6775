//! NFNLGRP_NFTRACE datagrams: split into trace messages, each parsed, and the events fed to
//! the assembler that builds each packet's walk.
#![no_main]
use libfuzzer_sys::fuzz_target;
use reach_agent::firewall::trace::{Assembler, parse_trace, trace_messages};

fuzz_target!(|data: &[u8]| {
    let mut asm = Assembler::new(8);
    for body in trace_messages(data) {
        if let Some(ev) = parse_trace(body) {
            if let Some(t) = asm.push(ev) {
                let _ = (t.is_reply(), t.locally_sent(), t.decision(), t.verdict());
            }
        }
    }
    for t in asm.drain() {
        let _ = t.verdict();
    }
});
