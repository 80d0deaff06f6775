//! `reach lab` (the main job of `cargo xtask lab`): every scenario of the story reproduced with
//! a real client and diagnosed by the real `reach why`, each asserted by its verdict class and
//! the evidence that proves it (zone, pid, namespace, address, interface, nftables rule); then
//! nothing may be left behind.
use std::{
    collections::BTreeMap,
    fs,
    sync::Mutex,
    time::{Duration, Instant},
};

use reach_agent::lab::FirewalldBuild;
use reach_tests::{firewalld_versions, ip_netns_list, process_alive, reach, require_root, show};
use serde_json::Value;

/// Both tests build a lab and attach probes: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The whole lab must stay well under a minute.
const BUDGET: Duration = Duration::from_secs(60);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn text(v: &Value, key: &str) -> String {
    v[key]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// `reach-lab-<pid>-<start>-`: what every object of one lab run is named with.
fn run_prefix(netns: &str) -> String {
    let parts: Vec<&str> = netns.splitn(5, '-').collect();
    assert!(netns.starts_with("reach-lab-") && parts.len() == 5, "not a lab name: {netns}");
    format!("reach-lab-{}-{}-", parts[2], parts[3])
}

/// Nothing of the run named `prefix` is left: namespaces, fixture directories, processes
/// (demo servers, `reach why`, firewalld's bus path), BPF programs.
fn assert_nothing_left(prefix: &str, server_pids: &[i64]) {
    let netns: Vec<String> =
        ip_netns_list().lines().filter(|l| l.starts_with(prefix)).map(str::to_string).collect();
    assert!(netns.is_empty(), "lab namespaces left behind: {netns:?}");
    let tmp: Vec<String> = fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert!(tmp.is_empty(), "lab directories left behind: {tmp:?}");
    for &pid in server_pids {
        assert!(!process_alive(pid as i32), "demo server pid {pid} still running");
    }
    let mut demo_servers = Vec::new();
    let mut mentioning = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if !process_alive(pid) {
            continue;
        }
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "demo-server" {
            demo_servers.push(pid);
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(prefix) {
            mentioning.push(pid);
        }
    }
    assert!(demo_servers.is_empty(), "demo-server processes left: {demo_servers:?}");
    assert!(mentioning.is_empty(), "processes of the lab left (reach why?): {mentioning:?}");
    reach_tests::leftovers::assert_no_orphaned_programs("reach_", "reach lab");
}

#[test]
fn lab_reproduces_every_scenario_with_its_verdict_and_evidence_and_leaves_nothing() {
    require_root();
    let _serial = serial();
    assert!(
        reach_agent::lab::FIREWALLD.path().is_ok(),
        "firewalld is not installed, so the firewalld scenarios cannot run: `cargo xtask setup` \
         installs it (it is never started on the host)"
    );
    let version = FirewalldBuild::host().version().expect("the host firewalld's version");
    check_lab(&["lab", "--json"], &version);
}

/// issue 13: the same lab, the same verdicts and evidence, on the other firewalld generation
/// (`firewalld_versions::trixie()`, 2.x, whose zone targets and policies live in other chains).
#[test]
fn lab_on_the_firewalld_root_gives_the_same_verdicts_and_evidence() {
    require_root();
    let _serial = serial();
    let build = firewalld_versions::trixie();
    let version = build.version().expect("the root firewalld's version");
    let root = build.root_dir().unwrap().to_str().unwrap().to_string();
    // With a real Docker publishing the port too (what `cargo xtask lab` runs).
    let docker = reach_tests::docker::root();
    // The leftover check below must see a dockerd of that root while one runs.
    let probe = reach_agent::lab::NetNs::new("dockprobe").unwrap();
    let running = reach_tests::docker::start(&probe);
    assert!(
        !docker_processes(&docker).is_empty(),
        "a running dockerd of {} is not seen",
        docker.display()
    );
    drop(running);
    drop(probe);
    let docker = docker.to_str().unwrap().to_string();
    check_lab(&["lab", "--json", "--firewalld-root", &root, "--docker-root", &docker], &version);
    let left = docker_processes(std::path::Path::new(&docker));
    assert!(left.is_empty(), "processes of the lab's Docker left: {left:?}");
}

/// The processes running a program of the Docker root `root` (dockerd, containerd, its shims,
/// docker-proxy).
fn docker_processes(root: &std::path::Path) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.starts_with(root))
        })
        .collect()
}

/// Runs `reach lab` with `args` and asserts every scenario's verdict and evidence, firewalld
/// `version` having run, and nothing left behind.
fn check_lab(args: &[&str], version: &str) {
    let docker = args.contains(&"--docker-root");
    let started = Instant::now();
    let out = reach(args);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    assert_eq!(report["firewalld"], true, "{report:#}");
    assert_eq!(report["firewalld_version"], version, "{report:#}");
    assert!(took < BUDGET, "reach lab took {took:?}");
    assert!(report["elapsed_s"].as_f64().unwrap() < BUDGET.as_secs_f64());

    let scenarios: BTreeMap<&str, &Value> = report["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s))
        .collect();
    // name → (verdict, reach why's exit code, what the client saw)
    let expected = [
        ("loopback-only bind", ("loopback_only_bind", 10, "refused")),
        ("server in another netns", ("listener_in_other_netns", 11, "refused")),
        ("firewalld target DROP", ("firewall_drop", 13, "timeout")),
        ("firewalld default reject", ("firewall_reject", 14, "unreachable (EHOSTUNREACH)")),
        // A rich rule's plain `reject` is an ICMP port-unreachable for IPv4: ECONNREFUSED.
        ("rich rule reject", ("firewall_reject", 14, "refused")),
        ("no listener", ("no_listener", 12, "refused")),
        ("listen overflow", ("listen_overflow", 16, "timeout")),
        ("reachable", ("reachable", 0, "connected")),
        ("client dials ::1", ("family_mismatch", 19, "refused")),
        ("v6-only listener", ("family_mismatch", 19, "refused")),
        ("address mismatch", ("address_mismatch", 20, "refused")),
        ("interface mismatch", ("interface_mismatch", 21, "refused")),
        // The SYN-ACK is dropped on its way out: the client's SYN is never answered.
        ("reply dropped", ("reply_dropped", 22, "timeout")),
        // issue 14: diagnosed in the app namespace the DNAT sends the SYN to.
        ("published port, app on loopback", ("loopback_only_bind", 10, "refused")),
        // The Service's endpoint the connection was sent to does not listen.
        ("service, dead endpoint", ("no_listener", 12, "refused")),
    ];
    assert_eq!(scenarios.len(), expected.len(), "{report:#}");
    for (name, (verdict, code, client)) in expected {
        let s = scenarios.get(name).unwrap_or_else(|| panic!("no scenario {name:?}"));
        let got = (s["verdict"].as_str(), s["exit_code"].as_i64(), s["client"].as_str());
        assert_eq!(got, (Some(verdict), Some(code), Some(client)), "{name}: {s:#}");
        assert_eq!((&s["expected"], &s["ok"]), (&Value::from(verdict), &Value::Bool(true)));
        assert_eq!(s["diagnosis"]["exit_code"], code, "{name}");
        let dialed = if name == "client dials ::1" { "[::1]" } else { "10.77.0.1" };
        assert_eq!(s["diagnosis"]["target"], format!("{dialed}:{}", s["port"]), "{name}");
    }

    let srv_ns = scenarios["reachable"]["diagnosis"]["netns"]["name"].as_str().unwrap().to_string();
    assert!(srv_ns.ends_with("-lab-srv"), "{srv_ns}");
    let evidence = |name: &str| text(&scenarios[name]["diagnosis"], "evidence");
    let fix = |name: &str| text(&scenarios[name]["diagnosis"], "fix");
    let server = |name: &str| {
        let s = &scenarios[name]["server"];
        (
            s["pid"].as_i64().unwrap_or_else(|| panic!("{name}: no server pid")),
            s["netns"].as_str().unwrap().to_string(),
        )
    };

    // The firewalld scenarios share the main server namespace; every other one has its own.
    let prefix = run_prefix(&srv_ns);
    let own_ns = |name: &str| {
        let (pid, ns) = server(name);
        let port = scenarios[name]["port"].as_u64().unwrap();
        assert!(
            ns.starts_with(&prefix) && ns.ends_with(&format!("-lab{port}-srv")),
            "{name}: server namespace {ns}"
        );
        assert_eq!(scenarios[name]["diagnosis"]["netns"]["name"], ns.as_str(), "{name}");
        (pid, ns)
    };
    let (pid, ns) = own_ns("loopback-only bind");
    let ev = evidence("loopback-only bind");
    assert!(
        ev.contains(&format!("pid {pid} (demo-server) on 127.0.0.1:8081 in netns {ns}")),
        "{ev}"
    );
    assert!(fix("loopback-only bind").contains("0.0.0.0:8081"));

    let (pid, app_ns) = server("server in another netns");
    assert!(app_ns.ends_with("-lab-app") && app_ns != srv_ns, "{app_ns}");
    let ev = evidence("server in another netns");
    assert!(
        ev.contains(&format!("pid {pid} (demo-server) on 0.0.0.0:8082 in netns {app_ns}")),
        "{ev}"
    );
    assert!(fix("server in another netns").contains(&app_ns));

    let ev = evidence("firewalld target DROP");
    assert!(ev.contains("zone public, target DROP"), "{ev}");
    assert!(
        fix("firewalld target DROP").contains("firewall-cmd --zone=public --add-port=8083/tcp")
    );

    let ev = evidence("firewalld default reject");
    assert!(ev.contains("zone public, target default"), "{ev}");
    assert!(
        fix("firewalld default reject").contains("firewall-cmd --zone=public --add-port=8084/tcp")
    );

    let ev = evidence("rich rule reject");
    assert!(ev.contains("zone public, rich rule") && ev.contains("10.77.0.2"), "{ev}");
    let f = fix("rich rule reject");
    assert!(
        f.contains("--zone=public --remove-rich-rule='rule family=\"ipv4\" source address=\"10.77.0.2\" port port=\"8085\""),
        "{f}"
    );

    assert!(evidence("no listener").contains("nothing listens on port 8086 in any namespace"));
    assert!(scenarios["no listener"]["server"].is_null());

    let (pid, _) = own_ns("listen overflow");
    let ev = evidence("listen overflow");
    assert!(ev.contains(&format!("pid {pid} (demo-server) on 0.0.0.0:8087")), "{ev}");
    assert!(ev.contains("queue 2 of backlog 1") && ev.contains("ListenOverflows +"), "{ev}");

    let (_, ns) = server("reachable");
    assert_eq!(ns, srv_ns, "reachable runs through firewalld, in the main namespace");
    let ev = evidence("reachable");
    assert!(ev.contains("accepted"), "{ev}");

    // The new classes of issue 12, each with the evidence that names the mismatch.
    let (pid, ns) = own_ns("client dials ::1");
    let ev = evidence("client dials ::1");
    assert!(
        ev.contains(&format!("pid {pid} (demo-server) on 127.0.0.1:8089 in netns {ns}")),
        "{ev}"
    );
    assert!(
        ev.contains("(IPv4 only, loopback only); the client dialed ::1 (port 8089, IPv6)"),
        "{ev}"
    );
    assert!(fix("client dials ::1").contains("dial 127.0.0.1:8089"), "{}", fix("client dials ::1"));

    own_ns("v6-only listener");
    let ev = evidence("v6-only listener");
    assert!(
        ev.contains(
            "[::]:8090 (IPv6 only: IPV6_V6ONLY); the client dialed 10.77.0.1 (port 8090, IPv4)"
        ),
        "{ev}"
    );
    assert!(fix("v6-only listener").contains("IPV6_V6ONLY"));

    own_ns("address mismatch");
    let ev = evidence("address mismatch");
    assert!(
        ev.contains("10.77.0.11:8091 (IPv4 only), only on 10.77.0.11; the client dialed 10.77.0.1"),
        "{ev}"
    );
    assert!(fix("address mismatch").contains("0.0.0.0:8091"));

    own_ns("interface mismatch");
    let ev = evidence("interface mismatch");
    assert!(
        ev.contains("(IPv4 only, bound to interface lo)") && ev.contains("arrived on srv0"),
        "{ev}"
    );
    assert!(fix("interface mismatch").contains("SO_BINDTODEVICE"));

    own_ns("reply dropped");
    let ev = evidence("reply dropped");
    assert!(ev.contains("table inet reach_lab_reply, chain output"), "{ev}");
    let f = fix("reply dropped");
    assert!(f.contains("nft delete rule inet reach_lab_reply output handle"), "{f}");

    let name = "published port, app on loopback";
    let (pid, app_ns) = server(name);
    let ev = evidence(name);
    let nat = &scenarios[name]["diagnosis"]["nat"];
    assert_eq!(nat["owner"]["netns"]["name"], app_ns.as_str());
    let f = fix(name);
    assert!(f.contains("0.0.0.0:80") && !f.contains("8094"), "{f}");
    if docker {
        // `docker run -p 8094:80`: dockerd's DNAT in its DOCKER chain, the container named.
        assert!(app_ns.starts_with("container:"), "{name}: {app_ns}");
        assert!(ev.starts_with("nat: the SYN to 10.77.0.1:8094 was sent on to 172.17."), "{ev}");
        assert!(ev.contains("(table ip nat, chain DOCKER, handle"), "{ev}");
        assert!(
            ev.contains("Docker container `reach-lab-app` (image reach-lab/busybox:1)"),
            "{ev}"
        );
        assert!(
            ev.contains(&format!("pid {pid} (busybox) on 127.0.0.1:80 in netns {app_ns}")),
            "{ev}"
        );
        assert_eq!(nat["owner"]["container"]["name"], "reach-lab-app", "{nat:#}");
        assert!(f.contains("the app runs in container `reach-lab-app` ("), "{f}");
    } else {
        assert!(app_ns.starts_with(&prefix) && app_ns.ends_with("-lab-app"), "{name}: {app_ns}");
        assert!(
            ev.starts_with("nat: the SYN to 10.77.0.1:8094 was sent on to 172.30.0.2:80 by rule `tcp dport 8094 dnat to 172.30.0.2:80` (table ip reach_lab_publish, chain prerouting"),
            "{ev}"
        );
        assert!(
            ev.contains(&format!("pid {pid} (demo-server) on 127.0.0.1:80 in netns {app_ns}")),
            "{ev}"
        );
        assert_eq!(nat["owner"]["container"], Value::Null, "{nat:#}");
    }

    let name = "service, dead endpoint";
    let (pid, serving_ns) = server(name);
    assert!(
        serving_ns.starts_with(&prefix) && serving_ns.ends_with("-lab-ep1"),
        "{name}: {serving_ns}"
    );
    let nat = &scenarios[name]["diagnosis"]["nat"];
    let dead_ns = nat["owner"]["netns"]["name"].as_str().unwrap_or_default();
    assert!(dead_ns.starts_with(&prefix) && dead_ns.ends_with("-lab-ep0"), "{name}: {nat:#}");
    assert_eq!(
        (nat["service"]["namespace"].as_str(), nat["service"]["name"].as_str()),
        (Some("default"), Some("web")),
        "{nat:#}"
    );
    assert_eq!(nat["service"]["endpoint"], "172.30.10.2:80", "{nat:#}");
    let ev = evidence(name);
    assert!(
        ev.contains("kube-proxy's endpoint 172.30.10.2:80 of Service default/web (port http/tcp)"),
        "{ev}"
    );
    assert!(
        ev.contains(&format!("another endpoint of the Service does: pid {pid} (demo-server) on 0.0.0.0:80 in netns {serving_ns}")),
        "{ev}"
    );
    assert!(
        fix(name)
            .starts_with("kubectl -n default get endpointslices -l kubernetes.io/service-name=web"),
        "{}",
        fix(name)
    );

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("torn down"), "{stderr}");
    let pids: Vec<i64> = scenarios.values().filter_map(|s| s["server"]["pid"].as_i64()).collect();
    assert_eq!(pids.len(), 14, "a demo server in every scenario but no listener");
    assert_nothing_left(&run_prefix(&srv_ns), &pids);
}

#[test]
fn lab_without_firewalld_runs_the_other_scenarios_and_prints_the_table() {
    require_root();
    let _serial = serial();
    let out = reach(&["lab", "--no-firewalld"]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let table: Vec<&str> = stdout.lines().skip_while(|l| !l.starts_with("SCENARIO")).collect();
    assert!(!table.is_empty(), "no table:\n{stdout}");
    let row = |name: &str| -> &str {
        table
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}:\n{stdout}"))
    };
    for (name, verdict) in [
        ("loopback-only bind", "loopback_only_bind"),
        ("server in another netns", "listener_in_other_netns"),
        ("no listener", "no_listener"),
        ("listen overflow", "listen_overflow"),
        ("reachable", "reachable"),
        ("client dials ::1", "family_mismatch"),
        ("v6-only listener", "family_mismatch"),
        ("address mismatch", "address_mismatch"),
        ("interface mismatch", "interface_mismatch"),
        ("reply dropped", "reply_dropped"),
        ("published port, app on loopback", "loopback_only_bind"),
        ("service, dead endpoint", "no_listener"),
    ] {
        let r = row(name);
        assert!(r.contains(verdict) && r.contains('✓'), "{r}");
    }
    for name in ["firewalld target DROP", "firewalld default reject", "rich rule reject"] {
        let r = row(name);
        assert!(r.contains("not run") && r.contains("--no-firewalld"), "{r}");
    }
    assert!(row("loopback-only bind").contains("bind the server to 0.0.0.0:8081"), "{stdout}");
    assert!(
        stdout.contains("12 of 12 scenarios run got their expected verdict (3 not run)"),
        "{stdout}"
    );
    // The short diagnosis above the table.
    assert!(stdout.contains("── loopback-only bind (port 8081) — client saw: refused"), "{stdout}");
    assert!(stdout.contains("(demo-server) on 127.0.0.1:8081"), "{stdout}");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no firewalld in the server namespace (--no-firewalld)"), "{stderr}");
    let srv_ns = stderr
        .split_whitespace()
        .find(|w| w.starts_with("reach-lab-") && w.ends_with("-lab-srv"))
        .unwrap_or_else(|| panic!("server namespace not announced:\n{stderr}"));
    assert_nothing_left(&run_prefix(srv_ns), &[]);
}

/// A --firewalld-root that holds no firewalld is bad usage: exit 2 saying what is missing and
/// how to get a root, before any namespace exists.
#[test]
fn a_firewalld_root_without_firewalld_is_refused_before_anything_is_made() {
    require_root();
    let _serial = serial();
    refused_root("--firewalld-root", "/usr/sbin/firewalld");
    // With --no-firewalld it is a contradiction, told by the parser.
    let out = reach(&["lab", "--no-firewalld", "--firewalld-root", "/"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

#[test]
fn a_docker_root_without_dockerd_is_refused_before_anything_is_made() {
    require_root();
    let _serial = serial();
    refused_root("--docker-root", "usr/sbin/dockerd");
}

/// `reach lab OPTION <an empty directory>`: exit 2 naming the option and the `missing` program
/// and how to get a root, nothing printed on stdout, no namespace made.
fn refused_root(option: &str, missing: &str) {
    let empty = tempfile::tempdir().unwrap();
    let before = ip_netns_list();
    let out = reach(&["lab", option, empty.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr.contains(option) && stderr.contains(missing), "{stderr}");
    assert!(stderr.contains("cargo xtask setup"), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", show(&out));
    assert_eq!(ip_netns_list(), before, "namespaces were created");
}

/// The cgroups named with `prefix` (a lab run's), at the top of the unified hierarchy and of
/// each v1 controller's.
fn cgroups_named(prefix: &str) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut dirs: Vec<std::path::PathBuf> = vec![root.to_path_buf()];
    dirs.extend(fs::read_dir(root).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    dirs.iter()
        .flat_map(|d| fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)))
        .collect()
}

/// A `reach lab` killed while its dockerd runs the published port's container: what it leaves
/// (the daemon, its containerd, shims and proxies, the container, their directory and cgroups)
/// is seen left, then removed by the next run's stale cleaner — the daemon with the lab
/// namespace it runs in, the container by its cgroup.
#[test]
fn a_killed_labs_docker_is_removed_by_the_next_stale_clean() {
    use std::io::BufRead as _;
    require_root();
    let _serial = serial();
    let docker = reach_tests::docker::root();
    assert!(
        docker.join(reach_tests::docker::STAMP).is_file(),
        "Debian's Docker is not unpacked at {}: run `cargo xtask setup`",
        docker.display()
    );
    let mut lab = std::process::Command::new(reach_tests::reach_bin())
        .args(["lab", "--no-firewalld", "--docker-root"])
        .arg(&docker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(lab.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines().map_while(Result::ok) {
        let up = line.contains("busybox httpd pid");
        seen.push(line);
        if up {
            break;
        }
    }
    let prefix = format!("reach-lab-{}-", lab.id());
    lab.kill().unwrap();
    lab.wait().unwrap();
    assert!(seen.last().is_some_and(|l| l.contains("busybox httpd pid")), "{seen:#?}");
    assert!(!docker_processes(&docker).is_empty(), "the killed lab's dockerd is not running");
    assert!(!cgroups_named(&prefix).is_empty(), "the killed lab's container has no cgroup");
    let report = reach_agent::lab::clean_stale().unwrap();
    assert!(report.is_clean(), "{:?}", report.failed);
    assert!(!report.cgroups.is_empty(), "{report:?}");
    reach_tests::wait_until("the killed lab's Docker to exit", Duration::from_secs(20), || {
        docker_processes(&docker).is_empty()
    });
    assert_eq!(cgroups_named(&prefix), Vec::<std::path::PathBuf>::new());
    let tmp: Vec<String> = fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    assert!(!ip_netns_list().contains(&prefix), "{}", ip_netns_list());
}
