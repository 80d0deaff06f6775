//! /etc/hosts, read only to say which line gave an address glibc returned (glibc's `files`
//! backend does the resolving). Format (hosts(5)): an address, a canonical name, aliases;
//! `#` starts a comment; names compare case-insensitively.
use std::net::IpAddr;

/// One line of the hosts file that names the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    /// 1-based line number.
    pub line: usize,
    pub addr: IpAddr,
    /// The line as written, comment stripped.
    pub text: String,
}

/// Every line of `text` that lists `name`, in file order. Lines whose address does not parse
/// are skipped, as glibc skips them.
pub fn entries_for(text: &str, name: &str) -> Vec<HostsEntry> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let line = raw.split('#').next().unwrap_or("").trim();
            let mut fields = line.split_whitespace();
            let addr: IpAddr = fields.next()?.split('%').next()?.parse().ok()?;
            fields.any(|n| n.eq_ignore_ascii_case(name)).then(|| HostsEntry {
                line: i + 1,
                addr,
                text: line.split_whitespace().collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "127.0.0.1\tlocalhost\n127.0.1.1\tmyhost.lan myhost\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\n";

    #[test]
    fn finds_each_line_naming_the_host_with_its_number() {
        let e = entries_for(DEBIAN, "localhost");
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].line, e[0].addr), (1, "127.0.0.1".parse().unwrap()));
        assert_eq!((e[1].line, e[1].addr), (5, "::1".parse().unwrap()));
        assert_eq!(e[1].text, "::1 localhost ip6-localhost ip6-loopback");
        assert_eq!(entries_for(DEBIAN, "MyHost")[0].line, 2, "names are case-insensitive");
    }

    #[test]
    fn comments_bad_addresses_and_partial_names_do_not_match() {
        let text = "# 10.0.0.1 web\n10.0.0.2 webserver # web\nnot-an-ip web\n10.0.0.3 web\n";
        let e = entries_for(text, "web");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].addr, "10.0.0.3".parse::<IpAddr>().unwrap());
        assert!(entries_for("", "web").is_empty());
    }
}
