//! What the kernel should make of a spec, derived from the bonding driver's documented rules.
//!
//! The model is the single source of every expectation a check compares with the kernel. Each
//! expected value carries the rule that produced it and where that rule is written down, so a
//! failing check can say why bondcheck expected what it expected.

use std::time::Duration;

use crate::spec::{Finding, Mode, Setting, Spec};

/// A value as a check compares it: expected by the model or observed in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    Number(u64),
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    pub text: String,
    pub source: &'static str,
}

/// What the kernel should report for one check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Expectation {
    /// The check's id, e.g. `option.updelay` or `slave.enp1s0.mii_status`.
    pub check: String,
    pub expected: Value,
    pub unit: Option<&'static str>,
    pub rule: Rule,
}

/// The model's prediction for one spec.
#[derive(Debug, Clone)]
pub struct Model {
    pub expectations: Vec<Expectation>,
    /// Things the admin should know before anything runs (rounding, ignored options).
    pub warnings: Vec<Finding>,
    /// How long after the bond comes up every slave should have reached its expected state.
    pub settle: Duration,
}

/// The check that compares the kernel's two views (netlink and /proc) of the same bond. It has
/// no model expectation: the views must agree with each other.
pub const VIEWS_AGREE: &str = "views.agree";

const BONDING_RST: &str = "Documentation/networking/bonding.rst";
const BOND_OPTIONS_C: &str = "drivers/net/bonding/bond_options.c";
const BOND_MAIN_C: &str = "drivers/net/bonding/bond_main.c";

impl Model {
    /// Every check id the model and the kernel views give for this spec, in report order.
    pub fn check_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.expectations.iter().map(|e| e.check.clone()).collect();
        ids.push(VIEWS_AGREE.to_string());
        ids
    }
}

/// Predicts the kernel's behaviour for `spec` (kernel facts are not needed for these rules yet).
pub fn predict(spec: &Spec) -> Model {
    let bond = &spec.bond;
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    let mut expect = |check: String, expected: Value, unit, text: String, source| {
        out.push(Expectation {
            check,
            expected,
            unit,
            rule: Rule { text, source },
        })
    };

    let mode = bond.mode.as_ref().map_or(Mode::BalanceRr, |m| m.value);
    let mode_rule = match &bond.mode {
        Some(_) => "bond-mode as written".to_string(),
        None => "balance-rr is the driver's default mode".to_string(),
    };
    expect(
        "option.mode".into(),
        Value::Text(mode.name().into()),
        None,
        mode_rule,
        BONDING_RST,
    );

    let forces_miimon = matches!(mode, Mode::Ieee8023ad | Mode::BalanceTlb | Mode::BalanceAlb);
    let (miimon, miimon_rule, miimon_src) = match &bond.miimon {
        Some(m) if m.value == 0 && forces_miimon => (
            100,
            format!(
                "{mode} needs link monitoring: a miimon of 0 is replaced by 100 when the mode is set"
            ),
            BOND_OPTIONS_C,
        ),
        Some(m) => (m.value, "bond-miimon as written".to_string(), BONDING_RST),
        None if forces_miimon => (
            100,
            format!("bond_option_mode_set sets miimon to 100 for {mode} when it is unset"),
            BOND_OPTIONS_C,
        ),
        None => (
            0,
            "no bond-miimon: a bond made over netlink keeps the module default 0, so there is no \
             link monitoring and slaves always count as up"
                .to_string(),
            BOND_MAIN_C,
        ),
    };
    if miimon == 0 {
        warnings.push(Finding {
            at: bond.at.clone(),
            message: "no link monitoring (neither bond-miimon nor ARP monitoring): a dead slave \
                      keeps getting traffic"
                .into(),
        });
    }
    expect(
        "option.miimon".into(),
        Value::Number(miimon.into()),
        Some("ms"),
        miimon_rule,
        miimon_src,
    );

    let mut delay_ticks = |name: &str, setting: &Option<Setting<u32>>| -> u32 {
        let Some(s) = setting else {
            expect(
                format!("option.{name}"),
                Value::Number(0),
                Some("ms"),
                format!("no bond-{name}: the default is 0"),
                BONDING_RST,
            );
            return 0;
        };
        if miimon == 0 {
            warnings.push(Finding {
                at: s.at.clone(),
                message: format!(
                    "bond-{name} {} has no effect without miimon: the kernel refuses it",
                    s.value
                ),
            });
            expect(
                format!("option.{name}"),
                Value::Number(0),
                Some("ms"),
                format!("{name} needs MII monitoring; with miimon 0 the kernel refuses it (EPERM)"),
                BOND_OPTIONS_C,
            );
            return 0;
        }
        let ticks = s.value / miimon;
        let effective = ticks * miimon;
        if effective != s.value {
            warnings.push(Finding {
                at: s.at.clone(),
                message: format!(
                    "bond-{name} {} is not a multiple of bond-miimon {miimon}: the kernel rounds it \
                     down to {effective} ms",
                    s.value
                ),
            });
        }
        expect(
            format!("option.{name}"),
            Value::Number(effective.into()),
            Some("ms"),
            format!(
                "stored as floor({}/{miimon}) = {ticks} monitor ticks and reported as ticks × miimon",
                s.value
            ),
            BOND_OPTIONS_C,
        );
        ticks
    };
    let up_ticks = delay_ticks("updelay", &bond.updelay);
    delay_ticks("downdelay", &bond.downdelay);

    let slave_names: Vec<&str> = bond.slaves.iter().map(|s| s.value.as_str()).collect();
    let (primary, primary_rule) = match &bond.primary {
        None => (Value::None, "no bond-primary".to_string()),
        Some(p) if !mode.uses_primary() => {
            warnings.push(Finding {
                at: p.at.clone(),
                message: format!(
                    "bond-primary has no effect in {mode}: only active-backup, balance-tlb and \
                     balance-alb have a primary slave; the kernel refuses it"
                ),
            });
            (
                Value::None,
                format!("primary is not supported in {mode} (BOND_OPT_PRIMARY unsupported modes)"),
            )
        }
        Some(p) => match p.value.iter().find(|n| slave_names.contains(&n.as_str())) {
            Some(first) => (
                Value::Text(first.clone()),
                "ifenslave makes the first bond-primary entry that is enslaved the primary".into(),
            ),
            None => {
                warnings.push(Finding {
                    at: p.at.clone(),
                    message: "no bond-primary entry is one of the bond's slaves".into(),
                });
                (Value::None, "no bond-primary entry is enslaved".into())
            }
        },
    };
    expect(
        "option.primary".into(),
        primary,
        None,
        primary_rule,
        BOND_OPTIONS_C,
    );

    for slave in &slave_names {
        let rule = if miimon == 0 {
            "without link monitoring bond_enslave marks every slave up"
        } else {
            "a slave with carrier is up once updelay has passed (bond_enslave, bond_miimon_inspect)"
        };
        expect(
            format!("slave.{slave}.mii_status"),
            Value::Text("up".into()),
            None,
            rule.into(),
            BOND_MAIN_C,
        );
    }

    let address = bond
        .address
        .as_ref()
        .map_or(Value::None, |a| Value::Text(a.value.to_string()));
    let address_rule = match &bond.address {
        Some(_) => "ifupdown's static method adds address/netmask to the bond",
        None => "a manual stanza configures no address",
    };
    expect(
        "address".into(),
        address,
        None,
        address_rule.into(),
        "interfaces(5): inet static",
    );

    let mut warnings_sorted = spec.notes.clone();
    warnings_sorted.extend(warnings);
    warnings_sorted.sort_by_key(|f| (f.at.line, f.at.column));

    Model {
        expectations: out,
        warnings: warnings_sorted,
        settle: settle_time(miimon, up_ticks),
    }
}

/// Worst case for a slave with carrier to be committed UP after the bond opens: the first
/// monitor tick comes at once, then `updelay` ticks, each up to (P + G) jiffies (link monitor
/// timing, kernel-bonding.md §2.2). HZ is not known here, so take HZ=100 (10 ms jiffies, the
/// largest common jiffy), which gives the longest window.
fn settle_time(miimon_ms: u32, up_ticks: u32) -> Duration {
    const JIFFY_MS: u32 = 10;
    let period = miimon_ms.div_ceil(JIFFY_MS);
    let granularity = if period < 63 { 1 } else { 8 };
    Duration::from_millis(u64::from(
        (up_ticks + 1) * (period + granularity) * JIFFY_MS,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn model(text: &str) -> Model {
        predict(&crate::spec::parse(Path::new("t"), text).unwrap())
    }

    fn expected(m: &Model, check: &str) -> Value {
        m.expectations
            .iter()
            .find(|e| e.check == check)
            .unwrap()
            .expected
            .clone()
    }

    const HOWTO: &str = "iface bond0 inet static\n address 192.168.122.188\n netmask 255.255.255.0\n \
        bond-slaves enp1s0 enp7s0\n bond-mode balance-rr\n bond-miimon 100\n bond-downdelay 220\n \
        bond-updelay 220\n bond-primary enp1s0 enp7s0\n";

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
            expected(&m, "address"),
            Value::Text("192.168.122.188/24".into())
        );
        assert_eq!(
            expected(&m, "slave.enp7s0.mii_status"),
            Value::Text("up".into())
        );
        let msgs: Vec<_> = m
            .warnings
            .iter()
            .map(|w| (w.at.line, w.message.as_str()))
            .collect();
        assert!(
            msgs.iter()
                .any(|(l, w)| *l == 7 && w.contains("rounds it down to 200 ms")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|(l, w)| *l == 8 && w.contains("updelay 220")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|(l, w)| *l == 9 && w.contains("no effect in balance-rr")),
            "{msgs:?}"
        );
    }

    #[test]
    fn primary_is_refused_outside_ab_tlb_alb_and_first_enslaved_wins_inside() {
        assert_eq!(expected(&model(HOWTO), "option.primary"), Value::None);
        let ab = HOWTO
            .replace("balance-rr", "active-backup")
            .replace("primary enp1s0", "primary eth9 enp7s0 enp1s0");
        assert_eq!(
            expected(&model(&ab), "option.primary"),
            Value::Text("enp7s0".into())
        );
    }

    #[test]
    fn miimon_defaults_depend_on_mode() {
        let none = "iface b inet manual\n bond-slaves a\n bond-mode MODE\n bond-updelay 300\n";
        let rr = model(&none.replace("MODE", "balance-rr"));
        assert_eq!(expected(&rr, "option.miimon"), Value::Number(0));
        assert_eq!(
            expected(&rr, "option.updelay"),
            Value::Number(0),
            "updelay is refused without miimon"
        );
        assert!(
            rr.warnings
                .iter()
                .any(|w| w.message.contains("no link monitoring"))
        );
        for forced in ["802.3ad", "balance-tlb", "6"] {
            let m = model(&none.replace("MODE", forced));
            assert_eq!(
                expected(&m, "option.miimon"),
                Value::Number(100),
                "{forced}"
            );
            assert_eq!(
                expected(&m, "option.updelay"),
                Value::Number(300),
                "{forced}"
            );
        }
    }

    #[test]
    fn checks_cover_options_slaves_address_and_views() {
        let ids = model(HOWTO).check_ids();
        assert_eq!(
            ids,
            [
                "option.mode",
                "option.miimon",
                "option.updelay",
                "option.downdelay",
                "option.primary",
                "slave.enp1s0.mii_status",
                "slave.enp7s0.mii_status",
                "address",
                "views.agree"
            ]
        );
    }

    #[test]
    fn settle_time_covers_updelay_ticks_at_hz_100() {
        // miimon 100 → 10 jiffies + 1 granularity; 2 updelay ticks + the first tick.
        assert_eq!(settle_time(100, 2), Duration::from_millis(330));
        assert_eq!(settle_time(0, 0), Duration::from_millis(10));
    }
}
