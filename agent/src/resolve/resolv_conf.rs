//! /etc/resolv.conf's name servers (parsed by the `resolv-conf` crate), read to say where a
//! `dns` lookup goes — in particular to systemd-resolved's stub listener.
use std::net::{IpAddr, Ipv4Addr};

/// systemd-resolved's DNS stub listener (resolved.conf(5), DNSStubListener): a resolv.conf
/// naming it hands every DNS lookup to resolved.
pub const RESOLVED_STUB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53));

/// The `nameserver` addresses in file order; an unparsable file gives none (glibc then falls
/// back to its default, the local host).
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    let (cfg, _errors) = resolv_conf::Config::parse_with_errors(text.as_bytes());
    cfg.nameservers.into_iter().map(IpAddr::from).collect()
}

/// The note to print when DNS goes through systemd-resolved's stub.
pub fn stub_note(servers: &[IpAddr]) -> Option<String> {
    servers.contains(&RESOLVED_STUB).then(|| {
        "/etc/resolv.conf names 127.0.0.53, systemd-resolved's stub listener: DNS lookups go \
         through systemd-resolved (its per-link servers, caches and synthesized records), which \
         may answer differently from a plain DNS server (`resolvectl query NAME` shows its answer)"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_is_recognised_and_others_are_not() {
        let resolved = "# This is /run/systemd/resolve/stub-resolv.conf\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
        assert_eq!(nameservers(resolved), vec![RESOLVED_STUB]);
        assert!(stub_note(&nameservers(resolved)).unwrap().contains("systemd-resolved"));
        let plain = "nameserver 192.0.2.53\nnameserver 2001:db8::53\n";
        assert_eq!(nameservers(plain).len(), 2);
        assert!(stub_note(&nameservers(plain)).is_none());
        assert!(nameservers("garbage line\n").is_empty());
    }
}
