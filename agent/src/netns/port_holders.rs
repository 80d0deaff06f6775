//! Who holds a TCP port in a namespace without listening on it: the sockets a server's bind
//! collides with when it fails with EADDRINUSE.
//!
//! "Nothing listens on 8080" usually has a second half: the server tried, and its bind failed
//! because something else already owns the port — a socket bound but never put in LISTEN (a
//! crashed start-up, a client that bound its source port), a live connection, or connections in
//! TIME_WAIT left by the previous run of a server that does not set SO_REUSEADDR. sock_diag
//! lists all of them; bound-only sockets only since Linux 6.8 (TCP_BOUND_INACTIVE): older
//! kernels return none of those (nor does `ss` or /proc/net/tcp show them), so what reach says
//! about a collision there names that blind spot ([`BOUND_ONLY_HIDDEN`]).
use std::{io, net::IpAddr, path::Path};

use serde::Serialize;

use super::{
    enter,
    owners::{self, Owner},
    sock_diag::{self, DiagMsg, Family, TCP_CLOSE, TCP_LISTEN},
};
use crate::output::endpoint::endpoint;

/// Not a real socket state: sock_diag reports sockets that are bound but neither listening nor
/// connected with it (Linux ≥ 6.8; older kernels ignore the bit).
const TCP_BOUND_INACTIVE: u8 = 13;
/// Every state up to and including TCP_BOUND_INACTIVE.
const ALL_STATES: u32 = (1 << (TCP_BOUND_INACTIVE + 1)) - 1;

/// Said where a bound-only socket may be what holds a port but the kernel cannot list it.
pub const BOUND_ONLY_HIDDEN: &str = "sockets bound without listening are visible only on \
     Linux ≥ 6.8; this kernel cannot list them (nor can `ss`)";

/// Whether this kernel's sock_diag lists bound-only sockets (TCP_BOUND_INACTIVE, Linux 6.8).
/// The kernel ignores the state bit it does not know, so only its version tells.
pub fn bound_only_visible() -> bool {
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 8, 0))
}

/// One socket holding the port, listeners excepted (reach reports those as listeners).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortHolder {
    pub family: Family,
    /// The local endpoint, e.g. `0.0.0.0:8080` or `[::1]:8080`.
    pub local: String,
    /// `bound` (bound, not listening), `time_wait`, `established`, `syn_sent`, …
    pub state: &'static str,
    /// The remote endpoint of a connected socket.
    pub peer: Option<String>,
    /// Processes holding it; empty for TIME_WAIT (no process owns those) or an exited owner.
    pub owners: Vec<Owner>,
    #[serde(skip)]
    pub inode: u64,
}

impl PortHolder {
    /// From one sock_diag message, if it is a non-listening socket on `port`.
    fn from_msg(m: DiagMsg<'_>, port: u16) -> Option<Self> {
        if m.port != port || m.state == TCP_LISTEN {
            return None;
        }
        let shown = |a: IpAddr| a.to_canonical().to_string();
        let connected = m.peer_port != 0 && !m.peer.is_unspecified();
        Some(Self {
            family: m.family,
            local: endpoint(Some(&shown(m.addr)), m.port),
            state: state_name(m.state),
            peer: connected.then(|| endpoint(Some(&shown(m.peer)), m.peer_port)),
            owners: Vec::new(),
            inode: m.inode,
        })
    }

    /// "pid 7 (api)" / "pids 7, 9 (api)" / "no process"
    pub fn owned_by(&self) -> String {
        match self.owners.as_slice() {
            [] => "no process".into(),
            [o] => format!("pid {} ({})", o.pid, o.comm),
            many => {
                let pids: Vec<String> = many.iter().map(|o| o.pid.to_string()).collect();
                format!("pids {} ({})", pids.join(", "), many[0].comm)
            }
        }
    }

    /// `tcp 0.0.0.0:8080 bound, not listening` / `tcp 10.0.0.1:8080 → 10.0.0.2:5000 time_wait`
    pub fn describe(&self) -> String {
        let state = match self.state {
            "bound" => "bound, not listening",
            s => s,
        };
        match &self.peer {
            Some(p) => format!("tcp {} → {p} {state}", self.local),
            None => format!("tcp {} {state}", self.local),
        }
    }
}

fn state_name(state: u8) -> &'static str {
    match state {
        1 => "established",
        2 => "syn_sent",
        3 | 12 => "syn_recv",
        4 => "fin_wait1",
        5 => "fin_wait2",
        6 => "time_wait",
        // A TCP socket in CLOSE that sock_diag lists at all is bound to the port.
        TCP_CLOSE | TCP_BOUND_INACTIVE => "bound",
        8 => "close_wait",
        9 => "last_ack",
        11 => "closing",
        _ => "unknown",
    }
}

/// The non-listening TCP sockets on `port` in the calling thread's namespace, sorted by state
/// and endpoint, without owners.
pub fn port_holders(port: u16) -> io::Result<Vec<PortHolder>> {
    let mut all = sock_diag::dump_tcp(ALL_STATES, port, |m| PortHolder::from_msg(m, port))?;
    all.sort_by(|a, b| (a.state, &a.local, &a.peer).cmp(&(b.state, &b.local, &b.peer)));
    Ok(all)
}

/// [`port_holders`] of the namespace at `ns_path`, joined with the processes that own them.
pub fn port_holders_in(ns_path: &Path, port: u16) -> io::Result<Vec<PortHolder>> {
    let mut holders = enter::in_netns(ns_path, move || port_holders(port))??;
    if holders.iter().any(|h| h.inode != 0) {
        let owners = owners::socket_owners();
        for h in &mut holders {
            h.owners = owners.get(&h.inode).cloned().unwrap_or_default();
        }
    }
    Ok(holders)
}

#[cfg(test)]
mod tests {
    use std::{
        net::{SocketAddr, TcpListener, TcpStream},
        os::fd::{FromRawFd, OwnedFd},
        time::{Duration, Instant},
    };

    use super::*;
    use crate::netns::enter::{in_new_netns, loopback_up};

    /// A TCP socket bound to `addr` without SO_REUSEADDR and never listening.
    fn bound_only(addr: SocketAddr) -> OwnedFd {
        let SocketAddr::V4(v4) = addr else { panic!("IPv4 only") };
        // SAFETY: plain socket calls on a fresh fd, owned by the returned OwnedFd.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0);
            let owned = OwnedFd::from_raw_fd(fd);
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_port = v4.port().to_be();
            sa.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            let len = size_of::<libc::sockaddr_in>() as u32;
            assert_eq!(libc::bind(fd, (&raw const sa).cast(), len), 0);
            owned
        }
    }

    fn states(h: &[PortHolder]) -> Vec<(&'static str, String, Option<String>)> {
        h.iter().map(|h| (h.state, h.local.clone(), h.peer.clone())).collect()
    }

    #[test]
    fn names_states_and_endpoints() {
        let msg = |state: u8| PortHolder {
            family: Family::V4,
            local: "0.0.0.0:8080".into(),
            state: state_name(state),
            peer: None,
            owners: vec![],
            inode: 0,
        };
        assert_eq!(msg(13).describe(), "tcp 0.0.0.0:8080 bound, not listening");
        assert_eq!(msg(6).state, "time_wait");
        assert_eq!(msg(99).state, "unknown");
        let mut h = msg(1);
        h.peer = Some("10.0.0.2:5000".into());
        assert_eq!(h.describe(), "tcp 0.0.0.0:8080 → 10.0.0.2:5000 established");
        assert_eq!(h.owned_by(), "no process");
        h.owners = vec![Owner { pid: 7, comm: "api".into() }, Owner { pid: 9, comm: "api".into() }];
        assert_eq!(h.owned_by(), "pids 7, 9 (api)");
    }

    /// (major, minor) of `uname -r`, read here rather than through reach's own version check.
    fn kernel_version() -> (u32, u32) {
        let release = crate::kernel::release::current().release;
        let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse());
        match (numbers.next(), numbers.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
            _ => panic!("release {release:?} does not start with MAJOR.MINOR"),
        }
    }

    #[test]
    fn bound_only_visibility_follows_the_kernel_version() {
        assert_eq!(bound_only_visible(), kernel_version() >= (6, 8));
    }

    /// A real scratch namespace: the bound-only socket (from Linux 6.8; older kernels cannot
    /// list it), a connection's both ends and, after the active close, its TIME_WAIT are
    /// holders of the port; the listener and other ports are not.
    #[test]
    fn lists_bound_connected_and_time_wait_sockets_on_the_port_only() {
        in_new_netns(|| {
            loopback_up().unwrap();
            let port = 47_311;
            let _bound = bound_only(SocketAddr::from(([127, 0, 0, 1], port)));
            assert!(
                TcpListener::bind(("127.0.0.1", port)).is_err(),
                "the bound-only socket must block a second bind"
            );
            let h = port_holders(port).unwrap();
            if kernel_version() >= (6, 8) {
                assert_eq!(
                    states(&h),
                    vec![("bound", format!("127.0.0.1:{port}"), None)],
                    "{h:#?}"
                );
                assert!(h[0].inode != 0);
            } else {
                assert_eq!(states(&h), vec![], "Linux < 6.8 cannot list bound-only sockets");
            }

            // A listener on another port and its connection: the client's ephemeral port is
            // not ours, the listener is not a holder, the accepted socket on that port is.
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let lport = l.local_addr().unwrap().port();
            let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (server_side, _) = l.accept().unwrap();
            let cport = client.local_addr().unwrap().port();
            let h = port_holders(lport).unwrap();
            let peer = format!("127.0.0.1:{cport}");
            assert_eq!(
                states(&h),
                vec![("established", format!("127.0.0.1:{lport}"), Some(peer.clone()))],
                "{h:#?}"
            );
            // The server closes first: its side goes to TIME_WAIT once the client closes too.
            drop(server_side);
            drop(client);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let h = port_holders(lport).unwrap();
                if h.iter().any(|h| h.state == "time_wait") {
                    let tw = h.iter().find(|h| h.state == "time_wait").unwrap();
                    assert_eq!((tw.inode, tw.peer.as_deref()), (0, Some(peer.as_str())));
                    break;
                }
                assert!(Instant::now() < deadline, "no TIME_WAIT seen within 10 s: {h:#?}");
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .unwrap();
    }

    /// The namespace of a scratch thread, entered by path like any other: the accepted end of a
    /// connection (a holder on every kernel) is joined with this process as its owner.
    #[test]
    fn owners_are_joined_in_another_namespace() {
        in_new_netns(|| {
            loopback_up().unwrap();
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let (_server_side, _) = l.accept().unwrap();
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let ns = format!("/proc/{}/task/{tid}/ns/net", std::process::id());
            let h = port_holders_in(Path::new(&ns), port).unwrap();
            assert_eq!(h.len(), 1, "{h:#?}");
            assert_eq!(h[0].state, "established", "{h:#?}");
            assert_eq!(h[0].owners.first().map(|o| o.pid), Some(std::process::id()), "{h:#?}");
        })
        .unwrap();
    }
}
