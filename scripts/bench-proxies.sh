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

# shellcheck disable=SC2086 # $missing is a list of package names
if sh "$(dirname "$0")/bench-install.sh" "their reload figures" $missing; then
    for p in $missing; do
        command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] ||
            echo "bench: $p installed but not found; its reload figures will be skipped"
    done
fi
exit 0
