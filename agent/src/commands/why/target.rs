//! The TARGET of `reach why`: `PORT`, `ADDR:PORT` or `[V6ADDR]:PORT`, as users type it after
//! a failed `curl`. Every rejection names what was wrong and what would be accepted.
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

const FORMS: &str = "expected PORT, ADDR:PORT or [IPV6]:PORT, e.g. 8080, 10.0.0.5:8080, [::1]:8080";

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
                    format!("`{s}`: `{addr}` is not an IPv4 address (host names are not resolved: give the address the client connects to)")
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
        assert!(err("localhost:80").contains("host names are not resolved"));
        assert!(err("::1:80").contains("in brackets"));
        assert!(err("[::1]").contains("]:PORT"));
        assert!(err("[zz]:80").contains("not an IPv6 address"));
        assert!(err("10.0.0.1:").contains("not a port number"));
        assert!(err("").contains("empty"));
    }
}
