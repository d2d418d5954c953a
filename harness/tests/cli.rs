//! The command line's contract for bad input, checked on any machine: bad input is reported
//! before any kernel is looked for, in one line naming file:line, with exit code 2.

use std::path::Path;
use std::process::{Command, Output};

fn bondcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bondcheck"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
        .args(args)
        .output()
        .unwrap()
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_missing_file_is_one_line_and_exit_2() {
    let out = bondcheck(&["run", "no/such/interfaces"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&out),
        ["bondcheck: error: no/such/interfaces: no such file or directory"]
    );
}

#[test]
fn a_syntax_error_names_file_line_and_column_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("interfaces");
    std::fs::write(
        &spec,
        "auto bond0\niface bond0 inet manual\n  bond-slaves eth0 eth1\n  bond-mode round-robin\n",
    )
    .unwrap();
    let out = bondcheck(&["run", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "bondcheck: error: {}:4:13: `bond-mode` `round-robin` is not one of",
            spec.display()
        )),
        "{lines:?}"
    );
}

#[test]
fn a_case_naming_a_missing_spec_points_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("case.toml");
    std::fs::write(
        &case,
        "description = \"x\"\nspec = \"nope\"\ntopology = \"standalone\"\n",
    )
    .unwrap();
    let out = bondcheck(&["run", case.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("{}:2:1: spec ", case.display())),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("no such file or directory"), "{lines:?}");
}

#[test]
fn a_bad_case_file_is_placed_by_toml_span() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("case.toml");
    std::fs::write(
        &case,
        "description = \"x\"\nspec = \"interfaces\"\ntopology = standalone\n",
    )
    .unwrap();
    let out = bondcheck(&["run", case.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_lines(&out)[0].contains(&format!("{}:3:", case.display())),
        "{:?}",
        stderr_lines(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        bondcheck(&["run", "--kernel", "qemu"]).status.code(),
        Some(2)
    );
    assert_eq!(bondcheck(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn vm_backend_refuses_a_bad_image_or_module_tree_with_exit_2() {
    let root = tempfile::tempdir().unwrap();
    let boot = root.path().join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    let text = boot.join("notes.txt");
    std::fs::write(&text, "not a kernel\n").unwrap();
    // The boot protocol's setup header: "HdrS" at 0x202, the version string's offset from
    // 0x200 at 0x20e.
    let image = boot.join("vmlinuz-6.9.9-test");
    let mut bytes = vec![0u8; 0x400];
    bytes[0x202..0x206].copy_from_slice(b"HdrS");
    bytes[0x20e] = 0x10;
    bytes[0x210..0x21e].copy_from_slice(b"6.9.9-test #1\0");
    std::fs::write(&image, bytes).unwrap();
    let tree = root.path().join("lib/modules/6.9.9-test");
    let run = |image: &Path| {
        let kernel = format!("vm:{}", image.display());
        bondcheck(&["run", "suites/debian-howto", "--kernel", &kernel])
    };
    let refused = |out: Output, want: &str| {
        let lines = stderr_lines(&out);
        assert_eq!(out.status.code(), Some(2), "{lines:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(want), "{:?} lacks {want:?}", lines[0]);
    };
    refused(
        run(&root.path().join("missing")),
        "missing: no such file or directory",
    );
    refused(run(&text), "not a kernel image");
    refused(run(&image), "no modules for Linux 6.9.9-test");
    std::fs::create_dir_all(tree.join("kernel/drivers/net")).unwrap();
    refused(run(&image), "run `depmod -b ROOT 6.9.9-test`");
    std::fs::write(
        tree.join("modules.dep"),
        "kernel/drivers/net/veth.ko.xz:\nkernel/net/bridge/bridge.ko.xz:\n",
    )
    .unwrap();
    refused(run(&image), "have no bonding module");
    // A usage error in clap's words (three lines, like any other).
    let out = bondcheck(&["run", "suites/debian-howto", "--kernel", "vm:"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_lines(&out)[0].contains("vm: needs a kernel image"));
}

#[test]
fn doctor_names_every_backend() {
    let out = bondcheck(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("host ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("uml ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("vm ")), "{text}");
    // `auto` never boots a VM (it needs an image): only host and UML make doctor pass.
    let usable = text
        .lines()
        .any(|l| (l.starts_with("host ") || l.starts_with("uml ")) && l.contains(" usable:"));
    assert_eq!(
        out.status.code(),
        Some(if usable { 0 } else { 3 }),
        "{text}"
    );
}

// ---- Reports read back: diff, merge, JUnit and KTAP, from hand-built report fixtures ----

use serde_json::{Value, json};

/// A check as a report holds it.
fn check(id: &str, status: &str, observed: Value, message: &str) -> Value {
    json!({
        "check": id, "status": status, "requested": null, "expected": 200,
        "observed": observed, "observed_procfs": observed, "unit": "ms",
        "rule": {"text": "delays are stored in monitor ticks", "source": "bond_options.c"},
        "message": message, "measurements": [],
    })
}

/// A timing check whose samples have this median and spread (min..max).
fn timing_check(min: f64, median: f64, max: f64) -> Value {
    let mut c = check(
        "timing.updelay",
        "pass",
        json!(format!("min {min} / median {median} / max {max} ms")),
        "5 samples in (200, 330] ms",
    );
    c["observed_procfs"] = Value::Null;
    c["measurements"] = json!([
        {"name": "tolerance", "value": 30.0, "unit": "ms"},
        {"name": "trial_1", "value": min, "unit": "ms"},
        {"name": "trial_2", "value": max, "unit": "ms"},
        {"name": "min", "value": min, "unit": "ms"},
        {"name": "median", "value": median, "unit": "ms"},
        {"name": "max", "value": max, "unit": "ms"},
    ]);
    c
}

fn case(name: &str, applier: &str, status: &str, checks: Vec<Value>) -> Value {
    json!({
        "name": name, "path": format!("suites/{name}"), "description": "fixture",
        "spec": {"path": format!("suites/{name}/interfaces"), "sha256": "00"},
        "topology": "standalone", "applier": applier, "status": status, "error": null,
        "negative_control": null, "duration_ms": 1234.5, "inherent_ms": 1000.0, "inherent": [],
        "phases": {"setup_ms": 1.0, "apply_ms": 2.0, "observe_ms": 3.0, "checks_ms": 0.1,
                   "timing_ms": 4.0, "teardown_ms": 0.5},
        "warnings": [], "apply": [], "observed": null, "timing": null, "checks": checks,
    })
}

fn report(release: &str, cases: Vec<Value>) -> Value {
    json!({
        "schema": "bondcheck-report/1",
        "tool": {"name": "bondcheck", "version": "0.1.0"},
        "kernel": {"backend": "uml", "release": release, "bonding_driver": "v6.1", "boot_ms": 1400.0,
                   "slack_ms": 1000, "hz": 100, "timing_tolerance_ms": 30.0},
        "duration_ms": 5000.0,
        "summary": {},
        "cases": cases,
        "memory": {"harness_peak_rss_kib": 9000, "guest_total_kib": 110000, "guest_peak_used_kib": 20000},
    })
}

/// Four cases covering every outcome: pass with a skip and timing, a failing check with
/// markup and a line break in its message, a held negative control, a case that errored, and
/// one run with the ifupdown applier.
fn fixture_cases() -> Vec<Value> {
    let mut control = case(
        "negative-controls/updelay-changed",
        "netlink",
        "pass",
        vec![
            check("option.mode", "pass", json!("balance-rr"), "as expected"),
            check(
                "option.updelay",
                "fail",
                json!(100),
                "expected 200 ms, observed 100 ms",
            ),
        ],
    );
    control["negative_control"] = json!({
        "perturb": [], "must_fail": ["option.updelay"], "failed": ["option.updelay"], "held": true,
    });
    let mut errored = case("broken", "netlink", "error", vec![]);
    errored["error"] = json!("setting up: EPERM <veth> & \"friends\"");
    vec![
        case(
            "modes/balance-rr",
            "netlink",
            "fail",
            vec![
                check("option.mode", "pass", json!("balance-rr"), "as expected"),
                check(
                    "option.updelay",
                    "fail",
                    json!(100),
                    "expected <200> & \"x\" 'y'\nsecond line # not a directive\u{7}",
                ),
                check(
                    "apply.answers",
                    "skip",
                    Value::Null,
                    "skipped: ifupdown hides answers",
                ),
                timing_check(320.0, 328.0, 330.0),
            ],
        ),
        control,
        errored,
        case(
            "modes/balance-rr",
            "ifupdown",
            "pass",
            vec![check(
                "option.mode",
                "pass",
                json!("balance-rr"),
                "as expected",
            )],
        ),
    ]
}

fn write_json(dir: &Path, name: &str, doc: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn report_diff_of_a_report_with_itself_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_json(dir.path(), "a.json", &report("6.1", fixture_cases()));
    let out = bondcheck(&["report", "diff", &a, &a]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).ends_with("no differences\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn report_diff_names_status_timing_and_observed_changes() {
    let dir = tempfile::tempdir().unwrap();
    let a_doc = report("6.1", fixture_cases());
    let mut b_doc = report("6.6", fixture_cases());
    let rr = &mut b_doc["cases"][0]["checks"];
    // A status change, with the value the kernel now reports.
    rr[0]["status"] = json!("fail");
    rr[0]["observed"] = json!("active-backup");
    // Median 328 -> 370: beyond the larger spread (10) + tolerance (30).
    rr[3] = timing_check(365.0, 370.0, 372.0);
    // A case only in b.
    b_doc["cases"]
        .as_array_mut()
        .unwrap()
        .push(case("new", "netlink", "pass", vec![]));
    let a = write_json(dir.path(), "a.json", &a_doc);
    let b = write_json(dir.path(), "b.json", &b_doc);

    let out = bondcheck(&["report", "diff", &a, &b]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    for line in [
        "case only in b: new",
        "check status: modes/balance-rr option.mode: pass -> fail",
        "observed: modes/balance-rr option.mode: netlink \"balance-rr\" -> \"active-backup\"",
        "4 differences",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    assert!(
        text.contains("timing: modes/balance-rr timing.updelay: median 328.0 -> 370.0 ms"),
        "{text}"
    );

    let out = bondcheck(&["report", "diff", &a, &b, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let d: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(d["differences"], 4);
    assert_eq!(d["cases_only_in_b"], json!(["new"]));
    assert_eq!(d["timing"][0]["noise_ms"], 40.0);
    assert_eq!(d["check_status"][0]["b"], "fail");
    assert_eq!(d["kernel_b"], "6.6 (uml)");
}

#[test]
fn report_diff_within_noise_is_no_difference() {
    let dir = tempfile::tempdir().unwrap();
    let a_doc = report("6.1", fixture_cases());
    let mut b_doc = a_doc.clone();
    // 328 -> 368 is exactly spread 10 + tolerance 30: noise, not a move.
    b_doc["cases"][0]["checks"][3] = timing_check(360.0, 368.0, 370.0);
    let a = write_json(dir.path(), "a.json", &a_doc);
    let b = write_json(dir.path(), "b.json", &b_doc);
    let out = bondcheck(&["report", "diff", &a, &b]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn report_diff_bad_input_is_one_line_naming_the_file_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_json(dir.path(), "good.json", &report("6.1", fixture_cases()));
    let mut v2 = report("6.1", vec![]);
    v2["schema"] = json!("bondcheck-report/2");
    let cases = [
        (
            write_json(dir.path(), "v2.json", &v2),
            "report schema `bondcheck-report/2` is not supported: this bondcheck reads \
             `bondcheck-report/1`",
        ),
        (
            write_json(dir.path(), "other.json", &json!({"name": "x"})),
            "not a bondcheck report (no `schema` field)",
        ),
        (
            write_json(
                dir.path(),
                "no-cases.json",
                &json!({"schema": "bondcheck-report/1"}),
            ),
            "not a well-formed `bondcheck-report/1` report: missing field `kernel`",
        ),
        (
            dir.path()
                .join("missing.json")
                .to_str()
                .unwrap()
                .to_string(),
            "no such file or directory",
        ),
    ];
    for (bad, why) in &cases {
        for args in [
            ["report", "diff", &good, bad],
            ["report", "diff", bad, &good],
        ] {
            let out = bondcheck(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            assert_eq!(
                stderr_lines(&out),
                [format!("bondcheck: error: {bad}: {why}")],
                "{args:?}"
            );
        }
    }
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, "{\"schema\": ").unwrap();
    let out = bondcheck(&["report", "diff", truncated.to_str().unwrap(), &good]);
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("bondcheck: error: {}:1:", truncated.display()))
            && lines[0].contains("not JSON: EOF while parsing"),
        "{lines:?}"
    );
}

#[test]
fn report_merge_joins_shards_in_name_order_and_recounts() {
    let dir = tempfile::tempdir().unwrap();
    let all = fixture_cases();
    let shard1 = report("6.1", vec![all[2].clone(), all[0].clone()]);
    let mut shard2 = report("6.1", vec![all[3].clone(), all[1].clone()]);
    // A shard whose cases never created a bond does not know the driver's version.
    shard2["kernel"]["bonding_driver"] = Value::Null;
    shard2["kernel"]["boot_ms"] = json!(1500.0);
    shard2["memory"]["guest_peak_used_kib"] = json!(30000);
    let s1 = write_json(dir.path(), "shard-1.json", &shard1);
    let s2 = write_json(dir.path(), "shard-2.json", &shard2);
    let merged_path = dir.path().join("out/merged.json");
    let out = bondcheck(&["report", "merge", merged_path.to_str().unwrap(), &s2, &s1]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let merged: Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_path).unwrap()).unwrap();
    let order: Vec<(&str, &str)> = merged["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["applier"].as_str().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("broken", "netlink"),
            ("modes/balance-rr", "ifupdown"),
            ("modes/balance-rr", "netlink"),
            ("negative-controls/updelay-changed", "netlink"),
        ]
    );
    assert_eq!(
        merged["summary"],
        json!({
            "cases": 4, "cases_passed": 2, "cases_known": 0, "cases_failed": 1, "cases_error": 1,
            "cases_skipped": 0, "checks_passed": 3, "checks_known": 0, "checks_failed": 1,
            "checks_skipped": 1,
            "negative_controls_held": 1, "negative_controls_broken": 0,
            "inherent_ms": 4000.0, "wall_over_inherent": 2.5,
        })
    );
    assert_eq!(merged["duration_ms"], 10000.0);
    // Each shard's process and guest: the most any used.
    assert_eq!(
        merged["memory"],
        json!({"harness_peak_rss_kib": 9000, "guest_total_kib": 110000, "guest_peak_used_kib": 30000})
    );
    assert_eq!(merged["kernel"]["bonding_driver"], "v6.1");
    assert_eq!(merged["kernel"]["boot_ms"], 1500.0);
    // Fields merge does not look at are carried through.
    assert_eq!(merged["cases"][0]["topology"], "standalone");
    // The merged report is the unsharded run's.
    let whole = write_json(dir.path(), "whole.json", &report("6.1", all));
    let out = bondcheck(&["report", "diff", &whole, merged_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn report_merge_refuses_shards_of_different_kernels_or_overlapping_cases() {
    let dir = tempfile::tempdir().unwrap();
    let all = fixture_cases();
    let a = write_json(dir.path(), "a.json", &report("6.1", vec![all[0].clone()]));
    let b = write_json(dir.path(), "b.json", &report("6.6", vec![all[1].clone()]));
    let c = write_json(dir.path(), "c.json", &report("6.1", vec![all[0].clone()]));
    let out_path = dir.path().join("merged.json");
    let out = out_path.to_str().unwrap();

    let run = bondcheck(&["report", "merge", out, &a, &b]);
    assert_eq!(run.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&run),
        [format!(
            "bondcheck: error: {b}: kernel.release is \"6.6\" here but \"6.1\" in {a}: the \
             reports merged into one must come from the same bondcheck and kernel"
        )]
    );
    let run = bondcheck(&["report", "merge", out, &a, &c]);
    assert_eq!(run.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&run),
        [format!(
            "bondcheck: error: {c}: case `modes/balance-rr` is also in {a}: the merged \
             reports' cases must not overlap"
        )]
    );
    assert!(!out_path.exists());
    assert_eq!(bondcheck(&["report", "merge", out]).status.code(), Some(2));
}

#[test]
fn report_matrix_joins_kernels_and_needs_two_reports() {
    let dir = tempfile::tempdir().unwrap();
    let uml = write_json(dir.path(), "uml.json", &report("6.1", fixture_cases()));
    let mut newer = report("6.12", fixture_cases());
    newer["kernel"]["backend"] = json!("vm");
    newer["kernel"]["hz"] = json!(250);
    newer["cases"][0]["checks"][0]["status"] = json!("fail");
    let vm = write_json(dir.path(), "6.12.json", &newer);
    let out_path = dir.path().join("matrix.json");
    let out_str = out_path.to_str().unwrap();
    let out = bondcheck(&["report", "matrix", out_str, &uml, &vm]);
    // The fixture has failing cases: exit 1, the matrix written all the same.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("6.12  Linux 6.12 (vm, HZ=250"), "{text}");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(m["schema"], "bondcheck-matrix/1");
    assert_eq!(m["kernels"][1]["label"], "6.12");
    assert_eq!(m["differences"][0]["check_status"], 1);
    assert_eq!(m["complete"], true);
    // Arguments: one report is not a matrix; a bad report is one line and exit 2.
    let one = bondcheck(&["report", "matrix", out_str, &uml]);
    assert_eq!(one.status.code(), Some(2));
    let bad = write_json(dir.path(), "bad.json", &json!({"schema": "x"}));
    let out = bondcheck(&["report", "matrix", out_str, &uml, &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr_lines(&out).len(), 1, "{out:?}");
}

#[test]
fn run_shard_must_be_k_of_n_with_k_in_1_to_n() {
    for (shard, why) in [
        ("0/3", "K must be in 1..=3"),
        ("4/3", "K must be in 1..=3"),
        ("1/0", "N must be at least 1"),
        ("2", "expected K/N, e.g. 2/4"),
        ("a/b", "K and N must be whole numbers, e.g. 2/4"),
    ] {
        let out = bondcheck(&["run", "--shard", shard, "suites"]);
        assert_eq!(out.status.code(), Some(2), "{shard}");
        assert_eq!(
            stderr_lines(&out),
            [format!("bondcheck: error: --shard {shard}: {why}")]
        );
    }
}

/// Merges the fixture into one report with `--junit` and `--ktap`, returning both texts.
fn rendered() -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = write_json(dir.path(), "in.json", &report("6.1", fixture_cases()));
    let (junit, ktap) = (dir.path().join("r.xml"), dir.path().join("r.ktap"));
    let out = bondcheck(&[
        "report",
        "merge",
        dir.path().join("out.json").to_str().unwrap(),
        &input,
        "--junit",
        junit.to_str().unwrap(),
        "--ktap",
        ktap.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    (
        std::fs::read_to_string(junit).unwrap(),
        std::fs::read_to_string(ktap).unwrap(),
    )
}

/// An XML element as [`parse_xml`] saw it: name, attributes (unescaped), depth.
#[derive(Debug)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    depth: usize,
}

/// Character data and attribute values: only the five entities and character references.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find(';')
            .ok_or(format!("unterminated entity in {s:?}"))?;
        let entity = &rest[i + 1..i + end];
        out.push(match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => entity
                .strip_prefix('#')
                .and_then(|n| n.parse::<u32>().ok())
                .and_then(char::from_u32)
                .ok_or(format!("unknown entity &{entity}; in {s:?}"))?,
        });
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    if let Some(c) = out
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(format!("{c:?} cannot appear in XML 1.0"));
    }
    Ok(out)
}

/// A minimal well-formedness check: one root, tags nest and match, attributes are quoted,
/// unique and hold no `<`, text holds no markup, every `&` is an entity XML knows.
fn parse_xml(xml: &str) -> Result<Vec<Element>, String> {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .ok_or("no XML declaration")?;
    let (mut stack, mut elements, mut roots) = (Vec::<String>::new(), Vec::new(), 0);
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        if stack.is_empty() && !text.trim().is_empty() {
            return Err(format!("text outside the root: {text:?}"));
        }
        unescape(text)?;
        rest = &rest[open + 1..];
        if let Some(after) = rest.strip_prefix('/') {
            let end = after.find('>').ok_or("unterminated end tag")?;
            let name = &after[..end];
            if stack.pop().as_deref() != Some(name) {
                return Err(format!("</{name}> does not close the open element"));
            }
            rest = &after[end + 1..];
            continue;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .ok_or("unterminated tag")?;
        let name = rest[..name_end].to_string();
        if name.is_empty() {
            return Err("empty tag name".into());
        }
        rest = &rest[name_end..];
        let mut attributes: Vec<(String, String)> = Vec::new();
        let empty = loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix("/>") {
                rest = r;
                break true;
            }
            if let Some(r) = rest.strip_prefix('>') {
                rest = r;
                break false;
            }
            let eq = rest
                .find('=')
                .ok_or(format!("attribute without value in <{name}>"))?;
            let key = rest[..eq].to_string();
            let quoted = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or(format!("unquoted attribute {key} in <{name}>"))?;
            let close = quoted.find('"').ok_or("unterminated attribute value")?;
            let raw = &quoted[..close];
            if raw.contains('<') {
                return Err(format!("`<` in attribute {key}"));
            }
            if attributes.iter().any(|(k, _)| *k == key) {
                return Err(format!("duplicate attribute {key} in <{name}>"));
            }
            attributes.push((key, unescape(raw)?));
            rest = &quoted[close + 1..];
        };
        if stack.is_empty() {
            roots += 1;
        }
        elements.push(Element {
            name: name.clone(),
            attributes,
            depth: stack.len(),
        });
        if !empty {
            stack.push(name);
        }
    }
    if !stack.is_empty() || !rest.trim().is_empty() || roots != 1 {
        return Err(format!("unclosed {stack:?} or {roots} roots"));
    }
    Ok(elements)
}

#[test]
fn the_xml_checker_refuses_what_is_not_well_formed() {
    let decl = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    for bad in [
        "<a><b></a></b>",
        "<a x=1/>",
        "<a x=\"<\"/>",
        "<a>&bogus;</a>",
        "<a>&amp</a>",
        "<a/><b/>",
        "<a x=\"1\" x=\"2\"/>",
        "<a>\u{7}</a>",
    ] {
        assert!(parse_xml(&format!("{decl}{bad}")).is_err(), "{bad}");
    }
    assert!(parse_xml(&format!("{decl}<a x=\"&#10;&amp;\"><b/>text &lt;</a>\n")).is_ok());
}

#[test]
fn junit_is_well_formed_with_a_testsuite_per_case_and_a_testcase_per_check() {
    let (xml, _) = rendered();
    let elements = parse_xml(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let attr = |e: &Element, k: &str| {
        e.attributes
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let root = &elements[0];
    assert_eq!(root.name, "testsuites");
    // 4 + 2 checks and the control's verdict + the errored case + 1 check.
    assert_eq!(attr(root, "tests"), "9");
    assert_eq!(attr(root, "failures"), "1");
    assert_eq!(attr(root, "errors"), "1");
    assert_eq!(attr(root, "skipped"), "1");
    let suites: Vec<String> = elements
        .iter()
        .filter(|e| e.name == "testsuite")
        .map(|e| attr(e, "name"))
        .collect();
    assert_eq!(
        suites,
        [
            "broken",
            "modes/balance-rr@ifupdown",
            "modes/balance-rr",
            "negative-controls/updelay-changed"
        ]
    );
    assert!(
        elements
            .iter()
            .all(|e| e.name != "testsuite" || attr(e, "time") == "1.234"),
        "case durations are the suites' times"
    );
    // The failure carries the message verbatim, markup and line break included.
    let failure = elements.iter().find(|e| e.name == "failure").unwrap();
    assert_eq!(
        attr(failure, "message"),
        "expected <200> & \"x\" 'y'\nsecond line # not a directive\u{FFFD}"
    );
    let error = elements.iter().find(|e| e.name == "error").unwrap();
    assert_eq!(
        attr(error, "message"),
        "setting up: EPERM <veth> & \"friends\""
    );
    assert_eq!(elements.iter().filter(|e| e.name == "skipped").count(), 1);
    // Timing samples as properties of their case's suite.
    let median = elements
        .iter()
        .find(|e| e.name == "property" && attr(e, "name") == "timing.updelay.median_ms")
        .expect("timing measurements as properties");
    assert_eq!(attr(median, "value"), "328.000");
    assert!(elements.iter().all(|e| e.depth <= 3));

    // Where Python is at hand, a real XML parser must agree.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junit.xml");
    std::fs::write(&file, &xml).unwrap();
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])",
        ])
        .arg(&file)
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn ktap_has_a_plan_per_level_matching_its_results() {
    let (_, ktap) = rendered();
    let lines: Vec<&str> = ktap.lines().collect();
    assert_eq!(lines[..2], ["KTAP version 1", "1..4"], "{ktap}");
    // Every line is a version, plan, result or diagnostic line, at some depth.
    let result = |line: &str| -> Option<(bool, usize)> {
        let (ok, rest) = match line.strip_prefix("not ok ") {
            Some(rest) => (false, rest),
            None => (true, line.strip_prefix("ok ")?),
        };
        Some((ok, rest.split(' ').next()?.parse().ok()?))
    };
    let mut top = Vec::new();
    let mut nested: Vec<(usize, Vec<usize>)> = Vec::new();
    for line in &lines[2..] {
        let (depth, body) = match line.strip_prefix("  ") {
            Some(body) => (1, body),
            None => (0, *line),
        };
        assert!(
            !body.starts_with(' '),
            "deeper than one subtest level: {line:?}"
        );
        if body == "KTAP version 1" {
            assert_eq!(depth, 1, "{line:?}");
            nested.push((usize::MAX, Vec::new()));
        } else if let Some(n) = body.strip_prefix("1..") {
            nested.last_mut().unwrap().0 = n.parse().unwrap();
        } else if let Some((_, n)) = result(body) {
            match depth {
                0 => top.push((n, *line)),
                _ => nested.last_mut().unwrap().1.push(n),
            }
        } else {
            assert!(body.starts_with('#'), "not a KTAP line: {line:?}");
        }
    }
    assert_eq!(
        top.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "{ktap}"
    );
    assert_eq!(
        top.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        [
            "not ok 1 broken",
            "ok 2 modes/balance-rr@ifupdown",
            "not ok 3 modes/balance-rr",
            "ok 4 negative-controls/updelay-changed",
        ]
    );
    // The errored case has no subtests; every other case's plan matches its results.
    assert_eq!(nested.len(), 3);
    for (plan, results) in &nested {
        assert_eq!(*results, (1..=*plan).collect::<Vec<_>>(), "{ktap}");
    }
    assert!(
        ktap.contains("\n  ok 3 apply.answers # SKIP ifupdown hides answers\n"),
        "{ktap}"
    );
    // The control's required failure is a pass of its subtest.
    assert!(ktap.contains("\n  ok 2 option.updelay\n"), "{ktap}");
    assert!(
        ktap.contains("\n  # second line # not a directive \n  not ok 2 option.updelay\n"),
        "{ktap}"
    );
}
