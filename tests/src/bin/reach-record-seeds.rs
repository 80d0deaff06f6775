//! Records the fuzzers' seed inputs (`fuzz/corpus/<target>/`) from the real thing on this
//! machine: nftables trace datagrams of SYNs traced by reach's own table in a lab namespace
//! (one dropped by a rule, one accepted) and the ruleset-change message, the `.BTF` sections
//! of reach's BPF objects, a slice of /proc/kallsyms, the tracefs formats reach reads, the
//! recorded `nft -j` rulesets of tests/fixtures, and the rich rules the firewalld recordings
//! use. `cargo xtask fuzz --record-seeds` builds and runs it; needs root; commit what it writes
//! (the fuzzers then start from inputs the kernel and tools really produce).
use std::{
    fs,
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use object::{Object as _, ObjectSection as _};
use reach_agent::{
    ebpf_objects,
    firewall::{trace::NFNLGRP_NFTRACE, trace_table::TraceTable},
    kernel::{nfnetlink, pseudofs},
    lab::TwoHosts,
    netns::enter,
};

fn main() -> ExitCode {
    let Some(corpus) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: reach-record-seeds FUZZ_CORPUS_DIR (fuzz/corpus)");
        return ExitCode::from(2);
    };
    match record(&corpus) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reach-record-seeds: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn record(corpus: &Path) -> anyhow::Result<()> {
    let write = |target: &str, name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes).with_context(|| format!("writing {target}/{name}"))
    };
    let n = nft_traces(&write)?;
    println!("nft_trace: {n} datagrams");

    for (obj, bytes) in [
        ("net", ebpf_objects::net()),
        ("probes", ebpf_objects::probes()),
        ("doctor", ebpf_objects::doctor()),
    ] {
        let file = object::File::parse(bytes).context("parsing a BPF object")?;
        let btf = file.section_by_name(".BTF").context("a BPF object without .BTF")?;
        write("btf", &format!("{obj}.btf"), btf.data()?)?;
    }
    println!("btf: 3 objects' .BTF");

    let kallsyms = fs::read_to_string("/proc/kallsyms")?;
    let wanted = ["kfree_skb", "tcp_v4_rcv", "tcp_v6_rcv", "nft_do_chain", "ip_rcv_finish"];
    let slice: Vec<&str> = kallsyms
        .lines()
        .take(200)
        .chain(kallsyms.lines().filter(|l| wanted.iter().any(|w| l.contains(w))))
        .collect();
    ensure!(slice.iter().any(|l| l.contains("kfree_skb")), "no kfree_skb in /proc/kallsyms");
    write("kallsyms", "slice.txt", (slice.join("\n") + "\n").as_bytes())?;
    println!("kallsyms: {} lines", slice.len());

    let tracefs = pseudofs::tracefs().context("tracefs")?;
    for (cat, ev) in [
        ("skb", "kfree_skb"),
        ("sock", "inet_sock_set_state"),
        ("syscalls", "sys_enter_bind"),
        ("syscalls", "sys_exit_bind"),
    ] {
        let text = fs::read(tracefs.path.join("events").join(cat).join(ev).join("format"))?;
        write("tracefs_format", &format!("{ev}.format"), &text)?;
    }
    println!("tracefs_format: 4 formats");

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut rulesets = 0;
    for version in fs::read_dir(&fixtures)?.flatten().filter(|e| e.path().is_dir()) {
        let dir = version.path().join("rulesets");
        let flat = version.path().join("ruleset.json");
        let files: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(d) => d.flatten().map(|e| e.path()).collect(),
            Err(_) => vec![flat],
        };
        for f in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
            let name = format!(
                "{}-{}",
                version.file_name().to_string_lossy(),
                f.file_name().unwrap().to_string_lossy()
            );
            write("nft_json", &name, &fs::read(&f)?)?;
            rulesets += 1;
        }
    }
    ensure!(rulesets > 0, "no recorded rulesets under {}", fixtures.display());
    println!("nft_json: {rulesets} rulesets");

    for (i, rule) in reach_tests::RICH_RULES.iter().enumerate() {
        write("rich_rule", &format!("{i}.txt"), rule.as_bytes())?;
    }
    println!("rich_rule: {} rules", reach_tests::RICH_RULES.len());
    Ok(())
}

/// NFNLGRP_NFTRACE datagrams as the kernel sends them: a SYN to a port a rule drops and one to
/// a port that is accepted, traced by reach's table, plus the NEWGEN of a ruleset change.
/// Writes one seed: (target, file name, bytes).
type Write<'a> = &'a dyn Fn(&str, &str, &[u8]) -> anyhow::Result<()>;

fn nft_traces(write: Write<'_>) -> anyhow::Result<usize> {
    const DROPPED: u16 = 7411;
    const OPEN: u16 = 7412;
    let hosts = TwoHosts::new("seeds")?;
    let fd = enter::in_netns(hosts.server.path(), || {
        nfnetlink::open(1 << (NFNLGRP_NFTRACE - 1) | 1 << (7 - 1))
    })??;
    nfnetlink::set_recv_timeout(&fd, Duration::from_millis(300));
    let table = TraceTable::install(hosts.server.path(), &[DROPPED, OPEN])?;
    reach_tests::nft_drop_rule(&hosts.server, "seedfw", DROPPED);
    let listener = hosts.server.run_in(|| TcpListener::bind((TwoHosts::SERVER_V4, OPEN)))??;
    for port in [DROPPED, OPEN] {
        let to = SocketAddr::from((TwoHosts::SERVER_V4, port));
        let _ = hosts
            .client
            .run_in(move || TcpStream::connect_timeout(&to, Duration::from_millis(500)))?;
    }
    let mut n = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        // SAFETY: buf is a valid buffer of buf.len() bytes.
        let got = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if got <= 0 {
            break;
        }
        write("nft_trace", &format!("{n:03}.bin"), &buf[..got as usize])?;
        n += 1;
    }
    drop((listener, table));
    ensure!(n >= 4, "only {n} trace datagrams came");
    Ok(n)
}
