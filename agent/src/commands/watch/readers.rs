//! One task per ring buffer, all feeding one bounded channel. A full channel stops the readers,
//! the rings then fill, and the kernel counts what it cannot queue: losses stay visible instead
//! of growing memory without bound. On stop each reader drains its ring before exiting, so events
//! already queued in the kernel are still reported.
use aya::maps::{MapData, RingBuf};
use reach_common::{event::SockEvent, net::PacketEvent};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
    task::JoinSet,
};

use crate::probes::{packet_event, sock_event};

/// Longest delay before a queued event is read when the kernel did not wake the reader.
const POLL: std::time::Duration = std::time::Duration::from_millis(50);

pub enum Msg {
    Sock(SockEvent),
    Packet(PacketEvent),
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

/// Spawns a reader for `ring` onto `set`.
pub fn spawn(
    set: &mut JoinSet<anyhow::Result<()>>,
    ring: RingBuf<MapData>,
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
                    for msg in drain(fd.get_mut(), kind) {
                        if tx.send(msg).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                guard = fd.readable_mut() => {
                    let mut guard = guard?;
                    let batch = drain(guard.get_inner_mut(), kind);
                    guard.clear_ready();
                    for msg in batch {
                        if tx.send(msg).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                _ = stop.changed() => {
                    for msg in drain(fd.get_mut(), kind) {
                        if tx.send(msg).await.is_err() {
                            break;
                        }
                    }
                    return Ok(());
                }
            }
        }
    });
    Ok(())
}

/// Copies out what is queued now (items are released as they are read).
fn drain(ring: &mut RingBuf<MapData>, kind: Kind) -> Vec<Msg> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if let Some(msg) = decode(kind, &item) {
            out.push(msg);
        }
    }
    out
}
