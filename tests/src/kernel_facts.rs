//! What the kernel under test allows, found by the tests themselves and never by reach: the
//! independent evidence that `reach doctor`'s report and the attach modes are checked against.
//!
//! Each probe asks the kernel directly with the smallest possible request — a 2-instruction
//! program (`r0 = 0; exit`) loaded and attached through bpf(2), a kprobe perf event, a ring
//! buffer map — so its answer (success or an errno) is what the kernel says, not what reach
//! concluded. Expectations tied to a release string or to this project's machines are exactly
//! what these facts replace: the same test must hold on a 6.18 host under lockdown, on stock
//! Debian 5.10–6.18 and on WSL2.
use std::{
    ffi::CString,
    io,
    os::fd::{FromRawFd, OwnedFd, RawFd},
    path::Path,
    process::Command,
};

/// The kernel function reach's bind probes (and doctor's kprobe/fentry probes) hook.
pub const BIND_FUNCTION: &str = "inet_bind";
/// The tracepoint reach's tp_btf and classic tracepoint listen probes use.
pub const STATE_TRACEPOINT: &str = "inet_sock_set_state";
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// `uname -r` as numbers: `6.18.44-fc-v973` → (6, 18, 44), `6.1.0-50-amd64` → (6, 1, 0).
pub fn version() -> (u32, u32, u32) {
    parse_version(&release())
}

/// Whether the running kernel is at least `major.minor`.
pub fn at_least(major: u32, minor: u32) -> bool {
    let (ma, mi, _) = version();
    (ma, mi) >= (major, minor)
}

/// `uname -r`.
pub fn release() -> String {
    let out = Command::new("uname").arg("-r").output().expect("running uname -r");
    assert!(out.status.success(), "uname -r failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The leading `MAJOR.MINOR[.PATCH]` numbers of a release string.
pub fn parse_version(release: &str) -> (u32, u32, u32) {
    let numbers: Vec<u32> = release
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse().unwrap_or_else(|_| panic!("release {release:?} has no version")))
        .collect();
    match numbers.as_slice() {
        [major, minor, patch] => (*major, *minor, *patch),
        [major, minor] => (*major, *minor, 0),
        _ => panic!("release {release:?} is not MAJOR.MINOR…"),
    }
}

/// A refused request: which step failed and with which errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub step: String,
    pub errno: Option<i32>,
}

impl Refusal {
    fn errno(step: impl Into<String>) -> Self {
        Self { step: step.into(), errno: io::Error::last_os_error().raw_os_error() }
    }
    fn absent(step: impl Into<String>) -> Self {
        Self { step: step.into(), errno: None }
    }

    /// The errno as the C library words it ("Operation not permitted"), which every error
    /// message built from an `io::Error` contains.
    pub fn errno_text(&self) -> Option<String> {
        let code = self.errno?;
        let full = io::Error::from_raw_os_error(code).to_string();
        Some(full.split(" (os error").next().unwrap_or(&full).to_string())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.errno_text() {
            Some(text) => write!(f, "{}: {text}", self.step),
            None => write!(f, "{}", self.step),
        }
    }
}

/// The kprobe PMU exists (CONFIG_KPROBES with perf kprobes).
pub fn kprobe_pmu() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe").exists()
}

/// A kprobe perf event on [`BIND_FUNCTION`] opens and a kprobe program attaches to it.
pub fn kprobe() -> Result<(), Refusal> {
    let ty = std::fs::read_to_string("/sys/bus/event_source/devices/kprobe/type")
        .map_err(|_| Refusal::absent("no kprobe PMU (/sys/bus/event_source/devices/kprobe)"))?;
    let ty: u64 = ty.trim().parse().expect("the kprobe PMU type is a number");
    let symbol = CString::new(BIND_FUNCTION).unwrap();
    // struct perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1, 72 bytes): type and size,
    // config 0 (a kprobe, not a kretprobe), config1 = the symbol's address, config2 = offset 0.
    let mut attr = [0u64; 9];
    attr[0] = ty | (72 << 32);
    attr[7] = symbol.as_ptr() as u64;
    // SAFETY: attr is a valid perf_event_attr of the size it states; symbol outlives the call.
    let fd = unsafe {
        libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    };
    let event = owned(fd, &format!("perf_event_open(kprobe {BIND_FUNCTION})"))?;
    let prog = load_program(PROG_TYPE_KPROBE, 0, 0)?;
    const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
    // SAFETY: both fds are open; the ioctl takes the program fd by value.
    let r = unsafe { libc::ioctl(raw(&event), PERF_EVENT_IOC_SET_BPF, raw(&prog)) };
    if r != 0 {
        return Err(Refusal::errno("PERF_EVENT_IOC_SET_BPF (attaching a kprobe program)"));
    }
    Ok(())
}

/// An fentry program on [`BIND_FUNCTION`] loads and attaches.
pub fn fentry() -> Result<(), Refusal> {
    let id = btf_id(BIND_FUNCTION, "function")?;
    let prog = load_program(PROG_TYPE_TRACING, ATTACH_TRACE_FENTRY, id)?;
    raw_tracepoint_open(&prog).map(drop)
}

/// A tp_btf program on [`STATE_TRACEPOINT`] loads and attaches.
pub fn tp_btf() -> Result<(), Refusal> {
    let id = btf_id(&format!("btf_trace_{STATE_TRACEPOINT}"), "typedef")?;
    let prog = load_program(PROG_TYPE_TRACING, ATTACH_TRACE_RAW_TP, id)?;
    raw_tracepoint_open(&prog).map(drop)
}

/// A TCX ingress link attaches to `lo` of a scratch network namespace.
pub fn tcx() -> Result<(), Refusal> {
    let prog = load_program(PROG_TYPE_SCHED_CLS, 0, 0)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare affects only this short-lived thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(Refusal::errno("unshare(CLONE_NEWNET)"));
            }
            // A new namespace's lo is ifindex 1. bpf_attr.link_create: prog_fd, target_ifindex,
            // attach_type, flags, then the tcx relative_fd/expected_revision (zero).
            let mut attr = [0u32; 8];
            attr[0] = raw(&prog) as u32;
            attr[1] = 1;
            attr[2] = ATTACH_TCX_INGRESS;
            bpf(CMD_LINK_CREATE, &mut attr, "BPF_LINK_CREATE (TCX ingress on lo)").map(drop)
        })
        .join()
        .expect("the TCX probe thread panicked")
    })
}

/// A BPF ring buffer map can be created.
pub fn ring_buffer() -> Result<(), Refusal> {
    // bpf_attr.map_create: map_type, key_size, value_size, max_entries (one page).
    let mut attr = [MAP_TYPE_RINGBUF, 0, 0, 4096, 0, 0, 0, 0];
    bpf(CMD_MAP_CREATE, &mut attr, "BPF_MAP_CREATE (ring buffer)").map(drop)
}

/// A cgroup v2 hierarchy is mounted (what cgroup sock programs attach to).
pub fn cgroup2_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .expect("reading /proc/self/mounts")
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
}

/// The kernel lockdown mode (`integrity`, `none`, …) from securityfs, mounted in a private
/// mount namespace if it is not mounted (so the host's mounts stay as they were); None when
/// the kernel has no lockdown LSM.
pub fn lockdown() -> Option<String> {
    let out = in_private_mount(
        "securityfs",
        "/sys/kernel/security",
        "cat /sys/kernel/security/lockdown 2>/dev/null || true",
    );
    let line = out.trim();
    // "none [integrity] confidentiality": the bracketed word is the active mode.
    let start = line.find('[')?;
    let end = line[start..].find(']')? + start;
    Some(line[start + 1..end].to_string())
}

/// Which of `events` (paths under tracefs' `events/`, e.g. `sock/inet_sock_set_state`) exist,
/// read from tracefs mounted in a private mount namespace when it is not mounted.
pub fn trace_events(events: &[&str]) -> Vec<String> {
    let script = events
        .iter()
        .map(|e| format!("[ -d /sys/kernel/tracing/events/{e} ] && echo {e};"))
        .collect::<String>();
    in_private_mount("tracefs", "/sys/kernel/tracing", &format!("{script} true"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs `script` with `fstype` mounted at `target`, in a mount namespace of its own
/// (util-linux `unshare -m` makes it private), so nothing is left mounted on the host.
fn in_private_mount(fstype: &str, target: &str, script: &str) -> String {
    let full = format!(
        "grep -q ' {target} {fstype} ' /proc/self/mounts || mount -t {fstype} nodev {target} \
         || exit 97; {script}"
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &full])
        .output()
        .expect("unshare (util-linux) is needed");
    assert!(
        out.status.success(),
        "mounting {fstype} at {target} in a private mount namespace failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// perf_event_open's flag for a close-on-exec fd (not in every libc crate version).
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const CMD_MAP_CREATE: libc::c_long = 0;
const CMD_PROG_LOAD: libc::c_long = 5;
const CMD_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const CMD_LINK_CREATE: libc::c_long = 28;
const PROG_TYPE_KPROBE: u32 = 2;
const PROG_TYPE_SCHED_CLS: u32 = 3;
const PROG_TYPE_TRACING: u32 = 26;
const MAP_TYPE_RINGBUF: u32 = 27;
const ATTACH_TRACE_RAW_TP: u32 = 23;
const ATTACH_TRACE_FENTRY: u32 = 24;
const ATTACH_TCX_INGRESS: u32 = 46;

/// `r0 = 0; exit`: valid for every program type used here (0 is "continue"/TC_ACT_OK).
const RETURN_ZERO: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];

fn load_program(prog_type: u32, attach_type: u32, attach_btf_id: u32) -> Result<OwnedFd, Refusal> {
    let license = c"GPL";
    // bpf_attr.prog_load as u32 words: prog_type, insn_cnt, insns (u64 at 8), license (u64 at
    // 16), log level/size/buf zero, kern_version, prog_flags, prog_name[16] at 48,
    // prog_ifindex at 64, expected_attach_type at 68, …, attach_btf_id at 108.
    let mut attr = [0u32; 32];
    attr[0] = prog_type;
    attr[1] = RETURN_ZERO.len() as u32;
    put_u64(&mut attr, 2, RETURN_ZERO.as_ptr() as u64);
    put_u64(&mut attr, 4, license.as_ptr() as u64);
    // Named so leftover checks for reach's own programs (`reach_…`) never count these.
    let name = b"kfacts_probe\0\0\0\0";
    for (i, chunk) in name.chunks(4).enumerate() {
        attr[12 + i] = u32::from_ne_bytes(chunk.try_into().unwrap());
    }
    attr[17] = attach_type;
    attr[27] = attach_btf_id;
    bpf(CMD_PROG_LOAD, &mut attr, &format!("BPF_PROG_LOAD (program type {prog_type})"))
}

fn raw_tracepoint_open(prog: &OwnedFd) -> Result<OwnedFd, Refusal> {
    // bpf_attr.raw_tracepoint: name (NULL: the program's attach_btf_id decides), prog_fd.
    let mut attr = [0u32; 4];
    attr[2] = raw(prog) as u32;
    bpf(CMD_RAW_TRACEPOINT_OPEN, &mut attr, "BPF_RAW_TRACEPOINT_OPEN (attaching)")
}

fn bpf(cmd: libc::c_long, attr: &mut [u32], what: &str) -> Result<OwnedFd, Refusal> {
    // SAFETY: attr is a zero-padded bpf_attr of the size passed; pointers in it stay valid for
    // the call (callers keep what they point at alive).
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of_val(attr) as u32)
    };
    owned(fd, what)
}

fn owned(fd: libc::c_long, what: &str) -> Result<OwnedFd, Refusal> {
    if fd < 0 {
        return Err(Refusal::errno(what));
    }
    // SAFETY: a fresh fd returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn raw(fd: &OwnedFd) -> RawFd {
    std::os::fd::AsRawFd::as_raw_fd(fd)
}

fn put_u64(words: &mut [u32], at: usize, value: u64) {
    let bytes = value.to_ne_bytes();
    words[at] = u32::from_ne_bytes(bytes[..4].try_into().unwrap());
    words[at + 1] = u32::from_ne_bytes(bytes[4..].try_into().unwrap());
}

/// The BTF id of the function or typedef `name` in the kernel's BTF.
fn btf_id(name: &str, kind: &str) -> Result<u32, Refusal> {
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(Refusal::absent(format!("no kernel BTF at {VMLINUX_BTF}")));
    }
    let btf = btf_rs::Btf::from_file(VMLINUX_BTF).expect("parsing the kernel's BTF");
    let ids = btf.resolve_ids_by_name(name).unwrap_or_default();
    ids.into_iter()
        .find(|id| {
            matches!(
                (kind, btf.resolve_type_by_id(*id)),
                ("function", Ok(btf_rs::Type::Func(_))) | ("typedef", Ok(btf_rs::Type::Typedef(_)))
            )
        })
        .ok_or_else(|| Refusal::absent(format!("no BTF {kind} {name} in {VMLINUX_BTF}")))
}

/// Whether the kernel's BTF names `name` as a function or typedef (a cheap "does this kernel
/// have X" that reads the kernel's own type information).
pub fn btf_has(name: &str, kind: &str) -> bool {
    btf_id(name, kind).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_as_numbers() {
        assert_eq!(parse_version("6.18.44-fc-v973"), (6, 18, 44));
        assert_eq!(parse_version("6.1.0-50-amd64"), (6, 1, 0));
        assert_eq!(parse_version("5.15.167.4-microsoft-standard-WSL2"), (5, 15, 167));
        assert_eq!(parse_version("6.12"), (6, 12, 0));
        assert!(parse_version("6.9.1") < parse_version("6.10.0"), "numeric, not lexical");
    }

    #[test]
    fn errno_text_is_the_c_library_wording() {
        let r = Refusal { step: "x".into(), errno: Some(libc::EPERM) };
        assert_eq!(r.errno_text().as_deref(), Some("Operation not permitted"));
        assert_eq!(r.to_string(), "x: Operation not permitted");
        assert_eq!(Refusal::absent("y").errno_text(), None);
    }
}
