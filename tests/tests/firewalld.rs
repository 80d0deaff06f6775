//! The firewalld fixture: a real firewalld in a lab namespace with a private bus and a private
//! /etc/firewalld that holds only the fixture's own firewalld.conf (the daemon runs on the
//! shipped defaults of /usr/lib/firewalld). Every case runs on every version
//! (`reach_tests::firewalld_versions`: the host's 1.x and the cached trixie root's 2.x, run
//! chrooted). The machine's own ruleset and /etc/firewalld, and the root's own /etc/firewalld,
//! are only ever read, and must come out unchanged.
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

use reach_agent::{
    firewall::firewalld::{Target, read},
    lab::{self, Firewalld, FirewalldBuild, FirewalldOptions, LabError, NetNs, NetNsFd, TwoHosts},
};
use reach_tests::{
    firewalld_versions, netns_listed, process_alive, require_root, spawn_killed_run_child,
    wait_until,
};
use serde_json::Value;

/// `nft list ruleset` of the caller's (root) namespace. Read-only.
fn root_ruleset() -> String {
    reach_tests::ruleset::nft_ruleset(None)
}

fn hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Every file, symlink and directory under `dir` with its contents (symlinks: their target;
/// directories: none), to prove the host's /etc/firewalld (and a root's own) is untouched. A missing `dir` is an empty snapshot (the fixture needs
/// no /etc/firewalld on the host), and must stay missing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut files = BTreeMap::new();
    if !dir.exists() {
        return files;
    }
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let entry = entry.unwrap_or_else(|e| panic!("listing {}: {e}", d.display()));
            let path = entry.path();
            let kind = entry.file_type().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if kind.is_dir() {
                files.insert(path.clone(), None);
                todo.push(path);
            } else if kind.is_symlink() {
                // A root's /run holds symlinks (shm → /dev/shm): what it points to is its content.
                let target =
                    std::fs::read_link(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files.insert(path, Some(target.into_os_string().into_encoded_bytes()));
            } else {
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files.insert(path, Some(bytes));
            }
        }
    }
    files
}

/// Paths under `dir`, relative to it, sorted (directories too).
fn listing(dir: &Path) -> Vec<String> {
    snapshot(dir)
        .into_keys()
        .map(|p| p.strip_prefix(dir).expect("under dir").display().to_string())
        .collect()
}

/// The `KEY=VALUE` settings of a firewalld.conf, comments skipped.
fn conf_settings(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {l:?}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// The rules of table `inet firewalld`, whatever chain they are in (chain names differ between
/// firewalld versions; this fixture test is not about them).
fn firewalld_rules(ruleset: &Value) -> impl Iterator<Item = &Value> {
    ruleset["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("rule"))
        .filter(|rule| rule["family"] == "inet" && rule["table"] == "firewalld")
}

/// `tcp dport PORT accept`, as firewalld writes it for `--add-port=PORT/tcp`.
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
    for build in firewalld_versions::all() {
        added_port_shows_up(&build)?;
        assert_eq!(
            hash(&root_ruleset()),
            hash(&root_before),
            "the ROOT ruleset changed after {build}'s teardown"
        );
    }
    Ok(())
}

fn added_port_shows_up(build: &FirewalldBuild) -> anyhow::Result<()> {
    let root_before = root_ruleset();
    let ns = NetNs::new("fw-port")?;
    let started = Instant::now();
    let fw = firewalld_versions::start(&ns, build);
    let mem = fw.memory()?;
    eprintln!(
        "firewalld {} fixture ({build}): running after {:?} ({:?} including setup), firewalld {} MiB, dbus-daemon {} MiB RSS",
        fw.version(),
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
    assert!(firewalld_rules(&baseline).next().is_some(), "no inet firewalld rules: {baseline:#}");
    assert!(
        !firewalld_rules(&baseline).any(|r| accepts_tcp_port(r, 8080)),
        "8080 accepted before it was added: {baseline:#}"
    );

    assert_eq!(fw.cmd(&["--zone=public", "--add-port=8080/tcp"])?.trim(), "success");
    assert_eq!(fw.cmd(&["--zone=public", "--query-port=8080/tcp"])?.trim(), "yes");
    let after = fw.nft_ruleset_json()?;
    let rule = firewalld_rules(&after)
        .find(|r| accepts_tcp_port(r, 8080))
        .unwrap_or_else(|| panic!("no `tcp dport 8080 accept` in inet firewalld:\n{after:#}"));
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
        "{build}: the ROOT ruleset changed:\nbefore:\n{root_before}\nafter:\n{root_after}"
    );
    Ok(())
}

/// The fixture copies nothing from the host: its /etc/firewalld holds the firewalld.conf it
/// wrote and nothing else, and the daemon shows the shipped defaults: default zone `public`
/// with target default, every zone of /usr/lib/firewalld/zones, and only the interface and
/// source this test binds.
#[test]
fn fixture_runs_on_shipped_defaults_and_a_conf_of_its_own() -> anyhow::Result<()> {
    require_root();
    for build in firewalld_versions::all() {
        let etcs = etc_dirs(&build);
        let before: Vec<_> = etcs.iter().map(|d| snapshot(d)).collect();
        runs_on_shipped_defaults(&build)?;
        for (dir, before) in etcs.iter().zip(before) {
            assert_eq!(snapshot(dir), before, "{build}: {} changed", dir.display());
        }
    }
    Ok(())
}

/// The directories a fixture must leave alone: the host's /etc/firewalld, and the root's own
/// /etc/firewalld, /run and /var/log (the daemons write there only through the private
/// directory mounted over them in their mount namespace).
fn etc_dirs(build: &FirewalldBuild) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/etc/firewalld")];
    if let Some(root) = build.root_dir() {
        dirs.extend(["etc/firewalld", "run", "var/log"].map(|d| root.join(d)));
    }
    dirs
}

fn runs_on_shipped_defaults(build: &FirewalldBuild) -> anyhow::Result<()> {
    let hosts = TwoHosts::new("fw-defaults")?;
    let fw = firewalld_versions::start(&hosts.server, build);
    let etc = fw.config_dir().expect("config dir while running");
    assert_eq!(
        listing(&etc),
        ["firewalld.conf"],
        "{build}: the fixture's /etc/firewalld ({}) holds more than the firewalld.conf it wrote",
        etc.display()
    );
    let settings = conf_settings(&std::fs::read_to_string(etc.join("firewalld.conf"))?);
    for (key, value) in [
        ("DefaultZone", "public"),
        ("FirewallBackend", "nftables"),
        ("LogDenied", "off"),
        ("CleanupOnExit", "yes"),
        ("CleanupModulesOnExit", "no"),
        ("Lockdown", "no"),
        ("FlushAllOnReload", "yes"),
    ] {
        assert_eq!(settings.get(key).map(String::as_str), Some(value), "{key} in {settings:?}");
    }

    assert_eq!(
        fw.cmd(&["--zone=public", &format!("--add-interface={}", TwoHosts::SERVER_IF)])?.trim(),
        "success"
    );
    assert_eq!(fw.cmd(&["--zone=trusted", "--add-source=10.77.0.3"])?.trim(), "success");
    let cfg = runtime().block_on(read(Some(&fw.bus_address())))?;
    assert_eq!(cfg.default_zone, "public");
    let shipped_dir = fw.shipped_zones();
    let shipped: Vec<String> = std::fs::read_dir(&shipped_dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let zones: Vec<&str> = cfg.zones.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(zones, shipped, "{build}: zones over D-Bus vs {}", shipped_dir.display());
    let public = cfg.zone("public").expect("public zone");
    assert_eq!((public.target, public.target_raw.as_str()), (Target::Default, "default"));
    let bound: Vec<(&str, &[String], &[String])> = cfg
        .zones
        .iter()
        .filter(|z| !z.interfaces.is_empty() || !z.sources.is_empty())
        .map(|z| (z.name.as_str(), &z.interfaces[..], &z.sources[..]))
        .collect();
    assert_eq!(
        bound,
        [
            ("public", &[TwoHosts::SERVER_IF.to_string()][..], &[][..]),
            ("trusted", &[][..], &["10.77.0.3".to_string()][..]),
        ],
        "{build}: interfaces and sources beyond the ones this test bound"
    );
    Ok(())
}

/// `FirewalldOptions::conf` replaces the fixture's values, and a key this firewalld does not
/// know is harmless: the daemon starts and applies the rest.
#[test]
fn conf_options_override_and_unknown_keys_are_harmless() -> anyhow::Result<()> {
    require_root();
    for build in firewalld_versions::all() {
        let ns = NetNs::new("fw-conf")?;
        let opts = FirewalldOptions {
            conf: vec![
                ("LogDenied".into(), "unicast".into()),
                ("ReachNoSuchKey".into(), "yes".into()),
            ],
            ..firewalld_versions::options(&build)
        };
        let fw = Firewalld::start_with(&ns, opts)?;
        assert_eq!(fw.state()?, "running", "{build}");
        assert_eq!(fw.cmd(&["--get-log-denied"])?.trim(), "unicast", "{build}: log: {}", fw.log());
        assert_eq!(fw.cmd(&["--get-default-zone"])?.trim(), "public", "{build}");
        let settings = conf_settings(&std::fs::read_to_string(
            fw.config_dir().expect("config dir").join("firewalld.conf"),
        )?);
        assert_eq!(settings.get("ReachNoSuchKey").map(String::as_str), Some("yes"));
        assert_eq!(settings.get("LogDenied").map(String::as_str), Some("unicast"));
    }
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
    for build in firewalld_versions::all() {
        for own in &handles {
            let path = own.path().display().to_string();
            match Firewalld::start_with(own, firewalld_versions::options(&build)) {
                Err(err @ LabError::OwnNamespace { .. }) => {
                    assert!(err.to_string().contains("refusing to start firewalld"), "{err}");
                }
                Err(other) => panic!("{build}, {path}: expected OwnNamespace, got {other}"),
                Ok(_) => panic!("{build}, {path}: firewalld started in the caller's own namespace"),
            }
        }
    }
    assert_eq!(hash(&root_ruleset()), hash(&root_before));
    Ok(())
}

#[test]
fn permanent_config_stays_private_and_teardown_leaves_nothing() -> anyhow::Result<()> {
    require_root();
    for build in firewalld_versions::all() {
        let etcs = etc_dirs(&build);
        let before: Vec<_> = etcs.iter().map(|d| snapshot(d)).collect();
        permanent_config_stays_private(&build)?;
        for (dir, before) in etcs.iter().zip(before) {
            assert_eq!(snapshot(dir), before, "{build}: {} changed", dir.display());
        }
    }
    Ok(())
}

fn permanent_config_stays_private(build: &FirewalldBuild) -> anyhow::Result<()> {
    let host_etc = snapshot(Path::new("/etc/firewalld"));
    let ns = NetNs::new("fw-teardown")?;
    let fw = firewalld_versions::start(&ns, build);
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
    assert!(zone.contains("9999"), "{build}: permanent config not in the private copy: {zone}");
    assert_eq!(
        snapshot(Path::new("/etc/firewalld")),
        host_etc,
        "the host's /etc/firewalld changed"
    );

    drop(fw);
    assert!(!process_alive(fw_pid), "{build}: firewalld {fw_pid} survived teardown");
    assert!(!process_alive(bus_pid), "{build}: dbus-daemon {bus_pid} survived teardown");
    assert!(!dir.exists(), "{} survived teardown", dir.display());
    // firewalld's tables are still in the namespace (they die with it), nothing else runs there.
    assert!(ns.nft_ruleset()?.contains("table inet firewalld"));
    assert!(ns.pids().is_empty(), "processes left in the lab namespace: {:?}", ns.pids());
    Ok(())
}

#[test]
fn graceful_stop_removes_firewalld_rules() -> anyhow::Result<()> {
    require_root();
    for build in firewalld_versions::all() {
        let ns = NetNs::new("fw-stop")?;
        let fw = firewalld_versions::start(&ns, &build);
        let (fw_pid, bus_pid) = fw.pids();
        assert!(ns.nft_ruleset()?.contains("table inet firewalld"), "{build}: no table to remove");
        fw.stop()?;
        assert!(!process_alive(fw_pid) && !process_alive(bus_pid), "{build}: a daemon survived");
        // CleanupOnExit=yes (Debian's default): a SIGTERMed firewalld removes its table.
        let left = ns.nft_ruleset()?;
        assert!(!left.contains("firewalld"), "{build} left its table:\n{left}");
    }
    Ok(())
}

#[test]
fn fixture_in_a_panicking_test_is_cleaned_up() -> anyhow::Result<()> {
    require_root();
    for build in firewalld_versions::all() {
        let (tx, rx) = mpsc::channel();
        let scenario = build.clone();
        let outcome = thread::spawn(move || -> anyhow::Result<()> {
            let ns = NetNs::new("fw-panic")?;
            let fw = firewalld_versions::start(&ns, &scenario);
            let dir = fw.config_dir().and_then(|c| c.parent().map(Path::to_path_buf));
            tx.send((ns.name().to_string(), fw.pids(), dir))?;
            panic!("simulated test failure with firewalld running");
        })
        .join();
        assert!(outcome.is_err(), "the scenario thread should have panicked");
        let (name, (fw_pid, bus_pid), dir) = rx.recv()?;
        assert!(!netns_listed(&name), "{build}: {name} survived");
        assert!(!process_alive(fw_pid), "{build}: firewalld survived the panic");
        assert!(!process_alive(bus_pid), "{build}: dbus-daemon survived the panic");
        let dir = dir.expect("fixture dir");
        assert!(!dir.exists(), "{build}: {} survived", dir.display());
    }
    Ok(())
}

/// Set in the child process of the killed-run test.
const KILLED_RUN_CHILD: &str = "REACH_LAB_TEST_KILLED_FIREWALLD_CHILD";

#[test]
fn stale_cleaner_removes_firewalld_of_a_killed_run() -> anyhow::Result<()> {
    require_root();
    if std::env::var_os(KILLED_RUN_CHILD).is_some() {
        // One fixture of every version, all reported on one line, then killed together.
        let mut labs = Vec::new();
        let mut report = String::from("REACH-LAB-REPORT");
        for build in firewalld_versions::all() {
            let ns = NetNs::new("fw-killed")?;
            let fw = firewalld_versions::start(&ns, &build);
            let dir = fw
                .config_dir()
                .and_then(|c| c.parent().map(Path::to_path_buf))
                .expect("fixture dir");
            report.push_str(&format!(
                " {} {} {} {}",
                ns.name(),
                fw.pids().0,
                fw.pids().1,
                dir.display()
            ));
            labs.push((ns, fw));
        }
        println!("{report}");
        std::io::stdout().flush()?;
        thread::sleep(Duration::from_secs(60));
        return Ok(());
    }

    let (mut child, words) = spawn_killed_run_child(
        "stale_cleaner_removes_firewalld_of_a_killed_run",
        KILLED_RUN_CHILD,
    )?;
    anyhow::ensure!(
        words.len() == 4 * firewalld_versions::all().len(),
        "bad report {words:?}: expected name, pids and dir of each version's fixture"
    );
    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) }, 0);
    child.0.wait()?;
    let mut labs = Vec::new();
    for lab in words.chunks(4) {
        let [name, fw_pid, bus_pid, dir] = lab else { unreachable!("chunks of 4") };
        let (fw_pid, bus_pid, dir): (i32, i32, PathBuf) =
            (fw_pid.parse()?, bus_pid.parse()?, dir.into());
        assert!(
            netns_listed(name) && dir.exists(),
            "the killed run should have left its lab {name} behind"
        );
        assert!(
            process_alive(fw_pid) && process_alive(bus_pid),
            "{name}'s daemons should still run, orphaned"
        );
        labs.push((name.clone(), fw_pid, bus_pid, dir));
    }

    let report = lab::clean_stale()?;
    assert!(report.is_clean(), "{:?}", report.failed);
    for (name, fw_pid, bus_pid, dir) in labs {
        let removed = report
            .namespaces
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("{name} not in {report:?}"));
        assert!(
            removed.killed.contains(&fw_pid) && removed.killed.contains(&bus_pid),
            "{removed:?}"
        );
        assert!(report.temp_dirs.contains(&dir), "{report:?}");
        assert!(!netns_listed(&name) && !dir.exists());
        wait_until("the orphaned daemons to die", Duration::from_secs(5), || {
            !process_alive(fw_pid) && !process_alive(bus_pid)
        });
    }
    Ok(())
}

/// Each version starts, answers over its private bus, and reports the version its own Python
/// package states; the root netns ruleset stays unchanged.
#[test]
fn every_version_starts_and_reports_its_version() -> anyhow::Result<()> {
    require_root();
    let root_before = root_ruleset();
    let mut seen = Vec::new();
    for build in firewalld_versions::all() {
        let ns = NetNs::new("fw-version")?;
        let fw = firewalld_versions::start(&ns, &build);
        eprintln!("{build}: firewalld {} running after {:?}", fw.version(), fw.ready_in());
        assert_eq!(fw.version(), build.version()?);
        assert_eq!(fw.cmd(&["--get-default-zone"])?.trim(), "public", "{build}");
        let cfg = runtime().block_on(read(Some(&fw.bus_address())))?;
        assert_eq!(cfg.version, fw.version(), "{build}: D-Bus version vs firewall.config");
        seen.push(fw.version().to_string());
    }
    assert!(
        seen.iter().any(|v| v.starts_with("1.")) && seen.iter().any(|v| v.starts_with("2.")),
        "expected a firewalld 1.x and a 2.x, got {seen:?}"
    );
    assert_eq!(hash(&root_ruleset()), hash(&root_before), "the ROOT ruleset changed");
    Ok(())
}

/// The tests look for the root where `cargo xtask setup` caches it, and for the same stamp.
#[test]
fn firewalld_root_path_matches_xtask() {
    assert_eq!(firewalld_versions::trixie_root(), xtask::firewalld_root::dir());
    assert_eq!(firewalld_versions::STAMP, xtask::firewalld_root::STAMP);
}
