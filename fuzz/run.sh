#!/bin/sh
# Runs every fuzz target for $1 seconds (default 60) on its committed seeds
# (seeds/<target>) and the local corpus (corpus/<target>, git-ignored), and
# prints how many inputs each ran. Stops at the first target that fails;
# the input that failed is in artifacts/<target>/, the log in
# artifacts/<target>.log.
set -u
secs=${1:-60}
cd "$(dirname "$0")" || exit 1

if cargo +nightly --version >/dev/null 2>&1; then
    toolchain=+nightly
else
    # No nightly: let stable accept the unstable flags cargo-fuzz passes.
    toolchain=
    export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 1
fi

for target in $(cargo $toolchain fuzz list); do
    mkdir -p "corpus/$target" "artifacts/$target"
    dict=
    [ -f "dicts/$target.dict" ] && dict="-dict=dicts/$target.dict"
    log="artifacts/$target.log"
    printf '%-18s ' "$target"
    if cargo $toolchain fuzz run --debug-assertions "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -print_final_stats=1 $dict >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        echo "ok: $runs runs, $rate/s"
    else
        echo "FAILED"
        tail -n 40 "$log"
        exit 1
    fi
done
