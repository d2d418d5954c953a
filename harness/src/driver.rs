//! A model of the bonding driver's option state: what each write does to a bond, following
//! the rules of drivers/net/bonding/bond_options.c (Linux 6.1): the dependency checks
//! (`bond_opt_check_deps`), the range checks, and each option's `set` function with its side
//! effects. The model feeds ifenslave's plan through it to predict the kernel's answers and
//! the bond's final configuration.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::ifenslave::{Applier, Step, Write};
use crate::model::{Rule, Value};
use crate::options::{self, DefaultValue, Kind, Opt};
use crate::spec::Mode;

pub const BOND_OPTIONS_C: &str = "drivers/net/bonding/bond_options.c";
const BOND_MAIN_C: &str = "drivers/net/bonding/bond_main.c";
/// BOND_DEFAULT_TX_QUEUES: a queue id above it is refused.
const TX_QUEUES: u16 = 16;

/// A write the model predicts the kernel refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub errno: &'static str,
    pub why: String,
}

/// The driver's state for one bond.
#[derive(Debug, Clone)]
pub struct Driver {
    mode: Mode,
    numbers: BTreeMap<&'static str, u64>,
    ipv4: Vec<Ipv4Addr>,
    ipv6: Vec<Ipv6Addr>,
    actor_system: [u8; 6],
    primary: Option<String>,
    slaves: Vec<String>,
    /// Per-slave values (queue_id, prio) by parameter and slave.
    per_slave: BTreeMap<(&'static str, String), i64>,
    up: bool,
    /// Options written through sysfs (ifenslave) rather than netlink: a few refusals differ.
    sysfs: bool,
    /// Why each parameter has its value: the last rule that set it.
    why: BTreeMap<&'static str, Rule>,
}

/// The kernel parameter an option sets: num_grat_arp and num_unsol_na are two names of one.
pub fn param(o: &Opt) -> &'static str {
    match o.name {
        "num_grat_arp" | "num_unsol_na" => "num_peer_notif",
        n => n,
    }
}

fn rule(text: impl Into<String>, source: &'static str) -> Rule {
    Rule {
        text: text.into(),
        source,
    }
}

impl Default for Driver {
    /// A bond as `ip link add type bond` makes it: the module's defaults (bond_check_params).
    fn default() -> Driver {
        let mut d = Driver {
            mode: Mode::BalanceRr,
            numbers: BTreeMap::new(),
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            actor_system: [0; 6],
            primary: None,
            slaves: Vec::new(),
            per_slave: BTreeMap::new(),
            up: false,
            sysfs: false,
            why: BTreeMap::new(),
        };
        for o in options::OPTIONS {
            if let DefaultValue::Number(n) = o.default {
                d.numbers.insert(param(o), n);
            }
            d.why.insert(
                param(o),
                rule(
                    "the default of a bond created over netlink (module parameter defaults)",
                    BOND_MAIN_C,
                ),
            );
        }
        d
    }
}

impl Driver {
    /// A fresh bond whose options `applier` will write.
    pub fn new(applier: Applier) -> Driver {
        Driver {
            sysfs: applier == Applier::Ifupdown,
            ..Driver::default()
        }
    }

    fn num(&self, name: &str) -> u64 {
        self.numbers.get(name).copied().unwrap_or(0)
    }

    fn set_num(&mut self, name: &'static str, n: u64, why: Rule) {
        self.numbers.insert(name, n);
        self.why.insert(name, why);
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn miimon(&self) -> u64 {
        self.num("miimon")
    }

    pub fn arp_interval(&self) -> u64 {
        self.num("arp_interval")
    }

    /// The ARP monitor's targets (arp_ip_target), in the kernel's order.
    pub fn arp_targets(&self) -> &[Ipv4Addr] {
        &self.ipv4
    }

    /// The primary slave, if one was set.
    pub fn primary(&self) -> Option<&str> {
        self.primary.as_deref()
    }

    /// primary_reselect as the kernel's word.
    pub fn reselect(&self) -> &'static str {
        self.word("primary_reselect").unwrap_or("always")
    }

    /// A worded option's value as the kernel's word (`xmit_hash_policy` → `layer2`).
    pub fn word(&self, name: &str) -> Option<&'static str> {
        options::by_name(name).and_then(|o| o.word(self.num(name)))
    }

    /// A numeric option's value as stored (delays in monitor ticks).
    pub fn number(&self, name: &str) -> u64 {
        self.num(name)
    }

    pub fn primary_name(&self, candidates: &[String]) -> Option<String> {
        candidates.iter().find(|c| self.slaves.contains(c)).cloned()
    }

    /// Carries out one step; `Err` is the refusal the kernel should answer.
    pub fn apply(&mut self, step: &Step) -> Result<(), Refusal> {
        match step {
            Step::Create | Step::SlaveUp(_) | Step::Address(_) => Ok(()),
            Step::Up => {
                self.up = true;
                Ok(())
            }
            Step::Enslave(name) => {
                self.slaves.push(name.clone());
                Ok(())
            }
            Step::Primary(candidates) => match self.primary_name(candidates) {
                Some(name) => self.judged(
                    options::by_name("primary").expect("catalogued"),
                    &Write::Slave(Some(name)),
                ),
                None => Ok(()),
            },
            Step::Set { opt, value } => self.judged(opt, value),
        }
    }

    /// A write, and on refusal the reason recorded as why the parameter keeps its value.
    fn judged(&mut self, o: &'static Opt, value: &Write) -> Result<(), Refusal> {
        let result = self.write(o, value);
        if let Err(r) = &result {
            let before = self
                .why
                .get(param(o))
                .map(|w| w.text.clone())
                .unwrap_or_default();
            self.why.insert(
                param(o),
                rule(
                    format!(
                        "{} {value} is refused ({}: {}), so it stays: {before}",
                        o.key, r.errno, r.why
                    ),
                    BOND_OPTIONS_C,
                ),
            );
        }
        result
    }

    /// One option write, judged as `__bond_opt_set` judges it.
    fn write(&mut self, o: &'static Opt, value: &Write) -> Result<(), Refusal> {
        if !o.accepted_in(self.mode) {
            return Err(Refusal {
                errno: "EACCES",
                why: format!("{} is not supported in mode {}", o.name, self.mode),
            });
        }
        if o.flags.no_slaves && !self.slaves.is_empty() {
            return Err(Refusal {
                errno: "ENOTEMPTY",
                why: format!("{} can only change while the bond has no slaves", o.name),
            });
        }
        if o.flags.if_down && self.up {
            return Err(Refusal {
                errno: "EBUSY",
                why: format!("{} can only change while the bond is down", o.name),
            });
        }
        let p = param(o);
        let written = |text: String| rule(text, BOND_OPTIONS_C);
        match (o.kind, value) {
            (Kind::Delay { .. }, Write::Number(ms)) => {
                let miimon = self.miimon();
                if miimon == 0 {
                    return Err(Refusal {
                        errno: "EPERM",
                        why: format!(
                            "{} needs MII monitoring, and miimon is 0 at this point",
                            o.name
                        ),
                    });
                }
                let ticks = ms / miimon;
                self.set_num(
                    p,
                    ticks,
                    written(format!(
                        "bond-{} {ms} is stored as floor({ms}/{miimon}) = {ticks} monitor ticks and reported as \
                         ticks × miimon",
                        o.name
                    )),
                );
            }
            (_, Write::Number(n)) if o.name == "mode" => {
                let mode = Mode::from_number(*n as u8).expect("parsed");
                let uses_arp = options::by_name("arp_interval")
                    .expect("catalogued")
                    .accepted_in(mode);
                if !uses_arp {
                    if self.arp_interval() != 0 {
                        self.set_num(
                            "arp_interval",
                            0,
                            written(format!("setting mode {mode} turns ARP monitoring off (bond_option_mode_set)")),
                        );
                    }
                    if self.miimon() == 0 {
                        self.set_num(
                            "miimon",
                            100,
                            written(format!("setting mode {mode} sets miimon to 100 when it is 0 (bond_option_mode_set)")),
                        );
                    }
                }
                if mode == Mode::BalanceAlb {
                    self.set_num(
                        "tlb_dynamic_lb",
                        1,
                        written("balance-alb always uses tlb_dynamic_lb 1".into()),
                    );
                }
                if self.num("arp_validate") != 0 {
                    self.set_num(
                        "arp_validate",
                        0,
                        written(
                            "setting the mode resets arp_validate to none (bond_option_mode_set)"
                                .into(),
                        ),
                    );
                }
                self.mode = mode;
                self.set_num("mode", *n, written(format!("bond-mode {mode} as written")));
            }
            (_, Write::Number(n)) if o.name == "miimon" => {
                self.set_num("miimon", *n, written(format!("bond-miimon {n} as written")));
                if *n != 0 && self.arp_interval() != 0 {
                    let off = written(
                        "setting miimon turns ARP monitoring off (bond_option_miimon_set)".into(),
                    );
                    self.set_num("arp_interval", 0, off.clone());
                    if self.num("arp_validate") != 0 {
                        self.set_num("arp_validate", 0, off);
                    }
                }
            }
            (_, Write::Number(n)) if o.name == "arp_interval" => {
                self.set_num(
                    "arp_interval",
                    *n,
                    written(format!("bond-arp-interval {n} as written")),
                );
                if *n != 0 && self.miimon() != 0 {
                    self.set_num(
                        "miimon",
                        0,
                        written("setting arp_interval turns MII monitoring off (bond_option_arp_interval_set)".into()),
                    );
                }
            }
            (_, Write::Number(n)) => {
                let shown = o.word(*n).map_or(n.to_string(), str::to_string);
                self.set_num(p, *n, written(format!("{} {shown} as written", o.key)));
            }
            (_, Write::Ipv4(list)) => {
                self.ipv4 = list.clone();
                self.why.insert(
                    p,
                    written(format!("{} as written, added one by one", o.key)),
                );
            }
            (_, Write::Ipv6(list)) => {
                self.ipv6 = list.clone();
                self.why.insert(p, written(format!("{} as written", o.key)));
            }
            (_, Write::Mac(m)) => {
                self.actor_system = *m;
                self.why.insert(p, written(format!("{} as written", o.key)));
            }
            (_, Write::Slave(name)) if o.name == "primary" => {
                self.primary = name.clone();
                self.why.insert(
                    p,
                    written(
                        "ifenslave makes the first bond-primary entry that is enslaved the primary"
                            .into(),
                    ),
                );
            }
            (_, Write::Slave(name)) => {
                // active_slave: the device must already be a slave of this bond.
                if let Some(n) = name.as_ref().filter(|n| !self.slaves.contains(n)) {
                    return Err(Refusal {
                        errno: "EINVAL",
                        why: format!(
                            "{n} is not a slave yet: ifenslave writes active_slave before it enslaves"
                        ),
                    });
                }
            }
            (_, Write::PerSlave { slave, value }) => {
                if !self.slaves.contains(slave) {
                    // Over netlink a per-slave value is slave data (IFLA_INFO_SLAVE_DATA), which
                    // rtnl_newlink refuses for a device without a master; ifenslave's sysfs
                    // write of iface_queue_id gets EPERM from bond_option_queue_id_set instead.
                    return Err(Refusal {
                        errno: if self.sysfs { "EPERM" } else { "EOPNOTSUPP" },
                        why: format!(
                            "{slave} is not a slave yet: ifenslave writes {} before it enslaves \
                             (net/core/rtnetlink.c: slave data needs a master)",
                            o.name
                        ),
                    });
                }
                if o.name == "queue_id" {
                    let taken = *value != 0
                        && self
                            .per_slave
                            .iter()
                            .any(|((p, s), v)| *p == "queue_id" && s != slave && v == value);
                    if *value > i64::from(TX_QUEUES) || taken {
                        return Err(Refusal {
                            errno: "EPERM",
                            why: format!("queue id {value} is taken or above {TX_QUEUES}"),
                        });
                    }
                }
                self.per_slave.insert((o.name, slave.clone()), *value);
            }
        }
        Ok(())
    }

    /// What netlink should report for each bond parameter now (IFLA_BOND_*, bond_fill_info),
    /// with the rule behind each value. active_slave depends on link timing and is left out;
    /// the 802.3ad actor parameters are reported in 802.3ad only.
    pub fn reported(&self) -> Vec<(&'static str, Value, Rule)> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for o in options::OPTIONS {
            let p = param(o);
            if seen.contains(&p) || matches!(o.kind, Kind::PerSlave { .. }) || p == "active_slave" {
                continue;
            }
            seen.push(p);
            if (p.starts_with("ad_actor") || p == "ad_user_port_key")
                && self.mode != Mode::Ieee8023ad
            {
                continue;
            }
            let value = match (o.kind, p) {
                (_, "primary") => self.primary.clone().map_or(Value::None, Value::Text),
                (Kind::Delay { .. }, _) => Value::Number(self.num(p) * self.miimon()),
                (Kind::Word(_), _) => Value::Text(o.word(self.num(p)).unwrap_or("?").to_string()),
                (Kind::Ipv4List, _) => list(&self.ipv4),
                (Kind::Ipv6List, _) => list(&self.ipv6),
                (Kind::Mac, _) => Value::Text(crate::netlink::mac_text(&self.actor_system)),
                _ => Value::Number(self.num(p)),
            };
            let why = self
                .why
                .get(p)
                .cloned()
                .expect("every parameter has a rule");
            out.push((p, value, why));
        }
        out
    }

    /// A slave's value of a per-slave parameter (0, the kernel's default, unless a write set it).
    pub fn slave_value(&self, param: &'static str, slave: &str) -> i64 {
        self.per_slave
            .get(&(param, slave.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

fn list<T: ToString>(items: &[T]) -> Value {
    if items.is_empty() {
        Value::None
    } else {
        Value::Text(crate::ifenslave::joined(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(d: &mut Driver, name: &str, n: u64) -> Result<(), Refusal> {
        d.apply(&Step::Set {
            opt: options::by_name(name).unwrap(),
            value: Write::Number(n),
        })
    }

    fn reported(d: &Driver, p: &str) -> Value {
        d.reported()
            .into_iter()
            .find(|(n, _, _)| *n == p)
            .unwrap()
            .1
    }

    #[test]
    fn delays_need_miimon_and_round_down() {
        let mut d = Driver::new(Applier::Netlink);
        assert_eq!(set(&mut d, "updelay", 200).unwrap_err().errno, "EPERM");
        set(&mut d, "miimon", 100).unwrap();
        set(&mut d, "updelay", 220).unwrap();
        assert_eq!(reported(&d, "updelay"), Value::Number(200));
        // The tick count is kept when miimon changes (bond_option_miimon_set).
        set(&mut d, "miimon", 50).unwrap();
        assert_eq!(reported(&d, "updelay"), Value::Number(100));
    }

    #[test]
    fn lacp_mode_forces_miimon_and_drops_arp_monitoring() {
        let mut d = Driver::new(Applier::Netlink);
        set(&mut d, "arp_interval", 200).unwrap();
        set(&mut d, "mode", 4).unwrap();
        assert_eq!(reported(&d, "arp_interval"), Value::Number(0));
        assert_eq!(reported(&d, "miimon"), Value::Number(100));
        assert_eq!(
            set(&mut d, "packets_per_slave", 3).unwrap_err().errno,
            "EACCES"
        );
        d.apply(&Step::Up).unwrap();
        assert_eq!(set(&mut d, "lacp_rate", 1).unwrap_err().errno, "EBUSY");
    }

    #[test]
    fn miimon_and_arp_interval_exclude_each_other() {
        let mut d = Driver::new(Applier::Netlink);
        set(&mut d, "miimon", 100).unwrap();
        set(&mut d, "arp_interval", 250).unwrap();
        assert_eq!(reported(&d, "miimon"), Value::Number(0));
        set(&mut d, "miimon", 100).unwrap();
        assert_eq!(reported(&d, "arp_interval"), Value::Number(0));
    }

    #[test]
    fn primary_is_refused_in_balance_rr_and_taken_in_active_backup() {
        let mut d = Driver::new(Applier::Netlink);
        d.apply(&Step::Enslave("a".into())).unwrap();
        let primary = Step::Primary(vec!["x".into(), "a".into()]);
        assert_eq!(d.apply(&primary).unwrap_err().errno, "EACCES");
        let mut ab = Driver::new(Applier::Netlink);
        set(&mut ab, "mode", 1).unwrap();
        ab.apply(&Step::Enslave("a".into())).unwrap();
        ab.apply(&primary).unwrap();
        assert_eq!(reported(&ab, "primary"), Value::Text("a".into()));
        assert_eq!(set(&mut ab, "mode", 0).unwrap_err().errno, "ENOTEMPTY");
    }

    #[test]
    fn queue_id_and_active_slave_before_enslave_are_refused() {
        let mut d = Driver::new(Applier::Netlink);
        set(&mut d, "mode", 1).unwrap();
        let q = Step::Set {
            opt: options::by_name("queue_id").unwrap(),
            value: Write::PerSlave {
                slave: "a".into(),
                value: 2,
            },
        };
        assert_eq!(d.apply(&q).unwrap_err().errno, "EOPNOTSUPP");
        let a = Step::Set {
            opt: options::by_name("active_slave").unwrap(),
            value: Write::Slave(Some("a".into())),
        };
        assert_eq!(d.apply(&a).unwrap_err().errno, "EINVAL");
        d.apply(&Step::Enslave("a".into())).unwrap();
        d.apply(&q).unwrap();
        assert_eq!(d.slave_value("queue_id", "a"), 2);
    }

    #[test]
    fn alb_forces_dynamic_lb_and_words_are_reported() {
        let mut d = Driver::new(Applier::Netlink);
        set(&mut d, "mode", 5).unwrap();
        set(&mut d, "tlb_dynamic_lb", 0).unwrap();
        assert_eq!(reported(&d, "tlb_dynamic_lb"), Value::Text("off".into()));
        let mut alb = Driver::new(Applier::Netlink);
        set(&mut alb, "mode", 6).unwrap();
        assert_eq!(reported(&alb, "tlb_dynamic_lb"), Value::Text("on".into()));
        assert_eq!(
            reported(&alb, "xmit_hash_policy"),
            Value::Text("layer2".into())
        );
        assert!(
            !alb.reported()
                .iter()
                .any(|(p, _, _)| *p == "ad_actor_sys_prio")
        );
    }
}
