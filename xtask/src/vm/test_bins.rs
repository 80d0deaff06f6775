//! The workspace's test executables by target name, so a guest test can run the very binaries
//! `cargo test` built (inside a QEMU guest there is no cargo, and the host's target directory is
//! visible at the same paths through the 9p root).
//!
//! `cargo xtask test` builds them once with `cargo test --no-run --message-format=json`, and
//! exports the list as [`ENV`]: `name=path:name=path…` (integration tests by their file name,
//! library unit tests by the crate's target name, e.g. `reach_agent`).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

/// The variable carrying the list into the test run.
pub const ENV: &str = "REACH_TEST_BINS";

/// Builds every test executable of the workspace (`cargo` is the cargo to use, run from
/// `root`) and returns them by target name.
pub fn build(cargo: &Path, root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["test", "--workspace", "--no-run", "--message-format=json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!("+ {}", crate::run::show(&cmd));
    let out = cmd.output().context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the test executables failed: {}", out.status);
    }
    let bins = parse(&String::from_utf8_lossy(&out.stdout))?;
    ensure!(!bins.is_empty(), "cargo test --no-run reported no test executables");
    Ok(bins)
}

/// Test executables from cargo's JSON messages: `compiler-artifact`s of the test profile
/// with an executable, from library and integration-test targets.
pub fn parse(messages: &str) -> Result<BTreeMap<String, PathBuf>> {
    let mut bins = BTreeMap::new();
    for line in messages.lines().filter(|l| l.starts_with('{')) {
        let msg: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("cargo message {line:?}"))?;
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else { continue };
        let kinds = msg["target"]["kind"].as_array().cloned().unwrap_or_default();
        if !kinds.iter().any(|k| k == "lib" || k == "test") {
            continue;
        }
        let name = msg["target"]["name"].as_str().context("artifact without a target name")?;
        bins.insert(name.to_string(), PathBuf::from(exe));
    }
    Ok(bins)
}

/// The [`ENV`] value for `bins`.
pub fn encode(bins: &BTreeMap<String, PathBuf>) -> Result<String> {
    bins.iter()
        .map(|(name, path)| {
            let path = path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))?;
            ensure!(!path.contains(':'), "test executable path {path} contains ':'");
            Ok(format!("{name}={path}"))
        })
        .collect::<Result<Vec<_>>>()
        .map(|v| v.join(":"))
}

/// The test executables exported by `cargo xtask test`; an error says how to get them.
pub fn from_env() -> Result<BTreeMap<String, PathBuf>> {
    let value = std::env::var(ENV).with_context(|| {
        format!(
            "{ENV} is not set: run the guest tests through `cargo xtask test` (it builds the \
             test executables and exports their paths as {ENV}=name=path:…)"
        )
    })?;
    value
        .split(':')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (name, path) = pair
                .split_once('=')
                .with_context(|| format!("{ENV}: {pair:?} is not name=path"))?;
            Ok((name.to_string(), PathBuf::from(path)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_test_executables_of_libraries_and_integration_tests() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"doctor","kind":["test"]},"profile":{"test":true},"executable":"/t/doctor-1"}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"reach_agent","kind":["lib"]},"profile":{"test":true},"executable":"/t/reach_agent-2"}"#,
            // Not test executables: a library build, a binary's test build, a build script.
            r#"{"reason":"compiler-artifact","target":{"name":"reach_agent","kind":["lib"]},"profile":{"test":false},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"reach","kind":["bin"]},"profile":{"test":true},"executable":"/t/reach-3"}"#,
            r#"{"reason":"build-script-executed","package_id":"x"}"#,
            "   Compiling something",
        ]
        .join("\n");
        let bins = parse(&messages).unwrap();
        assert_eq!(
            bins.into_iter().collect::<Vec<_>>(),
            [
                ("doctor".to_string(), PathBuf::from("/t/doctor-1")),
                ("reach_agent".to_string(), PathBuf::from("/t/reach_agent-2"))
            ]
        );
    }

    #[test]
    fn encodes_name_path_pairs() {
        let bins: BTreeMap<String, PathBuf> =
            [("a".to_string(), PathBuf::from("/x/a")), ("b".to_string(), PathBuf::from("/y/b"))]
                .into();
        assert_eq!(encode(&bins).unwrap(), "a=/x/a:b=/y/b");
        let bad: BTreeMap<String, PathBuf> = [("c".to_string(), PathBuf::from("/x:y"))].into();
        assert!(encode(&bad).is_err());
    }
}
