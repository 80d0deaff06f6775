//! The root network namespace as the suite must leave it (issue 18): its nftables ruleset, links,
//! addresses, routes, qdiscs, TC filters and TCX programs of every interface, reach's BPF
//! programs and links, pseudo-filesystem mounts, pins and /run/reach — read before the suite and
//! compared after it by `reach-root-state`, which `cargo xtask test` runs around `cargo test`.
//! Nothing in the suite may touch the root namespace (it carries the machine's control
//! connection); this is the check that nothing did.
use std::{collections::BTreeMap, path::Path, process::Command};

use aya::programs::tc::TcAttachType;

use crate::leftovers::{self, Scope};

/// Section name → its lines, each section in a fixed order.
pub type State = BTreeMap<String, Vec<String>>;

fn run(cmd: &str, args: &[&str]) -> String {
    let out =
        Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", crate::show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim_end).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// A route's remaining lifetime counts down by itself (router advertisements, DHCP): not a change.
fn without_lifetimes(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut out = Vec::new();
    let mut skip = false;
    for w in words {
        if skip {
            skip = false;
            continue;
        }
        if matches!(w, "expires" | "valid_lft" | "preferred_lft") {
            skip = true;
            continue;
        }
        out.push(w);
    }
    out.join(" ")
}

/// The interfaces of the root namespace.
fn ifaces() -> Vec<String> {
    nix::net::if_::if_nameindex()
        .map(|l| l.iter().map(|i| i.name().to_string_lossy().into_owned()).collect())
        .unwrap_or_else(|e| panic!("listing the interfaces: {e}"))
}

/// Reads the root namespace's state now (this process must be in it).
pub fn read() -> State {
    let mut s = State::new();
    s.insert("nft ruleset".into(), lines(&crate::ruleset::nft_ruleset(None)));
    // `-o` one line per link; counters are not shown without `-s`.
    s.insert("links".into(), lines(&run("ip", &["-o", "link", "show"])));
    s.insert("addresses".into(), lines(&run("ip", &["-br", "addr", "show"])));
    let routes: Vec<String> = ["-4", "-6"]
        .iter()
        .flat_map(|f| lines(&run("ip", &[f, "route", "show", "table", "all"])))
        .map(|l| without_lifetimes(&l))
        .collect();
    s.insert("routes".into(), routes);
    s.insert("qdiscs".into(), lines(&run("tc", &["qdisc", "show"])));
    let scope = Scope { netns: None, ifaces: &[] };
    let (mut filters, mut tcx) = (Vec::new(), Vec::new());
    for iface in ifaces() {
        for (dir, attach) in [("ingress", TcAttachType::Ingress), ("egress", TcAttachType::Egress)]
        {
            for l in lines(&run("tc", &["filter", "show", "dev", &iface, dir])) {
                filters.push(format!("{iface} {dir}: {l}"));
            }
            for (id, name) in leftovers::tcx_programs(&scope, &iface, attach) {
                tcx.push(format!("{iface} {dir}: program {id} {name}"));
            }
        }
    }
    s.insert("tc filters".into(), filters);
    s.insert("tcx".into(), tcx);
    let reach_programs = leftovers::programs()
        .into_iter()
        .filter(|(_, n)| n.starts_with("reach"))
        .map(|(id, n)| format!("{id} {n}"))
        .collect();
    s.insert("reach programs".into(), reach_programs);
    s.insert("mounts".into(), leftovers::mounts().into_iter().collect());
    let mut files: Vec<String> = Vec::new();
    for d in leftovers::bpffs_dirs().iter().map(|p| p.as_path()).chain([Path::new("/run/reach")]) {
        files.extend(leftovers::files_under(d).iter().map(|p| p.display().to_string()));
    }
    s.insert("pins and /run/reach".into(), files);
    s
}

/// Every difference, as "SECTION: - LINE" (gone) or "SECTION: + LINE" (new); empty when equal.
pub fn diff(before: &State, after: &State) -> Vec<String> {
    let mut out = Vec::new();
    let empty = Vec::new();
    let sections: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for k in sections {
        let (b, a) = (before.get(k).unwrap_or(&empty), after.get(k).unwrap_or(&empty));
        out.extend(b.iter().filter(|l| !a.contains(l)).map(|l| format!("{k}: - {l}")));
        out.extend(a.iter().filter(|l| !b.contains(l)).map(|l| format!("{k}: + {l}")));
        if out.is_empty() && b != a {
            out.push(format!("{k}: the same lines in another order or number"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(section: &str, ls: &[&str]) -> State {
        State::from([(section.to_string(), ls.iter().map(|l| l.to_string()).collect())])
    }

    #[test]
    fn a_new_or_gone_line_is_a_difference_and_equal_states_are_none() {
        let before = state("qdiscs", &["qdisc noqueue 0: dev lo root refcnt 2"]);
        assert!(diff(&before, &before).is_empty());
        let after = state(
            "qdiscs",
            &[
                "qdisc noqueue 0: dev lo root refcnt 2",
                "qdisc clsact ffff: dev eth0 parent ffff:fff1",
            ],
        );
        assert_eq!(
            diff(&before, &after),
            ["qdiscs: + qdisc clsact ffff: dev eth0 parent ffff:fff1"]
        );
        assert_eq!(
            diff(&after, &before),
            ["qdiscs: - qdisc clsact ffff: dev eth0 parent ffff:fff1"]
        );
        let twice = state("qdiscs", &["qdisc noqueue 0: dev lo root refcnt 2"; 2]);
        assert_eq!(diff(&before, &twice).len(), 1, "a duplicated line counts");
        let other = state("tcx", &["eth0 ingress: program 7 reach_ingress"]);
        assert_eq!(diff(&State::new(), &other), ["tcx: + eth0 ingress: program 7 reach_ingress"]);
    }

    #[test]
    fn lifetimes_counting_down_are_no_change() {
        assert_eq!(
            without_lifetimes(
                "2001:db8::/64 dev eth0 proto ra metric 100 expires 2591sec pref medium"
            ),
            "2001:db8::/64 dev eth0 proto ra metric 100 pref medium"
        );
    }
}
