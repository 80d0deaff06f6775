//! The nftables model and its firewalld mapping against real firewalld daemons in a lab
//! namespace, every version of `reach_tests::firewalld_versions`: what the recorded rulesets
//! promise must hold for a ruleset read right now, and across a `--reload` (which renumbers
//! every handle). The root namespace is only read.
use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    process::Command,
};

use reach_agent::{
    firewall::{
        firewalld_chains::{
            BoundBy, Concept, Dispatch, Stage, Target, describe_all, zone_dispatch, zone_target,
        },
        nftables::{self, Ruleset},
    },
    lab::{self, FirewalldBuild, TwoHosts},
};
use reach_tests::{firewalld_versions, require_root};

/// `nft list ruleset` of the caller's (root) namespace, hashed. Read-only.
fn root_ruleset_hash() -> u64 {
    let nft = lab::NFT.path().unwrap_or_else(|e| panic!("{e}"));
    let out =
        Command::new(nft).args(["list", "ruleset"]).output().expect("running nft list ruleset");
    assert!(out.status.success(), "nft list ruleset: {}", String::from_utf8_lossy(&out.stderr));
    let mut h = DefaultHasher::new();
    out.stdout.hash(&mut h);
    h.finish()
}

const RICH: &str =
    "rule family=ipv4 source address=10.77.0.2 port port=9090 protocol=tcp reject type=tcp-reset";

fn rich_rules(rs: &Ruleset) -> Vec<(u64, Concept)> {
    describe_all(rs)
        .into_iter()
        .filter(|(_, c)| matches!(c, Concept::RichRule { .. }))
        .map(|(r, c)| (r.handle, c))
        .collect()
}

#[test]
fn live_firewalld_ruleset_maps_back_to_zones_ports_rich_rules_and_targets() -> anyhow::Result<()> {
    require_root();
    let root_before = root_ruleset_hash();
    for build in firewalld_versions::all() {
        maps_back_on(&build)?;
    }
    assert_eq!(root_ruleset_hash(), root_before, "the ROOT ruleset changed");
    Ok(())
}

fn maps_back_on(build: &FirewalldBuild) -> anyhow::Result<()> {
    let hosts = TwoHosts::new("nftm")?;
    let fw = firewalld_versions::start(&hosts.server, build);
    eprintln!("--- firewalld {}", fw.version());
    let server_if = TwoHosts::SERVER_IF;
    for args in [
        vec!["--zone=public".to_string(), format!("--add-interface={server_if}")],
        vec!["--zone=public".into(), "--add-port=8080/tcp".into()],
        vec!["--zone=public".into(), format!("--add-rich-rule={RICH}")],
        vec!["--zone=trusted".into(), "--add-source=10.77.0.3".into()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(fw.cmd(&args)?.trim(), "success", "firewall-cmd {args:?}");
    }

    let rs = nftables::read_in(&hosts.server)?;
    assert!(rs.has_table("inet", "firewalld"));
    let dispatch = zone_dispatch(&rs);
    let expect = |zone: &str, by: BoundBy| Dispatch {
        zone: zone.into(),
        by,
        chain: format!("filter_IN_{zone}"),
    };
    // firewalld dispatches sources before interfaces, and the default zone last.
    assert_eq!(
        dispatch,
        [
            expect("trusted", BoundBy::Source("10.77.0.3".into())),
            expect("public", BoundBy::Interface(server_if.into())),
            expect("public", BoundBy::Default),
        ],
        "{rs:#?}"
    );
    assert_eq!(zone_target(&rs, "public"), Some(Target::Default));
    assert_eq!(zone_target(&rs, "trusted"), Some(Target::Accept));

    let concepts: Vec<Concept> = describe_all(&rs).into_iter().map(|(_, c)| c).collect();
    assert!(
        concepts.contains(&Concept::PortAllowed {
            zone: "public".into(),
            port: "8080".into(),
            proto: "tcp".into()
        }),
        "{concepts:#?}"
    );
    assert!(concepts.contains(&Concept::DefaultReject));
    let rich_before = rich_rules(&rs);
    let expected_rich = Concept::RichRule {
        zone: "public".into(),
        stage: Stage::Deny,
        source: Some("10.77.0.2".into()),
        port: Some("9090".into()),
        proto: Some("tcp".into()),
        action: "reject tcp-reset".into(),
        summary: "source 10.77.0.2 port 9090/tcp reject tcp-reset".into(),
    };
    assert_eq!(
        rich_before.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
        std::slice::from_ref(&expected_rich)
    );

    // Permanent config lives in the fixture's private copy; keep the runtime bindings across
    // the reload the way an admin would, then change the target.
    assert_eq!(fw.cmd(&["--runtime-to-permanent"])?.trim(), "success");
    assert_eq!(fw.cmd(&["--permanent", "--zone=public", "--set-target=DROP"])?.trim(), "success");
    assert_eq!(fw.cmd(&["--reload"])?.trim(), "success");

    let reloaded = nftables::read_in(&hosts.server)?;
    assert_eq!(zone_target(&reloaded, "public"), Some(Target::Drop));
    assert_eq!(zone_target(&reloaded, "trusted"), Some(Target::Accept));
    assert_eq!(zone_dispatch(&reloaded), dispatch);
    let rich_after = rich_rules(&reloaded);
    assert_eq!(rich_after.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(), [expected_rich]);
    // The rule was recognised by its expressions, not its handle: firewalld rebuilt the table.
    assert_ne!(rich_before[0].0, rich_after[0].0, "expected new handles after --reload");

    drop(fw);
    drop(hosts);
    Ok(())
}

#[test]
fn reading_a_namespace_without_rules_gives_an_empty_model() -> anyhow::Result<()> {
    require_root();
    let ns = lab::NetNs::new("nftm-empty")?;
    let rs = nftables::read_in(&ns)?;
    assert_eq!(rs, Ruleset::default());
    Ok(())
}
