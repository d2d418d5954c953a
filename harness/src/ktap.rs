//! KTAP version 1 (Documentation/dev-tools/ktap.rst), the kernel's own test output format,
//! for tools that read kselftest and KUnit results (`bondcheck run --ktap FILE`, `bondcheck
//! report merge --ktap FILE`). Written from the report: one test per case, its checks as nested
//! subtests.

use crate::checks::Status;
use crate::compare::{CaseView, ReportView};
use crate::junit::{Outcome, judge};

/// One level of subtest indentation, per the specification.
const INDENT: &str = "  ";

/// A test's description: a `#` would start a directive and a line break would end the line,
/// so both become spaces.
fn description(s: &str) -> String {
    s.chars()
        .map(|c| if c == '#' || c.is_control() { ' ' } else { c })
        .collect()
}

/// Diagnostic lines: every line of `text`, each starting with `# `.
fn diagnostics(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        out.push_str(indent);
        out.push_str("# ");
        out.push_str(&line.replace(|c: char| c.is_control(), " "));
        out.push('\n');
    }
}

/// A result line; `directive` adds a directive (`SKIP`, or `XFAIL` for a known deviation, as
/// kselftest writes an expected failure) with its reason.
fn result(
    out: &mut String,
    indent: &str,
    ok: bool,
    n: usize,
    name: &str,
    directive: Option<(&str, &str)>,
) {
    let word = if ok { "ok" } else { "not ok" };
    out.push_str(&format!("{indent}{word} {n} {}", description(name)));
    if let Some((directive, reason)) = directive {
        // The reason is diagnostic data on the same line: one line, no line breaks.
        out.push_str(&format!(" # {directive} {}", description(reason)));
    }
    out.push('\n');
}

fn case_test(out: &mut String, n: usize, case: &CaseView) {
    let key = case.key();
    if !case.checks.is_empty() {
        out.push_str(&format!("{INDENT}KTAP version 1\n"));
        diagnostics(out, INDENT, &format!("Subtest: {}", description(&key)));
        out.push_str(&format!("{INDENT}1..{}\n", case.checks.len()));
        for (i, v) in case.checks.iter().enumerate() {
            let judged = judge(case, v);
            // Diagnostics about a test come right before its result line.
            match judged.outcome {
                Outcome::Skip if v.status == Status::Known => {
                    diagnostics(out, INDENT, &judged.text);
                    result(
                        out,
                        INDENT,
                        true,
                        i + 1,
                        &v.check,
                        Some(("XFAIL", "known deviation of this kernel")),
                    );
                }
                Outcome::Skip => {
                    // Messages of skipped checks say `skipped: <why>`; the directive says SKIP.
                    let reason = judged
                        .text
                        .strip_prefix("skipped: ")
                        .unwrap_or(&judged.text);
                    result(out, INDENT, true, i + 1, &v.check, Some(("SKIP", reason)));
                }
                outcome => {
                    diagnostics(out, INDENT, &judged.text);
                    result(out, INDENT, outcome == Outcome::Pass, i + 1, &v.check, None);
                }
            }
        }
    }
    if let Some(e) = &case.error {
        diagnostics(out, "", &format!("{key}: error: {e}"));
    }
    if let Some(nc) = &case.negative_control {
        diagnostics(
            out,
            "",
            &format!(
                "{key}: negative control {}: must fail: {}; failed: {}",
                if nc.held { "held" } else { "broken" },
                nc.must_fail.join(", "),
                nc.failed.join(", ")
            ),
        );
    }
    // The case's status already says whether it passed (a control: whether it held).
    // A case outside the run's profile did not run: ok with a SKIP directive, as KTAP has it.
    // One that failed only where known deviations say: ok with XFAIL, as kselftest has it.
    let directive = match case.status {
        Status::Skip => Some(("SKIP", "not in this run's profile")),
        Status::Known => Some(("XFAIL", "known deviations of this kernel")),
        _ => None,
    };
    let ok = case.status == Status::Pass || directive.is_some();
    result(out, "", ok, n, &key, directive);
}

/// The whole report as a KTAP document: a plan with one test per case.
pub fn render(report: &ReportView) -> String {
    let k = &report.kernel;
    let mut out = format!("KTAP version 1\n1..{}\n", report.cases.len());
    diagnostics(
        &mut out,
        "",
        &format!(
            "bondcheck on Linux {} ({} backend), bonding driver {}",
            k.release,
            k.backend,
            k.bonding_driver.as_deref().unwrap_or("unknown")
        ),
    );
    for (i, case) in report.cases.iter().enumerate() {
        case_test(&mut out, i + 1, case);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_cannot_start_a_directive_or_break_the_line() {
        assert_eq!(description("a # SKIP b\nc"), "a   SKIP b c");
        assert_eq!(
            description("negative-controls/x@ifupdown"),
            "negative-controls/x@ifupdown"
        );
    }

    #[test]
    fn a_known_deviation_is_an_expected_failure_of_check_and_case() {
        let report: ReportView = serde_json::from_value(serde_json::json!({
            "kernel": {"release": "6.1.176", "backend": "uml", "bonding_driver": null,
                       "timing_tolerance_ms": 30.0},
            "duration_ms": 1.0,
            "cases": [{
                "name": "active-backup", "applier": "netlink", "status": "known",
                "checks": [
                    {"check": "option.mode", "status": "pass", "message": "ok"},
                    {"check": "failover.peer_notify", "status": "known",
                     "message": "known deviation peer-notify-commit-tick of this kernel"}
                ]
            }]
        }))
        .expect("a view");
        let text = render(&report);
        assert!(text.contains("  ok 1 option.mode\n"), "{text}");
        assert!(
            text.contains(
                "  # known deviation peer-notify-commit-tick of this kernel\n  \
                 ok 2 failover.peer_notify # XFAIL known deviation of this kernel\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("ok 1 active-backup # XFAIL known deviations of this kernel\n"),
            "{text}"
        );
    }

    #[test]
    fn every_line_of_a_diagnostic_is_marked() {
        let mut out = String::new();
        diagnostics(&mut out, INDENT, "one\ntwo\tthree");
        assert_eq!(out, "  # one\n  # two three\n");
    }
}
