//! The attach plan: for each thing reach watches, the best mechanism this kernel allows.
//!
//! Order of preference per the design: kprobe (+kretprobe) on inet_bind/inet_listen — what
//! WSL2 kernels have — then fentry/fexit, then tracepoints (syscall bind tracepoints and/or
//! cgroup post_bind hooks for binds, `inet_sock_set_state` for listens). Ingress prefers TCX
//! links (≥ 6.6, no qdisc to leave behind) over a clsact qdisc; drops prefer tp_btf kfree_skb
//! (typed args, reason) over the classic tracepoint.
use serde::Serialize;

use crate::kernel::capabilities::{Capabilities, ProbeFacts};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Plan {
    pub bind: String,
    pub listen: String,
    pub ingress: String,
    pub drop: String,
}

/// Value used when no mechanism works for a part.
pub const UNAVAILABLE: &str = "unavailable";

/// How each plan value is carried out, for humans.
pub fn describe(choice: &str, part: &str) -> &'static str {
    match (part, choice) {
        ("bind", "kprobe") => "kprobe + kretprobe on inet_bind / inet6_bind",
        ("bind", "fentry") => "fentry + fexit on inet_bind / inet6_bind",
        ("bind", "tracepoint") => "syscalls:sys_enter/exit_bind and cgroup post_bind4/6",
        ("listen", "kprobe") => "kprobe + kretprobe on inet_listen",
        ("listen", "fentry") => "fentry + fexit on inet_listen",
        ("listen", "tp_btf") => "tp_btf inet_sock_set_state (→ TCP_LISTEN)",
        ("listen", "tracepoint") => "tracepoint sock:inet_sock_set_state (→ TCP_LISTEN)",
        ("ingress", "tcx") => "TCX link on each watched interface's ingress",
        ("ingress", "tc_netlink") => "clsact qdisc + direct-action filter (netlink)",
        ("drop", "tp_btf") => "tp_btf kfree_skb (drop reason + location)",
        ("drop", "tracepoint") => "tracepoint skb:kfree_skb",
        _ => "no usable mechanism on this kernel",
    }
}

pub fn choose(caps: &Capabilities, facts: &ProbeFacts) -> Plan {
    let ok = |name: &str| caps.get(name).is_some_and(|c| c.available);
    let first = |options: &[(&str, bool)]| {
        options.iter().find(|(_, usable)| *usable).map_or(UNAVAILABLE, |(n, _)| n).to_string()
    };
    Plan {
        bind: first(&[
            ("kprobe", ok("kprobe")),
            ("fentry", ok("fentry")),
            (
                "tracepoint",
                (ok("tracepoint") && facts.syscall_bind_tracepoints) || ok("cgroup_sock"),
            ),
        ]),
        listen: first(&[
            ("kprobe", ok("kprobe")),
            ("fentry", ok("fentry")),
            ("tp_btf", ok("tp_btf")),
            ("tracepoint", ok("tracepoint")),
        ]),
        ingress: first(&[("tcx", ok("tcx")), ("tc_netlink", ok("tc_netlink"))]),
        drop: first(&[
            ("tp_btf", ok("tp_btf")),
            ("tracepoint", ok("tracepoint") && facts.kfree_skb_tracepoint),
        ]),
    }
}

impl Plan {
    /// Parts with no usable mechanism.
    pub fn gaps(&self) -> Vec<&'static str> {
        [
            ("bind", &self.bind),
            ("listen", &self.listen),
            ("ingress", &self.ingress),
            ("drop", &self.drop),
        ]
        .into_iter()
        .filter(|(_, v)| v.as_str() == UNAVAILABLE)
        .map(|(k, _)| k)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::capabilities::{Capability, NAMES};

    fn caps(available: &[&str]) -> Capabilities {
        NAMES
            .iter()
            .map(|n| {
                (
                    *n,
                    Capability {
                        available: available.contains(n),
                        reason: String::new(),
                        fired: None,
                    },
                )
            })
            .collect()
    }

    fn facts() -> ProbeFacts {
        ProbeFacts {
            syscall_bind_tracepoints: true,
            kfree_skb_tracepoint: true,
            kfree_skb_has_reason: true,
        }
    }

    #[test]
    fn this_machine_shape_falls_back_to_tracepoints() {
        // Kernel 6.18, lockdown=integrity: no kprobes, fentry EPERM, everything else works.
        let p = choose(
            &caps(&["tp_btf", "tracepoint", "cgroup_sock", "tc_netlink", "tcx", "ring_buffer"]),
            &facts(),
        );
        assert_eq!(
            p,
            Plan {
                bind: "tracepoint".into(),
                listen: "tp_btf".into(),
                ingress: "tcx".into(),
                drop: "tp_btf".into()
            }
        );
        assert!(p.gaps().is_empty());
    }

    #[test]
    fn full_kernel_uses_kprobes() {
        let p = choose(&caps(&NAMES), &facts());
        assert_eq!((p.bind.as_str(), p.listen.as_str()), ("kprobe", "kprobe"));
    }

    #[test]
    fn fentry_when_kprobes_missing() {
        let p = choose(&caps(&["fentry", "tp_btf", "tc_netlink"]), &facts());
        assert_eq!(
            (p.bind.as_str(), p.listen.as_str(), p.ingress.as_str()),
            ("fentry", "fentry", "tc_netlink")
        );
    }

    #[test]
    fn nothing_available_reports_gaps() {
        let p = choose(&caps(&[]), &ProbeFacts::default());
        assert_eq!(p.gaps(), vec!["bind", "listen", "ingress", "drop"]);
    }

    #[test]
    fn bind_tracepoint_needs_syscall_tracepoints_or_cgroup_hooks() {
        let no_syscalls = ProbeFacts { syscall_bind_tracepoints: false, ..facts() };
        assert_eq!(choose(&caps(&["tracepoint"]), &no_syscalls).bind, UNAVAILABLE);
        assert_eq!(choose(&caps(&["cgroup_sock"]), &no_syscalls).bind, "tracepoint");
    }
}
