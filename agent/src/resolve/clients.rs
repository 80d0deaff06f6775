//! Which address a client tries first, and where common clients part from glibc's order. Every
//! claim is read from the client's source, named beside it:
//! - glibc: `getaddrinfo` returns the addresses sorted by RFC 6724 with /etc/gai.conf's tables
//!   (`rfc3484_sort`, `gaiconf_init` in sysdeps/posix/getaddrinfo.c); a client that connects
//!   to them in turn tries the first one first.
//! - Go: the pure resolver is used when nsswitch's `hosts:` names only files, dns, mdns* and
//!   myhostname (`lookupOrder` in net/conf.go; any other source, e.g. `resolve`, hands the
//!   lookup to libc when cgo is available). It reads /etc/hosts itself and sorts with its own
//!   fixed RFC 6724 table (`goLookupIPFiles` in net/dnsclient_unix.go, `sortByRFC6724` in
//!   net/addrselect.go), never /etc/gai.conf; its cgo path leaves AI_ADDRCONFIG out
//!   (`cgoAddrInfoFlags`, net/cgo_linux.go); `DialContext` (net/dial.go) drops IPv6 only when
//!   the kernel cannot open IPv6 sockets at all (`supportsIPv6`). Dialing, the first address's
//!   family goes first and the other family starts when that fails, or after
//!   `Dialer.FallbackDelay`, 300 ms by default (`partition` in net/ipsock.go, `dialParallel`
//!   in net/dial.go: "start the fallback immediately" on a primary error).
//! - curl: Happy Eyeballs; `cf_ip_ballers_run` (lib/cf-ip-happy.c; `start_connect` in
//!   lib/connect.c before it) starts with IPv6 when the name has an IPv6 address
//!   (`last_attempt_ai_family = AF_INET /* so AF_INET6 is next */`) and alternates families;
//!   the next address starts at once when no attempt is still running (a refused one) or after
//!   the happy-eyeballs delay, 200 ms by default (CURLOPT_HAPPY_EYEBALLS_TIMEOUT_MS).
use std::net::IpAddr;

use super::{gai_conf::PolicyLine, nsswitch::Source};

/// What the notes are computed from.
pub struct Inputs<'a> {
    pub name: &'a str,
    /// glibc's order.
    pub addrs: &'a [IpAddr],
    /// Addresses AI_ADDRCONFIG removed.
    pub dropped: &'a [IpAddr],
    pub gai_policy: &'a [PolicyLine],
    pub nsswitch: Option<&'a [Source]>,
}

fn first_of(addrs: &[IpAddr], v6: bool) -> Option<IpAddr> {
    addrs.iter().copied().find(|a| a.is_ipv6() == v6)
}

/// Short evidence lines: the first address tried, then where Go and Happy Eyeballs clients
/// differ (only when they do for this answer).
pub fn notes(i: &Inputs<'_>) -> Vec<String> {
    let Some(&first) = i.addrs.first() else { return Vec::new() };
    let mut out = vec![if i.addrs.len() > 1 {
        format!(
            "a client connecting to getaddrinfo's answer in order tries {first} first (glibc's \
             RFC 6724 order)"
        )
    } else {
        format!("{} resolves to {first} only", i.name)
    }];
    let (v6, v4) = (first_of(i.addrs, true), first_of(i.addrs, false));
    if let (Some(v6), Some(v4)) = (v6, v4) {
        let other = if first.is_ipv6() { v4 } else { v6 };
        out.push(format!(
            "Go's dialer tries {first} first and {other} as soon as that fails, or after \
             300 ms without an answer (net/dial.go dialParallel, FallbackDelay)"
        ));
        out.push(format!(
            "curl (Happy Eyeballs, lib/cf-ip-happy.c) tries IPv6 {v6} first and IPv4 {v4} \
             as soon as that is refused (or after 200 ms without an answer), so it may connect \
             where a one-address client is refused"
        ));
    }
    let go_resolves_itself = i.nsswitch.is_none_or(|s| {
        s.iter().all(|s| {
            matches!(s.name.as_str(), "files" | "dns" | "myhostname") || s.name.starts_with("mdns")
        })
    });
    if !i.gai_policy.is_empty() {
        let lines: Vec<String> =
            i.gai_policy.iter().map(|p| format!("line {}: {}", p.line, p.text)).collect();
        out.push(format!(
            "/etc/gai.conf changes glibc's order ({}); Go's own resolver ignores gai.conf \
             (net/addrselect.go's fixed table), so a Go client may try another address first",
            lines.join("; ")
        ));
    }
    if !i.dropped.is_empty() {
        let d: Vec<String> = i.dropped.iter().map(IpAddr::to_string).collect();
        out.push(format!(
            "AI_ADDRCONFIG dropped {} (this namespace has no address of that family other than \
             loopback); Go does not apply AI_ADDRCONFIG, so a Go client may dial {} too",
            d.join(", "),
            d.join(", ")
        ));
    }
    if !go_resolves_itself {
        let others: Vec<&str> = i
            .nsswitch
            .unwrap_or_default()
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| !matches!(*n, "files" | "dns" | "myhostname") && !n.starts_with("mdns"))
            .collect();
        out.push(format!(
            "nsswitch `hosts:` lists {}: a Go binary built with cgo resolves through libc as \
             above, one built without (CGO_ENABLED=0) reads only /etc/hosts and DNS itself \
             (net/conf.go lookupOrder)",
            others.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dual_stack_answer_names_first_and_both_racers() {
        let addrs = [ip("::1"), ip("127.0.0.1")];
        let n = notes(&Inputs {
            name: "localhost",
            addrs: &addrs,
            dropped: &[],
            gai_policy: &[],
            nsswitch: None,
        });
        assert!(n[0].contains("tries ::1 first"), "{n:?}");
        assert!(
            n[1].contains("Go's dialer tries ::1 first and 127.0.0.1 as soon as that fails"),
            "{n:?}"
        );
        assert!(
            n[2].contains("IPv6 ::1 first and IPv4 127.0.0.1 as soon as that is refused"),
            "{n:?}"
        );
        assert_eq!(n.len(), 3, "no gai.conf, nothing dropped, files/dns only: {n:?}");
    }

    #[test]
    fn ipv4_first_by_gai_conf_and_single_family_answers() {
        let addrs = [ip("127.0.0.1"), ip("::1")];
        let policy = [PolicyLine { line: 3, text: "precedence ::ffff:0:0/96 100".into() }];
        let n = notes(&Inputs {
            name: "localhost",
            addrs: &addrs,
            dropped: &[],
            gai_policy: &policy,
            nsswitch: None,
        });
        assert!(n[0].contains("tries 127.0.0.1 first"));
        assert!(n[1].contains("tries 127.0.0.1 first and ::1 as soon as that fails"));
        assert!(
            n.iter().any(|l| l.contains("line 3: precedence ::ffff:0:0/96 100")
                && l.contains("ignores gai.conf")),
            "{n:?}"
        );

        let one = [ip("127.0.0.1")];
        let dropped = [ip("::1")];
        let n = notes(&Inputs {
            name: "localhost",
            addrs: &one,
            dropped: &dropped,
            gai_policy: &[],
            nsswitch: None,
        });
        assert_eq!(n[0], "localhost resolves to 127.0.0.1 only");
        assert!(n.iter().any(|l| l.contains("AI_ADDRCONFIG dropped ::1")), "{n:?}");
        assert!(!n.iter().any(|l| l.contains("Happy Eyeballs")), "one family: no race: {n:?}");
    }

    #[test]
    fn nsswitch_source_go_cannot_handle_is_named() {
        let src =
            super::super::nsswitch::hosts_sources("hosts: files resolve [!UNAVAIL=return] dns")
                .unwrap();
        let addrs = [ip("10.0.0.1")];
        let n = notes(&Inputs {
            name: "web",
            addrs: &addrs,
            dropped: &[],
            gai_policy: &[],
            nsswitch: Some(&src),
        });
        assert!(
            n.iter().any(|l| l.contains("lists resolve") && l.contains("CGO_ENABLED=0")),
            "{n:?}"
        );
        assert!(
            notes(&Inputs {
                name: "web",
                addrs: &[],
                dropped: &[],
                gai_policy: &[],
                nsswitch: None
            })
            .is_empty()
        );
    }
}
