//! Runs one QEMU guest to completion or until a deadline, killing it on timeout, error or panic.
use std::fs::File;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::tools::QEMU;

/// A host directory exported to the guest over virtio-9p under `tag`.
pub struct Share<'a> {
    pub tag: &'static str,
    pub path: &'a Path,
    pub readonly: bool,
}

pub struct Machine<'a> {
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    /// QEMU's `-m` value, e.g. "1G".
    pub memory: &'a str,
    pub cpus: u32,
    pub shares: &'a [Share<'a>],
    /// Where the guest's serial console (kernel log and init's messages) goes.
    pub console: &'a Path,
    /// Where QEMU's own stdout/stderr go.
    pub qemu_log: &'a Path,
}

pub enum End {
    Exited(ExitStatus),
    TimedOut,
}

/// Kills and reaps QEMU unless it has already been reaped.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn run(machine: &Machine, timeout: Duration) -> Result<End> {
    let mut command = QEMU.command()?;
    command
        // /dev/kvm here is a nested paravirtual hypervisor under which stock kernels hang;
        // TCG is slower but boots every kernel the same way anywhere.
        .args(["-accel", "tcg", "-cpu", "max", "-machine", "pc"])
        .args(["-m", machine.memory, "-smp", &machine.cpus.to_string()])
        // No default devices (VGA, NIC, floppy, …): fewer to probe, nothing on the host network.
        .args(["-nodefaults", "-nic", "none", "-display", "none", "-monitor", "none"])
        // A guest reset (panic=-1 reboots at once on a kernel panic) ends QEMU instead.
        .arg("-no-reboot")
        .arg("-serial")
        .arg(format!("file:{}", qemu_path(machine.console)?))
        .arg("-kernel")
        .arg(machine.vmlinuz)
        .arg("-initrd")
        .arg(machine.initramfs)
        .args(["-append", "console=ttyS0 panic=-1"]);
    for share in machine.shares {
        // multidevs=remap keeps inode numbers unique across the host's file systems, which
        // the exported root spans.
        command.arg("-fsdev").arg(format!(
            "local,id={tag},path={path},security_model=none,multidevs=remap{ro}",
            tag = share.tag,
            path = qemu_path(share.path)?,
            ro = if share.readonly { ",readonly=on" } else { "" },
        ));
        command
            .arg("-device")
            .arg(format!("virtio-9p-pci,fsdev={tag},mount_tag={tag}", tag = share.tag));
    }
    let log = File::create(machine.qemu_log)
        .with_context(|| format!("creating {}", machine.qemu_log.display()))?;
    let log_err = log.try_clone().context("duplicating the QEMU log handle")?;
    command.stdin(Stdio::null()).stdout(log).stderr(log_err);

    let child = command.spawn().context("starting qemu-system-x86_64")?;
    let mut guard = Guard(Some(child));
    let deadline = Instant::now() + timeout;
    loop {
        let child = guard.0.as_mut().context("QEMU already reaped")?;
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            guard.0 = None;
            return Ok(End::Exited(status));
        }
        if Instant::now() >= deadline {
            return Ok(End::TimedOut); // The guard kills QEMU.
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A path for a QEMU option value, where ',' separates options and is written ",,".
fn qemu_path(path: &Path) -> Result<String> {
    let text = path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(text.replace(',', ",,"))
}
