//! The `reach` command line.
use clap::{Parser, Subcommand};

use crate::commands::{
    doctor::DoctorArgs, lab::LabArgs, listeners::ListenersArgs, predict::PredictArgs,
    watch::WatchArgs,
};

const ABOUT: &str = "Why can't that client reach my server, and where exactly did its packets die?";

const LONG_ABOUT: &str = "\
reach watches binds and listens per network namespace, the client's SYNs on the ingress \
interface and the kernel's packet drops with their reasons, joins them with firewalld/nftables \
verdicts, and prints a diagnosis with the fix.

It needs root (or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN). Start with
`reach doctor` to see what this kernel allows and how reach will attach.";

#[derive(Debug, Parser)]
#[command(name = "reach", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// Log verbosity for diagnostics on stderr (error, warn, info, debug, trace); RUST_LOG wins.
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe the kernel: BTF, lockdown, kprobes, fentry, tp_btf, tracepoints, cgroup hooks,
    /// TC/TCX, ring buffer, privileges, WSL2, firewalld per namespace; then the attach plan.
    ///
    /// Every mechanism is tested by really loading and attaching a tiny program (TC in a
    /// throwaway network namespace) and detaching it again; nothing is left behind.
    ///
    /// Exit codes: 0 all parts of the plan usable; 1 internal error; 2 bad usage;
    /// 3 missing privileges (the message says which capability and how to run it);
    /// 4 some part (bind, listen, ingress, drop) has no usable mechanism.
    Doctor(DoctorArgs),
    /// Stream binds, listens and listener closes per network namespace as they happen.
    ///
    /// Each line names the process, namespace, address and port asked for and bound, the
    /// result (ok, EADDRINUSE, ...) and options that change reachability (SO_REUSEADDR,
    /// SO_REUSEPORT, IP_FREEBIND, SO_BINDTODEVICE). Runs until Ctrl-C, SIGTERM or --duration;
    /// detaches everything on exit.
    ///
    /// Exit codes: 0 stopped normally; 1 attach or runtime error; 2 bad usage (unknown
    /// namespace, bad duration); 3 missing privileges.
    Watch(WatchArgs),
    /// Every TCP listener and bound UDP socket, grouped by network namespace, with owners,
    /// backlog, and a warning on those unreachable from outside (loopback-only, IPv6-only,
    /// bound to one interface).
    ///
    /// Exit codes: 0 ok; 2 unknown namespace; 3 missing privileges.
    Listeners(ListenersArgs),
    /// What firewalld would do with a client's SYN, before any client tries: the zone (by source,
    /// interface or default), the deciding port, service, rich rule or target, and the fix.
    ///
    /// Exit codes: 0 firewalld would accept; 4 it would reject or drop; 1 firewalld's
    /// configuration could not be read (not running, no D-Bus); 2 bad usage.
    Predict(PredictArgs),
    /// The built-in demo in throwaway network namespaces: a server and a client namespace over
    /// a veth pair, a real firewalld in the server namespace (when installed), and `reach
    /// doctor` run inside it. Everything is removed before exit, leftovers of a killed run first.
    ///
    /// Exit codes: those of `reach doctor`; 3 missing privileges; 130 interrupted.
    Lab(LabArgs),
}
