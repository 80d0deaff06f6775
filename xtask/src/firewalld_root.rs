//! The firewalld 2.x root: a minimal Debian trixie tree (firewalld 2.3.1, nftables 1.1.3) that
//! the lab's firewalld fixture runs chrooted beside the host's firewalld (1.3.3 on bookworm), so
//! every real-firewalld test runs on both generations of firewalld's nft chains.
//!
//! Built once by debootstrap and cached like the QEMU kernels, in `~/.cache/reach/firewalld/
//! trixie`. It is built in a sibling temporary directory and renamed into place only complete,
//! with its stamp (the firewalld version found inside) written before the rename: a root
//! without a stamp is never used. The mirror is the machine's own Debian mirror (its apt
//! sources), falling back to deb.debian.org.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{
    run::{output_ok, run},
    workspace,
};

/// The Debian release whose firewalld the root carries.
pub const SUITE: &str = "trixie";

/// What debootstrap installs besides minbase. libpam-systemd must be named: polkitd (which
/// firewalld depends on) needs a logind that debootstrap does not resolve by itself.
pub const PACKAGES: &str = "firewalld,nftables,dbus,python3-nftables,iproute2,libpam-systemd";

/// Used when the machine's apt sources name no Debian mirror.
pub const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";

/// The stamp inside a complete root (the lab's tests look for it too).
pub const STAMP: &str = ".reach-stamp";

/// Where the root is cached.
pub fn dir() -> PathBuf {
    workspace::cache_dir().join("firewalld").join(SUITE)
}

/// The cached root's firewalld version, from its stamp; None when there is no complete root.
pub fn cached_version(root: &Path) -> Option<String> {
    let stamp = fs::read_to_string(root.join(STAMP)).ok()?;
    stamp.lines().find_map(|l| l.strip_prefix("firewalld ")).map(str::to_string)
}

/// Builds the root unless a complete one is cached; silent when it is.
pub fn ensure() -> anyhow::Result<PathBuf> {
    let root = dir();
    if cached_version(&root).is_some() {
        return Ok(root);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the firewalld {SUITE} root the tests need is not built yet ({}): run `cargo xtask setup` as root (debootstrap needs it)",
            root.display()
        );
    }
    let parent = root.parent().context("the root's cache directory has a parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    remove_abandoned(parent)?;
    if root.exists() {
        // Only a root from before stamps existed can be here (see the module docs).
        refuse_if_mounted(&root)?;
        fs::remove_dir_all(&root)
            .with_context(|| format!("removing stampless {}", root.display()))?;
    }

    let mirror = machine_mirror();
    let building = parent.join(format!("{SUITE}.building-{}", std::process::id()));
    eprintln!(
        "setup: building the firewalld 2.x test root (debootstrap {SUITE} from {mirror} into {}) — a few minutes",
        root.display()
    );
    let started = Instant::now();
    run(Command::new("debootstrap").args([
        "--variant=minbase",
        &format!("--include={PACKAGES}"),
        SUITE,
        &building.to_string_lossy(),
        &mirror,
    ]))
    .with_context(|| {
        format!("debootstrap failed; its log is {}/debootstrap/debootstrap.log", building.display())
    })?;
    let version = root_version(&building)?;
    fs::write(
        building.join(STAMP),
        format!("firewalld {version}\nsuite {SUITE}\nmirror {mirror}\npackages {PACKAGES}\n"),
    )
    .with_context(|| format!("writing the stamp in {}", building.display()))?;
    fs::rename(&building, &root)
        .with_context(|| format!("renaming {} to {}", building.display(), root.display()))?;
    eprintln!(
        "setup: firewalld {version} root ready in {:.0?} at {}",
        started.elapsed(),
        root.display()
    );
    Ok(root)
}

/// firewalld's own version constant, asked of the root's Python (2.x has no `--version`).
fn root_version(root: &Path) -> anyhow::Result<String> {
    let version = output_ok(Command::new("chroot").arg(root).args([
        "/usr/bin/python3",
        "-c",
        "import firewall.config as c; print(c.VERSION)",
    ]))
    .with_context(|| format!("no firewalld Python package answers in {}", root.display()))?;
    let version = version.trim().to_string();
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        bail!("{} printed {version:?} as firewalld's version", root.display());
    }
    Ok(version)
}

/// Removes half-built roots a killed setup left (`<suite>.building-<pid>` of a dead pid).
fn remove_abandoned(parent: &Path) -> anyhow::Result<()> {
    let prefix = format!("{SUITE}.building-");
    for entry in fs::read_dir(parent).with_context(|| format!("listing {}", parent.display()))? {
        let path = entry?.path();
        let Some(pid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue; // another setup is building it right now
        }
        refuse_if_mounted(&path)?;
        eprintln!("setup: removing the half-built {}", path.display());
        fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// debootstrap mounts /proc and /sys inside the tree while it runs; a killed one can leave them
/// mounted, and deleting through a mounted /proc or /sys would be a disaster.
fn refuse_if_mounted(dir: &Path) -> anyhow::Result<()> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    let dir_text = dir.to_string_lossy();
    if let Some(line) = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .find(|m| Path::new(m).starts_with(dir))
    {
        bail!("{line} is mounted inside {dir_text}: unmount it, then rerun `cargo xtask setup`");
    }
    Ok(())
}

/// The machine's Debian mirror, from its apt sources, else [`FALLBACK_MIRROR`].
pub fn machine_mirror() -> String {
    let mut deb822 = Vec::new();
    let mut one_line = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files {
        let Ok(text) = fs::read_to_string(&path) else { continue };
        match path.extension().and_then(|e| e.to_str()) {
            Some("sources") => deb822.push(text),
            Some("list") => one_line.push(text),
            _ => {}
        }
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        one_line.push(text);
    }
    mirror_from_sources(&deb822, &one_line).unwrap_or_else(|| FALLBACK_MIRROR.to_string())
}

/// One `deb` source: its URI and suites.
#[derive(Debug, PartialEq)]
struct Source {
    uri: String,
    suites: Vec<String>,
}

/// The first Debian archive mirror among the sources (deb822 `.sources` texts first, then
/// one-line `sources.list` texts): a `deb` (not `deb-src`) entry over http(s) whose suites are
/// release suites, not `-security` (a different archive, debian-security, without trixie's
/// packages).
fn mirror_from_sources(deb822: &[String], one_line: &[String]) -> Option<String> {
    let sources = deb822
        .iter()
        .flat_map(|t| parse_deb822(t))
        .chain(one_line.iter().flat_map(|t| parse_one_line(t)));
    sources
        .filter(|s| s.uri.starts_with("http://") || s.uri.starts_with("https://"))
        .find(|s| !s.suites.is_empty() && s.suites.iter().all(|suite| !suite.contains("security")))
        .map(|s| s.uri.trim_end_matches('/').to_string())
}

/// deb822 stanzas (blank-line separated `Key: value` fields, `#` comments, continuation lines
/// starting with a space) → the enabled `deb` sources.
fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n").flat_map(|s| s.split("\r\n\r\n")) {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                fields.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let field = |name: &str| {
            fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
        };
        let words =
            |name: &str| field(name).split_whitespace().map(str::to_string).collect::<Vec<_>>();
        if !words("types").iter().any(|t| t == "deb") || field("enabled").eq_ignore_ascii_case("no")
        {
            continue;
        }
        for uri in words("uris") {
            out.push(Source { uri, suites: words("suites") });
        }
    }
    out
}

/// One-line `deb [options] URI SUITE COMPONENT…` entries.
fn parse_one_line(text: &str) -> Vec<Source> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let rest = line.strip_prefix("deb ")?.trim_start();
            // Options are a bracketed list that may contain spaces.
            let rest = match rest.strip_prefix('[') {
                Some(opts) => opts.split_once(']')?.1.trim_start(),
                None => rest,
            };
            let mut words = rest.split_whitespace();
            let uri = words.next()?.to_string();
            let suite = words.next()?.to_string();
            Some(Source { uri, suites: vec![suite] })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM_SOURCES: &str = "Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn mirror_is_the_first_release_archive_of_deb822_sources() {
        assert_eq!(
            mirror_from_sources(&[BOOKWORM_SOURCES.into()], &[]).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        // Security first, a disabled and a deb-src stanza: none of them is the archive mirror.
        let text = "Types: deb\nURIs: http://security.example/debian-security\nSuites: trixie-security\n\n\
                    Types: deb\nEnabled: no\nURIs: http://disabled.example/debian\nSuites: trixie\n\n\
                    Types: deb-src\nURIs: http://src.example/debian\nSuites: trixie\n\n\
                    Types: deb deb-src\nURIs:\n http://ftp.fr.debian.org/debian/\nSuites: trixie\n";
        assert_eq!(
            mirror_from_sources(&[text.into()], &[]).as_deref(),
            Some("http://ftp.fr.debian.org/debian")
        );
    }

    #[test]
    fn mirror_from_one_line_sources_and_the_fallback() {
        let list = "# comment\ndeb-src http://src.example/debian bookworm main\n\
                    deb http://security.debian.org/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] https://mirror.example/debian/ bookworm main # why\n";
        assert_eq!(
            mirror_from_sources(&[], &[list.into()]).as_deref(),
            Some("https://mirror.example/debian")
        );
        // deb822 sources win over sources.list, as apt lists them first here.
        assert_eq!(
            mirror_from_sources(&[BOOKWORM_SOURCES.into()], &[list.into()]).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(mirror_from_sources(&[], &["deb cdrom:[x]/ bookworm main\n".into()]), None);
        assert_eq!(mirror_from_sources(&[], &[]), None);
    }

    #[test]
    fn stamp_gives_the_cached_version_and_no_stamp_no_root() {
        let dir = std::env::temp_dir().join(format!("reach-xtask-stamp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(cached_version(&dir), None, "a root without a stamp counts as missing");
        fs::write(dir.join(STAMP), "firewalld 2.3.1\nsuite trixie\n").unwrap();
        assert_eq!(cached_version(&dir).as_deref(), Some("2.3.1"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
