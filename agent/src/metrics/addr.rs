//! `--metrics ADDR`: where the metrics endpoint listens.

use std::net::{Ipv4Addr, SocketAddr};

const EXAMPLES: &str = "e.g. 0.0.0.0:9464 (all IPv4 interfaces), 127.0.0.1:9464, [::1]:9464, \
                        [::]:9464 (all interfaces, IPv6 and IPv4) or :9464 (same as 0.0.0.0:9464)";

/// Parses `--metrics ADDR` (a clap `value_parser`): an IP address and port, `[v6]:port`, or
/// `:port` for all IPv4 interfaces. `:port` means 0.0.0.0, not `[::]`: the DaemonSet's usual
/// address, and it binds on nodes booted with IPv6 disabled, where `[::]` fails. No host names:
/// resolving one in an argument parser hides which address was bound.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let addr = match s.strip_prefix(':') {
        Some(port) if !port.contains(':') => match port.parse::<u16>() {
            Ok(port) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            Err(_) => {
                return Err(format!("bad port {port:?} in {s:?}; expected ADDR:PORT, {EXAMPLES}"));
            }
        },
        _ => s.parse::<SocketAddr>().map_err(|_| explain(s))?,
    };
    if addr.port() == 0 {
        return Err(format!(
            "port 0 in {s:?} would pick a random port Prometheus cannot find; {EXAMPLES}"
        ));
    }
    Ok(addr)
}

fn explain(s: &str) -> String {
    let hint = if s.matches(':').count() > 1 && !s.starts_with('[') {
        "an IPv6 address needs brackets, "
    } else if !s.contains(':') {
        "missing :PORT, "
    } else if s.split(':').next().is_some_and(|h| h.chars().any(|c| c.is_ascii_alphabetic())) {
        "give an IP address, not a host name, "
    } else {
        ""
    };
    format!("invalid --metrics address {s:?}: {hint}expected ADDR:PORT, {EXAMPLES}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_v4_v6_and_port_only() {
        assert_eq!(parse_addr("127.0.0.1:9464"), Ok("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(parse_addr("[::1]:9464"), Ok("[::1]:9464".parse().unwrap()));
        assert_eq!(parse_addr("[::]:9464"), Ok("[::]:9464".parse().unwrap()));
        assert_eq!(parse_addr(":9464"), Ok("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(parse_addr(" 0.0.0.0:9464 "), Ok("0.0.0.0:9464".parse().unwrap()));
    }

    #[test]
    fn rejects_garbage_with_an_example() {
        for (bad, hint) in [
            ("", "expected ADDR:PORT"),
            ("9464", "missing :PORT"),
            ("localhost:9464", "not a host name"),
            ("::1:9464", "needs brackets"),
            ("127.0.0.1:99999", "expected ADDR:PORT"),
            (":http", "bad port"),
            (":", "bad port"),
            ("127.0.0.1:0", "port 0"),
            (":0", "port 0"),
        ] {
            let err = parse_addr(bad).expect_err(bad);
            assert!(err.contains(hint), "{bad:?}: {err}");
            assert!(err.contains("127.0.0.1:9464"), "{bad:?} shows an example: {err}");
        }
    }
}
