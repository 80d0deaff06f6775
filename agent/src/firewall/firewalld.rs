//! firewalld's live runtime configuration, read over D-Bus the way `firewall-cmd` reads it.
//!
//! Users think in zones, services and rich rules; the kernel runs nftables. This model is the
//! user's side: which zone a packet lands in, and which port, service or rich rule of that zone
//! lets it in (or does not), so a diagnosis can name the firewalld setting to change.
//!
//! Names and signatures were checked against firewalld 1.3.3 (D-Bus interface_version 1.15).
//! `getZoneSettings2`, `getServiceSettings2` and `getPolicySettings` return `a{sv}` dicts that
//! leave out empty entries (a zone without ports has no `"ports"` key), so every key is optional.
use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::IpAddr,
    time::Duration,
};

use anyhow::Context as _;
use serde::Serialize;
use zbus::{DBusError as _, zvariant::OwnedValue};

use super::firewalld_presence::FIREWALLD_BUS_NAME;

const PATH: &str = "/org/fedoraproject/FirewallD1";
const IFACE_MAIN: &str = "org.fedoraproject.FirewallD1";
const IFACE_ZONE: &str = "org.fedoraproject.FirewallD1.zone";
const IFACE_POLICY: &str = "org.fedoraproject.FirewallD1.policy";

/// Bound on connecting and on each call: a wedged bus or daemon must not hang a diagnosis.
const TIMEOUT: Duration = Duration::from_secs(5);

/// firewalld's runtime configuration (what it enforces now, not what it will load on reload).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FirewalldConfig {
    /// The daemon's `version` property, e.g. "1.3.3".
    pub version: String,
    /// The daemon's `state` property: "RUNNING", or "INIT"/"FAILED" when the config may be
    /// incomplete.
    pub state: String,
    pub default_zone: String,
    /// Every zone, sorted by name (firewalld's own order for source dispatch, see
    /// [`FirewalldConfig::zone_for`]).
    pub zones: Vec<Zone>,
    /// Policies (firewalld ≥ 0.9); empty where the daemon has none.
    pub policies: Vec<Policy>,
    /// The network namespace the daemon runs in (its bus connection's process), when the bus
    /// said: the only namespace whose `inet firewalld` table this configuration describes —
    /// a firewalld in another namespace on another bus has its own.
    #[serde(skip)]
    pub netns_inode: Option<u64>,
}

/// What a zone does with packets no rule of it matched.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum Target {
    /// firewalld's "default": reject, except ICMP (and for the default zone, forwarded
    /// traffic follows the zone's `forward`).
    Default,
    Accept,
    Drop,
    /// firewalld's "%%REJECT%%".
    Reject,
}

impl Target {
    /// Maps firewalld's spelling; None for a value this model does not know.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "default" => Some(Self::Default),
            "ACCEPT" => Some(Self::Accept),
            "DROP" => Some(Self::Drop),
            "%%REJECT%%" | "REJECT" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// A port or port range with its protocol ("tcp", "udp", "sctp", "dccp").
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
    pub proto: String,
}

impl PortRange {
    /// Parses firewalld's ("8080", "tcp") or ("6000-6010", "tcp").
    pub fn parse(port: &str, proto: &str) -> Option<Self> {
        let (start, end) = match port.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let p = port.trim().parse().ok()?;
                (p, p)
            }
        };
        (start <= end).then(|| Self { start, end, proto: proto.to_string() })
    }

    pub fn contains(&self, port: u16, proto: &str) -> bool {
        self.proto.eq_ignore_ascii_case(proto) && (self.start..=self.end).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}/{}", self.start, self.proto)
        } else {
            write!(f, "{}-{}/{}", self.start, self.end, self.proto)
        }
    }
}

/// A service of a zone, resolved to what it opens.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// Its ports, including those of services it `includes` (samba includes samba-client).
    pub ports: Vec<PortRange>,
    /// Whole protocols it allows (e.g. "gre").
    pub protocols: Vec<String>,
    pub source_ports: Vec<PortRange>,
    /// Destination restriction per family ("ipv4"/"ipv6" → address), e.g. dhcpv6-client's
    /// fe80::/64: the service only opens its ports for packets to that destination.
    pub destination: BTreeMap<String, String>,
    /// Set when firewalld could not describe the service (then `ports` is empty), so a
    /// diagnosis says "unknown" rather than "opens nothing".
    pub unresolved: Option<String>,
}

/// A firewalld zone.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub target: Target,
    /// The raw target, for values [`Target`] does not know (then `target` is Default).
    pub target_raw: String,
    pub interfaces: Vec<String>,
    /// Addresses/networks, "ipset:NAME" or MAC addresses bound to this zone.
    pub sources: Vec<String>,
    pub ports: Vec<PortRange>,
    pub protocols: Vec<String>,
    pub source_ports: Vec<PortRange>,
    pub services: Vec<Service>,
    /// Rich rules exactly as firewalld prints them; parse with [`RichRule::parse`].
    pub rich_rules: Vec<String>,
    pub icmp_blocks: Vec<String>,
    pub icmp_block_inversion: bool,
    pub masquerade: bool,
    pub forward: bool,
    /// Listed by getActiveZones (bound to an interface or source). The default zone also
    /// catches interfaces bound nowhere, even when not listed.
    pub active: bool,
}

impl Zone {
    /// An empty zone with target Default (for building configs in code and tests).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            target: Target::Default,
            target_raw: "default".into(),
            interfaces: vec![],
            sources: vec![],
            ports: vec![],
            protocols: vec![],
            source_ports: vec![],
            services: vec![],
            rich_rules: vec![],
            icmp_blocks: vec![],
            icmp_block_inversion: false,
            masquerade: false,
            forward: false,
            active: false,
        }
    }

    /// The zone's rich rules, parsed, in firewalld's order; a rule the parser does not
    /// understand comes back as its error rather than being dropped silently.
    pub fn parsed_rich_rules(&self) -> Vec<Result<RichRule, RichRuleError>> {
        self.rich_rules.iter().map(|r| RichRule::parse(r)).collect()
    }
}

/// A firewalld policy (traffic between zones, firewalld ≥ 0.9).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// "CONTINUE", "ACCEPT", "DROP" or "REJECT".
    pub target: String,
    pub priority: i32,
    /// Zone names, or the pseudo-zones "ANY" and "HOST".
    pub ingress_zones: Vec<String>,
    pub egress_zones: Vec<String>,
    pub ports: Vec<PortRange>,
    pub services: Vec<Service>,
    pub rich_rules: Vec<String>,
    pub masquerade: bool,
    /// Listed by getActivePolicies.
    pub active: bool,
}

/// What lets a port in, per [`FirewalldConfig::allows`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum Allowance {
    /// The zone's target is ACCEPT: everything is allowed.
    TargetAccept,
    /// A port entry of the zone (`--add-port`).
    Port(PortRange),
    /// A whole protocol of the zone (`--add-protocol`).
    Protocol(String),
    /// A service of the zone, through one of its ports.
    Service { name: String, port: PortRange },
}

/// Why [`read`] failed, so callers can say what to fix. Wrapped in `anyhow::Error`;
/// `downcast_ref::<ReadError>()` recovers it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no D-Bus at {address}: {detail}")]
    NoBus { address: String, detail: String },
    #[error("firewalld is not running (nobody owns {FIREWALLD_BUS_NAME} on {address})")]
    NotRunning { address: String },
    #[error("access denied reading firewalld over {address}: {detail}")]
    AccessDenied { address: String, detail: String },
    #[error("timed out talking to D-Bus at {address} ({what})")]
    Timeout { address: String, what: String },
}

/// Reads firewalld's runtime configuration from the bus at `bus` (None: the system bus,
/// honouring DBUS_SYSTEM_BUS_ADDRESS).
pub async fn read(bus: Option<&str>) -> anyhow::Result<FirewalldConfig> {
    let address = match bus {
        Some(a) => a.to_string(),
        None => std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .unwrap_or_else(|_| "the system bus".to_string()),
    };
    let connect = async {
        match bus {
            Some(addr) => zbus::connection::Builder::address(addr)?.build().await,
            None => zbus::Connection::system().await,
        }
    };
    let conn = tokio::time::timeout(TIMEOUT, connect)
        .await
        .map_err(|_| ReadError::Timeout { address: address.clone(), what: "connecting".into() })?
        .map_err(|e| classify_connect(&address, e))?;

    // Asking the bus first gives a clear "not running" instead of a ServiceUnknown error
    // from the first method call.
    let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
    let name = zbus::names::BusName::try_from(FIREWALLD_BUS_NAME)?;
    let owned = timed(&address, "NameHasOwner", dbus.name_has_owner(name.clone()))
        .await?
        .map_err(|e| classify_call(&address, e.into()))?;
    if !owned {
        return Err(ReadError::NotRunning { address }.into());
    }

    // Which namespace it guards: its process's, as this host's /proc sees it (unknown when the
    // bus is another PID namespace's and the process is not there).
    let pid = dbus.get_connection_unix_process_id(name).await.ok();
    let netns_inode = pid.and_then(|p| {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(format!("/proc/{p}/ns/net")).ok().map(|m| m.ino())
    });
    let r = Reader { conn, address };
    let mut config = r.config().await?;
    config.netns_inode = netns_inode;
    Ok(config)
}

struct Reader {
    conn: zbus::Connection,
    address: String,
}

type Dict = HashMap<String, OwnedValue>;

impl Reader {
    async fn proxy(&self, iface: &'static str) -> anyhow::Result<zbus::Proxy<'static>> {
        Ok(zbus::Proxy::new(&self.conn, FIREWALLD_BUS_NAME, PATH, iface).await?)
    }

    /// One method call, bounded and with errors classified.
    async fn call<A, R>(&self, proxy: &zbus::Proxy<'_>, method: &str, args: &A) -> anyhow::Result<R>
    where
        A: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        timed(&self.address, method, proxy.call(method, args))
            .await?
            .map_err(|e| classify_call(&self.address, e))
            .with_context(|| format!("firewalld {method}"))
    }

    async fn config(&self) -> anyhow::Result<FirewalldConfig> {
        let main = self.proxy(IFACE_MAIN).await?;
        let zone_iface = self.proxy(IFACE_ZONE).await?;

        let version: String = timed(&self.address, "version", main.get_property("version"))
            .await?
            .map_err(|e| classify_call(&self.address, e))?;
        // Older daemons may lack `state`; it is informative only.
        let state: String = timed(&self.address, "state", main.get_property::<String>("state"))
            .await?
            .unwrap_or_default();
        let default_zone: String = self.call(&main, "getDefaultZone", &()).await?;
        let active: HashMap<String, HashMap<String, Vec<String>>> =
            self.call(&zone_iface, "getActiveZones", &()).await?;
        let mut names: Vec<String> = self.call(&zone_iface, "getZones", &()).await?;
        names.sort();

        // Services are shared between zones: describe each once.
        let mut services: HashMap<String, Service> = HashMap::new();
        let mut zones = Vec::with_capacity(names.len());
        for name in names {
            let d: Dict = self.call(&zone_iface, "getZoneSettings2", &(name.as_str(),)).await?;
            let target_raw = get_string(&d, "target").unwrap_or_else(|| "default".into());
            let mut zone = Zone::new(&name);
            zone.target = Target::parse(&target_raw).unwrap_or(Target::Default);
            zone.target_raw = target_raw;
            zone.interfaces = get_strings(&d, "interfaces");
            zone.sources = get_strings(&d, "sources");
            zone.ports = get_ports(&d, "ports");
            zone.protocols = get_strings(&d, "protocols");
            zone.source_ports = get_ports(&d, "source_ports");
            zone.rich_rules = get_strings(&d, "rules_str");
            zone.icmp_blocks = get_strings(&d, "icmp_blocks");
            zone.icmp_block_inversion = get_bool(&d, "icmp_block_inversion");
            zone.masquerade = get_bool(&d, "masquerade");
            zone.forward = get_bool(&d, "forward");
            zone.active = active.contains_key(&name);
            for s in get_strings(&d, "services") {
                zone.services.push(self.service(&main, &s, &mut services).await?);
            }
            zones.push(zone);
        }

        let policies = self.policies(&main, &mut services).await?;
        Ok(FirewalldConfig { version, state, default_zone, zones, policies, netns_inode: None })
    }

    async fn policies(
        &self,
        main: &zbus::Proxy<'_>,
        services: &mut HashMap<String, Service>,
    ) -> anyhow::Result<Vec<Policy>> {
        let policy_iface = self.proxy(IFACE_POLICY).await?;
        // Daemons before 0.9 have no policy interface: no policies rather than an error.
        let mut names: Vec<String> = match self.call(&policy_iface, "getPolicies", &()).await {
            Ok(n) => n,
            Err(e) if is_unknown_method(&e) => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        names.sort();
        let active: HashMap<String, HashMap<String, Vec<String>>> =
            self.call(&policy_iface, "getActivePolicies", &()).await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let d: Dict = self.call(&policy_iface, "getPolicySettings", &(name.as_str(),)).await?;
            let mut p = Policy {
                target: get_string(&d, "target").unwrap_or_default(),
                priority: d.get("priority").and_then(|v| i32::try_from(v).ok()).unwrap_or(0),
                ingress_zones: get_strings(&d, "ingress_zones"),
                egress_zones: get_strings(&d, "egress_zones"),
                ports: get_ports(&d, "ports"),
                rich_rules: get_strings(&d, "rich_rules"),
                masquerade: get_bool(&d, "masquerade"),
                active: active.contains_key(&name),
                name,
                ..Policy::default()
            };
            for s in get_strings(&d, "services") {
                p.services.push(self.service(main, &s, services).await?);
            }
            out.push(p);
        }
        Ok(out)
    }

    /// A service with its ports, following `includes`. A service firewalld cannot describe
    /// (INVALID_SERVICE) is kept, marked unresolved; bus-level failures still fail the read.
    async fn service(
        &self,
        main: &zbus::Proxy<'_>,
        name: &str,
        cache: &mut HashMap<String, Service>,
    ) -> anyhow::Result<Service> {
        if let Some(s) = cache.get(name) {
            return Ok(s.clone());
        }
        let mut svc = Service { name: name.to_string(), ..Service::default() };
        // Iterative walk of includes; `seen` stops include cycles.
        let mut todo = vec![name.to_string()];
        let mut seen = vec![];
        while let Some(n) = todo.pop() {
            if seen.contains(&n) {
                continue;
            }
            seen.push(n.clone());
            let d: Dict = match self.call(main, "getServiceSettings2", &(n.as_str(),)).await {
                Ok(d) => d,
                Err(e) if e.downcast_ref::<ReadError>().is_none() => {
                    if n == name {
                        svc.unresolved = Some(format!("{e:#}"));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            svc.ports.extend(get_ports(&d, "ports"));
            svc.protocols.extend(get_strings(&d, "protocols"));
            svc.source_ports.extend(get_ports(&d, "source_ports"));
            // Only the named service's own destination restricts it; included services'
            // ports are merged without theirs (rare, and firewalld applies them per service).
            if n == name
                && let Some(dest) = d.get("destination")
                && let Ok(map) = HashMap::<String, String>::try_from(dest.clone())
            {
                svc.destination = map.into_iter().collect();
            }
            todo.extend(get_strings(&d, "includes"));
        }
        svc.ports.sort();
        svc.ports.dedup();
        cache.insert(name.to_string(), svc.clone());
        Ok(svc)
    }
}

async fn timed<F: std::future::Future>(
    address: &str,
    what: &str,
    fut: F,
) -> anyhow::Result<F::Output> {
    tokio::time::timeout(TIMEOUT, fut).await.map_err(|_| {
        ReadError::Timeout { address: address.to_string(), what: what.to_string() }.into()
    })
}

fn classify_connect(address: &str, e: zbus::Error) -> anyhow::Error {
    let detail = e.to_string();
    let denied = match &e {
        zbus::Error::InputOutput(io) => io.kind() == std::io::ErrorKind::PermissionDenied,
        // The bus refused our credentials (EXTERNAL auth): a permission problem, not a
        // missing bus.
        zbus::Error::Handshake(_) => true,
        _ => false,
    };
    if denied {
        ReadError::AccessDenied { address: address.to_string(), detail }.into()
    } else {
        ReadError::NoBus { address: address.to_string(), detail }.into()
    }
}

fn classify_call(address: &str, e: zbus::Error) -> anyhow::Error {
    let error_name = match &e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str().to_string()),
        zbus::Error::FDO(f) => Some(f.name().to_string()),
        _ => None,
    };
    match error_name.as_deref() {
        Some(
            "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner",
        ) => ReadError::NotRunning { address: address.to_string() }.into(),
        Some(n)
            if n == "org.freedesktop.DBus.Error.AccessDenied"
                || n.contains("NotAuthorized")
                || n.contains("AuthFailed") =>
        {
            ReadError::AccessDenied { address: address.to_string(), detail: e.to_string() }.into()
        }
        _ => e.into(),
    }
}

fn is_unknown_method(e: &anyhow::Error) -> bool {
    e.chain().any(|c| match c.downcast_ref::<zbus::Error>() {
        Some(zbus::Error::MethodError(name, _, _)) => {
            matches!(
                name.as_str(),
                "org.freedesktop.DBus.Error.UnknownMethod"
                    | "org.freedesktop.DBus.Error.UnknownInterface"
            )
        }
        Some(zbus::Error::FDO(f)) => matches!(
            **f,
            zbus::fdo::Error::UnknownMethod(_) | zbus::fdo::Error::UnknownInterface(_)
        ),
        _ => false,
    })
}

fn get_string(d: &Dict, key: &str) -> Option<String> {
    d.get(key).and_then(|v| String::try_from(v.clone()).ok())
}

fn get_strings(d: &Dict, key: &str) -> Vec<String> {
    d.get(key).and_then(|v| Vec::<String>::try_from(v.clone()).ok()).unwrap_or_default()
}

fn get_bool(d: &Dict, key: &str) -> bool {
    d.get(key).and_then(|v| bool::try_from(v).ok()).unwrap_or(false)
}

/// An `a(ss)` of (port, protocol); entries that do not parse are skipped.
fn get_ports(d: &Dict, key: &str) -> Vec<PortRange> {
    d.get(key)
        .and_then(|v| Vec::<(String, String)>::try_from(v.clone()).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|(port, proto)| PortRange::parse(port, proto))
        .collect()
}

impl FirewalldConfig {
    /// Whether this configuration is the one of namespace `netns`'s firewalld (true when the
    /// daemon's namespace is unknown: the bus could not say).
    pub fn guards(&self, netns: u64) -> bool {
        self.netns_inode.is_none_or(|n| n == netns)
    }

    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.name == name)
    }

    /// The zone firewalld puts a packet arriving on `iface` from `source` in, following the
    /// dispatch chain it generates (filter_INPUT_ZONES in 1.3.3): source-bound zones first, in
    /// zone-name order (verified live: with 10.77.0.0/28 in "block", 10.77.0.3 in "trusted"
    /// and 10.77.0.0/16 in "work", the rules come in that order whatever the order of adding),
    /// then the interface's zone, then the default zone. MAC and ipset sources cannot be
    /// judged from an address and are skipped. Falls back to a synthetic empty default zone
    /// only if the daemon listed no zone of the default zone's name.
    pub fn zone_for(&self, iface: &str, source: IpAddr) -> &Zone {
        let mut by_name: Vec<&Zone> = self.zones.iter().collect();
        by_name.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(z) = by_name
            .iter()
            .find(|z| z.sources.iter().any(|s| source_matches(s, source) == Some(true)))
        {
            return z;
        }
        if let Some(z) = self.zones.iter().find(|z| z.interfaces.iter().any(|i| i == iface)) {
            return z;
        }
        self.zone(&self.default_zone).unwrap_or_else(|| self.zones.first().unwrap_or(&EMPTY_ZONE))
    }

    /// Whether `zone` lets `port`/`proto` in through its target, a port entry, a protocol or a
    /// service (in that order of precedence for naming; rich rules are separate, as they depend
    /// on more than the port). None: nothing of that kind allows it.
    pub fn allows(&self, zone: &Zone, port: u16, proto: &str) -> Option<Allowance> {
        if zone.target == Target::Accept {
            return Some(Allowance::TargetAccept);
        }
        if let Some(p) = zone.ports.iter().find(|p| p.contains(port, proto)) {
            return Some(Allowance::Port(p.clone()));
        }
        if let Some(p) = zone.protocols.iter().find(|p| p.eq_ignore_ascii_case(proto)) {
            return Some(Allowance::Protocol(p.clone()));
        }
        zone.services.iter().find_map(|s| {
            s.ports
                .iter()
                .find(|p| p.contains(port, proto))
                .map(|p| Allowance::Service { name: s.name.clone(), port: p.clone() })
        })
    }
}

static EMPTY_ZONE: Zone = Zone {
    name: String::new(),
    target: Target::Default,
    target_raw: String::new(),
    interfaces: vec![],
    sources: vec![],
    ports: vec![],
    protocols: vec![],
    source_ports: vec![],
    services: vec![],
    rich_rules: vec![],
    icmp_blocks: vec![],
    icmp_block_inversion: false,
    masquerade: false,
    forward: false,
    active: false,
};

/// Whether firewalld source `spec` ("10.0.0.0/8", "10.77.0.3", "fd00::/64") covers `ip`.
/// None for sources that are not addresses (MAC, "ipset:NAME") or do not parse.
pub fn source_matches(spec: &str, ip: IpAddr) -> Option<bool> {
    let (addr, len) = match spec.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (spec, None),
    };
    let net: IpAddr = addr.parse().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    let len: u32 = match len {
        Some(l) => {
            // firewalld also accepts IPv4 netmasks ("10.0.0.0/255.0.0.0").
            if let Ok(std::net::IpAddr::V4(mask)) = l.parse::<IpAddr>() {
                u32::from(mask).leading_ones()
            } else {
                l.parse().ok()?
            }
        }
        None => max,
    };
    if len > max {
        return None;
    }
    Some(match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            u128::from(n) & mask == u128::from(i) & mask
        }
        // An IPv4 source never matches an IPv6 packet and vice versa.
        _ => false,
    })
}

// ---------------------------------------------------------------------------------------------
// Rich rules
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// What a `source`/`destination` element matches.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum AddrKind {
    Address(String),
    Mac(String),
    Ipset(String),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AddrMatch {
    /// `NOT`: the rule applies to everything but this.
    pub invert: bool,
    pub kind: AddrKind,
}

impl AddrMatch {
    /// Whether `ip` satisfies this match (inversion applied); None for MAC/ipset.
    pub fn matches(&self, ip: IpAddr) -> Option<bool> {
        match &self.kind {
            AddrKind::Address(a) => source_matches(a, ip).map(|m| m != self.invert),
            _ => None,
        }
    }
}

/// The element of a rich rule (at most one per rule).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum Element {
    Service(String),
    Port(PortRange),
    Protocol(String),
    SourcePort(PortRange),
    IcmpBlock(String),
    IcmpType(String),
    Masquerade,
    ForwardPort { port: PortRange, to_port: Option<String>, to_addr: Option<String> },
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum LogKind {
    Log,
    Nflog,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Log {
    pub kind: LogKind,
    pub prefix: Option<String>,
    pub level: Option<String>,
    pub limit: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    /// With the reject type, e.g. "tcp-reset", "icmp-host-prohibited".
    Reject(Option<String>),
    /// `mark set=…`.
    Mark(String),
}

/// A parsed firewalld rich rule.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RichRule {
    pub priority: i32,
    pub family: Option<Family>,
    pub source: Option<AddrMatch>,
    pub destination: Option<AddrMatch>,
    pub element: Option<Element>,
    pub log: Option<Log>,
    /// `audit` (with its limit, if any).
    pub audit: Option<Option<String>>,
    pub action: Option<Action>,
    /// `limit value=…` of the action.
    pub action_limit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rich rule {rule:?}: {problem}")]
pub struct RichRuleError {
    pub rule: String,
    pub problem: String,
}

/// One token: a bare word or `key=value` (value unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Attr(String, String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = vec![];
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            word.push(c);
        }
        if chars.next_if_eq(&'=').is_none() {
            out.push(Tok::Word(word));
            continue;
        }
        let mut value = String::new();
        match chars.peek().copied() {
            // firewalld quotes values with "…" (and accepts '…' on input).
            Some(q @ ('"' | '\'')) => {
                chars.next();
                loop {
                    match chars.next() {
                        Some(c) if c == q => break,
                        Some(c) => value.push(c),
                        None => return Err(format!("unterminated quote in {word}=")),
                    }
                }
            }
            _ => {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    value.push(c);
                }
            }
        }
        out.push(Tok::Attr(word, value));
    }
}

impl RichRule {
    /// Parses a rule as firewalld prints it (`rule family="ipv4" source address="10.77.0.2"
    /// port port="9090" protocol="tcp" reject type="tcp-reset"`); unquoted values are accepted
    /// too, as firewall-cmd takes them on input.
    pub fn parse(rule: &str) -> Result<Self, RichRuleError> {
        let err = |problem: String| RichRuleError { rule: rule.to_string(), problem };
        let toks = tokenize(rule).map_err(err)?;
        let mut it = toks.into_iter().peekable();
        if it.next() != Some(Tok::Word("rule".into())) {
            return Err(err("does not start with `rule`".into()));
        }
        let mut r = RichRule::default();
        // Attributes directly following a word belong to it.
        let attrs = |it: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>| {
            let mut m = BTreeMap::new();
            while let Some(Tok::Attr(k, v)) = it.next_if(|t| matches!(t, Tok::Attr(..))) {
                m.insert(k, v);
            }
            m
        };
        let rule_attrs = attrs(&mut it);
        for (k, v) in &rule_attrs {
            match k.as_str() {
                "family" => {
                    r.family = Some(match v.as_str() {
                        "ipv4" => Family::Ipv4,
                        "ipv6" => Family::Ipv6,
                        other => return Err(err(format!("unknown family {other:?}"))),
                    })
                }
                "priority" => {
                    r.priority = v.parse().map_err(|_| err(format!("bad priority {v:?}")))?
                }
                other => return Err(err(format!("unknown rule attribute {other:?}"))),
            }
        }
        // `limit` belongs to the log/audit/action before it; track which.
        #[derive(Clone, Copy)]
        enum Last {
            None,
            Log,
            Audit,
            Action,
        }
        let mut last = Last::None;
        while let Some(tok) = it.next() {
            let word = match tok {
                Tok::Word(w) => w,
                Tok::Attr(k, _) => return Err(err(format!("unexpected attribute {k:?}"))),
            };
            match word.as_str() {
                "source" | "destination" => {
                    let invert = it.next_if_eq(&Tok::Word("NOT".into())).is_some();
                    let a = attrs(&mut it);
                    let kind = if let Some(v) = a.get("address") {
                        AddrKind::Address(v.clone())
                    } else if let Some(v) = a.get("mac") {
                        AddrKind::Mac(v.clone())
                    } else if let Some(v) = a.get("ipset") {
                        AddrKind::Ipset(v.clone())
                    } else {
                        return Err(err(format!("{word} without address, mac or ipset")));
                    };
                    let m = Some(AddrMatch { invert, kind });
                    if word == "source" { r.source = m } else { r.destination = m }
                }
                "service" | "port" | "protocol" | "source-port" | "icmp-block" | "icmp-type"
                | "masquerade" | "forward-port" => {
                    if r.element.is_some() {
                        return Err(err("more than one element".into()));
                    }
                    let a = attrs(&mut it);
                    let need = |k: &str| {
                        a.get(k).cloned().ok_or_else(|| err(format!("{word} without {k}=")))
                    };
                    let port = || -> Result<PortRange, RichRuleError> {
                        let (p, proto) = (need("port")?, need("protocol")?);
                        PortRange::parse(&p, &proto).ok_or_else(|| err(format!("bad port {p:?}")))
                    };
                    r.element = Some(match word.as_str() {
                        "service" => Element::Service(need("name")?),
                        "port" => Element::Port(port()?),
                        "source-port" => Element::SourcePort(port()?),
                        "protocol" => Element::Protocol(need("value")?),
                        "icmp-block" => Element::IcmpBlock(need("name")?),
                        "icmp-type" => Element::IcmpType(need("name")?),
                        "masquerade" => Element::Masquerade,
                        _ => Element::ForwardPort {
                            port: port()?,
                            to_port: a.get("to-port").cloned(),
                            to_addr: a.get("to-addr").cloned(),
                        },
                    });
                }
                "log" | "nflog" => {
                    let a = attrs(&mut it);
                    r.log = Some(Log {
                        kind: if word == "log" { LogKind::Log } else { LogKind::Nflog },
                        prefix: a.get("prefix").cloned(),
                        level: a.get("level").cloned(),
                        limit: None,
                    });
                    last = Last::Log;
                }
                "audit" => {
                    attrs(&mut it);
                    r.audit = Some(None);
                    last = Last::Audit;
                }
                "accept" | "drop" | "reject" | "mark" => {
                    let a = attrs(&mut it);
                    r.action = Some(match word.as_str() {
                        "accept" => Action::Accept,
                        "drop" => Action::Drop,
                        "reject" => Action::Reject(a.get("type").cloned()),
                        _ => Action::Mark(
                            a.get("set").cloned().ok_or_else(|| err("mark without set=".into()))?,
                        ),
                    });
                    last = Last::Action;
                }
                "limit" => {
                    let value = attrs(&mut it)
                        .get("value")
                        .cloned()
                        .ok_or_else(|| err("limit without value=".into()))?;
                    match last {
                        Last::Log => {
                            if let Some(l) = r.log.as_mut() {
                                l.limit = Some(value)
                            }
                        }
                        Last::Audit => r.audit = Some(Some(value)),
                        Last::Action => r.action_limit = Some(value),
                        Last::None => return Err(err("limit before log, audit or action".into())),
                    }
                }
                other => return Err(err(format!("unknown element {other:?}"))),
            }
        }
        Ok(r)
    }

    /// The port/protocol the rule is about, if its element is a port.
    pub fn port(&self) -> Option<&PortRange> {
        match &self.element {
            Some(Element::Port(p)) => Some(p),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(start: u16, end: u16, proto: &str) -> PortRange {
        PortRange { start, end, proto: proto.into() }
    }

    fn addr(a: &str) -> Option<AddrMatch> {
        Some(AddrMatch { invert: false, kind: AddrKind::Address(a.into()) })
    }

    /// public (default, srv0, 8080/tcp, http, ssh), trusted (source 10.77.0.3), work
    /// (source 10.77.0.0/16), block (source 10.77.0.0/28, interface eth9), home (target ACCEPT).
    fn config() -> FirewalldConfig {
        let mut public = Zone::new("public");
        public.interfaces = vec!["srv0".into()];
        public.ports = vec![pr(8080, 8080, "tcp"), pr(6000, 6010, "udp")];
        public.protocols = vec!["gre".into()];
        public.services = vec![
            Service { name: "ssh".into(), ports: vec![pr(22, 22, "tcp")], ..Service::default() },
            Service { name: "http".into(), ports: vec![pr(80, 80, "tcp")], ..Service::default() },
        ];
        public.active = true;
        let mut trusted = Zone::new("trusted");
        trusted.target = Target::Accept;
        trusted.sources = vec!["10.77.0.3".into()];
        let mut work = Zone::new("work");
        work.sources = vec!["10.77.0.0/16".into(), "fd00:77::/64".into()];
        let mut block = Zone::new("block");
        block.target = Target::Reject;
        block.sources = vec!["10.77.0.0/28".into(), "ipset:foo".into()];
        block.interfaces = vec!["eth9".into()];
        let mut home = Zone::new("home");
        home.target = Target::Accept;
        FirewalldConfig {
            version: "1.3.3".into(),
            state: "RUNNING".into(),
            default_zone: "public".into(),
            // Deliberately not in name order: zone_for must sort.
            zones: vec![work, public, trusted, block, home],
            policies: vec![],
            netns_inode: None,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn zone_for_prefers_sources_in_zone_name_order_then_interface_then_default() {
        let c = config();
        // 10.77.0.3 is in block's /28, trusted's /32 and work's /16: "block" sorts first.
        assert_eq!(c.zone_for("srv0", ip("10.77.0.3")).name, "block");
        assert_eq!(c.zone_for("srv0", ip("10.77.0.20")).name, "work");
        assert_eq!(c.zone_for("srv0", ip("fd00:77::2")).name, "work");
        // No source matches: the interface's zone, else the default zone.
        assert_eq!(c.zone_for("srv0", ip("192.0.2.1")).name, "public");
        assert_eq!(c.zone_for("eth9", ip("192.0.2.1")).name, "block");
        assert_eq!(c.zone_for("lo", ip("192.0.2.1")).name, "public");
        assert_eq!(c.zone_for("lo", ip("fd00:78::1")).name, "public");
    }

    #[test]
    fn a_configuration_guards_only_its_daemon_s_namespace() {
        let mut c = FirewalldConfig::default();
        assert!(c.guards(7), "the daemon's namespace unknown: taken as any");
        c.netns_inode = Some(7);
        assert!(c.guards(7));
        assert!(!c.guards(8), "another namespace's table is another firewalld's");
    }

    #[test]
    fn zone_for_without_zones_is_an_empty_zone() {
        let c = FirewalldConfig { default_zone: "public".into(), ..FirewalldConfig::default() };
        assert_eq!(c.zone_for("srv0", ip("10.0.0.1")).name, "");
    }

    #[test]
    fn source_matching() {
        assert_eq!(source_matches("10.77.0.0/24", ip("10.77.0.2")), Some(true));
        assert_eq!(source_matches("10.77.0.0/24", ip("10.77.1.2")), Some(false));
        assert_eq!(source_matches("10.77.0.2", ip("10.77.0.2")), Some(true));
        assert_eq!(source_matches("10.0.0.0/255.0.0.0", ip("10.9.9.9")), Some(true));
        assert_eq!(source_matches("0.0.0.0/0", ip("192.0.2.1")), Some(true));
        assert_eq!(source_matches("10.77.0.0/24", ip("fd00:77::2")), Some(false));
        assert_eq!(source_matches("fd00:77::/64", ip("fd00:77::2")), Some(true));
        assert_eq!(source_matches("ipset:foo", ip("10.0.0.1")), None);
        assert_eq!(source_matches("00:11:22:33:44:55", ip("10.0.0.1")), None);
        assert_eq!(source_matches("10.0.0.0/33", ip("10.0.0.1")), None);
    }

    #[test]
    fn allows_names_port_protocol_service_or_target() {
        let c = config();
        let public = c.zone("public").expect("public");
        assert_eq!(c.allows(public, 8080, "tcp"), Some(Allowance::Port(pr(8080, 8080, "tcp"))));
        assert_eq!(c.allows(public, 6005, "udp"), Some(Allowance::Port(pr(6000, 6010, "udp"))));
        assert_eq!(
            c.allows(public, 80, "tcp"),
            Some(Allowance::Service { name: "http".into(), port: pr(80, 80, "tcp") })
        );
        assert_eq!(c.allows(public, 47, "gre"), Some(Allowance::Protocol("gre".into())));
        assert_eq!(c.allows(public, 80, "udp"), None);
        assert_eq!(c.allows(public, 8081, "tcp"), None);
        let home = c.zone("home").expect("home");
        assert_eq!(c.allows(home, 1, "tcp"), Some(Allowance::TargetAccept));
        let block = c.zone("block").expect("block");
        assert_eq!(c.allows(block, 80, "tcp"), None);
    }

    #[test]
    fn target_spellings() {
        assert_eq!(Target::parse("default"), Some(Target::Default));
        assert_eq!(Target::parse("ACCEPT"), Some(Target::Accept));
        assert_eq!(Target::parse("DROP"), Some(Target::Drop));
        assert_eq!(Target::parse("%%REJECT%%"), Some(Target::Reject));
        assert_eq!(Target::parse("CONTINUE"), None);
    }

    #[test]
    fn port_ranges() {
        assert_eq!(PortRange::parse("8080", "tcp"), Some(pr(8080, 8080, "tcp")));
        assert_eq!(PortRange::parse("6000-6010", "udp"), Some(pr(6000, 6010, "udp")));
        assert_eq!(PortRange::parse("10-1", "udp"), None);
        assert_eq!(PortRange::parse("http", "tcp"), None);
        assert_eq!(pr(6000, 6010, "udp").to_string(), "6000-6010/udp");
        assert_eq!(pr(80, 80, "tcp").to_string(), "80/tcp");
    }

    // The strings below are exactly what firewalld 1.3.3 returned in `rules_str`
    // (getZoneSettings2) and `rich_rules` (getPolicySettings) for rules added in the lab.

    #[test]
    fn rich_rule_port_reject_tcp_reset() {
        let r = RichRule::parse(
            r#"rule family="ipv4" source address="10.77.0.2" port port="9090" protocol="tcp" reject type="tcp-reset""#,
        )
        .expect("parses");
        assert_eq!(
            r,
            RichRule {
                family: Some(Family::Ipv4),
                source: addr("10.77.0.2"),
                element: Some(Element::Port(pr(9090, 9090, "tcp"))),
                action: Some(Action::Reject(Some("tcp-reset".into()))),
                ..RichRule::default()
            }
        );
        assert_eq!(r.port(), Some(&pr(9090, 9090, "tcp")));
        assert_eq!(r.source.as_ref().and_then(|s| s.matches(ip("10.77.0.2"))), Some(true));
    }

    #[test]
    fn rich_rule_log_prefix_with_space_then_drop() {
        let r = RichRule::parse(
            r#"rule family="ipv4" source address="10.77.0.0/24" port port="7070" protocol="udp" log prefix="reach drop " level="warning" drop"#,
        )
        .expect("parses");
        assert_eq!(r.source, addr("10.77.0.0/24"));
        assert_eq!(r.element, Some(Element::Port(pr(7070, 7070, "udp"))));
        assert_eq!(
            r.log,
            Some(Log {
                kind: LogKind::Log,
                prefix: Some("reach drop ".into()),
                level: Some("warning".into()),
                limit: None
            })
        );
        assert_eq!(r.action, Some(Action::Drop));
    }

    #[test]
    fn rich_rule_inverted_source_destination_service_log_limit_accept() {
        let r = RichRule::parse(
            r#"rule family="ipv6" source NOT address="fd00:77::/64" destination address="fd00:77::1" service name="ssh" log level="info" limit value="3/m" accept"#,
        )
        .expect("parses");
        assert_eq!(r.family, Some(Family::Ipv6));
        let src = r.source.clone().expect("source");
        assert!(src.invert);
        assert_eq!(src.matches(ip("fd00:77::2")), Some(false));
        assert_eq!(src.matches(ip("fd00:99::2")), Some(true));
        assert_eq!(r.destination, addr("fd00:77::1"));
        assert_eq!(r.element, Some(Element::Service("ssh".into())));
        let log = r.log.expect("log");
        assert_eq!((log.level.as_deref(), log.limit.as_deref()), (Some("info"), Some("3/m")));
        assert_eq!(r.action, Some(Action::Accept));
        assert_eq!(r.action_limit, None);
    }

    #[test]
    fn rich_rule_other_forms_firewalld_prints() {
        let audit = RichRule::parse(
            r#"rule family="ipv4" source address="10.9.9.9" audit reject type="icmp-host-prohibited""#,
        )
        .expect("audit");
        assert_eq!(audit.audit, Some(None));
        assert_eq!(audit.action, Some(Action::Reject(Some("icmp-host-prohibited".into()))));

        let range =
            RichRule::parse(r#"rule family="ipv4" port port="6000-6010" protocol="tcp" reject"#)
                .expect("range");
        assert_eq!(range.port(), Some(&pr(6000, 6010, "tcp")));
        assert_eq!(range.action, Some(Action::Reject(None)));

        let ipset = RichRule::parse(r#"rule source ipset="foo" drop"#).expect("ipset");
        assert_eq!(ipset.family, None);
        assert_eq!(
            ipset.source,
            Some(AddrMatch { invert: false, kind: AddrKind::Ipset("foo".into()) })
        );
        assert_eq!(ipset.source.and_then(|s| s.matches(ip("10.0.0.1"))), None);

        let proto = RichRule::parse(r#"rule protocol value="icmp" accept"#).expect("protocol");
        assert_eq!(proto.element, Some(Element::Protocol("icmp".into())));

        let fwd = RichRule::parse(
            r#"rule family="ipv4" source address="10.1.0.0/16" forward-port port="80" protocol="tcp" to-port="8080""#,
        )
        .expect("forward-port");
        assert_eq!(
            fwd.element,
            Some(Element::ForwardPort {
                port: pr(80, 80, "tcp"),
                to_port: Some("8080".into()),
                to_addr: None
            })
        );
        assert_eq!(fwd.action, None);

        let limited = RichRule::parse(
            r#"rule family="ipv4" destination NOT address="10.77.0.1" port port="53" protocol="udp" accept limit value="5/m""#,
        )
        .expect("action limit");
        assert_eq!(limited.action_limit.as_deref(), Some("5/m"));
        assert!(limited.destination.is_some_and(|d| d.invert));

        let mac = RichRule::parse(
            r#"rule priority="-5" family="ipv4" source mac="00:11:22:33:44:55" drop"#,
        )
        .expect("mac");
        assert_eq!(mac.priority, -5);
        assert_eq!(mac.source.map(|s| s.kind), Some(AddrKind::Mac("00:11:22:33:44:55".into())));

        let nflog = RichRule::parse(
            r#"rule family="ipv4" source-port port="1000" protocol="tcp" nflog prefix="nf" drop"#,
        )
        .expect("nflog");
        assert_eq!(nflog.element, Some(Element::SourcePort(pr(1000, 1000, "tcp"))));
        assert_eq!(nflog.log.map(|l| l.kind), Some(LogKind::Nflog));

        let masq = RichRule::parse(r#"rule family="ipv4" masquerade"#).expect("masquerade");
        assert_eq!(masq.element, Some(Element::Masquerade));
        let icmp = RichRule::parse(r#"rule family="ipv6" icmp-block name="echo-request""#)
            .expect("icmp-block");
        assert_eq!(icmp.element, Some(Element::IcmpBlock("echo-request".into())));
        let policy_rule = RichRule::parse(
            r#"rule family="ipv6" icmp-type name="neighbour-advertisement" accept"#,
        )
        .expect("icmp-type");
        assert_eq!(policy_rule.element, Some(Element::IcmpType("neighbour-advertisement".into())));
    }

    #[test]
    fn rich_rule_unquoted_input_form() {
        let r = RichRule::parse(
            "rule family=ipv4 source address=10.77.0.2 port port=9090 protocol=tcp reject type=tcp-reset",
        )
        .expect("parses");
        assert_eq!(r.action, Some(Action::Reject(Some("tcp-reset".into()))));
        assert_eq!(r.source, addr("10.77.0.2"));
    }

    #[test]
    fn rich_rule_errors() {
        for bad in [
            "family=ipv4 accept",
            r#"rule family="ipv5" accept"#,
            r#"rule source address="10.0.0.1 accept"#,
            r#"rule port port="80" accept"#,
            r#"rule service name="a" port port="80" protocol="tcp" accept"#,
            r#"rule frobnicate accept"#,
            r#"rule limit value="1/s" accept"#,
        ] {
            assert!(RichRule::parse(bad).is_err(), "{bad} should not parse");
        }
    }
}
