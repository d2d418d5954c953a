//! Where the driver puts each frame it sends, per mode: the expectation the traffic check
//! judges the captures against. Transcribed from Linux 6.1's transmit path
//! (drivers/net/bonding/bond_main.c `bond_start_xmit` and the per-mode functions it calls,
//! bond_alb.c for balance-tlb and balance-alb); the hash itself is in [`crate::transmit`].
//!
//! A slave is *usable* when the driver may send on it (`bond_slave_can_tx`: up, link up,
//! not a backup); which slaves are usable, and which one is active, the caller says from the
//! model (and, for 802.3ad, from the aggregator the kernel formed).

use crate::frames::Frame;
use crate::model::{Rule, Transmit};
use crate::spec::Mode;
use crate::transmit::{self, HashPolicy};

const BOND_MAIN_C: &str = "drivers/net/bonding/bond_main.c";
const BOND_ALB_C: &str = "drivers/net/bonding/bond_alb.c";

/// The model's prediction for a run of frames.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// Frame i goes out on exactly the slaves `per_frame[i]` (enslave-order indices), once
    /// each; none means the driver drops it.
    Exact(Vec<Vec<usize>>),
    /// balance-rr with packets_per_slave ≥ 1: the n-th frame goes to `cycle[(phase + n) %
    /// cycle.len()]`. The phase is the per-CPU counter's value before the first frame, which
    /// the driver does not expose: the check fits it and then judges every frame.
    Rotation(Vec<usize>),
    /// balance-rr with packets_per_slave 0: each frame on one slave drawn at random; the
    /// share each slave should get.
    Shares(Vec<f64>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub prediction: Prediction,
    pub rule: Rule,
}

fn rule(text: String, source: &'static str) -> Rule {
    Rule { text, source }
}

/// What the driver does with `frames`, given which slaves are `usable` and the `active` one.
pub fn expect(t: &Transmit, usable: &[bool], active: Option<usize>, frames: &[Frame]) -> Expected {
    let policy = HashPolicy::from_name(t.hash_policy).unwrap_or(HashPolicy::Layer2);
    let up: Vec<usize> = (0..t.slaves.len()).filter(|i| usable[*i]).collect();
    // bond_3ad_xor_xmit / bond_xmit_tlb_slave_get: the hash picks from the usable array. A
    // frame sent through a VLAN device reaches the bond with its tag out of band.
    let hashed = |f: &Frame| -> Vec<usize> {
        if up.is_empty() {
            return Vec::new();
        }
        vec![up[transmit::slave_index(transmit::xmit_hash(policy, &f.bytes, f.vlan), up.len())]]
    };
    let on_active = |_: &Frame| -> Vec<usize> { active.into_iter().collect() };
    match t.mode {
        Mode::BalanceRr => round_robin(t, usable),
        Mode::ActiveBackup => Expected {
            prediction: Prediction::Exact(frames.iter().map(on_active).collect()),
            rule: rule(
                "active-backup sends every frame on the active slave and none on the backups \
                 (bond_xmit_activebackup)"
                    .into(),
                BOND_MAIN_C,
            ),
        },
        Mode::Ieee8023ad if (up.len() as u64) < t.min_links => Expected {
            prediction: Prediction::Exact(vec![Vec::new(); frames.len()]),
            rule: rule(
                format!(
                    "the active aggregator has {} port{} in use, fewer than min_links {}: the bond \
                     has no carrier (bond_3ad_set_carrier) and sends nothing",
                    up.len(),
                    if up.len() == 1 { "" } else { "s" },
                    t.min_links
                ),
                "drivers/net/bonding/bond_3ad.c",
            ),
        },
        Mode::BalanceXor | Mode::Ieee8023ad => Expected {
            prediction: Prediction::Exact(frames.iter().map(hashed).collect()),
            rule: rule(
                format!(
                    "the slave is usable[bond_xmit_hash() % count] with xmit_hash_policy {} over \
                     the usable slaves in enslave order{} (bond_3ad_xor_xmit)",
                    policy.name(),
                    if t.mode == Mode::Ieee8023ad {
                        ", those of the active aggregator"
                    } else {
                        ""
                    }
                ),
                BOND_MAIN_C,
            ),
        },
        Mode::Broadcast => Expected {
            prediction: Prediction::Exact(frames.iter().map(|_| up.clone()).collect()),
            rule: rule(
                "broadcast sends a copy of every frame on every slave that is up \
                 (bond_xmit_broadcast)"
                    .into(),
                BOND_MAIN_C,
            ),
        },
        Mode::BalanceTlb | Mode::BalanceAlb => {
            let alb = t.mode == Mode::BalanceAlb;
            let first_usable: Vec<usize> = up.first().copied().into_iter().collect();
            let per_frame = frames
                .iter()
                .map(|f| match (balanced(&f.bytes, alb), t.tlb_dynamic_lb) {
                    (false, _) => on_active(f),
                    (true, true) => first_usable.clone(),
                    (true, false) => hashed(f),
                })
                .collect();
            let which = if alb {
                "balance-alb balances unicast IPv4 and IPv6 (not to the broadcast address, not \
                 IGMP, not neighbour discovery); ARP goes through receive load balancing"
            } else {
                "balance-tlb balances frames to a unicast MAC address carrying IPv4 or IPv6 (not \
                 neighbour discovery)"
            };
            let how = if t.tlb_dynamic_lb {
                "with tlb_dynamic_lb each hash bucket goes to the least-loaded usable slave when \
                 first used (tlb_choose_channel); loads are counted only at the rebalance every \
                 10 s, so before it every bucket goes to the first usable slave (veth slaves all \
                 report the same speed)"
                    .to_string()
            } else {
                format!(
                    "without tlb_dynamic_lb the slave is usable[bond_xmit_hash() % count] with \
                     xmit_hash_policy {}",
                    policy.name()
                )
            };
            Expected {
                prediction: Prediction::Exact(per_frame),
                rule: rule(
                    format!("{which}; {how}; everything else goes on the active slave"),
                    BOND_ALB_C,
                ),
            }
        }
    }
}

/// The states a bond passes through while one slave's carrier is cut and restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Before,
    /// The carrier is gone; the monitor has not yet committed the slave down.
    CarrierLost,
    /// From the DOWN commit until the UP commit (the carrier's return changes nothing).
    Down,
    Restored,
}

impl State {
    pub const ALL: [State; 4] = [
        State::Before,
        State::CarrierLost,
        State::Down,
        State::Restored,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::Before => "before the cut",
            State::CarrierLost => "carrier lost, not yet down",
            State::Down => "down",
            State::Restored => "back up",
        }
    }
}

/// What the driver does with a stream's frames in each state of a cut and restore of the
/// slave at enslave index `cut`, in the order of [`State::ALL`].
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    pub cut: usize,
    pub states: [Expected; 4],
    pub rule: Rule,
}

/// Why the model cannot predict a stream through a cut and restore for this bond, if so.
pub fn failover_unpredictable(t: &Transmit) -> Option<&'static str> {
    match t.mode {
        Mode::Ieee8023ad => Some(
            "in 802.3ad the ports in use after a cut depend on the LACP machines, which the \
             stream does not follow",
        ),
        Mode::BalanceTlb | Mode::BalanceAlb if t.tlb_dynamic_lb => Some(
            "with tlb_dynamic_lb each hash bucket keeps the slave it was given across cuts and \
             is rebalanced every 10 s: the model does not follow the buckets' history",
        ),
        _ => None,
    }
}

/// The expectation for a stream through a cut of `cut`, given the active slave before the
/// cut, after the DOWN commit and after the UP commit, for a bond the model can predict it
/// for ([`failover_unpredictable`]).
pub fn during_failover(
    t: &Transmit,
    cut: usize,
    actives: [Option<usize>; 3],
    frames: &[Frame],
) -> Failover {
    let [before, after_cut, after_restore] = actives;
    let all = vec![true; t.slaves.len()];
    let mut without = all.clone();
    without[cut] = false;
    let states = [
        expect(t, &all, before, frames),
        // bond_slave_can_tx reads the carrier for every frame (balance-rr, broadcast), and the
        // carrier event rebuilds the usable array (xor, tlb without dynamic balancing); the
        // active slave changes only with the DOWN commit.
        expect(t, &without, before, frames),
        expect(t, &without, after_cut, frames),
        expect(t, &all, after_restore, frames),
    ];
    Failover {
        cut,
        states,
        rule: rule(
            "before the cut and once the slave is back up, as without a cut; with its carrier \
             lost the slave can no longer transmit (bond_slave_can_tx reads the carrier for \
             every frame, and the carrier event rebuilds the usable-slave array), but it stays \
             the active slave until the DOWN commit fails over, so frames for it are dropped \
             by its veth; from the DOWN commit to the UP commit it is out, and nothing is lost"
                .into(),
            BOND_MAIN_C,
        ),
    }
}

/// Whether balance-tlb (`bond_xmit_tlb_slave_get`) or balance-alb (`bond_xmit_alb_slave_get`)
/// balances this frame rather than sending it on the active slave.
fn balanced(frame: &[u8], alb: bool) -> bool {
    let Some(header) = frame.get(..14) else {
        return false;
    };
    let dst = &header[..6];
    let ethertype = u16::from_be_bytes([header[12], header[13]]);
    let broadcast = dst == [0xff; 6];
    let multicast = dst[0] & 1 == 1;
    let network = &frame[14..];
    match ethertype {
        0x0800 if alb => {
            // Not to the broadcast MAC or 255.255.255.255, not IGMP.
            let Some(ip) = network.get(..20) else {
                return false;
            };
            !broadcast && ip[9] != 2 && ip[16..20] != [0xff; 4]
        }
        0x86dd if alb => {
            !broadcast && dst != [0x33, 0x33, 0, 0, 0, 1] && !neighbour_discovery(network)
        }
        0x0800 => !multicast,
        0x86dd => !multicast && !neighbour_discovery(network),
        _ => false,
    }
}

/// `alb_determine_nd`: an ICMPv6 neighbour solicitation or advertisement right after the
/// IPv6 header.
fn neighbour_discovery(ipv6: &[u8]) -> bool {
    match (ipv6.get(6), ipv6.get(40)) {
        (Some(58), Some(t)) => matches!(t, 135 | 136),
        _ => false,
    }
}

/// balance-rr (`bond_xmit_roundrobin_slave_get`, `bond_rr_gen_slave_id`,
/// `bond_get_slave_by_id`).
fn round_robin(t: &Transmit, usable: &[bool]) -> Expected {
    let count = t.slaves.len();
    // bond_get_slave_by_id: from position id onwards, wrapping, the first usable slave.
    let by_id = |id: usize| (0..count).map(|k| (id + k) % count).find(|i| usable[*i]);
    let turn = "a turn that falls on an unusable slave goes to the next usable one in \
                enslave order (bond_get_slave_by_id)";
    if t.packets_per_slave == 0 {
        let mut shares = vec![0.0; count];
        for id in 0..count {
            if let Some(s) = by_id(id) {
                shares[s] += 1.0 / count as f64;
            }
        }
        return Expected {
            prediction: Prediction::Shares(shares),
            rule: rule(
                format!(
                    "with packets_per_slave 0 each frame goes to slave (random % {count}); {turn}"
                ),
                BOND_MAIN_C,
            ),
        };
    }
    let n = t.packets_per_slave as usize;
    // The counter is incremented before use; with N > 1 the slave id is counter / N.
    let cycle = (0..n * count)
        .filter_map(|c| by_id((c / n) % count))
        .collect::<Vec<_>>();
    let cycle = if cycle.len() == n * count {
        cycle
    } else {
        Vec::new()
    };
    Expected {
        prediction: if cycle.is_empty() {
            Prediction::Exact(Vec::new())
        } else {
            Prediction::Rotation(cycle)
        },
        rule: rule(
            format!(
                "with packets_per_slave {n} the slaves take turns of {n} frame{} in enslave \
                 order (a per-CPU counter; frames are sent from one CPU); {turn}",
                if n == 1 { "" } else { "s" }
            ),
            BOND_MAIN_C,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames;

    fn transmit(mode: Mode, slaves: usize) -> Transmit {
        Transmit {
            mode,
            slaves: (0..slaves).map(|i| format!("eth{i}")).collect(),
            packets_per_slave: 1,
            hash_policy: "layer2",
            tlb_dynamic_lb: true,
            min_links: 0,
        }
    }

    fn some_frames(n: usize) -> Vec<Frame> {
        frames::frames(&frames::mix(1, 16, [2, 0, 0, 0, 0, 1], &[]), 1, n)
    }

    #[test]
    fn round_robin_takes_turns_and_gives_a_down_slave_turn_to_the_next() {
        let mut t = transmit(Mode::BalanceRr, 3);
        assert_eq!(
            round_robin(&t, &[true; 3]).prediction,
            Prediction::Rotation(vec![0, 1, 2])
        );
        t.packets_per_slave = 2;
        assert_eq!(
            round_robin(&t, &[true, false, true]).prediction,
            Prediction::Rotation(vec![0, 0, 2, 2, 2, 2])
        );
        t.packets_per_slave = 0;
        let Prediction::Shares(s) = round_robin(&t, &[true, false, true]).prediction else {
            panic!("random")
        };
        assert!((s[0] - 1.0 / 3.0).abs() < 1e-9 && s[1] == 0.0 && (s[2] - 2.0 / 3.0).abs() < 1e-9);
        t.packets_per_slave = 1;
        assert_eq!(
            round_robin(&t, &[false; 3]).prediction,
            Prediction::Exact(Vec::new())
        );
    }

    #[test]
    fn active_backup_and_broadcast() {
        let f = some_frames(5);
        let ab = expect(&transmit(Mode::ActiveBackup, 2), &[true, true], Some(1), &f);
        assert_eq!(ab.prediction, Prediction::Exact(vec![vec![1]; 5]));
        let b = expect(
            &transmit(Mode::Broadcast, 3),
            &[true, false, true],
            None,
            &f,
        );
        assert_eq!(b.prediction, Prediction::Exact(vec![vec![0, 2]; 5]));
    }

    #[test]
    fn xor_uses_only_usable_slaves() {
        let f = some_frames(64);
        let e = expect(
            &transmit(Mode::BalanceXor, 3),
            &[true, false, true],
            None,
            &f,
        );
        let Prediction::Exact(per) = e.prediction else {
            panic!()
        };
        assert!(per.iter().all(|s| s.len() == 1 && s[0] != 1));
        assert!(per.iter().any(|s| s[0] == 0) && per.iter().any(|s| s[0] == 2));
    }

    #[test]
    fn tlb_sends_what_it_does_not_balance_on_the_active_slave() {
        let f = some_frames(32);
        let e = expect(&transmit(Mode::BalanceTlb, 2), &[true, true], Some(1), &f);
        let Prediction::Exact(per) = e.prediction else {
            panic!()
        };
        for (frame, slaves) in f.iter().zip(&per) {
            let unicast_ip =
                frame.bytes[0] & 1 == 0 && matches!(&frame.bytes[12..14], [0x08, 0] | [0x86, 0xdd]);
            assert_eq!(slaves, &vec![if unicast_ip { 0 } else { 1 }], "{frame:?}");
        }
    }
}
