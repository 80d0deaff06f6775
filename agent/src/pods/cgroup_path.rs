//! Which pod (and container) a process belongs to, from its cgroup path, as kubelet and the
//! runtime lay cgroups out. This needs no runtime socket, and works for host-network pods
//! (their processes share the host's network namespace but still live in the pod's cgroup).
//!
//! kubelet's **systemd** cgroup driver (slice names nest by dashes; the uid's `-` become `_`):
//!   `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<u_i_d>.slice/cri-containerd-<id>.scope`
//!   (`crio-<id>.scope`, `docker-<id>.scope`; guaranteed pods have no QoS slice:
//!   `/kubepods.slice/kubepods-pod<u_i_d>.slice/…`).
//! The **cgroupfs** driver: `/kubepods/besteffort/pod<uid>/<id>`, `/kubepods/pod<uid>/<id>`
//! (CRI-O: `crio-<id>`).
//! Nested nodes put a prefix in front: kind's `--cgroup-root=/kubelet` makes
//! `/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/…`, and a node that
//! is itself a container is seen from the host under its own scope
//! (`/system.slice/docker-<node>.scope/kubepods/…`). So the pod is found by its own component,
//! wherever it is, and the container is the component right after it.
use serde::Serialize;

/// The pod's Kubernetes QoS class, from its cgroup's place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// The runtime the container's cgroup name says made it. The cgroupfs layout of containerd and
/// Docker is a bare id, which says nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Runtime {
    Containerd,
    Crio,
    Docker,
    Unknown,
}

/// A process's place in kubelet's cgroup tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodCgroup {
    pub qos: Qos,
    /// The pod's uid, with dashes (as the API server has it).
    pub pod_uid: String,
    /// The full (64-hex) id of the container the process runs in; None for a process in the
    /// pod's cgroup itself, or in CRI-O's conmon scope (which monitors a container, and is not it).
    pub container_id: Option<String>,
    pub runtime: Option<Runtime>,
}

/// Parses a whole /proc/PID/cgroup: the first line naming a container, else the first naming a
/// pod. (cgroup v1 has one line per hierarchy, all normally the same path; v2 has one, `0::`.)
pub fn parse_proc_cgroup(text: &str) -> Option<PodCgroup> {
    let mut pod_only = None;
    for parsed in text.lines().filter_map(parse_line) {
        if parsed.container_id.is_some() {
            return Some(parsed);
        }
        pod_only.get_or_insert(parsed);
    }
    pod_only
}

/// Parses one line `HIERARCHY:CONTROLLERS:PATH` of /proc/PID/cgroup.
pub fn parse_line(line: &str) -> Option<PodCgroup> {
    let mut fields = line.splitn(3, ':');
    let (_, _, path) = (fields.next()?, fields.next()?, fields.next()?);
    parse_path(path)
}

/// Parses a cgroup path.
pub fn parse_path(path: &str) -> Option<PodCgroup> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let found = systemd_pod(part).or_else(|| cgroupfs_pod(&parts[..i], part));
        if let Some((qos, pod_uid)) = found {
            let next = parts.get(i + 1).copied();
            let (container_id, runtime) = match next.and_then(container) {
                Some((id, runtime)) => (id, Some(runtime)),
                None => (None, None),
            };
            return Some(PodCgroup { qos, pod_uid, container_id, runtime });
        }
    }
    None
}

/// `[PREFIX-]kubepods[-QOS]-pod<u_i_d>.slice`.
fn systemd_pod(part: &str) -> Option<(Qos, String)> {
    let name = part.strip_suffix(".slice")?;
    let segments: Vec<&str> = name.split('-').collect();
    let k = segments.iter().position(|s| *s == "kubepods")?;
    let (qos, pod) = match &segments[k + 1..] {
        [pod] => (Qos::Guaranteed, *pod),
        [qos, pod] => (qos_named(qos)?, *pod),
        _ => return None,
    };
    let uid = pod.strip_prefix("pod")?.replace('_', "-");
    valid_uid(&uid).then_some((qos, uid))
}

/// `kubepods/[QOS/]pod<uid>`: `before` are the components in front of `part`.
fn cgroupfs_pod(before: &[&str], part: &str) -> Option<(Qos, String)> {
    let uid = part.strip_prefix("pod")?;
    let qos = match before {
        [.., "kubepods"] => Qos::Guaranteed,
        [.., "kubepods", qos] => qos_named(qos)?,
        _ => return None,
    };
    valid_uid(uid).then(|| (qos, uid.to_string()))
}

fn qos_named(name: &str) -> Option<Qos> {
    match name {
        "besteffort" => Some(Qos::BestEffort),
        "burstable" => Some(Qos::Burstable),
        _ => None,
    }
}

/// A pod uid: a UUID from the API server, or (static pods) a hex hash of the manifest.
fn valid_uid(uid: &str) -> bool {
    uid.len() >= 8 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The container cgroup under a pod's: (its id, or None for CRI-O's conmon; the runtime).
fn container(part: &str) -> Option<(Option<String>, Runtime)> {
    let scoped = [
        ("cri-containerd-", Runtime::Containerd),
        ("crio-conmon-", Runtime::Crio),
        ("crio-", Runtime::Crio),
        ("docker-", Runtime::Docker),
    ];
    for (prefix, runtime) in scoped {
        let Some(rest) = part.strip_prefix(prefix) else { continue };
        let id = rest.strip_suffix(".scope").unwrap_or(rest);
        if !is_container_id(id) {
            return None;
        }
        let id = (prefix != "crio-conmon-").then(|| id.to_string());
        return Some((id, runtime));
    }
    is_container_id(part).then(|| (Some(part.to_string()), Runtime::Unknown))
}

/// A full container id: 64 lowercase hex digits (what containerd, CRI-O and Docker all use).
pub fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4c0f3b1a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";
    const UID: &str = "8d5f2c1e-3b4a-4c6d-9e8f-0a1b2c3d4e5f";
    const UID_: &str = "8d5f2c1e_3b4a_4c6d_9e8f_0a1b2c3d4e5f";

    fn pod(qos: Qos, container: Option<&str>, runtime: Option<Runtime>) -> Option<PodCgroup> {
        Some(PodCgroup {
            qos,
            pod_uid: UID.to_string(),
            container_id: container.map(str::to_string),
            runtime,
        })
    }

    #[test]
    fn lines_of_real_shapes() {
        use Qos::*;
        use Runtime::*;
        let cases: Vec<(String, Option<PodCgroup>)> = vec![
            // systemd driver, cgroup v2, containerd.
            (
                format!(
                    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
                ),
                pod(BestEffort, Some(ID), Some(Containerd)),
            ),
            // systemd, burstable, CRI-O, cgroup v1 (a controller line and the named one).
            (
                format!(
                    "7:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"
                ),
                pod(Burstable, Some(ID), Some(Crio)),
            ),
            (
                format!(
                    "1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope"
                ),
                pod(Burstable, None, Some(Crio)),
            ),
            // systemd, guaranteed (no QoS slice), cri-dockerd.
            (
                format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/docker-{ID}.scope"),
                pod(Guaranteed, Some(ID), Some(Docker)),
            ),
            // The pod's own cgroup, no container.
            (
                format!(
                    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
                ),
                pod(BestEffort, None, None),
            ),
            // cgroupfs driver.
            (
                format!("0::/kubepods/besteffort/pod{UID}/{ID}"),
                pod(BestEffort, Some(ID), Some(Unknown)),
            ),
            (
                format!("4:cpu,cpuacct:/kubepods/burstable/pod{UID}/{ID}"),
                pod(Burstable, Some(ID), Some(Unknown)),
            ),
            (format!("0::/kubepods/pod{UID}/{ID}"), pod(Guaranteed, Some(ID), Some(Unknown))),
            (
                format!("0::/kubepods/besteffort/pod{UID}/crio-{ID}"),
                pod(BestEffort, Some(ID), Some(Crio)),
            ),
            // kind: cgroup root /kubelet with the systemd driver.
            (
                format!(
                    "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
                ),
                pod(BestEffort, Some(ID), Some(Containerd)),
            ),
            // A node that is a Docker container, seen from the host (the node's scope is not the pod's container).
            (
                format!("0::/system.slice/docker-{ID}.scope/kubepods/besteffort/pod{UID}/{ID}"),
                pod(BestEffort, Some(ID), Some(Unknown)),
            ),
            // Read from inside a private cgroup namespace (an agent pod with cgroupns=private):
            // paths are relative to its own cgroup, so they climb with "..".
            (
                format!("0::/../../kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                pod(BestEffort, Some(ID), Some(Containerd)),
            ),
            // Static pod: uid is a 32-hex config hash.
            (
                format!("0::/kubepods/burstable/pod0123456789abcdef0123456789abcdef/{ID}"),
                Some(PodCgroup {
                    qos: Burstable,
                    pod_uid: "0123456789abcdef0123456789abcdef".into(),
                    container_id: Some(ID.into()),
                    runtime: Some(Unknown),
                }),
            ),
            // Not pods.
            ("0::/system.slice/containerd.service".into(), None),
            ("0::/user.slice/user-1000.slice/session-3.scope".into(), None),
            (format!("0::/system.slice/docker-{ID}.scope"), None),
            ("0::/kubepods.slice/kubepods-besteffort.slice".into(), None),
            ("0::/kubepods/besteffort".into(), None),
            (format!("0::/kubepods/unknownqos/pod{UID}/{ID}"), None),
            (format!("0::/notkubepods/pod{UID}/{ID}"), None),
            ("0::/".into(), None),
            ("garbage".into(), None),
            // A container component that is not a full id names no container.
            (format!("0::/kubepods/besteffort/pod{UID}/abc"), pod(BestEffort, None, None)),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(&line), want, "{line}");
        }
    }

    #[test]
    fn a_file_prefers_the_line_naming_a_container() {
        let text = format!(
            "12:pids:/kubepods/besteffort/pod{UID}\n11:memory:/kubepods/besteffort/pod{UID}/{ID}\n0::/\n"
        );
        assert_eq!(
            parse_proc_cgroup(&text),
            pod(Qos::BestEffort, Some(ID), Some(Runtime::Unknown))
        );
        assert_eq!(parse_proc_cgroup("0::/init.scope\n"), None);
    }
}
