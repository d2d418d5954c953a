//! Builds the UML backend's LD_PRELOAD shim (src/kernel/uml_xstate.c, which says why it exists)
//! as a shared object in OUT_DIR; `kernel::uml` embeds it and hands it to linux.uml at boot.

use std::path::PathBuf;

fn main() {
    let source = "src/kernel/uml_xstate.c";
    println!("cargo::rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("uml_xstate.so");
    // The C compiler cc would use for this target (CC, the target's gcc or clang).
    let mut cc = cc::Build::new()
        .opt_level(2)
        .warnings(true)
        .get_compiler()
        .to_command();
    let status = cc
        .args(["-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&object)
        .arg(source)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler for {source}: {e}"));
    assert!(status.success(), "the C compiler failed on {source}");
}
