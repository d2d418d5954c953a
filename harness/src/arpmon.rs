//! The ARP monitor's contract, as the model of when it commits a slave down and up.
//!
//! With `arp_interval` set (and no miimon), the driver sends ARP requests for every
//! `arp_ip_target` each interval and judges a slave by when it last received (bond_main.c,
//! Linux 6.1: `bond_arp_monitor`, `bond_activebackup_arp_mon`, `bond_loadbalance_arp_mon`).
//! On a topology whose switch holds the targets (veth-topologies/arp-target.toml) every slave
//! receives at every tick: the active slave (every slave, in the load-balancing modes) the
//! targets' replies, the backups of active-backup the active slave's requests flooded by the
//! switch. A slave whose switch port is blocked receives nothing, and this module says within
//! which window the monitor commits it down, and back up once the port forwards again.

use std::net::Ipv4Addr;

use crate::model::{Rule, Window, timer_granularity};
use crate::spec::Mode;

/// The ids of the ARP monitor's timing checks, for timing cases under ARP monitoring.
pub const CHECKS: [&str; 2] = ["arpmon.down", "arpmon.up"];

const SOURCE: &str = "drivers/net/bonding/bond_main.c (bond_time_in_interval, bond_ab_arp_inspect, \
                      bond_ab_arp_commit, bond_ab_arp_probe, bond_loadbalance_arp_mon, \
                      bond_rcv_validate, bond_arp_rcv); kernel/time/timer.c (calc_index)";

/// The ARP monitor's effective settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpMonitor {
    pub mode: Mode,
    pub interval_ms: u64,
    /// arp_missed_max: intervals without a reply before the active slave is down.
    pub missed_max: u64,
    /// arp_validate as the kernel's word.
    pub validate: &'static str,
    /// arp_all_targets as the kernel's word.
    pub all_targets: &'static str,
    pub targets: Vec<Ipv4Addr>,
    /// In enslave order.
    pub slaves: Vec<String>,
}

/// What a slave is to the ARP monitor when its port is blocked: the rule that takes it down
/// differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// active-backup's active slave: down once no reply came for missed_max intervals.
    Active,
    /// An active-backup backup: down once nothing came for missed_max + 1 intervals.
    Backup,
    /// A slave of a load-balancing mode: down once no reply came for missed_max intervals.
    Balancing,
}

impl ArpMonitor {
    /// δ: the interval in whole jiffies, msecs_to_jiffies(arp_interval) (rounded up).
    fn delta(&self, hz: u32) -> u64 {
        (self.interval_ms * u64::from(hz)).div_ceil(1000)
    }

    /// The role of `slave` at each of the cuts, given the active slave before each (None in
    /// the load-balancing modes, which have no backups).
    pub fn roles(&self, slave: &str, active_before: &[Option<String>]) -> Vec<Role> {
        active_before
            .iter()
            .map(|active| match (self.mode, active) {
                (Mode::ActiveBackup, Some(a)) if a == slave => Role::Active,
                (Mode::ActiveBackup, _) => Role::Backup,
                _ => Role::Balancing,
            })
            .collect()
    }

    /// Where a slave whose port is blocked at a random moment is committed down, for each
    /// role it has at a cut (one window over them all: the union), at `hz`.
    ///
    /// A slave last received at the tick t before the block (its request's reply, or the
    /// active's flooded request, arrives within the jiffy it was sent). bond_time_in_interval
    /// (last, m) holds while now ≤ last + m·δ + ⌊δ/2⌋, so the slave is proposed down, and
    /// committed at once (there is no delay in ARP mode), at the first tick n·T after t with
    /// n·T > m·δ + ⌊δ/2⌋; ticks re-arm every T jiffies, δ ≤ T ≤ δ + G (G the timer wheel's
    /// granularity), and the block falls anywhere in the tick before: ((n−1)·T, n·T]. m is
    /// missed_max for the active slave and in the load-balancing modes, missed_max + 1 for a
    /// backup; an active slave is also spared for 2·δ + ⌊δ/2⌋ after it was made active, which
    /// can hold it one tick longer when missed_max is 1.
    pub fn down_window(&self, hz: u32, roles: &[Role]) -> Window {
        let d = self.delta(hz);
        let g = timer_granularity(d);
        let (mut lower, mut upper) = (f64::INFINITY, 0.0f64);
        for role in roles {
            let m = match role {
                Role::Backup => self.missed_max + 1,
                _ => self.missed_max,
            };
            let spared = match role {
                Role::Active => m.max(2),
                _ => m,
            };
            for t in d..=d + g {
                let first_tick = |m: u64| (m * d + d / 2) / t + 1;
                lower = lower.min(((first_tick(m) - 1) * t) as f64);
                upper = upper.max((first_tick(spared) * t) as f64);
            }
        }
        let jiffy = 1000.0 / f64::from(hz);
        let roles_text: Vec<&str> = roles
            .iter()
            .map(|r| match r {
                Role::Active => "active",
                Role::Backup => "backup",
                Role::Balancing => "balancing",
            })
            .collect();
        Window {
            lower_ms: lower * jiffy,
            upper_ms: upper * jiffy,
            rule: Rule {
                text: format!(
                    "committed at the first tick n·T after the last receipt with n·T > m·δ + ⌊δ/2⌋, \
                     the block anywhere in the tick before: ((n−1)·T, n·T]; δ = ceil({} ms / {jiffy} ms) \
                     = {d} jiffies, T in [δ, δ+G], G = {g}, m = missed_max {} (+1 for a backup; an active \
                     slave spared 2·δ + ⌊δ/2⌋ after it was made active), HZ = {hz}; the cut slave is \
                     [{}] at the cuts (the window covers them all)",
                    self.interval_ms,
                    self.missed_max,
                    roles_text.join(" ")
                ),
                source: SOURCE,
            },
        }
    }

    /// Where a slave whose port forwards again is committed up, at `hz`.
    ///
    /// The first tick after the unblock still sees nothing (its inspection comes before its
    /// requests); at that tick the active slave's request (in the load-balancing modes every
    /// slave's) reaches the slave, in every arp_validate mode (a backup validates a request
    /// for a target from the bond's own address once the active slave has had a reply), and
    /// the next tick finds it within bond_time_in_interval(last, 1) and commits it up: (δ,
    /// 2·(δ+G)]. In the load-balancing modes a slave later in enslave order may receive an
    /// earlier slave's request before its own inspection in the first tick: (0, 2·(δ+G)].
    pub fn up_window(&self, hz: u32, slave: &str) -> Window {
        let d = self.delta(hz);
        let g = timer_granularity(d);
        let first = self.slaves.first().is_some_and(|s| s == slave);
        let lower = if self.mode == Mode::ActiveBackup || first {
            d
        } else {
            0
        };
        let jiffy = 1000.0 / f64::from(hz);
        Window {
            lower_ms: lower as f64 * jiffy,
            upper_ms: (2 * (d + g)) as f64 * jiffy,
            rule: Rule {
                text: format!(
                    "the tick after the unblock sees nothing yet; the requests sent at it reach the \
                     slave, and the next tick commits it up: ({lower}, 2·(δ+G)] jiffies with δ = \
                     ceil({} ms / {jiffy} ms) = {d}, G = {g}, HZ = {hz}{}",
                    self.interval_ms,
                    if lower == 0 {
                        "; the slave is not first in enslave order, so an earlier slave's request \
                         may reach it before its own inspection"
                    } else {
                        ""
                    }
                ),
                source: SOURCE,
            },
        }
    }

    /// The kernel log's words for a commit: active-backup logs "link status definitely
    /// down/up"; the load-balancing monitor "interface is now down/up".
    pub fn logged(&self, up: bool) -> &'static str {
        match (self.mode == Mode::ActiveBackup, up) {
            (true, false) => "link status definitely down",
            (true, true) => "link status definitely up",
            (false, false) => "interface is now down",
            (false, true) => "interface is now up",
        }
    }

    /// How long the monitor needs, after the bond opens and after each change of the active
    /// slave, before every backup is judged by what it receives: Some(ms) where backups are
    /// validated (arp_validate backup, all, filter_backup in active-backup), None elsewhere.
    ///
    /// A validated backup counts the active slave's request flooded to it only once the
    /// active slave has received since it was made active (bond_arp_rcv, case (b):
    /// time_after(last_rx(active), active->last_link_up)). The new active slave's first
    /// reply comes at the tick after the change (at the change's own tick it arrives within
    /// the same jiffy: not after), its next request is counted by the backups at the tick
    /// after that: two ticks, 2·(δ+G) jiffies. A slave cut or restored sooner is judged by
    /// other rules: a backup whose last counted receipt is from before the change goes down
    /// with the active slave (no failover), and a restored one is not counted until then. The
    /// trials wait this long (no event shows it) so that each cut and restore meets the
    /// steady bond the windows describe. With HZ unknown: three intervals, more than two
    /// ticks at any HZ.
    pub fn settle_ms(&self, hz: Option<u32>) -> Option<f64> {
        let validated = matches!(self.validate, "backup" | "all" | "filter_backup");
        (self.mode == Mode::ActiveBackup && validated).then(|| match hz.filter(|hz| *hz > 0) {
            Some(hz) => {
                let d = self.delta(hz);
                (2 * (d + timer_granularity(d))) as f64 * 1000.0 / f64::from(hz)
            }
            None => 3.0 * self.interval_ms as f64,
        })
    }

    /// The least kernel time `trials` blocks and unblocks of `slave` take, each made right
    /// after the tick of the commit before it (or, with validated backups, right after the
    /// settle that follows that commit, which ends at a tick too), T the least tick
    /// ([`Self::tick_ms`]):
    ///
    /// - a block follows a tick whose request was answered within the jiffy (long before
    ///   user space can act on the commit), so the slave last received at that tick and is
    ///   committed down at the n-th tick after it, n·T > M·δ + ⌊δ/2⌋ (the down window's
    ///   rule, with m = missed_max: a backup's one more is not counted); the first block
    ///   follows no commit and may fall just before a tick: one tick less;
    /// - an unblock right after the down commit's tick is first seen by the next tick's
    ///   requests and committed at the tick after: 2·T; in the load-balancing modes a slave
    ///   after the first in enslave order may take an earlier slave's request before its own
    ///   inspection at that next tick: 1·T;
    /// - the settle before every block and unblock but the first (see [`Self::settle_ms`]).
    pub fn inherent_ms(&self, trials: usize, slave: &str, hz: Option<u32>) -> f64 {
        if trials == 0 {
            return 0.0;
        }
        let t = self.tick_ms(hz);
        let ticks = self.down_ticks(hz) + self.up_ticks(slave);
        let settle = self.settle_ms(hz).unwrap_or(0.0);
        let n = trials as f64;
        n * ticks as f64 * t - t + (2.0 * n - 1.0) * settle
    }

    /// The ticks from an unblock right after a tick to the UP commit (see
    /// [`Self::inherent_ms`]).
    pub fn up_ticks(&self, slave: &str) -> u64 {
        let first = self.slaves.first().is_some_and(|s| s == slave);
        if self.mode == Mode::ActiveBackup || first {
            2
        } else {
            1
        }
    }

    /// The ticks from a block right after an answered tick to the DOWN commit, at `hz`
    /// (see [`Self::inherent_ms`]), ticks of the least length δ + 1 jiffies.
    pub fn down_ticks(&self, hz: Option<u32>) -> u64 {
        match hz.filter(|hz| *hz > 0) {
            Some(hz) => {
                let d = self.delta(hz);
                (self.missed_max * d + d / 2) / (d + 1) + 1
            }
            None => self.missed_max + 1,
        }
    }

    /// The monitor's least tick in ms at `hz`, δ + 1 jiffy ([`crate::model::least_tick_ms`];
    /// the interval itself where HZ is unknown).
    pub fn tick_ms(&self, hz: Option<u32>) -> f64 {
        match hz.filter(|hz| *hz > 0) {
            Some(hz) => crate::model::least_tick_ms(self.delta(hz), hz),
            None => self.interval_ms as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(mode: Mode, missed_max: u64) -> ArpMonitor {
        ArpMonitor {
            mode,
            interval_ms: 100,
            missed_max,
            validate: "none",
            all_targets: "any",
            targets: vec![Ipv4Addr::new(192, 0, 2, 1)],
            slaves: vec!["eth0".into(), "eth1".into()],
        }
    }

    fn bounds(w: &Window) -> (f64, f64) {
        (w.lower_ms, w.upper_ms)
    }

    #[test]
    fn at_hz_100_the_active_goes_down_in_3_ticks_and_a_backup_in_4() {
        let ab = monitor(Mode::ActiveBackup, 2);
        // δ = 10, threshold 25 jiffies: n = 3 whether T is 10 or 11.
        assert_eq!(
            bounds(&ab.down_window(100, &[Role::Active])),
            (200.0, 330.0)
        );
        // A backup: threshold 35, n = 4.
        assert_eq!(
            bounds(&ab.down_window(100, &[Role::Backup])),
            (300.0, 440.0)
        );
        assert_eq!(
            bounds(&ab.down_window(100, &[Role::Active, Role::Backup])),
            (200.0, 440.0)
        );
        assert_eq!(bounds(&ab.up_window(100, "eth1")), (100.0, 220.0));
        // missed_max 1: threshold 15, n = 2, but the grace after being made active (25
        // jiffies) can hold it to the third tick.
        assert_eq!(
            bounds(&monitor(Mode::ActiveBackup, 1).down_window(100, &[Role::Active])),
            (100.0, 330.0)
        );
        // missed_max 5 at HZ=1000: δ = 100 (granularity 8), threshold 550.
        let slow = monitor(Mode::ActiveBackup, 5);
        let w = slow.down_window(1000, &[Role::Active]);
        assert_eq!(bounds(&w), (500.0, 648.0));
    }

    #[test]
    fn load_balancing_slaves_go_down_like_the_active_and_later_ones_may_come_up_sooner() {
        let xor = monitor(Mode::BalanceXor, 2);
        assert_eq!(
            xor.roles("eth0", &[None, None]),
            [Role::Balancing, Role::Balancing]
        );
        assert_eq!(
            bounds(&xor.down_window(100, &[Role::Balancing])),
            (200.0, 330.0)
        );
        assert_eq!(bounds(&xor.up_window(100, "eth0")), (100.0, 220.0));
        assert_eq!(bounds(&xor.up_window(100, "eth1")), (0.0, 220.0));
        assert_eq!(xor.logged(false), "interface is now down");
    }

    #[test]
    fn backups_validated_from_the_active_slaves_requests_need_two_ticks_after_a_change() {
        let with = |mode, validate| ArpMonitor {
            validate,
            ..monitor(mode, 2)
        };
        for validate in ["backup", "all", "filter_backup"] {
            let ab = with(Mode::ActiveBackup, validate);
            // δ = 10 jiffies, G = 1: two ticks of at most 11 jiffies.
            assert_eq!(ab.settle_ms(Some(100)), Some(220.0), "{validate}");
            assert_eq!(ab.settle_ms(None), Some(300.0), "{validate}");
            // Three ticks of 11 jiffies down and two up a trial, a tick less for the first
            // cut, and a settle before every cut and restore but the first.
            assert_eq!(
                ab.inherent_ms(5, "eth0", Some(100)),
                5.0 * 550.0 - 110.0 + 9.0 * 220.0
            );
        }
        for validate in ["none", "active", "filter", "filter_active"] {
            let ab = with(Mode::ActiveBackup, validate);
            assert_eq!(ab.settle_ms(Some(100)), None, "{validate}");
            assert_eq!(ab.inherent_ms(5, "eth1", Some(100)), 5.0 * 550.0 - 110.0);
            assert_eq!(ab.inherent_ms(5, "eth1", None), 5.0 * 500.0 - 100.0);
            assert_eq!(ab.inherent_ms(0, "eth1", Some(100)), 0.0);
        }
        // A load-balancing slave after the first may come up a tick sooner.
        let xor = with(Mode::BalanceXor, "none");
        assert_eq!(xor.inherent_ms(5, "eth0", Some(100)), 5.0 * 550.0 - 110.0);
        assert_eq!(xor.inherent_ms(5, "eth1", Some(100)), 5.0 * 440.0 - 110.0);
        // missed_max 5 over δ = 10 jiffies: 5·10 + 5 = 55 is not past 5 ticks of 11: six.
        assert_eq!(with(Mode::BalanceXor, "none").down_ticks(Some(100)), 3);
        assert_eq!(
            ArpMonitor {
                missed_max: 5,
                ..xor
            }
            .down_ticks(Some(100)),
            6
        );
        // In the load-balancing modes every slave is active and validates the replies.
        assert_eq!(with(Mode::BalanceXor, "all").settle_ms(Some(100)), None);
    }

    #[test]
    fn roles_follow_the_active_slave() {
        let ab = monitor(Mode::ActiveBackup, 2);
        let active = |s: &str| Some(s.to_string());
        assert_eq!(
            ab.roles("eth0", &[active("eth0"), active("eth1"), None]),
            [Role::Active, Role::Backup, Role::Backup]
        );
    }
}
