//! Which processes hold a socket: socket inode → (pid, comm), from the `socket:[N]` links in
//! /proc/PID/fd.
//!
//! sock_diag gives only the inode, and a listener's owner is what a user recognises ("nginx",
//! "that container's app"). The fd tables are machine-wide, whatever each process's network
//! namespace, so one pass over /proc answers for every namespace at once.
use std::{collections::HashMap, ffi::OsStr, fs, os::unix::ffi::OsStrExt, path::Path};

use serde::Serialize;

/// A process holding at least one fd to a socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub pid: u32,
    /// /proc/PID/comm (at most 15 bytes, set by the program; empty if it could not be read).
    pub comm: String,
}

/// Scans every process once; each socket's owners are sorted by pid, without duplicates.
///
/// Processes that exit mid-scan or whose fd directory is unreadable (EACCES without
/// CAP_SYS_PTRACE/DAC_READ_SEARCH) are skipped: their sockets simply have no known owner.
pub fn socket_owners() -> HashMap<u64, Vec<Owner>> {
    socket_owners_in(Path::new("/proc"))
}

fn socket_owners_in(proc_root: &Path) -> HashMap<u64, Vec<Owner>> {
    let mut pids: Vec<u32> = match fs::read_dir(proc_root) {
        Ok(entries) => {
            entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
        }
        Err(_) => return HashMap::new(),
    };
    // Ascending pids make every owner list sorted without a second pass.
    pids.sort_unstable();

    let mut owners: HashMap<u64, Vec<Owner>> = HashMap::new();
    for pid in pids {
        let proc_pid = proc_root.join(pid.to_string());
        let Ok(fds) = fs::read_dir(proc_pid.join("fd")) else { continue };
        let mut comm: Option<String> = None;
        for fd in fds.flatten() {
            // A closed fd between readdir and readlink is normal churn.
            let Ok(target) = fs::read_link(fd.path()) else { continue };
            let Some(inode) = socket_inode(target.as_os_str()) else { continue };
            let list = owners.entry(inode).or_default();
            // Several fds of one process (dup, fork before exec) count once.
            if list.last().is_some_and(|o| o.pid == pid) {
                continue;
            }
            let comm = comm.get_or_insert_with(|| read_comm(&proc_pid));
            list.push(Owner { pid, comm: comm.clone() });
        }
    }
    owners
}

/// /proc/PID/cmdline as its arguments (NUL-separated; empty ones dropped), None when it cannot
/// be read (the process is gone).
pub fn read_argv(proc_pid: &Path) -> Option<Vec<String>> {
    let raw = fs::read(proc_pid.join("cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

fn read_comm(proc_pid: &Path) -> String {
    fs::read_to_string(proc_pid.join("comm"))
        .map(|c| c.trim_end_matches('\n').to_string())
        .unwrap_or_default()
}

/// `socket:[12345]` → 12345; any other fd target (files, pipes, anon inodes) → None.
pub fn socket_inode(link: &OsStr) -> Option<u64> {
    let digits = link.as_bytes().strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    #[test]
    fn parses_socket_links_only() {
        assert_eq!(socket_inode(OsStr::new("socket:[12345]")), Some(12345));
        assert_eq!(socket_inode(OsStr::new("pipe:[12345]")), None);
        assert_eq!(socket_inode(OsStr::new("/dev/null")), None);
        assert_eq!(socket_inode(OsStr::new("socket:[]")), None);
        assert_eq!(socket_inode(OsStr::new("socket:[12x]")), None);
        assert_eq!(socket_inode(OsStr::new("anon_inode:[eventfd]")), None);
    }

    fn fake_process(root: &Path, pid: u32, comm: &str, fds: &[&str]) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(dir.join("fd")).unwrap();
        fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        for (n, target) in fds.iter().enumerate() {
            symlink(target, dir.join("fd").join(n.to_string())).unwrap();
        }
    }

    #[test]
    fn fake_proc_tree_is_joined_sorted_and_deduplicated() {
        let root = tempfile::tempdir().unwrap();
        // Created out of order, with a duplicated fd, non-socket fds and non-pid entries.
        fake_process(root.path(), 300, "nginx", &["socket:[7]", "socket:[7]", "/var/log/x"]);
        fake_process(root.path(), 25, "sshd", &["socket:[7]", "socket:[9]", "pipe:[3]"]);
        fake_process(root.path(), 40, "no-sockets", &["/dev/null"]);
        fs::create_dir_all(root.path().join("self/fd")).unwrap();
        fs::create_dir_all(root.path().join("41")).unwrap(); // exited: no fd dir any more

        let owners = socket_owners_in(root.path());
        let o = |pid, comm: &str| Owner { pid, comm: comm.to_string() };
        assert_eq!(owners.len(), 2, "{owners:?}");
        assert_eq!(owners[&7], vec![o(25, "sshd"), o(300, "nginx")]);
        assert_eq!(owners[&9], vec![o(25, "sshd")]);
    }

    #[test]
    fn missing_proc_root_gives_empty_map() {
        assert!(socket_owners_in(Path::new("/nonexistent-reach-proc")).is_empty());
    }

    #[test]
    fn finds_this_process_for_a_socket_it_holds() {
        // Opened in a scratch namespace: the fd table, not the namespace, decides ownership.
        let listener = crate::netns::enter::in_new_netns(|| {
            crate::netns::enter::loopback_up().unwrap();
            std::net::TcpListener::bind("127.0.0.1:0").unwrap()
        })
        .unwrap();
        let inode =
            fs::metadata(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&listener)))
                .unwrap()
                .ino();
        let me = std::process::id();
        let comm = read_comm(Path::new("/proc/self"));
        let owners = socket_owners();
        // `contains`, not equality: a child forked by a concurrent test holds a copy of our fd
        // table until it execs (CLOEXEC then drops it).
        let found = owners.get(&inode).cloned().unwrap_or_default();
        assert!(found.contains(&Owner { pid: me, comm }), "inode {inode}: {found:?}");
    }
}
