//! The `bondcheck` command line: a thin layer over the library.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nix::sys::signal::{SigHandler, Signal, signal};

use bondcheck::ifenslave::Applier;
use bondcheck::kernel::{self, Backend, Choice, KernelInfo};
use bondcheck::{Error, run, suite};

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
    /// Where to get a kernel with a bonding driver.
    #[arg(long, value_enum, default_value = "auto")]
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
}

/// Where this process runs: on the host, or as init of a UML guest (with its boot time).
#[derive(Clone, Copy)]
enum Place {
    Host,
    Guest { boot_ms: f64 },
}

fn main() {
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
    match probes.iter().find(|p| p.usable) {
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

fn run_command(args: Vec<OsString>, place: Place, opts: RunArgs) -> Result<i32, Error> {
    if opts.apply == Applier::Ifupdown {
        bondcheck::ifupdown::available().map_err(Error::Usage)?;
    }
    // Read every input before any kernel is touched: bad input costs no guest boot.
    let mut cases = Vec::new();
    for path in &opts.paths {
        cases.extend(suite::discover(path, &opts.topologies)?);
    }
    let kernel = match place {
        Place::Guest { boot_ms } => KernelInfo {
            boot_ms: Some(boot_ms),
            ..KernelInfo::current("uml")
        },
        Place::Host => match kernel::select(opts.kernel)? {
            Backend::Host => KernelInfo::current("host"),
            Backend::Uml(uml) => {
                println!("bondcheck: booting {} ...", uml.describe());
                return kernel::uml::run_in_guest(&uml, args);
            }
        },
    };
    if let Some(ms) = kernel.boot_ms {
        println!(
            "bondcheck: in a UML guest, Linux {} (booted in {ms:.0} ms)",
            kernel.release
        );
    }
    let options = run::Options {
        applier: opts.apply,
        trials: opts.trials.into(),
    };
    let report_data = run::run(&cases, options, kernel, |case| print!("{}", case.text()))?;
    println!("{}", report_data.summary_text());
    if let Some(path) = opts.report {
        report_data.write_json(&path)?;
        println!("report: {}", path.display());
    }
    Ok(report_data.exit_code())
}
