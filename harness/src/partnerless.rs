//! An 802.3ad bond that no LACP partner answers: its slaves' peers speak no LACP (plain veth
//! ends, a switch without LACP configured). Such a bond must still send LACPDUs, which is what
//! the kernel's selftest bond-break-lacpdu-tx.sh checks (any LACPDU within 15 s). The state
//! machines of bond_3ad.c say more: which LACPDU comes first on each slave, what it carries,
//! and when the second follows. Those are judged here, from the captures of [`crate::lacpdu`].
//!
//! The ticks, counted from a port's first state machine tick (bond_open runs one at once; a
//! port bound to an open bond has its first at the next), with BEGIN set at bind:
//! - tick 0: the receive machine's INITIALIZE records the partner's defaults
//!   (ad_initialize_port: passive, long timeout), which sets the actor's DEFAULTED; the mux
//!   machine enters DETACHED and sets NTT; the transmit timer, which bind set to
//!   ad_ticks_per_sec / AD_MAX_TX_IN_SECOND = 3, counts down.
//! - tick 1: no LACPDU has come, so the receive machine goes PORT_DISABLED → EXPIRED: the
//!   partner's defaults now have a short timeout, and the actor shows EXPIRED too. The periodic machine of an active bond enters
//!   FAST_PERIODIC, whatever lacp_rate says (the rate is the one the partner asks for), with
//!   10 − 1 ticks to go; a passive bond with a passive partner has none. The mux machine
//!   enters WAITING with the 20-tick aggregate wait.
//! - tick 2: the transmit timer expires: the first LACPDU.
//! - active: tick 10, PERIODIC_TX sets NTT, sent at the transmit machine's next turn (every
//!   third tick from tick 2): tick 11, 9 ticks after the first.
//! - passive: tick 21, the wait is over and the mux enters ATTACHED, which sets NTT: sent at
//!   the turn at tick 23, 21 ticks after the first.

use std::time::Duration;

use crate::checks::Verdict;
use crate::lacp::{ACTIVITY, AGGREGATION, DEFAULTED, EXPIRED, TIMEOUT, state_text};
use crate::lacpdu::{Clock, Pdu, Side};
use crate::model::{Model, Rule, Value, Wait};
use crate::topology::Topology;

/// The tick of a port's first LACPDU, and of its second if the bond is active or passive.
const FIRST_TICK: u64 = 2;
const PERIODIC_TICK: u64 = 11;
const ATTACHED_TICK: u64 = 23;

const SOURCE: &str = "drivers/net/bonding/bond_3ad.c (ad_initialize_port, bond_3ad_bind_slave, \
                      ad_rx_machine AD_RX_EXPIRED, ad_periodic_machine, ad_mux_machine, \
                      ad_tx_machine, bond_3ad_initialize); IEEE 802.1AX-2014 6.4.12-6.4.16";

/// Whether a case's bond is in 802.3ad with no LACP partner: its peers are not an 802.3ad
/// bond (with one, see [`crate::lacp`]).
pub fn applies(model: &Model, topology: &Topology) -> bool {
    crate::lacp::bond_in_lacp(model) && !crate::lacp::partner_in_lacp(topology)
}

/// What the model expects of every slave's first two LACPDUs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "PartnerlessExpected")]
pub struct Expected {
    /// The first LACPDU's actor state (LACP_STATE_* bits).
    pub actor_state: u8,
    /// The first LACPDU's partner state: the defaults with a short timeout.
    pub partner_state: u8,
    /// The actor's system priority (ad_actor_sys_prio).
    pub system_priority: u16,
    /// The actor's system (ad_actor_system); None: the bond's own MAC address.
    pub system: Option<String>,
    /// State machine ticks from the first LACPDU to the second.
    pub second_after_ticks: u64,
}

/// The expectation from the model's effective options.
pub fn expect(model: &Model) -> Expected {
    let option = |name: &str| {
        model
            .expectations
            .iter()
            .find(|e| e.check == format!("option.{name}"))
            .map(|e| &e.expected)
    };
    let actor = crate::lacpdu::bond_actor(model);
    let bit = |on: bool, b: u8| if on { b } else { 0 };
    let system = match option("ad_actor_system") {
        Some(Value::Text(mac)) if mac != "00:00:00:00:00:00" => Some(mac.clone()),
        _ => None,
    };
    let system_priority = match option("ad_actor_sys_prio") {
        Some(Value::Number(n)) => u16::try_from(*n).unwrap_or(u16::MAX),
        _ => u16::MAX,
    };
    Expected {
        actor_state: AGGREGATION
            | DEFAULTED
            | EXPIRED
            | bit(actor.active, ACTIVITY)
            | bit(actor.fast, TIMEOUT),
        partner_state: TIMEOUT,
        system_priority,
        system,
        second_after_ticks: if actor.active {
            PERIODIC_TICK
        } else {
            ATTACHED_TICK
        } - FIRST_TICK,
    }
}

impl Expected {
    /// The window of the second LACPDU after the first, in ms.
    fn second_window(&self, clock: &Clock) -> (f64, f64) {
        clock.ticks_window(self.second_after_ticks)
    }

    /// How long after the capture phase starts (the bond is up by then) the capture may have
    /// to run: the first LACPDU due ([`Expected::first_due_ms`]), then the second's window.
    pub fn deadline(&self, clock: &Clock, slack_ms: u64) -> Duration {
        let ms = self.first_due_ms(0.0, clock, slack_ms) + self.second_window(clock).1;
        Duration::from_secs_f64(ms / 1e3)
    }

    /// The kernel time the capture cannot avoid, in ms at `hz`: from the bond's open to the
    /// second LACPDU, in ticks of at least P + 1 jiffies ([`crate::model::least_tick_ms`]).
    pub fn inherent(&self, hz: u32) -> Wait {
        let clock = Clock {
            hz,
            tolerance_ms: 0.0,
        };
        let tick = crate::model::least_tick_ms(clock.period() as u64, hz);
        let ticks = FIRST_TICK + self.second_after_ticks;
        Wait {
            term: "lacpdus",
            ms: ticks as f64 * tick,
            rule: Rule {
                text: format!(
                    "{ticks}·{tick} ms: with no partner, a port's second LACPDU comes at its \
                     state machine tick {ticks}, ticks of at least {tick} ms"
                ),
                source: SOURCE,
            },
        }
    }

    /// By when, on the captures' clock, every port's first LACPDU must have come, for a
    /// capture phase that began at `phase_ms` with the bond already up: at most
    /// [`FIRST_TICK`] ticks on, and the backend's slack.
    pub fn first_due_ms(&self, phase_ms: f64, clock: &Clock, slack_ms: u64) -> f64 {
        phase_ms + clock.ticks_window(FIRST_TICK).1 + slack_ms as f64
    }

    /// Whether the capture can stop at `now_ms`: every port (`ports`: their captures) has
    /// sent two LACPDUs, or already fails whatever comes later (none by `first_due_ms`, or
    /// none in the second's window after the first).
    pub fn decided(
        &self,
        ports: &[usize],
        pdus: &[Pdu],
        (first_due_ms, now_ms): (f64, f64),
        clock: &Clock,
    ) -> bool {
        let (_, hi) = self.second_window(clock);
        ports
            .iter()
            .all(|port| match sent_on(pdus, *port).as_slice() {
                [] => now_ms > first_due_ms,
                [first] => now_ms - first.at_ms > hi,
                _ => true,
            })
    }
}

fn sent_on(pdus: &[Pdu], port: usize) -> Vec<&Pdu> {
    pdus.iter()
        .filter(|p| p.slave == port && p.from == Side::Bond)
        .collect()
}

/// What the captures saw, for the report.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "Partnerless")]
pub struct Observed {
    /// What the model expects.
    pub expected: Expected,
    /// The bond's MAC address (netlink view): the actor system without ad_actor_system.
    pub bond_mac: Option<String>,
    /// How long the capture ran in its phase, after the bond was up.
    pub window_ms: f64,
    /// Every LACPDU seen.
    pub pdus: Vec<Pdu>,
}

/// Id of the check of a slave's first LACPDU.
pub fn first_check(slave: &str) -> String {
    format!("lacp.{slave}.first_lacpdu")
}

/// Id of the check of when a slave's second LACPDU follows its first.
pub fn second_check(slave: &str) -> String {
    format!("lacp.{slave}.second_lacpdu")
}

/// The checks, in report order, for the slaves in enslave order.
pub fn check_ids(slaves: &[String]) -> Vec<String> {
    slaves
        .iter()
        .flat_map(|s| [first_check(s), second_check(s)])
        .collect()
}

/// `lacp.<slave>.first_lacpdu` and `lacp.<slave>.second_lacpdu` for every slave the model
/// expects enslaved, in enslave order (port numbers count from 1 in it), each with its
/// capture's index.
pub fn checks(obs: &Observed, enslaved: &[(String, usize)], clock: &Clock) -> Vec<Verdict> {
    let e = &obs.expected;
    let mut out = Vec::new();
    for (i, (slave, capture)) in enslaved.iter().enumerate() {
        let sent = sent_on(&obs.pdus, *capture);
        out.push(first(
            e,
            obs.bond_mac.as_deref(),
            sent.first().copied(),
            i,
            slave,
        ));
        out.push(second(e, &sent, obs.window_ms, slave, clock));
    }
    out
}

fn first(
    e: &Expected,
    bond_mac: Option<&str>,
    pdu: Option<&Pdu>,
    index: usize,
    slave: &str,
) -> Verdict {
    let system = e.system.as_deref().or(bond_mac).unwrap_or("?");
    let port = index + 1;
    let expected = format!(
        "actor system {:#06x}/{system}, port {port}, state {}; partner state {}",
        e.system_priority,
        state_text(e.actor_state),
        state_text(e.partner_state)
    );
    let (observed, problems) = match pdu {
        None => (
            "no LACPDU".to_string(),
            vec![format!("{slave} sent no LACPDU")],
        ),
        Some(p) => {
            let seen = crate::netlink::mac_text(&p.actor_system);
            let mut problems = Vec::new();
            if p.actor_system_priority != e.system_priority {
                problems.push(format!(
                    "actor system priority {:#06x}, not {:#06x}",
                    p.actor_system_priority, e.system_priority
                ));
            }
            if seen != system {
                problems.push(format!("actor system {seen}, not {system}"));
            }
            if usize::from(p.actor_port) != port {
                problems.push(format!("actor port {}, not {port}", p.actor_port));
            }
            for (what, got, want) in [
                ("actor", p.actor_state, e.actor_state),
                ("partner", p.partner_state, e.partner_state),
            ] {
                if got != want {
                    problems.push(format!(
                        "{what} state {}, not {}",
                        state_text(got),
                        state_text(want)
                    ));
                }
            }
            (
                format!(
                    "at {:.1} ms: actor system {:#06x}/{seen}, port {}, state {}; partner state {}",
                    p.at_ms,
                    p.actor_system_priority,
                    p.actor_port,
                    state_text(p.actor_state),
                    state_text(p.partner_state)
                ),
                problems,
            )
        }
    };
    verdict(
        first_check(slave),
        (expected, observed),
        &problems,
        format!(
            "with no partner, a port's first LACPDU is the one the mux machine's DETACHED asks \
             for, sent at its tick {FIRST_TICK}: it carries the bond's system (ad_actor_sys_prio, \
             ad_actor_system or the bond's MAC), the port's number in enslave order, and the \
             actor state from lacp_active and lacp_rate with aggregation, defaulted (the \
             receive machine recorded the partner's defaults) and expired (it has heard no \
             LACPDU since); the partner is the defaults with a short timeout"
        ),
    )
}

fn second(e: &Expected, sent: &[&Pdu], window_ms: f64, slave: &str, clock: &Clock) -> Verdict {
    let (lo, hi) = e.second_window(clock);
    let ticks = e.second_after_ticks;
    let expected = format!("{ticks} ticks after the first: [{lo:.0}, {hi:.0}] ms");
    let (observed, problems) = match sent {
        [] => (
            "no LACPDU".to_string(),
            vec![format!("{slave} sent no LACPDU")],
        ),
        [only] => (
            format!(
                "one LACPDU, at {:.1} ms (captured for {window_ms:.0} ms)",
                only.at_ms
            ),
            vec![format!("none in the {hi:.0} ms after the first")],
        ),
        [a, b, ..] => {
            let gap = b.at_ms - a.at_ms;
            (
                format!("{gap:.1} ms after the first"),
                if (lo..=hi).contains(&gap) {
                    Vec::new()
                } else {
                    vec![format!("{gap:.1} ms outside [{lo:.0}, {hi:.0}]")]
                },
            )
        }
    };
    verdict(
        second_check(slave),
        (expected, observed),
        &problems,
        format!(
            "with no partner, an active port's periodic machine runs fast (the receive machine \
             has expired and takes the partner's timeout short) and sends its first periodic \
             LACPDU at tick {PERIODIC_TICK}; a passive port has no periodic machine (the \
             partner's defaults are passive) and sends next when its mux machine attaches, \
             after the aggregate wait, at tick {ATTACHED_TICK}; ticks of P = {} to P+G = {} \
             jiffies (HZ = {}), +1% drift, ±2·{} ms",
            clock.period(),
            clock.period() + 1.0,
            clock.hz,
            clock.tolerance_ms
        ),
    )
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

/// The checks, skipped for `why`.
pub fn skipped(slaves: &[String], why: &str) -> Vec<Verdict> {
    Verdict::all_skipped(check_ids(slaves), why, SOURCE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;
    use std::path::Path;

    /// UML's: HZ = 100, ticks of 10 to 11 jiffies, 30 ms tolerance.
    const CLOCK: Clock = Clock {
        hz: 100,
        tolerance_ms: 30.0,
    };
    const BOND_MAC: &str = "02:bc:00:01:00:00";

    fn model_in(mode: &str, options: &str) -> Model {
        let text = format!(
            "iface bond0 inet manual\n bond-slaves a b\n bond-mode {mode}\n bond-miimon 100\n{options}"
        );
        let spec = crate::spec::parse(Path::new("t"), &text).unwrap();
        crate::model::predict(&spec, crate::ifenslave::Applier::Netlink)
    }

    fn model(options: &str) -> Model {
        model_in("802.3ad", options)
    }

    fn topology(name: &str) -> Topology {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../veth-topologies");
        Topology::load(&root.join(format!("{name}.toml"))).unwrap()
    }

    fn pdu(slave: usize, at_ms: f64, actor_state: u8, actor_system_priority: u16) -> Pdu {
        Pdu {
            slave,
            from: Side::Bond,
            at_ms,
            actor_state,
            partner_state: TIMEOUT,
            actor_system_priority,
            actor_system: [0x02, 0xbc, 0, 1, 0, 0],
            actor_port: u16::try_from(slave + 1).unwrap(),
        }
    }

    fn judged(e: Expected, pdus: Vec<Pdu>) -> Vec<Verdict> {
        let obs = Observed {
            expected: e,
            bond_mac: Some(BOND_MAC.into()),
            window_ms: 1200.0,
            pdus,
        };
        checks(&obs, &[("a".into(), 0), ("b".into(), 1)], &CLOCK)
    }

    #[test]
    fn applies_to_802_3ad_bonds_whose_peers_speak_no_lacp() {
        let lacp = model("");
        assert!(applies(&lacp, &topology("standalone")));
        assert!(applies(&lacp, &topology("bridge")));
        assert!(!applies(&lacp, &topology("lacp-partner")));
        assert!(!applies(
            &model_in("balance-rr", ""),
            &topology("standalone")
        ));
    }

    #[test]
    fn an_active_bond_sends_its_first_periodic_lacpdu_9_ticks_after_the_first_whatever_its_rate() {
        for (rate, timeout) in [("fast", TIMEOUT), ("slow", 0)] {
            let e = expect(&model(&format!(" bond-lacp-rate {rate}\n")));
            assert_eq!(e.actor_state, 0xc5 | timeout, "{rate}");
            assert_eq!((e.partner_state, e.second_after_ticks), (TIMEOUT, 9));
            assert_eq!((e.system_priority, e.system.as_deref()), (0xffff, None));
        }
        // 9 ticks of 100 to 110 ms, +1% drift, ±2·30 ms.
        let e = expect(&model(""));
        assert_eq!(e.second_window(&CLOCK), (840.0, 9.0 * 110.0 * 1.01 + 60.0));
        // The second LACPDU comes at the port's tick 11, of at least 11 jiffies.
        assert_eq!(e.inherent(100).ms, 11.0 * 110.0);
    }

    #[test]
    fn a_passive_bond_speaks_again_when_its_ports_attach_21_ticks_later() {
        let e = expect(&model(" bond-lacp-active off\n bond-lacp-rate fast\n"));
        assert_eq!(e.actor_state, 0xc6);
        assert_eq!(e.second_after_ticks, 21);
        assert_eq!(e.inherent(100).ms, 23.0 * 110.0);
    }

    #[test]
    fn the_actor_system_is_ad_actor_system_where_set_and_its_priority_ad_actor_sys_prio() {
        let e = expect(&model(
            " bond-ad-actor-sys-prio 100\n bond-ad-actor-system 02:00:00:00:00:99\n",
        ));
        assert_eq!(e.system_priority, 100);
        assert_eq!(e.system.as_deref(), Some("02:00:00:00:00:99"));
    }

    #[test]
    fn lacpdus_as_uml_sent_them_pass() {
        // modes/802.3ad's first two LACPDUs on UML 6.1.176, on the captures' clock.
        let e = expect(&model(" bond-lacp-rate fast\n"));
        let pdus = vec![
            pdu(0, 316.4, 0xc7, 0xffff),
            pdu(1, 316.4, 0xc7, 0xffff),
            pdu(0, 1306.4, 0xc7, 0xffff),
            pdu(1, 1306.4, 0xc7, 0xffff),
        ];
        let v = judged(e, pdus);
        assert_eq!(v.len(), 4);
        assert!(v.iter().all(|v| v.status == Status::Pass), "{v:#?}");
    }

    #[test]
    fn a_wrong_priority_and_a_missing_periodic_lacpdu_fail_with_what_was_seen() {
        let e = expect(&model(" bond-lacp-rate fast\n"));
        // The no-partner-made-passive control: passive, and 21 ticks to the second.
        let pdus = vec![
            pdu(0, 201.6, 0xc6, 0xffff),
            pdu(1, 201.6, 0xc7, 0x0064),
            pdu(0, 2511.6, 0xce, 0xffff),
        ];
        let v = judged(e, pdus);
        let failed: Vec<(&str, &str)> = v
            .iter()
            .filter(|v| v.status == Status::Fail)
            .map(|v| (v.check.as_str(), v.message.split(';').next().unwrap()))
            .collect();
        assert_eq!(
            failed,
            [
                (
                    "lacp.a.first_lacpdu",
                    "actor state 0xc6 (timeout, aggregation, defaulted, expired), not 0xc7 \
                     (activity, timeout, aggregation, defaulted, expired)"
                ),
                ("lacp.a.second_lacpdu", "2310.0 ms outside [840, 1060]"),
                (
                    "lacp.b.first_lacpdu",
                    "actor system priority 0x0064, not 0xffff"
                ),
                (
                    "lacp.b.second_lacpdu",
                    "none in the 1060 ms after the first"
                ),
            ]
        );
    }

    #[test]
    fn the_capture_is_decided_by_two_lacpdus_or_a_failure_on_every_port() {
        let e = expect(&model(" bond-lacp-rate fast\n"));
        let one = [pdu(0, 300.0, 0xc7, 0xffff), pdu(1, 300.0, 0xc7, 0xffff)];
        let due = e.first_due_ms(100.0, &CLOCK, 400);
        assert!(!e.decided(&[0, 1], &one, (due, 1000.0), &CLOCK));
        // None in the longest window after the first: decided, as a failure.
        assert!(e.decided(&[0, 1], &one, (due, 1361.0), &CLOCK));
        let mut two = one.to_vec();
        two.extend([pdu(0, 1290.0, 0xc7, 0xffff), pdu(1, 1290.0, 0xc7, 0xffff)]);
        assert!(e.decided(&[0, 1], &two, (due, 1290.0), &CLOCK));
        // No first LACPDU: undecided until it is overdue.
        assert!(!e.decided(&[0, 1], &[], (due, due), &CLOCK));
        assert!(e.decided(&[0, 1], &[], (due, due + 1.0), &CLOCK));
    }
}
