//! Setting one scenario up, and tearing it down again before the next.
//!
//! Everything a scenario adds — firewalld configuration, a second address, an nftables rule, a
//! third namespace, the demo server, client connections holding its accept queue full — is
//! owned by its [`Stage`] and undone when that drops, on every path (an error half-way, Ctrl-C,
//! a panic): the next scenario starts from the same clean lab.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    client::{self, ClientSaw},
    scenario::{self, Bind, Client, Fault, Scenario, Server},
    server::DemoServer,
};
use crate::{
    lab::{Firewalld, NetNs, NetNsFd, TwoHosts, Veth, VethEnd, docker::Dockerd},
    netns::sock_diag::{self, Proto},
};

/// How long the kernel may take to move prefill connections into the accept queue.
const QUEUE_FULL_TIMEOUT: Duration = Duration::from_secs(2);

/// The namespaces a scenario runs in: the lab's main pair (with firewalld, when there is one)
/// or a pair of the scenario's own. Fields drop in declaration order: firewalld first (its
/// daemons), then the namespaces.
#[derive(Debug)]
pub struct Lab {
    pub fw: Option<Firewalld>,
    pub hosts: TwoHosts,
    /// This very binary: the demo server and `reach why` are its subcommands.
    pub exe: PathBuf,
    /// A root with Debian's Docker (`--docker-root`): the published port is a real
    /// `docker run -p`. None: Docker's DNAT recreated with nft.
    pub docker_root: Option<PathBuf>,
}

impl Lab {
    /// The namespace the scenario's client connects from.
    pub fn client_ns(&self, s: &Scenario) -> &NetNs {
        match s.client {
            Client::Outside(_) => &self.hosts.client,
            Client::OnServerHost(_) => &self.hosts.server,
        }
    }
}

/// The lab's own nftables table in the server namespace ("reply dropped"); reach's trace table
/// is `inet reach_trace`, firewalld's `inet firewalld`: neither is touched.
const NFT_TABLE: &str = "reach_lab_reply";
/// The lab's table publishing a port to the app namespace ("published port").
const NAT_TABLE: &str = "reach_lab_publish";
/// kube-proxy's own table name, in the Service scenario's server namespace (its own pair).
const KUBE_TABLE: &str = "kube-proxy";

/// One scenario's additions to the lab. Fields drop in declaration order: the client
/// connections, then the server, its namespace, and last the firewalld change.
pub struct Stage<'a> {
    _prefill: Vec<TcpStream>,
    pub server: Option<DemoServer>,
    /// The published port's container, when Docker runs it: its app's pid and namespace name.
    pub container: Option<(i32, String)>,
    /// Its daemon (goes before the namespaces).
    _docker: Option<Dockerd>,
    /// The third namespace of "server in another netns".
    pub app_ns: Option<NetNs>,
    /// The link to the app namespace of a published port (goes with the namespaces).
    _link: Option<Veth>,
    /// The Service scenario's dead endpoint's namespace, and the links to both endpoints.
    pub other_ns: Vec<NetNs>,
    _links: Vec<Veth>,
    _fault: Option<FaultGuard<'a>>,
    _firewall: Option<FirewallGuard<'a>>,
}

impl<'a> Stage<'a> {
    pub fn build(lab: &'a Lab, s: &Scenario) -> anyhow::Result<Self> {
        let mut stage = Stage {
            _prefill: Vec::new(),
            server: None,
            container: None,
            _docker: None,
            app_ns: None,
            _link: None,
            other_ns: Vec::new(),
            _links: Vec::new(),
            _fault: None,
            _firewall: None,
        };
        if let Some(fw) = &lab.fw {
            stage._firewall = Some(FirewallGuard::apply(fw, s)?);
        }
        stage._fault = FaultGuard::apply(&lab.hosts.server, s)?;
        let (exe, port) = (&lab.exe, s.port);
        match s.server {
            Server::None => {}
            Server::Here { bind, backlog, accept } => {
                let server = &lab.hosts.server;
                stage.server = Some(DemoServer::start(exe, server, bind, port, backlog, accept)?);
            }
            Server::OtherNetns => {
                let ns = NetNs::new("lab-app").context("creating the third namespace")?;
                let any = Bind::on(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                stage.server = Some(DemoServer::start(exe, &ns, any, port, 128, true)?);
                stage.app_ns = Some(ns);
            }
            Server::Service => {
                // The dead endpoint first, then the serving one with the demo server.
                for i in 0..2u8 {
                    let ns = NetNs::new(&format!("lab-ep{i}"))
                        .context("creating an endpoint namespace")?;
                    let (addr, gateway) = scenario::service_endpoint(i);
                    stage._links.push(link_behind(
                        &lab.hosts.server,
                        &ns,
                        &format!("ep{i}"),
                        addr,
                        gateway,
                    )?);
                    if i == 1 {
                        let any = Bind::on(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                        let app_port = scenario::APP_PORT;
                        stage.server = Some(DemoServer::start(exe, &ns, any, app_port, 128, true)?);
                        stage.app_ns = Some(ns);
                    } else {
                        stage.other_ns.push(ns);
                    }
                }
                kube_service(&lab.hosts.server, port)?;
            }
            Server::Published { bind } if lab.docker_root.is_some() => {
                let root = lab.docker_root.as_deref().unwrap_or(Path::new("/"));
                let (docker, pid, netns) = docker_publish(&lab.hosts.server, root, bind, port)?;
                stage.container = Some((pid, netns));
                stage._docker = Some(docker);
            }
            Server::Published { bind } => {
                let ns = NetNs::new("lab-app").context("creating the app namespace")?;
                stage._link = Some(publish(&lab.hosts.server, &ns, port)?);
                let app_port = scenario::APP_PORT;
                stage.server = Some(DemoServer::start(exe, &ns, bind, app_port, 128, true)?);
                stage.app_ns = Some(ns);
            }
        }
        for i in 0..s.prefill {
            let to = s.target();
            match client::connect(lab.client_ns(s), to, client::CONNECT_TIMEOUT)? {
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

/// The container the lab publishes with a real Docker.
pub const CONTAINER: &str = "reach-lab-app";

/// dockerd from `root` in `server`, and `docker run -p PORT:80` of busybox's httpd listening
/// on `bind` in the container: the daemon, the app's pid and its namespace's name.
fn docker_publish(
    server: &NetNs,
    root: &Path,
    bind: Bind,
    port: u16,
) -> anyhow::Result<(Dockerd, i32, String)> {
    let docker =
        Dockerd::start(server, root).context("starting dockerd in the server namespace")?;
    let listen = SocketAddr::new(bind.addr, scenario::APP_PORT).to_string();
    let publish = format!("{port}:{}", scenario::APP_PORT);
    let args = ["/bin/busybox", "httpd", "-f", "-p", &listen];
    let pid = docker
        .run(CONTAINER, &publish, &args)
        .with_context(|| format!("docker run -p {publish} {}", docker.log()))?;
    let id = docker.cli(&["inspect", "-f", "{{.Id}}", CONTAINER])?;
    let ns = NetNsFd::of_pid(pid as i32).context("the container's namespace")?;
    ns.wait_tcp_listener(scenario::APP_PORT, Duration::from_secs(10))?;
    Ok((docker, pid as i32, format!("container:{}", &id[..id.len().min(12)])))
}

/// Links `app` to the server namespace and publishes the server's `port` to the app's
/// [`scenario::APP_PORT`] the way Docker's `-p` does: a DNAT rule in the server namespace's
/// prerouting (in the lab's own table), IP forwarding on, the app routed back through the
/// server. All of it goes with the two namespaces.
fn publish(server: &NetNs, app: &NetNs, port: u16) -> anyhow::Result<Veth> {
    let link = Veth::create(
        VethEnd::new(server, "app0").addr(&format!("{}/24", scenario::APP_GATEWAY_V4)),
        VethEnd::new(app, "eth0").addr(&format!("{}/24", scenario::APP_V4)),
    )
    .context("linking the app namespace")?;
    let gateway = scenario::APP_GATEWAY_V4.to_string();
    app.ip(&["route", "add", "default", "via", &gateway]).context("the app's default route")?;
    server.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]).context("IP forwarding")?;
    let nft =
        |args: &[&str]| server.run("nft", args).with_context(|| format!("nft {}", args.join(" ")));
    nft(&["add", "table", "ip", NAT_TABLE])?;
    nft(&[
        "add",
        "chain",
        "ip",
        NAT_TABLE,
        "prerouting",
        "{ type nat hook prerouting priority dstnat; }",
    ])?;
    let to = format!("{}:{}", scenario::APP_V4, scenario::APP_PORT);
    nft(&[
        "add",
        "rule",
        "ip",
        NAT_TABLE,
        "prerouting",
        "tcp",
        "dport",
        &port.to_string(),
        "dnat",
        "to",
        &to,
    ])?;
    Ok(link)
}

/// `ns` linked to the server namespace by a veth (`name` on the server's side, `eth0` on
/// `ns`'s), `addr` on `ns`'s end and routed back through `gateway`, forwarding on.
fn link_behind(
    server: &NetNs,
    ns: &NetNs,
    name: &str,
    addr: Ipv4Addr,
    gateway: Ipv4Addr,
) -> anyhow::Result<Veth> {
    let link = Veth::create(
        VethEnd::new(server, name).addr(&format!("{gateway}/24")),
        VethEnd::new(ns, "eth0").addr(&format!("{addr}/24")),
    )
    .context("linking an endpoint namespace")?;
    ns.ip(&["route", "add", "default", "via", &gateway.to_string()])
        .context("its default route")?;
    server.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]).context("IP forwarding")?;
    Ok(link)
}

/// kube-proxy's nftables layout for Service default/web (chain names as kube-proxy writes
/// them): node `port` → the Service chain → one endpoint chain per endpoint, each with its
/// `dnat to`; the endpoint chosen in turn (`numgen inc`: the kernel starts its counter at
/// modulus − 1, so the first connection gets 0, the dead endpoint).
fn kube_service(server: &NetNs, port: u16) -> anyhow::Result<()> {
    let nft =
        |args: &[&str]| server.run("nft", args).with_context(|| format!("nft {}", args.join(" ")));
    let service = "service-ULMVA6XW-default/web/tcp/http";
    let endpoint = |i: u8| {
        let (addr, _) = scenario::service_endpoint(i);
        (
            format!(
                "endpoint-{}-default/web/tcp/http__{addr}/{}",
                ["5OJB2KTY", "VJ7VIZ4D"][i as usize],
                scenario::APP_PORT
            ),
            format!("{addr}:{}", scenario::APP_PORT),
        )
    };
    nft(&["add", "table", "ip", KUBE_TABLE])?;
    nft(&[
        "add",
        "chain",
        "ip",
        KUBE_TABLE,
        "nat-prerouting",
        "{ type nat hook prerouting priority -100; }",
    ])?;
    nft(&["add", "chain", "ip", KUBE_TABLE, "services"])?;
    nft(&["add", "rule", "ip", KUBE_TABLE, "nat-prerouting", "jump", "services"])?;
    nft(&["add", "chain", "ip", KUBE_TABLE, service])?;
    for i in 0..2 {
        let (chain, to) = endpoint(i);
        nft(&["add", "chain", "ip", KUBE_TABLE, &chain])?;
        nft(&[
            "add", "rule", "ip", KUBE_TABLE, &chain, "meta", "l4proto", "tcp", "dnat", "to", &to,
        ])?;
    }
    let vmap = format!("{{ 0 : goto {}, 1 : goto {} }}", endpoint(0).0, endpoint(1).0);
    nft(&["add", "rule", "ip", KUBE_TABLE, service, "numgen", "inc", "mod", "2", "vmap", &vmap])?;
    nft(&[
        "add",
        "rule",
        "ip",
        KUBE_TABLE,
        "services",
        "tcp",
        "dport",
        &port.to_string(),
        "goto",
        service,
    ])?;
    Ok(())
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

/// A scenario's change to the server namespace itself, undone on drop.
enum FaultGuard<'a> {
    SecondAddress(&'a NetNs, String),
    DropSynAck(&'a NetNs),
}

impl<'a> FaultGuard<'a> {
    fn apply(ns: &'a NetNs, s: &Scenario) -> anyhow::Result<Option<Self>> {
        Ok(match s.fault {
            Fault::None => None,
            Fault::SecondAddress => {
                let addr = format!("{}/24", scenario::SECOND_V4);
                ns.ip(&["addr", "add", &addr, "dev", TwoHosts::SERVER_IF])
                    .with_context(|| format!("adding {addr} to {}", TwoHosts::SERVER_IF))?;
                Some(Self::SecondAddress(ns, addr))
            }
            Fault::DropSynAck => {
                // The guard exists before the first command: a half-made table is removed too.
                let guard = Self::DropSynAck(ns);
                let port = s.port.to_string();
                let nft = |args: &[&str]| {
                    ns.run("nft", args).with_context(|| format!("nft {}", args.join(" ")))
                };
                nft(&["add", "table", "inet", NFT_TABLE])?;
                nft(&[
                    "add",
                    "chain",
                    "inet",
                    NFT_TABLE,
                    "output",
                    "{ type filter hook output priority 0; policy accept; }",
                ])?;
                // Only the handshake's answer: the listener gets the SYN and answers, the
                // answer never leaves.
                nft(&[
                    "add",
                    "rule",
                    "inet",
                    NFT_TABLE,
                    "output",
                    "tcp",
                    "sport",
                    &port,
                    "tcp",
                    "flags",
                    "&",
                    "(syn|ack)",
                    "==",
                    "syn|ack",
                    "drop",
                ])?;
                Some(guard)
            }
        })
    }
}

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        let undone = match self {
            Self::SecondAddress(ns, addr) => {
                ns.ip(&["addr", "del", addr, "dev", TwoHosts::SERVER_IF]).map(drop)
            }
            Self::DropSynAck(ns) => {
                ns.run("nft", &["delete", "table", "inet", NFT_TABLE]).map(drop)
            }
        };
        if let Err(e) = undone {
            eprintln!("lab: warning: undoing a scenario's change to the server namespace: {e}");
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
