//! One task per ring buffer, all feeding one bounded channel. A full channel stops the readers,
//! the rings then fill, and the kernel counts what it cannot queue: losses stay visible instead
//! of growing memory without bound. On stop each reader drains its ring before exiting, so events
//! already queued in the kernel are still reported. After each drain a reader says when it
//! started it ([`Msg::Drained`]): the reorder buffer releases an observation only once every
//! ring was drained past it.
use aya::maps::{MapData, RingBuf};
use reach_common::{event::SockEvent, net::PacketEvent};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
    task::JoinSet,
};

use crate::{
    firewall::{
        trace::{Assembler, PacketTrace},
        trace_listener::TraceListener,
    },
    output::time::boot_ns,
    probes::{packet_event, sock_event},
};

/// Longest delay before a queued event is read when the kernel did not wake the reader.
const POLL: std::time::Duration = std::time::Duration::from_millis(50);

pub enum Msg {
    Sock(SockEvent),
    Packet(PacketEvent),
    /// A packet's walk through nftables in a watched namespace (inode).
    Trace(u64, PacketTrace),
    /// Ring `.0` was drained from boot-time `.1` on: its events from before were sent ahead.
    Drained(usize, u64),
    /// The nftables ruleset of a watched namespace (inode) changed (NFT_MSG_NEWGEN).
    RulesetChanged(u64),
    /// The interfaces of a watched namespace (inode) changed.
    Link(u64, super::links::LinkChange),
}

/// Spawns a blocking reader of nftables traces for the namespace `netns` (inode); it assembles
/// each packet's messages and sends finished walks (a drop ends one at once; otherwise the walk
/// is sent when no message came for a receive timeout).
pub fn spawn_trace(
    set: &mut JoinSet<anyhow::Result<()>>,
    listener: TraceListener,
    netns: u64,
    tx: mpsc::Sender<Msg>,
    stop: watch::Receiver<bool>,
) {
    set.spawn_blocking(move || {
        let mut asm = Assembler::new(4096);
        loop {
            let got = listener.recv()?;
            let idle = got.traces.is_empty() && !got.ruleset_changed;
            if got.overrun {
                tracing::warn!(
                    "nftables notifications of netns {netns} were lost (receive buffer overrun)"
                );
            }
            for ev in got.traces {
                if let Some(t) = asm.push(ev)
                    && tx.blocking_send(Msg::Trace(netns, t)).is_err()
                {
                    return Ok(());
                }
            }
            if got.ruleset_changed && tx.blocking_send(Msg::RulesetChanged(netns)).is_err() {
                return Ok(());
            }
            // Accepted packets never get a closing "drop": flush open walks when quiet.
            if idle {
                for t in asm.drain() {
                    if tx.blocking_send(Msg::Trace(netns, t)).is_err() {
                        return Ok(());
                    }
                }
                if *stop.borrow() {
                    return Ok(());
                }
            }
        }
    });
}

#[derive(Clone, Copy)]
pub enum Kind {
    Sock,
    Packet,
}

fn decode(kind: Kind, bytes: &[u8]) -> Option<Msg> {
    match kind {
        Kind::Sock => sock_event::parse(bytes).map(Msg::Sock),
        Kind::Packet => packet_event::parse(bytes).map(Msg::Packet),
    }
}

/// Spawns a reader for `ring` onto `set`; `id` names it in its [`Msg::Drained`] reports.
pub fn spawn(
    set: &mut JoinSet<anyhow::Result<()>>,
    ring: RingBuf<MapData>,
    id: usize,
    kind: Kind,
    tx: mpsc::Sender<Msg>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // SAFETY: the RingBuf owns its map fd for its whole life inside the AsyncFd and always
    // reports that same fd.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("polling a ring buffer: {e}"))?;
    set.spawn(async move {
        // The packet programs wake readers only once a backlog builds up (a wake-up costs more
        // than an event); this timer bounds the delivery delay of sparse events.
        let mut poll = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    let batch = drain(fd.get_mut(), id, kind);
                    if send_all(&tx, batch).await.is_err() {
                        return Ok(());
                    }
                }
                guard = fd.readable_mut() => {
                    let mut guard = guard?;
                    let batch = drain(guard.get_inner_mut(), id, kind);
                    guard.clear_ready();
                    if send_all(&tx, batch).await.is_err() {
                        return Ok(());
                    }
                }
                _ = stop.changed() => {
                    let _ = send_all(&tx, drain(fd.get_mut(), id, kind)).await;
                    return Ok(());
                }
            }
        }
    });
    Ok(())
}

/// Copies out what is queued now (items are released as they are read), followed by the
/// drain's start time. Taken before reading: an event stamped earlier was already queued (up to
/// the reorder buffer's submit slack), so this drain reads it.
fn drain(ring: &mut RingBuf<MapData>, id: usize, kind: Kind) -> Vec<Msg> {
    let started = boot_ns();
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if let Some(msg) = decode(kind, &item) {
            out.push(msg);
        }
    }
    out.push(Msg::Drained(id, started));
    out
}

/// Sends in order; Err once the session stopped listening.
async fn send_all(tx: &mpsc::Sender<Msg>, batch: Vec<Msg>) -> Result<(), ()> {
    for msg in batch {
        tx.send(msg).await.map_err(|_| ())?;
    }
    Ok(())
}
