//! `reach doctor` on the machine's own kernel, as root and as an unprivileged user.
use std::{collections::BTreeMap, path::Path, sync::Mutex};

use reach_tests::{
    kernel_facts::{self, Refusal},
    leftovers::{Leftovers, Scope},
    reach, reach_unprivileged, require_root, show,
};
use serde_json::Value;

/// Doctor attaches global probes briefly; the leak check must not see another test's run.
static SERIAL: Mutex<()> = Mutex::new(());

fn doctor_json() -> (Value, i32) {
    let out = reach(&["doctor", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}):\n{}", show(&out)));
    (json, out.status.code().unwrap_or(-1))
}

fn cap<'a>(report: &'a Value, name: &str) -> &'a Value {
    &report["capabilities"][name]
}

/// What doctor must say about one mechanism, from the test's own probe of the kernel.
#[derive(Debug)]
struct Expected {
    available: bool,
    /// Text the reason must contain (the documented message, or the kernel's errno wording).
    reason: String,
}

impl Expected {
    fn yes(reason: &str) -> Self {
        Self { available: true, reason: reason.into() }
    }
    fn no(reason: impl Into<String>) -> Self {
        Self { available: false, reason: reason.into() }
    }
    /// From a load-and-attach probe: available, or refused with the kernel's errno (or, when
    /// something is missing outright, `absent`).
    fn probed(r: Result<(), Refusal>, yes: &str, absent: &str) -> Self {
        match r {
            Ok(()) => Self::yes(yes),
            Err(refusal) => Self::no(refusal.errno_text().unwrap_or_else(|| absent.to_string())),
        }
    }
}

/// Every mechanism's expected state, each from independent evidence about this kernel.
fn expected_capabilities(events: &[String]) -> BTreeMap<&'static str, Expected> {
    let has_event = |e: &str| events.iter().any(|x| x == e);
    let mut m = BTreeMap::new();
    m.insert(
        "kprobe",
        if kernel_facts::kprobe_pmu() {
            Expected::probed(kernel_facts::kprobe(), "kprobe attached", "kprobe")
        } else {
            Expected::no("kernel built without CONFIG_KPROBES")
        },
    );
    m.insert(
        "fentry",
        Expected::probed(kernel_facts::fentry(), "fentry program loaded and attached", "BTF"),
    );
    m.insert("tp_btf", Expected::probed(kernel_facts::tp_btf(), "tp_btf attached", "BTF"));
    m.insert(
        "tracepoint",
        if has_event("sock/inet_sock_set_state") {
            Expected::yes("classic tracepoint sock:inet_sock_set_state attached")
        } else {
            Expected::no("tracepoint sock:inet_sock_set_state not found")
        },
    );
    m.insert(
        "cgroup_sock",
        if kernel_facts::cgroup2_mounted() {
            Expected::yes("post_bind4 attached")
        } else {
            Expected::no("no cgroup v2 hierarchy mounted")
        },
    );
    // clsact and direct-action classifiers exist on every kernel reach supports (≥ 4.5).
    m.insert("tc_netlink", Expected::yes("via netlink"));
    m.insert(
        "tcx",
        if kernel_facts::at_least(6, 6) {
            Expected::probed(kernel_facts::tcx(), "via TCX", "TCX")
        } else {
            Expected::no("TCX links need Linux ≥ 6.6")
        },
    );
    m.insert(
        "ring_buffer",
        Expected::probed(kernel_facts::ring_buffer(), "BPF_MAP_TYPE_RINGBUF supported", "ring"),
    );
    m
}

/// The attach plan the documented preference order gives for these capabilities
/// (agent/src/probes/plan.rs, restated here so a change to either is noticed).
fn expected_plan(
    caps: &BTreeMap<&'static str, Expected>,
    syscall_bind_tracepoints: bool,
    kfree_skb_tracepoint: bool,
) -> Value {
    let ok = |n: &str| caps[n].available;
    let first = |options: &[(&str, bool)]| {
        options.iter().find(|(_, usable)| *usable).map_or("unavailable", |(n, _)| *n).to_string()
    };
    serde_json::json!({
        "bind": first(&[
            ("kprobe", ok("kprobe")),
            ("fentry", ok("fentry")),
            ("tracepoint", (ok("tracepoint") && syscall_bind_tracepoints) || ok("cgroup_sock")),
        ]),
        "listen": first(&[
            ("kprobe", ok("kprobe")),
            ("fentry", ok("fentry")),
            ("tp_btf", ok("tp_btf")),
            ("tracepoint", ok("tracepoint")),
        ]),
        "ingress": first(&[("tcx", ok("tcx")), ("tc_netlink", ok("tc_netlink"))]),
        "drop": first(&[
            ("tp_btf", ok("tp_btf")),
            ("tracepoint", ok("tracepoint") && kfree_skb_tracepoint),
        ]),
    })
}

#[test]
fn doctor_json_contract_on_this_kernel() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The kernel's own answers first, so doctor's probes cannot influence them.
    let events = kernel_facts::trace_events(&[
        "sock/inet_sock_set_state",
        "syscalls/sys_enter_bind",
        "syscalls/sys_exit_bind",
        "skb/kfree_skb",
    ]);
    let expected = expected_capabilities(&events);
    let lockdown = kernel_facts::lockdown();
    eprintln!("the kernel's own answers: lockdown {lockdown:?}, events {events:?}, {expected:#?}");
    let (report, code) = doctor_json();

    // Stable top-level contract.
    for key in ["kernel", "capabilities", "plan", "privileges", "firewalld"] {
        assert!(report.get(key).is_some(), "missing {key}: {report:#}");
    }
    assert_eq!(report["kernel"]["release"].as_str().unwrap(), kernel_facts::release());
    assert_eq!(report["kernel"]["btf"]["available"], Path::new("/sys/kernel/btf/vmlinux").exists());
    match &lockdown {
        Some(mode) => {
            assert_eq!(report["kernel"]["lockdown"]["value"], mode.as_str(), "{report:#}")
        }
        None => assert_eq!(report["kernel"]["lockdown"]["available"], false, "{report:#}"),
    }

    for (name, want) in &expected {
        let c = cap(&report, name);
        let reason = c["reason"].as_str().unwrap_or_else(|| panic!("{name} has no reason: {c}"));
        assert_eq!(
            c["available"], want.available,
            "{name}: the kernel says {want:?} (independent probe), doctor says {c}"
        );
        assert!(
            reason.contains(&want.reason),
            "{name}: doctor's reason {reason:?} does not contain {:?}",
            want.reason
        );
        // A mechanism that attached must also have run when provoked (ring buffers just exist).
        if want.available && *name != "ring_buffer" {
            assert_eq!(c["fired"], true, "{name} attached but never fired: {c}");
        }
    }

    let has_event = |e: &str| events.iter().any(|x| x == e);
    let syscalls = has_event("syscalls/sys_enter_bind") && has_event("syscalls/sys_exit_bind");
    let kfree_skb = has_event("skb/kfree_skb");
    assert_eq!(report["details"]["syscall_bind_tracepoints"], syscalls, "{report:#}");
    assert_eq!(report["details"]["kfree_skb_tracepoint"], kfree_skb, "{report:#}");
    let plan = expected_plan(&expected, syscalls, kfree_skb);
    assert_eq!(report["plan"], plan, "expected from {expected:#?}");
    let complete = plan.as_object().unwrap().values().all(|v| v != "unavailable");
    assert_eq!(code, if complete { 0 } else { 4 }, "plan {plan}: exit 0 if complete, else 4");

    // The host namespace is listed and named.
    let host = &report["firewalld"][0];
    assert_eq!(host["netns"]["name"], "host", "{report:#}");
}

#[test]
fn doctor_leaves_nothing_attached() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tracefs_before = mounted("/sys/kernel/tracing");
    let securityfs_before = mounted("/sys/kernel/security");
    // Doctor attaches its classifiers in a scratch namespace that goes with its thread
    // (kernel/capabilities.rs); what could outlive it is global: programs, links (tracing,
    // cgroup, perf), mounts, pins, /run/reach.
    let check = Leftovers::snapshot(&Scope { netns: None, ifaces: &[] });
    let out = reach(&["doctor"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("attach plan"), "{text}");
    check.assert_nothing_new("reach doctor");
    assert_eq!(mounted("/sys/kernel/tracing"), tracefs_before, "tracefs mount state changed");
    assert_eq!(
        mounted("/sys/kernel/security"),
        securityfs_before,
        "securityfs mount state changed"
    );
}

#[test]
fn doctor_without_privileges_names_the_capability_and_exits_3() {
    require_root();
    let out = reach_unprivileged(&["doctor"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CAP_BPF"), "{text}");
    assert!(text.contains("sudo"), "must say how to run it: {text}");

    let out = reach_unprivileged(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["privileges"]["missing"],
        serde_json::json!(["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"])
    );
    assert_eq!(json["capabilities"]["tp_btf"]["available"], false);
    assert!(json["capabilities"]["tp_btf"]["reason"].as_str().unwrap().contains("not probed"));
}

#[test]
fn bad_usage_exits_2_with_help() {
    let out = reach(&["doctor", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

fn mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(path))
}
