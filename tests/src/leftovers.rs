//! What a run of reach can leave behind, snapshotted before the run and compared after it:
//! BPF programs and links (by kernel id, through the kernel's own id iteration), qdiscs, TC
//! filters and TCX attachments of given interfaces, nft tables of a namespace, tracefs /
//! securityfs / bpffs mounts, pins under /sys/fs/bpf and files under /run/reach.
//!
//! Why ids and not `tc filter show`: with TCX (the default from 6.6) a classifier is a BPF link,
//! invisible to `tc`; a check that only reads `tc` passes whether or not reach detached.
//!
//! Other processes load programs at the same time (parallel tests, other tools). A new program
//! or link still held open by a live process other than this one is that process's business,
//! not a leftover; what no process holds is kept alive by an attachment (netlink TC, a legacy
//! attach) or a pin, and is a leftover, as is anything this test process itself still holds
//! (the library was used in-process and should have released it).
//!
//! Every command a check runs has its exit status checked: a failing `tc` or `nft` fails the
//! test instead of comparing "" with "".
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt, fs, io,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use aya::programs::{SchedClassifier, tc::TcAttachType};
use reach_agent::lab::NetNsFd;

/// How long freed BPF objects may linger: the kernel releases a program by deferred work after
/// its last reference goes, so right after reach exits its ids can still be listed.
const SETTLE: Duration = Duration::from_secs(15);

/// Where a run could leave things: a namespace (its nft tables, its clsact records) and
/// interfaces in it (qdiscs, filters, TCX). `netns: None` means the caller's own namespace for
/// interfaces and no nft check (reading the root ruleset is [`crate::ruleset`]'s job).
pub struct Scope<'a> {
    pub netns: Option<&'a NetNsFd>,
    pub ifaces: &'a [&'a str],
}

/// One thing found after the run that was not there before.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Leftover {
    /// A BPF program; `holders` are pids still holding it (only ever this test process).
    Program { id: u32, name: String, holders: Vec<i32> },
    /// A BPF link (TCX, tracing, cgroup, perf…) with the program it runs.
    Link { id: u32, kind: String, prog_id: u32, holders: Vec<i32> },
    /// A line of `tc qdisc show dev IFACE`.
    Qdisc { iface: String, line: String },
    /// A line of `tc filter show dev IFACE DIR`.
    TcFilter { iface: String, dir: &'static str, line: String },
    /// A program attached through TCX (BPF_PROG_QUERY on the interface).
    Tcx { iface: String, dir: &'static str, prog_id: u32, name: String },
    /// A line of `nft list tables` in the scope's namespace.
    NftTable(String),
    /// A line of /proc/self/mountinfo (tracefs, securityfs, bpf), as "FSTYPE on PATH".
    Mount(String),
    /// A file under /sys/fs/bpf.
    Pin(PathBuf),
    /// A file under /run/reach (clsact records of the scope's namespace, or anything else).
    RunReach(PathBuf),
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leftover::Program { id, name, holders } => {
                write!(f, "BPF program {id} ({name}) held by {}", holders_text(holders))
            }
            Leftover::Link { id, kind, prog_id, holders } => write!(
                f,
                "BPF link {id} ({kind}, program {prog_id}) held by {}",
                holders_text(holders)
            ),
            Leftover::Qdisc { iface, line } => write!(f, "qdisc on {iface}: {line}"),
            Leftover::TcFilter { iface, dir, line } => write!(f, "{dir} filter on {iface}: {line}"),
            Leftover::Tcx { iface, dir, prog_id, name } => {
                write!(f, "TCX {dir} program {prog_id} ({name}) on {iface}")
            }
            Leftover::NftTable(t) => write!(f, "nft {t}"),
            Leftover::Mount(m) => write!(f, "mount {m}"),
            Leftover::Pin(p) => write!(f, "pin {}", p.display()),
            Leftover::RunReach(p) => write!(f, "{}", p.display()),
        }
    }
}

fn holders_text(holders: &[i32]) -> String {
    if holders.is_empty() {
        "no process (kept by an attachment or a pin)".into()
    } else {
        format!("this test process {holders:?}")
    }
}

/// The state of everything in a [`Scope`] at one moment.
pub struct Leftovers<'a> {
    scope: Scope<'a>,
    before: State,
}

#[derive(Default)]
struct State {
    programs: BTreeMap<u32, String>,
    links: BTreeMap<u32, (String, u32)>,
    qdiscs: BTreeSet<(String, String)>,
    filters: BTreeSet<(String, &'static str, String)>,
    tcx: BTreeSet<(String, &'static str, u32, String)>,
    nft_tables: BTreeSet<String>,
    mounts: BTreeSet<String>,
    pins: BTreeSet<PathBuf>,
    run_reach: BTreeSet<PathBuf>,
}

const DIRS: [(&str, TcAttachType); 2] =
    [("ingress", TcAttachType::Ingress), ("egress", TcAttachType::Egress)];

impl<'a> Leftovers<'a> {
    /// Records everything in `scope` as it is now.
    pub fn snapshot(scope: &Scope<'a>) -> Self {
        let scope = Scope { netns: scope.netns, ifaces: scope.ifaces };
        let before = State::read(&scope);
        Leftovers { scope, before }
    }

    /// What is there now and was not at the snapshot, looked at once.
    pub fn new_since(&self) -> Vec<Leftover> {
        let now = State::read(&self.scope);
        let holders = bpf_holders();
        let me = std::process::id() as i32;
        // Held by a live process other than this one: not ours to judge (see the module docs).
        let foreign =
            |pids: Option<&BTreeSet<i32>>| pids.is_some_and(|p| p.iter().any(|&p| p != me));
        let mine = |pids: Option<&BTreeSet<i32>>| {
            pids.map(|p| p.iter().copied().collect()).unwrap_or_default()
        };
        let mut left = Vec::new();
        for (&id, name) in &now.programs {
            let held = holders.programs.get(&id);
            if !self.before.programs.contains_key(&id) && !foreign(held) {
                left.push(Leftover::Program { id, name: name.clone(), holders: mine(held) });
            }
        }
        for (&id, (kind, prog_id)) in &now.links {
            let held = holders.links.get(&id);
            if !self.before.links.contains_key(&id) && !foreign(held) {
                let (kind, prog_id) = (kind.clone(), *prog_id);
                left.push(Leftover::Link { id, kind, prog_id, holders: mine(held) });
            }
        }
        for (iface, line) in now.qdiscs.difference(&self.before.qdiscs) {
            left.push(Leftover::Qdisc { iface: iface.clone(), line: line.clone() });
        }
        for (iface, dir, line) in now.filters.difference(&self.before.filters) {
            left.push(Leftover::TcFilter { iface: iface.clone(), dir, line: line.clone() });
        }
        for (iface, dir, prog_id, name) in now.tcx.difference(&self.before.tcx) {
            let (iface, prog_id, name) = (iface.clone(), *prog_id, name.clone());
            left.push(Leftover::Tcx { iface, dir, prog_id, name });
        }
        left.extend(
            now.nft_tables.difference(&self.before.nft_tables).cloned().map(Leftover::NftTable),
        );
        left.extend(now.mounts.difference(&self.before.mounts).cloned().map(Leftover::Mount));
        left.extend(now.pins.difference(&self.before.pins).cloned().map(Leftover::Pin));
        left.extend(
            now.run_reach.difference(&self.before.run_reach).cloned().map(Leftover::RunReach),
        );
        left.sort();
        left
    }

    /// What is still new after the kernel had time to free what was released: polls until
    /// nothing is new or `settle` has passed, and returns what is left then.
    pub fn left_after(&self, settle: Duration) -> Vec<Leftover> {
        let deadline = Instant::now() + settle;
        loop {
            let left = self.new_since();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics naming everything `what` (the run under test) left behind.
    pub fn assert_nothing_new(&self, what: &str) {
        let left = self.left_after(SETTLE);
        assert!(
            left.is_empty(),
            "{what} left behind (still there {SETTLE:?} after it ended):\n  {}",
            left.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
        );
    }
}

/// BPF programs named `prefix…` that no live process other than this one holds, i.e. kept
/// alive only by an attachment (netlink TC, a legacy attach) or a pin: what an exited run left.
/// Needs no snapshot, for checks that only see the end of a run; programs of runs still going
/// are held by them and do not count. Polls up to [`SETTLE`] for the kernel's deferred frees.
pub fn orphaned_programs(prefix: &str) -> Vec<Leftover> {
    let deadline = Instant::now() + SETTLE;
    let me = std::process::id() as i32;
    loop {
        let holders = bpf_holders();
        let left: Vec<Leftover> = programs()
            .into_iter()
            .filter(|(_, name)| name.starts_with(prefix))
            .filter_map(|(id, name)| {
                let held = holders.programs.get(&id);
                if held.is_some_and(|p| p.iter().any(|&p| p != me)) {
                    return None;
                }
                Some(Leftover::Program {
                    id,
                    name,
                    holders: held.map(|p| p.iter().copied().collect()).unwrap_or_default(),
                })
            })
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Panics naming the programs of [`orphaned_programs`]; `what` names the run under test.
pub fn assert_no_orphaned_programs(prefix: &str, what: &str) {
    let left = orphaned_programs(prefix);
    assert!(
        left.is_empty(),
        "{what} left BPF programs that no process holds:\n  {}",
        left.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
    );
}

impl State {
    fn read(scope: &Scope<'_>) -> State {
        let mut s = State { programs: programs(), links: links(), ..State::default() };
        for &iface in scope.ifaces {
            for line in tc(scope, &["qdisc", "show", "dev", iface]).lines() {
                s.qdiscs.insert((iface.to_string(), line.trim().to_string()));
            }
            for (dir, attach) in DIRS {
                for line in tc(scope, &["filter", "show", "dev", iface, dir]).lines() {
                    s.filters.insert((iface.to_string(), dir, line.trim().to_string()));
                }
                for (id, name) in tcx_programs(scope, iface, attach) {
                    s.tcx.insert((iface.to_string(), dir, id, name));
                }
            }
        }
        if let Some(ns) = scope.netns {
            let tables = ns
                .run("nft", &["list", "tables"])
                .unwrap_or_else(|e| panic!("nft list tables in {}: {e}", ns.path().display()));
            s.nft_tables = tables.lines().map(|l| l.trim().to_string()).collect();
        }
        s.mounts = mounts();
        // A fresh bpffs comes with the kernel's preloaded iterators (bpf_preload): not pins.
        s.pins = bpffs_dirs()
            .iter()
            .flat_map(|d| {
                files_under(d).into_iter().filter(move |p| {
                    !(p.parent() == Some(d.as_path())
                        && p.file_name().is_some_and(|n| n == "maps.debug" || n == "progs.debug"))
                })
            })
            .collect();
        let netns_ino = scope.netns.map(|ns| ns.id().ino);
        s.run_reach = files_under(Path::new("/run/reach"))
            .into_iter()
            .filter(|p| clsact_record_in_scope(p, netns_ino))
            .collect();
        s
    }
}

/// A clsact record (/run/reach/clsact/NETNS-IFINDEX) counts only for the scope's namespace:
/// parallel runs watching other namespaces keep theirs while they run. Any other file counts.
fn clsact_record_in_scope(path: &Path, netns_ino: Option<u64>) -> bool {
    let (Ok(rest), Some(ino)) = (path.strip_prefix("/run/reach/clsact"), netns_ino) else {
        return true;
    };
    let name = rest.to_string_lossy();
    name.split_once('-').is_none_or(|(ns, _)| ns == ino.to_string())
}

/// The errno at the bottom of an error chain (aya wraps the syscall's io::Error).
fn errno(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        cur = e.source();
    }
    None
}

/// An id that vanished between the kernel's "next id" and "fd by id" was freed meanwhile: not
/// an error. Nor is EAGAIN: a link whose creation has not settled yet (the kernel's
/// `bpf_link_by_id` "pretends it doesn't exist yet"; seen in CI while another test attached).
/// Anything else (EPERM…) would make the listing incomplete, so it fails the test.
fn vanished_or_panic(e: &(dyn std::error::Error + 'static), what: &str) {
    if !matches!(errno(e), Some(libc::ENOENT | libc::EAGAIN)) {
        panic!("listing {what} through the kernel failed: {e} (errno {:?})", errno(e));
    }
}

/// Loaded BPF programs by id, with their (15-character) names.
pub(crate) fn programs() -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    for p in aya::programs::loaded_programs() {
        match p {
            Ok(p) => {
                out.insert(p.id(), p.name_as_str().unwrap_or("?").to_string());
            }
            Err(e) => vanished_or_panic(&e, "BPF programs"),
        }
    }
    out
}

/// BPF links by id, with their type and program.
fn links() -> BTreeMap<u32, (String, u32)> {
    let mut out = BTreeMap::new();
    for l in aya::programs::loaded_links() {
        match l {
            Ok(l) => {
                let kind =
                    l.link_type().map(|t| format!("{t:?}")).unwrap_or_else(|e| e.to_string());
                out.insert(l.id(), (kind, l.program_id()));
            }
            Err(e) => vanished_or_panic(&e, "BPF links"),
        }
    }
    out
}

/// Which processes hold which programs and links open, from /proc/*/fdinfo (a link's fdinfo
/// names its program too, so a program run by a held link counts as held).
#[derive(Default)]
struct Holders {
    programs: BTreeMap<u32, BTreeSet<i32>>,
    links: BTreeMap<u32, BTreeSet<i32>>,
}

fn bpf_holders() -> Holders {
    let mut h = Holders::default();
    let Ok(procs) = fs::read_dir("/proc") else { return h };
    for pid in procs.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
        // A process can exit while it is read: its files simply vanish.
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else { continue };
            let target = target.to_string_lossy();
            if target != "anon_inode:bpf-prog" && target != "anon_inode:bpf_link" {
                continue;
            }
            let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
            let Ok(info) = fs::read_to_string(info) else { continue };
            for line in info.lines() {
                let Some((key, value)) = line.split_once(':') else { continue };
                let Ok(id) = value.trim().parse::<u32>() else { continue };
                match key {
                    "prog_id" => h.programs.entry(id).or_default().insert(pid),
                    "link_id" => h.links.entry(id).or_default().insert(pid),
                    _ => false,
                };
            }
        }
    }
    h
}

/// `tc ARGS` in the scope's namespace; its stdout, or a panic with its stderr.
fn tc(scope: &Scope<'_>, args: &[&str]) -> String {
    match scope.netns {
        Some(ns) => ns
            .run("tc", args)
            .unwrap_or_else(|e| panic!("tc {args:?} in {}: {e}", ns.path().display())),
        None => {
            let out = Command::new("tc")
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("cannot run tc (iproute2): {e}"));
            assert!(out.status.success(), "tc {args:?}: {}", crate::show(&out));
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    }
}

/// Programs attached to `iface` through TCX, asked of the kernel inside the scope's namespace.
/// A kernel without TCX (before 6.6) answers EINVAL: then nothing can be attached that way.
pub(crate) fn tcx_programs(
    scope: &Scope<'_>,
    iface: &str,
    attach: TcAttachType,
) -> Vec<(u32, String)> {
    let name = iface.to_string();
    let query = move || {
        SchedClassifier::query_tcx(&name, attach).map(|(_, progs)| {
            progs
                .iter()
                .map(|p| (p.id(), p.name_as_str().unwrap_or("?").to_string()))
                .collect::<Vec<_>>()
        })
    };
    let answer = match scope.netns {
        Some(ns) => ns
            .run_in(query)
            .unwrap_or_else(|e| panic!("entering {} for a TCX query: {e}", ns.path().display())),
        None => query(),
    };
    match answer {
        Ok(progs) => progs,
        Err(e) if errno(&e) == Some(libc::EINVAL) && !tcx_expected() => Vec::new(),
        Err(e) => panic!("TCX query of {iface} {attach:?}: {e} (errno {:?})", errno(&e)),
    }
}

/// TCX exists from Linux 6.6 (the same test aya applies when it picks TCX over netlink).
pub fn tcx_expected() -> bool {
    use aya::util::KernelVersion;
    let now = KernelVersion::current().unwrap_or_else(|e| panic!("kernel version: {e}"));
    now >= KernelVersion::new(6, 6, 0)
}

/// tracefs, securityfs and bpffs mounts of this mount namespace, as "FSTYPE on PATH (id N)":
/// reach mounts tracefs/securityfs when absent and must unmount them.
pub(crate) fn mounts() -> BTreeSet<String> {
    pseudo_mounts_of("self")
}

/// The same for the mount namespace of process `pid` ("self" for this one).
pub fn pseudo_mounts_of(pid: &str) -> BTreeSet<String> {
    let file = format!("/proc/{pid}/mountinfo");
    let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {file}: {e}"));
    text.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let sep = fields.iter().position(|&f| f == "-")?;
            let fstype = *fields.get(sep + 1)?;
            let (id, path) = (fields.first()?, fields.get(4)?);
            // The kernel itself mounts tracefs at debugfs's tracing/ the first time anything
            // looks inside it (a debugfs automount, which reach's and aya's tracefs lookups
            // trigger); it is the kernel's, not a mount reach made and failed to undo.
            if fstype == "tracefs" && *path == "/sys/kernel/debug/tracing" {
                return None;
            }
            matches!(fstype, "tracefs" | "securityfs" | "bpf")
                .then(|| format!("{fstype} on {path} (id {id})"))
        })
        .collect()
}

/// Where pins can be: /sys/fs/bpf and every bpffs mounted anywhere.
pub(crate) fn bpffs_dirs() -> BTreeSet<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
    let mut dirs: BTreeSet<PathBuf> = text
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let sep = fields.iter().position(|&f| f == "-")?;
            let path = PathBuf::from(fields.get(4)?);
            (*fields.get(sep + 1)? == "bpf").then_some(path)
        })
        .collect();
    dirs.insert(PathBuf::from("/sys/fs/bpf"));
    dirs
}

/// Every file under `dir` (empty if it does not exist). Directories do not count: reach keeps
/// /run/reach/clsact once created, empty, as the place for records.
pub(crate) fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            } else {
                out.insert(p);
            }
        }
    }
    out
}
