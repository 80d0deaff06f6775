//! Debian kernels for the guest: resolve a line such as "6.18" to the newest matching image
//! package, download it with the private apt instance, unpack it and cache it under
//! `cache_dir()/vm/<line>/` so later runs neither download nor touch the network.
use std::cmp::Ordering;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::apt::Apt;
use super::scratch::Scratch;
use super::tools::{self, DPKG_DEB};
use crate::workspace;

/// An unpacked kernel, ready to boot.
pub struct Kernel {
    /// `uname -r` of the kernel, e.g. `6.1.0-50-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`, with a modules.dep that busybox's modprobe understands.
    pub modules: PathBuf,
}

/// Written last: its presence means the directory holds a complete kernel.
const MARKER: &str = "kernel.json";

#[derive(Serialize, Deserialize)]
struct Marker {
    packages: Vec<String>,
    release: String,
}

fn vm_cache() -> PathBuf {
    workspace::cache_dir().join("vm")
}

/// The kernel of Debian line `line` ("6.1", "6.12", "6.18", …), downloaded on first use.
pub fn ensure(line: &str) -> Result<Kernel> {
    validate(line)?;
    let dir = vm_cache().join(line);
    if let Some(kernel) = load(&dir)? {
        return Ok(kernel);
    }
    fs::create_dir_all(vm_cache()).with_context(|| format!("creating {}", vm_cache().display()))?;
    // One downloader at a time (test threads, parallel `cargo xtask` runs): apt's own lock
    // would make the second one fail instead of wait.
    let lock_path = vm_cache().join(".lock");
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
    if let Some(kernel) = load(&dir)? {
        return Ok(kernel); // Another process fetched it while we waited.
    }
    let started = std::time::Instant::now();
    eprintln!("vm: fetching the Debian {line} kernel into {} (first use only)", dir.display());
    let kernel = fetch(line, &dir)?;
    eprintln!("vm: kernel {} ready in {:.1} s", kernel.release, started.elapsed().as_secs_f64());
    Ok(kernel)
}

/// A kernel line is dotted numbers; anything else would also be a regex injection into apt.
fn validate(line: &str) -> Result<()> {
    let parts: Vec<&str> = line.split('.').collect();
    ensure!(
        parts.len() >= 2
            && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "kernel version {line:?} is not of the form MAJOR.MINOR (e.g. 6.1, 6.12, 6.18)"
    );
    Ok(())
}

fn load(dir: &Path) -> Result<Option<Kernel>> {
    let marker_path = dir.join(MARKER);
    let text = match fs::read_to_string(&marker_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", marker_path.display())),
    };
    let marker: Marker = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", marker_path.display()))?;
    let kernel = locate(&dir.join("root"), &marker.release).with_context(|| {
        format!(
            "the cached kernel in {} is incomplete; remove it to download it again",
            dir.display()
        )
    })?;
    Ok(Some(kernel))
}

fn fetch(line: &str, dir: &Path) -> Result<Kernel> {
    // The lists are only needed for this fetch (~230 MB with apt's caches): a temp dir.
    let apt_dir = Scratch::new("reach-apt")?;
    let apt = Apt::new(apt_dir.path())?;
    apt.update()?;
    let packages = resolve(&apt, line)?;
    // No marker: whatever is there is an interrupted earlier attempt.
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let debs = dir.join("debs");
    let root = dir.join("root");
    for d in [&debs, &root] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    apt.download(&packages, &debs)?;
    for entry in fs::read_dir(&debs).with_context(|| format!("listing {}", debs.display()))? {
        let deb = entry.with_context(|| format!("listing {}", debs.display()))?.path();
        tools::output(DPKG_DEB.command()?.arg("-x").arg(&deb).arg(&root))?;
    }
    fs::remove_dir_all(&debs).with_context(|| format!("removing {}", debs.display()))?;

    // Debian moved modules (and from 6.19 the image too) to /usr/lib/modules; the guest and
    // depmod look in /lib/modules.
    let usr_modules = root.join("usr/lib/modules");
    let modules = root.join("lib/modules");
    if usr_modules.is_dir() && !modules.exists() {
        fs::create_dir_all(root.join("lib"))
            .with_context(|| format!("creating {}/lib", root.display()))?;
        fs::rename(&usr_modules, &modules).with_context(|| {
            format!("moving {} to {}", usr_modules.display(), modules.display())
        })?;
    }
    let release = single_subdir(&modules)?;
    // The packages ship no modules.dep (their postinst runs depmod). busybox's depmod writes
    // the text indexes its modprobe reads; the host need not have kmod.
    tools::output(tools::BUSYBOX.command()?.arg("depmod").arg("-b").arg(&root).arg(&release))
        .context("generating modules.dep")?;
    let kernel = locate(&root, &release)?;

    let marker = serde_json::to_string_pretty(&Marker { packages, release })?;
    let tmp = dir.join(format!("{MARKER}.tmp"));
    fs::write(&tmp, marker).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, dir.join(MARKER)).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(kernel)
}

/// The packages holding line `line`'s newest generic amd64 kernel: the image package, plus,
/// from 6.19 on (where `linux-image-*` only depends on the pieces), its `linux-binary-*`,
/// `linux-modules-*` and `linux-base-*` packages of the same ABI.
fn resolve(apt: &Apt, line: &str) -> Result<Vec<String>> {
    let regex = format!("^linux-image-{}[.+-]", line.replace('.', "\\."));
    let names = apt.search_names(&regex)?;
    let best = names
        .iter()
        .filter_map(|name| generic_abi(name).map(|abi| (abi, name)))
        // Newest ABI; for equal ABIs prefer the -unsigned package (same files, no signatures).
        .max_by(|(a, an), (b, bn)| {
            version_cmp(a, b).then(an.ends_with("-unsigned").cmp(&bn.ends_with("-unsigned")))
        });
    let Some((abi, image)) = best else {
        bail!(
            "Debian has no generic amd64 kernel image for {line} in bookworm, trixie or \
             trixie-backports (6.1 is in bookworm, 6.12 in trixie, the newest lines in \
             trixie-backports)"
        );
    };
    let mut packages = vec![image.clone()];
    for dep in apt.depends(image)? {
        if dep.contains(abi) && apt.has_candidate(&dep)? {
            packages.push(dep);
        }
    }
    Ok(packages)
}

/// The ABI of a generic (not cloud/rt/dbg) amd64 image package name:
/// `linux-image-6.1.0-50-amd64-unsigned` → `6.1.0-50`, `linux-image-6.18.15+deb13-amd64` → `6.18.15+deb13`.
fn generic_abi(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("linux-image-")?;
    let abi = rest.strip_suffix("-unsigned").unwrap_or(rest).strip_suffix("-amd64")?;
    let (base, suffix) = abi.split_once('+').unwrap_or((abi, "deb0"));
    let numeric =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    (numeric(base) && suffix.strip_prefix("deb").is_some_and(numeric)).then_some(abi)
}

/// Compares version strings with runs of digits taken as numbers ("6.18.5" < "6.18.15").
fn version_cmp(a: &str, b: &str) -> Ordering {
    // Splits into maximal runs of digits and of non-digits.
    fn chunks(s: &str) -> Vec<&str> {
        let mut rest = s;
        std::iter::from_fn(|| {
            let digit = rest.chars().next()?.is_ascii_digit();
            let end = rest.find(|c: char| c.is_ascii_digit() != digit).unwrap_or(rest.len());
            let (chunk, tail) = rest.split_at(end);
            rest = tail;
            Some(chunk)
        })
        .collect()
    }
    let (a, b) = (chunks(a), chunks(b));
    for (x, y) in a.iter().zip(&b) {
        let numeric = |s: &str| s.starts_with(|c: char| c.is_ascii_digit());
        let order = if numeric(x) && numeric(y) {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then(x.cmp(y))
        } else {
            x.cmp(y)
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

fn single_subdir(dir: &Path) -> Result<String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if entry.path().is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one kernel release in {}, found {names:?}", dir.display()),
    }
}

/// The image and module tree of `release` unpacked under `root`.
fn locate(root: &Path, release: &str) -> Result<Kernel> {
    let modules = root.join("lib/modules").join(release);
    // Up to 6.18 the image is /boot/vmlinuz-<release>; from 6.19 it sits in the module tree.
    let vmlinuz = [root.join("boot").join(format!("vmlinuz-{release}")), modules.join("vmlinuz")]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("no vmlinuz for {release} under {}", root.display()))?;
    ensure!(modules.join("modules.dep").is_file(), "{} has no modules.dep", modules.display());
    Ok(Kernel { release: release.to_owned(), vmlinuz, modules })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_generic_amd64_images() {
        assert_eq!(generic_abi("linux-image-6.1.0-50-amd64-unsigned"), Some("6.1.0-50"));
        assert_eq!(generic_abi("linux-image-6.18.15+deb13-amd64"), Some("6.18.15+deb13"));
        assert_eq!(generic_abi("linux-image-6.1.0-50-cloud-amd64"), None);
        assert_eq!(generic_abi("linux-image-6.12.117+deb13-rt-amd64-unsigned"), None);
        assert_eq!(generic_abi("linux-image-7.3.4+deb13-amd64-dbg"), None);
        assert_eq!(generic_abi("linux-image-amd64"), None);
    }

    #[test]
    fn orders_versions_numerically() {
        assert_eq!(version_cmp("6.18.5+deb13", "6.18.15+deb13"), Ordering::Less);
        assert_eq!(version_cmp("6.1.0-50", "6.1.0-47"), Ordering::Greater);
        assert_eq!(version_cmp("6.1.0-9", "6.1.0-10"), Ordering::Less);
        assert_eq!(version_cmp("6.12", "6.12"), Ordering::Equal);
    }

    #[test]
    fn rejects_non_numeric_lines() {
        assert!(validate("6.18").is_ok());
        assert!(validate("6").is_err());
        assert!(validate("6.*").is_err());
        assert!(validate("6..1").is_err());
    }
}
