//! Host names as a client resolves them: glibc's own `getaddrinfo` run inside the client's
//! network namespace ([`gai`]), explained from the files glibc consulted — which /etc/hosts
//! line gave each address ([`hosts`]), the nsswitch `hosts:` order ([`nsswitch`]), gai.conf
//! lines that change the order ([`gai_conf`]), systemd-resolved's stub in resolv.conf
//! ([`resolv_conf`]) — with what each address means for a port ([`judge`]) and which one a
//! client tries first ([`clients`]).
pub mod clients;
pub mod gai;
pub mod gai_conf;
pub mod hosts;
pub mod judge;
pub mod nsswitch;
pub mod resolv_conf;

use std::{net::IpAddr, path::Path};

use serde::Serialize;

pub use gai::{AskFamily, GaiError};
pub use judge::AddrJudgement;

use crate::netns::enter;

/// The resolver configuration glibc reads, as reach's mount namespace shows it.
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub hosts: String,
    pub nsswitch: Option<String>,
    pub gai_conf: Option<String>,
    pub resolv_conf: Option<String>,
}

impl Files {
    /// /etc/hosts, /etc/nsswitch.conf, /etc/gai.conf, /etc/resolv.conf (missing: None).
    pub fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        Self {
            hosts: read("/etc/hosts").unwrap_or_default(),
            nsswitch: read("/etc/nsswitch.conf"),
            gai_conf: read("/etc/gai.conf"),
            resolv_conf: read("/etc/resolv.conf"),
        }
    }
}

/// One address of the answer.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedAddr {
    pub addr: IpAddr,
    /// `/etc/hosts line 5: ::1 localhost`, or the other nsswitch sources that may have given it.
    pub source: String,
    pub hosts_line: Option<usize>,
    /// Filled in by [`Resolution::judge`] once the listeners are known.
    #[serde(flatten)]
    pub judgement: Option<AddrJudgement>,
}

/// A name resolved as the client's libc does it.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub name: String,
    pub family: AskFamily,
    /// glibc's order: the first is what a client tries first.
    pub addresses: Vec<ResolvedAddr>,
    /// Returned without AI_ADDRCONFIG but not with it.
    pub dropped_by_addrconfig: Vec<IpAddr>,
    pub nsswitch_hosts: Option<String>,
    pub gai_conf: Vec<gai_conf::PolicyLine>,
    pub nameservers: Vec<IpAddr>,
    pub notes: Vec<String>,
}

/// `localhost` with -4 → "IPv4 address", for messages.
fn family_words(f: AskFamily) -> &'static str {
    match f {
        AskFamily::Any => "address",
        AskFamily::Ipv4 => "IPv4 address (-4)",
        AskFamily::Ipv6 => "IPv6 address (-6)",
    }
}

/// Resolves `name` inside the namespace at `ns_path`; the error is the whole message for the
/// user: the name, what was consulted, getaddrinfo's error.
pub fn resolve_in(
    ns_path: &Path,
    ns_name: &str,
    name: &str,
    family: AskFamily,
    files: &Files,
) -> Result<Resolution, String> {
    let owned = name.to_string();
    let (with, without) = enter::in_netns(ns_path, move || {
        (gai::getaddrinfo(&owned, family, true), gai::getaddrinfo(&owned, family, false))
    })
    .map_err(|e| format!("cannot enter netns {ns_name} to resolve `{name}`: {e}"))?;
    let sources = files.nsswitch.as_deref().and_then(nsswitch::hosts_sources);
    let consulted = match &sources {
        Some(s) => format!("nsswitch.conf hosts: {}", nsswitch::describe(s)),
        None => {
            "no hosts: line in /etc/nsswitch.conf (glibc's default: dns [!UNAVAIL=return] files)"
                .into()
        }
    };
    let entries = hosts::entries_for(&files.hosts, name);
    let addrs = match with {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => {
            return Err(format!("`{name}` resolved to no {} ({consulted})", family_words(family)));
        }
        Err(e) => {
            return Err(failure(name, ns_name, family, &e, without.ok(), &consulted, &entries));
        }
    };
    let dropped: Vec<IpAddr> =
        without.unwrap_or_default().into_iter().filter(|a| !addrs.contains(a)).collect();
    let others = sources
        .as_ref()
        .map(|s| s.iter().filter(|s| s.name != "files").map(|s| s.name.clone()).collect::<Vec<_>>())
        .unwrap_or_else(|| vec!["dns".into()]);
    let addresses = addrs
        .iter()
        .map(|&a| {
            let hit = entries.iter().find(|e| e.addr == a);
            ResolvedAddr {
                addr: a,
                source: match hit {
                    Some(e) => format!("/etc/hosts line {}: {}", e.line, e.text),
                    None => format!("not in /etc/hosts: from {}", others.join(" or ")),
                },
                hosts_line: hit.map(|e| e.line),
                judgement: None,
            }
        })
        .collect();
    let gai_policy = files.gai_conf.as_deref().map(gai_conf::policy_lines).unwrap_or_default();
    let nameservers =
        files.resolv_conf.as_deref().map(resolv_conf::nameservers).unwrap_or_default();
    let mut notes = clients::notes(&clients::Inputs {
        name,
        addrs: &addrs,
        dropped: &dropped,
        gai_policy: &gai_policy,
        nsswitch: sources.as_deref(),
    });
    let uses_dns = sources.as_ref().is_none_or(|s| s.iter().any(|s| s.name == "dns"));
    if uses_dns && let Some(n) = resolv_conf::stub_note(&nameservers) {
        notes.push(n);
    }
    Ok(Resolution {
        name: name.to_string(),
        family,
        addresses,
        dropped_by_addrconfig: dropped,
        nsswitch_hosts: sources.as_deref().map(nsswitch::describe),
        gai_conf: gai_policy,
        nameservers,
        notes,
    })
}

/// The message for a name getaddrinfo could not resolve.
fn failure(
    name: &str,
    ns_name: &str,
    family: AskFamily,
    e: &GaiError,
    without_addrconfig: Option<Vec<IpAddr>>,
    consulted: &str,
    entries: &[hosts::HostsEntry],
) -> String {
    let hosts = if entries.is_empty() {
        "/etc/hosts has no line for it".to_string()
    } else {
        let l: Vec<String> =
            entries.iter().map(|e| format!("line {}: {}", e.line, e.text)).collect();
        format!("/etc/hosts: {}", l.join("; "))
    };
    let mut msg = format!(
        "cannot resolve `{name}` to an {}: getaddrinfo: {} ({consulted}; {hosts})",
        family_words(family),
        e.message
    );
    if let Some(a) = without_addrconfig.filter(|a| !a.is_empty()) {
        let a: Vec<String> = a.iter().map(IpAddr::to_string).collect();
        msg.push_str(&format!(
            "; without AI_ADDRCONFIG it resolves to {}, but netns {ns_name} has no such address \
             other than loopback, so a client there gets none",
            a.join(", ")
        ));
    } else if family != AskFamily::Any {
        msg.push_str("; drop -4/-6 to see the name's other addresses");
    }
    msg
}

impl Resolution {
    pub fn first(&self) -> IpAddr {
        self.addresses[0].addr
    }

    pub fn addrs(&self) -> Vec<IpAddr> {
        self.addresses.iter().map(|a| a.addr).collect()
    }

    /// Judges every address against the namespace's listeners on `port`.
    pub fn judge(
        &mut self,
        port: u16,
        sockets: &[crate::diagnose::lookup::Socket],
        interfaces: &[crate::diagnose::Interface],
        sk: &crate::diagnose::SkLookupState,
    ) {
        let ifname = |i: u32| interfaces.iter().find(|x| x.ifindex == i).map(|x| x.name.clone());
        for a in &mut self.addresses {
            a.judgement = Some(judge::judge(a.addr, port, sockets, interfaces, sk, &ifname));
        }
    }

    /// Evidence lines: the answer in order with each address's judgement, then the notes.
    pub fn evidence(&self, port: u16) -> Vec<String> {
        let list: Vec<String> = self.addresses.iter().map(|a| a.addr.to_string()).collect();
        let mut out = vec![format!(
            "{} resolves (glibc getaddrinfo, AI_ADDRCONFIG, in the client's namespace) to {}",
            self.name,
            list.join(", ")
        )];
        for (i, a) in self.addresses.iter().enumerate() {
            let verdict = match a.judgement.as_ref().and_then(|j| j.taken) {
                Some(true) => "a listener takes it",
                Some(false) => "no listener takes it",
                None => "not local",
            };
            let why = a.judgement.as_ref().map(|j| format!(": {}", j.why)).unwrap_or_default();
            let first = if i == 0 { ", tried first" } else { "" };
            out.push(format!("{}:{port} ({}{first}) — {verdict}{why}", a.addr, a.source));
        }
        out.extend(self.notes.iter().cloned());
        out
    }

    /// A fix when the attempt went to an address no listener takes while another address of
    /// the name is taken: dial that one (or restrict the family as curl's -4/-6 do).
    pub fn fix(&self, attempted: Option<IpAddr>, port: u16) -> Option<String> {
        let attempted = attempted.map(crate::diagnose::lookup::unmap)?;
        let judged = |a: IpAddr| {
            self.addresses.iter().find(|x| x.addr == a).and_then(|x| x.judgement.as_ref()?.taken)
        };
        if judged(attempted) != Some(false) {
            return None;
        }
        let taken = self.addresses.iter().find(|x| judged(x.addr) == Some(true))?;
        let flag = if taken.addr.is_ipv4() { "-4" } else { "-6" };
        let ep = match taken.addr {
            IpAddr::V6(a) => format!("[{a}]:{port}"),
            IpAddr::V4(a) => format!("{a}:{port}"),
        };
        Some(format!(
            "or have the client use the address the server takes: `{}` also resolves to {}: \
             dial {ep}, or restrict the client to that family (curl {flag}, Go \"tcp{}\")",
            self.name,
            taken.addr,
            if taken.addr.is_ipv4() { "4" } else { "6" }
        ))
    }

    /// The `resolved` key of `reach why --json`.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(first) = self.addresses.first() {
            v["first_tried"] = serde_json::json!(first.addr);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(addrs: &[(&str, Option<bool>)]) -> Resolution {
        Resolution {
            name: "localhost".into(),
            family: AskFamily::Any,
            addresses: addrs
                .iter()
                .map(|(a, t)| ResolvedAddr {
                    addr: a.parse().unwrap(),
                    source: "/etc/hosts line 1: x".into(),
                    hosts_line: Some(1),
                    judgement: Some(AddrJudgement { taken: *t, why: "w".into() }),
                })
                .collect(),
            dropped_by_addrconfig: vec![],
            nsswitch_hosts: Some("files".into()),
            gai_conf: vec![],
            nameservers: vec![],
            notes: vec!["note".into()],
        }
    }

    #[test]
    fn fix_points_at_the_taken_address_only_when_the_attempt_missed() {
        let r = res(&[("::1", Some(false)), ("127.0.0.1", Some(true))]);
        let f = r.fix(Some("::1".parse().unwrap()), 8080).unwrap();
        assert!(f.contains("dial 127.0.0.1:8080") && f.contains("curl -4"), "{f}");
        assert!(r.fix(Some("127.0.0.1".parse().unwrap()), 8080).is_none());
        assert!(r.fix(None, 8080).is_none());
        assert!(res(&[("::1", Some(false))]).fix(Some("::1".parse().unwrap()), 8080).is_none());
    }

    #[test]
    fn evidence_lists_in_order_with_first_marked_and_json_has_first_tried() {
        let r = res(&[("::1", Some(false)), ("127.0.0.1", Some(true))]);
        let e = r.evidence(8080);
        assert!(e[0].ends_with("to ::1, 127.0.0.1"), "{e:?}");
        assert!(
            e[1].starts_with("::1:8080")
                && e[1].contains("tried first")
                && e[1].contains("no listener takes it"),
            "{e:?}"
        );
        assert!(e[2].contains("a listener takes it") && !e[2].contains("tried first"), "{e:?}");
        assert_eq!(e[3], "note");
        let j = r.json();
        assert_eq!(j["first_tried"], "::1");
        assert_eq!(j["addresses"][1]["taken"], true);
        assert_eq!(j["addresses"][0]["source"], "/etc/hosts line 1: x");
    }

    #[test]
    fn failure_message_names_consulted_sources_and_the_addrconfig_cause() {
        let e = GaiError { code: libc::EAI_NONAME, message: "Name or service not known".into() };
        let m = failure(
            "nosuch.test",
            "lab",
            AskFamily::Any,
            &e,
            None,
            "nsswitch.conf hosts: files",
            &[],
        );
        assert!(m.contains("`nosuch.test`") && m.contains("Name or service not known"), "{m}");
        assert!(m.contains("hosts: files") && m.contains("no line for it"), "{m}");
        let m = failure(
            "v6.test",
            "lab",
            AskFamily::Ipv6,
            &e,
            Some(vec!["fd00::1".parse().unwrap()]),
            "c",
            &[],
        );
        assert!(
            m.contains("IPv6 address (-6)")
                && m.contains("without AI_ADDRCONFIG it resolves to fd00::1"),
            "{m}"
        );
    }
}
