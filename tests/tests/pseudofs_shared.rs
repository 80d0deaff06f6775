//! tracefs shared by reach processes running at once (`reach lab`'s side-by-side `reach why`s,
//! parallel tests): the process that mounted it must not unmount it under another still
//! using it (seen in CI: "sys_exit_bind/id: No such file or directory"), and the last one out
//! must unmount it. Run in a private mount namespace of the test's own, where tracefs (and
//! debugfs, whose tracing/ directory automounts it) are unmounted first: the host's mounts are
//! never touched.
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

#[test]
fn tracefs_stays_until_the_last_reach_process_ends_and_goes_then() {
    require_root();
    let netns = NetNs::new("pfs").unwrap();
    let mnt = MountNs::new();
    assert!(!mnt.tracefs_mounted(), "tracefs still mounted in the private namespace");

    let first = mnt.watch(&netns);
    assert!(mnt.tracefs_mounted(), "reach watch runs, yet no tracefs: {}", first.stderr());
    let second = mnt.watch(&netns);
    let (code, _) = first.stop();
    assert_eq!(code, Some(0), "the first reach watch");
    // The mount the first one made is the second one's too.
    assert!(
        mnt.tracefs_mounted(),
        "the first reach process to end unmounted tracefs under the second"
    );
    let stderr = second.stderr();
    let (code, _) = second.stop();
    assert_eq!(code, Some(0), "the second reach watch: {stderr}");
    assert!(!mnt.tracefs_mounted(), "the last reach process left tracefs mounted");
}
