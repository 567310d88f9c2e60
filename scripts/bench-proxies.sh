#!/bin/sh
# Makes nginx and haproxy available to `make bench`, which reloads each
# under the same load as ally and counts the requests that fail.
#
# When either is missing, installs Debian's nginx and haproxy packages if
# this runs as root and apt-get exists. Otherwise, or if the install fails,
# it says why and still exits 0: the bench then leaves out the missing
# proxy's figures and says why in its table.
#
# usage: scripts/bench-proxies.sh
set -u

missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="nginx"
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$missing haproxy"
missing=${missing# }
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "bench: $missing missing and only root may install it" \
        "(apt-get install $missing); its reload figures will be skipped"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench: $missing missing and there is no apt-get to install it;" \
        "its reload figures will be skipped"
    exit 0
fi

# The packages' install scripts start system-wide services; a policy-rc.d
# that exits 101 forbids that (container images often ship one). The bench
# runs its own nginx and haproxy from configs in a temporary directory and
# stops them afterwards.
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
fi
cleanup() { [ -n "$made_policy" ] && rm -f "$policy"; }
trap cleanup EXIT INT TERM

echo "bench: installing $missing (for the reload comparison)"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # $missing is a list of package names
if apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; then
    for p in $missing; do
        command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] ||
            echo "bench: $p installed but not found; its reload figures will be skipped"
    done
else
    echo "bench: installing $missing failed; its reload figures will be skipped"
fi
exit 0
