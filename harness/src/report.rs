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
    /// Check verdicts of regular cases (negative controls are counted below).
    pub checks_passed: usize,
    pub checks_failed: usize,
    pub checks_skipped: usize,
    pub negative_controls_held: usize,
    pub negative_controls_broken: usize,
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
    /// Cutting and restoring carriers for the timing trials.
    pub timing_ms: f64,
    pub teardown_ms: f64,
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
    pub checks: Vec<Verdict>,
}

impl Report {
    pub fn new(kernel: KernelInfo, cases: Vec<CaseReport>, duration_ms: f64) -> Report {
        let mut s = Summary {
            cases: cases.len(),
            ..Summary::default()
        };
        for c in &cases {
            match c.status {
                Status::Pass => s.cases_passed += 1,
                Status::Fail => s.cases_failed += 1,
                Status::Error | Status::Skip => s.cases_error += 1,
            }
            match &c.negative_control {
                Some(nc) if nc.held => s.negative_controls_held += 1,
                Some(_) => s.negative_controls_broken += 1,
                None => {
                    for v in &c.checks {
                        match v.status {
                            Status::Pass => s.checks_passed += 1,
                            Status::Fail | Status::Error => s.checks_failed += 1,
                            Status::Skip => s.checks_skipped += 1,
                        }
                    }
                }
            }
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
        i32::from(self.summary.cases_passed != self.summary.cases)
    }

    /// Writes the JSON report atomically: a reader never sees half a report.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.partial");
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::File::create(&tmp)?;
            serde_json::to_writer_pretty(&mut f, self)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| Error::file(path, &e))
    }

    /// The closing summary for a terminal.
    pub fn summary_text(&self) -> String {
        let s = &self.summary;
        let k = &self.kernel;
        let mut out = format!(
            "{} cases: {} passed, {} failed, {} errors; checks: {} passed, {} failed, {} skipped",
            s.cases,
            s.cases_passed,
            s.cases_failed,
            s.cases_error,
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
             observe {:.0} ms, timing {:.0} ms, checks {:.1} ms, teardown {:.0} ms]\n",
            self.name,
            count(Status::Pass),
            self.checks.len(),
            p.setup_ms,
            p.apply_ms,
            p.observe_ms,
            p.timing_ms,
            p.checks_ms,
            p.teardown_ms
        );
        if let Some(e) = &self.error {
            out += &format!("  error: {e}\n");
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
