//! Benchmark: the Debian how-to's case end to end through the `bondcheck` binary, kernel
//! (UML guest) boot included, repeated; prints where the time goes and writes
//! reports/bench-seed.json. A benchmark, not a test: it measures and never fails on a figure.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

const CASE: &str = "suites/debian-howto";

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
    let out = root.join("reports/bench-seed.json");
    let doc = json!({ "case": CASE, "runs": runs, "summary": summary, "samples": samples });
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&doc).expect("json") + "\n",
    )
    .expect("write bench report");
    println!("written: {}", out.display());
}
