//! Starting `reach lab-server` inside a lab namespace and knowing when it listens.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::mpsc,
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::scenario::Bind;
use crate::{
    commands::lab_server::READY,
    lab::{LabChild, NetNsFd},
};

/// How long a demo server may take to say it listens (it starts in milliseconds).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running demo server, killed when dropped. Its stdin is a pipe held here, so it also exits
/// if this process dies without dropping anything.
#[derive(Debug)]
pub struct DemoServer {
    child: LabChild,
    pub listen: SocketAddr,
}

impl DemoServer {
    /// Starts `exe lab-server --listen ADDR:PORT --backlog N [--v6only B] [--device IFACE]
    /// [--no-accept]` in `ns` and waits for its `ready <pid>` line.
    pub fn start(
        exe: &Path,
        ns: &NetNsFd,
        bind: Bind,
        port: u16,
        backlog: i32,
        accept: bool,
    ) -> anyhow::Result<Self> {
        let listen = SocketAddr::new(bind.addr, port);
        let mut cmd = ns.command(exe);
        cmd.args([
            "lab-server",
            "--listen",
            &listen.to_string(),
            "--backlog",
            &backlog.to_string(),
        ]);
        if let Some(v6only) = bind.v6only {
            cmd.args(["--v6only", &v6only.to_string()]);
        }
        if let Some(dev) = bind.device {
            cmd.args(["--device", dev]);
        }
        if !accept {
            cmd.arg("--no-accept");
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = LabChild::spawn_tethered(&mut cmd)?;
        let stdout = child.child_mut().stdout.take().context("demo server stdout")?;
        let (tx, rx) = mpsc::channel();
        thread::Builder::new().name("demo-server-ready".into()).spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        })?;
        let line = rx.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        let said = line.split_whitespace().collect::<Vec<_>>();
        if said.first() == Some(&READY) && said.get(1) == Some(&child.pid().to_string().as_str()) {
            return Ok(Self { child, listen });
        }
        // It failed (bind error, …) or hangs: stop it, then its stderr is complete.
        let status = child.kill().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        let mut stderr = String::new();
        if let Some(mut err) = child.child_mut().stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        bail!("demo server on {listen} did not get ready ({status}): {}", stderr.trim())
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }
}
