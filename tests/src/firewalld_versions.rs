//! The firewalld versions every real-firewalld test runs on: the host's package (1.3.3 on
//! Debian 12) and the Debian trixie root `cargo xtask setup` builds and caches (2.3.1), whose
//! daemons the lab fixture runs chrooted. 1.x and 2.x generate different nft chains, so a test
//! that passes on one says nothing about the other.
//!
//! A missing root fails the test saying how to build it (never a silent skip): `cargo xtask
//! test` runs setup first.
use std::path::PathBuf;

use reach_agent::lab::{Firewalld, FirewalldBuild, FirewalldOptions, NetNsFd};

/// Where `cargo xtask setup` caches the trixie root (xtask's `firewalld_root::dir()`; the test
/// `firewalld_root_path_matches_xtask` keeps the two equal): $XDG_CACHE_HOME/reach or
/// ~/.cache/reach, then firewalld/trixie.
pub fn trixie_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"))
        .join("reach")
        .join("firewalld")
        .join("trixie")
}

/// The file `cargo xtask setup` writes in a complete root (xtask's `firewalld_root::STAMP`).
pub const STAMP: &str = ".reach-stamp";

/// The cached trixie root, or a panic saying how to build it.
pub fn trixie() -> FirewalldBuild {
    root_at(trixie_root())
}

/// The root at `root` if complete (stamped), or a panic saying how to build it.
fn root_at(root: PathBuf) -> FirewalldBuild {
    // The stamp is written last, after the root was renamed into place complete.
    assert!(
        root.join(STAMP).is_file(),
        "no firewalld 2.x root at {} (or it is incomplete): run `cargo xtask setup`",
        root.display()
    );
    FirewalldBuild::root(root)
}

/// Every firewalld to test on: the host's, then the trixie root's.
pub fn all() -> Vec<FirewalldBuild> {
    vec![FirewalldBuild::host(), trixie()]
}

/// Default fixture options for `build`.
pub fn options(build: &FirewalldBuild) -> FirewalldOptions {
    FirewalldOptions { build: build.clone(), ..FirewalldOptions::default() }
}

/// Starts `build`'s firewalld in `ns` with default options, panicking with what failed.
pub fn start(ns: &NetNsFd, build: &FirewalldBuild) -> Firewalld {
    Firewalld::start_with(ns, options(build))
        .unwrap_or_else(|e| panic!("starting {build} in {}: {e}", ns.path().display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panic_text(f: impl FnOnce() -> FirewalldBuild + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).expect_err("accepted a root without a stamp");
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn a_missing_or_unstamped_root_fails_saying_how_to_build_it() {
        let dir = std::env::temp_dir().join(format!("reach-fw-versions-{}", std::process::id()));
        let missing = panic_text({
            let dir = dir.clone();
            move || root_at(dir)
        });
        assert!(missing.contains("run `cargo xtask setup`"), "{missing}");
        // A half-built root (no stamp) is as good as none.
        std::fs::create_dir_all(dir.join("usr")).unwrap();
        let unstamped = panic_text({
            let dir = dir.clone();
            move || root_at(dir)
        });
        assert!(unstamped.contains("run `cargo xtask setup`"), "{unstamped}");
        std::fs::write(dir.join(STAMP), "firewalld 2.3.1\n").unwrap();
        assert_eq!(root_at(dir.clone()), FirewalldBuild::root(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
