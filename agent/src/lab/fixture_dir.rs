//! The firewalld fixture's private directory: what firewalld sees as /etc/firewalld, /run and
//! /var/log, plus the private bus's files and the daemons' logs.
//!
//! The private /etc/firewalld starts with nothing but a firewalld.conf written here: firewalld
//! reads its zones, services, policies, … from the shipped defaults in /usr/lib/firewalld and
//! needs no file in /etc/firewalld, so nothing of the host's own configuration (its zones, its
//! default zone, its LogDenied) can change what a test sees.
//!
//! It lives in the host's temporary directory (so tests and humans can inspect it) under a lab
//! name, so [`super::clean_stale`] removes it after a killed run.
use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{
    dbus::{self, BusPaths},
    error::{LabError, Result},
    name::LabName,
};

/// Where firewalld reads its configuration; the fixture mounts its private directory over it
/// (the host's own directory is never read or written).
pub(crate) const ETC_FIREWALLD: &str = "/etc/firewalld";

/// The fixture's firewalld.conf, every key the fixture relies on spelled out instead of left to
/// the fallbacks of whichever firewalld is installed. These are firewalld 1.3's keys with
/// Debian's shipped values; a firewalld that does not know a key logs "Invalid option" and
/// ignores it (1.3.3's `firewalld_conf.read`), so the file is harmless to older and newer ones.
pub(crate) const FIREWALLD_CONF: &[(&str, &str)] = &[
    // The zone every test's interfaces fall into unless it binds them elsewhere.
    ("DefaultZone", "public"),
    // reach models the nftables backend only.
    ("FirewallBackend", "nftables"),
    // Denied packets are not logged unless a test turns it on (`--set-log-denied`).
    ("LogDenied", "off"),
    // A SIGTERMed firewalld removes its tables (`Firewalld::stop` relies on it) …
    ("CleanupOnExit", "yes"),
    // … but never unloads kernel modules: those are shared with the whole machine.
    ("CleanupModulesOnExit", "no"),
    // firewall-cmd as root may change everything.
    ("Lockdown", "no"),
    ("IPv6_rpfilter", "yes"),
    ("IndividualCalls", "no"),
    // A reload rebuilds the table (every handle renumbered), as the recorded rulesets show.
    ("FlushAllOnReload", "yes"),
    ("RFC3964_IPv4", "yes"),
];

/// Host paths of the fixture's private directories.
pub(crate) struct Layout {
    pub(crate) etc: PathBuf,
    pub(crate) run: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) firewalld_log: PathBuf,
    pub(crate) bus: BusPaths,
}

/// The fixture's private directory (0700), deleted on drop. Named like the lab's namespaces so
/// the stale cleaner recognises it after a crash.
#[derive(Debug)]
pub(crate) struct PrivateDir {
    path: PathBuf,
    removed: bool,
}

impl PrivateDir {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn close(mut self) -> std::io::Result<()> {
        self.removed = true;
        fs::remove_dir_all(&self.path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if !self.removed
            && let Err(e) = fs::remove_dir_all(&self.path)
        {
            tracing::warn!("lab: deleting {}: {e}", self.path.display());
        }
    }
}

pub(crate) fn private_dir() -> Result<PrivateDir> {
    let base = std::env::temp_dir();
    // The daemons see /run, /var/log and /etc/firewalld replaced: a directory under one of them
    // would be hidden from them.
    if ["/run", "/var/log", ETC_FIREWALLD].iter().any(|p| base.starts_with(p)) {
        return Err(LabError::Invalid {
            what: "temporary directory",
            detail: format!(
                "{} is under /run, /var/log or /etc/firewalld, which the firewalld fixture replaces; set TMPDIR elsewhere",
                base.display()
            ),
        });
    }
    let template = base.join(format!("{}.XXXXXX", LabName::next("firewalld")));
    let path = nix::unistd::mkdtemp(&template)
        .map_err(|e| LabError::sys(format!("creating {}", template.display()), e))?;
    Ok(PrivateDir { path, removed: false })
}

/// Fills the private directory: an /etc/firewalld holding only [`FIREWALLD_CONF`] (with `conf`
/// applied), empty /run and /var/log, the bus configuration.
pub(crate) fn prepare(dir: &Path, conf: &[(String, String)]) -> Result<Layout> {
    let layout = Layout {
        etc: dir.join("etc"),
        run: dir.join("run"),
        log: dir.join("log"),
        firewalld_log: dir.join("firewalld.log"),
        bus: BusPaths::new(dir),
    };
    fs::create_dir(&layout.etc)
        .map_err(|e| LabError::io(format!("creating {}", layout.etc.display()), e))?;
    let conf_path = layout.etc.join("firewalld.conf");
    fs::write(&conf_path, conf_text(conf)?)
        .map_err(|e| LabError::io(format!("writing {}", conf_path.display()), e))?;
    for d in [&layout.run, &layout.log] {
        fs::create_dir(d).map_err(|e| LabError::io(format!("creating {}", d.display()), e))?;
    }
    if let Some(bus_dir) = layout.bus.socket.parent() {
        fs::create_dir(bus_dir)
            .map_err(|e| LabError::io(format!("creating {}", bus_dir.display()), e))?;
    }
    fs::write(&layout.bus.config, dbus::config(&layout.bus))
        .map_err(|e| LabError::io(format!("writing {}", layout.bus.config.display()), e))?;
    Ok(layout)
}

/// The text of the fixture's firewalld.conf: [`FIREWALLD_CONF`] with `overrides` replacing
/// the values of keys it has and appending the keys it lacks, in order.
pub(crate) fn conf_text(overrides: &[(String, String)]) -> Result<String> {
    let mut settings: Vec<(String, String)> =
        FIREWALLD_CONF.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (key, value) in overrides {
        // firewalld splits a line at `=` and trims: a key outside [A-Za-z0-9_] or a value with
        // a newline or `=` would not read back as written.
        if key.is_empty()
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || value.trim().is_empty()
            || value.contains(['\n', '='])
        {
            return Err(LabError::Invalid {
                what: "firewalld.conf setting",
                detail: format!("{key}={value:?}"),
            });
        }
        match settings.iter_mut().find(|(k, _)| k == key) {
            Some(setting) => setting.1 = value.clone(),
            None => settings.push((key.clone(), value.clone())),
        }
    }
    let mut text =
        String::from("# Written by reach's firewalld fixture (agent/src/lab/fixture_dir.rs).\n");
    for (key, value) in settings {
        text.push_str(&format!("{key}={value}\n"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(key: &str, value: &str) -> (String, String) {
        (key.to_string(), value.to_string())
    }

    #[test]
    fn conf_spells_out_every_key_and_applies_overrides_in_place() {
        let text = conf_text(&[setting("LogDenied", "all"), setting("NewKey", "x")]).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), FIREWALLD_CONF.len() + 1, "{text}");
        assert_eq!(lines[0], "DefaultZone=public");
        assert_eq!(lines[1], "FirewallBackend=nftables");
        assert_eq!(lines[2], "LogDenied=all", "an override replaces the value where it is");
        assert_eq!(lines.last(), Some(&"NewKey=x"), "an unknown key is appended");
        assert_eq!(lines.iter().filter(|l| l.starts_with("LogDenied=")).count(), 1);
    }

    #[test]
    fn conf_rejects_settings_firewalld_would_misread() {
        for (key, value) in
            [("", "x"), ("Bad Key", "x"), ("Key", "a\nb"), ("Key", "a=b"), ("Key", " ")]
        {
            assert!(
                matches!(conf_text(&[setting(key, value)]), Err(LabError::Invalid { .. })),
                "{key:?}={value:?} accepted"
            );
        }
    }
}
