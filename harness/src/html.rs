//! The HTML report (`--html`): one self-contained page for people, inline CSS and SVG, no script
//! and no external asset. A summary table of the cases and the kernel, then per case its facts,
//! warnings, timelines and checks.
//!
//! A timeline draws one lane per slave against a time axis in ms: frames as ticks in the
//! slave's colour, carrier cuts and restores as vertical marks, the model's window shaded over
//! the cut slave's lane, committed transitions as markers. It draws only times the report holds
//! on one clock: the timing trials count from each carrier change and the traffic phase from
//! the start of sending, so today they get timelines of their own rather than a faked common
//! axis. A case whose arrivals are ever timed from a cut goes through the same [`Timeline`].
//!
//! It renders a [`ReportView`], the input JUnit and KTAP render from too: `run --html` the view
//! of its in-memory report, `report html` a report read back from its JSON.

use std::fmt::Write as _;

use serde_json::Value as Json;

use crate::arpmon;
use crate::checks::{Status, TIMING};
use crate::compare::{CaseView, CheckView, ReportView};
use crate::report::Summary;
use crate::timing::Sample;

/// An sRGB colour. Public, with the colours below, so that a test can find what the page draws
/// in a screenshot of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl std::fmt::Display for Rgb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Each slave's colour, by its position in enslave order (repeating after six). None of them is
/// a mark's or a window's colour.
pub const LANE_COLOURS: [Rgb; 6] = [
    Rgb(0x1f, 0x77, 0xb4),
    Rgb(0xff, 0x7f, 0x0e),
    Rgb(0x94, 0x67, 0xbd),
    Rgb(0x8c, 0x56, 0x4b),
    Rgb(0xe3, 0x77, 0xc2),
    Rgb(0xbc, 0xbd, 0x22),
];
/// A carrier cut.
pub const CUT: Rgb = Rgb(0xd6, 0x27, 0x28);
/// A carrier restored.
pub const RESTORE: Rgb = Rgb(0x0f, 0x9d, 0x58);
/// The model's window for a committed transition.
pub const WINDOW: Rgb = Rgb(0xfd, 0xe6, 0x8a);
/// Past the window, within the backend's tolerance for scheduling noise.
pub const TOLERANCE: Rgb = Rgb(0xfe, 0xf5, 0xd4);
/// The driver's commit as announced over netlink.
pub const COMMIT: Rgb = Rgb(0x11, 0x18, 0x27);
/// The same commit on the kernel log's clock.
pub const LOGGED: Rgb = Rgb(0x6b, 0x72, 0x80);

/// A timeline's SVG geometry in CSS pixels (the SVG is drawn at its own size). Every lane has a
/// stripe of its slave's colour at `STRIPE_LEFT`; time 0 is at `PLOT_LEFT`.
pub const WIDTH: f64 = 960.0;
pub const STRIPE_LEFT: f64 = 0.0;
pub const STRIPE_WIDTH: f64 = 6.0;
pub const PLOT_LEFT: f64 = 160.0;
pub const PLOT_RIGHT: f64 = WIDTH - 24.0;
/// Room above the first lane for the marks' labels.
const TOP: f64 = 24.0;
const ROW: f64 = 10.0;
const ROW_GAP: f64 = 4.0;
const LANE_PAD: f64 = 7.0;
/// Between lanes: room for a window's label above its lane.
const LANE_GAP: f64 = 14.0;
/// Below the last lane: the axis, its tick labels and its title.
const AXIS: f64 = 44.0;

/// The page for a report.
pub fn render(report: &ReportView) -> String {
    let mut out = String::new();
    let title = match report.cases.as_slice() {
        [one] => format!("bondcheck: {}", one.key()),
        cases => format!("bondcheck: {} cases", cases.len()),
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>bondcheck report</h1>\n",
        esc(&title)
    );
    out += &kernel_facts(report);
    out += &summary_table(report);
    for (i, case) in report.cases.iter().enumerate() {
        out += &case_section(i, case);
    }
    out += "</body>\n</html>\n";
    out
}

const STYLE: &str = "
body { font-family: 'DejaVu Sans', sans-serif; font-size: 14px; color: #111827; margin: 24px;
  max-width: 1000px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 4px; }
section { border-top: 1px solid #d1d5db; margin-top: 28px; padding-top: 14px; }
.facts, .desc { color: #4b5563; margin: 2px 0 8px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d1d5db; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: bold; background: #f9fafb; }
.status { font-weight: bold; padding: 0 6px; border-radius: 3px; }
.pass { background: #dcfce7; color: #166534; }
.fail { background: #fee2e2; color: #991b1b; }
.known { background: #cffafe; color: #155e75; }
.skip { background: #e5e7eb; color: #374151; }
.error { background: #fde68a; color: #7c2d12; }
p.error { padding: 4px 8px; }
figure { margin: 14px 0; }
figcaption { font-weight: bold; margin-bottom: 4px; }
svg { display: block; }
svg text { font-family: 'DejaVu Sans', sans-serif; }
.legend { color: #374151; font-size: 12px; margin-top: 2px; }
.legend span.key { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px;
  vertical-align: -1px; }
.legend span.key:first-child { margin-left: 0; }
ul.warnings { margin: 4px 0; padding-left: 20px; }
code { font-size: 12px; }
details summary { cursor: pointer; margin: 6px 0; }
table.checks td:nth-child(5) { max-width: 420px; }
";

fn kernel_facts(report: &ReportView) -> String {
    let k = &report.kernel;
    let mut facts = Vec::new();
    if let Some(t) = &report.tool {
        facts.push(format!("{} {}", t.name, t.version));
    }
    facts.push(format!("Linux {} ({} backend)", k.release, k.backend));
    facts.push(format!(
        "bonding driver {}",
        k.bonding_driver.as_deref().unwrap_or("unknown")
    ));
    facts.push(match k.hz {
        Some(hz) => format!("HZ {hz}"),
        None => "HZ unknown".into(),
    });
    if let Some(boot) = k.boot_ms {
        facts.push(format!("guest booted in {boot:.0} ms"));
    }
    facts.push(format!(
        "timing tolerance {} ms",
        num(k.timing_tolerance_ms)
    ));
    facts.push(format!("run {:.1} s", report.duration_ms / 1e3));
    format!("<p class=\"facts\">{}</p>\n", esc(&facts.join(" · ")))
}

/// Checks of one case by status: passed, failed (errors included, as in the summary), skipped.
fn check_counts(case: &CaseView) -> (usize, usize, usize) {
    let count = |f: fn(Status) -> bool| case.checks.iter().filter(|c| f(c.status)).count();
    (
        count(|s| s == Status::Pass),
        count(|s| matches!(s, Status::Fail | Status::Error)),
        count(|s| s == Status::Skip),
    )
}

/// The word for a case's outcome, and its CSS class.
fn case_status(case: &CaseView) -> (&'static str, &'static str) {
    match (&case.negative_control, case.status) {
        (Some(nc), _) if case.error.is_none() && nc.held => ("held", "pass"),
        (Some(_), Status::Fail) => ("broken", "fail"),
        (_, Status::Pass) => ("pass", "pass"),
        (_, Status::Fail) => ("fail", "fail"),
        (_, Status::Known) => ("known", "known"),
        (_, Status::Skip) => ("skip", "skip"),
        (_, Status::Error) => ("error", "error"),
    }
}

fn badge(word: &str, class: &str) -> String {
    format!("<span class=\"status {class}\">{}</span>", esc(word))
}

fn summary_table(report: &ReportView) -> String {
    let mut s = Summary::default();
    let mut rows = String::new();
    for (i, case) in report.cases.iter().enumerate() {
        s.count(
            case.status,
            case.negative_control.as_ref().map(|nc| nc.held),
            case.checks.iter().map(|c| c.status),
        );
        let (passed, failed, skipped) = check_counts(case);
        let (word, class) = case_status(case);
        let _ = writeln!(
            rows,
            "<tr><td><a href=\"#case-{i}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"n\">{passed}</td><td class=\"n\">{failed}</td><td class=\"n\">{skipped}</td>\
             <td class=\"n\">{:.1} s</td></tr>",
            esc(&case.name),
            esc(&case.applier),
            esc(&case.topology),
            badge(word, class),
            case.duration_ms / 1e3
        );
    }
    let mut totals = format!(
        "{}: {} passed, {} failed, {} errors",
        count(s.cases, "case"),
        s.cases_passed,
        s.cases_failed,
        s.cases_error
    );
    if s.cases_known > 0 {
        totals += &format!(
            "; {} with known deviations of this kernel ({} checks)",
            s.cases_known, s.checks_known
        );
    }
    if s.negative_controls_held + s.negative_controls_broken > 0 {
        totals += &format!(
            "; negative controls: {} held, {} broken",
            s.negative_controls_held, s.negative_controls_broken
        );
    }
    format!(
        "<table class=\"summary\">\n<thead><tr><th>case</th><th>applier</th><th>topology</th>\
         <th>status</th><th>checks passed</th><th>failed</th><th>skipped</th><th>time</th></tr></thead>\n\
         <tbody>\n{rows}</tbody>\n<tfoot><tr><td colspan=\"4\">{}</td><td class=\"n\">{}</td>\
         <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1} s</td></tr></tfoot>\n</table>\n",
        esc(&totals),
        s.checks_passed,
        s.checks_failed,
        s.checks_skipped,
        report.duration_ms / 1e3
    )
}

fn case_section(i: usize, case: &CaseView) -> String {
    let (word, class) = case_status(case);
    let mut out = format!(
        "<section id=\"case-{i}\">\n<h2>{} {}</h2>\n",
        esc(&case.key()),
        badge(word, class)
    );
    if !case.description.is_empty() {
        let _ = writeln!(out, "<p class=\"desc\">{}</p>", esc(&case.description));
    }
    let mut facts = vec![
        format!("applier {}", case.applier),
        format!("topology {}", case.topology),
    ];
    if let Some(spec) = &case.spec {
        facts.push(format!(
            "spec sha256 {}",
            spec.sha256.get(..12).unwrap_or("")
        ));
    }
    // In the order a case goes through them; a phase this code does not know comes last.
    let order = [
        "setup", "apply", "observe", "lacp", "traffic", "timing", "checks", "teardown",
    ];
    let mut phases: Vec<(usize, String)> = case
        .phases
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_suffix("_ms")?;
            let at = order.iter().position(|o| *o == name).unwrap_or(order.len());
            Some((at, format!("{name} {}", ms_text(v.as_f64()?))))
        })
        .collect();
    phases.sort();
    let phases: Vec<String> = phases.into_iter().map(|(_, p)| p).collect();
    facts.push(format!(
        "{:.1} s ({})",
        case.duration_ms / 1e3,
        phases.join(", ")
    ));
    let _ = writeln!(out, "<p class=\"facts\">{}</p>", esc(&facts.join(" · ")));
    if let Some(e) = &case.error {
        let _ = writeln!(
            out,
            "<p class=\"error\">could not be carried out: {}</p>",
            esc(e)
        );
    }
    if let Some(nc) = &case.negative_control {
        let _ = writeln!(
            out,
            "<p>negative control: must fail <code>{}</code>; failed <code>{}</code></p>",
            esc(&nc.must_fail.join(", ")),
            esc(&nc.failed.join(", "))
        );
    }
    if !case.warnings.is_empty() {
        out += "<ul class=\"warnings\">\n";
        for w in &case.warnings {
            let _ = writeln!(
                out,
                "<li><code>{}</code>: {}</li>",
                esc(&w.at),
                esc(&w.message)
            );
        }
        out += "</ul>\n";
    }
    for timeline in timing_timelines(case).iter().chain(&traffic_timeline(case)) {
        out += &timeline.figure();
    }
    out += &checks_table(case);
    out += "</section>\n";
    out
}

fn checks_table(case: &CaseView) -> String {
    if case.checks.is_empty() {
        return String::new();
    }
    let (passed, failed, skipped) = check_counts(case);
    let mut rows = String::new();
    for c in &case.checks {
        let class = match c.status {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Known => "known",
            Status::Skip => "skip",
            Status::Error => "error",
        };
        let word = serde_json::to_value(c.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let unit = c
            .unit
            .as_deref()
            .map(|u| format!(" {u}"))
            .unwrap_or_default();
        let mut observed = value_text(&c.observed, &unit);
        if !c.observed_procfs.is_null() && c.observed_procfs != c.observed {
            observed += &format!(" (/proc: {})", value_text(&c.observed_procfs, &unit));
        }
        let _ = writeln!(
            rows,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.check),
            badge(&word, class),
            esc(&value_text(&c.expected, &unit)),
            esc(&observed),
            esc(&c.message)
        );
    }
    // Open when something needs reading: a failure is never hidden behind a click.
    let open = if failed > 0 { " open" } else { "" };
    format!(
        "<details{open}><summary>{} checks: {passed} passed, {failed} failed, {skipped} skipped</summary>\n\
         <table class=\"checks\">\n<thead><tr><th>check</th><th>status</th><th>expected</th>\
         <th>observed</th><th>message</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n</details>\n",
        case.checks.len()
    )
}

fn value_text(v: &Json, unit: &str) -> String {
    match v {
        Json::Null => "—".into(),
        Json::String(s) if unit.is_empty() || s.ends_with(unit.trim()) => s.clone(),
        Json::String(s) => format!("{s}{unit}"),
        Json::Number(n) => format!("{n}{unit}"),
        other => other.to_string(),
    }
}

/// One picture: lanes (slaves) against a time axis in ms from `origin`.
#[derive(Debug)]
struct Timeline {
    title: String,
    origin: String,
    span_ms: f64,
    lanes: Vec<Lane>,
    windows: Vec<Shade>,
    marks: Vec<Mark>,
}

#[derive(Debug)]
struct Lane {
    name: String,
    colour: Rgb,
    /// A few words under the name: what happened to this slave.
    note: String,
    rows: Vec<Row>,
}

/// One row of a lane: a trial of the timing phase, or the traffic phase.
#[derive(Debug, Default)]
struct Row {
    label: String,
    /// From the carrier change to the commit, in the lane's colour.
    bar: Option<(f64, f64)>,
    /// Frames seen on this slave.
    frames: Vec<f64>,
    /// Commits announced over netlink.
    commits: Vec<f64>,
    /// Commits on the kernel log's clock.
    logged: Vec<f64>,
    /// The bond's active slave is this one from here on.
    active: Vec<f64>,
}

/// The model's window over one lane: (lower, upper], then up to upper plus the tolerance.
#[derive(Debug)]
struct Shade {
    lane: usize,
    lower: f64,
    upper: f64,
    tolerance: f64,
}

#[derive(Debug)]
struct Mark {
    at_ms: f64,
    label: String,
    colour: Rgb,
}

/// The slaves in enslave order, as far as the case's report shows them.
fn slaves(case: &CaseView) -> Vec<String> {
    let mut names: Vec<String> = case
        .traffic
        .iter()
        .flat_map(|t| t.sent.captures.iter().map(|c| c.slave.clone()))
        .collect();
    if let Some(m) = &case.timing
        && !names.contains(&m.slave)
    {
        names.push(m.slave.clone());
    }
    names
}

fn measurement(check: Option<&CheckView>, name: &str) -> Option<f64> {
    check?
        .measurements
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| m.value)
}

/// A timing check's id under the MII monitor and under the ARP monitor.
type Ids = [&'static str; 2];

/// The timing trials: one timeline for the cuts (carrier lost → slave committed down) and one
/// for the restores (carrier back → committed up), every trial a row of the cut slave's lane.
fn timing_timelines(case: &CaseView) -> Vec<Timeline> {
    let Some(m) = &case.timing else {
        return Vec::new();
    };
    let names = slaves(case);
    let trials = m.down.len().max(m.up.len());
    // The window is the MII monitor's check's, or the ARP monitor's.
    let parts: [(&[Sample], Ids, &str, &str, Rgb); 2] = [
        (&m.down, [TIMING[0], arpmon::CHECKS[0]], "cut", "down", CUT),
        (
            &m.up,
            [TIMING[1], arpmon::CHECKS[1]],
            "restored",
            "up",
            RESTORE,
        ),
    ];
    parts
        .into_iter()
        .map(|(samples, check_ids, verb, state, colour)| {
            let check = case
                .checks
                .iter()
                .find(|c| check_ids.contains(&c.check.as_str()));
            let window = measurement(check, "window_lower").zip(measurement(check, "window_upper"));
            let tolerance = measurement(check, "tolerance").unwrap_or(0.0);
            let cut_lane = names.iter().position(|n| *n == m.slave).unwrap_or(0);
            let has_active = samples.iter().any(|s| s.active.is_some());
            let lanes = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let cut = i == cut_lane;
                    let rows = if cut || has_active { trials } else { 1 };
                    let mut rows: Vec<Row> = (0..rows).map(|_| Row::default()).collect();
                    for (s, row) in samples.iter().zip(&mut rows) {
                        if cut {
                            row.label = s.trial.to_string();
                            row.bar = s.netlink_ms.map(|at| (0.0, at));
                            row.commits.extend(s.netlink_ms);
                            row.logged.extend(s.kmsg_ms);
                        }
                        if s.active.as_ref() == Some(name) {
                            row.active.extend(s.netlink_ms);
                        }
                    }
                    let note = if cut {
                        format!("carrier {verb} at 0")
                    } else {
                        "carrier untouched".into()
                    };
                    Lane {
                        name: name.clone(),
                        colour: lane_colour(i),
                        note,
                        rows,
                    }
                })
                .collect();
            let windows: Vec<Shade> = window
                .map(|(lower, upper)| Shade {
                    lane: cut_lane,
                    lower,
                    upper,
                    tolerance,
                })
                .into_iter()
                .collect();
            let latest = samples
                .iter()
                .flat_map(|s| s.netlink_ms.into_iter().chain(s.kmsg_ms))
                .chain(windows.iter().map(|w| w.upper + w.tolerance))
                .fold(0.0, f64::max);
            Timeline {
                title: format!(
                    "{}'s carrier {verb}, {} trials: until the driver commits it {state}{}",
                    m.slave,
                    samples.len(),
                    if windows.is_empty() {
                        " (no window: the kernel's HZ is unknown)"
                    } else {
                        ""
                    }
                ),
                origin: format!("the carrier {verb}"),
                span_ms: latest * 1.1,
                lanes,
                windows,
                marks: vec![Mark {
                    at_ms: 0.0,
                    label: format!("{} {verb}", m.slave),
                    colour,
                }],
            }
        })
        .collect()
}

/// The traffic phase: every copy of every frame on the slave whose capture saw it.
fn traffic_timeline(case: &CaseView) -> Option<Timeline> {
    let t = case.traffic.as_ref()?;
    let sent = &t.sent;
    if sent.arrivals.is_empty() {
        return None;
    }
    let lanes = sent
        .captures
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut notes = vec![count(c.frames, "frame")];
            if t.settings.down.contains(&c.slave) {
                notes.push("cut before sending".into());
            }
            if t.active.as_ref() == Some(&c.slave) {
                notes.push("active".into());
            }
            if c.dropped > 0 {
                notes.push(format!("{} dropped by the capture", c.dropped));
            }
            if let Some(why) = &c.absent {
                notes.push(format!("not captured: {why}"));
            }
            Lane {
                name: c.slave.clone(),
                colour: lane_colour(i),
                note: notes.join(", "),
                rows: vec![Row {
                    frames: sent
                        .arrivals
                        .iter()
                        .filter(|a| a.slave == i)
                        .map(|a| a.at_us / 1e3)
                        .collect(),
                    ..Row::default()
                }],
            }
        })
        .collect();
    let latest = sent
        .arrivals
        .iter()
        .map(|a| a.at_us / 1e3)
        .fold(0.0, f64::max);
    Some(Timeline {
        title: format!(
            "Frames through the bond: {} sent in {}, every copy a capture saw (kernel timestamps)",
            sent.frames,
            count(sent.rounds, "round")
        ),
        origin: "the start of sending".into(),
        span_ms: latest * 1.05,
        lanes,
        windows: Vec::new(),
        marks: Vec::new(),
    })
}

fn lane_colour(i: usize) -> Rgb {
    LANE_COLOURS[i % LANE_COLOURS.len()]
}

impl Timeline {
    fn lane_height(lane: &Lane) -> f64 {
        let rows = lane.rows.len().max(1) as f64;
        2.0 * LANE_PAD + rows * ROW + (rows - 1.0) * ROW_GAP
    }

    /// Top of each lane, and the height of the whole picture.
    fn layout(&self) -> (Vec<f64>, f64) {
        let mut tops = Vec::new();
        let mut y = TOP;
        for lane in &self.lanes {
            tops.push(y);
            y += Self::lane_height(lane) + LANE_GAP;
        }
        (tops, y - LANE_GAP + AXIS)
    }

    fn x(&self, ms: f64) -> f64 {
        let span = if self.span_ms > 0.0 {
            self.span_ms
        } else {
            1.0
        };
        PLOT_LEFT + ms.clamp(0.0, span) / span * (PLOT_RIGHT - PLOT_LEFT)
    }

    fn figure(&self) -> String {
        format!(
            "<figure>\n<figcaption>{}</figcaption>\n{}{}</figure>\n",
            esc(&self.title),
            self.svg(),
            self.legend()
        )
    }

    fn svg(&self) -> String {
        let (tops, height) = self.layout();
        let plot_bottom = height - AXIS;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
             viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\">\n",
            esc(&self.title)
        );
        for (lane, &top) in self.lanes.iter().zip(&tops) {
            let h = Self::lane_height(lane);
            let _ = writeln!(
                s,
                "<rect x=\"{PLOT_LEFT}\" y=\"{top}\" width=\"{}\" height=\"{h}\" fill=\"#f3f4f6\"/>\
                 <rect x=\"{STRIPE_LEFT}\" y=\"{top}\" width=\"{STRIPE_WIDTH}\" height=\"{h}\" fill=\"{}\" \
                 shape-rendering=\"crispEdges\"/>\
                 <text x=\"{}\" y=\"{}\" font-size=\"13\" font-weight=\"bold\">{}</text>\
                 <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#4b5563\">{}</text>",
                PLOT_RIGHT - PLOT_LEFT,
                lane.colour,
                STRIPE_LEFT + STRIPE_WIDTH + 6.0,
                top + 14.0,
                esc(&lane.name),
                STRIPE_LEFT + STRIPE_WIDTH + 6.0,
                top + 28.0,
                esc(&clip(&lane.note, 22)),
            );
        }
        for w in &self.windows {
            let (top, h) = (tops[w.lane], Self::lane_height(&self.lanes[w.lane]));
            let (lo, hi, tol) = (
                self.x(w.lower),
                self.x(w.upper),
                self.x(w.upper + w.tolerance),
            );
            let _ = writeln!(
                s,
                "<rect x=\"{hi:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{h}\" fill=\"{TOLERANCE}\" \
                 shape-rendering=\"crispEdges\"/>\
                 <rect x=\"{lo:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{h}\" fill=\"{WINDOW}\" \
                 shape-rendering=\"crispEdges\"><title>the model's window ({}, {}] ms, then {} ms of \
                 tolerance</title></rect>\
                 <text x=\"{:.1}\" y=\"{}\" font-size=\"10\" fill=\"#92400e\" text-anchor=\"middle\">\
                 the model's window ({}, {}] ms</text>",
                tol - hi,
                hi - lo,
                num(w.lower),
                num(w.upper),
                num(w.tolerance),
                (lo + hi) / 2.0,
                top - 3.0,
                num(w.lower),
                num(w.upper),
            );
        }
        for (lane, &top) in self.lanes.iter().zip(&tops) {
            for (r, row) in lane.rows.iter().enumerate() {
                let y = top + LANE_PAD + r as f64 * (ROW + ROW_GAP);
                s += &self.row_svg(row, y, lane.colour);
            }
        }
        for m in &self.marks {
            let x = self.x(m.at_ms).round();
            let _ = writeln!(
                s,
                "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{plot_bottom}\" stroke=\"{}\" stroke-width=\"2\" \
                 shape-rendering=\"crispEdges\"/>\
                 <text x=\"{}\" y=\"{}\" font-size=\"11\" font-weight=\"bold\" fill=\"{}\">{}</text>",
                TOP - 10.0,
                m.colour,
                x + 4.0,
                TOP - 4.0,
                m.colour,
                esc(&m.label)
            );
        }
        s += &self.axis(plot_bottom);
        s += "</svg>\n";
        s
    }

    fn row_svg(&self, row: &Row, y: f64, colour: Rgb) -> String {
        let mut s = String::new();
        if !row.label.is_empty() {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" font-size=\"9\" fill=\"#6b7280\" text-anchor=\"end\">{}</text>",
                PLOT_LEFT - 4.0,
                y + ROW - 1.0,
                esc(&row.label)
            );
        }
        if let Some((from, to)) = row.bar {
            let (a, b) = (self.x(from), self.x(to));
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"{colour}\" \
                 shape-rendering=\"crispEdges\"/>",
                a.round() + 1.0,
                y + 2.0,
                (b - a.round() - 1.0).max(0.0),
                ROW - 4.0
            );
        }
        for &at in &row.frames {
            let _ = write!(
                s,
                "<rect x=\"{:.0}\" y=\"{y}\" width=\"2\" height=\"{ROW}\" fill=\"{colour}\" \
                 shape-rendering=\"crispEdges\"/>",
                self.x(at).floor()
            );
        }
        for &at in &row.logged {
            let x = self.x(at);
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"{LOGGED}\" stroke-width=\"1.5\"/>",
                y - 1.0,
                y + ROW + 1.0
            );
        }
        for &at in &row.commits {
            let x = self.x(at);
            let _ = write!(
                s,
                "<path d=\"M{:.1} {} L{:.1} {} L{x:.1} {}Z\" fill=\"{COMMIT}\"/>",
                x - 4.5,
                y - 1.0,
                x + 4.5,
                y - 1.0,
                y + ROW
            );
        }
        for &at in &row.active {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{}\" r=\"4.5\" fill=\"{colour}\" stroke=\"{COMMIT}\" stroke-width=\"1\"/>",
                self.x(at) + 9.0,
                y + ROW / 2.0
            );
        }
        s
    }

    fn axis(&self, y: f64) -> String {
        let step = tick_step(self.span_ms);
        let mut s = format!(
            "<line x1=\"{PLOT_LEFT}\" y1=\"{y}\" x2=\"{PLOT_RIGHT}\" y2=\"{y}\" stroke=\"#374151\" \
             shape-rendering=\"crispEdges\"/>\n"
        );
        let mut t = 0.0;
        while t <= self.span_ms + step * 1e-9 {
            let x = self.x(t).round();
            let _ = write!(
                s,
                "<line x1=\"{x}\" y1=\"{y}\" x2=\"{x}\" y2=\"{}\" stroke=\"#374151\" shape-rendering=\"crispEdges\"/>\
                 <text x=\"{x}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#374151\">{}</text>",
                y + 4.0,
                y + 15.0,
                num(t)
            );
            t += step;
        }
        let _ = writeln!(
            s,
            "\n<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#374151\">ms from {}</text>",
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            y + 32.0,
            esc(&self.origin)
        );
        s
    }

    /// A key to what this picture draws, and only that.
    fn legend(&self) -> String {
        let rows = || self.lanes.iter().flat_map(|l| &l.rows);
        let mut keys: Vec<(String, String)> = Vec::new();
        let swatch = |style: String, text: &str| (style, text.to_string());
        for m in &self.marks {
            keys.push(swatch(format!("background:{}", m.colour), &m.label));
        }
        if rows().any(|r| r.bar.is_some()) {
            keys.push(swatch(
                format!("background:{}", LANE_COLOURS[0]),
                "until the commit (lane colour)",
            ));
        }
        if rows().any(|r| !r.commits.is_empty()) {
            keys.push(swatch(
                format!("background:{COMMIT}"),
                "committed (netlink notification)",
            ));
        }
        if rows().any(|r| !r.logged.is_empty()) {
            keys.push(swatch(
                format!("background:{LOGGED}; width:2px"),
                "committed (kernel log)",
            ));
        }
        if rows().any(|r| !r.active.is_empty()) {
            keys.push(swatch(
                format!("background:{}; border-radius:5px", LANE_COLOURS[0]),
                "active slave after the commit",
            ));
        }
        if rows().any(|r| !r.frames.is_empty()) {
            keys.push(swatch(
                format!("background:{}", LANE_COLOURS[0]),
                "a frame seen on the slave (lane colour)",
            ));
        }
        if let Some(w) = self.windows.first() {
            keys.push(swatch(format!("background:{WINDOW}"), "the model's window"));
            keys.push(swatch(
                format!("background:{TOLERANCE}; outline:1px solid #e5e7eb"),
                &format!("+{} ms tolerance", num(w.tolerance)),
            ));
        }
        let mut out = String::from("<div class=\"legend\">");
        for (style, text) in keys {
            let _ = write!(
                out,
                "<span class=\"key\" style=\"{}\"></span>{}",
                esc(&style),
                esc(&text)
            );
        }
        out += "</div>\n";
        out
    }
}

/// A round step for about six to ten ticks over `span` ms: 1, 2 or 5 times a power of ten.
fn tick_step(span: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let rough = span / 8.0;
    let power = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= rough)
        .unwrap_or(10.0 * power)
}

/// `1 case`, `2 cases`.
fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// A duration in ms to a precision a reader needs: 3271 ms, 24.0 ms, 6.6 ms, 0.06 ms.
fn ms_text(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.0} ms"),
        v if v >= 1.0 => format!("{v:.1} ms"),
        v => format!("{v:.2} ms"),
    }
}

/// A number without trailing zeros: 200, 30, 0.5, 12.25.
fn num(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn clip(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Text for HTML and inline SVG, in element content and quoted attributes alike.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn example() -> Json {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../reports/example-debian-howto.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("JSON")
    }

    fn view(doc: &Json) -> ReportView {
        ReportView::deserialize(doc).expect("a report view")
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc("déjà vu 🦀"), "déjà vu 🦀");
    }

    #[test]
    fn the_how_to_has_both_timing_timelines_and_its_frames() {
        let doc = example();
        let case = &view(&doc).cases[0];
        let timing = timing_timelines(case);
        assert_eq!(timing.len(), 2);
        for t in &timing {
            let names: Vec<&str> = t.lanes.iter().map(|l| l.name.as_str()).collect();
            assert_eq!(names, ["enp1s0", "enp7s0"]);
            // The window comes from the check's measurements, not from the model here.
            let w = &t.windows[0];
            assert_eq!(
                (w.lane, w.lower, w.upper, w.tolerance),
                (0, 200.0, 330.0, 30.0)
            );
            assert_eq!(t.marks[0].at_ms, 0.0);
            // Every trial a row of the cut slave, its bar ending at the netlink commit.
            assert_eq!(t.lanes[0].rows.len(), 5);
            for row in &t.lanes[0].rows {
                let (_, end) = row.bar.expect("a bar");
                assert_eq!(row.commits, [end]);
                assert!(end > w.lower && end <= w.upper + w.tolerance);
            }
            assert!(t.span_ms >= w.upper + w.tolerance);
        }
        let frames = traffic_timeline(case).expect("a traffic timeline");
        let seen: usize = frames.lanes.iter().map(|l| l.rows[0].frames.len()).sum();
        let arrivals = doc["cases"][0]["traffic"]["sent"]["arrivals"]
            .as_array()
            .unwrap();
        assert_eq!(seen, arrivals.len());
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = render(&view(&example()));
        assert!(page.starts_with("<!DOCTYPE html>"));
        for outside in ["<script", "src=", "<link", "@import", "url("] {
            assert!(!page.contains(outside), "the page holds {outside}");
        }
        assert_eq!(page.matches("<svg ").count(), 3);
        assert!(page.contains(&format!("fill=\"{WINDOW}\"")));
        assert!(page.contains(&format!("stroke=\"{CUT}\"")));
    }

    #[test]
    fn text_from_the_report_is_escaped_everywhere() {
        let mut doc = example();
        let evil = "<script>alert('x')</script>&\"";
        let case = &mut doc["cases"][0];
        case["name"] = evil.into();
        case["description"] = evil.into();
        case["warnings"][0]["message"] = evil.into();
        case["checks"][0]["message"] = evil.into();
        case["checks"][0]["observed"] = evil.into();
        case["timing"]["slave"] = evil.into();
        case["traffic"]["sent"]["captures"][1]["slave"] = evil.into();
        let page = render(&view(&doc));
        assert!(!page.contains("<script"), "unescaped markup in the page");
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
    }

    #[test]
    fn a_case_without_timing_or_traffic_has_no_timeline() {
        let mut doc = example();
        doc["cases"][0]["timing"] = Json::Null;
        doc["cases"][0]["traffic"] = Json::Null;
        let checks = doc["cases"][0]["checks"].as_array().map_or(0, Vec::len);
        let page = render(&view(&doc));
        assert!(!page.contains("<svg"));
        assert!(page.contains(&format!("{checks} checks")));
    }

    #[test]
    fn ticks_are_round_steps() {
        assert_eq!(tick_step(395.0), 50.0);
        assert_eq!(tick_step(1.4), 0.2);
        assert_eq!(tick_step(0.0), 1.0);
        assert_eq!(num(200.0), "200");
        assert_eq!(num(0.25), "0.25");
    }
}
