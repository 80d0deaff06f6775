//! A private apt instance: its own sources, package lists, cache and an empty dpkg status, all
//! under one directory and selected through `APT_CONFIG`. It only ever downloads (`apt-get
//! download`, no installs), so the machine's apt sources, lists and dpkg database are never
//! touched, and it sees every Debian release we take kernels from at once.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::tools::{self, APT_CACHE, APT_GET};

const MIRROR: &str = "http://deb.debian.org/debian";
/// bookworm: 6.1; trixie: 6.12; trixie-backports: the newest kernels (6.16 … 7.x).
const SUITES: [&str; 3] = ["bookworm", "trixie", "trixie-backports"];
/// Debian's archive keyring; the machine's copy carries the trixie keys that also sign
/// trixie-backports.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

pub struct Apt {
    config: PathBuf,
}

impl Apt {
    /// Lays out (or reuses) the private apt tree under `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        if !Path::new(KEYRING).is_file() {
            bail!("{KEYRING} is missing: install the Debian package debian-archive-keyring");
        }
        let etc = dir.join("etc");
        let state = dir.join("state");
        // apt warns about (or fails on) missing directories, so create every one it may read.
        for sub in [
            etc.join("apt.conf.d"),
            etc.join("preferences.d"),
            etc.join("sources.list.d"),
            etc.join("trusted.gpg.d"),
            state.join("lists/partial"),
            dir.join("cache/archives/partial"),
            dir.join("log"),
        ] {
            fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
        }
        write(&state.join("status"), "")?;
        let sources: String = SUITES
            .iter()
            .map(|suite| format!("deb [signed-by={KEYRING}] {MIRROR} {suite} main\n"))
            .collect();
        write(&etc.join("sources.list"), &sources)?;

        let quoted = |p: &Path| -> Result<String> {
            let s = p.to_str().with_context(|| format!("{} is not UTF-8", p.display()))?;
            if s.contains('"') {
                bail!("{s} contains a double quote, which apt.conf cannot express");
            }
            Ok(format!("\"{s}/\""))
        };
        // APT_CONFIG is read before /etc/apt/apt.conf.d, and redirecting Dir::Etc makes apt
        // read our (empty) apt.conf.d instead of the machine's: no appstream, proxy or hook
        // settings leak in. The sandbox user is root because `_apt` cannot write into the
        // invoking user's directories. A stalled mirror fails in bounded time.
        let config = format!(
            "Dir::Etc {etc};\n\
             Dir::State {state};\n\
             Dir::State::status \"status\";\n\
             Dir::Cache {cache};\n\
             Dir::Log {log};\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; }};\n\
             Acquire::Languages \"none\";\n\
             APT::Sandbox::User \"root\";\n\
             Acquire::http::Timeout \"30\";\n\
             Acquire::Retries \"3\";\n",
            etc = quoted(&etc)?,
            state = quoted(&state)?,
            cache = quoted(&dir.join("cache"))?,
            log = quoted(&dir.join("log"))?,
        );
        let config_path = dir.join("apt.conf");
        write(&config_path, &config)?;
        Ok(Self { config: config_path })
    }

    fn command(&self, tool: tools::Tool) -> Result<Command> {
        let mut command = tool.command()?;
        command.env("APT_CONFIG", &self.config).env("LC_ALL", "C");
        Ok(command)
    }

    /// Fetches the current package lists of all suites.
    pub fn update(&self) -> Result<()> {
        tools::output(self.command(APT_GET)?.args(["-q", "update"]))
            .with_context(|| format!("updating the package lists from {MIRROR}"))?;
        Ok(())
    }

    /// Names of the real (non-virtual) packages whose name matches the POSIX extended `regex`.
    pub fn search_names(&self, regex: &str) -> Result<Vec<String>> {
        let text =
            tools::output_text(self.command(APT_CACHE)?.args(["search", "--names-only", regex]))?;
        Ok(text.lines().filter_map(|line| line.split(" - ").next()).map(str::to_owned).collect())
    }

    /// The names in the candidate version's Depends (first alternative of each, no versions).
    pub fn depends(&self, package: &str) -> Result<Vec<String>> {
        let text = tools::output_text(self.command(APT_CACHE)?.args([
            "show",
            "--no-all-versions",
            package,
        ]))?;
        let Some(field) = text.lines().find_map(|l| l.strip_prefix("Depends:")) else {
            return Ok(Vec::new());
        };
        Ok(field
            .split(',')
            .filter_map(|alternatives| alternatives.split('|').next())
            .filter_map(|dep| dep.split_whitespace().next())
            .map(str::to_owned)
            .collect())
    }

    /// Whether `package` can be downloaded (has a candidate version; virtual packages do not).
    pub fn has_candidate(&self, package: &str) -> Result<bool> {
        let text = tools::output_text(self.command(APT_CACHE)?.args(["policy", package]))?;
        Ok(text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Candidate:"))
            .any(|candidate| candidate.trim() != "(none)"))
    }

    /// Downloads the candidate `.deb`s of `packages` into `dir`.
    pub fn download(&self, packages: &[String], dir: &Path) -> Result<()> {
        tools::output(
            self.command(APT_GET)?.args(["-q", "download"]).args(packages).current_dir(dir),
        )
        .with_context(|| format!("downloading {}", packages.join(" ")))?;
        Ok(())
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
