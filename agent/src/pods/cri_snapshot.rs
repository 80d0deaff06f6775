//! The pods of this node as the CRI lists them: ready sandboxes, each one's status (for its
//! network namespace) and containers.
use anyhow::Context;

use super::{
    Container, CriClient, Pod, PodIndex, cgroup_scan,
    cri::{RpcError, api, sandbox_info::SandboxInfo},
    netns_inode,
};

/// One listing: 1 + 2 × sandboxes RPCs, each bounded by the client's timeout.
pub(crate) async fn snapshot(client: &CriClient) -> anyhow::Result<PodIndex> {
    let sandboxes = client.list_pod_sandboxes(true).await?;
    let mut pods = Vec::with_capacity(sandboxes.len());
    for sandbox in sandboxes {
        // A sandbox removed since the listing is simply gone, not an error of the snapshot.
        let status = match client.pod_sandbox_status(&sandbox.id, true).await {
            Ok(status) => status,
            Err(e) if RpcError::is_not_found(&e) => continue,
            Err(e) => return Err(e).with_context(|| format!("status of sandbox {}", sandbox.id)),
        };
        let containers = client
            .list_containers(&sandbox.id)
            .await
            .with_context(|| format!("containers of sandbox {}", sandbox.id))?;
        pods.push(pod(sandbox, &status, containers));
    }
    // Runtimes that give neither a netns path nor a pid (no verbose info): the namespace of a
    // process in the pod's cgroup, from one /proc scan, only when some pod needs it.
    if pods.iter().any(|(pod, host_network)| !host_network && pod.netns_inode.is_none()) {
        let scan = tokio::task::spawn_blocking(cgroup_scan::snapshot).await??;
        fill_netns_from(&mut pods, &scan);
    }
    Ok(PodIndex::new(pods.into_iter().map(|(pod, _)| pod).collect()))
}

/// Gives pods (not host-network ones) without a netns the one the cgroup scan found for their uid.
fn fill_netns_from(pods: &mut [(Pod, bool)], scan: &PodIndex) {
    for (pod, host_network) in pods.iter_mut() {
        if !*host_network && pod.netns_inode.is_none() {
            pod.netns_inode = scan.by_uid(&pod.uid).and_then(|p| p.netns_inode);
        }
    }
}

fn pod(
    sandbox: api::PodSandbox,
    status: &api::PodSandboxStatusResponse,
    containers: Vec<api::Container>,
) -> (Pod, bool) {
    let meta = sandbox.metadata.unwrap_or_default();
    let info = SandboxInfo::from_info_map(&status.info);
    let host_network = status
        .status
        .as_ref()
        .and_then(|s| s.linux.as_ref()?.namespaces.as_ref()?.options.as_ref())
        .is_some_and(|o| o.network == api::NamespaceMode::Node as i32);
    // The runtime's path first; else the sandbox process's namespace (runtimes that give no
    // path). A host-network pod owns no namespace: its pid's would be the host's.
    let netns_inode = if host_network {
        None
    } else {
        info.netns_path
            .as_deref()
            .and_then(netns_inode::of_path)
            .or_else(|| info.pid.and_then(netns_inode::of_pid))
    };
    let pod = Pod {
        namespace: meta.namespace,
        name: meta.name,
        uid: meta.uid,
        sandbox_id: sandbox.id,
        netns_path: if host_network { None } else { info.netns_path },
        netns_inode,
        containers: containers
            .into_iter()
            .map(|c| Container { id: c.id, name: c.metadata.map(|m| m.name).unwrap_or_default() })
            .collect(),
    };
    (pod, host_network)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, netns_inode: Option<u64>) -> Pod {
        Pod {
            namespace: "ns".into(),
            name: uid.into(),
            uid: uid.into(),
            sandbox_id: String::new(),
            netns_path: None,
            netns_inode,
            containers: Vec::new(),
        }
    }

    #[test]
    fn only_pods_without_a_netns_take_the_scans() {
        let scan = PodIndex::new(vec![
            pod("known", Some(9)),
            pod("missing", Some(7)),
            pod("host", Some(5)),
        ]);
        let mut pods = vec![
            (pod("known", Some(1)), false),
            (pod("missing", None), false),
            (pod("host", None), true),
            (pod("unscanned", None), false),
        ];
        fill_netns_from(&mut pods, &scan);
        let got: Vec<_> = pods.iter().map(|(p, _)| p.netns_inode).collect();
        assert_eq!(got, [Some(1), Some(7), None, None]);
    }
}
