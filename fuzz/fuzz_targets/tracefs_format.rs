//! A tracefs `format` file (an event's record layout): parsed, then the fields reach reads.
#![no_main]
use libfuzzer_sys::fuzz_target;
use reach_agent::kernel::tracefs_format::Format;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let f = Format::parse(text);
    for name in ["skbaddr", "location", "protocol", "reason", "rx_sk", "fd", "umyaddr", "ret"] {
        let _ = f.field(name);
    }
});
