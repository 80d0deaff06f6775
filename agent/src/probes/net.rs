//! The packet path in user space: TC classifiers per watched namespace (ingress SYNs, egress
//! replies) and the `kfree_skb` drop tracer, each from the `reach-net` object.
//!
//! One object instance per namespace, because a TC program cannot tell which namespace its
//! packet is in (the instance carries it in `NET_CONFIG.netns`) and because netlink TC
//! attachments must be detached from inside their namespace: aya opens its netlink socket in
//! the current thread's namespace, so a detach run from the host would address the host
//! interface with the same ifindex. `NetnsTap` therefore drops its `Ebpf` inside the namespace.
use std::path::PathBuf;

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, SchedClassifier, TcAttachType, TracePoint,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
    },
};
use reach_common::net::{IGNORED_REASON_LIMIT, NetConfig, PORT_WORDS, SkbOffsets, counter};

use crate::{
    ebpf_objects::{self, program_mut},
    kernel::{
        btf::{KernelBtf, aya_btf},
        capabilities::chain,
        drop_reasons::DropReasons,
        pseudofs,
    },
    netns::enter,
    probes::{clsact, clsact_record, offsets},
};

/// What the classifiers report and how much.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// Namespaces (inodes) whose drops the drop tracer reports (empty: all).
    pub netns: Vec<u64>,
    /// Only these ports (empty: every port; then drops are limited to SYNs).
    pub ports: Vec<u16>,
    /// Token bucket per CPU: events per second (0 = unbounded) and burst.
    pub rate_per_sec: u32,
    pub burst: u32,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self { netns: Vec::new(), ports: Vec::new(), rate_per_sec: 1000, burst: 200 }
    }
}

/// How a classifier is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcHow {
    /// TCX link (≥ 6.6): fd-owned, gone when reach exits, even after SIGKILL.
    Tcx,
    /// clsact qdisc + direct-action filter over netlink.
    Netlink,
}

/// Program names, also used to find and remove filters a killed run left behind.
pub const INGRESS_PROG: &str = "reach_ingress";
pub const EGRESS_PROG: &str = "reach_egress";
/// The variants for interfaces without a link-layer header (tun, WireGuard, ...).
pub const INGRESS_L3_PROG: &str = "reach_ingress_l3";
pub const EGRESS_L3_PROG: &str = "reach_egress_l3";
/// Every classifier reach attaches, with its hook.
const CLASSIFIERS: [(&str, TcAttachType); 4] = [
    (INGRESS_PROG, TcAttachType::Ingress),
    (EGRESS_PROG, TcAttachType::Egress),
    (INGRESS_L3_PROG, TcAttachType::Ingress),
    (EGRESS_L3_PROG, TcAttachType::Egress),
];

/// Classifiers attached in one namespace.
pub struct NetnsTap {
    pub netns: u64,
    pub ns_path: PathBuf,
    pub how: TcHow,
    /// (interface, ifindex) attached, ingress and egress.
    pub ifaces: Vec<(String, u32)>,
    /// The two attachments of each interface (by ifindex): detached one interface at a time
    /// when it goes away while the tap lives on.
    links: Vec<(u32, [(&'static str, SchedClassifierLinkId); 2])>,
    /// clsact qdiscs reach added (removed again on drop).
    created_clsact: Vec<u32>,
    ebpf: Option<Ebpf>,
}

fn load(config: NetConfig, skb: &SkbOffsets) -> anyhow::Result<Ebpf> {
    EbpfLoader::new()
        .override_global("NET_CONFIG", &config, true)
        .override_global("SKB_OFFSETS", skb, true)
        .load(ebpf_objects::net())
        .map_err(|e| anyhow!("loading reach's packet object failed: {}", chain(&e)))
}

/// Sets `ports` in the object's `WATCHED_PORTS` bitmap (before its programs run).
pub fn fill_ports(ebpf: &mut Ebpf, ports: &[u16]) -> anyhow::Result<()> {
    fill_bitmap(ebpf, "WATCHED_PORTS", PORT_WORDS, ports.iter().map(|&p| u32::from(p)))
}

/// Marks `reasons` (raw core drop-reason values) in the drop tracer's `IGNORED_REASONS`;
/// values beyond the bitmap (subsystem reasons) are never ignored.
fn fill_ignored_reasons(ebpf: &mut Ebpf, reasons: &[u32]) -> anyhow::Result<()> {
    let words = IGNORED_REASON_LIMIT / 64;
    let inside = reasons.iter().copied().filter(|r| *r < IGNORED_REASON_LIMIT);
    fill_bitmap(ebpf, "IGNORED_REASONS", words, inside)
}

/// Sets bit `v % 64` of word `v / 64` for each of `values` in the `u64` array map `name` of
/// `words` entries (the layout the programs test); only words with a bit set are written.
fn fill_bitmap(
    ebpf: &mut Ebpf,
    name: &str,
    words: u32,
    values: impl Iterator<Item = u32>,
) -> anyhow::Result<()> {
    let mut bits = vec![0u64; words as usize];
    for v in values {
        bits[(v / 64) as usize] |= 1 << (v % 64);
    }
    let mut map: Array<_, u64> =
        Array::try_from(ebpf.map_mut(name).with_context(|| format!("{name} map"))?)?;
    for (word, b) in bits.into_iter().enumerate() {
        if b != 0 {
            map.set(word as u32, b, 0)?;
        }
    }
    Ok(())
}

impl NetnsTap {
    /// Attaches ingress and egress classifiers to `ifaces` (default: every interface of the
    /// namespace with an address, plus lo) inside the namespace at `ns_path`.
    pub fn attach(
        netns: u64,
        ns_path: PathBuf,
        ifaces: &[String],
        opts: &NetOptions,
        how: TcHow,
    ) -> anyhow::Result<Self> {
        let config = NetConfig {
            netns: netns as u32,
            filter_ports: u32::from(!opts.ports.is_empty()),
            rate_per_sec: opts.rate_per_sec,
            burst: opts.burst,
            filter_netns: 0,
        };
        let mut ebpf = load(config, &SkbOffsets::ABSENT)?;
        fill_ports(&mut ebpf, &opts.ports)?;
        let wanted = ifaces.to_vec();
        let path = ns_path.clone();
        let (ebpf, (attached, links), created) = enter::in_netns(&ns_path, move || {
            let mut created = Vec::new();
            let result = attach_inside(&mut ebpf, &wanted, how, netns, &mut created);
            match result {
                Ok(attached) => Ok((ebpf, attached, created)),
                Err(e) => {
                    // Undo inside the namespace before reporting.
                    drop(ebpf);
                    for ifindex in created {
                        let _ = clsact::delete(ifindex);
                        clsact_record::forget(netns, ifindex);
                    }
                    Err(e)
                }
            }
        })
        .with_context(|| format!("entering {}", path.display()))??;
        Ok(Self {
            netns,
            ns_path,
            how,
            ifaces: attached,
            links,
            created_clsact: created,
            ebpf: Some(ebpf),
        })
    }

    /// Attaches to one more interface of the namespace (it appeared, or got an address, after
    /// the tap started). Ok(None): already attached.
    pub fn attach_iface(&mut self, iface: &str) -> anyhow::Result<Option<u32>> {
        if self.ifaces.iter().any(|(n, _)| n == iface) {
            return Ok(None);
        }
        let ebpf = self.ebpf.as_mut().context("tap already detached")?;
        let (how, netns, wanted) = (self.how, self.netns, vec![iface.to_string()]);
        let mut created = Vec::new();
        let result = enter::in_netns(&self.ns_path, || {
            attach_inside(ebpf, &wanted, how, netns, &mut created)
        })
        .with_context(|| format!("entering {}", self.ns_path.display()))?;
        self.created_clsact.extend(created);
        let (attached, links) = result?;
        let ifindex = attached.first().map(|(_, i)| *i);
        self.ifaces.extend(attached);
        self.links.extend(links);
        Ok(ifindex)
    }

    /// Forgets interface `ifindex` (deleted, or moved to another namespace): its attachments
    /// are released — the kernel already dropped them with the device; what remains is
    /// reach's handle on them. Returns its name when it was attached.
    pub fn forget_iface(&mut self, ifindex: u32) -> Option<String> {
        let at = self.ifaces.iter().position(|(_, i)| *i == ifindex)?;
        let (name, _) = self.ifaces.remove(at);
        if let Some(pos) = self.links.iter().position(|(i, _)| *i == ifindex) {
            let (_, ids) = self.links.remove(pos);
            if let Some(ebpf) = self.ebpf.as_mut() {
                let _ = enter::in_netns(&self.ns_path, || {
                    for (prog, id) in ids {
                        if let Ok(p) = program_mut::<SchedClassifier>(ebpf, prog) {
                            // The device is gone: a netlink detach fails (ENODEV), a TCX link
                            // is just closed. Either way nothing is left attached.
                            let _ = p.detach(id);
                        }
                    }
                });
            }
        }
        if let Some(pos) = self.created_clsact.iter().position(|i| *i == ifindex) {
            self.created_clsact.remove(pos);
            clsact_record::forget(self.netns, ifindex);
        }
        Some(name)
    }

    /// The packet events ring buffer (taken once).
    pub fn take_events(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let ebpf = self.ebpf.as_mut().context("tap already detached")?;
        Ok(RingBuf::try_from(ebpf.take_map("NET_EVENTS").context("NET_EVENTS already taken")?)?)
    }

    /// Summed per-CPU counters (`counter::*` slots).
    pub fn counters(&self) -> anyhow::Result<[u64; counter::SLOTS as usize]> {
        counters(self.ebpf.as_ref().context("tap already detached")?)
    }
}

/// Interfaces of the calling thread's namespace that carry an address, plus lo.
pub fn default_ifaces() -> std::io::Result<Vec<String>> {
    let mut names = vec!["lo".to_string()];
    for (name, _) in crate::netns::addresses::iface_addrs()? {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// ARPHRD type of an interface (SIOCGIFHWADDR) in the calling thread's namespace. Not from
/// getifaddrs (nix::ifaddrs): glibc gives a link an AF_PACKET entry only when it has a hardware
/// address, so tunnels (wireguard, tun: ARPHRD_NONE), the very links this tells apart, have none.
fn link_type(iface: &str) -> Option<u16> {
    // SAFETY: plain socket/ioctl with a zeroed ifreq; the fd is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes().take(libc::IFNAMSIZ - 1)) {
            *d = s as libc::c_char;
        }
        let r = libc::ioctl(fd, libc::SIOCGIFHWADDR as libc::Ioctl, &mut req);
        libc::close(fd);
        (r == 0).then_some(req.ifr_ifru.ifru_hwaddr.sa_family)
    }
}

fn attach_inside(
    ebpf: &mut Ebpf,
    ifaces: &[String],
    how: TcHow,
    netns: u64,
    created: &mut Vec<u32>,
) -> anyhow::Result<AttachedIfaces> {
    let ifaces = if ifaces.is_empty() { default_ifaces()? } else { ifaces.to_vec() };
    let mut attached = Vec::new();
    let mut links = Vec::new();
    for iface in &ifaces {
        let Some(ifindex) = crate::netns::addresses::ifindex(iface) else {
            bail!("interface {iface} does not exist in this namespace (see `ip link`)");
        };
        // Ethernet (1) and loopback (772) carry an Ethernet header; others start at IP.
        let l3 = link_type(iface).is_some_and(|t| t != 1 && t != 772);
        let progs =
            if l3 { [INGRESS_L3_PROG, EGRESS_L3_PROG] } else { [INGRESS_PROG, EGRESS_PROG] };
        // Loaded on first use: a namespace without tunnels never verifies the `_l3` variants.
        for prog in progs {
            let p: &mut SchedClassifier = program_mut(ebpf, prog)?;
            if p.fd().is_err() {
                p.load().map_err(|e| anyhow!("loading {prog}: {}", chain(&e)))?;
            }
        }
        if how == TcHow::Netlink {
            match tc::qdisc_add_clsact(iface) {
                Ok(()) => {
                    clsact_record::remember(netns, ifindex);
                    created.push(ifindex);
                }
                // Ours from a killed run (its record names a dead pid): adopt it, so this run
                // removes it on exit.
                Err(_) if clsact_record::stale(netns, ifindex) => {
                    clsact_record::remember(netns, ifindex);
                    created.push(ifindex);
                }
                // EEXIST: another tool's (or the system's) clsact; keep it, never remove it.
                Err(e)
                    if e.to_string().contains("exists")
                        || matches!(&e, tc::TcError::NetlinkError(n) if n.raw_os_error() == Some(libc::EEXIST)) =>
                    {}
                Err(e) => bail!("adding a clsact qdisc to {iface}: {}", chain(&e)),
            }
        }
        let mut ids = Vec::with_capacity(2);
        for (prog, dir) in progs.into_iter().zip([TcAttachType::Ingress, TcAttachType::Egress]) {
            let p: &mut SchedClassifier = program_mut(ebpf, prog)?;
            let opts = match how {
                TcHow::Tcx => TcAttachOptions::TcxOrder(Default::default()),
                TcHow::Netlink => TcAttachOptions::Netlink(NlOptions::default()),
            };
            let id = p
                .attach_with_options(iface, dir, opts)
                .map_err(|e| anyhow!("attaching {prog} to {iface}: {}", chain(&e)))?;
            ids.push((prog, id));
        }
        if let Ok(ids) = <[_; 2]>::try_from(ids) {
            links.push((ifindex, ids));
        }
        attached.push((iface.clone(), ifindex));
    }
    Ok((attached, links))
}

/// What [`attach_inside`] attached: (interface, ifindex), and the two link ids of each.
type AttachedIfaces = (Vec<(String, u32)>, Vec<(u32, [(&'static str, SchedClassifierLinkId); 2])>);

impl Drop for NetnsTap {
    fn drop(&mut self) {
        let Some(ebpf) = self.ebpf.take() else { return };
        let created = std::mem::take(&mut self.created_clsact);
        let netns = self.netns;
        let mut ebpf = Some(ebpf);
        let detach = || {
            drop(ebpf.take());
            for &ifindex in &created {
                let _ = clsact::delete(ifindex);
            }
        };
        // The namespace may be gone already (its interfaces and filters with it); then only
        // the program fds remain to close, which works from anywhere.
        if let Err(e) = enter::in_netns(&self.ns_path, detach) {
            tracing::debug!("namespace {} gone before detach: {e}", self.ns_path.display());
        }
        drop(ebpf);
        // The records go either way: a qdisc of a namespace that is gone went with it.
        for ifindex in created {
            clsact_record::forget(netns, ifindex);
        }
    }
}

/// Removes classifiers a killed reach run left on `ifaces` of the calling thread's namespace
/// (netlink attachments outlive their process; TCX links do not). Returns what it removed.
pub fn remove_stale_filters(ifaces: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    for iface in ifaces {
        for (prog, dir) in CLASSIFIERS {
            if tc::qdisc_detach_program(iface, dir, prog).is_ok() {
                removed.push(format!("{prog} on {iface}"));
            }
        }
    }
    removed
}

/// The drop tracer (global: one instance sees every namespace's drops).
pub struct DropTap {
    ebpf: Ebpf,
    /// `tp_btf kfree_skb` or `tracepoint skb:kfree_skb`.
    pub how: &'static str,
    /// Drop reasons are known (tp_btf, or a format with `reason`, ≥ 5.17).
    pub has_reasons: bool,
    _tracefs: Option<pseudofs::PseudoFs>,
}

impl DropTap {
    /// Attaches tp_btf kfree_skb, falling back to the classic tracepoint (or using it directly
    /// with `force_classic`).
    pub fn attach(opts: &NetOptions, force_classic: bool) -> anyhow::Result<Self> {
        let kbtf = KernelBtf::load()?;
        let tracefs = pseudofs::tracefs().ok();
        let skb = offsets::resolve_skb(&kbtf, tracefs.as_ref().map(|t| t.path.as_path()))?;
        let config = NetConfig {
            netns: 0,
            filter_ports: u32::from(!opts.ports.is_empty()),
            rate_per_sec: opts.rate_per_sec,
            burst: opts.burst,
            filter_netns: u32::from(!opts.netns.is_empty()),
        };
        let mut ebpf = load(config, &skb)?;
        fill_ports(&mut ebpf, &opts.ports)?;
        fill_ignored_reasons(&mut ebpf, &DropReasons::load(&kbtf)?.never_tcp())?;
        let mut watched: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(ebpf.map_mut("WATCHED_NETNS").context("WATCHED_NETNS map")?)?;
        for ns in &opts.netns {
            watched.insert(*ns as u32, 1, 0)?;
        }
        let btf = aya_btf().context("reading kernel BTF")?;
        let typed = (|| -> anyhow::Result<()> {
            if force_classic {
                bail!("classic tracepoint requested");
            }
            let p: &mut BtfTracePoint = program_mut(&mut ebpf, "reach_kfree_skb")?;
            p.load("kfree_skb", &btf).map_err(|e| anyhow!("{}", chain(&e)))?;
            p.attach().map_err(|e| anyhow!("{}", chain(&e)))?;
            Ok(())
        })();
        let (how, has_reasons) = match typed {
            Ok(()) => ("tp_btf kfree_skb", true),
            Err(typed_err) => {
                let p: &mut TracePoint = program_mut(&mut ebpf, "reach_tp_kfree_skb")?;
                p.load().map_err(|e| anyhow!("loading reach_tp_kfree_skb: {}", chain(&e)))?;
                p.attach("skb", "kfree_skb").map_err(|e| {
                    anyhow!("neither tp_btf kfree_skb ({typed_err}) nor tracepoint skb:kfree_skb could be attached: {}", chain(&e))
                })?;
                ("tracepoint skb:kfree_skb", skb.tp_reason.is_present())
            }
        };
        Ok(Self { ebpf, how, has_reasons, _tracefs: tracefs })
    }

    pub fn take_events(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        Ok(RingBuf::try_from(
            self.ebpf.take_map("NET_EVENTS").context("NET_EVENTS already taken")?,
        )?)
    }

    /// Reports drops in namespace `inode` too from now on (a namespace that appeared). Only
    /// meaningful when the tracer was attached with a namespace filter.
    pub fn watch_netns(&mut self, inode: u64) -> anyhow::Result<()> {
        let mut watched: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(self.ebpf.map_mut("WATCHED_NETNS").context("WATCHED_NETNS map")?)?;
        watched.insert(inode as u32, 1, 0)?;
        Ok(())
    }

    /// Stops reporting drops of namespace `inode` (it is gone; its inode may be reused).
    pub fn unwatch_netns(&mut self, inode: u64) {
        if let Some(map) = self.ebpf.map_mut("WATCHED_NETNS")
            && let Ok(mut watched) = BpfHashMap::<_, u32, u8>::try_from(map)
        {
            let _ = watched.remove(&(inode as u32));
        }
    }

    pub fn counters(&self) -> anyhow::Result<[u64; counter::SLOTS as usize]> {
        counters(&self.ebpf)
    }
}

fn counters(ebpf: &Ebpf) -> anyhow::Result<[u64; counter::SLOTS as usize]> {
    let map: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(ebpf.map("NET_COUNTERS").context("NET_COUNTERS map")?)?;
    let mut out = [0u64; counter::SLOTS as usize];
    for (slot, total) in out.iter_mut().enumerate() {
        *total = map.get(&(slot as u32), 0)?.iter().sum();
    }
    Ok(out)
}
