//! The UML backend: Debian's User-Mode Linux kernel (`user-mode-linux`), booted with the host's
//! root as its root (hostfs) and this very binary as its init.
//!
//! Host side: [`run_in_guest`] boots the guest with the command line encoded in a kernel
//! parameter, streams the guest console to stdout and returns the command's exit code.
//! Guest side: [`guest_job`] recognises the guest's init, [`guest_init`] prepares the guest
//! (mounts, the modules of [`MODULES`]) and [`guest_exit`] hands the exit code back through
//! `/proc/exitcode` and powers the guest off. Reports are written by the guest straight onto
//! the host's filesystem, which it shares.
//!
//! linux.uml runs with [`XSTATE_SHIM`] preloaded: without it, Linux 6.1's UML cannot start a
//! process on a host whose XSAVE area is larger than the one it knows (AVX-512, AMX).
//!
//! Nothing survives the host process: linux.uml runs as PID 1 of a PID namespace of its own
//! (`unshare --pid --kill-child`), tied to bondcheck by PR_SET_PDEATHSIG, so SIGKILL of
//! bondcheck takes down the guest and every helper process UML forks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Where Debian's user-mode-linux package puts the kernel and its modules.
const UML_KERNEL: &str = "/usr/bin/linux.uml";
const UML_MODULES: &str = "/usr/lib/uml/modules";
/// The kernel parameter carrying the job; the kernel passes it to init as an environment
/// variable (init/main.c: parameters with `=` and no `.` become init's environment).
const JOB_VAR: &str = "BONDCHECK_GUEST";
/// Guest memory: the guest runs one bondcheck process and a few namespaces. Measured (`just
/// bench`, the report's `memory`): the default suite has at most 28 MiB in use, the bench's
/// 100000-frame traffic case 40 MiB; 128 MiB leaves the kernel about 110 MiB, over twice the
/// most any of them needs. UML backs it with a host file it touches only as the guest uses it.
const GUEST_MEMORY: &str = "mem=128M";

/// The LD_PRELOAD shim built from `uml_xstate.c` (see there): it carries the FPU state UML 6.1
/// does not know about, so that its ptrace writes of a process's FPU state are accepted.
const XSTATE_SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/uml_xstate.so"));

/// The shim in an anonymous memory file that linux.uml inherits (not close-on-exec) and
/// preloads as `/proc/self/fd/N`: nothing is written to disk, nothing is left behind.
fn xstate_shim() -> Result<std::os::fd::OwnedFd> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create("bondcheck-uml-xstate", MFdFlags::empty())
        .map_err(|e| Error::run(format!("cannot create the UML shim's memory file: {e}")))?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, XSTATE_SHIM)
        .map_err(|e| Error::run(format!("cannot write the UML shim: {e}")))?;
    Ok(file.into())
}

/// A usable UML kernel.
#[derive(Debug, Clone)]
pub struct UmlKernel {
    pub kernel: PathBuf,
    pub release: String,
}

impl UmlKernel {
    pub fn describe(&self) -> String {
        format!(
            "{} (Linux {}) with modules {}",
            self.kernel.display(),
            self.release,
            MODULES.join(", ")
        )
    }
}

/// Finds linux.uml and a module tree for it that has every module of [`MODULES`]; says what is
/// missing.
pub fn find() -> Result<UmlKernel, String> {
    let kernel = PathBuf::from(UML_KERNEL);
    if !kernel.is_file() {
        return Err(format!("{UML_KERNEL} not found (package user-mode-linux)"));
    }
    let mut releases: Vec<String> = std::fs::read_dir(UML_MODULES)
        .map_err(|e| format!("{UML_MODULES}: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    releases.sort();
    let release = releases
        .pop()
        .ok_or(format!("no module tree under {UML_MODULES}"))?;
    let deps = modules_dep(&Path::new(UML_MODULES).join(&release))?;
    for module in MODULES {
        module_path(&deps, module).ok_or(format!("UML modules {release} have no {module}.ko"))?;
    }
    if which("unshare").is_none() {
        return Err("`unshare` (util-linux) not found".into());
    }
    Ok(UmlKernel { kernel, release })
}

/// The modules the guest loads: the driver under test, veth pairs, the bridge for the
/// `bridge` topology, and 802.1Q for the VLAN devices tagged traffic goes through.
pub(super) const MODULES: [&str; 4] = ["veth", "bonding", "bridge", "8021q"];

pub(super) fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// What the guest is asked to do.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// Time since the Unix epoch when the host started the guest, for the boot time.
    pub started_unix_ns: u128,
}

fn encode(job: &Job) -> String {
    serde_json::to_vec(job)
        .expect("a job serialises")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode(hex: &str) -> Option<Job> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    serde_json::from_slice(&bytes?).ok()
}

pub(super) fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Boots the guest, runs `args` (this program's own arguments) in it and returns the exit code
/// it answered. SIGINT, SIGTERM and SIGHUP kill the guest; the code is then 128 + signal.
pub fn run_in_guest(uml: &UmlKernel, args: Vec<OsString>) -> Result<i32> {
    let args = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| Error::Usage(format!("argument {a:?} is not UTF-8")))
        })
        .collect::<Result<Vec<_>>>()?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::run(format!("cannot find this executable: {e}")))?;
    let cwd =
        std::env::current_dir().map_err(|e| Error::run(format!("no current directory: {e}")))?;
    let job = Job {
        args,
        cwd,
        started_unix_ns: unix_ns(),
    };

    let shim = xstate_shim()?;
    let mut cmd = Command::new("unshare");
    cmd.env(
        "LD_PRELOAD",
        format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&shim)),
    )
    .args(["--pid", "--fork", "--kill-child=SIGKILL", "--"])
    .arg(&uml.kernel)
    .args([
        GUEST_MEMORY,
        "rootfstype=hostfs",
        "hostfs=/",
        "rw",
        "quiet",
        "loglevel=0",
    ])
    .arg(format!("init={}", exe.display()))
    .args(["con=null", "con0=null,fd:1"])
    .arg(format!("{JOB_VAR}={}", encode(&job)))
    .stdin(Stdio::null())
    .stdout(Stdio::inherit())
    .stderr(Stdio::inherit());
    // The whole process group dies on a signal: unshare, and through --kill-child the guest's
    // PID namespace.
    let code = super::run_contained(cmd, &uml.kernel.display().to_string())?.exit_code("UML guest");
    drop(shim);
    code
}

// ---- guest side --------------------------------------------------------------------------

/// The job if this process is the init of a bondcheck UML guest.
pub fn guest_job() -> Option<Job> {
    if std::process::id() != 1 {
        return None;
    }
    decode(&std::env::var(JOB_VAR).ok()?)
}

/// Prepares the guest: kernel filesystems of its own (so nothing of the host's /run or /proc
/// is touched through hostfs), a raw console, the modules of [`MODULES`], the job's cwd.
/// Returns the boot time.
pub fn guest_init(job: &Job) -> Result<f64> {
    use nix::mount::{MsFlags, mount};
    let fs = |source: &str, target: &str, fstype: &str| {
        mount(
            Some(source),
            target,
            Some(fstype),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| Error::run(format!("guest: cannot mount {fstype} on {target}: {e}")))
    };
    fs("proc", "/proc", "proc")?;
    fs("sysfs", "/sys", "sysfs")?;
    fs("tmpfs", "/run", "tmpfs")?;
    raw_console();
    load_modules(&MODULES)?;
    std::env::set_current_dir(&job.cwd)
        .map_err(|e| Error::run(format!("guest: cannot enter {}: {e}", job.cwd.display())))?;
    Ok((unix_ns().saturating_sub(job.started_unix_ns)) as f64 / 1e6)
}

/// Loads UML modules by name, with their dependencies, in the guest. The guest has no
/// /lib/modules for modprobe (the host's root has the host kernel's), so anything a guest job
/// needs beyond [`guest_init`]'s own modules is loaded this way, before it is used.
pub fn load_modules(names: &[&str]) -> Result<()> {
    let release = super::KernelInfo::current("uml").release;
    let deps = modules_dep(&Path::new(UML_MODULES).join(&release))
        .map_err(|e| Error::run(format!("guest: {e}")))?;
    for module in names {
        load_module(&release, &deps, module)?;
    }
    Ok(())
}

/// The console's line discipline would turn every "\n" into "\r\n" on the host's terminal.
fn raw_console() {
    use nix::sys::termios::{OutputFlags, SetArg, tcgetattr, tcsetattr};
    let out = std::io::stdout();
    if let Ok(mut t) = tcgetattr(&out) {
        t.output_flags.remove(OutputFlags::OPOST);
        let _ = tcsetattr(&out, SetArg::TCSANOW, &t);
    }
}

/// Hands `code` to the host and powers the guest off. Never returns.
pub fn guest_exit(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::fs::write(
        "/proc/exitcode",
        (super::GUEST_EXIT_BASE + code).to_string(),
    );
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Init must not exit; if power-off failed the kernel panics and the host sees no answer.
    std::process::exit(code)
}

/// modules.dep of the module tree `dir`: `path: dep dep ...`, paths relative to the tree.
pub(super) fn modules_dep(dir: &Path) -> Result<Vec<(String, Vec<String>)>, String> {
    let path = dir.join("modules.dep");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, deps)| {
            (
                m.to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect())
}

/// The entry of module `name`, plain or compressed (distro kernels ship `name.ko.xz`).
pub(super) fn module_path<'a>(
    deps: &'a [(String, Vec<String>)],
    name: &str,
) -> Option<&'a (String, Vec<String>)> {
    let file = format!("/{name}.ko");
    deps.iter().find(|(m, _)| {
        m.split_once(&file)
            .is_some_and(|(_, rest)| ["", ".xz", ".zst", ".gz"].contains(&rest))
    })
}

/// Loads a module after its dependencies (modules.dep lists them so that the last one is loaded
/// first), as modprobe does; modules already loaded are fine.
fn load_module(release: &str, deps: &[(String, Vec<String>)], name: &str) -> Result<()> {
    let (path, needs) =
        module_path(deps, name).ok_or_else(|| Error::run(format!("guest: no module {name}")))?;
    for rel in needs.iter().rev().chain(std::iter::once(path)) {
        let full = Path::new(UML_MODULES).join(release).join(rel);
        let file = std::fs::File::open(&full)
            .map_err(|e| Error::run(format!("guest: {}: {e}", full.display())))?;
        match nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => {
                return Err(Error::run(format!(
                    "guest: loading {}: {e}",
                    full.display()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_survive_the_kernel_command_line() {
        let job = Job {
            args: vec!["bondcheck".into(), "run".into(), "a b/ü".into()],
            cwd: "/w".into(),
            started_unix_ns: 7,
        };
        let hex = encode(&job);
        assert!(
            hex.chars().all(|c| c.is_ascii_hexdigit()),
            "no spaces or quotes for the kernel to split"
        );
        let back = decode(&hex).unwrap();
        assert_eq!(back.args, job.args);
        assert_eq!(back.cwd, job.cwd);
        assert!(decode("zz").is_none());
        assert!(decode("abc").is_none());
    }

    #[test]
    fn module_dependencies_are_found_by_name() {
        let deps = vec![
            (
                "kernel/net/ipv6/ipv6.ko".to_string(),
                vec!["kernel/lib/crc-ccitt.ko".to_string()],
            ),
            (
                "kernel/drivers/net/bonding/bonding.ko".to_string(),
                vec!["kernel/net/ipv6/ipv6.ko".into()],
            ),
        ];
        assert_eq!(
            module_path(&deps, "bonding").unwrap().1,
            ["kernel/net/ipv6/ipv6.ko"]
        );
        assert!(module_path(&deps, "ipv").is_none());
        let xz = vec![
            ("kernel/net/bridge/bridge.ko.xz".to_string(), vec![]),
            ("kernel/drivers/net/veth.ko.xzz".to_string(), vec![]),
        ];
        assert!(module_path(&xz, "bridge").is_some());
        assert!(module_path(&xz, "veth").is_none());
    }
}
