//! WSL2 detection. On WSL2 the "unreachable server" story differs: in NAT mode Windows'
//! `localhost:P` is relayed into the VM and arrives on `lo`, while the VM's eth0 address is on a
//! private NAT network; in mirrored mode the VM shares the host's addresses.
//!
//! Detection is a pure function of its inputs so it can be tested with faked inputs on any kernel.
use std::process::Command;

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Networking {
    Nat,
    Mirrored,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Wsl2 {
    /// NAT or mirrored networking mode.
    pub networking: Networking,
    /// How the mode was determined.
    pub evidence: String,
}

/// What detection looks at.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `uname -r`.
    pub release: String,
    /// Names of the network interfaces in the current namespace.
    pub interfaces: Vec<String>,
    /// Output of `wslinfo --networking-mode` when that tool exists (WSL ≥ 2.0).
    pub wslinfo_mode: Option<String>,
}

impl Inputs {
    /// Reads the real inputs from this machine.
    pub fn gather(release: &str) -> Self {
        let interfaces = std::fs::read_dir("/sys/class/net")
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let wslinfo_mode = if is_wsl2_release(release) {
            Command::new("wslinfo")
                .arg("--networking-mode")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        } else {
            None
        };
        Self { release: release.to_string(), interfaces, wslinfo_mode }
    }
}

/// WSL2 kernels carry `microsoft-standard-WSL2` in their release (WSL1 has no Linux kernel).
pub fn is_wsl2_release(release: &str) -> bool {
    release.to_ascii_lowercase().contains("microsoft-standard-wsl2")
}

pub fn detect(inputs: &Inputs) -> Option<Wsl2> {
    if !is_wsl2_release(&inputs.release) {
        return None;
    }
    if let Some(mode) = &inputs.wslinfo_mode {
        let networking = if mode.eq_ignore_ascii_case("mirrored") {
            Networking::Mirrored
        } else {
            Networking::Nat
        };
        return Some(Wsl2 {
            networking,
            evidence: format!("`wslinfo --networking-mode` says {mode}"),
        });
    }
    // Mirrored mode creates `loopback0` to carry the host's loopback traffic; NAT mode never does.
    if inputs.interfaces.iter().any(|i| i == "loopback0") {
        Some(Wsl2 {
            networking: Networking::Mirrored,
            evidence: "interface loopback0 exists (mirrored mode)".into(),
        })
    } else {
        Some(Wsl2 {
            networking: Networking::Nat,
            evidence: "no loopback0 interface (NAT mode, the default)".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WSL: &str = "5.15.167.4-microsoft-standard-WSL2";

    fn inputs(release: &str, ifaces: &[&str], wslinfo: Option<&str>) -> Inputs {
        Inputs {
            release: release.into(),
            interfaces: ifaces.iter().map(|s| s.to_string()).collect(),
            wslinfo_mode: wslinfo.map(str::to_string),
        }
    }

    #[test]
    fn not_wsl_on_plain_kernels() {
        assert_eq!(detect(&inputs("6.18.44-fc-v657", &["lo", "eth0"], None)), None);
        assert_eq!(
            detect(&inputs("4.4.0-19041-Microsoft", &["lo"], None)),
            None,
            "WSL1 is not WSL2"
        );
    }

    #[test]
    fn nat_mode_by_default() {
        let w = detect(&inputs(WSL, &["lo", "eth0"], None)).unwrap();
        assert_eq!(w.networking, Networking::Nat);
    }

    #[test]
    fn mirrored_mode_from_loopback0() {
        let w = detect(&inputs(WSL, &["lo", "eth0", "loopback0"], None)).unwrap();
        assert_eq!(w.networking, Networking::Mirrored);
    }

    #[test]
    fn wslinfo_wins_over_heuristics() {
        let w = detect(&inputs(WSL, &["lo", "eth0"], Some("mirrored"))).unwrap();
        assert_eq!(w.networking, Networking::Mirrored);
        let w = detect(&inputs(WSL, &["loopback0"], Some("nat"))).unwrap();
        assert_eq!(w.networking, Networking::Nat);
    }
}
