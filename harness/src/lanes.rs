//! Parallel lanes: a run's cases, up to N at a time, in one kernel (`--jobs N`).
//!
//! Each case already lives in namespaces of its own, so cases can share a kernel; what they
//! must not share is a measurement window, nor the kernel log. Most of a run is the kernel's
//! own waiting (monitor ticks, delays, LACP timers), so lanes overlap those waits.
//!
//! - [`schedule`] hands the cases to N worker threads, each with its own async runtime (the
//!   traffic engine and the captures block their thread), in the cases' order, and gives the
//!   results back in that order whatever order they finish in.
//! - The [`Gate`] keeps measurement windows clean. A case holds it *shared* while it sets up,
//!   observes and tears down (work that loads the one CPU of a UML guest or changes links),
//!   *exclusively* while it applies its spec, perturbs it (a negative control), sends traffic
//!   (its rounds fill the CPU's receive backlog, one for all namespaces) or measures timing
//!   (the trials, the flap and the failover stream: samples the scheduler must not delay), and
//!   not at all while it waits for an 802.3ad aggregate and captures
//!   LACPDUs (nothing but the kernel's timers acts then). Every window records how many other
//!   cases were in flight, and how many of those were busy holding the gate, while it was open
//!   (the report's `windows`).
//! - The gate's [`Lanes`] bookkeeping also reads the kernel log (`/dev/kmsg`) for the whole run
//!   and attributes each record to the cases that can have caused it: see [`attribute`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Instant;

use crate::kmsg::{Kmsg, Record};
use crate::report::Window;

/// What the lanes of one run share: the gate, and who is in flight and busy.
pub struct Lanes {
    gate: tokio::sync::RwLock<()>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The cases in flight, by position in the run.
    cases: BTreeMap<usize, InFlight>,
    /// The case holding the gate exclusively.
    holder: Option<usize>,
    /// The kernel log, read for the whole run; None where it cannot be read.
    log: Option<Kmsg>,
    /// Open windows: their case, and the most other cases in flight and busy seen meanwhile.
    windows: BTreeMap<u64, (usize, usize, usize)>,
    next_window: u64,
}

struct InFlight {
    /// The names of every device the case creates: what its kernel log records name.
    devices: Vec<String>,
    /// Holding the gate, shared or exclusive.
    busy: bool,
    /// The kernel log records attributed to it and not yet taken.
    records: Vec<Record>,
}

impl Lanes {
    /// The lanes of a run; reads the kernel log from now on where it can.
    pub fn new() -> Lanes {
        Lanes {
            gate: tokio::sync::RwLock::new(()),
            state: Mutex::new(State {
                log: Kmsg::open().ok(),
                ..State::default()
            }),
        }
    }

    /// Changes the bookkeeping: records logged so far are attributed first, to the cases
    /// in flight before the change, and open windows see the change.
    fn change<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let records = state.log.as_mut().map(Kmsg::drain).unwrap_or_default();
        let devices: Vec<(usize, Vec<String>)> = state
            .cases
            .iter()
            .map(|(case, c)| (*case, c.devices.clone()))
            .collect();
        let devices: Vec<(usize, &[String])> =
            devices.iter().map(|(c, d)| (*c, d.as_slice())).collect();
        for record in records {
            for case in attribute(&record, &devices, state.holder) {
                if let Some(c) = state.cases.get_mut(&case) {
                    c.records.push(record.clone());
                }
            }
        }
        let out = f(&mut state);
        let State { cases, windows, .. } = &mut *state;
        for (case, in_flight, busy) in windows.values_mut() {
            let others = cases.iter().filter(|(c, _)| *c != case);
            *in_flight = (*in_flight).max(others.clone().count());
            *busy = (*busy).max(others.filter(|(_, c)| c.busy).count());
        }
        out
    }

    /// Case `case` begins; `devices` are the names of every device it will create.
    pub fn begin(&self, case: usize, devices: Vec<String>) -> Lane<'_> {
        self.change(|s| {
            s.cases.insert(
                case,
                InFlight {
                    devices,
                    busy: false,
                    records: Vec::new(),
                },
            )
        });
        Lane { lanes: self, case }
    }

    /// Whether the kernel log can be read.
    pub fn has_log(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log
            .is_some()
    }
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes::new()
    }
}

/// Which of the cases in flight (by position, with their devices' names) a kernel log record
/// is charged to: the cases owning the most of the devices it names (`bond0: (slave eno1)` is
/// the case's with both a `bond0` and an `eno1`), or the exclusive holder alone if it is one of
/// them (it is the only case acting on the kernel then); every case in flight when it names no
/// device of any (an oops, a WARN, a device already gone), so that no case's trouble goes
/// unnoticed. Device names can repeat between cases (every case may have a `bond0`): such a
/// record is charged to each owner.
fn attribute(record: &Record, cases: &[(usize, &[String])], holder: Option<usize>) -> Vec<usize> {
    let named = devices_named(&record.message);
    let owned = |devices: &[String]| {
        named
            .iter()
            .filter(|n| devices.iter().any(|d| d == *n))
            .count()
    };
    let most = cases.iter().map(|(_, d)| owned(d)).max().unwrap_or(0);
    let owners: Vec<usize> = cases
        .iter()
        .filter(|(_, devices)| most > 0 && owned(devices) == most)
        .map(|(case, _)| *case)
        .collect();
    match holder {
        _ if owners.is_empty() => cases.iter().map(|(case, _)| *case).collect(),
        Some(h) if owners.contains(&h) => vec![h],
        _ => owners,
    }
}

/// The device names a record starts with: the kernel's netdev messages read
/// `bond0: (slave eth0): link status definitely down` or `IPv6: ADDRCONF(NETDEV_UP): eth0: ...`;
/// every leading `word: ` and `(slave word): ` up to the first part with a space.
fn devices_named(message: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for part in message.split(": ") {
        let word = part
            .strip_prefix("(slave ")
            .and_then(|p| p.strip_suffix(')'))
            .unwrap_or(part);
        if word.is_empty() || word.contains(' ') {
            break;
        }
        out.push(word);
    }
    out
}

/// One case's handle on the lanes.
pub struct Lane<'a> {
    lanes: &'a Lanes,
    case: usize,
}

/// The gate, held by a case until dropped.
pub struct Held<'a> {
    lane: &'a Lane<'a>,
    _shared: Option<tokio::sync::RwLockReadGuard<'a, ()>>,
    _exclusive: Option<tokio::sync::RwLockWriteGuard<'a, ()>>,
}

impl<'a> Lane<'a> {
    /// Holds the gate shared: other cases may hold it shared too, none exclusively.
    pub async fn shared(&'a self) -> Held<'a> {
        let guard = self.lanes.gate.read().await;
        self.busy(true, false);
        Held {
            lane: self,
            _shared: Some(guard),
            _exclusive: None,
        }
    }

    /// Holds the gate alone: every other case is between its busy phases.
    pub async fn exclusive(&'a self) -> Held<'a> {
        let guard = self.lanes.gate.write().await;
        self.busy(true, true);
        Held {
            lane: self,
            _shared: None,
            _exclusive: Some(guard),
        }
    }

    /// Holds the gate alone if `exclusive`, else shared.
    pub async fn hold(&'a self, exclusive: bool) -> Held<'a> {
        if exclusive {
            self.exclusive().await
        } else {
            self.shared().await
        }
    }

    fn busy(&self, busy: bool, exclusive: bool) {
        let case = self.case;
        self.lanes.change(|s| {
            if let Some(c) = s.cases.get_mut(&case) {
                c.busy = busy;
            }
            if exclusive {
                s.holder = Some(case);
            } else if s.holder == Some(case) {
                s.holder = None;
            }
        });
    }

    /// Opens a measurement window named `phase`; [`Open::close`] says what else ran meanwhile.
    pub fn window(&self, phase: &'static str, exclusive: bool) -> Open<'_> {
        let case = self.case;
        let id = self.lanes.change(|s| {
            let id = s.next_window;
            s.next_window += 1;
            s.windows.insert(id, (case, 0, 0));
            id
        });
        Open {
            lanes: self.lanes,
            id,
            phase,
            exclusive,
            started: Instant::now(),
        }
    }

    /// The kernel log records charged to this case since the last call; None where the log
    /// cannot be read.
    pub fn records(&self) -> Option<Vec<Record>> {
        let case = self.case;
        self.lanes.change(|s| {
            let has_log = s.log.is_some();
            let records = s
                .cases
                .get_mut(&case)
                .map(|c| std::mem::take(&mut c.records));
            has_log.then(|| records.unwrap_or_default())
        })
    }
}

impl Drop for Lane<'_> {
    fn drop(&mut self) {
        let case = self.case;
        self.lanes.change(|s| s.cases.remove(&case));
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Before the guard goes: the records logged while it was held are charged first.
        self.lane.busy(false, false);
    }
}

/// A measurement window, open.
pub struct Open<'a> {
    lanes: &'a Lanes,
    id: u64,
    phase: &'static str,
    exclusive: bool,
    started: Instant,
}

impl Open<'_> {
    pub fn close(self) -> Window {
        let seen = self.lanes.change(|s| s.windows.remove(&self.id));
        let (_, others_in_flight, others_busy) = seen.unwrap_or_default();
        Window {
            phase: self.phase.to_string(),
            exclusive: self.exclusive,
            others_in_flight,
            others_busy,
            duration_ms: self.started.elapsed().as_secs_f64() * 1e3,
        }
    }
}

/// What a lane says about the case it carries out.
pub enum Message<T> {
    /// Case `index` begins.
    Begin(usize),
    /// Something happened in case `index` (a phase, a trial).
    Event(usize, crate::run::Event<'static>),
    /// Case `index` ended with this result.
    Done(usize, T),
}

/// Carries out `count` cases on one lane (a thread) per item of `lanes`: `work(lane, index,
/// tell)` carries out case `index` on a lane's thread with that lane's state and tells its
/// events through `tell`; `hear` hears every message on the calling thread, as it comes. Cases
/// begin in index order; the results come back in index order, with the lanes' states.
pub fn schedule<T: Send, S: Send>(
    count: usize,
    lanes: Vec<S>,
    work: impl Fn(&mut S, usize, &mut dyn FnMut(crate::run::Event<'static>)) -> T + Sync,
    hear: &mut dyn FnMut(Message<&T>),
) -> (Vec<T>, Vec<S>) {
    // One malloc arena for every thread: memory a lane frees (a traffic run's frames and
    // captures, tens of MB) is then reused by the next allocation on any thread. With an arena
    // per lane thread, glibc kept it from the main thread, whose report serialisation then
    // drove a 128 MB guest into thrashing for minutes (measured: harness/benches/traffic).
    // SAFETY: mallopt only changes the allocator's tuning; M_ARENA_MAX takes any count.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let next = Mutex::new(0usize);
    let (tx, rx) = mpsc::channel::<Message<T>>();
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    let states = std::thread::scope(|scope| {
        let lanes: Vec<_> = lanes
            .into_iter()
            .map(|mut state| {
                let (tx, next, work) = (tx.clone(), &next, &work);
                scope.spawn(move || {
                    loop {
                        let index = {
                            let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                            if *n == count {
                                break;
                            }
                            // Told while the lock is held: cases begin in index order.
                            let _ = tx.send(Message::Begin(*n));
                            *n += 1;
                            *n - 1
                        };
                        let result = work(&mut state, index, &mut |e| {
                            let _ = tx.send(Message::Event(index, e));
                        });
                        let _ = tx.send(Message::Done(index, result));
                    }
                    state
                })
            })
            .collect();
        drop(tx);
        for message in rx {
            match message {
                Message::Begin(i) => hear(Message::Begin(i)),
                Message::Event(i, e) => hear(Message::Event(i, e)),
                Message::Done(i, result) => {
                    hear(Message::Done(i, &result));
                    results[i] = Some(result);
                }
            }
        }
        lanes
            .into_iter()
            .map(|lane| lane.join().expect("a lane does not panic"))
            .collect()
    });
    let results = results
        .into_iter()
        .map(|r| r.expect("every case was carried out"))
        .collect();
    (results, states)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_come_back_in_case_order_whatever_order_they_finish_in() {
        let mut heard = Vec::new();
        // Early cases take longest: they finish last.
        let (results, lanes) = schedule(
            6,
            vec![0usize; 3],
            |done, i, tell| {
                tell(crate::run::Event::Phase("setup"));
                std::thread::sleep(Duration::from_millis(60 - 10 * i as u64));
                *done += 1;
                i * 10
            },
            &mut |m| {
                heard.push(match m {
                    Message::Begin(i) => format!("begin {i}"),
                    Message::Event(i, _) => format!("event {i}"),
                    Message::Done(i, r) => format!("done {i} {r}"),
                })
            },
        );
        assert_eq!(results, [0, 10, 20, 30, 40, 50]);
        assert_eq!(lanes.len(), 3);
        assert_eq!(lanes.iter().sum::<usize>(), 6);
        let begins: Vec<&String> = heard.iter().filter(|h| h.starts_with("begin")).collect();
        assert_eq!(
            begins,
            [
                "begin 0", "begin 1", "begin 2", "begin 3", "begin 4", "begin 5"
            ]
        );
        for i in 0..6 {
            let at = |what: &str| {
                heard
                    .iter()
                    .position(|h| h.starts_with(&format!("{what} {i}")))
            };
            assert!(
                at("begin") < at("event") && at("event") < at("done"),
                "{heard:?}"
            );
        }
        // Case 2 (40 ms) finishes before case 0 (60 ms), which began with it.
        let at = |h: &str| heard.iter().position(|x| x == h).unwrap();
        assert!(at("done 2 20") < at("done 0 0"), "{heard:?}");
    }

    #[test]
    fn one_lane_carries_out_the_cases_one_after_another() {
        let mut order = Vec::new();
        let (results, _) = schedule(4, vec![()], |_, i, _| i, &mut |m| {
            if let Message::Begin(i) | Message::Done(i, _) = m {
                order.push(i);
            }
        });
        assert_eq!(results, [0, 1, 2, 3]);
        assert_eq!(order, [0, 0, 1, 1, 2, 2, 3, 3]);
        let (none, _) = schedule(0, vec![(); 4], |_, i, _| i, &mut |_| {});
        assert!(none.is_empty());
    }

    fn record(message: &str, level: u8) -> Record {
        Record {
            at: Duration::ZERO,
            facility: 0,
            level,
            message: message.into(),
        }
    }

    #[test]
    fn records_go_to_the_cases_owning_the_devices_they_name_else_to_every_case() {
        let names = |n: &[&str]| -> Vec<String> { n.iter().map(|n| n.to_string()).collect() };
        let (a, b, c) = (
            names(&["bond0", "eth0", "eth1", "veth0"]),
            names(&["bond0", "eno1", "eno2", "switch0"]),
            names(&["bond1", "eth0"]),
        );
        let cases: [(usize, &[String]); 3] = [(0, &a), (1, &b), (2, &c)];
        let to = |m: &str, holder| attribute(&record(m, 3), &cases, holder);
        assert_eq!(
            to("bond0: (slave eno1): link status definitely down", None),
            [1]
        );
        assert_eq!(
            to("bond1: (slave eth0): link status definitely up", None),
            [2]
        );
        // The same name in two cases: both, unless one of them holds the gate alone.
        assert_eq!(
            to("bond0: Error: Cannot enslave bond to itself.", None),
            [0, 1]
        );
        assert_eq!(
            to("bond0: Error: Cannot enslave bond to itself.", Some(1)),
            [1]
        );
        assert_eq!(
            to("bond0: Error: Cannot enslave bond to itself.", Some(2)),
            [0, 1]
        );
        assert_eq!(
            to(
                "IPv6: ADDRCONF(NETDEV_CHANGE): switch0: link becomes ready",
                None
            ),
            [1]
        );
        // Nobody's device, or none at all: everybody's.
        assert_eq!(
            to("WARNING: CPU: 0 PID: 7 at net/core/dev.c:1 x", Some(1)),
            [0, 1, 2]
        );
        assert_eq!(to("lo: unregistered", None), [0, 1, 2]);
        assert_eq!(
            devices_named("bond0: (slave eth0): link status definitely down, disabling slave"),
            ["bond0", "eth0"]
        );
    }
}
