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

/// Where the report's JSON schema is committed, relative to the repository's root.
pub const SCHEMA_FILE: &str = "reports/bondcheck-report-1.schema.json";

/// A bondcheck compliance report: what ran on which kernel, and every case's verdicts.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Report {
    /// The report format and its version, `bondcheck-report/1`.
    #[schemars(extend("const" = SCHEMA))]
    pub schema: &'static str,
    /// The bondcheck that wrote the report.
    pub tool: Tool,
    /// The kernel the cases ran on.
    pub kernel: KernelInfo,
    /// The run's time on the kernel that ran it, without a guest's boot; a merged report's is
    /// the sum of its shards'.
    pub duration_ms: f64,
    /// Counts over `cases`.
    pub summary: Summary,
    /// One per case, in run order (a merged report's sorted by name, then applier).
    pub cases: Vec<CaseReport>,
    /// Peak memory of bondcheck and of the guest.
    pub memory: crate::memory::Memory,
}

/// The program that wrote a report.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Tool {
    /// `bondcheck`.
    pub name: &'static str,
    /// bondcheck's version (its crate version).
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

/// Counts of cases and checks by outcome.
#[derive(Debug, Clone, Default, serde::Serialize, schemars::JsonSchema)]
pub struct Summary {
    /// Cases run, negative controls included.
    pub cases: usize,
    /// Cases whose status is `pass` (for a negative control: it held).
    pub cases_passed: usize,
    /// Cases whose status is `fail`.
    pub cases_failed: usize,
    /// Cases that could not be carried out (status `error`).
    pub cases_error: usize,
    /// Cases whose checks all passed but for known deviations of this kernel (status `known`).
    pub cases_known: usize,
    /// Cases outside the run's profile: reported, not run.
    pub cases_skipped: usize,
    /// Check verdicts of regular cases (negative controls are counted below).
    pub checks_passed: usize,
    /// Check verdicts of regular cases that failed or could not be judged (`fail`, `error`).
    pub checks_failed: usize,
    /// Check verdicts of regular cases that failed the contract as a known deviation of this
    /// kernel says (`known`).
    pub checks_known: usize,
    /// Check verdicts of regular cases that were skipped, with the reason in their message.
    pub checks_skipped: usize,
    /// Negative controls where exactly the `must_fail` checks failed.
    pub negative_controls_held: usize,
    /// Negative controls where some other set of checks failed, or the case could not be
    /// carried out.
    pub negative_controls_broken: usize,
    /// The cases' inherent kernel time (`inherent_ms`), summed.
    pub inherent_ms: f64,
    /// The run's `duration_ms` over `inherent_ms`: how close to the kernel's floor it ran
    /// (null when no case has inherent time).
    pub wall_over_inherent: Option<f64>,
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
            Status::Known => self.cases_known += 1,
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
                        Status::Known => self.checks_known += 1,
                        Status::Skip => self.checks_skipped += 1,
                    }
                }
            }
        }
    }

    /// Sets the inherent time of the run, from its cases' and its duration. Shared by a run
    /// and by `report merge`.
    pub fn time(&mut self, duration_ms: f64, inherent_ms: impl IntoIterator<Item = f64>) {
        // A fold from +0: an empty f64 sum is -0.
        self.inherent_ms = inherent_ms.into_iter().fold(0.0, |sum, ms| sum + ms);
        self.wall_over_inherent = (self.inherent_ms > 0.0).then(|| duration_ms / self.inherent_ms);
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

/// The interfaces(5) file a case brings up.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct SpecRef {
    /// The interfaces(5) file, as bondcheck was given it.
    pub path: String,
    /// The SHA-256 of the file's bytes, in hex.
    pub sha256: String,
}

/// A case's wall time by phase, in ms; a phase the case did not reach is 0.
#[derive(Debug, Clone, Default, serde::Serialize, schemars::JsonSchema)]
pub struct Phases {
    /// Building the topology: namespaces, veth pairs, the peer side's devices.
    pub setup_ms: f64,
    /// Bringing the spec up with the applier.
    pub apply_ms: f64,
    /// Reading both views of the bond, including waiting for the slaves to settle.
    pub observe_ms: f64,
    /// Comparing the observations with the model.
    pub checks_ms: f64,
    /// Waiting for the 802.3ad aggregate to form with an LACP partner.
    pub lacp_ms: f64,
    /// Sending frames through the bond and capturing them (slaves cut first included).
    pub traffic_ms: f64,
    /// Cutting and restoring carriers for the timing trials.
    pub timing_ms: f64,
    /// One more cut and restore with a stream of frames flowing (timing cases).
    pub failover_ms: f64,
    /// balance-alb on a bridge: client hosts resolving the bond's address and sending to it.
    pub alb_receive_ms: f64,
    /// Dropping the namespaces (the kernel finishes asynchronously).
    pub teardown_ms: f64,
}

/// The traffic phase: the case's settings, the model's view of the slaves when the frames
/// were sent, and what every capture saw.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Traffic {
    /// The case's `[traffic]` table, defaults filled in.
    pub settings: crate::suite::Traffic,
    /// The slaves the model counts as usable (`bond_slave_can_tx`) while the frames go out.
    pub usable: Vec<String>,
    /// The bond's active slave while the frames go out, in modes that have one.
    pub active: Option<String>,
    /// What was sent and what every capture saw.
    pub sent: crate::traffic::Sent,
}

/// A negative control's outcome: it holds when exactly the `must_fail` checks failed.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ControlVerdict {
    /// The changes made to the real bond behind the applier's back.
    pub perturb: Vec<Perturbation>,
    /// The checks the perturbation must make fail, no more and no fewer.
    pub must_fail: Vec<String>,
    /// The checks that did not pass.
    pub failed: Vec<String>,
    /// Whether exactly the `must_fail` checks failed and the case was carried out.
    pub held: bool,
}

/// Something the admin should know about a place in the spec.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Warning {
    /// `file:line:column`
    pub at: String,
    /// What the admin should know about that place (rounding, options with no effect).
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

/// One case: its spec, what the applier did, what the kernel showed and every check's verdict.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct CaseReport {
    /// The case's folder relative to the folder given (`debian-howto`,
    /// `negative-controls/updelay-changed`), or the interfaces file's name.
    pub name: String,
    /// The case's folder or interfaces file.
    pub path: String,
    /// The case's `description` from case.toml.
    pub description: String,
    /// The interfaces(5) file the case brings up.
    pub spec: SpecRef,
    /// The topology's name (a file of veth-topologies/ without `.toml`).
    pub topology: String,
    /// Why this topology, when the case named none ("default for mode 802.3ad: ...").
    pub topology_default: Option<String>,
    /// How the spec was brought up: `netlink` or `ifupdown`.
    pub applier: Applier,
    /// pass: every check passed (a negative control: it held); fail; error: the case could not
    /// be carried out (see `error`).
    pub status: Status,
    /// Why the case could not be carried out, when its status is `error`.
    pub error: Option<String>,
    /// A negative control's outcome; null for a regular case.
    pub negative_control: Option<ControlVerdict>,
    /// The case's wall time.
    pub duration_ms: f64,
    /// The kernel time the case cannot avoid (the sum of `inherent`), beside its wall time.
    pub inherent_ms: f64,
    /// Its terms, each with its rule.
    pub inherent: Vec<crate::model::Wait>,
    /// The case's wall time, split by phase.
    pub phases: Phases,
    /// What the model says the admin should know about the spec.
    pub warnings: Vec<Warning>,
    /// Every step the applier carried out and the kernel's answer.
    pub apply: Vec<Applied>,
    /// What the kernel showed of the bond; null if the case ended before observing.
    pub observed: Option<Observation>,
    /// Timing trials' samples, for cases that measure timing.
    pub timing: Option<crate::timing::Measured>,
    /// The 802.3ad state of the bond and its LACP partner, for cases on a topology with one.
    pub lacp: Option<crate::lacp::Observed>,
    /// Every LACPDU captured on the peer ends and the model's cadence, for cases with an LACP
    /// partner.
    pub lacpdus: Option<crate::lacpdu::Observed>,
    /// 802.3ad with no LACP partner: the LACPDUs captured on the peer ends and what the model
    /// expects of each slave's first two.
    pub partnerless: Option<crate::partnerless::Observed>,
    /// The frames sent through the bond and where each capture saw them.
    pub traffic: Option<Traffic>,
    /// Timing cases: the stream of frames through one more cut and restore.
    pub failover: Option<crate::failover::Observed>,
    /// 802.3ad with an LACP partner and min_links of 2 or more: the bond's carrier as ports
    /// are cut below min_links and restored.
    pub min_links: Option<crate::min_links::Observed>,
    /// balance-alb on a bridge: the client hosts, the MAC each learned for the bond and where
    /// their datagrams arrived.
    pub alb_receive: Option<crate::rlb::Observed>,
    /// One verdict per check, in the order they ran.
    pub checks: Vec<Verdict>,
    /// The known deviations (harness/data/known-deviations.toml) behind the checks whose status
    /// is `known`: what this kernel does instead of the contract, and where upstream it comes
    /// from.
    pub known_deviations: Vec<crate::deviation::Deviation>,
    /// The case's measurement windows and what else ran while each was open: every timing,
    /// flap and failover sample and every LACPDU interval was taken inside one of them.
    pub windows: Vec<Window>,
}

/// A measurement window of a case, and the concurrency its samples saw (`--jobs`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Window {
    /// `timing` (the timing trials, the flap and the failover stream) or `lacpdus` (the steady
    /// state LACPDU capture).
    pub phase: String,
    /// Whether the case held the run's gate alone: no other case set up, applied, observed,
    /// sent traffic or tore down while the window was open.
    pub exclusive: bool,
    /// The most other cases in flight at once while the window was open (0 with one lane).
    pub others_in_flight: usize,
    /// The most of them busy at once (holding the gate: setting up, applying, observing,
    /// sending traffic, tearing down); 0 for an exclusive window.
    pub others_busy: usize,
    /// How long the window was open.
    pub duration_ms: f64,
}

/// The JSON schema of what `--report` writes, generated from these types (their doc comments
/// are its descriptions): committed as [`SCHEMA_FILE`], printed by `bondcheck report schema`.
pub fn json_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let mut schema = generator.into_root_schema_for::<Report>();
    schema.insert("title".into(), SCHEMA.into());
    schema.to_value()
}

impl Report {
    pub fn new(
        kernel: KernelInfo,
        cases: Vec<CaseReport>,
        duration_ms: f64,
        memory: crate::memory::Memory,
    ) -> Report {
        let mut s = Summary::default();
        for c in &cases {
            s.count(
                c.status,
                c.negative_control.as_ref().map(|nc| nc.held),
                c.checks.iter().map(|v| v.status),
            );
        }
        s.time(duration_ms, cases.iter().map(|c| c.inherent_ms));
        Report {
            schema: SCHEMA,
            tool: Tool::this(),
            kernel,
            duration_ms,
            summary: s,
            cases,
            memory,
        }
    }

    /// 0 when no case failed or broke: every case passed (negative controls held), was skipped,
    /// or failed only where a known deviation of this kernel says it does; 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        let s = &self.summary;
        i32::from(s.cases_passed + s.cases_known + s.cases_skipped != s.cases)
    }

    /// Writes the JSON report atomically: a reader never sees half a report.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        write_pretty_json(path, self)
    }

    /// The closing summary for a terminal.
    pub fn summary_text(&self) -> String {
        let s = &self.summary;
        let k = &self.kernel;
        // Known deviations are named only where there are some.
        let known = |n: usize| match n {
            0 => String::new(),
            n => format!(", {n} known deviations"),
        };
        let mut out = format!(
            "{} cases: {} passed{}, {} failed, {} errors, {} skipped; checks: {} passed{}, {} failed, {} skipped",
            s.cases,
            s.cases_passed,
            known(s.cases_known),
            s.cases_failed,
            s.cases_error,
            s.cases_skipped,
            s.checks_passed,
            known(s.checks_known),
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
        if let Some(ratio) = s.wall_over_inherent {
            out += &format!(", {:.2} x the inherent {:.1} s", ratio, s.inherent_ms / 1e3);
        }
        out
    }
}

impl CaseReport {
    /// A few lines on this case for a terminal: the verdict, timings, warnings, failures.
    pub fn text(&self) -> String {
        let p = &self.phases;
        let word = match (&self.negative_control, self.status) {
            (_, Status::Skip) => "SKIP",
            (None, Status::Known) => "KNOWN",
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
        let applier = self.applier.name();
        let mut out = format!(
            "{kind} {} ({applier}): {word} ({}/{} checks passed{skipped}) [setup {:.0} ms, apply {:.0} ms, \
             observe {:.0} ms, lacp {:.0} ms, traffic {:.0} ms, alb receive {:.0} ms, timing {:.0} ms, failover {:.0} ms, checks {:.1} ms, \
             teardown {:.0} ms; {:.0} ms, inherent {:.0} ms]\n",
            self.name,
            count(Status::Pass),
            self.checks.len(),
            p.setup_ms,
            p.apply_ms,
            p.observe_ms,
            p.lacp_ms,
            p.traffic_ms,
            p.alb_receive_ms,
            p.timing_ms,
            p.failover_ms,
            p.checks_ms,
            p.teardown_ms,
            self.duration_ms,
            self.inherent_ms
        );
        out += &self.notes();
        for c in self.checks.iter().filter(|c| c.status != Status::Pass) {
            out += &format!("  {:?} {}: {}\n", c.status, c.check, c.message);
        }
        out
    }

    /// What a person should read about a finished case beyond its verdict: its error, the
    /// default topology it got, the model's warnings and the kernel's refusals (regular cases),
    /// what a negative control had to fail.
    pub fn notes(&self) -> String {
        let mut out = String::new();
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed schema is the types' schema. `BONDCHECK_WRITE_SCHEMA=1 cargo nextest run
    /// -E 'test(committed_schema)'` (or `bondcheck report schema > FILE`) writes it anew.
    #[test]
    fn committed_schema_matches_the_types() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(SCHEMA_FILE);
        let generated = json_schema();
        if std::env::var_os("BONDCHECK_WRITE_SCHEMA").is_some() {
            write_pretty_json(&path, &generated).expect("writing the schema");
        }
        let committed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("the committed schema"))
                .expect("the committed schema is JSON");
        assert!(
            committed == generated,
            "{SCHEMA_FILE} does not match the report types: regenerate it with \
             `BONDCHECK_WRITE_SCHEMA=1 cargo nextest run -E 'test(committed_schema)'`, and if \
             the change is incompatible (a field removed, renamed or retyped), bump SCHEMA"
        );
    }

    #[test]
    fn the_schema_documents_every_field() {
        let schema = json_schema();
        let mut undocumented = Vec::new();
        let defs = schema["$defs"].as_object().expect("$defs");
        for (name, def) in
            std::iter::once(("Report", &schema)).chain(defs.iter().map(|(n, d)| (n.as_str(), d)))
        {
            for (field, s) in def["properties"].as_object().into_iter().flatten() {
                if s.get("description").is_none() {
                    undocumented.push(format!("{name}.{field}"));
                }
            }
        }
        assert!(
            undocumented.is_empty(),
            "fields without a doc comment: {undocumented:?}"
        );
    }
}
