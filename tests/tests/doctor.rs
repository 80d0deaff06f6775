//! `reach doctor` on the machine's own kernel, as root and as an unprivileged user.
use std::{path::Path, process::Command, sync::Mutex};

use reach_tests::{bpf_programs_left, reach, reach_unprivileged, require_root, show};
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

#[test]
fn doctor_json_contract_on_this_kernel() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (report, code) = doctor_json();

    // Stable top-level contract.
    for key in ["kernel", "capabilities", "plan", "privileges", "firewalld"] {
        assert!(report.get(key).is_some(), "missing {key}: {report:#}");
    }
    for name in [
        "kprobe",
        "fentry",
        "tp_btf",
        "tracepoint",
        "cgroup_sock",
        "tc_netlink",
        "tcx",
        "ring_buffer",
    ] {
        let c = cap(&report, name);
        assert!(c["available"].is_boolean(), "{name}: {c}");
        assert!(!c["reason"].as_str().unwrap_or("").is_empty(), "{name} has no reason: {c}");
    }
    let uname = Command::new("uname").arg("-r").output().unwrap();
    assert_eq!(
        report["kernel"]["release"].as_str().unwrap(),
        String::from_utf8_lossy(&uname.stdout).trim()
    );
    assert_eq!(report["kernel"]["btf"]["available"], Path::new("/sys/kernel/btf/vmlinux").exists());

    // kprobes: the report must agree with the kernel's own kprobe PMU.
    let pmu = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    assert_eq!(cap(&report, "kprobe")["available"], pmu, "{report:#}");
    if !pmu {
        assert!(cap(&report, "kprobe")["reason"].as_str().unwrap().contains("CONFIG_KPROBES"));
    }

    // This project's machines (kernel 6.18, lockdown=integrity, BPF LSM) refuse fentry with EPERM
    // and allow everything else; elsewhere each mechanism must at least be consistent.
    let ours = report["kernel"]["release"].as_str().unwrap().contains("-fc-");
    if ours {
        assert_eq!(report["kernel"]["lockdown"]["value"], "integrity", "{report:#}");
        assert_eq!(cap(&report, "fentry")["available"], false);
        assert!(
            cap(&report, "fentry")["reason"].as_str().unwrap().contains("Operation not permitted"),
            "{report:#}"
        );
        assert_eq!(
            report["plan"],
            serde_json::json!({"bind": "tracepoint", "listen": "tp_btf", "ingress": "tcx", "drop": "tp_btf"})
        );
        assert_eq!(code, 0, "a complete plan exits 0");
    }
    for name in ["tp_btf", "tracepoint", "cgroup_sock", "tc_netlink", "tcx"] {
        let c = cap(&report, name);
        if ours {
            assert_eq!(c["available"], true, "{name}: {c}");
        }
        if c["available"] == true {
            assert_eq!(c["fired"], true, "{name} attached but never fired: {c}");
        }
    }
    assert_eq!(cap(&report, "ring_buffer")["available"], true);

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
    let out = reach(&["doctor"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("attach plan"), "{text}");
    let leftovers = bpf_programs_left("reach_doctor");
    assert!(leftovers.is_empty(), "doctor left BPF programs loaded: {leftovers:?}");
    assert_eq!(mounted("/sys/kernel/tracing"), tracefs_before, "tracefs mount state changed");
    assert_eq!(
        mounted("/sys/kernel/security"),
        securityfs_before,
        "securityfs mount state changed"
    );
    let tc = Command::new("tc")
        .args(["filter", "show", "dev", "lo", "ingress"])
        .output()
        .expect("tc (iproute2) is needed");
    assert!(
        tc.stdout.is_empty(),
        "a TC filter was left on the host's lo: {}",
        String::from_utf8_lossy(&tc.stdout)
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
