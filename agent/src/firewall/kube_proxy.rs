//! kube-proxy's nftables chains in Kubernetes' terms. In nftables mode kube-proxy writes
//! `table ip kube-proxy` (and `ip6`), one chain per Service port —
//! `service-<HASH>-<namespace>/<name>/<protocol>/<port name>`, choosing an endpoint with
//! `numgen random mod N vmap { … goto endpoint-… }` — and one per endpoint,
//! `endpoint-<HASH>-<namespace>/<name>/<protocol>/<port name>__<ip>/<port>`, whose `dnat to`
//! sends the connection to that pod (kube-proxy's `servicePortChainName` and
//! `servicePortEndpointChainName`). The chain a traced DNAT rule sits in thus names the Service
//! and the endpoint that was chosen.
use serde::Serialize;

/// kube-proxy's nftables table name (both families).
pub const TABLE: &str = "kube-proxy";

/// A Service port and the endpoint kube-proxy sent one connection to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceEndpoint {
    pub namespace: String,
    pub name: String,
    pub protocol: String,
    /// The Service port's name (empty for an unnamed port).
    pub port_name: String,
    /// The endpoint (pod) address and port, as kube-proxy wrote them in the chain name.
    pub endpoint: String,
}

/// The Service endpoint of chain `chain` in table `table`, when it is one of kube-proxy's
/// endpoint chains.
pub fn endpoint_chain(table: &str, chain: &str) -> Option<ServiceEndpoint> {
    if table != TABLE {
        return None;
    }
    // The hash is base32 (no '-'); a namespace or name may contain '-'.
    let (_hash, rest) = chain.strip_prefix("endpoint-")?.split_once('-')?;
    let (service, endpoint) = rest.rsplit_once("__")?;
    let mut parts = service.splitn(4, '/');
    let (namespace, name, protocol) = (parts.next()?, parts.next()?, parts.next()?);
    let port_name = parts.next().unwrap_or_default();
    let (ip, port) = endpoint.rsplit_once('/')?;
    let endpoint = if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
    Some(ServiceEndpoint {
        namespace: namespace.into(),
        name: name.into(),
        protocol: protocol.into(),
        port_name: port_name.into(),
        endpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chain names as kube-proxy's own proxier tests spell them.
    #[test]
    fn endpoint_chains_name_the_service_and_endpoint() {
        let e = endpoint_chain("kube-proxy", "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80")
            .unwrap();
        assert_eq!(
            (
                e.namespace.as_str(),
                e.name.as_str(),
                e.protocol.as_str(),
                e.port_name.as_str(),
                e.endpoint.as_str()
            ),
            ("ns1", "svc1", "tcp", "p80", "10.180.0.1:80")
        );
        let e = endpoint_chain(
            "kube-proxy",
            "endpoint-ABCD2345-kube-system/kube-dns/udp/dns__fd00:10::5/53",
        )
        .unwrap();
        assert_eq!((e.namespace.as_str(), e.endpoint.as_str()), ("kube-system", "[fd00:10::5]:53"));
        // Service chains, other tables, other chains: not an endpoint.
        assert!(endpoint_chain("kube-proxy", "service-ULMVA6XW-ns1/svc1/tcp/p80").is_none());
        assert!(
            endpoint_chain("nat", "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80").is_none()
        );
        assert!(endpoint_chain("kube-proxy", "nat-prerouting").is_none());
    }
}
