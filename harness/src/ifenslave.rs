//! The order in which Debian's ifenslave 2.13 and ifupdown set a bond up from a spec.
//!
//! Read from the package's `/etc/network/if-pre-up.d/ifenslave`: it creates the bond
//! (`ip link add type bond`, no options), writes fail_over_mac, then the other options one sysfs
//! write at a time in a fixed order (mode only after miimon and the delays), then enslaves the
//! slaves, then writes the primary (the first `bond-primary` entry that is enslaved) and
//! primary_reselect. ifupdown then brings the bond up and adds the address. The order matters:
//! each write is judged by the driver against the state the previous ones left. The model
//! simulates this plan and the netlink applier carries it out, so both follow it exactly.

use std::net::Ipv4Addr;

use crate::options::{Opt, Origin};
use crate::spec::{Bond, BondOption, Ipv4Net, OptValue};

/// How bondcheck carries the plan out.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Applier {
    /// bondcheck's rtnetlink requests, one per ifenslave write, extensions included.
    Netlink,
    /// Debian's ifup with the ifenslave hooks: sysfs writes, and no extension options, which
    /// ifenslave does not know.
    Ifupdown,
}

impl Applier {
    /// As the command line and the report spell it.
    pub fn name(self) -> &'static str {
        match self {
            Applier::Netlink => "netlink",
            Applier::Ifupdown => "ifupdown",
        }
    }
}

/// One thing done to the bond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `ip link add dev NAME type bond`
    Create,
    /// One write of one option (a sysfs write in ifenslave).
    Set { opt: &'static Opt, value: Write },
    /// `ip link set SLAVE up` before ifenslave writes active_slave.
    SlaveUp(String),
    /// `echo +SLAVE > slaves`
    Enslave(String),
    /// The first of these that is enslaved becomes primary (ifenslave's `setup_primary`).
    Primary(Vec<String>),
    /// ifupdown brings the bond up.
    Up,
    /// ifupdown's static method adds the address.
    Address(Ipv4Net),
}

/// The value of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Number(u64),
    /// ifenslave adds ARP targets one by one; this is the list after the addition.
    Ipv4(Vec<Ipv4Addr>),
    Ipv6(Vec<std::net::Ipv6Addr>),
    Mac([u8; 6]),
    /// A slave name (primary, active_slave), or none to clear.
    Slave(Option<String>),
    /// A per-slave value (`iface_queue_id`, the slave's prio).
    PerSlave {
        slave: String,
        value: i64,
    },
}

impl std::fmt::Display for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Write::Number(n) => write!(f, "{n}"),
            Write::Ipv4(list) => f.write_str(&joined(list)),
            Write::Ipv6(list) => f.write_str(&joined(list)),
            Write::Mac(m) => write!(f, "{}", crate::netlink::mac_text(m)),
            Write::Slave(s) => write!(f, "{}", s.as_deref().unwrap_or("none")),
            Write::PerSlave { slave, value } => write!(f, "{slave}:{value}"),
        }
    }
}

/// Items separated by spaces, as ifenslave's option lines write lists.
pub fn joined<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Create => write!(f, "create the bond"),
            Step::Set { opt, value } => write!(f, "set {} {value}", opt.name),
            Step::SlaveUp(s) => write!(f, "bring {s} up"),
            Step::Enslave(s) => write!(f, "enslave {s}"),
            Step::Primary(list) => write!(f, "set primary (first enslaved of {})", list.join(" ")),
            Step::Up => write!(f, "bring the bond up"),
            Step::Address(a) => write!(f, "add address {a}"),
        }
    }
}

/// ifenslave's option writes before enslavement, in its order (`early_setup_master`,
/// `setup_master`), followed by bondcheck's extensions, which ifenslave cannot write.
const BEFORE_ENSLAVE: &[&str] = &[
    "fail_over_mac",
    "use_carrier",
    "num_grat_arp",
    "num_unsol_na",
    "arp_ip_target",
    "arp_interval",
    "miimon",
    "downdelay",
    "updelay",
    "ad_select",
    "mode",
    "xmit_hash_policy",
    "tlb_dynamic_lb",
    "packets_per_slave",
    "arp_validate",
    "lacp_rate",
    // Extensions: after every mode-dependent ifenslave option, while the bond is still down
    // and has no slaves (several of them require that).
    "min_links",
    "all_slaves_active",
    "lacp_active",
    "ad_actor_sys_prio",
    "ad_user_port_key",
    "ad_actor_system",
    "arp_all_targets",
    "arp_missed_max",
    "peer_notif_delay",
    "resend_igmp",
    "lp_interval",
    "ns_ip6_target",
    // ifenslave writes these last in setup_master, still before it enslaves anything.
    "queue_id",
    "active_slave",
];

/// The steps for `bond`, in the order ifenslave and ifupdown take them. ifup passes unknown
/// `bond-*` keys to the hooks as environment variables that ifenslave never reads, so through
/// ifupdown the extensions are not written at all.
pub fn plan(bond: &Bond, applier: Applier) -> Vec<Step> {
    let mut steps = vec![Step::Create];
    for name in BEFORE_ENSLAVE {
        match bond.option(name) {
            Some(o) if o.opt.origin == Origin::Extension && applier == Applier::Ifupdown => {}
            Some(o) => steps.extend(writes(o)),
            None => {}
        }
    }
    steps.extend(bond.slaves.iter().map(|s| Step::Enslave(s.value.clone())));
    // bondcheck's per-slave extension, once the slaves exist.
    if let (Some(o), Applier::Netlink) = (bond.option("prio"), applier) {
        steps.extend(writes(o));
    }
    if let Some(OptValue::Names(list)) = bond.option("primary").map(|o| &o.value) {
        steps.push(Step::Primary(list.clone()));
    }
    if let Some(o) = bond.option("primary_reselect") {
        steps.extend(writes(o));
    }
    steps.push(Step::Up);
    if let Some(a) = &bond.address {
        steps.push(Step::Address(a.value));
    }
    steps
}

/// The writes one option line turns into.
fn writes(o: &BondOption) -> Vec<Step> {
    let set = |value| Step::Set { opt: o.opt, value };
    match &o.value {
        OptValue::Number(n) => vec![set(Write::Number(*n))],
        // sysfs_add: one write per target, each adding to the list.
        OptValue::Ipv4(list) => (1..=list.len())
            .map(|k| set(Write::Ipv4(list[..k].to_vec())))
            .collect(),
        OptValue::Ipv6(list) => vec![set(Write::Ipv6(list.clone()))],
        OptValue::Mac(m) => vec![set(Write::Mac(*m))],
        OptValue::Slave(s) => match s {
            // "Need to force interface up before": ifenslave brings the slave up first.
            Some(name) => vec![
                Step::SlaveUp(name.clone()),
                set(Write::Slave(Some(name.clone()))),
            ],
            None => vec![set(Write::Slave(None))],
        },
        OptValue::PerSlave(pairs) => pairs
            .iter()
            .map(|(slave, value)| {
                set(Write::PerSlave {
                    slave: slave.clone(),
                    value: *value,
                })
            })
            .collect(),
        OptValue::Names(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options;
    use std::path::Path;

    /// Whether the plan writes this option somewhere.
    fn is_planned(name: &str) -> bool {
        BEFORE_ENSLAVE.contains(&name)
            || matches!(name, "primary" | "primary_reselect" | "prio")
            || options::by_name(name).is_none()
    }

    #[test]
    fn every_option_has_a_place_in_the_plan() {
        for o in options::OPTIONS {
            assert!(is_planned(o.name), "{} is never written", o.name);
        }
    }

    #[test]
    fn mode_comes_after_miimon_and_delays_and_primary_after_enslave() {
        let spec = crate::spec::parse(
            Path::new("t"),
            "iface bond0 inet manual\n bond-slaves a b\n bond-mode active-backup\n bond-miimon 100\n \
             bond-updelay 200\n bond-primary c b a\n bond-arp-ip-target 10.0.0.1 10.0.0.2\n",
        )
        .unwrap();
        let text: Vec<String> = plan(&spec.bond, Applier::Netlink)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "create the bond",
                "set arp_ip_target 10.0.0.1",
                "set arp_ip_target 10.0.0.1 10.0.0.2",
                "set miimon 100",
                "set updelay 200",
                "set mode 1",
                "enslave a",
                "enslave b",
                "set primary (first enslaved of c b a)",
                "bring the bond up",
            ]
        );
    }
}
