//! The agent's image (`cargo xtask image`) run the way its DaemonSet runs it, without a cluster:
//! podman gets exactly the chart's pod spec — host network and PID namespace, the capabilities
//! and nothing else, a read-only root, no privilege escalation, the runtime's default seccomp
//! profile, the hostPath mounts with their propagation, the memory and CPU limits — translated
//! field by field (tests/src/deploy.rs refuses any field it cannot carry over). The container's
//! "host network" is a lab namespace (podman runs under `nsenter --net`), never this machine's.
use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Mutex,
    time::{Duration, Instant},
};

use reach_agent::lab::{NetNs, NetNsFd, TwoHosts};
use reach_tests::{
    WatchRun,
    bench_e2e::status_kib,
    containerd::{Containerd, Network, connect_from, pod_net},
    deploy,
    leftovers::{Leftovers, Scope},
    podman::Podman,
    prometheus, require_root, show,
};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The OCI archive `cargo xtask test` built (REACH_IMAGE).
fn archive() -> PathBuf {
    let path = std::env::var_os(xtask::image::ENV).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{} is not set: run the tests through `cargo xtask test` (it builds the image), or \
             `cargo xtask image` and set {}={}",
            xtask::image::ENV,
            xtask::image::ENV,
            xtask::image::archive_path().display()
        )
    });
    assert!(path.is_file(), "{} does not exist: run `cargo xtask image`", path.display());
    path
}

/// The DaemonSet as rendered with `values` (YAML).
fn daemonset(values: &str) -> Value {
    deploy::object(&deploy::render(values), "DaemonSet").clone()
}

/// `podman run` of `image` as `ds` specifies, in `netns`, with `run_opts` (e.g. `--rm`) and the
/// container's arguments `args`.
fn podman_run(
    podman: &Podman,
    netns: &Path,
    ds: &Value,
    image: &str,
    run_opts: &[&str],
    args: &[String],
) -> Command {
    let (spec, _) = deploy::podman_run_args(ds);
    let mut all: Vec<String> = vec!["run".into()];
    all.extend(Podman::run_quirks().iter().map(|s| s.to_string()));
    all.extend(run_opts.iter().map(|s| s.to_string()));
    all.extend(spec);
    all.push(image.to_string());
    all.extend(args.iter().cloned());
    podman.in_lab(netns, &all)
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("start podman")
}

/// A file's bytes in the OCI archive (`blobs/sha256/…`, `index.json`).
fn archive_entry(archive: &Path, name: &str) -> Vec<u8> {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut buf).unwrap();
            return buf;
        }
    }
    panic!("{name} is not in {}", archive.display());
}

fn blob(archive: &Path, digest: &str) -> Vec<u8> {
    archive_entry(archive, &format!("blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap()))
}

#[test]
fn image_holds_one_static_reach_and_nothing_else() {
    let archive = archive();
    let index: Value = serde_json::from_slice(&archive_entry(&archive, "index.json")).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    let manifest: Value =
        serde_json::from_slice(&blob(&archive, manifests[0]["digest"].as_str().unwrap())).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(&archive, manifest["config"]["digest"].as_str().unwrap()))
            .unwrap();
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/reach"]), "{config}");
    assert_eq!(config["config"]["Cmd"][0], "agent", "{config}");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "FROM scratch plus one copy: one layer; {manifest}");
    // The layer's files, unpacked by the system tar (it is gzip-compressed).
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer.tar.gz");
    std::fs::write(&layer, blob(&archive, layers[0]["digest"].as_str().unwrap())).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let out = Command::new("tar").arg("-xzf").arg(&layer).arg("-C").arg(&root).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // reach, and nft and iptables-nft with exactly the shared objects they load; nothing else.
    let files: Vec<String> = walk(&root);
    let mut expected: Vec<String> = xtask::image::runtime_entries()
        .unwrap()
        .iter()
        .map(|e| {
            let p = e.path().strip_prefix("/").unwrap().display().to_string();
            match e {
                xtask::image::Entry::File(_) => p,
                xtask::image::Entry::Link(_, to) => format!("{p} -> {}", to.display()),
            }
        })
        .chain(["reach".to_string()])
        .collect();
    expected.sort();
    assert_eq!(
        files, expected,
        "the image holds reach, nft, iptables-nft and their libraries, nothing else"
    );
    let reach = root.join("reach");
    xtask::image::check_static(&reach).unwrap();
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!([format!("PATH={}", xtask::image::PATH)]),
        "{config}"
    );
    // Both start inside the image's tree alone (chroot: no library of this host is reachable),
    // nft found through the image's PATH as reach finds it.
    let out = Command::new("chroot").arg(&root).arg("/reach").arg("--version").output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let nft = Command::new("chroot")
        .arg(&root)
        .args(["/usr/sbin/nft", "--version"])
        .env("PATH", xtask::image::PATH)
        .output()
        .unwrap();
    assert!(nft.status.success(), "nft in the image: {}", show(&nft));
    // iptables-nft with its extensions: in a lab namespace, the image's `iptables -S` prints a
    // rule with a match and a target extension exactly as this machine's does.
    require_root();
    let ns = NetNs::new("img-xt").unwrap();
    let host_ipt = |args: &[&str]| {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg("iptables-nft")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    host_ipt(&[
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        "7",
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]);
    let want = host_ipt(&["-t", "filter", "-S", "INPUT"]);
    let inside = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .arg("chroot")
        .arg(&root)
        .args(["iptables", "-t", "filter", "-S", "INPUT"])
        .env("PATH", xtask::image::PATH)
        .output()
        .unwrap();
    assert!(inside.status.success(), "the image's iptables: {}", show(&inside));
    assert_eq!(String::from_utf8_lossy(&inside.stdout), want);
    assert!(
        want.contains("--dport 7") && want.contains("-j REJECT --reject-with tcp-reset"),
        "{want}"
    );
    eprintln!(
        "image {}: {:.1} MiB archive, reach {:.1} MiB, {}, {}",
        archive.display(),
        std::fs::metadata(&archive).unwrap().len() as f64 / 1048576.0,
        std::fs::metadata(&reach).unwrap().len() as f64 / 1048576.0,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&nft.stdout).trim()
    );
}

/// Every file under `root`, relative, sorted; a symlink as "PATH -> TARGET".
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let kind = e.file_type().unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if kind.is_symlink() {
                out.push(format!("{rel} -> {}", std::fs::read_link(&p).unwrap().display()));
            } else if kind.is_dir() {
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// HTTP GET from inside `ns` (where the container's host network is).
fn get_in(ns: &NetNsFd, addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    let path = path.to_string();
    ns.run_in(move || prometheus::get(addr, &path)).expect("enter the node namespace")
}

/// Calls `attempt` every 200 ms until it returns Ok; after `within`, fails naming `what`, the
/// last Err and the container's logs.
fn poll<T>(
    what: &str,
    within: Duration,
    logs: impl Fn() -> String,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match attempt() {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}: {last}\n--- container logs ---\n{}",
                logs()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the kubelet does with a probe: GET until 200 (at most `within`).
fn probe_until_ok(
    ns: &NetNsFd,
    addr: SocketAddr,
    path: &str,
    within: Duration,
    logs: impl Fn() -> String,
) {
    poll(&format!("{path} to answer 200"), within, logs, || match get_in(ns, addr, path) {
        Ok((200, _, _)) => Ok(()),
        other => Err(format!("{other:?}")),
    })
}

fn scrape_in(ns: &NetNsFd, addr: SocketAddr) -> prometheus::Scrape {
    let (code, _, body) = get_in(ns, addr, "/metrics").expect("scrape");
    assert_eq!(code, 200, "{body}");
    prometheus::parse(&body).unwrap_or_else(|e| panic!("{e}:\n{body}"))
}

/// A socket bound to 127.0.0.1:`port` in the server namespace, listening: the story's
/// loopback-only server.
fn loopback_server(hosts: &TwoHosts, port: u16) -> TcpListener {
    hosts
        .server
        .run_in(move || TcpListener::bind((Ipv4Addr::LOCALHOST, port)))
        .unwrap()
        .expect("bind 127.0.0.1 in the server namespace")
}

struct Container<'a> {
    podman: &'a Podman,
    name: String,
}

impl Container<'_> {
    fn logs(&self) -> String {
        let out = self.podman.cmd().args(["logs", &self.name]).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }
    fn pid(&self) -> u32 {
        let out = self
            .podman
            .cmd()
            .args(["inspect", "--format", "{{.State.Pid}}", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{}", show(&out)))
    }
    fn exec(&self, args: &[&str]) -> Command {
        let mut c = self.podman.cmd();
        c.args(["exec", &self.name, "/reach"]).args(args);
        c
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.podman.cmd().args(["rm", "--force", "--time", "5", &self.name]).output();
    }
}

#[test]
fn daemonset_pod_under_podman_runs_doctor_the_agent_and_why() {
    require_root();
    let _s = serial();
    let absent_before: Vec<PathBuf> =
        xtask::image::global_footprint().into_iter().filter(|p| !p.exists()).collect();
    run_daemonset_pod();
    // podman's global footprint (its blob cache, network dir, conmon cgroups) went with it.
    let left: Vec<&PathBuf> = absent_before.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "podman left {left:?}");
}

fn run_daemonset_pod() {
    // The node: a real containerd driven through the CRI as kubelet drives it, with a pod whose
    // server binds 127.0.0.1 (the story's bug) and a client pod. The agent's container gets
    // containerd's network namespace as its host network and containerd's socket as its CRI.
    let cd = Containerd::start();
    let cache = cd.run_pod_with(
        "shop",
        "cache",
        Network::Pod,
        Some(&["/bin/httpd", "-f", "-p", "127.0.0.1:8080"]),
    );
    let client = cd.run_pod_with("tools", "client", Network::Pod, Some(&["/bin/sleep", "1000000"]));
    let (cache_net, client_net) = (pod_net(&cd, &cache.uid), pod_net(&cd, &client.uid));
    let podman = Podman::new();
    let image = podman.load(&archive());
    let values = serde_json::json!({"cri": {"socket": cd.socket()}}).to_string();
    let ds = deploy::object(&deploy::render(&values), "DaemonSet").clone();
    let node: &NetNsFd = cd.netns();
    let node_path = node.path();

    // 1. `reach doctor --json`: every part of the attach plan has a mechanism.
    let out = output(podman_run(
        &podman,
        node_path,
        &ds,
        &image,
        &["--rm"],
        &["doctor".into(), "--json".into()],
    ));
    assert_eq!(out.status.code(), Some(0), "doctor in the DaemonSet's container:\n{}", show(&out));
    let doctor: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doctor["privileges"]["missing"], serde_json::json!([]), "{doctor:#}");
    for part in ["bind", "listen", "ingress", "drop"] {
        let m = doctor["plan"][part].as_str().unwrap();
        assert_ne!(m, "unavailable", "{part}: {doctor:#}");
    }
    eprintln!("reach doctor --json inside the container: plan {}", doctor["plan"]);

    // 2. `reach agent` with the DaemonSet's own arguments, probed and scraped as on a node.
    let cache_ns = NetNsFd::open(&cache_net.path).unwrap();
    let scope = Scope { netns: Some(&cache_ns), ifaces: &["eth0"] };
    let check = Leftovers::snapshot(&scope);
    let (_, mut args) = deploy::podman_run_args(&ds);
    args.push("--duration=300".into());
    let name = format!("reach-image-test-{}", std::process::id());
    let run = output(podman_run(
        &podman,
        node_path,
        &ds,
        &image,
        &["--detach", &format!("--name={name}")],
        &args,
    ));
    assert!(run.status.success(), "podman run -d: {}", show(&run));
    let agent = Container { podman: &podman, name };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, deploy::metrics_port(&ds)));
    probe_until_ok(node, addr, "/healthz", Duration::from_secs(30), || agent.logs());
    probe_until_ok(node, addr, "/readyz", Duration::from_secs(60), || agent.logs());
    assert!(agent.logs().contains("naming pods from CRI containerd"), "{}", agent.logs());
    let cache_pod = [("namespace", "shop"), ("pod", "cache")];
    scrape_until(
        node,
        addr,
        "cache's loopback-only listener, by pod name",
        || agent.logs(),
        |s| {
            s.sum(
                "reach_unreachable_listeners",
                &[cache_pod[0], cache_pod[1], ("reason", "loopback_only")],
            ) == 1.0
        },
    );
    // A client pod's attempt, refused, counted under the pod with the verdict `reach why` gives.
    let to = SocketAddr::new(cache_net.ip, 8080);
    let e = connect_from(&client_net, to, Duration::from_secs(3))
        .expect_err("cache listens on loopback only");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    let scrape = scrape_until(
        node,
        addr,
        "the refused attempt, by pod and class",
        || agent.logs(),
        |s| {
            s.sum(
                "reach_failed_connection_attempts_total",
                &[cache_pod[0], cache_pod[1], ("class", "loopback_only_bind")],
            ) >= 1.0
        },
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let (rss, hwm) = (status_kib(&status, "VmRSS").unwrap(), status_kib(&status, "VmHWM").unwrap());
    eprintln!("scrape of the agent in its container (RSS {rss} kB, peak {hwm} kB):");
    for l in scrape.text.lines().filter(|l| !l.starts_with('#')) {
        eprintln!("  {l}");
    }

    // 3. `reach why` inside the same container (what `kubectl exec` runs), beside the agent.
    let target = to.to_string();
    let why = WatchRun::start_with(
        agent.exec(&["why", &target, "--netns", &cache_net.name, "--timeout", "30", "--json"]),
        "waiting for a SYN",
    );
    let e = connect_from(&client_net, to, Duration::from_secs(3)).expect_err("still refused");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    let (code, out, err) = why.finish_raw();
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(
        (code, v["verdict"].as_str()),
        (Some(10), Some("loopback_only_bind")),
        "{v:#}\n{err}"
    );
    eprintln!(
        "reach why {target} --netns {} inside the container: {} — fix: {}",
        cache_net.name, v["verdict"], v["fix"]
    );

    // 4. SIGTERM as the kubelet sends it: a clean exit, nothing left attached or loaded.
    let stop = podman.cmd().args(["stop", "--time", "20", &agent.name]).output().unwrap();
    assert!(stop.status.success(), "{}", show(&stop));
    let code = podman
        .cmd()
        .args(["inspect", "--format", "{{.State.ExitCode}}", &agent.name])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0", "{}", agent.logs());
    let logs = agent.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    check.assert_nothing_new("reach agent in its container");
}

fn scrape_until(
    ns: &NetNsFd,
    addr: SocketAddr,
    what: &str,
    logs: impl Fn() -> String,
    done: impl Fn(&prometheus::Scrape) -> bool,
) -> prometheus::Scrape {
    poll(what, Duration::from_secs(30), logs, || {
        let s = scrape_in(ns, addr);
        if done(&s) { Ok(s) } else { Err(format!("last scrape:\n{}", s.text)) }
    })
}

/// What reach sees with a set of capabilities: the mechanisms doctor finds usable and its
/// plan, and `reach listeners` (namespaces, owners); `None` where reach refused to run (exit 3:
/// it asks for a capability by name).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    doctor_exit: Option<i32>,
    mechanisms: BTreeSet<String>,
    plan: String,
    listeners: Option<BTreeSet<String>>,
}

fn seen(podman: &Podman, image: &str, ds: &Value, node: &NetNs) -> Seen {
    let out = output(podman_run(
        podman,
        node.path(),
        ds,
        image,
        &["--rm"],
        &["doctor".into(), "--json".into()],
    ));
    let doctor_exit = out.status.code();
    let doctor: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    let mechanisms = doctor["capabilities"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["available"] == true)
        .map(|(k, _)| k.clone())
        .collect();
    let out = output(podman_run(
        podman,
        node.path(),
        ds,
        image,
        &["--rm"],
        &["listeners".into(), "--json".into()],
    ));
    let listeners = (out.status.code() != Some(3)).then(|| {
        let v: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
        // One line per listener: its namespace, address and owner.
        let mut set = BTreeSet::new();
        for ns in v.as_array().unwrap() {
            for l in ns["listeners"].as_array().unwrap() {
                set.insert(format!(
                    "{} {}:{} pids={} comm={}",
                    ns["netns"]["name"], l["addr"], l["port"], l["pids"], l["comm"]
                ));
            }
        }
        set
    });
    Seen { doctor_exit, mechanisms, plan: doctor["plan"].to_string(), listeners }
}

/// The kernel's rule: `bpf_capable()` and `perfmon_capable()` accept CAP_SYS_ADMIN too, so
/// with it in the set these two grant nothing more (they are asked for by name).
fn subsumed_by(cap: &str, caps: &[String]) -> Option<&'static str> {
    matches!(cap, "BPF" | "PERFMON").then_some("SYS_ADMIN").filter(|s| caps.iter().any(|c| c == s))
}

/// For each capability the DaemonSet adds: what reach loses without it. Err lists the ones it
/// loses nothing without (and that add no power beyond another in the set).
fn least_privilege(
    podman: &Podman,
    image: &str,
    ds: &Value,
    node: &NetNs,
) -> Result<Vec<String>, Vec<String>> {
    let caps = deploy::added_capabilities(ds);
    let all = seen(podman, image, ds, node);
    let mut findings = Vec::new();
    let mut unneeded = Vec::new();
    for cap in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != cap).cloned().collect();
        let without = seen(podman, image, &deploy::with_capabilities(ds, &fewer), node);
        let lost_mechanisms: Vec<&String> =
            all.mechanisms.difference(&without.mechanisms).collect();
        let kernel_loss = !lost_mechanisms.is_empty()
            || all.plan != without.plan
            || (without.listeners.is_some() && without.listeners != all.listeners);
        if kernel_loss {
            let mut what = Vec::new();
            if !lost_mechanisms.is_empty() {
                what.push(format!("mechanisms {lost_mechanisms:?}"));
            }
            if let (Some(a), Some(w)) = (&all.listeners, &without.listeners) {
                let gone: Vec<&String> = a.difference(w).collect();
                if !gone.is_empty() {
                    what.push(format!("listener views {gone:?}"));
                }
            }
            findings.push(format!("{cap}: needed — without it reach loses {}", what.join("; ")));
        } else if let Some(by) = subsumed_by(cap, &caps) {
            assert_eq!(without.doctor_exit, Some(3), "reach asks for {cap} by name");
            findings.push(format!(
                "{cap}: adds no power beyond {by} (the kernel accepts {by} for it); reach asks for it by name and exits 3 without"
            ));
        } else {
            unneeded.push(format!("{cap}: reach runs the same without it"));
        }
    }
    if unneeded.is_empty() { Ok(findings) } else { Err(unneeded) }
}

#[test]
fn every_capability_the_daemonset_adds_is_needed_and_an_extra_one_fails() {
    require_root();
    let _s = serial();
    let podman = Podman::new();
    let image = podman.load(&archive());
    let node = NetNs::new("img-caps").unwrap();
    // A listener owned by this process (root with every capability): its owner is visible only
    // to a reach allowed to read other processes' fd tables.
    let hosts = TwoHosts::new("imgcap").unwrap();
    let _server = loopback_server(&hosts, 7611);
    // No container runtime on this node: the chart's CRI mount would need containerd's
    // directory, which only a running containerd makes.
    let ds = daemonset(r#"{"cri": {"socket": ""}}"#);
    let findings = least_privilege(&podman, &image, &ds, &node).unwrap_or_else(|unneeded| {
        panic!("the DaemonSet asks for capabilities reach does not need: {unneeded:?}")
    });
    eprintln!("least privilege of the DaemonSet:\n  {}", findings.join("\n  "));
    assert_eq!(findings.len(), deploy::added_capabilities(&ds).len());

    // The same check on a manifest asking for one more capability must fail, naming it.
    let mut more = deploy::added_capabilities(&ds);
    more.push("NET_RAW".into());
    let extra = deploy::with_capabilities(&ds, &more);
    let unneeded =
        least_privilege(&podman, &image, &extra, &node).expect_err("NET_RAW is not needed");
    assert_eq!(unneeded, ["NET_RAW: reach runs the same without it"]);
}
