//! 802.3ad against a real LACP partner. On a topology whose peers are bonded in 802.3ad (the
//! `lacp-partner` topology), the bond under test has a partner answering on every port, so the
//! two bonds should form one aggregator over all of them. This module waits for that (polling
//! netlink, with a deadline derived from the 802.3ad timers), records how long it took, and
//! checks the aggregator and every port's LACP state.

use std::time::{Duration, Instant};

use crate::checks::{Measurement, Status, Verdict};
use crate::error::{Error, Result};
use crate::model::{Model, Rule, Value};
use crate::netlink;
use crate::spec::Mode;
use crate::topology::{Built, Topology};

/// Id of the check that all ports share the active aggregator with the partner.
pub const AGGREGATOR: &str = "lacp.aggregator";

/// Id of the check of one port's actor and partner state.
pub fn port_state_check(slave: &str) -> String {
    format!("lacp.{slave}.port_state")
}

/// The checks a case gets when [`applies`] holds, in report order.
pub fn check_ids(slaves: &[String]) -> Vec<String> {
    std::iter::once(AGGREGATOR.to_string())
        .chain(slaves.iter().map(|s| port_state_check(s)))
        .collect()
}

/// Whether a case has LACP checks: the model expects the bond under test in 802.3ad and the
/// topology bonds the peers in 802.3ad, so there is a partner to aggregate with.
pub fn applies(model: &Model, topology: &Topology) -> bool {
    bond_in_lacp(model) && partner_in_lacp(topology)
}

/// Whether the model expects the bond in 802.3ad.
pub fn bond_in_lacp(model: &Model) -> bool {
    let lacp = Value::Text(Mode::Ieee8023ad.name().into());
    model
        .expectations
        .iter()
        .any(|e| e.check == "option.mode" && e.expected == lacp)
}

/// Whether the topology's peer master is a bond in 802.3ad: an LACP partner.
pub fn partner_in_lacp(topology: &Topology) -> bool {
    topology.peer_master.as_ref().and_then(|m| m.bond_mode()) == Some(Mode::Ieee8023ad)
}

/// LACP port state bits, in bit order (include/uapi/linux/if_bonding.h, LACP_STATE_*).
const STATE_BITS: [&str; 8] = [
    "activity",
    "timeout",
    "aggregation",
    "sync",
    "collecting",
    "distributing",
    "defaulted",
    "expired",
];
pub(crate) const ACTIVITY: u8 = 0x01;
pub(crate) const TIMEOUT: u8 = 0x02;
pub(crate) const AGGREGATION: u8 = 0x04;
const SYNC: u8 = 0x08;
const COLLECTING_DISTRIBUTING: u8 = 0x30;
pub(crate) const DEFAULTED: u8 = 0x40;
pub(crate) const EXPIRED: u8 = 0x80;
/// What a port in a formed aggregate shows on both sides.
const IN_AGGREGATE: u8 = AGGREGATION | SYNC | COLLECTING_DISTRIBUTING;

/// `0x3d (activity, aggregation, sync, collecting, distributing)`
pub(crate) fn state_text(state: u8) -> String {
    format!("{state:#04x} ({})", bit_names(state))
}

fn bit_names(bits: u8) -> String {
    let names: Vec<&str> = STATE_BITS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The 802.3ad state of one bond, from netlink.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct AdView {
    /// The bond's own MAC (IFLA_ADDRESS): the system id its LACPDUs carry.
    pub mac: Option<String>,
    /// IFLA_BOND_AD_INFO; the kernel reports it only while there is an active aggregator.
    pub active: Option<ActiveAggregator>,
    /// Every slave's 802.3ad port state.
    pub ports: Vec<AdPort>,
}

/// The bond's active aggregator (IFLA_BOND_AD_INFO).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct ActiveAggregator {
    /// The aggregator's id.
    pub id: u16,
    /// Ports of the aggregator that are enabled (collecting and distributing).
    pub num_ports: u16,
    /// The bond's operational key for the aggregator.
    pub actor_key: u16,
    /// The partner's operational key.
    pub partner_key: u16,
    /// The partner's system id.
    pub partner_mac: String,
}

/// One port's IFLA_BOND_SLAVE_AD_*; absent while the port has no aggregator.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct AdPort {
    /// The slave's name.
    pub name: String,
    /// The id of the aggregator the port is attached to.
    pub aggregator: Option<u16>,
    /// The port's own LACP state bits (activity, timeout, aggregation, sync, collecting,
    /// distributing, defaulted, expired).
    pub actor_state: Option<u8>,
    /// The partner's LACP state bits as this port last heard them.
    pub partner_state: Option<u8>,
}

impl AdView {
    fn port(&self, name: &str) -> Option<&AdPort> {
        self.ports.iter().find(|p| p.name == name)
    }
}

/// The bond under test and its partner once every port collected and distributed, or at the
/// deadline.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Observed {
    /// The bond under test.
    pub bond: AdView,
    /// The partner bond's name (the topology's peer master).
    pub partner_name: String,
    /// The partner bond on the peer side.
    pub partner: AdView,
    /// Whether every slave's actor and partner states showed aggregation, sync, collecting and
    /// distributing before the deadline.
    pub formed: bool,
    /// How long that took (the whole deadline if it did not happen).
    pub waited_ms: f64,
    /// How long bondcheck was prepared to wait, from the 802.3ad timers.
    pub deadline_ms: f64,
}

/// bond_3ad.c: a port waits AD_AGGREGATE_WAIT_TIME after it is selected before it attaches.
pub const AGGREGATE_WAIT: Duration = Duration::from_secs(2);
/// bond_3ad.c AD_TIMER_INTERVAL: the state machines run every 100 ms, a delayed work re-armed
/// msecs_to_jiffies(100) ahead.
const TIMER_INTERVAL_MS: u64 = 100;

/// The state machine ticks from the bond's open to the first at which its ports can be
/// attached, and the least length of a tick in ms at `hz` ([`crate::model::least_tick_ms`];
/// AD_TIMER_INTERVAL itself where HZ is unknown). bond_open runs the state machines at once:
/// at that tick 0 the ports are selected but BEGIN holds the mux machine in DETACHED; at tick 1
/// it enters WAITING with the wait-while timer at AD_AGGREGATE_WAIT_TIME · ad_ticks_per_sec,
/// which the next ticks count down, so the ports attach at tick 1 + 20 and only then tell the
/// partner they are in sync (a partner's first LACPDU, which changes the port's partner
/// information, unselects it, but the selection logic runs before the mux machine in every tick
/// and selects it again: the wait goes on).
pub fn aggregate_wait(hz: Option<u32>) -> (u64, f64) {
    let ticks = 1 + AGGREGATE_WAIT.as_millis() as u64 / TIMER_INTERVAL_MS;
    let tick = match hz.filter(|hz| *hz > 0) {
        Some(hz) => {
            crate::model::least_tick_ms((TIMER_INTERVAL_MS * u64::from(hz)).div_ceil(1000), hz)
        }
        None => TIMER_INTERVAL_MS as f64,
    };
    (ticks, tick)
}

/// bond_3ad.c AD_FAST_PERIODIC_TIME / AD_SLOW_PERIODIC_TIME: the LACPDU period a side uses when
/// its partner asks for the short timeout (lacp_rate fast) or not.
const FAST_PERIODIC: Duration = Duration::from_secs(1);
const SLOW_PERIODIC: Duration = Duration::from_secs(30);

/// How long aggregation may take: the aggregate wait, then each side must hear the other's
/// LACPDU saying it is in sync. That LACPDU is normally sent at once, but may be held back to
/// the next periodic one (at most 3 LACPDUs a second): up to one period each way, the period
/// being the partner's for what we hear and ours for what it hears. Plus the backend's slack.
pub fn deadline(model: &Model, topology: &Topology, slack_ms: u64) -> Duration {
    let fast = Value::Text("fast".into());
    let ours_fast = model
        .expectations
        .iter()
        .any(|e| e.check == "option.lacp_rate" && e.expected == fast);
    let theirs_fast = topology
        .peer_master
        .as_ref()
        .and_then(|m| m.option("lacp_rate"))
        == Some(1);
    let period = if ours_fast && theirs_fast {
        FAST_PERIODIC
    } else {
        SLOW_PERIODIC
    };
    AGGREGATE_WAIT + 2 * period + Duration::from_millis(slack_ms)
}

/// Polls the bond's 802.3ad state until every slave is in the aggregate on both sides, or
/// `deadline` has passed, then reads the partner's. Both sides, because a port collects and
/// distributes (actor state) as soon as it hears the partner is in sync, while the partner's own
/// collecting and distributing reaches it only with the partner's next LACPDU. The mux
/// machine's state changes are not announced over netlink, so there is no event to wait on.
pub async fn observe(
    built: &Built,
    bond: &str,
    slaves: &[String],
    deadline: Duration,
) -> Result<Observed> {
    // A fifth of the 802.3ad state machines' 100 ms tick (AD_TIMER_INTERVAL).
    const POLL: Duration = Duration::from_millis(20);
    let partner = built
        .peer_master
        .as_ref()
        .ok_or_else(|| Error::run("an LACP partner needs a topology with a peer-master"))?;
    let view = |links: &[netlink_packet_route::link::LinkMessage], name: &str| {
        netlink::ad_view(links, name)
            .ok_or_else(|| Error::run(format!("bond {name} is gone from its namespace")))
    };
    let start = Instant::now();
    let (bond_view, formed, waited) = loop {
        let links = netlink::links(&built.bond)
            .await
            .map_err(|r| Error::run(format!("link dump refused: {r}")))?;
        let v = view(&links, bond)?;
        let formed = slaves.iter().all(|s| {
            v.port(s).is_some_and(|p| {
                [p.actor_state, p.partner_state]
                    .iter()
                    .all(|st| st.is_some_and(|st| st & IN_AGGREGATE == IN_AGGREGATE))
            })
        });
        let waited = start.elapsed();
        if formed || waited >= deadline {
            break (v, formed, waited);
        }
        tokio::time::sleep(POLL.min(deadline - waited)).await;
    };
    let links = netlink::links(&partner.handle)
        .await
        .map_err(|r| Error::run(format!("link dump in the peer namespace refused: {r}")))?;
    Ok(Observed {
        bond: bond_view,
        partner_name: partner.name.clone(),
        partner: view(&links, &partner.name)?,
        formed,
        waited_ms: waited.as_secs_f64() * 1e3,
        deadline_ms: deadline.as_secs_f64() * 1e3,
    })
}

fn wait_measurements(obs: &Observed) -> Vec<Measurement> {
    vec![
        Measurement {
            name: "aggregation_wait".into(),
            value: obs.waited_ms,
            unit: "ms",
        },
        Measurement {
            name: "aggregation_deadline".into(),
            value: obs.deadline_ms,
            unit: "ms",
        },
    ]
}

fn verdict(
    check: String,
    obs: &Observed,
    expected: String,
    observed: String,
    problems: &[String],
    rule: Rule,
) -> Verdict {
    let (status, message) = if problems.is_empty() {
        (
            Status::Pass,
            format!("{observed} (after {:.0} ms)", obs.waited_ms),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{}; expected {expected}, observed {observed} — after waiting {:.0} ms; rule: {} ({})",
                problems.join("; "),
                obs.waited_ms,
                rule.text,
                rule.source
            ),
        )
    };
    Verdict::compared(
        check,
        status,
        (expected, observed),
        rule,
        message,
        wait_measurements(obs),
    )
}

/// `lacp.aggregator` and `lacp.<slave>.port_state` for every slave.
pub fn checks(obs: &Observed, slaves: &[String]) -> Vec<Verdict> {
    let mut out = vec![aggregator(obs, slaves)];
    out.extend(slaves.iter().map(|s| port_state(obs, s)));
    out
}

fn aggregator(obs: &Observed, slaves: &[String]) -> Verdict {
    let partner_mac = obs.partner.mac.clone().unwrap_or("unknown".into());
    let expected = format!(
        "one active aggregator holding all {} ports, partner {partner_mac} ({}), and the \
         partner's likewise",
        slaves.len(),
        obs.partner_name
    );
    let ports: Vec<String> = slaves
        .iter()
        .map(|s| match obs.bond.port(s).and_then(|p| p.aggregator) {
            Some(id) => format!("{s} in {id}"),
            None => format!("{s} in none"),
        })
        .collect();
    let mut problems = Vec::new();
    let observed = match &obs.bond.active {
        None => {
            problems.push("the bond has no active aggregator (no IFLA_BOND_AD_INFO)".into());
            format!("no active aggregator; {}", ports.join(", "))
        }
        Some(a) => {
            let outside: Vec<&str> = slaves
                .iter()
                .filter(|s| obs.bond.port(s).and_then(|p| p.aggregator) != Some(a.id))
                .map(String::as_str)
                .collect();
            if !outside.is_empty() {
                problems.push(format!(
                    "{} not in the active aggregator {}",
                    outside.join(", "),
                    a.id
                ));
            }
            if usize::from(a.num_ports) != slaves.len() {
                problems.push(format!(
                    "{} active ports, not {}",
                    a.num_ports,
                    slaves.len()
                ));
            }
            if a.partner_mac != partner_mac {
                problems.push(format!(
                    "partner {}, not {} ({partner_mac})",
                    a.partner_mac, obs.partner_name
                ));
            }
            // The partner must see the same aggregate from its side.
            let bond_mac = obs.bond.mac.clone().unwrap_or("unknown".into());
            match &obs.partner.active {
                None => problems.push(format!("{} has no active aggregator", obs.partner_name)),
                Some(p)
                    if usize::from(p.num_ports) != slaves.len() || p.partner_mac != bond_mac =>
                {
                    problems.push(format!(
                        "{}'s active aggregator has {} ports and partner {}, not {} and {bond_mac}",
                        obs.partner_name,
                        p.num_ports,
                        p.partner_mac,
                        slaves.len()
                    ));
                }
                Some(_) => {}
            }
            format!(
                "active aggregator {} with {} ports, partner {}; {}",
                a.id,
                a.num_ports,
                a.partner_mac,
                ports.join(", ")
            )
        }
    };
    verdict(
        AGGREGATOR.into(),
        obs,
        expected,
        observed,
        &problems,
        Rule {
            text:
                "ports with the same actor key and the same partner (system, system priority, key) \
                   share an aggregator, and the one with a partner and the most ports is made \
                   active; AD_INFO reports the active aggregator, its enabled ports and the \
                   partner's system id, which is the partner bond's MAC"
                    .into(),
            source: "drivers/net/bonding/bond_3ad.c (ad_port_selection_logic, ad_agg_selection_logic, \
                     bond_3ad_get_active_agg_info); bond_netlink.c (bond_fill_info)",
        },
    )
}

fn port_state(obs: &Observed, slave: &str) -> Verdict {
    let expected = format!("actor and partner with {}", bit_names(IN_AGGREGATE));
    let port = obs.bond.port(slave);
    let mut problems = Vec::new();
    let mut sides = Vec::new();
    for (side, state) in [
        ("actor", port.and_then(|p| p.actor_state)),
        ("partner", port.and_then(|p| p.partner_state)),
    ] {
        match state {
            Some(st) => {
                sides.push(format!("{side} {}", state_text(st)));
                let missing = IN_AGGREGATE & !st;
                if missing != 0 {
                    problems.push(format!("{side} lacks {}", bit_names(missing)));
                }
            }
            None => {
                sides.push(format!("{side} not reported"));
                problems.push(format!("{side} state not reported"));
            }
        }
    }
    let observed = match port {
        None => {
            problems = vec![format!("{slave} is not a port of the bond")];
            "not enslaved".into()
        }
        Some(_) => sides.join("; "),
    };
    verdict(
        port_state_check(slave),
        obs,
        expected,
        observed,
        &problems,
        Rule {
            text:
                "a full-duplex port is aggregatable (AGGREGATION); once attached to its selected \
                   aggregator it is in sync (SYNC), and when the partner's LACPDUs say the partner \
                   is in sync too, the mux machine enables it (COLLECTING and DISTRIBUTING, \
                   coupled control); the partner state is what the partner's last LACPDU said"
                    .into(),
            source: "drivers/net/bonding/bond_3ad.c (ad_mux_machine, ad_rx_machine, __record_pdu); \
                     include/uapi/linux/if_bonding.h (LACP_STATE_*)",
        },
    )
}

/// Without a partner every 802.3ad port is individual; the one chosen aggregator's ports are
/// enabled once its port has waited out the aggregate wait (2 s) and the short timeout (3 s)
/// for a partner (bond_3ad.c, ad_agg_selection_logic).
pub const INDIVIDUAL_AGGREGATOR: Duration = Duration::from_secs(5);

/// The slaves in the bond's active 802.3ad aggregator, once it has one and all of them are
/// enabled (not backup), or whatever they are at `deadline`. The state machines announce
/// nothing over netlink, so this polls.
pub async fn aggregator_ports(
    built: &Built,
    bond: &str,
    deadline: Duration,
) -> Result<Vec<String>> {
    const POLL: Duration = Duration::from_millis(20);
    let start = Instant::now();
    loop {
        let links = netlink::links(&built.bond)
            .await
            .map_err(|r| Error::run(format!("802.3ad: link dump: {r}")))?;
        let (ad, view) = netlink::ad_view(&links, bond)
            .zip(netlink::bond_view(&links, bond))
            .ok_or_else(|| Error::run(format!("802.3ad: bond {bond} is gone")))?;
        let ports: Vec<String> = match &ad.active {
            Some(active) => ad
                .ports
                .iter()
                .filter(|p| p.aggregator == Some(active.id))
                .map(|p| p.name.clone())
                .collect(),
            None => Vec::new(),
        };
        let enabled = ports.iter().all(|p| {
            view.slave(p)
                .is_some_and(|s| s.state.as_deref() == Some("active"))
        });
        if (!ports.is_empty() && enabled) || start.elapsed() >= deadline {
            return Ok(ports);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(ports: &[(&str, Option<u16>, u8, u8)], active: Option<(u16, u16)>) -> Observed {
        Observed {
            bond: AdView {
                mac: Some("02:00:00:00:00:01".into()),
                active: active.map(|(id, num_ports)| ActiveAggregator {
                    id,
                    num_ports,
                    partner_mac: "02:00:00:00:00:02".into(),
                    ..ActiveAggregator::default()
                }),
                ports: ports
                    .iter()
                    .map(|(name, aggregator, actor, partner)| AdPort {
                        name: name.to_string(),
                        aggregator: *aggregator,
                        actor_state: Some(*actor),
                        partner_state: Some(*partner),
                    })
                    .collect(),
            },
            partner_name: "switch0".into(),
            partner: AdView {
                mac: Some("02:00:00:00:00:02".into()),
                active: active.map(|(id, num_ports)| ActiveAggregator {
                    id,
                    num_ports,
                    partner_mac: "02:00:00:00:00:01".into(),
                    ..ActiveAggregator::default()
                }),
                ports: Vec::new(),
            },
            formed: true,
            waited_ms: 2100.0,
            deadline_ms: 5000.0,
        }
    }

    fn slaves() -> Vec<String> {
        vec!["eno1".into(), "eno2".into()]
    }

    #[test]
    fn a_formed_aggregate_passes_every_check() {
        let obs = observed(
            &[("eno1", Some(1), 0x3f, 0x3f), ("eno2", Some(1), 0x3f, 0x3f)],
            Some((1, 2)),
        );
        let v = checks(&obs, &slaves());
        let ids: Vec<&str> = v.iter().map(|v| v.check.as_str()).collect();
        assert_eq!(ids, check_ids(&slaves()));
        assert!(v.iter().all(|v| v.status == Status::Pass), "{v:#?}");
        assert_eq!(
            v[1].message,
            "actor 0x3f (activity, timeout, aggregation, sync, collecting, distributing); partner \
             0x3f (activity, timeout, aggregation, sync, collecting, distributing) (after 2100 ms)"
        );
    }

    #[test]
    fn a_port_without_partner_fails_both_checks_and_says_what_differs() {
        let obs = observed(
            &[("eno1", Some(1), 0x3f, 0x3f), ("eno2", Some(2), 0x07, 0x42)],
            Some((1, 1)),
        );
        let v = checks(&obs, &slaves());
        assert_eq!(v[0].status, Status::Fail);
        assert!(
            v[0].message.starts_with(
                "eno2 not in the active aggregator 1; 1 active ports, not 2; switch0's active \
                 aggregator has 1 ports and partner 02:00:00:00:00:01, not 2 and \
                 02:00:00:00:00:01; expected one active aggregator holding all 2 ports, partner \
                 02:00:00:00:00:02 (switch0), and the partner's likewise, observed active \
                 aggregator 1 with 1 ports, partner 02:00:00:00:00:02; eno1 in 1, eno2 in 2"
            ),
            "{}",
            v[0].message
        );
        assert_eq!(v[1].status, Status::Pass);
        assert_eq!(v[2].status, Status::Fail);
        assert!(
            v[2].message.starts_with(
                "actor lacks sync, collecting, distributing; partner lacks aggregation, sync, \
                 collecting, distributing; expected actor and partner with aggregation, sync, \
                 collecting, distributing, observed actor 0x07 (activity, timeout, aggregation); \
                 partner 0x42 (timeout, defaulted)"
            ),
            "{}",
            v[2].message
        );
    }

    #[test]
    fn no_active_aggregator_and_a_missing_port_fail() {
        let obs = observed(&[("eno1", None, 0, 0)], None);
        let v = checks(&obs, &slaves());
        assert!(
            v[0].message
                .starts_with("the bond has no active aggregator"),
            "{}",
            v[0].message
        );
        assert!(v[2].message.starts_with("eno2 is not a port of the bond"));
        assert_eq!(v[2].observed, Some(Value::Text("not enslaved".into())));
    }
}
