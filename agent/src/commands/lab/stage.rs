//! Setting one scenario up, and tearing it down again before the next.
//!
//! Everything a scenario adds — firewalld configuration, a third namespace, the demo server,
//! client connections holding its accept queue full — is owned by its [`Stage`] and undone when
//! that drops, on every path (an error half-way, Ctrl-C, a panic): the next scenario starts
//! from the same clean lab.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    client::{self, ClientSaw},
    scenario::{Scenario, Server},
    server::DemoServer,
};
use crate::{
    lab::{Firewalld, NetNs, TwoHosts},
    netns::sock_diag::{self, Proto},
};

/// How long the kernel may take to move prefill connections into the accept queue.
const QUEUE_FULL_TIMEOUT: Duration = Duration::from_secs(2);

/// The lab every scenario runs in. Fields drop in declaration order: firewalld first (its
/// daemons), then the namespaces.
#[derive(Debug)]
pub struct Lab {
    pub fw: Option<Firewalld>,
    pub hosts: TwoHosts,
    /// This very binary: the demo server and `reach why` are its subcommands.
    pub exe: PathBuf,
}

impl Lab {
    /// Where the client connects for `port`.
    pub fn target(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(TwoHosts::SERVER_V4), port)
    }
}

/// One scenario's additions to the lab. Fields drop in declaration order: the client
/// connections, then the server, its namespace, and last the firewalld change.
pub struct Stage<'a> {
    _prefill: Vec<TcpStream>,
    pub server: Option<DemoServer>,
    /// The third namespace of "server in another netns".
    pub app_ns: Option<NetNs>,
    _firewall: Option<FirewallGuard<'a>>,
}

impl<'a> Stage<'a> {
    pub fn build(lab: &'a Lab, s: &Scenario) -> anyhow::Result<Self> {
        let mut stage = Stage { _prefill: Vec::new(), server: None, app_ns: None, _firewall: None };
        if let Some(fw) = &lab.fw {
            stage._firewall = Some(FirewallGuard::apply(fw, s)?);
        }
        let listen = |addr| SocketAddr::new(addr, s.port);
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        match s.server {
            Server::None => {}
            Server::Here { addr, backlog, accept } => {
                let server = &lab.hosts.server;
                stage.server =
                    Some(DemoServer::start(&lab.exe, server, listen(addr), backlog, accept)?);
            }
            Server::OtherNetns => {
                let ns = NetNs::new("lab-app").context("creating the third namespace")?;
                stage.server = Some(DemoServer::start(&lab.exe, &ns, listen(any), 128, true)?);
                stage.app_ns = Some(ns);
            }
        }
        for i in 0..s.prefill {
            let to = lab.target(s.port);
            match client::connect(&lab.hosts.client, to, client::CONNECT_TIMEOUT)? {
                (ClientSaw::Connected, Some(conn)) => stage._prefill.push(conn),
                (saw, _) => bail!("prefill connection {} to {to}: {saw}", i + 1),
            }
        }
        if s.prefill > 0 {
            wait_queue_full(&lab.hosts, s.port)?;
        }
        Ok(stage)
    }
}

/// Waits until the listener on `port` in the server namespace has more connections queued
/// than its backlog (the kernel's "full": the next SYN is dropped).
fn wait_queue_full(hosts: &TwoHosts, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + QUEUE_FULL_TIMEOUT;
    loop {
        let listeners = hosts.server.run_in(sock_diag::dump_listeners)??;
        let queue = listeners
            .iter()
            .find(|l| l.proto == Proto::Tcp && l.port == port)
            .and_then(|l| Some((l.accept_queue?, l.backlog?)));
        match queue {
            Some((queued, backlog)) if queued > backlog => return Ok(()),
            _ if Instant::now() >= deadline => {
                bail!(
                    "the accept queue on port {port} did not fill up: {queue:?} (queued, backlog)"
                )
            }
            _ => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A scenario's firewalld change, undone on drop.
struct FirewallGuard<'a> {
    fw: &'a Firewalld,
    undo: Vec<Vec<String>>,
}

impl<'a> FirewallGuard<'a> {
    fn apply(fw: &'a Firewalld, s: &Scenario) -> anyhow::Result<Self> {
        let change = s.firewall_change(IpAddr::V4(TwoHosts::CLIENT_V4));
        // The guard exists before the first command, so a failure half-way is undone too.
        let guard = Self { fw, undo: change.undo };
        for args in &change.apply {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            fw.cmd(&args).with_context(|| format!("firewall-cmd {}", args.join(" ")))?;
        }
        Ok(guard)
    }
}

impl Drop for FirewallGuard<'_> {
    fn drop(&mut self) {
        for args in &self.undo {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Err(e) = self.fw.cmd(&args) {
                eprintln!("lab: warning: undoing `firewall-cmd {}` failed: {e}", args.join(" "));
            }
        }
    }
}
