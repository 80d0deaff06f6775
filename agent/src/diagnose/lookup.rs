//! A pure model of the kernel's TCP listener lookup for one incoming SYN: given the SYN and every
//! socket listening on its port in the SYN's namespace, which listener the kernel hands the SYN
//! to, and for each one that it passes over, exactly why.
//!
//! This is what lets a diagnosis say "the server listens on 127.0.0.1 (IPv4 only); the client
//! dialed ::1" instead of "nothing listens". The rules mirror, in this order:
//! - `__inet_lookup_listener` (net/ipv4/inet_hashtables.c) and `inet6_lookup_listener`
//!   (net/ipv6/inet6_hashtables.c): an sk_lookup BPF program runs first and may pick any socket;
//!   then the bucket of the exact destination address is searched, and only when it yields
//!   nothing, the wildcard bucket (`INADDR_ANY` / `in6addr_any`). An exact bind therefore always
//!   beats a wildcard one, whatever their scores.
//! - `compute_score` in each of those files: a socket of another netns or port scores -1; for an
//!   IPv4 SYN an `ipv6_only_sock()` scores -1 and an AF_INET6 socket competes with its
//!   `sk_rcv_saddr` (0 for `[::]`, a.b.c.d for `::ffff:a.b.c.d`); for an IPv6 SYN only AF_INET6
//!   sockets compete; the bound address must equal the destination (or be the wildcard in the
//!   wildcard bucket); `inet_sk_bound_dev_eq` must hold; the score is 2 when bound to a device,
//!   else 1, plus 1 for an AF_INET socket taking IPv4 (so `0.0.0.0` beats a dual-stack `[::]`).
//! - `inet_bound_dev_eq` (include/net/inet_sock.h): a device-bound socket takes the SYN when its
//!   device is the ingress device `dif` or, behind an l3mdev (VRF) master, the enslaved device
//!   `sdif`; an unbound one takes it unless it came through a VRF (`sdif != 0`) and
//!   `net.ipv4.tcp_l3mdev_accept` is 0 (the sysctl governs IPv6 too).
//! - `inet_lhash2_lookup` / `inet6_lhash2_lookup`: the first socket with a higher score than any
//!   before it wins, but if it has SO_REUSEPORT, `reuseport_select_sock` picks one member of its
//!   group instead (by a hash of the 4-tuple, or by an SO_ATTACH_REUSEPORT_[CE]BPF program).
//!
//! Not modelled, because sock_diag does not show it: SO_INCOMING_CPU, which adds 1 to the score
//! of a socket whose incoming CPU is the one processing the SYN (only sockets sharing the port
//! through SO_REUSEPORT can ever compete on score, see `winner`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::{
    model::listener_view::ListenerView,
    netns::sock_diag::{Family, Proto, SockEntry},
};

mod describe;
#[cfg(test)]
mod tests;

pub use describe::{Tense, describe, describe_as, describe_listener, explain, explain_as};

/// The SYN as the kernel's lookup sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Syn {
    /// Destination address on the wire. A v4-mapped `::ffff:a.b.c.d` never is one: an AF_INET6
    /// client dialing it sends an IPv4 SYN to a.b.c.d, so [`Syn::new`] unmaps it.
    pub daddr: IpAddr,
    pub dport: u16,
    pub ingress: Ingress,
    /// `net.ipv4.tcp_l3mdev_accept` of the SYN's namespace; matters only behind a VRF.
    pub l3mdev_accept: bool,
}

impl Syn {
    pub fn new(daddr: IpAddr, dport: u16, ingress: Ingress) -> Self {
        Self { daddr: unmap(daddr), dport, ingress, l3mdev_accept: false }
    }

    pub fn family(&self) -> Family {
        match self.daddr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// The interface the kernel's lookup considers the SYN to have arrived on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ingress {
    /// The real ingress device (the kernel's `dif`, or `sdif` behind a VRF).
    pub ifindex: u32,
    /// Whether the SYN came over loopback (the client runs in the same namespace).
    pub loopback: bool,
    /// The l3mdev (VRF) master `ifindex` is enslaved to, if any.
    pub l3_master: Option<u32>,
}

impl Ingress {
    /// A SYN from outside the namespace, arriving on `ifindex`.
    pub fn from_outside(ifindex: u32) -> Self {
        Self { ifindex, loopback: false, l3_master: None }
    }

    /// A SYN from a client in the same namespace to a local address configured on the
    /// interface `owner` (`lo` for 127.0.0.0/8 and ::1).
    ///
    /// Such a SYN travels over the loopback device, yet the lookup sees the address's owner:
    /// IPv4 `ip_route_output_key_hash_rcu` sets `orig_oif = FIB_RES_OIF(res)` for an RTN_LOCAL
    /// route ("make sure orig_oif points to fib result device even though packet rx/tx happens
    /// over loopback"), which becomes `rt_iif` and so `inet_iif()`; IPv6 `inet6_iif()` is
    /// `IP6CB(skb)->iif`, taken from `ip6_dst_idev(dst)`, and the local route's copy keeps the
    /// idev of the owning interface (`ip6_rt_copy_init`). So a socket bound to `eth0` takes a
    /// local client dialing eth0's address, and one bound to `lo` does not.
    pub fn from_inside(owner: u32) -> Self {
        Self { ifindex: owner, loopback: true, l3_master: None }
    }

    /// `(dif, sdif)` as `tcp_v4_rcv` / `tcp_v6_rcv` pass them to the lookup: behind a VRF the
    /// device is the master and `sdif` the enslaved device (`inet_sdif`, `inet6_sdif`).
    fn dif_sdif(&self) -> (u32, u32) {
        match self.l3_master {
            Some(master) => (master, self.ifindex),
            None => (self.ifindex, 0),
        }
    }
}

/// One listening socket, as far as the lookup cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    pub family: Family,
    /// Bound address as sock_diag reports it: `::ffff:a.b.c.d` for an AF_INET6 socket bound to
    /// a v4-mapped address.
    pub addr: IpAddr,
    pub port: u16,
    /// AF_INET6 only: IPV6_V6ONLY (the kernel also sets it when binding one IPv6 address).
    pub v6only: Option<bool>,
    /// SO_BINDTODEVICE ifindex, 0 when unbound.
    pub bound_dev_if: u32,
    /// Kernel socket cookie: what ties a judgement back to its listener.
    pub cookie: u64,
}

impl Socket {
    /// A TCP listener from the dump; `None` for UDP sockets.
    pub fn from_entry(e: &SockEntry) -> Option<Self> {
        (e.proto == Proto::Tcp).then_some(Self {
            family: e.family,
            addr: e.addr,
            port: e.port,
            v6only: e.v6only,
            bound_dev_if: e.bound_dev_if,
            cookie: e.cookie,
        })
    }

    /// A TCP listener as `reach why` holds it; `None` for UDP or an unparsable or inconsistent
    /// address.
    pub fn from_view(v: &ListenerView) -> Option<Self> {
        let family = match v.family {
            "ipv4" => Family::V4,
            "ipv6" => Family::V6,
            _ => return None,
        };
        let addr: IpAddr = v.addr.parse().ok()?;
        // A family that contradicts the address is not a socket the kernel could have.
        if v.proto != "tcp" || addr.is_ipv4() != (family == Family::V4) {
            return None;
        }
        Some(Self {
            family,
            addr,
            port: v.port,
            v6only: v.v6only,
            bound_dev_if: v.bound_dev_if.unwrap_or(0),
            cookie: v.cookie,
        })
    }

    /// The families this socket can take SYNs of, from its family, address and v6only.
    pub fn reach(&self) -> Reach {
        match (self.family, self.addr) {
            (Family::V4, _) => Reach::V4,
            (Family::V6, IpAddr::V6(a)) if a.to_ipv4_mapped().is_some() => Reach::V4Mapped,
            (Family::V6, IpAddr::V6(a)) if !a.is_unspecified() => Reach::V6Address,
            // sock_diag sends INET_DIAG_SKV6ONLY for every AF_INET6 socket it dumps; a missing
            // one (a malformed reply) is read as the default, net.ipv6.bindv6only=0.
            (Family::V6, _) if self.v6only == Some(true) => Reach::V6Only,
            (Family::V6, _) => Reach::Dual,
        }
    }

    /// The IPv4 address an AF_INET/AF_INET6 socket competes with for IPv4 SYNs (its
    /// `sk_rcv_saddr`), `None` when it never takes IPv4.
    fn v4_addr(&self) -> Option<Ipv4Addr> {
        match (self.reach(), self.addr) {
            (Reach::V4, IpAddr::V4(a)) => Some(a),
            (Reach::V4Mapped, IpAddr::V6(a)) => a.to_ipv4_mapped(),
            (Reach::Dual, _) => Some(Ipv4Addr::UNSPECIFIED),
            _ => None,
        }
    }

    /// The IPv6 address it competes with for IPv6 SYNs (`sk_v6_rcv_saddr`), `None` when it
    /// never takes IPv6.
    fn v6_addr(&self) -> Option<Ipv6Addr> {
        match (self.reach(), self.addr) {
            (Reach::V6Address | Reach::V6Only | Reach::Dual, IpAddr::V6(a)) => Some(a),
            _ => None,
        }
    }

    /// Sockets with the same binding in every respect can only listen side by side through
    /// SO_REUSEPORT (`inet_csk_bind_conflict` refuses the second `listen()` otherwise), and
    /// then form one reuseport group (`inet_reuseport_add_sock` joins family, v6only, device,
    /// owner and address).
    fn same_binding(&self, other: &Socket) -> bool {
        self.family == other.family
            && self.addr == other.addr
            && self.port == other.port
            && self.bound_dev_if == other.bound_dev_if
            && self.v6only == other.v6only
    }
}

/// Which SYNs a listener can take by family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// AF_INET: IPv4 only.
    V4,
    /// AF_INET6 bound to `::ffff:a.b.c.d`: IPv4 only (SYNs to a.b.c.d, seen as v4-mapped).
    V4Mapped,
    /// AF_INET6 bound to one IPv6 address: IPv6 only (binding it set IPV6_V6ONLY).
    V6Address,
    /// AF_INET6 `[::]` with IPV6_V6ONLY: IPv6 only.
    V6Only,
    /// AF_INET6 `[::]` without IPV6_V6ONLY: IPv6, and IPv4 as v4-mapped.
    Dual,
}

impl Reach {
    pub fn takes(self, family: Family) -> bool {
        match family {
            Family::V4 => matches!(self, Reach::V4 | Reach::V4Mapped | Reach::Dual),
            Family::V6 => matches!(self, Reach::V6Address | Reach::V6Only | Reach::Dual),
        }
    }
}

/// Why a listener does not get the SYN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Miss {
    /// The listener takes only the other family: an AF_INET socket (or one bound to a
    /// v4-mapped address) and an IPv6 SYN. In the kernel an AF_INET socket is simply not in the
    /// IPv6 tables (`compute_score` checks `sk_family == PF_INET6`).
    Family { takes: Family, syn: Family },
    /// An AF_INET6 socket with IPV6_V6ONLY and an IPv4 SYN (`!ipv6_only_sock(sk)` in the IPv4
    /// `compute_score`). `by_address`: the flag was set by binding one IPv6 address, not by
    /// the program asking for it.
    V6Only { by_address: bool },
    /// Bound to an address other than the destination (`sk_rcv_saddr != daddr`).
    Address { bound: IpAddr, dialed: IpAddr },
    /// Bound to a device (SO_BINDTODEVICE) that is neither the ingress device nor its VRF
    /// master (`inet_bound_dev_eq`).
    Device { bound: u32, ingress: u32, l3_master: Option<u32> },
    /// Not bound to a device, and the SYN came in through a VRF while
    /// `net.ipv4.tcp_l3mdev_accept` is 0 (`inet_bound_dev_eq` with `sdif != 0`).
    OutsideVrf { master: u32, ingress: u32 },
}

/// The kernel's judgement of one listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "judgement", rename_all = "snake_case")]
pub enum Judgement {
    /// It matches the SYN. `exact`: found in the bucket of the destination address (searched
    /// before the wildcard one); `score`: `compute_score` without the SO_INCOMING_CPU point.
    Takes {
        exact: bool,
        score: u8,
    },
    Misses(Miss),
}

impl Judgement {
    pub fn takes(&self) -> bool {
        matches!(self, Judgement::Takes { .. })
    }
}

/// One listener with its judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judged {
    pub socket: Socket,
    #[serde(flatten)]
    pub judgement: Judgement,
}

/// Who gets the SYN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Winner {
    /// No listener matches: the kernel answers with a RST (connection refused), unless an
    /// sk_lookup program hands the SYN to some other socket.
    Nobody,
    /// This listener (an index into [`Lookup::judged`]).
    One { index: usize },
    /// One member of this SO_REUSEPORT group (indices into [`Lookup::judged`]): the kernel
    /// picks by a hash of the addresses and ports, or by a BPF selector, per connection.
    ReuseportGroup { members: Vec<usize> },
    /// Listeners with different bindings and the same score (possible only with
    /// SO_REUSEPORT): the kernel takes the first it meets in its hash chain.
    Tied { candidates: Vec<usize> },
}

/// What can take the decision away from the listener table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Steering {
    /// sk_lookup programs attached to the SYN's namespace (their program ids): they run before
    /// the table (`bpf_sk_lookup_run_v4/v6`) and may hand the SYN to any socket, even one on
    /// another port, or drop it.
    SkLookup { program_ids: Vec<u32> },
    /// Whether sk_lookup programs are attached could not be determined.
    SkLookupUnknown { error: String },
    /// The winner is a reuseport group: an SO_ATTACH_REUSEPORT_CBPF/EBPF program may choose
    /// the member, and sock_diag cannot show whether one is attached.
    ReuseportSelector { members: usize },
}

/// sk_lookup attachments of the SYN's namespace, as far as they could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkLookupState {
    /// Attached program ids (empty: none).
    Attached(Vec<u32>),
    Unknown(String),
}

impl From<std::io::Result<Vec<u32>>> for SkLookupState {
    /// From `netns::sk_lookup::sk_lookup_programs`: a failed query is reported, not ignored.
    fn from(r: std::io::Result<Vec<u32>>) -> Self {
        match r {
            Ok(ids) => SkLookupState::Attached(ids),
            Err(e) => SkLookupState::Unknown(e.to_string()),
        }
    }
}

/// The lookup's outcome for one SYN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lookup {
    pub syn: Syn,
    /// Every TCP listener on the SYN's port, in the order given.
    pub judged: Vec<Judged>,
    pub winner: Winner,
    pub steering: Vec<Steering>,
}

impl Lookup {
    /// True when some listener would take the SYN (ignoring sk_lookup).
    pub fn accepted(&self) -> bool {
        self.winner != Winner::Nobody
    }
}

/// Judges every TCP socket in `holders` that listens on the SYN's port (others are ignored: the
/// caller may pass the whole dump of the namespace) and picks the winner.
pub fn lookup(syn: &Syn, holders: &[Socket], sk_lookup: &SkLookupState) -> Lookup {
    let judged: Vec<Judged> = holders
        .iter()
        .filter(|s| s.port == syn.dport)
        .map(|s| Judged { socket: s.clone(), judgement: judge(syn, s) })
        .collect();
    let winner = winner(&judged);
    let mut steering = Vec::new();
    match sk_lookup {
        SkLookupState::Attached(ids) if ids.is_empty() => {}
        SkLookupState::Attached(ids) => {
            steering.push(Steering::SkLookup { program_ids: ids.clone() });
        }
        SkLookupState::Unknown(e) => steering.push(Steering::SkLookupUnknown { error: e.clone() }),
    }
    if let Winner::ReuseportGroup { members } = &winner {
        steering.push(Steering::ReuseportSelector { members: members.len() });
    }
    Lookup { syn: syn.clone(), judged, winner, steering }
}

/// [`lookup`] over a sock_diag dump of the SYN's namespace.
pub fn lookup_in_dump(syn: &Syn, dump: &[SockEntry], sk_lookup: &SkLookupState) -> Lookup {
    let holders: Vec<Socket> = dump.iter().filter_map(Socket::from_entry).collect();
    lookup(syn, &holders, sk_lookup)
}

/// One listener against the SYN: `compute_score` of the family's table, plus which bucket.
fn judge(syn: &Syn, s: &Socket) -> Judgement {
    let reach = s.reach();
    let family = syn.family();
    // The address the socket competes with in this family's table, if it is in that table.
    let bound = match family {
        Family::V4 => s.v4_addr().map(IpAddr::V4),
        Family::V6 => s.v6_addr().map(IpAddr::V6),
    };
    let Some(bound) = bound.filter(|_| reach.takes(family)) else {
        return Judgement::Misses(match family {
            Family::V4 => Miss::V6Only { by_address: reach == Reach::V6Address },
            Family::V6 => Miss::Family { takes: Family::V4, syn: Family::V6 },
        });
    };
    let exact = !bound.is_unspecified();
    if exact && bound != syn.daddr {
        return Judgement::Misses(Miss::Address { bound, dialed: syn.daddr });
    }
    let (dif, sdif) = syn.ingress.dif_sdif();
    if !bound_dev_eq(syn.l3mdev_accept, s.bound_dev_if, dif, sdif) {
        return Judgement::Misses(match s.bound_dev_if {
            0 => Miss::OutsideVrf { master: dif, ingress: sdif },
            bound => Miss::Device {
                bound,
                ingress: syn.ingress.ifindex,
                l3_master: syn.ingress.l3_master,
            },
        });
    }
    let mut score = if s.bound_dev_if != 0 { 2 } else { 1 };
    if family == Family::V4 && s.family == Family::V4 {
        score += 1;
    }
    Judgement::Takes { exact, score }
}

/// `inet_bound_dev_eq` (include/net/inet_sock.h).
fn bound_dev_eq(l3mdev_accept: bool, bound_dev_if: u32, dif: u32, sdif: u32) -> bool {
    if bound_dev_if == 0 {
        return sdif == 0 || l3mdev_accept;
    }
    bound_dev_if == dif || bound_dev_if == sdif
}

/// The exact bucket is searched first and a match there ends the search; within a bucket the
/// highest score wins, the first one met on a tie; a reuseport group then picks its member.
///
/// Only sockets sharing the port through SO_REUSEPORT can both match one SYN within a bucket
/// (any other overlap is a bind conflict), so ties are rare. An AF_INET and an AF_INET6 socket
/// tying on the IPv4 wildcard go to AF_INET: `__inet_hash` queues AF_INET6 reuseport sockets at
/// the tail of the chain. Any other tie between different bindings depends on the order of the
/// chain, which sock_diag does not show: [`Winner::Tied`].
fn winner(judged: &[Judged]) -> Winner {
    let score_of = |j: &Judged| match j.judgement {
        Judgement::Takes { exact, score } => Some((exact, score)),
        Judgement::Misses(_) => None,
    };
    let Some(best) = judged.iter().filter_map(score_of).max() else { return Winner::Nobody };
    let mut top: Vec<usize> =
        (0..judged.len()).filter(|&i| score_of(&judged[i]) == Some(best)).collect();
    if top.iter().any(|&i| judged[i].socket.family == Family::V4) {
        top.retain(|&i| judged[i].socket.family == Family::V4);
    }
    let first = top[0];
    if top.iter().any(|&i| !judged[i].socket.same_binding(&judged[first].socket)) {
        return Winner::Tied { candidates: top };
    }
    if top.len() > 1 {
        Winner::ReuseportGroup { members: top }
    } else {
        Winner::One { index: first }
    }
}

/// `::ffff:a.b.c.d` → a.b.c.d: what goes on the wire for a v4-mapped destination.
pub fn unmap(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}
