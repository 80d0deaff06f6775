//! A real containerd (Debian's 1.6, CRI plugin built in) for the pod-attribution tests, driven
//! through the CRI as kubelet drives it.
//!
//! It runs inside a network namespace of its own (`nsenter --net`), so the CNI bridge, its
//! gateway address and the `ip_forward` the bridge plugin sets live there and never in the root
//! namespace; its root, state, sockets and CNI config are under a private directory. What it
//! still puts in global places is recorded before and swept after ([`footprint`], [`teardown`]).
//! One harness at a time per test process: the global paths are compared before/after.
use std::{
    fs,
    future::Future,
    path::Path,
    process::{Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    path::PathBuf,
};

use anyhow::Context;
use reach_agent::{
    lab::{LabChild, NetNs, NetNsFd, Tool},
    pods::{CriClient, PodSource},
};

pub mod config;
pub mod footprint;
pub mod image;
pub mod sandbox;
pub mod teardown;

pub use footprint::Footprint;
pub use sandbox::{Network, Sandbox};

/// How long containerd may take to answer (it is ready in ~0.1 s here).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Per-RPC bound of the test's client: RunPodSandbox runs CNI and runc, ~0.1 s here.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

const CONTAINERD: Tool = Tool { name: "containerd", package: "containerd" };
const CTR: Tool = Tool { name: "ctr", package: "containerd" };

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Held by each harness for its life, and by anything that compares the global paths: one
/// run's pod namespaces must not look like another's leftovers.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running containerd; stopped and swept when dropped (or by [`Containerd::stop`]).
pub struct Containerd {
    /// None when started without the CRI plugin.
    client: Option<CriClient>,
    child: Option<LabChild>,
    footprint: Footprint,
    rt: tokio::runtime::Runtime,
    // Dropped in this order after teardown: the namespace (killing anything still in it), the
    // directory, then the lock.
    netns: Option<NetNs>,
    dir: Option<tempfile::TempDir>,
    _lock: MutexGuard<'static, ()>,
}

impl Containerd {
    /// Starts containerd with the tests' image imported, or panics saying what is missing.
    pub fn start() -> Containerd {
        Self::start_with(true)
    }

    /// Starts containerd with its CRI plugin disabled (`disabled_plugins = ["cri"]`, as in the
    /// config Docker's containerd package ships): a gRPC socket that serves no CRI.
    pub fn start_without_cri() -> Containerd {
        Self::start_with(false)
    }

    fn start_with(cri: bool) -> Containerd {
        crate::require_root();
        let containerd = CONTAINERD.path().unwrap_or_else(|e| {
            panic!("{e}: run `cargo xtask setup` (Debian's containerd, runc, containernetworking-plugins)")
        });
        let ctr = CTR.path().unwrap_or_else(|e| panic!("{e}: run `cargo xtask setup`"));
        assert!(
            Path::new("/usr/lib/cni/bridge").exists(),
            "/usr/lib/cni/bridge is missing: run `cargo xtask setup` (containernetworking-plugins)"
        );
        let lock = one_at_a_time();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::Builder::new().prefix("reach-cri-").tempdir().expect("temp dir");
        let netns = NetNs::new("cri").expect("creating containerd's network namespace");
        let prefix = format!("/{}", netns.name());
        let mut footprint = Footprint::record(dir.path(), &prefix);

        fs::create_dir_all(dir.path().join("cni")).unwrap();
        fs::write(dir.path().join("config.toml"), config::containerd_toml(dir.path(), cri))
            .unwrap();
        fs::write(dir.path().join("cni/10-reach.conflist"), config::cni_conflist(dir.path()))
            .unwrap();
        image::write_image_tar(&dir.path().join("image.tar")).expect("writing the test image");

        let log = fs::File::create(dir.path().join("containerd.log")).unwrap();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", netns.path().display()))
            .arg(&containerd)
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        // nsenter execs containerd in place: its pid is containerd's.
        let child = LabChild::spawn(&mut cmd).expect("starting containerd");
        footprint.containerd_pid = Some(child.pid());
        let address = footprint.address.clone();
        let client = if cri {
            Some(rt.block_on(wait_ready(&address, dir.path())))
        } else {
            wait_ctr_ready(&ctr, &address, dir.path());
            None
        };
        let mut cd = Containerd {
            client,
            child: Some(child),
            footprint,
            rt,
            netns: Some(netns),
            dir: Some(dir),
            _lock: lock,
        };
        if cri {
            cd.import_image(&ctr);
        }
        cd
    }

    fn import_image(&mut self, ctr: &Path) {
        let out = Command::new(ctr)
            .arg("--address")
            .arg(&self.footprint.address)
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(self.footprint.dir.join("image.tar"))
            .output()
            .expect("running ctr images import");
        assert!(out.status.success(), "ctr images import: {}", crate::show(&out));
    }

    /// containerd's network namespace (where the CNI bridge is, and host-network pods are).
    pub fn netns(&self) -> &NetNs {
        self.netns.as_ref().expect("the namespace lives until teardown")
    }

    /// The CRI socket.
    pub fn socket(&self) -> &Path {
        &self.footprint.address
    }

    /// The test's own CRI client (what kubelet would hold).
    pub fn client(&self) -> &CriClient {
        self.client.as_ref().expect("this containerd was started without its CRI plugin")
    }

    /// Where the pods' cgroups go: `/<prefix>/kubepods/besteffort/pod<uid>` in every hierarchy,
    /// kubelet's cgroupfs layout under a node-like prefix of this harness's own.
    pub fn cgroup_prefix(&self) -> &str {
        &self.footprint.cgroup_prefix
    }

    /// Runs a future on the harness's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A pod with one running container, made as kubelet makes it.
    pub fn run_pod(&self, namespace: &str, name: &str) -> Sandbox<'_> {
        self.run_pod_in(namespace, name, Network::Pod)
    }

    /// Like [`Containerd::run_pod`], with the pod's network chosen.
    pub fn run_pod_in(&self, namespace: &str, name: &str, network: Network) -> Sandbox<'_> {
        self.run_pod_with(namespace, name, network, None)
    }

    /// Like [`Containerd::run_pod_in`], the container running `command` (busybox applets:
    /// e.g. `/bin/httpd -f -p 127.0.0.1:8080`) instead of the default server.
    pub fn run_pod_with(
        &self,
        namespace: &str,
        name: &str,
        network: Network,
        command: Option<&[&str]>,
    ) -> Sandbox<'_> {
        Sandbox::run(self, namespace, name, network, command).unwrap_or_else(|e| {
            panic!(
                "making pod {namespace}/{name}: {e:#}\n--- containerd log ---\n{}",
                self.log_tail()
            )
        })
    }

    /// The end of containerd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.footprint.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Stops containerd, sweeps what it left, removes its namespace and directory, and returns
    /// what is still left (checked while no other harness runs): empty when all is clean.
    pub fn stop(mut self) -> Vec<String> {
        let errors = self.teardown();
        assert!(errors.is_empty(), "cleaning up after containerd: {errors:#?}");
        self.footprint.leftovers()
    }

    fn teardown(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets containerd close its database; shims outlive it by design.
            if let Err(e) = child.terminate(Duration::from_secs(5)) {
                errors.push(format!("stopping containerd: {e}"));
            }
            errors.extend(teardown::sweep(&self.footprint));
        }
        if let Some(netns) = self.netns.take()
            && let Err(e) = netns.remove()
        {
            errors.push(format!("removing containerd's network namespace: {e}"));
        }
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            errors.push(format!("removing {}: {e}", self.footprint.dir.display()));
        }
        errors
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("containerd teardown: {e}");
        }
    }
}

/// Waits until containerd answers the CRI Version.
async fn wait_ready(address: &Path, dir: &Path) -> CriClient {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let last = match CriClient::connect(address, Duration::from_secs(1)).await {
            Ok(client) => return client.with_timeout(RPC_TIMEOUT),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            let log = fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
            panic!(
                "containerd did not answer within {READY_TIMEOUT:?}: {last:#}\n--- log ---\n{log}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until containerd's own API answers (`ctr version`), for a containerd without the CRI.
fn wait_ctr_ready(ctr: &Path, address: &Path, dir: &Path) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let out = Command::new(ctr).arg("--address").arg(address).arg("version").output();
        if out.as_ref().is_ok_and(|o| o.status.success()) {
            return;
        }
        if Instant::now() > deadline {
            let log = fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
            panic!(
                "containerd did not answer `ctr version` within {READY_TIMEOUT:?}: {out:?}\n{log}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids of the processes in container `id` (its id is the last component of their cgroup).
pub fn container_pids(id: &str) -> Vec<u32> {
    let suffix = format!("/{id}");
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .context("listing /proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.lines().any(|l| l.ends_with(&suffix)))
        })
        .collect();
    pids.sort();
    pids
}

/// A pod's network namespace (path, `ip netns` name) and its eth0 IPv4 address.
pub struct PodNet {
    pub path: PathBuf,
    pub name: String,
    pub ip: IpAddr,
}

pub fn pod_net(cd: &Containerd, uid: &str) -> PodNet {
    let mut source = cd.block_on(PodSource::detect(Some(cd.socket()))).expect("CRI");
    let index = cd.block_on(source.snapshot()).expect("snapshot");
    let pod = index.by_uid(uid).unwrap_or_else(|| panic!("pod {uid} not listed: {index:#?}"));
    let path = pod.netns_path.clone().expect("the runtime names the pod's netns");
    let ns = NetNsFd::open(&path).unwrap();
    let out = ns.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]).unwrap();
    let ip = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 on eth0 of {}: {out}", path.display()));
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    PodNet { path, name, ip }
}

pub fn connect_from(
    client: &PodNet,
    to: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    NetNsFd::open(&client.path)
        .unwrap()
        .run_in(move || TcpStream::connect_timeout(&to, timeout))
        .unwrap()
}
