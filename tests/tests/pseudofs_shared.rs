//! tracefs for reach processes running at once (`reach lab`'s side-by-side `reach why`s,
//! parallel tests) on a machine that has it unmounted: one process's mount must never be pulled
//! from under another still using it (seen in CI: "sys_exit_bind/id: No such file or
//! directory"), and none may stay behind. Each reach process mounts it in a mount namespace of
//! its own (kernel/private_mounts.rs), so the namespace it started in never sees the mount at
//! all. Run in a private mount namespace of the test's own, where tracefs (and debugfs, whose
//! tracing/ directory automounts it) are unmounted first: the host's mounts are never touched.
use std::{
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use reach_agent::lab::NetNs;
use reach_tests::{WatchRun, reach_bin, require_root};

/// A `sleep` holding a private mount namespace without tracefs and debugfs; killed on drop.
struct MountNs(Child);

impl MountNs {
    fn new() -> MountNs {
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "umount -l /sys/kernel/debug/tracing 2>/dev/null; umount -l /sys/kernel/debug \
                 2>/dev/null; umount -l /sys/kernel/tracing 2>/dev/null; exec sleep 600",
            )
            .spawn()
            .expect("running unshare (util-linux)");
        let ns = MountNs(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_link(format!("/proc/{}/exe", ns.pid()))
            .is_ok_and(|p| p.ends_with("sleep"))
        {
            assert!(Instant::now() < deadline, "the mount namespace holder never reached sleep");
            std::thread::sleep(Duration::from_millis(20));
        }
        ns
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// `path` (absolute) as seen from inside the namespace.
    fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid()))
    }

    fn tracefs_mounted(&self) -> bool {
        self.inside("/sys/kernel/tracing/events").is_dir()
    }

    /// `reach watch` on `netns` inside this mount namespace, once it watches.
    fn watch(&self, netns: &NetNs) -> WatchRun {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.pid())).arg("--").arg(reach_bin()).args([
            "watch",
            "--json",
            "--netns",
            netns.name(),
        ]);
        WatchRun::start_with(cmd, "watching binds")
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether process `pid`'s own mount namespace has tracefs at /sys/kernel/tracing.
fn tracefs_in(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .any(|l| l.contains(" /sys/kernel/tracing ") && l.contains(" - tracefs "))
}

#[test]
fn each_reach_process_mounts_tracefs_for_itself_and_the_namespace_it_left_never_sees_it() {
    require_root();
    let netns = NetNs::new("pfs").unwrap();
    let mnt = MountNs::new();
    assert!(!mnt.tracefs_mounted(), "tracefs still mounted in the private namespace");

    let first = mnt.watch(&netns);
    assert!(tracefs_in(first.pid()), "reach watch runs, yet has no tracefs: {}", first.stderr());
    assert!(!mnt.tracefs_mounted(), "reach's mount leaked into the namespace it started in");
    let second = mnt.watch(&netns);
    let (code, _) = first.stop();
    assert_eq!(code, Some(0), "the first reach watch");
    // The second still sees binds after the first has ended (its tracefs is its own).
    let port = netns
        .run_in(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
        .unwrap();
    second.wait_for_json("the bind after the first run ended", |l| {
        l["type"] == "bind" && l["bound_port"].as_u64() == Some(port as u64)
    });
    let stderr = second.stderr();
    let (code, _) = second.stop();
    assert_eq!(code, Some(0), "the second reach watch: {stderr}");
    assert!(!mnt.tracefs_mounted(), "tracefs appeared in the namespace reach started in");
}
