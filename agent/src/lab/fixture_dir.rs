//! The firewalld fixture's private directory: what firewalld sees as /etc/firewalld, /run and
//! /var/log, plus the private bus's files and the daemons' logs.
//!
//! It lives in the host's temporary directory (so tests and humans can inspect it) under a lab
//! name, so [`super::clean_stale`] removes it after a killed run.
use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use super::{
    dbus::{self, BusPaths},
    error::{LabError, Result},
    name::LabName,
};

/// The host's firewalld configuration, copied into each fixture.
pub(crate) const ETC_FIREWALLD: &str = "/etc/firewalld";

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

/// Fills the private directory: a copy of /etc/firewalld (with `conf` applied), empty /run
/// and /var/log, the bus configuration.
pub(crate) fn prepare(dir: &Path, conf: &[(String, String)]) -> Result<Layout> {
    let layout = Layout {
        etc: dir.join("etc"),
        run: dir.join("run"),
        log: dir.join("log"),
        firewalld_log: dir.join("firewalld.log"),
        bus: BusPaths::new(dir),
    };
    copy_tree(Path::new(ETC_FIREWALLD), &layout.etc)?;
    set_conf(&layout.etc.join("firewalld.conf"), conf)?;
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

/// Sets `KEY=VALUE` lines of a firewalld.conf, appending keys it lacks.
fn set_conf(path: &Path, settings: &[(String, String)]) -> Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    let mut text = fs::read_to_string(path)
        .map_err(|e| LabError::io(format!("reading {}", path.display()), e))?;
    for (key, value) in settings {
        if key.is_empty()
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || value.contains('\n')
        {
            return Err(LabError::Invalid {
                what: "firewalld.conf setting",
                detail: format!("{key}={value:?}"),
            });
        }
        let line = format!("{key}={value}");
        let mut found = false;
        text = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with(&format!("{key}=")) {
                    found = true;
                    line.clone()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        text.push('\n');
        if !found {
            text.push_str(&line);
            text.push('\n');
        }
    }
    fs::write(path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

/// Recursive copy keeping permissions and symlinks.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let io = |what: &str, p: &Path| {
        let what = format!("{what} {}", p.display());
        move |e| LabError::io(what, e)
    };
    let meta = fs::symlink_metadata(src).map_err(io("reading", src))?;
    fs::create_dir(dst).map_err(io("creating", dst))?;
    fs::set_permissions(dst, meta.permissions()).map_err(io("setting permissions of", dst))?;
    for entry in fs::read_dir(src).map_err(io("listing", src))? {
        let entry = entry.map_err(io("listing", src))?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type().map_err(io("reading", &from))?;
        if kind.is_dir() {
            copy_tree(&from, &to)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&from).map_err(io("reading", &from))?;
            symlink(&target, &to).map_err(io("creating", &to))?;
        } else if kind.is_file() {
            fs::copy(&from, &to).map_err(io("copying", &from))?;
        }
    }
    Ok(())
}
