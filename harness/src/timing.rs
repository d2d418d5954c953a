//! Link monitor timing, measured: a slave's link is cut and restored, trial after trial (for
//! the MII monitor its carrier, its veth peer set down and up; for the ARP monitor its switch
//! port, blocked and made forwarding again), and the time the driver takes to commit each
//! transition is taken from two clocks: the netlink notification bondcheck receives
//! (RTM_NEWLINK with the slave's MII status) and the kernel log's own timestamp of the commit
//! ("link status definitely down/up"). Every wait is on an event with a deadline; nothing
//! sleeps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

use crate::error::{Error, Result};
use crate::kmsg::{self, Kmsg};
use crate::netlink::{self, LinkEvent};
use crate::topology::Built;

/// One transition of one trial, from the moment bondcheck asked for the carrier change.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Sample {
    /// The trial's number, from 1.
    pub trial: usize,
    /// Until the netlink notification reached bondcheck; None if none came before the deadline.
    pub netlink_ms: Option<f64>,
    /// Until the kernel logged the commit (the kernel log's clock), where it did and no other
    /// bond logged the same words for a slave of the same name meanwhile ([`kmsg::find`]).
    pub kmsg_ms: Option<f64>,
    /// The bond's active slave right after the commit (modes that have one).
    pub active: Option<String>,
    /// The MAC address of the bond and of every slave right after the commit, by interface
    /// name (`fail_over_mac.rs` judges them).
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
}

/// The timing trials of one case: every transition's sample, and the link failure count.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Measured {
    /// The slave whose link was cut and restored.
    pub slave: String,
    /// How: its carrier, or its switch port (ARP monitoring).
    #[serde(default)]
    pub cut: Cut,
    /// Link cut → slave committed down, one sample per trial.
    pub down: Vec<Sample>,
    /// Link restored → slave committed up, one sample per trial.
    pub up: Vec<Sample>,
    /// The slave's link failure count before the first cut and after the last.
    pub link_failures_before: u32,
    /// The slave's link failure count after the last restore.
    pub link_failures_after: u32,
    /// The flap shorter than downdelay, after the trials (with a downdelay of a tick or more).
    pub flap: Option<Flap>,
    /// How the kernel log's clock was calibrated against CLOCK_MONOTONIC (null: no log clock).
    pub log_clock: Option<kmsg::Clock>,
}

/// How a trial takes a slave's link away and gives it back.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Cut {
    /// The slave's veth peer set down and up: the slave loses its carrier, which the MII
    /// monitor sees.
    #[default]
    Carrier,
    /// The slave's port on the topology's bridge blocked and made forwarding again: the
    /// carrier stays, but the ARP targets behind the bridge no longer hear the slave, nor it
    /// them, which only the ARP monitor sees.
    Silence,
}

impl Cut {
    /// Cuts (`restore` false) or restores `slave`'s link.
    pub async fn make(self, built: &Built, slave: &str, restore: bool) -> Result<()> {
        let peer = built
            .peer(slave)
            .ok_or_else(|| Error::run(format!("timing: no peer for slave {slave}")))?;
        let answer = match self {
            Cut::Carrier => netlink::set_up(&peer.handle, peer.index, restore).await,
            Cut::Silence => {
                netlink::set_bridge_port_forwarding(&peer.handle, peer.index, restore).await
            }
        };
        answer.map_err(|r| {
            let what = match (self, restore) {
                (Cut::Carrier, false) => "cutting the carrier of",
                (Cut::Carrier, true) => "restoring the carrier of",
                (Cut::Silence, false) => "blocking the switch port of",
                (Cut::Silence, true) => "unblocking the switch port of",
            };
            Error::run(format!("timing: {what} {slave}: {r}"))
        })
    }
}

/// What the timing trials do and how long they wait.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub cut: Cut,
    /// Cut-and-restore trials.
    pub trials: usize,
    /// How long to wait for each commit before giving up on it.
    pub deadline: Duration,
    /// The kernel log's words for the down and the up commit.
    pub logged: [&'static str; 2],
    /// How long each cut and restore waits after the start and after the last commit, for
    /// the monitor to judge the bond as the windows assume (the ARP monitor's settle, see
    /// arpmon::ArpMonitor::settle_ms; zero for the MII monitor).
    pub settle: Duration,
}

/// The kernel log's words for the MII monitor's commits (bond_miimon_commit).
pub const MII_LOGGED: [&str; 2] = ["link status definitely down", "link status definitely up"];

/// CLOCK_MONOTONIC: the kernel log's clock.
pub fn monotonic() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(Duration::ZERO, Duration::from)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Cuts and restores `slave`'s link as `plan` says; each wait ends at its event or after the
/// plan's deadline; `on_trial` hears each trial begin. `events` must be subscribed before the
/// call.
pub async fn measure(
    built: &Built,
    bond: &str,
    slave: &str,
    plan: &Plan,
    events: &mut UnboundedReceiver<LinkEvent>,
    on_trial: &mut dyn FnMut(usize),
) -> Result<Measured> {
    // The kernel log is a second clock where it can be read; without it, only netlink times.
    let mut log = Kmsg::open().ok();
    let link_failures_before = link_failures(built, bond, slave).await?;
    let (mut down, mut up) = (Vec::new(), Vec::new());
    // The last change the monitor made, or the start: the settle counts from it.
    let mut changed = Instant::now();
    for trial in 1..=plan.trials {
        on_trial(trial);
        let transitions = [
            (false, "down", plan.logged[0], &mut down),
            (true, "up", plan.logged[1], &mut up),
        ];
        for (restore, want, logged, series) in transitions {
            tokio::time::sleep_until((changed + plan.settle).into()).await;
            while events.try_recv().is_ok() {}
            if let Some(log) = log.as_mut() {
                log.drain();
            }
            let (sent, sent_mono) = (Instant::now(), monotonic());
            plan.cut.make(built, slave, restore).await?;
            let committed = wait_for(events, slave, want, sent + plan.deadline).await;
            changed = committed.unwrap_or_else(Instant::now);
            let kmsg_ms = log.as_mut().and_then(|log| {
                let at = kmsg::find(&log.drain(), slave, logged)?;
                Some(log.clock.monotonic(at) - ms(sent_mono))
            });
            // The commit that announced the slave also chose the active slave (and moved the
            // addresses fail_over_mac moves), under RTNL: a dump, which waits for RTNL, sees it.
            let view = bond_view(built, bond).await?;
            let active = view.options.get("active_slave").map(ToString::to_string);
            series.push(Sample {
                trial,
                netlink_ms: committed.map(|at| ms(at - sent)),
                kmsg_ms,
                active,
                addresses: view.macs(bond),
            });
        }
    }
    Ok(Measured {
        slave: slave.to_string(),
        cut: plan.cut,
        down,
        up,
        link_failures_before,
        link_failures_after: link_failures(built, bond, slave).await?,
        flap: None,
        log_clock: log.as_ref().map(|l| l.clock),
    })
}

async fn link_failures(built: &Built, bond: &str, slave: &str) -> Result<u32> {
    Ok(bond_view(built, bond)
        .await?
        .slave(slave)
        .and_then(|s| s.link_failure_count)
        .unwrap_or(0))
}

pub async fn bond_view(built: &Built, bond: &str) -> Result<crate::observe::BondView> {
    let links = netlink::links(&built.bond)
        .await
        .map_err(|r| Error::run(format!("timing: link dump: {r}")))?;
    netlink::bond_view(&links, bond).ok_or_else(|| Error::run(format!("timing: {bond} is gone")))
}

/// The next slave announcement, if one comes by `deadline`.
pub async fn next_event(
    events: &mut UnboundedReceiver<LinkEvent>,
    deadline: Instant,
) -> Option<LinkEvent> {
    tokio::time::timeout_at(deadline.into(), events.recv())
        .await
        .ok()?
}

/// The receipt time of `slave`'s next announcement of `mii_status`, if it comes by `deadline`.
async fn wait_for(
    events: &mut UnboundedReceiver<LinkEvent>,
    slave: &str,
    mii_status: &str,
    deadline: Instant,
) -> Option<Instant> {
    loop {
        let event = next_event(events, deadline).await?;
        if event.is(slave, mii_status) {
            return Some(event.at);
        }
    }
}

/// A carrier flap shorter than downdelay: the slave's carrier is cut, the monitor is seen to
/// propose "going down" (FAIL, which the driver never announces, so its state is polled), and
/// the carrier is given back at once.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Flap {
    /// The slave whose carrier flapped.
    pub slave: String,
    /// From the cut until the slave was seen going down; None if it never was.
    pub going_down_ms: Option<f64>,
    /// From the cut until the carrier was given back.
    pub restored_ms: f64,
    /// From the cut until the slave was seen up again; None if it was not, by the deadline.
    pub up_ms: Option<f64>,
    /// "down" as the kernel announced it for the slave meanwhile (none expected).
    pub announced: Vec<String>,
    /// The slave's link failure count before the flap.
    pub link_failures_before: u32,
    /// And after it.
    pub link_failures_after: u32,
}

/// How often the slave's state is read while a flap is under way: fine against a monitor
/// tick of tens of milliseconds, and a dump is cheap.
const POLL: Duration = Duration::from_millis(2);

/// Cuts `slave`'s carrier, waits (polling, until `deadline` after the cut) for the monitor to
/// mark it going down, restores the carrier and waits (until `deadline` after the restore)
/// for it to be up again. `events` must be subscribed before the call.
pub async fn flap(
    built: &Built,
    bond: &str,
    slave: &str,
    deadline: Duration,
    events: &mut UnboundedReceiver<LinkEvent>,
) -> Result<Flap> {
    while events.try_recv().is_ok() {}
    let link_failures_before = link_failures(built, bond, slave).await?;
    let cut = Instant::now();
    Cut::Carrier.make(built, slave, false).await?;
    let going_down = poll_until(built, bond, slave, cut + deadline, |s| {
        matches!(s, "going down" | "down")
    })
    .await?
    .filter(|(status, _)| status == "going down")
    .map(|(_, at)| ms(at - cut));
    let restored = Instant::now();
    Cut::Carrier.make(built, slave, true).await?;
    let up = poll_until(built, bond, slave, restored + deadline, |s| s == "up")
        .await?
        .map(|(_, at)| ms(at - cut));
    let mut announced = Vec::new();
    // Only a commit announces "down"; the carrier's own events carry whatever MII status the
    // slave has at the time ("going down" while it flaps), and are not the monitor's doing.
    while let Ok(event) = events.try_recv() {
        if event.is(slave, "down") {
            announced.push("down".to_string());
        }
    }
    Ok(Flap {
        slave: slave.to_string(),
        going_down_ms: going_down,
        restored_ms: ms(restored - cut),
        up_ms: up,
        announced,
        link_failures_before,
        link_failures_after: link_failures(built, bond, slave).await?,
    })
}

/// Reads `slave`'s MII status every POLL until `wanted` holds or `until` passes; returns the
/// status and when it was read.
async fn poll_until(
    built: &Built,
    bond: &str,
    slave: &str,
    until: Instant,
    wanted: impl Fn(&str) -> bool,
) -> Result<Option<(String, Instant)>> {
    loop {
        let view = bond_view(built, bond).await?;
        let at = Instant::now();
        if let Some(status) = view.slave(slave).and_then(|s| s.mii_status.clone())
            && wanted(&status)
        {
            return Ok(Some((status, at)));
        }
        if at >= until {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}
