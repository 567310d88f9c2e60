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

if sh "$(dirname "$0")/bench-install.sh" "the Redis figures" redis-server; then
    have || echo "bench: redis-server installed but redis-server or redis-benchmark" \
        "is still not on PATH; the Redis figures will be skipped"
fi
exit 0
