//! Pod attribution (`reach_agent::pods`) against a real containerd 1.6 driven through the CRI as
//! kubelet drives it (see reach_tests::containerd). Run as root:
//! `cargo test -p reach-tests --test pods_cri`.
use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use reach_agent::pods::{PodIndex, PodSource, cgroup_path};
use reach_tests::{
    containerd::{
        self, Containerd, Footprint, Network, config::BRIDGE, container_pids, sandbox::CONTAINER,
    },
    require_root,
};

fn snapshot(cd: &Containerd, source: &mut PodSource) -> PodIndex {
    cd.block_on(source.snapshot()).unwrap_or_else(|e| panic!("snapshot: {e:#}\n{}", cd.log_tail()))
}

fn cri_source(cd: &Containerd) -> PodSource {
    cd.block_on(PodSource::detect(Some(cd.socket())))
        .unwrap_or_else(|e| panic!("detect: {e:#}\n{}", cd.log_tail()))
}

fn assert_clean(cd: Containerd) {
    let left = cd.stop();
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// The one process of a running container (httpd), found from /proc.
fn container_pid(id: &str) -> u32 {
    let pids = container_pids(id);
    assert_eq!(pids.len(), 1, "processes in container {id}: {pids:?}");
    pids[0]
}

fn inode(path: &Path) -> u64 {
    fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).ino()
}

#[test]
fn detect_describes_the_runtime_as_it_reports_itself() {
    require_root();
    let cd = Containerd::start();
    let source = cri_source(&cd);
    let PodSource::Cri(client) = &source else { panic!("not the CRI: {}", source.describe()) };
    let version = client.version();
    // The binary's own idea of its version: "containerd github.com/containerd/containerd 1.6.20~ds1 …".
    let out = Command::new("containerd").arg("--version").output().expect("containerd --version");
    let binary = String::from_utf8_lossy(&out.stdout);
    let binary_version =
        binary.split_whitespace().nth(2).expect("a version in containerd --version");
    assert_eq!(version.runtime_name, "containerd");
    assert_eq!(version.runtime_version, binary_version, "{version:?} vs {binary}");
    assert!(version.runtime_version.starts_with("1.6."), "{version:?}");
    assert_eq!(version.runtime_api_version, "v1");
    let want = format!(
        "CRI containerd {} (runtime API v1) at {}",
        version.runtime_version,
        cd.socket().display()
    );
    assert_eq!(source.describe(), want);
    drop(source);
    assert_clean(cd);
}

#[test]
fn two_pods_by_name_netns_container_and_pid() {
    require_root();
    let cd = Containerd::start();
    let mut source = cri_source(&cd);
    let netns_before: Vec<_> =
        fs::read_dir("/run/netns").unwrap().map(|e| e.unwrap().path()).collect();
    let a = cd.run_pod("shop", "web-a");
    let b = cd.run_pod("billing", "web-b");

    let index = snapshot(&cd, &mut source);
    let mut inodes = Vec::new();
    for sandbox in [&a, &b] {
        let pod = index
            .by_uid(&sandbox.uid)
            .unwrap_or_else(|| panic!("{} not listed: {index:#?}", sandbox.uid));
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            (sandbox.namespace.as_str(), sandbox.name.as_str())
        );
        assert_eq!(pod.sandbox_id, sandbox.id);

        // The netns the runtime names is a new /var/run/netns/cni-* bind mount, the one the
        // container's process is in.
        let path = pod.netns_path.as_deref().unwrap_or_else(|| panic!("no netns path: {pod:?}"));
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            path.starts_with("/var/run/netns") && name.starts_with("cni-"),
            "{}",
            path.display()
        );
        assert!(
            !netns_before.contains(&Path::new("/run/netns").join(&*name)),
            "not new: {}",
            path.display()
        );
        assert_eq!(pod.netns_inode, Some(inode(path)));
        let pid = container_pid(&sandbox.container_id);
        assert_eq!(pod.netns_inode, Some(inode(Path::new(&format!("/proc/{pid}/ns/net")))));
        assert_eq!(index.by_netns(pod.netns_inode.unwrap()).map(|p| &p.uid), Some(&sandbox.uid));
        inodes.push(pod.netns_inode.unwrap());

        // The container, by full id and by the 12-character prefix people paste.
        let (p, c) = index.by_container(&sandbox.container_id).expect("container by id");
        assert_eq!((p.uid.as_str(), c.name.as_str()), (sandbox.uid.as_str(), CONTAINER));
        assert_eq!(
            index.by_container(&sandbox.container_id[..12]).map(|(_, c)| &c.id),
            Some(&sandbox.container_id)
        );

        // The process, by its cgroup (kubelet's cgroupfs layout under the harness's prefix).
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let want = format!(
            "{}/kubepods/besteffort/pod{}/{}",
            cd.cgroup_prefix(),
            sandbox.uid,
            sandbox.container_id
        );
        assert!(cgroup.lines().any(|l| l.ends_with(&want)), "{cgroup}");
        let (p, c) =
            index.by_pid(pid).unwrap_or_else(|| panic!("pid {pid} not attributed: {cgroup}"));
        assert_eq!(p.uid, sandbox.uid);
        assert_eq!(c.map(|c| c.id.as_str()), Some(sandbox.container_id.as_str()));
    }
    assert_ne!(inodes[0], inodes[1], "two pods, one network namespace");
    // The CNI bridge is in containerd's namespace (and, checked at the end, not in the root one).
    let ip = reach_agent::lab::IP.path().unwrap();
    let out =
        Command::new(ip).args(["-n", cd.netns().name(), "link", "show", BRIDGE]).output().unwrap();
    assert!(out.status.success(), "{BRIDGE} in {}: {}", cd.netns().name(), reach_tests::show(&out));
    assert_eq!(index.pods().count(), 2, "{index:#?}");
    drop((a, b));
    drop(source);
    assert_clean(cd);
}

#[test]
fn without_the_cri_cgroups_still_give_uid_and_container() {
    require_root();
    let cd = Containerd::start();
    let pod = cd.run_pod("shop", "web-c");
    let pid = container_pid(&pod.container_id);
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let parsed = cgroup_path::parse_proc_cgroup(&cgroup).expect("a kubepods cgroup");
    assert_eq!(parsed.qos, cgroup_path::Qos::BestEffort);

    let mut source = PodSource::Cgroups { why: "test: no CRI".into() };
    assert_eq!(source.describe(), "cgroup paths (test: no CRI)");
    let index = snapshot(&cd, &mut source);
    let found =
        index.by_uid(&pod.uid).unwrap_or_else(|| panic!("uid {} not found: {index:#?}", pod.uid));
    assert_eq!(
        (found.name.as_str(), found.namespace.as_str()),
        ("", ""),
        "names are unknown without the CRI"
    );
    assert_eq!(found.label(), format!("pod {}", pod.uid));
    assert!(found.containers.iter().any(|c| c.id == pod.container_id), "{found:?}");
    let (p, c) = index.by_pid(pid).expect("by pid");
    assert_eq!(
        (p.uid.as_str(), c.map(|c| c.id.as_str())),
        (pod.uid.as_str(), Some(pod.container_id.as_str()))
    );
    let ns = inode(Path::new(&format!("/proc/{pid}/ns/net")));
    assert_eq!(found.netns_inode, Some(ns));
    assert_eq!(index.by_netns(ns).map(|p| &p.uid), Some(&pod.uid));
    drop(pod);
    assert_clean(cd);
}

#[test]
fn a_removed_pod_leaves_the_next_snapshot() {
    require_root();
    let cd = Containerd::start();
    let mut source = cri_source(&cd);
    let stays = cd.run_pod("shop", "stays");
    let goes = cd.run_pod("shop", "goes");
    let (goes_uid, goes_container) = (goes.uid.clone(), goes.container_id.clone());
    assert!(snapshot(&cd, &mut source).by_uid(&goes_uid).is_some());
    goes.remove().unwrap_or_else(|e| panic!("StopPodSandbox/RemovePodSandbox: {e:#}"));
    let index = snapshot(&cd, &mut source);
    assert!(index.by_uid(&goes_uid).is_none(), "{index:#?}");
    assert!(index.by_container(&goes_container).is_none());
    assert!(index.by_uid(&stays.uid).is_some());
    assert_eq!(index.pods().count(), 1);
    drop(stays);
    drop(source);
    assert_clean(cd);
}

#[test]
fn a_missing_socket_is_an_error_naming_the_path() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("containerd.sock");
    let err = rt.block_on(PodSource::detect(Some(&path))).unwrap_err().to_string();
    eprintln!("{err}");
    assert!(err.starts_with(&format!("--cri-socket {}:", path.display())), "{err}");
    assert!(
        err.contains("no such socket") && err.contains("hostPath"),
        "says what failed and the fix: {err}"
    );
}

#[test]
fn a_silent_socket_errors_within_the_bound() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    // Accepts connections and holds them, never writing a byte.
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4) {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let err = rt.block_on(PodSource::detect(Some(&path))).unwrap_err().to_string();
    let took = started.elapsed();
    eprintln!("{err}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(err.contains(&path.display().to_string()) && err.contains("no answer"), "{err}");
    drop(holder);
}

/// The leftover check itself can fail: a cgroup deliberately left under a harness's prefix
/// is reported, and is no longer once removed.
#[test]
fn the_leftover_check_sees_a_left_cgroup() {
    require_root();
    let _one = containerd::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("/reach-cri-leftcheck-{}", std::process::id());
    let fp = Footprint::record(dir.path(), &prefix);
    assert_eq!(fp.leftovers(), Vec::<String>::new());
    let hierarchy =
        containerd::footprint::cgroup_mounts().into_iter().next().expect("a cgroup hierarchy");
    let left = hierarchy.join(prefix.trim_start_matches('/')).join("kubepods/besteffort");
    fs::create_dir_all(&left).unwrap();
    let found = fp.leftovers();
    let top = hierarchy.join(prefix.trim_start_matches('/'));
    containerd::teardown::rmdir_tree(&top).unwrap();
    assert_eq!(found, vec![format!("cgroup {}", top.display())]);
    assert_eq!(fp.leftovers(), Vec::<String>::new());
    // And the bridge check reads the root namespace for real.
    assert!(!containerd::footprint::root_has_link(BRIDGE));
    assert!(containerd::footprint::root_has_link("lo"));
}

/// A host-network pod owns no network namespace (so no netns lookup may name it), yet its
/// processes are still found by their cgroup.
#[test]
fn a_host_network_pod_is_found_by_pid_not_by_netns() {
    require_root();
    let cd = Containerd::start();
    let mut source = cri_source(&cd);
    let host = cd.run_pod_in("kube-system", "node-agent", Network::Host);
    let index = snapshot(&cd, &mut source);
    let pod = index.by_uid(&host.uid).unwrap_or_else(|| panic!("not listed: {index:#?}"));
    assert_eq!((pod.namespace.as_str(), pod.name.as_str()), ("kube-system", "node-agent"));
    assert_eq!((&pod.netns_path, pod.netns_inode), (&None, None), "{pod:?}");
    let pid = container_pid(&host.container_id);
    // "The node" here is containerd's namespace: the process is in it, not in a pod's.
    let ns = inode(Path::new(&format!("/proc/{pid}/ns/net")));
    assert_eq!(ns, inode(cd.netns().path()));
    assert!(index.by_netns(ns).is_none());
    let (p, c) = index.by_pid(pid).expect("a host-network pod's process, by cgroup");
    assert_eq!(
        (p.uid.as_str(), c.map(|c| c.id.as_str())),
        (host.uid.as_str(), Some(host.container_id.as_str()))
    );
    drop(host);
    drop(source);
    assert_clean(cd);
}

/// Without --cri-socket the candidates are tried in order: absent ones are passed over and the
/// first that answers is used.
#[test]
fn detection_without_a_flag_takes_the_first_socket_that_answers() {
    require_root();
    let cd = Containerd::start();
    let missing = Path::new("/run/reach-test-no-such-runtime.sock").to_path_buf();
    let source = cd.block_on(PodSource::detect_among(&[missing, cd.socket().to_path_buf()]));
    let PodSource::Cri(client) = &source else { panic!("fell back: {}", source.describe()) };
    assert_eq!(client.socket(), cd.socket());
    drop(source);
    assert_clean(cd);
}

/// The harness's own cleanup when a pod is never removed through the CRI (a test that dies
/// mid-way, a wedged runtime): containerd stops with the pod running, and the sweep must still
/// kill its shim and processes, unmount its netns and rootfs, and drop its CNI result and
/// cgroups.
#[test]
fn a_pod_left_running_is_swept_with_containerd() {
    require_root();
    let cd = Containerd::start();
    let pod = cd.run_pod("shop", "abandoned");
    let pid = container_pid(&pod.container_id);
    let index = snapshot(&cd, &mut cri_source(&cd));
    let netns = index.by_uid(&pod.uid).and_then(|p| p.netns_path.clone()).expect("a netns path");
    // Not removed: the guard is forgotten, as if the test had been killed.
    std::mem::forget(pod);
    assert_clean(cd);
    assert!(!reach_tests::process_alive(pid as i32), "container process {pid} survived");
    assert!(!netns.exists(), "{} survived", netns.display());
}

/// The commonest wrong socket: a containerd whose CRI plugin is disabled (Docker's bundled
/// config does that). It answers gRPC, but not the CRI: the error must say so, with the fix.
#[test]
fn a_containerd_without_its_cri_plugin_is_named_as_such() {
    require_root();
    let cd = Containerd::start_without_cri();
    let err = cd.block_on(PodSource::detect(Some(cd.socket()))).unwrap_err().to_string();
    assert!(err.starts_with(&format!("--cri-socket {}:", cd.socket().display())), "{err}");
    assert!(err.contains("Version failed: not implemented"), "{err}");
    assert!(err.contains("disabled_plugins"), "names the fix: {err}");
    assert_clean(cd);
}
