//! Per-namespace TCP/IP counters (`/proc/net/netstat`, `/proc/net/snmp`) that expose SILENT
//! drops.
//!
//! A full accept or SYN queue makes `tcp_conn_request` give up on a SYN, which the listener
//! then frees with `consume_skb()`: no `kfree_skb` drop event fires, the client just
//! retransmits its SYN. eBPF drop tracing alone therefore misses the most common "server
//! listens but clients time out" cause; these counters show it.
//! These MIB counters are kept per network namespace: `/proc/<pid>/net/*` shows the namespace
//! of `<pid>`'s *thread*, so a namespace is read by entering it on a thread and reading
//! `/proc/thread-self/net/*` (`/proc/self/net` would show the main thread's namespace).
use std::{collections::BTreeMap, fs, io, path::Path};

use serde::Serialize;

use super::enter;

/// Parses the pair-of-lines format shared by /proc/net/netstat and /proc/net/snmp:
///
/// ```text
/// TcpExt: SyncookiesSent SyncookiesRecv ...
/// TcpExt: 0 0 ...
/// ```
///
/// into `"TcpExt.SyncookiesSent" → 0`. Values that are not unsigned (`Tcp.MaxConn` is -1 by
/// definition) are left out; a header without its value line is ignored.
pub fn parse(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        let Some((section, names)) = header.split_once(':') else { continue };
        let Some(values) = lines.next() else { break };
        let Some((value_section, values)) = values.split_once(':') else { continue };
        if value_section != section {
            // Out of step (should not happen): skip rather than mislabel every value.
            continue;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = value.parse::<u64>() {
                out.insert(format!("{section}.{name}"), v);
            }
        }
    }
    out
}

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $field:ident = $key:literal, )*) => {
        /// Counters of one network namespace that explain why connections to a listener fail.
        /// Counters the running kernel does not have read as 0.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct TcpCounters {
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        impl TcpCounters {
            /// `(field, /proc key)` of every counter, e.g. `("listen_overflows",
            /// "TcpExt.ListenOverflows")`, for display.
            pub const KEYS: &[(&str, &str)] = &[$( (stringify!($field), $key), )*];

            /// Picks the counters out of [`parse`]d netstat + snmp maps.
            pub fn from_map(map: &BTreeMap<String, u64>) -> TcpCounters {
                TcpCounters { $( $field: map.get($key).copied().unwrap_or(0), )* }
            }

            /// What happened since `earlier` (saturating: a counter never runs backwards in
            /// one namespace, but two readings of different namespaces must not panic).
            pub fn delta(&self, earlier: &Self) -> TcpCounters {
                TcpCounters { $( $field: self.$field.saturating_sub(earlier.$field), )* }
            }

            /// `(field, value)` pairs, in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$( (stringify!($field), self.$field), )*].into_iter()
            }
        }
    };
}

counters! {
    /// SYNs (or handshake-completing ACKs) dropped because the listener's accept queue was
    /// full: the application does not call accept() fast enough or its backlog is too small.
    listen_overflows = "TcpExt.ListenOverflows",
    /// Every drop at a listening socket, overflows included (also: no memory, bad request).
    listen_drops = "TcpExt.ListenDrops",
    /// SYNs dropped because the SYN (request) queue was full and SYN cookies are off.
    tcp_req_q_full_drop = "TcpExt.TCPReqQFullDrop",
    /// SYN queue full, answered with a SYN cookie instead of being dropped.
    tcp_req_q_full_do_cookies = "TcpExt.TCPReqQFullDoCookies",
    /// SYN cookies sent (SYN flood or overflowing SYN queue).
    syncookies_sent = "TcpExt.SyncookiesSent",
    /// Valid SYN-cookie ACKs received (connections established from a cookie).
    syncookies_recv = "TcpExt.SyncookiesRecv",
    /// ACKs whose SYN cookie did not validate: those clients get no connection.
    syncookies_failed = "TcpExt.SyncookiesFailed",
    /// Segments dropped because the socket's backlog was full while the application held it.
    tcp_backlog_drop = "TcpExt.TCPBacklogDrop",
    /// Segments dropped by IP_MINTTL / IPV6_MINHOPCOUNT (a GTSM-protected listener).
    tcp_min_ttl_drop = "TcpExt.TCPMinTTLDrop",
    /// Segments dropped by the PAWS timestamp check on an established connection (e.g. NAT
    /// hiding clients with unsynchronised timestamp clocks).
    paws_estab = "TcpExt.PAWSEstab",
    /// Segments from a peer without the required TCP-MD5 signature, dropped silently.
    tcp_md5_not_found = "TcpExt.TCPMD5NotFound",
    /// Segments with an MD5 signature the socket did not expect, dropped silently.
    tcp_md5_unexpected = "TcpExt.TCPMD5Unexpected",
    /// Segments with a wrong MD5 signature, dropped silently.
    tcp_md5_failure = "TcpExt.TCPMD5Failure",
    /// SYNs retransmitted by this namespace's clients: their SYNs (or the SYN-ACKs) are lost.
    tcp_syn_retrans = "TcpExt.TCPSynRetrans",
    /// Connections accepted into a listener's queue (handshake completed).
    passive_opens = "Tcp.PassiveOpens",
    /// Connections initiated (SYN sent) by this namespace.
    active_opens = "Tcp.ActiveOpens",
    /// Connection attempts that failed: SYN-SENT/SYN-RECV reset or timed out.
    attempt_fails = "Tcp.AttemptFails",
    /// Segments received with errors (bad checksum, bad header).
    in_errs = "Tcp.InErrs",
    /// Segments received with a bad checksum.
    in_csum_errors = "Tcp.InCsumErrors",
    /// RSTs sent, e.g. a SYN to a port nobody listens on (connection refused).
    out_rsts = "Tcp.OutRsts",
    /// IP packets for an address that is not local here (client aimed at the wrong IP, no
    /// forwarding).
    ip_in_addr_errors = "Ip.InAddrErrors",
    /// IP packets dropped for lack of a route.
    ip_in_no_routes = "IpExt.InNoRoutes",
}

/// Reads netstat and snmp under `dir` (a `/proc/<pid>/net` directory).
fn read_proc_net(dir: &Path) -> io::Result<TcpCounters> {
    let mut map = BTreeMap::new();
    for file in ["netstat", "snmp"] {
        let path = dir.join(file);
        let text = fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
        map.append(&mut parse(&text));
    }
    Ok(TcpCounters::from_map(&map))
}

/// The counters of the calling thread's network namespace.
pub fn read_current_thread() -> io::Result<TcpCounters> {
    read_proc_net(Path::new("/proc/thread-self/net"))
}

/// The counters of the namespace at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`), read by
/// entering it on a short-lived thread, so namespaces without any process work too.
pub fn read_netns(path: &Path) -> io::Result<TcpCounters> {
    enter::in_netns(path, read_current_thread)?
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of this machine's /proc/net/netstat (6.18), shortened.
    const NETSTAT: &str = "\
TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled TW PAWSActive PAWSEstab ListenOverflows ListenDrops TCPBacklogDrop TCPMinTTLDrop TCPReqQFullDoCookies TCPReqQFullDrop TCPSynRetrans TCPMD5NotFound
TcpExt: 1 2 3 0 0 39 0 7 5 6 8 9 10 11 12 13
IpExt: InNoRoutes InTruncatedPkts InOctets
IpExt: 14 0 2014765808
MPTcpExt: MPCapableSYNRX MPCapableSYNTX
MPTcpExt: 0 0
";
    const SNMP: &str = "\
Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors
Ip: 2 64 41142 0 15
IcmpMsg: InType3
IcmpMsg: 1
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 76 2 3 33 0 40964 23876 0 4 38 5
Udp: InDatagrams NoPorts
Udp: 177 0
";

    fn sample() -> TcpCounters {
        let mut map = parse(NETSTAT);
        map.append(&mut parse(SNMP));
        TcpCounters::from_map(&map)
    }

    #[test]
    fn parses_section_dot_name() {
        let m = parse(NETSTAT);
        assert_eq!(m["TcpExt.ListenOverflows"], 5);
        assert_eq!(m["TcpExt.TW"], 39);
        assert_eq!(m["IpExt.InOctets"], 2014765808);
        assert_eq!(m["MPTcpExt.MPCapableSYNTX"], 0);
        let s = parse(SNMP);
        assert_eq!(s["Tcp.PassiveOpens"], 2);
        assert_eq!(s["IcmpMsg.InType3"], 1);
        // MaxConn is -1: not a counter.
        assert!(!s.contains_key("Tcp.MaxConn"));
    }

    #[test]
    fn picks_the_counters() {
        let c = sample();
        assert_eq!(
            (c.syncookies_sent, c.syncookies_recv, c.syncookies_failed, c.paws_estab),
            (1, 2, 3, 7)
        );
        assert_eq!((c.listen_overflows, c.listen_drops, c.tcp_backlog_drop), (5, 6, 8));
        assert_eq!(
            (c.tcp_min_ttl_drop, c.tcp_req_q_full_do_cookies, c.tcp_req_q_full_drop),
            (9, 10, 11)
        );
        assert_eq!((c.tcp_syn_retrans, c.tcp_md5_not_found, c.ip_in_no_routes), (12, 13, 14));
        assert_eq!(
            (c.ip_in_addr_errors, c.active_opens, c.passive_opens, c.attempt_fails),
            (15, 76, 2, 3)
        );
        assert_eq!((c.in_errs, c.out_rsts, c.in_csum_errors), (4, 38, 5));
        // Not in this (shortened) sample: 0.
        assert_eq!(c.tcp_md5_failure, 0);
        assert_eq!(c.iter().count(), TcpCounters::KEYS.len());
    }

    #[test]
    fn malformed_input_is_skipped_not_mislabelled() {
        // A header whose value line belongs to another section, a lone header, junk.
        let m = parse("TcpExt: A B\nIpExt: 1 2\njunk\nTcp: X\n");
        assert!(m.is_empty(), "{m:?}");
        // Fewer values than names: the extra names are dropped.
        let m = parse("Tcp: A B C\nTcp: 1 2\n");
        assert_eq!((m.len(), m["Tcp.B"]), (2, 2));
    }

    #[test]
    fn delta_subtracts_and_saturates() {
        let later = sample();
        let mut earlier = later;
        earlier.listen_overflows = 2;
        earlier.out_rsts = 100;
        let d = later.delta(&earlier);
        assert_eq!((d.listen_overflows, d.out_rsts, d.passive_opens), (3, 0, 0));
    }

    #[test]
    fn this_machine_parses() {
        let c = read_current_thread().unwrap();
        let raw = parse(&fs::read_to_string("/proc/thread-self/net/netstat").unwrap());
        // These exist on every kernel reach supports; a format change would lose them.
        for key in ["TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPReqQFullDrop"] {
            assert!(raw.contains_key(key), "{key}");
        }
        assert_eq!(c.listen_overflows, raw["TcpExt.ListenOverflows"]);
    }

    mod live {
        use std::{
            net::{SocketAddr, TcpListener},
            os::fd::{AsRawFd, FromRawFd, OwnedFd},
            time::{Duration, Instant},
        };

        use super::super::*;

        const SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";

        /// A non-blocking connect(2): returns at once (EINPROGRESS), so a SYN the listener
        /// drops costs no waiting; the socket closes when the returned fd is dropped.
        fn start_connect(to: SocketAddr) -> io::Result<OwnedFd> {
            let SocketAddr::V4(to) = to else { unreachable!("the listener is IPv4") };
            // SAFETY: plain socket(2); ownership moves into the OwnedFd right after.
            let fd = unsafe {
                libc::socket(
                    libc::AF_INET,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd was just created and is owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: to.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*to.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sin is a valid sockaddr_in for the duration of the call.
            let r = unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    (&sin as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            let err = io::Error::last_os_error();
            if r < 0 && err.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(err);
            }
            Ok(fd)
        }

        /// The namespace path of the calling thread, usable from other threads.
        fn own_netns_path() -> std::path::PathBuf {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            format!("/proc/{}/task/{tid}/ns/net", std::process::id()).into()
        }

        #[test]
        fn a_full_accept_queue_shows_up_only_in_its_namespace() {
            let host_syncookies = fs::read_to_string(SYNCOOKIES).unwrap();
            let host_before = read_current_thread().unwrap();
            let inside =
                enter::in_new_netns(|| -> io::Result<(TcpCounters, TcpCounters, TcpCounters)> {
                    enter::loopback_up()?;
                    // tcp_syncookies is per namespace and /proc/sys/net follows the opener's
                    // namespace: this write changes the scratch namespace only (checked below).
                    // Cookies would answer the SYNs instead of dropping them.
                    fs::write(SYNCOOKIES, "0")?;
                    let fresh = read_current_thread()?;
                    let listener = TcpListener::bind("127.0.0.1:0")?;
                    // listen(2) again on a listening socket just changes its backlog; 0 lets one
                    // connection wait in the accept queue, so the next ones overflow it.
                    // SAFETY: valid listening fd.
                    if unsafe { libc::listen(listener.as_raw_fd(), 0) } < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let addr = listener.local_addr()?;
                    let clients: Vec<OwnedFd> =
                        (0..8).map(|_| start_connect(addr)).collect::<io::Result<_>>()?;
                    // Loopback delivers SYNs within connect(); poll briefly for the counters anyway.
                    let deadline = Instant::now() + Duration::from_secs(5);
                    let mut after = read_current_thread()?;
                    while after.listen_overflows == 0 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(50));
                        after = read_current_thread()?;
                    }
                    // Read the same namespace again the way a caller outside it would.
                    let via_path = read_netns(&own_netns_path())?;
                    drop(clients);
                    Ok((fresh, after, via_path))
                });
            let (fresh, after, via_path) = inside.unwrap().unwrap();
            let host_after = read_current_thread().unwrap();

            assert_eq!(
                fs::read_to_string(SYNCOOKIES).unwrap(),
                host_syncookies,
                "host sysctl touched"
            );
            // A new namespace starts from zero: a non-zero reading would be the host's.
            assert_eq!(fresh, TcpCounters::default());
            let d = after.delta(&fresh);
            assert!(d.listen_overflows >= 1, "{d:?}");
            assert!(d.listen_drops >= d.listen_overflows, "{d:?}");
            assert!(d.passive_opens >= 1, "the first client fit in the queue: {d:?}");
            assert!(via_path.listen_overflows >= after.listen_overflows, "{via_path:?}");
            // The host's counters did not see this (had we read the host inside, its window,
            // which encloses ours, would have grown at least as much).
            let host = host_after.delta(&host_before);
            assert!(host.listen_overflows < d.listen_overflows, "host {host:?} vs inside {d:?}");
        }
    }
}
