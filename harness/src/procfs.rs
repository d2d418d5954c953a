//! `/proc/net/bonding/<bond>`: the kernel's second, textual view of a bond
//! (bond_procfs.c), parsed into the same shape as the netlink view so the two can be compared.

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
        v.parse::<u32>()
            .map_err(|_| format!("`{key}: {v}` is not a number"))
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Ethernet Channel Bonding Driver: ") {
            driver_version = Some(v.trim().to_string());
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if key == "Slave Interface" {
            view.slaves.extend(slave.take());
            slave = Some(SlaveView {
                name: value.to_string(),
                ..SlaveView::default()
            });
            continue;
        }
        match (&mut slave, key) {
            (None, "Bonding Mode") => {
                let name = MODE_NAMES
                    .iter()
                    .find(|(text, _)| value.starts_with(text))
                    .map(|(_, n)| *n);
                view.mode = Some(
                    name.ok_or(format!("unknown bonding mode `{value}`"))?
                        .to_string(),
                );
            }
            (None, "MII Polling Interval (ms)") => view.miimon = Some(number(key, value)?),
            (None, "Up Delay (ms)") => view.updelay = Some(number(key, value)?),
            (None, "Down Delay (ms)") => view.downdelay = Some(number(key, value)?),
            (None, "Primary Slave") => {
                // "enp1s0 (primary_reselect always)" on newer kernels.
                let name = value.split_whitespace().next().unwrap_or("None");
                view.primary = Some(if name == "None" {
                    "none".into()
                } else {
                    name.into()
                });
            }
            (Some(s), "MII Status") => s.mii_status = Some(value.to_string()),
            (Some(s), "Link Failure Count") => s.link_failure_count = Some(number(key, value)?),
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
    if view.mode.is_none() {
        return Err("no `Bonding Mode` line".into());
    }
    // Only modes with a primary print `Primary Slave`; the others have none.
    view.primary.get_or_insert_with(|| "none".into());
    Ok(ProcBond {
        driver_version,
        view,
        text: text.to_string(),
    })
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
        assert_eq!(v.mode.as_deref(), Some("balance-rr"));
        assert_eq!(
            (v.miimon, v.updelay, v.downdelay),
            (Some(100), Some(200), Some(200))
        );
        assert_eq!(v.primary.as_deref(), Some("none"));
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
    fn primary_slave_line_with_reselect_suffix() {
        let text = UML_6_1.replace(
            "load balancing (round-robin)",
            "fault-tolerance (active-backup)\nPrimary Slave: enp1s0 (primary_reselect always)",
        );
        assert_eq!(
            parse(&text).unwrap().view.primary.as_deref(),
            Some("enp1s0")
        );
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
