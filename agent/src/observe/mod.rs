//! The attach-and-observe engine every long-running command shares (`reach watch`, `reach why`,
//! and the fleet agent next): attaches the probes, classifiers, drop tracer and nftables trace
//! a `SessionOptions` asks for (`session.rs`), reads every ring on a task of its own
//! (`readers.rs`), puts the observations back in kernel-time order (`reorder.rs`), polls full
//! listen queues (`overflow.rs`), and hands each observation to the caller's `Sink`.
pub mod changes;
pub mod links;
pub mod netfilter_rule;
mod overflow;
mod readers;
mod reorder;
pub mod session;

pub use session::{NoSuchInterface, Session, SessionOptions, TapChange, Watched};

/// Sleeps until `deadline`, or forever without one (a `select!` arm for `--duration`).
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
