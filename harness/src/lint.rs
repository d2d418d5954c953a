//! `bondcheck lint`: what the model says about a spec before anything runs — every finding
//! with its file:line:column, and the configuration the kernel will end up with.

use std::path::Path;

use crate::error::Result;
use crate::ifenslave::Applier;
use crate::model::{self, Value};
use crate::spec::{self, Finding};

/// One option as the kernel will have it, where the spec set it or the kernel will not take
/// it as written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Effective {
    pub option: String,
    pub requested: Option<String>,
    pub expected: Value,
    pub rule: String,
    pub source: &'static str,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Lint {
    pub file: String,
    pub bond: String,
    pub findings: Vec<LintFinding>,
    pub effective: Vec<Effective>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LintFinding {
    pub severity: &'static str,
    pub at: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl From<&Finding> for LintFinding {
    fn from(f: &Finding) -> Self {
        LintFinding {
            severity: "warning",
            at: f.at.to_string(),
            line: f.at.line,
            column: f.at.column,
            message: f.message.clone(),
        }
    }
}

/// Lints one interfaces file as `applier` would bring it up. Parse errors are `Err`: the
/// caller prints them, exit 2.
pub fn lint(path: &Path, applier: Applier) -> Result<Lint> {
    let spec = spec::load(path)?;
    let m = model::predict(&spec, applier);
    let effective = m
        .expectations
        .iter()
        .filter_map(|e| {
            e.requested.as_ref()?;
            let option = e.check.strip_prefix("option.").unwrap_or(&e.check);
            Some(Effective {
                option: option.to_string(),
                requested: e.requested.clone(),
                expected: e.expected.clone(),
                rule: e.rule.text.clone(),
                source: e.rule.source,
            })
        })
        .collect();
    Ok(Lint {
        file: path.display().to_string(),
        bond: spec.bond.name.clone(),
        findings: m.warnings.iter().map(LintFinding::from).collect(),
        effective,
    })
}

impl Lint {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out += &format!("{}: {}: {}\n", f.at, f.severity, f.message);
        }
        out += &format!(
            "\n{}: what the kernel will have for the options the spec sets:\n",
            self.bond
        );
        let width = self
            .effective
            .iter()
            .map(|e| e.option.len())
            .max()
            .unwrap_or(0);
        for e in &self.effective {
            let requested = e.requested.as_deref().unwrap_or("-");
            let mark = if Value::Text(requested.into()) == e.expected
                || requested == e.expected.to_string()
            {
                " "
            } else {
                "!"
            };
            out += &format!(
                "  {mark} {:<width$}  {requested} -> {}\n",
                e.option, e.expected
            );
        }
        out += &format!("{} findings\n", self.findings.len());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn howto_lint_names_the_lines_an_admin_needs() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let l = lint(
            &root.join("suites/debian-howto/interfaces"),
            Applier::Ifupdown,
        )
        .unwrap();
        let at = |line: usize, needle: &str| {
            l.findings
                .iter()
                .any(|f| f.line == line && f.message.contains(needle))
        };
        assert!(at(17, "rounds it down to 200 ms"), "{:#?}", l.findings);
        assert!(at(18, "rounds it down to 200 ms"));
        assert!(at(19, "refuses it (EACCES)"));
        assert!(at(11, "`network` is not used by ifupdown's static method"));
        assert!(at(12, "`broadcast` is not used"));
        assert!(at(8, "static aggregate"));
        let text = l.text();
        assert!(text.contains("! updelay"), "{text}");
        assert!(text.contains("220 -> 200"), "{text}");
        assert!(text.contains("! primary"), "{text}");
    }

    #[test]
    fn extensions_are_not_applied_through_ifupdown() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let spec = root.join("suites/modes/802.3ad/interfaces");
        let min_links = |a| {
            lint(&spec, a)
                .unwrap()
                .effective
                .into_iter()
                .find(|e| e.option == "min_links")
                .unwrap()
        };
        assert_eq!(min_links(Applier::Netlink).expected, Value::Number(2));
        assert_eq!(min_links(Applier::Ifupdown).expected, Value::Number(0));
        let l = lint(&spec, Applier::Ifupdown).unwrap();
        assert!(l.findings.iter().any(|f| {
            f.message
                .contains("bond-min-links is not applied by ifenslave")
        }));
    }
}
