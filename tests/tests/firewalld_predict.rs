//! `reach_agent::firewall::predict` against real firewalld daemons in a lab namespace, every
//! version of `reach_tests::firewalld_versions` (1.x, 2.x):
//! each case is configured with firewall-cmd, read back over D-Bus and predicted; two cases also
//! send a real SYN from the client namespace and check the client sees what the prediction says.
use std::{
    io,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use reach_agent::{
    firewall::{
        firewalld::{FirewalldConfig, read},
        predict::{Decision, Prediction, ZoneBy, predict},
    },
    lab::{Firewalld, FirewalldBuild, TwoHosts},
};
use reach_tests::{firewalld_versions, require_root};

const PORT: u16 = 8080;
const RESET_RULE: &str =
    "rule family=ipv4 source address=10.77.0.2 port port=8080 protocol=tcp reject type=tcp-reset";
const ACCEPT_RULE: &str =
    "rule family=ipv4 source address=10.77.0.2 port port=9999 protocol=tcp accept";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn ok(fw: &Firewalld, args: &[&str]) {
    let out = fw.cmd(args).unwrap_or_else(|e| panic!("firewall-cmd {args:?}: {e:#}"));
    assert_eq!(out.trim(), "success", "firewall-cmd {args:?}");
}

/// One SYN from the client to the server: Ok(()) if connected, else the error and how long it
/// took.
fn connect(hosts: &TwoHosts, port: u16) -> Result<(), (io::Error, Duration)> {
    let addr = SocketAddr::new(TwoHosts::SERVER_V4.into(), port);
    hosts
        .client
        .run_in(move || {
            let started = Instant::now();
            TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .map(drop)
                .map_err(|e| (e, started.elapsed()))
        })
        .expect("entering the client namespace")
}

#[test]
fn predictions_match_firewalld_and_real_syns() -> anyhow::Result<()> {
    require_root();
    for build in firewalld_versions::all() {
        predictions_on(&build).map_err(|e| e.context(format!("firewalld {build}")))?;
    }
    Ok(())
}

fn predictions_on(build: &FirewalldBuild) -> anyhow::Result<()> {
    eprintln!("--- firewalld {build}");
    let hosts = TwoHosts::new("fwp")?;
    let fw = firewalld_versions::start(&hosts.server, build);
    ok(&fw, &["--zone=public", "--add-interface=srv0"]);
    // Listeners, so an accepted SYN connects and a refusal can only come from the firewall.
    let _listeners: Vec<TcpListener> = hosts.server.run_in(|| {
        [PORT, 80, 9999]
            .into_iter()
            .map(|p| TcpListener::bind(("0.0.0.0", p)).expect("bind"))
            .collect::<Vec<_>>()
    })?;
    let rt = runtime();
    let bus = fw.bus_address();
    let config = || -> FirewalldConfig { rt.block_on(read(Some(&bus))).expect("read firewalld") };
    let client: IpAddr = TwoHosts::CLIENT_V4.into();
    let at = |cfg: &FirewalldConfig, port: u16| -> Prediction {
        predict(cfg, TwoHosts::SERVER_IF, client, port)
    };

    // 1. Port not allowed, target default: icmpx admin-prohibited → EHOSTUNREACH at the client.
    let p = at(&config(), PORT);
    assert_eq!((p.zone.as_str(), p.zone_by), ("public", ZoneBy::Interface), "{p:?}");
    assert_eq!(
        p.decision,
        Decision::Reject { by: "target default".into(), with: "icmpx admin-prohibited".into() }
    );
    assert_eq!(
        p.fix,
        [
            "firewall-cmd --zone=public --add-port=8080/tcp",
            "firewall-cmd --permanent --zone=public --add-port=8080/tcp",
        ]
    );
    let (err, took) = connect(&hosts, PORT).expect_err("rejected");
    assert_eq!(err.kind(), io::ErrorKind::HostUnreachable, "{err} after {took:?}");
    assert!(took < Duration::from_secs(2), "a reject answers at once, took {took:?}");

    // 2. The runtime fix the prediction gave: the port is allowed.
    ok(&fw, &["--zone=public", "--add-port=8080/tcp"]);
    let p = at(&config(), PORT);
    assert_eq!(p.decision, Decision::Accept { by: "port".into() });
    assert!(p.fix.is_empty());
    connect(&hosts, PORT).map_err(|(e, _)| e)?;

    // 3. Service http covers 80.
    ok(&fw, &["--zone=public", "--add-service=http"]);
    assert_eq!(at(&config(), 80).decision, Decision::Accept { by: "service http".into() });

    // 4. A tcp-reset rich rule for the client beats the allowed port (deny before allow); the
    // fix names the rule exactly as firewalld prints it.
    ok(&fw, &["--zone=public", &format!("--add-rich-rule={RESET_RULE}")]);
    let cfg = config();
    let printed = cfg.zone("public").expect("public").rich_rules.clone();
    assert_eq!(printed.len(), 1, "{printed:?}");
    let text = &printed[0];
    assert!(text.contains(r#"source address="10.77.0.2""#), "{text}");
    let p = at(&cfg, PORT);
    assert_eq!(
        p.decision,
        Decision::Reject { by: format!("rich rule {text}"), with: "tcp-reset".into() }
    );
    assert_eq!(
        p.fix,
        [
            format!("firewall-cmd --zone=public --remove-rich-rule='{text}'"),
            format!("firewall-cmd --permanent --zone=public --remove-rich-rule='{text}'"),
        ]
    );
    let (err, took) = connect(&hosts, PORT).expect_err("reset");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err} after {took:?}");
    // The printed rule is accepted back by firewall-cmd (what the fix relies on).
    ok(&fw, &["--zone=public", &format!("--remove-rich-rule={text}")]);
    assert_eq!(at(&config(), PORT).decision, Decision::Accept { by: "port".into() });

    // 5. Target DROP (permanent + reload; keep the runtime setup across it), with a rich rule
    // accepting 9999 from the client only.
    ok(&fw, &["--runtime-to-permanent"]);
    ok(&fw, &["--permanent", "--zone=public", "--set-target=DROP"]);
    ok(&fw, &["--reload"]);
    let p = at(&config(), 9999);
    assert_eq!(p.zone, "public");
    assert_eq!(p.decision, Decision::Drop { by: "target DROP".into() });
    assert_eq!(
        p.fix,
        [
            "firewall-cmd --zone=public --add-port=9999/tcp",
            "firewall-cmd --permanent --zone=public --add-port=9999/tcp",
        ]
    );
    ok(&fw, &["--zone=public", &format!("--add-rich-rule={ACCEPT_RULE}")]);
    let cfg = config();
    let text = cfg.zone("public").expect("public").rich_rules[0].clone();
    assert_eq!(at(&cfg, 9999).decision, Decision::Accept { by: format!("rich rule {text}") });
    let other = predict(&cfg, TwoHosts::SERVER_IF, "10.77.0.3".parse()?, 9999);
    assert_eq!(other.decision, Decision::Drop { by: "target DROP".into() });
    // 8080 is still allowed by its (now permanent) port.
    assert_eq!(at(&cfg, PORT).decision, Decision::Accept { by: "port".into() });

    // 6. A source-bound zone wins over srv0's zone.
    ok(&fw, &["--zone=trusted", "--add-source=10.77.0.2"]);
    let p = at(&config(), 4444);
    assert_eq!((p.zone.as_str(), p.zone_by), ("trusted", ZoneBy::Source));
    assert_eq!(p.decision, Decision::Accept { by: "target ACCEPT".into() });
    Ok(())
}
