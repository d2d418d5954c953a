//! Nothing survives a run: a `bondcheck run` killed in the middle of a case (SIGKILL, or
//! SIGINT from a terminal) leaves no process, network namespace or interface behind, and the
//! next run passes. Runs for real on the kernel `--kernel auto` picks; listed as ignored where
//! there is none.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bondcheck::kernel::{self, Choice};
use libtest_mimic::{Arguments, Failed, Trial};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A case that spends over a second observing, so a kill lands inside it.
const SLOW_CASE: &str = "suites/negative-controls/slave-lost-carrier";

fn main() {
    let args = Arguments::from_args();
    let no_kernel = kernel::select(Choice::Auto).is_err();
    let trials = [
        ("sigkill_mid_case", Signal::SIGKILL),
        ("sigint_mid_case", Signal::SIGINT),
    ]
    .map(|(name, sig)| {
        Trial::test(name, move || killed_mid_case(sig)).with_ignored_flag(no_kernel)
    });
    libtest_mimic::run(&args, trials.into()).exit()
}

fn bondcheck(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bondcheck"));
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
        .args(args);
    cmd
}

/// What a run could leave behind in this (the host's) namespace.
fn host_state() -> (BTreeSet<String>, BTreeSet<String>) {
    let names = |dir: &str| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    (names("/sys/class/net"), names("/run/netns"))
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces, start after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Every live process descending from `root`.
fn descendants(root: u32) -> BTreeSet<u32> {
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut found = BTreeSet::from([root]);
    loop {
        let more: Vec<u32> = all
            .iter()
            .filter(|p| !found.contains(p) && parent_of(**p).is_some_and(|pp| found.contains(&pp)))
            .copied()
            .collect();
        if more.is_empty() {
            found.remove(&root);
            return found;
        }
        found.extend(more);
    }
}

/// Starts a run and returns once the guest (or host run) has started its first case.
fn start_run() -> Result<Child, Failed> {
    let mut child = bondcheck(&["run", SLOW_CASE])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    // The harness says it is in the guest right before the first case starts.
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("bondcheck: in a UML guest") || l.starts_with("case ") => {
                break;
            }
            Some(Ok(_)) => continue,
            _ => return Err("the run ended before its first case".into()),
        }
    }
    // Keep draining so the guest never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(child)
}

fn killed_mid_case(sig: Signal) -> Result<(), Failed> {
    let before = host_state();
    let mut child = start_run()?;
    let family = descendants(child.id());
    kill(Pid::from_raw(child.id() as i32), sig)?;
    let status = child.wait()?;
    if sig == Signal::SIGINT && status.code() != Some(130) {
        return Err(format!("SIGINT should end the run with 130, got {status:?}").into());
    }
    // The kernel tears processes down asynchronously: poll with a deadline, no fixed sleep.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = family.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(
                format!("processes left behind after {sig}: {left:?} (of {family:?})").into(),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if family.is_empty() && kernel::select(Choice::Host).is_err() {
        return Err("found no guest processes to watch: the test would prove nothing".into());
    }
    let after = host_state();
    if after != before {
        return Err(format!("host namespace changed: before {before:?}, after {after:?}").into());
    }
    let next = bondcheck(&["run", "suites/debian-howto"]).output()?;
    if !next.status.success() {
        return Err(format!(
            "the next run failed:\n{}",
            String::from_utf8_lossy(&next.stdout)
        )
        .into());
    }
    Ok(())
}
