//! What each resolved address means for the port: whether a listener of the namespace would
//! take a SYN to it, judged by the kernel lookup model ([`crate::diagnose::lookup`]) as for a
//! client in that namespace (the namespace the name was resolved in).
use std::net::IpAddr;

use serde::Serialize;

use crate::diagnose::{
    Interface,
    lookup::{self, Ingress, SkLookupState, Socket, Syn, Winner},
};

/// One address's judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddrJudgement {
    /// Some(true): a listener takes it; Some(false): none does; None: not an address of the
    /// namespace, so a client there would leave it (the lookup here does not apply).
    pub taken: Option<bool>,
    /// The lookup's sentence(s) for it.
    pub why: String,
}

/// Judges a SYN to `addr`:`port` from a client in the namespace with `interfaces`, against
/// `sockets` (the namespace's TCP listeners on the port).
pub fn judge(
    addr: IpAddr,
    port: u16,
    sockets: &[Socket],
    interfaces: &[Interface],
    sk: &SkLookupState,
    ifname: &dyn Fn(u32) -> Option<String>,
) -> AddrJudgement {
    let addr = lookup::unmap(addr);
    let lo = interfaces.iter().find(|i| i.name == "lo").map_or(1, |i| i.ifindex);
    let owner = if addr.is_loopback() {
        Some(lo)
    } else {
        interfaces.iter().find(|i| i.addrs.contains(&addr)).map(|i| i.ifindex)
    };
    let Some(owner) = owner else {
        return AddrJudgement {
            taken: None,
            why: format!(
                "{addr} is not an address of this namespace: a client here sends its SYN out, \
                 and it is judged where it arrives"
            ),
        };
    };
    let l = lookup::lookup(&Syn::new(addr, port, Ingress::from_inside(owner)), sockets, sk);
    let why = match &l.winner {
        Winner::Nobody if l.judged.is_empty() => format!("nothing listens on TCP port {port}"),
        Winner::Nobody => l
            .judged
            .iter()
            .map(|j| lookup::describe(j, &l.syn, ifname))
            .collect::<Vec<_>>()
            .join("; "),
        Winner::One { index } => {
            format!("taken by {}", lookup::describe_listener(&l.judged[*index].socket, ifname))
        }
        Winner::ReuseportGroup { members } | Winner::Tied { candidates: members } => format!(
            "taken by one of {}",
            members
                .iter()
                .map(|&i| lookup::describe_listener(&l.judged[i].socket, ifname))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    AddrJudgement { taken: Some(l.accepted()), why }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::sock_diag::Family;

    fn v4_loopback_listener() -> Socket {
        Socket {
            family: Family::V4,
            addr: "127.0.0.1".parse().unwrap(),
            port: 8080,
            v6only: None,
            bound_dev_if: 0,
            cookie: 1,
        }
    }

    fn ifaces() -> Vec<Interface> {
        vec![
            Interface {
                ifindex: 1,
                name: "lo".into(),
                addrs: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            },
            Interface {
                ifindex: 2,
                name: "veth0".into(),
                addrs: vec!["10.9.0.1".parse().unwrap()],
            },
        ]
    }

    fn j(addr: &str, sockets: &[Socket]) -> AddrJudgement {
        let none = SkLookupState::Attached(Vec::new());
        judge(addr.parse().unwrap(), 8080, sockets, &ifaces(), &none, &|_| None)
    }

    #[test]
    fn localhost_story_v4_taken_v6_missed_by_family() {
        let s = [v4_loopback_listener()];
        let v4 = j("127.0.0.1", &s);
        assert_eq!(v4.taken, Some(true), "{v4:?}");
        assert!(v4.why.starts_with("taken by 127.0.0.1:8080"), "{}", v4.why);
        let v6 = j("::1", &s);
        assert_eq!(v6.taken, Some(false), "{v6:?}");
        assert!(v6.why.contains("IPv4 only") && v6.why.contains("::1"), "{}", v6.why);
    }

    #[test]
    fn address_of_another_interface_missed_and_foreign_address_not_judged() {
        let s = [v4_loopback_listener()];
        let other = j("10.9.0.1", &s);
        assert_eq!(other.taken, Some(false));
        assert!(other.why.contains("only on 127.0.0.1"), "{}", other.why);
        let foreign = j("192.0.2.7", &s);
        assert_eq!(foreign.taken, None);
        assert!(foreign.why.contains("not an address of this namespace"));
        assert_eq!(j("127.0.0.1", &[]).why, "nothing listens on TCP port 8080");
    }
}
