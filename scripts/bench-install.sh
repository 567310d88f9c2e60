#!/bin/sh
# Installs Debian packages for `make bench` without starting their services.
#
# usage: scripts/bench-install.sh WHAT PACKAGE...
#
# WHAT names the figures that need the packages, for the messages. Needs
# root and apt-get; otherwise, or if the install fails, it says why (the
# bench then skips WHAT) and exits 1. Exits 0 once installed.
#
# The packages' install scripts would start system-wide services; a
# policy-rc.d that exits 101 forbids that while installing (container
# images often ship one already). The bench runs its own servers from
# temporary directories and stops them afterwards.
set -u
what=$1
shift

if [ "$(id -u)" != 0 ]; then
    echo "bench: $* missing and only root may install it (apt-get install $*); $what will be skipped"
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench: $* missing and there is no apt-get to install it; $what will be skipped"
    exit 1
fi

policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
fi
cleanup() { [ -n "$made_policy" ] && rm -f "$policy"; }
trap cleanup EXIT INT TERM

echo "bench: installing $* (for $what)"
export DEBIAN_FRONTEND=noninteractive
if apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; then
    exit 0
fi
echo "bench: installing $* failed; $what will be skipped"
exit 1
