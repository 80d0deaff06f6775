//! `reach lab` (the main job of `cargo xtask lab`): doctor run inside a fresh lab namespace
//! must find the lab's firewalld there, and the lab must leave nothing behind.
use std::{process::Command, sync::Mutex};

use reach_tests::{reach, require_root, show};
use serde_json::Value;

/// Doctor lists every namespace of the machine: one test's lab must not show up in the other's.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn lab_runs_doctor_inside_and_finds_its_firewalld_then_tears_down() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = reach(&["lab", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    let namespaces = report["firewalld"].as_array().expect("firewalld list");
    let server = namespaces
        .iter()
        .find(|n| {
            n["netns"]["name"]
                .as_str()
                .is_some_and(|s| s.starts_with("reach-lab-") && s.ends_with("-lab-srv"))
        })
        .unwrap_or_else(|| panic!("lab server namespace not in the report: {report:#}"));
    assert_eq!(server["present"], true, "{server:#}");
    let evidence = server["evidence"].to_string();
    assert!(evidence.contains("table inet firewalld"), "{evidence}");
    assert!(
        evidence.contains("org.fedoraproject.FirewallD1 owned by pid"),
        "D-Bus owner must map to the lab namespace: {evidence}"
    );
    let client = namespaces
        .iter()
        .find(|n| n["netns"]["name"].as_str().is_some_and(|s| s.ends_with("-lab-cli")))
        .expect("client ns");
    assert_eq!(client["present"], false);
    let host = &namespaces[0];
    assert_eq!(
        (host["netns"]["name"].as_str(), &host["present"]),
        (Some("host"), &Value::Bool(false))
    );

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("torn down"), "{stderr}");
    let mine: Vec<String> = String::from_utf8_lossy(
        &Command::new("ip").args(["netns", "list"]).output().unwrap().stdout,
    )
    .lines()
    .filter(|l| l.contains("-lab-srv") || l.contains("-lab-cli"))
    .map(str::to_string)
    .collect();
    // Another test binary never runs concurrently with this one, so any lab-srv/-cli left is ours.
    assert!(mine.is_empty(), "lab namespaces left behind: {mine:?}");
}

#[test]
fn lab_without_firewalld_still_runs_doctor() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = reach(&["lab", "--no-firewalld"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("attach plan") && !text.contains("firewalld RUNNING"), "{text}");
}
