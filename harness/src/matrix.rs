//! The kernel matrix: reports of the same cases run on several kernels, joined into one view of
//! cases × kernels (`bondcheck report matrix`), with each kernel's facts (backend, release, HZ)
//! and how many differences `report diff` finds between every two of them.
//!
//! It reads the per-kernel reports as `report diff` does ([`compare::load`]) and judges nothing
//! itself: a cell is the case's status in that kernel's report, or `absent` where the kernel's
//! report lacks the case. The differences are [`compare::diff`]'s, so the matrix and
//! `report diff A B` never disagree.

use std::path::Path;

use serde::Serialize;
use serde_json::Value as Json;

use crate::checks::Status;
use crate::compare::{self, CaseView, Loaded};
use crate::error::{Error, Result};

pub const SCHEMA: &str = "bondcheck-matrix/1";

#[derive(Debug, Serialize)]
pub struct Matrix {
    pub schema: &'static str,
    /// One column per report, in the order given.
    pub kernels: Vec<Kernel>,
    /// One row per case any report has, in the order first seen.
    pub cases: Vec<Row>,
    /// Every pair of kernels, as `report diff` compares them.
    pub differences: Vec<Pair>,
    /// Every case has a result on every kernel.
    pub complete: bool,
    /// Complete, and every cell is `pass` or `skip` (a case of a profile the runs left out):
    /// nothing failed.
    pub passed: bool,
}

/// A column: the kernel a report ran on.
#[derive(Debug, Serialize)]
pub struct Kernel {
    /// The report's file name without `.json`, e.g. `uml`, `6.12`: the column's heading.
    pub label: String,
    pub report: String,
    pub backend: String,
    pub release: String,
    pub hz: Option<u64>,
    pub bonding_driver: Option<String>,
    pub boot_ms: Option<f64>,
    pub timing_tolerance_ms: f64,
    pub duration_ms: f64,
    pub cases_passed: usize,
    pub cases_failed: usize,
    pub cases_error: usize,
}

#[derive(Debug, Serialize)]
pub struct Row {
    /// `<name>`, or `<name>@<applier>` for another applier than netlink, as in `report diff`.
    pub case: String,
    /// One per kernel, in the kernels' order.
    pub results: Vec<Cell>,
    /// Every kernel has the case, with the same status.
    pub same: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// `pass`, `fail`, `known`, `skip`, `error`, or `absent` (the kernel's report lacks the
    /// case).
    pub status: String,
    pub checks_passed: usize,
    pub checks_failed: usize,
    pub checks_skipped: usize,
}

/// What `report diff` finds between two of the kernels.
#[derive(Debug, Serialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub differences: usize,
    pub case_status: usize,
    pub check_status: usize,
    pub timing: usize,
    pub observed: usize,
    /// Cases or checks one report has and the other does not.
    pub only_in_one: usize,
}

/// Builds the matrix of `reports` (at least two, each a different file).
pub fn build(reports: &[Loaded]) -> Result<Matrix> {
    if reports.len() < 2 {
        return Err(Error::Usage(
            "report matrix needs at least two reports, one per kernel".into(),
        ));
    }
    let kernels: Vec<Kernel> = reports.iter().map(kernel).collect();
    for (i, k) in kernels.iter().enumerate() {
        if let Some(other) = kernels[..i].iter().find(|o| o.label == k.label) {
            return Err(Error::Usage(format!(
                "report matrix: {} and {} would both be the column `{}`: name each kernel's \
                 report differently",
                other.report, k.report, k.label
            )));
        }
    }
    let mut keys: Vec<String> = Vec::new();
    for r in reports {
        for case in &r.view.cases {
            let key = case.key();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    let cases: Vec<Row> = keys
        .into_iter()
        .map(|key| {
            let results: Vec<Cell> = reports
                .iter()
                .map(|r| cell(r.view.cases.iter().find(|c| c.key() == key)))
                .collect();
            let same = results[0].status != ABSENT
                && results.iter().all(|c| c.status == results[0].status);
            Row {
                case: key,
                results,
                same,
            }
        })
        .collect();
    let mut differences = Vec::new();
    for (i, a) in reports.iter().enumerate() {
        for (j, b) in reports.iter().enumerate().skip(i + 1) {
            let d = compare::diff(a, b);
            differences.push(Pair {
                a: kernels[i].label.clone(),
                b: kernels[j].label.clone(),
                differences: d.differences,
                case_status: d.case_status.len(),
                check_status: d.check_status.len(),
                timing: d.timing.len(),
                observed: d.observed.len(),
                only_in_one: d.cases_only_in_a.len()
                    + d.cases_only_in_b.len()
                    + d.checks_only_in_a.len()
                    + d.checks_only_in_b.len(),
            });
        }
    }
    let complete = cases
        .iter()
        .all(|row| row.results.iter().all(|c| c.status != ABSENT));
    let passed = complete
        && cases.iter().all(|row| {
            row.results
                .iter()
                .all(|c| matches!(c.status.as_str(), "pass" | "known" | "skip"))
        });
    Ok(Matrix {
        schema: SCHEMA,
        kernels,
        cases,
        differences,
        complete,
        passed,
    })
}

const ABSENT: &str = "absent";

fn kernel(r: &Loaded) -> Kernel {
    let k = &r.view.kernel;
    // Facts the typed view does not carry are read from the document.
    let fact = |name: &str| r.doc.get("kernel").and_then(|k| k.get(name));
    let count = |s: Status| r.view.cases.iter().filter(|c| c.status == s).count();
    Kernel {
        label: r
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| r.path.display().to_string()),
        report: r.path.display().to_string(),
        backend: k.backend.clone(),
        release: k.release.clone(),
        hz: fact("hz").and_then(Json::as_u64),
        bonding_driver: k.bonding_driver.clone(),
        boot_ms: fact("boot_ms").and_then(Json::as_f64),
        timing_tolerance_ms: k.timing_tolerance_ms,
        duration_ms: r.view.duration_ms,
        cases_passed: count(Status::Pass),
        cases_failed: count(Status::Fail),
        cases_error: count(Status::Error),
    }
}

fn cell(case: Option<&CaseView>) -> Cell {
    let Some(case) = case else {
        return Cell {
            status: ABSENT.into(),
            checks_passed: 0,
            checks_failed: 0,
            checks_skipped: 0,
        };
    };
    let count = |s: Status| case.checks.iter().filter(|c| c.status == s).count();
    Cell {
        status: compare::status_word(case.status).into(),
        checks_passed: count(Status::Pass),
        checks_failed: count(Status::Fail) + count(Status::Error),
        checks_skipped: count(Status::Skip),
    }
}

impl Matrix {
    /// The exit code: 0 when every case passed (or was skipped, or failed only as a known
    /// deviation of its kernel says) on every kernel, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.passed)
    }

    /// A table for the terminal: the kernels' facts, then a line per case with a column per
    /// kernel (`*` marks rows that differ), then the differences per pair.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let label_width = self
            .kernels
            .iter()
            .map(|k| k.label.len())
            .max()
            .unwrap_or(0);
        out.push_str("kernels:\n");
        for k in &self.kernels {
            let hz = k.hz.map_or("HZ unknown".into(), |hz| format!("HZ={hz}"));
            let boot = k
                .boot_ms
                .map_or(String::new(), |ms| format!(", booted in {:.1} s", ms / 1e3));
            let _ = writeln!(
                out,
                "  {:<label_width$}  Linux {} ({}, {hz}, tolerance {} ms{boot}): {} passed, {} \
                 failed, {} errors in {:.0} s",
                k.label,
                k.release,
                k.backend,
                k.timing_tolerance_ms,
                k.cases_passed,
                k.cases_failed,
                k.cases_error,
                k.duration_ms / 1e3
            );
        }
        let case_width = self.cases.iter().map(|r| r.case.len()).max().unwrap_or(4);
        let widths: Vec<usize> = self
            .kernels
            .iter()
            .map(|k| k.label.len().max(ABSENT.len()))
            .collect();
        let _ = write!(out, "\n  {:<case_width$}", "case");
        for (k, w) in self.kernels.iter().zip(&widths) {
            let _ = write!(out, "  {:<w$}", k.label);
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        for row in &self.cases {
            let _ = write!(
                out,
                "{} {:<case_width$}",
                if row.same { ' ' } else { '*' },
                row.case
            );
            for (c, w) in row.results.iter().zip(&widths) {
                let _ = write!(out, "  {:<w$}", c.status);
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        out.push_str("\ndifferences (bondcheck report diff A B lists them):\n");
        for p in &self.differences {
            let _ = writeln!(
                out,
                "  {} vs {}: {} (case status {}, check status {}, timing {}, observed {}, only \
                 in one {})",
                p.a,
                p.b,
                p.differences,
                p.case_status,
                p.check_status,
                p.timing,
                p.observed,
                p.only_in_one
            );
        }
        let _ = writeln!(
            out,
            "\n{} cases on {} kernels: {}",
            self.cases.len(),
            self.kernels.len(),
            match (self.complete, self.passed) {
                (false, _) => "INCOMPLETE (a case is absent on some kernel)",
                (true, false) => "complete, NOT all passed",
                (true, true) => "complete, all passed",
            }
        );
        out
    }
}

/// Loads the reports at `paths` and builds their matrix.
pub fn of_files(paths: &[impl AsRef<Path>]) -> Result<Matrix> {
    let loaded = paths
        .iter()
        .map(|p| compare::load(p.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    build(&loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(file: &str, backend: &str, release: &str, hz: u64, cases: Json) -> Loaded {
        let doc = json!({
            "schema": crate::report::SCHEMA,
            "kernel": {"backend": backend, "release": release, "bonding_driver": null,
                       "boot_ms": 1500.0, "hz": hz, "timing_tolerance_ms": 30.0},
            "duration_ms": 4000.0,
            "cases": cases,
        });
        let view = serde::Deserialize::deserialize(&doc).unwrap();
        Loaded {
            path: format!("reports/matrix/{file}").into(),
            doc,
            view,
        }
    }

    fn case(name: &str, status: &str, checks: &[(&str, &str, Json)]) -> Json {
        json!({
            "name": name, "applier": "netlink", "status": status,
            "checks": checks.iter().map(|(id, st, obs)| json!({
                "check": id, "status": st, "observed": obs})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn cells_are_each_kernels_status_and_differences_are_report_diffs() {
        let uml = report(
            "uml.json",
            "uml",
            "6.1.176",
            100,
            json!([
                case("a", "pass", &[("option.mode", "pass", json!("balance-rr"))]),
                case("b", "pass", &[("option.miimon", "pass", json!(100))]),
            ]),
        );
        let vm = report(
            "6.12.json",
            "vm",
            "6.12.95+deb12-amd64",
            250,
            json!([
                case("a", "pass", &[("option.mode", "pass", json!("balance-rr"))]),
                case("b", "fail", &[("option.miimon", "fail", json!(200))]),
                case("c", "pass", &[]),
            ]),
        );
        let m = build(&[uml, vm]).unwrap();
        let labels: Vec<&str> = m.kernels.iter().map(|k| k.label.as_str()).collect();
        assert_eq!(labels, ["uml", "6.12"]);
        assert_eq!(m.kernels[1].hz, Some(250));
        assert_eq!(m.kernels[1].boot_ms, Some(1500.0));
        assert_eq!(
            (m.kernels[1].cases_passed, m.kernels[1].cases_failed),
            (2, 1)
        );
        let row = |name: &str| m.cases.iter().find(|r| r.case == name).unwrap();
        let statuses = |name: &str| -> Vec<String> {
            row(name).results.iter().map(|c| c.status.clone()).collect()
        };
        assert_eq!(statuses("a"), ["pass", "pass"]);
        assert!(row("a").same);
        assert_eq!(statuses("b"), ["pass", "fail"]);
        assert_eq!(row("b").results[1].checks_failed, 1);
        assert!(!row("b").same);
        assert_eq!(statuses("c"), ["absent", "pass"]);
        assert!(!m.complete && !m.passed);
        assert_eq!(m.exit_code(), 1);
        // b's case status, its check's status and observed value; c only in 6.12.
        let p = &m.differences[0];
        assert_eq!((p.a.as_str(), p.b.as_str()), ("uml", "6.12"));
        assert_eq!(
            (p.case_status, p.check_status, p.observed, p.only_in_one),
            (1, 1, 1, 1)
        );
        assert_eq!(p.differences, 4);
        let text = m.text();
        assert!(text.contains("* b "), "{text}");
        assert!(text.contains("  a "), "{text}");
        assert!(text.contains("INCOMPLETE"), "{text}");
    }

    #[test]
    fn every_pair_of_kernels_is_compared_and_all_passing_is_exit_0() {
        // A case of a profile the runs left out is skipped everywhere: nothing failed.
        let cases = || {
            json!([
                case("a", "pass", &[("option.mode", "pass", json!(0))]),
                case("slow", "skip", &[])
            ])
        };
        let m = build(&[
            report("uml.json", "uml", "6.1.176", 100, cases()),
            report("6.1.json", "vm", "6.1.0-56-amd64", 250, cases()),
            report("6.12.json", "vm", "6.12.95+deb12-amd64", 250, cases()),
        ])
        .unwrap();
        let pairs: Vec<(&str, &str, usize)> = m
            .differences
            .iter()
            .map(|p| (p.a.as_str(), p.b.as_str(), p.differences))
            .collect();
        assert_eq!(
            pairs,
            [("uml", "6.1", 0), ("uml", "6.12", 0), ("6.1", "6.12", 0)]
        );
        assert!(m.complete && m.passed);
        assert_eq!(m.exit_code(), 0);
    }

    #[test]
    fn one_report_or_two_with_one_label_is_a_usage_error() {
        let r = || report("uml.json", "uml", "6.1.176", 100, json!([]));
        assert_eq!(build(&[r()]).unwrap_err().exit_code(), 2);
        let err = build(&[r(), r()]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("column `uml`"), "{err}");
    }
}
