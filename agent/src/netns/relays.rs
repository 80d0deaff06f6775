//! Userland relays: a process that listens on a port itself and, for each connection it
//! accepts, opens its own to somewhere else — Docker's `docker-proxy` (its userland proxy for
//! a published port), `socat TCP-LISTEN:… TCP:…`. The handshake with the client then always
//! succeeds; whether the client reaches anything is decided by the relay's own connection. Its
//! destination is read from the relay's command line, in the layout each tool documents.
use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
};

use serde::Serialize;

/// A relay listening on the diagnosed port, and where it relays to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Relay {
    pub pid: u32,
    pub comm: String,
    /// `docker-proxy` or `socat`.
    pub tool: &'static str,
    pub to: SocketAddr,
}

impl Relay {
    /// The relay process `pid`, when its command line is one of a known relay's.
    pub fn of_pid(pid: u32) -> Option<Relay> {
        let argv = super::owners::read_argv(Path::new(&format!("/proc/{pid}")))?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim().to_string();
        let (tool, to) = target(&argv)?;
        Some(Relay { pid, comm, tool, to })
    }

    /// What the relay is, in a phrase.
    pub fn describe(&self) -> String {
        let what = match self.tool {
            "docker-proxy" => "Docker's userland proxy for the published port",
            _ => "a userland relay",
        };
        format!("{} (pid {}), {what},", self.comm, self.pid)
    }
}

/// The tool and destination of a relay's command line `argv`.
pub fn target(argv: &[String]) -> Option<(&'static str, SocketAddr)> {
    let program = argv.first()?.rsplit('/').next()?;
    match program {
        "docker-proxy" => docker_proxy(argv).map(|to| ("docker-proxy", to)),
        "socat" => socat(argv).map(|to| ("socat", to)),
        _ => None,
    }
}

/// docker-proxy's arguments as dockerd passes them: `-proto tcp -host-ip H -host-port P
/// -container-ip C -container-port Q` (each also accepted with two dashes).
fn docker_proxy(argv: &[String]) -> Option<SocketAddr> {
    let flag = |name: &str| {
        let at = argv.iter().position(|a| a.trim_start_matches('-') == name)?;
        argv.get(at + 1)
    };
    if flag("proto").is_some_and(|p| p != "tcp") {
        return None;
    }
    let ip: IpAddr = flag("container-ip")?.parse().ok()?;
    let port: u16 = flag("container-port")?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// socat's second address when the first one listens on TCP: `TCP[46]:HOST:PORT` or
/// `TCP[46]-CONNECT:HOST:PORT`, options after a comma, HOST a numeric address (`[v6]` too).
fn socat(argv: &[String]) -> Option<SocketAddr> {
    let addresses: Vec<&String> = argv.iter().skip(1).filter(|a| !a.starts_with('-')).collect();
    let [listen, connect] = addresses[..] else { return None };
    let kind = |a: &str| a.split_once(':').map(|(k, _)| k.to_ascii_uppercase());
    if !["TCP-LISTEN", "TCP4-LISTEN", "TCP6-LISTEN"].contains(&kind(listen)?.as_str()) {
        return None;
    }
    let (k, rest) = connect.split_once(':')?;
    let connects = ["TCP", "TCP4", "TCP6", "TCP-CONNECT", "TCP4-CONNECT", "TCP6-CONNECT"];
    if !connects.contains(&k.to_ascii_uppercase().as_str()) {
        return None;
    }
    let hostport = rest.split(',').next()?;
    let (host, port) = hostport.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(SocketAddr::new(host.parse().ok()?, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    /// dockerd's own argument list for a published port (moby's proxy command).
    #[test]
    fn docker_proxy_arguments_name_the_container_address() {
        let a = argv(
            "/usr/bin/docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2 -container-port 80 -use-listen-fd",
        );
        assert_eq!(target(&a), Some(("docker-proxy", "172.17.0.2:80".parse().unwrap())));
        let v6 = argv(
            "docker-proxy -proto tcp -host-ip :: -host-port 8080 -container-ip fd00::2 -container-port 80",
        );
        assert_eq!(target(&v6), Some(("docker-proxy", "[fd00::2]:80".parse().unwrap())));
        let udp = argv(
            "docker-proxy -proto udp -host-ip 0.0.0.0 -host-port 53 -container-ip 172.17.0.2 -container-port 53",
        );
        assert_eq!(target(&udp), None, "a UDP proxy relays no TCP connection");
    }

    #[test]
    fn socat_relays_name_their_connecting_address() {
        let a = argv("socat TCP-LISTEN:8080,fork,reuseaddr TCP:172.30.0.2:80");
        assert_eq!(target(&a), Some(("socat", "172.30.0.2:80".parse().unwrap())));
        let b = argv("/usr/bin/socat -d tcp6-listen:8080,fork TCP6:[fd30::2]:80,nodelay");
        assert_eq!(target(&b), Some(("socat", "[fd30::2]:80".parse().unwrap())));
        // A name is not guessed at; neither is a non-TCP relay or another program.
        assert_eq!(target(&argv("socat TCP-LISTEN:8080,fork TCP:app:80")), None);
        assert_eq!(target(&argv("socat UDP-LISTEN:53 UDP:1.1.1.1:53")), None);
        assert_eq!(target(&argv("nginx -g daemon")), None);
    }
}
