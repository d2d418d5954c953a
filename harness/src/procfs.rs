//! `/proc/net/bonding/<bond>`: the kernel's second, textual view of a bond
//! (bond_procfs.c), parsed into the same shape as the netlink view so the two can be compared.

use crate::model::Value;
use crate::observe::{BondView, SlaveView};

/// The driver's mode descriptions (bond_main.c `bond_mode_name`) and the kernel's mode names.
const MODE_NAMES: [(&str, &str); 7] = [
    ("load balancing (round-robin)", "balance-rr"),
    ("fault-tolerance (active-backup)", "active-backup"),
    ("load balancing (xor)", "balance-xor"),
    ("fault-tolerance (broadcast)", "broadcast"),
    ("IEEE 802.3ad Dynamic link aggregation", "802.3ad"),
    ("transmit load balancing", "balance-tlb"),
    ("adaptive load balancing", "balance-alb"),
];

/// Master lines that hold a plain number, and the parameter each shows.
const NUMBERS: [(&str, &str); 8] = [
    ("MII Polling Interval (ms)", "miimon"),
    ("Up Delay (ms)", "updelay"),
    ("Down Delay (ms)", "downdelay"),
    ("Peer Notification Delay (ms)", "peer_notif_delay"),
    ("ARP Polling Interval (ms)", "arp_interval"),
    ("ARP Missed Max", "arp_missed_max"),
    ("Min links", "min_links"),
    ("System priority", "ad_actor_sys_prio"),
];

/// Master lines that hold one word of the option's value table.
const WORDS: [(&str, &str); 3] = [
    ("LACP active", "lacp_active"),
    ("LACP rate", "lacp_rate"),
    ("Aggregator selection policy (ad_select)", "ad_select"),
];

/// An interface name, or "None" for no interface.
fn name_or_none(value: &str) -> Value {
    if value == "None" {
        Value::None
    } else {
        Value::Text(value.into())
    }
}

/// The parsed file: the driver's version line and the bond.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcBond {
    pub driver_version: Option<String>,
    pub view: BondView,
    /// The file as read, for the report: the parse can be checked against it.
    pub text: String,
}

/// Parses the file's text. Unknown lines are skipped: newer kernels add fields.
pub fn parse(text: &str) -> Result<ProcBond, String> {
    let mut driver_version = None;
    let mut view = BondView::default();
    let mut slave: Option<SlaveView> = None;
    let number = |key: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("`{key}: {v}` is not a number"))
    };
    let set = |view: &mut BondView, param: &str, value: Value| {
        view.options.insert(param.to_string(), value);
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Ethernet Channel Bonding Driver: ") {
            driver_version = Some(v.trim().to_string());
            continue;
        }
        // Keys end at the first ": ", except where the key itself holds colons ("xx::xx form").
        let split = match line.strip_prefix("NS IPv6 target/s (xx::xx form):") {
            Some(rest) => Some(("NS IPv6 target/s (xx::xx form)", rest)),
            None => line.split_once(':'),
        };
        let Some((key, value)) = split else { continue };
        let (key, value) = (key.trim(), value.trim());
        if key == "Slave Interface" {
            view.slaves.extend(slave.take());
            slave = Some(SlaveView {
                name: value.to_string(),
                ..SlaveView::default()
            });
            continue;
        }
        let in_table =
            |table: &[(&str, &'static str)]| table.iter().find(|(k, _)| *k == key).map(|(_, p)| *p);
        if slave.is_none() {
            if let Some(param) = in_table(&NUMBERS) {
                set(&mut view, param, Value::Number(number(key, value)?));
                continue;
            }
            if let Some(param) = in_table(&WORDS) {
                set(&mut view, param, Value::Text(value.into()));
                continue;
            }
        }
        match (&mut slave, key) {
            (None, "Bonding Mode") => {
                let (text, mode) = MODE_NAMES
                    .iter()
                    .find(|(text, _)| value.starts_with(text))
                    .ok_or(format!("unknown bonding mode `{value}`"))?;
                set(&mut view, "mode", Value::Text(mode.to_string()));
                // Active-backup shows a non-default fail_over_mac after the mode: "(fail_over_mac active)".
                if *mode == "active-backup" {
                    let fom = value[text.len()..]
                        .trim()
                        .trim_start_matches("(fail_over_mac ")
                        .trim_end_matches(')');
                    set(
                        &mut view,
                        "fail_over_mac",
                        Value::Text(if fom.is_empty() { "none" } else { fom }.into()),
                    );
                }
            }
            (None, "Transmit Hash Policy") => {
                let word = value.split_whitespace().next().unwrap_or_default();
                set(&mut view, "xmit_hash_policy", Value::Text(word.into()));
            }
            (None, "Primary Slave") => {
                // "enp1s0 (primary_reselect always)" when a primary is set.
                let mut words = value.split_whitespace();
                let name = words.next().unwrap_or("None");
                set(&mut view, "primary", name_or_none(name));
                if let (Some("(primary_reselect"), Some(r)) = (words.next(), words.next()) {
                    set(
                        &mut view,
                        "primary_reselect",
                        Value::Text(r.trim_end_matches(')').into()),
                    );
                }
            }
            (None, "Currently Active Slave") => set(&mut view, "active_slave", name_or_none(value)),
            (None, "ARP IP target/s (n.n.n.n form)") => {
                set(&mut view, "arp_ip_target", targets(value))
            }
            (None, "NS IPv6 target/s (xx::xx form)") => {
                set(&mut view, "ns_ip6_target", targets(value))
            }
            (Some(s), "MII Status") => s.mii_status = Some(value.to_string()),
            (Some(s), "Link Failure Count") => {
                s.link_failure_count = Some(number(key, value)? as u32)
            }
            (Some(s), "Permanent HW addr") => s.perm_hwaddr = Some(value.to_ascii_lowercase()),
            (Some(s), "Slave queue ID") => {
                let q = number(key, value)?;
                s.queue_id =
                    Some(u16::try_from(q).map_err(|_| format!("queue id {q} out of range"))?);
            }
            _ => {}
        }
    }
    view.slaves.extend(slave);
    let Some(Value::Text(mode)) = view.options.get("mode").cloned() else {
        return Err("no `Bonding Mode` line".into());
    };
    // bond_procfs.c prints some lines only in some states; their absence says what the value is.
    if !view.options.contains_key("arp_interval") {
        set(&mut view, "arp_interval", Value::Number(0));
    }
    if matches!(
        mode.as_str(),
        "active-backup" | "balance-tlb" | "balance-alb"
    ) {
        view.options.entry("primary".into()).or_insert(Value::None);
    }
    Ok(ProcBond {
        driver_version,
        view,
        text: text.to_string(),
    })
}

/// " 10.0.0.1, 10.0.0.2" to "10.0.0.1 10.0.0.2"; nothing to None.
fn targets(value: &str) -> Value {
    let list: Vec<&str> = value.split([',', ' ']).filter(|s| !s.is_empty()).collect();
    if list.is_empty() {
        Value::None
    } else {
        Value::Text(list.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The UML 6.1.176 kernel's file for the how-to's bond, with enp7s0 caught going back after
    /// a failure and its MAC in capitals, to exercise every field.
    const UML_6_1: &str = "\
Ethernet Channel Bonding Driver: v6.1.176

Bonding Mode: load balancing (round-robin)
MII Status: up
MII Polling Interval (ms): 100
Up Delay (ms): 200
Down Delay (ms): 200
Peer Notification Delay (ms): 0

Slave Interface: enp1s0
MII Status: up
Speed: 10000 Mbps
Duplex: full
Link Failure Count: 0
Permanent HW addr: 5e:1b:2f:6e:d9:0a
Slave queue ID: 0

Slave Interface: enp7s0
MII Status: going back
Speed: 10000 Mbps
Duplex: full
Link Failure Count: 1
Permanent HW addr: 3A:4E:77:10:02:C1
Slave queue ID: 0
";

    #[test]
    fn parses_bond_and_slaves() {
        let p = parse(UML_6_1).unwrap();
        assert_eq!(p.driver_version.as_deref(), Some("v6.1.176"));
        let v = p.view;
        let opt = |k: &str| v.options.get(k).cloned();
        assert_eq!(opt("mode"), Some(Value::Text("balance-rr".into())));
        assert_eq!(opt("miimon"), Some(Value::Number(100)));
        assert_eq!(opt("updelay"), Some(Value::Number(200)));
        assert_eq!(opt("downdelay"), Some(Value::Number(200)));
        assert_eq!(
            opt("arp_interval"),
            Some(Value::Number(0)),
            "no ARP lines means arp_interval 0"
        );
        assert_eq!(opt("primary"), None, "balance-rr has no primary line");
        assert_eq!(v.slaves.len(), 2);
        assert_eq!(v.slaves[1].name, "enp7s0");
        assert_eq!(v.slaves[1].mii_status.as_deref(), Some("going back"));
        assert_eq!(v.slaves[1].link_failure_count, Some(1));
        assert_eq!(
            v.slaves[1].perm_hwaddr.as_deref(),
            Some("3a:4e:77:10:02:c1")
        );
        assert_eq!(v.slaves[0].queue_id, Some(0));
    }

    #[test]
    fn active_backup_lines_give_primary_reselect_and_fail_over_mac() {
        let text = UML_6_1.replace(
            "load balancing (round-robin)",
            "fault-tolerance (active-backup) (fail_over_mac follow)\nPrimary Slave: enp1s0 (primary_reselect better)",
        );
        let v = parse(&text).unwrap().view;
        assert_eq!(v.options["primary"], Value::Text("enp1s0".into()));
        assert_eq!(v.options["primary_reselect"], Value::Text("better".into()));
        assert_eq!(v.options["fail_over_mac"], Value::Text("follow".into()));
        let plain = UML_6_1.replace(
            "load balancing (round-robin)",
            "fault-tolerance (active-backup)\nPrimary Slave: None",
        );
        let v = parse(&plain).unwrap().view;
        assert_eq!(v.options["primary"], Value::None);
        assert_eq!(v.options["fail_over_mac"], Value::Text("none".into()));
    }

    #[test]
    fn arp_and_lacp_lines() {
        let text = UML_6_1.replace(
            "Peer Notification Delay (ms): 0\n",
            "Peer Notification Delay (ms): 0\nARP Polling Interval (ms): 250\nARP Missed Max: 2\n\
             ARP IP target/s (n.n.n.n form): 10.0.0.1, 10.0.0.2\nNS IPv6 target/s (xx::xx form):\n\n\
             802.3ad info\nLACP active: on\nLACP rate: fast\nMin links: 0\n\
             Aggregator selection policy (ad_select): stable\n",
        );
        let v = parse(&text).unwrap().view;
        assert_eq!(v.options["arp_interval"], Value::Number(250));
        assert_eq!(
            v.options["arp_ip_target"],
            Value::Text("10.0.0.1 10.0.0.2".into())
        );
        assert_eq!(v.options["ns_ip6_target"], Value::None);
        assert_eq!(v.options["lacp_rate"], Value::Text("fast".into()));
        assert_eq!(v.options["ad_select"], Value::Text("stable".into()));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse("").is_err());
        assert!(
            parse("Bonding Mode: quantum\n")
                .unwrap_err()
                .contains("quantum")
        );
        assert!(parse("Bonding Mode: load balancing (xor)\nUp Delay (ms): x\n").is_err());
    }
}
