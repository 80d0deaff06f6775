//! `other_netfilter_drop` fixes that act: a real rule drops a real client's SYN in a lab
//! namespace, `reach why --json` names it, and the command the fix prints is then RUN in that
//! namespace — the client's next connect must succeed. Plain nftables (delete by handle, and
//! separately the narrow insert before the rule), iptables-nft and ip6tables-nft tables (the
//! iptables command, by rule number), and Docker's chains built the way Docker builds them (a
//! user rule in DOCKER-USER fixed there; Docker's own drop of an unpublished port explained,
//! never deleted). Each run leaves nothing behind.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::Mutex,
    time::Duration,
};

use reach_agent::lab::{NetNs, TwoHosts, Veth, VethEnd};
use reach_tests::{
    WatchRun,
    leftovers::{Leftovers, Scope},
    nft_drop_rule, require_root,
};
use serde_json::Value;

/// Tests attach probes the others would see: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `reach why TARGET --netns NS --json` ready, then `connect` drives the client (which must
/// fail: the rule drops it); the parsed report and reach's exit code.
fn diagnose(ns: &NetNs, target: SocketAddr, iface: &str, connect: impl FnOnce()) -> (i32, Value) {
    let target_s = target.to_string();
    let run = WatchRun::start_command(
        "why",
        &[&target_s, "--netns", ns.name(), "--iface", iface, "--timeout", "20", "--json"],
        "waiting for a SYN",
    );
    connect();
    let (code, out, stderr) = run.finish_raw();
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{out}\nstderr:\n{stderr}"));
    (code.unwrap_or(-1), v)
}

/// Connects from `client`; first IPv6 packets wait for neighbour discovery, so a generous
/// timeout (a dropped SYN takes all of it).
fn connect(client: &NetNs, to: SocketAddr) -> std::io::Result<TcpStream> {
    client
        .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)))
        .expect("enter ns")
}

fn must_be_dropped(client: &NetNs, to: SocketAddr) {
    assert!(connect(client, to).is_err(), "the rule must drop the SYN to {to}");
}

fn fixes(v: &Value) -> Vec<String> {
    v["fix"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect()
}

/// The fix line that starts with `prefix`, as a shell command (the comment after `   #` cut).
fn command(v: &Value, prefix: &str) -> String {
    let line = fixes(v)
        .into_iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no fix line starting {prefix:?} in {v:#}"));
    line.split("   #").next().unwrap().trim().to_string()
}

/// Runs a printed fix inside `ns` through a shell, as a user pasting it would.
fn run_fix(ns: &NetNs, cmd: &str) {
    ns.run("sh", &["-c", cmd]).unwrap_or_else(|e| panic!("the printed fix `{cmd}` failed: {e}"));
}

fn assert_other_netfilter(code: i32, v: &Value, table: &str, chain: &str) {
    assert_eq!((code, v["verdict"].as_str()), (15, Some("other_netfilter_drop")), "{v:#}");
    assert_eq!(v["nft"]["rule"]["table"], table, "{v:#}");
    assert_eq!(v["nft"]["rule"]["chain"], chain, "{v:#}");
}

fn leftovers<'a>(ns: &'a NetNs, ifaces: &'a [&'a str]) -> Leftovers<'a> {
    Leftovers::snapshot(&Scope { netns: Some(ns), ifaces })
}

fn listen(ns: &NetNs, addr: SocketAddr) -> TcpListener {
    ns.run_in(move || TcpListener::bind(addr)).unwrap().unwrap()
}

/// The plain-nft case twice: once the printed delete is run, once (fresh rule) the printed
/// insert; either way the client then connects, and the insert keeps the rule.
#[test]
fn nft_rule_fix_deletes_it_by_handle_or_accepts_the_client_before_it_and_the_connect_succeeds() {
    require_root();
    let _s = serial();
    for (label, port, use_insert) in [("whynf-del", 7311u16, false), ("whynf-ins", 7312, true)] {
        let hosts = TwoHosts::new(label).unwrap();
        let handle = nft_drop_rule(&hosts.server, "custom_fw", port);
        let ifaces = ["lo", TwoHosts::SERVER_IF];
        let check = leftovers(&hosts.server, &ifaces);
        let _server = listen(&hosts.server, SocketAddr::from(([0, 0, 0, 0], port)));
        let to = SocketAddr::from((TwoHosts::SERVER_V4, port));
        let (code, v) =
            diagnose(&hosts.server, to, TwoHosts::SERVER_IF, || must_be_dropped(&hosts.client, to));
        check.assert_nothing_new("reach why");
        assert_other_netfilter(code, &v, "custom_fw", "input");
        assert_eq!(v["nft"]["rule"]["client"], TwoHosts::CLIENT_V4.to_string(), "{v:#}");
        assert!(v["nft"]["rule"]["iptables"].is_null(), "a plain nft table: {v:#}");
        let delete = command(&v, "nft delete rule");
        assert_eq!(delete, format!("nft delete rule inet custom_fw input handle {handle}"));
        let insert = command(&v, "nft insert rule");
        assert_eq!(
            insert,
            format!(
                "nft insert rule inet custom_fw input position {handle} ip saddr {} tcp dport \
                 {port} accept",
                TwoHosts::CLIENT_V4
            ),
            "as narrow as the evidence allows: the client's address and the port"
        );
        assert!(!fixes(&v).iter().any(|l| l.starts_with("iptables")), "{v:#}");
        run_fix(&hosts.server, if use_insert { &insert } else { &delete });
        let listing =
            hosts.server.run("nft", &["-a", "list", "table", "inet", "custom_fw"]).unwrap();
        assert_eq!(
            listing.contains(&format!("tcp dport {port} drop # handle {handle}")),
            use_insert,
            "the insert keeps the drop rule, the delete removes it:\n{listing}"
        );
        connect(&hosts.client, to).unwrap_or_else(|e| {
            panic!(
                "after `{}` the connect must succeed: {e}\n{listing}",
                if use_insert { &insert } else { &delete }
            )
        });
    }
}

/// A base chain whose policy drops (no rule decides): the fix appends an accept for this
/// client and port to that chain; run, the client connects and the policy stays drop.
#[test]
fn chain_policy_drop_fix_appends_an_accept_that_lets_the_client_in() {
    require_root();
    let _s = serial();
    let hosts = TwoHosts::new("whynf-pol").unwrap();
    let port = 7316;
    hosts.server.run("nft", &["add", "table", "inet", "strict_fw"]).unwrap();
    hosts
        .server
        .run(
            "nft",
            &["add chain inet strict_fw input { type filter hook input priority 0; policy drop; }"],
        )
        .unwrap();
    let ifaces = ["lo", TwoHosts::SERVER_IF];
    let check = leftovers(&hosts.server, &ifaces);
    let _server = listen(&hosts.server, SocketAddr::from(([0, 0, 0, 0], port)));
    let to = SocketAddr::from((TwoHosts::SERVER_V4, port));
    let (code, v) =
        diagnose(&hosts.server, to, TwoHosts::SERVER_IF, || must_be_dropped(&hosts.client, to));
    check.assert_nothing_new("reach why");
    assert_other_netfilter(code, &v, "strict_fw", "input");
    assert_eq!(v["nft"]["rule"]["action"], "policy drop", "{v:#}");
    let add = command(&v, "nft add rule");
    assert_eq!(
        add,
        format!(
            "nft add rule inet strict_fw input ip saddr {} tcp dport {port} accept",
            TwoHosts::CLIENT_V4
        )
    );
    assert!(!fixes(&v).iter().any(|l| l.starts_with("nft delete")), "no rule to delete: {v:#}");
    run_fix(&hosts.server, &add);
    connect(&hosts.client, to).unwrap_or_else(|e| panic!("after `{add}`: {e}"));
    let listing =
        hosts.server.run("nft", &["list", "chain", "inet", "strict_fw", "input"]).unwrap();
    assert!(listing.contains("policy drop"), "only this client was let in:\n{listing}");
}

/// iptables-nft (IPv4) and ip6tables-nft (IPv6): the rule is named by its number in the chain
/// as iptables counts, with its `iptables -S` text; the printed iptables command, run, lets the
/// client in. Rule 1 of each chain is an unrelated accept so the number is not trivially 1.
#[test]
fn iptables_nft_rules_get_the_iptables_command_that_acts() {
    require_root();
    let _s = serial();
    let cases: [(&str, u16, IpAddr, IpAddr, &str, &str); 2] = [
        (
            "whynf-ipt",
            7313,
            TwoHosts::SERVER_V4.into(),
            TwoHosts::CLIENT_V4.into(),
            "iptables-nft",
            "-D",
        ),
        (
            "whynf-ip6",
            7314,
            TwoHosts::SERVER_V6.into(),
            TwoHosts::CLIENT_V6.into(),
            "ip6tables-nft",
            "-I",
        ),
    ];
    for (label, port, server, client, tool, verb) in cases {
        let hosts = TwoHosts::new(label).unwrap();
        let p = port.to_string();
        hosts
            .server
            .run(tool, &["-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"])
            .unwrap();
        hosts
            .server
            .run(
                tool,
                &[
                    "-A",
                    "INPUT",
                    "-p",
                    "tcp",
                    "--dport",
                    &p,
                    "-m",
                    "comment",
                    "--comment",
                    "no-entry",
                    "-j",
                    "DROP",
                ],
            )
            .unwrap();
        let family = if server.is_ipv4() { "ip" } else { "ip6" };
        // nft's own marker for such a table ("managed by iptables-nft", printed on stderr).
        let marked = hosts.server.output("nft", &["list", "table", family, "filter"]).unwrap();
        assert!(
            String::from_utf8_lossy(&marked.stderr).contains("is managed by iptables-nft"),
            "{marked:?}"
        );
        let ifaces = ["lo", TwoHosts::SERVER_IF];
        let check = leftovers(&hosts.server, &ifaces);
        let unspecified: IpAddr =
            if server.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { "::".parse().unwrap() };
        let _server = listen(&hosts.server, SocketAddr::new(unspecified, port));
        let to = SocketAddr::new(server, port);
        let (code, v) =
            diagnose(&hosts.server, to, TwoHosts::SERVER_IF, || must_be_dropped(&hosts.client, to));
        check.assert_nothing_new("reach why");
        assert_other_netfilter(code, &v, "filter", "INPUT");
        assert_eq!(v["nft"]["rule"]["family"], family);
        let ipt = &v["nft"]["rule"]["iptables"];
        assert_eq!(ipt["number"], 2, "{v:#}");
        assert_eq!(
            ipt["spec"],
            format!("-A INPUT -p tcp -m tcp --dport {port} -m comment --comment no-entry -j DROP"),
            "{v:#}"
        );
        let cmd = ipt["command"].as_str().unwrap();
        assert!(cmd.starts_with(if server.is_ipv4() { "iptables" } else { "ip6tables" }), "{v:#}");
        assert!(
            fixes(&v).iter().any(|l| l.contains("iptables-nft manages")),
            "says the rule lives in iptables-nft's table: {v:#}"
        );
        let fix = command(&v, &format!("{cmd} {verb} INPUT 2"));
        if verb == "-I" {
            assert_eq!(
                fix,
                format!("{cmd} -I INPUT 2 -s {client} -p tcp --dport {port} -j ACCEPT")
            );
        } else {
            assert_eq!(fix, format!("{cmd} -D INPUT 2"));
        }
        run_fix(&hosts.server, &fix);
        connect(&hosts.client, to)
            .unwrap_or_else(|e| panic!("after `{fix}` the connect must succeed: {e}"));
    }
}

/// The "Docker host" between the client and a container: the server namespace of TwoHosts
/// routes to a third namespace over a veth named `docker0`, with the filter chains Docker
/// creates, as listed in moby/moby integration/network/bridge/iptablesdoc/generated/
/// new-daemon.md (FORWARD → DOCKER-USER, DOCKER-ISOLATION-STAGE-1, → DOCKER for the bridge;
/// DOCKER ends with `! -i docker0 -o docker0 -j DROP`) and, as usernet-portmap.md shows for a
/// published port, an ACCEPT in DOCKER for the container's address and port.
struct DockerHost {
    hosts: TwoHosts,
    container: NetNs,
    _bridge: Veth,
}

const CONTAINER_V4: Ipv4Addr = Ipv4Addr::new(172, 31, 77, 2);

impl DockerHost {
    fn new(port: u16) -> Self {
        let hosts = TwoHosts::new("whynf-dkr").unwrap();
        let container = NetNs::new("whynf-dkr-ctr").unwrap();
        let bridge = Veth::create(
            VethEnd::new(&hosts.server, "docker0").addr("172.31.77.1/24"),
            VethEnd::new(&container, "eth0").addr(&format!("{CONTAINER_V4}/24")),
        )
        .unwrap();
        container.ip(&["route", "add", "default", "via", "172.31.77.1"]).unwrap();
        hosts
            .client
            .ip(&["route", "add", "172.31.77.0/24", "via", &TwoHosts::SERVER_V4.to_string()])
            .unwrap();
        hosts.server.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]).unwrap();
        let p = port.to_string();
        let dst = format!("{CONTAINER_V4}/32");
        let rules: &[&[&str]] = &[
            &["-N", "DOCKER"],
            &["-N", "DOCKER-ISOLATION-STAGE-1"],
            &["-N", "DOCKER-ISOLATION-STAGE-2"],
            &["-N", "DOCKER-USER"],
            &["-A", "FORWARD", "-j", "DOCKER-USER"],
            &["-A", "FORWARD", "-j", "DOCKER-ISOLATION-STAGE-1"],
            &[
                "-A",
                "FORWARD",
                "-o",
                "docker0",
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ],
            &["-A", "FORWARD", "-o", "docker0", "-j", "DOCKER"],
            &["-A", "FORWARD", "-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT"],
            &["-A", "FORWARD", "-i", "docker0", "-o", "docker0", "-j", "ACCEPT"],
            &[
                "-A", "DOCKER", "-d", &dst, "!", "-i", "docker0", "-o", "docker0", "-p", "tcp",
                "-m", "tcp", "--dport", &p, "-j", "ACCEPT",
            ],
            &["-A", "DOCKER", "!", "-i", "docker0", "-o", "docker0", "-j", "DROP"],
            &[
                "-A",
                "DOCKER-ISOLATION-STAGE-1",
                "-i",
                "docker0",
                "!",
                "-o",
                "docker0",
                "-j",
                "DOCKER-ISOLATION-STAGE-2",
            ],
            &["-A", "DOCKER-ISOLATION-STAGE-2", "-o", "docker0", "-j", "DROP"],
            &["-A", "DOCKER-USER", "-j", "RETURN"],
        ];
        for r in rules {
            hosts
                .server
                .run("iptables-nft", r)
                .unwrap_or_else(|e| panic!("iptables-nft {r:?}: {e}"));
        }
        DockerHost { hosts, container, _bridge: bridge }
    }
}

/// A user's DROP in DOCKER-USER is that rule, fixed in DOCKER-USER (the printed delete, run,
/// lets the client through to the container); with the port no longer published, the drop is
/// Docker's own rule in DOCKER, explained as "publish the port", never "delete it".
#[test]
fn docker_chains_are_explained_in_dockers_terms() {
    require_root();
    let _s = serial();
    let port = 7315;
    let d = DockerHost::new(port);
    let p = port.to_string();
    d.hosts
        .server
        .run("iptables-nft", &["-I", "DOCKER-USER", "-p", "tcp", "--dport", &p, "-j", "DROP"])
        .unwrap();
    let _server = listen(&d.container, SocketAddr::from(([0, 0, 0, 0], port)));
    let to = SocketAddr::from((CONTAINER_V4, port));
    let ifaces = ["lo", TwoHosts::SERVER_IF, "docker0"];
    let check = leftovers(&d.hosts.server, &ifaces);
    let (code, v) =
        diagnose(&d.hosts.server, to, TwoHosts::SERVER_IF, || must_be_dropped(&d.hosts.client, to));
    assert_other_netfilter(code, &v, "filter", "DOCKER-USER");
    assert_eq!(v["nft"]["rule"]["iptables"]["number"], 1, "{v:#}");
    assert_eq!(v["nft"]["rule"]["iptables"]["docker"], true, "{v:#}");
    let all = fixes(&v).join("\n");
    assert!(all.contains("DOCKER-USER is the chain Docker keeps for your own rules"), "{all}");
    assert!(all.contains("--ctorigdstport"), "the published port after DNAT: {all}");
    let cmd = v["nft"]["rule"]["iptables"]["command"].as_str().unwrap().to_string();
    let delete = command(&v, &format!("{cmd} -D DOCKER-USER 1"));
    run_fix(&d.hosts.server, &delete);
    connect(&d.hosts.client, to).unwrap_or_else(|e| panic!("after `{delete}`: {e}"));

    // Unpublish: Docker's own DROP in DOCKER decides now.
    let accept = format!(
        "-A DOCKER -d {CONTAINER_V4}/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport {port} -j ACCEPT"
    );
    let spec: Vec<&str> = accept.split(' ').skip(2).collect();
    let mut del = vec!["-D", "DOCKER"];
    del.extend(spec);
    d.hosts.server.run("iptables-nft", &del).unwrap();
    let (code, v) =
        diagnose(&d.hosts.server, to, TwoHosts::SERVER_IF, || must_be_dropped(&d.hosts.client, to));
    check.assert_nothing_new("reach why");
    assert_other_netfilter(code, &v, "filter", "DOCKER");
    let all = fixes(&v).join("\n");
    assert!(all.contains(&format!("docker run -p {port}:{port}")), "{all}");
    assert!(all.contains("do not delete it"), "{all}");
    assert!(
        !all.contains(" -D ") && !all.contains("nft delete"),
        "never delete Docker's rule: {all}"
    );
}
