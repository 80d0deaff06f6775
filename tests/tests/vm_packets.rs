//! The packet path on real Debian kernels under QEMU: 6.1 (no TCX: clsact over netlink, drop
//! reasons numbered differently) and 6.18 (TCX). A closed port must be dropped with NO_SOCKET,
//! an nftables drop rule with NETFILTER_DROP, and reach must leave nothing behind: no program,
//! link, TCX attachment, qdisc, filter, table, mount or record (`reach-leftovers` in the guest).
use anyhow::{Context as _, Result, ensure};
use reach_tests::reach_bin;
use serde_json::Value;
use xtask::vm::{GuestOptions, run_in_guest};

const SCRIPT: &str = r#"set -u
ip netns add srv && ip netns add cli || exit 1
ip link add s0 netns srv type veth peer name c0 netns cli || exit 1
ip -n srv addr add 10.77.0.1/24 dev s0 && ip -n srv link set s0 up && ip -n srv link set lo up
ip -n cli addr add 10.77.0.2/24 dev c0 && ip -n cli link set c0 up && ip -n cli link set lo up
printf 'table inet labfw {\n chain input {\n type filter hook input priority 0; policy accept;\n tcp dport 7102 drop\n }\n}\n' > /tmp/fw.nft
ip netns exec srv nft -f /tmp/fw.nft || { echo "=== nft failed"; exit 1; }
cat > /tmp/watch.sh <<'WATCH'
$REACH watch --json --netns srv --port 7101 --port 7102 > /tmp/w.jsonl 2> /tmp/w.err &
W=$!
i=0; while ! grep -q 'watching drops' /tmp/w.err; do i=$((i+1)); if [ $i -gt 900 ] || ! kill -0 $W 2>/dev/null; then echo "=== attach failed"; cat /tmp/w.err; exit 1; fi; sleep 0.1; done
ip netns exec cli timeout 5 bash -c 'exec 3<>/dev/tcp/10.77.0.1/7101' 2>/dev/null; echo "=== closed port rc $?"
ip netns exec cli timeout 3 bash -c 'exec 3<>/dev/tcp/10.77.0.1/7102' 2>/dev/null; echo "=== dropped port rc $?"
# Both drops printed before the stop (the readiness is reach's own output, not a pause).
for port in 7101 7102; do
  i=0; until grep '"type":"drop"' /tmp/w.jsonl | grep -Eq "\"dport\":$port[,}]"; do i=$((i+1)); if [ $i -gt 600 ]; then echo "=== timed out after 60 s waiting for the drop of port $port"; cat /tmp/w.err; exit 1; fi; sleep 0.1; done
done
kill -INT $W; wait $W; echo "=== watch exit $?"
echo "=== stderr"; cat /tmp/w.err
echo "=== events"; cat /tmp/w.jsonl
WATCH
# Everything reach could leave (BPF programs and links by id, qdiscs, filters, TCX, nft
# tables of srv, mounts, pins, /run/reach), snapshotted around the watch.
$LEFTOVERS --netns srv --iface s0 -- bash /tmp/watch.sh; echo "=== leftovers exit $?"
echo "=== qdisc"; tc -n srv qdisc show dev s0 || echo "tc failed: $?"
echo "=== end"
"#;

fn section<'a>(out: &'a str, name: &str) -> &'a str {
    let tag = format!("=== {name}\n");
    let start = out.find(&tag).map_or(out.len(), |i| i + tag.len());
    let end = out[start..].find("=== ").map_or(out.len(), |e| start + e);
    &out[start..end]
}

fn packets_in_guest(kernel: &str, expect_how: &str) -> Result<()> {
    let reach = reach_bin();
    let opts = GuestOptions {
        env: vec![
            ("REACH".into(), reach.to_str().context("REACH_BIN not UTF-8")?.into()),
            ("LEFTOVERS".into(), env!("CARGO_BIN_EXE_reach-leftovers").into()),
        ],
        ..GuestOptions::new(kernel, &["/bin/bash", "-c", SCRIPT])
    };
    let outcome = run_in_guest(&opts)?;
    let out = &outcome.output;
    ensure!(
        outcome.exit_code == 0,
        "{kernel}: guest script failed ({}):\n{out}",
        outcome.exit_code
    );
    ensure!(out.contains("=== watch exit 0"), "{kernel}: watch did not exit 0:\n{out}");
    ensure!(
        section(out, "stderr").contains(expect_how),
        "{kernel}: expected {expect_how} attachment:\n{out}"
    );
    ensure!(
        section(out, "leftovers").trim() == "none" && out.contains("=== leftovers exit 0"),
        "{kernel}: reach left something behind:\n{out}"
    );
    // The leftover check is not blind here: it read the qdisc list, which tc lists too.
    ensure!(section(out, "qdisc").contains("qdisc noqueue"), "{kernel}: no qdisc listing:\n{out}");
    let lines: Vec<Value> =
        section(out, "events").lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let drop_for = |port: u64| lines.iter().find(|l| l["type"] == "drop" && l["dport"] == port);
    let closed =
        drop_for(7101).with_context(|| format!("{kernel}: no drop for the closed port:\n{out}"))?;
    ensure!(closed["reason"] == "NO_SOCKET", "{kernel}: {closed}");
    ensure!(closed["saddr"] == "10.77.0.2" && closed["daddr"] == "10.77.0.1", "{kernel}: {closed}");
    let filtered = drop_for(7102)
        .with_context(|| format!("{kernel}: no drop for the nft-dropped port:\n{out}"))?;
    ensure!(filtered["reason"] == "NETFILTER_DROP", "{kernel}: {filtered}");
    for port in [7101u64, 7102] {
        ensure!(
            lines.iter().any(|l| l["type"] == "syn" && l["dport"] == port && l["iface"] == "s0"),
            "{kernel}: no syn for {port}:\n{out}"
        );
    }
    ensure!(
        lines.iter().any(|l| l["type"] == "rst" && l["sport"] == 7101),
        "{kernel}: no RST from the closed port:\n{out}"
    );
    Ok(())
}

#[test]
fn drops_on_debian_6_1_via_clsact() -> Result<()> {
    packets_in_guest("6.1", "clsact qdisc")
}

#[test]
fn drops_on_debian_6_18_via_tcx() -> Result<()> {
    packets_in_guest("6.18", "(TCX)")
}
