//! Benchmarks, side by side in one run on the same UML kernel: the Debian how-to's case end to
//! end, guest boot included, repeated, with where the time goes; the traffic engine's frames per
//! second sent through a bond and captured without loss (`benches/traffic`); the full default
//! suite, its wall time against the kernel time it cannot avoid (the model's inherent time),
//! on one lane and on four (`--jobs 4`), with the timing samples' margins
//! under each;
//! the kernel's own bonding selftests of the same kernel version, run in the same kind of guest;
//! and the peak memory of the harness and the guest. Writes reports/bench-seed.json. A
//! benchmark, not a test: it measures and never fails on a figure.
//!
//! The selftests run in a guest booted by the library's UML backend with this bench binary as
//! its init ([`selftests_in_guest`]): the backend's boot code, not a copy of it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bondcheck::kernel::uml;
use serde_json::{Value, json};

const CASE: &str = "suites/debian-howto";
/// balance-rr over two slaves carrying 100000 frames, every one judged.
const TRAFFIC_CASE: &str = "harness/benches/traffic";

/// The kernel's bonding selftests, extracted from Debian's linux-source package by `just bench`.
const SELFTESTS: &str = "target/bench/linux-source-6.1";
const SELFTESTS_DIR: &str = "tools/testing/selftests/drivers/net/bonding";

/// Behaviours both suites check: the selftest, what it checks, and bondcheck's cases that check
/// the same (with what else they do).
const SHARED: [(&str, &str, &[&str]); 2] = [
    (
        "bond-break-lacpdu-tx.sh",
        "an 802.3ad bond (lacp_rate fast) with no LACP partner on its links sends LACPDUs (the \
         selftest: any within 15 s on one slave, after setting the bond's MAC address; \
         bondcheck: on every slave, the first with the bond's system, the port's number and the \
         state the driver's rules give, the second when they say, besides every option, both \
         views and where each frame went)",
        &["modes/802.3ad"],
    ),
    (
        "bond-arp-interval-causes-panic.sh",
        "an active-backup bond with miimon comes up and carries traffic (bondcheck also checks \
         every option, both views and where each frame went; the selftest then re-creates it in \
         balance-rr with an ARP target, which no bondcheck case does)",
        &["modes/active-backup"],
    ),
];

fn main() {
    if let Some(job) = uml::guest_job() {
        let code = match uml::guest_init(&job) {
            Ok(_) => selftests_in_guest(&job.args),
            Err(e) => {
                eprintln!("bench guest: {e}");
                1
            }
        };
        uml::guest_exit(code)
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let report = std::env::temp_dir().join(format!("bondcheck-bench-{}.json", std::process::id()));
    let mut samples = Vec::new();
    for _ in 0..runs {
        let (r, wall_ms, _) = bondcheck_run(root, &report, &[CASE]);
        let phases = &r["cases"][0]["phases"];
        let get = |v: &Value| v.as_f64().unwrap_or(0.0);
        let boot = get(&r["kernel"]["boot_ms"]);
        let guest = get(&r["duration_ms"]);
        samples.push(json!({
            "wall_ms": wall_ms,
            "boot_ms": boot,
            "setup_ms": get(&phases["setup_ms"]),
            "apply_ms": get(&phases["apply_ms"]),
            "observe_ms": get(&phases["observe_ms"]),
            "traffic_ms": get(&phases["traffic_ms"]),
            "timing_ms": get(&phases["timing_ms"]),
            "checks_ms": get(&phases["checks_ms"]),
            "teardown_ms": get(&phases["teardown_ms"]),
            // Guest power-off and the host's own start and wait.
            "other_ms": wall_ms - boot - guest,
            "backend": r["kernel"]["backend"],
        }));
    }
    let columns = [
        "wall_ms",
        "boot_ms",
        "setup_ms",
        "apply_ms",
        "observe_ms",
        "traffic_ms",
        "timing_ms",
        "checks_ms",
        "teardown_ms",
        "other_ms",
    ];
    println!("{CASE}, {runs} runs, backend {}", samples[0]["backend"]);
    println!("{:<12} {:>9} {:>9} {:>9}", "", "min", "median", "max");
    let mut summary = serde_json::Map::new();
    for c in columns {
        let mut v: Vec<f64> = samples
            .iter()
            .map(|s| s[c].as_f64().unwrap_or(0.0))
            .collect();
        v.sort_by(f64::total_cmp);
        let (min, med, max) = (v[0], v[v.len() / 2], v[v.len() - 1]);
        println!("{c:<12} {min:>9.1} {med:>9.1} {max:>9.1}");
        summary.insert(c.into(), json!({ "min": min, "median": med, "max": max }));
    }
    let traffic = traffic(root, &report, runs);
    let suite = suite(root, &report, 1);
    let lanes = suite_in_lanes(root, &report, &suite);
    let selftests = selftests(root, &suite);
    let _ = std::fs::remove_file(&report);
    let out = root.join("reports/bench-seed.json");
    let doc = json!({
        "case": CASE,
        "runs": runs,
        "summary": summary,
        "samples": samples,
        "traffic": traffic,
        "suite": suite,
        "lanes": lanes,
        "selftests": selftests,
    });
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&doc).expect("json") + "\n",
    )
    .expect("write bench report");
    println!("written: {}", out.display());
}

/// Frames per second through a bond and its captures, from the traffic phase's own clock
/// (send and capture, fences included), with the capture's kernel-counted drops.
fn traffic(root: &Path, report: &Path, runs: usize) -> Value {
    let mut samples = Vec::new();
    for _ in 0..runs {
        let (r, _, _) = bondcheck_run(root, report, &[TRAFFIC_CASE]);
        let sent = &r["cases"][0]["traffic"]["sent"];
        let get = |v: &Value| v.as_f64().unwrap_or(0.0);
        let frames = get(&sent["frames"]);
        let dropped: f64 = sent["captures"]
            .as_array()
            .map_or(0.0, |c| c.iter().map(|c| get(&c["dropped"])).sum());
        samples.push(json!({
            "frames": frames,
            "frames_per_s": frames / get(&sent["total_ms"]) * 1e3,
            "send_only_frames_per_s": frames / get(&sent["send_ms"]) * 1e3,
            "us_per_frame": get(&sent["total_ms"]) * 1e3 / frames,
            "capture_dropped": dropped,
            "memory": r["memory"],
            "backend": r["kernel"]["backend"],
        }));
    }
    let mut fps: Vec<f64> = samples
        .iter()
        .map(|s| s["frames_per_s"].as_f64().unwrap_or(0.0))
        .collect();
    fps.sort_by(f64::total_cmp);
    let median = fps[fps.len() / 2];
    println!(
        "{TRAFFIC_CASE}: {} frames, {runs} runs, backend {}: median {median:.0} frames/s sent and \
         captured ({:.1} us per frame, harness and kernel), capture drops {}",
        samples[0]["frames"],
        samples[0]["backend"],
        1e6 / median,
        samples
            .iter()
            .map(|s| s["capture_dropped"].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    );
    println!("host backend: not measured (the host kernel has no bonding driver)");
    json!({ "case": TRAFFIC_CASE, "median_frames_per_s": median, "samples": samples })
}

/// Runs `bondcheck run` on `paths` (the default suite if none), which must pass, and reads its
/// report. Returns it with the wall time on the host and the peak resident set of the biggest
/// process of the run's tree (the UML guest's, which maps its memory), from wait4.
fn bondcheck_run(root: &Path, report: &Path, paths: &[&str]) -> (Value, f64, u64) {
    let (r, code, wall_ms, rss) = bondcheck_exit(root, report, paths);
    assert!(code == 0, "{paths:?} did not pass:\n{}", r["output"]);
    (r, wall_ms, rss)
}

/// The same for a run that may fail a check (exit code 1): its report, exit code, wall time
/// and peak resident set; on any other exit code, the run's output as the report's `output`.
fn bondcheck_exit(root: &Path, report: &Path, paths: &[&str]) -> (Value, i32, f64, u64) {
    let log = report.with_extension("log");
    let start = Instant::now();
    // Reaped by wait4 below, which gives its resource usage where Child::wait does not.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_bondcheck"))
        .current_dir(root)
        .args(["run", "--report"])
        .arg(report)
        .args(paths)
        .stdout(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("bondcheck starts");
    let (code, peak_rss_kib) = wait4(child.id());
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let r = match code {
        0 | 1 => {
            serde_json::from_str(&std::fs::read_to_string(report).expect("report")).expect("json")
        }
        _ => json!({ "output": out }),
    };
    (r, code, wall_ms, peak_rss_kib)
}

/// Waits for the child `pid`: its exit code (255 if a signal ended it) and the largest
/// resident set of it and its descendants, in KiB.
fn wait4(pid: u32) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is this process's child, not yet waited for; both pointers are valid.
    let waited = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    assert_eq!(
        waited,
        pid as i32,
        "wait4: {}",
        std::io::Error::last_os_error()
    );
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        255
    };
    (code, usage.ru_maxrss as u64)
}

fn ms_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The full default suite once on `jobs` lanes: its wall time against the kernel time its cases
/// cannot avoid, per phase, regular cases and negative controls apart (a control moves the
/// kernel away from its spec on purpose, and some wait out a deadline to show that something
/// does not happen), and its timing samples' margins.
fn suite(root: &Path, report: &Path, jobs: usize) -> Value {
    let jobs_arg = jobs.to_string();
    let (r, code, wall_ms, host_rss) = bondcheck_exit(root, report, &["--jobs", &jobs_arg]);
    assert!(code <= 1, "the suite could not run:\n{}", r["output"]);
    let cases = r["cases"].as_array().cloned().unwrap_or_default();
    let group = |controls: bool| {
        let cs: Vec<&Value> = cases
            .iter()
            .filter(|c| c["negative_control"].is_null() != controls)
            .collect();
        let wall: f64 = cs.iter().map(|c| ms_of(&c["duration_ms"])).sum();
        let inherent: f64 = cs.iter().map(|c| ms_of(&c["inherent_ms"])).sum();
        let mut phases = serde_json::Map::new();
        for c in &cs {
            for (k, v) in c["phases"].as_object().into_iter().flatten() {
                let sum = phases.get(k).map_or(0.0, ms_of) + ms_of(v);
                phases.insert(k.clone(), json!(sum));
            }
        }
        json!({
            "cases": cs.len(),
            "wall_ms": wall,
            "inherent_ms": inherent,
            "wall_over_inherent": wall / inherent,
            "phases": phases,
        })
    };
    let (regular, controls) = (group(false), group(true));
    let s = &r["summary"];
    println!(
        "\nfull default suite ({} cases), {jobs} lane(s), backend {}: {:.1} s end to end (boot \
         {:.1} s), {:.1} s of cases against {:.1} s inherent: {:.2} x",
        cases.len(),
        r["kernel"]["backend"],
        wall_ms / 1e3,
        ms_of(&r["kernel"]["boot_ms"]) / 1e3,
        ms_of(&r["duration_ms"]) / 1e3,
        ms_of(&s["inherent_ms"]) / 1e3,
        ms_of(&s["wall_over_inherent"])
    );
    println!(
        "{:<18} {:>6} {:>9} {:>11} {:>7}   phases (s)",
        "", "cases", "wall s", "inherent s", "ratio"
    );
    for (name, g) in [
        ("regular cases", &regular),
        ("negative controls", &controls),
    ] {
        let phases: Vec<String> = g["phases"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| ms_of(v) >= 50.0)
            .map(|(k, v)| format!("{} {:.1}", k.trim_end_matches("_ms"), ms_of(v) / 1e3))
            .collect();
        println!(
            "{name:<18} {:>6} {:>9.1} {:>11.1} {:>7.2}   {}",
            g["cases"],
            ms_of(&g["wall_ms"]) / 1e3,
            ms_of(&g["inherent_ms"]) / 1e3,
            ms_of(&g["wall_over_inherent"]),
            phases.join(", ")
        );
    }
    // A figure of a run with a failure is still a figure, but say so: a failing timing case
    // ends at its deadline, not at the kernel's commit.
    let failed: Vec<&str> = cases
        .iter()
        .filter(|c| c["status"] != "pass")
        .filter_map(|c| c["name"].as_str())
        .collect();
    if !failed.is_empty() {
        println!("not passed in this run: {}", failed.join(", "));
    }
    let mem = &r["memory"];
    println!(
        "memory: harness peak RSS {} KiB (in the guest); guest {} KiB, at most {} KiB in use; the \
         guest's host process tree peaked at {host_rss} KiB RSS",
        mem["harness_peak_rss_kib"], mem["guest_total_kib"], mem["guest_peak_used_kib"]
    );
    json!({
        "jobs": jobs,
        "margins": margins(&cases),
        "host_wall_ms": wall_ms,
        "not_passed": failed,
        "boot_ms": r["kernel"]["boot_ms"],
        "duration_ms": r["duration_ms"],
        "inherent_ms": s["inherent_ms"],
        "wall_over_inherent": s["wall_over_inherent"],
        "regular": regular,
        "negative_controls": controls,
        "memory": mem,
        "host_peak_rss_kib": host_rss,
        "cases": cases.iter().map(|c| json!({
            "name": c["name"],
            "negative_control": !c["negative_control"].is_null(),
            "duration_ms": c["duration_ms"],
            "inherent_ms": c["inherent_ms"],
            "phases": c["phases"],
        })).collect::<Vec<_>>(),
    })
}

/// The regular cases' timing samples (a negative control misses its window on purpose): per
/// sample, how much of the backend's tolerance it used past the model's window, how far it
/// stayed below the window's end plus tolerance (headroom), and how much later the netlink
/// notification reached bondcheck than the kernel logged the commit (the harness's own lag,
/// which is what lanes could add to).
fn margins(cases: &[Value]) -> Value {
    let (mut used, mut headroom, mut lag, mut tolerance) = (vec![], vec![], vec![], 0.0);
    for case in cases.iter().filter(|c| c["negative_control"].is_null()) {
        let checks = case["checks"].as_array().into_iter().flatten();
        for check in checks.filter(|c| {
            matches!(
                c["check"].as_str(),
                Some("timing.downdelay" | "timing.updelay")
            )
        }) {
            let m: std::collections::BTreeMap<&str, f64> = check["measurements"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| Some((m["name"].as_str()?, m["value"].as_f64()?)))
                .collect();
            let (Some(&upper), Some(&tol)) = (m.get("window_upper"), m.get("tolerance")) else {
                continue;
            };
            tolerance = tol;
            for (name, &sample) in m.iter().filter(|(n, _)| {
                n.starts_with("trial_") && n[6..].chars().all(|c| c.is_ascii_digit())
            }) {
                used.push(
                    m.get(&*format!("{name}_tolerance_used"))
                        .copied()
                        .unwrap_or(0.0),
                );
                headroom.push(upper + tol - sample);
                if let Some(kmsg) = m.get(&*format!("{name}_kernel_log")) {
                    lag.push(sample - kmsg);
                }
            }
        }
    }
    let stats = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        json!({
            "samples": v.len(),
            "min": v.first(),
            "median": v.get(v.len() / 2),
            "max": v.last(),
        })
    };
    json!({
        "tolerance_ms": tolerance,
        "tolerance_used_ms": stats(used),
        "headroom_ms": stats(headroom),
        "netlink_lag_ms": stats(lag),
    })
}

/// The default suite again on [`LANES`] lanes, set side by side with the one-lane run: wall
/// time, inherent time, ratio, and the timing margins.
fn suite_in_lanes(root: &Path, report: &Path, one: &Value) -> Value {
    let jobs = LANES;
    let many = suite(root, report, jobs);
    println!("\none lane against {jobs} lanes (timing samples of regular cases, ms):");
    println!(
        "{:<8} {:>8} {:>11} {:>7} {:>15} {:>15} {:>15}",
        "lanes", "wall s", "inherent s", "ratio", "tol. used max", "headroom min", "lag med/max"
    );
    for run in [one, &many] {
        let m = &run["margins"];
        println!(
            "{:<8} {:>8.1} {:>11.1} {:>7.2} {:>15.1} {:>15.1} {:>7.1}/{:<7.1}",
            run["jobs"].as_u64().unwrap_or(0),
            ms_of(&run["duration_ms"]) / 1e3,
            ms_of(&run["inherent_ms"]) / 1e3,
            ms_of(&run["wall_over_inherent"]),
            ms_of(&m["tolerance_used_ms"]["max"]),
            ms_of(&m["headroom_ms"]["min"]),
            ms_of(&m["netlink_lag_ms"]["median"]),
            ms_of(&m["netlink_lag_ms"]["max"]),
        );
    }
    json!({
        "jobs": jobs,
        "one_lane": { "duration_ms": one["duration_ms"], "wall_over_inherent": one["wall_over_inherent"], "margins": one["margins"] },
        "lanes": many,
    })
}

/// The lanes set against one: four, the most that kept every timing margin in the runs
/// README.md reports (Lanes).
const LANES: usize = 4;

/// The kernel's own bonding selftests of the UML kernel's version, in a UML guest like
/// bondcheck's, script by script; then the behaviours both suites check, compared.
fn selftests(root: &Path, suite: &Value) -> Value {
    let src = root.join(SELFTESTS);
    let dir = src.join(SELFTESTS_DIR);
    let not_run = |why: String| {
        println!("\nkernel selftests: not run: {why}");
        json!({ "ran": false, "why": why })
    };
    if !dir.is_dir() {
        return not_run(format!(
            "{} is missing (`just bench` extracts it from Debian's linux-source-6.1)",
            dir.display()
        ));
    }
    let uml = match uml::find() {
        Ok(k) => k,
        Err(why) => return not_run(why),
    };
    let source_version = kernel_version(&src.join("Makefile"));
    let package = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "linux-source-6.1"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let out = std::env::temp_dir().join(format!("bondcheck-selftests-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("scratch folder");
    let args = ["seed", "selftests"]
        .into_iter()
        .map(Into::into)
        .chain([dir.clone().into_os_string(), out.clone().into_os_string()])
        .collect();
    let start = Instant::now();
    let code = uml::run_in_guest(&uml, args).expect("the guest runs");
    let host_wall_ms = start.elapsed().as_secs_f64() * 1e3;
    let results: Value = std::fs::read_to_string(out.join("results.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_dir_all(&out);
    let Some(scripts) = results["scripts"].as_array() else {
        return not_run(format!("the guest gave no results (exit code {code})"));
    };
    println!(
        "\nkernel selftests: {SELFTESTS_DIR} of linux-source-6.1 {package} (Linux {source_version}) \
         in a UML guest of Linux {} ({:.1} s end to end, boot included)",
        uml.release,
        host_wall_ms / 1e3
    );
    println!(
        "{:<36} {:>8} {:>8} {:>8}",
        "script", "status", "s", "sleep s"
    );
    for s in scripts {
        println!(
            "{:<36} {:>8} {:>8.1} {:>8.0}",
            s["script"].as_str().unwrap_or("?"),
            s["status"].as_str().unwrap_or("?"),
            ms_of(&s["ms"]) / 1e3,
            ms_of(&s["sleep_s"])
        );
    }
    let total: f64 = scripts.iter().map(|s| ms_of(&s["ms"])).sum();
    let sleeps: f64 = scripts.iter().map(|s| ms_of(&s["sleep_s"])).sum();
    println!(
        "{:<36} {:>8} {:>8.1} {:>8.0}",
        "total",
        "",
        total / 1e3,
        sleeps
    );
    let bondcheck_total = ms_of(&suite["duration_ms"]);
    println!(
        "bondcheck's full default suite in the same kind of guest: {:.1} s for {} cases",
        bondcheck_total / 1e3,
        suite["cases"].as_array().map_or(0, Vec::len)
    );
    println!(
        "\nbehaviours both check (bondcheck: whole case, and without its timing window, the trials, the flap and the failover stream, which the selftest has no counterpart of):"
    );
    let mut shared = Vec::new();
    for (script, behaviour, cases) in SHARED {
        let Some(st) = scripts.iter().find(|s| s["script"] == script) else {
            continue;
        };
        let picked: Vec<&Value> = suite["cases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| cases.contains(&c["name"].as_str().unwrap_or("")))
            .collect();
        let whole: f64 = picked.iter().map(|c| ms_of(&c["duration_ms"])).sum();
        let untimed: f64 = picked
            .iter()
            .map(|c| {
                let phases = &c["phases"];
                ms_of(&c["duration_ms"])
                    - ms_of(&phases["timing_ms"])
                    - ms_of(&phases["failover_ms"])
            })
            .sum();
        let st_ms = ms_of(&st["ms"]);
        println!(
            "  {script} ({}, {:.1} s) vs {} ({:.1} s: {:.1} x; without timing {:.1} s: {:.1} x)\n    {behaviour}",
            st["status"].as_str().unwrap_or("?"),
            st_ms / 1e3,
            cases.join(", "),
            whole / 1e3,
            st_ms / whole,
            untimed / 1e3,
            st_ms / untimed
        );
        shared.push(json!({
            "selftest": script,
            "behaviour": behaviour,
            "selftest_ms": st_ms,
            "bondcheck_cases": cases,
            "bondcheck_ms": whole,
            "bondcheck_without_timing_ms": untimed,
            "speedup": st_ms / whole,
            "speedup_without_timing": st_ms / untimed,
        }));
    }
    json!({
        "ran": true,
        "package": "linux-source-6.1",
        "package_version": package,
        "source_version": source_version,
        "uml_release": uml.release,
        "host_wall_ms": host_wall_ms,
        "total_ms": total,
        "sleep_s": sleeps,
        "scripts": scripts,
        "bondcheck_suite_ms": bondcheck_total,
        "shared": shared,
    })
}

/// `VERSION.PATCHLEVEL.SUBLEVEL` from a kernel tree's Makefile.
fn kernel_version(makefile: &Path) -> String {
    let text = std::fs::read_to_string(makefile).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_prefix('=')
                    .map(str::trim)
            })
            .unwrap_or("?")
            .to_string()
    };
    format!(
        "{}.{}.{}",
        field("VERSION"),
        field("PATCHLEVEL"),
        field("SUBLEVEL")
    )
}

/// PATH for the scripts: the guest's init gets none from the kernel.
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Guest side: runs every script of the selftests' TEST_PROGS, one after the other as
/// kselftest's runner does, each with the selftests' own timeout (`settings`) and in a scratch
/// folder of its own, and writes `results.json` there. Returns the guest's exit code.
fn selftests_in_guest(args: &[String]) -> i32 {
    let [_, command, dir, out] = args else {
        return 2;
    };
    if command != "selftests" {
        return 2;
    }
    let (dir, out) = (PathBuf::from(dir), PathBuf::from(out));
    // The kernel cannot load modules on demand in the guest (no /lib/modules of its release):
    // the devices the scripts create beyond bondcheck's own (config: CONFIG_MACVLAN; dummy
    // slaves in dev_addr_lists.sh) are loaded first. The scripts' `modprobe -r bonding` then
    // fails, which they ignore, and bonding stays loaded.
    if let Err(e) = uml::load_modules(&["dummy", "macvlan"]) {
        eprintln!("bench guest: {e}");
        return 1;
    }
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let timeout = read("settings")
        .lines()
        .find_map(|l| l.strip_prefix("timeout=")?.trim().parse().ok())
        .unwrap_or(45);
    let mut scripts = Vec::new();
    for script in test_progs(&read("Makefile")) {
        let scratch = out.join(script.trim_end_matches(".sh"));
        let log = scratch.join("log");
        let started = std::fs::create_dir_all(&scratch)
            .and_then(|()| std::fs::File::create(&log))
            .and_then(|f| Ok((f.try_clone()?, f)));
        let Ok((stdout, stderr)) = started else {
            eprintln!("bench guest: cannot create {}", log.display());
            return 1;
        };
        let start = Instant::now();
        let child = Command::new(dir.join(&script))
            .current_dir(&scratch)
            .env("PATH", GUEST_PATH)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn();
        let (status, ms) = match child {
            Ok(child) => {
                let code = wait_with_timeout(child, Duration::from_secs(timeout));
                let ms = start.elapsed().as_secs_f64() * 1e3;
                let status = match code {
                    Some(0) => "pass",
                    // kselftest's KSFT_SKIP
                    Some(4) => "skip",
                    Some(_) => "fail",
                    None => "timeout",
                };
                (status, ms)
            }
            Err(e) => {
                eprintln!("bench guest: {script}: {e}");
                ("error", 0.0)
            }
        };
        scripts.push(json!({
            "script": script,
            "status": status,
            "ms": ms,
            "sleep_s": sleep_seconds(&read(&script)),
            "output": std::fs::read_to_string(&log).unwrap_or_default(),
        }));
    }
    let doc = json!({ "scripts": scripts });
    match std::fs::write(out.join("results.json"), doc.to_string()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench guest: writing results: {e}");
            1
        }
    }
}

/// The scripts of a kselftest Makefile's `TEST_PROGS := a.sh \ b.sh ...`.
fn test_progs(makefile: &str) -> Vec<String> {
    let joined = makefile.replace("\\\n", " ");
    joined
        .lines()
        .find_map(|l| {
            l.strip_prefix("TEST_PROGS")?
                .trim_start()
                .strip_prefix(":=")
        })
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Seconds of the script's own `sleep N` lines: waits fixed in the script.
fn sleep_seconds(script: &str) -> f64 {
    script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sleep ")?.trim().parse::<f64>().ok())
        .fold(0.0, |sum, s| sum + s)
}

/// The child's exit code, or None if it ran past `timeout` (its process group is then
/// killed). Whatever it left running in its group is killed either way.
fn wait_with_timeout(mut child: std::process::Child, timeout: Duration) -> Option<i32> {
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    let id = child.id();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx.recv_timeout(timeout).ok();
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let status = match status {
        Some(s) => s.ok().and_then(|s| s.code()),
        None => {
            let _ = rx.recv();
            eprintln!("bench guest: pid {id} ran past {timeout:?}");
            None
        }
    };
    let _ = waiter.join();
    status
}
