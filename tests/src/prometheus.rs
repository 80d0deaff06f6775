//! Scraping `reach agent` as Prometheus does: an HTTP GET of /metrics, and a strict reader of
//! the text exposition (OpenMetrics / Prometheus 0.0.4 text: `# TYPE`, `# HELP`, samples with
//! quoted, escaped label values). Strict on purpose: a line it cannot read fails the test
//! instead of being skipped, since Prometheus would reject the whole scrape.
use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Scrape {
    /// Metric family → type (`counter`, `gauge`, ...).
    pub types: BTreeMap<String, String>,
    pub help: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
    pub text: String,
}

/// GET `path` over HTTP/1.1: (status code, content type, body).
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {head:?}")))?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type").then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, content_type, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Scrapes /metrics at `addr` and parses it; panics naming the line Prometheus would reject.
pub fn scrape(addr: SocketAddr) -> Scrape {
    let (status, ctype, body) = get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "GET /metrics: {body}");
    assert!(
        ctype.contains("text/plain") || ctype.contains("openmetrics-text"),
        "content type {ctype:?}"
    );
    parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

pub fn parse(text: &str) -> Result<Scrape, String> {
    let mut s = Scrape { text: text.to_string(), ..Default::default() };
    for line in text.lines() {
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').ok_or(format!("bad TYPE line {line:?}"))?;
            s.types.insert(name.into(), ty.into());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or(format!("bad HELP line {line:?}"))?;
            s.help.insert(name.into(), help.into());
        } else if line.starts_with('#') {
            continue;
        } else {
            s.samples.push(sample(line).ok_or(format!("cannot read sample line {line:?}"))?);
        }
    }
    Ok(s)
}

fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut r = r;
        loop {
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = r.find('=')?;
            let key = r[..eq].trim_start_matches(',').to_string();
            r = r[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.insert(key, value);
            r = &r[end + 1..];
            r = r.strip_prefix(',').unwrap_or(r);
        }
    }
    let mut fields = rest.split_whitespace();
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name: name.to_string(), labels, value })
}

impl Scrape {
    /// Samples of `name` whose labels include every (key, value) of `with`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && with.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the samples [`Self::matching`] selects (0 when none).
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.matching(name, with).map(|s| s.value).sum()
    }

    pub fn has(&self, name: &str, with: &[(&str, &str)]) -> bool {
        self.matching(name, with).next().is_some()
    }

    /// The family's declared type; counters are declared without `_total` in OpenMetrics.
    pub fn type_of(&self, sample_name: &str) -> Option<&str> {
        self.types
            .get(sample_name)
            .or_else(|| self.types.get(sample_name.trim_end_matches("_total")))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_types_labels_with_escapes_and_refuses_garbage() {
        let s = parse(
            "# HELP reach_syn SYNs.\n# TYPE reach_syn counter\nreach_syn_total{netns=\"a\\\"b\",pod=\"\"} 3\nreach_x 1.5\n# EOF\n",
        )
        .unwrap();
        assert_eq!(s.type_of("reach_syn_total"), Some("counter"));
        assert_eq!(s.sum("reach_syn_total", &[("netns", "a\"b")]), 3.0);
        assert_eq!(s.sum("reach_x", &[]), 1.5);
        assert!(parse("reach_syn_total{netns=\"a} 3\n").is_err());
        assert!(parse("not a metric line\n").is_err());
    }
}
