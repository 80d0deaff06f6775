//! A real Docker daemon in the lab: dockerd from a root holding Debian's docker.io, containerd
//! and runc (`cargo xtask setup` unpacks one at ~/.cache/reach/docker/root, see xtask's
//! `docker_root`) started inside a lab network namespace and a private mount namespace, with
//! its own data root, exec root, containerd, cgroup parent and bridge — never in the root
//! namespace, so its iptables-nft rules, docker0 and docker-proxy processes exist only there.
//! Images are built locally (no registry): busybox-static's binary, imported as a one-file
//! image. For the tests and `reach lab --docker-root`.
//!
//! Dropping it removes every container, stops the daemon and its containerd, kills whatever is
//! left in its mount namespace and deletes its state.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{LabError, NetNsFd, Result};

/// The version a root's dockerd prints: it is a root holding a dockerd that starts.
pub fn root_version(root: &Path) -> Result<String> {
    let dockerd = root.join("usr/sbin/dockerd");
    let out = Command::new(&dockerd)
        .arg("--version")
        .output()
        .map_err(|e| LabError::io(format!("running {}", dockerd.display()), e))?;
    super::checked(format!("{} --version", dockerd.display()), out).map(|v| v.trim().to_string())
}

/// The one image the tests run: busybox (its `httpd` is the app, `nc` a client).
pub const IMAGE: &str = "reach-lab/busybox:1";

/// How long dockerd may take to answer its API.
const READY_WITHIN: Duration = Duration::from_secs(60);

pub struct Dockerd {
    root: PathBuf,
    state: tempfile::TempDir,
    child: Child,
    /// dockerd's mount namespace: every process of it is the daemon's.
    mnt: u64,
}

impl Dockerd {
    /// dockerd from `root` in `ns`, ready (its API answers), with [`IMAGE`] imported.
    pub fn start(ns: &NetNsFd, root: &Path) -> Result<Dockerd> {
        root_version(root)?;
        let busybox = Path::new("/bin/busybox");
        if !busybox.is_file() {
            return Err(LabError::ToolMissing {
                tool: "busybox (for the lab's image)".into(),
                package: Some("busybox-static"),
            });
        }
        // A lab name (with this process's pid): a killed run's directory and cgroup parent are
        // removed by `clean_stale`, its daemons killed with the lab namespace they run in.
        let prefix = format!("{}-", super::LabName::next("dockerd"));
        let state = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in("/tmp")
            .map_err(|e| LabError::io("creating dockerd's state directory", e))?;
        let s = state.path();
        let io = |what: &str| {
            let what = what.to_string();
            move |e| LabError::io(what, e)
        };
        std::fs::write(s.join("daemon.json"), "{}").map_err(io("writing daemon.json"))?;
        let log = std::fs::File::create(s.join("dockerd.log")).map_err(io("creating its log"))?;
        let path = format!(
            "{}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
            root.join("usr/bin").display(),
            root.join("usr/sbin").display()
        );
        let sock = s.join("docker.sock");
        // nsenter and unshare exec in turn: the child is dockerd itself.
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
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
            .stdout(log.try_clone().map_err(io("its log"))?)
            .stderr(log)
            .spawn()
            .map_err(io("starting nsenter … dockerd"))?;
        let mut d = Dockerd { root: root.to_path_buf(), state, child, mnt: 0 };
        let started = Instant::now();
        while d.cli(&["version"]).is_err() {
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(LabError::Invalid {
                    what: "dockerd",
                    detail: format!("it exited ({status}):\n{}", d.log()),
                });
            }
            if started.elapsed() > READY_WITHIN {
                return Err(LabError::Timeout {
                    what: format!("dockerd's API to answer:\n{}", d.log()),
                    after: READY_WITHIN,
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        d.mnt = mount_ns(d.child.id()).unwrap_or(0);
        d.import_busybox(busybox)?;
        Ok(d)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("dockerd.log")).unwrap_or_default()
    }

    /// The Docker CLI against this daemon: its stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(self.root.join("usr/bin/docker"));
        cmd.arg("-H")
            .arg(format!("unix://{}", self.state.path().join("docker.sock").display()))
            .args(args);
        super::run_within(&mut cmd, Duration::from_secs(60)).map(|out| out.trim().to_string())
    }

    /// `docker run -d --name NAME -p PUBLISH IMAGE ARGS…`: the container's init pid.
    pub fn run(&self, name: &str, publish: &str, args: &[&str]) -> Result<u32> {
        let mut argv = vec!["run", "-d", "--name", name, "-p", publish, IMAGE];
        argv.extend(args);
        self.cli(&argv)?;
        let pid = self.cli(&["inspect", "-f", "{{.State.Pid}}", name])?;
        pid.parse().map_err(|_| LabError::Invalid {
            what: "container pid",
            detail: format!("{name}: {pid:?}"),
        })
    }

    /// A one-file image of `busybox` (busybox-static's binary).
    fn import_busybox(&self, busybox: &Path) -> Result<()> {
        let tree = self.state.path().join("image");
        let io = |e| LabError::io("building the busybox image", e);
        std::fs::create_dir_all(tree.join("bin")).map_err(io)?;
        std::fs::copy(busybox, tree.join("bin/busybox")).map_err(io)?;
        let tar = self.state.path().join("image.tar");
        let mut pack = Command::new("tar");
        pack.arg("-C").arg(&tree).arg("-cf").arg(&tar).arg(".");
        super::run_within(&mut pack, Duration::from_secs(30))?;
        self.cli(&["import", &tar.to_string_lossy(), IMAGE])?;
        Ok(())
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
