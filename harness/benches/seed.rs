//! Benchmarks, side by side in one run through the `bondcheck` binary: the Debian how-to's
//! case end to end, kernel (UML guest) boot included, repeated, with where the time goes; and
//! the traffic engine's frames per second sent through a bond and captured without loss
//! (`benches/traffic`). Writes reports/bench-seed.json. A benchmark, not a test: it measures
//! and never fails on a figure.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

const CASE: &str = "suites/debian-howto";
/// balance-rr over two slaves carrying 100000 frames, every one judged.
const TRAFFIC_CASE: &str = "harness/benches/traffic";

fn main() {
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
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_bondcheck"))
            .current_dir(root)
            .args(["run", "--report"])
            .arg(&report)
            .arg(CASE)
            .output()
            .expect("bondcheck runs");
        let wall_ms = start.elapsed().as_secs_f64() * 1e3;
        assert!(
            out.status.success(),
            "{CASE} did not pass:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
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
    let _ = std::fs::remove_file(&report);
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
    let out = root.join("reports/bench-seed.json");
    let doc = json!({
        "case": CASE,
        "runs": runs,
        "summary": summary,
        "samples": samples,
        "traffic": traffic,
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
        let out = Command::new(env!("CARGO_BIN_EXE_bondcheck"))
            .current_dir(root)
            .args(["run", "--report"])
            .arg(report)
            .arg(TRAFFIC_CASE)
            .output()
            .expect("bondcheck runs");
        assert!(
            out.status.success(),
            "{TRAFFIC_CASE} did not pass:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(report).expect("report")).expect("json");
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
            "backend": r["kernel"]["backend"],
        }));
    }
    let _ = std::fs::remove_file(report);
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
