//! The netlink applier: carries out ifenslave's plan for the spec (`ifenslave.rs`) with one
//! rtnetlink request per step, so a value the kernel refuses is recorded and the rest still
//! applied, exactly as ifenslave's sysfs writes behave. What is sent is what the spec says, not
//! what the model expects: the kernel's answer is what is under test.

use rtnetlink::Handle;

use crate::error::{Error, Result};
use crate::ifenslave::{self, Applier, Step, Write};
use crate::model::{Answer, step_label};
use crate::netlink;
use crate::options;
use crate::spec::Spec;
use crate::topology::Built;

/// One step, the kernel's answer, and the kernel's own words when it refused.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Applied {
    #[serde(flatten)]
    pub answer: Answer,
    /// The extended ACK message of a refusal.
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub bond_index: u32,
    pub steps: Vec<Applied>,
    /// Whether `steps` are the kernel's answers to the plan's writes, one by one.
    pub answers_observed: bool,
}

impl Outcome {
    /// The kernel's answer to every write, where the applier sees them.
    pub fn answers(&self) -> Option<Vec<Answer>> {
        self.answers_observed
            .then(|| self.steps.iter().map(|s| s.answer.clone()).collect())
    }
}

pub async fn apply(spec: &Spec, built: &Built) -> Result<Outcome> {
    let bond = &spec.bond;
    let h: &Handle = &built.bond;
    netlink::add_bond(h, &bond.name).await.map_err(|r| {
        Error::run(format!(
            "the kernel refused to create bond {}: {r}",
            bond.name
        ))
    })?;
    let bond_index = netlink::index_of(h, &bond.name)
        .await
        .map_err(|r| Error::run(format!("bond {} vanished after creation: {r}", bond.name)))?;
    let mut out = Outcome {
        bond_index,
        steps: Vec::new(),
        answers_observed: true,
    };
    let mut enslaved: Vec<String> = Vec::new();
    for step in ifenslave::plan(bond, Applier::Netlink) {
        let (label, answer) = match &step {
            Step::Create => (step_label(&step, None), Ok(())),
            Step::Set { opt, value } => (
                step_label(&step, None),
                netlink::set_option(h, bond_index, opt, value).await,
            ),
            Step::SlaveUp(name) => (step_label(&step, None), slave_up(h, name).await),
            Step::Enslave(name) => {
                let answer = match netlink::index_of(h, name).await {
                    Ok(index) => netlink::enslave(h, index, bond_index).await,
                    Err(r) => Err(r),
                };
                if answer.is_ok() {
                    enslaved.push(name.clone());
                }
                (step_label(&step, None), answer)
            }
            Step::Primary(candidates) => {
                // ifenslave writes the first candidate it finds among the bond's slaves, if any.
                let Some(name) = candidates.iter().find(|c| enslaved.contains(c)) else {
                    continue;
                };
                let primary = options::by_name("primary").expect("catalogued");
                let answer =
                    netlink::set_option(h, bond_index, primary, &Write::Slave(Some(name.clone())))
                        .await;
                (step_label(&step, Some(name)), answer)
            }
            Step::Up => (
                step_label(&step, None),
                netlink::set_up(h, bond_index, true).await,
            ),
            Step::Address(a) => (
                step_label(&step, None),
                netlink::add_address(h, bond_index, *a).await,
            ),
        };
        let (refused, message) = match answer {
            Ok(()) => (None, None),
            Err(r) => (Some(r.errno), r.message),
        };
        out.steps.push(Applied {
            answer: Answer {
                step: label,
                refused,
            },
            message,
        });
    }
    Ok(out)
}

async fn slave_up(h: &Handle, name: &str) -> netlink::Answer {
    let index = netlink::index_of(h, name).await?;
    netlink::set_up(h, index, true).await
}
