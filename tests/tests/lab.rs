//! The network-namespace lab itself: namespaces, veth links, processes, cleanup (also after a
//! panic and after a killed run). Runs as root; never changes the caller's network namespace.
use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    sync::{Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use reach_agent::lab::{self, LabError, LabName, NetNs, NetNsFd, NsId, TwoHosts, Veth, VethEnd};
use reach_tests::{
    ip_netns_list, netns_listed, process_alive, require_root, spawn_killed_run_child, wait_until,
};

/// The stale-cleaner tests remove *every* dead run's leftovers, including each other's
/// simulated ones: they take turns.
static STALE: Mutex<()> = Mutex::new(());

fn pids_in(id: NsId) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| NsId::of_pid(pid) == Some(id))
        .collect()
}

#[test]
fn namespace_is_named_has_lo_up_and_is_removed_on_drop() -> anyhow::Result<()> {
    require_root();
    let ns = NetNs::new("basic")?;
    let name = ns.name().to_string();
    assert!(name.starts_with(lab::PREFIX), "{name}");
    assert_eq!(LabName::parse(&name).map(|n| n.pid), Some(std::process::id()));
    assert!(netns_listed(&name), "`ip netns list` does not show {name}:\n{}", ip_netns_list());
    assert_ne!(ns.id(), NsId::current_process()?, "a lab namespace must not be ours");
    assert_eq!(NsId::of_path(Path::new(lab::RUN_NETNS).join(&name).as_path())?, ns.id());

    let lo = ns.ip(&["-o", "link", "show", "lo"])?;
    assert!(lo.contains("<LOOPBACK,UP,LOWER_UP>"), "lo is not up: {lo}");
    // Only lo: nothing of the host leaked in.
    let links = ns.ip(&["-o", "link"])?;
    assert_eq!(links.lines().count(), 1, "{links}");

    let killed = ns.remove()?;
    assert!(killed.is_empty());
    assert!(!netns_listed(&name));
    assert!(!Path::new(lab::RUN_NETNS).join(&name).exists());
    Ok(())
}

#[test]
fn run_in_runs_the_closure_inside_and_leaves_the_caller_alone() -> anyhow::Result<()> {
    require_root();
    let ns = NetNs::new("run-in")?;
    let before = NsId::current_thread()?;
    let inside = ns.run_in(NsId::current_thread)??;
    assert_eq!(inside, ns.id());
    assert_eq!(NsId::current_thread()?, before);

    // Sockets opened inside belong to the namespace: only lo is there.
    let listener = ns.run_in(|| TcpListener::bind("127.0.0.1:0"))??;
    assert!(listener.local_addr()?.ip().is_loopback());

    // A panic inside comes back out, and the caller's thread is still in its namespace.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ns.run_in(|| panic!("inside the lab"))
    }));
    assert!(caught.is_err());
    assert_eq!(NsId::current_thread()?, before);

    // Any namespace file works, e.g. the one of a process inside.
    let child = ns.spawn("sleep", &["30"])?;
    let via_pid = NetNsFd::of_pid(child.pid())?;
    assert_eq!(via_pid.run_in(NsId::current_thread)??, ns.id());
    Ok(())
}

#[test]
fn commands_run_inside_with_output_and_errors_captured() -> anyhow::Result<()> {
    require_root();
    let ns = NetNs::new("exec")?;
    let addrs = ns.ip(&["-o", "addr", "show", "dev", "lo"])?;
    assert!(addrs.contains("127.0.0.1/8"), "{addrs}");

    // The command's netns is the lab's, whatever the program.
    let link = ns.run("readlink", &["/proc/self/ns/net"])?;
    assert_eq!(link.trim(), format!("net:[{}]", ns.id().ino));

    match ns.ip(&["link", "show", "dev", "nosuch0"]) {
        Err(LabError::CommandFailed { command, stderr, .. }) => {
            assert!(command.starts_with("ip link show"), "{command}");
            assert!(stderr.contains("nosuch0"), "{stderr}");
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }

    let missing = ns.run("reach-no-such-tool", &[]).expect_err("a missing program must fail");
    let message = missing.to_string();
    assert!(matches!(missing, LabError::ToolMissing { .. }), "{missing:?}");
    assert!(
        message.contains("reach-no-such-tool") && message.contains("cargo xtask setup"),
        "{message}"
    );

    let out = ns.output("sh", &["-c", "echo out; echo err >&2; exit 3"])?;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // Bounded: a hung command is killed.
    let mut slow = ns.command("sleep");
    slow.arg("30");
    let started = Instant::now();
    let err = lab::output_within(&mut slow, Duration::from_millis(300)).expect_err("must time out");
    assert!(matches!(err, LabError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    Ok(())
}

#[test]
fn commands_of_a_removed_namespace_fail_instead_of_reviving_it() -> anyhow::Result<()> {
    require_root();
    let ns = NetNs::new("gone")?;
    let mut cmd = ns.command("true");
    drop(ns);
    let err = lab::output_within(&mut cmd, Duration::from_secs(5)).expect_err("namespace is gone");
    assert!(matches!(err, LabError::NamespaceGone(_)), "{err:?}");
    Ok(())
}

#[test]
fn spawned_child_lives_in_the_namespace_and_dies_with_its_guard() -> anyhow::Result<()> {
    require_root();
    let ns = NetNs::new("child")?;
    let mut child = ns.spawn("sleep", &["600"])?;
    let pid = child.pid();
    assert!(child.is_running());
    assert_eq!(NsId::of_pid(pid), Some(ns.id()));
    assert_eq!(ns.pids(), vec![pid]);
    drop(child);
    assert!(!process_alive(pid), "sleep {pid} survived its guard");
    assert!(ns.pids().is_empty());
    Ok(())
}

#[test]
fn dropping_a_namespace_kills_processes_left_in_it() -> anyhow::Result<()> {
    require_root();
    let ns = NetNs::new("orphans")?;
    // Not guarded: started with a plain Command, as a careless caller would.
    let mut loose = ns.command("sleep").arg("600").stdout(Stdio::null()).spawn()?;
    let id = ns.id();
    wait_until("the loose child to be in the namespace", Duration::from_secs(5), || {
        NsId::of_pid(loose.id() as i32) == Some(id)
    });
    let killed = ns.remove()?;
    assert_eq!(killed, vec![loose.id() as i32]);
    let status = loose.wait()?;
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    Ok(())
}

/// A tiny echo exchange: server inside `server`, client inside `client`, over the veth only.
fn tcp_exchange(server: &NetNs, client: &NetNs, addr: IpAddr) -> anyhow::Result<SocketAddr> {
    let listener = server.run_in(move || TcpListener::bind((addr, 0)))??;
    let target = listener.local_addr()?;
    let accepting = thread::spawn(move || -> std::io::Result<SocketAddr> {
        let (mut conn, peer) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf)?;
        assert_eq!(&buf, b"hello");
        conn.write_all(b"world")?;
        Ok(peer)
    });
    let reply = client.run_in(move || -> std::io::Result<[u8; 5]> {
        let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        conn.write_all(b"hello")?;
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf)?;
        Ok(buf)
    })??;
    assert_eq!(&reply, b"world");
    let peer = accepting.join().map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    Ok(peer)
}

#[test]
fn veth_pair_passes_ipv4_and_ipv6_tcp_between_two_namespaces() -> anyhow::Result<()> {
    require_root();
    let a = NetNs::new("veth-a")?;
    let b = NetNs::new("veth-b")?;
    let veth = Veth::create(
        VethEnd::new(&a, "eth0").addr("10.91.0.1/24").addr("fd91::1/64"),
        VethEnd::new(&b, "eth0").addrs(&["10.91.0.2/24", "fd91::2/64"]),
    )?;
    assert_eq!((veth.a_name(), veth.b_name()), ("eth0", "eth0"));
    assert_eq!(veth.b_addrs().len(), 2);
    let shown = a.ip(&["-o", "addr", "show", "dev", "eth0"])?;
    assert!(shown.contains("10.91.0.1/24") && shown.contains("fd91::1/64"), "{shown}");
    let v6 = shown.lines().find(|l| l.contains("fd91::1/64")).unwrap_or_default();
    assert!(
        v6.contains("nodad") && !v6.contains("tentative"),
        "nodad must make IPv6 usable at once: {shown}"
    );
    assert!(a.ifindex("eth0")? > 1);

    let peer4 = tcp_exchange(&a, &b, "10.91.0.1".parse()?)?;
    assert_eq!(peer4.ip(), "10.91.0.2".parse::<IpAddr>()?);
    let peer6 = tcp_exchange(&a, &b, "fd91::1".parse()?)?;
    assert_eq!(peer6.ip(), "fd91::2".parse::<IpAddr>()?);
    // And the other way round.
    tcp_exchange(&b, &a, "10.91.0.2".parse()?)?;

    veth.remove()?;
    assert!(a.ip(&["-o", "link"])?.lines().count() == 1, "veth end left in a");
    wait_until("b's veth end to disappear", Duration::from_secs(5), || {
        b.ip(&["-o", "link"]).map(|l| l.lines().count() == 1).unwrap_or(false)
    });
    Ok(())
}

#[test]
fn two_hosts_topology_connects_server_and_client() -> anyhow::Result<()> {
    require_root();
    let hosts = TwoHosts::new("topo")?;
    let peer = tcp_exchange(&hosts.server, &hosts.client, TwoHosts::SERVER_V4.into())?;
    assert_eq!(peer.ip(), IpAddr::from(TwoHosts::CLIENT_V4));
    let peer = tcp_exchange(&hosts.server, &hosts.client, TwoHosts::SERVER_V6.into())?;
    assert_eq!(peer.ip(), IpAddr::from(TwoHosts::CLIENT_V6));
    Ok(())
}

#[test]
fn invalid_veth_arguments_are_rejected_before_anything_changes() -> anyhow::Result<()> {
    require_root();
    let a = NetNs::new("bad-a")?;
    let b = NetNs::new("bad-b")?;
    let too_long = Veth::create(VethEnd::new(&a, "a-name-that-is-too-long"), VethEnd::new(&b, "x"))
        .expect_err("IFNAMSIZ");
    assert!(matches!(too_long, LabError::Invalid { what: "interface name", .. }), "{too_long:?}");
    let bad_addr = Veth::create(VethEnd::new(&a, "x").addr("10.0.0.1"), VethEnd::new(&b, "y"))
        .expect_err("no prefix");
    assert!(
        matches!(bad_addr, LabError::Invalid { what: "interface address", .. }),
        "{bad_addr:?}"
    );
    assert!("10.0.0.1/33".parse::<lab::IfAddr>().is_err());
    assert!("fd00::1/129".parse::<lab::IfAddr>().is_err());
    assert_eq!("fd00::1/64".parse::<lab::IfAddr>()?.to_string(), "fd00::1/64");
    assert_eq!(a.ip(&["-o", "link"])?.lines().count(), 1);
    Ok(())
}

#[test]
fn lab_names_round_trip_and_foreign_names_are_not_ours() {
    let name = LabName::next("my test/with spaces");
    let text = name.to_string();
    assert!(text.starts_with("reach-lab-"), "{text}");
    assert!(!text.contains('/') && !text.contains(' '), "{text}");
    assert_eq!(LabName::parse(&text), Some(name.clone()));
    assert!(name.owner_alive());
    assert_ne!(LabName::next("x").seq, LabName::next("x").seq);
    for foreign in ["docker-1234", "reach-lab-", "reach-lab-12-x-3-y", "reach-lab-1-2-3"] {
        assert_eq!(LabName::parse(foreign), None, "{foreign}");
    }
    assert_eq!(LabName::parse("reach-lab-1-2-3-a-b-c").map(|n| n.label), Some("a-b-c".to_string()));
}

#[test]
fn guards_leave_nothing_behind_after_a_panicking_test() -> anyhow::Result<()> {
    require_root();
    // The peer namespace outlives the panic, so we can watch the veth vanish from it.
    let survivor = NetNs::new("panic-peer")?;
    let (tx, rx) = mpsc::channel();
    let scenario = thread::scope(|scope| {
        scope
            .spawn(|| {
                let doomed = NetNs::new("panic")?;
                let _veth = Veth::create(
                    VethEnd::new(&doomed, "p0").addr("10.92.0.1/24"),
                    VethEnd::new(&survivor, "p1").addr("10.92.0.2/24"),
                )?;
                let server = doomed.spawn("sleep", &["600"])?;
                // A process the guards do not know about: NetNs's drop must find it anyway.
                let loose = doomed.command("sleep").arg("600").spawn()?;
                tx.send((doomed.name().to_string(), doomed.id(), server.pid(), loose))?;
                assert!(survivor.ip(&["-o", "link", "show", "p1"]).is_ok());
                panic!("simulated test failure with a lab set up");
                #[allow(unreachable_code)]
                anyhow::Ok(())
            })
            .join()
    });
    assert!(scenario.is_err(), "the scenario thread should have panicked");
    let (name, id, server_pid, mut loose) = rx.recv()?;

    assert!(!netns_listed(&name), "{name} survived the panic");
    assert!(!Path::new(lab::RUN_NETNS).join(&name).exists());
    assert!(!process_alive(server_pid), "guarded child {server_pid} survived");
    let status = loose.wait()?;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "loose child: {status}"
    );
    assert!(pids_in(id).is_empty(), "processes left in {id}");
    // The namespace is freed asynchronously by the kernel; its veth peer goes with it.
    wait_until("the veth peer to vanish", Duration::from_secs(10), || {
        survivor.ip(&["-o", "link"]).map(|l| !l.contains("p1")).unwrap_or(false)
    });

    let survivor_name = survivor.name().to_string();
    drop(survivor);
    assert!(!netns_listed(&survivor_name));
    Ok(())
}

#[test]
fn stale_cleaner_removes_a_namespace_whose_creator_is_dead() -> anyhow::Result<()> {
    require_root();
    let _turn = STALE.lock().unwrap_or_else(|e| e.into_inner());
    // A pid that certainly belonged to a process that is gone now.
    let mut gone = Command::new("true").spawn()?;
    gone.wait()?;
    let stale =
        LabName { pid: gone.id(), started: 1, seq: 0, label: "stale-sim".into() }.to_string();
    // Created behind the lab's back, as a crashed run leaves it: name, mount, a process inside.
    let ip = lab::IP.path()?;
    let added = Command::new(&ip).args(["netns", "add", &stale]).output()?;
    assert!(added.status.success(), "ip netns add: {}", String::from_utf8_lossy(&added.stderr));
    let mut inside = NetNsFd::open(Path::new(lab::RUN_NETNS).join(&stale))?
        .command("sleep")
        .arg("600")
        .spawn()?;
    // A live run's namespace must survive the cleaning.
    let live = NetNs::new("live")?;

    let report = lab::clean_stale()?;
    assert!(report.is_clean(), "{:?}", report.failed);
    let removed = report
        .namespaces
        .iter()
        .find(|r| r.name == stale)
        .unwrap_or_else(|| panic!("{stale} not in {report:?}"));
    assert_eq!(removed.owner_pid, gone.id());
    assert_eq!(removed.killed, vec![inside.id() as i32]);
    assert!(!netns_listed(&stale));
    let status = inside.wait()?;
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));

    assert!(netns_listed(live.name()), "clean_stale removed a live namespace");
    assert!(report.namespaces.iter().all(|r| r.name != live.name()));
    assert!(lab::list_namespaces()?.iter().any(|n| n.name == live.name() && n.owner_alive));
    Ok(())
}

/// Set in the child process of the killed-run test.
const KILLED_RUN_CHILD: &str = "REACH_LAB_TEST_KILLED_RUN_CHILD";

#[test]
fn stale_cleaner_removes_leftovers_of_a_killed_run() -> anyhow::Result<()> {
    require_root();
    if std::env::var_os(KILLED_RUN_CHILD).is_some() {
        // Child role: set up a lab, report it, wait to be SIGKILLed (bounded, in case the
        // parent is gone).
        let ns = NetNs::new("killed-run")?;
        let server = ns.spawn("sleep", &["600"])?;
        println!("REACH-LAB-REPORT {} {}", ns.name(), server.pid());
        std::io::stdout().flush()?;
        thread::sleep(Duration::from_secs(60));
        return Ok(());
    }

    let _turn = STALE.lock().unwrap_or_else(|e| e.into_inner());
    let (mut child, words) = spawn_killed_run_child(
        "stale_cleaner_removes_leftovers_of_a_killed_run",
        KILLED_RUN_CHILD,
    )?;
    let mut words = words.into_iter();
    let (name, server_pid): (String, i32) =
        (words.next().unwrap_or_default(), words.next().unwrap_or_default().parse()?);

    // SAFETY: kill(2) on our own child, which is unreaped so its pid cannot be recycled.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) }, 0);
    child.0.wait()?;
    assert!(netns_listed(&name), "the killed run should have left {name} behind");
    assert!(process_alive(server_pid), "its server should still run, orphaned");
    assert!(lab::list_namespaces()?.iter().any(|n| n.name == name && !n.owner_alive));

    let report = lab::clean_stale()?;
    assert!(report.is_clean(), "{:?}", report.failed);
    let removed = report
        .namespaces
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} not in {report:?}"));
    assert_eq!(removed.killed, vec![server_pid]);
    assert!(!netns_listed(&name));
    wait_until("the orphaned server to die", Duration::from_secs(5), || !process_alive(server_pid));
    Ok(())
}
