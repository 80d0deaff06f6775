//! The tests' Docker: Debian's dockerd from where `cargo xtask setup` unpacks it (xtask's
//! `docker_root`), started by the lab's fixture (`reach_agent::lab::docker`) in a lab
//! namespace. A missing root fails the test saying how to get it (never a silent skip).
use std::path::{Path, PathBuf};

use reach_agent::lab::{NetNsFd, docker::Dockerd};

/// Where `cargo xtask setup` unpacks Debian's Docker (xtask's `docker_root::dir()`; the test
/// `docker_root_path_matches_xtask` keeps the two equal).
pub fn root() -> PathBuf {
    crate::firewalld_versions::trixie_root()
        .parent()
        .and_then(Path::parent)
        .expect("the cache directory")
        .join("docker")
        .join("root")
}

/// The file `cargo xtask setup` writes in a complete root (xtask's `docker_root::STAMP`).
pub const STAMP: &str = ".reach-stamp";

/// dockerd in `ns`, ready, or a panic saying what is missing or what failed.
pub fn start(ns: &NetNsFd) -> Dockerd {
    let root = root();
    assert!(
        root.join(STAMP).is_file(),
        "Debian's Docker is not unpacked at {}: run `cargo xtask setup`",
        root.display()
    );
    Dockerd::start(ns, &root)
        .unwrap_or_else(|e| panic!("starting dockerd in {}: {e}", ns.path().display()))
}
