//! Which sk_lookup BPF programs are attached to a network namespace: they run before the
//! kernel's listener lookup (`bpf_sk_lookup_run_v4/v6`) and can hand a SYN to any socket or drop
//! it, so a diagnosis must say when one is there.
//!
//! Asked with BPF_PROG_QUERY on the namespace itself (`netns_bpf_prog_query`, Linux 5.9+), which
//! answers for exactly that namespace. aya's `loaded_links()` lists every link of the machine,
//! but its `LinkInfo` exposes neither the netns inode nor the attach type, so it cannot tell
//! which namespace a link steers.
use std::{
    fs::File,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::Path,
};

const BPF_PROG_QUERY: libc::c_long = 16;
/// `enum bpf_attach_type`: BPF_SK_LOOKUP.
const BPF_SK_LOOKUP: u32 = 36;
/// A namespace holds at most BPF_SK_LOOKUP's prog array (64 programs, `bpf_prog_array`);
/// a larger answer is reported as an error, never truncated silently.
const MAX_PROGS: usize = 64;

/// The leading fields of `union bpf_attr` for BPF_PROG_QUERY, as in every kernel since 4.15;
/// later kernels added fields after them, which a shorter `size` leaves zero.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// Ids of the sk_lookup programs attached to the namespace `netns` refers to.
pub fn sk_lookup_programs(netns: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut ids = [0u32; MAX_PROGS];
    let mut attr = QueryAttr {
        target_fd: netns.as_raw_fd() as u32,
        attach_type: BPF_SK_LOOKUP,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_PROGS as u32,
        ..QueryAttr::default()
    };
    // SAFETY: attr is a valid, fully initialised bpf_attr prefix of the size passed; prog_ids
    // points to MAX_PROGS writable u32, the capacity given in prog_cnt.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            (&raw mut attr).cast::<libc::c_void>(),
            std::mem::size_of::<QueryAttr>() as libc::c_uint,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("BPF_PROG_QUERY (sk_lookup) on netns: {e}")));
    }
    let n = attr.prog_cnt as usize;
    if n > MAX_PROGS {
        return Err(io::Error::other(format!("{n} sk_lookup programs, more than {MAX_PROGS}")));
    }
    Ok(ids[..n].to_vec())
}

/// [`sk_lookup_programs`] of the namespace file at `path` (`/run/netns/NAME`,
/// `/proc/PID/ns/net`).
pub fn sk_lookup_programs_at(path: &Path) -> io::Result<Vec<u32>> {
    let f = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
    sk_lookup_programs(f.as_fd())
}

#[cfg(test)]
mod tests {
    use std::os::fd::{FromRawFd, OwnedFd};

    use super::*;
    use crate::netns::enter::in_new_netns;

    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_PROG_TYPE_SK_LOOKUP: u32 = 30;

    fn bpf(cmd: libc::c_long, attr: &mut [u64]) -> io::Result<OwnedFd> {
        // SAFETY: attr is a zero-padded bpf_attr of the size given.
        let r = unsafe {
            libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of_val(attr))
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel returned a new fd.
        Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
    }

    /// `r0 = SK_PASS; exit`: an sk_lookup program that steers nothing, loaded by hand so the
    /// test needs no BPF object.
    fn load_pass_program() -> io::Result<OwnedFd> {
        // BPF_MOV64_IMM(R0, 1), BPF_EXIT_INSN()
        let insns: [u64; 2] = [0x0000_0001_0000_00b7, 0x0000_0000_0000_0095];
        let license = c"GPL";
        let mut attr = [0u64; 16];
        // prog_type, insn_cnt | insns | license | log_level, log_size | log_buf |
        // kern_version, prog_flags | prog_name[16] | prog_ifindex, expected_attach_type
        attr[0] = u64::from(BPF_PROG_TYPE_SK_LOOKUP) | (2u64 << 32);
        attr[1] = insns.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        attr[8] = u64::from(BPF_SK_LOOKUP) << 32;
        bpf(BPF_PROG_LOAD, &mut attr)
    }

    #[test]
    fn attached_program_is_listed_and_a_fresh_namespace_has_none() {
        // Needs root (CAP_SYS_ADMIN for the namespace, CAP_BPF and CAP_NET_ADMIN for the rest):
        // each step's error says which failed.
        in_new_netns(|| {
            let ns = File::open("/proc/thread-self/ns/net").unwrap();
            assert_eq!(sk_lookup_programs(ns.as_fd()).unwrap(), Vec::<u32>::new());
            let prog = load_pass_program().expect("loading an sk_lookup program");
            let mut attr = [0u64; 8];
            // prog_fd, target_fd | attach_type, flags
            attr[0] = prog.as_raw_fd() as u64 | ((ns.as_raw_fd() as u64) << 32);
            attr[1] = u64::from(BPF_SK_LOOKUP);
            let link = bpf(BPF_LINK_CREATE, &mut attr).expect("attaching it to the namespace");
            let ids = sk_lookup_programs(ns.as_fd()).unwrap();
            assert_eq!(ids.len(), 1, "{ids:?}");
            assert_ne!(ids[0], 0);
            drop(link);
            // Detaching is immediate for a link whose last fd closed.
            assert_eq!(sk_lookup_programs(ns.as_fd()).unwrap(), Vec::<u32>::new());
        })
        .expect("creating a scratch network namespace (needs root)");
    }

    #[test]
    fn a_file_that_is_no_namespace_is_an_error() {
        let err = sk_lookup_programs_at(Path::new("/dev/null")).unwrap_err();
        assert!(err.to_string().contains("BPF_PROG_QUERY"), "{err}");
    }
}
