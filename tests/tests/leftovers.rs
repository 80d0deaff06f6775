//! The leftover checks can fail: each test leaves exactly one kind of thing behind on purpose
//! (a TCX link, a netlink clsact filter, a qdisc, an nft table, a mount, a pin, a /run/reach
//! file, a changed ruleset), asserts that the check reports exactly it, cleans up, and asserts
//! that the same check then reports nothing.
use std::{ffi::CString, os::unix::ffi::OsStrExt, path::Path, sync::Mutex, time::Duration};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        LinkOrder, SchedClassifier,
        tc::{self, NlOptions, TcAttachOptions, TcAttachType},
    },
};
use reach_agent::{
    ebpf_objects::{self, program_mut},
    lab::{NetNs, TwoHosts},
};
use reach_common::net::{NetConfig, SkbOffsets};
use reach_tests::{
    leftovers::{Leftover, Leftovers, Scope, tcx_expected},
    require_root,
    ruleset::{RulesetSnapshot, nft},
};

/// The tests share the kernel's program and link lists: one at a time, so one test's objects
/// are never another's "new" ones.
static SERIAL: Mutex<()> = Mutex::new(());

const IF: &str = TwoHosts::SERVER_IF;

/// reach's own ingress classifier, loaded (not attached).
fn load_ingress() -> Ebpf {
    let config =
        NetConfig { netns: 0, filter_ports: 0, rate_per_sec: 0, burst: 0, filter_netns: 0 };
    let mut ebpf = EbpfLoader::new()
        .override_global("NET_CONFIG", &config, true)
        .override_global("SKB_OFFSETS", &SkbOffsets::ABSENT, true)
        .load(ebpf_objects::net())
        .expect("loading reach-net");
    let p: &mut SchedClassifier = program_mut(&mut ebpf, "reach_ingress").unwrap();
    p.load().expect("loading reach_ingress");
    ebpf
}

fn ingress(ebpf: &mut Ebpf) -> &mut SchedClassifier {
    program_mut(ebpf, "reach_ingress").unwrap()
}

fn prog_id(ebpf: &mut Ebpf) -> u32 {
    ingress(ebpf).info().unwrap().id()
}

/// Nothing is left once the test has cleaned up (the check does not cry wolf).
fn assert_clean_after_cleanup(check: &Leftovers<'_>) {
    let left = check.left_after(Duration::from_secs(15));
    assert!(left.is_empty(), "after cleanup the check still reports: {left:#?}");
}

#[test]
fn a_tcx_link_still_attached_is_reported_with_its_interface() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("left-tcx").unwrap();
    let mut ebpf = load_ingress();
    let id = prog_id(&mut ebpf);
    let scope = Scope { netns: Some(&hosts.server), ifaces: &[IF] };
    let check = Leftovers::snapshot(&scope);
    let p = ingress(&mut ebpf);
    let attached = hosts
        .server
        .run_in(|| {
            p.attach_with_options(
                IF,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
        })
        .unwrap();
    if !tcx_expected() {
        // Before 6.6 the kernel has no TCX: the attach must fail, and nothing is left.
        assert!(attached.is_err(), "a TCX attach succeeded on a kernel before 6.6");
        assert_clean_after_cleanup(&check);
        return;
    }
    attached.expect("TCX attach");
    let left = check.new_since();
    let me = std::process::id() as i32;
    match left.as_slice() {
        [
            Leftover::Link { kind, prog_id, holders, .. },
            Leftover::Tcx { iface, dir: "ingress", prog_id: tcx_prog, name },
        ] => {
            assert_eq!((kind.as_str(), *prog_id, holders.as_slice()), ("Tcx", id, &[me][..]));
            assert_eq!((iface.as_str(), *tcx_prog, name.as_str()), (IF, id, "reach_ingress"));
        }
        other => panic!("expected exactly the TCX link on {IF} ingress, got {other:#?}"),
    }
    drop(ebpf); // closes the link: TCX detaches
    assert_clean_after_cleanup(&check);
}

#[test]
fn a_netlink_filter_whose_program_nobody_holds_is_reported() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("left-nl").unwrap();
    let scope = Scope { netns: Some(&hosts.server), ifaces: &[IF] };
    let check = Leftovers::snapshot(&scope);
    let mut ebpf = load_ingress();
    let id = prog_id(&mut ebpf);
    let p = ingress(&mut ebpf);
    hosts
        .server
        .run_in(|| {
            tc::qdisc_add_clsact(IF).expect("clsact in the lab namespace");
            let link = p
                .attach_with_options(
                    IF,
                    TcAttachType::Ingress,
                    TcAttachOptions::Netlink(NlOptions::default()),
                )
                .expect("netlink attach");
            // What a SIGKILLed run leaves: the filter stays, no process holds the program.
            std::mem::forget(p.take_link(link).unwrap());
        })
        .unwrap();
    drop(ebpf);
    let left = check.left_after(Duration::from_secs(2));
    let (programs, rest): (Vec<_>, Vec<_>) =
        left.iter().partition(|l| matches!(l, Leftover::Program { .. }));
    assert_eq!(
        programs,
        [&Leftover::Program { id, name: "reach_ingress".into(), holders: vec![] }],
        "{left:#?}"
    );
    assert!(
        rest.iter()
            .any(|l| matches!(l, Leftover::Qdisc { line, .. } if line.starts_with("qdisc clsact"))),
        "{left:#?}"
    );
    let filter_line = format!("reach_ingress direct-action not_in_hw id {id} ");
    assert!(
        rest.iter().any(|l| matches!(l, Leftover::TcFilter { iface, dir: "ingress", line } if iface == IF && line.contains(&filter_line))),
        "{left:#?}"
    );
    assert!(
        rest.iter().all(|l| matches!(
            l,
            Leftover::Qdisc { .. } | Leftover::TcFilter { dir: "ingress", .. }
        )),
        "only the clsact and its ingress filter: {left:#?}"
    );
    hosts.server.run("tc", &["qdisc", "del", "dev", IF, "clsact"]).unwrap();
    assert_clean_after_cleanup(&check);
}

#[test]
fn a_qdisc_left_on_the_interface_is_reported() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("left-qd").unwrap();
    let scope = Scope { netns: Some(&hosts.server), ifaces: &[IF] };
    let check = Leftovers::snapshot(&scope);
    hosts.server.run("tc", &["qdisc", "add", "dev", IF, "clsact"]).unwrap();
    let left = check.new_since();
    assert_eq!(
        left,
        [Leftover::Qdisc { iface: IF.into(), line: "qdisc clsact ffff: parent ffff:fff1".into() }],
        "{left:#?}"
    );
    hosts.server.run("tc", &["qdisc", "del", "dev", IF, "clsact"]).unwrap();
    assert_clean_after_cleanup(&check);
}

#[test]
fn an_nft_table_left_in_the_namespace_is_reported() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = NetNs::new("left-nft").unwrap();
    let check = Leftovers::snapshot(&Scope { netns: Some(&ns), ifaces: &[] });
    nft(Some(&ns), &["add", "table", "inet", "reach_trace"]);
    assert_eq!(check.new_since(), [Leftover::NftTable("table inet reach_trace".into())]);
    nft(Some(&ns), &["delete", "table", "inet", "reach_trace"]);
    assert_clean_after_cleanup(&check);
}

/// A fresh bpffs on a temporary directory, unmounted on drop even if the test fails first
/// (it must not outlive the test: it is itself a leftover).
struct Bpffs {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Bpffs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated strings; a new bpffs instance on our own temp dir.
        let rc = unsafe {
            libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null())
        };
        let e = std::io::Error::last_os_error();
        assert_eq!(rc, 0, "mount -t bpf {}: {e}", dir.path().display());
        Bpffs { dir, mounted: true }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn unmount(&mut self) {
        let target = CString::new(self.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated string.
        let rc = unsafe { libc::umount2(target.as_ptr(), 0) };
        let e = std::io::Error::last_os_error();
        assert_eq!(rc, 0, "umount {}: {e}", self.path().display());
        self.mounted = false;
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        if self.mounted {
            let target = CString::new(self.path().as_os_str().as_bytes()).unwrap();
            // SAFETY: valid NUL-terminated string.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

#[test]
fn a_mount_left_behind_is_reported() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let check = Leftovers::snapshot(&Scope { netns: None, ifaces: &[] });
    let mut dir = Bpffs::mount();
    let left = check.new_since();
    let prefix = format!("bpf on {} (id ", dir.path().display());
    assert!(
        matches!(left.as_slice(), [Leftover::Mount(m)] if m.starts_with(&prefix)),
        "expected exactly the bpffs mount on {}: {left:#?}",
        dir.path().display()
    );
    dir.unmount();
    assert_clean_after_cleanup(&check);
}

#[test]
fn a_pinned_program_is_reported_with_its_pin() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut dir = Bpffs::mount();
    let check = Leftovers::snapshot(&Scope { netns: None, ifaces: &[] });
    let pin = dir.path().join("reach_ingress");
    let mut ebpf = load_ingress();
    let id = prog_id(&mut ebpf);
    ingress(&mut ebpf).pin(&pin).expect("pin");
    drop(ebpf);
    let left = check.left_after(Duration::from_secs(2));
    assert_eq!(
        left,
        [
            Leftover::Program { id, name: "reach_ingress".into(), holders: vec![] },
            Leftover::Pin(pin.clone()),
        ],
        "{left:#?}"
    );
    std::fs::remove_file(&pin).unwrap();
    dir.unmount();
    assert_clean_after_cleanup(&check);
}

#[test]
fn a_clsact_record_of_the_namespace_is_reported_and_another_namespaces_is_not() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = NetNs::new("left-run").unwrap();
    let check = Leftovers::snapshot(&Scope { netns: Some(&ns), ifaces: &[] });
    let dir = Path::new("/run/reach/clsact");
    std::fs::create_dir_all(dir).unwrap();
    let ours = dir.join(format!("{}-4242", ns.id().ino));
    // Inode 1 is no network namespace: a record of "another" namespace, out of scope.
    let theirs = dir.join("1-4242");
    std::fs::write(&ours, "1 1").unwrap();
    std::fs::write(&theirs, "1 1").unwrap();
    let left = check.new_since();
    std::fs::remove_file(&theirs).unwrap();
    assert_eq!(left, [Leftover::RunReach(ours.clone())], "{left:#?}");
    std::fs::remove_file(&ours).unwrap();
    assert_clean_after_cleanup(&check);
}

#[test]
fn assert_nothing_new_panics_naming_what_is_left() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = NetNs::new("left-panic").unwrap();
    let check = Leftovers::snapshot(&Scope { netns: Some(&ns), ifaces: &[] });
    nft(Some(&ns), &["add", "table", "ip", "leftover_probe"]);
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check.assert_nothing_new("the probe")
    }))
    .expect_err("a table was left: the assertion must fail");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("the probe left behind") && msg.contains("table ip leftover_probe"),
        "{msg}"
    );
    nft(Some(&ns), &["delete", "table", "ip", "leftover_probe"]);
    check.assert_nothing_new("the cleanup");
}

#[test]
fn a_changed_ruleset_fails_the_unchanged_check() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = NetNs::new("left-rules").unwrap();
    let snap = RulesetSnapshot::take(Some(&ns));
    snap.assert_unchanged("nothing");
    nft(Some(&ns), &["add", "table", "inet", "changed"]);
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        snap.assert_unchanged("the probe")
    }))
    .expect_err("a table was added: the comparison must fail");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("changed during the probe") && msg.contains("table inet changed"),
        "{msg}"
    );
    // And a failing nft fails the check instead of reading as an empty ruleset.
    let failed = std::panic::catch_unwind(|| nft(Some(&ns), &["list", "table", "inet", "absent"]));
    assert!(failed.is_err(), "nft exited non-zero: the helper must panic");
}

/// The check sees reach's own classifiers where `tc filter show` cannot: while `reach watch`
/// runs, its TCX attachments (netlink filters before 6.6) on the watched interface are new, and
/// its programs and links are not reported, being held by a live process; once it stopped,
/// nothing is new.
#[test]
fn a_running_reach_is_seen_attached_and_its_held_programs_are_not_leftovers() {
    require_root();
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let hosts = TwoHosts::new("left-live").unwrap();
    let scope = Scope { netns: Some(&hosts.server), ifaces: &[IF] };
    let check = Leftovers::snapshot(&scope);
    let run = reach_tests::WatchRun::start(
        &["--json", "--netns", hosts.server.name(), "--no-trace"],
        "watching drops",
    );
    let seen = check.new_since();
    let attached = |dir: &str, name: &str| {
        seen.iter().any(|l| match l {
            Leftover::Tcx { iface, dir: d, name: n, .. } => iface == IF && *d == dir && n == name,
            Leftover::TcFilter { iface, dir: d, line } => {
                iface == IF && *d == dir && line.contains(name)
            }
            _ => false,
        })
    };
    assert!(
        attached("ingress", "reach_ingress") && attached("egress", "reach_egress"),
        "reach's classifiers on {IF} while it runs: {seen:#?}"
    );
    if tcx_expected() {
        assert!(
            !seen.iter().any(|l| matches!(l, Leftover::TcFilter { .. })),
            "TCX, not netlink filters, from 6.6: {seen:#?}"
        );
    }
    assert!(
        !seen.iter().any(|l| matches!(l, Leftover::Program { .. } | Leftover::Link { .. })),
        "programs and links held by the running reach are not leftovers: {seen:#?}"
    );
    let (code, _) = run.stop();
    assert_eq!(code, Some(0));
    check.assert_nothing_new("reach watch");
}
