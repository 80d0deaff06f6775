//! Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on unified systems,
//! `/sys/fs/cgroup/unified` on hybrid ones): cgroup sock hooks attach to its root.
use std::path::PathBuf;

pub fn v2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    find_v2(&mountinfo)
}

/// Finds the mount point of the first cgroup2 entry in a mountinfo text.
pub fn find_v2(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_hybrid_and_unified_mounts() {
        let hybrid = "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      35 25 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(super::find_v2(hybrid).unwrap().to_str(), Some("/sys/fs/cgroup/unified"));
        let unified =
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(super::find_v2(unified).unwrap().to_str(), Some("/sys/fs/cgroup"));
        assert_eq!(super::find_v2("1 0 8:1 / / rw - ext4 /dev/sda rw\n"), None);
    }
}
