//! A pod made through the CRI as kubelet makes one — RunPodSandbox, then CreateContainer and
//! StartContainer with the sandbox's config — and removed (StopPodSandbox, RemovePodSandbox)
//! when dropped, even when the test fails.
use std::collections::HashMap;

use reach_agent::pods::cri::api;

use super::{Containerd, image::IMAGE};

/// The container every test pod runs: a real listening server (in its own netns) …
pub const CONTAINER: &str = "web";
pub const COMMAND: &[&str] = &["/bin/httpd", "-f", "-p", "8080"];
/// … or, in a host-network pod (which shares containerd's namespace with its siblings), a
/// process holding no port.
pub const HOST_NETWORK_COMMAND: &[&str] = &["/bin/sleep", "1000000"];

/// The pod's network: its own namespace (CNI), or the node's (`hostNetwork: true`, NODE mode;
/// the "node" is containerd's own namespace here, never the root one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    Pod,
    Host,
}

pub struct Sandbox<'a> {
    cd: &'a Containerd,
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub container_id: String,
    removed: bool,
}

impl<'a> Sandbox<'a> {
    pub(super) fn run(
        cd: &'a Containerd,
        namespace: &str,
        name: &str,
        network: Network,
        command: Option<&[&str]>,
    ) -> anyhow::Result<Sandbox<'a>> {
        let uid = fs_uuid()?;
        let config = sandbox_config(cd, namespace, name, &uid, network);
        let client = cd.client();
        let id = cd.block_on(client.run_pod_sandbox(config.clone()))?;
        // From here on the guard owns the sandbox: a failure below still removes it.
        let mut sandbox = Sandbox {
            cd,
            id,
            namespace: namespace.into(),
            name: name.into(),
            uid,
            container_id: String::new(),
            removed: false,
        };
        let mut container = container_config(namespace, name, &sandbox.uid, network);
        if let Some(command) = command {
            container.command = command.iter().map(|s| s.to_string()).collect();
        }
        sandbox.container_id =
            cd.block_on(client.create_container(&sandbox.id, container, config))?;
        cd.block_on(client.start_container(&sandbox.container_id))?;
        Ok(sandbox)
    }

    /// StopPodSandbox + RemovePodSandbox now, with their errors.
    pub fn remove(mut self) -> anyhow::Result<()> {
        self.removed = true;
        self.stop_and_remove()
    }

    fn stop_and_remove(&self) -> anyhow::Result<()> {
        let client = self.cd.client();
        self.cd.block_on(client.stop_pod_sandbox(&self.id))?;
        self.cd.block_on(client.remove_pod_sandbox(&self.id))
    }
}

impl Drop for Sandbox<'_> {
    fn drop(&mut self) {
        if !self.removed
            && let Err(e) = self.stop_and_remove()
        {
            eprintln!("removing sandbox {} ({}/{}): {e:#}", self.id, self.namespace, self.name);
        }
    }
}

/// What kubelet sends: metadata, the labels it sets on every sandbox, the pod's cgroup under
/// the QoS class's (cgroupfs driver), its own network namespace.
fn sandbox_config(
    cd: &Containerd,
    namespace: &str,
    name: &str,
    uid: &str,
    network: Network,
) -> api::PodSandboxConfig {
    let network = match network {
        Network::Pod => api::NamespaceMode::Pod,
        Network::Host => api::NamespaceMode::Node,
    };
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: namespace.into(),
            attempt: 0,
        }),
        // kubelet sets none for a host-network pod: it shares the node's UTS namespace, and runc
        // refuses to set a hostname without a private one.
        hostname: if network == api::NamespaceMode::Node { String::new() } else { name.into() },
        labels: kube_labels(namespace, name, uid),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/kubepods/besteffort/pod{uid}", cd.cgroup_prefix()),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: network as i32,
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                }),
                privileged: false,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(
    namespace: &str,
    name: &str,
    uid: &str,
    network: Network,
) -> api::ContainerConfig {
    let command = match network {
        Network::Pod => COMMAND,
        Network::Host => HOST_NETWORK_COMMAND,
    };
    let mut labels = kube_labels(namespace, name, uid);
    labels.insert("io.kubernetes.container.name".into(), CONTAINER.into());
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata { name: CONTAINER.into(), attempt: 0 }),
        image: Some(api::ImageSpec { image: IMAGE.into() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        labels,
        ..Default::default()
    }
}

fn kube_labels(namespace: &str, name: &str, uid: &str) -> HashMap<String, String> {
    HashMap::from([
        ("io.kubernetes.pod.name".to_string(), name.to_string()),
        ("io.kubernetes.pod.namespace".to_string(), namespace.to_string()),
        ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
    ])
}

/// A random UUID, as the API server gives pods.
fn fs_uuid() -> anyhow::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/uuid")?.trim().to_string())
}
