//! The netlink applier: sets the spec's bond up the way ifenslave does, option by option, so a
//! value the kernel refuses is recorded and the rest still applied.
//!
//! Order (ifenslave's): create the bond with its mode; miimon, then the delays; enslave the
//! slaves in spec order; the primary (the first `bond-primary` entry that is enslaved); bring
//! the bond up; add the address. What is sent is what the spec says, not what the model
//! expects: the kernel's answer is what is under test.

use rtnetlink::Handle;

use crate::error::{Error, Result};
use crate::netlink::{self, BondOptions, Refusal};
use crate::spec::Spec;
use crate::topology::Built;

/// One request and the kernel's answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub action: String,
    pub refused: Option<Refusal>,
}

#[derive(Debug, Clone)]
pub struct Applied {
    pub bond_index: u32,
    pub steps: Vec<Step>,
}

impl Applied {
    fn record(&mut self, action: String, answer: netlink::Answer) {
        self.steps.push(Step {
            action,
            refused: answer.err(),
        });
    }
}

pub async fn apply(spec: &Spec, built: &Built) -> Result<Applied> {
    let bond = &spec.bond;
    let h: &Handle = &built.bond;
    let create = BondOptions {
        mode: bond.mode.as_ref().map(|m| m.value),
        ..BondOptions::default()
    };
    let mode_text = create
        .mode
        .map_or("the default mode".to_string(), |m| format!("mode {m}"));
    netlink::add_bond(h, &bond.name, &create)
        .await
        .map_err(|r| {
            Error::run(format!(
                "the kernel refused to create bond {} ({mode_text}): {r}",
                bond.name
            ))
        })?;
    let bond_index = netlink::index_of(h, &bond.name)
        .await
        .map_err(|r| Error::run(format!("bond {} vanished after creation: {r}", bond.name)))?;
    let mut applied = Applied {
        bond_index,
        steps: vec![Step {
            action: format!("create {} ({mode_text})", bond.name),
            refused: None,
        }],
    };

    let options = [
        (
            "miimon",
            &bond.miimon,
            BondOptions {
                miimon: bond.miimon.as_ref().map(|s| s.value),
                ..Default::default()
            },
        ),
        (
            "updelay",
            &bond.updelay,
            BondOptions {
                updelay: bond.updelay.as_ref().map(|s| s.value),
                ..Default::default()
            },
        ),
        (
            "downdelay",
            &bond.downdelay,
            BondOptions {
                downdelay: bond.downdelay.as_ref().map(|s| s.value),
                ..Default::default()
            },
        ),
    ];
    for (name, setting, opts) in options {
        if let Some(s) = setting {
            let answer = netlink::change_bond(h, bond_index, &opts).await;
            applied.record(format!("set {name} {}", s.value), answer);
        }
    }

    let mut enslaved = Vec::new();
    for slave in &bond.slaves {
        let answer = match netlink::index_of(h, &slave.value).await {
            Ok(index) => netlink::enslave(h, index, bond_index)
                .await
                .map(|()| enslaved.push((&slave.value, index))),
            Err(r) => Err(r),
        };
        applied.record(format!("enslave {}", slave.value), answer);
    }

    if let Some(primary) = &bond.primary {
        if let Some((name, index)) = primary
            .value
            .iter()
            .find_map(|p| enslaved.iter().find(|(n, _)| *n == p))
        {
            let answer = netlink::set_primary(h, bond_index, *index).await;
            applied.record(format!("set primary {name}"), answer);
        }
    }

    let answer = netlink::set_up(h, bond_index, true).await;
    applied.record(format!("bring {} up", bond.name), answer);
    for (name, index) in &enslaved {
        // bond_enslave opens the slave itself; this is what ifup of the slave would do again.
        let answer = netlink::set_up(h, *index, true).await;
        applied.record(format!("bring {name} up"), answer);
    }

    if let Some(address) = &bond.address {
        let answer = netlink::add_address(h, bond_index, address.value).await;
        applied.record(format!("add address {}", address.value), answer);
    }
    Ok(applied)
}
