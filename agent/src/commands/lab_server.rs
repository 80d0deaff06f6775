//! `reach lab-server` (hidden): the demo server `reach lab` runs inside its namespaces.
//!
//! A real listener whose every property matters to the diagnosis is under the lab's control:
//! the address it binds (127.0.0.1, 0.0.0.0, [::], one address of its host), IPV6_V6ONLY,
//! SO_BINDTODEVICE, its exact listen backlog and whether it accepts at all. It names itself `demo-server`, so reach's evidence reads "pid N (demo-server)".
//!
//! It must never outlive the lab: it exits when its stdin reaches EOF — stdin is a pipe from
//! the lab, closed when the lab ends however it ends, SIGKILL included — and SIGTERM keeps its
//! default action (nothing here installs a handler).
use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener},
    process::ExitCode,
    thread,
    time::Duration,
};

use anyhow::Context as _;

use crate::lab::sockets::{ListenSpec, tcp_listen_reusing_addr};

/// The process name every lab server carries (at most 15 bytes: the kernel's comm length).
pub const PROCESS_NAME: &str = "demo-server";

/// First word of the one line printed on stdout once listening: `ready <pid>`.
pub const READY: &str = "ready";

#[derive(Debug, clap::Args)]
pub struct LabServerArgs {
    /// Address to listen on: 127.0.0.1:8081, 0.0.0.0:8081, [::]:8081.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// The listen() backlog, passed to the kernel as is (the accept queue then holds backlog + 1
    /// connections before SYNs are dropped).
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub backlog: i32,
    /// Never accept: connections stay in the accept queue until it is full.
    #[arg(long)]
    pub no_accept: bool,
    /// IPV6_V6ONLY on an IPv6 listener: `true` takes IPv6 only, `false` IPv4 too (v4-mapped).
    /// Default: the namespace's net.ipv6.bindv6only.
    #[arg(long, value_name = "BOOL")]
    pub v6only: Option<bool>,
    /// SO_BINDTODEVICE: take connections arriving on this interface only.
    #[arg(long, value_name = "IFACE")]
    pub device: Option<String>,
}

/// Listens, says `ready <pid>`, then accepts (closing each connection at once) or just waits,
/// until stdin reaches EOF.
pub async fn run(args: LabServerArgs) -> anyhow::Result<ExitCode> {
    // This runs on the main thread (block_on), whose name is the process's comm in /proc and
    // in sock_diag's owner lookup; set before binding so the bind event carries it too.
    set_process_name(PROCESS_NAME);
    let spec = ListenSpec {
        addr: args.listen,
        v6only: args.v6only,
        device: args.device.as_deref(),
        reuseport: false,
        backlog: args.backlog,
    };
    // SO_REUSEADDR as Go's net.Listen sets it; the backlog is passed as is (std's TcpListener
    // would pick it itself, and the overflow scenario needs it exact).
    let listener = TcpListener::from(
        tcp_listen_reusing_addr(&spec).with_context(|| format!("listening on {}", args.listen))?,
    );

    let mut out = io::stdout().lock();
    writeln!(out, "{READY} {}", std::process::id())?;
    out.flush()?;
    drop(out);
    // After `ready`: even with stdin already at EOF, the lab reads the line before we go.
    thread::Builder::new()
        .name("stdin-eof".into())
        .spawn(exit_at_stdin_eof)
        .context("starting the stdin watcher")?;

    if args.no_accept {
        // The accept queue fills and stays full; only EOF on stdin (or a signal) ends this.
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
    loop {
        match listener.accept() {
            Ok((conn, _)) => drop(conn),
            // E.g. EMFILE or ECONNABORTED: keep serving, without spinning.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn set_process_name(name: &str) {
    let mut buf = [0u8; 16];
    for (dst, src) in buf.iter_mut().zip(name.bytes().take(15)) {
        *dst = src;
    }
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from buf.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Blocks until stdin reaches EOF (or fails), then ends the process.
fn exit_at_stdin_eof() {
    let mut stdin = io::stdin().lock();
    let mut buf = [0u8; 256];
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    std::process::exit(0);
}
