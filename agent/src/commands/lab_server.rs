//! `reach lab-server` (hidden): the demo server `reach lab` runs inside its namespaces.
//!
//! A real listener whose every property matters to the diagnosis is under the lab's control:
//! the address it binds (127.0.0.1 or 0.0.0.0), its exact listen backlog and whether it accepts
//! at all. It names itself `demo-server`, so reach's evidence reads "pid N (demo-server)".
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
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt::ReuseAddr,
};

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
}

/// Listens, says `ready <pid>`, then accepts (closing each connection at once) or just waits,
/// until stdin reaches EOF.
pub async fn run(args: LabServerArgs) -> anyhow::Result<ExitCode> {
    // This runs on the main thread (block_on), whose name is the process's comm in /proc and
    // in sock_diag's owner lookup; set before binding so the bind event carries it too.
    set_process_name(PROCESS_NAME);
    let listener = listen_exactly(args.listen, args.backlog)
        .with_context(|| format!("listening on {}", args.listen))?;

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

/// socket + SO_REUSEADDR (as Go's net.Listen does) + bind + listen(backlog): std's
/// TcpListener would pick the backlog itself, and the overflow scenario needs it exact.
fn listen_exactly(addr: SocketAddr, backlog: i32) -> anyhow::Result<TcpListener> {
    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).context("socket()")?;
    setsockopt(&fd, ReuseAddr, &true).context("SO_REUSEADDR")?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrStorage::from(addr)).context("bind()")?;
    let backlog = Backlog::new(backlog).with_context(|| format!("backlog {backlog}"))?;
    listen(&fd, backlog).context("listen()")?;
    Ok(TcpListener::from(fd))
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
