//! A strict parser of the two exposition formats reach serves, for the tests: every line must be
//! a HELP, TYPE, sample (or OpenMetrics' final `# EOF`), each family must have HELP then TYPE
//! then its samples, sample names must fit the family and type, label values are unescaped.
//! Written here rather than taken from `prometheus-parse`, which skips lines it cannot read and
//! splits labels on every `,` (so an escaped value with a comma or quote would pass unseen).

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    PrometheusText,
}

#[derive(Debug)]
pub struct ParsedFamily {
    pub help: String,
    pub kind: String,
    /// Label set → value; label sets are unique within a family.
    pub samples: BTreeMap<Labels, f64>,
}

pub type Labels = BTreeMap<String, String>;
/// Family name (as in TYPE) → family.
pub type Parsed = BTreeMap<String, ParsedFamily>;

pub fn parse(text: &str, format: Format) -> Result<Parsed, String> {
    let body = match format {
        Format::OpenMetrics => text.strip_suffix("# EOF\n").ok_or("no final `# EOF`")?,
        Format::PrometheusText => text,
    };
    if !body.is_empty() && !body.ends_with('\n') {
        return Err("last line has no newline".into());
    }
    let mut families = Parsed::new();
    let mut current: Option<String> = None;
    for (n, line) in body.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) =
                rest.split_once(' ').ok_or_else(|| at("HELP without text".into()))?;
            check_name(name).map_err(at)?;
            if families.contains_key(name) {
                return Err(at("family repeated".into()));
            }
            families.insert(
                name.to_owned(),
                ParsedFamily {
                    help: help.to_owned(),
                    kind: String::new(),
                    samples: BTreeMap::new(),
                },
            );
            current = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) =
                rest.split_once(' ').ok_or_else(|| at("TYPE without type".into()))?;
            let family = match (&current, families.get_mut(name)) {
                (Some(c), Some(f)) if c == name && f.kind.is_empty() && f.samples.is_empty() => f,
                _ => return Err(at("TYPE not right after its HELP".into())),
            };
            if !matches!(kind, "counter" | "gauge") {
                return Err(at(format!("unexpected type {kind}")));
            }
            family.kind = kind.to_owned();
        } else if line.starts_with('#') {
            return Err(at("unexpected comment".into()));
        } else {
            let name = current.as_deref().ok_or_else(|| at("sample before any family".into()))?;
            let family = families.get_mut(name).ok_or_else(|| at("no family".into()))?;
            let (sample_name, labels, value) = sample(line).map_err(at)?;
            let expected = match (format, family.kind.as_str()) {
                (Format::OpenMetrics, "counter") => format!("{name}_total"),
                (_, "") => return Err(at("sample before TYPE".into())),
                _ => name.to_owned(),
            };
            if sample_name != expected {
                return Err(at(format!("sample {sample_name} in family {name}")));
            }
            if family.samples.insert(labels, value).is_some() {
                return Err(at("label set repeated".into()));
            }
        }
    }
    for (name, f) in &families {
        if f.kind.is_empty() {
            return Err(format!("family {name} has no TYPE"));
        }
    }
    Ok(families)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("bad name {name:?}"))
    }
}

/// `name{k="v",...} value` (no timestamps: reach writes none).
fn sample(line: &str) -> Result<(String, Labels, f64), String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut s = after;
        loop {
            if let Some(after) = s.strip_prefix('}') {
                s = after;
                break;
            }
            let (key, after) = s.split_once("=\"").ok_or("label without =\"")?;
            check_name(key)?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, '\n') => return Err("raw newline in label value".into()),
                    (_, c) => value.push(c),
                }
            };
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} repeated"));
            }
            s = &after[end + 1..];
            if let Some(after) = s.strip_prefix(',') {
                s = after;
                if s.starts_with('}') {
                    return Err("trailing comma".into());
                }
            } else if !s.starts_with('}') {
                return Err("labels not separated by ,".into());
            }
        }
        rest = s;
    }
    let value = rest.strip_prefix(' ').ok_or("no space before value")?;
    let value: f64 = value.parse().map_err(|_| format!("bad value {value:?}"))?;
    Ok((name.to_owned(), labels, value))
}

/// The labels `pairs` as a `Labels` (test shorthand).
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escapes_and_rejects_what_is_not_exposition() {
        let ok =
            "# HELP a_b A thing.\n# TYPE a_b counter\na_b_total{k=\"x\\\"y\\\\z\\n,\"} 3\n# EOF\n";
        let p = parse(ok, Format::OpenMetrics).unwrap();
        assert_eq!(p["a_b"].samples[&labels(&[("k", "x\"y\\z\n,")])], 3.0);
        for bad in [
            "# HELP a A.\n# TYPE a counter\na_total 1\n",  // no EOF
            "# HELP a A.\n# TYPE a counter\na 1\n# EOF\n", // counter sample without _total
            "# HELP a A.\na_total 1\n# EOF\n",             // no TYPE
            "# HELP a A.\n# TYPE a gauge\na{k=\"1\"} 1\na{k=\"1\"} 2\n# EOF\n", // repeated
            "# HELP a A.\n# TYPE a gauge\na{k=\"1\",} 1\n# EOF\n", // trailing comma
            "# HELP a A.\n# TYPE a gauge\n# hi\na 1\n# EOF\n", // stray comment
            "# HELP a A.\n# TYPE a gauge\na x\n# EOF\n",   // bad value
        ] {
            assert!(parse(bad, Format::OpenMetrics).is_err(), "{bad:?}");
        }
    }
}
