//! The running kernel's identity (uname).
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Release {
    /// `uname -r`, e.g. `6.18.44-fc-v657` or `5.15.167.4-microsoft-standard-WSL2`.
    pub release: String,
    /// `uname -v`.
    pub version: String,
    /// `uname -m`.
    pub machine: String,
}

pub fn current() -> Release {
    let u = nix::sys::utsname::uname();
    match u {
        Ok(u) => Release {
            release: u.release().to_string_lossy().into_owned(),
            version: u.version().to_string_lossy().into_owned(),
            machine: u.machine().to_string_lossy().into_owned(),
        },
        // uname(2) cannot fail on Linux in practice; keep doctor going if it ever does.
        Err(e) => Release {
            release: format!("unknown ({e})"),
            version: String::new(),
            machine: std::env::consts::ARCH.to_string(),
        },
    }
}
