//! The `bondcheck` command line: a thin layer over the library.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use nix::sys::signal::{SigHandler, Signal, signal};

use bondcheck::ifenslave::Applier;
use bondcheck::kernel::{self, Backend, Choice, KernelInfo};
use bondcheck::terminal::{Style, Terminal, Verbosity};
use bondcheck::{Error, compare, html, junit, ktap, report, run, suite};

#[derive(Parser)]
#[command(
    name = "bondcheck",
    version,
    about = "Verifies what the Linux bonding driver really does with your bond"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build each case's bond in a real kernel, observe it and check it against the model.
    Run(RunArgs),
    /// Say what the kernel will make of an interfaces file, before anything runs.
    Lint {
        /// The interfaces(5) file.
        path: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Predict for this applier; by default the admin's own path, ifup with ifenslave.
        #[arg(long, value_enum, default_value = "ifupdown")]
        apply: Applier,
    },
    /// Say which kernel backends work here, and why the others do not.
    Doctor,
    /// Compare two reports, or join the reports of a sharded run into one.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// What changed from report A to report B: check statuses, timing medians beyond noise,
    /// observed values. Exit 0: no differences, 1: differences, 2: bad input.
    Diff {
        a: PathBuf,
        b: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Join shards' reports (same bondcheck, same kernel) into OUT: cases sorted by name,
    /// summary recounted.
    Merge {
        out: PathBuf,
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[command(flatten)]
        formats: Formats,
    },
    /// Render a saved report as the HTML page `--html` writes.
    Html { input: PathBuf, output: PathBuf },
    /// Print the JSON schema of the report (reports/bondcheck-report-1.schema.json).
    Schema,
    /// Join reports of the same cases on different kernels (one report per kernel) into a
    /// matrix of cases × kernels, written to OUT; prints it as a table.
    /// Exit 0: every case passed on every kernel, 1: not, 2: bad input.
    Matrix {
        out: PathBuf,
        #[arg(required = true, num_args = 2..)]
        inputs: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// interfaces(5) files, suite case folders (holding case.toml) or folders of cases.
    #[arg(default_value = "suites")]
    paths: Vec<PathBuf>,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    #[command(flatten)]
    formats: Formats,
    /// Run only shard K of N: the cases at positions K-1, K-1+N, ... of the case list sorted
    /// by name. `report merge` joins the shards' reports.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// Where to get a kernel with a bonding driver: auto, host, uml, or vm:IMAGE (a kernel
    /// image with its modules, booted in qemu through virtme-ng).
    #[arg(long, default_value = "auto")]
    kernel: Choice,
    /// Folder of topology files named by the cases.
    #[arg(long, value_name = "DIR", default_value = "veth-topologies")]
    topologies: PathBuf,
    /// How to bring each spec up: bondcheck's netlink requests, or Debian's ifup.
    #[arg(long, value_enum, default_value = "netlink")]
    apply: Applier,
    /// Cut-and-restore trials per timing case; every sample is judged.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    trials: u16,
    /// How many cases run at once in the one kernel (lanes), each in its own namespaces;
    /// timing windows are taken alone (see README.md). The kernel's waits dominate a run, so
    /// lanes overlap them even on one CPU.
    #[arg(long, short, default_value_t = DEFAULT_JOBS, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Also run the cases of this profile (`long`: cases that wait tens of seconds, such as
    /// slow LACPDUs); the others are reported as skipped.
    #[arg(long, value_enum, default_value = "default")]
    profile: bondcheck::suite::Profile,
    /// Print only the final summary (and errors).
    #[arg(long, short, conflicts_with = "verbose")]
    quiet: bool,
    /// Print every case's phases and the whole message of every check that did not pass.
    #[arg(long, short)]
    verbose: bool,
    /// Colours: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(long, value_enum, default_value = "auto", overrides_with = "color")]
    color: ColorChoice,
    /// Whether a status line may be rewritten in place: set by bondcheck for its guest, whose
    /// console is a terminal whatever the host's output is.
    #[arg(long, hide = true, overrides_with = "live")]
    live: Option<bool>,
}

/// Four lanes: the kernel's waits dominate a run, so even two CPUs overlap four cases' waits,
/// and each timing window is taken alone (README.md, Lanes, for the side-by-side figures).
const DEFAULT_JOBS: u16 = 4;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl RunArgs {
    /// The output's style: what the flags say, else what stdout is.
    fn style(&self) -> Style {
        let detected = Style::detect();
        Style {
            color: match self.color {
                ColorChoice::Auto => detected.color,
                ColorChoice::Always => true,
                ColorChoice::Never => false,
            },
            live: self.live.unwrap_or(detected.live),
        }
    }

    fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (_, true) => Verbosity::Verbose,
            _ => Verbosity::Normal,
        }
    }
}

/// This program's arguments with the host's style made explicit, for a guest: its console
/// is a terminal whatever the host's stdout is.
fn for_guest(mut args: Vec<OsString>, style: Style) -> Vec<OsString> {
    let word = |on: bool| if on { "always" } else { "never" };
    args.extend(["--color", word(style.color)].map(OsString::from));
    args.push(format!("--live={}", style.live).into());
    args
}

/// The report in other formats, for CI systems and kernel test tooling.
#[derive(clap::Args)]
struct Formats {
    /// Also write the results as JUnit XML here (one testsuite per case, a testcase per check).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write the results as KTAP version 1 here (one test per case, checks as subtests).
    #[arg(long, value_name = "FILE")]
    ktap: Option<PathBuf>,
    /// Also write a self-contained HTML page here: a summary table and per-case timelines.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

impl Formats {
    fn write(&self, view: &compare::ReportView) -> Result<(), Error> {
        for (path, render, what) in [
            (&self.junit, junit::render as fn(&_) -> String, "junit"),
            (&self.ktap, ktap::render, "ktap"),
            (&self.html, html::render, "html"),
        ] {
            if let Some(path) = path {
                let text = render(view);
                report::write_atomically(path, text.as_bytes())?;
                println!("{what}: {}", path.display());
            }
        }
        Ok(())
    }
}

/// Where this process runs: on the host, as init of a UML guest (with its boot time), or in a
/// VM guest (with the host's time when it started the guest).
#[derive(Clone, Copy)]
enum Place {
    Host,
    Guest { boot_ms: f64 },
    VmGuest { started_ns: u128 },
}

fn main() {
    if let Some(started_ns) = kernel::vm::guest() {
        let code = dispatch(std::env::args_os().collect(), Place::VmGuest { started_ns });
        std::process::exit(kernel::GUEST_EXIT_BASE + code)
    }
    match kernel::uml::guest_job() {
        None => {
            // Like any Unix filter: output into a closed pipe (`| head`) ends the program
            // quietly instead of failing a write.
            // SAFETY: no other thread exists yet, and SIG_DFL is a valid disposition.
            let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
            std::process::exit(dispatch(std::env::args_os().collect(), Place::Host))
        }
        Some(job) => {
            let code = match kernel::uml::guest_init(&job) {
                Ok(boot_ms) => {
                    let args = job.args.into_iter().map(OsString::from).collect();
                    // Init must never die: a panic becomes an error exit handed to the host.
                    std::panic::catch_unwind(|| dispatch(args, Place::Guest { boot_ms }))
                        .unwrap_or(1)
                }
                Err(e) => report_error(&e),
            };
            kernel::uml::guest_exit(code)
        }
    }
}

fn report_error(e: &Error) -> i32 {
    eprintln!("bondcheck: error: {e}");
    e.exit_code()
}

fn dispatch(args: Vec<OsString>, place: Place) -> i32 {
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Doctor => Ok(doctor()),
        Command::Lint {
            path,
            format,
            apply,
        } => lint(&path, format, apply),
        Command::Run(opts) => run_command(args, place, opts),
        Command::Report {
            command: ReportCommand::Diff { a, b, format },
        } => diff(&a, &b, format),
        Command::Report {
            command:
                ReportCommand::Merge {
                    out,
                    inputs,
                    formats,
                },
        } => merge(&out, &inputs, &formats),
        Command::Report {
            command: ReportCommand::Html { input, output },
        } => render_html(&input, &output),
        Command::Report {
            command: ReportCommand::Schema,
        } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report::json_schema()).expect("serialisable")
            );
            Ok(0)
        }
        Command::Report {
            command: ReportCommand::Matrix { out, inputs },
        } => matrix(&out, &inputs),
    };
    result.unwrap_or_else(|e| report_error(&e))
}

/// Findings and the predicted configuration; exit 0 with warnings only, 2 on errors.
fn lint(path: &std::path::Path, format: Format, applier: Applier) -> Result<i32, Error> {
    match (bondcheck::lint::lint(path, applier), format) {
        (Ok(l), Format::Text) => print!("{}", l.text()),
        (Ok(l), Format::Json) => println!(
            "{}",
            serde_json::to_string_pretty(&l).expect("serialisable")
        ),
        (Err(e), Format::Json) if e.exit_code() == 2 => {
            let error = serde_json::json!({ "file": path.display().to_string(), "errors": [{
                "severity": "error", "message": e.to_string() }] });
            println!(
                "{}",
                serde_json::to_string_pretty(&error).expect("serialisable")
            );
            return Ok(2);
        }
        (Err(e), Format::Text) => {
            eprintln!("bondcheck: error: {e}");
            if let Some(caret) = e.caret() {
                eprint!("{caret}");
            }
            return Ok(e.exit_code());
        }
        (Err(e), _) => return Err(e),
    }
    Ok(0)
}

fn doctor() -> i32 {
    let probes = kernel::probes();
    for p in &probes {
        let word = if p.usable { "usable" } else { "not usable" };
        println!("{:<5} {word}: {}", p.backend, p.detail);
    }
    // `auto` never picks vm: it needs an image.
    match probes.iter().find(|p| p.usable && p.backend != "vm") {
        Some(p) => {
            println!("--kernel auto uses: {}", p.backend);
            0
        }
        None => {
            println!("no backend gives a bonding kernel: apt-get install user-mode-linux");
            3
        }
    }
}

/// Exit 0 when the reports do not differ, 1 when they do; unreadable input is an error (2).
fn diff(a: &Path, b: &Path, format: Format) -> Result<i32, Error> {
    let d = compare::diff(&compare::load(a)?, &compare::load(b)?);
    match format {
        Format::Text => print!("{}", d.text()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&d).expect("serialisable")
        ),
    }
    Ok(i32::from(d.differences > 0))
}

/// Exit 0 once OUT (and any other format asked for) is written.
fn merge(out: &Path, inputs: &[PathBuf], formats: &Formats) -> Result<i32, Error> {
    let loaded = inputs
        .iter()
        .map(|p| compare::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = compare::merge(&loaded)?;
    report::write_pretty_json(out, &merged)?;
    let view = merged.view()?;
    let count = |n: usize, what: &str| match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    };
    println!(
        "merged {} from {}: {}",
        count(view.cases.len(), "case"),
        count(inputs.len(), "report"),
        out.display()
    );
    formats.write(&view)?;
    Ok(0)
}

/// Exit 0 once the page is written.
fn render_html(input: &Path, output: &Path) -> Result<i32, Error> {
    let loaded = compare::load(input)?;
    report::write_atomically(output, html::render(&loaded.view).as_bytes())?;
    println!("html: {}", output.display());
    Ok(0)
}

/// The matrix as a table on stdout and as JSON in OUT.
fn matrix(out: &Path, inputs: &[PathBuf]) -> Result<i32, Error> {
    let m = bondcheck::matrix::of_files(inputs)?;
    report::write_pretty_json(out, &m)?;
    print!("{}", m.text());
    println!("matrix: {}", out.display());
    Ok(m.exit_code())
}

/// `--shard K/N`: this job's part of the cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shard {
    /// 1-based.
    k: usize,
    n: usize,
}

impl Shard {
    fn parse(text: &str) -> Result<Shard, Error> {
        let usage = |why: String| Error::Usage(format!("--shard {text}: {why}"));
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| usage("expected K/N, e.g. 2/4".into()))?;
        let (Ok(k), Ok(n)) = (k.parse::<usize>(), n.parse::<usize>()) else {
            return Err(usage("K and N must be whole numbers, e.g. 2/4".into()));
        };
        if n == 0 {
            return Err(usage("N must be at least 1".into()));
        }
        if !(1..=n).contains(&k) {
            return Err(usage(format!("K must be in 1..={n}")));
        }
        Ok(Shard { k, n })
    }

    /// The items at positions K-1, K-1+N, ... of the list sorted by `order`, in their original
    /// order. Sorting first makes every job agree on the split whatever order the paths were
    /// given in.
    fn select<T>(self, items: Vec<T>, order: impl Fn(&T, &T) -> std::cmp::Ordering) -> Vec<T> {
        let mut sorted: Vec<usize> = (0..items.len()).collect();
        sorted.sort_by(|&x, &y| order(&items[x], &items[y]));
        let mut keep = vec![false; items.len()];
        for &i in sorted.iter().skip(self.k - 1).step_by(self.n) {
            keep[i] = true;
        }
        items
            .into_iter()
            .zip(keep)
            .filter_map(|(item, keep)| keep.then_some(item))
            .collect()
    }
}

fn run_command(args: Vec<OsString>, place: Place, opts: RunArgs) -> Result<i32, Error> {
    let shard = opts.shard.as_deref().map(Shard::parse).transpose()?;
    let (style, quiet) = (opts.style(), opts.verbosity() == Verbosity::Quiet);
    if opts.apply == Applier::Ifupdown {
        bondcheck::ifupdown::available().map_err(Error::Usage)?;
    }
    // Read every input before any kernel is touched: bad input costs no guest boot.
    let mut cases = Vec::new();
    for path in &opts.paths {
        cases.extend(suite::discover(path, &opts.topologies)?);
    }
    if let Some(shard) = shard {
        let all = cases.len();
        cases = shard.select(cases, |x, y| {
            (Path::new(&x.name), &x.path).cmp(&(Path::new(&y.name), &y.path))
        });
        // Once: a UML guest runs this again with the same arguments and console.
        if let Place::Host = place {
            let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
            println!(
                "bondcheck: shard {}/{}: {} of {all} cases: {}",
                shard.k,
                shard.n,
                cases.len(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            );
        }
    }
    let kernel = match place {
        Place::Guest { boot_ms } => KernelInfo {
            boot_ms: Some(boot_ms),
            ..KernelInfo::current("uml")
        },
        Place::VmGuest { started_ns } => match &opts.kernel {
            Choice::Vm(image) => kernel::vm::guest_init(started_ns, image)?,
            _ => return Err(Error::run("a VM guest run without --kernel vm:IMAGE")),
        },
        Place::Host => match kernel::select(opts.kernel.clone())? {
            Backend::Host => KernelInfo::current("host"),
            Backend::Uml(uml) => {
                if !quiet {
                    println!("bondcheck: booting {} ...", uml.describe());
                }
                return kernel::uml::run_in_guest(&uml, for_guest(args, style));
            }
            Backend::Vm(vm) => {
                if !quiet {
                    println!("bondcheck: booting {} ...", vm.describe());
                }
                let args = for_guest(args, style);
                let outputs: Vec<PathBuf> = [&opts.report, &opts.formats.junit, &opts.formats.ktap]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                return kernel::vm::run_in_guest(&vm, args, &outputs);
            }
        },
    };
    if let (Some(ms), false) = (kernel.boot_ms, quiet) {
        println!(
            "bondcheck: in a {} guest, Linux {} (booted in {ms:.0} ms)",
            kernel.backend.to_uppercase(),
            kernel.release
        );
    }
    let options = run::Options {
        applier: opts.apply,
        trials: opts.trials.into(),
        profile: opts.profile,
        jobs: opts.jobs.into(),
    };
    let mut terminal = Terminal::new(opts.verbosity(), style);
    let report_data = run::run(&cases, options, kernel, &mut |case, e| {
        terminal.hear(case, e)
    })?;
    println!("{}", terminal.summary(&report_data));
    if let Some(path) = opts.report {
        report_data.write_json(&path)?;
        println!("report: {}", path.display());
    }
    opts.formats
        .write(&compare::ReportView::of(&report_data)?)?;
    Ok(report_data.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["bondcheck", "run"];
        argv.extend(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Run(r) => r,
            _ => unreachable!("a run"),
        }
    }

    #[test]
    fn a_guest_is_told_the_hosts_style_and_the_last_word_wins() {
        let args: Vec<OsString> = ["bondcheck", "run", "--color", "auto"]
            .map(OsString::from)
            .to_vec();
        let style = Style {
            color: false,
            live: true,
        };
        let guest = for_guest(args, style);
        let words: Vec<&str> = guest.iter().filter_map(|a| a.to_str()).collect();
        assert_eq!(
            words[2..],
            ["--color", "auto", "--color", "never", "--live=true"]
        );
        let parsed = run_args(&words[2..]);
        assert_eq!(parsed.style(), style);
        assert!(Cli::try_parse_from(["bondcheck", "run", "-q", "-v"]).is_err());
        assert!(run_args(&["-q"]).verbosity() == Verbosity::Quiet);
        assert!(run_args(&["--verbose"]).verbosity() == Verbosity::Verbose);
        assert!(run_args(&[]).verbosity() == Verbosity::Normal);
    }

    #[test]
    fn shards_split_the_sorted_list_round_robin() {
        let names = vec!["d", "a", "c", "b", "e"];
        let pick = |k, n| Shard { k, n }.select(names.clone(), |x, y| x.cmp(y));
        // Sorted: a b c d e; shard 1/2 takes positions 0, 2, 4, in the given order.
        assert_eq!(pick(1, 2), ["a", "c", "e"]);
        assert_eq!(pick(2, 2), ["d", "b"]);
        assert_eq!(pick(1, 1), names);
        assert_eq!(pick(3, 7), ["c"]);
        assert!(pick(7, 7).is_empty());
    }

    #[test]
    fn a_shard_is_k_of_n_with_k_in_1_to_n() {
        assert_eq!(Shard::parse("2/4").ok(), Some(Shard { k: 2, n: 4 }));
        for bad in ["0/4", "5/4", "1/0", "2", "a/4", "-1/4", "1/4/2", " 1/4"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
