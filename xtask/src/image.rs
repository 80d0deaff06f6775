//! `cargo xtask image`: the agent's container image, built without a daemon.
//!
//! `reach` is built static (musl), checked to need no dynamic loader, and put into an image FROM
//! scratch by Debian's buildah — chroot isolation, vfs storage in a private directory under
//! target/ that is removed afterwards — and exported as an OCI archive that `podman load`,
//! `ctr import` or `skopeo copy` take as is. The other programs reach runs — `nft` and
//! iptables-nft ([`runtime_entries`]) — go in from the build machine with exactly the shared
//! objects `ldd` says they load, and the image's PATH finds them. Nothing else: the BPF objects are embedded, the
//! kernel's BTF, tracefs, cgroups and network namespaces come from the node (the DaemonSet's
//! hostPath mounts), and names resolve from the /etc/hosts and /etc/resolv.conf the container
//! runtime provides.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

use crate::{
    run::{output_ok, run},
    workspace,
};

/// The Rust target of the static build.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// The image's name inside the archive (`podman load` tags it `localhost/reach:VERSION`).
pub const NAME: &str = "reach";

/// The version tag: the workspace's package version.
pub fn tag() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The environment variable `cargo xtask test` names the archive in for the image tests.
pub const ENV: &str = "REACH_IMAGE";

/// Where `cargo xtask image` writes the OCI archive.
pub fn archive_path() -> PathBuf {
    workspace::target_dir().join("image").join(format!("{NAME}-{}.oci.tar", tag()))
}

/// The static `reach` the image holds.
pub fn static_bin() -> PathBuf {
    workspace::target_dir().join(MUSL_TARGET).join("release").join("reach")
}

/// What `cargo xtask image` made.
#[derive(Debug)]
pub struct Built {
    pub archive: PathBuf,
    pub binary_bytes: u64,
    pub archive_bytes: u64,
}

/// Builds the static binary and the image; returns the archive.
pub fn build() -> anyhow::Result<Built> {
    build_static()?;
    let bin = static_bin();
    check_static(&bin)?;
    let archive = archive_path();
    let rootfs = stage_rootfs(&bin)?;
    buildah_image(&rootfs, &archive)?;
    let _ = fs::remove_dir_all(&rootfs);
    let built = Built {
        binary_bytes: fs::metadata(&bin)?.len(),
        archive_bytes: fs::metadata(&archive)?.len(),
        archive,
    };
    eprintln!(
        "image: {} ({:.1} MiB; one layer: /reach of {:.1} MiB, nft, iptables-nft and their libraries), image name {NAME}:{}",
        built.archive.display(),
        built.archive_bytes as f64 / 1048576.0,
        built.binary_bytes as f64 / 1048576.0,
        tag()
    );
    Ok(built)
}

fn build_static() -> anyhow::Result<()> {
    run(workspace::cargo()
        .args([
            "build",
            "--release",
            "--target",
            MUSL_TARGET,
            "-p",
            "reach-agent",
            "--bin",
            "reach",
        ])
        // Symbols only serve a debugger; panics keep file:line without them. The embedded BPF
        // objects keep their BTF (they are data, not this binary's symbols).
        .args(["--config", "profile.release.strip=\"symbols\""]))
    .context("the static (musl) build of reach failed")
}

/// A static executable has no PT_INTERP program header: the kernel starts it without ld.so,
/// so it runs in an image that holds no C library.
pub fn check_static(bin: &Path) -> anyhow::Result<()> {
    let elf = fs::read(bin).with_context(|| format!("read {}", bin.display()))?;
    ensure!(
        elf.len() > 64 && &elf[..4] == b"\x7fELF" && elf[4] == 2,
        "{} is not a 64-bit ELF",
        bin.display()
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(elf[at..at + 4].try_into()?);
        const PT_INTERP: u32 = 3;
        if p_type == PT_INTERP {
            bail!(
                "{} asks for a dynamic loader (PT_INTERP): it would not start in an image FROM \
                 scratch; build it with --target {MUSL_TARGET}",
                bin.display()
            );
        }
    }
    Ok(())
}

/// The PATH of the image: where its nft is.
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// One entry of the image's tree besides /reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A file copied from the same path on this machine (symlinks resolved).
    File(PathBuf),
    /// A symlink at the first path to the second.
    Link(PathBuf, PathBuf),
}

impl Entry {
    pub fn path(&self) -> &Path {
        match self {
            Entry::File(p) | Entry::Link(p, _) => p,
        }
    }
}

/// The first of `candidates` that exists, or the error naming the package.
fn find(candidates: &[&str], package: &str) -> anyhow::Result<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file()).with_context(|| {
        format!(
            "{} is missing: run `cargo xtask setup` (it installs Debian's {package})",
            candidates[0]
        )
    })
}

/// The shared objects `ldd` says `elf` loads (the dynamic loader included; not linux-vdso).
fn ldd(elf: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = output_ok(Command::new("ldd").arg(elf))
        .with_context(|| format!("`ldd {}` failed", elf.display()))?;
    let mut libs = Vec::new();
    for line in out.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)".
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// What reach runs besides itself, from this machine, with every shared object each loads:
/// - `nft`: every namespace's ruleset (`nft -j list ruleset`; the trace table is built over netlink);
/// - iptables-nft (`xtables-nft-multi` as iptables, ip6tables, iptables-nft, ip6tables-nft)
///   with its match and target extensions: the text of an iptables-nft rule (Docker's,
///   kube-proxy's) that decided a SYN (`iptables -t T -S CHAIN`), which nft prints only as
///   "xt target".
pub fn runtime_entries() -> anyhow::Result<Vec<Entry>> {
    let nft = find(&["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"], "nftables")?;
    let xtables = find(&["/usr/sbin/xtables-nft-multi", "/sbin/xtables-nft-multi"], "iptables")?;
    let mut elfs = vec![nft, xtables.clone()];
    let ext_dir =
        ["/usr/lib/x86_64-linux-gnu/xtables", "/lib/x86_64-linux-gnu/xtables", "/usr/lib/xtables"]
            .iter()
            .map(PathBuf::from)
            .find(|d| d.is_dir())
            .context(
                "the iptables extensions (…/xtables/*.so) are missing: install Debian's iptables",
            )?;
    let mut exts: Vec<PathBuf> = fs::read_dir(&ext_dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "so"))
        .collect();
    exts.sort();
    ensure!(!exts.is_empty(), "no iptables extensions in {}", ext_dir.display());
    elfs.extend(exts);
    let mut files: Vec<PathBuf> = Vec::new();
    for elf in &elfs {
        for f in std::iter::once(elf.clone()).chain(ldd(elf)?) {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    let mut entries: Vec<Entry> = files.into_iter().map(Entry::File).collect();
    let dir = xtables.parent().context("no parent")?.to_path_buf();
    let multi = PathBuf::from("xtables-nft-multi");
    for (name, to) in [
        ("iptables-nft", multi.clone()),
        ("ip6tables-nft", multi),
        ("iptables", PathBuf::from("iptables-nft")),
        ("ip6tables", PathBuf::from("ip6tables-nft")),
    ] {
        entries.push(Entry::Link(dir.join(name), to));
    }
    Ok(entries)
}

/// The image's file tree: /reach and [`runtime_entries`].
fn stage_rootfs(bin: &Path) -> anyhow::Result<PathBuf> {
    let root = archive_path().parent().context("archive path has no parent")?.join("rootfs");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root)?;
    fs::copy(bin, root.join("reach"))?;
    for e in runtime_entries()? {
        let to = root.join(e.path().strip_prefix("/")?);
        fs::create_dir_all(to.parent().context("no parent")?)?;
        match &e {
            Entry::File(from) => {
                fs::copy(from, &to).with_context(|| format!("copy {}", from.display()))?;
            }
            Entry::Link(_, target) => std::os::unix::fs::symlink(target, &to)?,
        }
    }
    Ok(root)
}

/// Where buildah and podman write as root whatever their --root/--runroot say: the blob-info
/// cache, the network config directory, and (podman's cgroupfs manager) conmon's cgroup in
/// every hierarchy.
pub fn global_footprint() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> =
        ["/var/lib/containers", "/run/containers"].iter().map(PathBuf::from).collect();
    if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
        for h in hierarchies.flatten() {
            paths.push(h.path().join("libpod_parent"));
        }
    }
    // cgroup v2 without hierarchies below: /sys/fs/cgroup itself.
    paths.push("/sys/fs/cgroup/libpod_parent".into());
    paths
}

/// Removes a cgroup tree (rmdir, deepest first: cgroupfs refuses to unlink files).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Removes the paths of [`global_footprint`] in `created` (those absent before a run).
pub fn remove_footprint(created: &[PathBuf]) {
    for p in created {
        if p.starts_with("/sys/fs/cgroup") {
            remove_cgroup_tree(p);
        } else {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// buildah with storage of its own; what it still writes globally is removed on drop.
struct Buildah {
    dir: PathBuf,
    created: Vec<PathBuf>,
}

impl Buildah {
    fn cmd(&self) -> Command {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", "vfs"])
            // No daemon and no runtime: nothing is RUN, and if it were, chroot isolation.
            .env("BUILDAH_ISOLATION", "chroot");
        c
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        remove_footprint(&self.created);
    }
}

fn buildah_image(rootfs: &Path, archive: &Path) -> anyhow::Result<()> {
    ensure!(
        output_ok(Command::new("buildah").arg("--version")).is_some(),
        "buildah is missing: run `cargo xtask setup` (it installs Debian's buildah)"
    );
    let out_dir = archive.parent().context("archive path has no parent")?;
    fs::create_dir_all(out_dir)?;
    let created = global_footprint().into_iter().filter(|p| !p.exists()).collect();
    let b = Buildah { dir: out_dir.join("buildah-storage"), created };
    let _ = fs::remove_dir_all(&b.dir);
    let container = output_ok(b.cmd().args(["from", "--name", "reach-image-build", "scratch"]))
        .context("`buildah from scratch` failed (is this root?)")?;
    let container = container.trim().to_string();
    run(b.cmd().args(["copy", &container]).arg(format!("{}/", rootfs.display())).arg("/"))?;
    let version = tag();
    run(b.cmd().args([
        "config",
        "--entrypoint",
        r#"["/reach"]"#,
        "--cmd",
        r#"["agent","--metrics","0.0.0.0:9464"]"#,
        "--port",
        "9464/tcp",
        "--env",
        &format!("PATH={PATH}"),
        "--label",
        &format!("org.opencontainers.image.version={version}"),
        "--label",
        "org.opencontainers.image.title=reach",
        "--label",
        "org.opencontainers.image.description=reach agent: why can't that client reach my server, and where did its packets die?",
        &container,
    ]))?;
    let image = format!("{NAME}:{version}");
    // Timestamp 0: the same binary gives the same image, layer digest included.
    run(b.cmd().args([
        "commit",
        "--quiet",
        "--timestamp",
        "0",
        "--format",
        "oci",
        &container,
        &image,
    ]))?;
    let _ = fs::remove_file(archive);
    run(b
        .cmd()
        .args(["push", "--quiet", &image])
        .arg(format!("oci-archive:{}:{image}", archive.display())))?;
    run(b.cmd().args(["rm", &container]))?;
    Ok(())
}
