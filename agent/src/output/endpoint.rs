//! How reach prints an address and port: `10.0.0.1:80`, `[fd00::1]:80` (brackets keep an IPv6
//! address and its port apart), `?` when the address is unknown.

/// `addr:port` for an address given as text (IPv6 recognised by its colons).
pub fn endpoint(addr: Option<&str>, port: impl std::fmt::Display) -> String {
    match addr {
        Some(a) if a.contains(':') => format!("[{a}]:{port}"),
        Some(a) => format!("{a}:{port}"),
        None => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn brackets_ipv6_only() {
        assert_eq!(super::endpoint(Some("10.0.0.1"), 80), "10.0.0.1:80");
        assert_eq!(super::endpoint(Some("fd00::1"), 80), "[fd00::1]:80");
        assert_eq!(super::endpoint(None, 80), "?");
    }
}
