//! /etc/gai.conf (gai.conf(5)): the lines that change glibc's RFC 6724 destination order.
//! glibc reads it itself (`gaiconf_init`, sysdeps/posix/getaddrinfo.c); reach only reports
//! the lines in effect, because one `precedence` line replaces glibc's whole default
//! precedence table (every prefix not listed then gets 40 from an implicit `::/0`), and one
//! `label` line the whole label table. Go's resolver never reads this file.

/// A `label`, `precedence` or `scopev4` line as written, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyLine {
    pub line: usize,
    pub text: String,
}

/// The lines that change the sorting, comments stripped; empty: glibc's built-in tables.
pub fn policy_lines(text: &str) -> Vec<PolicyLine> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let line = raw.split('#').next().unwrap_or("");
            let words: Vec<&str> = line.split_whitespace().collect();
            // glibc needs the keyword and two values (a prefix and a number).
            (words.len() >= 3 && matches!(words[0], "label" | "precedence" | "scopev4"))
                .then(|| PolicyLine { line: i + 1, text: words.join(" ") })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_policy_lines_count() {
        let debian = "# Configuration for getaddrinfo(3).\n#\n#precedence  ::ffff:0:0/96  100\n#label ::1/128 0\nreload no\n";
        assert!(policy_lines(debian).is_empty());
        let v4_first = "#comment\nprecedence  ::ffff:0:0/96  100 # prefer IPv4\nlabel ::1/128\n";
        assert_eq!(
            policy_lines(v4_first),
            vec![PolicyLine { line: 2, text: "precedence ::ffff:0:0/96 100".into() }]
        );
    }
}
