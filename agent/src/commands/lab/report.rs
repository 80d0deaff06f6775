//! What `reach lab` prints: per scenario the diagnosis in short, then the table
//! scenario → client saw → verdict → fix; or one JSON object.
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{client::ClientSaw, diagnosis::Answer};

/// Longest fix shown in the table; the full text is in the diagnosis above it.
const FIX_WIDTH: usize = 64;

/// How one scenario went.
#[derive(Debug)]
pub struct Outcome {
    pub name: &'static str,
    pub port: u16,
    pub expected: &'static str,
    /// Why it was not run (needs firewalld, which is not there).
    pub skipped: Option<String>,
    pub client: Option<ClientSaw>,
    /// The demo server's pid and the namespace it ran in.
    pub server: Option<(i32, String)>,
    pub answer: Option<Answer>,
    /// What went wrong while running it (set-up, `reach why` failing).
    pub error: Option<String>,
    pub seconds: f64,
    /// Where those seconds went: set-up, `reach why` attaching, the client, `reach why`
    /// settling and answering, teardown (what the lab's one-minute budget is spent on).
    pub phases: Vec<(&'static str, f64)>,
}

impl Outcome {
    pub fn verdict(&self) -> Option<&str> {
        self.answer.as_ref()?.json["verdict"].as_str()
    }

    /// Whether `reach why` named the expected verdict; `None` when not run.
    pub fn ok(&self) -> Option<bool> {
        if self.skipped.is_some() {
            return None;
        }
        Some(self.error.is_none() && self.verdict() == Some(self.expected))
    }

    fn lines(&self, key: &str) -> Vec<&str> {
        self.answer
            .as_ref()
            .and_then(|a| a.json[key].as_array())
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

/// `firewalld`: the version of the firewalld the lab ran, None without one.
pub fn json(outcomes: &[Outcome], firewalld: Option<&str>, elapsed_s: f64) -> Value {
    let scenarios: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let mut v = json!({
                "name": o.name,
                "port": o.port,
                "expected": o.expected,
                "verdict": o.verdict(),
                "ok": o.ok(),
                "client": o.client.as_ref().map(ToString::to_string),
                "server": o.server.as_ref().map(|(pid, netns)| json!({"pid": pid, "netns": netns})),
                "exit_code": o.answer.as_ref().map(|a| a.exit_code),
                "diagnosis": o.answer.as_ref().map(|a| &a.json),
                "seconds": o.seconds,
                "phases_s": o.phases.iter().map(|(k, v)| (k.to_string(), json!(v)))
                    .collect::<serde_json::Map<_, _>>(),
            });
            if let Some(why) = &o.skipped {
                v["skipped"] = json!(why);
            }
            if let Some(e) = &o.error {
                v["error"] = json!(e);
            }
            v
        })
        .collect();
    json!({
        "scenarios": scenarios,
        "firewalld": firewalld.is_some(),
        "firewalld_version": firewalld,
        "elapsed_s": elapsed_s,
    })
}

/// Each diagnosis in short, then the table and a summary line.
pub fn human(outcomes: &[Outcome], elapsed_s: f64) -> String {
    let mut s = String::new();
    for o in outcomes.iter().filter(|o| o.skipped.is_none()) {
        let saw = o.client.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into());
        let _ = writeln!(s, "── {} (port {}) — client saw: {saw}", o.name, o.port);
        if let Some(e) = &o.error {
            for line in e.lines() {
                let _ = writeln!(s, "   error: {line}");
            }
        }
        if let Some(a) = &o.answer {
            let headline = a.json["headline"].as_str().unwrap_or("");
            let _ = writeln!(s, "   verdict: {}: {headline}", o.verdict().unwrap_or("?"));
        }
        for line in o.lines("evidence") {
            let _ = writeln!(s, "   - {line}");
        }
        for line in o.lines("fix") {
            let _ = writeln!(s, "   → {line}");
        }
        s.push('\n');
    }

    let mut rows = vec![["SCENARIO", "CLIENT SAW", "VERDICT", "OK", "FIX"].map(String::from)];
    for o in outcomes {
        let row = match (&o.skipped, &o.error) {
            (Some(why), _) => ["-".into(), "not run".into(), "-".into(), why.clone()],
            (None, Some(e)) => [
                o.client.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into()),
                o.verdict().unwrap_or("error").into(),
                "✗".into(),
                e.lines().next().unwrap_or("").into(),
            ],
            (None, None) => [
                o.client.as_ref().map(ToString::to_string).unwrap_or_default(),
                o.verdict().unwrap_or("?").into(),
                if o.ok() == Some(true) {
                    "✓".into()
                } else {
                    format!("✗ expected {}", o.expected)
                },
                o.lines("fix").first().map(|f| cut(f, FIX_WIDTH)).unwrap_or_else(|| "-".into()),
            ],
        };
        let [client, verdict, ok, fix] = row;
        rows.push([o.name.to_string(), client, verdict, ok, fix]);
    }
    let width = |col: usize| rows.iter().map(|r| r[col].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2), width(3)];
    for r in &rows {
        let mut line = String::new();
        for (cell, w) in r.iter().zip(widths) {
            let _ = write!(line, "{cell}{}  ", " ".repeat(w - cell.chars().count()));
        }
        let _ = writeln!(s, "{}{}", line, r[4]);
    }

    let ran: Vec<&Outcome> = outcomes.iter().filter(|o| o.skipped.is_none()).collect();
    let good = ran.iter().filter(|o| o.ok() == Some(true)).count();
    let _ = writeln!(
        s,
        "\n{good} of {} scenarios run got their expected verdict ({} not run) in {elapsed_s:.1} s",
        ran.len(),
        outcomes.len() - ran.len()
    );
    s
}

/// `text` cut to `max` characters, marked with … when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &'static str, expected: &'static str, verdict: Option<&str>) -> Outcome {
        Outcome {
            name,
            port: 8081,
            expected,
            skipped: None,
            client: Some(ClientSaw::Refused),
            server: Some((42, "lab-srv".into())),
            answer: verdict.map(|v| Answer {
                exit_code: 10,
                json: json!({"verdict": v, "headline": "h", "evidence": ["e"],
                    "fix": ["bind the server to 0.0.0.0:8081 instead of 127.0.0.1:8081"]}),
            }),
            error: None,
            seconds: 1.0,
            phases: vec![("attach", 0.5)],
        }
    }

    #[test]
    fn table_marks_expected_wrong_and_skipped() {
        let mut skipped = outcome("firewalld target DROP", "firewall_drop", None);
        skipped.skipped = Some("firewalld not installed".into());
        skipped.client = None;
        let all = [
            outcome("loopback-only bind", "loopback_only_bind", Some("loopback_only_bind")),
            outcome("no listener", "no_listener", Some("reachable")),
            skipped,
        ];
        let text = human(&all, 12.0);
        let table: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("SCENARIO")).collect();
        assert!(table[1].contains("loopback_only_bind") && table[1].contains('✓'), "{text}");
        assert!(table[1].contains("bind the server to 0.0.0.0:8081"), "{text}");
        assert!(table[2].contains("✗ expected no_listener"), "{text}");
        assert!(table[3].contains("not run") && table[3].contains("firewalld not installed"));
        assert!(text.contains("1 of 2 scenarios run got their expected verdict (1 not run)"));

        let v = json(&all, None, 12.0);
        assert_eq!((&v["firewalld"], &v["firewalld_version"]), (&Value::Bool(false), &Value::Null));
        assert_eq!(json(&all, Some("2.3.1"), 1.0)["firewalld_version"], "2.3.1");
        assert_eq!(v["scenarios"][0]["ok"], true);
        assert_eq!(v["scenarios"][0]["server"]["pid"], 42);
        assert_eq!(v["scenarios"][0]["phases_s"]["attach"], 0.5);
        assert_eq!(v["scenarios"][1]["ok"], false);
        assert_eq!(v["scenarios"][2]["ok"], Value::Null);
        assert_eq!(v["scenarios"][2]["skipped"], "firewalld not installed");
    }

    #[test]
    fn long_fixes_are_cut_with_an_ellipsis() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
