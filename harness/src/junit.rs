//! JUnit XML for CI systems (`bondcheck run --junit FILE`, `bondcheck report merge --junit
//! FILE`), written from the report: one `<testsuite>` per case, one `<testcase>` per check.
//!
//! Also home of [`judge`], a check's outcome as a test (shared with the KTAP writer): in a
//! negative control, a check passes when it failed exactly as the control requires.

use std::fmt::Write as _;

use serde_json::Value as Json;

use crate::checks::Status;
use crate::compare::{CaseView, CheckView, ReportView, status_word};

/// A check's outcome as a test result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
    Error,
}

/// A check judged as a test: its outcome and what to tell the reader (for a pass, a note or
/// nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub outcome: Outcome,
    pub text: String,
}

/// A regular case's check is judged by its own status. A negative control's by the control:
/// a check that must fail passes if it did fail, and any other check passes if it passed (the
/// control holds exactly when all of them do).
pub fn judge(case: &CaseView, v: &CheckView) -> Judged {
    let Some(nc) = &case.negative_control else {
        let outcome = match v.status {
            Status::Pass => Outcome::Pass,
            Status::Fail => Outcome::Fail,
            // JUnit has no expected failure: like pytest's xfail, a known deviation is
            // skipped, with the deviation in its message.
            Status::Known | Status::Skip => Outcome::Skip,
            Status::Error => Outcome::Error,
        };
        let text = if outcome == Outcome::Pass {
            String::new()
        } else {
            v.message.clone()
        };
        return Judged { outcome, text };
    };
    let must_fail = nc.must_fail.contains(&v.check);
    let failed = nc.failed.contains(&v.check);
    let status = status_word(v.status);
    let (outcome, text) = match (must_fail, failed) {
        (true, true) => (
            Outcome::Pass,
            format!("{status} as the negative control requires: {}", v.message),
        ),
        (false, false) => (Outcome::Pass, String::new()),
        (true, false) => (
            Outcome::Fail,
            format!(
                "negative control broken: this check must fail under the perturbation, but it \
                 is {status}: {}",
                v.message
            ),
        ),
        (false, true) => (
            Outcome::Fail,
            format!(
                "negative control broken: the perturbation must not make this check fail, but \
                 it is {status}: {}",
                v.message
            ),
        ),
    };
    Judged { outcome, text }
}

/// Escapes text for an XML attribute value. Line breaks and tabs become character references,
/// so the value keeps them (a parser turns literal ones into spaces); characters XML 1.0
/// cannot carry at all become U+FFFD.
pub fn escape(s: &str) -> String {
    escape_as(s, true)
}

/// Escapes text for element content, where line breaks and tabs stay as they are, readable.
pub fn escape_text(s: &str) -> String {
    escape_as(s, false)
}

fn escape_as(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\t' if !attribute => out.push(c),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}' => {
                out.push(c)
            }
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// A value with its unit, as a check's message shows it (null: the kernel has none).
fn shown(v: &Json, unit: Option<&str>) -> String {
    let value = match v {
        Json::String(s) => s.clone(),
        Json::Null => "none".into(),
        other => other.to_string(),
    };
    match unit {
        Some(u) if !v.is_null() => format!("{value} {u}"),
        _ => value,
    }
}

/// The failure's body: the verdict's values and rule, one per line.
fn details(v: &CheckView) -> String {
    let unit = v.unit.as_deref();
    let mut out = format!(
        "expected: {}\nobserved: {} (netlink)\n",
        shown(&v.expected, unit),
        shown(&v.observed, unit)
    );
    if !v.observed_procfs.is_null() {
        out += &format!("observed: {} (/proc)\n", shown(&v.observed_procfs, unit));
    }
    if let Some(r) = &v.rule {
        out += &format!("rule: {} ({})\n", r.text, r.source);
    }
    out
}

/// Counts of a testsuite (or of all of them).
#[derive(Default)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        self.tests += 1;
        match outcome {
            Outcome::Pass => {}
            Outcome::Fail => self.failures += 1,
            Outcome::Skip => self.skipped += 1,
            Outcome::Error => self.errors += 1,
        }
    }

    fn absorb(&mut self, other: &Counts) {
        self.tests += other.tests;
        self.failures += other.failures;
        self.errors += other.errors;
        self.skipped += other.skipped;
    }

    fn attributes(&self) -> String {
        format!(
            "tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\"",
            self.tests, self.failures, self.errors, self.skipped
        )
    }
}

fn property(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(
        out,
        "      <property name=\"{}\" value=\"{}\"/>",
        escape(name),
        escape(value)
    );
}

/// One `<testsuite>` for a case, with the counts it adds.
fn testsuite(report: &ReportView, case: &CaseView) -> (String, Counts) {
    let key = case.key();
    let class = escape(&key);
    let mut counts = Counts::default();
    let mut cases = String::new();
    // A case that could not be carried out: one erroring testcase says why.
    if let Some(error) = &case.error {
        counts.add(Outcome::Error);
        let _ = writeln!(
            cases,
            "    <testcase name=\"case\" classname=\"{class}\">\n      <error message=\"{}\" type=\"error\"/>\n    </testcase>",
            escape(error)
        );
    }
    // The control's verdict, as the case's status carries it.
    if let Some(nc) = case
        .negative_control
        .as_ref()
        .filter(|_| case.error.is_none())
    {
        let summary = escape(&format!(
            "must fail: {}; failed: {}",
            nc.must_fail.join(", "),
            nc.failed.join(", ")
        ));
        let (outcome, body) = if nc.held {
            (
                Outcome::Pass,
                format!("<system-out>held: {summary}</system-out>"),
            )
        } else {
            (
                Outcome::Fail,
                format!("<failure message=\"broken: {summary}\" type=\"fail\"/>"),
            )
        };
        counts.add(outcome);
        let _ = writeln!(
            cases,
            "    <testcase name=\"negative_control\" classname=\"{class}\">\n      {body}\n    </testcase>"
        );
    }
    for v in &case.checks {
        let judged = judge(case, v);
        counts.add(judged.outcome);
        let open = format!(
            "    <testcase name=\"{}\" classname=\"{class}\"",
            escape(&v.check)
        );
        let text = escape(&judged.text);
        let _ = match judged.outcome {
            Outcome::Pass if judged.text.is_empty() => writeln!(cases, "{open}/>"),
            Outcome::Pass => writeln!(
                cases,
                "{open}>\n      <system-out>{}</system-out>\n    </testcase>",
                escape_text(&judged.text)
            ),
            Outcome::Skip => writeln!(
                cases,
                "{open}>\n      <skipped message=\"{text}\"/>\n    </testcase>"
            ),
            Outcome::Fail | Outcome::Error => {
                let (element, kind) = if judged.outcome == Outcome::Fail {
                    ("failure", "fail")
                } else {
                    ("error", "error")
                };
                writeln!(
                    cases,
                    "{open}>\n      <{element} message=\"{text}\" type=\"{kind}\">{}</{element}>\n    </testcase>",
                    escape_text(&details(v))
                )
            }
        };
    }
    let mut out = format!(
        "  <testsuite name=\"{class}\" {} time=\"{:.3}\">\n    <properties>\n",
        counts.attributes(),
        case.duration_ms / 1e3
    );
    property(&mut out, "kernel.release", &report.kernel.release);
    property(&mut out, "kernel.backend", &report.kernel.backend);
    property(&mut out, "applier", &case.applier);
    if let Some(spec) = &case.spec {
        property(&mut out, "spec.sha256", &spec.sha256);
    }
    for (phase, ms) in &case.phases {
        if let Some(ms) = ms.as_f64() {
            property(&mut out, &format!("phase.{phase}"), &format!("{ms:.3}"));
        }
    }
    property(&mut out, "inherent_ms", &format!("{:.3}", case.inherent_ms));
    // Timing samples and waits: every measurement of every check, unit in the name.
    for v in &case.checks {
        for m in &v.measurements {
            let name = match m.unit.as_str() {
                "" => format!("{}.{}", v.check, m.name),
                unit => format!("{}.{}_{unit}", v.check, m.name),
            };
            let value = m.value.map_or("nan".into(), |x| format!("{x:.3}"));
            property(&mut out, &name, &value);
        }
    }
    out += "    </properties>\n";
    out += &cases;
    out += "  </testsuite>\n";
    (out, counts)
}

/// The whole report as a JUnit XML document.
pub fn render(report: &ReportView) -> String {
    let mut total = Counts::default();
    let mut suites = String::new();
    for case in &report.cases {
        let (xml, counts) = testsuite(report, case);
        suites += &xml;
        total.absorb(&counts);
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"bondcheck\" {} time=\"{:.3}\">\n{suites}</testsuites>\n",
        total.attributes(),
        report.duration_ms / 1e3
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_quotes_and_line_breaks() {
        assert_eq!(
            escape(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(escape("one\ntwo\r\tthree"), "one&#10;two&#13;&#9;three");
        // Element content keeps line breaks and tabs readable; markup is still escaped.
        assert_eq!(
            escape_text("one\n<two>\r\t&"),
            "one\n&lt;two&gt;&#13;\t&amp;"
        );
    }

    #[test]
    fn escape_replaces_what_xml_cannot_carry() {
        assert_eq!(
            escape("nul\0 bell\u{7} \u{FFFE}"),
            "nul\u{FFFD} bell\u{FFFD} \u{FFFD}"
        );
        // Everything else passes through, astral planes included.
        assert_eq!(escape("déjà vu 🦀 ×"), "déjà vu 🦀 ×");
    }
}
