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
fn doctor_names_every_backend() {
    let out = bondcheck(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("host ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("uml ")), "{text}");
    let usable = text.contains(" usable:");
    assert_eq!(
        out.status.code(),
        Some(if usable { 0 } else { 3 }),
        "{text}"
    );
}
