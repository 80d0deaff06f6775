//! The host programs the bench drives, found up front so that a missing one is reported with
//! the Debian package that provides it instead of a bare "No such file or directory".
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A program and the Debian package that ships it.
#[derive(Clone, Copy)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub const QEMU: Tool = Tool { program: "qemu-system-x86_64", package: "qemu-system-x86" };
pub const BUSYBOX: Tool = Tool { program: "busybox", package: "busybox-static" };
pub const APT_GET: Tool = Tool { program: "apt-get", package: "apt" };
pub const APT_CACHE: Tool = Tool { program: "apt-cache", package: "apt" };
pub const DPKG_DEB: Tool = Tool { program: "dpkg-deb", package: "dpkg" };
/// Only needed for kernels whose modules are zstd-compressed (busybox has no zstd applet).
pub const ZSTD: Tool = Tool { program: "zstd", package: "zstd" };

impl Tool {
    /// The program's path from `PATH`, or an error naming the package to install.
    pub fn find(self) -> Result<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join(self.program))
            .find(|candidate| candidate.is_file())
            .with_context(|| {
                format!(
                    "`{}` is not installed: install the Debian package {} (`cargo xtask setup` does it)",
                    self.program, self.package
                )
            })
    }

    /// A `Command` for the program (after checking that it exists).
    pub fn command(self) -> Result<Command> {
        Ok(Command::new(self.find()?))
    }
}

/// The host's busybox, which must be statically linked: it becomes the guest's whole userland
/// before the host root is mounted, and the initramfs carries no shared libraries.
pub fn static_busybox() -> Result<PathBuf> {
    let path = BUSYBOX.find()?;
    if has_interpreter(&path)? {
        bail!(
            "{} is dynamically linked: install the Debian package busybox-static (`cargo xtask setup` does it)",
            path.display()
        );
    }
    Ok(path)
}

/// Whether an ELF64 file has a PT_INTERP program header, i.e. needs a dynamic loader.
fn has_interpreter(path: &Path) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    let field = |at: usize, len: usize| -> Result<u64> {
        let bytes = head
            .get(at..at + len)
            .with_context(|| format!("{} is not a 64-bit ELF file", path.display()))?;
        Ok(bytes.iter().rev().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
    };
    if head.get(..5) != Some(b"\x7fELF\x02") {
        bail!("{} is not a 64-bit ELF file", path.display());
    }
    let (phoff, phentsize, phnum) = (field(0x20, 8)?, field(0x36, 2)?, field(0x38, 2)?);
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize)?;
        if field(at, 4)? == u64::from(PT_INTERP) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs a command to completion and returns its stdout; a failure carries its stderr.
pub fn output(command: &mut Command) -> Result<Vec<u8>> {
    let shown = describe(command);
    let out = command.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 30)
        );
    }
    Ok(out.stdout)
}

/// [`output`] as text.
pub fn output_text(command: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&output(command)?).into_owned())
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
