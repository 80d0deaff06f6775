//! Which of the capabilities reach needs does this process hold?
use serde::Serialize;

/// Capabilities reach needs, with the bit numbers of linux/capability.h.
pub const NEEDED: [(&str, u32, &str); 4] = [
    ("CAP_BPF", 39, "load BPF programs and create maps"),
    ("CAP_PERFMON", 38, "attach kprobes/tracepoints and read kernel memory"),
    ("CAP_NET_ADMIN", 12, "attach TC programs and read nftables/netlink"),
    ("CAP_SYS_ADMIN", 21, "enter other network namespaces (setns) and mount tracefs"),
];

/// Capabilities reach runs without, seeing less: a root process holds every capability, and
/// reading another process's /proc fd table or namespace links needs the reader's capabilities
/// to cover the target's (or CAP_SYS_PTRACE). A container with only [`NEEDED`] therefore sees no
/// socket owners, no pods of listeners, and no namespace only a process holds.
pub const WANTED: [(&str, u32, &str); 1] = [(
    "CAP_SYS_PTRACE",
    19,
    "read other processes' /proc fd tables and namespace links: which process (and pod) owns a socket; namespaces no /run/netns entry names",
)];

#[derive(Debug, Clone, Serialize)]
pub struct Privileges {
    pub euid: u32,
    /// Needed capability → held.
    pub capabilities: std::collections::BTreeMap<&'static str, bool>,
    /// Needed capabilities not held.
    pub missing: Vec<&'static str>,
    /// [`WANTED`] capabilities not held, each with what reach does not see without it
    /// (`reach doctor` says so; nothing refuses to run).
    pub wanted_missing: Vec<(&'static str, &'static str)>,
}

pub fn current() -> Privileges {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    from_status(&status, nix::unistd::geteuid().as_raw())
}

/// Parses `CapEff:` of a /proc/PID/status text.
pub fn from_status(status: &str, euid: u32) -> Privileges {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let mut capabilities = std::collections::BTreeMap::new();
    let mut missing = Vec::new();
    for (name, bit, _) in NEEDED {
        let held = eff & (1 << bit) != 0;
        capabilities.insert(name, held);
        if !held {
            missing.push(name);
        }
    }
    // Root outside a container holds everything; only a bounded set (a container's) lacks these.
    let wanted_missing = WANTED
        .iter()
        .filter(|(_, bit, _)| eff & (1 << bit) == 0)
        .map(|(n, _, why)| (*n, *why))
        .collect();
    Privileges { euid, capabilities, missing, wanted_missing }
}

/// For commands that cannot work without privileges: None when all are held, else the exit
/// code 3 after telling the user which capability is missing and how to run the command.
pub fn refuse_unless_privileged(command: &str) -> Option<std::process::ExitCode> {
    let privs = current();
    if privs.missing.is_empty() {
        return None;
    }
    eprintln!("reach {command}: missing {}: {}", privs.missing.join(", "), privs.how_to_fix());
    Some(std::process::ExitCode::from(3))
}

impl Privileges {
    /// True when BPF programs can be loaded at all (CAP_BPF, or CAP_SYS_ADMIN on old kernels).
    pub fn can_load_bpf(&self) -> bool {
        self.capabilities["CAP_BPF"] || self.capabilities["CAP_SYS_ADMIN"]
    }

    /// What to tell a user who lacks capabilities.
    pub fn how_to_fix(&self) -> String {
        let caps = self.missing.iter().map(|c| c.to_lowercase()).collect::<Vec<_>>().join(",");
        format!(
            "run it as root (`sudo reach ...`), or grant the capabilities once: \
             `sudo setcap {caps}+ep \"$(command -v reach)\"`"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_with_full_set_misses_nothing() {
        let p = from_status("Name:\treach\nCapEff:\t000001ffffffffff\n", 0);
        assert!(p.missing.is_empty());
        assert!(p.wanted_missing.is_empty());
        assert!(p.can_load_bpf());
    }

    #[test]
    fn the_daemonset_set_without_sys_ptrace_is_told_what_it_misses() {
        // BPF, PERFMON, NET_ADMIN, SYS_ADMIN: bits 39, 38, 12, 21.
        let eff = (1u64 << 39) | (1 << 38) | (1 << 12) | (1 << 21);
        let p = from_status(&format!("CapEff:\t{eff:016x}\n"), 0);
        assert!(p.missing.is_empty());
        assert_eq!(p.wanted_missing.len(), 1);
        assert_eq!(p.wanted_missing[0].0, "CAP_SYS_PTRACE");
        let with = from_status(&format!("CapEff:\t{:016x}\n", eff | (1 << 19)), 0);
        assert!(with.wanted_missing.is_empty());
    }

    #[test]
    fn unprivileged_user_misses_all_and_is_told_how() {
        let p = from_status("CapEff:\t0000000000000000\n", 1000);
        assert_eq!(p.missing, vec!["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]);
        assert!(!p.can_load_bpf());
        assert!(
            p.how_to_fix().contains("setcap cap_bpf,cap_perfmon,cap_net_admin,cap_sys_admin+ep")
        );
    }

    #[test]
    fn net_admin_only() {
        let p = from_status("CapEff:\t0000000000001000\n", 1000);
        assert_eq!(p.missing, vec!["CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"]);
    }
}
