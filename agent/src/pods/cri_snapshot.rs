//! The pods of this node as the CRI lists them: ready sandboxes, each one's status (for its
//! network namespace) and containers.
use anyhow::Context;

use super::{
    Container, CriClient, Pod, PodIndex,
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
    Ok(PodIndex::new(pods))
}

fn pod(
    sandbox: api::PodSandbox,
    status: &api::PodSandboxStatusResponse,
    containers: Vec<api::Container>,
) -> Pod {
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
    Pod {
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
    }
}
