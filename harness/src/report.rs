//! The compliance report: what ran on which kernel, each case's checks with expected and
//! observed values and the rule behind them, timings and warnings. JSON is the primary form
//! (`--report`); the text summary is for people at a terminal.

use std::io::Write;
use std::path::Path;

use crate::apply::Applied;
use crate::checks::{Observation, Status, Verdict};
use crate::error::{Error, Result};
use crate::ifenslave::Applier;
use crate::kernel::KernelInfo;
use crate::spec::Finding;
use crate::suite::Perturbation;

/// Bumped on any incompatible change to the report's shape; reports/README.md documents it.
pub const SCHEMA: &str = "bondcheck-report/1";

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub tool: Tool,
    pub kernel: KernelInfo,
    pub duration_ms: f64,
    pub summary: Summary,
    pub cases: Vec<CaseReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
}

impl Tool {
    pub fn this() -> Tool {
        Tool {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub cases: usize,
    pub cases_passed: usize,
    pub cases_failed: usize,
    pub cases_error: usize,
    /// Cases outside the run's profile: reported, not run.
    pub cases_skipped: usize,
    /// Check verdicts of regular cases (negative controls are counted below).
    pub checks_passed: usize,
    pub checks_failed: usize,
    pub checks_skipped: usize,
    pub negative_controls_held: usize,
    pub negative_controls_broken: usize,
}

impl Summary {
    /// Counts one case: its status, whether the control held (None for a regular case) and its
    /// checks' statuses. Shared by a run and by `report merge`, which recounts loaded cases.
    pub fn count(
        &mut self,
        status: Status,
        control_held: Option<bool>,
        checks: impl IntoIterator<Item = Status>,
    ) {
        self.cases += 1;
        match status {
            Status::Pass => self.cases_passed += 1,
            Status::Fail => self.cases_failed += 1,
            Status::Error => self.cases_error += 1,
            Status::Skip => self.cases_skipped += 1,
        }
        match control_held {
            Some(true) => self.negative_controls_held += 1,
            Some(false) => self.negative_controls_broken += 1,
            None => {
                for check in checks {
                    match check {
                        Status::Pass => self.checks_passed += 1,
                        Status::Fail | Status::Error => self.checks_failed += 1,
                        Status::Skip => self.checks_skipped += 1,
                    }
                }
            }
        }
    }
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_pretty_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::file(path, &std::io::Error::from(e)))?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)
}

/// Writes a file atomically (a sibling `.partial` file renamed over it): a reader, such as a
/// CI job picking up a report, never sees half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    let run = || -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // One write: in a UML guest every system call costs tens of microseconds.
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    run().map_err(|e| Error::file(path, &e))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SpecRef {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Phases {
    pub setup_ms: f64,
    pub apply_ms: f64,
    pub observe_ms: f64,
    pub checks_ms: f64,
    /// Waiting for the 802.3ad aggregate to form with an LACP partner.
    pub lacp_ms: f64,
    /// Sending frames through the bond and capturing them (slaves cut first included).
    pub traffic_ms: f64,
    /// Cutting and restoring carriers for the timing trials.
    pub timing_ms: f64,
    pub teardown_ms: f64,
}

/// The traffic phase: the case's settings, the model's view of the slaves when the frames
/// were sent, and what every capture saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Traffic {
    pub settings: crate::suite::Traffic,
    /// The slaves the model counts as usable (`bond_slave_can_tx`) while the frames go out.
    pub usable: Vec<String>,
    pub active: Option<String>,
    pub sent: crate::traffic::Sent,
}

/// A negative control's outcome: it holds when exactly the `must_fail` checks failed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ControlVerdict {
    pub perturb: Vec<Perturbation>,
    pub must_fail: Vec<String>,
    pub failed: Vec<String>,
    pub held: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Warning {
    /// `file:line:column`
    pub at: String,
    pub message: String,
}

impl From<&Finding> for Warning {
    fn from(f: &Finding) -> Self {
        Warning {
            at: f.at.to_string(),
            message: f.message.clone(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseReport {
    pub name: String,
    pub path: String,
    pub description: String,
    pub spec: SpecRef,
    pub topology: String,
    /// Why this topology, when the case named none ("default for mode 802.3ad: ...").
    pub topology_default: Option<String>,
    /// How the spec was brought up: `netlink` or `ifupdown`.
    pub applier: Applier,
    /// pass: every check passed (a negative control: it held); fail; error: the case could not
    /// be carried out (see `error`).
    pub status: Status,
    pub error: Option<String>,
    pub negative_control: Option<ControlVerdict>,
    pub duration_ms: f64,
    pub phases: Phases,
    pub warnings: Vec<Warning>,
    pub apply: Vec<Applied>,
    pub observed: Option<Observation>,
    /// Timing trials' samples, for cases that measure timing.
    pub timing: Option<crate::timing::Measured>,
    /// The 802.3ad state of the bond and its LACP partner, for cases on a topology with one.
    pub lacp: Option<crate::lacp::Observed>,
    /// Every LACPDU captured on the peer ends and the model's cadence, for cases with an LACP
    /// partner.
    pub lacpdus: Option<crate::lacpdu::Observed>,
    /// The frames sent through the bond and where each capture saw them.
    pub traffic: Option<Traffic>,
    pub checks: Vec<Verdict>,
}

impl Report {
    pub fn new(kernel: KernelInfo, cases: Vec<CaseReport>, duration_ms: f64) -> Report {
        let mut s = Summary::default();
        for c in &cases {
            s.count(
                c.status,
                c.negative_control.as_ref().map(|nc| nc.held),
                c.checks.iter().map(|v| v.status),
            );
        }
        Report {
            schema: SCHEMA,
            tool: Tool::this(),
            kernel,
            duration_ms,
            summary: s,
            cases,
        }
    }

    /// 0 when every case passed (negative controls held), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.summary.cases_passed + self.summary.cases_skipped != self.summary.cases)
    }

    /// Writes the JSON report atomically: a reader never sees half a report.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        write_pretty_json(path, self)
    }

    /// The closing summary for a terminal.
    pub fn summary_text(&self) -> String {
        let s = &self.summary;
        let k = &self.kernel;
        let mut out = format!(
            "{} cases: {} passed, {} failed, {} errors, {} skipped; checks: {} passed, {} failed, {} skipped",
            s.cases,
            s.cases_passed,
            s.cases_failed,
            s.cases_error,
            s.cases_skipped,
            s.checks_passed,
            s.checks_failed,
            s.checks_skipped
        );
        if s.negative_controls_held + s.negative_controls_broken > 0 {
            out += &format!(
                "; negative controls: {} held, {} broken",
                s.negative_controls_held, s.negative_controls_broken
            );
        }
        out += &format!(
            "\nkernel {} ({} backend), bonding driver {}; {:.1} s",
            k.release,
            k.backend,
            k.bonding_driver.as_deref().unwrap_or("unknown"),
            self.duration_ms / 1e3
        );
        out
    }
}

impl CaseReport {
    /// A few lines on this case for a terminal: the verdict, timings, warnings, failures.
    pub fn text(&self) -> String {
        let p = &self.phases;
        let word = match (&self.negative_control, self.status) {
            (_, Status::Skip) => "SKIP",
            (Some(_), Status::Pass) => "HELD",
            (Some(_), _) => "BROKEN",
            (None, Status::Pass) => "PASS",
            (None, Status::Fail) => "FAIL",
            (None, _) => "ERROR",
        };
        let kind = if self.negative_control.is_some() {
            "negative control"
        } else {
            "case"
        };
        let count = |st: Status| self.checks.iter().filter(|c| c.status == st).count();
        let skipped = match count(Status::Skip) {
            0 => String::new(),
            n => format!(", {n} skipped"),
        };
        let applier = match self.applier {
            Applier::Netlink => "netlink",
            Applier::Ifupdown => "ifupdown",
        };
        let mut out = format!(
            "{kind} {} ({applier}): {word} ({}/{} checks passed{skipped}) [setup {:.0} ms, apply {:.0} ms, \
             observe {:.0} ms, lacp {:.0} ms, traffic {:.0} ms, timing {:.0} ms, checks {:.1} ms, teardown {:.0} ms]\n",
            self.name,
            count(Status::Pass),
            self.checks.len(),
            p.setup_ms,
            p.apply_ms,
            p.observe_ms,
            p.lacp_ms,
            p.traffic_ms,
            p.timing_ms,
            p.checks_ms,
            p.teardown_ms
        );
        if let Some(e) = &self.error {
            out += &format!("  error: {e}\n");
        }
        if let Some(why) = &self.topology_default {
            out += &format!("  topology: {} ({why})\n", self.topology);
        }
        if self.negative_control.is_none() {
            for w in &self.warnings {
                out += &format!("  warning: {}: {}\n", w.at, w.message);
            }
            for s in &self.apply {
                if let Some(errno) = &s.answer.refused {
                    let why = s
                        .message
                        .as_ref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default();
                    out += &format!("  kernel refused: {}: {errno}{why}\n", s.answer.step);
                }
            }
        }
        if let Some(nc) = &self.negative_control {
            out += &format!(
                "  must fail: {}; failed: {}\n",
                nc.must_fail.join(", "),
                nc.failed.join(", ")
            );
        }
        for c in self.checks.iter().filter(|c| c.status != Status::Pass) {
            out += &format!("  {:?} {}: {}\n", c.status, c.check, c.message);
        }
        out
    }
}
