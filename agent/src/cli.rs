//! The `reach` command line.
use clap::{Parser, Subcommand};

use crate::commands::{
    agent::AgentArgs, doctor::DoctorArgs, lab::LabArgs, lab_server::LabServerArgs,
    listeners::ListenersArgs, predict::PredictArgs, watch::WatchArgs, why::WhyArgs,
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
    /// What it costs: `--log info` prints each start-up phase with its time and the resident
    /// memory after it; BENCHMARKS.md has the per-packet cost, the throughput next to tcpdump
    /// and bpftrace, and a SYN flood in which every SYN is accounted for.
    ///
    /// Exit codes: 0 stopped normally; 1 attach or runtime error; 2 bad usage (unknown
    /// namespace, bad duration); 3 missing privileges.
    Watch(WatchArgs),
    /// Every TCP listener and bound UDP socket, grouped by network namespace, with owners,
    /// backlog, and the families and addresses each can be reached on ("IPv4 loopback only:
    /// not ::1, not from other hosts", "IPv4 + IPv6, every address", "only via eth0").
    ///
    /// Exit codes: 0 ok; 2 unknown namespace; 3 missing privileges.
    Listeners(ListenersArgs),
    /// What firewalld would do with a client's SYN, before any client tries: the zone (by source,
    /// interface or default), the deciding port, service, rich rule or target, and the fix.
    ///
    /// Exit codes: 0 firewalld would accept; 4 it would reject or drop; 1 firewalld's
    /// configuration could not be read (not running, no D-Bus); 2 bad usage.
    Predict(PredictArgs),
    /// The built-in demo: every failure class of the story, reproduced and diagnosed for real.
    ///
    /// It builds throwaway network namespaces: a server (srv0, 10.77.0.1) and a client (cli0,
    /// 10.77.0.2) over a veth pair, with a real firewalld in the server namespace when
    /// installed. Then, one scenario at a time, each on its own port (8081-8095): it starts a
    /// demo server ("demo-server"), configures firewalld (undone afterwards), starts
    /// `reach why 10.77.0.1:PORT --netns <server> --json`, connects from the client namespace
    /// (or, where the story says so, from the server's own) and records what the client saw
    /// and the verdict:
    ///
    ///   loopback-only bind        server on 127.0.0.1              → loopback_only_bind
    ///   server in another netns   server in a third namespace      → listener_in_other_netns
    ///   firewalld target DROP     zone public's target is DROP     → firewall_drop
    ///   firewalld default reject  port not opened in zone public   → firewall_reject
    ///   rich rule reject          rich rule rejecting the client   → firewall_reject
    ///   no listener               nothing listens                  → no_listener
    ///   listen overflow           backlog 1, accept queue full     → listen_overflow
    ///   reachable                 server on 0.0.0.0, port open     → reachable
    ///   client dials ::1          localhost's ::1, server on 127.* → family_mismatch
    ///   v6-only listener          [::] with IPV6_V6ONLY, IPv4 dial → family_mismatch
    ///   address mismatch          server on the host's other addr  → address_mismatch
    ///   interface mismatch        bound to lo (SO_BINDTODEVICE)    → interface_mismatch
    ///   reply dropped             an output rule drops the SYN-ACK → reply_dropped
    ///   published port, app on    DNAT (Docker's -p) to an app     → loopback_only_bind
    ///     loopback                namespace whose app is on 127.*
    ///   service, dead endpoint    kube-proxy's chains, the chosen  → no_listener
    ///                             endpoint has no listener
    ///
    /// Without firewalld (or with --no-firewalld) the three firewalld scenarios are not run.
    /// With --docker-root (`cargo xtask lab` passes it) the published port is a real
    /// `docker run -p 8094:80`, diagnosed in the container, named as Docker names it.
    /// It prints each diagnosis in short, then a table scenario → client saw → verdict → fix,
    /// and leaves nothing behind (namespaces, servers, firewalld, probes); leftovers of a
    /// killed run are removed first. It takes about 15 seconds.
    ///
    /// Exit codes: 0 every scenario run got its expected verdict; 1 some did not, or the lab
    /// could not be built; 3 missing privileges; 130 interrupted (after tearing down).
    #[command(verbatim_doc_comment)]
    Lab(LabArgs),
    /// The demo server of `reach lab` (internal).
    #[command(hide = true)]
    LabServer(LabServerArgs),
    /// Why can't the client reach TARGET? One diagnosis with the evidence and the fix.
    ///
    /// TARGET is what the client connects to: PORT, ADDR:PORT, [IPV6]:PORT or NAME:PORT. A NAME
    /// is resolved before anything is attached, as the client's libc does it (getaddrinfo with
    /// AI_ADDRCONFIG, inside --netns; -4/-6 restrict the family): every address is listed in
    /// the order a client tries them with whether a listener takes it, and attempts to any of
    /// them are watched.
    ///
    /// reach reads the listeners of every network namespace and firewalld's configuration,
    /// attaches its probes for that port (announced on stderr, all detached before it prints),
    /// then waits up to --timeout for the client's attempt — "waiting for a SYN ... — try
    /// connecting now". It follows that SYN: the interface it arrived on, the nftables rule
    /// that decided it, the kernel's drop reason, the server's answer. With --timeout 0 it
    /// predicts instead.
    ///
    /// Output: the SYN's path (client → interface → firewall → socket) with the failing hop
    /// marked, the evidence, and the fix; on WSL2, what NAT or mirrored networking changes.
    ///
    /// Each listener on the port in the SYN's namespace is judged as the kernel's socket lookup
    /// does: family and IPV6_V6ONLY, exact or wildcard address, SO_BINDTODEVICE.
    ///
    /// A published port (a DNAT rule: Docker's -p, a Kubernetes Service, a firewalld
    /// forward-port) is followed: conntrack says where the connection went, and the namespace
    /// that owns that address is diagnosed with the translated address and port (the path
    /// gains a nat hop; the Service, container or forward-port is named).
    ///
    /// Exit codes (the verdict class): 0 reachable; 10 loopback_only_bind;
    /// 11 listener_in_other_netns; 12 no_listener; 13 firewall_drop; 14 firewall_reject;
    /// 15 other_netfilter_drop; 16 listen_overflow; 17 no_syn_seen; 18 kernel_drop;
    /// 19 family_mismatch (an IPv4 listener and an IPv6 client, or the reverse);
    /// 20 address_mismatch (bound to another address of this host than the one dialed);
    /// 21 interface_mismatch (bound to another interface than the SYN's: SO_BINDTODEVICE);
    /// 22 reply_dropped (the server answered; its SYN-ACK or RST died on the way out);
    /// 23 netns_gone (the server's namespace went away while reach waited, before any SYN);
    /// 24 events_lost (no SYN seen, but SYN events were lost or suppressed: cannot tell).
    /// Errors: 1 runtime error; 2 bad usage (bad TARGET, a NAME that does not resolve or has no
    /// address of the -4/-6 family, unknown namespace or interface);
    /// 3 missing privileges.
    ///
    /// Examples:
    ///   reach why 8080                      # anything to port 8080 on the host
    ///   reach why 172.20.1.5:8080 --iface eth0
    ///   reach why localhost:8080            # every address localhost resolves to
    ///   reach why -4 myhost.lan:8080        # its IPv4 addresses only
    ///   reach why 8080 --netns myapp --timeout 60
    ///   reach why 8080 --timeout 0          # predict, attach nothing
    ///   reach why 30080                     # a NodePort: diagnosed in the pod it is sent to
    #[command(verbatim_doc_comment)]
    Why(WhyArgs),
    /// The always-on fleet mode: every network namespace, Prometheus metrics, failed attempts.
    ///
    /// Runs until SIGTERM or Ctrl-C, one per node (a Kubernetes DaemonSet with host network and
    /// PID namespace and capabilities BPF, PERFMON, NET_ADMIN, SYS_ADMIN and SYS_PTRACE, not
    /// privileged: deploy/ in reach's repository holds the chart and manifests). It watches the host and every network namespace as it
    /// appears and disappears (pods come and go), every interface as it appears, and never
    /// changes a packet's fate. Each observation is labelled with its namespace and, where the
    /// node's container runtime names it, its pod.
    ///
    /// Metrics (Prometheus text on --metrics, default 127.0.0.1:9464/metrics):
    ///   reach_syn_total                        SYNs arriving in a namespace
    ///   reach_connection_attempts_total        settled attempts by outcome
    ///   reach_failed_connection_attempts_total failed attempts by verdict class (as `reach why`)
    ///   reach_drops_total                      kernel drops of TCP packets by drop reason
    ///   reach_firewall_verdicts_total          nftables/firewalld decisions (--trace-port)
    ///   reach_listen_overflows_total           SYNs refused by a full accept queue
    ///   reach_unreachable_listeners            listeners some clients can never reach:
    ///                                          loopback_only, v6only, device_bound
    ///   reach_events_lost_total, reach_events_suppressed_total
    ///                                          what the kernel could not queue, or the rate
    ///                                          bound held back
    ///   reach_namespace_interfaces             interfaces tapped per namespace (and its pod)
    ///   reach_watched_namespaces, reach_watched_interfaces
    /// Series of a namespace or pod that is gone are removed after --series-grace; at most
    /// --max-label-sets label sets per metric, the rest counted as "other".
    ///
    /// /healthz answers 200 while the agent runs; /readyz 200 once everything is attached.
    /// With --json, one line per failed attempt on stdout: client, server, pod, outcome, drop
    /// reason, nftables walk (--trace-port), verdict, evidence, fix, and the `reach why`
    /// command that asks more; also unreachable_listener and failed_bind lines, each with the
    /// process's pod and container.
    ///
    /// Pods are named from the container runtime over the CRI (--cri-socket; default: the
    /// first of containerd's, CRI-O's and cri-dockerd's sockets that answers), else from
    /// kubelet's cgroup paths (pod UIDs only).
    ///
    /// To ask about one port from the agent pod of the server's node:
    ///   kubectl -n reach get pods -o name --field-selector spec.nodeName=NODE
    ///   kubectl -n reach exec POD -- /reach why 10.0.3.7:8080 --netns cni-…
    ///
    /// Exit codes: 0 stopped (SIGTERM, Ctrl-C, --duration); 1 attach or runtime error;
    /// 2 bad usage (malformed or unusable --metrics address, bad durations); 3 missing
    /// privileges.
    #[command(verbatim_doc_comment)]
    Agent(AgentArgs),
}
