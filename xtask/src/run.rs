//! Running external commands the way a developer would want to see them: echoed first, with
//! failures naming the command and its exit status.
use std::process::{Command, ExitStatus};

use anyhow::{Context as _, bail};

/// Runs `cmd` inheriting stdio, echoing it first; errors on a non-zero exit.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed: {status}", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` inheriting stdio, echoing it first; returns its status.
pub fn status(cmd: &mut Command) -> anyhow::Result<ExitStatus> {
    eprintln!("+ {}", show(cmd));
    cmd.status().with_context(|| format!("cannot start `{}`", show(cmd)))
}

/// Runs `cmd` quietly and returns its stdout when it succeeds, None when it fails or is missing.
pub fn output_ok(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command line as a shell would show it.
pub fn show(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.contains(' ') { format!("'{a}'") } else { a.into_owned() }
    }));
    let envs: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    if envs.is_empty() {
        parts.join(" ")
    } else {
        format!("{} {}", envs.join(" "), parts.join(" "))
    }
}
