//! A deterministic set of binds and listens for reach's bind/listen tests, run on the host (in
//! lab namespaces) and inside QEMU guests, where the test harness is not available.
//!
//! `reach-scenario BASE_PORT HOLD_MS` performs, in the calling process's network namespace:
//!   1. TCP 127.0.0.1:BASE          listen(5)   no SO_REUSEADDR
//!   2. TCP 0.0.0.0:BASE+1          listen(6)   SO_REUSEADDR
//!   3. TCP [::]:BASE+2             listen(7)   dual stack
//!   4. TCP 127.0.0.1:BASE          bind → EADDRINUSE
//!   5. UDP 0.0.0.0:BASE+3          bind
//!   6. TCP 127.0.0.1:0             bind (ephemeral port), listen(8)
//!   7. UDP 0.0.0.0:BASE+4          bind, SO_BINDTODEVICE=lo + SO_REUSEPORT
//!   8. TCP 192.0.2.1:BASE+5        bind with IP_FREEBIND (an address this host does not have)
//!
//! `reach-scenario burst N` instead binds N UDP sockets to 127.0.0.1:0 as fast as it can (each
//! closed at once) and prints {"pid":..,"binds":N}: the load for the lost-event accounting test.
//!
//! `reach-scenario hold-fds SECS` raises its open-file limit to the hard limit, fills it with
//! descriptors of /dev/null, prints `ready` and sleeps SECS seconds: processes like that make
//! reach's listener snapshot (which reads every process's descriptors) slow, as on a busy host.
//!
//! then holds the sockets HOLD_MS milliseconds and closes them (listener closes), and prints
//! one JSON line: {"pid":..,"netns":..,"ephemeral_port":..}.
use std::{mem, os::unix::fs::MetadataExt, thread, time::Duration};

fn check(r: i32, what: &str) -> i32 {
    if r < 0 {
        eprintln!("reach-scenario: {what}: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    r
}

/// Socket options set before bind.
#[derive(Default, Clone, Copy)]
struct Opts {
    reuseaddr: bool,
    reuseport: bool,
    freebind: bool,
    bind_to_lo: bool,
}

fn setopt(fd: i32, level: i32, name: i32, what: &str) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option value.
    check(unsafe { libc::setsockopt(fd, level, name, (&raw const one).cast(), 4) }, what);
}

/// socket + options + bind; returns (fd, bind errno or 0).
fn bind(family: i32, ty: i32, addr: &str, port: u16, opts: Opts) -> (i32, i32) {
    // SAFETY: plain socket syscalls on values we own.
    unsafe {
        let fd = check(libc::socket(family, ty | libc::SOCK_CLOEXEC, 0), "socket");
        if opts.reuseaddr {
            setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR");
        }
        if opts.reuseport {
            setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT");
        }
        if opts.freebind {
            setopt(fd, libc::IPPROTO_IP, libc::IP_FREEBIND, "IP_FREEBIND");
        }
        if opts.bind_to_lo {
            let dev = b"lo\0";
            check(
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_BINDTODEVICE,
                    dev.as_ptr().cast(),
                    3,
                ),
                "SO_BINDTODEVICE",
            );
        }
        let r = if family == libc::AF_INET {
            let mut sa: libc::sockaddr_in = mem::zeroed();
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_port = port.to_be();
            sa.sin_addr.s_addr =
                u32::from_ne_bytes(addr.parse::<std::net::Ipv4Addr>().unwrap().octets());
            libc::bind(fd, (&raw const sa).cast(), mem::size_of::<libc::sockaddr_in>() as u32)
        } else {
            let mut sa: libc::sockaddr_in6 = mem::zeroed();
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_port = port.to_be();
            sa.sin6_addr.s6_addr = addr.parse::<std::net::Ipv6Addr>().unwrap().octets();
            libc::bind(fd, (&raw const sa).cast(), mem::size_of::<libc::sockaddr_in6>() as u32)
        };
        (fd, if r == 0 { 0 } else { *libc::__errno_location() })
    }
}

fn listen(fd: i32, backlog: i32) {
    // SAFETY: listen on our fd.
    check(unsafe { libc::listen(fd, backlog) }, "listen");
}

fn local_port(fd: i32) -> u16 {
    // SAFETY: getsockname into a correctly sized buffer.
    unsafe {
        let mut sa: libc::sockaddr_in = mem::zeroed();
        let mut len = mem::size_of::<libc::sockaddr_in>() as u32;
        check(libc::getsockname(fd, (&raw mut sa).cast(), &mut len), "getsockname");
        u16::from_be(sa.sin_port)
    }
}

fn burst(n: u32) {
    for _ in 0..n {
        let (fd, e) = bind(libc::AF_INET, libc::SOCK_DGRAM, "127.0.0.1", 0, Opts::default());
        assert_eq!(e, 0, "burst bind");
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
    }
    println!("{{\"pid\":{},\"binds\":{n}}}", std::process::id());
}

fn hold_fds(secs: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on our own process limits with a valid struct.
    unsafe {
        check(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), "getrlimit");
        lim.rlim_cur = lim.rlim_max.min(1 << 20);
        check(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), "setrlimit");
    }
    let mut held = Vec::new();
    // Leave room for stdio and the runtime's own descriptors.
    for _ in 0..lim.rlim_cur.saturating_sub(64) {
        match std::fs::File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(_) => break,
        }
    }
    println!("ready {}", held.len());
    thread::sleep(Duration::from_secs(secs));
}

/// The subcommand's one numeric argument; exits 2 with `usage` when it is missing or bad.
fn number_arg<T: std::str::FromStr>(args: &[String], usage: &str) -> T {
    args.get(2).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: reach-scenario {usage}");
        std::process::exit(2);
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("hold-fds") => return hold_fds(number_arg(&args, "hold-fds SECS")),
        Some("burst") => return burst(number_arg(&args, "burst N")),
        _ => {}
    }
    let (Some(base), Some(hold)) = (
        args.get(1).and_then(|a| a.parse::<u16>().ok()),
        args.get(2).and_then(|a| a.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: reach-scenario BASE_PORT HOLD_MS");
        std::process::exit(2);
    };
    let mut fds = Vec::new();
    let none = Opts::default();
    let (a, e) = bind(libc::AF_INET, libc::SOCK_STREAM, "127.0.0.1", base, none);
    assert_eq!(e, 0, "bind 127.0.0.1:{base}");
    listen(a, 5);
    let (b, e) = bind(
        libc::AF_INET,
        libc::SOCK_STREAM,
        "0.0.0.0",
        base + 1,
        Opts { reuseaddr: true, ..none },
    );
    assert_eq!(e, 0);
    listen(b, 6);
    let (c, e) = bind(libc::AF_INET6, libc::SOCK_STREAM, "::", base + 2, none);
    assert_eq!(e, 0);
    listen(c, 7);
    let (d, e) = bind(libc::AF_INET, libc::SOCK_STREAM, "127.0.0.1", base, none);
    assert_eq!(e, libc::EADDRINUSE, "second bind must fail with EADDRINUSE");
    let (u, e) = bind(libc::AF_INET, libc::SOCK_DGRAM, "0.0.0.0", base + 3, none);
    assert_eq!(e, 0);
    let (f, e) = bind(libc::AF_INET, libc::SOCK_STREAM, "127.0.0.1", 0, none);
    assert_eq!(e, 0);
    let ephemeral = local_port(f);
    listen(f, 8);
    let (g, e) = bind(
        libc::AF_INET,
        libc::SOCK_DGRAM,
        "0.0.0.0",
        base + 4,
        Opts { reuseport: true, bind_to_lo: true, ..none },
    );
    assert_eq!(e, 0, "SO_BINDTODEVICE + SO_REUSEPORT bind");
    let (h, e) = bind(
        libc::AF_INET,
        libc::SOCK_STREAM,
        "192.0.2.1",
        base + 5,
        Opts { freebind: true, ..none },
    );
    assert_eq!(e, 0, "IP_FREEBIND bind of a foreign address");
    fds.extend([a, b, c, d, u, f, g, h]);
    thread::sleep(Duration::from_millis(hold));
    for fd in fds {
        // SAFETY: closing our own fds once.
        unsafe { libc::close(fd) };
    }
    let netns = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).unwrap_or(0);
    println!("{{\"pid\":{},\"netns\":{netns},\"ephemeral_port\":{ephemeral}}}", std::process::id());
}
