//! Runs suite cases on the kernel this process is on: build the topology, apply the spec,
//! observe, check, tear down, and turn it all into a case report. Several cases at a time with
//! `--jobs`: `lanes.rs` schedules them and gates their measurement windows.

use std::time::{Duration, Instant};

use clap::ValueEnum;

use crate::apply;
use crate::arpmon;
use crate::checks::{self, Observation, Status};
use crate::distribution;
use crate::error::{Error, Result};
use crate::fail_over_mac;
use crate::failover;
use crate::frames;
use crate::ifenslave::Applier;
use crate::ifupdown;
use crate::kernel::KernelInfo;
use crate::lacp;
use crate::lacpdu;
use crate::lanes::{self, Lane, Lanes};
use crate::min_links;
use crate::model::{self, Model, Value};
use crate::netlink;
use crate::observe;
use crate::partnerless;
use crate::perturb;
use crate::report::{self, CaseReport, ControlVerdict, Phases, Report, SpecRef, Warning};
use crate::suite::{Case, Moment, Profile};
use crate::timing;
use crate::topology;
use crate::traffic;

/// How cases are run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub applier: Applier,
    /// Cut-and-restore trials of each timing case.
    pub trials: usize,
    /// Cases of a longer profile are reported as skipped.
    pub profile: Profile,
    /// How many cases may be in flight at once (`--jobs`), at least 1.
    pub jobs: usize,
}

/// What a run is doing, as it happens: for people at a terminal (see `terminal.rs`).
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Case `index` (from 1) of `total` begins.
    Case {
        index: usize,
        total: usize,
        name: &'a str,
    },
    /// The case enters a phase: `setup`, `apply`, `observe`, `lacp`, `traffic`,
    /// `alb-receive`, `timing`, `flap`, `failover`.
    Phase(&'static str),
    /// A timing trial (from 1) of `of` begins.
    Trial { n: usize, of: usize },
    /// The case is done.
    Done(&'a CaseReport),
}

/// Where a case's events go.
pub type Listener<'a> = &'a mut dyn FnMut(Event<'_>);

/// Runs every case, up to `options.jobs` at a time, beginning them in order; `on` hears what
/// happens as it happens, each event with the position (from 0) of the case it is about. The
/// report lists the cases in their order whatever order they finish in.
pub fn run(
    cases: &[Case],
    options: Options,
    mut kernel: KernelInfo,
    on: &mut dyn FnMut(usize, Event<'_>),
) -> Result<Report> {
    let start = Instant::now();
    let jobs = options.jobs.clamp(1, cases.len().max(1));
    // A runtime per lane: the traffic engine and the captures block their thread.
    let lane_states = (0..jobs)
        .map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| (rt, kernel.clone()))
                .map_err(|e| Error::run(format!("cannot start the async runtime: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let lanes = Lanes::new();
    let total = cases.len();
    let (reports, lane_states) = lanes::schedule(
        total,
        lane_states,
        |(rt, kernel), i, tell| {
            let on = &mut |e: Event<'_>| match e {
                Event::Phase(phase) => tell(Event::Phase(phase)),
                Event::Trial { n, of } => tell(Event::Trial { n, of }),
                Event::Case { .. } | Event::Done(_) => {}
            };
            rt.block_on(run_case(&cases[i], i, options, kernel, &lanes, on))
        },
        &mut |message| match message {
            lanes::Message::Begin(i) => on(
                i,
                Event::Case {
                    index: i + 1,
                    total,
                    name: &cases[i].name,
                },
            ),
            lanes::Message::Event(i, e) => on(i, e),
            lanes::Message::Done(i, report) => on(i, Event::Done(report)),
        },
    );
    // The driver's version line, from whichever lane read one.
    kernel.bonding_driver = lane_states.into_iter().find_map(|(_, k)| k.bonding_driver);
    let duration = ms(start.elapsed());
    let memory = crate::memory::usage(kernel.backend);
    Ok(Report::new(kernel, reports, duration, memory))
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
    lacp: Option<lacp::Observed>,
    lacpdus: Option<lacpdu::Observed>,
    partnerless: Option<partnerless::Observed>,
    traffic: Option<report::Traffic>,
    failover: Option<failover::Observed>,
    min_links: Option<min_links::Observed>,
    alb_receive: Option<crate::rlb::Observed>,
    /// What the kernel logged while the spec was applied.
    apply_log: Vec<crate::kmsg::Record>,
    /// The measurement windows and the concurrency each saw.
    windows: Vec<report::Window>,
}

/// The names of every device case builds: what its kernel log records name.
fn devices(case: &Case) -> Vec<String> {
    let slaves: Vec<String> = case
        .spec
        .bond
        .slaves
        .iter()
        .map(|s| s.value.clone())
        .collect();
    let mut names = vec![case.spec.bond.name.clone()];
    names.extend(case.topology.peer_names(&slaves).unwrap_or_default());
    names.extend(case.topology.peer_master.iter().map(|m| m.name.clone()));
    names.extend(slaves);
    names
}

async fn run_case(
    case: &Case,
    index: usize,
    options: Options,
    kernel: &mut KernelInfo,
    lanes: &Lanes,
    on: Listener<'_>,
) -> CaseReport {
    let applier = options.applier;
    let start = Instant::now();
    let model = model::predict(&case.spec, applier);
    let lacp_partner = lacp::applies(&model, &case.topology);
    let mut inherent = model.inherent(
        kernel.hz,
        model::Demands {
            trials: case.timing_slave().map_or(0, |_| options.trials),
            timing_slave: case.timing_slave().unwrap_or_default(),
            cuts: !case.traffic.down.is_empty(),
            lacp_partner,
            min_links_steps: min_links::plan(&model, &case.topology).map_or(0, |s| s.len()),
        },
    );
    if lacp_partner {
        let actors = lacpdu::actors(&model, &case.topology);
        let expected = lacpdu::expect(actors.0, actors.1);
        let measured = expected.measured(options.profile >= Profile::Long);
        inherent.extend(lacpdu::inherent(
            &expected,
            kernel.hz.unwrap_or(1000),
            measured,
        ));
    }
    if let (true, Some(hz)) = (partnerless::applies(&model, &case.topology), kernel.hz) {
        inherent.push(partnerless::expect(&model).inherent(hz));
    }
    // A case outside the run's profile does not run: it waits for nothing.
    if case.profile > options.profile {
        inherent.clear();
    }
    let mut progress = Progress::default();
    // Everything the kernel logs from here to the end of the case and may be the case's doing
    // is judged (lanes.rs: attribute).
    let lane = lanes.begin(index, devices(case));
    let outcome = if case.profile > options.profile {
        Ok(skipped_for_profile(case, applier))
    } else {
        carry_out(case, options, &model, kernel, &lane, &mut progress, on)
            .await
            .map(|mut checks| {
                let after = lane.records();
                let refusals = model.answers.iter().filter(|a| a.refused.is_some()).count();
                checks.push(checks::kernel_log(
                    after
                        .as_deref()
                        .map(|after| (progress.apply_log.as_slice(), after)),
                    &crate::kmsg::known(),
                    refusals,
                ));
                checks
            })
    };
    let (checks, error) = match outcome {
        Ok(checks) => (checks, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let negative_control = case.negative_control.as_ref().map(|nc| {
        // A known deviation neither passes nor fails: a control holds on its failures alone.
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !matches!(c.status, Status::Pass | Status::Known))
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
        (None, _) if case.profile > options.profile => Status::Skip,
        (None, Some(nc)) if nc.held => Status::Pass,
        (None, Some(_)) => Status::Fail,
        // A skipped check is reported as skipped; it neither passes nor fails the case. Nor
        // does a known deviation, but the case then is `known`, not passed.
        (None, None)
            if checks
                .iter()
                .all(|c| matches!(c.status, Status::Pass | Status::Skip)) =>
        {
            Status::Pass
        }
        (None, None)
            if checks
                .iter()
                .all(|c| matches!(c.status, Status::Pass | Status::Skip | Status::Known)) =>
        {
            Status::Known
        }
        (None, None) => Status::Fail,
    };
    let known_deviations = checks
        .iter()
        .filter(|c| c.status == Status::Known)
        .filter_map(|c| crate::deviation::find(&c.check, &kernel.release).cloned())
        .collect();
    CaseReport {
        name: case.name.clone(),
        path: case.path.display().to_string(),
        description: case.description.clone(),
        spec: SpecRef {
            path: case.spec.path.display().to_string(),
            sha256: case.spec.sha256.clone(),
        },
        topology: case.topology.name.clone(),
        topology_default: case.topology_default.clone(),
        applier,
        status,
        error,
        negative_control,
        duration_ms: ms(start.elapsed()),
        inherent_ms: model::inherent_ms(&inherent),
        inherent,
        phases: progress.phases,
        warnings: model.warnings.iter().map(Warning::from).collect(),
        apply: progress.apply,
        observed: progress.observed,
        timing: progress.timing,
        lacp: progress.lacp,
        lacpdus: progress.lacpdus,
        partnerless: progress.partnerless,
        traffic: progress.traffic,
        failover: progress.failover,
        min_links: progress.min_links,
        alb_receive: progress.alb_receive,
        checks,
        known_deviations,
        windows: progress.windows,
    }
}

/// Every check of a case outside the run's profile, skipped: it did not run.
fn skipped_for_profile(case: &Case, applier: Applier) -> Vec<checks::Verdict> {
    let name = case
        .profile
        .to_possible_value()
        .map_or("?".into(), |v| v.get_name().to_string());
    let why =
        format!("skipped: the case belongs to the {name} profile (run with --profile {name})");
    case.check_ids(applier)
        .into_iter()
        .map(|check| checks::Verdict {
            check,
            status: Status::Skip,
            requested: None,
            expected: None,
            observed: None,
            observed_procfs: None,
            unit: None,
            rule: None,
            message: why.clone(),
            measurements: Vec::new(),
        })
        .collect()
}

async fn carry_out(
    case: &Case,
    options: Options,
    model: &Model,
    kernel: &mut KernelInfo,
    lane: &Lane<'_>,
    progress: &mut Progress,
    on: Listener<'_>,
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

    on(Event::Phase("setup"));
    let busy = lane.shared().await;
    let t = Instant::now();
    let built = topology::build(&case.topology, &slaves).await?;
    progress.phases.setup_ms = ms(t.elapsed());
    // In 802.3ad, every LACPDU either side sends is captured from the start.
    let partnerless = partnerless::applies(model, &case.topology);
    let mut lacpdus = if lacp::applies(model, &case.topology) || partnerless {
        Some(lacpdu::Capture::open(&built, &slaves)?)
    } else {
        None
    };
    drop(busy);

    // Applying (and a negative control's perturbations) alone: the errors the kernel logs for
    // refused writes are then this case's (the kernel log check excuses the predicted ones).
    let busy = lane.exclusive().await;
    for change in perturbations(Moment::BeforeApply) {
        perturb::perturb(change, &case.spec, &built, None).await?;
    }
    on(Event::Phase("apply"));
    let t = Instant::now();
    let applied_at = t;
    let applied = match options.applier {
        Applier::Netlink => apply::apply(&case.spec, &built).await,
        Applier::Ifupdown => ifupdown::apply(&case.spec, &built).await,
    };
    progress.phases.apply_ms = ms(t.elapsed());
    if let Some(records) = lane.records() {
        progress.apply_log = records;
    }
    let applied = applied?;
    progress.apply = applied.steps.clone();
    for change in perturbations(Moment::AfterApply) {
        perturb::perturb(change, &case.spec, &built, Some(applied.bond_index)).await?;
    }
    drop(busy);

    on(Event::Phase("observe"));
    let busy = lane
        .hold(perturbations(Moment::BetweenViews).next().is_some())
        .await;
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
    let (mut netlink_view, waited) =
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
    // The views are read one after the other, so a commit of the link monitor between the
    // reads (under ARP monitoring, whose slave states the model does not predict, the monitor
    // may still be bringing slaves up) would look like a disagreement. While the monitor's own
    // state differs across the /proc read, both are read again, within the settle deadline;
    // settings are no part of that state, so a setting changed between the views (the
    // views-disagree control) still shows.
    let coherent = Instant::now();
    let proc = loop {
        let proc = observe::procfs_view(&built.bond_ns, &bond.name)?;
        let after = observe::netlink_view(&built.bond, &bond.name).await?;
        if after.link_state() == netlink_view.link_state() || coherent.elapsed() >= deadline {
            break proc;
        }
        netlink_view = after;
    };
    if kernel.bonding_driver.is_none() {
        kernel.bonding_driver = proc.driver_version.clone();
    }
    let addresses = netlink::ipv4_addresses(&built.bond, applied.bond_index)
        .await
        .map_err(|r| Error::run(format!("reading the bond's addresses: {r}")))?;
    progress.phases.observe_ms = ms(t.elapsed());
    drop(busy);
    let observation = Observation {
        netlink: netlink_view,
        procfs: proc.view,
        procfs_text: proc.text,
        answers: applied.answers(),
        addresses,
        settle_waited: waited,
        settle_deadline: deadline,
    };

    let mut verdicts = Vec::new();
    // With an LACP partner: wait for the aggregate to form, then judge it.
    if lacp::applies(model, &case.topology) {
        on(Event::Phase("lacp"));
        let t = Instant::now();
        let deadline = lacp::deadline(model, &case.topology, kernel.slack_ms);
        let observed = lacp::observe(&built, &bond.name, &slaves, deadline).await?;
        verdicts.extend(lacp::checks(&observed, &slaves));
        progress.lacp = Some(observed);
        progress.phases.lacp_ms = ms(t.elapsed());
    }
    // Then, in steady state, each side's LACPDUs against the periodic rules.
    if let (Some(capture), Some(partner)) = (&mut lacpdus, &built.peer_master) {
        let t = Instant::now();
        let actors = lacpdu::actors(model, &case.topology);
        let expected = lacpdu::expect(actors.0, actors.1);
        match kernel.hz {
            Some(hz) => {
                let clock = lacpdu::Clock {
                    hz,
                    tolerance_ms: kernel.timing_tolerance_ms,
                };
                // Slow LACPDUs (every 30 s) are measured in the long profile only.
                let slow = options.profile >= Profile::Long;
                let skip = (!expected.measured(slow)).then_some(
                    "a side sends slow LACPDUs (every 30 s): measured with --profile long",
                );
                // Skipped intervals need no more LACPDUs: the activity check judges those
                // of the formation.
                let window = match skip {
                    Some(_) => Duration::ZERO,
                    None => lacpdu::window(&expected, &clock, slow),
                };
                let formed_ms = capture.ms_at(t);
                let settled = settled_states(progress.lacp.as_ref(), &slaves);
                // Not gated: only the kernel's timers act while the capture listens.
                let open = lane.window("lacpdus", false);
                let pdus = capture.collect(t + window, |pdus, now_ms| {
                    skip.is_none()
                        && lacpdu::decided(&expected, &settled, pdus, formed_ms, now_ms, &clock)
                });
                progress.windows.push(open.close());
                let observed = lacpdu::Observed::new(
                    expected,
                    formed_ms,
                    ms(t.elapsed()),
                    &settled,
                    pdus?.to_vec(),
                    &clock,
                );
                verdicts.extend(lacpdu::checks(
                    &observed,
                    actors,
                    &slaves,
                    &partner.name,
                    &clock,
                    skip,
                ));
                progress.lacpdus = Some(observed);
            }
            None => verdicts.extend(lacpdu::skipped(
                &slaves,
                "the kernel's HZ is unknown: no tick length to derive the intervals from",
            )),
        }
        progress.phases.lacp_ms += ms(t.elapsed());
    }
    // With no LACP partner: the bond's first two LACPDUs on every slave.
    if let (Some(capture), true) = (&mut lacpdus, partnerless) {
        on(Event::Phase("lacp"));
        let t = Instant::now();
        // The model's slaves in enslave order, each with its capture.
        let enslaved: Vec<(String, usize)> = model
            .transmit
            .slaves
            .iter()
            .filter_map(|s| Some((s.clone(), slaves.iter().position(|c| c == s)?)))
            .collect();
        let names: Vec<String> = enslaved.iter().map(|(s, _)| s.clone()).collect();
        match kernel.hz {
            Some(hz) => {
                let clock = lacpdu::Clock {
                    hz,
                    tolerance_ms: kernel.timing_tolerance_ms,
                };
                let expected = partnerless::expect(model);
                let ports: Vec<usize> = enslaved.iter().map(|(_, c)| *c).collect();
                let first_due_ms = expected.first_due_ms(capture.ms_at(t), &clock, kernel.slack_ms);
                // Not gated: only the kernel's timers act while the capture listens.
                let open = lane.window("lacpdus", false);
                let pdus = capture.collect(
                    t + expected.deadline(&clock, kernel.slack_ms),
                    |pdus, now_ms| expected.decided(&ports, pdus, (first_due_ms, now_ms), &clock),
                );
                progress.windows.push(open.close());
                let observed = partnerless::Observed {
                    expected,
                    bond_mac: observation.netlink.mac.clone(),
                    window_ms: ms(t.elapsed()),
                    pdus: pdus?.to_vec(),
                };
                verdicts.extend(partnerless::checks(&observed, &enslaved, &clock));
                progress.partnerless = Some(observed);
            }
            None => verdicts.extend(partnerless::skipped(
                &names,
                "the kernel's HZ is unknown: no tick length to derive the LACPDUs' times from",
            )),
        }
        progress.phases.lacp_ms += ms(t.elapsed());
    }
    // The captures see every frame: closed before the traffic phase floods them.
    drop(lacpdus);

    if perturbations(Moment::BeforeTraffic).next().is_some() {
        let _alone = lane.exclusive().await;
        for change in perturbations(Moment::BeforeTraffic) {
            perturb::perturb(change, &case.spec, &built, Some(applied.bond_index)).await?;
        }
    }
    on(Event::Phase("traffic"));
    // Alone: every case's frames wait in the one CPU's receive backlog, which a round fills
    // (traffic.rs); two cases sending at once could overflow it.
    let busy = lane.exclusive().await;
    let t = Instant::now();
    let (traffic, verdict) =
        drive_traffic(case, model, kernel, &built, applied.bond_index, applied_at).await?;
    progress.phases.traffic_ms = ms(t.elapsed());
    // Under ARP monitoring which slaves are usable depends on the targets' replies, which the
    // model does not predict: the frames are reported, not judged (Model::check_ids).
    if model.arp.is_none() {
        verdicts.push(verdict);
    }
    // Receive balancing, in the state the traffic phase left: before timing cuts carriers.
    if let (true, Some(address)) = (
        crate::rlb::applies(model, &case.spec, &case.topology),
        &case.spec.bond.address,
    ) {
        on(Event::Phase("alb-receive"));
        let t = Instant::now();
        let slaves = &model.transmit.slaves;
        let position = |name: &String| slaves.iter().position(|s| s == name);
        let usable: Vec<bool> = slaves.iter().map(|s| traffic.usable.contains(s)).collect();
        let active = traffic.active.as_ref().and_then(position);
        let clients = crate::rlb::clients(address.value);
        let expected = crate::rlb::expect(&usable, active, &clients);
        let observed = crate::rlb::observe(
            &built,
            address.value,
            slaves,
            run_id(),
            fence_deadline(kernel),
        )
        .await?;
        verdicts.push(crate::rlb::check(&expected, &observed, slaves));
        progress.alb_receive = Some(observed);
        progress.phases.alb_receive_ms = ms(t.elapsed());
    }
    drop(busy);
    progress.traffic = Some(traffic);

    // min_links: cut ports below it and restore them, with the LACP partner answering.
    if let Some(steps) = min_links::plan(model, &case.topology) {
        // Its cuts and commits take the RTNL lock, which other cases' timing windows must not
        // share; and it judges every carrier announcement on the way: alone.
        let _alone = lane.exclusive().await;
        on(Event::Phase("min_links"));
        let t = Instant::now();
        let commit = kernel
            .hz
            .and_then(|hz| model.monitor.windows(hz, true))
            .map_or(5000.0, |(d, u)| d.upper_ms.max(u.upper_ms));
        let commit =
            Duration::from_millis((commit + kernel.timing_tolerance_ms) as u64 + kernel.slack_ms);
        let aggregate = lacp::deadline(model, &case.topology, kernel.slack_ms);
        let mut events = netlink::watch_links(&built.bond_ns, &tokio::runtime::Handle::current())?;
        let observed = min_links::measure(
            &built,
            &bond.name,
            model,
            &steps,
            (commit, aggregate),
            &mut events,
        )
        .await?;
        verdicts.push(min_links::check(&observed));
        progress.min_links = Some(observed);
        progress.phases.lacp_ms += ms(t.elapsed());
    }

    // Timing last: cutting carriers changes the state the checks above judged.
    if let Some(slave) = case.timing_slave() {
        let others_up = case.spec.bond.slaves.len() > 1;
        // The MII monitor sees a carrier cut; the ARP monitor a silenced switch port.
        let (windows, cut, ids, logged, settle) = match &model.arp {
            Some(arp) => {
                let roles = arp.roles(slave, &active_before_cuts(model, slave, options.trials));
                let windows = kernel
                    .hz
                    .map(|hz| (arp.down_window(hz, &roles), arp.up_window(hz, slave)));
                let logged = [arp.logged(false), arp.logged(true)];
                // Past the settle's last tick by the backend's scheduling noise.
                let settle = arp
                    .settle_ms(kernel.hz)
                    .map_or(0.0, |s| s + kernel.timing_tolerance_ms);
                let settle = Duration::from_secs_f64(settle / 1e3);
                (
                    windows,
                    timing::Cut::Silence,
                    arpmon::CHECKS,
                    logged,
                    settle,
                )
            }
            None => {
                let windows = kernel
                    .hz
                    .and_then(|hz| model.monitor.windows(hz, others_up));
                (
                    windows,
                    timing::Cut::Carrier,
                    checks::TIMING,
                    timing::MII_LOGGED,
                    Duration::ZERO,
                )
            }
        };
        let upper = windows
            .as_ref()
            .map_or(5000.0, |(d, u)| d.upper_ms.max(u.upper_ms));
        // A commit later than this is far outside any window: stop waiting for it.
        let deadline =
            Duration::from_millis((upper + kernel.timing_tolerance_ms) as u64 + kernel.slack_ms);
        // Every sample of the trials, the flap and the failover stream, taken alone.
        let alone = lane.exclusive().await;
        let open = lane.window("timing", true);
        let mut events = netlink::watch_links(&built.bond_ns, &tokio::runtime::Handle::current())?;
        let t = Instant::now();
        on(Event::Phase("timing"));
        let plan = timing::Plan {
            cut,
            trials: options.trials,
            deadline,
            logged,
            settle,
        };
        let mut measured =
            timing::measure(&built, &bond.name, slave, &plan, &mut events, &mut |n| {
                on(Event::Trial {
                    n,
                    of: options.trials,
                })
            })
            .await?;
        if model.monitor.down_ticks > 0 {
            on(Event::Phase("flap"));
            let flap = timing::flap(&built, &bond.name, slave, deadline, &mut events).await?;
            measured.flap = Some(flap);
        }
        progress.phases.timing_ms = ms(t.elapsed());
        verdicts.extend(checks::timing(
            ids,
            &measured,
            windows.as_ref(),
            kernel.timing_tolerance_ms,
        ));
        if let Some(flap) = &measured.flap {
            verdicts.push(checks::flap(flap, model.monitor.down_ticks));
        }
        if let Some(selection) = model.judged_selection() {
            verdicts.extend(checks::failover(&measured, selection));
        }
        progress.timing = Some(measured);

        if model.arp.is_none() && distribution::failover_unpredictable(&model.transmit).is_none() {
            let t = Instant::now();
            on(Event::Phase("failover"));
            let (observed, stream_verdicts) = drive_failover(
                model,
                kernel,
                &built,
                &bond.name,
                applied.bond_index,
                slave,
                options.trials,
                deadline,
                &mut events,
            )
            .await?;
            progress.phases.failover_ms = ms(t.elapsed());
            verdicts.extend(stream_verdicts);
            progress.failover = Some(observed);
        }
        if let (Some(rules), Some(selection), Some(measured)) = (
            &model.fail_over_mac,
            model.judged_selection(),
            &progress.timing,
        ) {
            let moments = fail_over_mac::moments(
                selection,
                &bond.name,
                &observation.netlink,
                measured,
                progress.failover.as_ref(),
            );
            verdicts.push(fail_over_mac::check(rules, &bond.name, &moments));
        }
        progress.windows.push(open.close());
        drop(alone);
    }

    // The case's fullest point: everything it built is still there.
    crate::memory::sample();
    let busy = lane.shared().await;
    let t = Instant::now();
    built.teardown().await?;
    progress.phases.teardown_ms = ms(t.elapsed());
    drop(busy);

    let t = Instant::now();
    let mut all = checks::evaluate(model, &observation);
    all.extend(verdicts);
    let verdicts = all;
    progress.phases.checks_ms = ms(t.elapsed());
    progress.observed = Some(observation);
    Ok(verdicts)
}

/// The active slave the model expects before each of the timing trials' `trials` cuts of
/// `slave` (None in modes without one).
fn active_before_cuts(model: &Model, slave: &str, trials: usize) -> Vec<Option<String>> {
    match &model.selection {
        Some(selection) => {
            let (_, after_restore) = selection.expected(slave, trials);
            std::iter::once(selection.active_after(&[]))
                .chain(after_restore)
                .take(trials)
                .collect()
        }
        None => vec![None; trials],
    }
}

/// balance-tlb and balance-alb count their slaves' loads at a rebalance every 10 s after the
/// bond opens (bond_alb.c, BOND_TLB_REBALANCE_INTERVAL); the model's prediction holds before
/// the first one.
const TLB_REBALANCE: Duration = Duration::from_secs(10);

/// The traffic phase: cuts the case's `down` slaves and waits for the driver to commit them
/// down, works out which slaves the model counts as usable and which is active, sends the
/// frames through the bond and judges where each one went.
async fn drive_traffic(
    case: &Case,
    model: &Model,
    kernel: &KernelInfo,
    built: &topology::Built,
    bond_index: u32,
    opened: Instant,
) -> Result<(report::Traffic, checks::Verdict)> {
    let settings = &case.traffic;
    let slaves = &model.transmit.slaves;
    let position = |name: &String| slaves.iter().position(|s| s == name);
    let down: Vec<usize> = settings.down.iter().filter_map(position).collect();
    if !down.is_empty() {
        cut(model, kernel, built, &settings.down).await?;
    }
    let mut usable: Vec<bool> = (0..slaves.len()).map(|i| !down.contains(&i)).collect();
    if model.transmit.mode == crate::spec::Mode::Ieee8023ad {
        let deadline = if lacp::applies(model, &case.topology) {
            lacp::deadline(model, &case.topology, kernel.slack_ms)
        } else {
            lacp::INDIVIDUAL_AGGREGATOR + Duration::from_millis(kernel.slack_ms)
        };
        let aggregator = lacp::aggregator_ports(built, &case.spec.bond.name, deadline).await?;
        for (i, name) in slaves.iter().enumerate() {
            usable[i] &= aggregator.contains(name);
        }
    }
    let active = model
        .selection
        .as_ref()
        .and_then(|s| s.active_with_down(&down));

    let (src_mac, lanes) = lanes(built, slaves, bond_index).await?;
    let run_id = run_id();
    let flows = frames::mix(settings.seed, settings.flows, src_mac, &settings.vlans);
    let frames = frames::frames(&flows, run_id, settings.frames);
    let vlans = vlan_devices(built, bond_index, &settings.vlans).await?;
    let sockets = traffic::Sockets::open(&built.bond_ns, bond_index, &vlans, &lanes)?;
    let sent = traffic::run(sockets, src_mac, run_id, &frames, fence_deadline(kernel))?;
    // Later phases send untagged frames only; the VLAN devices would only be in the way.
    for (_, index) in vlans {
        netlink::delete(&built.bond, index)
            .await
            .map_err(|r| Error::run(format!("traffic: deleting a VLAN device: {r}")))?;
    }

    let expected = distribution::expect(&model.transmit, &usable, active, &frames);
    let tlb = matches!(
        model.transmit.mode,
        crate::spec::Mode::BalanceTlb | crate::spec::Mode::BalanceAlb
    );
    let verdict = if tlb && model.transmit.tlb_dynamic_lb && opened.elapsed() >= TLB_REBALANCE {
        checks::distribution_skipped(
            &expected,
            "the frames went out after the first load rebalance (10 s after the bond opened), \
             after which the model cannot say which slave each hash bucket gets",
        )
    } else {
        let tags: Vec<Option<u16>> = frames.iter().map(|f| f.vlan).collect();
        checks::distribution(&expected, &sent, slaves, &tags)
    };
    let name = |i: usize| slaves[i].clone();
    Ok((
        report::Traffic {
            settings: settings.clone(),
            usable: (0..slaves.len()).filter(|i| usable[*i]).map(name).collect(),
            active: active.map(name),
            sent,
        },
        verdict,
    ))
}

/// Each port's states once the aggregate formed, from the bond's netlink view: the LACPDUs'
/// steady state is told by them (lacpdu::steady_from). None for every port where it did not
/// form.
fn settled_states(
    lacp: Option<&lacp::Observed>,
    slaves: &[String],
) -> Vec<Option<lacpdu::Settled>> {
    slaves
        .iter()
        .map(|slave| {
            let port = lacp
                .filter(|o| o.formed)?
                .bond
                .ports
                .iter()
                .find(|p| &p.name == slave)?;
            Some(lacpdu::Settled {
                bond: port.actor_state?,
                partner: port.partner_state?,
            })
        })
        .collect()
}

/// Failover with traffic flowing: one more cut and restore, of the active slave where the mode
/// has one (else of the timing slave), after the timing trials' cuts of `timing_slave`, with a stream of
/// frames through the bond, each judged against the bond's state when it was sent.
#[allow(clippy::too_many_arguments)]
async fn drive_failover(
    model: &Model,
    kernel: &KernelInfo,
    built: &topology::Built,
    bond: &str,
    bond_index: u32,
    timing_slave: &str,
    trials: usize,
    commit_deadline: Duration,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<netlink::LinkEvent>,
) -> Result<(failover::Observed, Vec<checks::Verdict>)> {
    let slaves = &model.transmit.slaves;
    let index = |name: &Option<String>| {
        name.as_ref()
            .and_then(|n| slaves.iter().position(|s| s == n))
    };
    // Where there is an active slave, the stream cuts it: that is the failover that matters.
    let before_cuts = vec![timing_slave; trials];
    let (slave, actives) = match &model.selection {
        Some(selection) => {
            let before = selection.active_after(&before_cuts);
            let slave = before.clone().unwrap_or_else(|| timing_slave.to_string());
            let mut cuts = before_cuts.clone();
            cuts.push(&slave);
            let (after_cut, after_restore) = selection.replay(&cuts);
            let actives = [
                index(&before),
                index(&after_cut[trials]),
                index(&after_restore[trials]),
            ];
            (slave, actives)
        }
        None => (timing_slave.to_string(), [None; 3]),
    };
    let slave = slave.as_str();
    let cut = slaves
        .iter()
        .position(|s| s == slave)
        .ok_or_else(|| Error::run(format!("failover: {slave} is not a slave of {bond}")))?;
    let (src_mac, lanes) = lanes(built, slaves, bond_index).await?;
    let run_id = run_id();
    let flows = frames::mix(1, 64, src_mac, &[]);
    // A failover's gratuitous ARPs go on for count × every_ticks ticks: the stream outlasts
    // them after each commit that changes the active slave (either, where the model has no
    // selection to say which), one tick past the last so that one too many would show.
    let tick_ms = kernel.hz.and_then(|hz| model.monitor.tick_ms(hz));
    let tolerance = kernel.timing_tolerance_ms;
    let burst = match (&model.peer_notify, tick_ms) {
        (Some(n), Some((_, longest))) => {
            Duration::from_secs_f64(((n.count * n.every_ticks) as f64 * longest + tolerance) / 1e3)
        }
        _ => Duration::ZERO,
    };
    let changes = |at: usize| model.selection.is_none() || actives[at] != actives[at - 1];
    let after_commit = [1, 2].map(|at| if changes(at) { burst } else { Duration::ZERO });
    let needed = failover::frames_needed(commit_deadline, commit_deadline, after_commit);
    let frames = frames::frames(&flows, run_id, needed);
    let expected = distribution::during_failover(&model.transmit, cut, actives, &frames);
    let setup = failover::Setup {
        sockets: traffic::Sockets::open(&built.bond_ns, bond_index, &[], &lanes)?,
        src_mac,
        run_id,
        frames,
        after_commit,
        down_deadline: commit_deadline,
        up_deadline: commit_deadline,
        fence_deadline: fence_deadline(kernel),
    };
    let observed = failover::measure(built, bond, slave, setup, events).await?;
    let mut verdicts = vec![failover::check(&expected, &observed, slaves)];
    if model.transmit.mode == crate::spec::Mode::ActiveBackup {
        verdicts.push(failover::failover_event(
            actives,
            kernel.timing_tolerance_ms,
            &observed,
            slaves,
        ));
    }
    if let (Some(notify), Some(tick_ms)) = (&model.peer_notify, tick_ms) {
        let known = crate::deviation::find(failover::PEER_NOTIFY, &kernel.release);
        verdicts.push(failover::peer_notify(
            notify, actives, tick_ms, tolerance, &observed, slaves, known,
        ));
    }
    Ok((observed, verdicts))
}

/// Creates a VLAN device `vlan<id>` on top of the bond for each of `ids`, up; returns each id
/// with its device's ifindex.
async fn vlan_devices(
    built: &topology::Built,
    bond_index: u32,
    ids: &[u16],
) -> Result<Vec<(u16, u32)>> {
    let mut out = Vec::new();
    for &id in ids {
        let name = format!("vlan{id}");
        let fail = |r: netlink::Refusal| {
            Error::run(format!(
                "traffic: creating VLAN device {name} on the bond: {r} (is the kernel's 8021q \
                 driver loaded?)"
            ))
        };
        netlink::add_vlan(&built.bond, &name, bond_index, id)
            .await
            .map_err(fail)?;
        out.push((
            id,
            netlink::index_of(&built.bond, &name).await.map_err(fail)?,
        ));
    }
    Ok(out)
}

/// How long a fence may take to reach its capture: far longer than a veth needs.
fn fence_deadline(kernel: &KernelInfo) -> Duration {
    Duration::from_millis(1000 + kernel.slack_ms)
}

/// A run id of its own, so that a capture never counts another run's frames as this one's.
fn run_id() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    std::process::id() ^ now.subsec_nanos() ^ (now.as_secs() as u32)
}

/// The bond's MAC address and, per slave, where its frames are captured.
async fn lanes<'a>(
    built: &'a topology::Built,
    slaves: &[String],
    bond_index: u32,
) -> Result<([u8; 6], Vec<traffic::Lane<'a>>)> {
    let fail = |what: &str, r: netlink::Refusal| Error::run(format!("traffic: {what}: {r}"));
    let bond_links = netlink::link_list(&built.bond)
        .await
        .map_err(|r| fail("link dump", r))?;
    let src_mac = bond_links
        .iter()
        .find(|l| l.index == bond_index)
        .and_then(|l| l.mac)
        .ok_or_else(|| Error::run("traffic: the bond has no MAC address"))?;
    let mut lanes = Vec::new();
    for name in slaves {
        let peer = built
            .peer(name)
            .ok_or_else(|| Error::run(format!("traffic: no peer for slave {name}")))?;
        let peer_link = netlink::link_list(&peer.handle)
            .await
            .map_err(|r| fail("peer link dump", r))?
            .into_iter()
            .find(|l| l.name == peer.name);
        lanes.push(traffic::Lane {
            slave: name.clone(),
            slave_index: bond_links.iter().find(|l| &l.name == name).map(|l| l.index),
            peer: peer.name.clone(),
            peer_ns: built.peer_ns(peer),
            peer_index: peer_link.as_ref().map(|l| l.index),
            peer_up: peer_link.is_some_and(|l| l.up),
        });
    }
    Ok((src_mac, lanes))
}

/// Takes the peers of `slaves` down and waits until the driver has committed each slave down
/// (its netlink announcement), by the downdelay window's end plus tolerance and slack.
async fn cut(
    model: &Model,
    kernel: &KernelInfo,
    built: &topology::Built,
    slaves: &[String],
) -> Result<()> {
    let mut events = netlink::watch_links(&built.bond_ns, &tokio::runtime::Handle::current())?;
    let upper = kernel
        .hz
        .and_then(|hz| model.monitor.windows(hz, true))
        .map_or(5000.0, |(d, _)| d.upper_ms);
    let until = Instant::now()
        + Duration::from_millis((upper + kernel.timing_tolerance_ms) as u64 + kernel.slack_ms);
    for slave in slaves {
        let peer = built
            .peer(slave)
            .ok_or_else(|| Error::run(format!("traffic: no peer for slave {slave}")))?;
        netlink::set_up(&peer.handle, peer.index, false)
            .await
            .map_err(|r| Error::run(format!("traffic: cutting {slave}: {r}")))?;
    }
    let mut waiting: Vec<&String> = slaves.iter().collect();
    while !waiting.is_empty() {
        let Some(event) = timing::next_event(&mut events, until).await else {
            return Err(Error::run(format!(
                "traffic: the driver did not commit {} down in time",
                waiting
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if event.mii_status.as_deref() == Some("down") {
            waiting.retain(|s| **s != event.name);
        }
    }
    Ok(())
}
