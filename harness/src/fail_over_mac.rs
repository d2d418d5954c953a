//! fail_over_mac in active-backup: which MAC address the bond and each of its slaves have once
//! the slaves are enslaved and after every change of active slave, derived from the driver's
//! rules, and the check (`failover.mac`) that compares them with the addresses the kernel
//! reports (IFLA_ADDRESS) in the dumps the timing trials and the failover stream already make
//! after every committed DOWN and UP.
//!
//! The rules (Linux 6.1, drivers/net/bonding/bond_main.c):
//! - `bond_enslave`: the first slave gives the bond its address (a new bond's is random:
//!   `bond_set_dev_addr`); with fail_over_mac `none` every slave is then given the bond's
//!   address; with `active` or `follow` a slave keeps its own.
//! - `bond_change_active_slave` calls `bond_do_fail_over_mac` on every change of active slave:
//!   `none` changes nothing; `active` gives the bond the new active slave's address; `follow`
//!   gives the new active slave the bond's address and the slave that had it (the old active
//!   one or, with none, the slave holding the bond's address: `bond_get_old_active`) the new
//!   one's. So under `follow` the active slave always has the bond's address, and which address
//!   each backup has depends on the order of the changes.
//!
//! Addresses are predicted as whose permanent address a device has (slave positions); the
//! check resolves them with the topology's fixed addresses (`topology::slave_mac`), never with
//! what the kernel reports.

use std::collections::BTreeMap;

use crate::checks::{Status, Verdict};
use crate::failover;
use crate::model::{Rule, Selection};
use crate::netlink::mac_text;
use crate::observe::BondView;
use crate::spec::Mode;
use crate::timing::Measured;
use crate::topology;

/// The check's id, for active-backup timing cases the model can judge.
pub const CHECK: &str = "failover.mac";

const SOURCE: &str = "drivers/net/bonding/bond_main.c (bond_enslave, bond_set_dev_addr, \
                      bond_change_active_slave, bond_do_fail_over_mac, bond_get_old_active)";

/// The fail_over_mac policy (bond_options.c `bond_fail_over_mac_tbl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    None,
    Active,
    Follow,
}

/// What the model needs to predict the addresses: the policy and the slaves in enslave order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub policy: Policy,
    pub slaves: Vec<String>,
}

/// Whose permanent address each device has, as positions in the enslave order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holders {
    pub bond: usize,
    pub slaves: Vec<usize>,
}

impl Rules {
    /// The rules for a bond in `mode` with fail_over_mac `word`, where the model can judge
    /// them: active-backup only (tlb and alb manage addresses their own way), and under
    /// `follow` with more than two slaves only if the first slave is the first active one:
    /// otherwise the active slaves while the bond is set up (each enslavement, primary and prio
    /// write may choose again) decide which backup gets which address, and the selection model
    /// starts with every slave up.
    pub fn new(
        mode: Mode,
        word: &str,
        slaves: &[String],
        first_active: Option<&str>,
    ) -> Option<Rules> {
        if mode != Mode::ActiveBackup || slaves.is_empty() {
            return None;
        }
        let policy = match word {
            "none" => Policy::None,
            "active" => Policy::Active,
            "follow" => Policy::Follow,
            _ => return None,
        };
        let first = slaves.first().map(String::as_str);
        if policy == Policy::Follow && slaves.len() > 2 && first_active != first {
            return None;
        }
        Some(Rules {
            policy,
            slaves: slaves.to_vec(),
        })
    }

    /// The holders after each moment, given the active slave the model expects at each (the
    /// first moment is once every slave is enslaved and up), from the enslavements on.
    pub fn replay(&self, actives: &[Option<String>]) -> Vec<Holders> {
        let n = self.slaves.len();
        let mut now = Holders {
            bond: 0,
            slaves: match self.policy {
                Policy::None => vec![0; n],
                Policy::Active | Policy::Follow => (0..n).collect(),
            },
        };
        let mut active: Option<usize> = None;
        let mut out = Vec::new();
        for name in actives {
            let new = name
                .as_deref()
                .and_then(|a| self.slaves.iter().position(|s| s == a));
            if let Some(new) = new.filter(|n| Some(*n) != active) {
                self.change_active(&mut now, new);
                active = Some(new);
            }
            out.push(now.clone());
        }
        out
    }

    /// `bond_do_fail_over_mac` for a change of active slave to `new`.
    fn change_active(&self, now: &mut Holders, new: usize) {
        match self.policy {
            Policy::None => {}
            Policy::Active => now.bond = now.slaves[new],
            Policy::Follow => {
                // The old active slave holds the bond's address; where there was none, the
                // slave that holds it stands in for it. Either way the two swap.
                let holder = (0..now.slaves.len()).find(|&i| i != new && now.slaves[i] == now.bond);
                match holder {
                    Some(old) => now.slaves.swap(new, old),
                    None => now.slaves[new] = now.bond,
                }
            }
        }
    }

    fn rule(&self) -> Rule {
        let text = match self.policy {
            Policy::None => {
                "fail_over_mac none: the bond takes its first slave's address and every slave \
                 is given the bond's at enslavement; a failover changes no address"
            }
            Policy::Active => {
                "fail_over_mac active: every slave keeps its own address; the bond takes its \
                 first slave's, then the new active slave's at every failover"
            }
            Policy::Follow => {
                "fail_over_mac follow: the bond takes its first slave's address and keeps it; \
                 every slave keeps its own until it becomes active, when it takes the bond's and \
                 the slave that had it takes the new active slave's"
            }
        };
        Rule {
            text: text.into(),
            source: SOURCE,
        }
    }
}

/// One moment the addresses were read, with the active slave the model expects then.
pub struct Moment {
    /// E.g. `after enslaving`, `trial 2 down`, `stream up`.
    pub label: String,
    pub expected_active: Option<String>,
    /// Interface name (the bond's and every slave's) → MAC; None where nothing was read.
    pub observed: Option<BTreeMap<String, String>>,
}

/// The moments a timing case read the addresses: once every slave was enslaved and up (the
/// observe phase's view), after every trial's DOWN and UP commit, and after the failover
/// stream's, each with the active slave the selection model expects then.
pub fn moments(
    selection: &Selection,
    bond: &str,
    enslaved: &BondView,
    trials: &Measured,
    stream: Option<&failover::Observed>,
) -> Vec<Moment> {
    let mut cuts = vec![trials.slave.as_str(); trials.down.len()];
    cuts.extend(stream.map(|s| s.slave.as_str()));
    let (after_cut, after_restore) = selection.replay(&cuts);
    let mut out = vec![Moment {
        label: "after enslaving".into(),
        expected_active: selection.active_after(&[]),
        observed: Some(enslaved.macs(bond)),
    }];
    for (i, (down, up)) in trials.down.iter().zip(&trials.up).enumerate() {
        for (what, sample, active) in [("down", down, &after_cut[i]), ("up", up, &after_restore[i])]
        {
            out.push(Moment {
                label: format!("trial {} {what}", sample.trial),
                expected_active: active.clone(),
                observed: Some(sample.addresses.clone()),
            });
        }
    }
    if let Some(s) = stream {
        let i = trials.down.len();
        out.push(Moment {
            label: format!("failover stream {} down", s.slave),
            expected_active: after_cut[i].clone(),
            observed: s.addresses_after_cut.clone(),
        });
        out.push(Moment {
            label: format!("failover stream {} up", s.slave),
            expected_active: after_restore[i].clone(),
            observed: s.addresses_after_restore.clone(),
        });
    }
    out
}

/// Every moment's addresses against the model's, in order; fails on the first difference.
/// Expected and observed list, moment by moment, whose permanent address the bond and each
/// slave (in enslave order) have.
pub fn check(rules: &Rules, bond: &str, moments: &[Moment]) -> Verdict {
    let perm = |i: usize| mac_text(&topology::slave_mac(i));
    let whose = |mac: &str| {
        (0..rules.slaves.len())
            .find(|&i| perm(i) == mac)
            .map_or("another's".to_string(), |i| {
                format!("{}'s", rules.slaves[i])
            })
    };
    let actives: Vec<Option<String>> = moments.iter().map(|m| m.expected_active.clone()).collect();
    let expected: Vec<BTreeMap<String, String>> = rules
        .replay(&actives)
        .into_iter()
        .map(|h| {
            let slaves = rules.slaves.iter().zip(&h.slaves);
            std::iter::once((bond.to_string(), perm(h.bond)))
                .chain(slaves.map(|(name, &i)| (name.clone(), perm(i))))
                .collect()
        })
        .collect();
    let show = |map: &BTreeMap<String, String>| {
        std::iter::once(bond)
            .chain(rules.slaves.iter().map(String::as_str))
            .map(|name| match map.get(name) {
                Some(mac) => format!("{name} {mac} ({})", whose(mac)),
                None => format!("{name} unread"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut wrong = None;
    for (m, want) in moments.iter().zip(&expected) {
        let problem = match &m.observed {
            None => Some("no addresses read (the commit did not come)".to_string()),
            Some(got) if got != want => Some(format!("observed {}", show(got))),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            wrong = Some(format!(
                "{} ({} expected active): expected {}; {problem}",
                m.label,
                m.expected_active.as_deref().unwrap_or("none"),
                show(want)
            ));
            break;
        }
    }
    // Compact, moment by moment: whose address the bond and each slave have, in that order.
    let owners = |map: Option<&BTreeMap<String, String>>| {
        std::iter::once(bond)
            .chain(rules.slaves.iter().map(String::as_str))
            .map(|name| {
                let mac = map.and_then(|m| m.get(name));
                mac.map_or("unread".to_string(), |mac| {
                    whose(mac).trim_end_matches("'s").to_string()
                })
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let expected_owners: Vec<String> = expected.iter().map(|m| owners(Some(m))).collect();
    let observed_owners: Vec<String> = moments
        .iter()
        .map(|m| owners(m.observed.as_ref()))
        .collect();
    let rule = rules.rule();
    let (status, message) = match wrong {
        None => (
            Status::Pass,
            format!(
                "addresses as expected at all {} moments; last ({}): {}",
                moments.len(),
                moments.last().map_or("", |m| m.label.as_str()),
                expected.last().map(show).unwrap_or_default()
            ),
        ),
        Some(w) => (Status::Fail, format!("{w}; rule: {}", rule.text)),
    };
    Verdict::compared(
        CHECK.into(),
        status,
        (expected_owners.join(" | "), observed_owners.join(" | ")),
        rule,
        message,
        Vec::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(policy: &str, n: usize) -> Rules {
        let slaves: Vec<String> = (1..=n).map(|i| format!("eno{i}")).collect();
        Rules::new(Mode::ActiveBackup, policy, &slaves, Some("eno1")).unwrap()
    }

    fn some(names: &[&str]) -> Vec<Option<String>> {
        names.iter().map(|n| Some(n.to_string())).collect()
    }

    fn holders(bond: usize, slaves: &[usize]) -> Holders {
        Holders {
            bond,
            slaves: slaves.to_vec(),
        }
    }

    #[test]
    fn none_gives_every_slave_the_first_slaves_address_for_good() {
        let got = rules("none", 3).replay(&some(&["eno1", "eno2", "eno3"]));
        assert!(got.iter().all(|h| *h == holders(0, &[0, 0, 0])), "{got:?}");
    }

    #[test]
    fn active_moves_the_bonds_address_to_the_active_slave() {
        let got = rules("active", 3).replay(&some(&["eno1", "eno2", "eno2", "eno3"]));
        assert_eq!(got.iter().map(|h| h.bond).collect::<Vec<_>>(), [0, 1, 1, 2]);
        assert!(got.iter().all(|h| h.slaves == [0, 1, 2]));
    }

    #[test]
    fn follow_swaps_with_the_holder_so_history_matters() {
        // eno1 → eno2 → eno3: eno3 ends with the bond's (eno1's) address, eno2 with eno3's,
        // eno1 with eno2's; going straight to eno3 would have left eno2 its own.
        let got = rules("follow", 3).replay(&some(&["eno1", "eno2", "eno3"]));
        assert_eq!(
            got,
            [
                holders(0, &[0, 1, 2]),
                holders(0, &[1, 0, 2]),
                holders(0, &[1, 2, 0])
            ]
        );
        let direct = rules("follow", 3).replay(&some(&["eno1", "eno3"]));
        assert_eq!(direct[1], holders(0, &[2, 1, 0]));
    }

    #[test]
    fn follow_with_a_first_active_other_than_the_first_slave_is_judged_with_two_slaves_only() {
        let slaves = |n: usize| (1..=n).map(|i| format!("eno{i}")).collect::<Vec<_>>();
        assert!(Rules::new(Mode::ActiveBackup, "follow", &slaves(2), Some("eno2")).is_some());
        assert!(Rules::new(Mode::ActiveBackup, "follow", &slaves(3), Some("eno2")).is_none());
        assert!(Rules::new(Mode::ActiveBackup, "active", &slaves(3), Some("eno2")).is_some());
        assert!(Rules::new(Mode::BalanceTlb, "none", &slaves(2), Some("eno1")).is_none());
        // Starting with eno2 active, eno2 took the bond's address from eno1.
        let two = Rules::new(Mode::ActiveBackup, "follow", &slaves(2), Some("eno2")).unwrap();
        assert_eq!(two.replay(&some(&["eno2"])), [holders(0, &[1, 0])]);
    }

    #[test]
    fn the_check_names_the_first_moment_that_differs_and_whose_address_was_seen() {
        let r = rules("follow", 2);
        let mac = |i: usize| mac_text(&topology::slave_mac(i));
        let map = |b: usize, s: [usize; 2]| -> BTreeMap<String, String> {
            [("bond0", b), ("eno1", s[0]), ("eno2", s[1])]
                .into_iter()
                .map(|(n, i)| (n.to_string(), mac(i)))
                .collect()
        };
        let moment = |label: &str, active: &str, observed| Moment {
            label: label.into(),
            expected_active: Some(active.into()),
            observed: Some(observed),
        };
        let good = [
            moment("after enslaving", "eno1", map(0, [0, 1])),
            moment("trial 1 down", "eno2", map(0, [1, 0])),
        ];
        assert_eq!(check(&r, "bond0", &good).status, Status::Pass);
        let bad = [
            moment("after enslaving", "eno1", map(0, [0, 1])),
            moment("trial 1 down", "eno2", map(0, [0, 1])),
        ];
        let v = check(&r, "bond0", &bad);
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.message
                .starts_with("trial 1 down (eno2 expected active): expected bond0"),
            "{}",
            v.message
        );
        assert!(
            v.message.contains("eno2 02:bc:00:01:00:01 (eno2's)"),
            "{}",
            v.message
        );
    }
}
