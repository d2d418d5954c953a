//! What the kernel should make of a spec, derived from the bonding driver's documented rules.
//!
//! The model runs ifenslave's plan for the spec (`ifenslave.rs`) through a model of the driver's
//! option rules (`driver.rs`) and reads off what the kernel should answer to each write and
//! report afterwards. It is the single source of every expectation a check compares with the
//! kernel; each expected value carries the rule that produced it and where that rule is written.

use std::time::Duration;

use crate::arpmon::ArpMonitor;
use crate::driver::{self, Driver};
use crate::ifenslave::{self, Applier, Step};
use crate::options;
use crate::spec::{Finding, Mode, Spec};

/// A value as a check compares it: expected by the model or observed in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Value {
    /// A numeric option or count.
    Number(u64),
    /// A word of the kernel's value tables, a name, an address, or a summary in words.
    Text(String),
    /// The kernel has no such setting (e.g. no primary slave).
    None,
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(s) => f.write_str(s),
            Value::None => f.write_str("none"),
        }
    }
}

/// Why a value is expected: the rule in words and the place it is documented.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Rule {
    /// The rule in words, with the numbers it was applied to.
    pub text: String,
    /// Where the rule is written: a kernel source file (and functions) or a document.
    pub source: &'static str,
}

/// What the kernel should report for one check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Expectation {
    /// The check's id, e.g. `option.updelay` or `slave.enp1s0.mii_status`.
    pub check: String,
    /// What the spec asked for, as written, if it set this at all.
    pub requested: Option<String>,
    pub expected: Value,
    pub unit: Option<&'static str>,
    pub rule: Rule,
}

/// One step of the plan and the kernel's predicted (or observed) answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Answer {
    /// The step of ifenslave's plan, e.g. `set miimon 100` or `enslave enp1s0`.
    pub step: String,
    /// The errno name if the kernel refuses the step.
    pub refused: Option<String>,
}

/// The model's prediction for one spec.
#[derive(Debug, Clone)]
pub struct Model {
    pub expectations: Vec<Expectation>,
    /// Active-backup with an IPv4 address and MII monitoring: the GARPs after a failover.
    pub peer_notify: Option<PeerNotify>,
    /// The kernel's answer to every step of the plan, in order.
    pub answers: Vec<Answer>,
    /// Things the admin should know before anything runs (rounding, refusals, overrides).
    pub warnings: Vec<Finding>,
    /// The link monitor the bond ends up with, for timing windows.
    pub monitor: Monitor,
    /// How the active slave is chosen, in modes that have one.
    pub selection: Option<Selection>,
    /// How the bond picks the slave for each frame it sends.
    pub transmit: Transmit,
    /// The ARP monitor, where the bond ends up with one.
    pub arp: Option<ArpMonitor>,
    /// Which MAC address the bond and its slaves have, where the model can judge it
    /// (active-backup; see `fail_over_mac.rs`).
    pub fail_over_mac: Option<crate::fail_over_mac::Rules>,
}

/// The settings the driver's transmit path reads (bond_start_xmit and the per-mode functions
/// it calls), as the model expects the kernel to end up with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub mode: Mode,
    /// In enslave order.
    pub slaves: Vec<String>,
    pub packets_per_slave: u64,
    /// xmit_hash_policy, as the kernel's word.
    pub hash_policy: &'static str,
    pub tlb_dynamic_lb: bool,
    /// 802.3ad: the bond has carrier only with at least this many active ports.
    pub min_links: u64,
}

/// Active slave selection (bond_main.c `bond_choose_primary_or_current`, Linux 6.0+ with
/// slave priorities) for active-backup, balance-tlb and balance-alb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// In enslave order, with each slave's prio.
    pub slaves: Vec<(String, i64)>,
    pub primary: Option<String>,
    /// always, better or failure.
    pub reselect: &'static str,
}

/// Gratuitous ARPs an active-backup bond sends when its active slave changes
/// (`bond_change_active_slave`, `bond_should_notify_peers`): `count` notifications (num_grat_arp),
/// the first at once, then one every `every_ticks` monitor ticks (peer_notif_delay in ticks, at
/// least 1); each is an ARP of the bond's IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerNotify {
    pub count: u64,
    pub every_ticks: u64,
}

impl PeerNotify {
    /// The monitor ticks after the commit at which the notifications go out, as the contract
    /// has it: 0, every, 2·every, ... (`count` of them).
    pub fn schedule(&self) -> Vec<u64> {
        (0..self.count).map(|i| i * self.every_ticks).collect()
    }
}

/// The ids of the selection checks, for timing cases in modes with an active slave.
pub const FAILOVER: [&str; 2] = ["failover.after_cut", "failover.after_restore"];

impl Selection {
    fn index(&self, name: &str) -> Option<usize> {
        self.slaves.iter().position(|(n, _)| n == name)
    }

    /// The active slave the driver chooses from the slaves that are `up`, given the current one.
    fn choose(&self, up: &[bool], curr: Option<usize>, force_primary: bool) -> Option<usize> {
        let curr_up = curr.is_some_and(|c| up[c]);
        let prim = self.primary.as_deref().and_then(|p| self.index(p));
        let chosen = match prim.filter(|p| up[*p]) {
            Some(p) if force_primary => return Some(p),
            Some(p) => p,
            None => {
                // No usable primary: the first slave up with the highest prio.
                let mut best: Option<usize> = None;
                for (i, (_, prio)) in self.slaves.iter().enumerate() {
                    if up[i] && best.is_none_or(|b| *prio > self.slaves[b].1) {
                        best = Some(i);
                    }
                }
                match best {
                    Some(b) if Some(b) != curr => b,
                    _ => return curr.filter(|_| curr_up),
                }
            }
        };
        if !curr_up {
            return Some(chosen);
        }
        // Both up: primary_reselect decides. veth slaves all report 10000 Mb/s full duplex,
        // so `better` never finds the candidate better than the current slave.
        match self.reselect {
            "always" => Some(chosen),
            _ => curr,
        }
    }

    /// The active slave once the bond is up and the `down` slaves have been committed down
    /// one after the other (indices in enslave order).
    pub fn active_with_down(&self, down: &[usize]) -> Option<usize> {
        let mut up = vec![true; self.slaves.len()];
        let mut curr = self.choose(&up, None, true);
        for &d in down {
            up[d] = false;
            if curr == Some(d) {
                curr = self.choose(&up, curr, false);
            }
        }
        curr
    }

    /// The active slave after each cut of `slave` and after each restore, over `trials` trials,
    /// starting from every slave up.
    pub fn expected(
        &self,
        slave: &str,
        trials: usize,
    ) -> (Vec<Option<String>>, Vec<Option<String>>) {
        self.replay(&vec![slave; trials])
    }

    /// The active slave after each cut and restore of the slaves `cuts`, one after the other,
    /// starting from every slave up. A committed DOWN of the active slave, or a committed UP of
    /// the primary, of a slave with a higher prio than the active one, or with no active slave,
    /// makes the driver choose again (bond_miimon_commit).
    pub fn replay(&self, cuts: &[&str]) -> (Vec<Option<String>>, Vec<Option<String>>) {
        let mut up = vec![true; self.slaves.len()];
        let mut curr = self.choose(&up, None, true);
        let name = |i: Option<usize>| i.map(|i| self.slaves[i].0.clone());
        let (mut after_cut, mut after_restore) = (Vec::new(), Vec::new());
        for slave in cuts {
            let Some(cut) = self.index(slave) else {
                return (Vec::new(), Vec::new());
            };
            up[cut] = false;
            if curr == Some(cut) {
                curr = self.choose(&up, curr, false);
            }
            after_cut.push(name(curr));
            up[cut] = true;
            let is_primary = self.primary.as_deref() == Some(*slave);
            let higher = curr.is_some_and(|c| self.slaves[cut].1 > self.slaves[c].1);
            if curr.is_none() || is_primary || higher {
                curr = self.choose(&up, curr, false);
            }
            after_restore.push(name(curr));
        }
        (after_cut, after_restore)
    }

    /// The active slave once every slave is up again after `cuts`.
    pub fn active_after(&self, cuts: &[&str]) -> Option<String> {
        match cuts {
            [] => self
                .choose(&vec![true; self.slaves.len()], None, true)
                .map(|i| self.slaves[i].0.clone()),
            _ => self.replay(cuts).1.pop().flatten(),
        }
    }
}

/// The MII link monitor's effective settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Monitor {
    pub mode: Mode,
    pub miimon_ms: u64,
    /// ARP monitoring instead: slave states then depend on replies from the ARP targets.
    pub arp_interval_ms: u64,
    pub down_ticks: u64,
    pub up_ticks: u64,
}

/// Where a committed link transition must land, counted from the carrier change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Window {
    /// Exclusive: the driver cannot commit earlier.
    pub lower_ms: f64,
    /// Inclusive, before the backend's tolerance for scheduling noise.
    pub upper_ms: f64,
    pub rule: Rule,
}

/// The least time between two runs of a delayed work that re-arms itself `jiffies` ahead (a
/// link monitor's tick, the 802.3ad state machine's), in ms at `hz`: a timer fires no sooner
/// than the jiffy after its expiry (kernel/time/timer.c, calc_index: the first level's bucket
/// is expires + 1, the outer levels round up further), and the work re-arms from the jiffy it
/// runs in, so a tick lasts at least δ + 1 jiffies. The inherent times count ticks at this
/// length.
pub fn least_tick_ms(jiffies: u64, hz: u32) -> f64 {
    (jiffies + 1) as f64 * 1000.0 / f64::from(hz)
}

/// The timer wheel's granularity, in jiffies, for a timer armed `period` jiffies ahead
/// (kernel/time/timer.c, calc_index): 1 jiffy below 63, then 8, then 64.
pub fn timer_granularity(period: u64) -> u64 {
    if period < 63 {
        1
    } else if period < 504 {
        8
    } else {
        64
    }
}

const TIMING_SOURCE: &str = "drivers/net/bonding/bond_main.c (bond_miimon_inspect, bond_miimon_commit); kernel/time/timer.c (calc_index)";

impl Monitor {
    /// P: the monitor's period in whole jiffies, ceil(miimon / jiffy) (the work re-arms with
    /// msecs_to_jiffies(miimon)).
    fn period_jiffies(&self, hz: u32) -> f64 {
        (self.miimon_ms * u64::from(hz)).div_ceil(1000) as f64
    }

    /// T: the monitor's least tick in ms at `hz`, P + 1 jiffy ([`least_tick_ms`]); without
    /// HZ, miimon itself, which no HZ makes longer.
    fn least_tick_ms(&self, hz: Option<u32>) -> f64 {
        match hz.filter(|hz| *hz > 0) {
            Some(hz) => least_tick_ms(self.period_jiffies(hz) as u64, hz),
            None => self.miimon_ms as f64,
        }
    }

    /// Whether the driver skips updelay for a slave coming back: in active-backup when there is
    /// no active slave, in the other modes when no slave is usable, never in balance-rr (its
    /// usable-slave array is never built). bondcheck only cuts a slave while another stays up.
    pub fn skips_updelay(&self, others_up: bool) -> bool {
        !others_up && self.mode != Mode::BalanceRr
    }

    /// One monitor tick at `hz`, in jiffies: P = ceil(miimon / jiffy) and the timer wheel's
    /// granularity G for it (timer.c: 1 jiffy below 63, then 8, then 64), a tick lasting
    /// (P, P+G]. None without MII monitoring or HZ.
    fn tick_jiffies(&self, hz: u32) -> Option<(f64, f64)> {
        if self.miimon_ms == 0 || hz == 0 {
            return None;
        }
        let period = self.period_jiffies(hz);
        Some((period, timer_granularity(period as u64) as f64))
    }

    /// One monitor tick at `hz` in ms: more than P, at most P+G (see `tick_jiffies`).
    pub fn tick_ms(&self, hz: u32) -> Option<(f64, f64)> {
        let (p, g) = self.tick_jiffies(hz)?;
        let jiffy = 1000.0 / f64::from(hz);
        Some((p * jiffy, (p + g) * jiffy))
    }

    /// The windows for a slave losing carrier (committed down) and getting it back (committed
    /// up), at `hz`: (D·P, (D+1)·(P+G)] and (U·P, (U+1)·(P+G)], P = ceil(miimon / jiffy) and G
    /// the timer wheel's granularity for P. None without MII monitoring.
    pub fn windows(&self, hz: u32, others_up: bool) -> Option<(Window, Window)> {
        let (period, granularity) = self.tick_jiffies(hz)?;
        let jiffy = 1000.0 / f64::from(hz);
        let up_ticks = if self.skips_updelay(others_up) {
            0
        } else {
            self.up_ticks
        };
        let window = |ticks: u64, what: &str| {
            let t = ticks as f64;
            Window {
                lower_ms: t * period * jiffy,
                upper_ms: (t + 1.0) * (period + granularity) * jiffy,
                rule: Rule {
                    text: format!(
                        "{what}: ({ticks}·P, ({ticks}+1)·(P+G)] with P = ceil({} ms / {jiffy} ms) = {period} jiffies, \
                         G = {granularity} jiffy, HZ = {hz}",
                        self.miimon_ms
                    ),
                    source: TIMING_SOURCE,
                },
            }
        };
        let up_what = if up_ticks == self.up_ticks {
            "updelay ticks"
        } else {
            "updelay skipped"
        };
        Some((
            window(self.down_ticks, "downdelay ticks"),
            window(up_ticks, up_what),
        ))
    }
}

/// A stretch of kernel time a case cannot avoid, however fast the harness is: the driver's own
/// delays, monitor ticks and 802.3ad timers that stand between the case's start and its last
/// observation. Lower bounds, derived from the spec, never from measurements.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Wait {
    /// What waits: `settle`, `lacp`, `traffic.cut` or `timing`.
    pub term: &'static str,
    /// How long, at least.
    pub ms: f64,
    /// Why.
    pub rule: Rule,
}

/// What a case asks of the kernel beyond bringing its bond up: the inputs of its waits that
/// are not in the spec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Demands<'a> {
    /// Cut-and-restore trials of the timing phase (0 without one).
    pub trials: usize,
    /// The slave the timing phase cuts and restores.
    pub timing_slave: &'a str,
    /// Slaves are cut before the traffic, and must be committed down first.
    pub cuts: bool,
    /// The bond aggregates with an LACP partner, which is waited for.
    pub lacp_partner: bool,
    /// Cuts and restores of the min_links phase (min_links::plan; 0 without one).
    pub min_links_steps: usize,
}

/// The sum of `waits`: the least kernel time the case takes.
pub fn inherent_ms(waits: &[Wait]) -> f64 {
    // A fold from +0: an empty f64 sum is -0.
    waits.iter().fold(0.0, |sum, w| sum + w.ms)
}

const BOND_3AD_C: &str = "drivers/net/bonding/bond_3ad.c";

/// The check that compares the kernel's two views (netlink and /proc) of the same bond. It has
/// no model expectation: the views must agree with each other.
pub const VIEWS_AGREE: &str = "views.agree";
/// The check that compares the kernel's answer to every step with the model's.
pub const ANSWERS: &str = "apply.answers";
/// The check that compares where each frame went with where the model puts it.
pub const DISTRIBUTION: &str = "traffic.distribution";

const BOND_MAIN_C: &str = "drivers/net/bonding/bond_main.c";

impl Model {
    /// The active-slave selection the timing trials are judged against (the `failover.after_*`
    /// checks). None under ARP monitoring: there the backups hear mostly the active slave's
    /// requests, which stop with it, so whether a backup is still up at the active's DOWN
    /// commit is decided within a tick, which the model does not predict (seen in UML: no
    /// active slave after a cut, now and then).
    pub fn judged_selection(&self) -> Option<&Selection> {
        self.selection.as_ref().filter(|_| self.arp.is_none())
    }

    /// How long after the bond comes up every slave with carrier should be committed up: the
    /// updelay window's upper bound at the kernel's HZ (HZ=100, the largest common jiffy and so
    /// the longest window, where HZ is unknown); under ARP monitoring the ARP monitor's up
    /// window. Zero without a link monitor.
    pub fn settle(&self, hz: Option<u32>) -> Duration {
        let hz = hz.unwrap_or(100);
        if let Some(arp) = &self.arp {
            let first = arp.slaves.first().map_or("", String::as_str);
            return Duration::from_secs_f64(arp.up_window(hz, first).upper_ms / 1e3);
        }
        match self.monitor.windows(hz, true) {
            Some((_, up)) => Duration::from_secs_f64(up.upper_ms / 1e3),
            None => Duration::ZERO,
        }
    }

    /// The kernel time a case with `demands` cannot avoid, term by term (terms of zero are
    /// left out). T is the monitor's least tick at `hz` (P + 1 jiffy, [`least_tick_ms`];
    /// miimon where HZ is unknown), D and U the delays in ticks.
    pub fn inherent(&self, hz: Option<u32>, demands: Demands<'_>) -> Vec<Wait> {
        let m = &self.monitor;
        let p = m.least_tick_ms(hz);
        let (d, u) = (m.down_ticks as f64, m.up_ticks as f64);
        let mut waits = Vec::new();
        let mut add = |term, ms: f64, text: String, source| {
            if ms > 0.0 {
                waits.push(Wait {
                    term,
                    ms,
                    rule: Rule { text, source },
                });
            }
        };
        let up = Value::Text("up".into());
        let coming_up = self
            .expectations
            .iter()
            .filter(|e| e.check.starts_with("slave.") && e.check.ends_with(".mii_status"))
            .filter(|e| e.expected == up)
            .count();
        // Only the first slave committed while no slave is usable skips updelay, and none in
        // balance-rr (see skips_updelay).
        let skipping = usize::from(m.mode != Mode::BalanceRr);
        if m.miimon_ms > 0 && coming_up > skipping {
            add(
                "settle",
                u * p,
                format!(
                    "U·T = {u}·{p} ms: a slave enslaved with carrier waits updelay ticks before it \
                     is committed up; only the first one, while no slave is usable, skips them \
                     (never in balance-rr)"
                ),
                BOND_MAIN_C,
            );
        }
        if demands.lacp_partner {
            let (ticks, tick) = crate::lacp::aggregate_wait(hz);
            add(
                "lacp",
                ticks as f64 * tick,
                format!(
                    "{ticks}·{tick} ms: the state machines run at the bond's open with the ports \
                     held detached (BEGIN), start the wait-while timer at the next tick and \
                     attach the ports AD_AGGREGATE_WAIT_TIME (2 s, 20 ticks) later: {ticks} \
                     state machine ticks of at least {tick} ms before a port can say it is in \
                     sync, and only then can either side collect and distribute"
                ),
                BOND_3AD_C,
            );
        }
        if demands.min_links_steps > 1 && m.miimon_ms > 0 {
            let n = demands.min_links_steps;
            add(
                "min_links",
                (n - 1) as f64 * p,
                format!(
                    "(S−1)·T = ({n}−1)·{p} ms: each of the S cuts and restores but the first \
                     follows the commit of the one before, made at a tick, and is seen at the \
                     next; the re-aggregation a restore sets off is not predicted, so not \
                     counted"
                ),
                BOND_MAIN_C,
            );
        }
        if demands.cuts && m.miimon_ms > 0 {
            add(
                "traffic.cut",
                d * p,
                format!(
                    "D·T = {d}·{p} ms: a cut slave is committed down downdelay ticks after the \
                     first monitor tick that sees it without carrier"
                ),
                BOND_MAIN_C,
            );
        }
        if let Some(arp) = self.arp.as_ref().filter(|_| demands.trials > 0) {
            let (n, p) = (demands.trials, arp.tick_ms(hz));
            let (dn, up) = (arp.down_ticks(hz), arp.up_ticks(demands.timing_slave));
            let settle = arp.settle_ms(hz).map_or(String::new(), |s| {
                format!(
                    "; each cut and restore but the first also waits the {s} ms after a change \
                     of the active slave that the backups need before they are validated \
                     again: + (2·N−1)·{s} ms"
                )
            });
            add(
                "timing",
                arp.inherent_ms(n, demands.timing_slave, hz),
                format!(
                    "N·(n+u)·T − T = {n}·({dn}+{up})·{p} − {p} ms (T = δ + 1 jiffy, the least \
                     tick): every cut follows a tick whose request was answered within the \
                     jiffy, and the silenced slave is committed down at the n-th tick after it, \
                     n·T > arp_missed_max·δ + ⌊δ/2⌋ (the first cut follows no commit: a tick \
                     less); every restore follows the DOWN commit's tick, the next tick's \
                     requests reach the slave and the tick after commits it up: u = 2 (1 for a \
                     load-balancing slave after the first, which an earlier slave's request may \
                     reach before its own inspection){settle}"
                ),
                BOND_MAIN_C,
            );
        }
        if demands.trials > 0 && m.miimon_ms > 0 {
            let u = if m.skips_updelay(self.transmit.slaves.len() > 1) {
                0.0
            } else {
                u
            };
            let n = demands.trials as f64;
            add(
                "timing",
                n * (d + u + 2.0) * p - p,
                format!(
                    "N·(D+U+2)·T − T = {n}·({d}+{u}+2)·{p} − {p} ms: each carrier change is seen \
                     at the first monitor tick after it and committed D (U) ticks later; every \
                     cut and restore follows the previous commit, itself made at a tick, so it \
                     waits a whole tick to be seen, all but the first cut"
                ),
                BOND_MAIN_C,
            );
            if m.down_ticks > 0 {
                add(
                    "timing.flap",
                    2.0 * p,
                    format!(
                        "2·T = 2·{p} ms: a flap's cut is seen at the next tick (going down), and \
                         the carrier given back then is seen a tick later (up)"
                    ),
                    BOND_MAIN_C,
                );
            }
            add(
                "failover",
                (d + u + 2.0) * p,
                format!(
                    "(D+U+2)·T = ({d}+{u}+2)·{p} ms: one more cut and restore, with traffic \
                     flowing, each seen at the tick after it and committed D (U) ticks later"
                ),
                BOND_MAIN_C,
            );
        }
        waits
    }

    /// Every check id for this spec, in report order.
    pub fn check_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.expectations.iter().map(|e| e.check.clone()).collect();
        ids.push(ANSWERS.to_string());
        ids.push(VIEWS_AGREE.to_string());
        // Under ARP monitoring the usable slaves depend on the targets' replies, which the
        // model does not predict outside the timing trials.
        if self.arp.is_none() {
            ids.push(DISTRIBUTION.to_string());
        }
        ids.push(crate::checks::KERNEL_LOG.to_string());
        ids
    }
}

/// The label both the model and the applier give the answer to a step, so the two lists can
/// be compared line by line.
pub fn step_label(step: &Step, primary: Option<&str>) -> String {
    match (step, primary) {
        (Step::Primary(_), Some(p)) => format!("set primary {p}"),
        _ => step.to_string(),
    }
}

/// Predicts the kernel's behaviour for `spec` brought up by `applier`.
pub fn predict(spec: &Spec, applier: Applier) -> Model {
    let bond = &spec.bond;
    let mut warnings = spec.notes.clone();
    if applier == Applier::Ifupdown {
        for o in bond
            .options
            .iter()
            .filter(|o| o.opt.origin == options::Origin::Extension)
        {
            warnings.push(Finding {
                at: o.at.clone(),
                message: format!(
                    "{} is not applied by ifenslave: the kernel keeps its default",
                    o.opt.key
                ),
            });
        }
    }
    let mut driver = Driver::new(applier);
    let mut answers = Vec::new();
    // Options with a refused write: the refusal warning already says why they differ.
    let mut refused: Vec<&str> = Vec::new();
    for step in ifenslave::plan(bond, applier) {
        // ifenslave writes no primary when no candidate is enslaved; the applier does the same.
        let primary = match &step {
            Step::Primary(c) => match driver.primary_name(c) {
                Some(p) => Some(p),
                None => {
                    if let Some(o) = bond.option("primary") {
                        warnings.push(Finding {
                            at: o.at.clone(),
                            message: "no bond-primary entry is one of the bond's slaves: no primary is set".into(),
                        });
                    }
                    continue;
                }
            },
            _ => None,
        };
        let outcome = driver.apply(&step);
        if let Err(r) = &outcome {
            let name = match &step {
                Step::Set { opt, .. } => Some(opt.name),
                Step::Primary(_) => Some("primary"),
                _ => None,
            };
            if let Some(o) = name.and_then(|n| bond.option(n)) {
                refused.push(o.opt.name);
                warnings.push(Finding {
                    at: o.at.clone(),
                    message: format!(
                        "{} {}: the kernel refuses it ({}): {}",
                        o.opt.key, o.raw, r.errno, r.why
                    ),
                });
            }
        }
        answers.push(Answer {
            step: step_label(&step, primary.as_deref()),
            refused: outcome.err().map(|r| r.errno.to_string()),
        });
    }

    let mut out = Vec::new();
    for (param, expected, rule) in driver.reported() {
        let written: Vec<_> = bond
            .options
            .iter()
            .filter(|o| driver::param(o.opt) == param)
            .collect();
        let requested = (!written.is_empty()).then(|| {
            written
                .iter()
                .map(|o| o.raw.clone())
                .collect::<Vec<_>>()
                .join(" / ")
        });
        if !written.iter().any(|o| refused.contains(&o.opt.name)) {
            note_rounding_and_overrides(&written, &expected, &rule, &mut warnings);
        }
        let unit = match options::by_name(param).map(|o| o.kind) {
            Some(options::Kind::Delay { .. }) => Some("ms"),
            _ if matches!(param, "miimon" | "arp_interval") => Some("ms"),
            _ if param == "lp_interval" => Some("s"),
            _ => None,
        };
        out.push(Expectation {
            check: format!("option.{param}"),
            requested,
            expected,
            unit,
            rule,
        });
    }

    let miimon = driver.miimon();
    let arp = driver.arp_interval();
    if miimon == 0 && arp == 0 {
        warnings.push(Finding {
            at: bond.at.clone(),
            message: "no link monitoring (neither miimon nor arp_interval ends up set): a dead slave keeps \
                      getting traffic"
                .into(),
        });
    }
    match driver.mode() {
        Mode::BalanceRr | Mode::BalanceXor | Mode::Broadcast => warnings.push(Finding {
            at: bond.at.clone(),
            message: format!(
                "{} needs the switch ports configured as a static aggregate (EtherChannel \"mode on\")",
                driver.mode()
            ),
        }),
        Mode::Ieee8023ad => warnings.push(Finding {
            at: bond.at.clone(),
            message: "802.3ad needs the switch ports configured for LACP".into(),
        }),
        _ => {}
    }
    for slave in &bond.slaves {
        let name = &slave.value;
        if arp == 0 {
            let text = if miimon == 0 {
                "without link monitoring bond_enslave marks every slave up"
            } else {
                "a slave with carrier is up once updelay has passed (bond_enslave, bond_miimon_inspect)"
            };
            out.push(Expectation {
                check: format!("slave.{name}.mii_status"),
                requested: None,
                expected: Value::Text("up".into()),
                unit: None,
                rule: Rule {
                    text: text.into(),
                    source: BOND_MAIN_C,
                },
            });
        }
        for (param, text) in [
            (
                "queue_id",
                "queue ids are set per slave with iface_queue_id; 0 unless a write was accepted",
            ),
            (
                "prio",
                "a slave's failover priority is 0 unless a write was accepted (an extension)",
            ),
        ] {
            let requested = bond.option(param).and_then(|o| match &o.value {
                crate::spec::OptValue::PerSlave(pairs) => pairs
                    .iter()
                    .find(|(s, _)| s == name)
                    .map(|(_, v)| v.to_string()),
                _ => None,
            });
            let value = driver.slave_value(param, name);
            out.push(Expectation {
                check: format!("slave.{name}.{param}"),
                requested,
                // prio is signed: compared as text so the shape is the same in every view.
                expected: if param == "prio" {
                    Value::Text(value.to_string())
                } else {
                    Value::Number(value as u64)
                },
                unit: None,
                rule: Rule {
                    text: text.into(),
                    source: driver::BOND_OPTIONS_C,
                },
            });
        }
    }
    if arp != 0 {
        warnings.push(Finding {
            at: bond.at.clone(),
            message: "ARP monitoring: slave states depend on replies from the ARP targets, which \
                      only the arp-target topology provides; no slave state is predicted"
                .into(),
        });
    }

    let address = bond
        .address
        .as_ref()
        .map_or(Value::None, |a| Value::Text(a.value.to_string()));
    let address_rule = match &bond.address {
        Some(_) => "ifupdown's static method adds address/netmask to the bond",
        None => "a manual stanza configures no address",
    };
    out.push(Expectation {
        check: "address".into(),
        requested: bond.address.as_ref().map(|a| a.value.to_string()),
        expected: address,
        unit: None,
        rule: Rule {
            text: address_rule.into(),
            source: "interfaces(5): inet static",
        },
    });

    warnings.sort_by_key(|f| (f.at.line, f.at.column));
    warnings.dedup();
    let up_ticks = if miimon == 0 {
        0
    } else {
        driver.number("updelay")
    };
    let monitor = Monitor {
        mode: driver.mode(),
        miimon_ms: miimon,
        arp_interval_ms: arp,
        down_ticks: if miimon == 0 {
            0
        } else {
            driver.number("downdelay")
        },
        up_ticks,
    };
    let peer_notify = (driver.mode() == Mode::ActiveBackup && bond.address.is_some() && miimon > 0)
        .then(|| PeerNotify {
            count: driver.number("num_peer_notif"),
            every_ticks: driver.number("peer_notif_delay").max(1),
        });
    let selection = matches!(
        driver.mode(),
        Mode::ActiveBackup | Mode::BalanceTlb | Mode::BalanceAlb
    )
    .then(|| Selection {
        slaves: bond
            .slaves
            .iter()
            .map(|s| (s.value.clone(), driver.slave_value("prio", &s.value)))
            .collect(),
        primary: driver.primary().map(str::to_string),
        reselect: driver.reselect(),
    });
    let transmit = Transmit {
        mode: driver.mode(),
        slaves: bond.slaves.iter().map(|s| s.value.clone()).collect(),
        packets_per_slave: driver.number("packets_per_slave"),
        hash_policy: driver.word("xmit_hash_policy").unwrap_or("layer2"),
        tlb_dynamic_lb: driver.number("tlb_dynamic_lb") != 0,
        min_links: driver.number("min_links"),
    };
    let arp = (arp > 0).then(|| ArpMonitor {
        mode: driver.mode(),
        interval_ms: arp,
        missed_max: driver.number("arp_missed_max"),
        validate: driver.word("arp_validate").unwrap_or("none"),
        all_targets: driver.word("arp_all_targets").unwrap_or("any"),
        targets: driver.arp_targets().to_vec(),
        slaves: transmit.slaves.clone(),
    });
    let first_active = selection.as_ref().and_then(|s| s.active_after(&[]));
    let fail_over_mac = crate::fail_over_mac::Rules::new(
        driver.mode(),
        driver.word("fail_over_mac").unwrap_or("none"),
        &transmit.slaves,
        first_active.as_deref(),
    );
    Model {
        expectations: out,
        peer_notify,
        answers,
        warnings,
        monitor,
        selection,
        transmit,
        arp,
        fail_over_mac,
    }
}

/// Warns where the kernel will report something other than what an accepted write asked for:
/// a delay rounded down to a multiple of miimon, or a value a later write changed.
fn note_rounding_and_overrides(
    written: &[&crate::spec::BondOption],
    expected: &Value,
    rule: &Rule,
    warnings: &mut Vec<Finding>,
) {
    let Some(last) = written.last() else { return };
    let crate::spec::OptValue::Number(n) = last.value else {
        return;
    };
    let as_written = match last.opt.word(n) {
        Some(w) => Value::Text(w.into()),
        None => Value::Number(n),
    };
    if &as_written == expected {
        return;
    }
    // An accepted delay that reads back differently was stored in whole monitor ticks.
    let message = match last.opt.kind {
        options::Kind::Delay { .. } => format!(
            "{} {n} is not a multiple of miimon: the kernel rounds it down to {expected} ms",
            last.opt.key
        ),
        _ => format!(
            "{} {} ends up as {expected}: {}",
            last.opt.key, last.raw, rule.text
        ),
    };
    warnings.push(Finding {
        at: last.at.clone(),
        message,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn model(text: &str) -> Model {
        predict(
            &crate::spec::parse(Path::new("t"), text).unwrap(),
            Applier::Netlink,
        )
    }

    fn expected(m: &Model, check: &str) -> Value {
        m.expectations
            .iter()
            .find(|e| e.check == check)
            .unwrap_or_else(|| panic!("no {check}"))
            .expected
            .clone()
    }

    const HOWTO: &str = "iface bond0 inet static\n address 192.168.122.188\n netmask 255.255.255.0\n \
        bond-slaves enp1s0 enp7s0\n bond-mode balance-rr\n bond-miimon 100\n bond-downdelay 220\n \
        bond-updelay 220\n bond-primary enp1s0 enp7s0\n";

    fn warns(m: &Model) -> Vec<(usize, String)> {
        m.warnings
            .iter()
            .map(|w| (w.at.line, w.message.clone()))
            .collect()
    }

    fn terms(waits: &[Wait]) -> Vec<(&'static str, f64)> {
        waits.iter().map(|w| (w.term, w.ms)).collect()
    }

    #[test]
    fn inherent_time_follows_the_delays_ticks_and_trials() {
        let m = model(HOWTO);
        let all = Demands {
            trials: 5,
            cuts: true,
            ..Demands::default()
        };
        // balance-rr waits updelay for every slave; 2 + 2 ticks of 10 + 1 jiffies per trial,
        // plus the tick that sees each change, but the first.
        assert_eq!(
            terms(&m.inherent(Some(100), all)),
            [
                ("settle", 220.0),
                ("traffic.cut", 220.0),
                ("timing", 3190.0),
                ("timing.flap", 220.0),
                ("failover", 660.0)
            ]
        );
        // HZ=300: P = ceil(100 ms · 300 / 1000) = 30 jiffies, a tick at least 31.
        assert_eq!(
            terms(&m.inherent(Some(300), Demands::default())),
            [("settle", 2.0 * 31.0 * 1000.0 / 300.0)]
        );
        // Unknown HZ: ticks of miimon, which no HZ shortens.
        assert_eq!(
            terms(&m.inherent(None, Demands::default())),
            [("settle", 200.0)]
        );
        assert_eq!(inherent_ms(&m.inherent(Some(100), all)), 4510.0);
        assert!(inherent_ms(&[]).is_sign_positive());
    }

    #[test]
    fn one_slave_skips_updelay_outside_balance_rr_and_lacp_waits_its_aggregate() {
        let one = "iface bond0 inet manual\n    bond-slaves eth0\n    bond-mode active-backup\n    \
                   bond-miimon 100\n    bond-updelay 300\n";
        assert_eq!(
            terms(&model(one).inherent(Some(100), Demands::default())),
            []
        );
        let two = one.replace("eth0", "eth0 eth1");
        assert_eq!(
            terms(&model(&two).inherent(Some(100), Demands::default())),
            [("settle", 330.0)]
        );
        // 802.3ad forces miimon 100, without updelay.
        let ad = "iface bond0 inet manual\n    bond-slaves eth0 eth1\n    bond-mode 802.3ad\n";
        let partner = Demands {
            lacp_partner: true,
            ..Demands::default()
        };
        // 1 + 20 state machine ticks of at least 11 jiffies.
        assert_eq!(
            terms(&model(ad).inherent(Some(100), partner)),
            [("lacp", 2310.0)]
        );
        // min_links: four cuts and restores, all but the first a tick after a commit.
        let steps = Demands {
            min_links_steps: 4,
            ..partner
        };
        assert_eq!(
            terms(&model(ad).inherent(Some(100), steps)),
            [("lacp", 2310.0), ("min_links", 330.0)]
        );
    }

    #[test]
    fn howto_delays_round_down_to_a_multiple_of_miimon() {
        let m = model(HOWTO);
        assert_eq!(expected(&m, "option.updelay"), Value::Number(200));
        assert_eq!(expected(&m, "option.downdelay"), Value::Number(200));
        assert_eq!(
            expected(&m, "option.mode"),
            Value::Text("balance-rr".into())
        );
        assert_eq!(expected(&m, "option.miimon"), Value::Number(100));
        assert_eq!(
            expected(&m, "option.xmit_hash_policy"),
            Value::Text("layer2".into())
        );
        assert_eq!(
            expected(&m, "address"),
            Value::Text("192.168.122.188/24".into())
        );
        assert_eq!(
            expected(&m, "slave.enp7s0.mii_status"),
            Value::Text("up".into())
        );
        let w = warns(&m);
        assert!(
            w.iter()
                .any(|(l, w)| *l == 7 && w.contains("rounds it down to 200 ms")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|(l, w)| *l == 8 && w.contains("bond-updelay 220")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|(l, w)| *l == 9 && w.contains("refuses it (EACCES)")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|(_, w)| w.contains("static aggregate")),
            "{w:?}"
        );
    }

    #[test]
    fn answers_predict_the_refused_primary() {
        let m = model(HOWTO);
        let refused: Vec<_> = m.answers.iter().filter(|a| a.refused.is_some()).collect();
        assert_eq!(
            refused,
            [&Answer {
                step: "set primary enp1s0".into(),
                refused: Some("EACCES".into())
            }]
        );
        assert_eq!(expected(&m, "option.primary"), Value::None);
    }

    #[test]
    fn first_enslaved_primary_wins_in_active_backup() {
        let ab = HOWTO
            .replace("balance-rr", "active-backup")
            .replace("primary enp1s0", "primary eth9 enp7s0 enp1s0");
        assert_eq!(
            expected(&model(&ab), "option.primary"),
            Value::Text("enp7s0".into())
        );
    }

    #[test]
    fn mode_written_after_delays_makes_lacp_delays_fail_without_miimon() {
        // ifenslave writes updelay before mode: with no miimon yet, the kernel refuses it,
        // and only then does 802.3ad set miimon to 100.
        let m =
            model("iface b inet manual\n bond-slaves a\n bond-mode 802.3ad\n bond-updelay 300\n");
        assert_eq!(expected(&m, "option.miimon"), Value::Number(100));
        assert_eq!(expected(&m, "option.updelay"), Value::Number(0));
        assert!(
            m.answers
                .iter()
                .any(|a| a.step == "set updelay 300" && a.refused.as_deref() == Some("EPERM"))
        );
    }

    #[test]
    fn overrides_are_warned_once_and_refusals_are_not_warned_twice() {
        let arp = model(
            "iface b inet manual\n bond-slaves a\n bond-arp-interval 200\n bond-miimon 100\n",
        );
        let w = warns(&arp);
        assert!(
            w.iter().any(|(l, m)| *l == 3
                && m.contains("ends up as 0: setting miimon turns ARP monitoring off")),
            "{w:?}"
        );
        let lacp =
            model("iface b inet manual\n bond-slaves a\n bond-mode 802.3ad\n bond-updelay 300\n");
        let on_updelay: Vec<_> = warns(&lacp).into_iter().filter(|(l, _)| *l == 4).collect();
        assert_eq!(on_updelay.len(), 1, "{on_updelay:?}");
        assert!(on_updelay[0].1.contains("refuses it (EPERM)"));
    }

    #[test]
    fn no_monitoring_is_warned_about() {
        let m = model("iface b inet manual\n bond-slaves a\n bond-mode active-backup\n");
        assert_eq!(expected(&m, "option.miimon"), Value::Number(0));
        assert!(
            m.warnings
                .iter()
                .any(|w| w.message.contains("no link monitoring"))
        );
    }

    #[test]
    fn ifenslave_queue_ids_never_land_on_a_fresh_bond() {
        let m = model(
            "iface bond0 inet manual\n bond-slaves a b\n bond-miimon 100\n bond-queue-id a:1 b:2\n",
        );
        assert_eq!(expected(&m, "slave.a.queue_id"), Value::Number(0));
        assert!(m.answers.iter().any(|a| a.step == "set queue_id a:1" && a.refused.as_deref() == Some("EOPNOTSUPP")));
    }

    #[test]
    fn checks_cover_every_reported_option_slaves_address_answers_views_and_traffic() {
        let ids = model(HOWTO).check_ids();
        for id in [
            "option.mode",
            "option.num_peer_notif",
            "option.lp_interval",
            "slave.enp1s0.queue_id",
            "address",
        ] {
            assert!(ids.contains(&id.to_string()), "{id} in {ids:?}");
        }
        assert!(
            !ids.iter().any(|i| i == "option.ad_actor_sys_prio"),
            "802.3ad-only attributes are not reported in rr"
        );
        assert_eq!(
            &ids[ids.len() - 4..],
            [
                "apply.answers",
                "views.agree",
                "traffic.distribution",
                "kernel.log"
            ]
        );
    }

    #[test]
    fn howto_windows_at_hz_100_are_200_to_330_ms() {
        let m = model(HOWTO);
        let (down, up) = m.monitor.windows(100, true).unwrap();
        assert_eq!((down.lower_ms, down.upper_ms), (200.0, 330.0));
        assert_eq!((up.lower_ms, up.upper_ms), (200.0, 330.0));
        // HZ=1000: P = 100 jiffies on wheel level 1 (granularity 8): (200, 324].
        let (down, _) = m.monitor.windows(1000, true).unwrap();
        assert_eq!((down.lower_ms, down.upper_ms), (200.0, 324.0));
        // balance-rr never skips updelay; active-backup does with no other slave up.
        assert_eq!(m.monitor.windows(100, false).unwrap().1.lower_ms, 200.0);
        let ab = model(&HOWTO.replace("balance-rr", "active-backup"));
        assert_eq!(ab.monitor.windows(100, false).unwrap().1.upper_ms, 110.0);
        assert!(
            model("iface b inet manual\n bond-slaves a\n bond-mode 1\n")
                .monitor
                .windows(100, true)
                .is_none()
        );
    }

    #[test]
    fn primary_reselect_decides_who_is_active_after_the_primary_returns() {
        let sel = |reselect| Selection {
            slaves: vec![("eno1".into(), 0), ("eno2".into(), 0), ("eno3".into(), 0)],
            primary: Some("eno1".into()),
            reselect,
        };
        let some = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        assert_eq!(
            sel("always").expected("eno1", 2),
            (some(&["eno2", "eno2"]), some(&["eno1", "eno1"]))
        );
        assert_eq!(
            sel("better").expected("eno1", 2),
            (some(&["eno2", "eno2"]), some(&["eno2", "eno2"]))
        );
        assert_eq!(
            sel("failure").expected("eno2", 1),
            (some(&["eno1"]), some(&["eno1"]))
        );
        // Without a primary, the highest prio wins, and a returning higher-prio slave takes over.
        let prio = Selection {
            slaves: vec![("a".into(), 0), ("b".into(), 10)],
            primary: None,
            reselect: "failure",
        };
        assert_eq!(prio.expected("b", 1), (some(&["a"]), some(&["a"])));
        let prio_always = Selection {
            reselect: "always",
            ..prio
        };
        assert_eq!(prio_always.expected("b", 1), (some(&["a"]), some(&["b"])));
        // Cuts of different slaves in turn: with reselect failure eno2 stays active after
        // eno1 returns, so cutting eno2 next hands over to eno1 (first in order, primary).
        let failure = sel("failure");
        assert_eq!(failure.active_after(&[]), Some("eno1".into()));
        assert_eq!(failure.active_after(&["eno1"]), Some("eno2".into()));
        assert_eq!(
            failure.replay(&["eno1", "eno2"]),
            (some(&["eno2", "eno1"]), some(&["eno2", "eno1"]))
        );
    }

    #[test]
    fn settle_time_is_the_updelay_window_at_the_kernels_hz() {
        let m = model(HOWTO);
        assert_eq!(m.settle(Some(100)), Duration::from_millis(330));
        assert_eq!(m.settle(Some(1000)), Duration::from_millis(324));
        assert_eq!(
            m.settle(None),
            Duration::from_millis(330),
            "HZ=100 where unknown: the longest"
        );
        assert_eq!(
            model("iface b inet manual\n bond-slaves a\n").settle(Some(100)),
            Duration::ZERO
        );
        // ARP monitoring every 100 ms: up within 2·(δ+G) = 2·(10+1) jiffies at HZ=100.
        let arp = model(
            "iface b inet manual\n bond-slaves a c\n bond-mode active-backup\n              bond-arp-interval 100\n bond-arp-ip-target 192.0.2.1\n",
        );
        assert_eq!(arp.settle(Some(100)), Duration::from_millis(220));
    }
}
