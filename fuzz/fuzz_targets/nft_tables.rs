//! nfnetlink replies to the nftables table dump (NFT_MSG_NEWTABLE, framed by netlink-packet-core,
//! parsed by netlink-packet-netfilter) read as `reach doctor` reads them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use reach_agent::firewall::nft_tables::parse_replies;

fuzz_target!(|data: &[u8]| {
    let Some((&seq, datagram)) = data.split_first() else { return };
    let mut out = Vec::new();
    if parse_replies(datagram, u32::from(seq), &mut out).is_ok() {
        for t in &out {
            let _ = t.to_string();
        }
    }
});
