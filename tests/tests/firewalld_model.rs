//! The firewalld model (`reach_agent::firewall::firewalld`) against real firewalld daemons in
//! a lab namespace, every version of `reach_tests::firewalld_versions` (Debian 12's 1.3.3, the
//! trixie root's 2.3.1): what firewall-cmd configures, policies included, must come back through
//! `read` unchanged.
use std::{net::IpAddr, os::unix::net::UnixListener, time::Duration};

use reach_agent::{
    firewall::firewalld::{
        Action, Allowance, Element, PortRange, ReadError, RichRule, Target, read,
    },
    lab::{FirewalldBuild, TwoHosts},
};
use reach_tests::{firewalld_versions, require_root};

const REJECT_RULE: &str =
    "rule family=ipv4 source address=10.77.0.2 port port=9090 protocol=tcp reject type=tcp-reset";
const LOG_DROP_RULE: &str = "rule family=ipv4 source address=10.77.0.0/24 port port=7070 protocol=udp log prefix=\"reach drop \" level=warning drop";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn tcp(port: u16) -> PortRange {
    PortRange { start: port, end: port, proto: "tcp".into() }
}

#[test]
fn runtime_config_round_trips_through_dbus() -> anyhow::Result<()> {
    require_root();
    for build in firewalld_versions::all() {
        round_trip_on(&build).map_err(|e| e.context(format!("firewalld {build}")))?;
    }
    Ok(())
}

fn round_trip_on(build: &FirewalldBuild) -> anyhow::Result<()> {
    let hosts = TwoHosts::new("fwm")?;
    let fw = firewalld_versions::start(&hosts.server, build);
    for args in [
        &["--zone=public", "--add-interface=srv0"][..],
        &["--zone=public", "--add-port=8080/tcp"],
        &["--zone=public", "--add-service=http"],
        &["--zone=public", &format!("--add-rich-rule={REJECT_RULE}")],
        &["--zone=public", &format!("--add-rich-rule={LOG_DROP_RULE}")],
        &["--zone=trusted", "--add-source=10.77.0.3"],
    ] {
        assert_eq!(fw.cmd(args)?.trim(), "success", "firewall-cmd {args:?}");
    }
    let rt = runtime();
    let bus = fw.bus_address();
    let cfg = rt.block_on(read(Some(&bus)))?;

    // The version the D-Bus API reports is the one the package states.
    assert_eq!(cfg.version, build.version()?);
    assert_eq!(cfg.state, "RUNNING");
    assert_eq!(cfg.default_zone, "public");
    let public = cfg.zone("public").expect("public zone");
    assert!(public.active);
    assert_eq!(public.interfaces, ["srv0"]);
    assert_eq!(public.target, Target::Default);
    assert_eq!(public.ports, [tcp(8080)]);
    let http = public.services.iter().find(|s| s.name == "http").expect("http service");
    assert_eq!(http.ports, [tcp(80)]);
    assert!(public.services.iter().any(|s| s.name == "ssh" && s.ports == [tcp(22)]));
    // Whether the zone forwards is the shipped zone file's say (`<forward/>`, firewalld ≥ 1.0).
    let shipped_public = std::fs::read_to_string(build.shipped_zones().join("public.xml"))?;
    assert_eq!(public.forward, shipped_public.contains("<forward/>"), "{shipped_public}");
    assert!(!public.masquerade);

    // Rich rules come back quoted and in firewalld's own order; both parse.
    let rules: Vec<RichRule> = public.parsed_rich_rules().into_iter().collect::<Result<_, _>>()?;
    assert_eq!(rules.len(), 2, "{:?}", public.rich_rules);
    let reject = rules.iter().find(|r| r.port() == Some(&tcp(9090))).expect("9090 rule");
    assert_eq!(reject.action, Some(Action::Reject(Some("tcp-reset".into()))));
    let client: IpAddr = TwoHosts::CLIENT_V4.into();
    assert_eq!(reject.source.as_ref().and_then(|s| s.matches(client)), Some(true));
    let drop = rules
        .iter()
        .find(
            |r| matches!(&r.element, Some(Element::Port(p)) if p.start == 7070 && p.proto == "udp"),
        )
        .expect("7070 rule");
    assert_eq!(drop.action, Some(Action::Drop));
    assert_eq!(drop.log.as_ref().and_then(|l| l.prefix.as_deref()), Some("reach drop "));
    assert_eq!(drop.log.as_ref().and_then(|l| l.level.as_deref()), Some("warning"));

    // Zone dispatch: srv0's zone for the client, the source-bound zone for its source.
    assert_eq!(cfg.zone_for(TwoHosts::SERVER_IF, client).name, "public");
    let trusted = cfg.zone_for(TwoHosts::SERVER_IF, "10.77.0.3".parse()?);
    assert_eq!(trusted.name, "trusted");
    assert!(trusted.active);
    assert_eq!(trusted.target, Target::Accept);
    assert_eq!(trusted.sources, ["10.77.0.3"]);
    assert_eq!(cfg.zone("block").map(|z| z.target), Some(Target::Reject));
    assert_eq!(cfg.zone("drop").map(|z| z.target), Some(Target::Drop));
    assert!(!cfg.zone("work").expect("work").active);

    assert_eq!(cfg.allows(public, 8080, "tcp"), Some(Allowance::Port(tcp(8080))));
    assert_eq!(
        cfg.allows(public, 80, "tcp"),
        Some(Allowance::Service { name: "http".into(), port: tcp(80) })
    );
    assert_eq!(cfg.allows(public, 9090, "tcp"), None);

    // firewalld ≥ 1.0 ships the allow-host-ipv6 policy, active from ANY to HOST.
    let policy = cfg.policies.iter().find(|p| p.name == "allow-host-ipv6").expect("policy");
    assert!(policy.active);
    assert_eq!(policy.ingress_zones, ["ANY"]);
    assert_eq!(policy.egress_zones, ["HOST"]);
    assert_eq!(policy.target, "CONTINUE");
    assert!(!policy.rich_rules.is_empty());
    assert!(
        policy.rich_rules.iter().all(|r| RichRule::parse(r).is_ok()),
        "{:?}",
        policy.rich_rules
    );

    // A target change goes through the permanent config and a reload; the runtime config
    // (the interface, the source) survives the reload only where it was made permanent, so
    // only the target is checked.
    // A policy (firewalld ≥ 0.9) exists only permanently until the same reload.
    assert_eq!(fw.cmd(&["--permanent", "--zone=public", "--set-target=DROP"])?.trim(), "success");
    let policy_rule =
        "rule family=ipv4 source address=10.77.0.2 port port=7171 protocol=tcp reject";
    for args in [
        // Bound permanently, so zone public (and with it the policy) is active after the reload.
        &["--permanent", "--zone=public", "--add-interface=srv0"][..],
        &["--permanent", "--new-policy=pubhost"],
        &["--permanent", "--policy=pubhost", "--add-ingress-zone=public"],
        &["--permanent", "--policy=pubhost", "--add-egress-zone=HOST"],
        &["--permanent", "--policy=pubhost", "--set-priority=-10"],
        &["--permanent", "--policy=pubhost", "--set-target=REJECT"],
        &["--permanent", "--policy=pubhost", "--add-port=7070/tcp"],
        &["--permanent", "--policy=pubhost", &format!("--add-rich-rule={policy_rule}")],
    ] {
        assert_eq!(fw.cmd(args)?.trim(), "success", "firewall-cmd {args:?}");
    }
    assert_eq!(fw.cmd(&["--reload"])?.trim(), "success");
    let cfg = rt.block_on(read(Some(&bus)))?;
    let public = cfg.zone("public").expect("public zone");
    assert_eq!(public.target, Target::Drop);
    assert_eq!(public.target_raw, "DROP");
    let p = cfg.policies.iter().find(|p| p.name == "pubhost").expect("policy pubhost");
    assert_eq!(
        (&p.ingress_zones[..], &p.egress_zones[..], p.priority, p.target.as_str()),
        (&["public".to_string()][..], &["HOST".to_string()][..], -10, "REJECT"),
        "{p:#?}"
    );
    assert_eq!(p.ports, [tcp(7070)]);
    assert_eq!(
        p.rich_rules,
        [r#"rule family="ipv4" source address="10.77.0.2" port port="7171" protocol="tcp" reject"#]
    );
    assert!(p.active, "public is active, so is a policy from it to HOST: {p:#?}");
    Ok(())
}

#[test]
fn missing_bus_and_missing_firewalld_are_told_apart() -> anyhow::Result<()> {
    let rt = runtime();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();

    // No socket at all.
    let nowhere = format!("unix:path={}/no-such-socket", dir.display());
    let err = rt.block_on(read(Some(&nowhere))).expect_err("no bus there");
    assert!(matches!(err.downcast_ref::<ReadError>(), Some(ReadError::NoBus { .. })), "{err:#}");
    assert!(err.to_string().contains("no D-Bus at"), "{err:#}");

    // A bus without firewalld on it: a plain dbus-daemon. Without one this half cannot run, and
    // that is a setup failure, not a pass.
    let dbus_daemon = reach_agent::lab::DBUS_DAEMON.path().unwrap_or_else(|e| {
        panic!(
            "{e}: `cargo xtask setup` installs it (Debian package dbus, which pulls in dbus-daemon)"
        )
    });
    let socket = dir.join("bus");
    let conf = dir.join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>"#,
            socket.display()
        ),
    )?;
    let child = std::process::Command::new(dbus_daemon)
        .arg(format!("--config-file={}", conf.display()))
        .arg("--nofork")
        // It complains about fd limits it may not raise here; irrelevant to the test.
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let _guard = reach_tests::KillOnDrop(child);
    reach_tests::wait_until("the plain bus socket", Duration::from_secs(10), || socket.exists());
    let address = format!("unix:path={}", socket.display());
    let err = rt.block_on(read(Some(&address))).expect_err("no firewalld there");
    assert!(
        matches!(err.downcast_ref::<ReadError>(), Some(ReadError::NotRunning { .. })),
        "{err:#}"
    );
    assert!(err.to_string().contains("firewalld is not running"), "{err:#}");

    // A socket that accepts nothing D-Bus-like (the listener never answers): a timeout or a
    // handshake failure, never a hang.
    let mute = dir.join("mute");
    let _listener = UnixListener::bind(&mute)?;
    let started = std::time::Instant::now();
    let err = rt
        .block_on(read(Some(&format!("unix:path={}", mute.display()))))
        .expect_err("nothing answers");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(err.downcast_ref::<ReadError>().is_some(), "{err:#}");
    Ok(())
}
