//! Reports read back: `bondcheck report diff` says what changed between two runs (checks that
//! changed status, timing medians that moved beyond noise, values the kernels report
//! differently) and `bondcheck report merge` joins the reports of a sharded run into one.
//!
//! A report is read as a JSON document, and only the fields these commands and the JUnit,
//! KTAP and HTML writers look at are typed ([`ReportView`]). Merge carries every other field
//! through as it was read, so a report keeps fields this code does not know about, and the
//! writer's types (which hold `&'static str`s) need not be deserialisable. A run renders JUnit,
//! KTAP and HTML from the view of its in-memory report ([`ReportView::of`]), merge and
//! `report html` from the document read.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::checks::Status;
use crate::error::{Error, Result};
use crate::report::{Report, SCHEMA, Summary};

/// A report read from a file: the whole document, and its typed view.
pub struct Loaded {
    pub path: PathBuf,
    pub doc: Json,
    pub view: ReportView,
}

/// The fields of a report (reports/README.md) that diff, merge, JUnit, KTAP and HTML use.
#[derive(Debug, Deserialize)]
pub struct ReportView {
    #[serde(default)]
    pub tool: Option<ToolView>,
    pub kernel: KernelView,
    #[serde(default)]
    pub duration_ms: f64,
    pub cases: Vec<CaseView>,
}

#[derive(Debug, Deserialize)]
pub struct ToolView {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Deserialize)]
pub struct KernelView {
    pub backend: String,
    pub release: String,
    #[serde(default)]
    pub bonding_driver: Option<String>,
    pub timing_tolerance_ms: f64,
    #[serde(default)]
    pub hz: Option<u32>,
    #[serde(default)]
    pub boot_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct CaseView {
    pub name: String,
    pub applier: String,
    pub status: Status,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub negative_control: Option<ControlView>,
    #[serde(default)]
    pub duration_ms: f64,
    /// Absent from reports older than inherent-time accounting: counted as none.
    #[serde(default)]
    pub inherent_ms: f64,
    /// `<phase>_ms` entries.
    #[serde(default)]
    pub phases: serde_json::Map<String, Json>,
    #[serde(default)]
    pub spec: Option<SpecView>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub topology: String,
    #[serde(default)]
    pub warnings: Vec<crate::report::Warning>,
    /// The timing trials' samples, for cases that measure timing.
    #[serde(default)]
    pub timing: Option<crate::timing::Measured>,
    /// The frames sent through the bond and every copy the captures saw.
    #[serde(default)]
    pub traffic: Option<crate::report::Traffic>,
    pub checks: Vec<CheckView>,
}

#[derive(Debug, Deserialize)]
pub struct SpecView {
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
pub struct ControlView {
    pub held: bool,
    #[serde(default)]
    pub must_fail: Vec<String>,
    #[serde(default)]
    pub failed: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct CheckView {
    pub check: String,
    pub status: Status,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub expected: Json,
    #[serde(default)]
    pub observed: Json,
    #[serde(default)]
    pub observed_procfs: Json,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub rule: Option<RuleView>,
    #[serde(default)]
    pub measurements: Vec<MeasurementView>,
}

#[derive(Debug, Deserialize)]
pub struct RuleView {
    pub text: String,
    pub source: String,
}

#[derive(Debug, Deserialize)]
pub struct MeasurementView {
    pub name: String,
    /// serde_json writes a non-finite number as null.
    pub value: Option<f64>,
    #[serde(default)]
    pub unit: String,
}

impl ReportView {
    /// The view of a report in memory, as its JSON document shows it.
    pub fn of(report: &Report) -> Result<ReportView> {
        serde_json::to_value(report)
            .and_then(ReportView::deserialize)
            .map_err(|e| Error::run(format!("cannot read back the report: {e}")))
    }
}

impl CaseView {
    /// The case's name in every output: `<name>` under the netlink applier,
    /// `<name>@<applier>` otherwise, as the bonding suites' test names have it.
    pub fn key(&self) -> String {
        if self.applier == "netlink" {
            self.name.clone()
        } else {
            format!("{}@{}", self.name, self.applier)
        }
    }
}

/// Reads a report; anything but a `bondcheck-report/1` document is one error naming the file.
pub fn load(path: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, &e))?;
    let doc: Json = serde_json::from_str(&text).map_err(|e| {
        // serde_json appends the place to its message; the error names it as file:line:column.
        let full = e.to_string();
        let place = format!(" at line {} column {}", e.line(), e.column());
        let what = full.strip_suffix(&place).unwrap_or(&full);
        Error::input(
            path,
            e.line(),
            e.column().max(1),
            format!("not JSON: {what}"),
        )
    })?;
    let bad = |message: String| Error::File {
        path: path.into(),
        message,
    };
    match doc.get("schema").and_then(Json::as_str) {
        Some(SCHEMA) => {}
        Some(s) if s.starts_with("bondcheck-report/") => {
            return Err(bad(format!(
                "report schema `{s}` is not supported: this bondcheck reads `{SCHEMA}`"
            )));
        }
        Some(s) => return Err(bad(format!("not a bondcheck report (schema `{s}`)"))),
        None => return Err(bad("not a bondcheck report (no `schema` field)".into())),
    }
    let view = ReportView::deserialize(&doc)
        .map_err(|e| bad(format!("not a well-formed `{SCHEMA}` report: {e}")))?;
    Ok(Loaded {
        path: path.into(),
        doc,
        view,
    })
}

/// What differs between two reports, A and B.
#[derive(Debug, Serialize)]
pub struct Diff {
    pub a: String,
    pub b: String,
    /// The kernels compared (`<release> (<backend>)`), for the reader; not a difference.
    pub kernel_a: String,
    pub kernel_b: String,
    pub cases_only_in_a: Vec<String>,
    pub cases_only_in_b: Vec<String>,
    pub case_status: Vec<CaseStatus>,
    pub checks_only_in_a: Vec<CheckRef>,
    pub checks_only_in_b: Vec<CheckRef>,
    pub check_status: Vec<CheckStatus>,
    pub timing: Vec<TimingShift>,
    pub observed: Vec<ObservedChange>,
    /// How many entries the lists above hold together.
    pub differences: usize,
}

#[derive(Debug, Serialize)]
pub struct CaseStatus {
    pub case: String,
    pub a: Status,
    pub b: Status,
}

#[derive(Debug, Serialize)]
pub struct CheckRef {
    pub case: String,
    pub check: String,
}

#[derive(Debug, Serialize)]
pub struct CheckStatus {
    pub case: String,
    pub check: String,
    pub a: Status,
    pub b: Status,
}

/// A timing check whose median moved by more than `noise_ms`: the larger spread plus the
/// tolerance (reports/README.md).
#[derive(Debug, Serialize)]
pub struct TimingShift {
    pub case: String,
    pub check: String,
    pub median_a: f64,
    pub median_b: f64,
    /// max − min of each run's samples.
    pub spread_a: f64,
    pub spread_b: f64,
    pub tolerance_ms: f64,
    pub noise_ms: f64,
}

/// A check both runs judged whose observed values differ.
#[derive(Debug, Serialize)]
pub struct ObservedChange {
    pub case: String,
    pub check: String,
    pub a: Observed,
    pub b: Observed,
}

#[derive(Debug, Serialize)]
pub struct Observed {
    pub observed: Json,
    pub observed_procfs: Json,
}

/// The summary statistics a timing check reports of its samples (netlink clock).
struct TimingStats {
    median: f64,
    spread: f64,
}

impl TimingStats {
    /// Timing checks carry `median` (and `min`, `max`) measurements; no others do.
    fn of(check: &CheckView) -> Option<TimingStats> {
        let get = |name: &str| {
            check
                .measurements
                .iter()
                .find(|m| m.name == name)
                .and_then(|m| m.value)
        };
        let median = get("median")?;
        let spread = match (get("min"), get("max")) {
            (Some(min), Some(max)) => max - min,
            _ => 0.0,
        };
        Some(TimingStats { median, spread })
    }

    /// Beyond noise: the medians differ by more than the larger of the two runs' spreads (what
    /// the samples themselves show of their scatter) plus the timing tolerance (what the backend
    /// allows a sample for scheduling noise).
    fn noise(a: &TimingStats, b: &TimingStats, tolerance_ms: f64) -> f64 {
        a.spread.max(b.spread) + tolerance_ms
    }
}

/// Each key's first item, in order: a report names each case (and a case each check) once.
fn firsts<T>(items: &[T], key: impl Fn(&T) -> String) -> Vec<(String, &T)> {
    let mut seen = HashSet::new();
    items
        .iter()
        .filter_map(|item| {
            let k = key(item);
            seen.insert(k.clone()).then_some((k, item))
        })
        .collect()
}

fn lookup<'a, T>(list: &[(String, &'a T)]) -> HashMap<String, &'a T> {
    list.iter().map(|(k, item)| (k.clone(), *item)).collect()
}

/// Compares B with A, case by case (matched by name and applier) and check by check.
pub fn diff(a: &Loaded, b: &Loaded) -> Diff {
    let kernel = |r: &Loaded| format!("{} ({})", r.view.kernel.release, r.view.kernel.backend);
    let mut d = Diff {
        a: a.path.display().to_string(),
        b: b.path.display().to_string(),
        kernel_a: kernel(a),
        kernel_b: kernel(b),
        cases_only_in_a: Vec::new(),
        cases_only_in_b: Vec::new(),
        case_status: Vec::new(),
        checks_only_in_a: Vec::new(),
        checks_only_in_b: Vec::new(),
        check_status: Vec::new(),
        timing: Vec::new(),
        observed: Vec::new(),
        differences: 0,
    };
    // The larger tolerance: a move either backend calls noise is not a difference.
    let tolerance = a
        .view
        .kernel
        .timing_tolerance_ms
        .max(b.view.kernel.timing_tolerance_ms);
    let (cases_a, cases_b) = (
        firsts(&a.view.cases, CaseView::key),
        firsts(&b.view.cases, CaseView::key),
    );
    let (in_a, in_b) = (lookup(&cases_a), lookup(&cases_b));
    for (key, case_a) in cases_a {
        match in_b.get(&key) {
            None => d.cases_only_in_a.push(key),
            Some(case_b) => compare_case(&mut d, &key, case_a, case_b, tolerance),
        }
    }
    for (key, _) in cases_b {
        if !in_a.contains_key(&key) {
            d.cases_only_in_b.push(key);
        }
    }
    d.differences = d.cases_only_in_a.len()
        + d.cases_only_in_b.len()
        + d.case_status.len()
        + d.checks_only_in_a.len()
        + d.checks_only_in_b.len()
        + d.check_status.len()
        + d.timing.len()
        + d.observed.len();
    d
}

fn compare_case(d: &mut Diff, key: &str, a: &CaseView, b: &CaseView, tolerance: f64) {
    if a.status != b.status {
        d.case_status.push(CaseStatus {
            case: key.into(),
            a: a.status,
            b: b.status,
        });
    }
    let check_id = |c: &CheckView| c.check.clone();
    let (checks_a, checks_b) = (firsts(&a.checks, check_id), firsts(&b.checks, check_id));
    let (in_a, in_b) = (lookup(&checks_a), lookup(&checks_b));
    for (_, va) in checks_a {
        let Some(vb) = in_b.get(&va.check) else {
            d.checks_only_in_a.push(CheckRef {
                case: key.into(),
                check: va.check.clone(),
            });
            continue;
        };
        if va.status != vb.status {
            d.check_status.push(CheckStatus {
                case: key.into(),
                check: va.check.clone(),
                a: va.status,
                b: vb.status,
            });
        }
        match (TimingStats::of(va), TimingStats::of(vb)) {
            // A timing check's observed value is a summary of its samples, different every
            // run: it is compared by the noise rule instead.
            (Some(ta), Some(tb)) => {
                let noise = TimingStats::noise(&ta, &tb, tolerance);
                if (ta.median - tb.median).abs() > noise {
                    d.timing.push(TimingShift {
                        case: key.into(),
                        check: va.check.clone(),
                        median_a: ta.median,
                        median_b: tb.median,
                        spread_a: ta.spread,
                        spread_b: tb.spread,
                        tolerance_ms: tolerance,
                        noise_ms: noise,
                    });
                }
            }
            // A check both runs passed saw, in both, what its rule allows: where its observed
            // value is a summary of measurements (LACPDU intervals, frame counts), the words
            // differ from run to run and say nothing.
            (None, None)
                if (va.observed != vb.observed || va.observed_procfs != vb.observed_procfs)
                    && !(va.status == Status::Pass && vb.status == Status::Pass) =>
            {
                d.observed.push(ObservedChange {
                    case: key.into(),
                    check: va.check.clone(),
                    a: Observed {
                        observed: va.observed.clone(),
                        observed_procfs: va.observed_procfs.clone(),
                    },
                    b: Observed {
                        observed: vb.observed.clone(),
                        observed_procfs: vb.observed_procfs.clone(),
                    },
                });
            }
            // Values alike; or samples on one side only: the check was skipped on the other,
            // which its status change says.
            _ => {}
        }
    }
    for (_, vb) in checks_b {
        if !in_a.contains_key(&vb.check) {
            d.checks_only_in_b.push(CheckRef {
                case: key.into(),
                check: vb.check.clone(),
            });
        }
    }
}

/// A status as the report writes it.
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Known => "known",
        Status::Skip => "skip",
        Status::Error => "error",
    }
}

impl Diff {
    /// One line per difference, each starting with its kind, then a count.
    pub fn text(&self) -> String {
        let mut out = format!(
            "a: {}: Linux {}\nb: {}: Linux {}\n",
            self.a, self.kernel_a, self.b, self.kernel_b
        );
        for c in &self.cases_only_in_a {
            out += &format!("case only in a: {c}\n");
        }
        for c in &self.cases_only_in_b {
            out += &format!("case only in b: {c}\n");
        }
        for c in &self.case_status {
            out += &format!(
                "case status: {}: {} -> {}\n",
                c.case,
                status_word(c.a),
                status_word(c.b)
            );
        }
        for c in &self.checks_only_in_a {
            out += &format!("check only in a: {} {}\n", c.case, c.check);
        }
        for c in &self.checks_only_in_b {
            out += &format!("check only in b: {} {}\n", c.case, c.check);
        }
        for c in &self.check_status {
            out += &format!(
                "check status: {} {}: {} -> {}\n",
                c.case,
                c.check,
                status_word(c.a),
                status_word(c.b)
            );
        }
        for t in &self.timing {
            out += &format!(
                "timing: {} {}: median {:.1} -> {:.1} ms ({:+.1} ms, beyond noise {:.1} ms = \
                 larger spread {:.1} ms + tolerance {:.1} ms)\n",
                t.case,
                t.check,
                t.median_a,
                t.median_b,
                t.median_b - t.median_a,
                t.noise_ms,
                t.spread_a.max(t.spread_b),
                t.tolerance_ms
            );
        }
        for o in &self.observed {
            let mut views = Vec::new();
            if o.a.observed != o.b.observed {
                views.push(format!("netlink {} -> {}", o.a.observed, o.b.observed));
            }
            if o.a.observed_procfs != o.b.observed_procfs {
                views.push(format!(
                    "/proc {} -> {}",
                    o.a.observed_procfs, o.b.observed_procfs
                ));
            }
            out += &format!("observed: {} {}: {}\n", o.case, o.check, views.join("; "));
        }
        out += &match self.differences {
            0 => "no differences\n".to_string(),
            1 => "1 difference\n".to_string(),
            n => format!("{n} differences\n"),
        };
        out
    }
}

/// A merged report, serialisable as JSON. Its top level is in the order a run writes it; any
/// other top-level field comes from the first report.
#[derive(Serialize)]
pub struct Merged<'a> {
    schema: &'a Json,
    tool: &'a Json,
    kernel: Json,
    duration_ms: f64,
    summary: Summary,
    cases: Vec<&'a Json>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Json>,
}

/// Joins shards' reports: tool and kernel facts must agree, cases are sorted by name (path
/// components, as discovery walks them) then applier, and the summary is recounted.
pub fn merge(inputs: &[Loaded]) -> Result<Merged<'_>> {
    let Some(first) = inputs.first() else {
        return Err(Error::Usage(
            "report merge needs at least one report".into(),
        ));
    };
    for other in &inputs[1..] {
        agree(first, other)?;
    }
    let mut cases: Vec<(&Loaded, &CaseView, &Json)> = Vec::new();
    for input in inputs {
        let docs = input.doc["cases"].as_array().map_or(&[][..], Vec::as_slice);
        cases.extend(
            input
                .view
                .cases
                .iter()
                .zip(docs)
                .map(|(v, j)| (input, v, j)),
        );
    }
    // Stable: cases of one name and applier keep their input order, so duplicates sit side
    // by side.
    cases.sort_by(|(_, x, _), (_, y, _)| {
        (Path::new(&x.name), &x.applier).cmp(&(Path::new(&y.name), &y.applier))
    });
    for pair in cases.windows(2) {
        let ((from_a, a, _), (from_b, b, _)) = (pair[0], pair[1]);
        if a.name == b.name && a.applier == b.applier {
            return Err(Error::File {
                path: from_b.path.clone(),
                message: format!(
                    "case `{}` is also in {}: the merged reports' cases must not overlap",
                    a.key(),
                    from_a.path.display()
                ),
            });
        }
    }
    let mut summary = Summary::default();
    for (_, c, _) in &cases {
        summary.count(
            c.status,
            c.negative_control.as_ref().map(|nc| nc.held),
            c.checks.iter().map(|v| v.status),
        );
    }
    let mut kernel = first.doc["kernel"].clone();
    // A shard that never created a bond did not learn the driver's version.
    if let Some(driver) = inputs
        .iter()
        .map(|r| &r.doc["kernel"]["bonding_driver"])
        .find(|d| !d.is_null())
    {
        kernel["bonding_driver"] = driver.clone();
    }
    // Each shard booted its own guest: the longest boot is the one the pipeline waited for.
    let boot = inputs
        .iter()
        .filter_map(|r| r.doc["kernel"]["boot_ms"].as_f64())
        .reduce(f64::max);
    if let Some(ms) = boot {
        kernel["boot_ms"] = ms.into();
    }
    let mut rest = first.doc.as_object().cloned().unwrap_or_default();
    for known in [
        "schema",
        "tool",
        "kernel",
        "duration_ms",
        "summary",
        "cases",
    ] {
        rest.remove(known);
    }
    // Each shard ran in its own process and guest: the most any of them used.
    if let Some(Json::Object(memory)) = rest.get_mut("memory") {
        for (field, value) in memory.iter_mut() {
            *value = inputs
                .iter()
                .filter_map(|r| r.doc["memory"][field].as_u64())
                .max()
                .map_or(Json::Null, Json::from);
        }
    }
    let duration_ms = inputs
        .iter()
        .filter_map(|r| r.doc["duration_ms"].as_f64())
        .sum();
    summary.time(duration_ms, cases.iter().map(|(_, c, _)| c.inherent_ms));
    let merged = Merged {
        schema: &first.doc["schema"],
        tool: &first.doc["tool"],
        kernel,
        duration_ms,
        summary,
        cases: cases.into_iter().map(|(_, _, j)| j).collect(),
        rest,
    };
    Ok(merged)
}

impl Merged<'_> {
    /// The view of the merged report, for the JUnit and KTAP writers.
    pub fn view(&self) -> Result<ReportView> {
        serde_json::to_value(self)
            .and_then(ReportView::deserialize)
            .map_err(|e| Error::run(format!("cannot read back the merged report: {e}")))
    }
}

/// Every `tool` and `kernel` fact of `other` equals `first`'s, but the guest's boot time, which
/// differs per boot, and an unknown (null) bonding driver version.
fn agree(first: &Loaded, other: &Loaded) -> Result<()> {
    let empty = serde_json::Map::new();
    for section in ["tool", "kernel"] {
        let a = first.doc[section].as_object().unwrap_or(&empty);
        let b = other.doc[section].as_object().unwrap_or(&empty);
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (va, vb) = (
                a.get(key).unwrap_or(&Json::Null),
                b.get(key).unwrap_or(&Json::Null),
            );
            let unknown_driver = key == "bonding_driver" && (va.is_null() || vb.is_null());
            if va == vb || key == "boot_ms" || unknown_driver {
                continue;
            }
            return Err(Error::File {
                path: other.path.clone(),
                message: format!(
                    "{section}.{key} is {vb} here but {va} in {}: the reports merged into one \
                     must come from the same bondcheck and kernel",
                    first.path.display()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(path: &str, doc: Json) -> Loaded {
        let view = ReportView::deserialize(&doc).unwrap();
        Loaded {
            path: path.into(),
            doc,
            view,
        }
    }

    fn report(tolerance: f64, cases: Json) -> Json {
        serde_json::json!({
            "schema": SCHEMA,
            "tool": {"name": "bondcheck", "version": "0"},
            "kernel": {"backend": "host", "release": "6.1", "bonding_driver": null,
                       "timing_tolerance_ms": tolerance},
            "duration_ms": 1.0,
            "cases": cases,
        })
    }

    fn timing_case(median: f64, min: f64, max: f64) -> Json {
        serde_json::json!([{"name": "c", "applier": "netlink", "status": "pass", "checks": [
            {"check": "timing.updelay", "status": "pass", "observed": format!("median {median}"),
             "measurements": [{"name": "min", "value": min}, {"name": "median", "value": median},
                              {"name": "max", "value": max}]}]}])
    }

    #[test]
    fn a_median_moves_beyond_noise_only_past_spread_plus_tolerance() {
        let a = loaded("a", report(10.0, timing_case(300.0, 295.0, 305.0)));
        // Spread 10 + tolerance 10: a move of 20 ms is noise, 21 ms is not.
        let within = loaded("b", report(10.0, timing_case(320.0, 318.0, 322.0)));
        assert_eq!(diff(&a, &within).differences, 0);
        let beyond = loaded("b", report(10.0, timing_case(321.0, 320.0, 322.0)));
        let d = diff(&a, &beyond);
        assert_eq!(d.timing.len(), 1, "{d:?}");
        assert_eq!(d.timing[0].noise_ms, 20.0);
        // The observed summary text differs, but timing checks are judged by the rule only.
        assert!(d.observed.is_empty());
    }

    #[test]
    fn observed_words_differ_only_when_a_side_did_not_pass() {
        let case = |status: &str, observed: &str| {
            serde_json::json!([{"name": "c", "applier": "netlink", "status": status, "checks": [
                {"check": "lacp.eno1.lacpdu_interval", "status": status, "observed": observed}]}])
        };
        let a = loaded(
            "a",
            report(10.0, case("pass", "intervals [990.0, 1320.0] ms")),
        );
        let b = loaded(
            "b",
            report(10.0, case("pass", "intervals [989.9, 1320.0] ms")),
        );
        assert_eq!(diff(&a, &b).differences, 0);
        let c = loaded("c", report(10.0, case("fail", "intervals [2990.0] ms")));
        let d = diff(&a, &c);
        assert_eq!((d.observed.len(), d.check_status.len()), (1, 1), "{d:?}");
    }

    #[test]
    fn the_larger_tolerance_of_the_two_backends_applies() {
        let a = loaded("a", report(10.0, timing_case(300.0, 300.0, 300.0)));
        let b = loaded("b", report(30.0, timing_case(325.0, 325.0, 325.0)));
        assert_eq!(diff(&a, &b).differences, 0);
    }

    #[test]
    fn cases_are_matched_by_name_and_applier() {
        let a = loaded(
            "a",
            report(
                10.0,
                serde_json::json!([{"name": "c", "applier": "netlink", "status": "pass", "checks": []}]),
            ),
        );
        let b = loaded(
            "b",
            report(
                10.0,
                serde_json::json!([{"name": "c", "applier": "ifupdown", "status": "pass", "checks": []}]),
            ),
        );
        let d = diff(&a, &b);
        assert_eq!(d.cases_only_in_a, ["c"]);
        assert_eq!(d.cases_only_in_b, ["c@ifupdown"]);
    }
}
