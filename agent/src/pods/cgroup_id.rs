//! A cgroup v2 id (what `bpf_get_current_cgroup_id` puts in every socket event) back to its
//! path, and so to its pod and container: the event outlives short processes — a server that
//! fails to bind and exits is gone from /proc before its event is read, but its container's
//! cgroup stays until the container is removed. On cgroup v2 (kernfs) the id is the inode
//! number of the cgroup's directory.
use std::{os::unix::fs::MetadataExt as _, path::Path};

use super::cgroup_path::{self, PodCgroup};

/// Directories looked at before giving up: a node's cgroup tree is a few thousand at most.
const MAX_DIRS: usize = 50_000;

/// The pod and container of the cgroup with v2 id `id`, if it still exists and is a pod's.
pub fn pod_cgroup(id: u64) -> Option<PodCgroup> {
    let root = crate::kernel::cgroup::v2_mount()?;
    let path = find(&root, id)?;
    cgroup_path::parse_path(&path)
}

/// The path (relative to `root`, with a leading `/`) of the directory whose inode is `id`.
pub fn find(root: &Path, id: u64) -> Option<String> {
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        seen += 1;
        if seen > MAX_DIRS {
            return None;
        }
        if std::fs::metadata(&dir).is_ok_and(|m| m.ino() == id) {
            let rel = dir.strip_prefix(root).ok()?;
            return Some(format!("/{}", rel.display()));
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_directory_by_its_inode_and_nothing_for_an_unknown_one() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("kubepods/besteffort/podabc");
        std::fs::create_dir_all(&deep).unwrap();
        let ino = std::fs::metadata(&deep).unwrap().ino();
        assert_eq!(find(dir.path(), ino).as_deref(), Some("/kubepods/besteffort/podabc"));
        assert_eq!(find(dir.path(), u64::MAX), None);
    }
}
