//! Which of the capabilities reach needs does this process hold?
use serde::Serialize;

/// Capabilities reach needs, with the bit numbers of linux/capability.h.
pub const NEEDED: [(&str, u32, &str); 4] = [
    ("CAP_BPF", 39, "load BPF programs and create maps"),
    ("CAP_PERFMON", 38, "attach kprobes/tracepoints and read kernel memory"),
    ("CAP_NET_ADMIN", 12, "attach TC programs and read nftables/netlink"),
    ("CAP_SYS_ADMIN", 21, "enter other network namespaces (setns) and mount tracefs"),
];

#[derive(Debug, Clone, Serialize)]
pub struct Privileges {
    pub euid: u32,
    /// Needed capability → held.
    pub capabilities: std::collections::BTreeMap<&'static str, bool>,
    /// Needed capabilities not held.
    pub missing: Vec<&'static str>,
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
    Privileges { euid, capabilities, missing }
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
        assert!(p.can_load_bpf());
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
