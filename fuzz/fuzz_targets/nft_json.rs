//! `nft -j list ruleset` output: parsed into reach's ruleset model, then read as attribution
//! reads it — firewalld's zone dispatch and targets, every rule described as a firewalld
//! concept, iptables-nft tables and their targets, NAT destinations.
#![no_main]
use libfuzzer_sys::fuzz_target;
use reach_agent::firewall::{firewalld_chains, iptables_nft, nftables::Ruleset};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(rs) = Ruleset::from_json(text) else { return };
    let _ = firewalld_chains::zone_dispatch(&rs);
    let _ = firewalld_chains::zone_target(&rs, "public");
    let _ = firewalld_chains::describe_all(&rs);
    for r in &rs.rules {
        let _ = firewalld_chains::classify(&r.chain);
        let _ = (r.verdict.is_final(), r.is_dnat(), r.dnat_target(8080), r.matches().count());
        let _ = iptables_nft::xt_target(r);
        let _ = iptables_nft::is_iptables_table(&rs, &r.family, &r.table);
        let _ = rs.rules_of(&r.family, &r.table, &r.chain).count();
    }
});
