#!/bin/sh
# Runs the demo HTTP service under ally-master, hits it with curl (one
# keep-alive stream and a loop of fresh connections) while reloading it five
# times, and prints what the clients saw. Exits non-zero if any request
# failed.
#
# usage: scripts/demo.sh [BIN_DIR]   (default target/release)
set -eu

bin=$(cd "${1:-target/release}" && pwd)
addr=${DEMO_ADDR:-127.0.0.1:8080}
reloads=${DEMO_RELOADS:-5}
for tool in curl; do
    command -v $tool >/dev/null || { echo "demo: $tool is needed (apt-get install $tool)"; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/ally-demo.XXXXXX")
master=""
cleanup() {
    [ -n "$master" ] && kill -TERM "$master" 2>/dev/null && wait "$master" 2>/dev/null
    [ -n "${loop:-}" ] && kill "$loop" 2>/dev/null
    [ -n "${stream:-}" ] && kill "$stream" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

cat > "$dir/demo.toml" <<TOML
[[app]]
name = "demo"
command = ["$bin/examples/demo", "--addr", "$addr"]
ready_timeout = "5s"
stop_timeout = "10s"
log = "inherit"   # instance output into the master's log, shown below
TOML

export ALLY_RUNTIME_DIR="$dir/run"
ctl() { "$bin/ally-ctl" --socket "$dir/run/demo.sock" "$@"; }

echo "== starting ally-master with the demo on http://$addr/ (log: master.log below)"
"$bin/ally-master" --config "$dir/demo.toml" 2> "$dir/master.log" &
master=$!

i=0
until ctl list --json 2>/dev/null | grep -q '"main":[0-9]'; do
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "demo: the master did not start"; cat "$dir/master.log"; exit 1; }
    sleep 0.1
done
ctl list

echo "== load: one keep-alive curl stream, plus a loop of one-request curls"
curl -sS --max-time 120 "http://$addr/stream[1-1000000]" > "$dir/stream.out" 2> "$dir/stream.err" &
stream=$!
(
    ok=0; failed=0
    while [ ! -e "$dir/stop" ]; do
        if curl -sf --max-time 10 -H 'Connection: close' "http://$addr/" >> "$dir/loop.out"; then
            ok=$((ok + 1))
        else
            failed=$((failed + 1))
        fi
    done
    echo "$ok $failed" > "$dir/loop.count"
) &
loop=$!

n=1
while [ $n -le "$reloads" ]; do
    sleep 0.5
    printf '== reload %s: ' "$n"
    ctl reload demo --wait --timeout 30
    n=$((n + 1))
done
sleep 0.5
touch "$dir/stop"
wait "$loop"; loop=""
kill "$stream" 2>/dev/null; wait "$stream" 2>/dev/null || true; stream=""

ctl list
read -r loop_ok loop_failed < "$dir/loop.count"
stream_ok=$(grep -c '^instance' "$dir/stream.out" || true)
stream_failed=$(grep -c . "$dir/stream.err" || true)
echo "== results"
echo "one-request curls:     $loop_ok ok, $loop_failed failed"
echo "keep-alive curl stream: $stream_ok ok, $stream_failed errors"
echo "instances that answered:"
cat "$dir/loop.out" "$dir/stream.out" | awk '/^instance/ {print "  " $1 " " $2}' | sort | uniq -c
echo "== master log"
cat "$dir/master.log"
[ "$loop_failed" -eq 0 ] && [ "$stream_failed" -eq 0 ] && [ "$loop_ok" -gt 0 ] && [ "$stream_ok" -gt 0 ]
