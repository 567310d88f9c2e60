//! Build-time overrides of the master's version strings, for tests that
//! need two distinguishable builds (never read at run time).

fn main() {
    println!("cargo:rerun-if-env-changed=ALLY_VERSION_OVERRIDE");
    println!("cargo:rerun-if-env-changed=ALLY_HANDOVER_VERSION_OVERRIDE");
    println!("cargo:rerun-if-env-changed=ALLY_HANDOVER_RESTORE_FAULT");
}
