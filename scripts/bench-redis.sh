#!/bin/sh
# Makes redis-server and redis-benchmark available to `make bench`, which
# measures ally's shared state beside Redis on this machine.
#
# When either is missing, installs Debian's redis-server package (it brings
# both) if this runs as root and apt-get exists. Otherwise, or if the
# install fails, it says why and still exits 0: the bench then leaves out
# its Redis figures and prints a line saying so.
#
# usage: scripts/bench-redis.sh
set -u

have() {
    command -v redis-server >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1
}
have && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "bench: redis-server or redis-benchmark is missing and only root may install them" \
        "(apt-get install redis-server); the Redis figures will be skipped"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench: redis-server or redis-benchmark is missing and there is no apt-get" \
        "to install them; the Redis figures will be skipped"
    exit 0
fi

# The package's install script starts a system-wide Redis service; a
# policy-rc.d that exits 101 forbids that (container images often ship one).
# The bench starts its own server on a unix socket and stops it afterwards.
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
fi
cleanup() { [ -n "$made_policy" ] && rm -f "$policy"; }
trap cleanup EXIT INT TERM

echo "bench: installing redis-server (for redis-server and redis-benchmark)"
export DEBIAN_FRONTEND=noninteractive
if apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; then
    have || echo "bench: redis-server installed but redis-server or redis-benchmark" \
        "is still not on PATH; the Redis figures will be skipped"
else
    echo "bench: installing redis-server failed; the Redis figures will be skipped"
fi
exit 0
