use reach_common::net::NetConfig;
use reach_tests::frames::*;
#[test]
fn probe() {
    let c = Classifiers::load(
        NetConfig { netns: 1, filter_ports: 1, rate_per_sec: 0, burst: 0 },
        &[443],
    )
    .unwrap();
    for et in [ETH_P_IP, ETH_P_IPV6, ETH_P_ARP, ETH_P_8021Q, 0x88cc] {
        let mut ok = vec![];
        for len in 14..80usize {
            let mut f = syn_v6(1, 443);
            f.resize(100, 0);
            f[12..14].copy_from_slice(&et.to_be_bytes());
            let r = c.run("reach_floor", &f[..len], 1);
            ok.push(if r.is_ok() { '.' } else { 'X' });
        }
        println!("{et:04x}: {}", ok.iter().collect::<String>());
    }
}
