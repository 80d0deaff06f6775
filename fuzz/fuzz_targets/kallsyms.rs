//! /proc/kallsyms text: parsed, then every lookup reach makes (a drop location, a symbol's
//! address) answered without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use reach_agent::kernel::kallsyms::Kallsyms;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let k = Kallsyms::parse(text);
    for addr in [0, 1, u64::MAX, 0xffff_ffff_8100_0000] {
        let _ = k.symbolize(addr);
        let _ = k.lookup(addr);
    }
    if let Some(first) =
        text.split_whitespace().next().and_then(|a| u64::from_str_radix(a, 16).ok())
    {
        let _ = k.symbolize(first.wrapping_add(7));
    }
    let _ = k.address_of("kfree_skb");
    let _ = Kallsyms::from_text(text);
});
