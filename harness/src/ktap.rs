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

/// A result line; `skip` adds the SKIP directive with its reason.
fn result(out: &mut String, indent: &str, ok: bool, n: usize, name: &str, skip: Option<&str>) {
    let word = if ok { "ok" } else { "not ok" };
    out.push_str(&format!("{indent}{word} {n} {}", description(name)));
    if let Some(reason) = skip {
        // The reason is diagnostic data on the same line: one line, no line breaks.
        out.push_str(&format!(" # SKIP {}", description(reason)));
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
                Outcome::Skip => {
                    // Messages of skipped checks say `skipped: <why>`; the directive says SKIP.
                    let reason = judged
                        .text
                        .strip_prefix("skipped: ")
                        .unwrap_or(&judged.text);
                    result(out, INDENT, true, i + 1, &v.check, Some(reason));
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
    let skipped = case.status == Status::Skip;
    let ok = case.status == Status::Pass || skipped;
    result(
        out,
        "",
        ok,
        n,
        &key,
        skipped.then_some("not in this run's profile"),
    );
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
    fn every_line_of_a_diagnostic_is_marked() {
        let mut out = String::new();
        diagnostics(&mut out, INDENT, "one\ntwo\tthree");
        assert_eq!(out, "  # one\n  # two three\n");
    }
}
