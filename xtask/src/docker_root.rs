//! Debian's Docker, unpacked for the tests: `docker.io` (dockerd, docker-proxy, the CLI),
//! `containerd`, `runc` and `tini` as the machine's own Debian release ships them, extracted
//! with `dpkg -x` into `~/.cache/reach/docker/root` — never installed. Installing would run
//! the package's maintainer scripts, which start dockerd in the root network namespace (its
//! iptables rules there would sit beside this machine's control connection); the tests start
//! dockerd by hand inside a lab namespace instead, with private data and exec roots.
//!
//! Built in a sibling temporary directory and renamed into place only complete, its stamp
//! (the dockerd version found inside) written before the rename: a root without a stamp is
//! never used.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{
    run::{output_ok, run},
    workspace,
};

/// The packages unpacked: dockerd and its CLI, the containerd it starts, the runtime, and the
/// init `docker run --init` uses.
pub const PACKAGES: &[&str] = &["docker.io", "containerd", "runc", "tini"];

/// The stamp inside a complete root (the tests look for it too).
pub const STAMP: &str = ".reach-stamp";

/// Where the root is cached.
pub fn dir() -> PathBuf {
    workspace::cache_dir().join("docker").join("root")
}

/// Unpacks the packages unless a complete root is cached; silent when it is.
pub fn ensure() -> anyhow::Result<PathBuf> {
    let root = dir();
    if root.join(STAMP).is_file() {
        return Ok(root);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "Debian's Docker the tests need is not unpacked yet ({}): run `cargo xtask setup` as root",
            root.display()
        );
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "no apt-get here: the Docker tests use Debian's packages {} unpacked into {}",
            PACKAGES.join(" "),
            root.display()
        );
    }
    let parent = root.parent().context("the root's cache directory has a parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let building = parent.join(format!("root.building-{}", std::process::id()));
    let debs = building.join(".debs");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    eprintln!(
        "setup: unpacking Debian's {} into {} (not installed: the tests run dockerd in a lab namespace)",
        PACKAGES.join(", "),
        root.display()
    );
    // apt-get download writes into the working directory; apt's sandbox user cannot write a
    // root-owned one, so it is made world-writable for the download.
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&debs, fs::Permissions::from_mode(0o777))?;
    let download =
        || run(Command::new("apt-get").arg("download").args(PACKAGES).current_dir(&debs));
    // Package lists can be missing (a slim image cleans them) or stale: refreshed once then.
    if download().is_err() {
        run(Command::new("apt-get").args(["update", "-q"])).context("apt-get update failed")?;
        download().context("apt-get download of Debian's Docker packages failed")?;
    }
    for deb in fs::read_dir(&debs)?.flatten().map(|e| e.path()) {
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&building))
            .with_context(|| format!("dpkg -x {}", deb.display()))?;
    }
    fs::remove_dir_all(&debs)?;
    let version = output_ok(Command::new(building.join("usr/sbin/dockerd")).arg("--version"))
        .with_context(|| {
            format!("the unpacked dockerd in {} does not start", building.display())
        })?;
    fs::write(
        building.join(STAMP),
        format!("{}\npackages {}\n", version.trim(), PACKAGES.join(" ")),
    )
    .with_context(|| format!("writing the stamp in {}", building.display()))?;
    if root.exists() {
        fs::remove_dir_all(&root)
            .with_context(|| format!("removing stampless {}", root.display()))?;
    }
    fs::rename(&building, &root)
        .with_context(|| format!("renaming {} to {}", building.display(), root.display()))?;
    eprintln!("setup: {} unpacked at {}", version.trim(), root.display());
    Ok(root)
}
