//! `PodIndex`: one snapshot of the node's pods, with the lookups an event needs.
use std::{
    collections::{BTreeMap, HashMap},
    fs,
};

use super::{Container, Pod, cgroup_path};

/// Shortest container-id prefix accepted, as `docker ps` and `crictl ps` show ids.
pub const MIN_ID_PREFIX: usize = 12;

#[derive(Default, Clone, Debug)]
pub struct PodIndex {
    pods: Vec<Pod>,
    uids: HashMap<String, usize>,
    /// inode → the pod owning it; None when several pods share it (then it is nobody's own).
    netns: HashMap<u64, Option<usize>>,
    /// container id → (pod, container) indices; ordered for prefix lookups.
    containers: BTreeMap<String, (usize, usize)>,
}

impl PodIndex {
    pub fn new(pods: Vec<Pod>) -> PodIndex {
        let mut index = PodIndex { pods, ..Default::default() };
        for (p, pod) in index.pods.iter().enumerate() {
            index.uids.insert(pod.uid.clone(), p);
            if let Some(inode) = pod.netns_inode {
                index.netns.entry(inode).and_modify(|owner| *owner = None).or_insert(Some(p));
            }
            for (c, container) in pod.containers.iter().enumerate() {
                index.containers.insert(container.id.clone(), (p, c));
            }
        }
        index
    }

    /// The pod whose own network namespace has this inode.
    pub fn by_netns(&self, inode: u64) -> Option<&Pod> {
        let p = (*self.netns.get(&inode)?)?;
        Some(&self.pods[p])
    }

    /// A container by its full id, or by a prefix of at least [`MIN_ID_PREFIX`] characters that
    /// only one container has.
    pub fn by_container(&self, id: &str) -> Option<(&Pod, &Container)> {
        let &(p, c) = match self.containers.get(id) {
            Some(found) => found,
            None if id.len() >= MIN_ID_PREFIX => {
                let mut matching =
                    self.containers.range(id.to_string()..).take_while(|(k, _)| k.starts_with(id));
                let (_, found) = matching.next()?;
                if matching.next().is_some() {
                    return None;
                }
                found
            }
            None => return None,
        };
        Some((&self.pods[p], &self.pods[p].containers[c]))
    }

    pub fn by_uid(&self, uid: &str) -> Option<&Pod> {
        self.uids.get(uid).map(|&p| &self.pods[p])
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter()
    }

    /// The pod a process belongs to, by its cgroup (/proc/PID/cgroup) — works for host-network
    /// pods too. The container is None for a process of the pod that is in no listed container
    /// (e.g. the sandbox's pause process, or CRI-O's conmon).
    pub fn by_pid(&self, pid: u32) -> Option<(&Pod, Option<&Container>)> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        self.by_cgroup(&cgroup_path::parse_proc_cgroup(&text)?)
    }

    /// The pod (and container) of a parsed cgroup path.
    pub fn by_cgroup(&self, cgroup: &cgroup_path::PodCgroup) -> Option<(&Pod, Option<&Container>)> {
        let pod = self.by_uid(&cgroup.pod_uid)?;
        let container = cgroup
            .container_id
            .as_deref()
            .and_then(|id| pod.containers.iter().find(|c| c.id == id));
        Some((pod, container))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, netns: Option<u64>, ids: &[&str]) -> Pod {
        Pod {
            namespace: "default".into(),
            name: format!("pod-{uid}"),
            uid: uid.into(),
            sandbox_id: format!("sb-{uid}"),
            netns_path: None,
            netns_inode: netns,
            containers: ids
                .iter()
                .map(|id| Container { id: id.to_string(), name: "c".into() })
                .collect(),
        }
    }

    fn index() -> PodIndex {
        PodIndex::new(vec![
            pod("u1", Some(100), &["aaaaaaaaaaaa1111", "aaaaaaaaaaaa2222"]),
            pod("u2", Some(200), &["bbbbbbbbbbbbbbbb"]),
            // Two host-network pods sharing one namespace.
            pod("h1", Some(1), &[]),
            pod("h2", Some(1), &[]),
        ])
    }

    #[test]
    fn lookups() {
        let index = index();
        assert_eq!(index.by_netns(100).unwrap().uid, "u1");
        assert_eq!(index.by_netns(200).unwrap().uid, "u2");
        assert!(index.by_netns(1).is_none(), "a shared namespace is no pod's own");
        assert!(index.by_netns(300).is_none());
        assert_eq!(index.by_uid("u2").unwrap().name, "pod-u2");
        assert!(index.by_uid("nope").is_none());
        assert_eq!(index.pods().count(), 4);
    }

    #[test]
    fn container_by_full_id_or_unique_prefix() {
        let index = index();
        let (p, c) = index.by_container("aaaaaaaaaaaa2222").unwrap();
        assert_eq!((p.uid.as_str(), c.id.as_str()), ("u1", "aaaaaaaaaaaa2222"));
        assert_eq!(index.by_container("bbbbbbbbbbbb").unwrap().1.id, "bbbbbbbbbbbbbbbb");
        assert!(index.by_container("aaaaaaaaaaaa").is_none(), "ambiguous prefix");
        assert_eq!(index.by_container("aaaaaaaaaaaa1").unwrap().1.id, "aaaaaaaaaaaa1111");
        assert!(index.by_container("bbbbbbbbbbb").is_none(), "shorter than 12");
        assert!(index.by_container("cccccccccccc").is_none());
    }

    #[test]
    fn by_cgroup_finds_pod_and_container() {
        let index = index();
        let cg = |uid: &str, id: Option<&str>| cgroup_path::PodCgroup {
            qos: cgroup_path::Qos::BestEffort,
            pod_uid: uid.into(),
            container_id: id.map(str::to_string),
            runtime: None,
        };
        let (p, c) = index.by_cgroup(&cg("u1", Some("aaaaaaaaaaaa1111"))).unwrap();
        assert_eq!((p.uid.as_str(), c.map(|c| c.id.as_str())), ("u1", Some("aaaaaaaaaaaa1111")));
        let (p, c) = index.by_cgroup(&cg("h1", Some("ffff"))).unwrap();
        assert_eq!((p.uid.as_str(), c), ("h1", None));
        assert!(index.by_cgroup(&cg("zz", None)).is_none());
    }

    #[test]
    fn by_pid_of_a_process_in_no_pod() {
        // This test process is in no kubepods cgroup.
        assert!(index().by_pid(std::process::id()).is_none());
    }
}
