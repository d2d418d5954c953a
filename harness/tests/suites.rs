//! The bonding suites as test trials: one trial per suite case, applier and check, named
//! `<case>::<check>` (the netlink applier) and `<case>@ifupdown::<check>` (Debian's ifup;
//! negative controls run with the netlink applier only), run by `cargo nextest run` or
//! `cargo test`.
//!
//! Each case runs once per test run, for real, through the `bondcheck` binary on the kernel
//! `--kernel auto` picks (a UML guest on machines whose own kernel has no bonding driver).
//! nextest runs every trial in a process of its own, so the first trial of a case runs it under
//! a file lock and leaves the JSON report for the case's other trials of the same run.
//!
//! Where no backend can give a bonding kernel (or ifupdown is missing), the trials are listed
//! as ignored, decided at list time, so nextest and libtest report them as skipped rather than
//! passed. So is `apply.answers` under ifupdown, which cannot observe the kernel's answer to
//! each write.
//!
//! A check that a known deviation of the kernel covers (harness/data/known-deviations.toml) is
//! listed as ignored too: its verdict there is at best `known`, which is not a pass. The case's
//! report still judges it, and `bondcheck run` says whether the kernel deviates exactly as
//! known; run with `--run-ignored` and such a trial fails unless the kernel now keeps the
//! contract.
//!
//! Each case and applier also has a trial `<case>::report.schema`: its real report validates
//! against the committed schema (reports/bondcheck-report-1.schema.json).

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use bondcheck::ifenslave::Applier;
use bondcheck::ifupdown;
use bondcheck::kernel::{self, Choice};
use bondcheck::lacpdu;
use bondcheck::model::ANSWERS;
use bondcheck::suite::{self, Case};
use libtest_mimic::{Arguments, Failed, Trial};
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

/// How long one case's `bondcheck run` may take, guest boot included, before it is stopped and
/// its trial fails with what it printed so far: the longest default case takes under 15 s, and
/// nextest's own limit (.config/nextest.toml: 4 x 30 s) would kill the trial without a word.
const RUN_DEADLINE: Duration = Duration::from_secs(100);

/// The trial that validates a case's report against the schema, beside its checks' trials.
const REPORT_SCHEMA: &str = "report.schema";

fn main() {
    let args = Arguments::from_args();
    let root = common::repo();
    let cases = match suite::discover(&root.join("suites"), &root.join("veth-topologies")) {
        Ok(cases) => cases,
        Err(e) => {
            let msg = e.to_string();
            libtest_mimic::run(
                &args,
                vec![Trial::test("suites::load", move || Err(msg.into()))],
            )
            .exit()
        }
    };
    let backend = kernel::select(Choice::Auto);
    let release = backend.as_ref().ok().map(kernel::Backend::release);
    let no_kernel = backend.err().map(|e| e.to_string());
    if let (Some(why), false) = (&no_kernel, args.list) {
        eprintln!("bonding trials skipped: {why}");
    }
    let no_ifupdown = ifupdown::available().err();
    if let (Some(why), false, None) = (&no_ifupdown, args.list, &no_kernel) {
        eprintln!("ifupdown trials skipped: {why}");
    }
    // Cases of the long profile run only when asked for: BONDCHECK_PROFILE=long.
    let long = std::env::var("BONDCHECK_PROFILE").is_ok_and(|p| p == "long");
    let mut trials = Vec::new();
    for case in cases {
        let outside_profile = case.profile > suite::Profile::Default && !long;
        let appliers: &[Applier] = match case.negative_control {
            Some(_) => &[Applier::Netlink],
            None => &[Applier::Netlink, Applier::Ifupdown],
        };
        for &applier in appliers {
            let model = bondcheck::model::predict(&case.spec, applier);
            let slow_lacpdus = !long && lacpdu::needs_long_profile(&model, &case.topology);
            let checks = case.check_ids(applier);
            for check in checks.into_iter().chain([REPORT_SCHEMA.to_string()]) {
                // Skipped in a default run: slow LACPDUs are measured in the long profile.
                let outside_profile =
                    outside_profile || (slow_lacpdus && check.ends_with(".lacpdu_interval"));
                // A control's check that must fail is judged by failing, deviation or not.
                let must_fail = case
                    .negative_control
                    .as_ref()
                    .is_some_and(|nc| nc.must_fail.contains(&check));
                let known = !must_fail
                    && release
                        .as_deref()
                        .and_then(|r| bondcheck::deviation::find(&check, r))
                        .is_some();
                let (name, unavailable) = match applier {
                    Applier::Netlink => (format!("{}::{check}", case.name), no_kernel.is_some()),
                    Applier::Ifupdown => (
                        format!("{}@ifupdown::{check}", case.name),
                        no_kernel.is_some() || no_ifupdown.is_some() || check == ANSWERS,
                    ),
                };
                let case = case.clone();
                trials.push(
                    Trial::test(name, move || run_trial(&case, applier, &check))
                        .with_kind("bonding")
                        .with_ignored_flag(unavailable || outside_profile || known),
                );
            }
        }
    }
    libtest_mimic::run(&args, trials).exit()
}

/// One check of one case: the case's report is produced once per test run and shared.
fn run_trial(case: &Case, applier: Applier, check: &str) -> Result<(), Failed> {
    let report = case_report(case, applier)?;
    if check == REPORT_SCHEMA {
        return match common::schema_errors(&report).as_slice() {
            [] => Ok(()),
            errors => Err(format!("the report breaks the schema:\n{}", errors.join("\n")).into()),
        };
    }
    let case_json = &report["cases"][0];
    if let Some(err) = case_json["error"].as_str() {
        return Err(format!("case {} could not be carried out: {err}", case.name).into());
    }
    let verdict = case_json["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == check))
        .ok_or_else(|| format!("check {check} did not run in case {}", case.name))?;
    let status = verdict["status"].as_str().unwrap_or("?");
    let message = verdict["message"].as_str().unwrap_or("");
    let must_fail = case
        .negative_control
        .as_ref()
        .is_some_and(|nc| nc.must_fail.iter().any(|c| c == check));
    match (must_fail, status) {
        (false, "pass") => Ok(()),
        (false, _) => Err(format!("{status}: {message}").into()),
        (true, "fail") => {
            println!("negative control held: {message}");
            Ok(())
        }
        (true, _) => Err(format!("negative control broken: this check must fail under the perturbation, but it is {status}: {message}").into()),
    }
}

/// Runs `bondcheck run` on the case unless another trial of this test run already did, and
/// returns its JSON report.
fn case_report(case: &Case, applier: Applier) -> Result<Value, Failed> {
    let run_id =
        std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| format!("pid-{}", std::process::id()));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("suite-runs")
        .join(run_id);
    std::fs::create_dir_all(&dir)?;
    let applier = applier.name();
    let slug = format!("{}@{applier}", case.name.replace(['/', ' '], "_"));
    let report = dir.join(format!("{slug}.json"));
    let lock = File::create(dir.join(format!("{slug}.lock")))?;
    let _held =
        Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| format!("locking: {e}"))?;
    if !report.exists() {
        let log_path = dir.join(format!("{slug}.log"));
        let log = File::create(&log_path)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_bondcheck"))
            .current_dir(common::repo())
            .arg("run")
            .arg("--verbose")
            .arg("--kernel=auto")
            .arg(format!("--apply={applier}"))
            .arg(format!(
                "--profile={}",
                if case.profile == suite::Profile::Long {
                    "long"
                } else {
                    "default"
                }
            ))
            .arg("--report")
            .arg(&report)
            .arg(&case.path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let status = wait_or_stop(&mut child)?;
        let output = std::fs::read_to_string(&log_path)?;
        let Some(status) = status else {
            return Err(format!(
                "bondcheck run {} did not end within {} s and was stopped; its output:\n{output}",
                case.path.display(),
                RUN_DEADLINE.as_secs()
            )
            .into());
        };
        if !report.exists() || !matches!(status.code(), Some(0 | 1)) {
            return Err(format!(
                "bondcheck run {} ended with {status:?} and no report:\n{output}",
                case.path.display(),
            )
            .into());
        }
    }
    Ok(serde_json::from_str(&std::fs::read_to_string(&report)?)?)
}

/// Waits for `child` until [`RUN_DEADLINE`]; past it, stops it with SIGTERM (bondcheck kills its
/// guest and exits), then SIGKILL, and answers `None`.
fn wait_or_stop(child: &mut Child) -> std::io::Result<Option<ExitStatus>> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let start = Instant::now();
    while start.elapsed() < RUN_DEADLINE {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let stopping = Instant::now();
    while stopping.elapsed() < Duration::from_secs(5) {
        if child.try_wait()?.is_some() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill()?;
    child.wait()?;
    Ok(None)
}
