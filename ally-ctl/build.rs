//! Build information for `--version` and `ally-ctl version`: the git
//! commit and build date (see `../build/info.rs`).

include!("../build/info.rs");

fn main() {
    emit_build_info();
}
