//! Kernel backends: where bondcheck gets a kernel with a bonding driver.
//!
//! `host` runs the cases in throwaway namespaces of the kernel bondcheck runs on, if that kernel
//! can create a bond. `uml` boots Debian's User-Mode Linux kernel with the host's root as its
//! root and runs this same binary inside it with the same arguments. `vm:IMAGE` boots a kernel
//! image (a distro kernel with its modules) in qemu through virtme-ng and does the same. `auto`
//! takes the host if it can, else UML.

pub mod host;
pub mod uml;
pub mod vm;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use signal_hook::iterator::Signals;

use crate::error::{Error, Result};

/// `--kernel`: `auto`, `host`, `uml` or `vm:IMAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Auto,
    Host,
    Uml,
    /// A kernel image (vmlinuz) booted in qemu through virtme-ng.
    Vm(PathBuf),
}

impl std::str::FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Choice, String> {
        match s {
            "auto" => Ok(Choice::Auto),
            "host" => Ok(Choice::Host),
            "uml" => Ok(Choice::Uml),
            _ => match s.strip_prefix("vm:") {
                Some("") => Err("vm: needs a kernel image, e.g. vm:/path/to/vmlinuz".into()),
                Some(image) => Ok(Choice::Vm(image.into())),
                None => Err(format!(
                    "`{s}` is not a kernel backend: auto, host, uml or vm:IMAGE"
                )),
            },
        }
    }
}

/// Facts about the kernel a run used, for the report.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct KernelInfo {
    /// "host", "uml" or "vm".
    pub backend: &'static str,
    /// The kernel's release (`uname -r` where the cases ran).
    pub release: String,
    /// The bonding driver's version line from /proc/net/bonding, once a bond existed.
    pub bonding_driver: Option<String>,
    /// Time from the guest kernel's start to bondcheck running in it (UML and VM guests).
    pub boot_ms: Option<f64>,
    /// Scheduling slack added to the model's waits on this backend.
    pub slack_ms: u64,
    /// CONFIG_HZ, from the kernel's configuration, where it can be found.
    pub hz: Option<u32>,
    /// How far past the model's upper bound a timing sample may land on this backend before it
    /// fails: scheduling noise of the guest or host, not the driver's rules.
    pub timing_tolerance_ms: f64,
}

impl KernelInfo {
    /// The kernel this process runs on, reached through `backend`.
    pub fn current(backend: &'static str) -> KernelInfo {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let (slack_ms, timing_tolerance_ms) = match backend {
            // UML runs on one virtual CPU of a shared host: its timers and workqueues lag more.
            // A wait that reaches its deadline is a failing check (or a control showing that
            // something does not happen), so the slack only has to outlast the lag of an
            // on-time event: in 20 full 4-lane runs on a 2-core host a commit's notification
            // came at most 7 ms after the kernel logged it, and at worst 88 ms in a 1-lane run
            // beside a loaded host.
            "uml" => (400, 30.0),
            "vm" => (vm::SLACK_MS, vm::TIMING_TOLERANCE_MS),
            _ => (250, 10.0),
        };
        let hz = config_hz(&release, backend);
        KernelInfo {
            backend,
            release,
            bonding_driver: None,
            boot_ms: None,
            slack_ms,
            hz,
            timing_tolerance_ms,
        }
    }
}

/// CONFIG_HZ from the first kernel configuration found for `release`: the running kernel's
/// /proc/config.gz, /boot/config-RELEASE, or the UML package's config.gz for its kernel.
fn config_hz(release: &str, backend: &str) -> Option<u32> {
    let mut sources = vec![
        PathBuf::from("/proc/config.gz"),
        PathBuf::from(format!("/boot/config-{release}")),
    ];
    if backend == "uml" {
        sources.push("/usr/share/doc/user-mode-linux/config.gz".into());
    }
    sources.iter().find_map(|path| config_file_hz(path))
}

/// CONFIG_HZ from a kernel configuration file, plain or gzipped (`.gz`).
pub fn config_file_hz(path: &std::path::Path) -> Option<u32> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .ok()?;
    } else {
        std::io::BufReader::new(file)
            .read_to_string(&mut text)
            .ok()?;
    }
    hz_of(&text)
}

fn hz_of(config: &str) -> Option<u32> {
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ=")?.trim().parse().ok())
}

/// Whether a backend can give a bonding kernel here, and why (not).
#[derive(Debug, Clone)]
pub struct Probe {
    pub backend: &'static str,
    pub usable: bool,
    pub detail: String,
}

pub enum Backend {
    Host,
    Uml(uml::UmlKernel),
    Vm(vm::VmKernel),
}

impl Backend {
    /// The release of the kernel the cases will run on, known before it boots.
    pub fn release(&self) -> String {
        match self {
            Backend::Host => KernelInfo::current("host").release,
            Backend::Uml(k) => k.release.clone(),
            Backend::Vm(k) => k.release.clone(),
        }
    }
}

/// Picks the backend for `choice`, or says what to install.
pub fn select(choice: Choice) -> Result<Backend> {
    if let Choice::Vm(image) = &choice {
        return vm::find(image).map(Backend::Vm);
    }
    let want_host = matches!(choice, Choice::Auto | Choice::Host);
    let host = want_host.then(host::probe);
    if let Some(p) = &host {
        if p.usable {
            return Ok(Backend::Host);
        }
    }
    if choice == Choice::Host {
        return Err(Error::NoKernel(format!(
            "--kernel host: {}",
            host.expect("probed").detail
        )));
    }
    match uml::find() {
        Ok(k) => Ok(Backend::Uml(k)),
        Err(why) => Err(Error::NoKernel(format!(
            "no bonding kernel available: {}{why}; install Debian's user-mode-linux \
             (apt-get install user-mode-linux) or run on a kernel with CONFIG_BONDING",
            host.map(|p| format!("host: {}; uml: ", p.detail))
                .unwrap_or_default()
        ))),
    }
}

/// Every backend's probe, for `bondcheck doctor`.
pub fn probes() -> Vec<Probe> {
    let uml = match uml::find() {
        Ok(k) => Probe {
            backend: "uml",
            usable: true,
            detail: k.describe(),
        },
        Err(why) => Probe {
            backend: "uml",
            usable: false,
            detail: why,
        },
    };
    vec![host::probe(), uml, vm::probe()]
}

/// Runs a guest's launcher (`unshare ... linux.uml` or `vng`) so that nothing it starts outlives
/// bondcheck: in a process group of its own (the terminal's Ctrl-C is bondcheck's to interpret),
/// tied to this thread by PR_SET_PDEATHSIG. SIGINT, SIGTERM and SIGHUP kill the whole group;
/// the answer is then the signal. `what` names the guest in errors. A piped stdout or stderr
/// is copied to bondcheck's own as it comes.
pub fn run_contained(mut cmd: Command, what: &str) -> Result<Contained> {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec. The child
    // then dies with the thread that spawned it, which is the one that waits for it.
    unsafe {
        cmd.pre_exec(|| Ok(set_pdeathsig(Signal::SIGKILL)?));
    }
    let mut signals =
        Signals::new([Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP].map(|s| s as i32))
            .map_err(|e| Error::run(format!("cannot handle signals: {e}")))?;
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::run(format!("cannot start {what}: {e}")))?;
    let pid = child.id() as i32;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let handle = signals.handle();
    // A scoped thread borrows `signals`, so its self-pipe stays open until after `close()`
    // has woken the watcher: closing a dropped iterator would write into a closed pipe.
    let (status, caught) = std::thread::scope(|scope| {
        if let Some(mut out) = out {
            scope.spawn(move || std::io::copy(&mut out, &mut std::io::stdout()));
        }
        if let Some(mut err) = err {
            scope.spawn(move || std::io::copy(&mut err, &mut std::io::stderr()));
        }
        let watcher = scope.spawn(|| {
            let sig = signals.forever().next();
            if sig.is_some() {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            sig
        });
        let status = child.wait();
        handle.close();
        (status, watcher.join().ok().flatten())
    });
    let status = status.map_err(|e| Error::run(format!("waiting for {what}: {e}")))?;
    Ok(match caught {
        Some(sig) => Contained::Signalled(sig),
        None => Contained::Exited(status),
    })
}

/// How a contained guest ended.
pub enum Contained {
    /// bondcheck caught this signal and killed the guest.
    Signalled(i32),
    Exited(ExitStatus),
}

/// A guest hands bondcheck's exit code back as [`GUEST_EXIT_BASE`] + code, so that a guest
/// that dies before answering (a kernel panic, a launcher error) cannot pass for a bondcheck
/// exit code.
pub const GUEST_EXIT_BASE: i32 = 100;

impl Contained {
    /// The guest's bondcheck exit code, 128 + signal if bondcheck was interrupted, or an error
    /// naming `what` when the guest ended without an answer.
    pub fn exit_code(self, what: &str) -> Result<i32> {
        match self {
            Contained::Signalled(sig) => Ok(128 + sig),
            Contained::Exited(status) => match status.code() {
                Some(code) if (GUEST_EXIT_BASE..GUEST_EXIT_BASE + 4).contains(&code) => {
                    Ok(code - GUEST_EXIT_BASE)
                }
                Some(code) => Err(Error::run(format!(
                    "the {what} ended without an answer from bondcheck (exit status {code}); \
                     its console output above says why"
                ))),
                None => Err(Error::run(format!(
                    "the {what} was killed by signal {}",
                    status.signal().unwrap_or(0)
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Choice;

    #[test]
    fn kernel_choices_parse_with_an_image_after_vm() {
        for (text, choice) in [
            ("auto", Choice::Auto),
            ("host", Choice::Host),
            ("uml", Choice::Uml),
            (
                "vm:/k/boot/vmlinuz-6.1",
                Choice::Vm("/k/boot/vmlinuz-6.1".into()),
            ),
            ("vm:rel/vm:lin", Choice::Vm("rel/vm:lin".into())),
        ] {
            assert_eq!(text.parse::<Choice>(), Ok(choice), "{text}");
        }
        for bad in ["vm:", "vm", "qemu", "", "UML", " host"] {
            assert!(bad.parse::<Choice>().is_err(), "{bad}");
        }
    }
    #[test]
    fn hz_comes_from_config_hz_not_its_neighbours() {
        let config =
            "CONFIG_HZ_100=y\n# CONFIG_HZ_250 is not set\nCONFIG_HZ=100\nCONFIG_HZ_PERIODIC=n\n";
        assert_eq!(super::hz_of(config), Some(100));
        assert_eq!(super::hz_of("CONFIG_NO_HZ=y\n"), None);
    }
}
