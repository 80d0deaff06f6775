//! `cargo xtask record-fixtures`: refreshes the firewalld recordings the unit tests parse
//! (`tests/fixtures/firewalld-<version>/`: rulesets after each firewalld step and `nft monitor
//! trace` captures of single SYNs) from every real firewalld of the test bench (the installed
//! one and the cached trixie root's, see [`xtask::firewalld_root`]), in lab namespaces.
//!
//! The recording itself is `reach-record-fixtures` (crate reach-tests, which has the lab); this
//! builds it and points it at the repository's fixture folder. Needs root; the files it writes
//! are meant to be committed (tests/fixtures/README.md says what they are).
use std::process::Command;

use anyhow::Context as _;

use xtask::{firewalld_root, run, setup, workspace};

/// Where the recordings live, relative to the workspace root.
pub const FIXTURES_DIR: &str = "tests/fixtures";

pub fn record_fixtures() -> anyhow::Result<()> {
    setup::all()?;
    let mut build = workspace::cargo();
    build.args(["build", "-p", "reach-tests", "--bin", "reach-record-fixtures"]);
    run::run(&mut build).context("building reach-record-fixtures failed")?;
    let bin = workspace::target_dir().join("debug").join("reach-record-fixtures");
    run::run(
        Command::new(bin)
            .arg(workspace::root().join(FIXTURES_DIR))
            .arg("--root")
            .arg(firewalld_root::ensure()?),
    )
    .context("recording the firewalld fixtures failed")
}
