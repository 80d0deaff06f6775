//! A CRI client: gRPC (`runtime.v1.RuntimeService`) over the container runtime's Unix socket,
//! the way kubelet talks to containerd, CRI-O or cri-dockerd.
//!
//! Every call is bounded by the client's timeout: a socket that accepts a connection and never
//! answers (a wedged runtime, a socket that is not a CRI one) must not hang the agent.
use std::{
    error::Error as StdError,
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, anyhow};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub mod api;
pub mod sandbox_info;

use api::*;

/// A connected CRI runtime, with what it said it is.
#[derive(Clone, Debug)]
pub struct CriClient {
    channel: Channel,
    socket: PathBuf,
    version: VersionResponse,
    timeout: Duration,
}

impl CriClient {
    /// Connects to `socket` and asks the runtime's Version; all of it within `timeout`, which
    /// stays the client's per-call bound afterwards. The error says which step failed, and what
    /// usually fixes it.
    pub async fn connect(socket: &Path, timeout: Duration) -> anyhow::Result<CriClient> {
        let deadline = tokio::time::Instant::now() + timeout;
        let channel = tokio::time::timeout_at(deadline, connect_channel(socket, timeout))
            .await
            .map_err(|_| anyhow!("connecting timed out after {timeout:?}"))?
            .map_err(|e| anyhow!("cannot connect: {}", connect_hint(&e)))?;
        let mut client = CriClient {
            channel,
            socket: socket.to_path_buf(),
            version: VersionResponse::default(),
            timeout,
        };
        // The version string is the kubelet's CRI API version; runtimes answer with theirs.
        let req = VersionRequest { version: "v1".into() };
        // One deadline for the whole probe: connecting and Version.
        client.version = client.runtime_by("Version", req, deadline).await.map_err(|e| {
            let hint = if RpcError::code_of(&e) == Some(tonic::Code::Unimplemented) {
                "is it a CRI socket? containerd needs its CRI plugin (no \"cri\" in disabled_plugins \
                 of /etc/containerd/config.toml); containerd < 1.6 and CRI-O < 1.20 serve only \
                 runtime.v1alpha2, which reach does not speak"
            } else if RpcError::code_of(&e).is_none() {
                "it accepted the connection but did not answer: a wedged runtime (restart it), or \
                 not a gRPC socket"
            } else {
                "the runtime refused Version"
            };
            anyhow!("{e:#} ({hint})")
        })?;
        Ok(client)
    }

    /// The same connection with another per-call timeout (connecting wants a short one, a
    /// listing on a busy node a longer one).
    pub fn with_timeout(mut self, timeout: Duration) -> CriClient {
        self.timeout = timeout;
        self
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What the runtime answered to Version when connecting.
    pub fn version(&self) -> &VersionResponse {
        &self.version
    }

    /// "containerd 1.6.20 (runtime API v1) at /run/containerd/containerd.sock".
    pub fn describe(&self) -> String {
        format!(
            "{} {} (runtime API {}) at {}",
            self.version.runtime_name,
            self.version.runtime_version,
            self.version.runtime_api_version,
            self.socket.display()
        )
    }

    /// Sandboxes, only the READY ones when `ready_only` (a NOTREADY sandbox has no processes).
    pub async fn list_pod_sandboxes(&self, ready_only: bool) -> anyhow::Result<Vec<PodSandbox>> {
        let state = ready_only
            .then_some(PodSandboxStateValue { state: PodSandboxState::SandboxReady as i32 });
        let req = ListPodSandboxRequest {
            filter: Some(PodSandboxFilter { state, ..Default::default() }),
        };
        let resp: ListPodSandboxResponse = self.runtime("ListPodSandbox", req).await?;
        Ok(resp.items)
    }

    /// A sandbox's status; `verbose` adds the runtime's `info` (netns path, pid, OCI spec).
    pub async fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> anyhow::Result<PodSandboxStatusResponse> {
        let req = PodSandboxStatusRequest { pod_sandbox_id: id.to_string(), verbose };
        self.runtime("PodSandboxStatus", req).await
    }

    /// The containers of one sandbox (every state: an exited container keeps its id and name).
    pub async fn list_containers(&self, sandbox_id: &str) -> anyhow::Result<Vec<api::Container>> {
        let filter =
            ContainerFilter { pod_sandbox_id: sandbox_id.to_string(), ..Default::default() };
        let resp: ListContainersResponse =
            self.runtime("ListContainers", ListContainersRequest { filter: Some(filter) }).await?;
        Ok(resp.containers)
    }

    /// RunPodSandbox, as kubelet sends it. Reach itself never creates pods; tests do.
    pub async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> anyhow::Result<String> {
        let req = RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        let resp: RunPodSandboxResponse = self.runtime("RunPodSandbox", req).await?;
        Ok(resp.pod_sandbox_id)
    }

    /// CreateContainer in a sandbox, as kubelet sends it (with the sandbox's config).
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> anyhow::Result<String> {
        let req = CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let resp: CreateContainerResponse = self.runtime("CreateContainer", req).await?;
        Ok(resp.container_id)
    }

    pub async fn start_container(&self, id: &str) -> anyhow::Result<()> {
        let req = StartContainerRequest { container_id: id.to_string() };
        let _: StartContainerResponse = self.runtime("StartContainer", req).await?;
        Ok(())
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> anyhow::Result<()> {
        let req = StopPodSandboxRequest { pod_sandbox_id: id.to_string() };
        let _: StopPodSandboxResponse = self.runtime("StopPodSandbox", req).await?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> anyhow::Result<()> {
        let req = RemovePodSandboxRequest { pod_sandbox_id: id.to_string() };
        let _: RemovePodSandboxResponse = self.runtime("RemovePodSandbox", req).await?;
        Ok(())
    }

    /// One unary `runtime.v1.RuntimeService/METHOD` call, bounded by the client's timeout.
    async fn runtime<Req, Resp>(&self, method: &'static str, req: Req) -> anyhow::Result<Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.runtime_by(method, req, tokio::time::Instant::now() + self.timeout).await
    }

    /// [`Self::runtime`] by a deadline (the probe's, shared with connecting); the error names
    /// the client's nominal bound.
    async fn runtime_by<Req, Resp>(
        &self,
        method: &'static str,
        req: Req,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let path =
            http::uri::PathAndQuery::try_from(format!("/runtime.v1.RuntimeService/{method}"))
                .expect("a valid gRPC path");
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let call = async move {
            grpc.ready().await.map_err(|e| anyhow!("channel not ready: {e}"))?;
            // No grpc-timeout header nor Endpoint::timeout: tonic enforces those itself with a
            // bare "Timeout expired"; the one deadline below names the call that did not answer.
            let request = tonic::Request::new(req);
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            grpc.unary(request, path, codec).await.map(tonic::Response::into_inner).map_err(|s| {
                anyhow::Error::new(RpcError { code: s.code(), message: s.message().to_string() })
            })
        };
        tokio::time::timeout_at(deadline, call)
            .await
            .map_err(|_| anyhow!("{method} got no answer within {:?}", self.timeout))?
            .with_context(|| format!("{method} failed"))
    }
}

/// An HTTP/2 channel whose connector dials the Unix socket (the URI is a placeholder tonic
/// needs; nothing resolves it).
async fn connect_channel(
    socket: &Path,
    timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    Endpoint::from_static("http://cri.invalid")
        .connect_timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
}

/// The cause of a failed connection, with what usually fixes it.
fn connect_hint(err: &tonic::transport::Error) -> String {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            let hint = match io.kind() {
                io::ErrorKind::NotFound => {
                    "no such socket: is the container runtime running, and (in a pod) is the host's \
                     socket mounted at this path with a hostPath volume?"
                }
                io::ErrorKind::ConnectionRefused => {
                    "nothing listens on it (a stale socket file): is the container runtime running?"
                }
                io::ErrorKind::PermissionDenied => "permission denied: the agent must run as root",
                _ => "",
            };
            return if hint.is_empty() { io.to_string() } else { format!("{io}: {hint}") };
        }
        source = e.source();
    }
    err.to_string()
}

/// What the runtime answered instead of a response (its gRPC status).
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", code_text(*.code))]
pub struct RpcError {
    pub code: tonic::Code,
    pub message: String,
}

impl RpcError {
    /// The gRPC code the runtime answered, if `err` is (or was caused by) such an answer.
    pub fn code_of(err: &anyhow::Error) -> Option<tonic::Code> {
        err.chain().find_map(|e| e.downcast_ref::<RpcError>()).map(|r| r.code)
    }

    /// Whether `err` is the runtime answering NotFound.
    pub fn is_not_found(err: &anyhow::Error) -> bool {
        Self::code_of(err) == Some(tonic::Code::NotFound)
    }
}

fn code_text(code: tonic::Code) -> String {
    match code {
        tonic::Code::Unimplemented => {
            "not implemented (the runtime does not serve runtime.v1.RuntimeService)".into()
        }
        other => format!("{other:?}"),
    }
}
