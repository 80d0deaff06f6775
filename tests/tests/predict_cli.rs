//! `reach predict` against real firewalld daemons in a lab namespace (every version of
//! `reach_tests::firewalld_versions`): the answer before any client tries, with exit codes a
//! script can branch on.
use reach_agent::lab::{FirewalldBuild, TwoHosts};
use reach_tests::{firewalld_versions, reach, require_root, show};
use serde_json::Value;

#[test]
fn predicts_block_then_accept_after_the_suggested_fix() {
    require_root();
    for build in firewalld_versions::all() {
        block_then_accept_on(&build);
    }
}

fn block_then_accept_on(build: &FirewalldBuild) {
    let hosts = TwoHosts::new("pcli").unwrap();
    let fw = firewalld_versions::start(&hosts.server, build);
    eprintln!("--- firewalld {}", fw.version());
    fw.cmd(&["--zone=public", "--add-interface=srv0"]).unwrap();
    let bus = fw.bus_address();
    let ask = |json: bool| {
        let mut args = vec![
            "predict",
            "7777",
            "--from",
            "10.77.0.2",
            "--iface",
            "srv0",
            "--firewalld-bus",
            &bus,
        ];
        if json {
            args.push("--json");
        }
        reach(&args)
    };

    let out = ask(true);
    assert_eq!(out.status.code(), Some(4), "blocked → exit 4: {}", show(&out));
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (p["zone"].as_str(), p["zone_by"].as_str()),
        (Some("public"), Some("interface")),
        "{p:#}"
    );
    assert_eq!(p["decision"]["decision"], "reject", "{p:#}");
    assert_eq!(p["fix"][0], "firewall-cmd --zone=public --add-port=7777/tcp");

    let text = String::from_utf8_lossy(&ask(false).stdout).into_owned();
    assert!(text.contains("would block a SYN from 10.77.0.2 on srv0 to port 7777/tcp"), "{text}");
    assert!(text.contains("fix: firewall-cmd --zone=public --add-port=7777/tcp"), "{text}");

    // Apply the fix the prediction gave: now firewalld would accept.
    let fix = p["fix"][0].as_str().unwrap();
    let fix_args: Vec<&str> = fix.split_whitespace().skip(1).collect();
    fw.cmd(&fix_args).unwrap();
    let out = ask(true);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["decision"]["decision"], "accept", "{p:#}");
}

#[test]
fn no_firewalld_is_a_clear_error_and_bad_input_is_usage() {
    let out = reach(&[
        "predict",
        "7777",
        "--from",
        "10.77.0.2",
        "--iface",
        "eth0",
        "--firewalld-bus",
        "unix:path=/nonexistent/reach-bus",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read firewalld's configuration"),
        "{}",
        show(&out)
    );
    for bad in [
        &["predict", "0", "--from", "10.0.0.1", "--iface", "eth0"][..],
        &["predict", "80", "--from", "not-an-ip", "--iface", "eth0"],
        &["predict", "70000", "--from", "10.0.0.1", "--iface", "eth0"],
    ] {
        let out = reach(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", show(&out));
    }
}
