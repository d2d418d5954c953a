//! Failover with traffic flowing: a steady stream of frames goes through the bond while one
//! slave's carrier is cut and restored, so the check can judge every frame against the state
//! the bond was in when it was sent: before the cut; carrier lost but the slave not yet
//! declared down; down; and back up.
//!
//! The moments between those states are never known exactly, only bracketed: the cut lies
//! between the request and the later of its acknowledgement and the slave's carrier
//! announcement (the driver reacts to the carrier event before announcing it); a commit lies
//! between its kernel log record (the log's own clock, less a guard) and the moment a dump,
//! which waits for the commit's lock, returns after its netlink announcement. A frame sent
//! inside a bracket may show either state's behaviour.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{oneshot, watch};

use crate::checks::{Measurement, Status, Verdict, fit_phase, place, seen_on};
use crate::deviation::Deviation;
use crate::distribution::{Failover, Prediction, State};
use crate::error::{Error, Result};
use crate::frames::Frame;
use crate::kmsg::{self, Kmsg};
use crate::model::{PeerNotify, Rule};
use crate::netlink::{self, LinkEvent};
use crate::timing;
use crate::topology::Built;
use crate::traffic::{self, Pace, Sockets, Streamed};

/// One frame per millisecond: fine enough to resolve a 100 ms monitor tick, few enough that
/// the stream's own system calls (about 75 µs each in UML) leave the guest mostly idle.
pub const PERIOD: Duration = Duration::from_millis(1);
/// Frames sent before the cut and after each commit, so that every state is seen at length.
const SETTLED_FRAMES: usize = 64;
/// How far before its log record a commit may have changed what the bond sends: the state is
/// set a few calls before the record is written.
const LOG_GUARD_MS: f64 = 1.0;

/// When a change happened, bracketed, in ms from the stream's start.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Moment {
    /// The earliest the change can have happened.
    pub from_ms: f64,
    /// The latest: by then it had surely happened.
    pub to_ms: f64,
    /// What bounds the bracket from below: "request" (the harness's own action), "kmsg" (the
    /// kernel log's record) or "cut" (no log: only the cut bounds the commit).
    pub from: &'static str,
}

/// What a stream through a cut and restore of `slave` saw.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "FailoverStream")]
pub struct Observed {
    /// The slave cut and restored.
    pub slave: String,
    /// One frame was due every period.
    pub period_ms: f64,
    /// The carrier cut: from the request to the later of its acknowledgement and the slave's
    /// carrier announcement.
    pub cut: Moment,
    /// The DOWN commit; None where the driver did not commit within the deadline: the stream
    /// stopped there.
    pub down: Option<Moment>,
    /// The carrier given back (after the DOWN commit only).
    pub restore: Option<Moment>,
    /// The UP commit; None where it did not come within the deadline.
    pub up: Option<Moment>,
    /// How long each commit was waited for.
    pub deadline_ms: f64,
    /// The bond's active slave right after the DOWN commit (modes that have one).
    pub active_after_cut: Option<String>,
    /// The bond's active slave right after the UP commit.
    pub active_after_restore: Option<String>,
    /// The MAC address of the bond and every slave right after the DOWN commit, by name.
    #[serde(default)]
    pub addresses_after_cut: Option<BTreeMap<String, String>>,
    /// And right after the UP commit.
    #[serde(default)]
    pub addresses_after_restore: Option<BTreeMap<String, String>>,
    /// When bondcheck received each of the bond's failover announcements (RTM_NEWLINK with
    /// IFLA_EVENT_BONDING_FAILOVER), in ms from the stream's start: a third clock for the
    /// commits that changed the active slave.
    pub failover_events: Vec<f64>,
    /// The frames sent and where they arrived.
    pub stream: Streamed,
}

/// Where the stream goes and what it sends.
pub struct Setup {
    pub sockets: Sockets,
    pub src_mac: [u8; 6],
    pub run_id: u32,
    pub frames: Vec<Frame>,
    /// How long to go on streaming after the DOWN and the UP commit, at least: the GARPs a
    /// failover sends take that long where the commit changes the active slave.
    pub after_commit: [Duration; 2],
    /// How long each commit may take at most, and each fence round.
    pub down_deadline: Duration,
    pub up_deadline: Duration,
    pub fence_deadline: Duration,
}

/// How many frames a stream needs at most: before the cut, both commits at their deadlines,
/// and the frames after each.
pub fn frames_needed(
    down_deadline: Duration,
    up_deadline: Duration,
    after: [Duration; 2],
) -> usize {
    let during =
        (down_deadline + up_deadline + after[0] + after[1]).as_micros() / PERIOD.as_micros();
    3 * SETTLED_FRAMES + during as usize
}

/// Stops the stream when the controller is done or gives up.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Streams through the bond while `slave` is cut and restored. `events` must be subscribed
/// before the call.
pub async fn measure(
    built: &Built,
    bond: &str,
    slave: &str,
    setup: Setup,
    events: &mut UnboundedReceiver<LinkEvent>,
) -> Result<Observed> {
    let peer = built
        .peer(slave)
        .ok_or_else(|| Error::run(format!("failover: no peer for slave {slave}")))?;
    let mut log = Kmsg::open().ok();
    let total = setup.frames.len();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let (progress_tx, mut progress) = watch::channel(0usize);
    let (start, start_mono) = (Instant::now(), timing::monotonic());
    let pace = Pace {
        period: PERIOD,
        start,
        epoch: SystemTime::now(),
        stop: stop.clone(),
        progress: progress_tx,
    };
    let (done_tx, mut done) = oneshot::channel();
    let Setup {
        sockets,
        src_mac,
        run_id,
        frames,
        ..
    } = setup;
    let fence_deadline = setup.fence_deadline;
    let settled = setup
        .after_commit
        .map(|d| SETTLED_FRAMES.max((d.as_micros() / PERIOD.as_micros()) as usize));
    std::thread::Builder::new()
        .name("bondcheck-stream".into())
        .spawn(move || {
            let r = traffic::stream(sockets, src_mac, run_id, &frames, &pace, fence_deadline);
            let _ = done_tx.send(r);
        })
        .map_err(|e| Error::run(format!("failover: cannot start the stream: {e}")))?;
    let now_ms = || start.elapsed().as_secs_f64() * 1e3;

    more(&mut progress, SETTLED_FRAMES, total, &mut done).await?;
    while events.try_recv().is_ok() {}
    if let Some(log) = log.as_mut() {
        log.drain();
    }
    let cut_from = now_ms();
    netlink::set_up(&peer.handle, peer.index, false)
        .await
        .map_err(|r| Error::run(format!("failover: cutting {slave}: {r}")))?;
    let acked = now_ms();
    let mut observed = Observed {
        slave: slave.to_string(),
        period_ms: PERIOD.as_secs_f64() * 1e3,
        cut: Moment {
            from_ms: cut_from,
            to_ms: acked,
            from: "request",
        },
        down: None,
        restore: None,
        up: None,
        deadline_ms: setup.down_deadline.max(setup.up_deadline).as_secs_f64() * 1e3,
        active_after_cut: None,
        active_after_restore: None,
        addresses_after_cut: None,
        addresses_after_restore: None,
        failover_events: Vec::new(),
        stream: Streamed::default(),
    };
    let until = Instant::now() + setup.down_deadline;
    let seen = &mut observed.failover_events;
    if let Some((carrier, committed)) =
        commit(events, (bond, seen), slave, "down", until, &start).await
    {
        (observed.active_after_cut, observed.addresses_after_cut) =
            after_commit(built, bond).await?;
        observed.cut.to_ms = acked.max(carrier.unwrap_or(committed));
        observed.down = Some(bracket(
            &mut log,
            slave,
            "down",
            start_mono,
            cut_from,
            now_ms(),
        ));

        more(&mut progress, settled[0], total, &mut done).await?;
        let restore_from = now_ms();
        netlink::set_up(&peer.handle, peer.index, true)
            .await
            .map_err(|r| Error::run(format!("failover: restoring {slave}: {r}")))?;
        observed.restore = Some(Moment {
            from_ms: restore_from,
            to_ms: now_ms(),
            from: "request",
        });
        let until = Instant::now() + setup.up_deadline;
        let seen = &mut observed.failover_events;
        if commit(events, (bond, seen), slave, "up", until, &start)
            .await
            .is_some()
        {
            (
                observed.active_after_restore,
                observed.addresses_after_restore,
            ) = after_commit(built, bond).await?;
            let up = bracket(&mut log, slave, "up", start_mono, restore_from, now_ms());
            observed.up = Some(up);
            more(&mut progress, settled[1], total, &mut done).await?;
        }
    } else {
        // No commit: the carrier comes back anyway, so that the closing fence reaches every
        // capture.
        netlink::set_up(&peer.handle, peer.index, true)
            .await
            .map_err(|r| Error::run(format!("failover: restoring {slave}: {r}")))?;
    }
    // The UP commit's announcements, if any, came while the stream went on after it.
    while let Ok(event) = events.try_recv() {
        if event.name == bond && event.failover {
            observed
                .failover_events
                .push((event.at - start).as_secs_f64() * 1e3);
        }
    }
    stop.store(true, Ordering::Release);
    observed.stream = done
        .await
        .map_err(|_| Error::run("failover: the stream ended without a result"))??;
    Ok(observed)
}

/// Waits until the stream has sent `frames` more frames.
async fn more(
    progress: &mut watch::Receiver<usize>,
    frames: usize,
    total: usize,
    done: &mut oneshot::Receiver<Result<Streamed>>,
) -> Result<()> {
    let n = *progress.borrow() + frames;
    if n > total {
        return Err(Error::run(format!(
            "failover: the stream needs more than its {total} frames"
        )));
    }
    if progress.wait_for(|sent| *sent >= n).await.is_ok() {
        return Ok(());
    }
    // The stream ended before: its own error says why.
    match done.await {
        Ok(Err(e)) => Err(e),
        _ => Err(Error::run("failover: the stream stopped early")),
    }
}

/// Waits for `slave`'s commit to `mii_status` until `until`; returns when (ms from `start`)
/// its carrier change was announced, if it was, and when the commit was. The `bond`'s failover
/// announcements on the way are added to `failovers`.
async fn commit(
    events: &mut UnboundedReceiver<LinkEvent>,
    (bond, failovers): (&str, &mut Vec<f64>),
    slave: &str,
    mii_status: &str,
    until: Instant,
    start: &Instant,
) -> Option<(Option<f64>, f64)> {
    let at = |i: Instant| (i - *start).as_secs_f64() * 1e3;
    let mut carrier = None;
    loop {
        let event = timing::next_event(events, until).await?;
        if event.name == bond && event.failover {
            failovers.push(at(event.at));
        }
        if event.name != slave {
            continue;
        }
        if carrier.is_none() && event.carrier == (mii_status == "up") {
            carrier = Some(at(event.at));
        }
        if event.is(slave, mii_status) {
            return Some((carrier, at(event.at)));
        }
    }
}

/// The active slave and every address, read with a dump: the dump waits for the lock the
/// commit holds, so it also marks the moment the commit's whole work (failover included) is
/// done.
async fn after_commit(
    built: &Built,
    bond: &str,
) -> Result<(Option<String>, Option<BTreeMap<String, String>>)> {
    let view = timing::bond_view(built, bond).await?;
    Ok((
        view.options.get("active_slave").map(ToString::to_string),
        Some(view.macs(bond)),
    ))
}

/// A commit's bracket: from its kernel log record (less the guard), or from `earliest` where
/// the log cannot be read, to `settled`.
fn bracket(
    log: &mut Option<Kmsg>,
    slave: &str,
    what: &str,
    start_mono: Duration,
    earliest: f64,
    settled: f64,
) -> Moment {
    let logged = log.as_mut().and_then(|log| {
        let at = kmsg::find(
            &log.drain(),
            slave,
            &format!("link status definitely {what}"),
        )?;
        Some(log.clock.earliest(at) - start_mono.as_secs_f64() * 1e3)
    });
    match logged {
        Some(at) => Moment {
            from_ms: (at - LOG_GUARD_MS).max(earliest),
            to_ms: settled,
            from: "kmsg",
        },
        None => Moment {
            from_ms: earliest,
            to_ms: settled,
            from: "cut",
        },
    }
}

/// The id of the check.
pub const CHECK: &str = "failover.traffic";

/// Every frame of the stream where the driver may have put it in the states its send time
/// allows: one state inside a bracket-free stretch, either neighbour inside a bracket.
pub fn check(expected: &Failover, observed: &Observed, slaves: &[String]) -> Verdict {
    let stream = &observed.stream;
    if let Some(why) = stream.incomplete() {
        return verdict(expected, Status::Error, why, Vec::new());
    }
    let n = stream.sends.len();
    let seen = seen_on(&stream.arrivals, n);
    let states: Vec<Vec<State>> = stream
        .sends
        .iter()
        .map(|s| possible_states(observed, s.from_us / 1e3, s.to_us / 1e3))
        .collect();
    // balance-rr: the counter's start is fitted on the frames sent surely before the cut.
    let before = states.iter().take_while(|s| **s == [State::Before]).count();
    let phase = match &expected.states[0].prediction {
        Prediction::Rotation(cycle) => fit_phase(cycle, &seen[..before]),
        _ => 0,
    };
    let allowed: Vec<Vec<Vec<usize>>> = (0..n)
        .map(|i| alternatives(expected, &states[i], phase, i))
        .collect();
    let mut measurements = Vec::new();
    let mut summary = Vec::new();
    for state in State::ALL {
        let frames: Vec<usize> = (0..n).filter(|i| states[*i] == [state]).collect();
        let lost = frames.iter().filter(|i| seen[**i].is_empty()).count();
        let must = frames
            .iter()
            .filter(|i| allowed[**i].iter().all(Vec::is_empty))
            .count();
        let key = state_key(state);
        measurements.push(Measurement {
            name: format!("{key}.frames"),
            value: frames.len() as f64,
            unit: "frames",
        });
        measurements.push(Measurement {
            name: format!("{key}.lost"),
            value: lost as f64,
            unit: "frames",
        });
        summary.push(format!(
            "{}: {} sent, {lost} lost (model: {must})",
            state.name(),
            frames.len()
        ));
    }
    let ambiguous = states.iter().filter(|s| s.len() > 1).count();
    summary.push(format!("{ambiguous} sent inside a bracket"));
    let lost: Vec<usize> = (0..n).filter(|i| seen[*i].is_empty()).collect();
    if let (Some(first), Some(last)) = (lost.first(), lost.last()) {
        let rel = |i: usize| stream.sends[i].from_us / 1e3 - observed.cut.from_ms;
        measurements.push(Measurement {
            name: "loss_window_ms".into(),
            value: rel(*last) - rel(*first) + observed.period_ms,
            unit: "ms",
        });
        summary.push(format!(
            "frames lost from {:.1} to {:.1} ms after the cut",
            rel(*first),
            rel(*last)
        ));
    }
    let bracket = |m: Option<&Moment>| {
        m.map_or(format!("none within {:.0} ms", observed.deadline_ms), |m| {
            format!("in [{:.1}, {:.1}] ({})", m.from_ms, m.to_ms, m.from)
        })
    };
    let marks = format!(
        "cut at {:.1} ms, down committed {}, restored at {}, up committed {}",
        observed.cut.from_ms,
        bracket(observed.down.as_ref()),
        observed
            .restore
            .map_or("-".to_string(), |m| format!("{:.1}", m.from_ms)),
        bracket(observed.up.as_ref()),
    );
    let missing = match (&observed.down, &observed.up) {
        (None, _) => Some("down"),
        (_, None) => Some("up"),
        _ => None,
    };
    let wrong = (0..n).find(|i| !allowed[*i].contains(&seen[*i]));
    if let (None, Some(what)) = (wrong, missing) {
        return verdict(
            expected,
            Status::Fail,
            format!(
                "the driver did not commit {} {what} within {:.0} ms, so the failover never \
                 completed ({}); {marks}",
                observed.slave,
                observed.deadline_ms,
                summary.join("; ")
            ),
            measurements,
        );
    }
    let Some(first) = wrong else {
        return verdict(
            expected,
            Status::Pass,
            format!(
                "all {n} frames where the model allows ({}); {marks}",
                summary.join("; ")
            ),
            measurements,
        );
    };
    let show = |i: usize| {
        let options: Vec<String> = allowed[i].iter().map(|a| place(a, slaves)).collect();
        let states: Vec<&str> = states[i].iter().map(|s| s.name()).collect();
        format!(
            "  #{i} at {:.1} ms ({}): expected {}, observed {}{}",
            stream.sends[i].from_us / 1e3,
            states.join(" or "),
            options.join(" or "),
            place(&seen[i], slaves),
            if allowed[i].contains(&seen[i]) {
                ""
            } else {
                "  <-"
            }
        )
    };
    let excerpt: Vec<String> = (first.saturating_sub(3)..(first + 4).min(n))
        .map(show)
        .collect();
    let count = (0..n).filter(|i| !allowed[*i].contains(&seen[*i])).count();
    verdict(
        expected,
        Status::Fail,
        format!(
            "{count} of {n} frames not where the model allows; the first is #{first}:\n{}\n{}; \
             {marks}",
            excerpt.join("\n"),
            summary.join("; ")
        ),
        measurements,
    )
}

/// The id of the check of the bond's failover announcements.
pub const EVENT: &str = "failover.event";

/// Active-backup announces each change of active slave to a new one as RTM_NEWLINK with
/// IFLA_EVENT_BONDING_FAILOVER (bond_change_active_slave raises NETDEV_BONDING_FAILOVER,
/// rtnetlink_event turns it into the announcement): one for each commit of the stream that
/// the model says changes the active slave, received within that commit's bracket (up to
/// `tolerance_ms` after it: bondcheck reads its socket a moment later), and none otherwise.
/// `actives`: the model's active slave before the cut, after the DOWN commit, after the UP
/// commit.
pub fn failover_event(
    actives: [Option<usize>; 3],
    tolerance_ms: f64,
    observed: &Observed,
    slaves: &[String],
) -> Verdict {
    let rule = Rule {
        text: "active-backup announces every change of active slave to a new one as \
               RTM_NEWLINK with IFLA_EVENT_BONDING_FAILOVER, during the commit that makes it \
               (bond_change_active_slave: NETDEV_BONDING_FAILOVER; net/core/rtnetlink.c \
               rtnetlink_event)"
            .into(),
        source: "drivers/net/bonding/bond_main.c",
    };
    let name = |s: Option<usize>| s.map_or("none".to_string(), |s| slaves[s].clone());
    let mut due = Vec::new();
    if let Some(down) = observed.down
        && actives[1] != actives[0]
        && actives[1].is_some()
    {
        due.push(("down", actives[1], down));
    }
    if let Some(up) = observed.up
        && actives[2] != actives[1]
        && actives[2].is_some()
    {
        due.push(("up", actives[2], up));
    }
    let events = &observed.failover_events;
    let shown = |v: &[f64]| {
        v.iter()
            .map(|at| format!("{at:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut problems = Vec::new();
    if events.len() != due.len() {
        problems.push(format!(
            "{} failover announcements, expected {}",
            events.len(),
            due.len()
        ));
    }
    let mut measurements = Vec::new();
    for (state, slave, commit) in &due {
        let what = format!("the {} commit", state.to_uppercase());
        let upper = commit.to_ms + tolerance_ms;
        match events
            .iter()
            .find(|at| **at >= commit.from_ms && **at <= upper)
        {
            Some(at) => measurements.push(Measurement {
                name: format!("{state}_after_commit"),
                value: at - commit.to_ms,
                unit: "ms",
            }),
            None => problems.push(format!(
                "none within {what}'s bracket [{:.1}, {:.1}] (+{tolerance_ms} ms), which makes {} \
                 active",
                commit.from_ms,
                commit.to_ms,
                name(*slave)
            )),
        }
    }
    let expected = if due.is_empty() {
        format!(
            "none: the active slave stays {} through the cut and the restore",
            name(actives[0])
        )
    } else {
        due.iter()
            .map(|(state, slave, c)| {
                format!(
                    "at the {} commit [{:.1}, {:.1}] ms ({} active)",
                    state.to_uppercase(),
                    c.from_ms,
                    c.to_ms,
                    name(*slave)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let (status, message) = if problems.is_empty() {
        (
            Status::Pass,
            format!(
                "as expected: {expected}; received at [{}] ms",
                shown(events)
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{}; expected {expected}; received at [{}] ms",
                problems.join("; "),
                shown(events)
            ),
        )
    };
    Verdict::judged(EVENT, status, Some("ms"), rule, message, measurements)
}

/// The id of the check of the gratuitous ARPs a failover sends.
pub const PEER_NOTIFY: &str = "failover.peer_notify";

/// Deviant peer-notification behaviours a known deviation (`deviation.rs`) may name: each
/// predicts, as the model does for the contract, the monitor ticks after the commit at which
/// the notifications go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyVariant {
    /// `commit-tick-decrements`: bond_mii_monitor() decrements send_peer_notif once more in
    /// the tick that committed the failover, without notifying.
    CommitTickDecrements,
}

impl NotifyVariant {
    pub fn named(name: &str) -> Option<NotifyVariant> {
        match name {
            "commit-tick-decrements" => Some(NotifyVariant::CommitTickDecrements),
            _ => None,
        }
    }

    /// The ticks after the commit at which notifications go out, by running the kernel's
    /// counter as this variant does: set to count × every in bond_change_active_slave(),
    /// which notifies at once and decrements; decremented again in the same tick; then, each
    /// tick, a notification when it is a multiple of `every`, and a decrement.
    pub fn schedule(self, notify: &PeerNotify) -> Vec<u64> {
        let every = notify.every_ticks.max(1);
        let mut left = notify.count * every;
        if left == 0 {
            return Vec::new();
        }
        let mut ticks = vec![0];
        left -= 1;
        left = left.saturating_sub(1);
        let mut tick = 0;
        while left > 0 {
            tick += 1;
            if left % every == 0 {
                ticks.push(tick);
            }
            left -= 1;
        }
        ticks
    }
}

/// One failover's gratuitous ARPs as seen: which commit, the slave the model makes active, the
/// commit's bracket, where the burst ends (the next commit), and the ARPs in it.
struct Burst<'a> {
    what: &'static str,
    slave: Option<usize>,
    commit: Moment,
    arps: Vec<&'a (usize, f64)>,
}

/// After each commit that changed the active slave, gratuitous ARPs on the new active slave's
/// peer at the model's schedule (`PeerNotify::schedule`: the first within the commit's bracket,
/// then every `every_ticks` monitor ticks; `tick_ms`: a tick's least and greatest length), and
/// none anywhere else. `actives`: the model's active slave before the cut, after the DOWN
/// commit, after the UP commit. Where the contract fails and `known` (a known deviation of this
/// kernel) names a variant that fits what was seen exactly, the verdict is `known`.
#[allow(clippy::too_many_arguments)]
pub fn peer_notify(
    notify: &PeerNotify,
    actives: [Option<usize>; 3],
    tick_ms: (f64, f64),
    tolerance_ms: f64,
    observed: &Observed,
    slaves: &[String],
    known: Option<&Deviation>,
) -> Verdict {
    let rule = Rule {
        text: format!(
            "when the active slave changes, active-backup sends num_grat_arp ({}) notifications \
             to its peers, the first at once and then one every max(1, peer_notif_delay) = {} \
             monitor ticks; each is a gratuitous ARP of the bond's address, on the new active \
             slave (Documentation/networking/bonding.rst: num_grat_arp, peer_notif_delay; \
             bond_change_active_slave, bond_should_notify_peers, bond_mii_monitor)",
            notify.count, notify.every_ticks
        ),
        source: "drivers/net/bonding/bond_main.c",
    };
    let verdict = |status, message, measurements| {
        Verdict::judged(
            PEER_NOTIFY,
            status,
            None,
            rule.clone(),
            message,
            measurements,
        )
    };
    let name = |s: Option<usize>| s.map_or("none".to_string(), |s| slaves[s].clone());
    let Some(down) = observed.down else {
        return verdict(
            Status::Fail,
            "the driver did not commit the cut slave down: there was no failover to announce"
                .into(),
            Vec::new(),
        );
    };
    let garps: Vec<(usize, f64)> = observed
        .stream
        .garps
        .iter()
        .map(|g| (g.slave, g.at_us / 1e3))
        .collect();
    // Each burst runs from its commit to the next commit.
    let mut commits = Vec::new();
    if actives[1] != actives[0] {
        commits.push(("the DOWN commit", actives[1], down));
    }
    if let (Some(up), true) = (observed.up, actives[2] != actives[1]) {
        commits.push(("the UP commit", actives[2], up));
    }
    let ends: Vec<f64> = commits
        .iter()
        .skip(1)
        .map(|(_, _, c)| c.from_ms)
        .chain([f64::INFINITY])
        .collect();
    let bursts: Vec<Burst> = commits
        .iter()
        .zip(&ends)
        .map(|(&(what, slave, commit), &until)| Burst {
            what,
            slave,
            commit,
            arps: garps
                .iter()
                .filter(|(_, at)| *at >= commit.from_ms && *at < until)
                .collect(),
        })
        .collect();
    let stray = garps.len() - bursts.iter().map(|b| b.arps.len()).sum::<usize>();

    let mut measurements = vec![Measurement {
        name: "garps".into(),
        value: garps.len() as f64,
        unit: "frames",
    }];
    for pair in bursts.iter().flat_map(|b| b.arps.windows(2)) {
        measurements.push(Measurement {
            name: "spacing".into(),
            value: pair[1].1 - pair[0].1,
            unit: "ms",
        });
    }
    let seen = if bursts.is_empty() {
        format!(
            "no failover in the stream (active {} throughout), so no gratuitous ARP is due",
            name(actives[0])
        )
    } else {
        bursts
            .iter()
            .map(|b| {
                let times: Vec<String> = b.arps.iter().map(|(_, at)| format!("{at:.1}")).collect();
                format!(
                    "after {} ({} active): {} at [{}] ms",
                    b.what,
                    name(b.slave),
                    b.arps.len(),
                    times.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    // What is wrong with the bursts against a schedule of ticks after each commit.
    let judge = |schedule: &[u64]| {
        let mut problems = Vec::new();
        for b in &bursts {
            if b.arps.len() != schedule.len() {
                problems.push(format!(
                    "after {}: {} gratuitous ARPs, expected {}",
                    b.what,
                    b.arps.len(),
                    schedule.len()
                ));
            }
            if let Some((s, at)) = b.arps.iter().find(|(s, _)| Some(*s) != b.slave) {
                problems.push(format!(
                    "after {}: one on {} at {at:.1} ms, expected on {}",
                    b.what,
                    slaves[*s],
                    name(b.slave)
                ));
            }
            if let Some((_, first)) = b.arps.first()
                && *first > b.commit.to_ms + tolerance_ms
            {
                problems.push(format!(
                    "after {}: the first at {first:.1} ms, after the commit's bracket \
                     [{:.1}, {:.1}] ms",
                    b.what, b.commit.from_ms, b.commit.to_ms
                ));
            }
            for (pair, ticks) in b.arps.windows(2).zip(schedule.windows(2)) {
                let gap = pair[1].1 - pair[0].1;
                let k = (ticks[1] - ticks[0]) as f64;
                let (lo, hi) = (k * tick_ms.0 - tolerance_ms, k * tick_ms.1 + tolerance_ms);
                if gap < lo || gap > hi {
                    problems.push(format!(
                        "after {}: {gap:.1} ms between two, outside [{lo:.1}, {hi:.1}] ms \
                         ({k} ticks)",
                        b.what
                    ));
                }
            }
        }
        if stray > 0 {
            problems.push(format!(
                "{stray} gratuitous ARPs where no failover happened"
            ));
        }
        problems
    };
    let problems = judge(&notify.schedule());
    if problems.is_empty() {
        return verdict(Status::Pass, format!("as expected: {seen}"), measurements);
    }
    let contract = format!("{}; seen: {seen}", problems.join("; "));
    match known.map(|d| (d, NotifyVariant::named(&d.variant))) {
        Some((d, Some(variant))) if judge(&variant.schedule(notify)).is_empty() => verdict(
            Status::Known,
            format!(
                "known deviation {} of this kernel, exactly: {}; against the contract: {contract}",
                d.id, d.summary
            ),
            measurements,
        ),
        Some((d, _)) => verdict(
            Status::Fail,
            format!(
                "{contract}; nor does it fit {}, the known deviation of this kernel",
                d.id
            ),
            measurements,
        ),
        None => verdict(Status::Fail, contract, measurements),
    }
}

fn state_key(state: State) -> &'static str {
    match state {
        State::Before => "before",
        State::CarrierLost => "carrier_lost",
        State::Down => "down",
        State::Restored => "restored",
    }
}

/// The states a frame handed to the kernel between `from` and `to` (ms) may have met.
fn possible_states(o: &Observed, from: f64, to: f64) -> Vec<State> {
    // A commit that never came ends nothing: the state before it lasts.
    let (down, up) = (o.down.as_ref(), o.up.as_ref());
    let never = f64::INFINITY;
    let spans = [
        (State::Before, f64::NEG_INFINITY, o.cut.to_ms),
        (
            State::CarrierLost,
            o.cut.from_ms,
            down.map_or(never, |m| m.to_ms),
        ),
        (
            State::Down,
            down.map_or(never, |m| m.from_ms),
            up.map_or(never, |m| m.to_ms),
        ),
        (State::Restored, up.map_or(never, |m| m.from_ms), never),
    ];
    spans
        .iter()
        .filter(|(_, lo, hi)| to >= *lo && from <= *hi)
        .map(|(s, _, _)| *s)
        .collect()
}

/// Where frame `i` may go in any of `states`: each state's choice, and, while the cut slave's
/// peer is (or may be) down, that choice less the cut slave, whose veth drops the frame.
fn alternatives(f: &Failover, states: &[State], phase: usize, i: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for &state in states {
        let k = State::ALL.iter().position(|s| *s == state).unwrap_or(0);
        let choices: Vec<Vec<usize>> = match &f.states[k].prediction {
            Prediction::Exact(per) => vec![per.get(i).cloned().unwrap_or_default()],
            Prediction::Rotation(cycle) => vec![vec![cycle[(phase + i) % cycle.len()]]],
            Prediction::Shares(shares) => (0..shares.len())
                .filter(|s| shares[*s] > 0.0)
                .map(|s| vec![s])
                .collect(),
        };
        let peer_down = state == State::CarrierLost || (state == State::Before && states.len() > 1);
        for c in choices {
            if peer_down {
                out.push(c.iter().copied().filter(|s| *s != f.cut).collect());
            }
            // With the carrier lost the peer is down: nothing reaches its capture.
            if state != State::CarrierLost {
                out.push(c);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn verdict(
    expected: &Failover,
    status: Status,
    message: String,
    measurements: Vec<Measurement>,
) -> Verdict {
    Verdict::judged(
        CHECK,
        status,
        Some("frames"),
        expected.rule.clone(),
        message,
        measurements,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::during_failover;
    use crate::model::Transmit;
    use crate::spec::Mode;
    use crate::traffic::{Arrival, SendTime};

    #[test]
    fn the_contract_notifies_count_times_every_ticks_apart() {
        let n = |count, every_ticks| PeerNotify { count, every_ticks };
        assert_eq!(n(3, 1).schedule(), vec![0, 1, 2]);
        assert_eq!(n(3, 2).schedule(), vec![0, 2, 4]);
        assert_eq!(n(1, 1).schedule(), vec![0]);
        assert!(n(0, 1).schedule().is_empty());
    }

    #[test]
    fn the_commit_tick_decrement_loses_one_or_moves_the_second_a_tick_early() {
        let v = NotifyVariant::CommitTickDecrements;
        let n = |count, every_ticks| PeerNotify { count, every_ticks };
        // send_peer_notif 3 -> notify, 2 -> 1 in the commit tick; 1 -> notify next tick.
        assert_eq!(v.schedule(&n(3, 1)), vec![0, 1]);
        assert_eq!(v.schedule(&n(2, 1)), vec![0]);
        // One notification is unaffected: the counter is 0 after the first.
        assert_eq!(v.schedule(&n(1, 1)), vec![0]);
        // 6 -> notify, 5 -> 4; 4 notify, 3, 2 notify, 1.
        assert_eq!(v.schedule(&n(3, 2)), vec![0, 1, 3]);
        assert!(v.schedule(&n(0, 1)).is_empty());
    }

    #[test]
    fn every_known_deviation_of_this_check_names_a_variant_it_knows() {
        for d in crate::deviation::all()
            .iter()
            .filter(|d| d.check == PEER_NOTIFY)
        {
            assert!(NotifyVariant::named(&d.variant).is_some(), "{}", d.id);
        }
    }

    fn moment(from_ms: f64, to_ms: f64) -> Option<Moment> {
        Some(Moment {
            from_ms,
            to_ms,
            from: "kmsg",
        })
    }

    #[test]
    fn one_failover_announcement_per_change_of_active_slave_inside_its_commit() {
        let slaves = ["a".to_string(), "b".to_string()];
        let with = |events: Vec<f64>| Observed {
            failover_events: events,
            ..observed(Vec::new())
        };
        let both = [Some(0), Some(1), Some(0)];
        let pass = failover_event(both, 5.0, &with(vec![40.3, 80.9]), &slaves);
        assert_eq!(pass.status, Status::Pass, "{}", pass.message);
        let missing = failover_event(both, 5.0, &with(vec![40.3]), &slaves);
        assert_eq!(missing.status, Status::Fail);
        assert!(
            missing
                .message
                .starts_with("1 failover announcements, expected 2; none within the UP commit"),
            "{}",
            missing.message
        );
        let late = failover_event(both, 5.0, &with(vec![40.3, 90.0]), &slaves);
        assert_eq!(late.status, Status::Fail, "{}", late.message);
        let none = [Some(0), Some(0), Some(0)];
        assert_eq!(
            failover_event(none, 5.0, &with(Vec::new()), &slaves).status,
            Status::Pass
        );
        assert_eq!(
            failover_event(none, 5.0, &with(vec![40.3]), &slaves).status,
            Status::Fail
        );
    }

    /// Frames every ms from 0 to 99; cut at 10, down at 40, restored at 50, up at 80.
    fn observed(arrivals: Vec<Arrival>) -> Observed {
        Observed {
            slave: "a".into(),
            period_ms: 1.0,
            cut: Moment {
                from_ms: 10.0,
                to_ms: 10.5,
                from: "request",
            },
            down: moment(40.0, 40.5),
            restore: moment(50.0, 50.2),
            up: moment(80.0, 80.5),
            deadline_ms: 300.0,
            active_after_cut: None,
            active_after_restore: None,
            failover_events: Vec::new(),
            addresses_after_cut: None,
            addresses_after_restore: None,
            stream: Streamed {
                sends: (0..100)
                    .map(|i| SendTime {
                        from_us: i as f64 * 1e3 + 100.0,
                        to_us: i as f64 * 1e3 + 200.0,
                    })
                    .collect(),
                arrivals,
                ..Streamed::default()
            },
        }
    }

    fn active_backup_transmit() -> Transmit {
        Transmit {
            mode: Mode::ActiveBackup,
            slaves: vec!["a".into(), "b".into()],
            packets_per_slave: 1,
            hash_policy: "layer2",
            tlb_dynamic_lb: true,
            min_links: 0,
        }
    }

    fn active_backup() -> Failover {
        let t = active_backup_transmit();
        let frames =
            crate::frames::frames(&crate::frames::mix(1, 4, [2, 0, 0, 0, 0, 1], &[]), 1, 100);
        during_failover(&t, 0, [Some(0), Some(1), Some(1)], &frames)
    }

    fn arrival(seq: u32, slave: usize) -> Arrival {
        Arrival {
            seq,
            slave,
            at_us: 0.0,
            vlan: None,
        }
    }

    #[test]
    fn active_backup_loses_the_cut_active_slaves_frames_until_the_down_commit() {
        let names = ["a".to_string(), "b".to_string()];
        // Before the cut on a; lost from the cut to the DOWN commit; on b after it.
        let right: Vec<Arrival> = (0..100u32)
            .filter_map(|i| match i {
                0..10 => Some(arrival(i, 0)),
                10..40 => None,
                _ => Some(arrival(i, 1)),
            })
            .collect();
        let v = check(&active_backup(), &observed(right.clone()), &names);
        assert_eq!(v.status, Status::Pass, "{}", v.message);
        // Frames 10 and 40 were sent inside the cut's and the commit's brackets.
        assert!(
            v.message.contains("29 sent, 29 lost (model: 29)"),
            "{}",
            v.message
        );

        // A frame on b while a was still active is caught, with the frame and its state.
        let mut wrong = right;
        wrong.push(arrival(20, 1));
        let v = check(&active_backup(), &observed(wrong), &names);
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.message.contains("the first is #20")
                && v.message.contains("#20 at 20.1 ms (carrier lost, not yet down): expected nowhere, observed on b  <-"),
            "{}",
            v.message
        );
    }

    #[test]
    fn a_commit_that_never_comes_fails_and_frames_near_a_bracket_may_go_either_way() {
        let mut o = observed((0..10).map(|i| arrival(i, 0)).collect());
        o.down = None;
        assert_eq!(possible_states(&o, 60.0, 60.1), [State::CarrierLost]);
        let v = check(&active_backup(), &o, &["a".into(), "b".into()]);
        assert_eq!(v.status, Status::Fail);
        assert!(v.message.contains("did not commit a down"), "{}", v.message);

        let o = observed(Vec::new());
        assert_eq!(possible_states(&o, 5.0, 5.1), [State::Before]);
        assert_eq!(
            possible_states(&o, 10.2, 10.3),
            [State::Before, State::CarrierLost]
        );
        assert_eq!(
            possible_states(&o, 40.1, 40.2),
            [State::CarrierLost, State::Down]
        );
        assert_eq!(possible_states(&o, 90.0, 90.1), [State::Restored]);
        // Inside the cut's bracket the active slave's frame may arrive or be dropped.
        let f = active_backup();
        assert_eq!(
            alternatives(&f, &[State::Before, State::CarrierLost], 0, 10),
            vec![vec![], vec![0]]
        );
    }

    #[test]
    fn lacp_and_dynamic_tlb_streams_are_not_predicted() {
        use crate::distribution::failover_unpredictable;
        let mut t = active_backup_transmit();
        assert_eq!(failover_unpredictable(&t), None);
        t.mode = Mode::Ieee8023ad;
        assert!(failover_unpredictable(&t).is_some_and(|why| why.contains("LACP")));
        t.mode = Mode::BalanceTlb;
        assert!(failover_unpredictable(&t).is_some());
        t.tlb_dynamic_lb = false;
        assert_eq!(failover_unpredictable(&t), None);
    }
}
