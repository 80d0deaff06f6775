//! WSL2's networking changes the answer: in NAT mode Windows' `localhost:P` is relayed into the
//! VM and arrives on `lo`, so a loopback bind works from Windows via localhost but not via the
//! VM's eth0 address or from the LAN; in mirrored mode the VM shares Windows' addresses and
//! Windows→VM loopback needs `hostAddressLoopback`. Only ever added when the evidence says WSL2.
use super::{Evidence, Verdict};
use crate::kernel::wsl::Networking;

/// Appends the WSL2 explanation (always, as context) and its fixes (where it is the likely
/// cause: nothing arrived, or a loopback bind).
pub(super) fn explain(e: &Evidence, v: Verdict, evidence: &mut Vec<String>, fix: &mut Vec<String>) {
    let Some(w) = &e.wsl else { return };
    let p = e.port;
    let relevant = matches!(v, Verdict::NoSynSeen | Verdict::LoopbackOnlyBind);
    match w.wsl2.networking {
        Networking::Nat => {
            let eth0 = w.eth0_addr.map(|a| format!(" ({a})")).unwrap_or_default();
            evidence.push(format!(
                "WSL2 NAT mode ({}): Windows localhost:{p} is relayed into the VM and arrives on lo \
                 to 127.0.0.1/::1, so a loopback bind works via localhost but not via the VM's eth0 \
                 address{eth0} nor from the LAN",
                w.wsl2.evidence
            ));
            if relevant {
                let to = w.eth0_addr.map(|a| a.to_string()).unwrap_or_else(|| "<eth0 addr>".into());
                fix.push(format!(
                    "for LAN access, on Windows (admin): netsh interface portproxy add v4tov4 \
                     listenport={p} listenaddress=0.0.0.0 connectport={p} connectaddress={to}"
                ));
            }
        }
        Networking::Mirrored => {
            evidence.push(format!(
                "WSL2 mirrored mode ({}): the VM shares Windows' addresses; Windows reaches a VM \
                 server via 127.0.0.1 only with hostAddressLoopback=true",
                w.wsl2.evidence
            ));
            if relevant {
                fix.push(
                    "set hostAddressLoopback=true under [experimental] in %UserProfile%\\.wslconfig, \
                     then `wsl --shutdown`"
                        .into(),
                );
            }
        }
    }
}
