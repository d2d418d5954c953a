//! LACPDUs on the wire. Every slave's peer end is captured from the moment the topology is
//! built (before the bond exists), with kernel timestamps, so every LACPDU each side sent is
//! seen, the first ones included: the bond's (received on the peer end) and the partner's
//! (sent by the peer end). From them: the interval between one side's periodic LACPDUs, which
//! the driver derives from the lacp_rate of the *other* side, and whether a passive bond
//! (lacp_active off) spoke before it was spoken to. Where no partner answers, the same captures
//! feed [`crate::partnerless`].

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessageOwned, LinkAddr, MsgFlags, recvmsg, setsockopt, sockopt};

use crate::checks::Verdict;
use crate::error::{Error, Result};
use crate::lacp::ACTIVITY;
use crate::model::Rule;
use crate::topology::Built;
use crate::traffic;

/// include/uapi/linux/if_ether.h ETH_P_SLOW; the LACPDU subtype (802.1AX, 6.4.2.3).
const ETH_P_SLOW: u16 = 0x8809;
const LACPDU_SUBTYPE: u8 = 1;
/// Offsets in a LACPDU frame: 14 bytes of Ethernet header, then subtype, version, TLV type, TLV
/// length, and the actor's system priority (2), system (6), key (2), port priority (2), port
/// (2) and state.
const ACTOR_SYSTEM_PRIORITY_AT: usize = 18;
const ACTOR_SYSTEM_AT: usize = 20;
const ACTOR_PORT_AT: usize = 30;
const ACTOR_STATE_AT: usize = 32;
/// Offset of the partner state: the actor TLV's state, 3 reserved bytes, then the partner TLV
/// laid out as the actor's (type, length, system priority, system, key, port priority, port).
const PARTNER_STATE_AT: usize = ACTOR_STATE_AT + 4 + 16;
/// linux/if_packet.h: a frame the capturing interface sent.
const PACKET_OUTGOING: u8 = 4;

/// Which side of one port sent a LACPDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The bond under test (captured arriving at the peer end).
    Bond,
    /// The LACP partner, or whatever is on the peer end (captured leaving it).
    Partner,
}

/// One LACPDU seen on one slave's peer end.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Pdu {
    /// Index of the slave in enslave order.
    pub slave: usize,
    /// Which side sent it.
    pub from: Side,
    /// Kernel timestamp, from the moment the captures were opened.
    pub at_ms: f64,
    /// The sender's actor state (LACP_STATE_* bits).
    pub actor_state: u8,
    /// The sender's partner state: what it last heard of the other side's actor state.
    pub partner_state: u8,
    /// The sender's system priority (its actor TLV).
    pub actor_system_priority: u16,
    /// The sender's system (its actor TLV), a MAC address.
    #[serde(serialize_with = "mac_as_text")]
    #[schemars(with = "String")]
    pub actor_system: [u8; 6],
    /// The sender's port number (its actor TLV).
    pub actor_port: u16,
}

fn mac_as_text<S: serde::Serializer>(mac: &[u8; 6], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::netlink::mac_text(mac))
}

/// Open captures on every slave's peer end.
pub struct Capture {
    sockets: Vec<Option<OwnedFd>>,
    /// Wall clock when the captures were opened: kernel timestamps are wall-clock times.
    epoch: SystemTime,
    opened: Instant,
    pdus: Vec<Pdu>,
}

impl Capture {
    /// Opens a capture of everything on each slave's peer end (in enslave order). ETH_P_ALL, not
    /// ETH_P_SLOW: a partner bond's receive handler consumes LACPDUs before any handler bound
    /// to their ethertype sees them; only the taps that see every frame come first.
    pub fn open(built: &Built, slaves: &[String]) -> Result<Capture> {
        let mut sockets = Vec::new();
        for slave in slaves {
            sockets.push(match built.peer(slave) {
                Some(peer) => {
                    let fd = traffic::packet_socket(
                        built.peer_ns(peer),
                        peer.index,
                        traffic::ETH_P_ALL,
                    )?;
                    setsockopt(&fd, sockopt::ReceiveTimestampns, &true)
                        .map_err(|e| Error::run(format!("LACPDU capture: SO_TIMESTAMPNS: {e}")))?;
                    Some(fd)
                }
                None => None,
            });
        }
        Ok(Capture {
            sockets,
            epoch: SystemTime::now(),
            opened: Instant::now(),
            pdus: Vec::new(),
        })
    }

    /// Milliseconds on the captures' clock for an instant of this process.
    pub fn ms_at(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.opened).as_secs_f64() * 1e3
    }

    /// Reads LACPDUs until `done` holds for all seen so far and the time on the captures' clock,
    /// or `until` passes; returns every LACPDU seen since the captures were opened. Blocks on
    /// the sockets, never sleeps.
    pub fn collect(
        &mut self,
        until: Instant,
        done: impl Fn(&[Pdu], f64) -> bool,
    ) -> Result<&[Pdu]> {
        loop {
            self.drain()?;
            let now = Instant::now();
            let left = until.saturating_duration_since(now);
            if done(&self.pdus, self.ms_at(now)) || left.is_zero() {
                return Ok(&self.pdus);
            }
            let mut polled: Vec<PollFd> = self
                .sockets
                .iter()
                .flatten()
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                .collect();
            // At least once a state machine tick, `done` is asked again without a new LACPDU:
            // a silence can decide it.
            let ms = u16::try_from(left.as_millis().min(TICK_MS as u128)).unwrap_or(u16::MAX);
            match poll(&mut polled, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(Error::run(format!("LACPDU capture: poll: {e}"))),
            }
        }
    }

    /// Reads whatever is queued on every capture without blocking.
    fn drain(&mut self) -> Result<()> {
        let mut buf = [0u8; 256];
        for (slave, socket) in self.sockets.iter().enumerate() {
            let Some(fd) = socket else { continue };
            loop {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
                let (len, at, pkttype) = match recvmsg::<LinkAddr>(
                    fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(m) => {
                        let at = m
                            .cmsgs()
                            .map_err(|e| Error::run(format!("LACPDU capture: {e}")))?
                            .find_map(|c| match c {
                                ControlMessageOwned::ScmTimestampns(t) => Some(Duration::from(t)),
                                _ => None,
                            });
                        (m.bytes, at, m.address.map(|a| a.pkttype()))
                    }
                    Err(nix::Error::EAGAIN) => break,
                    // ENETDOWN: the peer end went down (a port released from its master is
                    // closed and reopened); the socket reports it once and captures on.
                    Err(nix::Error::EINTR | nix::Error::ENETDOWN) => continue,
                    Err(e) => return Err(Error::run(format!("LACPDU capture: recvmsg: {e}"))),
                };
                let frame = &buf[..len.min(buf.len())];
                if frame.len() <= PARTNER_STATE_AT
                    || u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_SLOW
                    || frame[14] != LACPDU_SUBTYPE
                {
                    continue;
                }
                let at_ms = at
                    .and_then(|t| (SystemTime::UNIX_EPOCH + t).duration_since(self.epoch).ok())
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1e3;
                self.pdus.push(Pdu {
                    slave,
                    from: if pkttype == Some(PACKET_OUTGOING) {
                        Side::Partner
                    } else {
                        Side::Bond
                    },
                    at_ms,
                    actor_state: frame[ACTOR_STATE_AT],
                    partner_state: frame[PARTNER_STATE_AT],
                    actor_system_priority: u16::from_be_bytes([
                        frame[ACTOR_SYSTEM_PRIORITY_AT],
                        frame[ACTOR_SYSTEM_PRIORITY_AT + 1],
                    ]),
                    actor_system: frame[ACTOR_SYSTEM_AT..ACTOR_SYSTEM_AT + 6]
                        .try_into()
                        .unwrap_or_default(),
                    actor_port: u16::from_be_bytes([
                        frame[ACTOR_PORT_AT],
                        frame[ACTOR_PORT_AT + 1],
                    ]),
                });
            }
        }
        Ok(())
    }
}

/// Intervals measured per side and port in steady state: with fast LACPDUs, 9-, 9- and 12-tick
/// intervals come round in turn (see [`Cadence::window`]), so three see each kind.
pub const INTERVALS: usize = 3;

/// Id of the check of both sides' LACPDU intervals on one port.
pub fn interval_check(slave: &str) -> String {
    format!("lacp.{slave}.lacpdu_interval")
}

/// Id of the check of the LACP_Activity bit in the bond's LACPDUs on one port.
pub fn activity_check(slave: &str) -> String {
    format!("lacp.{slave}.activity")
}

/// The checks of a case with an LACP partner, in report order.
pub fn check_ids(slaves: &[String]) -> Vec<String> {
    slaves
        .iter()
        .flat_map(|s| [interval_check(s), activity_check(s)])
        .collect()
}

/// bond_3ad.c AD_FAST_PERIODIC_TIME and AD_SLOW_PERIODIC_TIME in state machine ticks
/// (AD_TIMER_INTERVAL, 100 ms); ad_tx_machine sends at most AD_MAX_TX_IN_SECOND (3) a second,
/// that is at every third tick.
const FAST_TICKS: u64 = 10;
const SLOW_TICKS: u64 = 300;
const TX_TICKS: u64 = 3;
const TICK_MS: f64 = 100.0;
/// How far the state machine's re-armed ticks may fall behind P+G over many ticks on a loaded
/// backend: the work runs when the CPU is free, and every tick re-arms from then. Measured in
/// UML on a shared host: 300-tick intervals 0.1% to 0.4% over 300·(P+G).
const DRIFT: f64 = 0.01;

/// What one side's LACPDUs look like once the ports have aggregated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Cadence {
    /// A periodic LACPDU every `ticks` state machine ticks.
    Periodic { ticks: u64 },
    /// No periodic LACPDUs: only answers and state changes.
    None,
}

/// One side of a port as the model sees it: its lacp_active and lacp_rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub active: bool,
    pub fast: bool,
}

/// The state machines' clock on this kernel: a tick is the 802.3ad work re-armed every
/// P = ceil(100 ms / jiffy) jiffies, which the timer wheel fires up to G jiffies late.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    pub hz: u32,
    pub tolerance_ms: f64,
}

impl Clock {
    fn jiffy_ms(&self) -> f64 {
        1000.0 / f64::from(self.hz)
    }
    pub(crate) fn period(&self) -> f64 {
        (TICK_MS / self.jiffy_ms()).ceil()
    }
    /// Below 63 jiffies the timer wheel's first level has a granularity of one jiffy.
    fn granularity(&self) -> f64 {
        1.0
    }
    /// The longest a tick can take, in ms.
    fn tick_max_ms(&self) -> f64 {
        (self.period() + self.granularity()) * self.jiffy_ms()
    }

    /// The window of `ticks` state machine ticks between two captured LACPDUs, in ms: each
    /// tick lasts P to P+G jiffies, the ticks may drift later by [`DRIFT`], and each end is a
    /// sample with the backend's tolerance, so twice that each way.
    pub(crate) fn ticks_window(&self, ticks: u64) -> (f64, f64) {
        (
            ticks as f64 * self.period() * self.jiffy_ms() - 2.0 * self.tolerance_ms,
            ticks as f64 * self.tick_max_ms() * (1.0 + DRIFT) + 2.0 * self.tolerance_ms,
        )
    }
}

impl Cadence {
    /// The 802.1AX rule as bond_3ad.c (ad_periodic_machine) has it: a side transmits
    /// periodically if it or its partner is active, at the rate its *partner* asked for (the
    /// partner's LACP_Timeout bit, which is the partner's lacp_rate).
    pub fn of(sender: Actor, receiver: Actor) -> Cadence {
        if !(sender.active || receiver.active) {
            Cadence::None
        } else if receiver.fast {
            Cadence::Periodic { ticks: FAST_TICKS }
        } else {
            Cadence::Periodic { ticks: SLOW_TICKS }
        }
    }

    /// The interval window of a periodic cadence in ms: the periodic machine sets NTT every N
    /// ticks, and the transmit machine sends it at its next turn, every third tick, so an
    /// interval is 3·floor(N/3) or 3·ceil(N/3) ticks (9 or 12 for the fast 10)
    /// ([`Clock::ticks_window`]).
    fn window(ticks: u64, clock: &Clock) -> (f64, f64) {
        let short = ticks / TX_TICKS * TX_TICKS;
        let long = ticks.div_ceil(TX_TICKS) * TX_TICKS;
        (clock.ticks_window(short).0, clock.ticks_window(long).1)
    }
}

/// What the model expects of one port's LACPDUs, both ways.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "LacpduCadences")]
pub struct Expected {
    /// How the bond sends.
    pub bond: Cadence,
    /// How the partner sends.
    pub partner: Cadence,
    /// Whether the bond's LACPDUs carry LACP_Activity (lacp_active on).
    pub bond_active: bool,
}

/// Whether measuring a case's LACPDU intervals needs the long profile (a side sends slow
/// LACPDUs): what the model and the topology say, before anything runs.
pub fn needs_long_profile(
    model: &crate::model::Model,
    topology: &crate::topology::Topology,
) -> bool {
    let (bond, partner) = actors(model, topology);
    expect(bond, partner).slow()
}

/// The expectation for a bond and partner with these settings.
pub fn expect(bond: Actor, partner: Actor) -> Expected {
    Expected {
        bond: Cadence::of(bond, partner),
        partner: Cadence::of(partner, bond),
        bond_active: bond.active,
    }
}

/// The bond's side from the model's effective options, the partner's from the topology's
/// peer-master options (the kernel's defaults, lacp_active on and lacp_rate slow, where the
/// topology sets none).
pub fn actors(model: &crate::model::Model, topology: &crate::topology::Topology) -> (Actor, Actor) {
    let peer = |name: &str| topology.peer_master.as_ref().and_then(|m| m.option(name));
    (
        bond_actor(model),
        Actor {
            active: peer("lacp_active") != Some(0),
            fast: peer("lacp_rate") == Some(1),
        },
    )
}

/// The bond's side from the model's effective options.
pub fn bond_actor(model: &crate::model::Model) -> Actor {
    let expects = |check: &str, word: &str| {
        model
            .expectations
            .iter()
            .any(|e| e.check == check && e.expected == crate::model::Value::Text(word.into()))
    };
    Actor {
        active: !expects("option.lacp_active", "off"),
        fast: expects("option.lacp_rate", "fast"),
    }
}

impl Expected {
    /// Whether a side sends slow LACPDUs (every 30 s): measuring them takes minutes.
    pub fn slow(&self) -> bool {
        [self.bond, self.partner].contains(&Cadence::Periodic { ticks: SLOW_TICKS })
    }

    /// Whether the intervals are measured in a run of the long profile or not: slow LACPDUs
    /// only in the long one.
    pub fn measured(&self, long_profile: bool) -> bool {
        !self.slow() || long_profile
    }
}

/// How long to capture once the aggregate formed: long enough for every periodic side to show
/// [`INTERVALS`] intervals after its steady start (the first LACPDU within a longest interval,
/// then one per interval), and as long for a side expected silent, to see it would have
/// spoken. Without `slow`, only as long as fast LACPDUs need.
pub fn window(expected: &Expected, clock: &Clock, slow: bool) -> Duration {
    let longest = [expected.bond, expected.partner]
        .iter()
        .map(|c| match c {
            Cadence::Periodic { ticks } if slow || *ticks != SLOW_TICKS => {
                Cadence::window(*ticks, clock).1
            }
            _ => Cadence::window(FAST_TICKS, clock).1,
        })
        .fold(0.0, f64::max);
    Duration::from_secs_f64(longest * (INTERVALS + 1) as f64 / 1e3)
}

/// The kernel time the steady-state capture cannot avoid, in ms at `hz`, ticks of at least
/// P + 1 jiffy ([`crate::model::least_tick_ms`]). A periodic side sets NTT every N ticks and
/// sends at the transmit machine's next turn, 0 to 2 ticks later, on its grid of every third
/// tick: [`INTERVALS`] intervals span at least INTERVALS·N − 2 ticks, rounded up to that grid
/// (30 ticks for the fast 10). A side expected silent is watched for as long as that many
/// fast intervals could take at most, one more for the first: (INTERVALS + 1)·12 ticks. None
/// where the intervals are not measured (`measured` false: a slow side outside the long
/// profile).
pub fn inherent(expected: &Expected, hz: u32, measured: bool) -> Option<crate::model::Wait> {
    let clock = Clock {
        hz,
        tolerance_ms: 0.0,
    };
    let tick = crate::model::least_tick_ms(clock.period() as u64, hz);
    let n = INTERVALS as u64;
    let span = |ticks: u64| (n * ticks - 2).div_ceil(TX_TICKS) * TX_TICKS;
    let watch = (n + 1) * FAST_TICKS.div_ceil(TX_TICKS) * TX_TICKS;
    let ticks = [expected.bond, expected.partner]
        .iter()
        .map(|c| match c {
            Cadence::Periodic { ticks } => span(*ticks),
            Cadence::None => watch,
        })
        .max()?;
    let silent = expected.bond == Cadence::None;
    measured.then(|| crate::model::Wait {
        term: "lacpdus",
        ms: ticks as f64 * tick,
        rule: crate::model::Rule {
            text: if silent {
                format!(
                    "{ticks}·{tick} ms: sides expected silent are watched for as long as \
                     {INTERVALS} fast intervals and the wait for the first could take, \
                     ({INTERVALS}+1)·3·ceil(10/3) state machine ticks of at least {tick} ms"
                )
            } else {
                format!(
                    "{ticks}·{tick} ms: the LACPDU checks judge {INTERVALS} intervals of each \
                     side, which span at least {INTERVALS}·N − 2 state machine ticks of at \
                     least {tick} ms, on the transmit machine's grid of every third tick"
                )
            },
            source: SOURCE,
        },
    })
}

/// The states the aggregate formed with on one port, from the bond's netlink view: the bond
/// port's actor state and the partner's as the bond port heard it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Settled {
    /// The bond port's actor state (LACP_STATE_* bits).
    pub bond: u8,
    /// The partner's actor state, as the bond port heard it.
    pub partner: u8,
}

/// Where a periodic side's steady state begins on one port (its LACPDUs after this time are
/// the periodic ones), from the LACPDUs seen so far; None while the side has sent none with
/// its settled state. Besides the periodic machine's NTT, a side sends when its own state
/// changes (the LACPDU then carries a new actor state) and, at the transmit machine's next
/// turn, after it received an LACPDU whose partner state is not its own (__update_ntt). So
/// its steady state begins after the last LACPDU of its own with a new actor state, and
/// three of the longest ticks (and the backend's tolerance) after the last LACPDU of the
/// other side that did not show it its settled state. `settled` is None where the aggregate
/// did not form: the other side's LACPDUs up to `formed_ms` count as not showing it.
pub fn steady_from(
    side: Side,
    pdus: &[&Pdu],
    settled: Option<Settled>,
    formed_ms: f64,
    clock: &Clock,
) -> Option<f64> {
    let own: Vec<&&Pdu> = pdus.iter().filter(|p| p.from == side).collect();
    let changed = own
        .iter()
        .enumerate()
        .rfind(|(i, p)| *i == 0 || own[i - 1].actor_state != p.actor_state)
        .map(|(_, p)| p.at_ms);
    let settled_own = |state: u8| {
        settled.is_none_or(|st| match side {
            Side::Bond => st.bond == state,
            Side::Partner => st.partner == state,
        })
    };
    // The last of its own LACPDUs must show its settled state: one that does not is a change
    // still under way.
    if !own.last().is_some_and(|p| settled_own(p.actor_state)) {
        return None;
    }
    let stale = pdus
        .iter()
        .filter(|p| p.from != side)
        .filter(|p| settled.map_or(p.at_ms <= formed_ms, |_| !settled_own(p.partner_state)))
        .map(|p| {
            p.at_ms + TX_TICKS as f64 * clock.tick_max_ms() * (1.0 + DRIFT) + clock.tolerance_ms
        })
        .fold(f64::NEG_INFINITY, f64::max);
    changed.map(|c| c.max(stale))
}

/// A side's LACPDUs on one port after `from` (its steady start).
fn after<'a>(side: Side, pdus: &[&'a Pdu], from: f64) -> Vec<&'a Pdu> {
    pdus.iter()
        .filter(|p| p.from == side && p.at_ms > from)
        .copied()
        .collect()
}

/// Whether the capture can stop at `now_ms`: on every port, each periodic side has shown
/// [`INTERVALS`] intervals after its steady start, or a side already fails whatever comes
/// later (an interval outside its window, a gap longer than the longest interval, unprompted
/// LACPDUs a period apart). A port whose sides are expected silent is only decided by such a
/// failure: its silence takes the whole window to show.
pub fn decided(
    expected: &Expected,
    settled: &[Option<Settled>],
    pdus: &[Pdu],
    formed_ms: f64,
    now_ms: f64,
    clock: &Clock,
) -> bool {
    settled.iter().enumerate().all(|(port, st)| {
        let on_port: Vec<&Pdu> = pdus.iter().filter(|p| p.slave == port).collect();
        let judged = [
            (Side::Bond, expected.bond),
            (Side::Partner, expected.partner),
        ]
        .map(|(side, cadence)| {
            judge_side(side, cadence, &on_port, *st, (formed_ms, now_ms), clock)
        });
        judged.iter().any(|j| !j.problems.is_empty()) || judged.iter().all(|j| j.complete)
    })
}

/// The LACPDUs and what they were judged against, for the report.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "Lacpdus")]
pub struct Observed {
    /// The model's cadence of each side.
    pub expected: Expected,
    /// When the aggregate was seen formed, on the captures' clock; sides expected silent are
    /// judged from here.
    pub formed_ms: f64,
    /// How long the captures ran after that.
    pub window_ms: f64,
    /// Each port's settled states and where each periodic side's steady state began (see
    /// [`steady_from`]), in enslave order.
    pub ports: Vec<PortSteady>,
    /// Every LACPDU seen.
    pub pdus: Vec<Pdu>,
}

/// One port's steady state, for the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct PortSteady {
    /// The states the aggregate formed with; None where it did not form.
    pub settled: Option<Settled>,
    /// Where the bond's periodic LACPDUs begin; None where it has none.
    pub bond_from_ms: Option<f64>,
    /// Where the partner's periodic LACPDUs begin; None where it has none.
    pub partner_from_ms: Option<f64>,
}

impl Observed {
    /// Puts together what the capture saw; `settled` per port in enslave order.
    pub fn new(
        expected: Expected,
        formed_ms: f64,
        window_ms: f64,
        settled: &[Option<Settled>],
        pdus: Vec<Pdu>,
        clock: &Clock,
    ) -> Observed {
        let ports = settled
            .iter()
            .enumerate()
            .map(|(port, st)| {
                let on_port: Vec<&Pdu> = pdus.iter().filter(|p| p.slave == port).collect();
                let from = |side, cadence| match cadence {
                    Cadence::Periodic { .. } => steady_from(side, &on_port, *st, formed_ms, clock),
                    Cadence::None => None,
                };
                PortSteady {
                    settled: *st,
                    bond_from_ms: from(Side::Bond, expected.bond),
                    partner_from_ms: from(Side::Partner, expected.partner),
                }
            })
            .collect();
        Observed {
            expected,
            formed_ms,
            window_ms,
            ports,
            pdus,
        }
    }
}

const SOURCE: &str = "drivers/net/bonding/bond_3ad.c (ad_periodic_machine, ad_tx_machine, \
                      ad_initialize_port, AD_FAST_PERIODIC_TIME, AD_SLOW_PERIODIC_TIME, \
                      AD_MAX_TX_IN_SECOND); IEEE 802.1AX-2014 6.4.13";

fn side_name(side: Side, slave: &str, partner: &str) -> String {
    match side {
        Side::Bond => format!("{slave} → {partner}"),
        Side::Partner => format!("{partner} → {slave}"),
    }
}

fn describe(c: Cadence, clock: &Clock) -> String {
    match c {
        Cadence::Periodic { ticks } => {
            let (lo, hi) = Cadence::window(ticks, clock);
            format!("every {ticks} ticks, intervals in [{lo:.0}, {hi:.0}] ms")
        }
        Cadence::None => "no periodic LACPDUs".into(),
    }
}

/// One side of one port as judged.
struct Judged {
    /// What was seen, in words.
    seen: String,
    /// What fails whatever the capture sees later.
    problems: Vec<String>,
    /// The intervals judged.
    intervals: usize,
    /// A periodic side has shown [`INTERVALS`] intervals (never for a side expected silent).
    complete: bool,
}

/// Judges one side of one port as captured from the aggregate's forming to `end_ms`, both on
/// the captures' clock (`span`). A periodic side is judged by its LACPDUs after its steady
/// start ([`steady_from`]), a side expected silent by all it sent after the aggregate formed.
fn judge_side(
    side: Side,
    cadence: Cadence,
    pdus: &[&Pdu],
    settled: Option<Settled>,
    (formed_ms, end_ms): (f64, f64),
    clock: &Clock,
) -> Judged {
    let from = match cadence {
        Cadence::Periodic { .. } => steady_from(side, pdus, settled, formed_ms, clock),
        Cadence::None => None,
    };
    let (own, since): (Vec<f64>, String) = match (cadence, from) {
        (Cadence::Periodic { .. }, Some(from)) => (
            after(side, pdus, from).iter().map(|p| p.at_ms).collect(),
            format!(" after its steady start at {from:.1} ms"),
        ),
        (Cadence::Periodic { .. }, None) => (
            Vec::new(),
            " (no steady start: none showed its settled state)".into(),
        ),
        (Cadence::None, _) => (
            pdus.iter()
                .filter(|p| p.from == side && p.at_ms >= formed_ms)
                .map(|p| p.at_ms)
                .collect(),
            String::new(),
        ),
    };
    let intervals: Vec<f64> = own.windows(2).map(|w| w[1] - w[0]).collect();
    let shown: Vec<String> = intervals.iter().map(|i| format!("{i:.1}")).collect();
    let seen = format!(
        "{} LACPDUs{since}, intervals [{}] ms",
        own.len(),
        shown.join(", ")
    );
    let mut problems = Vec::new();
    let mut complete = false;
    match cadence {
        Cadence::Periodic { ticks } => {
            let (lo, hi) = Cadence::window(ticks, clock);
            for i in intervals.iter().filter(|i| !(lo..=hi).contains(*i)) {
                problems.push(format!("interval {i:.1} ms outside [{lo:.0}, {hi:.0}]"));
            }
            // Silence since the last LACPDU (or the steady start) longer than the longest
            // interval is one too long, whatever comes after.
            if let Some(last) = own.last().copied().or(from) {
                let gap = end_ms - last;
                if gap > hi && intervals.len() < INTERVALS {
                    problems.push(format!(
                        "none in the {gap:.0} ms from {last:.1} ms to the capture's end, more \
                         than the longest interval {hi:.0}"
                    ));
                }
            }
            complete = intervals.len() >= INTERVALS;
        }
        Cadence::None => {
            // An LACPDU answering the other side's (at the transmit machine's next turn) or a
            // state change is not periodic; two unprompted ones a periodic interval apart are.
            let answer_ms = TX_TICKS as f64 * clock.tick_max_ms() + clock.tolerance_ms;
            let unprompted: Vec<f64> = own
                .iter()
                .copied()
                .filter(|t| {
                    !pdus
                        .iter()
                        .any(|p| p.from != side && p.at_ms <= *t && *t - p.at_ms <= answer_ms)
                })
                .collect();
            let periodic = [FAST_TICKS, SLOW_TICKS].map(|n| Cadence::window(n, clock));
            for w in unprompted.windows(2) {
                let i = w[1] - w[0];
                if periodic.iter().any(|(lo, hi)| (*lo..=*hi).contains(&i)) {
                    problems.push(format!(
                        "unprompted LACPDUs at {:.1} and {:.1} ms, {i:.1} ms apart: periodic",
                        w[0], w[1]
                    ));
                }
            }
        }
    }
    Judged {
        seen,
        problems,
        intervals: intervals.len(),
        complete,
    }
}

fn verdict(check: String, texts: (String, String), problems: &[String], rule: String) -> Verdict {
    Verdict::from_problems(
        check,
        texts,
        problems,
        Rule {
            text: rule,
            source: SOURCE,
        },
    )
}

fn interval_rule(bond: Actor, partner: Actor, partner_name: &str, clock: &Clock) -> String {
    let word = |a: Actor| {
        format!(
            "lacp_active {}, lacp_rate {}",
            if a.active { "on" } else { "off" },
            if a.fast { "fast" } else { "slow" }
        )
    };
    format!(
        "a side sends periodic LACPDUs if it or its partner is active, at the rate the partner \
         asks for with its lacp_rate (LACP_Timeout): fast every {FAST_TICKS} ticks, slow every \
         {SLOW_TICKS}; the transmit machine sends at every {TX_TICKS}rd tick, so intervals are \
         3·floor(N/3) or 3·ceil(N/3) ticks of P = {} to P+G = {} jiffies (HZ = {}), +1% drift, ±2·{} ms; \
         bond: {}, {partner_name}: {}",
        clock.period(),
        clock.period() + clock.granularity(),
        clock.hz,
        clock.tolerance_ms,
        word(bond),
        word(partner)
    )
}

/// `lacp.<slave>.lacpdu_interval` and `lacp.<slave>.activity` for every slave; the intervals
/// skipped for `skip_intervals`, if given.
pub fn checks(
    obs: &Observed,
    actors: (Actor, Actor),
    slaves: &[String],
    partner_name: &str,
    clock: &Clock,
    skip_intervals: Option<&str>,
) -> Vec<Verdict> {
    let e = &obs.expected;
    let mut out = Vec::new();
    for (i, slave) in slaves.iter().enumerate() {
        let pdus: Vec<&Pdu> = obs.pdus.iter().filter(|p| p.slave == i).collect();
        let mut expected = Vec::new();
        let mut observed = Vec::new();
        let mut problems = Vec::new();
        let settled = obs.ports.get(i).and_then(|p| p.settled);
        let span = (obs.formed_ms, obs.formed_ms + obs.window_ms);
        let sides = [(Side::Bond, e.bond), (Side::Partner, e.partner)];
        let judged =
            sides.map(|(side, cadence)| judge_side(side, cadence, &pdus, settled, span, clock));
        // The capture stops once every port is decided: where a side of this port already
        // failed, the other may have had no time for all its intervals.
        let failed = judged.iter().any(|j| !j.problems.is_empty());
        for ((side, cadence), judged) in sides.into_iter().zip(judged) {
            let name = side_name(side, slave, partner_name);
            let (seen, mut found) = (judged.seen, judged.problems);
            if let (Cadence::Periodic { ticks }, false, false) = (cadence, judged.complete, failed)
            {
                let n = judged.intervals;
                found.insert(
                    0,
                    format!("{n} intervals, not {INTERVALS}: no LACPDU every {ticks} ticks"),
                );
            }
            expected.push(format!("{name}: {}", describe(cadence, clock)));
            observed.push(format!("{name}: {seen}"));
            problems.extend(found.into_iter().map(|p| format!("{name}: {p}")));
        }
        let observed = format!(
            "{} (captured for {:.0} ms after the aggregate formed at {:.0} ms)",
            observed.join("; "),
            obs.window_ms,
            obs.formed_ms
        );
        let interval = verdict(
            interval_check(slave),
            (expected.join("; "), observed),
            &problems,
            interval_rule(actors.0, actors.1, partner_name, clock),
        );
        out.push(match skip_intervals {
            Some(why) => interval.skipped(why),
            None => interval,
        });
        out.push(activity(e.bond_active, &pdus, slave));
    }
    out
}

fn activity(active: bool, pdus: &[&Pdu], slave: &str) -> Verdict {
    let bond: Vec<u8> = pdus
        .iter()
        .filter(|p| p.from == Side::Bond)
        .map(|p| p.actor_state)
        .collect();
    let bit = |on: bool| {
        if on {
            "set (active)"
        } else {
            "clear (passive)"
        }
    };
    let expected = format!("LACP_Activity {} in every LACPDU {slave} sent", bit(active));
    let wrong = bond
        .iter()
        .filter(|s| (**s & ACTIVITY != 0) != active)
        .count();
    let mut problems = Vec::new();
    if bond.is_empty() {
        problems.push(format!("{slave} sent no LACPDU"));
    } else if wrong > 0 {
        problems.push(format!(
            "{wrong} of {} LACPDUs with LACP_Activity {}",
            bond.len(),
            bit(!active)
        ));
    }
    let states: Vec<String> = bond.iter().map(|s| format!("{s:#04x}")).collect();
    verdict(
        activity_check(slave),
        (
            expected,
            format!(
                "{} LACPDUs, actor states [{}]",
                bond.len(),
                states.join(", ")
            ),
        ),
        &problems,
        "ad_initialize_port sets the actor's LACP_Activity from lacp_active, and every \
         LACPDU carries the actor's operational state"
            .into(),
    )
}

/// The checks, skipped for `why`.
pub fn skipped(slaves: &[String], why: &str) -> Vec<Verdict> {
    Verdict::all_skipped(check_ids(slaves), why, SOURCE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    const CLOCK: Clock = Clock {
        hz: 100,
        tolerance_ms: 30.0,
    };
    const ACTIVE_FAST: Actor = Actor {
        active: true,
        fast: true,
    };
    const PASSIVE_FAST: Actor = Actor {
        active: false,
        fast: true,
    };

    /// An LACPDU of port 0 that shows the other side `partner_state`.
    fn pdu_to(from: Side, at_ms: f64, actor_state: u8, partner_state: u8) -> Pdu {
        Pdu {
            slave: 0,
            from,
            at_ms,
            actor_state,
            partner_state,
            actor_system_priority: 0xffff,
            actor_system: [0; 6],
            actor_port: 1,
        }
    }

    /// An LACPDU of port 0 that shows the other side in the aggregate.
    fn pdu(from: Side, at_ms: f64, actor_state: u8) -> Pdu {
        pdu_to(from, at_ms, actor_state, 0x3f)
    }

    const SETTLED: Settled = Settled {
        bond: 0x3f,
        partner: 0x3f,
    };

    #[test]
    fn each_side_sends_at_the_other_sides_rate_and_only_if_one_is_active() {
        let slow = Actor {
            active: true,
            fast: false,
        };
        let e = expect(slow, ACTIVE_FAST);
        assert_eq!(e.bond, Cadence::Periodic { ticks: 10 });
        assert_eq!(e.partner, Cadence::Periodic { ticks: 300 });
        let e = expect(PASSIVE_FAST, ACTIVE_FAST);
        assert_eq!(e.bond, Cadence::Periodic { ticks: 10 });
        assert!(!e.bond_active);
        let e = expect(PASSIVE_FAST, PASSIVE_FAST);
        assert_eq!((e.bond, e.partner), (Cadence::None, Cadence::None));
        // 9 or 12 ticks of 100 to 110 ms; 300 ticks of 100 to 110 ms, plus drift.
        assert_eq!(Cadence::window(10, &CLOCK), (840.0, 1393.2));
        let (lo, hi) = Cadence::window(300, &CLOCK);
        assert_eq!(lo, 29940.0);
        assert!((hi - 33390.0).abs() < 1e-6, "{hi}");
    }

    #[test]
    fn three_fast_intervals_span_thirty_ticks_and_silence_is_watched_for_four_long_ones() {
        let both = expect(ACTIVE_FAST, ACTIVE_FAST);
        // 3·10 − 2 = 28 ticks, on the grid of every third: 30 ticks of at least 10 + 1
        // jiffies at HZ=100 (9 + 9 + 12, as UML sends them).
        assert_eq!(inherent(&both, 100, true).map(|w| w.ms), Some(30.0 * 110.0));
        assert_eq!(
            inherent(&both, 1000, true).map(|w| w.ms),
            Some(30.0 * 101.0)
        );
        let silent = expect(PASSIVE_FAST, PASSIVE_FAST);
        assert_eq!(
            inherent(&silent, 100, true).map(|w| w.ms),
            Some(4.0 * 12.0 * 110.0)
        );
        // Slow: 3·300 − 2 = 898 ticks, 900 on the grid; none where they are not measured.
        let slow = expect(
            ACTIVE_FAST,
            Actor {
                active: true,
                fast: false,
            },
        );
        assert_eq!(
            inherent(&slow, 100, true).map(|w| w.ms),
            Some(900.0 * 110.0)
        );
        assert!(inherent(&slow, 100, false).is_none());
    }

    /// LACPDUs captured in UML (Linux 6.1.176) between an active bond and an active partner,
    /// both fast: 990, 990 and 1320 ms apart, in turn.
    #[test]
    fn captured_fast_intervals_pass_and_a_missing_pdu_fails() {
        let times = [2900.0, 3534.0, 4523.9, 5513.9, 6833.9, 7824.0];
        let mut pdus: Vec<Pdu> = times.iter().map(|t| pdu(Side::Bond, *t, 0x3f)).collect();
        pdus.extend(times.iter().map(|t| pdu(Side::Partner, t - 20.0, 0x3f)));
        // Each side's last change of state, seen by the other at 2800 ms.
        pdus.push(pdu(Side::Bond, 2800.0, 0x0f));
        pdus.push(pdu(Side::Partner, 2800.0, 0x0f));
        pdus.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        let obs = Observed::new(
            expect(ACTIVE_FAST, ACTIVE_FAST),
            2800.0,
            5000.0,
            &[Some(SETTLED)],
            pdus.clone(),
            &CLOCK,
        );
        let slaves = ["eno1".to_string()];
        let v = checks(
            &obs,
            (ACTIVE_FAST, ACTIVE_FAST),
            &slaves,
            "switch0",
            &CLOCK,
            None,
        );
        assert!(v.iter().all(|v| v.status == Status::Pass), "{v:#?}");
        // The partner's third LACPDU lost: a 2.3 s gap.
        pdus.retain(|p| !(p.from == Side::Partner && p.at_ms > 5000.0 && p.at_ms < 6000.0));
        let v = checks(
            &Observed {
                pdus,
                ..obs.clone()
            },
            (ACTIVE_FAST, ACTIVE_FAST),
            &slaves,
            "switch0",
            &CLOCK,
            None,
        );
        assert_eq!(v[0].status, Status::Fail);
        assert!(
            v[0].message
                .starts_with("switch0 → eno1: interval 2310.0 ms outside [840, 1393]"),
            "{}",
            v[0].message
        );
    }

    /// One port's LACPDUs captured in UML (Linux 6.1.176) as an active fast bond and partner
    /// aggregated: (side, ms, actor state, partner state).
    const FORMING: [(Side, f64, u8, u8); 17] = [
        (Side::Partner, 213.0, 0x47, 0x00),
        (Side::Bond, 233.0, 0x07, 0x47),
        (Side::Bond, 1223.1, 0x07, 0x47),
        (Side::Partner, 1533.1, 0x07, 0x07),
        (Side::Bond, 2213.0, 0x07, 0x07),
        (Side::Partner, 2523.0, 0x07, 0x07),
        (Side::Bond, 2543.0, 0x0f, 0x07),
        (Side::Partner, 2853.1, 0x3f, 0x0f),
        (Side::Bond, 2873.1, 0x3f, 0x3f),
        (Side::Partner, 3513.1, 0x3f, 0x3f),
        (Side::Bond, 3533.0, 0x3f, 0x3f),
        (Side::Bond, 4523.0, 0x3f, 0x3f),
        (Side::Partner, 4833.1, 0x3f, 0x3f),
        (Side::Bond, 5513.1, 0x3f, 0x3f),
        (Side::Partner, 5823.1, 0x3f, 0x3f),
        (Side::Partner, 6813.1, 0x3f, 0x3f),
        (Side::Bond, 6833.0, 0x3f, 0x3f),
    ];

    #[test]
    fn steady_state_begins_after_the_last_change_and_the_answers_a_stale_lacpdu_may_call_for() {
        let pdus: Vec<Pdu> = FORMING
            .iter()
            .map(|&(side, at, actor, partner)| pdu_to(side, at, actor, partner))
            .collect();
        let refs: Vec<&Pdu> = pdus.iter().collect();
        // The partner's 2853.1 still showed the bond in sync only (0x0f): the bond may answer
        // it at the transmit machine's next turn, up to 3 ticks of 11 jiffies (+1% drift) and
        // the tolerance later, after its own last change at 2873.1.
        let bond = steady_from(Side::Bond, &refs, Some(SETTLED), 2878.0, &CLOCK).unwrap();
        assert!(
            (bond - (2853.1 + 3.0 * 110.0 * 1.01 + 30.0)).abs() < 1e-9,
            "{bond}"
        );
        // The bond's 2543.0 showed the partner not yet in sync (0x07): the partner's answer
        // to it may come after the partner's own last change at 2853.1.
        let partner = steady_from(Side::Partner, &refs, Some(SETTLED), 2878.0, &CLOCK).unwrap();
        assert!(
            (partner - (2543.0 + 3.0 * 110.0 * 1.01 + 30.0)).abs() < 1e-9,
            "{partner}"
        );
        // Three intervals each after that, before the aggregate is 4 s old.
        let both = expect(ACTIVE_FAST, ACTIVE_FAST);
        let decided =
            |pdus: &[Pdu], now_ms| decided(&both, &[Some(SETTLED)], pdus, 2878.0, now_ms, &CLOCK);
        assert!(decided(&pdus, 6833.0));
        assert!(!decided(&pdus[..16], 6833.0));
        // The bond's fourth periodic LACPDU (6833.0) missing: undecided until the bond has been
        // silent for longer than the longest interval (1393.2 ms), then failed.
        assert!(!decided(&pdus[..16], 5513.1 + 1393.0));
        assert!(decided(&pdus[..16], 5513.1 + 1394.0));
        let refs: Vec<&Pdu> = pdus[..16].iter().collect();
        let cadence = Cadence::Periodic { ticks: 10 };
        let span = (2878.0, 5513.1 + 1394.0);
        let judged = judge_side(Side::Bond, cadence, &refs, Some(SETTLED), span, &CLOCK);
        assert_eq!(
            judged.problems,
            [
                "none in the 1394 ms from 5513.1 ms to the capture's end, more than the longest \
              interval 1393"
            ]
        );
        // Where the aggregate did not form, what the other side sent until then is suspect.
        let unformed = steady_from(Side::Partner, &refs, None, 2878.0, &CLOCK).unwrap();
        assert!((unformed - (2873.1 + 3.0 * 110.0 * 1.01 + 30.0)).abs() < 1e-9);
        // A side whose last LACPDU does not show its settled state is still changing.
        assert_eq!(
            steady_from(Side::Bond, &refs[..8], Some(SETTLED), 2878.0, &CLOCK),
            None
        );
    }

    /// Two passive sides: answers and expiries are not periodic; an active bond's are.
    #[test]
    fn silence_allows_answers_but_not_periodic_lacpdus() {
        let answered = [
            pdu(Side::Partner, 6138.6, 0x8e),
            pdu(Side::Bond, 6158.6, 0x3e),
            pdu(Side::Partner, 6468.6, 0x3e),
            pdu(Side::Partner, 9438.5, 0x8e),
            pdu(Side::Bond, 9458.5, 0x3e),
        ];
        let refs: Vec<&Pdu> = answered.iter().collect();
        for side in [Side::Bond, Side::Partner] {
            let judged = judge_side(side, Cadence::None, &refs, None, (3000.0, 9500.0), &CLOCK);
            assert!(judged.problems.is_empty(), "{:?}", judged.problems);
            assert!(!judged.complete);
        }
        let periodic: Vec<Pdu> = [3524.4, 4514.4, 5504.4]
            .iter()
            .map(|t| pdu(Side::Bond, *t, 0x3d))
            .collect();
        let refs: Vec<&Pdu> = periodic.iter().collect();
        let judged = judge_side(
            Side::Bond,
            Cadence::None,
            &refs,
            None,
            (3000.0, 6000.0),
            &CLOCK,
        );
        assert_eq!(
            judged.problems[0],
            "unprompted LACPDUs at 3524.4 and 4514.4 ms, 990.0 ms apart: periodic"
        );
        let v = activity(false, &refs, "eno1");
        assert!(
            v.message
                .starts_with("3 of 3 LACPDUs with LACP_Activity set (active)"),
            "{}",
            v.message
        );
    }
}
