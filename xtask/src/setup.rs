//! `cargo xtask setup`: installs whatever is missing to build and test reach, and nothing else.
//!
//! Each step checks first and is silent when satisfied, so every build/test command can call
//! this cheaply. What it installs:
//! - the nightly toolchain's `rust-src` (the eBPF crate builds `core` itself: -Z build-std);
//! - bpf-linker 0.13.0, compiled against the nightly rustc's own libLLVM (no system LLVM) with
//!   an rpath to it so the binary runs standalone;
//! - the Debian packages the tests and the lab drive;
//! - the firewalld 2.x root the firewalld tests run beside the host's 1.x
//!   ([`crate::firewalld_root`]).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::run::{output_ok, run};

/// Debian packages and why each is needed (shown when installing).
pub const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip netns / veth / tc for the lab"),
    ("nftables", "nft, to read rulesets in tests"),
    ("iptables", "iptables-nft/ip6tables-nft: the tests' iptables and Docker rules, in lab netns"),
    ("firewalld", "the real firewalld the tests and the lab run in a lab namespace"),
    ("dbus", "a private D-Bus bus for that firewalld"),
    ("debootstrap", "builds the Debian trixie root whose firewalld 2.x the tests run chrooted"),
    ("qemu-system-x86", "booting real kernels (kprobe/fentry paths) under QEMU"),
    ("busybox-static", "the QEMU guests' initramfs; the pods_cri tests' container image"),
    ("util-linux", "nsenter/unshare/setpriv for the tests"),
    ("socat", "a real userland relay (what docker-proxy does) for the relay tests"),
    ("iperf3", "cargo xtask bench: TCP throughput over a lab veth pair with and without reach"),
    ("hping3", "cargo xtask bench: the SYN flood whose every SYN reach must account for"),
    ("tcpdump", "cargo xtask bench: a SYN capture, the throughput comparison next to reach"),
    ("bpftrace", "cargo xtask bench: a kfree_skb tracepoint one-liner, the other comparison"),
    ("containerd", "the real CRI runtime (1.6) the pods_cri tests drive as kubelet does"),
    ("runc", "the OCI runtime containerd starts the pods_cri tests' containers with"),
    ("containernetworking-plugins", "CNI bridge + host-local for the pods_cri tests' pods"),
    ("buildah", "cargo xtask image: builds the agent's image FROM scratch without a daemon"),
    ("podman", "the image tests run that image as the DaemonSet would (no daemon either)"),
    ("python3-venv", "a private venv for helm-python-sdk and kubernetes-validate (chart tests)"),
];

pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// Everything, in order; silent when nothing needs doing.
pub fn all() -> anyhow::Result<()> {
    nightly_rust_src()?;
    musl_target()?;
    bpf_linker()?;
    crate::fuzz::ensure_cargo_fuzz()?;
    debian_packages()?;
    crate::deploy_tools::ensure()?;
    crate::firewalld_root::ensure()?;
    crate::docker_root::ensure()?;
    Ok(())
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let installed = output_ok(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]));
    match installed {
        Some(list) if list.lines().any(|l| l.starts_with("rust-src")) => Ok(()),
        Some(_) => {
            eprintln!(
                "setup: installing the nightly toolchain's rust-src (the eBPF crate builds core from source)"
            );
            run(Command::new("rustup").args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                "nightly",
            ]))
        }
        None => {
            eprintln!(
                "setup: installing the nightly toolchain with rust-src (needed to build the eBPF programs)"
            );
            run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal", "--component", "rust-src"]))
                .context("rustup could not install the nightly toolchain; install rustup from your distribution or rustup.rs")
        }
    }
}

/// The static build of the image (`cargo xtask image`) needs the musl target's std.
fn musl_target() -> anyhow::Result<()> {
    let target = crate::image::MUSL_TARGET;
    let installed = output_ok(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("`rustup target list` failed: is rustup installed?")?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    eprintln!("setup: adding the Rust target {target} (the static reach of the container image)");
    run(Command::new("rustup").args(["target", "add", target]))
}

/// bpf-linker is usable when it starts (its rpath'd libLLVM still exists) and is our version.
fn bpf_linker_ok() -> bool {
    output_ok(Command::new("bpf-linker").arg("--version"))
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION))
}

fn bpf_linker() -> anyhow::Result<()> {
    if bpf_linker_ok() {
        return Ok(());
    }
    let sysroot = output_ok(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("`rustc +nightly --print sysroot` failed: the nightly toolchain is missing")?;
    let sysroot = PathBuf::from(sysroot.trim());
    let verbose = output_ok(Command::new("rustc").args(["+nightly", "-vV"]))
        .context("`rustc +nightly -vV` failed")?;
    let major = llvm_major(&verbose).context("`rustc +nightly -vV` names no LLVM version")?;
    let libllvm = find_libllvm(&sysroot.join("lib"))?;

    // bpf-linker's build (llvm-sys) looks for $LLVM_PREFIX/lib/libLLVM.so: give it the nightly's
    // own library under that name instead of requiring a system LLVM of the same major.
    let prefix = crate::workspace::cache_dir().join("llvm-prefix");
    fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("symlink {}", link.display()))?;

    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} ({}) — about a minute",
        libllvm.display()
    );
    run(Command::new("cargo")
        .args([
            "install",
            "--locked",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix)
        // The rpath lets bpf-linker find libLLVM at run time without LD_LIBRARY_PATH.
        .env("RUSTFLAGS", format!("-C link-arg=-Wl,-rpath,{}", sysroot.join("lib").display())))
    .context("building bpf-linker failed")?;
    if !bpf_linker_ok() {
        bail!("bpf-linker was installed but does not start; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

/// `LLVM version: 22.1.4` → 22.
pub fn llvm_major(rustc_vv: &str) -> Option<u32> {
    rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse().ok())
}

fn find_libllvm(libdir: &Path) -> anyhow::Result<PathBuf> {
    let entries = fs::read_dir(libdir).with_context(|| format!("read {}", libdir.display()))?;
    entries
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM") && n.contains(".so"))
        })
        .with_context(|| {
            format!("no libLLVM*.so in {} (the nightly toolchain ships one)", libdir.display())
        })
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&(&str, &str)> =
        DEBIAN_PACKAGES.iter().filter(|(p, _)| !deb_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    for (p, why) in &missing {
        eprintln!("setup: installing Debian package {p}: {why}");
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "missing Debian packages {} and no apt-get here: install them with your package manager",
            names.join(" ")
        );
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "missing Debian packages {}: run `sudo apt-get install {}` (or run this command as root)",
            names.join(" "),
            names.join(" ")
        );
    }
    // Installing firewalld would start it in the host's network namespace on a systemd machine
    // and could cut remote access: forbid service starts during the install (policy-rc.d) and
    // disable the unit afterwards. reach only ever runs firewalld inside lab namespaces.
    let _no_start = PolicyRcD::install()?;
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&names)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    if names.contains(&"firewalld") && Path::new("/run/systemd/system").exists() {
        run(Command::new("systemctl").args(["disable", "--now", "firewalld.service"]))?;
    }
    Ok(())
}

fn deb_installed(pkg: &str) -> bool {
    output_ok(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.contains("install ok installed"))
}

/// /usr/sbin/policy-rc.d answering 101 ("action forbidden") while it exists; removed on drop,
/// and only if we created it.
struct PolicyRcD(Option<PathBuf>);

impl PolicyRcD {
    fn install() -> anyhow::Result<Self> {
        let path = PathBuf::from("/usr/sbin/policy-rc.d");
        if path.exists() {
            return Ok(Self(None));
        }
        fs::write(
            &path,
            "#!/bin/sh\n# written by reach's `cargo xtask setup` during apt-get install\nexit 101\n",
        )?;
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        Ok(Self(Some(path)))
    }
}

impl Drop for PolicyRcD {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn llvm_major_from_rustc_vv() {
        let vv =
            "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(super::llvm_major(vv), Some(22));
        assert_eq!(super::llvm_major("rustc 1.0"), None);
    }
}
