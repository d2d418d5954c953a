//! The second applier: the spec brought up by Debian's real `ifup` with ifenslave's hooks, the
//! way the admin's machine does it, inside the bond's network namespace.
//!
//! ifup runs in a private mount namespace (`unshare --mount --propagation private`) where
//! /sys is a sysfs of the bond's namespace (the hooks write /sys/class/net/<bond>/bonding/*),
//! /run is a fresh tmpfs (ifupdown's state and lock), and /etc/network holds only ifenslave's
//! hooks: the host's own interfaces file, state and other hooks are never read or touched, and
//! the mounts vanish with the process. ifup reads the spec file itself (`-i`), so its `source`
//! lines resolve as they would on the admin's machine.
//!
//! ifenslave's sysfs writes are not visible one by one from here; the kernel's answers are
//! judged by their effect (every option check) and ifup's own output goes into the report.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sched::{CloneFlags, setns};

use crate::apply::{Applied, Outcome};
use crate::error::{Error, Result};
use crate::model::Answer;
use crate::netlink;
use crate::spec::Spec;
use crate::topology::Built;

/// Runs in the private mount namespace, in the bond's network namespace; `$1` is the spec,
/// the rest are the interfaces to bring up.
const SCRIPT: &str = r#"set -e
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
mkdir -p /run/network /run/bondcheck/etc
for d in if-pre-up.d if-up.d if-down.d if-post-down.d; do
    mkdir -p "/run/bondcheck/etc/$d"
    if [ -e "/etc/network/$d/ifenslave" ]; then cp "/etc/network/$d/ifenslave" "/run/bondcheck/etc/$d/"; fi
done
: > /run/bondcheck/etc/interfaces
mount --bind /run/bondcheck/etc /etc/network
spec=$1
shift
exec ifup -v --state-dir /run/network -i "$spec" "$@"
"#;

/// Whether ifupdown and ifenslave are installed here.
pub fn available() -> std::result::Result<(), String> {
    let missing: Vec<&str> = [
        ("/sbin/ifup", "ifupdown"),
        ("/etc/network/if-pre-up.d/ifenslave", "ifenslave"),
    ]
    .iter()
    .filter(|(path, _)| !std::path::Path::new(path).exists())
    .map(|(_, package)| *package)
    .collect();
    match missing[..] {
        [] => Ok(()),
        _ => Err(format!(
            "--apply ifupdown needs Debian's {} (apt-get install {0})",
            missing.join(" ")
        )),
    }
}

pub async fn apply(spec: &Spec, built: &Built) -> Result<Outcome> {
    let bond = &spec.bond.name;
    // ifup brings the bond up; slaves that join with their own `bond-master` stanza are
    // brought up as stanzas of their own, as `ifup -a` would.
    let mut interfaces = vec![bond.clone()];
    interfaces.extend(spec.bond.joined.iter().cloned());
    let spec_path = std::fs::canonicalize(&spec.path).unwrap_or_else(|_| spec.path.clone());
    let netns = built.bond_ns.as_fd().as_raw_fd();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        SCRIPT,
        "sh",
    ])
    .arg(&spec_path)
    .args(&interfaces)
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .stdin(Stdio::null());
    // SAFETY: setns is a plain system call, async-signal-safe; nothing else runs before exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = std::os::fd::BorrowedFd::borrow_raw(netns);
            setns(fd, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        });
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| Error::run(format!("ifup did not finish: {e}")))?
        .map_err(|e| Error::run(format!("cannot run ifup: {e}")))?;
    let log: String =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let step = format!("ifup -i {} {}", spec.path.display(), interfaces.join(" "));
    let refused = (!out.status.success()).then(|| format!("exit status {}", out.status));
    let bond_index = netlink::index_of(&built.bond, bond).await.map_err(|r| {
        Error::run(format!(
            "ifup did not create {bond} ({r}); its output:\n{}",
            log.trim_end()
        ))
    })?;
    Ok(Outcome {
        bond_index,
        steps: vec![Applied {
            answer: Answer { step, refused },
            message: Some(log.trim_end().to_string()),
        }],
        answers_observed: false,
    })
}
