//! The `hosts:` line of /etc/nsswitch.conf: which sources glibc asks, in order (nsswitch.conf(5)).
//! Read to explain an answer or a failure; glibc applies it itself.

/// One source of the `hosts:` line, with the `[STATUS=action]` criteria that follow it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    pub name: String,
    /// e.g. `[!UNAVAIL=return]`; empty when none.
    pub criteria: String,
}

/// The sources of the `hosts:` database, or None when the file has no `hosts:` line (glibc's
/// default then is `dns [!UNAVAIL=return] files`, nsswitch.conf(5)).
pub fn hosts_sources(text: &str) -> Option<Vec<Source>> {
    let line = text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).find_map(|l| {
        let (db, rest) = l.split_once(':')?;
        (db.trim() == "hosts").then_some(rest)
    })?;
    let mut out: Vec<Source> = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let (inside, tail) = after.split_once(']').unwrap_or((after, ""));
            if let Some(last) = out.last_mut() {
                last.criteria = format!("[{}]", inside.trim());
            }
            rest = tail.trim_start();
            continue;
        }
        let end = rest.find(|c: char| c.is_whitespace() || c == '[').unwrap_or(rest.len());
        out.push(Source { name: rest[..end].to_string(), criteria: String::new() });
        rest = rest[end..].trim_start();
    }
    Some(out)
}

/// `files [!UNAVAIL=return] dns` as written, for messages.
pub fn describe(sources: &[Source]) -> String {
    sources
        .iter()
        .map(|s| {
            if s.criteria.is_empty() {
                s.name.clone()
            } else {
                format!("{} {}", s.name, s.criteria)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sources_and_criteria_in_order() {
        let text = "passwd: files\n# hosts: dns\nhosts:          files mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns myhostname\nnetworks: files\n";
        let s = hosts_sources(text).unwrap();
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["files", "mdns4_minimal", "resolve", "dns", "myhostname"]);
        assert_eq!(s[1].criteria, "[NOTFOUND=return]");
        assert_eq!(s[2].criteria, "[!UNAVAIL=return]");
        assert_eq!(
            describe(&s),
            "files mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns myhostname"
        );
    }

    #[test]
    fn no_hosts_line_is_none_and_a_bare_one_is_files() {
        assert_eq!(hosts_sources("passwd: files\n"), None);
        assert_eq!(
            hosts_sources("hosts: files").unwrap(),
            vec![Source { name: "files".into(), criteria: String::new() }]
        );
        assert_eq!(hosts_sources("hosts:files[NOTFOUND=return]dns").unwrap().len(), 2);
    }
}
