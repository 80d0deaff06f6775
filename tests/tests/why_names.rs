//! `reach why NAME:PORT` against real listeners and real clients, with the name resolved by
//! glibc in a PRIVATE resolver configuration: reach runs in its own mount namespace with
//! fixture files bind-mounted over /etc/hosts, /etc/nsswitch.conf, /etc/gai.conf and
//! /etc/resolv.conf (never the machine's own), inside lab network namespaces whose addresses
//! decide what AI_ADDRCONFIG keeps. Each behaviour is shown against its counter-case (::1 kept
//! with an IPv6 address, dropped without; ::1 first by default, 127.0.0.1 first with a
//! gai.conf `precedence` line), so no assertion can pass on a setup that ignores the files.
use std::{
    ffi::CString,
    io::{self, BufRead as _},
    net::{SocketAddr, TcpStream},
    os::{fd::OwnedFd, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use reach_agent::lab::{
    NetNs, TwoHosts,
    sockets::{self, ListenSpec},
};
use reach_tests::why_run::leftovers;
use reach_tests::{reach_bin, require_root};
use serde_json::Value;

/// Tests attach probes the others would see: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Generous for a loaded 2-core machine (attaching probes, the first IPv6 neighbour discovery).
const DEADLINE: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const HOSTS: &str =
    "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n10.77.0.1 web.lab.test web\n";
const GAI_DEFAULT: &str = "# glibc's built-in tables\n#precedence ::ffff:0:0/96 100\n";
const GAI_V4_FIRST: &str = "# prefer IPv4\nprecedence ::ffff:0:0/96 100\n";

/// The four files glibc reads, written to a private directory.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(nsswitch_hosts: &str, gai_conf: &str, resolv_conf: &str) -> Self {
        // With nscd running glibc would ask it (the machine's view) instead of the files.
        assert!(
            !Path::new("/var/run/nscd/socket").exists(),
            "nscd runs here: glibc would answer from its cache, not the fixture files"
        );
        let dir = tempfile::tempdir().unwrap();
        let w = |n: &str, t: &str| std::fs::write(dir.path().join(n), t).unwrap();
        w("hosts", HOSTS);
        w("nsswitch.conf", &format!("passwd: files\nhosts: {nsswitch_hosts}\n"));
        w("gai.conf", gai_conf);
        w("resolv.conf", resolv_conf);
        Self { dir }
    }

    fn files_only() -> Self {
        Self::new("files", GAI_DEFAULT, "nameserver 192.0.2.53\n")
    }

    /// (fixture file, /etc file it covers); each target must exist to be bound over.
    fn binds(&self) -> Vec<(PathBuf, PathBuf)> {
        ["hosts", "nsswitch.conf", "gai.conf", "resolv.conf"]
            .iter()
            .map(|n| {
                let target = Path::new("/etc").join(n);
                assert!(
                    target.exists(),
                    "{} is missing: the test binds its fixture over it (libc-bin ships gai.conf)",
                    target.display()
                );
                (self.dir.path().join(n), target)
            })
            .collect()
    }
}

/// `reach ARGS` in a new private mount namespace where the fixture files cover /etc's.
fn private_command(fx: &Fixture, args: &[&str]) -> Command {
    let binds: Vec<(CString, CString)> = fx
        .binds()
        .into_iter()
        .map(|(s, t)| {
            let c = |p: PathBuf| CString::new(p.into_os_string().into_encoded_bytes()).unwrap();
            (c(s), c(t))
        })
        .collect();
    let root = CString::new("/").unwrap();
    let mut cmd = Command::new(reach_bin());
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: only async-signal-safe syscalls between fork and exec; the strings were built
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let check =
                |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            // Nothing done here may propagate back to the machine's mount namespace.
            check(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for (src, dst) in &binds {
                check(libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
            Ok(())
        });
    }
    cmd
}

/// A running `reach why` with its output collected; interrupted (then killed) if dropped early.
struct Run {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

fn collect(r: impl io::Read + Send + 'static, into: Arc<Mutex<String>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in io::BufReader::new(r).lines().map_while(Result::ok) {
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    })
}

impl Run {
    fn start(fx: &Fixture, args: &[&str]) -> Run {
        let mut child = private_command(fx, args).spawn().expect("start reach");
        let (stdout, stderr) = (Arc::default(), Arc::<Mutex<String>>::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Run { child, stdout, stderr, readers }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr says reach is ready for the client.
    fn wait_ready(&mut self) {
        let until = Instant::now() + DEADLINE;
        while !self.stderr().contains("waiting for a SYN") {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("reach exited ({s}) before \"waiting for a SYN\":\n{}", self.stderr());
            }
            assert!(
                Instant::now() < until,
                "timed out after {DEADLINE:?} waiting for \"waiting for a SYN\":\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Exit code, stdout, stderr.
    fn finish(mut self) -> (i32, String, String) {
        let until = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < until,
                "reach did not exit within {DEADLINE:?}:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let out = self.stdout.lock().unwrap().clone();
        (status.code().unwrap_or(-1), out, self.stderr())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SIGINT first: reach detaches everything on it.
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            let until = Instant::now() + Duration::from_secs(30);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < until {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn json(out: &str, stderr: &str) -> Value {
    serde_json::from_str(out)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{out}\nstderr:\n{stderr}"))
}

/// `reach why ARGS --json` run to completion in the private configuration (no client).
fn why_now(fx: &Fixture, args: &[&str]) -> (i32, String, String) {
    let out = private_command(fx, args).output().expect("run reach");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The resolved addresses in order.
fn order(v: &Value) -> Vec<String> {
    v["resolved"]["addresses"]
        .as_array()
        .unwrap_or_else(|| panic!("no resolved.addresses in {v:#}"))
        .iter()
        .map(|a| a["addr"].as_str().unwrap().to_string())
        .collect()
}

fn listen_in(ns: &NetNs, addr: &str, port: u16) -> OwnedFd {
    let sa = SocketAddr::new(addr.parse().unwrap(), port);
    ns.run_in(move || sockets::tcp_listen(&ListenSpec::on(sa)))
        .unwrap()
        .unwrap_or_else(|e| panic!("listening on {sa}: {e}"))
}

/// Removes every IPv6 address from the server's veth (link-local included), leaving IPv6
/// only on lo: what glibc's AI_ADDRCONFIG counts as "no IPv6".
fn ipv4_only(hosts: &TwoHosts) {
    let path = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", TwoHosts::SERVER_IF);
    hosts.server.run_in(move || std::fs::write(&path, "1")).unwrap().unwrap();
}

#[test]
fn localhost_to_an_ipv4_server_with_a_client_dialing_ipv6_first_is_family_mismatch() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyn-local").unwrap();
    let check = leftovers(&hosts);
    let fx = Fixture::files_only();
    let port = 7411;
    let _server = listen_in(&hosts.server, "127.0.0.1", port);
    let target = format!("localhost:{port}");
    let mut run = Run::start(
        &fx,
        &["why", &target, "--netns", hosts.server.name(), "--timeout", "30", "--json"],
    );
    run.wait_ready();
    assert!(
        run.stderr().contains(&format!("[::1]:{port} or 127.0.0.1:{port}")),
        "{}",
        run.stderr()
    );
    // The client does what a glibc client does with that answer: ::1 first, refused.
    let to = SocketAddr::new("::1".parse().unwrap(), port);
    match hosts.server.run_in(move || TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)).unwrap() {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        other => panic!("connecting to {to} must be refused, got {other:?}"),
    }
    let (code, out, stderr) = run.finish();
    let v = json(&out, &stderr);
    assert_eq!((code, v["verdict"].as_str()), (19, Some("family_mismatch")), "{v:#}\n{stderr}");
    assert_eq!(v["target"], target, "{v:#}");
    let r = &v["resolved"];
    assert_eq!(order(&v), ["::1", "127.0.0.1"], "{v:#}");
    assert_eq!(r["first_tried"], "::1", "{v:#}");
    assert_eq!(r["addresses"][0]["taken"], false, "{v:#}");
    assert_eq!(r["addresses"][0]["hosts_line"], 2, "{v:#}");
    assert_eq!(r["addresses"][1]["taken"], true, "{v:#}");
    assert!(
        r["addresses"][1]["why"]
            .as_str()
            .unwrap()
            .starts_with(&format!("taken by 127.0.0.1:{port}")),
        "{v:#}"
    );
    assert_eq!(r["nsswitch_hosts"], "files", "{v:#}");
    assert_eq!(v["attempt"]["family"], "ipv6", "{v:#}");
    let evidence: Vec<&str> =
        v["evidence"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(
        evidence.iter().any(|l| l.starts_with(&format!("::1:{port} (/etc/hosts line 2"))
            && l.contains("tried first")),
        "{evidence:#?}"
    );
    let fix: Vec<&str> = v["fix"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(
        fix.iter().any(|l| l.contains(&format!("dial 127.0.0.1:{port}")) && l.contains("curl -4")),
        "{fix:#?}"
    );
    check.assert_nothing_new("reach why localhost");
}

#[test]
fn a_fixture_hosts_name_of_the_lab_server_with_a_listener_is_reachable() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyn-web").unwrap();
    let check = leftovers(&hosts);
    // DNS is listed after files and goes to resolved's stub: named, never queried (files answers).
    let fx = Fixture::new("files dns", GAI_DEFAULT, "nameserver 127.0.0.53\noptions edns0\n");
    let port = 7412;
    let _server = listen_in(&hosts.server, "0.0.0.0", port);
    let target = format!("web.lab.test:{port}");
    let mut run = Run::start(
        &fx,
        &["why", &target, "--netns", hosts.server.name(), "--timeout", "30", "--json"],
    );
    run.wait_ready();
    let to = SocketAddr::from((TwoHosts::SERVER_V4, port));
    let conn =
        hosts.client.run_in(move || TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)).unwrap();
    assert!(conn.is_ok(), "the client must connect to {to}: {conn:?}");
    let (code, out, stderr) = run.finish();
    let v = json(&out, &stderr);
    assert_eq!((code, v["verdict"].as_str()), (0, Some("reachable")), "{v:#}\n{stderr}");
    assert_eq!(order(&v), ["10.77.0.1"], "{v:#}");
    let a = &v["resolved"]["addresses"][0];
    assert_eq!(a["source"], "/etc/hosts line 3: 10.77.0.1 web.lab.test web", "{v:#}");
    assert_eq!(a["taken"], true, "{v:#}");
    assert_eq!(v["attempt"]["server"], format!("10.77.0.1:{port}"), "{v:#}");
    let notes: Vec<&str> =
        v["resolved"]["notes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(
        notes.iter().any(|n| n.contains("127.0.0.53") && n.contains("systemd-resolved")),
        "{notes:#?}"
    );
    check.assert_nothing_new("reach why web.lab.test");
}

/// AI_ADDRCONFIG, glibc's way: ::1 for localhost is kept where the namespace has a
/// non-loopback IPv6 address and dropped where it has none (lo's ::1 does not count).
#[test]
fn localhost_keeps_ipv6_only_where_the_namespace_has_a_non_loopback_ipv6_address() {
    require_root();
    let _s = serial();
    let fx = Fixture::files_only();
    let hosts = TwoHosts::new("whyn-acfg").unwrap();
    let args =
        ["why", "localhost:7413", "--netns", hosts.server.name(), "--timeout", "0", "--json"];
    let (code, out, stderr) = why_now(&fx, &args);
    let dual = json(&out, &stderr);
    assert_eq!(code, 12, "nothing listens: no_listener\n{dual:#}\n{stderr}");
    assert_eq!(order(&dual), ["::1", "127.0.0.1"], "{dual:#}");
    assert_eq!(dual["resolved"]["dropped_by_addrconfig"], serde_json::json!([]), "{dual:#}");

    ipv4_only(&hosts);
    let (_, out, stderr) = why_now(&fx, &args);
    let v4 = json(&out, &stderr);
    assert_eq!(order(&v4), ["127.0.0.1"], "{v4:#}");
    assert_eq!(v4["resolved"]["dropped_by_addrconfig"], serde_json::json!(["::1"]), "{v4:#}");
    let notes = v4["resolved"]["notes"].to_string();
    assert!(notes.contains("AI_ADDRCONFIG dropped ::1"), "{notes}");
}

#[test]
fn a_gai_conf_precedence_line_puts_ipv4_first_and_reach_follows_it() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyn-gai").unwrap();
    let args =
        ["why", "localhost:7414", "--netns", hosts.server.name(), "--timeout", "0", "--json"];
    let (_, out, stderr) = why_now(&Fixture::files_only(), &args);
    assert_eq!(order(&json(&out, &stderr)), ["::1", "127.0.0.1"], "default tables: ::1 first");
    let fx = Fixture::new("files", GAI_V4_FIRST, "nameserver 192.0.2.53\n");
    let (_, out, stderr) = why_now(&fx, &args);
    let v = json(&out, &stderr);
    assert_eq!(order(&v), ["127.0.0.1", "::1"], "{v:#}");
    assert_eq!(v["resolved"]["first_tried"], "127.0.0.1", "{v:#}");
    assert_eq!(v["resolved"]["gai_conf"][0]["text"], "precedence ::ffff:0:0/96 100", "{v:#}");
    assert_eq!(v["resolved"]["gai_conf"][0]["line"], 2, "{v:#}");
    assert!(v["resolved"]["notes"].to_string().contains("ignores gai.conf"), "{v:#}");
}

#[test]
fn an_unresolvable_name_is_usage_error_2_naming_what_was_consulted_and_attaches_nothing() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyn-nx").unwrap();
    let check = leftovers(&hosts);
    let fx = Fixture::files_only();
    let (code, out, stderr) =
        why_now(&fx, &["why", "nosuch.lab.test:7415", "--netns", hosts.server.name(), "--json"]);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{stderr}");
    assert!(out.is_empty(), "nothing on stdout: {out}");
    for want in [
        "cannot resolve `nosuch.lab.test`",
        "getaddrinfo: ",
        "nsswitch.conf hosts: files",
        "/etc/hosts has no line for it",
    ] {
        assert!(stderr.contains(want), "stderr lacks {want:?}:\n{stderr}");
    }
    assert!(!stderr.contains("waiting for a SYN") && !stderr.contains("attach"), "{stderr}");
    check.assert_nothing_new("reach why nosuch.lab.test");
}

#[test]
fn ipv6_only_resolution_of_an_ipv4_only_name_is_usage_error_2() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whyn-six").unwrap();
    let check = leftovers(&hosts);
    let fx = Fixture::files_only();
    let ns = hosts.server.name();
    let (code, out, stderr) =
        why_now(&fx, &["why", "-6", "web.lab.test:7416", "--netns", ns, "--json"]);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{stderr}");
    assert!(stderr.contains("cannot resolve `web.lab.test` to an IPv6 address (-6)"), "{stderr}");
    assert!(stderr.contains("/etc/hosts: line 3: 10.77.0.1 web.lab.test web"), "{stderr}");
    // The counter-case: -4 resolves the same name (predicting, nothing attached).
    let (code, out, stderr) = why_now(
        &fx,
        &["why", "-4", "web.lab.test:7416", "--netns", ns, "--timeout", "0", "--json"],
    );
    assert_eq!(code, 12, "{out}\n{stderr}");
    assert_eq!(order(&json(&out, &stderr)), ["10.77.0.1"]);
    check.assert_nothing_new("reach why -6 web.lab.test");
}
