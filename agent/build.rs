//! Builds the kernel programs of `agent-ebpf` for `bpfel-unknown-none` with the nightly
//! toolchain and bpf-linker (aya-build), so the objects can be embedded with `include_bytes_aligned!`.
//!
//! Missing toolchain parts are reported with the command that installs them rather than as a
//! linker error deep inside a nested cargo invocation.
use std::{env, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../agent-ebpf").canonicalize()?;
    check_toolchain()?;
    let root_dir = ebpf_dir.to_str().context("agent-ebpf path is not UTF-8")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "reach-ebpf",
            root_dir,
            no_default_features: false,
            features: &["ebpf-bin"],
        }],
        aya_build::Toolchain::default(),
    )
}

fn check_toolchain() -> anyhow::Result<()> {
    if env::var_os("AYA_BUILD_SKIP").is_some() {
        return Ok(());
    }
    let fix = "run `cargo xtask setup` (it installs the nightly rust-src and bpf-linker)";
    let linker_ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !linker_ok {
        bail!("bpf-linker is missing or does not start (it must be on PATH); {fix}");
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .context("rustup is needed to build the eBPF programs with the nightly toolchain")?;
    if !sysroot.status.success() {
        bail!("the nightly toolchain is not installed; {fix}");
    }
    let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout)?.trim());
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        bail!("the nightly toolchain lacks the rust-src component; {fix}");
    }
    Ok(())
}
