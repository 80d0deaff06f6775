//! Probes each attach mechanism reach can use by really loading and attaching a tiny program
//! (the `reach-doctor` BPF object) and checking that it fires.
//!
//! Asking the kernel is the only reliable test: config files lie (kprobes can be configured but
//! forbidden by an LSM; fentry can load-fail with EPERM under lockdown), so nothing here is
//! inferred from version numbers alone. Everything attached is detached before returning; TC
//! probes run in a throwaway network namespace so no real interface is ever touched.
use std::{
    collections::BTreeMap,
    fs::File,
    net::{TcpListener, UdpSocket},
    path::Path,
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, MapType, PerCpuArray},
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSock, FEntry, KProbe, SchedClassifier, TcAttachType,
        TracePoint,
        tc::{self, NlOptions, TcAttachOptions},
    },
};
use reach_common::doctor::{
    HIT_CGROUP_SOCK, HIT_FENTRY, HIT_KPROBE, HIT_TC, HIT_TP_BTF, HIT_TRACEPOINT, HITS_MAP,
};
use serde::Serialize;

use crate::{ebpf_objects, kernel::pseudofs, netns::enter};

/// The kernel function the bind probes hook; also the doctor's kprobe/fentry target.
pub const BIND_FUNCTION: &str = "inet_bind";
/// The tracepoint carrying TCP state changes (→ LISTEN, LISTEN → CLOSE).
pub const STATE_TRACEPOINT: (&str, &str) = ("sock", "inet_sock_set_state");

/// Outcome of probing one mechanism.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Capability {
    pub available: bool,
    /// Why it is (un)available, in words a user can act on.
    pub reason: String,
    /// Whether the attached probe ran when provoked (None when not attached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fired: Option<bool>,
}

impl Capability {
    fn yes(reason: impl Into<String>, fired: bool) -> Self {
        Self { available: true, reason: reason.into(), fired: Some(fired) }
    }
    fn no(reason: impl Into<String>) -> Self {
        Self { available: false, reason: reason.into(), fired: None }
    }
}

/// Probed mechanisms, keyed by the names of the doctor JSON contract.
pub type Capabilities = BTreeMap<&'static str, Capability>;

/// Extra facts found while probing that the attach plan needs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeFacts {
    /// `syscalls:sys_enter_bind`/`sys_exit_bind` exist (CONFIG_FTRACE_SYSCALLS).
    pub syscall_bind_tracepoints: bool,
    /// `skb:kfree_skb` exists as a classic tracepoint.
    pub kfree_skb_tracepoint: bool,
    /// Kernel BTF knows `trace_event_raw_kfree_skb`'s `reason` (drop reasons, ≥ 5.17).
    pub kfree_skb_has_reason: bool,
}

/// Names of all mechanisms, in report order.
pub const NAMES: [&str; 8] =
    ["kprobe", "fentry", "tp_btf", "tracepoint", "cgroup_sock", "tc_netlink", "tcx", "ring_buffer"];

/// Marks every mechanism unavailable for the same reason (e.g. missing privileges).
pub fn all_unavailable(reason: &str) -> Capabilities {
    NAMES.iter().map(|n| (*n, Capability::no(reason))).collect()
}

/// Probes every mechanism. Requires CAP_BPF/CAP_SYS_ADMIN (callers check first).
pub fn probe() -> (Capabilities, ProbeFacts) {
    let mut phases = crate::output::phases::Phases::new();
    let r = probe_timed(&mut phases);
    tracing::debug!("capability probe: {}", phases.summary());
    r
}

fn probe_timed(phases: &mut crate::output::phases::Phases) -> (Capabilities, ProbeFacts) {
    let mut caps = Capabilities::new();
    let mut facts = ProbeFacts::default();
    caps.insert("ring_buffer", ring_buffer());

    // The shared parse (held by a start-up that probes first) also serves as the loader's
    // target BTF: `Ebpf::load` would parse the kernel's BTF a second time for that.
    let btf = super::btf::aya_btf();
    let mut ebpf = match EbpfLoader::new().btf(btf.as_deref().ok()).load(ebpf_objects::doctor()) {
        Ok(ebpf) => ebpf,
        Err(e) => {
            let reason = format!("loading reach's probe object failed: {}", chain(&e));
            let mut all = all_unavailable(&reason);
            all.insert(
                "ring_buffer",
                caps.remove("ring_buffer").unwrap_or(Capability::no(&reason)),
            );
            return (all, facts);
        }
    };
    phases.mark("load object");
    let hits = match ebpf.take_map(HITS_MAP).map(PerCpuArray::<MapData, u64>::try_from) {
        Some(Ok(map)) => map,
        _ => {
            return (all_unavailable("probe object lacks its hit-counter map (build bug)"), facts);
        }
    };
    let tracefs = pseudofs::tracefs();
    if let Ok(fs) = &tracefs {
        let events = fs.path.join("events");
        facts.syscall_bind_tracepoints = events.join("syscalls/sys_enter_bind").is_dir()
            && events.join("syscalls/sys_exit_bind").is_dir();
        facts.kfree_skb_tracepoint = events.join("skb/kfree_skb").is_dir();
        facts.kfree_skb_has_reason = std::fs::read_to_string(events.join("skb/kfree_skb/format"))
            .map(|f| f.contains("reason"))
            .unwrap_or(false);
    }

    // Attach everything global first, provoke once, then read all counters: one bind+listen
    // exercises kprobe/fentry (inet_bind), post_bind4 and both state tracepoints.
    let mut attached: BTreeMap<&'static str, (u32, String)> = BTreeMap::new();
    let mut record =
        |name: &'static str, slot: u32, r: Result<String, String>, caps: &mut Capabilities| match r
        {
            Ok(how) => {
                attached.insert(name, (slot, how));
            }
            Err(why) => {
                caps.insert(name, Capability::no(why));
            }
        };
    phases.mark("tracefs");
    record("kprobe", HIT_KPROBE, attach_kprobe(&mut ebpf), &mut caps);
    phases.mark("kprobe");
    match &btf {
        Ok(btf) => {
            record("fentry", HIT_FENTRY, attach_fentry(&mut ebpf, btf), &mut caps);
            phases.mark("fentry");
            record("tp_btf", HIT_TP_BTF, attach_tp_btf(&mut ebpf, btf), &mut caps);
            phases.mark("tp_btf");
        }
        Err(e) => {
            let why = format!("no kernel BTF at /sys/kernel/btf/vmlinux ({e})");
            caps.insert("fentry", Capability::no(&why));
            caps.insert("tp_btf", Capability::no(why));
        }
    }
    match &tracefs {
        Ok(fs) => {
            record("tracepoint", HIT_TRACEPOINT, attach_tracepoint(&mut ebpf, &fs.path), &mut caps)
        }
        Err(e) => {
            caps.insert("tracepoint", Capability::no(format!("tracefs unavailable: {e}")));
        }
    }
    phases.mark("tracepoint");
    record("cgroup_sock", HIT_CGROUP_SOCK, attach_cgroup_sock(&mut ebpf), &mut caps);
    phases.mark("cgroup_sock");

    let before = read_hits(&hits);
    let provoked = provoke_bind_listen();
    let after = read_hits(&hits);
    for (name, (slot, how)) in attached {
        let fired = after[slot as usize] > before[slot as usize];
        let mut reason = how;
        if let Err(e) = &provoked {
            reason.push_str(&format!("; could not provoke it: {e}"));
        } else if fired {
            reason.push_str("; fired on a test bind/listen");
        } else {
            reason.push_str("; attached but did not fire on a test bind/listen");
        }
        caps.insert(name, Capability::yes(reason, fired));
    }
    // The global probes stay attached until `ebpf` drops at the end of this function: a few
    // milliseconds, during which they only count.
    phases.mark("provoke");
    let (netlink, tcx) = probe_tc(&mut ebpf, &hits);
    phases.mark("tc");
    caps.insert("tc_netlink", netlink);
    caps.insert("tcx", tcx);
    drop(tracefs);
    (caps, facts)
}

fn ring_buffer() -> Capability {
    match aya::sys::is_map_supported(MapType::RingBuf) {
        Ok(true) => Capability {
            available: true,
            reason: "BPF_MAP_TYPE_RINGBUF supported (≥ 5.8)".into(),
            fired: None,
        },
        Ok(false) => Capability::no("BPF_MAP_TYPE_RINGBUF not supported: kernel older than 5.8"),
        Err(e) => Capability::no(format!("probing BPF_MAP_TYPE_RINGBUF failed: {}", chain(&e))),
    }
}

fn attach_kprobe(ebpf: &mut Ebpf) -> Result<String, String> {
    let pmu = Path::new("/sys/bus/event_source/devices/kprobe/type").exists();
    let legacy = ["/sys/kernel/tracing/kprobe_events", "/sys/kernel/debug/tracing/kprobe_events"]
        .iter()
        .any(|p| Path::new(p).exists());
    if !pmu && !legacy {
        return Err("kernel built without CONFIG_KPROBES: no kprobe PMU \
                    (/sys/bus/event_source/devices/kprobe) and no kprobe_events in tracefs"
            .into());
    }
    let prog: &mut KProbe =
        ebpf_objects::program_mut(ebpf, "reach_doctor_kprobe").map_err(|e| e.to_string())?;
    prog.load().map_err(|e| format!("loading a kprobe program failed: {}", chain(&e)))?;
    prog.attach(BIND_FUNCTION, 0)
        .map_err(|e| format!("attaching a kprobe to {BIND_FUNCTION} failed: {}", chain(&e)))?;
    Ok(format!(
        "kprobe attached to {BIND_FUNCTION} via {}",
        if pmu { "the kprobe PMU" } else { "tracefs kprobe_events" }
    ))
}

fn attach_fentry(ebpf: &mut Ebpf, btf: &Btf) -> Result<String, String> {
    let prog: &mut FEntry =
        ebpf_objects::program_mut(ebpf, "reach_doctor_fentry").map_err(|e| e.to_string())?;
    prog.load(BIND_FUNCTION, btf).map_err(|e| {
        let mut why = format!("loading an fentry program on {BIND_FUNCTION} failed: {}", chain(&e));
        if errno_of(&e) == Some(libc::EPERM) {
            why.push_str(
                " — the kernel refuses BPF trampolines although reach is privileged \
                 (kernel lockdown or a BPF-LSM policy forbids fentry/fexit here)",
            );
        }
        why
    })?;
    prog.attach()
        .map_err(|e| format!("attaching fentry to {BIND_FUNCTION} failed: {}", chain(&e)))?;
    Ok(format!("fentry program loaded and attached to {BIND_FUNCTION}"))
}

fn attach_tp_btf(ebpf: &mut Ebpf, btf: &Btf) -> Result<String, String> {
    let prog: &mut BtfTracePoint =
        ebpf_objects::program_mut(ebpf, "reach_doctor_tp_btf").map_err(|e| e.to_string())?;
    prog.load(STATE_TRACEPOINT.1, btf)
        .map_err(|e| format!("loading tp_btf {} failed: {}", STATE_TRACEPOINT.1, chain(&e)))?;
    prog.attach()
        .map_err(|e| format!("attaching tp_btf {} failed: {}", STATE_TRACEPOINT.1, chain(&e)))?;
    Ok(format!("tp_btf attached to {}", STATE_TRACEPOINT.1))
}

fn attach_tracepoint(ebpf: &mut Ebpf, tracefs: &Path) -> Result<String, String> {
    let (category, name) = STATE_TRACEPOINT;
    if !tracefs.join("events").join(category).join(name).is_dir() {
        return Err(format!("tracepoint {category}:{name} not found in {}", tracefs.display()));
    }
    let prog: &mut TracePoint =
        ebpf_objects::program_mut(ebpf, "reach_doctor_tracepoint").map_err(|e| e.to_string())?;
    prog.load().map_err(|e| format!("loading a tracepoint program failed: {}", chain(&e)))?;
    prog.attach(category, name)
        .map_err(|e| format!("attaching to {category}:{name} failed: {}", chain(&e)))?;
    Ok(format!("classic tracepoint {category}:{name} attached (tracefs at {})", tracefs.display()))
}

fn attach_cgroup_sock(ebpf: &mut Ebpf) -> Result<String, String> {
    let root = super::cgroup::v2_mount()
        .ok_or("no cgroup v2 hierarchy mounted (see /proc/self/mountinfo)")?;
    let dir = File::open(&root).map_err(|e| format!("open {}: {e}", root.display()))?;
    let prog: &mut CgroupSock =
        ebpf_objects::program_mut(ebpf, "reach_doctor_post_bind4").map_err(|e| e.to_string())?;
    prog.load().map_err(|e| format!("loading a cgroup sock program failed: {}", chain(&e)))?;
    // On ≥ 5.7 aya attaches through a bpf_link, which always coexists with other programs and
    // rejects attach flags, so `Single` (no flags) is the non-intrusive choice. On older kernels
    // it falls back to BPF_PROG_ATTACH, where only AllowMultiple avoids displacing others.
    let mode = if aya::util::KernelVersion::current()
        .is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 7, 0))
    {
        CgroupAttachMode::Single
    } else {
        CgroupAttachMode::AllowMultiple
    };
    prog.attach(&dir, mode)
        .map_err(|e| format!("attaching post_bind4 to {} failed: {}", root.display(), chain(&e)))?;
    Ok(format!("post_bind4 attached to the cgroup v2 root {}", root.display()))
}

/// TC attach tests inside a throwaway namespace: netlink clsact first, then TCX.
fn probe_tc(ebpf: &mut Ebpf, hits: &PerCpuArray<MapData, u64>) -> (Capability, Capability) {
    let prog: &mut SchedClassifier = match ebpf_objects::program_mut(ebpf, "reach_doctor_tc") {
        Ok(p) => p,
        Err(e) => {
            let why = e.to_string();
            return (Capability::no(&why), Capability::no(why));
        }
    };
    if let Err(e) = prog.load() {
        let why = format!("loading a TC classifier failed: {}", chain(&e));
        return (Capability::no(&why), Capability::no(why));
    }
    let result = enter::in_new_netns(|| {
        if let Err(e) = enter::loopback_up() {
            let why = format!("could not bring up lo in a scratch namespace: {e}");
            return (Capability::no(&why), Capability::no(why));
        }
        let netlink = tc_attach_and_fire(prog, hits, "netlink", || {
            tc::qdisc_add_clsact("lo")
                .map_err(|e| format!("adding a clsact qdisc failed: {}", chain(&e)))?;
            Ok(TcAttachOptions::Netlink(NlOptions::default()))
        });
        let tcx = if aya::util::KernelVersion::current()
            .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
        {
            tc_attach_and_fire(prog, hits, "TCX", || {
                Ok(TcAttachOptions::TcxOrder(Default::default()))
            })
        } else {
            Capability::no("TCX links need Linux ≥ 6.6; reach uses a clsact qdisc instead")
        };
        (netlink, tcx)
    });
    result.unwrap_or_else(|e| {
        let why = format!("could not create a scratch network namespace: {e}");
        (Capability::no(&why), Capability::no(why))
    })
}

fn tc_attach_and_fire(
    prog: &mut SchedClassifier,
    hits: &PerCpuArray<MapData, u64>,
    how: &str,
    options: impl FnOnce() -> Result<TcAttachOptions, String>,
) -> Capability {
    let options = match options() {
        Ok(o) => o,
        Err(e) => return Capability::no(e),
    };
    let link = match prog.attach_with_options("lo", TcAttachType::Ingress, options) {
        Ok(link) => link,
        Err(e) => {
            return Capability::no(format!(
                "attaching a classifier via {how} failed: {}",
                chain(&e)
            ));
        }
    };
    let before = read_hits(hits)[HIT_TC as usize];
    // A datagram to the discard port on lo loops back through lo's ingress hook.
    let sent = UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"reach", "127.0.0.1:9"));
    let fired = read_hits(hits)[HIT_TC as usize] > before;
    let _ = prog.detach(link);
    let mut reason =
        format!("classifier attached to lo ingress via {how} (in a scratch namespace)");
    if let Err(e) = sent {
        reason.push_str(&format!("; could not send a test packet: {e}"));
    } else if fired {
        reason.push_str("; saw a test packet");
    } else {
        reason.push_str("; attached but did not see the test packet");
    }
    Capability::yes(reason, fired)
}

/// One bind + listen on 127.0.0.1 inside a scratch namespace: fires inet_bind, post_bind4 and
/// the CLOSE → LISTEN state change without exposing anything on the host.
fn provoke_bind_listen() -> Result<(), String> {
    enter::in_new_netns(|| {
        enter::loopback_up().map_err(|e| format!("lo up: {e}"))?;
        TcpListener::bind("127.0.0.1:0").map(drop).map_err(|e| format!("test bind: {e}"))
    })
    .map_err(|e| e.to_string())?
}

fn read_hits(hits: &PerCpuArray<MapData, u64>) -> [u64; reach_common::doctor::HIT_SLOTS as usize] {
    let mut out = [0; reach_common::doctor::HIT_SLOTS as usize];
    for (slot, total) in out.iter_mut().enumerate() {
        if let Ok(values) = hits.get(&(slot as u32), 0) {
            *total = values.iter().sum();
        }
    }
    out
}

/// The error and all its sources, joined: aya's top-level messages hide the errno.
pub fn chain(e: &dyn std::error::Error) -> String {
    // aya appends "Verifier output: <log>" even when the log is empty.
    let mut s = e
        .to_string()
        .trim_end()
        .trim_end_matches("Verifier output:")
        .trim_end_matches(". ")
        .to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let text = src.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = src.source();
    }
    s
}

/// The errno at the bottom of an error chain, if any.
fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            return Some(code);
        }
        cur = err.source();
    }
    None
}
