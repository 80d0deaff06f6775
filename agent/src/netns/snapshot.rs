//! The machine's listener snapshot: for every network namespace, its TCP listeners and bound UDP
//! sockets with the processes that own them.
//!
//! "My server listens" is usually true somewhere; the snapshot shows where exactly (which
//! namespace, which address, v6-only or not, bound to which device) so reach can compare that
//! with where the client's packets arrive.
use std::{collections::HashMap, io};

use serde::Serialize;

use super::{
    enter,
    inventory::{self, NetNs},
    owners::{self, Owner},
    sock_diag::{self, SockEntry},
};

/// The listeners of one network namespace, or why they could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NsListeners {
    /// The namespace's nsfs inode (see `inventory::NetNs`).
    pub inode: u64,
    pub name: String,
    pub listeners: Vec<Listener>,
    /// Set when this namespace could not be entered or dumped; `listeners` is then empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A socket from sock_diag joined with its owning processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    #[serde(flatten)]
    pub socket: SockEntry,
    /// Sorted by pid; empty when no readable process holds the socket (its owner exited, or
    /// /proc/PID/fd was not readable).
    pub owners: Vec<Owner>,
}

/// Dumps every namespace of `inventory::list()` (host first); a namespace that fails is reported
/// with its error and does not stop the others.
pub fn listeners_snapshot() -> Vec<NsListeners> {
    let dumps: Vec<(NetNs, io::Result<Vec<SockEntry>>)> = inventory::list()
        .into_iter()
        .map(|ns| {
            let result = enter::in_netns(&ns.path, sock_diag::dump_listeners).and_then(|r| r);
            (ns, result)
        })
        .collect();
    // One /proc scan for all namespaces, after the dumps so every dumped socket already exists.
    let owners = owners::socket_owners();
    join(dumps, &owners)
}

fn join(
    dumps: Vec<(NetNs, io::Result<Vec<SockEntry>>)>,
    owners: &HashMap<u64, Vec<Owner>>,
) -> Vec<NsListeners> {
    dumps
        .into_iter()
        .map(|(ns, result)| {
            let (listeners, error) = match result {
                Ok(entries) => (
                    entries
                        .into_iter()
                        .map(|socket| Listener {
                            owners: owners.get(&socket.inode).cloned().unwrap_or_default(),
                            socket,
                        })
                        .collect(),
                    None,
                ),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            NsListeners { inode: ns.inode, name: ns.name, listeners, error }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, TcpListener},
        os::unix::{fs::MetadataExt, process::CommandExt},
        path::{Path, PathBuf},
        process::{Child, Command},
    };

    use super::*;
    use crate::netns::sock_diag::{Family, Proto};

    fn ns(inode: u64, name: &str) -> NetNs {
        NetNs { inode, name: name.into(), path: PathBuf::from("/nonexistent"), processes: 1 }
    }

    fn entry(addr: &str, port: u16, inode: u64) -> SockEntry {
        let addr: IpAddr = addr.parse().unwrap();
        SockEntry {
            family: if addr.is_ipv4() { Family::V4 } else { Family::V6 },
            proto: Proto::Tcp,
            addr,
            port,
            bound_dev_if: 0,
            uid: 0,
            inode,
            cookie: 99,
            v6only: addr.is_ipv6().then_some(false),
            backlog: Some(128),
            accept_queue: Some(0),
        }
    }

    fn owner(pid: u32, comm: &str) -> Owner {
        Owner { pid, comm: comm.into() }
    }

    #[test]
    fn joins_owners_and_keeps_failed_namespaces() {
        let owners = HashMap::from([(11, vec![owner(1, "init"), owner(50, "nginx")])]);
        let dumps = vec![
            (ns(1000, "host"), Ok(vec![entry("0.0.0.0", 80, 11), entry("::", 22, 12)])),
            (ns(2000, "blue"), Err(io::Error::other("setns into /run/netns/blue: EPERM"))),
        ];
        let got = join(dumps, &owners);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].inode, got[0].name.as_str(), &got[0].error), (1000, "host", &None));
        assert_eq!(got[0].listeners[0].owners, vec![owner(1, "init"), owner(50, "nginx")]);
        assert_eq!(got[0].listeners[1].owners, vec![]);
        assert_eq!(got[1].listeners, vec![]);
        assert_eq!(got[1].error.as_deref(), Some("setns into /run/netns/blue: EPERM"));
    }

    #[test]
    fn json_shape() {
        let owners = HashMap::from([(11, vec![owner(50, "nginx")])]);
        let dumps = vec![
            (ns(1000, "host"), Ok(vec![entry("127.0.0.1", 8080, 11)])),
            (ns(2000, "gone"), Err(io::Error::other("boom"))),
        ];
        let v = serde_json::to_value(join(dumps, &owners)).unwrap();
        let expected = serde_json::json!([
            {
                "inode": 1000,
                "name": "host",
                "listeners": [{
                    "family": "ipv4", "proto": "tcp", "addr": "127.0.0.1", "port": 8080,
                    "bound_dev_if": 0, "uid": 0, "inode": 11, "cookie": 99, "v6only": null,
                    "backlog": 128, "accept_queue": 0,
                    "owners": [{ "pid": 50, "comm": "nginx" }]
                }]
            },
            { "inode": 2000, "name": "gone", "listeners": [], "error": "boom" }
        ]);
        assert_eq!(v, expected);
    }

    /// A `sleep` in its own, new network namespace; killed (it is ours) when dropped.
    struct NsHolder(Child);

    impl Drop for NsHolder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn spawn_in_new_netns() -> NsHolder {
        let mut cmd = Command::new("sleep");
        cmd.arg("120");
        // SAFETY: unshare(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        NsHolder(cmd.spawn().expect("spawn sleep in a new netns"))
    }

    #[test]
    fn snapshot_finds_a_listener_in_another_namespace_with_its_owner() {
        let holder = spawn_in_new_netns();
        let ns_path = Path::new("/proc").join(holder.0.id().to_string()).join("ns/net");
        let ns_inode = std::fs::metadata(&ns_path).unwrap().ino();
        // Our process owns a socket living in the child's namespace.
        let listener = enter::in_netns(&ns_path, || {
            enter::loopback_up()?;
            TcpListener::bind("127.0.0.1:0")
        })
        .unwrap()
        .unwrap();
        let port = listener.local_addr().unwrap().port();

        let snapshot = listeners_snapshot();

        let host = inventory::current_inode().unwrap();
        let mine = snapshot.iter().find(|n| n.inode == host).expect("our own namespace listed");
        assert_eq!(mine.error, None);
        let theirs = snapshot.iter().find(|n| n.inode == ns_inode).expect("child namespace listed");
        assert_eq!(theirs.error, None);
        assert_eq!(theirs.listeners.len(), 1, "{theirs:#?}");
        let l = &theirs.listeners[0];
        assert_eq!(
            (l.socket.proto, l.socket.addr.to_string(), l.socket.port),
            (Proto::Tcp, "127.0.0.1".into(), port)
        );
        assert!(l.owners.iter().any(|o| o.pid == std::process::id()), "{l:#?}");
        drop(listener);
    }
}
