//! The socket-lookup model (`diagnose::lookup`) against the real kernel: every row is a real
//! listener (or a few) in a lab server namespace and a real client connect, from the client
//! namespace over the veth or from inside the server namespace. The model judges the SYN from
//! the real sock_diag dump of the server namespace (not from this file's idea of the sockets),
//! so a row passes only when dump + model predict what the kernel did: connected to the very
//! listener the model names (or one of its reuseport group), or refused when every listener
//! misses.
//!
//! The second addresses are added with `nodad`, like the lab's own, so they are usable at once.
//! VRF rows are left out: they need the vrf module (CONFIG_NET_VRF), which not every kernel the
//! tests run on has (the development host's lacks it); the model's VRF rules are unit-tested.
use std::{
    fmt::Write as _,
    io,
    net::{IpAddr, SocketAddr, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use reach_agent::{
    diagnose::lookup::{self, Ingress, Judgement, SkLookupState, Syn, Winner},
    lab::{
        NetNs, TwoHosts,
        sockets::{self, ListenSpec},
    },
    netns::{addresses::iface_addrs, sk_lookup::sk_lookup_programs_at, sock_diag::dump_listeners},
};
use reach_tests::require_root;

/// A second address of the server, on the same veth: "another address of this host".
const SECOND_V4: &str = "10.77.0.11";
const SECOND_V6: &str = "fd00:77::11";
/// Generous: a loaded 2-core machine; refusals come back at once (RST).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ACCEPT_TIMEOUT_MS: i32 = 10_000;
/// Not exported by the libc crate for every target; include/uapi/asm-generic/socket.h.
const SO_COOKIE: libc::c_int = 57;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dev {
    None,
    /// The veth, where clients from the client namespace arrive.
    Srv,
    Lo,
}

#[derive(Debug, Clone, Copy)]
struct Listen {
    addr: &'static str,
    v6only: Option<bool>,
    dev: Dev,
    reuseport: bool,
}

impl Listen {
    fn label(&self) -> String {
        let ip: IpAddr = self.addr.parse().unwrap();
        let mut s = if ip.is_ipv6() { format!("[{}]", self.addr) } else { self.addr.to_string() };
        if let Some(v) = self.v6only {
            let _ = write!(s, " v6only={}", u8::from(v));
        }
        match self.dev {
            Dev::None => {}
            Dev::Srv => s.push_str(" dev=srv0"),
            Dev::Lo => s.push_str(" dev=lo"),
        }
        if self.reuseport {
            s.push_str(" reuseport");
        }
        s
    }
}

const fn l(addr: &'static str) -> Listen {
    Listen { addr, v6only: None, dev: Dev::None, reuseport: false }
}

const fn l6(addr: &'static str, v6only: bool) -> Listen {
    Listen { addr, v6only: Some(v6only), dev: Dev::None, reuseport: false }
}

const fn on(mut x: Listen, dev: Dev) -> Listen {
    x.dev = dev;
    x
}

const fn rp(mut x: Listen) -> Listen {
    x.reuseport = true;
    x
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    /// A client inside the server namespace (loopback delivery).
    Inside,
    /// A client in the client namespace, over the veth.
    Outside,
}

/// Single listeners: family × address kind × v6only × device binding.
fn single_listeners() -> Vec<Listen> {
    vec![
        l("0.0.0.0"),
        l("127.0.0.1"),
        l("10.77.0.1"),
        l(SECOND_V4),
        l6("::", false),
        l6("::", true),
        l6("::1", true),
        l6("::1", false),
        l6("fd00:77::1", false),
        l6(SECOND_V6, false),
        l6("::ffff:127.0.0.1", false),
        l6("::ffff:10.77.0.1", false),
        l6("::ffff:0.0.0.0", false),
        on(l("0.0.0.0"), Dev::Srv),
        on(l("0.0.0.0"), Dev::Lo),
        on(l("10.77.0.1"), Dev::Srv),
        on(l("127.0.0.1"), Dev::Lo),
        on(l6("::", false), Dev::Srv),
        on(l6("::", true), Dev::Srv),
        on(l6("::", false), Dev::Lo),
        on(l6("fd00:77::1", false), Dev::Srv),
    ]
}

/// Client family and destination: loopback v4/v6, the veth addresses, a second address, a
/// v4-mapped destination (an IPv4 SYN on the wire).
fn clients() -> Vec<(From, &'static str)> {
    vec![
        (From::Inside, "127.0.0.1"),
        (From::Inside, "127.0.0.2"),
        (From::Inside, "::1"),
        (From::Inside, "::ffff:127.0.0.1"),
        (From::Inside, "10.77.0.1"),
        (From::Inside, "fd00:77::1"),
        (From::Outside, "10.77.0.1"),
        (From::Outside, SECOND_V4),
        (From::Outside, "fd00:77::1"),
        (From::Outside, SECOND_V6),
        (From::Outside, "::ffff:10.77.0.1"),
    ]
}

/// Several listeners on one port: who wins.
fn multi_rows() -> Vec<(Vec<Listen>, From, &'static str)> {
    let dual = l6("::", false);
    vec![
        (vec![l("127.0.0.1"), l6("::1", true)], From::Inside, "::1"),
        (vec![l("127.0.0.1"), l6("::1", true)], From::Inside, "127.0.0.1"),
        (vec![l("0.0.0.0"), l6("::", true)], From::Outside, "10.77.0.1"),
        (vec![l("0.0.0.0"), l6("::", true)], From::Outside, "fd00:77::1"),
        (vec![on(l("0.0.0.0"), Dev::Srv), on(l("0.0.0.0"), Dev::Lo)], From::Outside, "10.77.0.1"),
        (vec![on(l("0.0.0.0"), Dev::Srv), on(l("0.0.0.0"), Dev::Lo)], From::Inside, "10.77.0.1"),
        (vec![rp(l("0.0.0.0")), rp(dual)], From::Outside, "10.77.0.1"),
        (vec![rp(l("0.0.0.0")), rp(dual)], From::Outside, "fd00:77::1"),
        (vec![rp(l("0.0.0.0")), rp(on(l("0.0.0.0"), Dev::Srv))], From::Outside, "10.77.0.1"),
        (vec![rp(on(l("0.0.0.0"), Dev::Srv)), rp(l("10.77.0.1"))], From::Outside, "10.77.0.1"),
        (vec![rp(l("0.0.0.0")), rp(l("0.0.0.0")), rp(l("0.0.0.0"))], From::Outside, "10.77.0.1"),
        (vec![rp(dual), rp(dual)], From::Inside, "::1"),
    ]
}

/// What the kernel did with the client's connect.
#[derive(Debug, PartialEq, Eq)]
enum Kernel {
    /// Connected; the accepted connection sat in listener `n`'s queue.
    Connected(usize),
    Refused,
    Other(String),
}

struct RowResult {
    listeners: String,
    from: From,
    dial: &'static str,
    model: String,
    kernel: String,
    ok: bool,
}

#[test]
fn lookup_model_matches_the_kernel() {
    require_root();
    let hosts = TwoHosts::new("lookup").expect("lab namespaces");
    hosts
        .server
        .ip(&["addr", "add", &format!("{SECOND_V4}/24"), "dev", TwoHosts::SERVER_IF])
        .expect("second IPv4 address");
    hosts
        .server
        .ip(&["addr", "add", &format!("{SECOND_V6}/64"), "dev", TwoHosts::SERVER_IF, "nodad"])
        .expect("second IPv6 address");
    let srv_if = hosts.server.ifindex(TwoHosts::SERVER_IF).unwrap();
    let lo_if = hosts.server.ifindex("lo").unwrap();
    let ifname = |i: u32| match i {
        i if i == srv_if => TwoHosts::SERVER_IF.to_string(),
        i if i == lo_if => "lo".to_string(),
        i => format!("ifindex {i}"),
    };
    let addrs = hosts.server.run_in(iface_addrs).unwrap().expect("server addresses");
    // The interface that holds `a` (127.0.0.0/8 is all on lo, one address listed).
    let owner = |a: IpAddr| -> u32 {
        let a = lookup::unmap(a);
        if a.is_loopback() {
            return lo_if;
        }
        let (name, _) = addrs
            .iter()
            .find(|(_, x)| *x == a)
            .unwrap_or_else(|| panic!("{a} is not an address of the server namespace: {addrs:?}"));
        hosts.server.ifindex(name).unwrap()
    };
    let mut rows: Vec<(Vec<Listen>, From, &'static str)> = Vec::new();
    for listen in single_listeners() {
        for (from, dial) in clients() {
            rows.push((vec![listen], from, dial));
        }
    }
    rows.extend(multi_rows());

    let mut results = Vec::new();
    for (listeners, from, dial) in &rows {
        let daddr: IpAddr = dial.parse().unwrap();
        let fds = listen_all(&hosts.server, listeners);
        let port = local_port(&fds[0]);
        let cookies: Vec<u64> = fds.iter().map(cookie).collect();
        let dump = hosts.server.run_in(dump_listeners).unwrap().expect("sock_diag dump");
        let ingress = match from {
            From::Inside => Ingress::from_inside(owner(daddr)),
            From::Outside => Ingress::from_outside(srv_if),
        };
        let syn = Syn::new(daddr, port, ingress);
        let sk_lookup: SkLookupState = sk_lookup_programs_at(hosts.server.path()).into();
        assert_eq!(sk_lookup, SkLookupState::Attached(Vec::new()), "nothing may steer the lab");
        let lookup = lookup::lookup_in_dump(&syn, &dump, &sk_lookup);
        // The model must have judged exactly our listeners, found through the dump.
        let mut judged: Vec<u64> = lookup.judged.iter().map(|j| j.socket.cookie).collect();
        judged.sort_unstable();
        let mut ours = cookies.clone();
        ours.sort_unstable();
        assert_eq!(judged, ours, "the dump must list every listener of the row on port {port}");
        // Model index → our listener index, through the cookie.
        let ours_of = |i: usize| cookies.iter().position(|&c| c == lookup.judged[i].socket.cookie);
        let (model, allowed): (String, Vec<usize>) = match &lookup.winner {
            Winner::Nobody => ("refused".into(), Vec::new()),
            Winner::One { index } => {
                (format!("takes #{}", ours_of(*index).unwrap()), vec![ours_of(*index).unwrap()])
            }
            Winner::ReuseportGroup { members } => {
                let m: Vec<usize> = members.iter().map(|&i| ours_of(i).unwrap()).collect();
                (format!("one of reuseport group {m:?}"), m)
            }
            Winner::Tied { candidates } => {
                let m: Vec<usize> = candidates.iter().map(|&i| ours_of(i).unwrap()).collect();
                (format!("tie {m:?}"), m)
            }
        };
        let reasons: Vec<String> = lookup
            .judged
            .iter()
            .filter_map(|j| match &j.judgement {
                Judgement::Misses(m) => Some(reason_name(m, &ifname)),
                Judgement::Takes { .. } => None,
            })
            .collect();
        let model = if reasons.is_empty() {
            model
        } else {
            format!("{model} (misses: {})", reasons.join(", "))
        };

        let ns = match from {
            From::Inside => &hosts.server,
            From::Outside => &hosts.client,
        };
        let kernel = connect_and_see(ns, SocketAddr::new(daddr, port), &fds);
        let ok = match &kernel {
            Kernel::Connected(n) => allowed.contains(n),
            Kernel::Refused => allowed.is_empty(),
            Kernel::Other(_) => false,
        };
        results.push(RowResult {
            listeners: listeners.iter().map(Listen::label).collect::<Vec<_>>().join(" + "),
            from: *from,
            dial,
            model,
            kernel: match kernel {
                Kernel::Connected(n) => format!("connected #{n}"),
                Kernel::Refused => "refused".into(),
                Kernel::Other(e) => e,
            },
            ok,
        });
        drop(fds);
    }

    let table = render(&results);
    println!("\n{table}");
    let bad = results.iter().filter(|r| !r.ok).count();
    assert!(results.len() >= 30, "only {} rows", results.len());
    let families: Vec<bool> = rows.iter().map(|(_, _, d)| d.contains(':')).collect();
    assert!(families.contains(&true) && families.contains(&false), "both families needed");
    assert_eq!(
        bad,
        0,
        "{bad} of {} rows: the model differs from the kernel\n{table}",
        results.len()
    );
}

fn reason_name(m: &lookup::Miss, ifname: &dyn Fn(u32) -> String) -> String {
    match m {
        lookup::Miss::Family { .. } => "family".into(),
        lookup::Miss::V6Only { by_address: false } => "v6only".into(),
        lookup::Miss::V6Only { by_address: true } => "v6only (address)".into(),
        lookup::Miss::Address { bound, .. } => format!("address {bound}"),
        lookup::Miss::Device { bound, ingress, .. } => {
            format!("device {}≠{}", ifname(*bound), ifname(*ingress))
        }
        lookup::Miss::OutsideVrf { .. } => "outside vrf".into(),
    }
}

fn render(results: &[RowResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:>3}  {:<44} {:<8} {:<18} {:<46} {:<14} ok",
        "row", "listeners", "client", "dialed", "model", "kernel"
    );
    for (i, r) in results.iter().enumerate() {
        let from = match r.from {
            From::Inside => "inside",
            From::Outside => "outside",
        };
        let _ = writeln!(
            t,
            "{:>3}  {:<44} {:<8} {:<18} {:<46} {:<14} {}",
            i + 1,
            r.listeners,
            from,
            r.dial,
            r.model,
            r.kernel,
            if r.ok { "yes" } else { "NO" }
        );
    }
    t
}

/// Creates the row's listeners in `ns`: the first on a kernel-chosen port, the others on it.
/// The kernel picks a port free for the first listener's address only: an earlier row's
/// client socket (TIME_WAIT) may still hold it on another address of the namespace (seen:
/// `[::1]` v6only, EADDRINUSE on the port chosen for 127.0.0.1). Then the row starts over on
/// a new port; any other error, or 20 such ports in a row, fails.
fn listen_all(ns: &NetNs, listeners: &[Listen]) -> Vec<OwnedFd> {
    'port: for _ in 0..20 {
        let mut fds: Vec<OwnedFd> = Vec::new();
        for spec in listeners {
            let port = fds.first().map_or(0, local_port);
            let spec = *spec;
            match ns.run_in(move || listen_one(&spec, port)).unwrap() {
                Ok(fd) => fds.push(fd),
                Err(e) if port != 0 && e.kind() == io::ErrorKind::AddrInUse => continue 'port,
                Err(e) => panic!("listening on {} port {port}: {e}", spec.label()),
            }
        }
        return fds;
    }
    panic!("20 kernel-chosen ports in a row were in use on another address of the namespace")
}

fn listen_one(spec: &Listen, port: u16) -> io::Result<OwnedFd> {
    let device = match spec.dev {
        Dev::None => None,
        Dev::Srv => Some(TwoHosts::SERVER_IF),
        Dev::Lo => Some("lo"),
    };
    sockets::tcp_listen(&ListenSpec {
        v6only: spec.v6only,
        device,
        reuseport: spec.reuseport,
        ..ListenSpec::on(SocketAddr::new(spec.addr.parse().unwrap(), port))
    })
}

fn local_port(fd: &OwnedFd) -> u16 {
    // SAFETY: sockaddr_storage is plain old data.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: st/len describe a writable buffer.
    let r = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut st).cast(), &mut len) };
    assert_eq!(r, 0, "getsockname: {}", io::Error::last_os_error());
    // sin_port and sin6_port sit at the same offset, in network order.
    // SAFETY: the kernel filled a sockaddr_in or sockaddr_in6.
    let sin: libc::sockaddr_in = unsafe { std::ptr::read((&raw const st).cast()) };
    u16::from_be(sin.sin_port)
}

fn cookie(fd: &OwnedFd) -> u64 {
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: v/len describe a writable u64.
    let r = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_COOKIE, (&raw mut v).cast(), &mut len)
    };
    assert_eq!(r, 0, "SO_COOKIE: {}", io::Error::last_os_error());
    v
}

/// Connects from `ns` and, when connected, finds the listener whose queue holds the connection.
fn connect_and_see(ns: &NetNs, to: SocketAddr, fds: &[OwnedFd]) -> Kernel {
    let res = ns.run_in(move || TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)).unwrap();
    match res {
        Ok(stream) => {
            let which = wait_accepted(fds);
            drop(stream);
            match which {
                Some(n) => Kernel::Connected(n),
                None => Kernel::Other(format!(
                    "connected, but no listener had it within {ACCEPT_TIMEOUT_MS} ms"
                )),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // A refusal leaves every queue empty; a queued connection would contradict it.
            match wait_accepted_within(fds, 0) {
                None => Kernel::Refused,
                Some(n) => Kernel::Other(format!("refused, yet listener #{n} has a connection")),
            }
        }
        Err(e) => Kernel::Other(format!("connect: {e}")),
    }
}

fn wait_accepted(fds: &[OwnedFd]) -> Option<usize> {
    wait_accepted_within(fds, ACCEPT_TIMEOUT_MS)
}

/// Polls every listener for a queued connection, accepts it and returns whose it was.
fn wait_accepted_within(fds: &[OwnedFd], timeout_ms: i32) -> Option<usize> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 })
        .collect();
    // SAFETY: polls is a valid array of pollfd of the given length.
    let n = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, timeout_ms) };
    if n <= 0 {
        return None;
    }
    let i = polls.iter().position(|p| p.revents & libc::POLLIN != 0)?;
    // SAFETY: accept on a readable listener; the new fd is owned and closed right away.
    let c = unsafe {
        libc::accept4(
            fds[i].as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if c >= 0 {
        // SAFETY: a fresh fd.
        drop(unsafe { OwnedFd::from_raw_fd(c) });
    }
    Some(i)
}
