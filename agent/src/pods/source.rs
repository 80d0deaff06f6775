//! Where pod names come from: the node's CRI runtime when one answers, else cgroup paths.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::anyhow;

use super::{CriClient, PodIndex, cgroup_scan, cri_snapshot};

/// The sockets kubelet's usual runtimes listen on, in the order tried.
pub const DEFAULT_CRI_SOCKETS: [&str; 3] =
    ["/run/containerd/containerd.sock", "/var/run/crio/crio.sock", "/var/run/cri-dockerd.sock"];

/// How long a default socket may take to connect and answer Version before the next is tried:
/// short, as a missing runtime must not slow start-up, yet ample for a runtime on its own node.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long each snapshot RPC may take (a node with hundreds of pods answers ListContainers in
/// milliseconds; a wedged runtime must not stall the agent's refresh forever).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Where pod names come from.
#[derive(Debug)]
pub enum PodSource {
    Cri(CriClient),
    /// No CRI: uids and container ids from cgroup paths. `why` says why no CRI was used.
    Cgroups {
        why: String,
    },
}

impl PodSource {
    /// `--cri-socket PATH` when given (an error if it does not answer: which path, what failed,
    /// and the fix); else the first default socket that answers, each tried within
    /// [`PROBE_TIMEOUT`]; else cgroups (logged at info, with why).
    pub async fn detect(cri_socket: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(path) = cri_socket {
            return match CriClient::connect(path, PROBE_TIMEOUT).await {
                Ok(client) => Ok(PodSource::Cri(client.with_timeout(RPC_TIMEOUT))),
                Err(e) => Err(anyhow!(
                    "--cri-socket {}: {e:#}; fix the runtime or the path, or leave --cri-socket out \
                     to try the usual sockets and fall back to cgroup paths",
                    path.display()
                )),
            };
        }
        Ok(Self::detect_among(&DEFAULT_CRI_SOCKETS.map(PathBuf::from)).await)
    }

    /// The first of `candidates` that answers, each within [`PROBE_TIMEOUT`]; else cgroups, with
    /// why each failed. (`detect(None)` with [`DEFAULT_CRI_SOCKETS`].)
    pub async fn detect_among(candidates: &[PathBuf]) -> Self {
        let mut failures = Vec::new();
        for path in candidates {
            // A socket that is not there is the common case (another runtime): say so briefly.
            if !path.exists() {
                failures.push(format!("{} absent", path.display()));
                continue;
            }
            match CriClient::connect(path, PROBE_TIMEOUT).await {
                Ok(client) => {
                    tracing::info!("pods: {}", client.describe());
                    return PodSource::Cri(client.with_timeout(RPC_TIMEOUT));
                }
                Err(e) => failures.push(format!("{}: {e:#}", path.display())),
            }
        }
        let why = format!("no CRI socket answered: {}", failures.join("; "));
        tracing::info!("pods: from cgroup paths, without names ({why})");
        PodSource::Cgroups { why }
    }

    /// "CRI containerd 1.6.20 (runtime API v1) at /run/containerd/containerd.sock", or
    /// "cgroup paths (no CRI socket answered: …)".
    pub fn describe(&self) -> String {
        match self {
            PodSource::Cri(client) => format!("CRI {}", client.describe()),
            PodSource::Cgroups { why } => format!("cgroup paths ({why})"),
        }
    }

    /// One consistent listing of the node's pods, in bounded time (each RPC has a timeout).
    pub async fn snapshot(&mut self) -> anyhow::Result<PodIndex> {
        match self {
            PodSource::Cri(client) => cri_snapshot::snapshot(client)
                .await
                .map_err(|e| anyhow!("listing pods from {}: {e:#}", client.socket().display())),
            // Reading /proc is synchronous (one small file per process): off the async threads,
            // on any runtime flavour.
            PodSource::Cgroups { .. } => tokio::task::spawn_blocking(cgroup_scan::snapshot)
                .await
                .map_err(|e| anyhow!("scanning /proc for pods: {e}"))?,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_missing_socket_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.sock");
        let err = PodSource::detect(Some(&path)).await.unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("no such socket"), "{err}");
    }

    /// Without --cri-socket, sockets that fail are passed over (a silent one within the probe
    /// bound) and cgroups are used, saying why.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn no_answering_socket_falls_back_to_cgroups_saying_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.sock");
        let silent = dir.path().join("silent.sock");
        let listener = tokio::net::UnixListener::bind(&silent).unwrap();
        let accepted = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let started = Instant::now();
        let source = PodSource::detect_among(&[missing.clone(), silent.clone()]).await;
        let took = started.elapsed();
        accepted.abort();
        assert!(took < Duration::from_secs(2), "took {took:?}");
        let PodSource::Cgroups { why } = &source else { panic!("{}", source.describe()) };
        assert!(why.contains(&format!("{} absent", missing.display())), "{why}");
        assert!(why.contains(&format!("{}: Version got no answer", silent.display())), "{why}");
        assert_eq!(source.describe(), format!("cgroup paths ({why})"));
    }

    /// A socket that accepts and never answers (a wedged runtime) must not hang start-up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_silent_socket_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let accepted = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let started = Instant::now();
        let err = PodSource::detect(Some(&path)).await.unwrap_err().to_string();
        let took = started.elapsed();
        accepted.abort();
        assert!(took < Duration::from_secs(2), "took {took:?}: {err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("Version got no answer") || err.contains("timed out"), "{err}");
    }
}
