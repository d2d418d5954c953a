//! The VM backend (`--kernel vm:IMAGE`): a kernel image, typically a distro kernel, booted in
//! qemu through virtme-ng (`vng`), with this very binary run inside it on the host's root.
//!
//! IMAGE is a bzImage (`vmlinuz-RELEASE`). Its modules are found the way virtme-ng finds them,
//! so that what bondcheck checks before booting is what the guest gets: in the nearest folder
//! at or above the image's own that holds `lib/modules` (or `usr/lib/modules`), under
//! `RELEASE`. A Debian `linux-image-*` package extracted with `dpkg-deb -x ROOT` has exactly
//! that shape (`ROOT/boot/vmlinuz-RELEASE`, `ROOT/lib/modules/RELEASE`), and its CONFIG_HZ is
//! read from `config-RELEASE` beside the image. An image under the host's /boot uses the host's
//! /lib/modules. The tree needs a `modules.dep` (`depmod -b ROOT RELEASE`) that lists bonding,
//! veth and bridge.
//!
//! Host side: [`find`] checks all that and the tools, [`run_in_guest`] boots the guest under
//! qemu's TCG (see [`run_in_guest`] for why never KVM), streams its console and returns the
//! command's exit code. The host's root is read-only in the guest; the folders the run writes
//! its reports into are shared writable. Guest side: [`guest`] recognises the run inside the
//! guest and [`guest_init`] loads the modules. As with UML, vng and qemu run in a PID namespace
//! of their own tied to bondcheck, so killing bondcheck takes the guest down.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{KernelInfo, Probe, uml};
use crate::error::{Error, Result};

/// Environment variable that marks bondcheck's run inside the guest; its value is the host's
/// time (ns since the Unix epoch) when it started the guest, for the boot time.
const GUEST_VAR: &str = "BONDCHECK_VM_GUEST";

/// Scheduling slack added to the model's waits: a TCG guest runs every instruction through
/// qemu's translator on a shared 2-core host, roughly 10 to 50 times slower than native, so
/// workqueues and timers fire late by more than in UML.
pub const SLACK_MS: u64 = 2000;

/// How far past the model's upper bound a timing sample may land under TCG. Measured on this
/// project's 2-core machine, shared with other jobs, in five runs of the default suites (two
/// `just matrix`, one 6.1 alone; Debian 6.1.192 and 6.12.95, HZ=250, one vCPU), over every
/// netlink sample that a control does not set out to break (60 per run): with the machine
/// loaded (load average 7) the latest landed 70.1, 60.5 and 44.8 ms past the bound (the next
/// 19.8 and 21.5), with it quieter 3.7 and 8.5 ms; UML's worst in the same matrices was 6.9 and
/// 14 ms. The lateness is the TCG guest waking bondcheck, not the driver. (The kernel log's
/// clock is no help: under TCG it sits a different offset from CLOCK_MONOTONIC at every boot,
/// -60 to +100 ms.) 80 ms holds all of them and stays below one monitor tick of the suites'
/// miimon 100 (P + G = 104 ms at HZ=250), so a delay a whole tick too long still fails, as the
/// timing controls show.
pub const TIMING_TOLERANCE_MS: f64 = 80.0;

/// Guest memory: Debian's kernel, its initramfs of virtio modules, one bondcheck.
const GUEST_MEMORY: &str = "1G";

/// The kernel command line is 2048 bytes on x86 (COMMAND_LINE_SIZE) and vng puts its own
/// parameters there too (about 900 bytes with long paths), then the command base64-encoded:
/// keep the command well short of what would be cut off silently.
const MAX_COMMAND: usize = 700;

/// The programs the backend needs, and where they come from.
const TOOLS: [(&str, &str); 2] = [
    ("vng", "pip install virtme-ng"),
    ("qemu-system-x86_64", "apt-get install qemu-system-x86"),
];

/// A kernel image that can be booted: its release, module tree and configuration.
#[derive(Debug, Clone)]
pub struct VmKernel {
    pub image: PathBuf,
    pub release: String,
    pub modules: PathBuf,
}

impl VmKernel {
    pub fn describe(&self) -> String {
        format!(
            "{} (Linux {}, modules {}) in qemu (TCG) through virtme-ng",
            self.image.display(),
            self.release,
            self.modules.display()
        )
    }
}

/// Checks the image, its modules and the tools. A bad image or module tree is bad input
/// (exit 2); missing tools mean no kernel can be had this way (exit 3).
pub fn find(image: &Path) -> Result<VmKernel> {
    let bad = |message: String| Error::File {
        path: image.into(),
        message,
    };
    let bytes = std::fs::read(image).map_err(|e| Error::file(image, &e))?;
    let release = bzimage_release(&bytes).ok_or_else(|| {
        bad(
            "not a kernel image: no bzImage setup header with a version string (expected a \
             vmlinuz file)"
                .into(),
        )
    })?;
    let modules = module_tree(image, &release).ok_or_else(|| {
        bad(format!(
            "no modules for Linux {release}: expected lib/modules/{release} in the nearest \
             folder above the image that has lib/modules (extract the linux-image package \
             with `dpkg-deb -x PACKAGE.deb ROOT` and pass ROOT/boot/vmlinuz-{release})"
        ))
    })?;
    let deps = uml::modules_dep(&modules).map_err(|e| {
        bad(format!(
            "{e}: the module tree needs its index (run `depmod -b ROOT {release}`)"
        ))
    })?;
    for module in uml::MODULES {
        if uml::module_path(&deps, module).is_none() {
            return Err(bad(format!(
                "the modules of Linux {release} ({}) have no {module} module",
                modules.display()
            )));
        }
    }
    tools().map_err(Error::NoKernel)?;
    Ok(VmKernel {
        image: image.into(),
        release,
        modules,
    })
}

/// vng and qemu, or what to install.
fn tools() -> Result<(), String> {
    for (tool, install) in TOOLS {
        if uml::which(tool).is_none() {
            return Err(format!(
                "--kernel vm: `{tool}` not found ({install}; `just setup-vm` installs both)"
            ));
        }
    }
    Ok(())
}

/// For `bondcheck doctor`: whether images could be booted here (there is no image to check).
pub fn probe() -> Probe {
    let (usable, detail) = match tools() {
        Ok(()) => (
            true,
            "vng and qemu-system-x86_64 found: --kernel vm:IMAGE boots a kernel image under TCG"
                .to_string(),
        ),
        Err(why) => (false, why),
    };
    Probe {
        backend: "vm",
        usable,
        detail,
    }
}

/// The kernel release a bzImage announces: the boot protocol's setup header ("HdrS" at 0x202)
/// holds at 0x20e the offset, from 0x200, of a NUL-terminated version string
/// (Documentation/arch/x86/boot.rst, `kernel_version`), "6.1.0-56-amd64 (debian-kernel@...)".
fn bzimage_release(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let offset = u16::from_le_bytes(image.get(0x20e..0x210)?.try_into().ok()?) as usize;
    let text = image.get(0x200 + offset..)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    let release = std::str::from_utf8(&text[..end]).ok()?;
    (!release.is_empty() && release.chars().all(|c| c.is_ascii_graphic()))
        .then(|| release.to_string())
}

/// virtme-ng's rule (`get_rootfs_from_kernel_path`): the nearest folder at or above the image's
/// that holds `lib/modules` or `usr/lib/modules`; the tree is RELEASE there.
fn module_tree(image: &Path, release: &str) -> Option<PathBuf> {
    let image = std::path::absolute(image).ok()?;
    image.ancestors().skip(1).find_map(|dir| {
        ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|m| dir.join(m))
            .find(|m| m.is_dir())
            .map(|m| m.join(release))
            .filter(|tree| tree.is_dir())
    })
}

/// The kernel's configuration beside its image (`config-RELEASE`, as Debian's packages have it).
fn config_beside(image: &Path, release: &str) -> PathBuf {
    image
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("config-{release}"))
}

/// Boots the image, runs `args` (this program's own arguments) in it and returns the exit
/// code. `outputs` are the files the run writes: their folders are shared writable.
///
/// Always TCG (`--disable-kvm`): on this project's machines /dev/kvm exists but qemu's KVM
/// does not boot a stock kernel, and the timing tolerance is measured under TCG.
pub fn run_in_guest(vm: &VmKernel, args: Vec<OsString>, outputs: &[PathBuf]) -> Result<i32> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::run(format!("cannot find this executable: {e}")))?;
    let command = guest_command(&exe, &args, super::uml::unix_ns())?;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--kill-child=SIGKILL",
        "--",
        "vng",
        "--run",
    ])
    .arg(&vm.image)
    .args(["--disable-kvm", "--cpus", "1", "--memory", GUEST_MEMORY]);
    for dir in writable_dirs(outputs)? {
        cmd.arg(format!("--rwdir={}", dir.display()));
    }
    // Pipes, copied by bondcheck: qemu reopens its stdout (/proc/self/fd/1) for the console,
    // which for a file starts a new offset and overwrites what bondcheck wrote before it.
    cmd.arg("--exec")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    super::run_contained(cmd, "vng").and_then(|c| c.exit_code("VM guest"))
}

/// The shell command vng runs in the guest: this binary with the same arguments, marked as
/// the guest's run. It travels on the kernel command line, so its length is checked.
fn guest_command(exe: &Path, args: &[OsString], started_ns: u128) -> Result<String> {
    let words = std::iter::once(exe.as_os_str())
        .chain(args.iter().skip(1).map(OsString::as_os_str))
        .map(|w| {
            w.to_str()
                .map(shell_quote)
                .ok_or_else(|| Error::Usage(format!("argument {w:?} is not UTF-8")))
        })
        .collect::<Result<Vec<_>>>()?;
    let command = format!("{GUEST_VAR}={started_ns} exec {}", words.join(" "));
    if command.len() > MAX_COMMAND {
        return Err(Error::Usage(format!(
            "--kernel vm: the command line is {} bytes, more than the {MAX_COMMAND} that fit \
             on the guest kernel's command line: pass a folder instead of many paths",
            command.len()
        )));
    }
    Ok(command)
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The existing folders that will hold `outputs`, without repeats.
fn writable_dirs(outputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for out in outputs {
        let dir = std::path::absolute(out)
            .map_err(|e| Error::file(out, &e))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| "/".into());
        if !dir.is_dir() {
            return Err(Error::File {
                path: dir,
                message: "no such directory (for a file the run writes)".into(),
            });
        }
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    Ok(dirs)
}

// ---- guest side --------------------------------------------------------------------------

/// The host's start time (ns since the Unix epoch) if this process is bondcheck's run inside
/// a VM guest.
pub fn guest() -> Option<u128> {
    std::env::var(GUEST_VAR).ok()?.parse().ok()
}

/// Loads the bonding, veth and bridge modules (vng links the image's module tree at
/// /lib/modules/RELEASE; modprobe decompresses and resolves dependencies) and returns the
/// kernel's facts. HZ comes from the configuration beside `image`.
pub fn guest_init(started_ns: u128, image: &Path) -> Result<KernelInfo> {
    let out = Command::new("modprobe")
        .arg("-a")
        .args(uml::MODULES)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::run(format!("guest: cannot run modprobe: {e}")))?;
    if !out.status.success() {
        return Err(Error::run(format!(
            "guest: modprobe {} failed: {}",
            uml::MODULES.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let boot_ms = uml::unix_ns().saturating_sub(started_ns) as f64 / 1e6;
    let info = KernelInfo::current("vm");
    let hz = info
        .hz
        .or_else(|| super::config_file_hz(&config_beside(image, &info.release)));
    Ok(KernelInfo {
        boot_ms: Some(boot_ms),
        hz,
        ..info
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal bzImage: the setup header's magic and a version string where it points.
    pub(crate) fn fake_bzimage(version: &str) -> Vec<u8> {
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        let offset: u16 = 0x100;
        image[0x20e..0x210].copy_from_slice(&offset.to_le_bytes());
        let at = 0x200 + offset as usize;
        image[at..at + version.len()].copy_from_slice(version.as_bytes());
        image
    }

    #[test]
    fn the_release_comes_from_the_setup_header() {
        let image = fake_bzimage("6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP");
        assert_eq!(bzimage_release(&image).as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(bzimage_release(b"#!/bin/sh\n"), None);
        let mut no_magic = image.clone();
        no_magic[0x202] = b'X';
        assert_eq!(bzimage_release(&no_magic), None);
        // An offset past the end of the file.
        let mut short = image;
        short.truncate(0x280);
        assert_eq!(bzimage_release(&short), None);
    }

    #[test]
    fn modules_are_found_as_virtme_ng_finds_them() {
        let root = tempfile::tempdir().unwrap();
        let boot = root.path().join("boot");
        std::fs::create_dir_all(&boot).unwrap();
        let image = boot.join("vmlinuz-6.12.1");
        assert_eq!(module_tree(&image, "6.12.1"), None);
        std::fs::create_dir_all(root.path().join("usr/lib/modules/6.12.1")).unwrap();
        assert_eq!(
            module_tree(&image, "6.12.1"),
            Some(root.path().join("usr/lib/modules/6.12.1"))
        );
        // lib/modules in the same folder wins, and then the release must be there.
        std::fs::create_dir_all(root.path().join("lib/modules/other")).unwrap();
        assert_eq!(module_tree(&image, "6.12.1"), None);
        assert_eq!(config_beside(&image, "6.12.1"), boot.join("config-6.12.1"));
    }

    #[test]
    fn the_guest_command_is_quoted_and_bounded() {
        let args: Vec<OsString> = ["bondcheck", "run", "it's here"]
            .iter()
            .map(OsString::from)
            .collect();
        let cmd = guest_command(Path::new("/b/bondcheck"), &args, 42).unwrap();
        assert_eq!(
            cmd,
            r"BONDCHECK_VM_GUEST=42 exec '/b/bondcheck' 'run' 'it'\''s here'"
        );
        let many: Vec<OsString> = std::iter::once("bondcheck".into())
            .chain((0..200).map(|i| OsString::from(format!("suites/case-{i}"))))
            .collect();
        let err = guest_command(Path::new("/b/bondcheck"), &many, 42).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("pass a folder"), "{err}");
    }

    #[test]
    fn output_folders_are_shared_once_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let outs = [dir.path().join("a.json"), dir.path().join("a.xml")];
        assert_eq!(writable_dirs(&outs).unwrap(), [dir.path()]);
        assert_eq!(
            writable_dirs(&[dir.path().join("missing/a.json")])
                .unwrap_err()
                .exit_code(),
            2
        );
    }
}
