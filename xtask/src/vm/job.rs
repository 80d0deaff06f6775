//! The `job` share: a host directory the guest mounts read-write at /.vm/job. The host writes
//! `run.sh` (the command with its working directory and environment); the guest's init writes
//! `output` (the command's stdout+stderr) and finally `status` (its exit code).
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

/// The guest's PATH unless the caller passes one: Debian's root PATH.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Output beyond this is cut (from the front): a runaway command must not exhaust the host.
const MAX_OUTPUT: u64 = 64 << 20;

pub fn write_script(
    dir: &Path,
    command: &[String],
    cwd: &Path,
    env: &[(String, String)],
) -> Result<()> {
    ensure!(!command.is_empty(), "no guest command given");
    ensure!(cwd.is_absolute(), "the guest working directory {} is not absolute", cwd.display());
    let cwd = cwd.to_str().with_context(|| format!("{} is not UTF-8", cwd.display()))?;
    for (key, _) in env {
        ensure!(
            !key.is_empty() && !key.contains('='),
            "environment variable name {key:?} is empty or contains '='"
        );
    }
    let mut vars = vec![format!("PATH={PATH}"), "HOME=/root".to_owned()];
    vars.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    // `env -i`: the command sees exactly these variables, not init's.
    let words: Vec<String> = ["/.vm/bin/busybox", "env", "-i"]
        .into_iter()
        .map(str::to_owned)
        .chain(vars)
        .chain(command.iter().cloned())
        .map(|w| quote(&w))
        .collect::<Result<_>>()?;
    let script = format!(
        "# Written by xtask's vm module; run by the guest's init.\n\
         cd {} || exit 126\n\
         exec {}\n",
        quote(cwd)?,
        words.join(" ")
    );
    let path = dir.join("run.sh");
    fs::write(&path, script).with_context(|| format!("writing {}", path.display()))
}

/// Single-quotes a word for sh.
fn quote(word: &str) -> Result<String> {
    ensure!(!word.contains('\0'), "{word:?} contains a NUL byte, which no command line can carry");
    Ok(format!("'{}'", word.replace('\'', r"'\''")))
}

/// The exit code the guest reported, or `None` if it never got that far.
pub fn status(dir: &Path) -> Result<Option<i32>> {
    let path = dir.join("status");
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse() {
            Ok(code) => Ok(Some(code)),
            Err(_) => bail!("{} holds {text:?}, not an exit code", path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The command's stdout+stderr (empty if it never ran).
pub fn output(dir: &Path) -> Result<String> {
    read_tail(&dir.join("output"), MAX_OUTPUT)
}

/// The last `limit` bytes of a file as (lossy) UTF-8; empty if the file does not exist.
pub fn read_tail(path: &Path, limit: u64) -> Result<String> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let len = file.metadata().with_context(|| format!("reading {}", path.display()))?.len();
    let mut bytes = Vec::new();
    if len > limit {
        file.seek(SeekFrom::Start(len - limit))
            .with_context(|| format!("reading {}", path.display()))?;
        bytes.extend_from_slice(format!("[… {} earlier bytes cut …]\n", len - limit).as_bytes());
    }
    file.take(limit)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_sh() {
        assert_eq!(quote("a b").unwrap(), "'a b'");
        assert_eq!(quote("it's").unwrap(), r"'it'\''s'");
        assert!(quote("a\0b").is_err());
    }
}
