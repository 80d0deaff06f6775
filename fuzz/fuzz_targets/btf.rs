//! BTF bytes: parsed, then every lookup reach makes at start-up (struct members through
//! anonymous members, bitfields, sizes, enums) answered without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use reach_agent::kernel::btf::KernelBtf;

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = KernelBtf::from_bytes(data) else { return };
    for (s, f) in [
        ("sock", "__sk_common.skc_num"),
        ("sock", "__sk_common.skc_family"),
        ("inet_sock", "inet_flags"),
        ("sk_buff", "len"),
        ("sk_buff", "head"),
        ("reach_probe", "a.b"),
    ] {
        let _ = btf.field(s, f);
        let _ = btf.has_field(s, f);
        let _ = btf.struct_size(s);
    }
    for e in ["skb_drop_reason", "sk_drop_reason", "INET_FLAGS_FREEBIND"] {
        let _ = btf.enum_values(e);
        let _ = btf.enumerator(e);
    }
});
