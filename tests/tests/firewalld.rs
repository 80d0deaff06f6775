//! The firewalld fixture: a real firewalld 1.3.3 in a lab namespace with a private bus and
//! private config. The machine's own ruleset and /etc/firewalld are only ever read, and must
//! come out unchanged.
use std::{
    collections::{BTreeMap, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use reach_agent::lab::{self, Firewalld, LabError, NetNs, NetNsFd};
use reach_tests::{netns_listed, process_alive, require_root, spawn_killed_run_child, wait_until};
use serde_json::Value;

/// `nft list ruleset` of the caller's (root) namespace. Read-only.
fn root_ruleset() -> String {
    let nft = lab::NFT.path().unwrap_or_else(|e| panic!("{e}"));
    let out =
        Command::new(nft).args(["list", "ruleset"]).output().expect("running nft list ruleset");
    assert!(out.status.success(), "nft list ruleset: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Every file under `dir` with its contents (to prove the host's /etc/firewalld is untouched).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())).flatten()
        {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}

/// The rules of `chain` in table `inet firewalld`.
fn firewalld_rules<'a>(ruleset: &'a Value, chain: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    ruleset["nftables"].as_array().into_iter().flatten().filter_map(|item| item.get("rule")).filter(
        move |rule| {
            rule["family"] == "inet" && rule["table"] == "firewalld" && rule["chain"] == chain
        },
    )
}

/// `tcp dport PORT accept`, as firewalld 1.3.3 writes it for `--add-port=PORT/tcp`.
fn accepts_tcp_port(rule: &Value, port: u64) -> bool {
    let expr = rule["expr"].as_array().map(Vec::as_slice).unwrap_or_default();
    let matches_port = expr.iter().any(|e| {
        let m = &e["match"];
        m["op"] == "=="
            && m["left"]["payload"]["protocol"] == "tcp"
            && m["left"]["payload"]["field"] == "dport"
            && m["right"] == port
    });
    matches_port && expr.iter().any(|e| e.get("accept").is_some())
}

#[test]
fn added_port_shows_up_in_the_lab_ruleset_and_the_root_ruleset_is_untouched() -> anyhow::Result<()>
{
    require_root();
    let root_before = root_ruleset();
    let ns = NetNs::new("fw-port")?;
    let started = Instant::now();
    let fw = Firewalld::start(&ns)?;
    let mem = fw.memory()?;
    eprintln!(
        "firewalld fixture: running after {:?} ({:?} including setup), firewalld {} MiB, dbus-daemon {} MiB RSS",
        fw.ready_in(),
        started.elapsed(),
        mem.firewalld_rss_kib / 1024,
        mem.dbus_rss_kib / 1024
    );
    assert_eq!(fw.state()?, "running");
    assert_eq!(
        lab::NsId::of_pid(fw.pids().0),
        Some(ns.id()),
        "firewalld runs outside the lab namespace"
    );
    assert_eq!(
        lab::NsId::of_pid(fw.pids().1),
        Some(ns.id()),
        "dbus-daemon runs outside the lab namespace"
    );

    // Fresh start: firewalld's table exists, port 8080 is not open yet.
    let baseline = fw.nft_ruleset_json()?;
    assert!(
        firewalld_rules(&baseline, "filter_INPUT").next().is_some(),
        "no inet firewalld table: {baseline:#}"
    );
    assert!(
        !firewalld_rules(&baseline, "filter_IN_public_allow").any(|r| accepts_tcp_port(r, 8080))
    );

    assert_eq!(fw.cmd(&["--zone=public", "--add-port=8080/tcp"])?.trim(), "success");
    assert_eq!(fw.cmd(&["--zone=public", "--query-port=8080/tcp"])?.trim(), "yes");
    let after = fw.nft_ruleset_json()?;
    let rule = firewalld_rules(&after, "filter_IN_public_allow")
        .find(|r| accepts_tcp_port(r, 8080))
        .unwrap_or_else(|| {
            panic!("no `tcp dport 8080 accept` in filter_IN_public_allow:\n{:#}", after)
        });
    assert!(rule["handle"].is_u64(), "{rule}");
    assert!(fw.nft_ruleset()?.contains("tcp dport 8080 accept"));

    // Errors come back with firewall-cmd's message.
    match fw.cmd(&["--zone=public", "--add-port=notaport/tcp"]) {
        Err(LabError::CommandFailed { stderr, .. }) => {
            assert!(stderr.contains("INVALID_PORT"), "{stderr}")
        }
        other => panic!("expected INVALID_PORT, got {other:?}"),
    }

    let root_after = root_ruleset();
    assert_eq!(
        hash(&root_before),
        hash(&root_after),
        "the ROOT ruleset changed:\nbefore:\n{root_before}\nafter:\n{root_after}"
    );
    drop(fw);
    drop(ns);
    assert_eq!(
        hash(&root_ruleset()),
        hash(&root_before),
        "the ROOT ruleset changed after teardown"
    );
    Ok(())
}

#[test]
fn fixture_refuses_the_callers_own_network_namespace() -> anyhow::Result<()> {
    require_root();
    let root_before = root_ruleset();
    // Another process of the machine's own namespace, as a caller might pass it.
    let mut neighbour = Command::new("sleep").arg("30").spawn()?;
    let handles = [
        NetNsFd::current()?,
        NetNsFd::open("/proc/self/ns/net")?,
        NetNsFd::of_pid(neighbour.id() as i32)?,
    ];
    neighbour.kill()?;
    neighbour.wait()?;
    for own in handles {
        let path = own.path().display().to_string();
        match Firewalld::start(&own) {
            Err(err @ LabError::OwnNamespace { .. }) => {
                assert!(err.to_string().contains("refusing to start firewalld"), "{err}");
            }
            Err(other) => panic!("{path}: expected OwnNamespace, got {other}"),
            Ok(_) => panic!("{path}: firewalld started in the caller's own namespace"),
        }
    }
    assert_eq!(hash(&root_ruleset()), hash(&root_before));
    Ok(())
}

#[test]
fn permanent_config_stays_private_and_teardown_leaves_nothing() -> anyhow::Result<()> {
    require_root();
    let host_etc = snapshot(Path::new("/etc/firewalld"));
    let ns = NetNs::new("fw-teardown")?;
    let fw = Firewalld::start(&ns)?;
    let (fw_pid, bus_pid) = fw.pids();
    let private = fw.config_dir().expect("config dir while running");
    let dir = private.parent().expect("fixture dir").to_path_buf();
    assert!(
        dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(lab::PREFIX)),
        "{}",
        dir.display()
    );

    assert_eq!(fw.cmd(&["--permanent", "--zone=public", "--add-port=9999/tcp"])?.trim(), "success");
    assert_eq!(fw.cmd(&["--reload"])?.trim(), "success");
    assert_eq!(fw.cmd(&["--zone=public", "--query-port=9999/tcp"])?.trim(), "yes");
    let zone = std::fs::read_to_string(private.join("zones/public.xml"))?;
    assert!(zone.contains("9999"), "permanent config not in the private copy: {zone}");
    assert_eq!(
        snapshot(Path::new("/etc/firewalld")),
        host_etc,
        "the host's /etc/firewalld changed"
    );

    drop(fw);
    assert!(!process_alive(fw_pid), "firewalld {fw_pid} survived teardown");
    assert!(!process_alive(bus_pid), "dbus-daemon {bus_pid} survived teardown");
    assert!(!dir.exists(), "{} survived teardown", dir.display());
    // firewalld's tables are still in the namespace (they die with it), nothing else runs there.
    assert!(ns.nft_ruleset()?.contains("table inet firewalld"));
    assert!(ns.pids().is_empty(), "processes left in the lab namespace: {:?}", ns.pids());
    Ok(())
}

#[test]
fn graceful_stop_removes_firewalld_rules() -> anyhow::Result<()> {
    require_root();
    let ns = NetNs::new("fw-stop")?;
    let fw = Firewalld::start(&ns)?;
    let (fw_pid, bus_pid) = fw.pids();
    fw.stop()?;
    assert!(!process_alive(fw_pid) && !process_alive(bus_pid));
    // CleanupOnExit=yes (Debian's default): a SIGTERMed firewalld removes its table.
    assert!(!ns.nft_ruleset()?.contains("firewalld"));
    Ok(())
}

#[test]
fn fixture_in_a_panicking_test_is_cleaned_up() -> anyhow::Result<()> {
    require_root();
    let (tx, rx) = mpsc::channel();
    let outcome = thread::spawn(move || -> anyhow::Result<()> {
        let ns = NetNs::new("fw-panic")?;
        let fw = Firewalld::start(&ns)?;
        let dir = fw.config_dir().and_then(|c| c.parent().map(Path::to_path_buf));
        tx.send((ns.name().to_string(), fw.pids(), dir))?;
        panic!("simulated test failure with firewalld running");
    })
    .join();
    assert!(outcome.is_err(), "the scenario thread should have panicked");
    let (name, (fw_pid, bus_pid), dir) = rx.recv()?;
    assert!(!netns_listed(&name), "{name} survived");
    assert!(!process_alive(fw_pid), "firewalld survived the panic");
    assert!(!process_alive(bus_pid), "dbus-daemon survived the panic");
    let dir = dir.expect("fixture dir");
    assert!(!dir.exists(), "{} survived", dir.display());
    Ok(())
}

/// Set in the child process of the killed-run test.
const KILLED_RUN_CHILD: &str = "REACH_LAB_TEST_KILLED_FIREWALLD_CHILD";

#[test]
fn stale_cleaner_removes_firewalld_of_a_killed_run() -> anyhow::Result<()> {
    require_root();
    if std::env::var_os(KILLED_RUN_CHILD).is_some() {
        let ns = NetNs::new("fw-killed")?;
        let fw = Firewalld::start(&ns)?;
        let dir =
            fw.config_dir().and_then(|c| c.parent().map(Path::to_path_buf)).expect("fixture dir");
        println!(
            "REACH-LAB-REPORT {} {} {} {}",
            ns.name(),
            fw.pids().0,
            fw.pids().1,
            dir.display()
        );
        std::io::stdout().flush()?;
        thread::sleep(Duration::from_secs(60));
        return Ok(());
    }

    let (mut child, words) = spawn_killed_run_child(
        "stale_cleaner_removes_firewalld_of_a_killed_run",
        KILLED_RUN_CHILD,
    )?;
    let [name, fw_pid, bus_pid, dir] = &words[..] else { anyhow::bail!("bad report {words:?}") };
    let (fw_pid, bus_pid, dir): (i32, i32, PathBuf) =
        (fw_pid.parse()?, bus_pid.parse()?, dir.into());

    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) }, 0);
    child.0.wait()?;
    assert!(netns_listed(name) && dir.exists(), "the killed run should have left its lab behind");
    assert!(
        process_alive(fw_pid) && process_alive(bus_pid),
        "its daemons should still run, orphaned"
    );

    let report = lab::clean_stale()?;
    assert!(report.is_clean(), "{:?}", report.failed);
    let removed = report
        .namespaces
        .iter()
        .find(|r| &r.name == name)
        .unwrap_or_else(|| panic!("{name} not in {report:?}"));
    assert!(removed.killed.contains(&fw_pid) && removed.killed.contains(&bus_pid), "{removed:?}");
    assert!(report.temp_dirs.contains(&dir), "{report:?}");
    assert!(!netns_listed(name) && !dir.exists());
    wait_until("the orphaned daemons to die", Duration::from_secs(5), || {
        !process_alive(fw_pid) && !process_alive(bus_pid)
    });
    Ok(())
}
