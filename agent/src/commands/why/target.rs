//! The TARGET of `reach why`: `PORT`, `ADDR:PORT`, `[V6ADDR]:PORT` or `NAME:PORT`, as users
//! type it after a failed `curl`. Every rejection names what was wrong and what would be
//! accepted. A NAME is only recognised here; [`crate::resolve`] resolves it as the client does.
use std::{fmt, net::IpAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: Option<IpAddr>,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            None => write!(f, "port {}", self.port),
            Some(IpAddr::V6(a)) => write!(f, "[{a}]:{}", self.port),
            Some(IpAddr::V4(a)) => write!(f, "{a}:{}", self.port),
        }
    }
}

/// TARGET as typed: an address form, or a host name still to be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Addr(Target),
    Name { name: String, port: u16 },
}

const FORMS: &str = "expected PORT, ADDR:PORT, [IPV6]:PORT or NAME:PORT, e.g. 8080, 10.0.0.5:8080, [::1]:8080, localhost:8080";

/// A host name as getaddrinfo takes it (RFC 1123 labels: letters, digits, `-`, `_`, dots; at
/// most 253 characters), so a typo like `10.0.0:80` is not sent to DNS.
fn host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // All-numeric dotted names are malformed IPv4 addresses, not names.
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

impl std::str::FromStr for Parsed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<Target>() {
            Ok(t) => Ok(Parsed::Addr(t)),
            Err(e) => {
                let t = s.trim();
                match t.rsplit_once(':') {
                    Some((name, p)) if !name.contains(':') && !name.starts_with('[') => {
                        if !host_name(name) {
                            return Err(e);
                        }
                        Ok(Parsed::Name { name: name.to_string(), port: port(p, t)? })
                    }
                    _ => Err(e),
                }
            }
        }
    }
}

fn port(s: &str, whole: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{whole}`: `{s}` is not a port number ({FORMS})"));
    }
    match s.parse::<u32>() {
        Ok(0) => Err(format!("`{whole}`: port 0 is not a port a client can connect to (1-65535)")),
        Ok(p) if p <= 65535 => Ok(p as u16),
        _ => Err(format!("`{whole}`: port {s} is out of range (1-65535)")),
    }
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err(format!("empty TARGET ({FORMS})"));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (addr, p) = rest
                .split_once("]:")
                .ok_or_else(|| format!("`{s}`: an IPv6 target needs `]:PORT` ({FORMS})"))?;
            let addr: std::net::Ipv6Addr =
                addr.parse().map_err(|_| format!("`{s}`: `{addr}` is not an IPv6 address"))?;
            return Ok(Self { addr: Some(IpAddr::V6(addr)), port: port(p, s)? });
        }
        match s.rsplit_once(':') {
            None => Ok(Self { addr: None, port: port(s, s)? }),
            Some((addr, _)) if addr.contains(':') => Err(format!(
                "`{s}`: write an IPv6 address in brackets, e.g. [{addr}]:PORT ({FORMS})"
            )),
            Some((addr, p)) => {
                let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| {
                    format!("`{s}`: `{addr}` is not an IPv4 address or a host name")
                })?;
                Ok(Self { addr: Some(IpAddr::V4(addr)), port: port(p, s)? })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Target {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<Target>().expect_err(s)
    }

    #[test]
    fn accepts_the_three_forms() {
        assert_eq!(ok("8080"), Target { addr: None, port: 8080 });
        assert_eq!(ok("10.0.0.5:80"), Target { addr: Some("10.0.0.5".parse().unwrap()), port: 80 });
        assert_eq!(ok("[::1]:65535"), Target { addr: Some("::1".parse().unwrap()), port: 65535 });
        assert_eq!(ok("[fd00:77::1]:8080").to_string(), "[fd00:77::1]:8080");
        assert_eq!(ok("127.0.0.1:1").to_string(), "127.0.0.1:1");
    }

    #[test]
    fn rejections_name_the_problem() {
        assert!(err("http").contains("not a port number"), "{}", err("http"));
        assert!(err("65536").contains("out of range"));
        assert!(err("99999999999").contains("out of range"));
        assert!(err("0").contains("port 0"));
        assert!(err("-1").contains("not a port number"));
        assert!(err("1.2.3:80").contains("not an IPv4 address"));
        assert!(err("localhost:80").contains("not an IPv4 address"));
        assert!(err("::1:80").contains("in brackets"));
        assert!(err("[::1]").contains("]:PORT"));
        assert!(err("[zz]:80").contains("not an IPv6 address"));
        assert!(err("10.0.0.1:").contains("not a port number"));
        assert!(err("").contains("empty"));
    }

    fn parsed(s: &str) -> Result<Parsed, String> {
        s.parse::<Parsed>()
    }

    #[test]
    fn names_are_recognised_and_address_forms_keep_their_messages() {
        let name = |n: &str, port| Ok(Parsed::Name { name: n.into(), port });
        assert_eq!(parsed("localhost:8080"), name("localhost", 8080));
        assert_eq!(parsed("myhost.lan:80"), name("myhost.lan", 80));
        assert_eq!(parsed("web-1.example.com.:443"), name("web-1.example.com.", 443));
        assert_eq!(parsed("[::1]:80"), Ok(Parsed::Addr(ok("[::1]:80"))));
        assert_eq!(parsed("8080"), Ok(Parsed::Addr(ok("8080"))));
        // Every address-form rejection still reads as before.
        for bad in ["http", "65536", "0", "-1", "::1:80", "[::1]", "[zz]:80", "10.0.0.1:", ""] {
            assert_eq!(parsed(bad), Err(err(bad)), "{bad}");
        }
        assert!(parsed("1.2.3:80").unwrap_err().contains("not an IPv4 address"));
        assert!(parsed("localhost:http").unwrap_err().contains("not a port number"));
        assert!(parsed("localhost:0").unwrap_err().contains("port 0"));
        assert!(parsed("bad_name!:80").unwrap_err().contains("not an IPv4 address or a host name"));
        assert!(parsed("-x.lan:80").is_err());
    }
}
