//! Docker's iptables chains and what a drop in each means, in Docker's terms.
//!
//! From moby/moby's bridge driver (libnetwork/drivers/bridge/setup_ip_tables_linux.go,
//! libnetwork/firewall_linux.go `setupUserChain`, and the generated rule listings in
//! integration/network/bridge/iptablesdoc/generated/): FORWARD jumps first to DOCKER-USER
//! (Docker creates it, never adds rules to it, and keeps it across restarts: it is for the
//! user's own rules), then (Docker ≥ 28) to DOCKER-FORWARD, which holds DOCKER-CT (established
//! traffic), DOCKER-INTERNAL (`--internal` networks), DOCKER-BRIDGE (→ DOCKER per bridge) and
//! the isolation jump; older Docker jumps from FORWARD to DOCKER-ISOLATION-STAGE-1 and DOCKER
//! directly. DOCKER accepts each published port and ends with `! -i docker0 -o docker0 -j
//! DROP`: a container port that is not published is dropped whatever FORWARD's policy.
//! DOCKER-ISOLATION-STAGE-1/2 drop traffic between two Docker networks. Docker rewrites all of
//! its chains except DOCKER-USER when it restarts or a network changes.

/// Which of Docker's chains decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerChain {
    /// DOCKER-USER: the user's own rules.
    User,
    /// DOCKER: published ports; everything else into a bridge network is dropped.
    Docker,
    /// DOCKER-ISOLATION-STAGE-1/2: isolation between Docker networks.
    Isolation,
    /// DOCKER-INTERNAL: networks created with `--internal`.
    Internal,
    /// DOCKER-FORWARD, DOCKER-CT, DOCKER-BRIDGE: Docker's dispatch chains.
    Dispatch,
}

impl DockerChain {
    /// The role of `chain`, if it is one of Docker's.
    pub fn of(chain: &str) -> Option<Self> {
        Some(match chain {
            "DOCKER-USER" => Self::User,
            "DOCKER" => Self::Docker,
            "DOCKER-ISOLATION-STAGE-1" | "DOCKER-ISOLATION-STAGE-2" => Self::Isolation,
            "DOCKER-INTERNAL" => Self::Internal,
            "DOCKER-FORWARD" | "DOCKER-CT" | "DOCKER-BRIDGE" => Self::Dispatch,
            _ => return None,
        })
    }

    /// What the drop means and what to do instead, for a chain Docker owns (not DOCKER-USER,
    /// whose rules are the user's and get iptables commands).
    pub fn explain(self, chain: &str, port: u16) -> Vec<String> {
        let own = format!(
            "this is Docker's own rule in chain {chain}: do not delete it — Docker rewrites its \
             chains when it restarts or a network changes; rules of your own belong in DOCKER-USER"
        );
        match self {
            Self::Docker => vec![
                format!(
                    "Docker drops traffic to a container port that is not published: publish \
                     port {port} — `docker run -p {port}:{port} …` (compose: `ports: \
                     [\"{port}:{port}\"]`), then connect to the host's address"
                ),
                "`docker ps --format '{{.Names}} {{.Ports}}'` lists what each container \
                 publishes"
                    .into(),
                own,
            ],
            Self::Isolation => vec![
                "Docker's network isolation drops traffic between two Docker networks: connect \
                 the container to the client's network (`docker network connect NETWORK \
                 CONTAINER`), or publish the port and dial the host's address"
                    .into(),
                own,
            ],
            Self::Internal => vec![
                "the container's network was created with `--internal` (no traffic in or out): \
                 attach the container to a network that is not internal"
                    .into(),
                own,
            ],
            Self::Dispatch | Self::User => vec![own],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_docker_chain_has_a_role_and_others_none() {
        for (c, role) in [
            ("DOCKER-USER", DockerChain::User),
            ("DOCKER", DockerChain::Docker),
            ("DOCKER-ISOLATION-STAGE-1", DockerChain::Isolation),
            ("DOCKER-ISOLATION-STAGE-2", DockerChain::Isolation),
            ("DOCKER-INTERNAL", DockerChain::Internal),
            ("DOCKER-FORWARD", DockerChain::Dispatch),
            ("DOCKER-CT", DockerChain::Dispatch),
            ("DOCKER-BRIDGE", DockerChain::Dispatch),
        ] {
            assert_eq!(DockerChain::of(c), Some(role), "{c}");
        }
        for c in ["INPUT", "FORWARD", "docker", "DOCKER-USERS", "input"] {
            assert_eq!(DockerChain::of(c), None, "{c}");
        }
    }

    #[test]
    fn docker_owned_drops_are_explained_never_deleted() {
        let lines = DockerChain::Docker.explain("DOCKER", 8080);
        let all = lines.join("\n");
        assert!(all.contains("docker run -p 8080:8080"), "{all}");
        assert!(all.contains("do not delete it"), "{all}");
        assert!(!all.contains("iptables -D"), "{all}");
        let iso = DockerChain::Isolation.explain("DOCKER-ISOLATION-STAGE-2", 80).join("\n");
        assert!(iso.contains("docker network connect"), "{iso}");
    }
}
