//! Build information for `--version` (the git commit and build date, see
//! `../build/info.rs`), and build-time overrides of the master's version
//! strings, for tests that need two distinguishable builds (never read at
//! run time).

include!("../build/info.rs");

fn main() {
    emit_build_info();
    println!("cargo:rerun-if-env-changed=ALLY_VERSION_OVERRIDE");
    println!("cargo:rerun-if-env-changed=ALLY_HANDOVER_VERSION_OVERRIDE");
    println!("cargo:rerun-if-env-changed=ALLY_HANDOVER_RESTORE_FAULT");
}
