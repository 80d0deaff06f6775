//! The command line's contract, unprivileged: every command `reach --help` lists teaches its
//! own usage, and bad usage exits 2 with the problem on stderr and nothing on stdout.
//!
//! Being an integration test of the `agent` package, this also makes `cargo test` build the
//! `reach` executable itself with the test build's features, which is the binary `cargo xtask
//! test` hands the privileged tests (one build of the agent, not two).
use std::process::{Command, Output};

fn reach(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reach"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running reach {args:?}: {e}"))
}

/// The commands listed under `Commands:` in `reach --help`, `help` aside.
fn listed_commands() -> Vec<String> {
    let out = reach(&["--help"]);
    assert!(out.status.success(), "reach --help exited {}", out.status);
    let text = String::from_utf8(out.stdout).expect("reach --help printed UTF-8");
    let section = text
        .split("Commands:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("reach --help has no Commands: section:\n{text}"));
    section
        .lines()
        .take_while(|l| !l.trim().is_empty())
        // A command's line starts with two spaces and its name; continuation lines with more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn help_lists_the_commands_users_are_told_about() {
    let commands = listed_commands();
    // The README and `reach doctor`'s own advice name these; a command dropped from the help
    // (or a help section clap renders differently) must fail here, not go unnoticed.
    for expected in ["doctor", "watch", "listeners", "predict", "lab", "why"] {
        assert!(
            commands.iter().any(|c| c == expected),
            "reach --help does not list {expected}: {commands:?}"
        );
    }
}

#[test]
fn every_command_teaches_its_usage() {
    for command in listed_commands() {
        let out = reach(&[&command, "--help"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "reach {command} --help exited {}", out.status);
        assert!(
            text.contains(&format!("Usage: reach {command}")),
            "reach {command} --help has no usage line:\n{text}"
        );
        // More than the generated option list: a sentence of what the command is for.
        let description = text.lines().next().unwrap_or_default();
        assert!(
            description.split_whitespace().count() >= 4,
            "reach {command} --help starts with {description:?}"
        );
    }
}

#[test]
fn bad_usage_exits_2_saying_what_was_wrong() {
    for command in listed_commands() {
        let out = reach(&[&command, "--no-such-option"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "reach {command} --no-such-option: {stderr}");
        assert!(
            stderr.contains("--no-such-option"),
            "reach {command}: the error does not name the option: {stderr}"
        );
        assert!(
            stderr.contains("--help"),
            "reach {command}: the error does not point to --help: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "reach {command}: bad usage printed to stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
