//! podman as the image tests drive it: this machine's quirks, storage of its own, and its
//! global footprint (paths it writes whatever --root says) swept on drop.
use std::process::Command;

/// `podman …` with this machine's quirks: runc (crun refuses hybrid cgroups), the cgroupfs
/// manager (no systemd), events to a file (no journald), storage of its own.
pub struct Podman {
    dir: tempfile::TempDir,
    /// Global paths podman creates whatever its --root says ([`xtask::image::global_footprint`]),
    /// absent before this harness: removed on drop.
    created: Vec<std::path::PathBuf>,
}

impl Podman {
    pub fn new() -> Podman {
        assert!(
            Command::new("podman").arg("--version").output().is_ok_and(|o| o.status.success()),
            "podman is missing: run `cargo xtask setup` (it installs Debian's podman)"
        );
        let created =
            xtask::image::global_footprint().into_iter().filter(|p| !p.exists()).collect();
        Podman { dir: tempfile::Builder::new().prefix("reach-podman-").tempdir().unwrap(), created }
    }

    /// The global arguments, for commands run under nsenter/unshare.
    pub fn global_args(&self) -> Vec<String> {
        let d = self.dir.path().display();
        vec![
            format!("--root={d}/root"),
            format!("--runroot={d}/run"),
            format!("--tmpdir={d}/tmp"),
            "--storage-driver=vfs".into(),
            "--cgroup-manager=cgroupfs".into(),
            "--runtime=runc".into(),
            "--events-backend=file".into(),
        ]
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.args(self.global_args());
        c
    }

    /// `podman load` of an OCI archive; the image's reference.
    pub fn load(&self, archive: &std::path::Path) -> String {
        let out =
            self.cmd().arg("load").arg("--quiet").arg("--input").arg(archive).output().unwrap();
        assert!(out.status.success(), "podman load {}: {}", archive.display(), crate::show(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                l.strip_prefix("Loaded image: ").or_else(|| l.strip_prefix("Loaded image(s): "))
            })
            .unwrap_or_else(|| panic!("podman load named no image: {text}"))
            .trim()
            .to_string()
    }

    /// The quirk arguments every `podman run` here needs (the shell lacks CAP_SYS_RESOURCE to
    /// raise podman's default ulimits).
    pub fn run_quirks() -> [&'static str; 2] {
        ["--ulimit=nofile=20000:20000", "--ulimit=nproc=32768:32768"]
    }

    /// A shell command line that runs `podman ARGS` with its network namespace `netns` (the
    /// container's "host network" is then that lab namespace, never this machine's) and a
    /// private mount namespace holding tracefs at /sys/kernel/tracing, as a booted node has it.
    pub fn in_lab(&self, netns: &std::path::Path, args: &[String]) -> Command {
        let mut podman = vec!["podman".to_string()];
        podman.extend(self.global_args());
        podman.extend(args.iter().cloned());
        let quoted: Vec<String> =
            podman.iter().map(|a| format!("'{}'", a.replace('\'', r"'\''"))).collect();
        let script = format!(
            "set -e; mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing; exec {}",
            quoted.join(" ")
        );
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", netns.display())).args([
            "unshare",
            "--mount",
            "--propagation",
            "slave",
            "sh",
            "-c",
            &script,
        ]);
        c
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "--all", "--force", "--time", "2"]).output();
        let _ = self.cmd().args(["rmi", "--all", "--force"]).output();
        // vfs leaves plain directories; nothing stays mounted once the containers are gone.
        xtask::image::remove_footprint(&self.created);
    }
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}
