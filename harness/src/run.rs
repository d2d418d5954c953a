//! Runs suite cases on the kernel this process is on: build the topology, apply the spec,
//! observe, check, tear down, and turn it all into a case report.

use std::time::{Duration, Instant};

use crate::apply;
use crate::checks::{self, Observation, Status};
use crate::error::{Error, Result};
use crate::ifenslave::Applier;
use crate::ifupdown;
use crate::kernel::KernelInfo;
use crate::model::{self, Model, Value};
use crate::netlink;
use crate::observe;
use crate::perturb;
use crate::report::{CaseReport, ControlVerdict, Phases, Report, SpecRef, Warning};
use crate::suite::{Case, Moment};
use crate::timing;
use crate::topology;

/// How cases are run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub applier: Applier,
    /// Cut-and-restore trials of each timing case.
    pub trials: usize,
}

/// Runs every case in order; `progress` sees each case report as soon as it is done.
pub fn run(
    cases: &[Case],
    options: Options,
    mut kernel: KernelInfo,
    mut progress: impl FnMut(&CaseReport),
) -> Result<Report> {
    let start = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::run(format!("cannot start the async runtime: {e}")))?;
    let mut reports = Vec::new();
    for case in cases {
        let report = rt.block_on(run_case(case, options, &mut kernel));
        progress(&report);
        reports.push(report);
    }
    Ok(Report::new(kernel, reports, ms(start.elapsed())))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What a case produced before it ended, whether or not it got to its checks.
#[derive(Default)]
struct Progress {
    phases: Phases,
    apply: Vec<apply::Applied>,
    observed: Option<Observation>,
    timing: Option<timing::Measured>,
}

async fn run_case(case: &Case, options: Options, kernel: &mut KernelInfo) -> CaseReport {
    let applier = options.applier;
    let start = Instant::now();
    let model = model::predict(&case.spec, applier);
    let mut progress = Progress::default();
    let outcome = carry_out(case, options, &model, kernel, &mut progress).await;
    let (checks, error) = match outcome {
        Ok(checks) => (checks, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let negative_control = case.negative_control.as_ref().map(|nc| {
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| c.status != Status::Pass)
            .map(|c| c.check.clone())
            .collect();
        let mut want = nc.must_fail.clone();
        want.sort();
        let mut got = failed.clone();
        got.sort();
        ControlVerdict {
            perturb: nc.perturb.clone(),
            must_fail: nc.must_fail.clone(),
            held: error.is_none() && want == got,
            failed,
        }
    });
    let status = match (&error, &negative_control) {
        (Some(_), _) => Status::Error,
        (None, Some(nc)) if nc.held => Status::Pass,
        (None, Some(_)) => Status::Fail,
        // A skipped check is reported as skipped; it neither passes nor fails the case.
        (None, None)
            if checks
                .iter()
                .all(|c| matches!(c.status, Status::Pass | Status::Skip)) =>
        {
            Status::Pass
        }
        (None, None) => Status::Fail,
    };
    CaseReport {
        name: case.name.clone(),
        path: case.path.display().to_string(),
        description: case.description.clone(),
        spec: SpecRef {
            path: case.spec.path.display().to_string(),
            sha256: case.spec.sha256.clone(),
        },
        topology: case.topology.name.clone(),
        applier,
        status,
        error,
        negative_control,
        duration_ms: ms(start.elapsed()),
        phases: progress.phases,
        warnings: model.warnings.iter().map(Warning::from).collect(),
        apply: progress.apply,
        observed: progress.observed,
        timing: progress.timing,
        checks,
    }
}

async fn carry_out(
    case: &Case,
    options: Options,
    model: &Model,
    kernel: &mut KernelInfo,
    progress: &mut Progress,
) -> Result<Vec<checks::Verdict>> {
    let bond = &case.spec.bond;
    let slaves: Vec<String> = bond.slaves.iter().map(|s| s.value.clone()).collect();
    let perturbations = |at: Moment| {
        case.negative_control
            .iter()
            .flat_map(|nc| &nc.perturb)
            .filter(move |p| p.at == at)
            .map(|p| &p.change)
    };

    let t = Instant::now();
    let built = topology::build(&case.topology, &slaves).await?;
    progress.phases.setup_ms = ms(t.elapsed());

    for change in perturbations(Moment::BeforeApply) {
        perturb::perturb(change, &case.spec, &built, None).await?;
    }
    let t = Instant::now();
    let applied = match options.applier {
        Applier::Netlink => apply::apply(&case.spec, &built).await,
        Applier::Ifupdown => ifupdown::apply(&case.spec, &built).await,
    };
    progress.phases.apply_ms = ms(t.elapsed());
    let applied = applied?;
    progress.apply = applied.steps.clone();
    for change in perturbations(Moment::AfterApply) {
        perturb::perturb(change, &case.spec, &built, Some(applied.bond_index)).await?;
    }

    let t = Instant::now();
    // Wait until every slave shows the MII status the model expects, or the model's settle
    // time plus this backend's slack has passed; the checks then judge what is there.
    let expected_mii: Vec<(String, Value)> = model
        .expectations
        .iter()
        .filter_map(|e| {
            let slave = e
                .check
                .strip_prefix("slave.")?
                .strip_suffix(".mii_status")?;
            Some((slave.to_string(), e.expected.clone()))
        })
        .collect();
    let deadline = model.settle(kernel.hz) + Duration::from_millis(kernel.slack_ms);
    let (netlink_view, waited) =
        observe::netlink_view_settled(&built.bond, &bond.name, deadline, |v| {
            expected_mii.iter().all(|(name, want)| {
                v.slave(name)
                    .and_then(|s| s.mii_status.clone())
                    .map(Value::Text)
                    .as_ref()
                    == Some(want)
            })
        })
        .await?;
    for change in perturbations(Moment::BetweenViews) {
        perturb::perturb(change, &case.spec, &built, Some(applied.bond_index)).await?;
    }
    let proc = observe::procfs_view(&built.bond_ns, &bond.name)?;
    if kernel.bonding_driver.is_none() {
        kernel.bonding_driver = proc.driver_version.clone();
    }
    let addresses = netlink::ipv4_addresses(&built.bond, applied.bond_index)
        .await
        .map_err(|r| Error::run(format!("reading the bond's addresses: {r}")))?;
    progress.phases.observe_ms = ms(t.elapsed());
    let observation = Observation {
        netlink: netlink_view,
        procfs: proc.view,
        procfs_text: proc.text,
        answers: applied.answers(),
        addresses,
        settle_waited: waited,
        settle_deadline: deadline,
    };

    // Timing last: cutting carriers changes the state the checks above judged.
    let mut verdicts = Vec::new();
    if let Some(slave) = case.timing_slave() {
        let others_up = case.spec.bond.slaves.len() > 1;
        let windows = kernel
            .hz
            .and_then(|hz| model.monitor.windows(hz, others_up));
        let upper = windows
            .as_ref()
            .map_or(5000.0, |(d, u)| d.upper_ms.max(u.upper_ms));
        // A commit later than this is far outside any window: stop waiting for it.
        let deadline =
            Duration::from_millis((upper + kernel.timing_tolerance_ms) as u64 + kernel.slack_ms);
        let mut events = netlink::watch_slaves(&built.bond_ns, &tokio::runtime::Handle::current())?;
        let t = Instant::now();
        let measured = timing::measure(
            &built,
            &bond.name,
            slave,
            options.trials,
            deadline,
            &mut events,
        )
        .await?;
        progress.phases.timing_ms = ms(t.elapsed());
        verdicts.extend(checks::timing(
            &measured,
            windows.as_ref(),
            kernel.timing_tolerance_ms,
        ));
        if let Some(selection) = &model.selection {
            verdicts.extend(checks::failover(&measured, selection));
        }
        progress.timing = Some(measured);
    }

    let t = Instant::now();
    drop(built);
    progress.phases.teardown_ms = ms(t.elapsed());

    let t = Instant::now();
    let mut all = checks::evaluate(model, &observation);
    all.extend(verdicts);
    let verdicts = all;
    progress.phases.checks_ms = ms(t.elapsed());
    progress.observed = Some(observation);
    Ok(verdicts)
}
