//! The bond options bondcheck knows: one table, as the driver declares them
//! (drivers/net/bonding/bond_options.c `bond_opts[]`, Linux 6.1), with the interfaces(5) key
//! ifenslave reads for each, the values the kernel accepts, its default, the modes that refuse
//! it and when it may be changed.
//!
//! The spec parser, the model and the applier all read this table, so an option is described
//! once.

use crate::spec::Mode;

/// Who reads the option from an interfaces file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Debian's ifenslave 2.13 reads it (`/etc/network/if-pre-up.d/ifenslave`).
    Ifenslave,
    /// The kernel has it but ifenslave cannot set it; bondcheck accepts it under the same
    /// `bond-<name>` scheme and applies it after ifenslave's own options.
    Extension,
}

/// What values the option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A number in [min, max] (the kernel's value table also names some numbers).
    Number { min: u64, max: u64 },
    /// Milliseconds stored as monitor ticks: floor(value / miimon) (`_bond_option_delay_set`).
    Delay { max: u64 },
    /// One word of the table, or its number.
    Word(&'static [(&'static str, u64)]),
    /// IPv4 addresses, up to 16 (BOND_MAX_ARP_TARGETS).
    Ipv4List,
    /// IPv6 addresses, up to 16 (BOND_MAX_NS_TARGETS).
    Ipv6List,
    /// A unicast MAC address.
    Mac,
    /// Slave names; ifenslave uses the first one that is enslaved.
    SlaveList,
    /// One slave name, or `none`.
    Slave,
    /// `slave:value` pairs, each value in [min, max] (queue ids, priorities).
    PerSlave { min: i64, max: i64 },
}

/// Ways an option can be refused because of the bond's state (`bond_opt_check_deps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// Only while the bond has no slaves (BOND_OPTFLAG_NOSLAVES, else ENOTEMPTY).
    pub no_slaves: bool,
    /// Only while the bond is down (BOND_OPTFLAG_IFDOWN, else EBUSY).
    pub if_down: bool,
}

const NONE: Flags = Flags {
    no_slaves: false,
    if_down: false,
};
const IFDOWN: Flags = Flags {
    no_slaves: false,
    if_down: true,
};

/// One option.
#[derive(Debug)]
pub struct Opt {
    /// The kernel's name (sysfs file, /proc, iproute2).
    pub name: &'static str,
    /// The interfaces(5) key.
    pub key: &'static str,
    pub origin: Origin,
    pub kind: Kind,
    /// The value of a bond made by `ip link add type bond` (module defaults, `bond_check_params`).
    pub default: DefaultValue,
    /// The modes that accept it; others refuse it with EACCES (`unsuppmodes`).
    pub modes: &'static [Mode],
    pub flags: Flags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    Number(u64),
    Empty,
}

const ALL: &[Mode] = &Mode::ALL;
const ARP_MODES: &[Mode] = &[
    Mode::BalanceRr,
    Mode::ActiveBackup,
    Mode::BalanceXor,
    Mode::Broadcast,
];
const PRIMARY_MODES: &[Mode] = &[Mode::ActiveBackup, Mode::BalanceTlb, Mode::BalanceAlb];
const LACP: &[Mode] = &[Mode::Ieee8023ad];
const TLB_ALB: &[Mode] = &[Mode::BalanceTlb, Mode::BalanceAlb];
const RR: &[Mode] = &[Mode::BalanceRr];

const INT_MAX: u64 = i32::MAX as u64;
const ON_OFF: &[(&str, u64)] = &[("off", 0), ("on", 1)];

pub const MODES: &[(&str, u64)] = &[
    ("balance-rr", 0),
    ("active-backup", 1),
    ("balance-xor", 2),
    ("broadcast", 3),
    ("802.3ad", 4),
    ("balance-tlb", 5),
    ("balance-alb", 6),
];

const fn opt(
    name: &'static str,
    key: &'static str,
    origin: Origin,
    kind: Kind,
    default: DefaultValue,
) -> Opt {
    Opt {
        name,
        key,
        origin,
        kind,
        default,
        modes: ALL,
        flags: NONE,
    }
}

const fn only(o: Opt, modes: &'static [Mode]) -> Opt {
    Opt { modes, ..o }
}

const fn flags(o: Opt, flags: Flags) -> Opt {
    Opt { flags, ..o }
}

use Origin::{Extension as EXT, Ifenslave as IFE};

/// Every option, in no particular order (the write order is ifenslave's, see `ifenslave.rs`).
pub static OPTIONS: &[Opt] = &[
    flags(
        opt(
            "mode",
            "bond-mode",
            IFE,
            Kind::Word(MODES),
            DefaultValue::Number(0),
        ),
        Flags {
            no_slaves: true,
            if_down: true,
        },
    ),
    opt(
        "miimon",
        "bond-miimon",
        IFE,
        Kind::Number {
            min: 0,
            max: INT_MAX,
        },
        DefaultValue::Number(0),
    ),
    opt(
        "updelay",
        "bond-updelay",
        IFE,
        Kind::Delay { max: INT_MAX },
        DefaultValue::Number(0),
    ),
    opt(
        "downdelay",
        "bond-downdelay",
        IFE,
        Kind::Delay { max: INT_MAX },
        DefaultValue::Number(0),
    ),
    opt(
        "use_carrier",
        "bond-use-carrier",
        IFE,
        Kind::Word(ON_OFF),
        DefaultValue::Number(1),
    ),
    only(
        opt(
            "arp_interval",
            "bond-arp-interval",
            IFE,
            Kind::Number {
                min: 0,
                max: INT_MAX,
            },
            DefaultValue::Number(0),
        ),
        ARP_MODES,
    ),
    opt(
        "arp_ip_target",
        "bond-arp-ip-target",
        IFE,
        Kind::Ipv4List,
        DefaultValue::Empty,
    ),
    only(
        opt(
            "arp_validate",
            "bond-arp-validate",
            IFE,
            Kind::Word(&[
                ("none", 0),
                ("active", 1),
                ("backup", 2),
                ("all", 3),
                ("filter", 4),
                ("filter_active", 5),
                ("filter_backup", 6),
            ]),
            DefaultValue::Number(0),
        ),
        ARP_MODES,
    ),
    only(
        opt(
            "primary",
            "bond-primary",
            IFE,
            Kind::SlaveList,
            DefaultValue::Empty,
        ),
        PRIMARY_MODES,
    ),
    opt(
        "primary_reselect",
        "bond-primary-reselect",
        IFE,
        Kind::Word(&[("always", 0), ("better", 1), ("failure", 2)]),
        DefaultValue::Number(0),
    ),
    flags(
        opt(
            "fail_over_mac",
            "bond-fail-over-mac",
            IFE,
            Kind::Word(&[("none", 0), ("active", 1), ("follow", 2)]),
            DefaultValue::Number(0),
        ),
        Flags {
            no_slaves: true,
            if_down: false,
        },
    ),
    opt(
        "xmit_hash_policy",
        "bond-xmit-hash-policy",
        IFE,
        Kind::Word(&[
            ("layer2", 0),
            ("layer3+4", 1),
            ("layer2+3", 2),
            ("encap2+3", 3),
            ("encap3+4", 4),
            ("vlan+srcmac", 5),
        ]),
        DefaultValue::Number(0),
    ),
    flags(
        only(
            opt(
                "lacp_rate",
                "bond-lacp-rate",
                IFE,
                Kind::Word(&[("slow", 0), ("fast", 1)]),
                DefaultValue::Number(0),
            ),
            LACP,
        ),
        IFDOWN,
    ),
    flags(
        opt(
            "ad_select",
            "bond-ad-select",
            IFE,
            Kind::Word(&[("stable", 0), ("bandwidth", 1), ("count", 2)]),
            DefaultValue::Number(0),
        ),
        IFDOWN,
    ),
    opt(
        "num_grat_arp",
        "bond-num-grat-arp",
        IFE,
        Kind::Number { min: 0, max: 255 },
        DefaultValue::Number(1),
    ),
    opt(
        "num_unsol_na",
        "bond-num-unsol-na",
        IFE,
        Kind::Number { min: 0, max: 255 },
        DefaultValue::Number(1),
    ),
    only(
        opt(
            "packets_per_slave",
            "bond-packets-per-slave",
            IFE,
            Kind::Number { min: 0, max: 65535 },
            DefaultValue::Number(1),
        ),
        RR,
    ),
    flags(
        only(
            opt(
                "tlb_dynamic_lb",
                "bond-tlb-dynamic-lb",
                IFE,
                Kind::Word(ON_OFF),
                DefaultValue::Number(1),
            ),
            TLB_ALB,
        ),
        IFDOWN,
    ),
    opt(
        "queue_id",
        "bond-queue-id",
        IFE,
        Kind::PerSlave { min: 0, max: 65535 },
        DefaultValue::Empty,
    ),
    only(
        opt(
            "active_slave",
            "bond-active-slave",
            IFE,
            Kind::Slave,
            DefaultValue::Empty,
        ),
        PRIMARY_MODES,
    ),
    opt(
        "min_links",
        "bond-min-links",
        EXT,
        Kind::Number {
            min: 0,
            max: INT_MAX,
        },
        DefaultValue::Number(0),
    ),
    opt(
        "all_slaves_active",
        "bond-all-slaves-active",
        EXT,
        Kind::Word(ON_OFF),
        DefaultValue::Number(0),
    ),
    flags(
        only(
            opt(
                "lacp_active",
                "bond-lacp-active",
                EXT,
                Kind::Word(ON_OFF),
                DefaultValue::Number(1),
            ),
            LACP,
        ),
        IFDOWN,
    ),
    only(
        opt(
            "ad_actor_sys_prio",
            "bond-ad-actor-sys-prio",
            EXT,
            Kind::Number { min: 1, max: 65535 },
            DefaultValue::Number(65535),
        ),
        LACP,
    ),
    flags(
        only(
            opt(
                "ad_user_port_key",
                "bond-ad-user-port-key",
                EXT,
                Kind::Number { min: 0, max: 1023 },
                DefaultValue::Number(0),
            ),
            LACP,
        ),
        IFDOWN,
    ),
    only(
        opt(
            "ad_actor_system",
            "bond-ad-actor-system",
            EXT,
            Kind::Mac,
            DefaultValue::Empty,
        ),
        LACP,
    ),
    opt(
        "arp_all_targets",
        "bond-arp-all-targets",
        EXT,
        Kind::Word(&[("any", 0), ("all", 1)]),
        DefaultValue::Number(0),
    ),
    only(
        opt(
            "arp_missed_max",
            "bond-arp-missed-max",
            EXT,
            Kind::Number { min: 1, max: 255 },
            DefaultValue::Number(2),
        ),
        ARP_MODES,
    ),
    opt(
        "peer_notif_delay",
        "bond-peer-notif-delay",
        EXT,
        Kind::Delay { max: 300_000 },
        DefaultValue::Number(0),
    ),
    opt(
        "resend_igmp",
        "bond-resend-igmp",
        EXT,
        Kind::Number { min: 0, max: 255 },
        DefaultValue::Number(1),
    ),
    opt(
        "lp_interval",
        "bond-lp-interval",
        EXT,
        Kind::Number {
            min: 1,
            max: INT_MAX,
        },
        DefaultValue::Number(1),
    ),
    opt(
        "ns_ip6_target",
        "bond-ns-ip6-target",
        EXT,
        Kind::Ipv6List,
        DefaultValue::Empty,
    ),
    only(
        opt(
            "prio",
            "bond-prio",
            EXT,
            Kind::PerSlave {
                min: i32::MIN as i64,
                max: i32::MAX as i64,
            },
            DefaultValue::Empty,
        ),
        PRIMARY_MODES,
    ),
];

/// Keys an interfaces file may hold for a bond that are not kernel options.
pub const NOT_KERNEL_OPTIONS: &[&str] =
    &["bond-slaves", "slaves", "bond-master", "bond-give-a-chance"];

pub fn by_key(key: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.key == key)
}

pub fn by_name(name: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// Options are singletons in [`OPTIONS`]: the name identifies one.
impl PartialEq for Opt {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Opt {}

impl Opt {
    /// The word the kernel shows for `n`, for options with a value table.
    pub fn word(&self, n: u64) -> Option<&'static str> {
        match self.kind {
            Kind::Word(table) => table.iter().find(|(_, v)| *v == n).map(|(w, _)| *w),
            _ => None,
        }
    }

    pub fn accepted_in(&self, mode: Mode) -> bool {
        self.modes.contains(&mode)
    }
}

/// The known key closest to `key` (for "did you mean"), if any is close.
pub fn nearest_key(key: &str) -> Option<&'static str> {
    OPTIONS
        .iter()
        .map(|o| o.key)
        .chain(NOT_KERNEL_OPTIONS.iter().copied())
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ifenslave_option_of_issue_4_is_known() {
        for key in [
            "bond-mode",
            "bond-miimon",
            "bond-updelay",
            "bond-downdelay",
            "bond-use-carrier",
            "bond-arp-interval",
            "bond-arp-ip-target",
            "bond-arp-validate",
            "bond-primary",
            "bond-primary-reselect",
            "bond-fail-over-mac",
            "bond-xmit-hash-policy",
            "bond-lacp-rate",
            "bond-ad-select",
            "bond-num-grat-arp",
            "bond-num-unsol-na",
            "bond-packets-per-slave",
            "bond-tlb-dynamic-lb",
            "bond-queue-id",
            "bond-active-slave",
        ] {
            assert_eq!(
                by_key(key).map(|o| o.origin),
                Some(Origin::Ifenslave),
                "{key}"
            );
        }
        let names: Vec<_> = OPTIONS.iter().map(|o| o.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "option names are unique");
    }

    #[test]
    fn nearest_key_suggests_typos_only() {
        assert_eq!(nearest_key("bond-miimom"), Some("bond-miimon"));
        assert_eq!(nearest_key("bond-lacp_rate"), Some("bond-lacp-rate"));
        assert_eq!(nearest_key("bond-slave"), Some("bond-slaves"));
        assert_eq!(nearest_key("bond-frobnicate-everything"), None);
    }

    #[test]
    fn value_words_come_from_the_kernel_tables() {
        assert_eq!(
            by_name("xmit_hash_policy").unwrap().word(2),
            Some("layer2+3")
        );
        assert_eq!(by_name("mode").unwrap().word(4), Some("802.3ad"));
        assert!(!by_name("primary").unwrap().accepted_in(Mode::BalanceRr));
        assert!(by_name("lacp_rate").unwrap().flags.if_down);
    }
}
