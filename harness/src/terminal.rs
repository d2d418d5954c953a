//! What a person at a terminal sees while a run goes: a status line rewritten in place (the
//! cases in flight, each one's phase or trial and how long it has run), one line per finished
//! case as it finishes (with `--jobs` above 1, not necessarily in the cases' order; the report
//! keeps their order), and a compact summary at the end. Colours only where the output is a terminal (and NO_COLOR is not set), or when
//! asked for; `--quiet` keeps only the summary, `--verbose` adds each case's phases and the
//! whole message of every check that did not pass.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use crate::checks::Status;
use crate::report::{CaseReport, Report};
use crate::run::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// How output looks: colours, and whether a status line can be rewritten in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
    pub live: bool,
}

impl Style {
    /// From what stdout is: a terminal gets colours (unless NO_COLOR is set, see
    /// no-color.org) and a live status line.
    pub fn detect() -> Style {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        Style {
            color: terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            live: terminal,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A status word in its colour: green passed, red failed, yellow error, cyan known
    /// deviation, grey skipped.
    pub fn status(&self, status: Status, word: &str) -> String {
        let code = match status {
            Status::Pass => "32",
            Status::Fail => "31;1",
            Status::Error => "33;1",
            Status::Known => "36",
            Status::Skip => "2",
        };
        self.paint(code, word)
    }
}

/// Turns a run's events into lines on stdout.
pub struct Terminal {
    verbosity: Verbosity,
    style: Style,
    run_started: Instant,
    /// The cases under way, by position: place (from 1), count of cases, name, start, and what
    /// each is doing.
    in_flight: BTreeMap<usize, Under>,
}

struct Under {
    index: usize,
    total: usize,
    name: String,
    started: Instant,
    doing: String,
}

/// The status line is cut here: a line longer than the terminal wraps, and `\r` then
/// rewrites only its last row.
const STATUS_WIDTH: usize = 110;

impl Terminal {
    pub fn new(verbosity: Verbosity, style: Style) -> Terminal {
        Terminal {
            verbosity,
            style,
            run_started: Instant::now(),
            in_flight: BTreeMap::new(),
        }
    }

    /// Hears `event` about the case at position `case` (from 0).
    pub fn hear(&mut self, case: usize, event: Event<'_>) {
        let doing = |t: &mut Terminal, what: String| {
            if let Some(u) = t.in_flight.get_mut(&case) {
                u.doing = what;
            }
        };
        match event {
            Event::Case { index, total, name } => {
                self.in_flight.insert(
                    case,
                    Under {
                        index,
                        total,
                        name: name.to_string(),
                        started: Instant::now(),
                        doing: "starting".into(),
                    },
                );
            }
            Event::Phase(phase) => doing(self, phase.to_string()),
            Event::Trial { n, of } => doing(self, format!("timing, trial {n}/{of}")),
            Event::Done(report) => {
                self.clear();
                self.in_flight.remove(&case);
                let text = self.case(report);
                print!("{text}");
                let _ = std::io::stdout().flush();
            }
        }
        self.draw();
    }

    /// `[3/54] modes/active-backup · timing, trial 2/5 · 1.2 s (run 14.0 s)`, in place; with
    /// several cases in flight, each one's name, doing and time after the others'.
    fn draw(&self) {
        if !self.style.live || self.verbosity == Verbosity::Quiet || self.in_flight.is_empty() {
            return;
        }
        print!("\r\x1b[2K{}", self.style.paint("2", &self.status_line()));
        let _ = std::io::stdout().flush();
    }

    fn status_line(&self) -> String {
        let places: Vec<String> = self
            .in_flight
            .values()
            .map(|u| u.index.to_string())
            .collect();
        let total = self.in_flight.values().next().map_or(0, |u| u.total);
        let cases: Vec<String> = self
            .in_flight
            .values()
            .map(|u| {
                format!(
                    "{} · {} · {:.1} s",
                    u.name,
                    u.doing,
                    u.started.elapsed().as_secs_f64()
                )
            })
            .collect();
        let line = format!(
            "[{}/{total}] {} (run {:.1} s)",
            places.join(","),
            cases.join(" | "),
            self.run_started.elapsed().as_secs_f64()
        );
        match line.char_indices().nth(STATUS_WIDTH) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line,
        }
    }

    fn clear(&self) {
        if self.style.live && self.verbosity != Verbosity::Quiet {
            print!("\r\x1b[2K");
        }
    }

    /// A finished case: nothing when quiet; by default one line, its notes (warnings,
    /// refusals, errors) and the first line of every check that failed; with `--verbose` its
    /// phases and the whole messages.
    fn case(&self, case: &CaseReport) -> String {
        match self.verbosity {
            Verbosity::Quiet => String::new(),
            Verbosity::Verbose => case.text(),
            Verbosity::Normal => {
                let passed = case
                    .checks
                    .iter()
                    .filter(|c| c.status == Status::Pass)
                    .count();
                let kind = match &case.negative_control {
                    Some(nc) if nc.held => " (negative control held)",
                    Some(_) => " (negative control broken)",
                    None => "",
                };
                let mut out = format!(
                    "{} {} ({}){kind}: {passed}/{} checks passed, {:.1} s\n",
                    self.word(case.status),
                    case.name,
                    case.applier.name(),
                    case.checks.len(),
                    case.duration_ms / 1e3
                );
                out += &case.notes();
                // A control's failures are the point; a regular case's are news.
                if case.negative_control.is_none() {
                    for c in case
                        .checks
                        .iter()
                        .filter(|c| matches!(c.status, Status::Fail | Status::Error))
                    {
                        let first = c.message.lines().next().unwrap_or_default();
                        out += &format!("  {} {}: {first}\n", self.word(c.status), c.check);
                    }
                }
                out
            }
        }
    }

    fn word(&self, status: Status) -> String {
        let word = match status {
            Status::Pass => "PASS ",
            Status::Fail => "FAIL ",
            Status::Error => "ERROR",
            Status::Known => "KNOWN",
            Status::Skip => "SKIP ",
        };
        self.style.status(status, word)
    }

    /// The run's summary, with the cases that did not pass named.
    pub fn summary(&self, report: &Report) -> String {
        let mut out = String::new();
        let bad: Vec<&CaseReport> = report
            .cases
            .iter()
            .filter(|c| matches!(c.status, Status::Fail | Status::Error))
            .collect();
        if !bad.is_empty() {
            let names: Vec<String> = bad
                .iter()
                .map(|c| format!("{} ({})", c.name, c.applier.name()))
                .collect();
            out += &format!("{} {}\n", self.word(Status::Fail), names.join(", "));
        }
        let known: Vec<String> = report
            .cases
            .iter()
            .filter(|c| c.status == Status::Known)
            .map(|c| {
                let ids: Vec<&str> = c.known_deviations.iter().map(|d| d.id.as_str()).collect();
                format!("{} ({}: {})", c.name, c.applier.name(), ids.join(", "))
            })
            .collect();
        if !known.is_empty() {
            out += &format!("{} {}\n", self.word(Status::Known), known.join(", "));
        }
        let status = if bad.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        };
        out += &self.style.status(status, &report.summary_text());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_when_asked() {
        let plain = Style {
            color: false,
            live: false,
        };
        assert_eq!(plain.status(Status::Fail, "FAIL"), "FAIL");
        let colour = Style {
            color: true,
            live: false,
        };
        assert_eq!(colour.status(Status::Fail, "FAIL"), "\x1b[31;1mFAIL\x1b[0m");
    }

    #[test]
    fn the_status_line_shows_every_case_in_flight() {
        let plain = Style {
            color: false,
            live: false,
        };
        let mut t = Terminal::new(Verbosity::Normal, plain);
        let begin = |t: &mut Terminal, case: usize, name| {
            t.hear(
                case,
                Event::Case {
                    index: case + 1,
                    total: 54,
                    name,
                },
            )
        };
        begin(&mut t, 2, "modes/active-backup");
        t.hear(2, Event::Trial { n: 2, of: 5 });
        let line = t.status_line();
        assert!(
            line.starts_with("[3/54] modes/active-backup · timing, trial 2/5 · 0.0 s (run "),
            "{line}"
        );
        begin(&mut t, 3, "modes/802.3ad-lacp-partner");
        t.hear(3, Event::Phase("lacp"));
        let line = t.status_line();
        assert!(
            line.starts_with(
                "[3,4/54] modes/active-backup · timing, trial 2/5 · 0.0 s | \
                 modes/802.3ad-lacp-partner · lacp · 0.0 s (run "
            ),
            "{line}"
        );
        begin(
            &mut t,
            4,
            "negative-controls/a-name-long-enough-to-overflow-the-line",
        );
        assert_eq!(t.status_line().chars().count(), STATUS_WIDTH + 1);
    }
}
