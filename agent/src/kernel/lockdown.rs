//! Kernel lockdown mode (`none`, `integrity`, `confidentiality`): integrity forbids some BPF
//! helpers (e.g. bpf_probe_write_user) and, with some LSM policies, tracing attachments.
use std::path::Path;

use super::pseudofs;

/// Reads the active lockdown mode; mounts securityfs for the read if it is not mounted.
pub fn mode() -> Result<String, String> {
    let fs = pseudofs::ensure("securityfs", Path::new("/sys/kernel/security"), "lsm")
        .map_err(|e| format!("securityfs unavailable: {e}"))?;
    let text = std::fs::read_to_string(fs.path.join("lockdown"))
        .map_err(|e| format!("no lockdown LSM ({e})"))?;
    parse(&text).ok_or_else(|| format!("unrecognised lockdown file: {text:?}"))
}

/// `none [integrity] confidentiality` → `integrity`.
pub fn parse(text: &str) -> Option<String> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_bracketed_mode() {
        assert_eq!(
            super::parse("none [integrity] confidentiality\n").as_deref(),
            Some("integrity")
        );
        assert_eq!(super::parse("[none] integrity confidentiality").as_deref(), Some("none"));
        assert_eq!(super::parse("garbage"), None);
    }
}
