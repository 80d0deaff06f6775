//! Resolves `SockOffsets` (every kernel field the bind/listen probes read) from the running
//! kernel's BTF and tracepoint format files.
use std::path::Path;

use anyhow::Context as _;
use reach_common::{field::Field, net::SkbOffsets, offsets::SockOffsets};

use crate::kernel::{
    btf::{FieldLoc, KernelBtf},
    tracefs_format::Format,
};

/// Converts a BTF location to the programs' `Field`.
pub fn to_field(loc: FieldLoc) -> Field {
    match loc.bitfield_bits {
        Some(bits) => Field::bitfield(loc.bit_offset, bits as u8),
        None => Field::at(loc.byte_offset(), loc.byte_size.min(16) as u8),
    }
}

/// A field that must exist for reach to work at all.
fn required(btf: &KernelBtf, st: &str, path: &str) -> anyhow::Result<Field> {
    btf.field(st, path).map(to_field).with_context(|| format!("kernel BTF: {st}.{path}"))
}

/// A field that may be missing (older/newer kernels, config options): absent → not reported.
fn optional(btf: &KernelBtf, st: &str, path: &str) -> Field {
    btf.field(st, path).map(to_field).unwrap_or(Field::ABSENT)
}

/// Offsets from BTF; tracepoint record layouts from tracefs when `tracefs` is given.
pub fn resolve(btf: &KernelBtf, tracefs: Option<&Path>) -> anyhow::Result<SockOffsets> {
    let sk = "sock";
    let mut o = SockOffsets {
        socket_sk: required(btf, "socket", "sk")?,
        sk_family: required(btf, sk, "__sk_common.skc_family")?,
        sk_num: required(btf, sk, "__sk_common.skc_num")?,
        sk_rcv_saddr: required(btf, sk, "__sk_common.skc_rcv_saddr")?,
        sk_v6_rcv_saddr: optional(btf, sk, "__sk_common.skc_v6_rcv_saddr"),
        sk_bound_dev_if: optional(btf, sk, "__sk_common.skc_bound_dev_if"),
        sk_reuse: optional(btf, sk, "__sk_common.skc_reuse"),
        sk_reuseport: optional(btf, sk, "__sk_common.skc_reuseport"),
        sk_cookie: optional(btf, sk, "__sk_common.skc_cookie"),
        sk_daddr: optional(btf, sk, "__sk_common.skc_daddr"),
        sk_v6_daddr: optional(btf, sk, "__sk_common.skc_v6_daddr"),
        sk_dport: optional(btf, sk, "__sk_common.skc_dport"),
        sk_net: required(btf, sk, "__sk_common.skc_net")?,
        net_inum: required(btf, "net", "ns.inum")?,
        sk_protocol: required(btf, sk, "sk_protocol")?,
        sk_type: optional(btf, sk, "sk_type"),
        sk_max_ack_backlog: optional(btf, sk, "sk_max_ack_backlog"),
        inet_freebind: freebind(btf),
        task_nsproxy: required(btf, "task_struct", "nsproxy")?,
        nsproxy_net_ns: required(btf, "nsproxy", "net_ns")?,
        task_files: optional(btf, "task_struct", "files"),
        files_fdt: optional(btf, "files_struct", "fdt"),
        fdtable_max_fds: optional(btf, "fdtable", "max_fds"),
        fdtable_fd: optional(btf, "fdtable", "fd"),
        file_private_data: optional(btf, "file", "private_data"),
        ..SockOffsets::ABSENT
    };
    if let Some(tracefs) = tracefs {
        if let Ok(enter) = Format::read(tracefs, "syscalls", "sys_enter_bind") {
            o.tp_bind_fd = enter.field("fd")?;
            o.tp_bind_umyaddr = enter.field("umyaddr")?;
            o.tp_bind_addrlen = enter.field("addrlen")?;
        }
        if let Ok(exit) = Format::read(tracefs, "syscalls", "sys_exit_bind") {
            o.tp_exit_ret = exit.field("ret")?;
        }
        if let Ok(state) = Format::read(tracefs, "sock", "inet_sock_set_state") {
            o.tp_state_skaddr = state.field("skaddr")?;
            o.tp_state_oldstate = state.field("oldstate")?;
            o.tp_state_newstate = state.field("newstate")?;
            o.tp_state_protocol = state.field("protocol").unwrap_or(Field::ABSENT);
        }
    }
    Ok(o)
}

/// IP_FREEBIND: a `freebind:1` bitfield of inet_sock before 6.6, then bit INET_FLAGS_FREEBIND
/// of `inet_sock.inet_flags`.
fn freebind(btf: &KernelBtf) -> Field {
    if let Ok(loc) = btf.field("inet_sock", "freebind") {
        return to_field(loc);
    }
    match (btf.field("inet_sock", "inet_flags"), btf.enumerator("INET_FLAGS_FREEBIND")) {
        (Ok(flags), Ok(bit)) if (0..64).contains(&bit) => {
            Field::bitfield(flags.bit_offset + bit as u32, 1)
        }
        _ => Field::ABSENT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_every_field_on_this_kernel() {
        let btf = KernelBtf::load().unwrap();
        let fs = crate::kernel::pseudofs::tracefs().expect("tracefs needed");
        let o = resolve(&btf, Some(&fs.path)).unwrap();
        assert_eq!(o.sk_num, Field::at(14, 2));
        assert_eq!(o.sk_family, Field::at(16, 2));
        for (name, f) in [
            ("sk_v6_rcv_saddr", o.sk_v6_rcv_saddr),
            ("sk_reuse", o.sk_reuse),
            ("sk_reuseport", o.sk_reuseport),
            ("sk_cookie", o.sk_cookie),
            ("sk_max_ack_backlog", o.sk_max_ack_backlog),
            ("inet_freebind", o.inet_freebind),
            ("task_files", o.task_files),
            ("fdtable_fd", o.fdtable_fd),
            ("file_private_data", o.file_private_data),
            ("tp_bind_fd", o.tp_bind_fd),
            ("tp_exit_ret", o.tp_exit_ret),
            ("tp_state_skaddr", o.tp_state_skaddr),
        ] {
            assert!(f.is_present(), "{name} not resolved");
        }
        assert_eq!(o.sk_v6_rcv_saddr.size, 16);
        assert_eq!((o.sk_reuse.bits, o.sk_reuseport.bits, o.inet_freebind.bits), (4, 1, 1));
    }
}

/// Offsets for the drop programs (`struct sk_buff` → headers, device, namespace) from BTF, and
/// the classic `skb:kfree_skb` record layout from tracefs when given.
pub fn resolve_skb(btf: &KernelBtf, tracefs: Option<&Path>) -> anyhow::Result<SkbOffsets> {
    let mut o = SkbOffsets {
        skb_head: required(btf, "sk_buff", "head")?,
        skb_network_header: required(btf, "sk_buff", "network_header")?,
        skb_transport_header: required(btf, "sk_buff", "transport_header")?,
        skb_tail: required(btf, "sk_buff", "tail")?,
        skb_protocol: required(btf, "sk_buff", "protocol")?,
        skb_dev: required(btf, "sk_buff", "dev")?,
        skb_sk: optional(btf, "sk_buff", "sk"),
        dev_ifindex: required(btf, "net_device", "ifindex")?,
        dev_nd_net: required(btf, "net_device", "nd_net")?,
        sk_net: required(btf, "sock", "__sk_common.skc_net")?,
        net_inum: required(btf, "net", "ns.inum")?,
        ..SkbOffsets::ABSENT
    };
    if let Some(tracefs) = tracefs
        && let Ok(f) = Format::read(tracefs, "skb", "kfree_skb")
    {
        o.tp_skbaddr = f.field("skbaddr")?;
        o.tp_location = f.field("location")?;
        // Added in 5.17; older kernels report drops without a reason.
        o.tp_reason = f.field("reason").unwrap_or(Field::ABSENT);
    }
    Ok(o)
}

#[cfg(test)]
mod skb_tests {
    use super::*;

    #[test]
    fn resolves_skb_fields_on_this_kernel() {
        let btf = KernelBtf::load().unwrap();
        let fs = crate::kernel::pseudofs::tracefs().expect("tracefs needed");
        let o = resolve_skb(&btf, Some(&fs.path)).unwrap();
        assert_eq!((o.skb_network_header.size, o.skb_transport_header.size), (2, 2));
        assert_eq!(o.skb_head.size, 8);
        // An offset from `head` (NET_SKBUFF_DATA_USES_OFFSET on 64-bit), not a pointer.
        assert_eq!(o.skb_tail.size, 4);
        assert_eq!(o.skb_protocol.size, 2);
        assert_eq!(o.dev_ifindex.size, 4);
        assert!(
            o.tp_skbaddr.is_present() && o.tp_location.is_present() && o.tp_reason.is_present()
        );
    }
}
