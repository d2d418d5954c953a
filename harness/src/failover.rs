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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{oneshot, watch};

use crate::checks::{Measurement, Status, Verdict, fit_phase, place, seen_on};
use crate::distribution::{Failover, Prediction, State};
use crate::error::{Error, Result};
use crate::frames::Frame;
use crate::kmsg::{self, Kmsg};
use crate::netlink::{self, SlaveEvent};
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
    /// The frames sent and where they arrived.
    pub stream: Streamed,
}

/// Where the stream goes and what it sends.
pub struct Setup {
    pub sockets: Sockets,
    pub src_mac: [u8; 6],
    pub run_id: u32,
    pub frames: Vec<Frame>,
    /// How long each commit may take at most, and each fence round.
    pub down_deadline: Duration,
    pub up_deadline: Duration,
    pub fence_deadline: Duration,
}

/// How many frames a stream needs at most: before the cut, both commits at their deadlines,
/// and the frames after each.
pub fn frames_needed(down_deadline: Duration, up_deadline: Duration) -> usize {
    let during = (down_deadline + up_deadline).as_micros() / PERIOD.as_micros();
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
    events: &mut UnboundedReceiver<SlaveEvent>,
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
    std::thread::Builder::new()
        .name("bondcheck-stream".into())
        .spawn(move || {
            let r = traffic::stream(sockets, src_mac, run_id, &frames, &pace, fence_deadline);
            let _ = done_tx.send(r);
        })
        .map_err(|e| Error::run(format!("failover: cannot start the stream: {e}")))?;
    let now_ms = || start.elapsed().as_secs_f64() * 1e3;

    more(&mut progress, total, &mut done).await?;
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
        stream: Streamed::default(),
    };
    let until = Instant::now() + setup.down_deadline;
    if let Some((carrier, committed)) = commit(events, slave, "down", until, &start).await {
        observed.active_after_cut = active(built, bond).await?;
        observed.cut.to_ms = acked.max(carrier.unwrap_or(committed));
        observed.down = Some(bracket(
            &mut log,
            slave,
            "down",
            start_mono,
            cut_from,
            now_ms(),
        ));

        more(&mut progress, total, &mut done).await?;
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
        if commit(events, slave, "up", until, &start).await.is_some() {
            observed.active_after_restore = active(built, bond).await?;
            let up = bracket(&mut log, slave, "up", start_mono, restore_from, now_ms());
            observed.up = Some(up);
            more(&mut progress, total, &mut done).await?;
        }
    } else {
        // No commit: the carrier comes back anyway, so that the closing fence reaches every
        // capture.
        netlink::set_up(&peer.handle, peer.index, true)
            .await
            .map_err(|r| Error::run(format!("failover: restoring {slave}: {r}")))?;
    }
    stop.store(true, Ordering::Release);
    observed.stream = done
        .await
        .map_err(|_| Error::run("failover: the stream ended without a result"))??;
    Ok(observed)
}

/// Waits until the stream has sent SETTLED_FRAMES more frames.
async fn more(
    progress: &mut watch::Receiver<usize>,
    total: usize,
    done: &mut oneshot::Receiver<Result<Streamed>>,
) -> Result<()> {
    let n = *progress.borrow() + SETTLED_FRAMES;
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
/// its carrier change was announced, if it was, and when the commit was.
async fn commit(
    events: &mut UnboundedReceiver<SlaveEvent>,
    slave: &str,
    mii_status: &str,
    until: Instant,
    start: &Instant,
) -> Option<(Option<f64>, f64)> {
    let at = |i: Instant| (i - *start).as_secs_f64() * 1e3;
    let mut carrier = None;
    loop {
        let event = timing::next_event(events, until).await?;
        if event.slave != slave {
            continue;
        }
        if carrier.is_none() && event.carrier == (mii_status == "up") {
            carrier = Some(at(event.at));
        }
        if event.mii_status == mii_status {
            return Some((carrier, at(event.at)));
        }
    }
}

/// The active slave, read with a dump: the dump waits for the lock the commit holds, so it
/// also marks the moment the commit's whole work (failover included) is done.
async fn active(built: &Built, bond: &str) -> Result<Option<String>> {
    let view = timing::bond_view(built, bond).await?;
    Ok(view.options.get("active_slave").map(ToString::to_string))
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
        let at = kmsg::find(&log.drain(), slave, &format!("definitely {what}"))?;
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
    let lost = stream.capture_loss();
    if lost > 0 {
        return verdict(
            expected,
            Status::Error,
            format!(
                "the captures themselves dropped {lost} frames: what they saw is incomplete, so \
                 nothing is judged"
            ),
            Vec::new(),
        );
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

    fn moment(from_ms: f64, to_ms: f64) -> Option<Moment> {
        Some(Moment {
            from_ms,
            to_ms,
            from: "kmsg",
        })
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
