//! Checks: each model expectation compared with what the kernel reports, plus the comparison of
//! the kernel's two views of the bond. A check's verdict carries both values, the rule, and a
//! message that says what differs.

use std::time::Duration;

use crate::distribution::{Expected, Prediction};
use crate::kmsg::{self, Known, Record, is_trouble};
use crate::model::{
    ANSWERS, Answer, DISTRIBUTION, Expectation, FAILOVER, Model, Rule, Selection, VIEWS_AGREE,
    Value, Window,
};
use crate::observe::{BondView, SlaveView};
use crate::timing::{Flap, Measured, Sample};
use crate::traffic::{Arrival, Sent};

/// A check's (or a case's) outcome.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Failed the driver's contract exactly as a known deviation of this kernel says
    /// (`deviation.rs`): neither passed nor failed.
    Known,
    Skip,
    Error,
}

/// A number measured while checking, with its unit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Measurement {
    /// What was measured, e.g. `trial_3`, `median`, `settle_wait`, `enp1s0.observed`.
    pub name: String,
    /// The number; a number that is not finite is written as null.
    #[schemars(extend("type" = ["number", "null"]))]
    pub value: f64,
    /// Its unit, e.g. `ms` or `frames`; empty for a bare count.
    pub unit: &'static str,
}

/// One check's verdict: the values compared, the rule behind the expectation, a message.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Verdict {
    /// The check's id, e.g. `option.updelay`, `slave.enp1s0.mii_status`, `timing.downdelay`.
    pub check: String,
    /// `pass`, `fail`, `known` (failed the contract as a known deviation of this kernel says;
    /// the case's `known_deviations` has the entry), `skip` (not judged, the message says why)
    /// or `error`.
    pub status: Status,
    /// What the spec asked for, as written.
    pub requested: Option<String>,
    /// The model's value (for `apply.answers` the refusals it predicts; null where nothing is
    /// expected).
    pub expected: Option<Value>,
    /// As netlink reports it.
    pub observed: Option<Value>,
    /// As /proc/net/bonding reports it, where it shows the value.
    pub observed_procfs: Option<Value>,
    /// The values' unit, e.g. `ms`, if they have one.
    pub unit: Option<&'static str>,
    /// Why the value is expected, and where that is written.
    pub rule: Option<Rule>,
    /// One line: on failure, expected against observed in each view, and the rule.
    pub message: String,
    /// Numbers measured while checking (timing samples and their window, settle waits, frames
    /// per slave).
    pub measurements: Vec<Measurement>,
}

impl Verdict {
    /// A verdict that compares one expected text with one observed text (netlink's view).
    pub fn compared(
        check: String,
        status: Status,
        (expected, observed): (String, String),
        rule: Rule,
        message: String,
        measurements: Vec<Measurement>,
    ) -> Verdict {
        Verdict {
            check,
            requested: None,
            status,
            expected: Some(Value::Text(expected)),
            observed: Some(Value::Text(observed)),
            observed_procfs: None,
            unit: None,
            rule: Some(rule),
            message,
            measurements,
        }
    }

    /// A verdict that passes when no problem was found and otherwise fails with them, the
    /// expected and observed texts and the rule in its message.
    pub fn from_problems(
        check: String,
        (expected, observed): (String, String),
        problems: &[String],
        rule: Rule,
    ) -> Verdict {
        let (status, message) = if problems.is_empty() {
            (Status::Pass, observed.clone())
        } else {
            (
                Status::Fail,
                format!(
                    "{}; expected {expected}, observed {observed}; rule: {} ({})",
                    problems.join("; "),
                    rule.text,
                    rule.source
                ),
            )
        };
        Verdict::compared(
            check,
            status,
            (expected, observed),
            rule,
            message,
            Vec::new(),
        )
    }

    /// This verdict, not judged for `why`.
    pub fn skipped(self, why: &str) -> Verdict {
        Verdict {
            status: Status::Skip,
            message: format!("skipped: {why}"),
            ..self
        }
    }

    /// Every check of `ids`, not judged for `why`; `source` is where their rules are written.
    pub fn all_skipped(ids: Vec<String>, why: &str, source: &'static str) -> Vec<Verdict> {
        ids.into_iter()
            .map(|check| {
                let rule = Rule {
                    text: String::new(),
                    source,
                };
                Verdict::from_problems(check, (String::new(), String::new()), &[], rule)
                    .skipped(why)
            })
            .collect()
    }

    /// A verdict judged by its rule alone, with no single expected or observed value: what
    /// was seen is in the message and the measurements.
    pub fn judged(
        check: &str,
        status: Status,
        unit: Option<&'static str>,
        rule: Rule,
        message: String,
        measurements: Vec<Measurement>,
    ) -> Verdict {
        Verdict {
            check: check.into(),
            requested: None,
            status,
            expected: None,
            observed: None,
            observed_procfs: None,
            unit,
            rule: Some(rule),
            message,
            measurements,
        }
    }
}

/// Everything the checks look at, gathered from the kernel.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Observation {
    /// The bond as netlink reports it (IFLA_BOND_*, IFLA_BOND_SLAVE_*).
    pub netlink: BondView,
    /// The bond as /proc/net/bonding reports it.
    pub procfs: BondView,
    /// /proc/net/bonding/<bond> as read.
    pub procfs_text: String,
    /// The kernel's answer to every step of the plan, where the applier sees them.
    pub answers: Option<Vec<Answer>>,
    /// The bond's IPv4 addresses, `address/prefix`.
    pub addresses: Vec<String>,
    /// How long the harness waited for the slaves to settle, and its deadline.
    #[serde(skip)]
    pub settle_waited: Duration,
    #[serde(skip)]
    pub settle_deadline: Duration,
}

/// Compares every expectation with the netlink view and the two views with each other.
pub fn evaluate(model: &Model, obs: &Observation) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = model.expectations.iter().map(|e| compare(e, obs)).collect();
    out.push(match &obs.answers {
        Some(answers) => answers_agree(&model.answers, answers),
        None => Verdict {
            message: "skipped: this applier does not show the kernel's answer to each write".into(),
            status: Status::Skip,
            observed: None,
            ..answers_agree(&model.answers, &[])
        },
    });
    out.push(views_agree(&obs.netlink, &obs.procfs));
    out
}

/// What one view of the bond shows for `check`; None where that view has no such field.
fn observed_in(check: &str, v: &BondView) -> Option<Value> {
    if let Some(param) = check.strip_prefix("option.") {
        return v.options.get(param).cloned();
    }
    let (slave, field) = check.strip_prefix("slave.")?.rsplit_once('.')?;
    let Some(s) = v.slave(slave) else {
        return Some(Value::Text("not enslaved".into()));
    };
    match field {
        "mii_status" => s.mii_status.clone().map(Value::Text),
        "queue_id" => s.queue_id.map(|q| Value::Number(q.into())),
        "prio" => s.prio.map(|p| Value::Text(p.to_string())),
        _ => None,
    }
}

/// The bond's addresses as the check sees them: the expected one if present, else all.
fn observed_address(expected: &Value, addresses: &[String]) -> Value {
    match expected {
        Value::Text(want) if addresses.contains(want) => expected.clone(),
        _ if addresses.is_empty() => Value::None,
        _ => Value::Text(addresses.join(", ")),
    }
}

/// Passes when every view that shows the value shows the expected one.
fn compare(e: &Expectation, obs: &Observation) -> Verdict {
    let (got, got_procfs) = match e.check.as_str() {
        "address" => (observed_address(&e.expected, &obs.addresses), None),
        check => match observed_in(check, &obs.netlink) {
            Some(got) => (got, observed_in(check, &obs.procfs)),
            // A kernel too old to report the attribute: nothing was observed, nothing judged.
            None => return skipped(e, "the kernel does not report this over netlink"),
        },
    };
    let unit = e.unit.map(|u| format!(" {u}")).unwrap_or_default();
    let pass = got == e.expected && got_procfs.as_ref().is_none_or(|p| *p == e.expected);
    let seen = match &got_procfs {
        Some(p) if *p == got => format!("{got}{unit} (netlink and /proc)"),
        Some(p) => format!("{got}{unit} (netlink), {p}{unit} (/proc)"),
        None => format!("{got}{unit} (netlink)"),
    };
    let asked = e
        .requested
        .as_ref()
        .map(|r| format!("requested {r}, "))
        .unwrap_or_default();
    let mut message = if pass {
        format!("{asked}expected and observed {seen}")
    } else {
        format!(
            "{asked}expected {}{unit}, observed {seen}; rule: {} ({})",
            e.expected, e.rule.text, e.rule.source
        )
    };
    let mut measurements = Vec::new();
    if e.check.starts_with("slave.") {
        measurements.push(Measurement {
            name: "settle_wait".into(),
            value: obs.settle_waited.as_secs_f64() * 1e3,
            unit: "ms",
        });
        measurements.push(Measurement {
            name: "settle_deadline".into(),
            value: obs.settle_deadline.as_secs_f64() * 1e3,
            unit: "ms",
        });
        if !pass {
            message += &format!(" — after waiting {} ms", obs.settle_waited.as_millis());
        }
    }
    Verdict {
        check: e.check.clone(),
        requested: e.requested.clone(),
        status: if pass { Status::Pass } else { Status::Fail },
        expected: Some(e.expected.clone()),
        observed: Some(got),
        observed_procfs: got_procfs,
        unit: e.unit,
        rule: Some(e.rule.clone()),
        message,
        measurements,
    }
}

/// Ids of the MII monitor's timing checks, for timing cases under MII monitoring (the ARP
/// monitor's are `arpmon::CHECKS`).
pub const TIMING: [&str; 2] = ["timing.downdelay", "timing.updelay"];

/// The id of the link failure count check, for every timing case.
pub const LINK_FAILURES: &str = "timing.link_failure_count";

/// The id of the flap check, for timing cases with a downdelay of a tick or more.
pub const FLAP: &str = "timing.flap";

/// When the kernel made a sample's commit, in ms after the cut, as far as the clocks bound it:
/// no later than the netlink notification's receipt (the commit sends it) and, where the
/// kernel logged the commit, within what the record's stamp allows (the calibrated offsets of
/// `kmsg::Clock`, and a record carries the last step of the log's clock before it). The
/// receipt alone also counts the time bondcheck waited to be scheduled, which a loaded host
/// stretches: once a notification came 88 ms after the kernel had logged its commit on time.
/// Returns the receipt, the earliest and the latest; None if no commit was announced.
fn commit_bounds(s: &Sample, clock: Option<&kmsg::Clock>) -> Option<(f64, f64, f64)> {
    let heard = s.netlink_ms?;
    Some(match (s.kmsg_ms, clock) {
        (Some(k), Some(c)) => {
            let half = (c.offset_max - c.offset_min) / 2.0;
            let latest = heard.min(k + half + c.resolution);
            (heard, (k - half).min(latest), latest)
        }
        _ => (heard, heard, heard),
    })
}

/// Every sample of a transition inside its window: strictly after the lower bound (the driver
/// cannot commit earlier) and at most the upper bound plus the backend's tolerance, its commit
/// bounded by [`commit_bounds`]: too early only if it came at the lower bound or before for
/// certain, too late only if certainly past the upper bound and the tolerance.
fn window_verdict(
    check: &str,
    window: &Window,
    samples: &[Sample],
    clock: Option<&kmsg::Clock>,
    tolerance_ms: f64,
) -> Verdict {
    let limit = window.upper_ms + tolerance_ms;
    // The window itself as numbers, for readers that draw it (the HTML report's timelines).
    let mut measurements: Vec<Measurement> = [
        ("window_lower", window.lower_ms),
        ("window_upper", window.upper_ms),
        ("tolerance", tolerance_ms),
    ]
    .into_iter()
    .map(|(name, value)| Measurement {
        name: name.into(),
        value,
        unit: "ms",
    })
    .collect();
    let mut problems = Vec::new();
    let mut late_receipts = Vec::new();
    let mut got = Vec::new();
    for s in samples {
        match commit_bounds(s, clock) {
            Some((v, earliest, latest)) => {
                got.push(v);
                measurements.push(Measurement {
                    name: format!("trial_{}", s.trial),
                    value: v,
                    unit: "ms",
                });
                // How much of the tolerance the commit used (0 inside the model's window).
                measurements.push(Measurement {
                    name: format!("trial_{}_tolerance_used", s.trial),
                    value: (earliest - window.upper_ms).max(0.0),
                    unit: "ms",
                });
                if latest <= window.lower_ms {
                    problems.push(format!(
                        "trial {}: committed by {latest:.1} ms, not after {} ms",
                        s.trial, window.lower_ms
                    ));
                } else if earliest > limit {
                    problems.push(format!(
                        "trial {}: committed at {earliest:.1} ms or later, past {} ms + tolerance \
                         {tolerance_ms} ms",
                        s.trial, window.upper_ms
                    ));
                }
                if v - latest > tolerance_ms {
                    late_receipts.push(format!(
                        "trial {}: the notification came {:.1} ms after the kernel logged the \
                         commit",
                        s.trial,
                        v - latest
                    ));
                }
            }
            None => problems.push(format!(
                "trial {}: no commit announced within the deadline",
                s.trial
            )),
        }
        if let Some(k) = s.kmsg_ms {
            measurements.push(Measurement {
                name: format!("trial_{}_kernel_log", s.trial),
                value: k,
                unit: "ms",
            });
        }
    }
    let mut sorted = got.clone();
    sorted.sort_by(f64::total_cmp);
    let summary = match (sorted.first(), sorted.get(sorted.len() / 2), sorted.last()) {
        (Some(min), Some(median), Some(max)) => {
            for (name, value) in [("min", *min), ("median", *median), ("max", *max)] {
                measurements.push(Measurement {
                    name: name.into(),
                    value,
                    unit: "ms",
                });
            }
            format!("min {min:.1} / median {median:.1} / max {max:.1} ms")
        }
        _ => "no sample".into(),
    };
    let window_text = format!("({}, {}] ms", window.lower_ms, window.upper_ms);
    let list = got
        .iter()
        .map(|v| format!("{v:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    // A trial whose commit the log did not tell (unreadable, or said by two bonds) shows "-".
    let kernel_log = if samples.iter().all(|s| s.kmsg_ms.is_none()) {
        "not read".to_string()
    } else {
        samples
            .iter()
            .map(|s| s.kmsg_ms.map_or("-".to_string(), |k| format!("{k:.1}")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let clocks = format!("netlink [{list}] ms; kernel log [{kernel_log}] ms");
    let clocks = if late_receipts.is_empty() {
        clocks
    } else {
        format!(
            "{clocks} (judged by the kernel log: {})",
            late_receipts.join("; ")
        )
    };
    let (status, message) = if problems.is_empty() {
        (
            Status::Pass,
            format!(
                "{} samples in {window_text} (+{tolerance_ms} ms tolerance): {clocks}",
                got.len()
            ),
        )
    } else {
        (
            Status::Fail,
            format!(
                "{}; window {window_text} (+{tolerance_ms} ms tolerance); {clocks}; rule: {}",
                problems.join("; "),
                window.rule.text
            ),
        )
    };
    Verdict {
        check: check.into(),
        requested: None,
        status,
        expected: Some(Value::Text(window_text)),
        observed: Some(Value::Text(summary)),
        observed_procfs: None,
        unit: Some("ms"),
        rule: Some(window.rule.clone()),
        message,
        measurements,
    }
}

/// The timing checks of a case: both windows, under the monitor's check ids `ids` (down, up;
/// windows None when the kernel's HZ is unknown, which leaves nothing to judge against), and
/// the link failure count (+1 per committed down).
pub fn timing(
    ids: [&str; 2],
    measured: &Measured,
    windows: Option<&(Window, Window)>,
    tolerance_ms: f64,
) -> Vec<Verdict> {
    let mut out = match windows {
        Some((down, up)) => vec![
            window_verdict(
                ids[0],
                down,
                &measured.down,
                measured.log_clock.as_ref(),
                tolerance_ms,
            ),
            window_verdict(
                ids[1],
                up,
                &measured.up,
                measured.log_clock.as_ref(),
                tolerance_ms,
            ),
        ],
        None => ids
            .iter()
            .map(|c| Verdict {
                check: c.to_string(),
                requested: None,
                status: Status::Skip,
                expected: None,
                observed: None,
                observed_procfs: None,
                unit: Some("ms"),
                rule: None,
                message:
                    "skipped: the kernel's HZ is unknown, so there is no window to judge samples by"
                        .into(),
                measurements: Vec::new(),
            })
            .collect(),
    };
    let commits = measured
        .down
        .iter()
        .filter(|s| s.netlink_ms.is_some())
        .count() as u64;
    let expected = u64::from(measured.link_failures_before) + measured.down.len() as u64;
    let observed = u64::from(measured.link_failures_after);
    let pass = observed == expected;
    out.push(Verdict {
        check: LINK_FAILURES.into(),
        requested: None,
        status: if pass { Status::Pass } else { Status::Fail },
        expected: Some(Value::Number(expected)),
        observed: Some(Value::Number(observed)),
        observed_procfs: None,
        unit: None,
        rule: Some(Rule {
            text: "each committed DOWN adds one to the slave's link failure count (bond_miimon_commit; \
                   bond_ab_arp_commit and bond_loadbalance_arp_mon under ARP monitoring)"
                .into(),
            source: "drivers/net/bonding/bond_main.c",
        }),
        message: format!(
            "{} cuts of {} ({commits} downs announced): link failure count {} -> {observed}, expected {expected}",
            measured.down.len(),
            measured.slave,
            measured.link_failures_before
        ),
        measurements: Vec::new(),
    });
    out
}

/// A flap shorter than downdelay (of `down_ticks` ≥ 1): seen going down, back up at the next
/// tick, with nothing announced and no link failure counted.
pub fn flap(f: &Flap, down_ticks: u64) -> Verdict {
    let rule = Rule {
        text: "with downdelay D ≥ 1 tick, a slave whose carrier is lost is \"going down\" (FAIL) \
               from the first tick; if the carrier returns before the D-th tick it goes back to \
               up at the next tick: no DOWN commit, no announcement, no link failure counted \
               (bond_miimon_inspect)"
            .into(),
        source: "drivers/net/bonding/bond_main.c",
    };
    let verdict = |status, message: String, measurements| {
        Verdict::judged(
            FLAP,
            status,
            Some("ms"),
            rule.clone(),
            message,
            measurements,
        )
    };
    let mut measurements = vec![Measurement {
        name: "restored".into(),
        value: f.restored_ms,
        unit: "ms",
    }];
    measurements.extend(f.going_down_ms.map(|v| Measurement {
        name: "going_down".into(),
        value: v,
        unit: "ms",
    }));
    measurements.extend(f.up_ms.map(|v| Measurement {
        name: "up".into(),
        value: v,
        unit: "ms",
    }));
    let mut problems = Vec::new();
    if f.going_down_ms.is_none() {
        problems.push("it was never seen going down".to_string());
    }
    if f.up_ms.is_none() {
        problems.push("it was not up again by the deadline".to_string());
    }
    if !f.announced.is_empty() {
        problems.push("the kernel committed it down".to_string());
    }
    if f.link_failures_after != f.link_failures_before {
        problems.push(format!(
            "its link failure count went {} -> {}",
            f.link_failures_before, f.link_failures_after
        ));
    }
    let timeline = format!(
        "from the cut: going down {}, carrier back {:.1} ms, up {} (downdelay {down_ticks} tick{})",
        f.going_down_ms
            .map_or("never".into(), |v| format!("{v:.1} ms")),
        f.restored_ms,
        f.up_ms.map_or("never".into(), |v| format!("{v:.1} ms")),
        if down_ticks == 1 { "" } else { "s" },
    );
    if problems.is_empty() {
        verdict(
            Status::Pass,
            format!(
                "{} flapped and came back without going down: {timeline}; link failure count \
                 stayed {}",
                f.slave, f.link_failures_after
            ),
            measurements,
        )
    } else {
        verdict(
            Status::Fail,
            format!(
                "a flap of {} shorter than downdelay: {}; {timeline}",
                f.slave,
                problems.join("; ")
            ),
            measurements,
        )
    }
}

/// The id of the kernel log check, which every case has.
pub const KERNEL_LOG: &str = "kernel.log";

/// Nothing went wrong in the kernel while the case ran: no oops, WARN or BUG, no record at
/// error level or worse, but for messages known to be harmless and, while the spec was
/// applied, one error per refused write the model predicts (the kernel logs its refusals);
/// both are reported, not failed. `log` holds the records of the apply phase and of the rest
/// of the case; None: the log could not be read.
pub fn kernel_log(
    log: Option<(&[Record], &[Record])>,
    known: &[Known],
    refusals: usize,
) -> Verdict {
    let rule = Rule {
        text: "a correct driver logs no oops, WARN or BUG and no error; the known harmless \
               messages are listed with their upstream origin in \
               harness/data/known-kernel-messages.toml"
            .into(),
        source: "Documentation/admin-guide/bug-hunting.rst",
    };
    let verdict = |status, message| {
        Verdict::judged(KERNEL_LOG, status, None, rule.clone(), message, Vec::new())
    };
    let Some((applying, after)) = log else {
        return verdict(
            Status::Skip,
            "skipped: the kernel log (/dev/kmsg) cannot be read and written here".into(),
        );
    };
    let troubled = |records: &[Record]| -> Vec<Record> {
        records.iter().filter(|r| is_trouble(r)).cloned().collect()
    };
    let mut during_apply = troubled(applying);
    let refused_logged = during_apply.len().min(refusals);
    let mut trouble = during_apply.split_off(refused_logged);
    trouble.extend(troubled(after));
    let records = [applying, after].concat();
    let trouble: Vec<&Record> = trouble.iter().collect();
    let (harmless, bad): (Vec<&Record>, Vec<&Record>) = trouble
        .into_iter()
        .partition(|r| known.iter().any(|k| r.message.contains(&k.contains)));
    let mut notes: Vec<String> = known
        .iter()
        .filter_map(|k| {
            let n = harmless
                .iter()
                .filter(|r| r.message.contains(&k.contains))
                .count();
            (n > 0).then(|| format!("{n}× known \"{}\" ({})", k.contains, k.upstream))
        })
        .collect();
    if refused_logged > 0 {
        notes.push(format!(
            "{refused_logged} error{} logged while applying, for the {refusals} refused write{} the \
             model predicts",
            if refused_logged == 1 { "" } else { "s" },
            if refusals == 1 { "" } else { "s" }
        ));
    }
    if bad.is_empty() {
        notes.insert(0, format!("{} records, nothing wrong", records.len()));
        return verdict(Status::Pass, notes.join("; "));
    }
    let shown: Vec<String> = bad
        .iter()
        .take(5)
        .map(|r| format!("  <{}> {}", r.level, r.message))
        .collect();
    verdict(
        Status::Fail,
        format!(
            "{} record{} of trouble from the kernel during the case:\n{}{}",
            bad.len(),
            if bad.len() == 1 { "" } else { "s" },
            shown.join("\n"),
            if notes.is_empty() {
                String::new()
            } else {
                format!("\n{}", notes.join("; "))
            }
        ),
    )
}

/// The active slave after every cut and every restore of the timing trials, against the
/// model's selection (primary, prio, primary_reselect).
pub fn failover(measured: &Measured, selection: &Selection) -> Vec<Verdict> {
    let (after_cut, after_restore) = selection.expected(&measured.slave, measured.down.len());
    let text = |v: &[Option<String>]| {
        v.iter()
            .map(|a| a.as_deref().unwrap_or("none"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    [(FAILOVER[0], after_cut, &measured.down), (FAILOVER[1], after_restore, &measured.up)]
        .into_iter()
        .map(|(check, expected, samples)| {
            let observed: Vec<Option<String>> = samples.iter().map(|s| s.active.clone()).collect();
            let wrong = expected.iter().zip(&observed).position(|(e, o)| e != o);
            let (status, message) = match wrong {
                None => (Status::Pass, format!("active slave as expected in all {} trials: {}", observed.len(), text(&observed))),
                Some(i) => (
                    Status::Fail,
                    format!(
                        "trial {}: expected {} active, observed {}; expected [{}], observed [{}]; primary {}, \
                         primary_reselect {}",
                        i + 1,
                        expected[i].as_deref().unwrap_or("none"),
                        observed[i].as_deref().unwrap_or("none"),
                        text(&expected),
                        text(&observed),
                        selection.primary.as_deref().unwrap_or("none"),
                        selection.reselect
                    ),
                ),
            };
            Verdict {
                check: check.into(),
                requested: None,
                status,
                expected: Some(Value::Text(text(&expected))),
                observed: Some(Value::Text(text(&observed))),
                observed_procfs: None,
                unit: None,
                rule: Some(Rule {
                    text: "the active slave is re-chosen when it goes down, or when the primary, a slave with \
                           a higher prio or any slave with none active comes up: the primary if up, else the \
                           first slave up with the highest prio, kept or replaced per primary_reselect"
                        .into(),
                    source: "drivers/net/bonding/bond_main.c (bond_choose_primary_or_current, bond_miimon_commit)",
                }),
                message,
                measurements: Vec::new(),
            }
        })
        .collect()
}

fn skipped(e: &Expectation, why: &str) -> Verdict {
    Verdict {
        check: e.check.clone(),
        requested: e.requested.clone(),
        status: Status::Skip,
        expected: Some(e.expected.clone()),
        observed: None,
        observed_procfs: None,
        unit: e.unit,
        rule: Some(e.rule.clone()),
        message: format!("skipped: {why}"),
        measurements: Vec::new(),
    }
}

/// The kernel's answer to every step against the model's, step by step.
fn answers_agree(expected: &[Answer], observed: &[Answer]) -> Verdict {
    let refusals = |list: &[Answer]| {
        let r: Vec<String> = list
            .iter()
            .filter_map(|a| a.refused.as_ref().map(|e| format!("{}: {e}", a.step)))
            .collect();
        if r.is_empty() {
            Value::None
        } else {
            Value::Text(r.join("; "))
        }
    };
    let first_difference = expected
        .iter()
        .zip(observed)
        .position(|(e, o)| e != o)
        .or_else(|| (expected.len() != observed.len()).then(|| expected.len().min(observed.len())));
    let show = |a: Option<&Answer>| match a {
        Some(Answer {
            step,
            refused: Some(e),
        }) => format!("{step} refused ({e})"),
        Some(Answer {
            step,
            refused: None,
        }) => format!("{step} accepted"),
        None => "nothing".into(),
    };
    let (status, message) = match first_difference {
        None => (
            Status::Pass,
            format!(
                "the kernel answered all {} steps as expected",
                expected.len()
            ),
        ),
        Some(i) => (
            Status::Fail,
            format!(
                "step {}: expected {}, observed {}",
                i + 1,
                show(expected.get(i)),
                show(observed.get(i))
            ),
        ),
    };
    Verdict {
        check: ANSWERS.into(),
        requested: None,
        status,
        expected: Some(refusals(expected)),
        observed: Some(refusals(observed)),
        observed_procfs: None,
        unit: None,
        rule: Some(Rule {
            text: "each write is judged by bond_opt_check_deps and the option's set function against the \
                   state the earlier writes left, in ifenslave's order"
                .into(),
            source: "drivers/net/bonding/bond_options.c; ifenslave 2.13 if-pre-up.d/ifenslave",
        }),
        message,
        measurements: Vec::new(),
    }
}

/// Lists every field that both views show and that differs between them.
pub fn view_differences(netlink: &BondView, procfs: &BondView) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut field = |name: String, a: Option<String>, b: Option<String>| {
        if let (Some(a), Some(b)) = (a, b) {
            if a != b {
                diffs.push(format!("{name}: netlink {a}, /proc {b}"));
            }
        }
    };
    for (param, a) in &netlink.options {
        field(
            param.clone(),
            Some(a.to_string()),
            procfs.options.get(param).map(ToString::to_string),
        );
    }
    let names = |v: &BondView| {
        v.slaves
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
            .join(" ")
    };
    field("slaves".into(), Some(names(netlink)), Some(names(procfs)));
    for a in &netlink.slaves {
        let Some(b) = procfs.slave(&a.name) else {
            continue;
        };
        let per = |f: fn(&SlaveView) -> Option<String>| (f(a), f(b));
        for (name, (x, y)) in [
            ("mii_status", per(|s| s.mii_status.clone())),
            (
                "link_failure_count",
                per(|s| s.link_failure_count.map(|v| v.to_string())),
            ),
            ("perm_hwaddr", per(|s| s.perm_hwaddr.clone())),
            ("queue_id", per(|s| s.queue_id.map(|v| v.to_string()))),
        ] {
            field(format!("{}.{name}", a.name), x, y);
        }
    }
    diffs
}

fn views_agree(netlink: &BondView, procfs: &BondView) -> Verdict {
    let diffs = view_differences(netlink, procfs);
    let (status, message) = if diffs.is_empty() {
        (
            Status::Pass,
            "netlink and /proc/net/bonding agree on every field both show".to_string(),
        )
    } else {
        (
            Status::Fail,
            format!(
                "netlink and /proc/net/bonding disagree: {}",
                diffs.join("; ")
            ),
        )
    };
    let rule = Rule {
        text: "both views are read from the same bond and must report the same state".into(),
        source: "drivers/net/bonding/bond_netlink.c, bond_procfs.c",
    };
    Verdict::judged(VIEWS_AGREE, status, None, rule, message, Vec::new())
}

/// Standard deviations a random slave's frame count may stray from its mean: about one false
/// failure in two million per slave.
const SHARE_SIGMAS: f64 = 5.0;

/// Where a frame goes or went, in words: `on eth0`, `on eth0+eth1`, `nowhere`.
pub(crate) fn place(slaves: &[usize], names: &[String]) -> String {
    match slaves {
        [] => "nowhere".into(),
        _ => format!(
            "on {}",
            slaves
                .iter()
                .map(|s| names[*s].as_str())
                .collect::<Vec<_>>()
                .join("+")
        ),
    }
}

/// Where every frame of the run was seen, in sequence order: the slaves (sorted) whose peer
/// captured it, a slave once per copy.
pub(crate) fn seen_on(arrivals: &[Arrival], frames: usize) -> Vec<Vec<usize>> {
    let mut seen = vec![Vec::new(); frames];
    for a in arrivals {
        if let Some(s) = seen.get_mut(a.seq as usize) {
            s.push(a.slave);
        }
    }
    for s in &mut seen {
        s.sort_unstable();
    }
    seen
}

/// Compares where each frame went with where the model says it goes: frame by frame where
/// the driver is deterministic, by counts within binomial bounds where it draws at random.
/// Every copy must also carry the VLAN tag its frame was sent with (`tags`, by sequence
/// number; none past its end): the bond passes tags through untouched.
pub fn distribution(
    expected: &Expected,
    sent: &Sent,
    slaves: &[String],
    tags: &[Option<u16>],
) -> Verdict {
    let seen = seen_on(&sent.arrivals, sent.frames);
    let mut measurements = Vec::new();
    let count = |per: &[Vec<usize>], s: usize| per.iter().flatten().filter(|x| **x == s).count();
    let verdict = |status, message, measurements| {
        distribution_verdict(expected, status, message, measurements)
    };
    if let Some(why) = sent.incomplete() {
        return verdict(Status::Error, why, measurements);
    }
    let (per_frame, fitted) = match &expected.prediction {
        Prediction::Exact(per) if per.is_empty() && sent.frames > 0 => {
            (vec![Vec::new(); sent.frames], None)
        }
        Prediction::Exact(per) => (per.clone(), None),
        Prediction::Rotation(cycle) => {
            let phase = fit_phase(cycle, &seen);
            let per = (0..sent.frames)
                .map(|i| vec![cycle[(phase + i) % cycle.len()]])
                .collect();
            (per, Some(phase))
        }
        Prediction::Shares(shares) => return shares_verdict(shares, &seen, slaves, verdict),
    };
    for (s, name) in slaves.iter().enumerate() {
        measurements.push(Measurement {
            name: format!("{name}.expected"),
            value: count(&per_frame, s) as f64,
            unit: "frames",
        });
        measurements.push(Measurement {
            name: format!("{name}.observed"),
            value: count(&seen, s) as f64,
            unit: "frames",
        });
    }
    let counts = slaves
        .iter()
        .enumerate()
        .map(|(s, n)| format!("{n} {}/{}", count(&seen, s), count(&per_frame, s)))
        .collect::<Vec<_>>()
        .join(", ");
    let phase = fitted.map_or(String::new(), |p| {
        measurements.push(Measurement {
            name: "rotation_phase".into(),
            value: p as f64,
            unit: "frames",
        });
        format!("; the rotation's start (the per-CPU counter) fitted at position {p}")
    });
    let wrong: Vec<usize> = (0..sent.frames)
        .filter(|i| seen[*i] != per_frame[*i])
        .collect();
    let tag = |seq: u32| tags.get(seq as usize).copied().flatten();
    let vlan = |v: Option<u16>| v.map_or("untagged".to_string(), |id| format!("VLAN {id}"));
    let mistagged: Vec<_> = sent
        .arrivals
        .iter()
        .filter(|a| a.vlan != tag(a.seq))
        .collect();
    if let (true, Some(a)) = (wrong.is_empty(), mistagged.first()) {
        return verdict(
            Status::Fail,
            format!(
                "every frame on the slaves the model puts it on, but {} copies arrived with \
                 another VLAN tag than they were sent with; the first is #{}: sent {}, arrived \
                 on {} {}",
                mistagged.len(),
                a.seq,
                vlan(tag(a.seq)),
                slaves[a.slave],
                vlan(a.vlan)
            ),
            measurements,
        );
    }
    let tagged = tags.iter().filter(|t| t.is_some()).count();
    let tagged = if tagged > 0 {
        format!("; {tagged} sent tagged, every copy arrived with its tag")
    } else {
        String::new()
    };
    let Some(&first) = wrong.first() else {
        return verdict(
            Status::Pass,
            format!(
                "all {} frames where the model puts them (observed/expected per slave: \
                 {counts}){phase}{tagged}",
                sent.frames
            ),
            measurements,
        );
    };
    let excerpt = (first.saturating_sub(3)..(first + 4).min(sent.frames))
        .map(|i| {
            format!(
                "  #{i}: expected {}, observed {}{}",
                place(&per_frame[i], slaves),
                place(&seen[i], slaves),
                if seen[i] == per_frame[i] { "" } else { "  <-" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    verdict(
        Status::Fail,
        format!(
            "{} of {} frames went elsewhere; the first is #{first}: expected {}, observed {} \
             (observed/expected per slave: {counts}){phase}\n{excerpt}",
            wrong.len(),
            sent.frames,
            place(&per_frame[first], slaves),
            place(&seen[first], slaves),
        ),
        measurements,
    )
}

/// The distribution check, not judged: `why` says what the model cannot predict.
pub fn distribution_skipped(expected: &Expected, why: &str) -> Verdict {
    distribution_verdict(
        expected,
        Status::Skip,
        format!("skipped: {why}"),
        Vec::new(),
    )
}

fn distribution_verdict(
    expected: &Expected,
    status: Status,
    message: String,
    measurements: Vec<Measurement>,
) -> Verdict {
    Verdict::judged(
        DISTRIBUTION,
        status,
        Some("frames"),
        expected.rule.clone(),
        message,
        measurements,
    )
}

/// The rotation's start that explains the longest run of frames from the first one.
pub(crate) fn fit_phase(cycle: &[usize], seen: &[Vec<usize>]) -> usize {
    let prefix = |phase: usize| {
        seen.iter()
            .enumerate()
            .take_while(|(i, s)| **s == [cycle[(phase + i) % cycle.len()]])
            .count()
    };
    (0..cycle.len())
        .max_by_key(|p| (prefix(*p), std::cmp::Reverse(*p)))
        .unwrap_or(0)
}

/// Random choice: every frame on exactly one slave, each slave's count within
/// mean ± SHARE_SIGMAS standard deviations of the binomial its share gives.
fn shares_verdict(
    shares: &[f64],
    seen: &[Vec<usize>],
    slaves: &[String],
    verdict: impl Fn(Status, String, Vec<Measurement>) -> Verdict,
) -> Verdict {
    let n = seen.len() as f64;
    let mut measurements = Vec::new();
    let mut problems = Vec::new();
    if let Some(i) = seen.iter().position(|s| s.len() != 1) {
        problems.push(format!(
            "frame #{i} was seen {} instead of on exactly one slave",
            place(&seen[i], slaves)
        ));
    }
    let mut counts = Vec::new();
    for (s, (name, p)) in slaves.iter().zip(shares).enumerate() {
        let got = seen.iter().flatten().filter(|x| **x == s).count() as f64;
        let mean = n * p;
        let spread = SHARE_SIGMAS * (n * p * (1.0 - p)).sqrt();
        let (lo, hi) = ((mean - spread).max(0.0), mean + spread);
        measurements.push(Measurement {
            name: format!("{name}.observed"),
            value: got,
            unit: "frames",
        });
        measurements.push(Measurement {
            name: format!("{name}.expected"),
            value: mean,
            unit: "frames",
        });
        counts.push(format!("{name} {got} in [{lo:.0}, {hi:.0}]"));
        if got < lo || got > hi {
            problems.push(format!(
                "{name} carried {got} frames, outside [{lo:.0}, {hi:.0}] (share {p:.3} of {n})"
            ));
        }
    }
    let counts = counts.join(", ");
    if problems.is_empty() {
        verdict(
            Status::Pass,
            format!("every frame on one slave; counts within {SHARE_SIGMAS} σ: {counts}"),
            measurements,
        )
    } else {
        verdict(
            Status::Fail,
            format!("{}; counts: {counts}", problems.join("; ")),
            measurements,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_judged_by_the_kernel_log_where_a_notification_came_late() {
        let window = Window {
            lower_ms: 0.0,
            upper_ms: 110.0,
            rule: Rule {
                text: "one tick".into(),
                source: "bond_main.c",
            },
        };
        // UML's log clock: jiffies, offsets within 0.2 ms.
        let clock = kmsg::Clock {
            offset_min: -0.1,
            offset_max: 0.1,
            resolution: 10.0,
        };
        let sample = |trial, netlink_ms, kmsg_ms| Sample {
            trial,
            netlink_ms: Some(netlink_ms),
            kmsg_ms,
            active: None,
            addresses: Default::default(),
        };
        // Heard 88 ms after the kernel logged its commit, on time.
        let late_receipt = [sample(1, 104.3, Some(103.3)), sample(2, 195.0, Some(107.3))];
        let v = window_verdict(
            "timing.downdelay",
            &window,
            &late_receipt,
            Some(&clock),
            30.0,
        );
        assert_eq!(v.status, Status::Pass, "{}", v.message);
        assert!(
            v.message
                .contains("trial 2: the notification came 77.6 ms after"),
            "{}",
            v.message
        );
        // The kernel itself late: both clocks say so.
        let late_commit = [sample(1, 215.0, Some(214.6))];
        let v = window_verdict(
            "timing.downdelay",
            &window,
            &late_commit,
            Some(&clock),
            30.0,
        );
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.message
                .contains("trial 1: committed at 214.5 ms or later"),
            "{}",
            v.message
        );
        // Without the log, the receipt is all there is.
        let v = window_verdict("timing.downdelay", &window, &late_receipt, None, 30.0);
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.message.contains("trial 2: committed at 195.0 ms"),
            "{}",
            v.message
        );
        // Too early: the notification bounds the commit from above.
        let early = Window {
            lower_ms: 100.0,
            ..window
        };
        let v = window_verdict(
            "timing.downdelay",
            &early,
            &[sample(1, 99.0, Some(98.9))],
            Some(&clock),
            30.0,
        );
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.message
                .contains("trial 1: committed by 99.0 ms, not after 100 ms"),
            "{}",
            v.message
        );
    }

    fn view(updelay: u32, mii: &str) -> BondView {
        BondView {
            options: [
                ("mode".to_string(), Value::Text("balance-rr".into())),
                ("updelay".to_string(), Value::Number(updelay.into())),
            ]
            .into(),
            up: Some(true),
            carrier: None,
            mac: None,
            slaves: vec![SlaveView {
                name: "eth0".into(),
                mii_status: Some(mii.into()),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn the_kernel_log_fails_on_errors_but_not_on_predicted_refusals_or_known_messages() {
        use crate::kmsg::Known;
        let rec = |level, message: &str| Record {
            at: Duration::ZERO,
            facility: 0,
            level,
            message: message.into(),
        };
        let known = [Known {
            contains: "invalid new link".into(),
            why: "harmless".into(),
            upstream: "abc".into(),
        }];
        let applying = [rec(3, "bond0: option primary: mode dependency failed")];
        let after = [
            rec(6, "bond0: (slave eth0): link status definitely down"),
            rec(3, "bond0: (slave eth0): invalid new link 1 on slave"),
        ];
        let v = kernel_log(Some((&applying, &after)), &known, 1);
        assert_eq!(v.status, Status::Pass, "{}", v.message);
        assert!(
            v.message.contains("1× known") && v.message.contains("1 error logged while applying")
        );
        // Without the predicted refusal, the same error fails the check.
        let v = kernel_log(Some((&applying, &after)), &known, 0);
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.message.contains("<3> bond0: option primary"),
            "{}",
            v.message
        );
        assert_eq!(kernel_log(None, &known, 0).status, Status::Skip);
    }

    #[test]
    fn a_flap_must_stay_short_of_a_down_commit() {
        let good = Flap {
            slave: "eth0".into(),
            going_down_ms: Some(101.0),
            restored_ms: 101.2,
            up_ms: Some(205.0),
            announced: Vec::new(),
            link_failures_before: 5,
            link_failures_after: 5,
        };
        assert_eq!(flap(&good, 2).status, Status::Pass);
        let committed = Flap {
            going_down_ms: None,
            announced: vec!["down".into()],
            link_failures_after: 6,
            ..good
        };
        let v = flap(&committed, 2);
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.message.contains("never seen going down")
                && v.message.contains("committed it down")
                && v.message.contains("5 -> 6"),
            "{}",
            v.message
        );
    }

    #[test]
    fn views_that_differ_name_the_field_and_both_values() {
        assert!(view_differences(&view(200, "up"), &view(200, "up")).is_empty());
        let d = view_differences(&view(200, "up"), &view(400, "going back"));
        assert_eq!(
            d,
            [
                "updelay: netlink 200, /proc 400",
                "eth0.mii_status: netlink up, /proc going back"
            ]
        );
    }

    #[test]
    fn a_mismatch_fails_with_expected_observed_and_rule() {
        let e = Expectation {
            check: "option.updelay".into(),
            expected: Value::Number(200),
            unit: Some("ms"),
            requested: Some("220".into()),
            rule: Rule {
                text: "rounded".into(),
                source: "bond_options.c",
            },
        };
        let obs = Observation {
            netlink: view(400, "up"),
            procfs: view(400, "up"),
            procfs_text: String::new(),
            answers: None,
            addresses: vec![],
            settle_waited: Duration::ZERO,
            settle_deadline: Duration::ZERO,
        };
        let v = compare(&e, &obs);
        assert_eq!(v.status, Status::Fail);
        assert_eq!(
            v.message,
            "requested 220, expected 200 ms, observed 400 ms (netlink and /proc); rule: rounded (bond_options.c)"
        );
        let ok = compare(
            &Expectation {
                expected: Value::Number(400),
                ..e.clone()
            },
            &obs,
        );
        assert_eq!(ok.status, Status::Pass);
        let split = Observation {
            procfs: view(200, "up"),
            ..obs
        };
        let v = compare(&e, &split);
        assert_eq!(
            v.status,
            Status::Fail,
            "a /proc value that differs fails the check"
        );
        assert!(
            v.message.starts_with(
                "requested 220, expected 200 ms, observed 400 ms (netlink), 200 ms (/proc)"
            ),
            "{}",
            v.message
        );
    }

    fn sent(seen: &[&[usize]]) -> Sent {
        Sent {
            frames: seen.len(),
            rounds: 1,
            cpu: Some(0),
            dropped_at_send: 0,
            backlog_dropped: 0,
            send_ms: 0.0,
            total_ms: 0.0,
            captures: Vec::new(),
            arrivals: seen
                .iter()
                .enumerate()
                .flat_map(|(seq, slaves)| {
                    slaves.iter().map(move |s| crate::traffic::Arrival {
                        seq: seq as u32,
                        slave: *s,
                        at_us: seq as f64,
                        vlan: None,
                    })
                })
                .collect(),
        }
    }

    fn expected(prediction: Prediction) -> Expected {
        Expected {
            prediction,
            rule: Rule {
                text: "test".into(),
                source: "test",
            },
        }
    }

    fn names() -> Vec<String> {
        vec!["eth0".into(), "eth1".into(), "eth2".into()]
    }

    #[test]
    fn every_copy_must_carry_the_tag_its_frame_was_sent_with() {
        let e = expected(Prediction::Exact(vec![vec![0], vec![1], vec![2], vec![0]]));
        let tags = [None, Some(100), None, None];
        let mut arrived = sent(&[&[0], &[1], &[2], &[0]]);
        let v = distribution(&e, &arrived, &names(), &tags);
        assert_eq!(v.status, Status::Fail, "{}", v.message);
        assert!(
            v.message
                .contains("#1: sent VLAN 100, arrived on eth1 untagged"),
            "{}",
            v.message
        );
        arrived.arrivals[1].vlan = Some(100);
        let v = distribution(&e, &arrived, &names(), &tags);
        assert_eq!(v.status, Status::Pass, "{}", v.message);
        assert!(v.message.contains("1 sent tagged"), "{}", v.message);
    }

    #[test]
    fn a_rotation_is_judged_from_its_fitted_start() {
        let e = expected(Prediction::Rotation(vec![0, 0, 1, 1, 2, 2]));
        let good = sent(&[&[1], &[2], &[2], &[0], &[0], &[1], &[1]]);
        let v = distribution(&e, &good, &names(), &[]);
        assert_eq!(v.status, Status::Pass, "{}", v.message);
        assert!(v.message.contains("position 3"), "{}", v.message);
        // Turns of one instead of two: the first frame that breaks the rotation is named.
        let bad = sent(&[&[1], &[2], &[0], &[1], &[2], &[0]]);
        let v = distribution(&e, &bad, &names(), &[]);
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.message
                .contains("the first is #2: expected on eth2, observed on eth0"),
            "{}",
            v.message
        );
        assert!(
            v.message
                .contains("#3: expected on eth0, observed on eth1  <-")
        );
    }

    #[test]
    fn exact_placement_reports_lost_and_extra_copies() {
        let e = expected(Prediction::Exact(vec![vec![0, 2], vec![0, 2], vec![]]));
        let v = distribution(&e, &sent(&[&[0, 2], &[0], &[1]]), &names(), &[]);
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.message.starts_with("2 of 3 frames went elsewhere; the first is #1: expected on eth0+eth2, observed on eth0"),
            "{}",
            v.message
        );
        assert!(v.message.contains("#2: expected nowhere, observed on eth1"));
    }

    #[test]
    fn frames_lost_before_the_captures_judge_nothing() {
        let mut by_capture = sent(&[&[0]]);
        by_capture.captures.push(crate::traffic::Capture {
            slave: "eth0".into(),
            peer: "p0".into(),
            frames: 1,
            other: 0,
            dropped: 3,
            absent: None,
        });
        let mut by_backlog = sent(&[&[0]]);
        by_backlog.backlog_dropped = 2;
        for (s, why) in [
            (by_capture, "captures themselves dropped 3 frames"),
            (by_backlog, "receive backlog dropped 2 frames"),
        ] {
            let v = distribution(
                &expected(Prediction::Exact(vec![vec![0]])),
                &s,
                &names(),
                &[],
            );
            assert_eq!(v.status, Status::Error);
            assert!(v.message.contains(why), "{}", v.message);
        }
    }

    #[test]
    fn random_shares_are_judged_by_binomial_bounds() {
        let e = expected(Prediction::Shares(vec![0.5, 0.5, 0.0]));
        let even: Vec<&[usize]> = (0..400)
            .map(|i| if i % 2 == 0 { &[0][..] } else { &[1][..] })
            .collect();
        assert_eq!(
            distribution(&e, &sent(&even), &names(), &[]).status,
            Status::Pass
        );
        let skewed: Vec<&[usize]> = (0..400)
            .map(|i| if i % 4 == 0 { &[0][..] } else { &[1][..] })
            .collect();
        let v = distribution(&e, &sent(&skewed), &names(), &[]);
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.message.contains("eth0 carried 100 frames"),
            "{}",
            v.message
        );
        let on_the_third: Vec<&[usize]> = (0..400)
            .map(|i| {
                if i == 7 {
                    &[2][..]
                } else if i % 2 == 0 {
                    &[0][..]
                } else {
                    &[1][..]
                }
            })
            .collect();
        assert_eq!(
            distribution(&e, &sent(&on_the_third), &names(), &[]).status,
            Status::Fail
        );
    }
}
