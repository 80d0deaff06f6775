//! Loads and attaches the bind/listen probes in one of three modes; dropping the value detaches
//! and unloads everything (aya ties every link to its program, and programs to the `Ebpf`).
use std::fmt;

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, FExit, KProbe, TracePoint},
};
use reach_common::{LOST_SLOT, offsets::SOCK_OFFSETS_GLOBAL};

use crate::{
    ebpf_objects,
    kernel::{
        btf::{KernelBtf, aya_btf},
        capabilities::chain,
        pseudofs::{self, PseudoFs},
    },
    probes::offsets,
};

/// How binds and listens are observed (`--attach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// kprobe + kretprobe on inet_bind, inet6_bind, inet_listen.
    Kprobe,
    /// fexit on inet_bind, inet6_bind, inet_listen (needs BPF trampolines).
    Fentry,
    /// syscalls:sys_enter/exit_bind and inet_sock_set_state (→ LISTEN); no kprobes needed.
    Tracepoint,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kprobe => "kprobe",
            Self::Fentry => "fentry",
            Self::Tracepoint => "tracepoint",
        })
    }
}

impl AttachMode {
    /// The mode named by `reach doctor`'s plan for binds.
    pub fn from_plan(plan_bind: &str) -> Option<Self> {
        match plan_bind {
            "kprobe" => Some(Self::Kprobe),
            "fentry" => Some(Self::Fentry),
            "tracepoint" => Some(Self::Tracepoint),
            _ => None,
        }
    }
}

/// The attached probes. Drop detaches.
pub struct BindListen {
    ebpf: Ebpf,
    pub mode: AttachMode,
    /// Human descriptions of every attachment, for the announcement.
    pub attachments: Vec<String>,
    // Kept until drop so a tracefs we mounted stays while tracepoints use it.
    _tracefs: Option<PseudoFs>,
}

const BIND_FUNCTIONS: [&str; 2] = ["inet_bind", "inet6_bind"];

/// Default size of the bind/listen ring buffer: ~2000 events between two reads.
pub const DEFAULT_RING_KIB: u32 = 256;

/// Checks a `--ring-buffer-kib` value: the kernel wants a power-of-two number of pages.
pub fn validate_ring_kib(kib: u32) -> Result<(), String> {
    if kib < 4 || !kib.is_power_of_two() || kib > 1 << 20 {
        return Err(format!(
            "--ring-buffer-kib must be a power of two from 4 to 1048576, got {kib}"
        ));
    }
    Ok(())
}

impl BindListen {
    /// Attaches in `mode` with a ring buffer of `ring_kib` KiB (see `validate_ring_kib`).
    pub fn attach(mode: AttachMode, ring_kib: u32) -> anyhow::Result<Self> {
        validate_ring_kib(ring_kib).map_err(|e| anyhow!(e))?;
        let kbtf = KernelBtf::load()?;
        let tracefs = pseudofs::tracefs().ok();
        let offsets = offsets::resolve(&kbtf, tracefs.as_ref().map(|t| t.path.as_path()))?;
        let report_listen_from_state: u8 = (mode == AttachMode::Tracepoint).into();
        let ebpf = EbpfLoader::new()
            .override_global(SOCK_OFFSETS_GLOBAL, &offsets, true)
            .override_global("STATE_REPORTS_LISTEN", &report_listen_from_state, true)
            .map_max_entries("SOCK_EVENTS", ring_kib * 1024)
            .load(ebpf_objects::probes())
            .map_err(|e| anyhow!("loading reach's probe object failed: {}", chain(&e)))?;
        let mut me = Self { ebpf, mode, attachments: Vec::new(), _tracefs: tracefs };
        let btf = aya_btf().context("reading kernel BTF for typed programs")?;
        match mode {
            AttachMode::Kprobe => me.attach_kprobes()?,
            AttachMode::Fentry => me.attach_fexits(&btf)?,
            AttachMode::Tracepoint => me.attach_syscall_tracepoints(&offsets)?,
        }
        me.attach_state(&btf)?;
        Ok(me)
    }

    fn attach_kprobes(&mut self) -> anyhow::Result<()> {
        for (prog, targets) in [
            ("reach_kp_bind", &BIND_FUNCTIONS[..]),
            ("reach_krp_bind", &BIND_FUNCTIONS[..]),
            ("reach_kp_listen", &["inet_listen"][..]),
            ("reach_krp_listen", &["inet_listen"][..]),
        ] {
            let p: &mut KProbe = ebpf_objects::program_mut(&mut self.ebpf, prog)?;
            p.load().map_err(|e| anyhow!("loading {prog}: {}", chain(&e)))?;
            for target in targets {
                p.attach(target, 0).map_err(|e| anyhow!("kprobe on {target}: {}", chain(&e)))?;
                let kind = if prog.starts_with("reach_krp") { "kretprobe" } else { "kprobe" };
                self.attachments.push(format!("{kind} {target}"));
            }
        }
        Ok(())
    }

    fn attach_fexits(&mut self, btf: &Btf) -> anyhow::Result<()> {
        for (prog, target) in [
            ("reach_fx_bind", "inet_bind"),
            ("reach_fx_bind6", "inet6_bind"),
            ("reach_fx_listen", "inet_listen"),
        ] {
            let p: &mut FExit = ebpf_objects::program_mut(&mut self.ebpf, prog)?;
            p.load(target, btf).map_err(|e| anyhow!("loading fexit on {target}: {}", chain(&e)))?;
            p.attach().map_err(|e| anyhow!("attaching fexit on {target}: {}", chain(&e)))?;
            self.attachments.push(format!("fexit {target}"));
        }
        Ok(())
    }

    fn attach_syscall_tracepoints(
        &mut self,
        o: &reach_common::offsets::SockOffsets,
    ) -> anyhow::Result<()> {
        if !o.tp_bind_fd.is_present() || !o.tp_exit_ret.is_present() {
            bail!(
                "syscalls:sys_enter_bind/sys_exit_bind tracepoints are missing (kernel without CONFIG_FTRACE_SYSCALLS, or tracefs unavailable)"
            );
        }
        if !o.fdtable_fd.is_present() || !o.file_private_data.is_present() {
            bail!("kernel BTF lacks the fd table fields needed to find a bind()'s socket");
        }
        for (prog, name) in
            [("reach_sys_bind", "sys_enter_bind"), ("reach_sys_bindx", "sys_exit_bind")]
        {
            let p: &mut TracePoint = ebpf_objects::program_mut(&mut self.ebpf, prog)?;
            p.load().map_err(|e| anyhow!("loading {prog}: {}", chain(&e)))?;
            p.attach("syscalls", name)
                .map_err(|e| anyhow!("tracepoint syscalls:{name}: {}", chain(&e)))?;
            self.attachments.push(format!("tracepoint syscalls:{name}"));
        }
        Ok(())
    }

    /// inet_sock_set_state: typed tp_btf when allowed, else the classic tracepoint.
    fn attach_state(&mut self, btf: &Btf) -> anyhow::Result<()> {
        let typed = (|| -> anyhow::Result<()> {
            let p: &mut BtfTracePoint =
                ebpf_objects::program_mut(&mut self.ebpf, "reach_btf_state")?;
            p.load("inet_sock_set_state", btf).map_err(|e| anyhow!("{}", chain(&e)))?;
            p.attach().map_err(|e| anyhow!("{}", chain(&e)))?;
            Ok(())
        })();
        match typed {
            Ok(()) => self.attachments.push("tp_btf inet_sock_set_state".into()),
            Err(typed_err) => {
                let p: &mut TracePoint =
                    ebpf_objects::program_mut(&mut self.ebpf, "reach_tp_state")?;
                p.load().map_err(|e| anyhow!("loading reach_tp_state: {}", chain(&e)))?;
                p.attach("sock", "inet_sock_set_state").map_err(|e| {
                    anyhow!("neither tp_btf ({typed_err}) nor the classic tracepoint sock:inet_sock_set_state could be attached: {}", chain(&e))
                })?;
                self.attachments.push("tracepoint sock:inet_sock_set_state".into());
            }
        }
        Ok(())
    }

    /// The ring buffer of `SockEvent`s (can be taken once).
    pub fn take_events(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map("SOCK_EVENTS").context("SOCK_EVENTS already taken")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Events lost so far because the ring buffer was full.
    pub fn lost(&self) -> anyhow::Result<u64> {
        let lost: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map("LOST").context("LOST map")?)?;
        Ok(lost.get(&LOST_SLOT, 0)?.iter().sum())
    }
}
