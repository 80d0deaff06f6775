//! firewalld's D-Bus view, kept current while a session runs.
//!
//! Reading the view takes dozens of D-Bus calls (every zone, service and policy). A session
//! reads it once, then again only when firewalld says its runtime configuration changed: its
//! `Reloaded` signal (`firewall-cmd --reload`, `--complete-reload`), any other signal of its
//! runtime object (`RichRuleAdded`, `ZoneOfInterfaceChanged`, … — a change without a reload), or
//! its bus name changing owner (the daemon stopped, started, or was replaced). The reads run in
//! a task of their own, so the event loop never waits on the bus; attribution takes whatever
//! view is current, and each change is reported to the session once its view is read.
//!
//! Between a change and the end of the read it triggers, there is no view: a stale one could
//! name a rich rule that the reload removed. Attribution then stands on nftables alone.
use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::{firewalld::FirewalldConfig, firewalld_presence::FIREWALLD_BUS_NAME};

const PATH: &str = "/org/fedoraproject/FirewallD1";
const IFACE_MAIN: &str = "org.fedoraproject.FirewallD1";

/// What happened to firewalld, as the bus told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Another runtime signal of firewalld's (`RichRuleAdded`, `ZoneOfInterfaceChanged`, …):
    /// `firewall-cmd` changed the runtime configuration without a reload.
    Changed,
    /// `Reloaded`: same daemon, new rules (every nftables handle renumbered).
    Reloaded,
    /// Its name gained an owner (a new daemon, or the old one replaced).
    Started,
    /// Its name lost its owner: the daemon exited or was killed.
    Stopped,
}

/// One change and what reading the view after it gave: `{"type":"firewalld", ...}` in
/// `reach watch --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeReport {
    /// The weightiest change since the last read (a reload followed by a rich rule added
    /// before the read ended is reported as the reload).
    pub change: Change,
    /// The D-Bus signal that said so (`Reloaded`, `NameOwnerChanged`, `RichRuleAdded`, …).
    pub signal: String,
    /// The daemon's version, when its view was read.
    pub version: Option<String>,
    /// Whether attribution has firewalld's view again.
    pub view: bool,
    /// Why there is no view (firewalld stopped, the read failed, a stop cut the read short).
    pub error: Option<String>,
    /// D-Bus reads of the whole view so far in this session, the first one included: it grows
    /// with changes, never with traced packets.
    pub reads: u64,
}

/// The view attribution reads: None while firewalld is down or a read is under way.
pub type View = Option<Arc<FirewalldConfig>>;

/// The bookkeeping, without the bus: which read is current, what the view is. Every change
/// drops the view and starts a new generation; a read's result counts only for the generation
/// that asked for it, so a slow read can never put back a view a later change invalidated.
#[derive(Debug, Default)]
pub struct CacheState {
    generation: u64,
    view: View,
    reads: u64,
    /// The change (and its signal) whose read is under way, if any.
    pending: Option<(Change, String)>,
}

/// What the driver must do after a change.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Read the view, tagged with this generation (dropping any read under way).
    Read(u64),
    /// Nothing to read (firewalld is gone): report this now.
    Report(ChangeReport),
}

impl CacheState {
    pub fn view(&self) -> View {
        self.view.clone()
    }

    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// The first read (generation 0) at session start.
    pub fn start(&mut self) -> u64 {
        self.reads += 1;
        self.generation
    }

    /// firewalld changed (`signal` said so): the view is gone until a read of the new
    /// generation succeeds. Returns what to do, and the report of a change whose read a stop
    /// cut short.
    pub fn changed(&mut self, change: Change, signal: &str) -> (Next, Option<ChangeReport>) {
        self.generation += 1;
        self.view = None;
        if change == Change::Stopped {
            let cut_short = self.pending.take().map(|(c, sig)| ChangeReport {
                change: c,
                signal: sig,
                version: None,
                view: false,
                error: Some("firewalld stopped before its configuration was read".into()),
                reads: self.reads,
            });
            let stop = ChangeReport {
                change,
                signal: signal.into(),
                version: None,
                view: false,
                error: Some(format!("{FIREWALLD_BUS_NAME} has no owner")),
                reads: self.reads,
            };
            return (Next::Report(stop), cut_short);
        }
        // Changes before the read ended fold into one report: the weightiest one.
        let merged = match self.pending.take() {
            Some((p, sig)) if p >= change => (p, sig),
            _ => (change, signal.to_string()),
        };
        self.pending = Some(merged);
        self.reads += 1;
        (Next::Read(self.generation), None)
    }

    /// A read of `generation` ended. Returns the report of the change that asked for it; None
    /// when the read is stale (a later change started a newer one) or was the first read.
    pub fn read_done(
        &mut self,
        generation: u64,
        result: anyhow::Result<FirewalldConfig>,
    ) -> Option<ChangeReport> {
        if generation != self.generation {
            return None;
        }
        let (version, error) = match result {
            Ok(config) => {
                let v = config.version.clone();
                self.view = Some(Arc::new(config));
                (Some(v), None)
            }
            Err(e) => {
                self.view = None;
                (None, Some(format!("{e:#}")))
            }
        };
        let (change, signal) = self.pending.take()?;
        Some(ChangeReport {
            change,
            signal,
            view: self.view.is_some(),
            version,
            error,
            reads: self.reads,
        })
    }
}

/// The session's handle on the cache: the current view, and the changes as they are read.
pub struct FirewalldCache {
    view: watch::Receiver<View>,
    pub changes: mpsc::UnboundedReceiver<ChangeReport>,
    task: tokio::task::JoinHandle<()>,
}

/// How the first read went, for the session's announcement.
#[derive(Debug)]
pub struct Started {
    pub version: Option<String>,
    pub error: Option<String>,
}

impl FirewalldCache {
    /// Subscribes to firewalld's changes on `bus` (None: the system bus), then reads the view
    /// once. Subscribing first means no change can fall between the read and the subscription.
    /// Err: no bus to subscribe on (the caller goes on without firewalld's view).
    pub async fn start(bus: Option<String>) -> anyhow::Result<(Self, Started)> {
        let conn = tokio::time::timeout(Duration::from_secs(5), async {
            match bus.as_deref() {
                Some(addr) => zbus::connection::Builder::address(addr)?.build().await,
                None => zbus::Connection::system().await,
            }
        })
        .await
        .map_err(|_| anyhow::anyhow!("timed out connecting to D-Bus"))??;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
        let owners = dbus.receive_name_owner_changed_with_args(&[(0, FIREWALLD_BUS_NAME)]).await?;
        // Every runtime signal of firewalld's object: `Reloaded`, and the zone, policy, ipset
        // and direct signals `firewall-cmd` changes without a reload cause. (Permanent changes
        // signal on the config objects below this path, which this exact path leaves out: they
        // change nothing until a reload.)
        let rule =
            zbus::MatchRule::builder().msg_type(zbus::message::Type::Signal).path(PATH)?.build();
        let signals = zbus::MessageStream::for_match_rule(rule, &conn, Some(256)).await?;

        let mut state = CacheState::default();
        let generation = state.start();
        let first = super::firewalld::read(bus.as_deref()).await;
        tracing::debug!("firewalld: read the D-Bus view (read {})", state.reads());
        let started = match &first {
            Ok(c) => Started { version: Some(c.version.clone()), error: None },
            Err(e) => Started { version: None, error: Some(format!("{e:#}")) },
        };
        state.read_done(generation, first);
        let (view_tx, view) = watch::channel(state.view());
        let (changes_tx, changes) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // The connection lives as long as the streams that need it.
            let _conn = conn;
            let owners = owners
                .filter_map(|s| async move {
                    let args = s.args().ok()?;
                    let change =
                        if args.new_owner().is_some() { Change::Started } else { Change::Stopped };
                    Some((change, "NameOwnerChanged".to_string()))
                })
                .boxed();
            let signals = signals
                .filter_map(|m| async move {
                    let m = m.ok()?;
                    let header = m.header();
                    let member = header.member()?.to_string();
                    let main = header.interface().is_some_and(|i| i.as_str() == IFACE_MAIN);
                    let change = if main && member == "Reloaded" {
                        Change::Reloaded
                    } else {
                        Change::Changed
                    };
                    Some((change, member))
                })
                .boxed();
            drive(state, bus, futures_util::stream::select(owners, signals), view_tx, changes_tx)
                .await;
        });
        Ok((Self { view, changes, task }, started))
    }

    /// The latest view; never waits.
    pub fn view(&self) -> View {
        self.view.borrow().clone()
    }
}

impl Drop for FirewalldCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Read = Pin<Box<dyn Future<Output = anyhow::Result<FirewalldConfig>> + Send>>;

/// Reads of one change's view before its failure is reported.
const READ_ATTEMPTS: u32 = 3;
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One read of the whole view, after `delay`.
fn read(bus: Option<String>, delay: Duration) -> Read {
    Box::pin(async move {
        tokio::time::sleep(delay).await;
        super::firewalld::read(bus.as_deref()).await
    })
}

/// Applies changes as they come; at most one read runs, the newest change's (starting a new
/// read drops the one under way).
async fn drive(
    mut state: CacheState,
    bus: Option<String>,
    mut events: impl futures_util::Stream<Item = (Change, String)> + Unpin,
    view_tx: watch::Sender<View>,
    changes_tx: mpsc::UnboundedSender<ChangeReport>,
) {
    let mut reading: Option<(u64, Read)> = None;
    let mut attempts = 0;
    loop {
        tokio::select! {
            ev = events.next() => {
                // The bus closed (dbus-daemon gone): firewalld is out of reach, as if stopped;
                // nothing will tell when it is back.
                let closed = ev.is_none();
                let (change, signal) =
                    ev.unwrap_or((Change::Stopped, "the D-Bus connection closed".into()));
                let (next, cut_short) = state.changed(change, &signal);
                let _ = view_tx.send(state.view());
                if let Some(r) = cut_short {
                    let _ = changes_tx.send(r);
                }
                match next {
                    Next::Report(r) => {
                        reading = None;
                        let _ = changes_tx.send(r);
                        if closed {
                            tracing::info!("firewalld: {signal}; its view is gone for this run");
                            return;
                        }
                    }
                    Next::Read(generation) => {
                        let n = state.reads();
                        tracing::debug!("firewalld: {signal}; reading the D-Bus view (read {n})");
                        attempts = 1;
                        reading = Some((generation, read(bus.clone(), Duration::ZERO)));
                    }
                }
            }
            result = async { reading.as_mut().expect("guarded").1.as_mut().await }, if reading.is_some() => {
                let (generation, _) = reading.take().expect("guarded");
                // A daemon that just took its name answers only once its start-up ends, which
                // can outlast one read's bounds on a loaded machine: try again a few times
                // (a later change, a stop included, cancels the retry).
                if let Err(e) = &result
                    && attempts < READ_ATTEMPTS
                {
                    attempts += 1;
                    tracing::debug!("firewalld: reading the view failed ({e:#}); attempt {attempts}");
                    reading = Some((generation, read(bus.clone(), RETRY_AFTER)));
                    continue;
                }
                let report = state.read_done(generation, result);
                let _ = view_tx.send(state.view());
                if let Some(r) = report {
                    let _ = changes_tx.send(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(version: &str) -> FirewalldConfig {
        FirewalldConfig {
            version: version.into(),
            state: "RUNNING".into(),
            default_zone: "public".into(),
            zones: Vec::new(),
            policies: Vec::new(),
            netns_inode: None,
        }
    }

    fn started_with(version: &str) -> CacheState {
        let mut s = CacheState::default();
        let g = s.start();
        assert_eq!(s.read_done(g, Ok(config(version))), None, "the first read reports nothing");
        s
    }

    #[test]
    fn a_reload_drops_the_view_until_its_read_ends() {
        let mut s = started_with("1.3.3");
        assert!(s.view().is_some());
        let (next, cut_short) = s.changed(Change::Reloaded, "Reloaded");
        assert_eq!(cut_short, None);
        let Next::Read(g) = next else { panic!("a reload must be read: {next:?}") };
        assert!(s.view().is_none(), "a stale view must not serve the reloaded rules");
        let r = s.read_done(g, Ok(config("1.3.3"))).expect("the reload is reported");
        assert_eq!((r.change, r.view, r.reads), (Change::Reloaded, true, 2));
        assert_eq!((r.version.as_deref(), r.signal.as_str()), (Some("1.3.3"), "Reloaded"));
        assert!(s.view().is_some());
    }

    #[test]
    fn a_read_superseded_by_a_stop_cannot_restore_the_view() {
        let mut s = started_with("1.3.3");
        let (Next::Read(g), _) = s.changed(Change::Reloaded, "Reloaded") else { panic!() };
        let (next, cut_short) = s.changed(Change::Stopped, "NameOwnerChanged");
        let cut_short = cut_short.expect("the reload whose read was cut short is reported");
        assert_eq!((cut_short.change, cut_short.view), (Change::Reloaded, false));
        let Next::Report(stop) = next else { panic!("a stop is not read: {next:?}") };
        assert_eq!((stop.change, stop.view), (Change::Stopped, false));
        // The reload's read ends after the stop: stale, ignored.
        assert_eq!(s.read_done(g, Ok(config("1.3.3"))), None);
        assert!(s.view().is_none(), "the view of a stopped firewalld came back");
    }

    #[test]
    fn changes_before_a_read_ends_fold_into_the_weightiest_and_only_the_last_read_counts() {
        let mut s = started_with("1.3.3");
        let (Next::Read(g1), None) = s.changed(Change::Reloaded, "Reloaded") else { panic!() };
        // A rich rule added while the reload's view is being read: a newer read replaces it.
        let (Next::Read(g2), None) = s.changed(Change::Changed, "RichRuleAdded") else { panic!() };
        assert_ne!(g1, g2);
        let mut older = config("1.3.3");
        older.default_zone = "before-the-rich-rule".into();
        assert_eq!(s.read_done(g1, Ok(older)), None, "the older read must not be used");
        assert!(s.view().is_none());
        let r = s.read_done(g2, Ok(config("1.3.3"))).expect("reported once");
        assert_eq!((r.change, r.signal.as_str()), (Change::Reloaded, "Reloaded"));
        assert_eq!(s.view().unwrap().default_zone, "public");
        // A change alone is reported as itself.
        let (Next::Read(g3), None) = s.changed(Change::Changed, "PortAdded") else { panic!() };
        let r = s.read_done(g3, Ok(config("1.3.3"))).unwrap();
        assert_eq!((r.change, r.signal.as_str(), r.reads), (Change::Changed, "PortAdded", 4));
    }

    #[test]
    fn a_read_failing_while_firewalld_is_down_leaves_no_view_and_says_why() {
        let mut s = started_with("1.3.3");
        s.changed(Change::Stopped, "NameOwnerChanged");
        // The name got an owner again, but the daemon died before answering.
        let (Next::Read(g), None) = s.changed(Change::Started, "NameOwnerChanged") else {
            panic!()
        };
        let r = s
            .read_done(g, Err(anyhow::anyhow!("firewalld is not running")))
            .expect("the start is reported");
        assert_eq!((r.change, r.view), (Change::Started, false));
        assert_eq!(r.error.as_deref(), Some("firewalld is not running"));
        assert!(s.view().is_none());
        // The next start that reads well brings the view back.
        let (Next::Read(g), None) = s.changed(Change::Started, "NameOwnerChanged") else {
            panic!()
        };
        let r = s.read_done(g, Ok(config("2.3.1"))).unwrap();
        assert_eq!((r.view, r.version.as_deref(), r.reads), (true, Some("2.3.1"), 3));
        assert_eq!(s.view().unwrap().version, "2.3.1");
    }

    #[test]
    fn reads_count_changes_only() {
        let s = started_with("1.3.3");
        for _ in 0..1000 {
            assert!(s.view().is_some());
        }
        assert_eq!(s.reads(), 1, "taking the view must not read the bus");
    }
}
