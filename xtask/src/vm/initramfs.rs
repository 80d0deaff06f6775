//! The guest's initramfs: static busybox, `init.sh` as /init, and the kernel modules needed to
//! mount the host root (virtio-pci, 9p, overlayfs) with their dependencies, decompressed on the
//! host because busybox's insmod cannot load zstd modules. Written as an uncompressed cpio
//! ("newc") archive, which the kernel unpacks directly; it is a few MB, so compressing it
//! would cost more time than it saves.
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use cpio::newc::Builder;

use super::kernel::Kernel;
use super::tools::{self, ZSTD};

/// What /init needs before the host root is visible, in addition to their dependencies.
/// Built-in ones (e.g. virtio_pci from 6.12 on) are skipped.
const BOOT_MODULES: [&str; 4] = ["virtio_pci", "9pnet_virtio", "9p", "overlay"];

const INIT: &str = include_str!("init.sh");

pub fn build(kernel: &Kernel, busybox: &Path, out: &Path) -> Result<()> {
    let modules = load_order(&kernel.modules, &BOOT_MODULES)?;
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cpio = Cpio::new(BufWriter::new(file));
    for dir in ["bin", "dev", "proc", "sys", "modules", "lower", "rw", "newroot"] {
        cpio.dir(dir)?;
    }
    // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
    cpio.char_device("dev/console", 0o600, (5, 1))?;
    let busybox_bytes =
        fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    cpio.file("bin/busybox", 0o755, &busybox_bytes)?;
    cpio.file("init", 0o755, INIT.as_bytes())?;
    let mut order = String::new();
    for (name, path) in &modules {
        cpio.file(&format!("modules/{name}.ko"), 0o644, &decompressed(path, busybox)?)?;
        order.push_str(name);
        order.push('\n');
    }
    cpio.file("modules/order", 0o644, order.as_bytes())?;
    let mut writer = cpio.finish()?;
    writer.flush().with_context(|| format!("writing {}", out.display()))
}

/// `wanted` and their dependencies from modules.dep as (name, path), each after its
/// dependencies; modules built into the kernel (modules.builtin) are left out.
fn load_order(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let read = |name: &str| {
        let path = modules_dir.join(name);
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let builtin: HashSet<String> = read("modules.builtin")?.lines().map(module_name).collect();
    // name → (path relative to the module dir, dependency paths)
    let mut deps: HashMap<String, (&str, Vec<&str>)> = HashMap::new();
    let dep_text = read("modules.dep")?;
    for line in dep_text.lines() {
        if let Some((path, rest)) = line.split_once(':') {
            deps.insert(module_name(path), (path, rest.split_whitespace().collect()));
        }
    }

    fn visit(
        name: &str,
        deps: &HashMap<String, (&str, Vec<&str>)>,
        builtin: &HashSet<String>,
        seen: &mut HashSet<String>,
        order: &mut Vec<(String, String)>,
    ) -> Result<()> {
        if builtin.contains(name) || !seen.insert(name.to_owned()) {
            return Ok(());
        }
        let Some((path, needs)) = deps.get(name) else {
            bail!("module {name} is neither built into the kernel nor listed in modules.dep");
        };
        for need in needs {
            visit(&module_name(need), deps, builtin, seen, order)?;
        }
        order.push((name.to_owned(), (*path).to_owned()));
        Ok(())
    }
    let (mut seen, mut order) = (HashSet::new(), Vec::new());
    for name in wanted {
        visit(&module_name(name), &deps, &builtin, &mut seen, &mut order)?;
    }
    Ok(order.into_iter().map(|(name, path)| (name, modules_dir.join(path))).collect())
}

/// The module name of a path or name: `kernel/fs/9p/9p.ko.xz` → `9p`; `-` and `_` are the
/// same to the kernel, so normalise to `_`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.find(".ko").map_or(file, |end| &file[..end]);
    stem.replace('-', "_")
}

fn decompressed(path: &Path, busybox: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let mut command = if name.ends_with(".ko.xz") {
        let mut c = Command::new(busybox);
        c.arg("xzcat");
        c
    } else if name.ends_with(".ko.gz") {
        let mut c = Command::new(busybox);
        c.arg("zcat");
        c
    } else if name.ends_with(".ko.zst") {
        let mut c = ZSTD.command()?;
        c.args(["-dcq"]);
        c
    } else if name.ends_with(".ko") {
        return fs::read(path).with_context(|| format!("reading {}", path.display()));
    } else {
        bail!("{} is not a kernel module this bench can unpack", path.display());
    };
    tools::output(command.arg(path))
}

/// Entries of the "newc" cpio format the kernel's initramfs unpacker reads
/// (Documentation/driver-api/early-userspace/buffer-format.rst), written by the `cpio` crate;
/// this numbers the inodes from 1 and gives directories two links.
struct Cpio<W: Write> {
    out: W,
    next_inode: u32,
}

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Self {
        Self { out, next_inode: 1 }
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        self.entry(Builder::new(name).mode(0o040_000 | 0o755).nlink(2), &[])
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.entry(Builder::new(name).mode(0o100_000 | mode), data)
    }

    fn char_device(&mut self, name: &str, mode: u32, rdev: (u32, u32)) -> Result<()> {
        let entry = Builder::new(name).mode(0o020_000 | mode);
        self.entry(entry.rdev_major(rdev.0).rdev_minor(rdev.1), &[])
    }

    fn entry(&mut self, entry: Builder, data: &[u8]) -> Result<()> {
        let size = u32::try_from(data.len()).context("initramfs member larger than 4 GiB")?;
        let inode = self.next_inode;
        self.next_inode += 1;
        // A Writer takes the sink by value and hands it back from finish(); &mut W is one.
        let mut writer = entry.ino(inode).write(&mut self.out, size);
        writer.write_all(data).context("writing the initramfs")?;
        writer.finish().context("writing the initramfs")?;
        Ok(())
    }

    /// The trailer, numbered like the entries (cpio::newc::trailer would give it inode 0).
    fn finish(mut self) -> Result<W> {
        self.entry(Builder::new("TRAILER!!!"), &[])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        assert_eq!(module_name("kernel/fs/9p/9p.ko.xz"), "9p");
        assert_eq!(module_name("kernel/net/9p/9pnet_virtio.ko"), "9pnet_virtio");
        assert_eq!(module_name("kernel/drivers/virtio/virtio-pci.ko.zst"), "virtio_pci");
        assert_eq!(module_name("overlay"), "overlay");
    }

    #[test]
    fn cpio_entries_are_aligned() {
        let mut cpio = Cpio::new(Vec::new());
        cpio.file("init", 0o755, b"abcde").unwrap();
        let out = cpio.finish().unwrap();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        // 110-byte header + "init\0" padded to 116, then 5 data bytes padded to 8.
        assert_eq!(&out[116..121], b"abcde");
    }

    #[test]
    fn cpio_entries_read_back() {
        let mut cpio = Cpio::new(Vec::new());
        cpio.dir("dev").unwrap();
        cpio.char_device("dev/console", 0o600, (5, 1)).unwrap();
        cpio.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        let mut rest = cpio.finish().unwrap();
        let mut seen = Vec::new();
        loop {
            let reader = cpio::newc::Reader::new(rest.as_slice()).unwrap();
            let e = reader.entry();
            seen.push((
                e.name().to_owned(),
                e.ino(),
                e.mode(),
                e.nlink(),
                e.rdev_major(),
                e.rdev_minor(),
                e.file_size(),
            ));
            if e.is_trailer() {
                break;
            }
            rest = reader.finish().unwrap().to_vec();
        }
        assert_eq!(
            seen,
            [
                ("dev".to_owned(), 1, 0o040_755, 2, 0, 0, 0),
                ("dev/console".to_owned(), 2, 0o020_600, 1, 5, 1, 0),
                ("init".to_owned(), 3, 0o100_755, 1, 0, 0, 10),
                ("TRAILER!!!".to_owned(), 4, 0, 1, 0, 0, 0),
            ]
        );
    }
}
