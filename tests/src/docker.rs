//! A real Docker daemon for the tests: Debian's dockerd (unpacked by `cargo xtask setup`, see
//! xtask's `docker_root`) started inside a lab network namespace and a private mount namespace,
//! with its own data root, exec root, containerd and bridge — never in the root namespace, so
//! its iptables-nft rules, docker0 and docker-proxy processes exist only there. Images are
//! built locally (no registry): busybox-static's binary, imported as a one-file image.
//!
//! Dropping it removes every container, stops the daemon and its containerd, kills whatever is
//! left in its mount namespace and deletes its state.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reach_agent::lab::NetNs;

/// Where `cargo xtask setup` unpacks Debian's Docker (xtask's `docker_root::dir()`).
pub fn root() -> PathBuf {
    crate::firewalld_versions::trixie_root()
        .parent()
        .and_then(Path::parent)
        .expect("the cache directory")
        .join("docker")
        .join("root")
}

/// The file `cargo xtask setup` writes in a complete root (xtask's `docker_root::STAMP`).
pub const STAMP: &str = ".reach-stamp";

/// The one image the tests run: busybox (its `httpd` is the app, `nc` a client).
pub const IMAGE: &str = "reach-lab/busybox:1";

pub struct Dockerd {
    root: PathBuf,
    state: tempfile::TempDir,
    child: Child,
    /// dockerd's mount namespace: every process of it is the daemon's.
    mnt: u64,
}

impl Dockerd {
    /// dockerd in `ns`, ready (its API answers), with [`IMAGE`] imported.
    pub fn start(ns: &NetNs) -> Dockerd {
        let root = root();
        assert!(
            root.join(STAMP).is_file(),
            "Debian's Docker is not unpacked at {}: run `cargo xtask setup`",
            root.display()
        );
        let state = tempfile::Builder::new().prefix("reach-dockerd-").tempdir_in("/tmp").unwrap();
        let s = state.path();
        std::fs::write(s.join("daemon.json"), "{}").unwrap();
        let log = std::fs::File::create(s.join("dockerd.log")).unwrap();
        let path = format!(
            "{}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
            root.join("usr/bin").display(),
            root.join("usr/sbin").display()
        );
        let sock = s.join("docker.sock");
        // nsenter and unshare exec in turn: the child is dockerd itself.
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.handle().path().display()))
            .args(["unshare", "--mount", "--propagation", "private"])
            .arg(root.join("usr/sbin/dockerd"))
            .args(["--config-file"])
            .arg(s.join("daemon.json"))
            .arg("--data-root")
            .arg(s.join("data"))
            .arg("--exec-root")
            .arg(s.join("exec"))
            .arg("--pidfile")
            .arg(s.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            // Its containers' cgroups under a parent of its own, removed with it.
            .arg("--cgroup-parent")
            .arg(format!("/{}", cgroup_parent(s)))
            .args([
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
                "--containerd-namespace",
                "reach-lab",
                "--containerd-plugins-namespace",
                "reach-lab-plugins",
            ])
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting nsenter … dockerd");
        let mut d = Dockerd { root, state, child, mnt: 0 };
        let started = Instant::now();
        while d.cli(&["version"]).is_err() {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("dockerd exited ({status}):\n{}", d.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "dockerd did not answer in 60 s:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d.mnt = mount_ns(d.child.id()).expect("dockerd's mount namespace");
        d.import_busybox();
        d
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("dockerd.log")).unwrap_or_default()
    }

    /// The Docker CLI against this daemon: its stdout, or its stderr as the error.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(self.root.join("usr/bin/docker"))
            .arg("-H")
            .arg(format!("unix://{}", self.state.path().join("docker.sock").display()))
            .args(args)
            .output()
            .map_err(|e| format!("running docker: {e}"))?;
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
            false => Err(format!(
                "docker {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }

    /// `docker run -d --name NAME -p PUBLISH IMAGE ARGS…`: the container's init pid.
    pub fn run(&self, name: &str, publish: &str, args: &[&str]) -> u32 {
        let mut argv = vec!["run", "-d", "--name", name, "-p", publish, IMAGE];
        argv.extend(args);
        self.cli(&argv).unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        let pid = self.cli(&["inspect", "-f", "{{.State.Pid}}", name]).unwrap();
        pid.parse().unwrap_or_else(|_| panic!("container {name}'s pid: {pid:?}"))
    }

    /// A one-file image of the host's busybox-static.
    fn import_busybox(&self) {
        let busybox = Path::new("/bin/busybox");
        assert!(busybox.is_file(), "no /bin/busybox: `cargo xtask setup` installs busybox-static");
        let tree = self.state.path().join("image");
        std::fs::create_dir_all(tree.join("bin")).unwrap();
        std::fs::copy(busybox, tree.join("bin/busybox")).unwrap();
        let tar = self.state.path().join("image.tar");
        let packed =
            Command::new("tar").arg("-C").arg(&tree).arg("-cf").arg(&tar).arg(".").status();
        assert!(packed.is_ok_and(|s| s.success()), "packing the busybox image");
        self.cli(&["import", &tar.to_string_lossy(), IMAGE]).unwrap();
    }
}

/// The cgroup parent of the daemon whose state is in `state`: named after it, so unique.
fn cgroup_parent(state: &Path) -> String {
    state.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn mount_ns(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(format!("/proc/{pid}/ns/mnt")).ok().map(|m| m.ino())
}

/// The pids whose mount namespace is `mnt`.
fn in_mount_ns(mnt: u64) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| mount_ns(*pid as u32) == Some(mnt))
        .collect()
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Ok(ids) = self.cli(&["ps", "-aq"])
            && !ids.is_empty()
        {
            let mut argv = vec!["rm", "-f"];
            argv.extend(ids.lines());
            let _ = self.cli(&argv);
        }
        // SIGTERM: dockerd stops its containerd and removes its rules and bridge.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.mnt != 0 {
            for pid in in_mount_ns(self.mnt) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            // Its overlay mounts go with the last of them; only then can the state be deleted.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && !in_mount_ns(self.mnt).is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // The (empty) cgroup parent, in every hierarchy it was made in.
        let name = cgroup_parent(self.state.path());
        let hierarchies = std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten();
        let dirs = hierarchies.map(|h| h.path().join(&name));
        for dir in dirs.chain([Path::new("/sys/fs/cgroup").join(&name)]) {
            let _ = std::fs::remove_dir(dir);
        }
        // The state directory (TempDir) goes last: its mounts went with the mount namespace.
    }
}
